//! Which desktop notifications a change of state deserves.
//!
//! Pure: compares the previous and the new [`StatusView`] and returns the
//! notices to show, so the rules ("posture failed", "a tunnel closed, and
//! why", "sign in again") are tested without a notification daemon. The
//! first status after start is compared with nothing and announces only
//! problems, never "all is well".

use agent::control::view::{
    AWAITING_APPROVAL, EnrolmentView, IdentityView, StatusView, TunnelState,
};

/// One desktop notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// The headline.
    pub title: String,
    /// The detail.
    pub body: String,
}

/// The notices for going from `before` (if any) to `after`.
pub fn notices(before: Option<&StatusView>, after: &StatusView) -> Vec<Notice> {
    let mut out = Vec::new();

    let was_pending = |s: &StatusView| matches!(s.enrolment, EnrolmentView::PendingApproval { .. });
    match (before.map(was_pending), was_pending(after)) {
        (Some(false) | None, true) => out.push(Notice {
            title: AWAITING_APPROVAL.trim_end_matches('.').to_owned(),
            body: "This device is new to your organisation. Applications open by themselves once IT approves it; there is nothing to do meanwhile.".into(),
        }),
        (Some(true), false) if matches!(after.enrolment, EnrolmentView::Enrolled { .. }) => {
            out.push(Notice {
                title: "This device was approved".into(),
                body: "IT approved this device; applications can open now.".into(),
            });
        }
        _ => {}
    }

    let was_compliant = before.and_then(|b| b.verdict.as_ref()).map(|v| v.compliant);
    if let Some(verdict) = after.verdict.as_ref().filter(|v| !v.compliant)
        && was_compliant != Some(false)
    {
        let n = verdict.violations.len();
        let first = verdict
            .violations
            .first()
            .map(|v| format!(" {}.", v.message))
            .unwrap_or_default();
        out.push(Notice {
            title: "This device does not meet the security policy".into(),
            body: format!(
                "{n} problem{}:{first} Applications stay closed until it is fixed; open Sallyport to see how.",
                if n == 1 { "" } else { "s" }
            ),
        });
    }

    if let Some(before) = before {
        for old in before.tunnels.iter().filter(|t| t.state == TunnelState::Up) {
            // A tunnel the user closed disappears; one the agent closed stays, down, with a reason.
            if let Some(new) = after
                .tunnels
                .iter()
                .find(|t| t.app == old.app && t.state == TunnelState::Down)
            {
                out.push(Notice {
                    title: format!("{} closed", old.app),
                    body: new
                        .reason
                        .clone()
                        .unwrap_or_else(|| "The connection closed.".into()),
                });
            }
        }

        let was_valid = matches!(before.identity, IdentityView::Valid { .. });
        if was_valid && let IdentityView::NeedsReauth { reason, .. } = &after.identity {
            out.push(Notice {
                title: "Sign in again".into(),
                body: reason.clone(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use agent::control::view::{TunnelView, VerdictView};
    use posture::policy::Violation;

    use super::*;

    fn status(compliant: Option<bool>, tunnel: Option<(TunnelState, Option<&str>)>) -> StatusView {
        StatusView {
            identity: IdentityView::Valid {
                user: "alice".into(),
                expires_at: "2026-11-23T18:00:00Z".into(),
                mfa: "otp".into(),
                step_up: None,
            },
            verdict: compliant.map(|compliant| VerdictView {
                compliant,
                violations: if compliant {
                    vec![]
                } else {
                    vec![Violation {
                        check: "firewall".into(),
                        message: "no firewall rules loaded".into(),
                        remediation: "turn it on".into(),
                    }]
                },
                valid_until: "2026-11-23T11:00:00Z".into(),
            }),
            tunnels: tunnel
                .map(|(state, reason)| TunnelView {
                    app: "wiki".into(),
                    state,
                    reason: reason.map(Into::into),
                    forwards: vec![],
                    socks: None,
                    socks_username: None,
                    socks_password: None,
                    bytes_in: 0,
                    bytes_out: 0,
                    last_handshake: None,
                    expires_at: None,
                })
                .into_iter()
                .collect(),
            posture_collected_at: None,
            enrolment: EnrolmentView::Enrolled {
                device_id: "oKIy".into(),
            },
            broker_unreachable: None,
            support_code: None,
            update: None,
        }
    }

    #[test]
    fn posture_failing_is_announced_once_with_the_first_problem() {
        let ok = status(Some(true), None);
        let bad = status(Some(false), None);
        assert_eq!(
            notices(Some(&ok), &bad),
            [Notice {
                title: "This device does not meet the security policy".into(),
                body: "1 problem: no firewall rules loaded. Applications stay closed until it is fixed; open Sallyport to see how.".into(),
            }]
        );
        assert_eq!(notices(Some(&bad), &bad), []);
        // At start, a failing device is announced; a compliant one is not.
        assert_eq!(notices(None, &bad).len(), 1);
        assert_eq!(notices(None, &ok), []);
    }

    #[test]
    fn a_tunnel_the_agent_closes_is_announced_with_its_reason() {
        let up = status(Some(true), Some((TunnelState::Up, None)));
        let down = status(Some(true), Some((TunnelState::Down, Some("grant expired"))));
        assert_eq!(
            notices(Some(&up), &down),
            [Notice {
                title: "wiki closed".into(),
                body: "grant expired".into(),
            }]
        );
        // Closed by the user: gone from the list, no notice.
        assert_eq!(notices(Some(&up), &status(Some(true), None)), []);
        // Still down: no repeat.
        assert_eq!(notices(Some(&down), &down), []);
    }

    #[test]
    fn a_session_needing_mfa_again_is_announced() {
        let before = status(Some(true), None);
        let mut after = before.clone();
        after.identity = IdentityView::NeedsReauth {
            user: Some("alice".into()),
            reason: "your sign-in is older than 12 hours".into(),
            step_up: None,
        };
        assert_eq!(
            notices(Some(&before), &after),
            [Notice {
                title: "Sign in again".into(),
                body: "your sign-in is older than 12 hours".into(),
            }]
        );
    }

    #[test]
    fn waiting_for_approval_is_announced_once_and_so_is_the_approval() {
        let enrolled = status(None, None);
        let mut pending = enrolled.clone();
        pending.enrolment = EnrolmentView::PendingApproval {
            device_id: "oKIy".into(),
            since: "2026-11-23T10:00:00Z".into(),
        };
        let first = notices(None, &pending);
        assert_eq!(first.len(), 1, "{first:?}");
        assert_eq!(first[0].title, "Waiting for IT to approve this device");
        assert_eq!(notices(Some(&pending), &pending), []);
        assert_eq!(
            notices(Some(&pending), &enrolled),
            [Notice {
                title: "This device was approved".into(),
                body: "IT approved this device; applications can open now.".into(),
            }]
        );
        assert_eq!(notices(Some(&enrolled), &enrolled), []);
    }
}
