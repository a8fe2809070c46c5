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
        let _ = self.tx.send(Routed {
            user: user.map(str::to_owned),
            device_id: device_id.map(str::to_owned),
            event,
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
        };
        let user = Routed {
            user: Some("alice".into()),
            device_id: None,
            event: ev.clone(),
        };
        let dev = Routed {
            user: Some("alice".into()),
            device_id: Some("d1".into()),
            event: ev,
        };
        assert!(all.is_for("bob", "x"));
        assert!(user.is_for("alice", "d9") && !user.is_for("bob", "d9"));
        assert!(dev.is_for("alice", "d1") && !dev.is_for("alice", "d2"));
    }
}
