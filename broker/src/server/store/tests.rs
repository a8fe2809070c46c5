//! The store's behaviour, run against both backends: every test below is
//! one function over `&dyn Store`, and [`both!`] runs it on a fresh SQLite
//! file and on a fresh database in a throwaway PostgreSQL cluster
//! (`support::postgres`; PostgreSQL must be installed, see scripts/test).
//!
//! The race tests open two stores on the same database (two replicas, or
//! two processes on one SQLite file) and let threads race through a
//! barrier: whatever the interleaving, exactly one may win.

use std::net::Ipv4Addr;
use std::sync::{Arc, Barrier};

use super::*;
use crate::server::audit_chain;

const OPEN: NewDeviceRules = NewDeviceRules {
    pending: false,
    max_devices_per_user: 5,
};

fn key(user: &str) -> EnrolledKey {
    EnrolledKey {
        device_id: "dev1".into(),
        user: user.into(),
        sec1: vec![4; 65],
        ueid: "u".into(),
        revoked: false,
    }
}

/// A database two stores can open: a SQLite file, or a PostgreSQL database.
struct Place {
    database: Database,
    _dir: Option<tempfile::TempDir>,
    _cluster: Option<support::postgres::Cluster>,
}

impl Place {
    fn sqlite() -> Place {
        let dir = tempfile::tempdir().unwrap();
        Place {
            database: Database::Sqlite(dir.path().join("b.db")),
            _dir: Some(dir),
            _cluster: None,
        }
    }

    fn postgres() -> Place {
        let cluster = support::postgres::Cluster::start();
        Place {
            database: Database::Postgres(cluster.create_database("broker")),
            _dir: None,
            _cluster: Some(cluster),
        }
    }

    fn open(&self) -> Arc<dyn Store> {
        open(&self.database).unwrap()
    }
}

/// Runs each named `fn(&dyn Store)` against a fresh SQLite store and a
/// fresh PostgreSQL one; and each `fn(&Place)` (race tests) likewise.
macro_rules! both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn sqlite() {
                let place = super::Place::sqlite();
                super::$name(&*place.open());
            }

            #[test]
            fn postgres() {
                let place = super::Place::postgres();
                super::$name(&*place.open());
            }
        }
    )*};
}

macro_rules! both_places {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn sqlite() {
                super::$name(&super::Place::sqlite());
            }

            #[test]
            fn postgres() {
                super::$name(&super::Place::postgres());
            }
        }
    )*};
}

both!(
    nonce_is_single_use_and_bound_to_its_user,
    enrolment_binds_a_key_to_one_user,
    user_revocations_hold_until_cleared,
    grants_expire_and_free_their_address,
    networks_denials_and_the_audit_cursor,
    new_keys_respect_the_quota_and_an_uncleared_user_revocation,
    meta_is_set_once_and_taken_once,
    open_grants_are_found_by_each_filter,
    the_helpdesk_view_collects_a_device,
);

both_places!(
    two_replicas_race_for_one_nonce_and_one_wins,
    two_replicas_race_for_one_address_and_one_wins,
    two_replicas_enrolling_for_one_quota_place_and_one_wins,
    two_replicas_append_to_one_unbroken_audit_chain,
);

fn grant(id: &str, key: &str, address: Ipv4Addr, created_at: i64) -> GrantRow {
    GrantRow {
        id: id.into(),
        device_id: "d".into(),
        user: "alice".into(),
        app: "wiki".into(),
        wg_public_key: key.into(),
        client_address: address,
        targets: vec!["10.0.0.1:80/tcp".into()],
        created_at,
        expires_at: created_at + 10,
        policy_digest: "p1".into(),
        ends_reason: None,
        reopens_at: None,
        access_input: None,
        gateway: None,
    }
}

fn meta_is_set_once_and_taken_once(s: &dyn Store) {
    assert_eq!(s.meta_or_insert("k", "first").unwrap(), "first");
    assert_eq!(s.meta_or_insert("k", "second").unwrap(), "first");
    assert_eq!(s.take_meta("k").unwrap().as_deref(), Some("first"));
    assert_eq!(s.take_meta("k").unwrap(), None);
}

fn open_grants_are_found_by_each_filter(s: &dyn Store) {
    let a = grant("ga", "ka", Ipv4Addr::new(100, 64, 0, 2), 10);
    let mut b = grant("gb", "kb", Ipv4Addr::new(100, 64, 0, 3), 10);
    b.device_id = "other".into();
    b.user = "bob".into();
    b.policy_digest = "p2".into();
    b.expires_at = 30;
    b.gateway = Some("berlin".into());
    s.insert_grant(&a).unwrap();
    s.insert_grant(&b).unwrap();
    // Made in the same second: insertion order.
    assert_eq!(s.open_grants().unwrap(), vec![a.clone(), b.clone()]);
    assert_eq!(s.open_grant("gb").unwrap(), Some(b.clone()));
    assert_eq!(s.open_grants_of_device("d").unwrap(), vec![a.clone()]);
    assert_eq!(s.open_grants_of_user("bob").unwrap(), vec![b.clone()]);
    assert_eq!(s.open_grant_by_key("ka").unwrap(), Some(a.clone()));
    assert_eq!(s.open_grants_not_under("p1").unwrap(), vec![b.clone()]);
    assert_eq!(
        s.open_grants_where(OpenGrants::Gateway("berlin")).unwrap(),
        vec![b.clone()]
    );
    assert!(
        s.open_grants_where(OpenGrants::Gateway("paris"))
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        s.insert_grant(&grant("gc", "kc", a.client_address, 11))
            .unwrap_err()
            .to_string(),
        StoreError::Taken(Taken::Address).to_string()
    );
    assert!(matches!(
        s.insert_grant(&grant("gd", "ka", Ipv4Addr::new(100, 64, 0, 9), 11)),
        Err(StoreError::Taken(Taken::Key))
    ));
    assert_eq!(s.expire_grants(25).unwrap(), vec![a.clone()]);
    assert!(s.expire_grants(25).unwrap().is_empty(), "closed once");
    // A closed grant's address and key are free again.
    s.insert_grant(&grant("ge", "ka", a.client_address, 26))
        .unwrap();
    assert_eq!(
        s.used_addresses().unwrap(),
        [a.client_address, b.client_address].into_iter().collect()
    );
}

fn the_helpdesk_view_collects_a_device(s: &dyn Store) {
    let k = EnrolledKey {
        device_id: "AbCdEf123".into(),
        ..key("alice")
    };
    s.enrol(&k, "{}", Some("laptop"), 1, OPEN).unwrap();
    s.insert_verdict("AbCdEf123", "alice", false, &[], 2, 900, "p", "{}")
        .unwrap();
    s.insert_grant(&GrantRow {
        device_id: "AbCdEf123".into(),
        ..grant("g1", "k1", Ipv4Addr::new(100, 64, 0, 2), 3)
    })
    .unwrap();
    s.close_grant("g1", 4, "closed by the user").unwrap();
    s.audit(
        &NewAudit {
            action: "grant",
            outcome: "allow",
            user: Some("alice"),
            device_id: Some("AbCdEf123"),
            reason: "r",
            ..NewAudit::default()
        },
        3,
    )
    .unwrap();
    s.revoke_device("AbCdEf123", 5, "lost").unwrap();
    let found = s.device_support("abcdef").unwrap();
    assert_eq!(found.len(), 1);
    let d = &found[0];
    assert_eq!(d.device.name.as_deref(), Some("laptop"));
    assert!(d.revoked.as_deref().is_some_and(|r| r.ends_with(": lost")));
    assert_eq!(d.verdicts.len(), 1);
    assert!(!d.verdicts[0].compliant);
    assert_eq!(d.grants.len(), 1);
    assert_eq!(
        d.grants[0].close_reason.as_deref(),
        Some("closed by the user")
    );
    assert_eq!(d.audit.len(), 1);
    assert!(s.device_support("zzzz").unwrap().is_empty());
    let latest = s.latest_verdict("AbCdEf123").unwrap().unwrap();
    assert_eq!(
        (latest.user.as_str(), latest.verdict.valid_until),
        ("alice", 900)
    );
}

/// Rounds per race: enough for the two threads to meet in every order.
const ROUNDS: usize = 40;

/// Runs `f(store, round)` on two threads at once, each with its own store
/// (replica) on `place`, `ROUNDS` times; `f` returns whether it won.
fn race(place: &Place, f: impl Fn(&dyn Store, usize) -> bool + Sync) {
    let stores = [place.open(), place.open()];
    for round in 0..ROUNDS {
        let barrier = Barrier::new(2);
        let wins: usize = std::thread::scope(|scope| {
            let handles: Vec<_> = stores
                .iter()
                .map(|store| {
                    let (barrier, f) = (&barrier, &f);
                    scope.spawn(move || {
                        barrier.wait();
                        usize::from(f(&**store, round))
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(wins, 1, "round {round}: {wins} winners");
    }
}

fn two_replicas_race_for_one_nonce_and_one_wins(place: &Place) {
    let setup = place.open();
    for round in 0..ROUNDS {
        setup
            .issue_nonce(&format!("n{round}"), "alice", 100, 160)
            .unwrap();
    }
    race(place, |s, round| {
        match s.consume_nonce(&format!("n{round}"), "alice", 110).unwrap() {
            NonceAnswer::Consumed => true,
            NonceAnswer::AlreadyUsed => false,
            other => panic!("{other:?}"),
        }
    });
}

fn two_replicas_race_for_one_address_and_one_wins(place: &Place) {
    let keys = std::sync::atomic::AtomicUsize::new(0);
    race(place, |s, round| {
        // Same address, different grants and keys: only the index can say no.
        let n = keys.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let address = Ipv4Addr::new(100, 64, 1, u8::try_from(round).unwrap());
        match s.insert_grant(&grant(&format!("g{n}"), &format!("k{n}"), address, 1)) {
            Ok(()) => true,
            Err(StoreError::Taken(Taken::Address)) => false,
            Err(e) => panic!("{e}"),
        }
    });
    assert_eq!(place.open().open_grants().unwrap().len(), ROUNDS);
}

fn two_replicas_enrolling_for_one_quota_place_and_one_wins(place: &Place) {
    let one = NewDeviceRules {
        pending: false,
        max_devices_per_user: 1,
    };
    let n = std::sync::atomic::AtomicUsize::new(0);
    race(place, |s, round| {
        let k = EnrolledKey {
            device_id: format!("d{}", n.fetch_add(1, std::sync::atomic::Ordering::SeqCst)),
            ..key(&format!("user{round}"))
        };
        match s.enrol(&k, "{}", None, 1, one).unwrap() {
            Enrolment::Created(_) => true,
            Enrolment::QuotaExceeded(1) => false,
            other => panic!("{other:?}"),
        }
    });
}

fn two_replicas_append_to_one_unbroken_audit_chain(place: &Place) {
    race(place, |s, round| {
        let e = s
            .audit(
                &NewAudit {
                    action: "attest",
                    outcome: "allow",
                    reason: &format!("round {round}"),
                    ..NewAudit::default()
                },
                round as i64,
            )
            .unwrap();
        // Both append; "wins" is having the odd seq, which one of the two has.
        e.seq % 2 == 1
    });
    let rows = place.open().audit_chain().unwrap();
    assert_eq!(rows.len(), 2 * ROUNDS);
    let verified = audit_chain::verify(rows).unwrap();
    assert_eq!(verified.rows, 2 * ROUNDS as u64);
}

fn nonce_is_single_use_and_bound_to_its_user(s: &dyn Store) {
    s.issue_nonce("n1", "alice", 100, 160).unwrap();
    assert_eq!(
        s.consume_nonce("n1", "bob", 110).unwrap(),
        NonceAnswer::Unknown
    );
    assert_eq!(
        s.consume_nonce("n1", "alice", 110).unwrap(),
        NonceAnswer::Consumed
    );
    assert_eq!(
        s.consume_nonce("n1", "alice", 111).unwrap(),
        NonceAnswer::AlreadyUsed
    );
    s.issue_nonce("n2", "alice", 100, 160).unwrap();
    assert_eq!(
        s.consume_nonce("n2", "alice", 160).unwrap(),
        NonceAnswer::Expired
    );
    assert_eq!(
        s.consume_nonce("zz", "alice", 110).unwrap(),
        NonceAnswer::Unknown
    );
}

fn enrolment_binds_a_key_to_one_user(s: &dyn Store) {
    assert!(matches!(
        s.enrol(&key("alice"), "{}", None, 1, OPEN).unwrap(),
        Enrolment::Created(_)
    ));
    assert!(matches!(
        s.enrol(&key("alice"), "{}", None, 2, OPEN).unwrap(),
        Enrolment::Existing(_)
    ));
    assert_eq!(
        s.enrol(&key("bob"), "{}", None, 3, OPEN).unwrap(),
        Enrolment::Conflict
    );
    assert!(s.revoke_device("dev1", 4, "lost").unwrap());
    assert!(s.device("dev1").unwrap().unwrap().key.revoked);
}

fn user_revocations_hold_until_cleared(s: &dyn Store) {
    assert_eq!(s.user_revocation("alice").unwrap(), None);
    assert!(!s.clear_user_revocation("alice", 1).unwrap());
    s.revoke_user("alice", 10, "r", true).unwrap();
    // A later plain revocation moves the cut-off but keeps the block.
    s.revoke_user("alice", 20, "r", false).unwrap();
    let r = s.user_revocation("alice").unwrap().unwrap();
    assert_eq!((r.revoked_at, r.until_cleared), (20, true));
    assert!(s.clear_user_revocation("alice", 30).unwrap());
    let r = s.user_revocation("alice").unwrap().unwrap();
    assert_eq!((r.revoked_at, r.until_cleared), (30, false));
    assert!(
        !s.clear_user_revocation("alice", 40).unwrap(),
        "a cleared revocation is not cleared again (and its cut-off does not move)"
    );
    assert_eq!(s.user_revocation("alice").unwrap().unwrap().revoked_at, 30);
}

fn grants_expire_and_free_their_address(s: &dyn Store) {
    let g = GrantRow {
        id: "g1".into(),
        device_id: "d".into(),
        user: "alice".into(),
        app: "wiki".into(),
        wg_public_key: "k".into(),
        client_address: Ipv4Addr::new(100, 64, 0, 2),
        targets: vec!["10.0.0.1:80/tcp".into()],
        created_at: 10,
        expires_at: 20,
        policy_digest: "p1".into(),
        ends_reason: None,
        reopens_at: None,
        access_input: None,
        gateway: None,
    };
    s.insert_grant(&g).unwrap();
    assert!(s.key_in_use("k").unwrap());
    assert_eq!(s.open_grants_of_user("alice").unwrap(), vec![g.clone()]);
    assert!(s.expire_grants(19).unwrap().is_empty());
    assert_eq!(s.expire_grants(20).unwrap(), vec![g]);
    assert!(s.used_addresses().unwrap().is_empty());
    assert!(!s.close_grant("g1", 21, "x").unwrap());
}

fn networks_denials_and_the_audit_cursor(s: &dyn Store) {
    assert!(!s.knows_network("alice", "192.0.2.0/24").unwrap());
    assert!(!s.remember_network("alice", "192.0.2.0/24", 5).unwrap());
    assert!(s.remember_network("alice", "192.0.2.0/24", 6).unwrap());
    assert!(s.knows_network("alice", "192.0.2.0/24").unwrap());
    assert!(!s.knows_network("bob", "192.0.2.0/24").unwrap());
    let decision = AuditDecision {
        app: Some("wiki".into()),
        reasons: vec!["closed".into()],
        input_digest: Some("ab".into()),
        ..AuditDecision::default()
    };
    for (at, outcome) in [(10, "deny"), (20, "deny"), (30, "allow")] {
        s.audit(
            &NewAudit {
                action: "grant",
                outcome,
                user: Some("alice"),
                reason: "r",
                decision: Some(&decision),
                ..NewAudit::default()
            },
            at,
        )
        .unwrap();
    }
    assert_eq!(s.denied_grants_since("alice", 0).unwrap(), 2);
    assert_eq!(s.denied_grants_since("alice", 15).unwrap(), 1);
    assert_eq!(s.denied_grants_since("bob", 0).unwrap(), 0);
    let after_first = s.audit_since(1, 10).unwrap();
    assert_eq!(
        after_first.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![2, 3]
    );
    assert_eq!(after_first[0].app.as_deref(), Some("wiki"));
    assert_eq!(after_first[0].reasons, vec!["closed".to_owned()]);
    assert_eq!(s.audit_since(3, 10).unwrap(), vec![]);
    assert_eq!(s.audit_recent(2).unwrap()[1].seq, 3);
}

fn new_keys_respect_the_quota_and_an_uncleared_user_revocation(s: &dyn Store) {
    let rules = NewDeviceRules {
        pending: true,
        max_devices_per_user: 1,
    };
    let with_id = |id: &str| EnrolledKey {
        device_id: id.into(),
        ..key("alice")
    };
    let Enrolment::Created(row) = s.enrol(&with_id("d1"), "{}", None, 1, rules).unwrap() else {
        panic!("first device refused");
    };
    assert_eq!(row.status(), DeviceStatus::Pending);
    assert_eq!(
        s.enrol(&with_id("d2"), "{}", None, 2, rules).unwrap(),
        Enrolment::QuotaExceeded(1)
    );
    // The existing key is not a new device.
    assert!(matches!(
        s.enrol(&with_id("d1"), "{}", None, 3, rules).unwrap(),
        Enrolment::Existing(_)
    ));
    // A revoked device frees its place.
    s.revoke_device("d1", 4, "lost").unwrap();
    s.revoke_user("alice", 4, "left", false).unwrap();
    assert_eq!(
        s.enrol(&with_id("d2"), "{}", None, 5, rules).unwrap(),
        Enrolment::UserRevoked
    );
    assert!(s.clear_user_revocation("alice", 6).unwrap());
    assert!(!s.clear_user_revocation("alice", 6).unwrap());
    assert_eq!(
        s.user_revocation("alice").unwrap().map(|r| r.revoked_at),
        Some(4),
        "old tokens stay refused"
    );
    assert!(matches!(
        s.enrol(&with_id("d2"), "{}", None, 7, rules).unwrap(),
        Enrolment::Created(_)
    ));
    let approved = s.approve_device("d2", 8).unwrap().unwrap();
    assert_eq!(
        (approved.status(), approved.approved_at),
        (DeviceStatus::Active, Some(8))
    );
    assert_eq!(s.devices(Some(DeviceStatus::Pending)).unwrap(), vec![]);
    assert_eq!(s.forget_revoked_device("d2").unwrap(), Some(false));
    assert_eq!(s.forget_revoked_device("d1").unwrap(), Some(true));
    assert_eq!(s.device("d1").unwrap(), None);
}
