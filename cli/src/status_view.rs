//! Plain-text rendering of `sallyport status` and `sallyport apps` (pure,
//! so the wording is tested without a running agent).

use std::fmt::Write as _;

use agent::control::view::{
    AWAITING_APPROVAL_PHRASE, AccessSource, AccessView, AppView, EnrolmentView, IdentityView,
    StatusView, StepUpView, TunnelState, VerdictView,
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
            step_up,
        } => format!(
            "{user} (MFA: {mfa}), session until {expires_at}{}",
            match step_up {
                Some(step_up) => format!(
                    "\n          an application {}: run `sallyport login`",
                    needs_sign_in(step_up)
                ),
                None => String::new(),
            }
        ),
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
    if let Some(unreachable) = &status.broker_unreachable {
        let _ = writeln!(out, "Broker    {unreachable}");
    }
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
    if let Some(update) = &status.update {
        let _ = writeln!(out, "Updates   {}", update_line(update));
    }
    if let Some(code) = &status.support_code {
        let _ = writeln!(
            out,
            "Support   code {code} (read it to helpdesk; `sallyport history` shows what happened)"
        );
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
            // With `tunnels.socks_auth` the application needs the pair to
            // use the proxy; the control socket is this user's own.
            match (&t.socks_username, &t.socks_password) {
                (Some(user), Some(password)) => {
                    let _ = writeln!(
                        out,
                        "      SOCKS5 proxy {socks} (user {user}, password {password})"
                    );
                }
                _ => {
                    let _ = writeln!(out, "      SOCKS5 proxy {socks}");
                }
            }
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
/// The device service's updater in one line.
fn update_line(update: &agent::device_service::updater::UpdateStatus) -> String {
    use agent::device_service::updater::Phase;
    let phase = match &update.phase {
        Phase::Off => "off (IT has not configured an update feed)".to_owned(),
        Phase::UpToDate => format!("up to date ({})", update.running),
        Phase::Available { version, required } => format!(
            "update available: {version}{} (running {})",
            if *required { ", required" } else { "" },
            update.running
        ),
        Phase::Installing { version } => format!("installing {version}"),
        Phase::Updated { from, to } => format!("updated from {from} to {to}"),
        Phase::Refused { reason } => format!("an update was refused: {reason}"),
        Phase::Failed { reason } => format!("the last check failed: {reason}"),
    };
    match &update.last_check {
        Some(at) => format!("{phase}; last check {at}"),
        None => phase,
    }
}

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

/// The catalogue as lines: per app whether it can open now and, if not,
/// why and what to do (`*` marks the apps you opened).
pub fn render_apps(apps: &[AppView]) -> String {
    if apps.is_empty() {
        return "No applications (the broker's catalogue is empty or not loaded yet).\n".to_owned();
    }
    let mut out = String::new();
    if apps.iter().any(|a| a.access.source == AccessSource::Agent) {
        let _ = writeln!(
            out,
            "(The access broker was not asked or did not answer: this is what the agent knows.)"
        );
    }
    for app in apps {
        let _ = writeln!(
            out,
            "{} {:<12} {:<24} {}",
            if app.wanted { "*" } else { " " },
            app.id,
            app.name,
            app.targets.join(", ")
        );
        for line in access_lines(&app.access) {
            let _ = writeln!(out, "      {line}");
        }
    }
    out
}

/// Whether it can open, why not, and what to do, one thought a line.
fn access_lines(access: &AccessView) -> Vec<String> {
    let mut lines = Vec::new();
    if access.can_open {
        lines.push(match &access.closes_at {
            Some(at) => format!("can open now, until {}", short_time(at)),
            None => "can open now".to_owned(),
        });
        // When it can open, the reasons say why access ends when it does.
        lines.extend(access.reasons.iter().map(|r| r.message.clone()));
        return lines;
    }
    let mut reasons = access.reasons.iter();
    match reasons.next() {
        Some(first) => lines.push(format!("cannot open now: {}", with_fix(first))),
        None => lines.push("cannot open now".to_owned()),
    }
    lines.extend(reasons.map(with_fix));
    if let Some(at) = &access.opens_at {
        lines.push(format!("opens again at {}", short_time(at)));
    }
    if let Some(step_up) = &access.step_up {
        lines.push(format!("{}: run `sallyport login`", needs_sign_in(step_up)));
    }
    lines
}

fn with_fix(reason: &agent::supervisor::AccessReason) -> String {
    let message = agent::supervisor::as_sentence(&reason.message);
    match reason.remediation.trim() {
        "" => message,
        fix => format!("{message} To fix: {}", agent::supervisor::as_sentence(fix)),
    }
}

/// "needs a fresh sign-in (showing urn:…:mfa, at most 10 min old)".
fn needs_sign_in(step_up: &StepUpView) -> String {
    let mut what = Vec::new();
    if !step_up.acr_values.is_empty() {
        what.push(format!("showing {}", step_up.acr_values.join(" or ")));
    }
    if let Some(max_age) = step_up.max_age {
        what.push(format!("at most {} old", age(max_age)));
    }
    if what.is_empty() {
        "needs a fresh sign-in".to_owned()
    } else {
        format!("needs a fresh sign-in ({})", what.join(", "))
    }
}

fn age(seconds: u64) -> String {
    match seconds {
        s if s < 120 => format!("{s} s"),
        s if s < 2 * 3600 => format!("{} min", s / 60),
        s => format!("{} h", s / 3600),
    }
}

/// An RFC 3339 time as `2027-01-15 07:00 UTC` (the raw text if unreadable).
fn short_time(rfc3339: &str) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
    time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .ok()
        .and_then(|t| t.to_offset(time::UtcOffset::UTC).format(&format).ok())
        .unwrap_or_else(|| rfc3339.to_owned())
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
                step_up: None,
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
                socks_username: None,
                socks_password: None,
                bytes_in: 0,
                bytes_out: 0,
                last_handshake: None,
                expires_at: None,
            }],
            posture_collected_at: None,
            enrolment: EnrolmentView::Enrolled {
                device_id: "oKIy".into(),
            },
            broker_unreachable: None,
            support_code: None,
            update: None,
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
                socks_username: None,
                socks_password: None,
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
        assert!(text.contains("SOCKS5 proxy 127.0.0.1:40124\n"), "{text}");

        let mut with_auth = up.clone();
        with_auth.tunnels[0].socks_username = Some("sp-AbCdEfGh".into());
        with_auth.tunnels[0].socks_password = Some("pw-123".into());
        let text = render_status(&with_auth);
        assert!(
            text.contains("SOCKS5 proxy 127.0.0.1:40124 (user sp-AbCdEfGh, password pw-123)"),
            "{text}"
        );
    }

    #[test]
    fn a_device_held_for_approval_says_it_waits_for_it_not_that_it_failed() {
        let status = StatusView {
            identity: IdentityView::Valid {
                user: "alice@example.com".into(),
                expires_at: "2026-11-23T12:00:00Z".into(),
                mfa: "otp".into(),
                step_up: None,
            },
            verdict: None,
            tunnels: vec![TunnelView {
                app: "wiki".into(),
                state: TunnelState::Down,
                reason: Some(AWAITING_APPROVAL.into()),
                forwards: vec![],
                socks: None,
                socks_username: None,
                socks_password: None,
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
            broker_unreachable: None,
            support_code: None,
            update: None,
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

    fn app(id: &str, name: &str, access: AccessView) -> AppView {
        AppView {
            id: id.into(),
            name: name.into(),
            targets: vec!["10.20.0.9:22/tcp".into()],
            wanted: true,
            access,
        }
    }

    fn access(can_open: bool) -> AccessView {
        AccessView {
            can_open,
            reasons: vec![],
            step_up: None,
            opens_at: None,
            closes_at: None,
            source: AccessSource::Broker,
        }
    }

    fn reason(message: &str, remediation: &str) -> agent::supervisor::AccessReason {
        agent::supervisor::AccessReason {
            message: message.into(),
            remediation: remediation.into(),
        }
    }

    #[test]
    fn apps_say_whether_they_open_now_and_if_not_why_and_what_to_do() {
        let apps = vec![
            app(
                "wiki",
                "Wiki",
                AccessView {
                    closes_at: Some("2027-01-15T20:00:00Z".into()),
                    reasons: vec![reason("Wiki is available 07:00-20:00", "")],
                    ..access(true)
                },
            ),
            app(
                "git",
                "Git server",
                AccessView {
                    reasons: vec![reason(
                        "Git server is available 07:00-20:00",
                        "Try again when it opens",
                    )],
                    opens_at: Some("2027-01-16T07:00:00Z".into()),
                    ..access(false)
                },
            ),
            app(
                "payroll",
                "Payroll",
                AccessView {
                    reasons: vec![reason("Payroll needs a recent sign-in with MFA.", "")],
                    step_up: Some(StepUpView {
                        acr_values: vec!["urn:x:mfa".into()],
                        max_age: Some(600),
                    }),
                    ..access(false)
                },
            ),
        ];
        let text = render_apps(&apps);
        assert!(!text.contains("what the agent knows"), "{text}");
        assert!(
            text.contains("can open now, until 2027-01-15 20:00 UTC\n      Wiki is available"),
            "{text}"
        );
        assert!(
            text.contains(
                "cannot open now: Git server is available 07:00-20:00. To fix: Try again when it opens.\n      opens again at 2027-01-16 07:00 UTC"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "needs a fresh sign-in (showing urn:x:mfa, at most 10 min old): run `sallyport login`"
            ),
            "{text}"
        );
    }

    #[test]
    fn apps_say_when_the_broker_was_not_asked() {
        let apps = vec![app(
            "wiki",
            "Wiki",
            AccessView {
                reasons: vec![reason("You are signed out. Sign in to reconnect.", "")],
                source: AccessSource::Agent,
                ..access(false)
            },
        )];
        let text = render_apps(&apps);
        assert!(
            text.starts_with("(The access broker was not asked"),
            "{text}"
        );
        assert!(
            text.contains("cannot open now: You are signed out. Sign in to reconnect."),
            "{text}"
        );
    }

    #[test]
    fn status_says_when_an_application_asks_for_a_fresh_sign_in() {
        let status = StatusView {
            identity: IdentityView::Valid {
                user: "alice@example.com".into(),
                expires_at: "2026-11-23T12:00:00Z".into(),
                mfa: "pwd".into(),
                step_up: Some(StepUpView {
                    acr_values: vec![],
                    max_age: Some(7200),
                }),
            },
            verdict: None,
            tunnels: vec![],
            posture_collected_at: None,
            enrolment: EnrolmentView::NotEnrolled,
            broker_unreachable: None,
            support_code: None,
            update: None,
        };
        let text = render_status(&status);
        assert!(
            text.contains(
                "an application needs a fresh sign-in (at most 2 h old): run `sallyport login`"
            ),
            "{text}"
        );
    }
}
