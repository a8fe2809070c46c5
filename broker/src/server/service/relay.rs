//! Acting on what another replica relayed (see [`crate::server::relay`]).

use super::{Broker, LoadedPolicy};
use crate::api::{Event, GatewaySync};
use crate::server::events::GatewayChange;
use crate::server::relay::{Relayed, decode};

impl Broker {
    /// Applies one relayed message: an event reaches this replica's
    /// streams; an ended grant's peer leaves this replica's gateway if it
    /// is here; a policy change makes this replica load the policy again.
    pub async fn apply_relayed(&self, payload: &str) {
        let Some(me) = self.hub.origin() else {
            return;
        };
        let (from, message) = match decode(me, payload) {
            Ok(Some(found)) => found,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "skipping a relayed message this version cannot read");
                return;
            }
        };
        match message {
            Relayed::PeerGone { wg_public_key } => {
                if let Ok(key) = tunnel::PublicKey::from_base64(&wg_public_key) {
                    let _ = self.gateway.remove_peer(key).await;
                }
                self.hub.deliver_gateway_change(GatewayChange {
                    gateway: None,
                    sync: GatewaySync::Remove {
                        public_key: wg_public_key,
                    },
                });
            }
            Relayed::PeerAdded { gateway, peer } => {
                self.hub.deliver_gateway_change(GatewayChange {
                    gateway: Some(gateway),
                    sync: GatewaySync::Add { peer },
                });
            }
            Relayed::Event(routed) => match routed.event {
                // Not delivered as such: this replica reloads, and its own
                // reload tells its streams (and closes what it must) if
                // the policy it loads differs from the one in force here.
                Event::PolicyChanged { .. } | Event::AccessPolicyChanged { .. } => {
                    self.reload_after(&from).await;
                }
                _ => self.hub.deliver(routed),
            },
        }
    }

    /// Loads the policy files again after replica `from` reloaded them, and
    /// swaps them in (audited) only when they differ from those in force.
    async fn reload_after(&self, from: &str) {
        let current = self.policy();
        match LoadedPolicy::load(&self.settings) {
            Ok(loaded)
                if loaded.digest == current.digest
                    && loaded.access.digest == current.access.digest => {}
            Ok(_) => {
                let _ = self
                    .reload_policy(&format!("replica {from} (relayed policy reload)"))
                    .await;
            }
            Err(e) => tracing::warn!(
                error = %e,
                "another replica reloaded the policy; this one cannot load it"
            ),
        }
    }
}
