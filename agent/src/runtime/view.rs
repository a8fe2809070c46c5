//! The runtime's state as the front ends see it ([`crate::control::view`]).

use std::time::SystemTime;

use time::OffsetDateTime;

use super::{Runtime, rfc3339};
use crate::control::view::{
    AWAITING_APPROVAL, AppView, EnrolmentView, ForwardView, IdentityView, StatusView, StepUpView,
    TunnelState, TunnelView, VerdictView,
};
use crate::identity::session::{ReauthReason, SessionState};

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

    pub(super) fn apps_view(&self) -> Vec<AppView> {
        let wanted: Vec<&String> = self.sup.wanted().collect();
        self.config
            .iter()
            .flat_map(|c| c.apps.iter())
            .map(|app| AppView {
                id: app.id.clone(),
                name: app.name.clone(),
                targets: app.targets.clone(),
                wanted: wanted.contains(&&app.id),
            })
            .collect()
    }
}
