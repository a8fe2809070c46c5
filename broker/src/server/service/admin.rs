//! The administrator's calls, behind the admin token: revocations (device,
//! user or single grant) and clearing them, policy reload, the audit log and
//! the gateway's peers. Kept together because they share one authorisation
//! and one audience, the operator rather than the agent. (Device approval,
//! the admin's side of enrolment, lives with enrolment in `devices`.)

use std::sync::{Arc, PoisonError};

use super::{ApiError, Broker, LoadedPolicy};
use crate::api::{
    self, ComplianceStatus, Event, GatewayPeer, PolicyDocument, ProblemType,
    RevocationClearRequest, RevocationClearResult, RevocationRequest, RevocationResult,
};
use crate::server::store::AuditDecision;

impl Broker {
    /// Checks the admin bearer token (constant-time over SHA-256 digests)
    /// and says which administrator it is.
    pub fn authorize_admin(&self, authorization: Option<&str>) -> Result<String, ApiError> {
        let denied = || {
            ApiError::new(
                ProblemType::AdminUnauthorized,
                "a valid admin token is required",
            )
        };
        let result = (|| {
            if self.settings.admins.is_empty() {
                return Err(ApiError::new(
                    ProblemType::AdminUnauthorized,
                    "admin calls are disabled: set server.admins (or server.admin_token_sha256)",
                ));
            }
            let token = authorization
                .and_then(|h| h.strip_prefix("Bearer "))
                .ok_or_else(denied)?;
            crate::server::config::find_credential(
                token,
                self.settings
                    .admins
                    .iter()
                    .map(|(name, d)| (d, name.clone())),
            )
            .ok_or_else(denied)
        })();
        if let Err(err) = &result {
            self.deny("admin", None, None, err);
        }
        result
    }

    /// What an admin action's audit row carries: who acted.
    fn by(admin: &str) -> AuditDecision {
        AuditDecision {
            admin: Some(admin.to_owned()),
            ..AuditDecision::default()
        }
    }

    pub async fn revoke(
        &self,
        req: &RevocationRequest,
        admin: &str,
    ) -> Result<RevocationResult, ApiError> {
        let result = self.revoke_inner(req).await;
        self.audited_decision(
            "revoke",
            req.user.as_deref(),
            req.device_id.as_deref(),
            Some(&Self::by(admin)),
            result,
        )
    }

    async fn revoke_inner(
        &self,
        req: &RevocationRequest,
    ) -> Result<(RevocationResult, String), ApiError> {
        // Mark revoked, close and remove peers as one step against grant
        // creation (see `Broker::enforcement`).
        let _enforcing = self.enforcement.lock().await;
        let now = self.now();
        let reason = if req.reason.trim().is_empty() {
            "revoked by an administrator"
        } else {
            req.reason.trim()
        };
        if req.until_cleared
            && (req.user.is_none() || req.device_id.is_some() || req.grant_id.is_some())
        {
            return Err(ApiError::new(
                ProblemType::InvalidRevocation,
                "until_cleared applies to a user revocation only (a revoked device stays revoked)",
            ));
        }
        let closed = match (&req.device_id, &req.user, &req.grant_id) {
            (Some(device_id), None, None) => {
                let device = self
                    .store
                    .device(device_id)?
                    .ok_or_else(|| ApiError::new(ProblemType::DeviceUnknown, "no such device"))?;
                self.store.revoke_device(device_id, now, reason)?;
                let open = self.store.open_grants_of_device(device_id)?;
                let closed = self.close_grants(open, reason, now).await?;
                self.hub.publish_final(
                    Some(&device.key.user),
                    Some(device_id),
                    Event::DeviceComplianceChange {
                        device_id: device_id.clone(),
                        previous_status: ComplianceStatus::Compliant,
                        current_status: ComplianceStatus::NotCompliant,
                        reason: format!("device revoked: {reason}"),
                    },
                );
                closed
            }
            (None, Some(user), None) => {
                self.store
                    .revoke_user(user, now, reason, req.until_cleared)?;
                let open = self.store.open_grants_of_user(user)?;
                let closed = self.close_grants(open, reason, now).await?;
                self.hub.publish_final(
                    Some(user),
                    None,
                    Event::SessionRevoked {
                        user: user.clone(),
                        reason: reason.to_owned(),
                    },
                );
                closed
            }
            (None, None, Some(grant_id)) => {
                let row = self.store.open_grant(grant_id)?.ok_or_else(|| {
                    ApiError::new(ProblemType::GrantNotFound, "no open grant with this id")
                })?;
                self.close_grants(vec![row], reason, now).await?
            }
            _ => {
                return Err(ApiError::new(
                    ProblemType::InvalidRevocation,
                    "name exactly one of device_id, user, grant_id",
                ));
            }
        };
        let hold = if req.until_cleared {
            "; refused until cleared"
        } else {
            ""
        };
        let why = format!("{reason}{hold}; closed {} grant(s)", closed.len());
        Ok((
            RevocationResult {
                grants_closed: closed,
            },
            why,
        ))
    }

    /// `POST /v1/admin/policy/reload`. On a change, every open grant
    /// decided under another policy is closed and its peer removed before
    /// the reply, then every stream hears `policy-changed`.
    ///
    /// Why close them all rather than re-evaluate each device: the broker
    /// keeps no posture reports, only verdicts, and a report up to a verdict
    /// lifetime old is not what the device looks like now. Closing is
    /// simple, cannot keep a grant the new policy would refuse, and costs an
    /// agent one attestation and one grant request (it reacts to the
    /// `grant-revoked` and `policy-changed` events at once).
    pub async fn reload_policy(&self, admin: &str) -> Result<PolicyDocument, ApiError> {
        let result = async {
            let loaded = LoadedPolicy::load(&self.settings)
                .map_err(|e| ApiError::new(ProblemType::PolicyError, e.to_string()))?;
            // Swap and close as one step against grant creation (see
            // `Broker::enforcement`): no grant can be decided under the old
            // policy once the swap is visible, and none decided before
            // survives the close.
            let _enforcing = self.enforcement.lock().await;
            let (changed, access_changed) = {
                let mut current = self.policy.write().unwrap_or_else(PoisonError::into_inner);
                let changed = current.digest != loaded.digest;
                let access_changed = current.access.digest != loaded.access.digest;
                *current = Arc::new(loaded);
                (changed, access_changed)
            };
            let doc = self.policy_document();
            let stale = self.store.open_grants_not_under(&doc.digest)?;
            let closed = self
                .close_grants(
                    stale,
                    "the access policy changed; this device must be verified again",
                    self.now(),
                )
                .await?;
            // A new access policy judges the open grants again on what they
            // were allowed on; those it refuses close now.
            let reassessed = if access_changed {
                self.reassess_all_grants(self.now()).await?
            } else {
                0
            };
            if access_changed {
                self.hub.publish(
                    None,
                    None,
                    Event::AccessPolicyChanged {
                        digest: self.policy().access.digest.clone(),
                    },
                );
            }
            if changed {
                self.hub.publish(
                    None,
                    None,
                    Event::PolicyChanged {
                        digest: doc.digest.clone(),
                    },
                );
            }
            let why = match (changed, access_changed) {
                (false, false) => "policy unchanged".into(),
                _ => format!(
                    "posture policy {}, access policy {}; closed {} grant(s)",
                    doc.digest,
                    self.policy().access.digest,
                    closed.len() + reassessed
                ),
            };
            Ok((doc, why))
        }
        .await;
        self.audited_decision("policy-reload", None, None, Some(&Self::by(admin)), result)
    }

    /// `POST /v1/admin/revocations/clear`: a cleared user may enrol new
    /// devices again (tokens issued before the revocation stay refused); a
    /// cleared device is forgotten with its verdicts, so its key can enrol
    /// afresh through the enrolment mode (pending again under `approval`).
    pub fn clear_revocation(
        &self,
        req: &RevocationClearRequest,
        admin: &str,
    ) -> Result<RevocationClearResult, ApiError> {
        let result = (|| {
            let note = if req.reason.trim().is_empty() {
                String::new()
            } else {
                format!(": {}", req.reason.trim())
            };
            match (&req.device_id, &req.user) {
                (Some(device_id), None) => {
                    let cleared =
                        self.store
                            .forget_revoked_device(device_id)?
                            .ok_or_else(|| {
                                ApiError::new(ProblemType::DeviceUnknown, "no such device")
                            })?;
                    let why = if cleared {
                        format!("device revocation cleared; the device was forgotten{note}")
                    } else {
                        "the device is not revoked; nothing to clear".to_owned()
                    };
                    Ok((RevocationClearResult { cleared }, why))
                }
                (None, Some(user)) => {
                    let cleared = self.store.clear_user_revocation(user, self.now())?;
                    let why = if cleared {
                        format!("user revocation cleared; enrolment allowed again{note}")
                    } else {
                        "the user has no revocation in force; nothing to clear".to_owned()
                    };
                    Ok((RevocationClearResult { cleared }, why))
                }
                _ => Err(ApiError::new(
                    ProblemType::InvalidRevocation,
                    "name exactly one of device_id, user",
                )),
            }
        })();
        self.audited_decision(
            "revocation-clear",
            req.user.as_deref(),
            req.device_id.as_deref(),
            Some(&Self::by(admin)),
            result,
        )
    }

    /// `GET /v1/admin/audit`.
    pub fn audit_recent(&self, limit: u32) -> Result<Vec<api::AuditEntry>, ApiError> {
        Ok(self.store.audit_recent(limit.clamp(1, 10_000))?)
    }

    /// `GET /v1/admin/audit?after=SEQ`: the entries after a cursor, oldest first.
    pub fn audit_since(&self, after: i64, limit: u32) -> Result<Vec<api::AuditEntry>, ApiError> {
        Ok(self.store.audit_since(after, limit.clamp(1, 10_000))?)
    }

    /// `GET /v1/admin/gateway/peers`.
    pub fn gateway_peers(&self) -> Vec<GatewayPeer> {
        self.gateway
            .status()
            .peers
            .into_iter()
            .map(|p| GatewayPeer {
                public_key: p.public_key.to_string(),
                client_address: p.client_address.to_string(),
                expires_in_seconds: p.expires_in.as_secs(),
                bytes_in: p.bytes_in,
                bytes_out: p.bytes_out,
            })
            .collect()
    }
}
