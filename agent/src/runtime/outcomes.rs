//! What the results of the background work (`tasks.rs`), the broker's
//! event stream and session changes mean to the supervisor: each is
//! recorded for status and diagnostics and turned into a supervisor event.

use std::sync::Arc;
use std::time::Duration;

use broker::api::{self, DeviceStatus, ProblemType};
use time::OffsetDateTime;

use super::tasks::{ENROL_BACKOFF_MAX, ENROL_BACKOFF_MIN, Outcome};
use super::{Runtime, now, rfc3339};
use crate::broker_client::{AccessRefusal, AccessRefusalKind};
use crate::control::view::AWAITING_APPROVAL_PHRASE;
use crate::identity::session::{ReauthReason, SessionState};
use crate::supervisor::{
    BrokerEvent, Event, Grant, GrantEnd, Refusal, Session, SignIn, StepUp, Verdict,
};
use crate::timeline::{Entry, Kind, posture_changes, posture_counts};

impl Runtime {
    pub(super) async fn poll_session(&mut self) {
        let state = match self.identity.state(now().unix_timestamp()) {
            Ok(state) => state,
            Err(e) => SessionState::NeedsReauth {
                reason: crate::identity::session::ReauthReason::RefreshRejected {
                    message: e.to_string(),
                },
            },
        };
        self.session_changed(state).await;
    }

    pub(super) async fn session_changed(&mut self, state: SessionState) {
        let state = self.unless_refused(state);
        if self.session_seen.as_ref() == Some(&state) {
            return;
        }
        self.session_seen = Some(state.clone());
        self.apps_step_up = None;
        if matches!(state, SessionState::Valid { .. }) {
            self.subject = self.identity.whoami().ok().flatten().map(|who| who.subject);
            self.spawn_enrol();
        }
        self.record(describe_session(&state));
        let session = to_session(&state, self.sign_in());
        self.feed(Event::SessionChanged(session)).await;
    }

    /// The stored sign-in as the supervisor tells sign-ins apart (a
    /// refresh keeps it; a new sign-in, a step-up included, changes it).
    fn sign_in(&self) -> SignIn {
        let (auth_time, method) = self.current_sign_in();
        SignIn {
            auth_time: auth_time.and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok()),
            method,
        }
    }

    /// The stored sign-in: its `auth_time` and method (a refresh keeps both).
    fn current_sign_in(&self) -> (Option<i64>, String) {
        self.identity
            .whoami()
            .ok()
            .flatten()
            .map(|who| (who.auth_time, who.mfa_method))
            .unwrap_or_default()
    }

    /// `state`, unless the broker refused this very sign-in: then the
    /// session needs a new one (tunnels close, the user is told why). A new
    /// sign-in (another `auth_time`) or a sign-out ends the refusal.
    fn unless_refused(&mut self, state: SessionState) -> SessionState {
        let Some(refused) = &self.refused_sign_in else {
            return state;
        };
        match state {
            SessionState::Valid { .. } => {
                if self.current_sign_in() == refused.sign_in {
                    return SessionState::NeedsReauth {
                        reason: refused.reason.clone(),
                    };
                }
                self.note(Kind::Session, "a new sign-in: asking the broker again");
                self.refused_sign_in = None;
                state
            }
            SessionState::SignedOut => {
                self.refused_sign_in = None;
                state
            }
            SessionState::NeedsReauth { .. } => state,
        }
    }

    /// The broker refused the current sign-in (its answer to a call, or
    /// its `session-revoked` event): remember which sign-in, so a refresh
    /// (same `auth_time`) does not count as a new one, and re-judge the
    /// session now.
    async fn refuse_sign_in(&mut self, reason: ReauthReason) {
        let sign_in = self.current_sign_in();
        if self
            .refused_sign_in
            .as_ref()
            .is_some_and(|r| r.sign_in == sign_in && r.reason == reason)
        {
            return;
        }
        let kind = match &reason {
            ReauthReason::Revoked { .. } => Kind::Revocation,
            _ => Kind::Session,
        };
        self.record(
            Entry::new(now(), kind, "the broker refused this sign-in").reason(reason.to_string()),
        );
        self.refused_sign_in = Some(super::RefusedSignIn { reason, sign_in });
        self.poll_session().await;
    }

    /// A posture collection in the timeline: its counts, and what changed
    /// since the previous one. An unchanged collection is not recorded (it
    /// runs every few minutes; the timeline keeps what moved).
    fn record_posture(
        &mut self,
        report: &posture::report::Report,
        violations: &[posture::policy::Violation],
    ) {
        let changes = posture_changes(self.report.as_deref(), report);
        if self.report.is_some() && changes.is_empty() {
            return;
        }
        let mut entry = Entry::new(now(), Kind::Posture, posture_counts(report));
        let mut why = changes.join(", ");
        if !violations.is_empty() {
            if !why.is_empty() {
                why.push_str("; ");
            }
            why.push_str("the local policy flags ");
            why.push_str(&describe_violations(violations));
        }
        if !why.is_empty() {
            entry = entry.reason(why);
        }
        self.record(entry);
    }

    pub(super) async fn on_outcome(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::SignInRefused(reason) => self.refuse_sign_in(reason).await,
            Outcome::Setup(Ok((config, policy))) => {
                self.broker_unreachable = None;
                self.note(
                    Kind::Broker,
                    format!(
                        "connected: {} applications in the catalogue",
                        config.apps.len()
                    ),
                );
                self.config = Some(config);
                match policy {
                    Ok(policy) => self.policy = Some(Arc::new(policy)),
                    // The broker's verdict still decides; only the instant
                    // local check falls back, and the user can see why.
                    Err(e) => self.record(
                        Entry::new(
                            now(),
                            Kind::Broker,
                            "the broker's policy is unavailable; local checks use the built-in policy",
                        )
                        .reason(e.to_string()),
                    ),
                }
            }
            Outcome::Setup(Err(e)) => {
                // Once per outage: the retry every 5 s is not news.
                if self.broker_unreachable.is_none() {
                    self.record(
                        Entry::new(now(), Kind::Broker, "unreachable, retrying")
                            .reason(e.to_string()),
                    );
                }
                self.broker_unreachable =
                    Some(format!("{}: {e}", crate::control::view::BROKER_UNREACHABLE));
                self.spawn_setup(Duration::from_secs(5));
            }
            Outcome::Enrolled(Ok((device, DeviceStatus::Pending))) => {
                self.enrolling = false;
                if self.awaiting_approval.is_none() {
                    self.record(
                        Entry::new(
                            now(),
                            Kind::Enrolment,
                            format!("device enrolled as {}", device.id),
                        )
                        .reason(AWAITING_APPROVAL_PHRASE),
                    );
                    let device = Arc::new(device);
                    self.spawn_events(device.clone());
                    self.awaiting_approval = Some((device, now()));
                }
                // Ask again later; an approval on the event stream cuts this short.
                let delay = self.enrol_backoff;
                self.enrol_backoff = (delay * 2).min(ENROL_BACKOFF_MAX);
                self.spawn_enrol_after(delay);
            }
            Outcome::Enrolled(Ok((device, _active))) => {
                self.enrolling = false;
                self.enrol_backoff = ENROL_BACKOFF_MIN;
                if self.awaiting_approval.take().is_some() {
                    self.note(
                        Kind::Enrolment,
                        format!("IT approved this device ({})", device.id),
                    );
                } else {
                    self.note(Kind::Enrolment, format!("device enrolled as {}", device.id));
                }
                let device = Arc::new(device);
                self.device = Some(device.clone());
                self.spawn_events(device);
                // Attest now that it can.
                self.feed(Event::DeviceEnrolled).await;
            }
            Outcome::Enrolled(Err(e)) => {
                self.enrolling = false;
                let delay = self.enrol_backoff;
                self.enrol_backoff = (delay * 2).min(ENROL_BACKOFF_MAX);
                self.record(
                    Entry::new(
                        now(),
                        Kind::Enrolment,
                        format!("enrolment failed; retrying in {delay:?}"),
                    )
                    .reason(e.to_string()),
                );
                self.spawn_enrol_after(delay);
            }
            Outcome::Posture { report, evaluation } => {
                let violations = match &evaluation {
                    Ok(evaluation) => evaluation.violations.clone(),
                    Err(e) => vec![posture::policy::Violation {
                        check: "policy".to_owned(),
                        message: format!("the posture policy could not be evaluated: {e}"),
                        remediation: "Contact your IT helpdesk.".to_owned(),
                    }],
                };
                self.record_posture(&report, &violations);
                self.report = Some(Arc::new(*report));
                self.evaluation = evaluation.ok();
                self.feed(Event::PostureCollected { violations }).await;
            }
            Outcome::Verdict(verdict) => {
                let what = format!(
                    "{} until {}",
                    if verdict.compliant {
                        "compliant"
                    } else {
                        "not compliant"
                    },
                    rfc3339(verdict.valid_until)
                );
                // A renewal that changes nothing is not recorded: the agent
                // re-attests every few minutes, and the timeline keeps what
                // moved (a week of renewals would crowd out the rest).
                let why = describe_violations(&verdict.violations);
                let seen = (verdict.compliant, why.clone());
                if self.verdict_recorded.as_ref() != Some(&seen) {
                    let mut entry = Entry::new(now(), Kind::Verdict, what);
                    if !why.is_empty() {
                        entry = entry.reason(why);
                    }
                    self.record(entry);
                    self.verdict_recorded = Some(seen);
                }
                self.feed(Event::Verdict(Verdict {
                    compliant: verdict.compliant,
                    violations: verdict.violations,
                    valid_until: verdict.valid_until,
                }))
                .await;
            }
            Outcome::AttestFailed(reason) => {
                self.record(
                    Entry::new(now(), Kind::Verdict, "attestation failed").reason(reason.clone()),
                );
                self.feed(Event::AttestFailed { reason }).await;
            }
            Outcome::GrantIssued(app, issued) => {
                let grant = Grant {
                    id: issued.grant.id.clone(),
                    expires_at: issued.grant.expires_at,
                    end: issued.grant.ends.as_ref().map(|end| GrantEnd {
                        reason: end.reason.clone(),
                        reopens_at: end.reopens_at,
                    }),
                };
                let mut entry = Entry::new(
                    now(),
                    Kind::Grant,
                    format!("grant {} until {}", grant.id, rfc3339(grant.expires_at)),
                )
                .app(app.clone());
                if let Some(end) = &grant.end {
                    entry =
                        entry.reason(format!("access ends with its time window ({})", end.reason));
                }
                self.record(entry);
                self.issued.insert(issued.grant.id.clone(), *issued);
                self.feed(Event::GrantIssued { app, grant }).await;
            }
            Outcome::GrantFailed(app, reason, problem) => {
                self.record(
                    Entry::new(now(), Kind::Grant, "grant refused")
                        .app(app.clone())
                        .reason(reason.clone()),
                );
                self.feed(Event::GrantFailed { app, reason }).await;
                match problem {
                    // The broker no longer takes the verdict this agent
                    // holds: attest again, as when a verdict expires here
                    // (the policy changed, and the event saying so may
                    // have been missed while the stream was down).
                    Some(ProblemType::VerdictStalePolicy) => {
                        self.spawn_policy_fetch();
                        self.feed(Event::EnvironmentChanged).await;
                    }
                    Some(ProblemType::VerdictExpired | ProblemType::VerdictMissing) => {
                        self.feed(Event::EnvironmentChanged).await;
                    }
                    _ => {}
                }
            }
            Outcome::AccessRefused(app, refusal) => {
                let kind = match refusal.kind {
                    AccessRefusalKind::Denied => Kind::Access,
                    AccessRefusalKind::StepUpRequired => Kind::StepUp,
                };
                let (what, why) = describe_refusal(&refusal);
                self.record(Entry::new(now(), kind, what).app(app.clone()).reason(why));
                let refusal = to_refusal(*refusal);
                self.feed(Event::AccessRefused { app, refusal }).await;
            }
            Outcome::AppsFetched(doc) => {
                self.apps_step_up = merged_step_up(
                    doc.apps
                        .iter()
                        .filter(|a| !a.access.allow)
                        .filter_map(|a| a.access.step_up.as_ref()),
                );
                self.apps_seen = Some((*doc, now()));
            }
            Outcome::Session(state) => self.session_changed(state).await,
            Outcome::RefreshFailed(reason) => {
                self.record(
                    Entry::new(now(), Kind::Session, "session refresh failed")
                        .reason(reason.clone()),
                );
                self.feed(Event::RefreshFailed { reason }).await;
                self.poll_session().await;
            }
            Outcome::Broker(event) => self.on_broker_event(event).await,
            Outcome::PolicyFetched(policy) => {
                self.policy = Some(Arc::new(policy));
                self.feed(Event::Broker(BrokerEvent::PolicyChanged)).await;
            }
            Outcome::Event(event) => self.feed(event).await,
            Outcome::Note(entry) => self.record(entry),
            Outcome::UpdateStatus(mut status) => {
                // The service's own events, with their times, so none
                // between two polls is lost; an older service sends none,
                // and then a change of phase is recorded now.
                let fresh = crate::timeline::update_entries(&status, self.timeline.newest_update());
                if status.recent.is_empty() {
                    if self.update.as_ref().map(|u| &u.phase) != Some(&status.phase) {
                        let event = service::updater::UpdateEvent {
                            at: now(),
                            phase: status.phase.clone(),
                        };
                        self.record(crate::timeline::update_entry(&event, &status.running));
                    }
                } else {
                    for entry in fresh {
                        self.record(entry);
                    }
                }
                // The status view carries the current phase only.
                status.recent.clear();
                self.update = Some(status);
            }
        }
    }

    pub(super) async fn on_broker_event(&mut self, event: api::Event) {
        let ours = self.device.as_ref().map(|d| d.id.clone());
        let mapped = match event {
            api::Event::GrantRevoked {
                grant_id, reason, ..
            } => Some(BrokerEvent::GrantRevoked { grant_id, reason }),
            api::Event::SessionRevoked { user, reason } => {
                if self.subject.as_deref() == Some(user.as_str()) {
                    self.refuse_sign_in(ReauthReason::Revoked {
                        message: reason.clone(),
                    })
                    .await;
                }
                (self.subject.as_deref() == Some(user.as_str()))
                    .then_some(BrokerEvent::SessionRevoked { reason })
            }
            api::Event::DeviceComplianceChange {
                device_id,
                current_status,
                reason,
                ..
            } => (ours.as_deref() == Some(device_id.as_str())).then(|| {
                BrokerEvent::ComplianceChanged {
                    compliant: current_status == api::ComplianceStatus::Compliant,
                    reason,
                }
            }),
            api::Event::PolicyChanged { .. } => {
                self.spawn_policy_fetch();
                None
            }
            api::Event::AccessPolicyChanged { .. } => Some(BrokerEvent::AccessPolicyChanged),
            api::Event::DeviceApproved { device_id } => {
                let pending = self.awaiting_approval.as_ref().map(|(d, _)| d.id.as_str());
                if pending == Some(device_id.as_str()) {
                    self.note(Kind::Enrolment, "IT approved this device (broker event)");
                    self.enrol_now();
                }
                None
            }
        };
        if let Some(event) = mapped {
            self.record(describe_broker_event(&event));
            self.feed(Event::Broker(event)).await;
        }
    }
}

/// One sign-in for several step-ups: the first one's `acr_values`, the
/// smallest `max_age` (a more recent sign-in satisfies every larger one).
fn merged_step_up<'a>(step_ups: impl Iterator<Item = &'a StepUp>) -> Option<StepUp> {
    step_ups.fold(None, |merged: Option<StepUp>, next| {
        Some(match merged {
            None => next.clone(),
            Some(first) => StepUp {
                max_age: match (first.max_age, next.max_age) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                },
                acr_values: first.acr_values,
            },
        })
    })
}

/// The broker's access refusal as the supervisor's [`Refusal`]. A step-up
/// refusal without a step-up in it still asks for a new sign-in (of
/// nothing in particular): fail closed.
fn to_refusal(refusal: AccessRefusal) -> Refusal {
    let decision = refusal.decision;
    match refusal.kind {
        AccessRefusalKind::Denied => Refusal::Denied {
            reasons: decision.reasons,
            opens_at: decision.opens_at,
        },
        AccessRefusalKind::StepUpRequired => Refusal::StepUp {
            reasons: decision.reasons,
            step_up: decision.step_up.unwrap_or(StepUp {
                acr_values: Vec::new(),
                max_age: None,
            }),
        },
    }
}

/// The timeline's words for an access refusal: what the policy did, and
/// its reasons (never more than the user may see).
fn describe_refusal(refusal: &AccessRefusal) -> (String, String) {
    let reasons: Vec<&str> = refusal
        .decision
        .reasons
        .iter()
        .map(|r| r.message.as_str())
        .collect();
    let what = match refusal.kind {
        AccessRefusalKind::Denied => "the access policy denied it",
        AccessRefusalKind::StepUpRequired => "the access policy asks for a fresh sign-in",
    };
    let mut why = reasons.join("; ");
    if let Some(at) = refusal.decision.opens_at {
        why.push_str(&format!(" (opens at {})", rfc3339(at)));
    }
    (what.to_owned(), why)
}

/// The broker's violations as one reason: each check and its message.
fn describe_violations(violations: &[posture::policy::Violation]) -> String {
    violations
        .iter()
        .map(|v| format!("{}: {}", v.check, v.message))
        .collect::<Vec<_>>()
        .join("; ")
}

/// A broker event the supervisor acts on, as a timeline entry.
fn describe_broker_event(event: &BrokerEvent) -> Entry {
    match event {
        BrokerEvent::GrantRevoked { grant_id, reason } => Entry::new(
            now(),
            Kind::Revocation,
            format!("the broker revoked grant {grant_id}"),
        )
        .reason(reason.clone()),
        BrokerEvent::SessionRevoked { reason } => {
            Entry::new(now(), Kind::Revocation, "the broker revoked this session")
                .reason(reason.clone())
        }
        BrokerEvent::ComplianceChanged { compliant, reason } => Entry::new(
            now(),
            Kind::Verdict,
            if *compliant {
                "the broker marked this device compliant"
            } else {
                "the broker marked this device non-compliant"
            },
        )
        .reason(reason.clone()),
        other => Entry::new(now(), Kind::Broker, format!("{other:?}")),
    }
}

fn to_session(state: &SessionState, sign_in: SignIn) -> Session {
    match state {
        SessionState::SignedOut => Session::SignedOut,
        SessionState::Valid { until, .. } => Session::Valid {
            until: OffsetDateTime::from_unix_timestamp(*until)
                .unwrap_or(OffsetDateTime::UNIX_EPOCH),
            sign_in,
        },
        SessionState::NeedsReauth { reason } => Session::NeedsReauth {
            reason: reason.to_string(),
        },
    }
}

fn describe_session(state: &SessionState) -> Entry {
    match state {
        SessionState::SignedOut => Entry::new(now(), Kind::Session, "signed out"),
        SessionState::Valid { user, .. } => {
            Entry::new(now(), Kind::Session, format!("signed in as {user}"))
        }
        SessionState::NeedsReauth { reason } => {
            Entry::new(now(), Kind::Session, "needs a new sign-in").reason(reason.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{StepUp, merged_step_up};

    #[test]
    fn one_sign_in_serves_every_step_up_the_broker_names() {
        let a = StepUp {
            acr_values: vec!["urn:x:mfa".into()],
            max_age: Some(3600),
        };
        let b = StepUp {
            acr_values: vec!["urn:x:hwk".into()],
            max_age: Some(600),
        };
        assert_eq!(
            merged_step_up([&a, &b].into_iter()),
            Some(StepUp {
                acr_values: vec!["urn:x:mfa".into()],
                max_age: Some(600)
            })
        );
        assert_eq!(merged_step_up(std::iter::empty()), None);
    }
}
