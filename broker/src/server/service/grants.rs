//! Grants: opening one (`POST /v1/grants`) installs a peer at the gateway,
//! closing, revoking or expiring one removes it. The store is written first
//! so a restart never resurrects a grant the API already called closed; at
//! start, [`Broker::restore`] reinstalls the open ones. The pure decisions
//! (may it open, until when, which address) are in [`crate::server::grants`].

use std::collections::HashSet;
use std::net::IpAddr;

use tunnel::PeerGrant;

use super::{ApiError, Broker, datetime};
use crate::api::{Event, GatewayInfo, Grant, GrantRequest, Problem, ProblemType};
use crate::server::grants::allocate;
use crate::server::store::{AuditDecision, GrantRow, NewAudit, StoreError, Taken};

/// How often a grant picks another address when replicas race for one.
const ADDRESS_ATTEMPTS: usize = 8;

use super::DeviceCaller;
use super::remote_gateways::sync_peer;

impl Broker {
    /// `POST /v1/grants`.
    pub async fn open_grant(
        &self,
        caller: &DeviceCaller,
        req: &GrantRequest,
    ) -> Result<Grant, ApiError> {
        let mut record = None;
        let result = self.open_grant_inner(caller, req, &mut record).await;
        let Ok((grant, reason)) = result else {
            return self.audited_decision(
                "grant",
                Some(&caller.user.sub),
                Some(&req.device_id),
                record.as_ref(),
                result,
            );
        };
        // Fail closed: a tunnel must not open unrecorded. When the allow row
        // cannot be written, the grant is closed and its peer removed again
        // before the caller hears anything.
        let audited = self.try_audit(NewAudit {
            action: "grant",
            outcome: "allow",
            user: Some(&caller.user.sub),
            device_id: Some(&req.device_id),
            problem: None,
            reason: &reason,
            decision: record.as_ref(),
        });
        if let Err(refused) = audited {
            if let Some(row) = self.store.open_grant(&grant.id)? {
                self.remove(&row, "the decision could not be audited", self.now())
                    .await?;
            }
            return Err(refused);
        }
        Ok(grant)
    }

    /// The grant, decided and opened; `record` receives what decided it
    /// (once the access policy was asked) for the audit row.
    async fn open_grant_inner(
        &self,
        caller: &DeviceCaller,
        req: &GrantRequest,
        record: &mut Option<AuditDecision>,
    ) -> Result<(Grant, String), ApiError> {
        let user = &caller.user;
        let now = self.now();
        let (app, targets) = self
            .settings
            .apps
            .iter()
            .find(|(a, _)| a.id == req.app)
            .ok_or_else(|| {
                ApiError::new(
                    ProblemType::UnknownApp,
                    format!("no application {:?} in the catalogue", req.app),
                )
            })?;
        let wg_key = tunnel::PublicKey::from_base64(&req.wireguard_public_key)
            .map_err(|e| ApiError::new(ProblemType::InvalidWireguardKey, e.to_string()))?;
        crate::server::wgkey::check_contributory(wg_key.as_bytes(), &self.rng)
            .map_err(|e| ApiError::new(ProblemType::InvalidWireguardKey, e.to_string()))?;
        // Everything from here to the peer being added is decided and done
        // under the enforcement lock, on facts read under it (see
        // `Broker::enforcement`): a revocation or policy reload either ran
        // before (and the re-checks below refuse) or runs after (and closes
        // this grant).
        let _enforcing = self.enforcement.lock().await;
        // The token was accepted before a revocation may have been recorded.
        self.session_standing(user)?;
        self.check_grant_quota(&user.sub)?;
        let device = self.store.device(&req.device_id)?.ok_or_else(|| {
            ApiError::new(ProblemType::DeviceUnknown, "this device is not enrolled")
        })?;
        if device.key.user != user.sub {
            return Err(ApiError::new(
                ProblemType::DeviceUserMismatch,
                "the device is enrolled for another user",
            ));
        }
        if device.key.revoked {
            return Err(ApiError::new(
                ProblemType::DeviceRevoked,
                "the device was revoked",
            ));
        }
        // The device key signed this very request for this very tunnel key:
        // a captured proof opens nothing for another device or WireGuard key.
        if device.key.device_id != caller.device_id {
            return Err(ApiError::new(
                ProblemType::InvalidDpopProof,
                "the DPoP proof was made by another device than the one named",
            ));
        }
        let bound = caller
            .proof
            .wg_pub
            .as_deref()
            .and_then(|k| tunnel::PublicKey::from_base64(k).ok());
        if bound.as_ref().map(ToString::to_string) != Some(wg_key.to_string()) {
            return Err(ApiError::new(
                ProblemType::InvalidDpopProof,
                "the DPoP proof does not bind this WireGuard key (wg_pub)",
            ));
        }
        if device.pending {
            return Err(ApiError::new(
                ProblemType::DevicePendingApproval,
                "this device is waiting for an administrator's approval",
            ));
        }
        let verdict = self
            .store
            .latest_verdict(&req.device_id)?
            .filter(|v| v.user == user.sub);
        let policy_digest = self.policy().digest.clone();
        // The verdict's floor, then the access policy (`sallyport.access`).
        let assessment = self.assess(caller, &device, verdict.as_ref(), app, now)?;
        *record = Some(assessment.record.clone());
        let judgement = assessment.outcome.map_err(|r| ApiError {
            problem: Box::new(Problem {
                violations: r.violations,
                ..Problem::new(r.kind, r.detail)
            }),
            device_id: None,
        })?;
        if let Some(kind) = judgement.refusal {
            let detail = judgement
                .decision
                .reasons
                .iter()
                .map(|r| r.message.as_str())
                .collect::<Vec<_>>()
                .join(" ");
            return Err(ApiError {
                problem: Box::new(Problem {
                    access: Some(judgement.decision),
                    ..Problem::new(kind, detail)
                }),
                device_id: None,
            });
        }
        let Some(expires_at) = judgement.expires_at else {
            return Err(ApiError::new(
                ProblemType::Internal,
                "the access decision allowed the grant without an expiry",
            ));
        };
        let remote = self.pick_gateway(app)?;
        let key_text = wg_key.to_string();
        if self.store.key_in_use(&key_text)? {
            return Err(ApiError::new(
                ProblemType::WireguardKeyInUse,
                "this WireGuard key already has an open grant; use a fresh key per tunnel",
            ));
        }
        let mut row = GrantRow {
            id: self.random_b64(16)?,
            device_id: req.device_id.clone(),
            user: user.sub.clone(),
            app: app.id.clone(),
            wg_public_key: key_text,
            client_address: std::net::Ipv4Addr::UNSPECIFIED,
            targets: targets.iter().map(ToString::to_string).collect(),
            created_at: now,
            expires_at,
            policy_digest,
            ends_reason: judgement.ends.as_ref().map(|e| e.reason.clone()),
            reopens_at: judgement
                .ends
                .as_ref()
                .and_then(|e| e.reopens_at)
                .map(time::OffsetDateTime::unix_timestamp),
            access_input: Some(assessment.input.to_string()),
            gateway: remote.as_ref().map(|g| g.id.clone()),
        };
        self.insert_with_address(&mut row)?;
        let address = row.client_address;
        let gateway = match &remote {
            // A separate gateway gets the peer through its sync stream. The
            // answer does not wait for it: on a working link the peer is
            // there before the agent's first handshake, and a handshake
            // that comes first is retried by WireGuard.
            Some(remote) => {
                self.hub.peer_added(&remote.id, sync_peer(&row));
                GatewayInfo {
                    endpoint: remote.endpoint.clone(),
                    public_key: remote.public_key.to_string(),
                    id: Some(remote.id.clone()),
                }
            }
            None => {
                let peer = PeerGrant {
                    public_key: wg_key,
                    client_address: IpAddr::V4(address),
                    targets: targets.clone(),
                    expires_at: self.gateway_expiry(expires_at),
                };
                if let Err(e) = self.gateway.add_peer(peer).await {
                    self.store
                        .close_grant(&row.id, now, "the gateway refused the peer")?;
                    return Err(ApiError::new(
                        ProblemType::Internal,
                        format!("the gateway refused the peer: {e}"),
                    ));
                }
                GatewayInfo {
                    endpoint: self.gateway_endpoint.clone(),
                    public_key: self.gateway.public_key().to_string(),
                    id: None,
                }
            }
        };
        if let Err(refusal) = self.still_stands(caller, &row) {
            self.remove(&row, "what it was granted on changed meanwhile", now)
                .await?;
            return Err(refusal);
        }
        let grant = Grant {
            id: row.id.clone(),
            app: row.app.clone(),
            gateway,
            client_address: address.to_string(),
            targets: row.targets.clone(),
            expires_at: datetime(expires_at),
            ends: judgement.ends,
        };
        // Only an allowed grant soon after a multi-factor sign-in teaches
        // the broker a network (`[access] known_network_mfa_seconds`).
        if assessment.learns_network {
            self.store
                .remember_network(&user.sub, &assessment.network, now)?;
        }
        let reason = format!("grant {} for {} until {}", row.id, row.app, expires_at);
        Ok((grant, reason))
    }

    /// Reads again, once `row` is stored, what another replica's closing
    /// operation writes before it lists the grants to close: a session or
    /// device revocation, a verdict. The enforcement lock orders a grant
    /// against closings in this process only; across replicas, a closing
    /// that listed the open grants before this one was inserted wrote its
    /// fact before that listing, so this read sees it, and the grant is
    /// closed here instead of outliving the revocation.
    fn still_stands(&self, caller: &DeviceCaller, row: &GrantRow) -> Result<(), ApiError> {
        self.stream_standing_inner(&caller.user, &row.device_id)?;
        let verdict = self
            .store
            .latest_verdict(&row.device_id)?
            .filter(|v| v.user == caller.user.sub);
        match verdict {
            Some(v) if !v.verdict.compliant => Err(ApiError::new(
                ProblemType::DeviceNotCompliant,
                "the device stopped meeting the policy while the grant was being opened",
            )),
            Some(v) if v.verdict.policy_digest == row.policy_digest => Ok(()),
            _ => Err(ApiError::new(
                ProblemType::VerdictStalePolicy,
                "the policy changed while the grant was being opened: attest again",
            )),
        }
    }

    /// Picks a free tunnel address for `row` and stores it. The database's
    /// unique index on open grants' addresses decides between replicas: when
    /// another broker took the address between the read and the insert,
    /// the next free one is tried (a bounded number of times).
    fn insert_with_address(&self, row: &mut GrantRow) -> Result<(), ApiError> {
        for _ in 0..ADDRESS_ATTEMPTS {
            let used: HashSet<_> = self.store.used_addresses()?;
            row.client_address = allocate(&self.settings.network, &used).ok_or_else(|| {
                ApiError::new(
                    ProblemType::AddressPoolExhausted,
                    "every tunnel address is in use",
                )
            })?;
            match self.store.insert_grant(row) {
                Ok(()) => return Ok(()),
                Err(StoreError::Taken(Taken::Address)) => continue,
                Err(StoreError::Taken(Taken::Key)) => {
                    return Err(ApiError::new(
                        ProblemType::WireguardKeyInUse,
                        "this WireGuard key already has an open grant; use a fresh key per tunnel",
                    ));
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(ApiError::new(
            ProblemType::Internal,
            "tunnel addresses were taken by other broker replicas as fast as they were picked; try again",
        ))
    }

    /// `DELETE /v1/grants/{id}`.
    pub async fn close_grant(&self, caller: &DeviceCaller, id: &str) -> Result<(), ApiError> {
        let user = &caller.user;
        let result = async {
            // Only the device that holds a grant closes it.
            let row = self
                .store
                .open_grant(id)?
                .filter(|g| g.user == user.sub && g.device_id == caller.device_id)
                .ok_or_else(|| {
                    ApiError::new(ProblemType::GrantNotFound, "no open grant with this id")
                })?;
            let device = row.device_id.clone();
            self.remove(&row, "closed by the client", self.now())
                .await?;
            Ok(((), format!("grant {id} closed by the client on {device}")))
        }
        .await;
        self.audited("grant-close", Some(&user.sub), None, result)
    }

    /// Closes a grant in the store, then removes its peer at the gateway.
    pub(super) async fn remove(
        &self,
        row: &GrantRow,
        reason: &str,
        now: i64,
    ) -> Result<bool, ApiError> {
        // Store first: once the reply says "closed", a restart cannot bring it back.
        let closed = self.store.close_grant(&row.id, now, reason)?;
        // The peer may be at another replica's gateway.
        self.hub.peer_gone(&row.wg_public_key);
        if let Ok(key) = tunnel::PublicKey::from_base64(&row.wg_public_key) {
            self.gateway
                .remove_peer(key)
                .await
                .map_err(|e| ApiError::new(ProblemType::Internal, format!("gateway: {e}")))?;
        }
        Ok(closed)
    }

    /// Closes `rows`, removes their peers, tells their devices.
    pub(super) async fn close_grants(
        &self,
        rows: Vec<GrantRow>,
        reason: &str,
        now: i64,
    ) -> Result<Vec<String>, ApiError> {
        let mut closed = Vec::new();
        for row in rows {
            self.remove(&row, reason, now).await?;
            self.hub.publish(
                Some(&row.user),
                Some(&row.device_id),
                Event::GrantRevoked {
                    grant_id: row.id.clone(),
                    device_id: row.device_id.clone(),
                    reason: reason.to_owned(),
                },
            );
            self.audit(NewAudit {
                action: "grant-revoke",
                outcome: "deny",
                user: Some(&row.user),
                device_id: Some(&row.device_id),
                problem: None,
                reason: &format!("grant {} closed: {reason}", row.id),
                decision: None,
            });
            closed.push(row.id);
        }
        Ok(closed)
    }

    /// Closes grants whose time is up on the broker's clock, removes their
    /// peers and tells their devices. On the system clock the gateway has
    /// dropped those peers on its own at the same instant and this keeps the
    /// store and the agents in step; on a clock moved by hand (or after a
    /// forward jump) this is what ends the peer.
    pub async fn expire_due(&self) -> Result<usize, ApiError> {
        let now = self.now();
        let due = self.store.expire_grants(now)?;
        for row in &due {
            self.hub.peer_gone(&row.wg_public_key);
            if let Ok(key) = tunnel::PublicKey::from_base64(&row.wg_public_key) {
                let _ = self.gateway.remove_peer(key).await;
            }
            self.hub.publish(
                Some(&row.user),
                Some(&row.device_id),
                Event::GrantRevoked {
                    grant_id: row.id.clone(),
                    device_id: row.device_id.clone(),
                    reason: row.ends_reason.clone().unwrap_or_else(|| "expired".into()),
                },
            );
            self.audit(NewAudit {
                action: "grant-expire",
                outcome: "deny",
                user: Some(&row.user),
                device_id: Some(&row.device_id),
                problem: None,
                reason: &match &row.ends_reason {
                    Some(why) => format!("grant {} ended: {why}", row.id),
                    None => format!("grant {} expired", row.id),
                },
                decision: None,
            });
        }
        Ok(due.len())
    }

    /// At start: close what expired while the broker was down, and install
    /// every still-open grant at the gateway again.
    pub async fn restore(&self) -> Result<usize, ApiError> {
        self.expire_due().await?;
        // Grants decided under a policy that is no longer the one loaded
        // (the file changed while the broker was down) are not reinstalled:
        // their agents attest again under the policy in force.
        let digest = self.policy().digest.clone();
        for row in self.store.open_grants_not_under(&digest)? {
            self.store.close_grant(
                &row.id,
                self.now(),
                "the policy changed while the broker was down",
            )?;
        }
        let open = self.store.open_grants()?;
        let mut restored = 0;
        // Grants at separate gateways are theirs to hold: each gateway's
        // sync stream sends them its full set when it (re)connects.
        for row in open.into_iter().filter(|row| row.gateway.is_none()) {
            let targets: Vec<tunnel::Target> =
                row.targets.iter().filter_map(|t| t.parse().ok()).collect();
            let peer = tunnel::PublicKey::from_base64(&row.wg_public_key).map(|key| PeerGrant {
                public_key: key,
                client_address: IpAddr::V4(row.client_address),
                targets,
                expires_at: self.gateway_expiry(row.expires_at),
            });
            let added = match peer {
                Ok(peer) => self.gateway.add_peer(peer).await.is_ok(),
                Err(_) => false,
            };
            if added {
                restored += 1;
            } else {
                self.store
                    .close_grant(&row.id, self.now(), "could not be restored at start")?;
            }
        }
        Ok(restored)
    }
}
