//! Access per application, in context: the second Rego entrypoint,
//! `sallyport.access` (`data.sallyport.access.decision`).
//!
//! The posture policy answers "is this device healthy?" once per
//! attestation. This one answers, for every grant, "may this user, on this
//! device, open this application now, from here?", weighing the user's
//! groups, the application's labels, the sign-in's age and factors, the
//! broker's clock in the organisation's time zone, the caller's network and
//! behavioural signals (see [`input`]). The device verdict is a floor: the
//! broker refuses a non-compliant or stale device before this policy is
//! asked, so an access policy can only narrow access.
//!
//! Pure parts: [`input`] (the document and its digest), [`window`] (time
//! windows), [`context`] (source address, named networks) and [`judge`]
//! (policy output + window + the verdict's bounds → the decision). The I/O
//! (store reads for the signals, audit) is in `service::access`.

pub mod context;
pub mod input;
pub mod window;

use posture::policy::{RegoProgram, regorus_value};
use serde::Deserialize;

use crate::api::{AccessDecision, AccessReason, GrantEnd, ProblemType, StepUp};
use window::{Window, WindowSpec, WindowState};

/// The policy that ships with the broker (`broker/policy/access.rego`).
pub const DEFAULT_ACCESS_POLICY: &str = include_str!("../../../policy/access.rego");

/// The rule every access policy must define.
const DECISION_RULE: &str = "data.sallyport.access.decision";

/// Why an access policy could not be loaded or evaluated.
#[derive(Debug, thiserror::Error)]
pub enum AccessPolicyError {
    /// The Rego does not compile, or lacks `decision`.
    #[error("invalid access policy: {0}")]
    Invalid(String),
    /// Evaluation failed (a conflict, a type error, the instruction limit).
    #[error("access policy evaluation failed: {0}")]
    Evaluation(String),
    /// `decision` is not the documented object.
    #[error("access policy output is malformed: {0}")]
    Output(String),
}

/// `decision`, as the policy returns it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AccessOutput {
    /// May it open?
    pub allow: bool,
    /// Why not (a set in Rego, an array here).
    #[serde(default)]
    pub reasons: Vec<AccessReason>,
    /// A fresh or stronger sign-in first.
    #[serde(default)]
    pub step_up: Option<StepUp>,
    /// Longest grant, seconds.
    #[serde(default)]
    pub max_lifetime_seconds: Option<i64>,
    /// The hours it opens in.
    #[serde(default)]
    pub window: Option<WindowSpec>,
}

/// A compiled access policy with its digest and source.
#[derive(Clone)]
pub struct AccessPolicy {
    /// `decision`, compiled (the same VM plumbing as the posture policy).
    program: RegoProgram,
    /// SHA-256 hex of the source.
    pub digest: String,
    /// File name.
    pub name: String,
}

impl std::fmt::Debug for AccessPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessPolicy")
            .field("name", &self.name)
            .field("digest", &self.digest)
            .finish_non_exhaustive()
    }
}

impl AccessPolicy {
    /// Compiles `source` and checks it answers a sample input.
    pub fn from_source(name: &str, source: &str) -> Result<Self, AccessPolicyError> {
        let program = RegoProgram::compile(name, source, DECISION_RULE)
            .map_err(AccessPolicyError::Invalid)?;
        let policy = AccessPolicy {
            program,
            digest: crate::server::config::to_hex(
                ring::digest::digest(&ring::digest::SHA256, source.as_bytes()).as_ref(),
            ),
            name: name.to_owned(),
        };
        // A policy without `decision`, or one that fails on an ordinary
        // input, is refused at load, not per grant.
        policy
            .evaluate(&sample_input())
            .map_err(|e| AccessPolicyError::Invalid(e.to_string()))?;
        Ok(policy)
    }

    /// The built-in policy.
    pub fn default_policy() -> Result<Self, AccessPolicyError> {
        Self::from_source("access.rego", DEFAULT_ACCESS_POLICY)
    }

    /// Evaluates over an input document (the shape of [`input::AccessInput`]).
    pub fn evaluate(&self, input: &serde_json::Value) -> Result<AccessOutput, AccessPolicyError> {
        let input = regorus_value(input).map_err(AccessPolicyError::Evaluation)?;
        let result = self
            .program
            .run(input)
            .map_err(AccessPolicyError::Evaluation)?;
        let value =
            serde_json::to_value(&result).map_err(|e| AccessPolicyError::Output(e.to_string()))?;
        if !value.is_object() {
            return Err(AccessPolicyError::Output(format!(
                "{DECISION_RULE} must be an object with allow, reasons, step_up, max_lifetime_seconds, window (got {})",
                short(&value)
            )));
        }
        let mut out: AccessOutput =
            serde_json::from_value(value).map_err(|e| AccessPolicyError::Output(e.to_string()))?;
        out.reasons.sort_by(|a, b| a.message.cmp(&b.message));
        out.reasons.dedup();
        if out.max_lifetime_seconds.is_some_and(|s| s <= 0) {
            return Err(AccessPolicyError::Output(
                "max_lifetime_seconds must be positive".into(),
            ));
        }
        Ok(out)
    }
}

fn short(value: &serde_json::Value) -> String {
    let text = value.to_string();
    text.chars().take(80).collect()
}

/// An ordinary input: what a load-time check evaluates.
pub fn sample_input() -> serde_json::Value {
    serde_json::json!({
        "user": {"sub": "sample", "email": null, "groups": []},
        "device": {"id": "d", "compliant": true, "violations": [], "key_assurance": null,
                   "platform": "linux", "checks": {}, "enrolled_at": 0},
        "app": {"id": "app", "name": "App", "labels": {}, "owners": []},
        "sign_in": {"amr": ["otp"], "acr": null, "auth_time": 0, "mfa": true,
                    "mfa_age_seconds": 0, "mfa_acr_values": []},
        "context": {
            "time": {"unix": 0, "zone": "UTC", "local": "1970-01-01T00:00:00+00:00",
                     "date": "1970-01-01", "weekday": "thu", "hour": 0, "minute": 0,
                     "seconds_of_day": 0},
            "source_ip": "127.0.0.1", "networks": [],
            "signals": {"new_network": false, "new_device": false, "recent_denials": 0,
                        "denial_burst": false}
        }
    })
}

/// The broker's judgement on one grant request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judgement {
    /// What the user is told (and `GET /v1/apps` shows).
    pub decision: AccessDecision,
    /// When refused: the problem type to answer with.
    pub refusal: Option<ProblemType>,
    /// When allowed: the grant's expiry (Unix seconds).
    pub expires_at: Option<i64>,
    /// When allowed and the window's close is what ends it.
    pub ends: Option<GrantEnd>,
}

/// Combines the policy's output, its window and the verdict's bound
/// (`floor_expiry`: the earliest of verdict, session and `max_grant`, from
/// [`crate::server::grants::decide`]) into the decision, at `now`.
///
/// Order: a denial first (nothing else matters), then a closed window (a
/// step-up would not open it), then a step-up. When allowed, the grant ends
/// at the earliest of the floor, the policy's lifetime and the window's close.
pub fn judge(
    out: &AccessOutput,
    app_name: &str,
    default_tz: &jiff::tz::TimeZone,
    floor_expiry: i64,
    now: i64,
) -> Judgement {
    let refuse = |kind: ProblemType, decision: AccessDecision| Judgement {
        decision,
        refusal: Some(kind),
        expires_at: None,
        ends: None,
    };
    if !out.allow {
        let reasons = if out.reasons.is_empty() {
            vec![AccessReason {
                message: format!("The access policy does not allow {app_name} for you now."),
                remediation: "Ask IT which access this application needs.".into(),
            }]
        } else {
            out.reasons.clone()
        };
        return refuse(ProblemType::AccessDenied, denied(reasons, None, None));
    }
    let window = match out.window.as_ref().map(|w| Window::parse(w, default_tz)) {
        None => None,
        Some(Ok(w)) => Some(w),
        Some(Err(e)) => {
            return refuse(
                ProblemType::PolicyError,
                denied(
                    vec![AccessReason {
                        message: e.to_string(),
                        remediation: "Tell IT: the access policy needs fixing.".into(),
                    }],
                    None,
                    None,
                ),
            );
        }
    };
    let mut closes_at = None;
    if let Some(w) = &window {
        match w.state(now) {
            WindowState::Closed { opens_at } => {
                let (message, remediation) = match opens_at {
                    Some(at) => (
                        format!(
                            "{}; it opens again at {}.",
                            w.describe(app_name),
                            w.when(at, now)
                        ),
                        "Nothing to do: if you keep it connected, it opens by itself then."
                            .to_owned(),
                    ),
                    None => (
                        format!("{} is closed.", app_name),
                        "Ask IT when it is available.".to_owned(),
                    ),
                };
                return refuse(
                    ProblemType::AccessDenied,
                    denied(
                        vec![AccessReason {
                            message,
                            remediation,
                        }],
                        None,
                        opens_at.and_then(datetime),
                    ),
                );
            }
            WindowState::Open { closes_at: at } => closes_at = Some(at),
        }
    }
    if let Some(step_up) = &out.step_up {
        let reasons = if out.reasons.is_empty() {
            vec![AccessReason {
                message: format!("{app_name} needs a fresh sign-in."),
                remediation: "Sign in again with your second factor.".into(),
            }]
        } else {
            out.reasons.clone()
        };
        return refuse(
            ProblemType::AccessStepUpRequired,
            denied(reasons, Some(step_up.clone()), None),
        );
    }
    let mut expires_at = floor_expiry;
    if let Some(max) = out.max_lifetime_seconds {
        expires_at = expires_at.min(now.saturating_add(max));
    }
    let mut ends = None;
    if let (Some(w), Some(close)) = (&window, closes_at)
        && close <= expires_at
    {
        expires_at = close;
        let reopens_at = match w.state(close) {
            WindowState::Closed { opens_at } => opens_at,
            WindowState::Open { .. } => None,
        };
        let reason = match reopens_at {
            Some(at) => format!(
                "{}; it opens again at {}.",
                w.describe(app_name),
                w.when(at, close)
            ),
            None => format!("{}.", w.describe(app_name)),
        };
        ends = Some(GrantEnd {
            reason,
            reopens_at: reopens_at.and_then(datetime),
        });
    }
    Judgement {
        decision: AccessDecision {
            allow: true,
            reasons: Vec::new(),
            step_up: None,
            closes_at: closes_at.and_then(datetime),
            opens_at: None,
        },
        refusal: None,
        expires_at: Some(expires_at),
        ends,
    }
}

fn denied(
    reasons: Vec<AccessReason>,
    step_up: Option<StepUp>,
    opens_at: Option<time::OffsetDateTime>,
) -> AccessDecision {
    AccessDecision {
        allow: false,
        reasons,
        step_up,
        closes_at: None,
        opens_at,
    }
}

fn datetime(unix: i64) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::from_unix_timestamp(unix).ok()
}

#[cfg(test)]
mod tests;
