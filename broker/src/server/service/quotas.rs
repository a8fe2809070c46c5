//! Per-user limits (`[limits]`): open grants, outstanding nonces, event
//! streams; and the request-head size. A limit reached answers
//! `429 quota-exceeded` (the head: `431 headers-too-large`) and is audited
//! once a minute per user and limit, not once per request: a client in a
//! loop must not turn into a flood of audit rows.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use super::{ApiError, Broker};
use crate::api::ProblemType;
use crate::server::store::NewAudit;
use tunnel::{LimitRefusals, PublicKey};

/// How long after an audited quota refusal the same (user, limit) is not
/// audited again.
const AUDIT_EVERY_SECS: i64 = 60;

/// Each gateway peer's refusal counters as last read ([`Broker::audit_tunnel_limits`]).
pub type TunnelRefusalsSeen = Mutex<HashMap<PublicKey, LimitRefusals>>;

/// Open event streams per user, shared with the streams' guards.
pub type StreamCounts = Arc<Mutex<HashMap<String, u32>>>;

/// Held by an open event stream; gives its place back when dropped.
#[derive(Debug)]
pub struct StreamSlot {
    counts: StreamCounts,
    user: String,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = counts.get_mut(&self.user) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&self.user);
            }
        }
    }
}

impl Broker {
    /// A quota refusal, audited at most once a minute per `(user, limit)`.
    pub(super) fn quota_exceeded(
        &self,
        user: Option<&str>,
        limit: &'static str,
        kind: ProblemType,
        detail: String,
    ) -> ApiError {
        let err = ApiError::new(kind, detail);
        self.audit_quota(user, None, limit, kind, &err.problem.detail);
        err
    }

    /// Writes the `quota` audit row for a limit `user` hit, unless one was
    /// written for the same `(user, limit)` within the last minute.
    fn audit_quota(
        &self,
        user: Option<&str>,
        device_id: Option<&str>,
        limit: &'static str,
        kind: ProblemType,
        detail: &str,
    ) {
        let now = self.now();
        let due = {
            let mut last = self
                .quota_audited
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let key = (user.unwrap_or("-").to_owned(), limit);
            let due = last
                .get(&key)
                .is_none_or(|at| now - *at >= AUDIT_EVERY_SECS);
            if due {
                // Bounded: a flood of distinct users cannot grow it without end.
                if last.len() >= 100_000 {
                    last.retain(|_, at| now - *at < AUDIT_EVERY_SECS);
                }
                last.insert(key, now);
            }
            due
        };
        if due {
            self.audit(NewAudit {
                action: "quota",
                outcome: "deny",
                user,
                device_id,
                problem: Some(kind.slug()),
                reason: &format!(
                    "{limit}: {detail} (further refusals for this limit are not audited for {AUDIT_EVERY_SECS} s)"
                ),
                ..NewAudit::default()
            });
        }
    }

    /// Audits the per-tunnel limits the embedded gateway enforced since the
    /// last call (`max_tunnel_connections_per_peer`,
    /// `max_udp_flows_per_peer`): those refusals happen inside a tunnel,
    /// where there is no HTTP answer to give, so the broker reads each
    /// peer's refusal counters from the gateway's status on its 1 s sweep
    /// and audits a rise against the grant's user and device, once a
    /// minute per user and limit like every other quota.
    pub fn audit_tunnel_limits(&self) {
        let status = self.gateway.status();
        let limits = &self.settings.raw.limits;
        let rises: Vec<(String, LimitRefusals)> = {
            let mut seen = self
                .tunnel_refusals_seen
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let rises = status
                .peers
                .iter()
                .filter_map(|p| {
                    let before = seen.get(&p.public_key).copied().unwrap_or_default();
                    let rise = LimitRefusals {
                        connections: p.refused.connections.saturating_sub(before.connections),
                        udp_flows: p.refused.udp_flows.saturating_sub(before.udp_flows),
                    };
                    (rise != LimitRefusals::default()).then(|| (p.public_key.to_string(), rise))
                })
                .collect();
            // Peers that are gone take their counters with them.
            *seen = status
                .peers
                .iter()
                .map(|p| (p.public_key, p.refused))
                .collect();
            rises
        };
        for (key, rise) in rises {
            let grant = match self.store.open_grant_by_key(&key) {
                Ok(Some(g)) => g,
                Ok(None) => continue, // closed meanwhile; its tunnel is gone
                Err(e) => {
                    tracing::warn!(error = %e, "cannot attribute a tunnel limit refusal");
                    continue;
                }
            };
            let device = Some(grant.device_id.as_str());
            if rise.connections > 0 {
                let max = limits.max_tunnel_connections_per_peer;
                self.audit_quota(
                    Some(&grant.user),
                    device,
                    "max_tunnel_connections_per_peer",
                    ProblemType::QuotaExceeded,
                    &format!(
                        "the tunnel of grant {} (app {}) holds {max} connections, the most allowed; the gateway refused {} more",
                        grant.id, grant.app, rise.connections
                    ),
                );
            }
            if rise.udp_flows > 0 {
                let max = limits.max_udp_flows_per_peer;
                self.audit_quota(
                    Some(&grant.user),
                    device,
                    "max_udp_flows_per_peer",
                    ProblemType::QuotaExceeded,
                    &format!(
                        "the tunnel of grant {} (app {}) holds {max} UDP flows, the most allowed; the gateway refused {} more",
                        grant.id, grant.app, rise.udp_flows
                    ),
                );
            }
        }
    }

    /// Refuses a new nonce when `user` holds `max_outstanding_nonces_per_user`.
    pub(super) fn check_nonce_quota(&self, user: &str, now: i64) -> Result<(), ApiError> {
        let max = self.settings.raw.limits.max_outstanding_nonces_per_user;
        let held = self.store.outstanding_nonces(user, now)?;
        if held >= max {
            return Err(self.quota_exceeded(
                Some(user),
                "max_outstanding_nonces_per_user",
                ProblemType::QuotaExceeded,
                format!(
                    "you hold {held} unused attestation nonces, the most allowed ({max}); use one or let them expire (60 s)"
                ),
            ));
        }
        Ok(())
    }

    /// Refuses a new grant when `user` holds `max_open_grants_per_user`.
    /// Called under the enforcement lock, so two requests cannot both take
    /// the last place.
    pub(super) fn check_grant_quota(&self, user: &str) -> Result<(), ApiError> {
        let max = self.settings.raw.limits.max_open_grants_per_user;
        let open = u32::try_from(self.store.open_grants_of_user(user)?.len()).unwrap_or(u32::MAX);
        if open >= max {
            return Err(self.quota_exceeded(
                Some(user),
                "max_open_grants_per_user",
                ProblemType::QuotaExceeded,
                format!(
                    "you have {open} applications open, the most allowed ({max}); close one first"
                ),
            ));
        }
        Ok(())
    }

    /// A place for one more event stream of `user`, or the refusal.
    pub fn acquire_stream(&self, user: &str) -> Result<StreamSlot, ApiError> {
        let max = self.settings.raw.limits.max_event_streams_per_user;
        let mut counts = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
        let n = counts.entry(user.to_owned()).or_insert(0);
        if *n >= max {
            let held = *n;
            drop(counts);
            return Err(self.quota_exceeded(
                Some(user),
                "max_event_streams_per_user",
                ProblemType::QuotaExceeded,
                format!(
                    "you have {held} event streams open, the most allowed ({max}); close one (each device needs one)"
                ),
            ));
        }
        *n += 1;
        Ok(StreamSlot {
            counts: self.streams.clone(),
            user: user.to_owned(),
        })
    }

    /// Refuses a request head larger than `max_header_bytes`.
    pub fn check_header_size(&self, bytes: usize) -> Result<(), ApiError> {
        let max = self.settings.raw.limits.max_header_bytes;
        if bytes > max {
            return Err(self.quota_exceeded(
                None,
                "max_header_bytes",
                ProblemType::HeadersTooLarge,
                format!("the request headers are {bytes} bytes, more than the {max} allowed"),
            ));
        }
        Ok(())
    }
}
