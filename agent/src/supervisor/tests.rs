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
        end: None,
    }
}

/// A session from the first sign-in, valid until `until`.
fn valid_until(until: i64) -> Session {
    signed_in_at(0, until)
}

/// A session from a sign-in at `auth_time` (another one is a new sign-in).
fn signed_in_at(auth_time: i64, until: i64) -> Session {
    Session::Valid {
        until: t(until),
        sign_in: SignIn {
            auth_time: Some(t(auth_time)),
            method: "otp".into(),
        },
    }
}

/// Signed in, posture clean, compliant verdict, `wiki` connected with grant g1.
fn connected() -> (Supervisor, Vec<Command>) {
    let mut s = Supervisor::new(Timing::default());
    s.handle(t(0), Event::SessionChanged(valid_until(3600)));
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
    s.handle(t(0), Event::SessionChanged(valid_until(3600)));
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
    s.handle(t(5), Event::SessionChanged(valid_until(100)));
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
fn broker_noncompliance_event_closes_and_forgets_the_grant_until_next_verdict() {
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
    // The broker closed g1 with the device's compliance: the next verdict
    // asks for a new grant, never starts g1 again (its peer is gone, so the
    // tunnel would hang in its handshake).
    let out = s.handle(t(6), compliant_until(300));
    assert!(
        out.contains(&Command::RequestGrant { app: "wiki".into() }),
        "{out:?}"
    );
    assert!(
        !out.iter().any(|c| matches!(c, Command::StartTunnel { .. })),
        "{out:?}"
    );
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
    s.handle(t(0), Event::SessionChanged(valid_until(3600)));
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
    drive(&mut s, 0, Event::SessionChanged(valid_until(7200)));
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

// ------------------------------------------------------------ access policy

fn access_reason(message: &str, remediation: &str) -> AccessReason {
    AccessReason {
        message: message.to_owned(),
        remediation: remediation.to_owned(),
    }
}

fn denied(opens_at: Option<i64>) -> Refusal {
    Refusal::Denied {
        reasons: vec![access_reason(
            "Git server is open 07:00-20:00.",
            "Try again when it opens.",
        )],
        opens_at: opens_at.map(t),
    }
}

fn step_up(acr: &str, max_age: Option<u64>) -> Refusal {
    Refusal::StepUp {
        reasons: vec![access_reason(
            "Payroll needs a recent sign-in with MFA.",
            "",
        )],
        step_up: StepUp {
            acr_values: vec![acr.to_owned()],
            max_age,
        },
    }
}

fn refused(app: &str, refusal: Refusal) -> Event {
    Event::AccessRefused {
        app: app.to_owned(),
        refusal,
    }
}

fn requests(out: &[Command]) -> Vec<&str> {
    out.iter()
        .filter_map(|c| match c {
            Command::RequestGrant { app } => Some(app.as_str()),
            _ => None,
        })
        .collect()
}

fn notices(out: &[Command]) -> usize {
    out.iter()
        .filter(|c| matches!(c, Command::Notify(_)))
        .count()
}

/// Signed in, posture clean, a verdict valid for a long time; `wiki`
/// connected with grant g1 (until t(3000)).
fn connected_for_long() -> Supervisor {
    let mut s = Supervisor::new(Timing::default());
    s.handle(t(0), Event::SessionChanged(valid_until(100_000)));
    s.handle(t(0), Event::PostureCollected { violations: vec![] });
    s.handle(t(1), compliant_until(100_000));
    s.handle(t(1), Event::Connect("wiki".into()));
    s.handle(
        t(2),
        Event::GrantIssued {
            app: "wiki".into(),
            grant: grant("g1", 3000),
        },
    );
    s
}

/// Drives `s` second by second from `from` to `to`, answering posture and
/// attestation as a healthy world would, and returns every command.
fn run(s: &mut Supervisor, from: i64, to: i64) -> Vec<Command> {
    let mut all = Vec::new();
    for now in from..=to {
        let mut out = s.handle(t(now), Event::Timer);
        if out.contains(&Command::CollectPosture) {
            out.extend(s.handle(t(now), Event::PostureCollected { violations: vec![] }));
        }
        if out.contains(&Command::Attest) {
            out.extend(s.handle(t(now), compliant_until(100_000)));
        }
        all.extend(out);
    }
    all
}

#[test]
fn a_window_end_closes_with_the_brokers_reason_and_reopens_at_reopens_at_with_no_request_between() {
    let mut s = connected_for_long();
    let reason = "Git server is available 07:00-20:00; it opens again at 07:00.";
    let out = s.handle(
        t(10),
        Event::GrantIssued {
            app: "wiki".into(),
            grant: Grant {
                id: "g2".into(),
                expires_at: t(600),
                end: Some(GrantEnd {
                    reason: reason.into(),
                    reopens_at: Some(t(5000)),
                }),
            },
        },
    );
    assert!(out.contains(&Command::StartTunnel {
        app: "wiki".into(),
        grant_id: "g2".into()
    }));
    // No renewal before the window's end: it would end at the same instant.
    let before = run(&mut s, 11, 599);
    assert!(requests(&before).is_empty(), "{before:?}");
    assert!(stops(&before).is_empty());
    assert!(s.next_deadline().is_some_and(|d| d <= t(600)));
    // At its end the tunnel closes with the broker's reason.
    let out = s.handle(t(600), Event::Timer);
    let why = Blocked::WindowClosed {
        reason: reason.into(),
        reopens_at: Some(t(5000)),
    };
    assert_eq!(stops(&out), vec![("wiki", &why)]);
    assert_eq!(why.explain(), reason);
    assert_eq!(s.app_blocked("wiki", t(601)), Some(why));
    assert!(requests(&out).is_empty());
    // Nothing is asked until the window opens again; then by itself.
    let between = run(&mut s, 601, 4999);
    assert!(requests(&between).is_empty(), "{between:?}");
    assert!(s.next_deadline().is_some_and(|d| d <= t(5000)));
    let out = s.handle(t(5000), Event::Timer);
    assert_eq!(requests(&out), vec!["wiki"]);
    assert_eq!(s.app_blocked("wiki", t(5000)), None);
}

#[test]
fn a_changed_access_policy_asks_again_for_an_app_waiting_on_a_closed_window() {
    let mut s = connected_for_long();
    s.handle(
        t(10),
        Event::GrantIssued {
            app: "wiki".into(),
            grant: Grant {
                id: "g2".into(),
                expires_at: t(600),
                end: Some(GrantEnd {
                    reason: "closed".into(),
                    reopens_at: Some(t(5000)),
                }),
            },
        },
    );
    // While the window-bounded grant lives, a new access policy changes
    // nothing here (the broker judged the grant again itself).
    let out = s.handle(t(20), Event::Broker(BrokerEvent::AccessPolicyChanged));
    assert!(requests(&out).is_empty(), "{out:?}");
    run(&mut s, 21, 600);
    let waiting = run(&mut s, 601, 700);
    assert!(requests(&waiting).is_empty());
    // After its end, the new rules may open it sooner: ask at once.
    let out = s.handle(t(701), Event::Broker(BrokerEvent::AccessPolicyChanged));
    assert_eq!(requests(&out), vec!["wiki"]);
}

#[test]
fn a_window_end_without_a_reopening_time_backs_off_as_after_a_failure() {
    let mut s = connected_for_long();
    s.handle(
        t(10),
        Event::GrantIssued {
            app: "wiki".into(),
            grant: Grant {
                id: "g2".into(),
                expires_at: t(600),
                end: Some(GrantEnd {
                    reason: "closed for maintenance".into(),
                    reopens_at: None,
                }),
            },
        },
    );
    let out = s.handle(t(600), Event::Timer);
    assert_eq!(stops(&out).len(), 1);
    assert!(requests(&out).is_empty());
    assert_eq!(requests(&s.handle(t(601), Event::Timer)), vec!["wiki"]);
}

#[test]
fn a_denial_closes_notifies_once_and_is_not_retried_until_something_changes() {
    let mut s = connected_for_long();
    // A renewal (or any request) is denied: the running tunnel closes at
    // once and its grant is let go, the user is told once.
    s.handle(t(10), Event::Connect("git".into()));
    let out = s.handle(t(11), refused("wiki", denied(None)));
    assert!(matches!(
        stops(&out)[..],
        [("wiki", Blocked::AccessDenied { .. })]
    ));
    assert!(out.contains(&Command::ReleaseGrant {
        app: "wiki".into(),
        grant_id: "g1".into()
    }));
    assert_eq!(notices(&out), 1);
    let why = s.app_blocked("wiki", t(11)).map(|b| b.explain());
    assert_eq!(
        why.as_deref(),
        Some("Git server is open 07:00-20:00. Try again when it opens.")
    );
    // Hours pass (posture, attestations on schedule): no request for wiki.
    let quiet = run(&mut s, 12, 3600);
    assert!(!requests(&quiet).contains(&"wiki"), "{quiet:?}");

    // Each change listed in the module docs lets it ask once more; the same
    // answer is not told to the user again unless they asked.
    // (Verdicts came every minute meanwhile, all alike: none counted.)
    let noncompliant = Event::Verdict(Verdict {
        compliant: false,
        violations: vec![violation("firewall")],
        valid_until: t(200_000),
    });
    let changes: Vec<(&str, Vec<Event>)> = vec![
        (
            "a verdict that says something new",
            vec![noncompliant, compliant_until(200_000)],
        ),
        (
            "a policy change",
            vec![Event::Broker(BrokerEvent::PolicyChanged)],
        ),
        (
            "a new sign-in",
            vec![Event::SessionChanged(signed_in_at(3700, 100_000))],
        ),
        ("the user's connect", vec![Event::Connect("wiki".into())]),
    ];
    let mut now = 3601;
    for (what, change) in changes {
        let mut out = Vec::new();
        for event in change {
            out.extend(s.handle(t(now), event));
        }
        assert_eq!(requests(&out), vec!["wiki"], "{what}: {out:?}");
        let out = s.handle(t(now), refused("wiki", denied(None)));
        let told = notices(&out);
        match what {
            "a new sign-in" | "the user's connect" => assert_eq!(told, 1, "{what}"),
            _ => assert_eq!(told, 0, "{what}: told again"),
        }
        let quiet = run(&mut s, now + 1, now + 600);
        assert!(!requests(&quiet).contains(&"wiki"), "{what}: {quiet:?}");
        now += 601;
    }
    // A refresh (the same sign-in) is no change.
    let out = s.handle(t(now), Event::SessionChanged(signed_in_at(3700, 200_000)));
    assert!(requests(&out).is_empty(), "{out:?}");
}

#[test]
fn a_denial_with_an_opening_time_asks_again_then_and_not_before() {
    let mut s = connected_for_long();
    s.handle(t(11), refused("wiki", denied(Some(2000))));
    assert!(s.next_deadline().is_some_and(|d| d <= t(2000)));
    let quiet = run(&mut s, 12, 1999);
    assert!(requests(&quiet).is_empty(), "{quiet:?}");
    let out = s.handle(t(2000), Event::Timer);
    assert_eq!(requests(&out), vec!["wiki"]);

    // An opening time already past here (a clock ahead of the broker's)
    // waits for the backoff, doubling, instead of asking in a loop.
    let out = s.handle(t(2000), refused("wiki", denied(Some(1990))));
    assert!(requests(&out).is_empty());
    assert!(requests(&s.handle(t(2000), Event::Timer)).is_empty());
    assert_eq!(requests(&s.handle(t(2002), Event::Timer)), vec!["wiki"]);
    s.handle(t(2002), refused("wiki", denied(Some(1990))));
    assert!(requests(&s.handle(t(2005), Event::Timer)).is_empty());
    assert_eq!(requests(&s.handle(t(2006), Event::Timer)), vec!["wiki"]);
}

#[test]
fn a_step_up_leaves_other_tunnels_up_and_clears_on_a_new_sign_in() {
    let mut s = connected_for_long();
    s.handle(t(10), Event::Connect("payroll".into()));
    let out = s.handle(t(11), refused("payroll", step_up("urn:x:mfa", Some(3600))));
    // Only payroll is affected: the session holds, wiki stays up.
    assert!(stops(&out).is_empty(), "{out:?}");
    assert_eq!(notices(&out), 1);
    assert_eq!(s.tunnels_up().count(), 1);
    assert_eq!(s.blocked(t(11)), None);
    assert!(matches!(
        s.app_blocked("payroll", t(11)),
        Some(Blocked::StepUpRequired { .. })
    ));
    assert_eq!(s.app_blocked("wiki", t(11)), None);
    // What the next sign-in must show.
    assert_eq!(
        s.app_step_up(),
        Some(StepUp {
            acr_values: vec!["urn:x:mfa".into()],
            max_age: Some(3600)
        })
    );
    // Neither time, nor a new verdict, nor a refresh brings a request:
    // none of them changes how the user signed in.
    let quiet = run(&mut s, 12, 900);
    assert!(!requests(&quiet).contains(&"payroll"), "{quiet:?}");
    let out = s.handle(t(901), compliant_until(200_000));
    assert!(requests(&out).is_empty(), "{out:?}");
    let out = s.handle(t(902), Event::SessionChanged(signed_in_at(0, 200_000)));
    assert!(requests(&out).is_empty(), "{out:?}");
    assert!(s.app_step_up().is_some());
    // A new sign-in (another auth_time) clears it and asks again.
    let out = s.handle(t(903), Event::SessionChanged(signed_in_at(903, 200_000)));
    assert_eq!(requests(&out), vec!["payroll"]);
    assert_eq!(s.app_step_up(), None);
    assert_eq!(s.app_blocked("payroll", t(903)), None);
    assert_eq!(s.tunnels_up().count(), 1, "wiki stayed up throughout");
}

#[test]
fn the_next_sign_in_asks_for_the_latest_step_up_and_the_smallest_max_age() {
    let mut s = connected_for_long();
    for app in ["payroll", "hr"] {
        s.handle(t(10), Event::Connect(app.into()));
    }
    s.handle(t(11), refused("payroll", step_up("urn:x:mfa", Some(600))));
    s.handle(t(12), refused("hr", step_up("urn:x:hwk", Some(3600))));
    assert_eq!(
        s.app_step_up(),
        Some(StepUp {
            acr_values: vec!["urn:x:hwk".into()],
            max_age: Some(600)
        })
    );
    // An app the user no longer wants asks for nothing.
    s.handle(t(13), Event::Disconnect("hr".into()));
    s.handle(t(13), Event::Disconnect("payroll".into()));
    assert_eq!(s.app_step_up(), None);
}
