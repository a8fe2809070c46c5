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

/// How long after an audited quota refusal the same (user, limit) is not
/// audited again.
const AUDIT_EVERY_SECS: i64 = 60;

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
        let err = ApiError::new(kind, detail);
        if due {
            self.audit(NewAudit {
                action: "quota",
                outcome: "deny",
                user,
                problem: Some(kind.slug()),
                reason: &format!(
                    "{limit}: {} (further refusals for this limit are not audited for {AUDIT_EVERY_SECS} s)",
                    err.problem.detail
                ),
                ..NewAudit::default()
            });
        }
        err
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
