//! Plain-text rendering of `sallyport status` and `sallyport apps` (pure,
//! so the wording is tested without a running agent).

use std::fmt::Write as _;

use agent::control::view::{
    AWAITING_APPROVAL_PHRASE, AppView, EnrolmentView, IdentityView, StatusView, TunnelState,
    VerdictView,
};

/// Human-readable byte counts (`1.5 MB`).
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// The status as a few readable lines.
pub fn render_status(status: &StatusView) -> String {
    let mut out = String::new();
    let identity = match &status.identity {
        IdentityView::SignedOut => "signed out — run `sallyport login`".to_owned(),
        IdentityView::Valid {
            user,
            expires_at,
            mfa,
        } => format!("{user} (MFA: {mfa}), session until {expires_at}"),
        IdentityView::NeedsReauth {
            user,
            reason,
            step_up,
        } => format!(
            "{} needs to sign in again: {reason}{}",
            user.as_deref().unwrap_or("the user"),
            if step_up.is_some() {
                " (`sallyport login` asks the identity provider for what the broker requires)"
            } else {
                ""
            }
        ),
    };
    let _ = writeln!(out, "Identity  {identity}");
    let device = match (&status.enrolment, &status.verdict) {
        (EnrolmentView::PendingApproval { device_id, since }, _) => format!(
            "{} (device {device_id}, enrolled {since}); applications open once approved",
            AWAITING_APPROVAL_PHRASE
        ),
        (_, verdict) => verdict_line(verdict.as_ref()),
    };
    let _ = writeln!(out, "Device    {device}");
    if let Some(at) = &status.posture_collected_at {
        let _ = writeln!(out, "Posture   collected at {at}");
    }
    if status.tunnels.is_empty() {
        let _ = writeln!(
            out,
            "Tunnels   none (open one with `sallyport connect APP`)"
        );
        return out;
    }
    let _ = writeln!(out, "Tunnels");
    for t in &status.tunnels {
        let state = match t.state {
            TunnelState::Up => "up",
            TunnelState::Connecting => "connecting",
            TunnelState::Down => "down",
        };
        let _ = write!(out, "  {:<12} {state}", t.app);
        if let Some(reason) = &t.reason {
            let _ = write!(out, " — {reason}");
        }
        let _ = writeln!(out);
        for f in &t.forwards {
            let _ = writeln!(out, "      {} -> {}", f.local, f.target);
        }
        if let Some(socks) = &t.socks {
            let _ = writeln!(out, "      SOCKS5 proxy {socks}");
        }
        if t.state != TunnelState::Down {
            let _ = writeln!(
                out,
                "      in {}, out {}, last handshake {}, expires {}",
                bytes(t.bytes_in),
                bytes(t.bytes_out),
                t.last_handshake.as_deref().unwrap_or("none yet"),
                t.expires_at.as_deref().unwrap_or("-")
            );
        }
    }
    out
}

/// The device line when no approval is awaited: the broker's verdict.
fn verdict_line(verdict: Option<&VerdictView>) -> String {
    match verdict {
        None => "not verified yet".to_owned(),
        Some(v) if v.compliant => format!("compliant (verdict valid until {})", v.valid_until),
        Some(v) => {
            let mut text = format!("NOT compliant ({} problem(s))", v.violations.len());
            for violation in &v.violations {
                let _ = write!(
                    text,
                    "\n          - {}: {} To fix: {}",
                    violation.check,
                    agent::supervisor::as_sentence(&violation.message),
                    violation.remediation
                );
            }
            text
        }
    }
}

/// The catalogue as lines.
pub fn render_apps(apps: &[AppView]) -> String {
    if apps.is_empty() {
        return "No applications (the broker's catalogue is empty or not loaded yet).\n".to_owned();
    }
    let mut out = String::new();
    for app in apps {
        let _ = writeln!(
            out,
            "{} {:<12} {:<24} {}",
            if app.wanted { "*" } else { " " },
            app.id,
            app.name,
            app.targets.join(", ")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent::control::view::{AWAITING_APPROVAL, ForwardView, TunnelView, VerdictView};
    use posture::policy::Violation;

    #[test]
    fn byte_counts_read_naturally() {
        assert_eq!(bytes(999), "999 B");
        assert_eq!(bytes(1_500), "1.5 kB");
        assert_eq!(bytes(2_000_000), "2.0 MB");
    }

    #[test]
    fn status_shows_who_what_failed_and_where_apps_are() {
        let status = StatusView {
            identity: IdentityView::Valid {
                user: "alice@example.com".into(),
                expires_at: "2026-11-23T12:00:00Z".into(),
                mfa: "otp".into(),
            },
            verdict: Some(VerdictView {
                compliant: false,
                violations: vec![Violation {
                    check: "firewall".into(),
                    message: "The firewall is off.".into(),
                    remediation: "Turn it on.".into(),
                }],
                valid_until: "2026-11-23T11:00:00Z".into(),
            }),
            tunnels: vec![TunnelView {
                app: "wiki".into(),
                state: TunnelState::Down,
                reason: Some("firewall: The firewall is off. To fix: Turn it on.".into()),
                forwards: vec![],
                socks: None,
                bytes_in: 0,
                bytes_out: 0,
                last_handshake: None,
                expires_at: None,
            }],
            posture_collected_at: None,
            enrolment: EnrolmentView::Enrolled {
                device_id: "oKIy".into(),
            },
        };
        let text = render_status(&status);
        assert!(text.contains("alice@example.com (MFA: otp)"), "{text}");
        assert!(text.contains("NOT compliant (1 problem(s))"), "{text}");
        assert!(text.contains("To fix: Turn it on."), "{text}");
        assert!(text.contains("wiki         down — firewall"), "{text}");

        let up = StatusView {
            tunnels: vec![TunnelView {
                app: "wiki".into(),
                state: TunnelState::Up,
                reason: None,
                forwards: vec![ForwardView {
                    target: "10.0.0.5:443/tcp".into(),
                    local: "127.0.0.1:40123".into(),
                }],
                socks: Some("127.0.0.1:40124".into()),
                bytes_in: 1_500,
                bytes_out: 10,
                last_handshake: Some("2026-11-23T10:00:00Z".into()),
                expires_at: Some("2026-11-23T10:15:00Z".into()),
            }],
            ..status
        };
        let text = render_status(&up);
        assert!(
            text.contains("127.0.0.1:40123 -> 10.0.0.5:443/tcp"),
            "{text}"
        );
        assert!(text.contains("in 1.5 kB, out 10 B"), "{text}");
    }

    #[test]
    fn a_device_held_for_approval_says_it_waits_for_it_not_that_it_failed() {
        let status = StatusView {
            identity: IdentityView::Valid {
                user: "alice@example.com".into(),
                expires_at: "2026-11-23T12:00:00Z".into(),
                mfa: "otp".into(),
            },
            verdict: None,
            tunnels: vec![TunnelView {
                app: "wiki".into(),
                state: TunnelState::Down,
                reason: Some(AWAITING_APPROVAL.into()),
                forwards: vec![],
                socks: None,
                bytes_in: 0,
                bytes_out: 0,
                last_handshake: None,
                expires_at: None,
            }],
            posture_collected_at: None,
            enrolment: EnrolmentView::PendingApproval {
                device_id: "oKIy".into(),
                since: "2026-11-23T10:00:00Z".into(),
            },
        };
        let text = render_status(&status);
        assert!(
            text.contains("Device    waiting for IT to approve this device (device oKIy"),
            "{text}"
        );
        assert!(!text.contains("not verified yet"), "{text}");
        assert!(
            text.contains("wiki         down — Waiting for IT to approve this device."),
            "{text}"
        );
    }
}
