//! Fan-out of events to the SSE streams. Each event is addressed to a device,
//! a user, or everyone; a stream opened for (user, device) receives what
//! concerns either.

use tokio::sync::broadcast;

use crate::api::Event;

/// An event with its addressees.
#[derive(Debug, Clone)]
pub struct Routed {
    /// The user it concerns (`None` = not user-specific).
    pub user: Option<String>,
    /// The device it concerns (`None` = not device-specific).
    pub device_id: Option<String>,
    /// The event.
    pub event: Event,
    /// The streams it reaches end after delivering it: it revokes what they
    /// were opened with (the user's sessions, the device).
    pub ends_stream: bool,
}

impl Routed {
    /// Whether a stream of `user` for `device_id` should get this.
    pub fn is_for(&self, user: &str, device_id: &str) -> bool {
        match (&self.user, &self.device_id) {
            (_, Some(d)) => d == device_id,
            (Some(u), None) => u == user,
            (None, None) => true,
        }
    }
}

/// The broadcast hub. A slow stream that lags behind loses events (and is
/// told so by being closed, so the agent reconnects and re-checks state).
#[derive(Debug, Clone)]
pub struct Hub {
    tx: broadcast::Sender<Routed>,
}

impl Default for Hub {
    fn default() -> Self {
        Self::new()
    }
}

impl Hub {
    /// A hub with room for 1024 pending events per subscriber.
    pub fn new() -> Self {
        Self {
            tx: broadcast::channel(1024).0,
        }
    }

    /// Sends to every current subscriber; none listening is fine.
    pub fn publish(&self, user: Option<&str>, device_id: Option<&str>, event: Event) {
        self.send(user, device_id, event, false);
    }

    /// [`Hub::publish`], then ends the streams it reached: for revocations,
    /// so a stream opened with a now-revoked session or device does not
    /// outlive it.
    pub fn publish_final(&self, user: Option<&str>, device_id: Option<&str>, event: Event) {
        self.send(user, device_id, event, true);
    }

    fn send(&self, user: Option<&str>, device_id: Option<&str>, event: Event, ends_stream: bool) {
        let _ = self.tx.send(Routed {
            user: user.map(str::to_owned),
            device_id: device_id.map(str::to_owned),
            event,
            ends_stream,
        });
    }

    /// A new subscription.
    pub fn subscribe(&self) -> broadcast::Receiver<Routed> {
        self.tx.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing() {
        let ev = Event::PolicyChanged { digest: "d".into() };
        let all = Routed {
            user: None,
            device_id: None,
            event: ev.clone(),
            ends_stream: false,
        };
        let user = Routed {
            user: Some("alice".into()),
            device_id: None,
            event: ev.clone(),
            ends_stream: false,
        };
        let dev = Routed {
            user: Some("alice".into()),
            device_id: Some("d1".into()),
            event: ev,
            ends_stream: true,
        };
        assert!(all.is_for("bob", "x"));
        assert!(user.is_for("alice", "d9") && !user.is_for("bob", "d9"));
        assert!(dev.is_for("alice", "d1") && !dev.is_for("alice", "d2"));
    }
}
