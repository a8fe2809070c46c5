//! The broker's operations: each call of the API as one method on
//! [`Broker`] that takes plain values and returns a value or a problem. The
//! pure decisions live in [`super::eat`], [`super::token`] and
//! [`super::grants`]; this layer wires them to the store, the gateway, the
//! event hub and the clock, and writes the audit log entry of every
//! decision.
//!
//! One submodule per group of calls: [`identity`] (who is calling),
//! [`devices`], [`attestations`], [`grants`], [`admin`]; [`policy`] holds
//! the policy in force and [`errors`] the ways a call fails. This module
//! holds the state they share and the audit helpers.

mod access;
mod admin;
mod attestations;
mod devices;
mod dpop;
mod errors;
mod grants;
mod identity;
mod policy;
mod quotas;
mod relay;
mod remote_gateways;

use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use ring::rand::{SecureRandom, SystemRandom};
use time::OffsetDateTime;
use tunnel::GatewayHandle;
use url::Url;

use super::audit_sink::AuditSink;
use super::clock::Clock;
use super::config::Settings;
use super::dpop::JtiCache;
use super::events::Hub;
use super::store::{AuditDecision, NewAudit, Store};
use super::token::{JwksCache, Rules};
use crate::api::{self, BrokerConfig, ProblemType};

pub use attestations::NONCE_TTL_SECS;
pub use dpop::{DeviceCaller, DpopRequest, Enroller};
pub use errors::{ApiError, StartError};
pub use policy::LoadedPolicy;
pub use quotas::StreamSlot;

use crate::server::keyattest::{self, TrustAnchors};

/// Everything a request handler needs.
#[derive(Debug)]
pub struct Broker {
    settings: Settings,
    store: Arc<dyn Store>,
    policy: RwLock<Arc<LoadedPolicy>>,
    jwks: JwksCache,
    rules: Rules,
    gateway: GatewayHandle,
    gateway_endpoint: String,
    hub: Hub,
    /// Held by every operation that opens a grant ("decide + allocate + add
    /// peer") and by every one that ends grants because a fact changed
    /// ("revoke / reload / mark non-compliant + close + remove peers").
    /// Without it a grant request that read the old facts can insert its
    /// grant after a revocation has listed the grants to close, and that
    /// grant (and its peer) would outlive the revocation. Under it, each
    /// grant is decided on facts no closing operation is halfway through
    /// changing: it is either closed by that operation or refused by the
    /// re-check. One broker-wide async mutex rather than a finer scheme: a
    /// grant takes milliseconds and revocations are rare.
    enforcement: tokio::sync::Mutex<()>,
    rng: SystemRandom,
    /// Every "now" the broker decides or records with (see [`Clock`]).
    clock: Arc<dyn Clock>,
    /// The origin DPoP proofs must name (`server.public_url`, else the
    /// listen address once bound: [`Broker::listening_at`]).
    origin: OnceLock<Url>,
    /// `jti`s of recently accepted DPoP proofs (replay refusal).
    jti_cache: Mutex<JtiCache>,
    /// The CAs EK certificates must chain to (`hardware` enrolment).
    tpm_cas: TrustAnchors,
    /// Credential-activation challenges for `hardware` enrolment.
    activations: keyattest::Activations,
    /// Copies of audit rows for a SIEM (`[audit]`).
    sink: AuditSink,
    /// The audit log's one writer (its own thread and connection).
    audit_writer: super::audit_writer::AuditWriter,
    /// Open event streams per user (`[limits] max_event_streams_per_user`).
    streams: quotas::StreamCounts,
    /// When each (user, limit) refusal was last audited.
    quota_audited: Mutex<std::collections::HashMap<(String, &'static str), i64>>,
    /// The gateway peers' limit refusals as last audited.
    tunnel_refusals_seen: quotas::TunnelRefusalsSeen,
    /// Unauthenticated refusals per (action, problem): when one was last
    /// written and how many were folded since.
    unauthenticated: Mutex<FoldedRefusals>,
}

/// (action, problem) → (when one was last written, how many were folded since).
type FoldedRefusals = std::collections::HashMap<(String, &'static str), (i64, u64)>;

/// Unauthenticated refusals of one kind are written once per this window.
const UNAUTHENTICATED_WINDOW_SECS: i64 = 60;
/// How much of an unauthenticated refusal's text (which may quote what the
/// caller sent, a `kid`, a claim) is written.
const UNAUTHENTICATED_REASON_CHARS: usize = 200;

/// A quota refusal: audited once a minute where it is made, not per request.
fn is_quota(err: &ApiError) -> bool {
    matches!(
        err.problem.kind(),
        Some(ProblemType::QuotaExceeded | ProblemType::HeadersTooLarge)
    )
}

fn datetime(unix: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(unix).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

impl Broker {
    /// Assembles the broker (the gateway is already running). `clock` is the
    /// time every expiry is decided on and every record stamped with.
    // One argument per part the broker is assembled from; a builder would
    // only rename them.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        settings: Settings,
        store: Arc<dyn Store>,
        policy: LoadedPolicy,
        gateway: GatewayHandle,
        http: reqwest::Client,
        clock: Arc<dyn Clock>,
        tpm_cas: TrustAnchors,
        sink: AuditSink,
        audit_writer: super::audit_writer::AuditWriter,
    ) -> Self {
        let gateway_endpoint = match &settings.raw.gateway.endpoint {
            Some(e) if !e.is_empty() => e.clone(),
            _ => gateway.local_addr().to_string(),
        };
        let origin = OnceLock::new();
        if let Some(public) = &settings.raw.server.public_url
            && let Ok(url) = Url::parse(public)
        {
            let _ = origin.set(url);
        }
        // A name for this replica's relayed messages: random per start, so
        // two replicas never share one and a restarted replica does not
        // mistake its predecessor's messages for its own.
        let mut replica = [0u8; 9];
        let _ = SystemRandom::new().fill(&mut replica);
        let hub = Hub::new().relay_through(B64URL.encode(replica), store.clone());
        Self {
            origin,
            jti_cache: Mutex::new(JtiCache::default()),
            jwks: JwksCache::new(
                &settings.raw.oidc.issuer,
                http,
                settings.jwks_ttl,
                clock.clone(),
            ),
            rules: Rules {
                issuer: settings.raw.oidc.issuer.clone(),
                audience: settings.raw.oidc.audience.clone(),
                client_id: settings.raw.oidc.client_id.clone(),
                skew: settings.skew,
                groups_claim: settings.raw.access.groups_claim.clone(),
            },
            settings,
            store,
            policy: RwLock::new(Arc::new(policy)),
            gateway,
            gateway_endpoint,
            hub,
            enforcement: tokio::sync::Mutex::new(()),
            rng: SystemRandom::new(),
            clock,
            tpm_cas,
            activations: keyattest::Activations::new(),
            sink,
            audit_writer,
            streams: Default::default(),
            quota_audited: Mutex::default(),
            tunnel_refusals_seen: Mutex::default(),
            unauthenticated: Mutex::default(),
        }
    }

    /// Where the API listens (`http://127.0.0.1:8443`): the origin DPoP
    /// proofs must name unless `server.public_url` says otherwise.
    pub fn listening_at(&self, scheme: &str, addr: std::net::SocketAddr) {
        if let Ok(url) = Url::parse(&format!("{scheme}://{addr}")) {
            let _ = self.origin.set(url);
        }
    }

    /// Takes the broker apart for shutdown.
    pub fn into_parts(self) -> (GatewayHandle, Arc<dyn Store>) {
        (self.gateway, self.store)
    }

    /// The store (for the relay follower).
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The gateway (for status and shutdown).
    pub fn gateway(&self) -> &GatewayHandle {
        &self.gateway
    }

    /// Unix seconds now, on the broker's clock.
    fn now(&self) -> i64 {
        self.clock.now()
    }

    /// The broker instant `unix` as the gateway's wall-clock expiry (see
    /// [`Clock::to_system_time`]).
    fn gateway_expiry(&self, unix: i64) -> std::time::SystemTime {
        self.clock.to_system_time(unix)
    }

    fn random_b64(&self, bytes: usize) -> Result<String, ApiError> {
        let mut buf = vec![0u8; bytes];
        self.rng
            .fill(&mut buf)
            .map_err(|_| ApiError::new(ProblemType::Internal, "no randomness available"))?;
        Ok(B64URL.encode(buf))
    }

    /// Writes an audit entry and hands it to the sinks; a failure to audit
    /// is logged, never silent.
    pub fn audit(&self, entry: NewAudit<'_>) {
        let _ = self.try_audit(entry);
    }

    /// [`Self::audit`], saying whether the row was written: an action that
    /// must not happen unrecorded (a grant) is undone when it was not.
    pub(super) fn try_audit(&self, entry: NewAudit<'_>) -> Result<(), ApiError> {
        // Written by the audit writer's own thread and connection (see
        // `audit_writer`): never on the async workers, and this call learns
        // whether the row was written.
        match self.audit_writer.write(&entry, self.now()) {
            Ok(stored) => {
                self.sink.send(&stored);
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, action = entry.action, "cannot write the audit log");
                Err(ApiError::new(
                    ProblemType::Internal,
                    "the broker could not record this decision in its audit log, so it is refused",
                ))
            }
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
        self.audited_decision(action, user, device_id, None, result)
    }

    /// [`Self::audited`], with what decided it (grant decisions).
    fn audited_decision<T>(
        &self,
        action: &str,
        user: Option<&str>,
        device_id: Option<&str>,
        decision: Option<&AuditDecision>,
        result: Result<(T, String), ApiError>,
    ) -> Result<T, ApiError> {
        match result {
            Ok((value, reason)) => {
                // Fail closed: an action whose record cannot be written is
                // answered as refused (a grant is also undone, see
                // `open_grant`), so nothing is granted unrecorded.
                self.try_audit(NewAudit {
                    action,
                    outcome: "allow",
                    user,
                    device_id,
                    problem: None,
                    reason: &reason,
                    decision,
                })?;
                Ok(value)
            }
            Err(err) => {
                if !is_quota(&err) {
                    let slug = err.problem.kind().map(ProblemType::slug);
                    self.audit(NewAudit {
                        action,
                        outcome: "deny",
                        user,
                        device_id: err.device_id.as_deref().or(device_id),
                        problem: slug,
                        reason: &err.problem.detail,
                        decision,
                    });
                }
                Err(err)
            }
        }
    }

    /// Audits a refusal.
    ///
    /// A refusal of a caller nobody vouches for (no valid token: `user` is
    /// `None`) is what an attacker can produce at will, so it is aggregated:
    /// the first of each kind (action, problem) per minute is written, with
    /// its attacker-chosen text cut to [`UNAUTHENTICATED_REASON_CHARS`]
    /// characters, and the next one written says how many were folded into
    /// it. A flood of bad tokens costs one row a minute per kind.
    pub fn deny(&self, action: &str, user: Option<&str>, device_id: Option<&str>, err: &ApiError) {
        if is_quota(err) {
            return;
        }
        let slug = err.problem.kind().map(ProblemType::slug);
        let device_id = err.device_id.as_deref().or(device_id);
        if user.is_some() {
            self.audit(NewAudit {
                action,
                outcome: "deny",
                user,
                device_id,
                problem: slug,
                reason: &err.problem.detail,
                decision: None,
            });
            return;
        }
        let now = self.now();
        let folded = {
            let mut seen = self
                .unauthenticated
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let key = (action.to_owned(), slug.unwrap_or("-"));
            match seen.get_mut(&key) {
                Some((at, count)) if now - *at < UNAUTHENTICATED_WINDOW_SECS => {
                    *count += 1;
                    return;
                }
                Some((at, count)) => {
                    let folded = *count;
                    *at = now;
                    *count = 0;
                    folded
                }
                None => {
                    if seen.len() >= 10_000 {
                        seen.clear();
                    }
                    seen.insert(key, (now, 0));
                    0
                }
            }
        };
        let detail: String = err
            .problem
            .detail
            .chars()
            .take(UNAUTHENTICATED_REASON_CHARS)
            .collect();
        let reason = if folded > 0 {
            format!(
                "{detail} (and {folded} more like it in the {UNAUTHENTICATED_WINDOW_SECS} s before, not written one by one)"
            )
        } else {
            detail
        };
        self.audit(NewAudit {
            action,
            outcome: "deny",
            user: None,
            device_id: device_id.map(|d| d.get(..d.len().min(64)).unwrap_or(d)),
            problem: slug,
            reason: &reason,
            decision: None,
        });
    }

    /// `GET /v1/config`.
    pub fn config(&self) -> BrokerConfig {
        let oidc = &self.settings.raw.oidc;
        BrokerConfig {
            issuer: oidc.issuer.clone(),
            client_id: oidc.client_id.clone(),
            audience: oidc.audience.clone(),
            // OIDC `acr_values` is space-separated.
            required_acr: (!oidc.required_acr.is_empty()).then(|| oidc.required_acr.join(" ")),
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
                    labels: a.labels.clone(),
                })
                .collect(),
        }
    }
}
