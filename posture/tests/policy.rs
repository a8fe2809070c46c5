//! The default Rego policy over hand-built reports: each rule fires on its
//! own, a healthy device is compliant, and bad policies fail clearly.

// Fixture loaders below panic on a missing file by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use posture::check::{Check, CheckId, Unknown, UnknownKind};
use posture::policy::{Policy, PolicyError};
use posture::report::{Platform, Report};
use time::OffsetDateTime;

fn healthy_checks() -> Vec<Check> {
    vec![
        Check::pass(CheckId::OsVersion, "Debian 12")
            .fact("platform_id", "debian")
            .fact("name", "Debian GNU/Linux")
            .fact("version", "12")
            .fact("version_parts", vec![12]),
        Check::pass(CheckId::SecurityUpdates, "none pending")
            .fact("pending", 3)
            .fact("security_pending", 0)
            .fact("oldest_security_pending_days", serde_json::Value::Null)
            .fact("metadata_age_days", 1),
        Check::pass(CheckId::DiskEncryption, "LUKS2").fact("encrypted", true),
        Check::pass(CheckId::Firewall, "nftables").fact("enabled", true),
        Check::pass(CheckId::ScreenLock, "300 s")
            .fact("enabled", true)
            .fact("timeout_seconds", 300),
        Check::fail(CheckId::Antivirus, "no antivirus").fact("present", false),
    ]
}

fn report(checks: Vec<Check>) -> Report {
    Report {
        collected_at: OffsetDateTime::UNIX_EPOCH,
        platform: Platform::Linux,
        agent_version: "0.1.0".into(),
        duration_ms: 1,
        checks,
    }
}

fn replace(mut checks: Vec<Check>, check: Check) -> Vec<Check> {
    checks.retain(|c| c.id != check.id);
    checks.push(check);
    checks
}

fn violated_checks(checks: Vec<Check>) -> Vec<String> {
    let policy = Policy::default_policy().unwrap();
    let evaluation = policy.evaluate(&report(checks)).unwrap();
    assert_eq!(evaluation.compliant, evaluation.violations.is_empty());
    evaluation.violations.into_iter().map(|v| v.check).collect()
}

#[test]
fn healthy_device_is_compliant_even_without_optional_checks() {
    assert_eq!(violated_checks(healthy_checks()), Vec::<String>::new());
}

#[test]
fn each_required_control_failing_is_its_own_violation() {
    let cases = [
        Check::fail(CheckId::DiskEncryption, "/dev/vda is not encrypted")
            .remediation("Encrypt the disk"),
        Check::fail(CheckId::Firewall, "no rules"),
        Check::fail(CheckId::ScreenLock, "never locks"),
    ];
    for failing in cases {
        let id = failing.id.as_str().to_owned();
        let policy = Policy::default_policy().unwrap();
        let evaluation = policy
            .evaluate(&report(replace(healthy_checks(), failing.clone())))
            .unwrap();
        assert!(!evaluation.compliant, "{id}");
        assert_eq!(
            evaluation.violations.len(),
            1,
            "{id}: {:?}",
            evaluation.violations
        );
        let violation = &evaluation.violations[0];
        assert_eq!(violation.check, id);
        assert_eq!(violation.message, failing.summary);
        if let Some(remediation) = &failing.remediation {
            assert_eq!(&violation.remediation, remediation);
        }
    }
}

#[test]
fn unknown_or_missing_required_check_fails_closed() {
    let unknown = Check::unknown(
        CheckId::Firewall,
        Unknown::new(UnknownKind::PermissionDenied, "nft needs root"),
    );
    let policy = Policy::default_policy().unwrap();
    let evaluation = policy
        .evaluate(&report(replace(healthy_checks(), unknown)))
        .unwrap();
    assert_eq!(evaluation.violations.len(), 1);
    assert!(evaluation.violations[0].message.contains("nft needs root"));

    let mut missing = healthy_checks();
    missing.retain(|c| c.id != CheckId::DiskEncryption);
    assert_eq!(violated_checks(missing), vec!["disk_encryption"]);
}

#[test]
fn os_version_minimums_compare_numerically_with_padding() {
    let os = |platform: &str, parts: Vec<u64>| {
        Check::pass(CheckId::OsVersion, "os")
            .fact("platform_id", platform)
            .fact("name", platform)
            .fact("version", "x")
            .fact("version_parts", parts)
    };
    let verdict = |check| violated_checks(replace(healthy_checks(), check));
    assert_eq!(verdict(os("debian", vec![11])), vec!["os_version"]);
    assert!(verdict(os("debian", vec![13])).is_empty());
    assert!(
        verdict(os("ubuntu", vec![22, 4])).is_empty(),
        "22.04 == 22.04.0"
    );
    assert_eq!(verdict(os("ubuntu", vec![20, 4, 6])), vec!["os_version"]);
    assert!(verdict(os("ubuntu", vec![24, 4])).is_empty());
    assert_eq!(
        verdict(os("windows", vec![10, 0, 19044, 9999])),
        vec!["os_version"]
    );
    assert!(verdict(os("windows", vec![10, 0, 22631, 3880])).is_empty());
    assert_eq!(verdict(os("macos", vec![13, 6, 9])), vec!["os_version"]);
    assert!(verdict(os("macos", vec![15, 1])).is_empty());
    assert_eq!(
        verdict(os("arch", vec![])),
        vec!["os_version"],
        "unlisted platform"
    );
}

#[test]
fn security_updates_have_a_grace_period_then_violate() {
    let pending = |days: u64| {
        Check::fail(CheckId::SecurityUpdates, "pending")
            .fact("pending", 5)
            .fact("security_pending", 2)
            .fact("oldest_security_pending_days", days)
            .fact("metadata_age_days", 0)
    };
    assert!(violated_checks(replace(healthy_checks(), pending(3))).is_empty());
    assert!(violated_checks(replace(healthy_checks(), pending(14))).is_empty());
    assert_eq!(
        violated_checks(replace(healthy_checks(), pending(15))),
        vec!["security_updates"]
    );
    let stale = Check::pass(CheckId::SecurityUpdates, "none pending")
        .fact("pending", 0)
        .fact("security_pending", 0)
        .fact("metadata_age_days", 200);
    assert_eq!(
        violated_checks(replace(healthy_checks(), stale)),
        vec!["security_updates"]
    );
}

#[test]
fn screen_lock_delay_over_the_maximum_violates() {
    let lock = |seconds: u64| {
        Check::pass(CheckId::ScreenLock, "locks")
            .fact("enabled", true)
            .fact("timeout_seconds", seconds)
    };
    assert!(violated_checks(replace(healthy_checks(), lock(900))).is_empty());
    assert_eq!(
        violated_checks(replace(healthy_checks(), lock(1800))),
        vec!["screen_lock"]
    );
}

#[test]
fn invalid_rego_reports_line_and_column() {
    let source = "package sallyport.posture\n\nimport rego.v1\n\nviolations contains v if {\n  v := {\"check\": }\n}\n";
    let err = Policy::from_source("broken.rego", source).unwrap_err();
    let PolicyError::Invalid(message) = &err else {
        panic!("expected Invalid, got {err:?}");
    };
    assert!(message.contains("broken.rego:6:"), "{message}");
}

#[test]
fn policy_without_violations_rule_or_with_bad_output_is_rejected() {
    let no_rule = Policy::from_source("empty.rego", "package other\n\nimport rego.v1\n\nx := 1\n");
    assert!(no_rule.is_err(), "{no_rule:?}");

    let wrong_shape = Policy::from_source(
        "shape.rego",
        "package sallyport.posture\n\nimport rego.v1\n\nviolations contains \"just a string\" if true\n",
    );
    assert!(
        matches!(wrong_shape, Err(PolicyError::Output(_))),
        "{wrong_shape:?}"
    );
}

#[test]
fn another_policy_can_be_loaded_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("strict.rego");
    std::fs::write(
        &path,
        "package sallyport.posture\n\nimport rego.v1\n\nviolations contains v if {\n  input.checks.antivirus.status != \"pass\"\n  v := {\"check\": \"antivirus\", \"message\": \"no antivirus\", \"remediation\": \"install one\"}\n}\n",
    )
    .unwrap();
    let policy = Policy::from_file(&path).unwrap();
    let evaluation = policy.evaluate(&report(healthy_checks())).unwrap();
    assert_eq!(evaluation.violations.len(), 1);
    assert_eq!(evaluation.violations[0].check, "antivirus");

    let missing = Policy::from_file(&dir.path().join("nope.rego")).unwrap_err();
    assert!(matches!(missing, PolicyError::Read { .. }));
}
