//! What replicas sharing a PostgreSQL database tell each other, and the
//! follower that acts on it.
//!
//! Why: behind a load balancer an agent's calls land on any replica. Its
//! grant (and so its peer) may live at replica A's gateway and its event
//! stream at replica B, while the administrator revokes through replica C.
//! The store already holds the revocation for everyone; what else must
//! reach every replica is
//! - the events, for the streams open there ([`Relayed::Event`]);
//! - the end of a grant, for the gateway that holds its peer
//!   ([`Relayed::PeerGone`]), and a grant at a separate gateway, for that
//!   gateway's sync stream ([`Relayed::PeerAdded`]);
//! - a policy reload, so each replica loads the (shared) policy files
//!   again and decides on the same policy (relayed as its event).
//!
//! Transport: a row per message plus `NOTIFY` (see the store's
//! `relay` module); messages carry their origin so a replica skips its own.
//! A single node (SQLite) relays nothing and follows nothing.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::events::Routed;
use super::service::Broker;

/// How many relayed messages one read takes.
const BATCH: u32 = 256;

/// One message between replicas.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Relayed {
    /// An event for the streams.
    Event(Routed),
    /// A grant ended: its peer goes, at whichever gateway holds it.
    PeerGone {
        /// The grant's WireGuard key (base64).
        wg_public_key: String,
    },
    /// A grant opened at a separate gateway: its peer goes to that
    /// gateway's sync stream, at whichever replica it is connected to.
    PeerAdded {
        /// The gateway's id.
        gateway: String,
        /// The peer.
        peer: crate::api::SyncPeer,
    },
}

/// A message as it travels: who sent it, and what.
#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    origin: String,
    #[serde(flatten)]
    message: Relayed,
}

/// The stored form of `message` from `origin`.
pub fn encode(origin: &str, message: &Relayed) -> String {
    serde_json::to_string(&Envelope {
        origin: origin.to_owned(),
        message: message.clone(),
    })
    .unwrap_or_default()
}

/// The sender and message in `payload` unless `me` sent it; `Err` names
/// what is wrong with a payload this version cannot read.
pub fn decode(me: &str, payload: &str) -> Result<Option<(String, Relayed)>, String> {
    let envelope: Envelope = serde_json::from_str(payload).map_err(|e| e.to_string())?;
    Ok((envelope.origin != me).then_some((envelope.origin, envelope.message)))
}

/// Acts on the other replicas' messages until `wake` closes: on each
/// wake-up, reads every message after the last one seen and applies it.
/// Starts after `last` (the newest message when the replica started: what
/// happened before is in the store, which it read at start).
pub async fn follow(broker: Arc<Broker>, mut wake: mpsc::Receiver<()>, mut last: i64) {
    while wake.recv().await.is_some() {
        loop {
            let batch = match broker.store().relayed_after(last, BATCH) {
                Ok(batch) => batch,
                Err(e) => {
                    // The listener wakes us again once it has reconnected.
                    tracing::warn!(error = %e, "cannot read relayed messages");
                    break;
                }
            };
            let full = batch.len() == BATCH as usize;
            for (id, payload) in batch {
                last = id;
                broker.apply_relayed(&payload).await;
            }
            if !full {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Event;

    #[test]
    fn a_message_round_trips_and_its_sender_skips_it() {
        let message = Relayed::Event(Routed {
            user: Some("alice".into()),
            device_id: None,
            event: Event::SessionRevoked {
                user: "alice".into(),
                reason: "left".into(),
            },
            ends_stream: true,
        });
        let payload = encode("replica-a", &message);
        assert_eq!(
            decode("replica-b", &payload),
            Ok(Some(("replica-a".to_owned(), message)))
        );
        assert_eq!(decode("replica-a", &payload), Ok(None));
        let gone = Relayed::PeerGone {
            wg_public_key: "k".into(),
        };
        assert_eq!(
            decode("b", &encode("a", &gone)),
            Ok(Some(("a".to_owned(), gone)))
        );
    }

    #[test]
    fn an_unreadable_message_is_an_error() {
        assert!(decode("b", "{\"origin\":\"a\",\"kind\":\"later-kind\"}").is_err());
        assert!(decode("b", "not json").is_err());
    }
}
