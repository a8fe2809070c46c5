//! The runtime's state as the front ends see it ([`crate::control::view`]).

use std::time::SystemTime;

use time::OffsetDateTime;

use super::{Runtime, rfc3339};
use broker::api::{AccessDecision, AccessReason};

use crate::control::view::{
    AWAITING_APPROVAL, AccessSource, AccessView, AppView, EnrolmentView, ForwardView, IdentityView,
    StatusView, StepUpView, TunnelState, TunnelView, VerdictView,
};
use crate::identity::session::{ReauthReason, SessionState};
use crate::supervisor::{Blocked, Grant};

fn system_time(t: SystemTime) -> String {
    rfc3339(OffsetDateTime::from(t))
}

impl Runtime {
    pub(super) fn status_view(&self) -> StatusView {
        let identity = match &self.session_seen {
            None | Some(SessionState::SignedOut) => IdentityView::SignedOut,
            Some(SessionState::Valid { until, user }) => {
                let who = self.identity.whoami().ok().flatten();
                IdentityView::Valid {
                    user: user.clone(),
                    expires_at: OffsetDateTime::from_unix_timestamp(*until)
                        .map(rfc3339)
                        .unwrap_or_default(),
                    mfa: who.map(|w| w.mfa_method).unwrap_or_default(),
                    step_up: self.pending_step_up().as_ref().map(StepUpView::from),
                }
            }
            Some(SessionState::NeedsReauth { reason }) => IdentityView::NeedsReauth {
                user: self.identity.whoami().ok().flatten().map(|w| w.user),
                reason: reason.to_string(),
                step_up: match reason {
                    ReauthReason::StepUp {
                        acr_values,
                        max_age,
                    } => Some(StepUpView {
                        acr_values: acr_values.clone(),
                        max_age: *max_age,
                    }),
                    _ => None,
                },
            },
        };
        let verdict = self.sup.verdict().map(|v| VerdictView {
            compliant: v.compliant,
            violations: v.violations.clone(),
            valid_until: rfc3339(v.valid_until),
        });
        let mut tunnels = Vec::new();
        for app in self.sup.wanted() {
            let view = match self.tunnels.get(app) {
                Some(running) => {
                    let status = running.handle.status();
                    TunnelView {
                        app: app.clone(),
                        state: if status.last_handshake.is_some() {
                            TunnelState::Up
                        } else {
                            TunnelState::Connecting
                        },
                        reason: None,
                        forwards: status
                            .forwards
                            .iter()
                            .map(|(target, local)| ForwardView {
                                target: target.to_string(),
                                local: local.to_string(),
                            })
                            .collect(),
                        socks: status.socks.map(|s| s.to_string()),
                        socks_username: running.socks_auth.as_ref().map(|c| c.username.clone()),
                        socks_password: running
                            .socks_auth
                            .as_ref()
                            .map(|c| c.password.expose().to_owned()),
                        bytes_in: status.bytes_in,
                        bytes_out: status.bytes_out,
                        last_handshake: status.last_handshake.map(system_time),
                        expires_at: Some(rfc3339(running.expires_at)),
                    }
                }
                None => {
                    let blocked = self.sup.app_blocked(app, super::now());
                    // While the broker holds the device for approval, that
                    // is the reason, whatever else is still missing.
                    let reason = match (&self.awaiting_approval, &blocked) {
                        (Some(_), _) => Some(AWAITING_APPROVAL.to_owned()),
                        (None, Some(b)) => Some(b.explain()),
                        (None, None) => None,
                    };
                    TunnelView {
                        app: app.clone(),
                        state: if reason.is_some() {
                            TunnelState::Down
                        } else {
                            TunnelState::Connecting
                        },
                        reason,
                        forwards: Vec::new(),
                        socks: None,
                        socks_username: None,
                        socks_password: None,
                        bytes_in: 0,
                        bytes_out: 0,
                        last_handshake: None,
                        expires_at: None,
                    }
                }
            };
            tunnels.push(view);
        }
        StatusView {
            identity,
            verdict,
            tunnels,
            posture_collected_at: self.report.as_ref().map(|r| rfc3339(r.collected_at)),
            enrolment: self.enrolment_view(),
            broker_unreachable: self.broker_unreachable.clone(),
            support_code: self
                .device
                .as_ref()
                .or(self.awaiting_approval.as_ref().map(|(d, _)| d))
                .map(|d| crate::control::view::support_code(&d.id)),
            update: self.update.clone(),
        }
    }

    fn enrolment_view(&self) -> EnrolmentView {
        match (&self.device, &self.awaiting_approval) {
            (Some(device), _) => EnrolmentView::Enrolled {
                device_id: device.id.clone(),
            },
            (None, Some((device, since))) => EnrolmentView::PendingApproval {
                device_id: device.id.clone(),
                since: rfc3339(*since),
            },
            (None, None) => EnrolmentView::NotEnrolled,
        }
    }

    /// What the next sign-in must show for the applications (the session
    /// itself being valid): a refused grant's step-up first, else one the
    /// broker's latest `GET /v1/apps` answer names.
    pub(super) fn pending_step_up(&self) -> Option<broker::api::StepUp> {
        self.sup.app_step_up().or_else(|| self.apps_step_up.clone())
    }

    /// The catalogue with what the agent itself knows of each app's access
    /// (used when the broker cannot be asked, or did not answer).
    pub(super) fn apps_view(&self) -> Vec<AppView> {
        let wanted: Vec<&String> = self.sup.wanted().collect();
        let now = super::now();
        self.config
            .iter()
            .flat_map(|c| c.apps.iter())
            .map(|app| {
                let access = match &self.awaiting_approval {
                    // Whatever else is missing, this is what the user waits for.
                    Some(_) => AccessView {
                        reasons: vec![reason(AWAITING_APPROVAL, "")],
                        ..closed_view()
                    },
                    None => local_access(
                        self.sup.app_blocked(&app.id, now).as_ref(),
                        self.sup.grant(&app.id),
                    ),
                };
                AppView {
                    id: app.id.clone(),
                    name: app.name.clone(),
                    targets: app.targets.clone(),
                    wanted: wanted.contains(&&app.id),
                    access,
                }
            })
            .collect()
    }
}

fn reason(message: &str, remediation: &str) -> AccessReason {
    AccessReason {
        message: message.to_owned(),
        remediation: remediation.to_owned(),
    }
}

/// A closed app's view with nothing said yet.
fn closed_view() -> AccessView {
    AccessView {
        can_open: false,
        reasons: Vec::new(),
        step_up: None,
        opens_at: None,
        closes_at: None,
        source: AccessSource::Agent,
    }
}

/// The broker's access decision as the front ends show it.
pub(super) fn broker_access(decision: &AccessDecision) -> AccessView {
    AccessView {
        can_open: decision.allow,
        reasons: decision.reasons.clone(),
        step_up: decision.step_up.as_ref().map(StepUpView::from),
        opens_at: decision.opens_at.map(rfc3339),
        closes_at: decision.closes_at.map(rfc3339),
        source: AccessSource::Broker,
    }
}

/// What the agent knows of an app's access: why the supervisor holds it
/// closed, or, when nothing does, the time window its grant ends with.
pub(super) fn local_access(blocked: Option<&Blocked>, grant: Option<&Grant>) -> AccessView {
    let Some(blocked) = blocked else {
        let end = grant.and_then(|g| g.end.as_ref().map(|end| (g.expires_at, end)));
        return AccessView {
            can_open: true,
            reasons: end
                .map(|(_, end)| vec![reason(&end.reason, "")])
                .unwrap_or_default(),
            closes_at: end.map(|(at, _)| rfc3339(at)),
            ..closed_view()
        };
    };
    let (reasons, step_up, opens_at) = match blocked {
        Blocked::AccessDenied { reasons, opens_at } => (reasons.clone(), None, *opens_at),
        Blocked::StepUpRequired { reasons, step_up } => {
            (reasons.clone(), Some(StepUpView::from(step_up)), None)
        }
        Blocked::WindowClosed {
            reason: why,
            reopens_at,
        } => (vec![reason(why, "")], None, *reopens_at),
        Blocked::Posture(violations) | Blocked::NonCompliant(violations)
            if !violations.is_empty() =>
        {
            let reasons = violations
                .iter()
                .map(|v| {
                    reason(
                        &format!(
                            "{}: {}",
                            v.check,
                            crate::supervisor::as_sentence(&v.message)
                        ),
                        &v.remediation,
                    )
                })
                .collect();
            (reasons, None, None)
        }
        other => (vec![reason(&other.explain(), "")], None, None),
    };
    AccessView {
        reasons,
        step_up,
        opens_at: opens_at.map(rfc3339),
        ..closed_view()
    }
}

#[cfg(test)]
mod tests {
    use broker::api::StepUp;
    use time::OffsetDateTime;

    use super::*;
    use crate::supervisor::GrantEnd;

    fn at(seconds: i64) -> OffsetDateTime {
        OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(1_800_000_000 + seconds)
    }

    #[test]
    fn the_agents_knowledge_says_why_an_app_is_closed_and_until_when() {
        let denied = Blocked::AccessDenied {
            reasons: vec![reason(
                "Git server is open 07:00-20:00.",
                "Try again at 07:00.",
            )],
            opens_at: Some(at(3600)),
        };
        let view = local_access(Some(&denied), None);
        assert!(!view.can_open);
        assert_eq!(view.source, AccessSource::Agent);
        assert_eq!(view.reasons[0].remediation, "Try again at 07:00.");
        assert_eq!(view.opens_at.as_deref(), Some("2027-01-15T09:00:00Z"));

        let step_up = Blocked::StepUpRequired {
            reasons: vec![reason("Payroll needs a sign-in with a security key.", "")],
            step_up: StepUp {
                acr_values: vec!["urn:x:hwk".into()],
                max_age: Some(600),
            },
        };
        let view = local_access(Some(&step_up), None);
        assert_eq!(
            view.step_up,
            Some(StepUpView {
                acr_values: vec!["urn:x:hwk".into()],
                max_age: Some(600)
            })
        );

        let view = local_access(Some(&Blocked::SignedOut), None);
        assert!(!view.can_open);
        assert!(view.reasons[0].message.contains("signed out"));
    }

    #[test]
    fn an_open_app_in_a_time_window_says_when_it_closes() {
        let grant = Grant {
            id: "g1".into(),
            expires_at: at(600),
            end: Some(GrantEnd {
                reason: "Git server closes at 20:00.".into(),
                reopens_at: Some(at(40_000)),
            }),
        };
        let view = local_access(None, Some(&grant));
        assert!(view.can_open);
        assert_eq!(view.closes_at.as_deref(), Some("2027-01-15T08:10:00Z"));
        assert_eq!(view.reasons[0].message, "Git server closes at 20:00.");
        assert!(local_access(None, None).reasons.is_empty());
    }

    #[test]
    fn the_brokers_decision_is_shown_as_it_is() {
        let decision = AccessDecision {
            allow: false,
            reasons: vec![reason(
                "Not from this network.",
                "Connect to the office VPN.",
            )],
            step_up: None,
            closes_at: None,
            opens_at: Some(at(0)),
        };
        let view = broker_access(&decision);
        assert!(!view.can_open);
        assert_eq!(view.source, AccessSource::Broker);
        assert_eq!(view.reasons, decision.reasons);
        assert_eq!(view.opens_at.as_deref(), Some("2027-01-15T08:00:00Z"));
    }
}
