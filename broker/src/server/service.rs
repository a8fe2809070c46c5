//! The broker's operations: each call of the API as one method that takes
//! plain values and returns a value or a problem. The pure decisions live in
//! [`super::eat`], [`super::token`] and [`super::grants`]; this layer wires
//! them to the store, the gateway and the event hub, and writes the audit log
//! entry of every decision.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use posture::attestation::MAX_EAT_LIFETIME_SECS;
use ring::rand::{SecureRandom, SystemRandom};
use time::OffsetDateTime;
use tokio::sync::broadcast;
use tunnel::{GatewayHandle, PeerGrant};

use super::config::{Settings, to_hex};
use super::eat::{self, EnrolledKey, Expectations};
use super::events::{Hub, Routed};
use super::grants;
use super::store::{Enrolment, GrantRow, NewAudit, Store, StoreError};
use super::token::{self, AccessClaims, JwksCache, Rules};
use crate::api::{
    self, AttestationRequest, BrokerConfig, Challenge, ComplianceStatus, Device, EnrolRequest,
    Event, GatewayInfo, GatewayPeer, Grant, GrantRequest, PolicyDocument, Problem, ProblemType,
    RevocationRequest, RevocationResult, Verdict,
};
use posture::policy::Policy;

/// How long a challenge nonce is good for.
pub const NONCE_TTL_SECS: i64 = 60;

/// A refusal: the problem document the API answers with, plus what the audit
/// log needs to know about whom it concerned.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The reply (boxed: errors travel through every `Result` here).
    pub problem: Box<Problem>,
    /// The device it concerned, when known.
    pub device_id: Option<String>,
}

impl ApiError {
    /// A problem of `kind`.
    pub fn new(kind: ProblemType, detail: impl Into<String>) -> Self {
        Self {
            problem: Box::new(Problem::new(kind, detail)),
            device_id: None,
        }
    }

    fn device(mut self, device_id: &str) -> Self {
        self.device_id = Some(device_id.to_owned());
        self
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "storage failure");
        ApiError::new(
            ProblemType::Internal,
            "the broker's database failed; try again",
        )
    }
}

/// The policy in force.
#[derive(Debug)]
pub struct LoadedPolicy {
    /// Compiled to regorus' bytecode VM once, at load.
    pub policy: Policy,
    /// SHA-256 hex of the source.
    pub digest: String,
    /// File name.
    pub name: String,
    /// Source.
    pub source: String,
}

impl LoadedPolicy {
    /// Compiles `source`.
    pub fn new(name: &str, source: String) -> Result<Self, posture::policy::PolicyError> {
        Ok(Self {
            policy: Policy::from_source(name, &source)?,
            digest: to_hex(ring::digest::digest(&ring::digest::SHA256, source.as_bytes()).as_ref()),
            name: name.to_owned(),
            source,
        })
    }

    /// From the configured file, or the built-in default.
    pub fn load(settings: &Settings) -> Result<Self, StartError> {
        match &settings.raw.attestation.policy {
            None => Ok(Self::new(
                "default.rego",
                posture::policy::DEFAULT_POLICY.to_owned(),
            )?),
            Some(path) => {
                let source = std::fs::read_to_string(path).map_err(|e| {
                    StartError::Policy(format!("cannot read {}: {e}", path.display()))
                })?;
                Ok(Self::new(&path.display().to_string(), source)?)
            }
        }
    }
}

/// Why the broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Storage.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Policy.
    #[error("policy: {0}")]
    Policy(String),
    /// Gateway.
    #[error(transparent)]
    Gateway(#[from] tunnel::GatewayError),
    /// Listening socket or TLS.
    #[error("{0}")]
    Listen(String),
}

impl From<posture::policy::PolicyError> for StartError {
    fn from(e: posture::policy::PolicyError) -> Self {
        StartError::Policy(e.to_string())
    }
}

/// Everything a request handler needs.
#[derive(Debug)]
pub struct Broker {
    settings: Settings,
    store: Store,
    policy: RwLock<Arc<LoadedPolicy>>,
    jwks: JwksCache,
    rules: Rules,
    gateway: GatewayHandle,
    gateway_endpoint: String,
    hub: Hub,
    grant_lock: tokio::sync::Mutex<()>,
    rng: SystemRandom,
}

/// Unix seconds now.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn datetime(unix: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(unix).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn system_time(unix: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::try_from(unix).unwrap_or(0))
}

impl Broker {
    /// Assembles the broker (the gateway is already running).
    pub fn new(
        settings: Settings,
        store: Store,
        policy: LoadedPolicy,
        gateway: GatewayHandle,
        http: reqwest::Client,
    ) -> Self {
        let gateway_endpoint = match &settings.raw.gateway.endpoint {
            Some(e) if !e.is_empty() => e.clone(),
            _ => gateway.local_addr().to_string(),
        };
        Self {
            jwks: JwksCache::new(&settings.raw.oidc.issuer, http),
            rules: Rules {
                issuer: settings.raw.oidc.issuer.clone(),
                audience: settings.raw.oidc.audience.clone(),
                skew: settings.skew,
            },
            settings,
            store,
            policy: RwLock::new(Arc::new(policy)),
            gateway,
            gateway_endpoint,
            hub: Hub::new(),
            grant_lock: tokio::sync::Mutex::new(()),
            rng: SystemRandom::new(),
        }
    }

    /// Takes the broker apart for shutdown.
    pub fn into_parts(self) -> (GatewayHandle, Store) {
        (self.gateway, self.store)
    }

    /// The gateway (for status and shutdown).
    pub fn gateway(&self) -> &GatewayHandle {
        &self.gateway
    }

    fn policy(&self) -> Arc<LoadedPolicy> {
        self.policy
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn random_b64(&self, bytes: usize) -> Result<String, ApiError> {
        let mut buf = vec![0u8; bytes];
        self.rng
            .fill(&mut buf)
            .map_err(|_| ApiError::new(ProblemType::Internal, "no randomness available"))?;
        Ok(B64URL.encode(buf))
    }

    /// Writes an audit entry; a failure to audit is logged, never silent.
    pub fn audit(&self, entry: NewAudit<'_>) {
        if let Err(e) = self.store.audit(&entry, unix_now()) {
            tracing::error!(error = %e, action = entry.action, "cannot write the audit log");
        }
    }

    /// Audits the result of `action` and passes it through.
    fn audited<T>(
        &self,
        action: &str,
        user: Option<&str>,
        device_id: Option<&str>,
        result: Result<(T, String), ApiError>,
    ) -> Result<T, ApiError> {
        match result {
            Ok((value, reason)) => {
                self.audit(NewAudit {
                    action,
                    outcome: "allow",
                    user,
                    device_id,
                    problem: None,
                    reason: &reason,
                });
                Ok(value)
            }
            Err(err) => {
                self.deny(action, user, device_id, &err);
                Err(err)
            }
        }
    }

    /// Audits a refusal.
    pub fn deny(&self, action: &str, user: Option<&str>, device_id: Option<&str>, err: &ApiError) {
        let slug = err.problem.kind().map(ProblemType::slug);
        self.audit(NewAudit {
            action,
            outcome: "deny",
            user,
            device_id: err.device_id.as_deref().or(device_id),
            problem: slug,
            reason: &err.problem.detail,
        });
    }

    // ---- identity ----

    /// Validates the `Authorization` header's Bearer access token.
    pub async fn authenticate(
        &self,
        authorization: Option<&str>,
    ) -> Result<AccessClaims, ApiError> {
        let result = self.authenticate_inner(authorization).await;
        if let Err(err) = &result {
            self.deny("authenticate", None, None, err);
        }
        result
    }

    async fn authenticate_inner(
        &self,
        authorization: Option<&str>,
    ) -> Result<AccessClaims, ApiError> {
        let token = authorization
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::new(
                    ProblemType::TokenMissing,
                    "send Authorization: Bearer <access token>",
                )
            })?;
        let claims = self
            .jwks
            .validate(token, &self.rules, unix_now())
            .await
            .map_err(|e: token::TokenError| ApiError::new(e.problem(), e.to_string()))?;
        if let Some(revoked_at) = self.store.user_revoked_at(&claims.sub)?
            && claims.iat <= revoked_at
        {
            return Err(ApiError::new(
                ProblemType::SessionRevoked,
                "this session was revoked by an administrator; sign in again",
            ));
        }
        Ok(claims)
    }

    /// Checks the admin bearer token (constant-time over SHA-256 digests).
    pub fn authorize_admin(&self, authorization: Option<&str>) -> Result<(), ApiError> {
        let denied = || {
            ApiError::new(
                ProblemType::AdminUnauthorized,
                "a valid admin token is required",
            )
        };
        let expected = self.settings.admin_token_sha256.ok_or_else(|| {
            ApiError::new(
                ProblemType::AdminUnauthorized,
                "admin calls are disabled: set server.admin_token_sha256",
            )
        });
        let result = expected.and_then(|expected| {
            let token = authorization
                .and_then(|h| h.strip_prefix("Bearer "))
                .ok_or_else(denied)?;
            let got = ring::digest::digest(&ring::digest::SHA256, token.trim().as_bytes());
            let diff = got
                .as_ref()
                .iter()
                .zip(expected.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b));
            if diff == 0 { Ok(()) } else { Err(denied()) }
        });
        if let Err(err) = &result {
            self.deny("admin", None, None, err);
        }
        result
    }

    // ---- calls ----

    /// `GET /v1/config`.
    pub fn config(&self) -> BrokerConfig {
        let oidc = &self.settings.raw.oidc;
        BrokerConfig {
            issuer: oidc.issuer.clone(),
            client_id: oidc.client_id.clone(),
            audience: oidc.audience.clone(),
            required_acr: oidc.required_acr.clone(),
            policy_digest: self.policy().digest.clone(),
            verdict_ttl_seconds: self.settings.verdict_ttl.as_secs(),
            apps: self
                .settings
                .apps
                .iter()
                .map(|(a, _)| api::App {
                    id: a.id.clone(),
                    name: a.name.clone(),
                    targets: a.targets.clone(),
                })
                .collect(),
        }
    }

    /// `GET /v1/policy`.
    pub fn policy_document(&self) -> PolicyDocument {
        let p = self.policy();
        PolicyDocument {
            digest: p.digest.clone(),
            name: p.name.clone(),
            rego: p.source.clone(),
        }
    }

    /// `POST /v1/devices`. Returns whether the device is new.
    pub fn enrol(
        &self,
        user: &AccessClaims,
        req: &EnrolRequest,
    ) -> Result<(bool, Device), ApiError> {
        let device_id = req.public_jwk.thumbprint();
        let result = (|| {
            let sec1 = req
                .public_jwk
                .to_sec1()
                .map_err(|e| ApiError::new(ProblemType::InvalidDeviceKey, e.to_string()))?;
            let key = EnrolledKey {
                device_id: device_id.clone(),
                user: user.sub.clone(),
                sec1: sec1.to_vec(),
                ueid: req.public_jwk.ueid(),
                revoked: false,
            };
            let jwk = serde_json::to_string(&req.public_jwk).unwrap_or_default();
            let name = req.name.as_deref().map(|n| &n[..n.len().min(200)]);
            let (created, row) = match self.store.enrol(&key, &jwk, name, unix_now())? {
                Enrolment::Created(row) => (true, row),
                Enrolment::Existing(row) => (false, row),
                Enrolment::Conflict => {
                    return Err(ApiError::new(
                        ProblemType::DeviceKeyConflict,
                        "this key is already enrolled for another user",
                    ));
                }
            };
            if row.key.revoked {
                return Err(ApiError::new(
                    ProblemType::DeviceRevoked,
                    "this device key was revoked; generate a new key and enrol it",
                ));
            }
            let device = Device {
                device_id: row.key.device_id.clone(),
                ueid: row.key.ueid.clone(),
                user: row.key.user.clone(),
                enrolled_at: datetime(row.enrolled_at),
            };
            let why = if created {
                "enrolled"
            } else {
                "already enrolled"
            };
            Ok(((created, device), why.to_owned()))
        })();
        self.audited("enrol", Some(&user.sub), Some(&device_id), result)
    }

    /// `POST /v1/attestations/challenge`.
    pub fn challenge(&self, user: &AccessClaims) -> Result<Challenge, ApiError> {
        let now = unix_now();
        let nonce = self.random_b64(32)?;
        self.store
            .issue_nonce(&nonce, &user.sub, now, now + NONCE_TTL_SECS)?;
        Ok(Challenge {
            nonce,
            expires_at: datetime(now + NONCE_TTL_SECS),
        })
    }

    /// `POST /v1/attestations` minus the audit: verify the EAT, consume the
    /// nonce (only after the signature and claims passed), evaluate, record.
    async fn attest_inner(
        &self,
        user: &AccessClaims,
        req: &AttestationRequest,
    ) -> Result<(Verdict, String), ApiError> {
        let now = unix_now();
        let parsed = eat::parse(&req.eat).map_err(|e| ApiError::new(e.problem(), e.to_string()))?;
        let device = self.store.device(&parsed.kid)?.ok_or_else(|| {
            ApiError::new(
                ProblemType::DeviceUnknown,
                format!("no device is enrolled with kid {}", parsed.kid),
            )
            .device(&parsed.kid)
        })?;
        let device_id = device.key.device_id.clone();
        let expect = Expectations {
            audience: &self.settings.raw.oidc.audience,
            caller: &user.sub,
            now,
            skew: self.settings.skew,
            max_lifetime: MAX_EAT_LIFETIME_SECS,
        };
        let claims = eat::verify_claims(&parsed, &device.key, &expect)
            .map_err(|e| ApiError::new(e.problem(), e.to_string()).device(&device_id))?;
        let answer = self
            .store
            .consume_nonce(&claims.eat_nonce, &user.sub, now)?;
        eat::check_nonce(answer)
            .map_err(|e| ApiError::new(e.problem(), e.to_string()).device(&device_id))?;
        let policy = self.policy();
        let evaluation = policy.policy.evaluate(&claims.posture).map_err(|e| {
            ApiError::new(ProblemType::PolicyError, e.to_string()).device(&device_id)
        })?;
        let valid_until = now + i64::try_from(self.settings.verdict_ttl.as_secs()).unwrap_or(900);
        let previous = self.store.latest_verdict(&device_id)?;
        self.store.insert_verdict(
            &device_id,
            &user.sub,
            evaluation.compliant,
            &evaluation.violations,
            now,
            valid_until,
            &policy.digest,
        )?;
        let was_compliant = previous.as_ref().map(|p| p.verdict.compliant);
        let status = |c: bool| {
            if c {
                ComplianceStatus::Compliant
            } else {
                ComplianceStatus::NotCompliant
            }
        };
        if !evaluation.compliant {
            // Enforcement: a device that stops complying loses its tunnels now,
            // not when their grants expire.
            let open = self.store.open_grants_of_device(&device_id)?;
            self.close_grants(open, "the device no longer meets the policy", now)
                .await?;
        }
        if let Some(prev) = was_compliant
            && prev != evaluation.compliant
        {
            self.hub.publish(
                Some(&user.sub),
                Some(&device_id),
                Event::DeviceComplianceChange {
                    device_id: device_id.clone(),
                    previous_status: status(prev),
                    current_status: status(evaluation.compliant),
                    reason: "new attestation".into(),
                },
            );
        }
        let reason = if evaluation.compliant {
            "attestation verified; compliant".to_owned()
        } else {
            let checks: Vec<&str> = evaluation
                .violations
                .iter()
                .map(|v| v.check.as_str())
                .collect();
            format!("attestation verified; not compliant: {}", checks.join(", "))
        };
        Ok((
            Verdict {
                device_id,
                compliant: evaluation.compliant,
                violations: evaluation.violations,
                evaluated_at: datetime(now),
                valid_until: datetime(valid_until),
                policy_digest: policy.digest.clone(),
            },
            reason,
        ))
    }

    /// `POST /v1/attestations`.
    pub async fn attest(
        &self,
        user: &AccessClaims,
        req: &AttestationRequest,
    ) -> Result<Verdict, ApiError> {
        match self.attest_inner(user, req).await {
            Ok((verdict, reason)) => {
                self.audit(NewAudit {
                    action: "attest",
                    outcome: if verdict.compliant { "allow" } else { "deny" },
                    user: Some(&user.sub),
                    device_id: Some(&verdict.device_id),
                    problem: (!verdict.compliant).then_some(ProblemType::DeviceNotCompliant.slug()),
                    reason: &reason,
                });
                Ok(verdict)
            }
            Err(err) => {
                self.deny("attest", Some(&user.sub), None, &err);
                Err(err)
            }
        }
    }

    /// `POST /v1/grants`.
    pub async fn open_grant(
        &self,
        user: &AccessClaims,
        req: &GrantRequest,
    ) -> Result<Grant, ApiError> {
        let result = self.open_grant_inner(user, req).await;
        self.audited("grant", Some(&user.sub), Some(&req.device_id), result)
    }

    async fn open_grant_inner(
        &self,
        user: &AccessClaims,
        req: &GrantRequest,
    ) -> Result<(Grant, String), ApiError> {
        let now = unix_now();
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
        let verdict = self
            .store
            .latest_verdict(&req.device_id)?
            .filter(|v| v.user == user.sub)
            .map(|v| v.verdict);
        let max = i64::try_from(self.settings.max_grant.as_secs()).unwrap_or(3600);
        let expires_at =
            grants::decide(verdict.as_ref(), user.exp, max, now).map_err(|r| ApiError {
                problem: Box::new(Problem {
                    violations: r.violations,
                    ..Problem::new(r.kind, r.detail)
                }),
                device_id: None,
            })?;
        let _guard = self.grant_lock.lock().await;
        let key_text = wg_key.to_string();
        if self.store.key_in_use(&key_text)? {
            return Err(ApiError::new(
                ProblemType::WireguardKeyInUse,
                "this WireGuard key already has an open grant; use a fresh key per tunnel",
            ));
        }
        let used: HashSet<_> = self.store.used_addresses()?;
        let address = grants::allocate(&self.settings.network, &used).ok_or_else(|| {
            ApiError::new(
                ProblemType::AddressPoolExhausted,
                "every tunnel address is in use",
            )
        })?;
        let row = GrantRow {
            id: self.random_b64(16)?,
            device_id: req.device_id.clone(),
            user: user.sub.clone(),
            app: app.id.clone(),
            wg_public_key: key_text,
            client_address: address,
            targets: targets.iter().map(ToString::to_string).collect(),
            created_at: now,
            expires_at,
        };
        self.store.insert_grant(&row)?;
        let peer = PeerGrant {
            public_key: wg_key,
            client_address: IpAddr::V4(address),
            targets: targets.clone(),
            expires_at: system_time(expires_at),
        };
        if let Err(e) = self.gateway.add_peer(peer).await {
            self.store
                .close_grant(&row.id, now, "the gateway refused the peer")?;
            return Err(ApiError::new(
                ProblemType::Internal,
                format!("the gateway refused the peer: {e}"),
            ));
        }
        let grant = Grant {
            id: row.id.clone(),
            app: row.app.clone(),
            gateway: GatewayInfo {
                endpoint: self.gateway_endpoint.clone(),
                public_key: self.gateway.public_key().to_string(),
            },
            client_address: address.to_string(),
            targets: row.targets.clone(),
            expires_at: datetime(expires_at),
        };
        let reason = format!("grant {} for {} until {}", row.id, row.app, expires_at);
        Ok((grant, reason))
    }

    /// `DELETE /v1/grants/{id}`.
    pub async fn close_grant(&self, user: &AccessClaims, id: &str) -> Result<(), ApiError> {
        let result = async {
            let row = self
                .store
                .open_grant(id)?
                .filter(|g| g.user == user.sub)
                .ok_or_else(|| {
                    ApiError::new(ProblemType::GrantNotFound, "no open grant with this id")
                })?;
            let device = row.device_id.clone();
            self.remove(&row, "closed by the client", unix_now())
                .await?;
            Ok(((), format!("grant {id} closed by the client on {device}")))
        }
        .await;
        self.audited("grant-close", Some(&user.sub), None, result)
    }

    /// Closes a grant in the store, then removes its peer at the gateway.
    async fn remove(&self, row: &GrantRow, reason: &str, now: i64) -> Result<bool, ApiError> {
        // Store first: once the reply says "closed", a restart cannot bring it back.
        let closed = self.store.close_grant(&row.id, now, reason)?;
        if let Ok(key) = tunnel::PublicKey::from_base64(&row.wg_public_key) {
            self.gateway
                .remove_peer(key)
                .await
                .map_err(|e| ApiError::new(ProblemType::Internal, format!("gateway: {e}")))?;
        }
        Ok(closed)
    }

    /// Closes `rows`, removes their peers, tells their devices.
    async fn close_grants(
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
            });
            closed.push(row.id);
        }
        Ok(closed)
    }

    /// `GET /v1/events`: a subscription for the caller's device.
    pub fn subscribe(
        &self,
        user: &AccessClaims,
        device_id: &str,
    ) -> Result<broadcast::Receiver<Routed>, ApiError> {
        let result = (|| {
            let device = self.store.device(device_id)?.ok_or_else(|| {
                ApiError::new(ProblemType::DeviceUnknown, "this device is not enrolled")
            })?;
            if device.key.user != user.sub {
                return Err(ApiError::new(
                    ProblemType::DeviceUserMismatch,
                    "the device is enrolled for another user",
                ));
            }
            Ok((self.hub.subscribe(), "event stream opened".to_owned()))
        })();
        self.audited("events", Some(&user.sub), Some(device_id), result)
    }

    /// `POST /v1/admin/revocations`.
    pub async fn revoke(&self, req: &RevocationRequest) -> Result<RevocationResult, ApiError> {
        let result = self.revoke_inner(req).await;
        self.audited(
            "revoke",
            req.user.as_deref(),
            req.device_id.as_deref(),
            result,
        )
    }

    async fn revoke_inner(
        &self,
        req: &RevocationRequest,
    ) -> Result<(RevocationResult, String), ApiError> {
        let now = unix_now();
        let reason = if req.reason.trim().is_empty() {
            "revoked by an administrator"
        } else {
            req.reason.trim()
        };
        let closed = match (&req.device_id, &req.user, &req.grant_id) {
            (Some(device_id), None, None) => {
                let device = self
                    .store
                    .device(device_id)?
                    .ok_or_else(|| ApiError::new(ProblemType::DeviceUnknown, "no such device"))?;
                self.store.revoke_device(device_id, now, reason)?;
                let open = self.store.open_grants_of_device(device_id)?;
                let closed = self.close_grants(open, reason, now).await?;
                self.hub.publish(
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
                self.store.revoke_user(user, now, reason)?;
                let open = self.store.open_grants_of_user(user)?;
                let closed = self.close_grants(open, reason, now).await?;
                self.hub.publish(
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
        let why = format!("{reason}; closed {} grant(s)", closed.len());
        Ok((
            RevocationResult {
                grants_closed: closed,
            },
            why,
        ))
    }

    /// `POST /v1/admin/policy/reload`.
    pub fn reload_policy(&self) -> Result<PolicyDocument, ApiError> {
        let result = (|| {
            let loaded = LoadedPolicy::load(&self.settings)
                .map_err(|e| ApiError::new(ProblemType::PolicyError, e.to_string()))?;
            let changed = {
                let mut current = self.policy.write().unwrap_or_else(PoisonError::into_inner);
                let changed = current.digest != loaded.digest;
                *current = Arc::new(loaded);
                changed
            };
            let doc = self.policy_document();
            if changed {
                self.hub.publish(
                    None,
                    None,
                    Event::PolicyChanged {
                        digest: doc.digest.clone(),
                    },
                );
            }
            let why = if changed {
                format!("policy changed to {}", doc.digest)
            } else {
                "policy unchanged".into()
            };
            Ok((doc, why))
        })();
        self.audited("policy-reload", None, None, result)
    }

    /// `GET /v1/admin/audit`.
    pub fn audit_recent(&self, limit: u32) -> Result<Vec<api::AuditEntry>, ApiError> {
        Ok(self.store.audit_recent(limit.clamp(1, 10_000))?)
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

    /// Closes grants whose time is up (the gateway drops their peers on its
    /// own at the same instant; this keeps the store and the agents in step).
    pub async fn expire_due(&self) -> Result<usize, ApiError> {
        let now = unix_now();
        let due = self.store.expire_grants(now)?;
        for row in &due {
            if let Ok(key) = tunnel::PublicKey::from_base64(&row.wg_public_key) {
                let _ = self.gateway.remove_peer(key).await;
            }
            self.hub.publish(
                Some(&row.user),
                Some(&row.device_id),
                Event::GrantRevoked {
                    grant_id: row.id.clone(),
                    device_id: row.device_id.clone(),
                    reason: "expired".into(),
                },
            );
            self.audit(NewAudit {
                action: "grant-expire",
                outcome: "deny",
                user: Some(&row.user),
                device_id: Some(&row.device_id),
                problem: None,
                reason: &format!("grant {} expired", row.id),
            });
        }
        Ok(due.len())
    }

    /// At start: close what expired while the broker was down, and install
    /// every still-open grant at the gateway again.
    pub async fn restore(&self) -> Result<usize, ApiError> {
        self.expire_due().await?;
        let open = self.store.open_grants()?;
        let mut restored = 0;
        for row in open {
            let targets: Vec<tunnel::Target> =
                row.targets.iter().filter_map(|t| t.parse().ok()).collect();
            let peer = tunnel::PublicKey::from_base64(&row.wg_public_key).map(|key| PeerGrant {
                public_key: key,
                client_address: IpAddr::V4(row.client_address),
                targets,
                expires_at: system_time(row.expires_at),
            });
            let added = match peer {
                Ok(peer) => self.gateway.add_peer(peer).await.is_ok(),
                Err(_) => false,
            };
            if added {
                restored += 1;
            } else {
                self.store
                    .close_grant(&row.id, unix_now(), "could not be restored at start")?;
            }
        }
        Ok(restored)
    }
}
