//! Scenario tests of the gate; the random-sequence model test lives in
//! `agent/tests/supervisor_model.rs`.

use super::*;

fn t(seconds: i64) -> Time {
    OffsetDateTime::UNIX_EPOCH + Duration::seconds(1_800_000_000 + seconds)
}

fn violation(check: &str) -> Violation {
    Violation {
        check: check.to_owned(),
        message: format!("{check} is off."),
        remediation: format!("Turn {check} on."),
    }
}

fn compliant_until(at: i64) -> Event {
    Event::Verdict(Verdict {
        compliant: true,
        violations: vec![],
        valid_until: t(at),
    })
}

fn grant(id: &str, until: i64) -> Grant {
    Grant {
        id: id.to_owned(),
        expires_at: t(until),
    }
}

/// Signed in, posture clean, compliant verdict, `wiki` connected with grant g1.
fn connected() -> (Supervisor, Vec<Command>) {
    let mut s = Supervisor::new(Timing::default());
    s.handle(
        t(0),
        Event::SessionChanged(Session::Valid { until: t(3600) }),
    );
    s.handle(t(0), Event::PostureCollected { violations: vec![] });
    s.handle(t(1), compliant_until(300));
    let out = s.handle(t(1), Event::Connect("wiki".into()));
    assert_eq!(out, vec![Command::RequestGrant { app: "wiki".into() }]);
    let out = s.handle(
        t(2),
        Event::GrantIssued {
            app: "wiki".into(),
            grant: grant("g1", 280),
        },
    );
    (s, out)
}

fn stops(out: &[Command]) -> Vec<(&str, &Blocked)> {
    out.iter()
        .filter_map(|c| match c {
            Command::StopTunnel { app, reason } => Some((app.as_str(), reason)),
            _ => None,
        })
        .collect()
}

#[test]
fn tunnel_starts_only_when_everything_holds() {
    let (s, out) = connected();
    assert_eq!(
        out,
        vec![Command::StartTunnel {
            app: "wiki".into(),
            grant_id: "g1".into()
        }]
    );
    assert_eq!(s.tunnels_up().count(), 1);
}

#[test]
fn no_grant_is_requested_before_a_verdict() {
    let mut s = Supervisor::new(Timing::default());
    s.handle(
        t(0),
        Event::SessionChanged(Session::Valid { until: t(3600) }),
    );
    assert_eq!(s.blocked(t(0)), Some(Blocked::PostureNotCollected));
    s.handle(t(0), Event::PostureCollected { violations: vec![] });
    let out = s.handle(t(0), Event::Connect("wiki".into()));
    assert!(
        !out.iter()
            .any(|c| matches!(c, Command::RequestGrant { .. }))
    );
    assert_eq!(s.blocked(t(0)), Some(Blocked::NoVerdict));
}

#[test]
fn failing_local_posture_closes_at_once_and_says_what_to_fix() {
    let (mut s, _) = connected();
    let out = s.handle(
        t(10),
        Event::PostureCollected {
            violations: vec![violation("firewall")],
        },
    );
    assert_eq!(
        stops(&out),
        vec![("wiki", &Blocked::Posture(vec![violation("firewall")]))]
    );
    let notice = out.iter().find_map(|c| match c {
        Command::Notify(n) => Some(n),
        _ => None,
    });
    assert!(notice.is_some_and(|n| n.body.contains("Turn firewall on.")));
    assert_eq!(s.tunnels_up().count(), 0);
    // The report is still attested, so the broker knows too.
    assert!(out.contains(&Command::Attest));
}

#[test]
fn tunnel_comes_back_without_asking_when_posture_recovers() {
    let (mut s, _) = connected();
    s.handle(
        t(10),
        Event::PostureCollected {
            violations: vec![violation("firewall")],
        },
    );
    let out = s.handle(t(20), Event::PostureCollected { violations: vec![] });
    assert!(out.contains(&Command::StartTunnel {
        app: "wiki".into(),
        grant_id: "g1".into()
    }));
}

#[test]
fn verdict_expiry_closes_and_is_a_deadline() {
    let (mut s, _) = connected();
    assert!(s.next_deadline().is_some_and(|d| d <= t(300)));
    let out = s.handle(t(300), Event::Timer);
    assert_eq!(stops(&out), vec![("wiki", &Blocked::VerdictExpired)]);
}

#[test]
fn reattests_before_the_verdict_expires() {
    let (mut s, _) = connected();
    // posture is due at t(60); the verdict re-attestation at 300 - 60.
    s.handle(t(60), Event::Timer);
    s.handle(t(61), Event::PostureCollected { violations: vec![] });
    s.handle(t(62), compliant_until(300));
    let out = s.handle(t(240), Event::Timer);
    assert!(out.contains(&Command::Attest));
    assert!(stops(&out).is_empty());
}

#[test]
fn session_expiry_and_revocation_close() {
    let (mut s, _) = connected();
    let out = s.handle(
        t(5),
        Event::Broker(BrokerEvent::SessionRevoked {
            reason: "admin".into(),
        }),
    );
    assert!(matches!(stops(&out)[..], [("wiki", Blocked::Session(_))]));

    let (mut s, _) = connected();
    s.handle(
        t(5),
        Event::SessionChanged(Session::Valid { until: t(100) }),
    );
    let out = s.handle(t(40), Event::Timer);
    assert!(out.contains(&Command::RefreshSession));
    assert!(stops(&out).is_empty());
    assert!(s.next_deadline().is_some_and(|d| d <= t(100)));
    let out = s.handle(t(100), Event::Timer);
    assert!(matches!(stops(&out)[..], [("wiki", Blocked::Session(_))]));
    // The user is told what to do.
    let why = s.blocked(t(100)).map(|b| b.explain()).unwrap_or_default();
    assert!(why.contains("sign in again"), "{why}");
}

#[test]
fn grant_revocation_closes_and_waits_for_a_new_verdict() {
    let (mut s, _) = connected();
    let out = s.handle(
        t(5),
        Event::Broker(BrokerEvent::GrantRevoked {
            grant_id: "g1".into(),
            reason: "device revoked".into(),
        }),
    );
    assert!(matches!(
        stops(&out)[..],
        [("wiki", Blocked::GrantRevoked(_))]
    ));
    assert!(
        !out.iter()
            .any(|c| matches!(c, Command::RequestGrant { .. }))
    );
    // Meanwhile the user is told why this app is down, though the device
    // itself is fine.
    assert_eq!(s.blocked(t(5)), None);
    assert_eq!(
        s.app_blocked("wiki", t(5)),
        Some(Blocked::GrantRevoked("device revoked".into()))
    );
    let out = s.handle(t(6), compliant_until(300));
    assert!(out.contains(&Command::RequestGrant { app: "wiki".into() }));
    assert_eq!(s.app_blocked("wiki", t(6)), None);
}

#[test]
fn broker_noncompliance_event_closes_until_next_verdict() {
    let (mut s, _) = connected();
    let out = s.handle(
        t(5),
        Event::Broker(BrokerEvent::ComplianceChanged {
            compliant: false,
            reason: "policy".into(),
        }),
    );
    assert!(matches!(
        stops(&out)[..],
        [("wiki", Blocked::ComplianceRevoked(_))]
    ));
    let out = s.handle(t(6), compliant_until(300));
    assert!(out.contains(&Command::StartTunnel {
        app: "wiki".into(),
        grant_id: "g1".into()
    }));
}

#[test]
fn grant_is_renewed_before_expiry_without_a_gap() {
    let (mut s, _) = connected();
    s.handle(t(60), Event::Timer);
    s.handle(t(60), Event::PostureCollected { violations: vec![] });
    s.handle(t(60), compliant_until(600));
    let out = s.handle(t(250), Event::Timer);
    assert!(out.contains(&Command::RequestGrant { app: "wiki".into() }));
    let out = s.handle(
        t(251),
        Event::GrantIssued {
            app: "wiki".into(),
            grant: grant("g2", 550),
        },
    );
    assert_eq!(
        out,
        vec![
            Command::StartTunnel {
                app: "wiki".into(),
                grant_id: "g2".into()
            },
            Command::ReleaseGrant {
                app: "wiki".into(),
                grant_id: "g1".into()
            },
        ]
    );
}

#[test]
fn failed_requests_back_off() {
    let mut s = Supervisor::new(Timing::default());
    s.handle(
        t(0),
        Event::SessionChanged(Session::Valid { until: t(3600) }),
    );
    s.handle(t(0), Event::PostureCollected { violations: vec![] });
    s.handle(t(0), compliant_until(300));
    s.handle(t(0), Event::Connect("wiki".into()));
    let fail = |s: &mut Supervisor, at| {
        s.handle(
            t(at),
            Event::GrantFailed {
                app: "wiki".into(),
                reason: "unreachable".into(),
            },
        )
    };
    fail(&mut s, 0);
    assert!(s.handle(t(0), Event::Timer).is_empty());
    assert!(
        s.handle(t(1), Event::Timer)
            .contains(&Command::RequestGrant { app: "wiki".into() })
    );
    fail(&mut s, 1);
    assert!(s.handle(t(2), Event::Timer).is_empty());
    assert!(
        s.handle(t(3), Event::Timer)
            .contains(&Command::RequestGrant { app: "wiki".into() })
    );
}

#[test]
fn broker_unreachable_keeps_tunnel_until_grant_expiry() {
    let (mut s, _) = connected();
    s.handle(t(240), Event::Timer);
    let out = s.handle(
        t(241),
        Event::AttestFailed {
            reason: "connection refused".into(),
        },
    );
    assert!(stops(&out).is_empty());
    let out = s.handle(t(280), Event::Timer);
    assert_eq!(stops(&out), vec![("wiki", &Blocked::GrantExpired)]);
}

#[test]
fn sign_out_forgets_wanted_apps_and_releases_grants() {
    let (mut s, _) = connected();
    let out = s.handle(t(5), Event::UserSignedOut);
    assert!(out.contains(&Command::ReleaseGrant {
        app: "wiki".into(),
        grant_id: "g1".into()
    }));
    assert!(matches!(stops(&out)[..], [("wiki", Blocked::SignedOut)]));
    assert_eq!(s.wanted().count(), 0);
}

/// The call contract: a forward jump lapses everything it passed in that
/// one call, tunnels first.
#[test]
fn a_forward_clock_jump_closes_the_tunnel_in_that_call() {
    let (mut s, _) = connected();
    // Session (3600), verdict (300) and grant (280) all passed at once.
    let out = s.handle(t(100_000), Event::Timer);
    assert_eq!(
        stops(&out),
        vec![(
            "wiki",
            &Blocked::Session(crate::identity::session::ReauthReason::Expired.to_string())
        )]
    );
    let first_stop = out
        .iter()
        .position(|c| matches!(c, Command::StopTunnel { .. }));
    let first_request = out.iter().position(|c| {
        matches!(
            c,
            Command::RefreshSession | Command::CollectPosture | Command::RequestGrant { .. }
        )
    });
    assert!(first_stop < first_request, "stop before asking: {out:?}");
    assert!(out.contains(&Command::RefreshSession), "{out:?}");
    assert_eq!(s.tunnels_up().count(), 0);
    assert!(!out.iter().any(|c| matches!(c, Command::StartTunnel { .. })));
}

/// The call contract: a backward jump moves no deadline (they arrive later
/// by the jump) and brings nothing back that lapsed.
#[test]
fn a_backward_clock_jump_delays_deadlines_and_reopens_nothing() {
    let (mut s, _) = connected();
    let before = s.next_deadline();
    assert!(before.is_some());
    let out = s.handle(t(-3600), Event::Timer);
    assert!(stops(&out).is_empty(), "{out:?}");
    assert_eq!(s.tunnels_up().count(), 1);
    assert_eq!(s.next_deadline(), before, "deadlines are absolute");
    // The grant lapses (the verdict with it), then the clock goes back to
    // when both were valid: the tunnel stays closed, the broker is asked.
    let out = s.handle(t(300), Event::Timer);
    assert_eq!(stops(&out), vec![("wiki", &Blocked::VerdictExpired)]);
    let out = s.handle(t(100), Event::Timer);
    assert!(
        !out.iter().any(|c| matches!(c, Command::StartTunnel { .. })),
        "reopened without a new grant: {out:?}"
    );
    assert!(out.contains(&Command::RequestGrant { app: "wiki".into() }));
    assert_eq!(s.tunnels_up().count(), 0);
}

#[test]
fn an_enrolment_that_comes_late_is_attested_at_once_without_the_old_backoff() {
    // Signed in, but the device is not usable yet (waiting for IT's
    // approval): every attestation fails and backs off; posture is measured
    // and answered as the driver would.
    let mut s = Supervisor::new(Timing::default());
    let mut attests = 0;
    let mut drive = |s: &mut Supervisor, now: i64, event: Event| {
        let mut queue = vec![event];
        while let Some(event) = queue.pop() {
            let out = s.handle(t(now), event);
            if out.contains(&Command::CollectPosture) {
                queue.push(Event::PostureCollected { violations: vec![] });
            }
            if out.contains(&Command::Attest) {
                attests += 1;
                queue.push(Event::AttestFailed {
                    reason: "waiting for IT to approve this device".into(),
                });
            }
        }
    };
    drive(
        &mut s,
        0,
        Event::SessionChanged(Session::Valid { until: t(7200) }),
    );
    let mut now = 0;
    while now < 1200 {
        now += 1;
        drive(&mut s, now, Event::Timer);
    }
    assert!(attests >= 6, "attested {attests} times");
    // The backoff is now the longest; the approval arrives in the middle of it.
    let last = now;
    let out = s.handle(t(last), Event::Timer);
    assert!(!out.contains(&Command::Attest), "still backing off");
    let mut out = s.handle(t(last), Event::DeviceEnrolled);
    out.extend(s.handle(t(last), Event::PostureCollected { violations: vec![] }));
    assert!(
        out.contains(&Command::Attest),
        "attests at once after enrolment: {out:?}"
    );
}
