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
//! condition of the model at that instant, and the next deadline comes no
//! later than the first condition that lapses with time.
//! Liveness: when the world finally makes every condition hold and answers
//! every request, each app the user still wants is up.

// Test scaffolding: a broken invariant must abort loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};

use agent::supervisor::{
    BrokerEvent, Command, Event, Grant, Session, Supervisor, Time, Timing, Verdict,
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
    NeedsReauth,
    UserSignOut,
    Posture(bool),
    AnswerPosture(bool),
    AnswerAttest { compliant: bool, validity: i64 },
    AttestFails,
    AnswerGrant { app: usize, validity: i64 },
    GrantFails(usize),
    RevokeGrant(usize),
    RevokeSession,
    Compliance(bool),
    PolicyChanged,
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
        1 => Just(Op::NeedsReauth),
        1 => Just(Op::UserSignOut),
        2 => any::<bool>().prop_map(Op::Posture),
        3 => prop::bool::weighted(0.8).prop_map(Op::AnswerPosture),
        3 => (prop::bool::weighted(0.8), 10_i64..600)
            .prop_map(|(compliant, validity)| Op::AnswerAttest { compliant, validity }),
        1 => Just(Op::AttestFails),
        3 => (app.clone(), 10_i64..600).prop_map(|(app, validity)| Op::AnswerGrant { app, validity }),
        1 => app.clone().prop_map(Op::GrantFails),
        1 => app.clone().prop_map(Op::RevokeGrant),
        1 => Just(Op::RevokeSession),
        1 => any::<bool>().prop_map(Op::Compliance),
        1 => Just(Op::PolicyChanged),
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
        }
    }

    fn send(&mut self, event: Event) {
        let commands = self.sup.handle(self.now, event);
        for command in commands {
            match command {
                Command::CollectPosture => self.pending_posture = true,
                Command::Attest => self.pending_attest = true,
                Command::RefreshSession => self.pending_refresh = true,
                Command::RequestGrant { app } => {
                    self.pending_grants.insert(app);
                }
                Command::ReleaseGrant { grant_id, .. } => {
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
        self.pending_grants.remove(app);
        self.next_grant += 1;
        let id = format!("g{}", self.next_grant);
        let expires_at = self.now + Duration::seconds(validity);
        self.model
            .grants
            .insert(id.clone(), (app.to_owned(), expires_at));
        self.send(Event::GrantIssued {
            app: app.to_owned(),
            grant: Grant { id, expires_at },
        });
    }

    fn sign_in(&mut self, validity: i64) {
        self.pending_refresh = false;
        let until = self.now + Duration::seconds(validity);
        self.model.session_until = Some(until);
        self.send(Event::SessionChanged(Session::Valid { until }));
    }

    fn posture(&mut self, ok: bool) {
        self.pending_posture = false;
        self.model.posture_ok = Some(ok);
        let violations = if ok { vec![] } else { vec![violation()] };
        self.send(Event::PostureCollected { violations });
    }

    fn verdict(&mut self, compliant: bool, validity: i64) {
        self.pending_attest = false;
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
            Op::NeedsReauth => {
                self.model.session_until = None;
                self.send(Event::SessionChanged(Session::NeedsReauth {
                    reason: "max age".into(),
                }));
            }
            Op::UserSignOut => {
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
                }
                self.send(Event::Broker(BrokerEvent::ComplianceChanged {
                    compliant,
                    reason: "re-evaluated".into(),
                }));
            }
            Op::PolicyChanged => self.send(Event::Broker(BrokerEvent::PolicyChanged)),
            Op::TunnelDies(app) => {
                if self.up.remove(APPS[app]).is_some() {
                    self.send(Event::TunnelClosed {
                        app: APPS[app].into(),
                        reason: "handshake timeout".into(),
                    });
                }
            }
            Op::Connect(app) => {
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
        for _ in 0..20 {
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
