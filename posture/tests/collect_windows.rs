//! The Windows collectors for real, on whatever Windows runs them (CI: Wine
//! 8). Every check comes back exactly once, and nothing is guessed: a check
//! is `unknown` exactly when it carries a reason. Under Wine, whose
//! Windows lacks BitLocker, the TPM tools, `dsregcmd`, the Windows Update
//! agent, the firewall cmdlets and a Secure Boot state, each of those
//! checks must be `unknown` with its reason, never a crash and never a
//! `pass`.
#![cfg(windows)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use posture::CheckId;
use posture::cache::Cache;
use posture::check::{Status, UnknownKind};
use posture::collect::{self, Options};

fn under_wine() -> bool {
    Command::new("reg")
        .args(["query", r"HKLM\Software\Wine"])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[tokio::test]
async fn every_check_is_measured_or_unknown_with_its_reason() {
    let options = Options {
        cache: Cache::disabled(),
        ..Options::default()
    };
    let report = collect::collect(&options).await;
    for id in [
        CheckId::OsVersion,
        CheckId::SecurityUpdates,
        CheckId::LastUpdate,
        CheckId::RebootPending,
        CheckId::DiskEncryption,
        CheckId::Firewall,
        CheckId::ScreenLock,
        CheckId::Antivirus,
        CheckId::SecureBoot,
        CheckId::DeviceIdentity,
        CheckId::Tpm,
        CheckId::Enrollment,
        CheckId::AgentVersion,
    ] {
        let found = report.checks.iter().filter(|c| c.id == id).count();
        assert_eq!(found, 1, "{id:?} reported {found} times");
    }
    for check in &report.checks {
        match (&check.status, &check.unknown) {
            (Status::Unknown, Some(why)) => assert!(!why.detail.is_empty(), "{check:?}"),
            (Status::Unknown, None) => panic!("{:?} unknown without a reason", check.id),
            (_, Some(why)) => panic!("{:?} is {} but carries {why}", check.id, check.status),
            (_, None) => {}
        }
    }

    if !under_wine() {
        return;
    }
    // What Wine 8 lacks, each with the reason the helpdesk would read.
    let expected = [
        (CheckId::SecurityUpdates, UnknownKind::Unparseable),
        (CheckId::LastUpdate, UnknownKind::Unparseable),
        (CheckId::RebootPending, UnknownKind::SourceMissing),
        (CheckId::DiskEncryption, UnknownKind::SourceMissing),
        (CheckId::Firewall, UnknownKind::Unparseable),
        (CheckId::SecureBoot, UnknownKind::SourceMissing),
        (CheckId::Tpm, UnknownKind::SourceMissing),
        (CheckId::Enrollment, UnknownKind::SourceMissing),
    ];
    for (id, kind) in expected {
        let check = report.check(id).unwrap();
        let why = check.unknown.as_ref().unwrap_or_else(|| {
            panic!(
                "{id:?} under Wine should be unknown, got {}: {}",
                check.status, check.summary
            )
        });
        assert_eq!(why.kind, kind, "{id:?}: {why}");
    }
    // BitLocker asks CIM first and says why it fell back to manage-bde.
    let bitlocker = report.check(CheckId::DiskEncryption).unwrap();
    assert!(
        bitlocker.evidence[0].starts_with("CIM did not answer"),
        "{:?}",
        bitlocker.evidence
    );
    // What Wine does answer is measured, not left unknown.
    for id in [
        CheckId::OsVersion,
        CheckId::DeviceIdentity,
        CheckId::AgentVersion,
    ] {
        assert_ne!(report.check(id).unwrap().status, Status::Unknown, "{id:?}");
    }
}
