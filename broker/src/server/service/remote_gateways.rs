//! The broker's side of separate gateways (see
//! [`crate::server::remote_gateways`]): who a sync caller is, the full peer
//! set it starts from, and which gateway a new grant goes to.

use tokio::sync::broadcast;

use super::{ApiError, Broker};
use crate::api::{GatewaySync, ProblemType, SyncPeer};
use crate::server::config::AppSection;
use crate::server::events::GatewayChange;
use crate::server::remote_gateways::{self, RemoteGateway};
use crate::server::store::{GrantRow, OpenGrants};

impl Broker {
    /// The separate gateway whose credential `authorization` (`Bearer …`)
    /// carries. Refusals are audited like any unauthenticated caller's.
    pub fn authorize_gateway(&self, authorization: Option<&str>) -> Result<String, ApiError> {
        let found = authorization
            .and_then(|h| h.strip_prefix("Bearer "))
            .and_then(|token| remote_gateways::authorize(&self.settings.remote_gateways, token));
        match found {
            Some(gateway) => Ok(gateway.id.clone()),
            None => {
                let err = ApiError::new(
                    ProblemType::GatewayUnauthorized,
                    "a credential of a gateway in [[gateways]] is required",
                );
                self.deny("gateway-sync", None, None, &err);
                Err(err)
            }
        }
    }

    /// Opens gateway `id`'s sync: the changes from now on, and every open
    /// grant it holds. Subscribed before the store is read, so a grant
    /// opened or closed meanwhile is in the snapshot, in the changes, or
    /// both (adding a peer twice or removing one that is gone is harmless).
    pub fn gateway_sync(
        &self,
        id: &str,
    ) -> Result<(GatewaySync, broadcast::Receiver<GatewayChange>), ApiError> {
        let changes = self.hub.subscribe_gateway_changes();
        let peers = self
            .store
            .open_grants_where(OpenGrants::Gateway(id))?
            .iter()
            .map(sync_peer)
            .collect::<Vec<_>>();
        self.audit(crate::server::store::NewAudit {
            action: "gateway-sync",
            outcome: "allow",
            user: None,
            device_id: None,
            problem: None,
            reason: &format!("gateway {id} synchronising {} peer(s)", peers.len()),
            decision: None,
        });
        Ok((GatewaySync::Snapshot { peers }, changes))
    }

    /// The separate gateway a new grant for `app` goes to (`None`: the
    /// embedded one): of those it lists, the one with the fewest open
    /// grants.
    pub(super) fn pick_gateway(&self, app: &AppSection) -> Result<Option<RemoteGateway>, ApiError> {
        if app.gateways.is_empty() {
            return Ok(None);
        }
        let mut open = Vec::with_capacity(app.gateways.len());
        for id in &app.gateways {
            open.push(self.store.open_grants_where(OpenGrants::Gateway(id))?.len());
        }
        let chosen = remote_gateways::choose(&app.gateways, &open);
        Ok(chosen.and_then(|id| {
            self.settings
                .remote_gateways
                .iter()
                .find(|g| g.id == id)
                .cloned()
        }))
    }
}

/// A grant's peer as a separate gateway installs it.
pub(super) fn sync_peer(row: &GrantRow) -> SyncPeer {
    SyncPeer {
        public_key: row.wg_public_key.clone(),
        client_address: row.client_address.to_string(),
        targets: row.targets.clone(),
        expires_at: row.expires_at,
    }
}
