//! Fan-out of events to the SSE streams. Each event is addressed to a device,
//! a user, or everyone; a stream opened for (user, device) receives what
//! concerns either.
//!
//! With replicas (PostgreSQL), what is published here is also relayed to
//! the other replicas ([`super::relay`]), whose followers deliver it to
//! their own streams: an agent's stream may be open at any replica.

use std::sync::Arc;

use tokio::sync::broadcast;

use super::relay::{self, Relayed};
use super::store::Store;
use crate::api::{Event, GatewaySync, SyncPeer};

/// An event with its addressees.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
    /// Peer changes for the separate gateways' sync streams.
    gateways: broadcast::Sender<GatewayChange>,
    /// Where published events go for the other replicas (`None` before
    /// [`Hub::relay_through`]: tests and single-node setups built by hand).
    relay: Option<Relay>,
}

/// A change for the sync streams of separate gateways.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayChange {
    /// The gateway it is for; `None`: whichever holds the peer (a removal
    /// names only the key).
    pub gateway: Option<String>,
    /// What to send.
    pub sync: GatewaySync,
}

impl GatewayChange {
    /// Whether the stream of gateway `id` sends this.
    pub fn is_for(&self, id: &str) -> bool {
        self.gateway.as_deref().is_none_or(|g| g == id)
    }
}

/// This replica's name in relayed messages and the store they travel by.
#[derive(Debug, Clone)]
struct Relay {
    origin: String,
    store: Arc<dyn Store>,
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
            gateways: broadcast::channel(4096).0,
            relay: None,
        }
    }

    /// Relays every published event, and every [`Hub::peer_gone`], through
    /// `store` to the replicas sharing it, as `origin`.
    pub fn relay_through(mut self, origin: String, store: Arc<dyn Store>) -> Self {
        self.relay = Some(Relay { origin, store });
        self
    }

    /// This replica's name in relayed messages.
    pub fn origin(&self) -> Option<&str> {
        self.relay.as_ref().map(|r| r.origin.as_str())
    }

    /// Tells the other replicas that the grant of WireGuard key
    /// `wg_public_key` has ended, so whichever gateway holds its peer
    /// removes it (the grant may have been made at another replica).
    pub fn peer_gone(&self, wg_public_key: &str) {
        self.deliver_gateway_change(GatewayChange {
            gateway: None,
            sync: GatewaySync::Remove {
                public_key: wg_public_key.to_owned(),
            },
        });
        self.relay(Relayed::PeerGone {
            wg_public_key: wg_public_key.to_owned(),
        });
    }

    /// Sends a new grant's peer to separate gateway `gateway`, through
    /// whichever replica its sync stream is connected to.
    pub fn peer_added(&self, gateway: &str, peer: SyncPeer) {
        self.deliver_gateway_change(GatewayChange {
            gateway: Some(gateway.to_owned()),
            sync: GatewaySync::Add { peer: peer.clone() },
        });
        self.relay(Relayed::PeerAdded {
            gateway: gateway.to_owned(),
            peer,
        });
    }

    /// Delivers an event relayed from another replica to this one's
    /// streams only.
    pub fn deliver(&self, routed: Routed) {
        let _ = self.tx.send(routed);
    }

    /// Hands a peer change to this replica's gateway sync streams only.
    pub fn deliver_gateway_change(&self, change: GatewayChange) {
        let _ = self.gateways.send(change);
    }

    /// A new subscription to peer changes (a gateway's sync stream).
    pub fn subscribe_gateway_changes(&self) -> broadcast::Receiver<GatewayChange> {
        self.gateways.subscribe()
    }

    fn relay(&self, message: Relayed) {
        let Some(relay) = &self.relay else {
            return;
        };
        let payload = relay::encode(&relay.origin, &message);
        // Best effort: the local streams have the event and the store holds
        // the state change, which every replica's streams re-check; a
        // database that refuses this refused the change's write too.
        if let Err(e) = relay.store.relay(&payload) {
            tracing::warn!(error = %e, "could not relay an event to the other replicas");
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
        let routed = Routed {
            user: user.map(str::to_owned),
            device_id: device_id.map(str::to_owned),
            event,
            ends_stream,
        };
        if self.relay.is_some() {
            self.relay(Relayed::Event(routed.clone()));
        }
        let _ = self.tx.send(routed);
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
