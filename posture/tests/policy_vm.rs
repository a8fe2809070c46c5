//! The policy runs on regorus' bytecode VM for speed; regorus' interpreter
//! is the reference semantics. Over random reports — every check present or
//! missing, passing, failing or unknown, with facts on both sides of every
//! threshold of the default policy — both must give the same violations.

// Property tests panic on a failed expectation by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use posture::check::{Check, CheckId, Unknown, UnknownKind};
use posture::policy::Policy;
use posture::report::{Platform, Report};
use proptest::prelude::*;
use serde_json::Value;
use time::OffsetDateTime;

/// The ids the default policy reads, and one it does not.
const IDS: [CheckId; 6] = [
    CheckId::OsVersion,
    CheckId::SecurityUpdates,
    CheckId::DiskEncryption,
    CheckId::Firewall,
    CheckId::ScreenLock,
    CheckId::Antivirus,
];

#[derive(Debug, Clone)]
enum Status {
    Missing,
    Pass,
    Fail,
    Unknown,
}

fn status() -> impl Strategy<Value = Status> {
    prop_oneof![
        1 => Just(Status::Missing),
        4 => Just(Status::Pass),
        2 => Just(Status::Fail),
        1 => Just(Status::Unknown),
    ]
}

/// A number fact that is sometimes absent or null.
fn number(max: i64) -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        1 => Just(None),
        1 => Just(Some(Value::Null)),
        6 => (0..=max).prop_map(|n| Some(Value::from(n))),
    ]
}

#[derive(Debug, Clone)]
struct Facts {
    platform: &'static str,
    version_parts: Vec<u32>,
    security_pending: Option<Value>,
    oldest_days: Option<Value>,
    metadata_age: Option<Value>,
    lock_timeout: Option<Value>,
}

fn facts() -> impl Strategy<Value = Facts> {
    (
        prop::sample::select(vec![
            "debian", "ubuntu", "fedora", "windows", "macos", "plan9",
        ]),
        prop::collection::vec(0u32..30_000, 0..4),
        number(5),
        number(30),
        number(30),
        number(2_000),
    )
        .prop_map(
            |(
                platform,
                version_parts,
                security_pending,
                oldest_days,
                metadata_age,
                lock_timeout,
            )| {
                Facts {
                    platform,
                    version_parts,
                    security_pending,
                    oldest_days,
                    metadata_age,
                    lock_timeout,
                }
            },
        )
}

fn with(check: Check, key: &str, value: &Option<Value>) -> Check {
    match value {
        Some(v) => check.fact(key, v.clone()),
        None => check,
    }
}

fn check(id: CheckId, status: &Status, facts: &Facts) -> Option<Check> {
    let base = match status {
        Status::Missing => return None,
        Status::Pass => Check::pass(id, "ok"),
        Status::Fail => Check::fail(id, "not ok").remediation("fix it"),
        Status::Unknown => {
            return Some(Check::unknown(
                id,
                Unknown::new(UnknownKind::PermissionDenied, "needs admin"),
            ));
        }
    };
    Some(match id {
        CheckId::OsVersion => base
            .fact("platform_id", facts.platform)
            .fact("name", facts.platform)
            .fact(
                "version",
                facts
                    .version_parts
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join("."),
            )
            .fact("version_parts", facts.version_parts.clone()),
        CheckId::SecurityUpdates => {
            let c = with(base, "security_pending", &facts.security_pending);
            let c = with(c, "oldest_security_pending_days", &facts.oldest_days);
            with(c, "metadata_age_days", &facts.metadata_age)
        }
        CheckId::ScreenLock => with(base, "timeout_seconds", &facts.lock_timeout),
        _ => base.evidence("some evidence"),
    })
}

fn report(statuses: &[Status], facts: &Facts) -> Report {
    Report {
        collected_at: OffsetDateTime::UNIX_EPOCH,
        platform: Platform::Linux,
        agent_version: "0.1.0".into(),
        duration_ms: 1,
        checks: IDS
            .iter()
            .zip(statuses)
            .filter_map(|(id, s)| check(*id, s, facts))
            .collect(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn vm_and_interpreter_give_the_same_violations(
        statuses in prop::collection::vec(status(), IDS.len()),
        facts in facts(),
    ) {
        let policy = Policy::default_policy().unwrap();
        let report = report(&statuses, &facts);
        let vm = policy.evaluate(&report);
        let reference = policy.evaluate_interpreted(&report);
        match (vm, reference) {
            (Ok(vm), Ok(reference)) => prop_assert_eq!(vm, reference),
            (vm, reference) => prop_assert!(
                vm.is_err() && reference.is_err(),
                "one engine failed: vm {vm:?}, interpreter {reference:?}"
            ),
        }
    }
}

/// One policy value evaluated many times in a row must not carry state from
/// one report to the next (the VM caches rule values per run).
#[test]
fn evaluations_do_not_leak_into_each_other() {
    let policy = Policy::default_policy().unwrap();
    let good = Facts {
        platform: "debian",
        version_parts: vec![12],
        security_pending: Some(Value::from(0)),
        oldest_days: Some(Value::Null),
        metadata_age: Some(Value::from(1)),
        lock_timeout: Some(Value::from(300)),
    };
    let healthy = report(
        &[
            Status::Pass,
            Status::Pass,
            Status::Pass,
            Status::Pass,
            Status::Pass,
            Status::Fail,
        ],
        &good,
    );
    let broken = report(
        &[
            Status::Pass,
            Status::Pass,
            Status::Unknown,
            Status::Fail,
            Status::Pass,
            Status::Fail,
        ],
        &good,
    );
    for _ in 0..3 {
        assert!(policy.evaluate(&healthy).unwrap().compliant);
        let verdict = policy.evaluate(&broken).unwrap();
        let checks: Vec<_> = verdict
            .violations
            .iter()
            .map(|v| v.check.as_str())
            .collect();
        assert_eq!(checks, ["disk_encryption", "firewall"]);
    }
}
