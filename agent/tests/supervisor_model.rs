//! The supervisor against a reference model, over random event sequences.
//!
//! A small "world" plays driver, identity layer and broker: it answers (or
//! ignores) the supervisor's commands, injects random events (revocations,
//! posture failures, expiries, user clicks), fires the timer at every
//! deadline the supervisor asks for, and tracks which tunnels are up from
//! the `StartTunnel` / `StopTunnel` commands alone. The reference model keeps
//! its own, independent account of the conditions (session, local posture,
//! verdict, broker compliance, grants) from the events it sent.
//!
//! Safety: after every event, every tunnel the world sees up satisfies every
//! condition of the model at that instant (an access refusal included), and
//! the next deadline comes no later than the first condition that lapses
//! with time.
//! No request loops: no grant request renews a window-bounded grant, none
//! comes inside a closed window before it reopens, and none follows an
//! access refusal before a change that may alter the answer (the world
//! keeps its own account of those changes).
//! Liveness: when the world finally makes every condition hold and answers
//! every request, each app the user still wants is up.

// Test scaffolding: a broken invariant must abort loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};

use agent::supervisor::{
    AccessReason, BrokerEvent, Command, Event, Grant, GrantEnd, Refusal, Session, SignIn, StepUp,
    Supervisor, Time, Timing, Verdict,
};
use posture::policy::Violation;
use proptest::prelude::*;
use time::{Duration, OffsetDateTime};

const APPS: [&str; 3] = ["wiki", "git", "db"];

fn violation() -> Violation {
    Violation {
        check: "firewall".into(),
        message: "The firewall is off.".into(),
        remediation: "Turn it on.".into(),
    }
}

#[derive(Debug, Clone)]
enum Op {
    Advance(i64),
    SignIn(i64),
    Refresh(i64),
    NeedsReauth,
    UserSignOut,
    Posture(bool),
    AnswerPosture(bool),
    AnswerAttest {
        compliant: bool,
        validity: i64,
    },
    AttestFails,
    AnswerGrant {
        app: usize,
        validity: i64,
    },
    /// A grant that ends with a time window, reopening after `reopens_in`.
    AnswerWindowGrant {
        app: usize,
        validity: i64,
        reopens_in: Option<i64>,
    },
    /// The access policy denies the pending request (opening after `opens_in`).
    Deny {
        app: usize,
        opens_in: Option<i64>,
    },
    /// The access policy asks for a step-up for the pending request.
    StepUp(usize),
    GrantFails(usize),
    RevokeGrant(usize),
    RevokeSession,
    Compliance(bool),
    PolicyChanged,
    AccessPolicyChanged,
    TunnelDies(usize),
    Connect(usize),
    Disconnect(usize),
    Environment,
}

fn op() -> impl Strategy<Value = Op> {
    let app = 0..APPS.len();
    prop_oneof![
        4 => (1_i64..400).prop_map(Op::Advance),
        2 => (30_i64..2000).prop_map(Op::SignIn),
        1 => (30_i64..2000).prop_map(Op::Refresh),
        1 => Just(Op::NeedsReauth),
        1 => Just(Op::UserSignOut),
        2 => any::<bool>().prop_map(Op::Posture),
        3 => prop::bool::weighted(0.8).prop_map(Op::AnswerPosture),
        3 => (prop::bool::weighted(0.8), 10_i64..600)
            .prop_map(|(compliant, validity)| Op::AnswerAttest { compliant, validity }),
        1 => Just(Op::AttestFails),
        3 => (app.clone(), 10_i64..600).prop_map(|(app, validity)| Op::AnswerGrant { app, validity }),
        1 => (app.clone(), 10_i64..600, prop::option::of(1_i64..300))
            .prop_map(|(app, validity, reopens_in)| Op::AnswerWindowGrant { app, validity, reopens_in }),
        1 => (app.clone(), prop::option::of(-5_i64..300))
            .prop_map(|(app, opens_in)| Op::Deny { app, opens_in }),
        1 => app.clone().prop_map(Op::StepUp),
        1 => app.clone().prop_map(Op::GrantFails),
        1 => app.clone().prop_map(Op::RevokeGrant),
        1 => Just(Op::RevokeSession),
        1 => any::<bool>().prop_map(Op::Compliance),
        1 => Just(Op::PolicyChanged),
        1 => Just(Op::AccessPolicyChanged),
        1 => app.clone().prop_map(Op::TunnelDies),
        3 => app.clone().prop_map(Op::Connect),
        1 => app.prop_map(Op::Disconnect),
        1 => Just(Op::Environment),
    ]
}

/// The reference model: the conditions, as the world knows them.
#[derive(Debug, Default)]
struct Model {
    session_until: Option<Time>,
    posture_ok: Option<bool>,
    verdict: Option<(bool, Time)>,
    compliance_revoked: bool,
    /// Grants the broker considers live: id -> (app, expiry).
    grants: BTreeMap<String, (String, Time)>,
    wanted: BTreeSet<String>,
}

/// Why the world expects no grant request for an app yet.
#[derive(Debug, Clone, PartialEq)]
enum Hold {
    /// Denied: until `opens_at` (if any), a new sign-in, a verdict that
    /// says something new, a policy change or the user's connect.
    Denied { opens_at: Option<Time> },
    /// A step-up: until a new sign-in, a policy change or the user's connect.
    StepUp,
    /// A window-bounded grant: never renewed, and after its end nothing
    /// until the window reopens (or the user's connect). Let go of (the
    /// tunnel died, the user disconnected, the broker revoked it), it no
    /// longer holds anything.
    WindowGrant {
        grant_id: String,
        expires_at: Time,
        reopens_at: Option<Time>,
    },
}

impl Model {
    /// The latest instant up to which `app` may be up with `grant`, or why not.
    fn allowed_until(&self, now: Time, app: &str, grant: &str) -> Result<Time, String> {
        let session = self.session_until.filter(|u| now < *u).ok_or("session")?;
        if self.posture_ok != Some(true) {
            return Err("posture".into());
        }
        if self.compliance_revoked {
            return Err("compliance revoked".into());
        }
        let verdict = match self.verdict {
            Some((true, until)) if now < until => until,
            _ => return Err("verdict".into()),
        };
        let expiry = match self.grants.get(grant) {
            Some((owner, expiry)) if owner == app && now < *expiry => *expiry,
            _ => return Err(format!("grant {grant}")),
        };
        Ok(session.min(verdict).min(expiry))
    }
}

struct World {
    now: Time,
    sup: Supervisor,
    model: Model,
    up: BTreeMap<String, String>,
    pending_posture: bool,
    pending_attest: bool,
    pending_grants: BTreeSet<String>,
    pending_refresh: bool,
    next_grant: u32,
    /// Sign-ins so far (each `SignIn` op is a new one).
    sign_ins: i64,
    holds: BTreeMap<String, Hold>,
}

impl World {
    fn new() -> Self {
        World {
            now: OffsetDateTime::UNIX_EPOCH + Duration::days(20_000),
            sup: Supervisor::new(Timing::default()),
            model: Model::default(),
            up: BTreeMap::new(),
            pending_posture: false,
            pending_attest: false,
            pending_grants: BTreeSet::new(),
            pending_refresh: false,
            next_grant: 0,
            sign_ins: 0,
            holds: BTreeMap::new(),
        }
    }

    /// Asserts that a grant request for `app` now breaks no hold.
    fn check_request(&mut self, app: &str) {
        let now = self.now;
        let hold = self.holds.get(app).cloned();
        match hold {
            None => {}
            Some(Hold::Denied { opens_at }) => {
                assert!(
                    opens_at.is_some_and(|at| now >= at),
                    "{app}: asked again at {now} after a denial, with nothing changed"
                );
            }
            Some(Hold::StepUp) => panic!("{app}: asked again after a step-up without a sign-in"),
            Some(Hold::WindowGrant {
                expires_at,
                reopens_at,
                ..
            }) => {
                assert!(
                    now >= expires_at,
                    "{app}: renewed a window-bounded grant before its end"
                );
                assert!(
                    reopens_at.is_none_or(|at| now >= at),
                    "{app}: asked at {now} before its window reopens"
                );
            }
        }
        self.holds.remove(app);
    }

    /// A change that lifts the holds `lifts` says it lifts.
    fn lift(&mut self, lifts: impl Fn(&Hold) -> bool) {
        self.holds.retain(|_, hold| !lifts(hold));
    }

    fn send(&mut self, event: Event) {
        let commands = self.sup.handle(self.now, event);
        for command in commands {
            match command {
                Command::CollectPosture => self.pending_posture = true,
                Command::Attest => self.pending_attest = true,
                Command::RefreshSession => self.pending_refresh = true,
                Command::RequestGrant { app } => {
                    self.check_request(&app);
                    self.pending_grants.insert(app);
                }
                Command::ReleaseGrant { grant_id, .. } => {
                    self.holds.retain(|_, h| {
                        !matches!(h, Hold::WindowGrant { grant_id: g, .. } if *g == grant_id)
                    });
                    assert!(
                        !self.up.values().any(|g| *g == grant_id),
                        "released grant {grant_id} still used by a tunnel"
                    );
                    self.model.grants.remove(&grant_id);
                }
                Command::StartTunnel { app, grant_id } => {
                    self.up.insert(app, grant_id);
                }
                Command::StopTunnel { app, .. } => {
                    assert!(self.up.remove(&app).is_some(), "stopped {app}, not up");
                }
                Command::Notify(_) => {}
            }
        }
        self.check_safety();
    }

    fn check_safety(&self) {
        let ours: Vec<(String, String)> = self
            .sup
            .tunnels_up()
            .map(|(a, g)| (a.clone(), g.to_owned()))
            .collect();
        let world: Vec<(String, String)> = self
            .up
            .iter()
            .map(|(a, g)| (a.clone(), g.clone()))
            .collect();
        assert_eq!(ours, world, "supervisor and driver disagree on what is up");
        for (app, grant) in &self.up {
            let until = self
                .model
                .allowed_until(self.now, app, grant)
                .unwrap_or_else(|why| panic!("{app} up at {} but {why} fails", self.now));
            let deadline = self.sup.next_deadline().expect("a deadline while up");
            assert!(
                deadline <= until,
                "{app}: next deadline {deadline} after its conditions lapse at {until}"
            );
        }
    }

    /// Let time pass as a correct driver would: firing every deadline.
    fn advance(&mut self, seconds: i64) {
        let target = self.now + Duration::seconds(seconds);
        while let Some(deadline) = self.sup.next_deadline() {
            if deadline > target {
                break;
            }
            self.now = self.now.max(deadline);
            self.send(Event::Timer);
            if self.sup.next_deadline() == Some(deadline) && deadline <= self.now {
                // A deadline that stays put after firing would spin a driver.
                panic!("deadline {deadline} did not move after firing");
            }
        }
        self.now = target;
        self.send(Event::Timer);
    }

    fn grant_id_of(&self, app: &str) -> Option<String> {
        self.model
            .grants
            .iter()
            .find(|(_, (owner, _))| owner == app)
            .map(|(id, _)| id.clone())
    }

    fn issue(&mut self, app: &str, validity: i64) {
        self.issue_with(app, validity, None);
    }

    fn issue_with(&mut self, app: &str, validity: i64, reopens_in: Option<Option<i64>>) {
        self.pending_grants.remove(app);
        self.next_grant += 1;
        let id = format!("g{}", self.next_grant);
        let expires_at = self.now + Duration::seconds(validity);
        self.model
            .grants
            .insert(id.clone(), (app.to_owned(), expires_at));
        let end = reopens_in.map(|reopens_in| GrantEnd {
            reason: "the window closes".into(),
            reopens_at: reopens_in.map(|s| expires_at + Duration::seconds(s)),
        });
        match &end {
            Some(end) => self.holds.insert(
                app.to_owned(),
                Hold::WindowGrant {
                    grant_id: id.clone(),
                    expires_at,
                    reopens_at: end.reopens_at,
                },
            ),
            None => self.holds.remove(app),
        };
        self.send(Event::GrantIssued {
            app: app.to_owned(),
            grant: Grant {
                id,
                expires_at,
                end,
            },
        });
    }

    /// The access policy refuses `app`'s pending request.
    fn refuse(&mut self, app: &str, refusal: Refusal) {
        if !self.pending_grants.remove(app) {
            return;
        }
        // Whatever grant the app held no longer opens it.
        self.model.grants.retain(|_, (owner, _)| owner != app);
        let hold = match &refusal {
            Refusal::Denied { opens_at, .. } => Hold::Denied {
                opens_at: *opens_at,
            },
            Refusal::StepUp { .. } => Hold::StepUp,
        };
        self.holds.insert(app.to_owned(), hold);
        self.send(Event::AccessRefused {
            app: app.to_owned(),
            refusal,
        });
    }

    /// A sign-in: a new one, or a refresh of the current one.
    fn session(&mut self, validity: i64, new: bool) {
        self.pending_refresh = false;
        if new || self.sign_ins == 0 {
            self.sign_ins += 1;
            self.lift(|h| matches!(h, Hold::Denied { .. } | Hold::StepUp));
        }
        let until = self.now + Duration::seconds(validity);
        self.model.session_until = Some(until);
        self.send(Event::SessionChanged(Session::Valid {
            until,
            sign_in: SignIn {
                auth_time: Some(OffsetDateTime::UNIX_EPOCH + Duration::seconds(self.sign_ins)),
                method: "otp".into(),
            },
        }));
    }

    fn sign_in(&mut self, validity: i64) {
        self.session(validity, true);
    }

    fn posture(&mut self, ok: bool) {
        self.pending_posture = false;
        self.model.posture_ok = Some(ok);
        let violations = if ok { vec![] } else { vec![violation()] };
        self.send(Event::PostureCollected { violations });
    }

    fn verdict(&mut self, compliant: bool, validity: i64) {
        self.pending_attest = false;
        if self.model.verdict.is_none_or(|(was, _)| was != compliant) {
            self.lift(|h| matches!(h, Hold::Denied { .. }));
        }
        let valid_until = self.now + Duration::seconds(validity);
        self.model.verdict = Some((compliant, valid_until));
        self.model.compliance_revoked = false;
        let violations = if compliant { vec![] } else { vec![violation()] };
        self.send(Event::Verdict(Verdict {
            compliant,
            violations,
            valid_until,
        }));
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::Advance(s) => self.advance(s),
            Op::SignIn(validity) => self.sign_in(validity),
            Op::Refresh(validity) => {
                if self.pending_refresh {
                    self.session(validity, false);
                }
            }
            Op::NeedsReauth => {
                self.model.session_until = None;
                self.send(Event::SessionChanged(Session::NeedsReauth {
                    reason: "max age".into(),
                }));
            }
            Op::UserSignOut => {
                self.holds.clear();
                self.model.session_until = None;
                self.model.verdict = None;
                self.model.wanted.clear();
                self.send(Event::UserSignedOut);
            }
            Op::Posture(ok) => self.posture(ok),
            Op::AnswerPosture(ok) => {
                if self.pending_posture {
                    self.posture(ok);
                }
            }
            Op::AnswerAttest {
                compliant,
                validity,
            } => {
                if self.pending_attest {
                    self.verdict(compliant, validity);
                }
            }
            Op::AttestFails => {
                if self.pending_attest {
                    self.pending_attest = false;
                    self.send(Event::AttestFailed {
                        reason: "unreachable".into(),
                    });
                }
            }
            Op::AnswerGrant { app, validity } => {
                if self.pending_grants.contains(APPS[app]) {
                    self.issue(APPS[app], validity);
                }
            }
            Op::AnswerWindowGrant {
                app,
                validity,
                reopens_in,
            } => {
                if self.pending_grants.contains(APPS[app]) {
                    self.issue_with(APPS[app], validity, Some(reopens_in));
                }
            }
            Op::Deny { app, opens_in } => {
                let opens_at = opens_in.map(|s| self.now + Duration::seconds(s));
                self.refuse(
                    APPS[app],
                    Refusal::Denied {
                        reasons: vec![AccessReason {
                            message: "not now".into(),
                            remediation: String::new(),
                        }],
                        opens_at,
                    },
                );
            }
            Op::StepUp(app) => self.refuse(
                APPS[app],
                Refusal::StepUp {
                    reasons: vec![],
                    step_up: StepUp {
                        acr_values: vec!["urn:x:mfa".into()],
                        max_age: Some(600),
                    },
                },
            ),
            Op::GrantFails(app) => {
                if self.pending_grants.remove(APPS[app]) {
                    self.send(Event::GrantFailed {
                        app: APPS[app].into(),
                        reason: "refused".into(),
                    });
                }
            }
            Op::RevokeGrant(app) => {
                if let Some(id) = self.grant_id_of(APPS[app]) {
                    self.model.grants.remove(&id);
                    self.holds.retain(
                        |_, h| !matches!(h, Hold::WindowGrant { grant_id, .. } if *grant_id == id),
                    );
                    self.send(Event::Broker(BrokerEvent::GrantRevoked {
                        grant_id: id,
                        reason: "admin".into(),
                    }));
                }
            }
            Op::RevokeSession => {
                self.model.session_until = None;
                self.send(Event::Broker(BrokerEvent::SessionRevoked {
                    reason: "admin".into(),
                }));
            }
            Op::Compliance(compliant) => {
                if !compliant {
                    self.model.compliance_revoked = true;
                    // The broker closes a non-compliant device's grants.
                    self.model.grants.clear();
                    self.holds
                        .retain(|_, h| !matches!(h, Hold::WindowGrant { .. }));
                }
                self.send(Event::Broker(BrokerEvent::ComplianceChanged {
                    compliant,
                    reason: "re-evaluated".into(),
                }));
            }
            Op::PolicyChanged => {
                self.lift(|h| matches!(h, Hold::Denied { .. } | Hold::StepUp));
                self.send(Event::Broker(BrokerEvent::PolicyChanged));
            }
            Op::AccessPolicyChanged => {
                // Refusals, and waits for a window that already closed, may
                // have a new answer; a live window-bounded grant still is
                // not renewed.
                let now = self.now;
                self.lift(|h| match h {
                    Hold::Denied { .. } | Hold::StepUp => true,
                    Hold::WindowGrant { expires_at, .. } => *expires_at <= now,
                });
                self.send(Event::Broker(BrokerEvent::AccessPolicyChanged));
            }
            Op::TunnelDies(app) => {
                if self.up.remove(APPS[app]).is_some() {
                    self.send(Event::TunnelClosed {
                        app: APPS[app].into(),
                        reason: "handshake timeout".into(),
                    });
                }
            }
            Op::Connect(app) => {
                // The user's click may ask again, except to renew a live
                // window-bounded grant.
                let now = self.now;
                if !matches!(
                    self.holds.get(APPS[app]),
                    Some(Hold::WindowGrant { expires_at, .. }) if now < *expires_at
                ) {
                    self.holds.remove(APPS[app]);
                }
                self.model.wanted.insert(APPS[app].into());
                self.send(Event::Connect(APPS[app].into()));
            }
            Op::Disconnect(app) => {
                self.model.wanted.remove(APPS[app]);
                self.send(Event::Disconnect(APPS[app].into()));
            }
            Op::Environment => self.send(Event::EnvironmentChanged),
        }
    }

    /// Make every condition hold and answer every request, the way a healthy
    /// world would, for a while.
    fn heal(&mut self) {
        self.sign_in(100_000);
        self.posture(true);
        // Long enough for a window-bounded grant to end and its window to
        // reopen (validity < 600 s, reopening < 300 s later).
        for _ in 0..200 {
            if self.pending_posture {
                self.posture(true);
            }
            if self.pending_attest {
                self.verdict(true, 10_000);
            }
            if self.pending_refresh {
                self.sign_in(100_000);
            }
            for app in self.pending_grants.clone() {
                self.issue(&app, 5_000);
            }
            self.advance(5);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn tunnels_are_up_only_while_every_condition_holds_and_come_back(
        ops in prop::collection::vec(op(), 1..120)
    ) {
        let mut world = World::new();
        for op in ops {
            world.apply(op);
        }
        world.heal();
        let wanted: BTreeSet<String> = world.sup.wanted().cloned().collect();
        prop_assert_eq!(&wanted, &world.model.wanted);
        let up: BTreeSet<String> = world.up.keys().cloned().collect();
        prop_assert_eq!(up, wanted, "wanted apps did not all come back");
    }
}
