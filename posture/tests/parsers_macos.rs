//! macOS parsers and check mappings against reconstructed outputs (no Mac
//! was available: provenance in each fixture folder's README.md), plus
//! no-panic properties.

// Fixture loaders below panic on a missing file by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use posture::parse::macos::{
    defaults, enrollment, filevault, firewall, gatekeeper, identity, platform_security,
    screen_lock, sip, software_update, sw_vers, xprotect,
};
use posture::{Check, CheckId, Status, UnknownKind};
use proptest::prelude::*;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::macros::datetime;

macro_rules! fixture {
    ($path:literal) => {
        include_str!(concat!("fixtures/macos/", $path))
    };
}

/// The fact `key`, or `Value::Null` when absent (absent and null are told
/// apart with [`has_fact`]).
fn fact(check: &Check, key: &str) -> Value {
    check.observed.get(key).cloned().unwrap_or(Value::Null)
}

fn has_fact(check: &Check, key: &str) -> bool {
    check.observed.contains_key(key)
}

const NOW: OffsetDateTime = datetime!(2024-06-14 08:00:00 UTC);

// ---- sw_vers ----

#[test]
fn sw_vers_sequoia() {
    let sw = sw_vers::parse_sw_vers(fixture!("sw_vers/sequoia.txt")).unwrap();
    assert_eq!(sw.product_name, "macOS");
    assert_eq!(sw.product_version, "15.1");
    assert_eq!(sw.product_version_extra, None);
    assert_eq!(sw.build_version, "24B83");
    assert_eq!(sw.version_parts, vec![15, 1]);

    let check = sw_vers::os_version_check(&sw, Some("24.1.0"));
    assert_eq!(check.id, CheckId::OsVersion);
    assert_eq!(check.status, Status::Pass);
    assert_eq!(fact(&check, "platform_id"), json!("macos"));
    assert_eq!(fact(&check, "name"), json!("macOS"));
    assert_eq!(fact(&check, "version"), json!("15.1"));
    assert_eq!(fact(&check, "version_parts"), json!([15, 1]));
    assert_eq!(fact(&check, "build"), json!("24B83"));
    assert_eq!(fact(&check, "kernel"), json!("24.1.0"));
    assert!(
        has_fact(&check, "rapid_security_response"),
        "measured as none"
    );
    assert_eq!(fact(&check, "rapid_security_response"), Value::Null);
    assert_eq!(check.summary, "macOS 15.1 (24B83)");
}

#[test]
fn sw_vers_rapid_security_response() {
    let sw = sw_vers::parse_sw_vers(fixture!("sw_vers/ventura_rsr.txt")).unwrap();
    assert_eq!(sw.product_version, "13.4.1");
    assert_eq!(sw.product_version_extra.as_deref(), Some("(a)"));
    assert_eq!(sw.build_version, "22F770820d");
    assert_eq!(sw.version_parts, vec![13, 4, 1]);
    assert_eq!(sw.display_version(), "13.4.1 (a)");

    let check = sw_vers::os_version_check(&sw, None);
    assert_eq!(fact(&check, "rapid_security_response"), json!("(a)"));
    assert_eq!(fact(&check, "version"), json!("13.4.1"));
    assert!(!has_fact(&check, "kernel"), "kernel left out when unread");
}

#[test]
fn sw_vers_old_product_name() {
    let sw = sw_vers::parse_sw_vers(fixture!("sw_vers/catalina.txt")).unwrap();
    assert_eq!(sw.product_name, "Mac OS X");
    assert_eq!(sw.version_parts, vec![10, 15, 7]);
    assert_eq!(sw.build_version, "19H2026");
}

#[test]
fn sw_vers_odd_outputs_are_errors() {
    let truncated = sw_vers::parse_sw_vers(fixture!("sw_vers/truncated.txt")).unwrap_err();
    assert!(truncated.detail.contains("BuildVersion"), "{truncated}");
    let beta = sw_vers::parse_sw_vers(fixture!("sw_vers/beta_version.txt")).unwrap_err();
    assert!(beta.detail.contains("16.0 beta"), "{beta}");
    assert!(sw_vers::parse_sw_vers("").is_err());
    assert!(
        sw_vers::parse_sw_vers("ProductName: macOS\nProductVersion: 15..1\nBuildVersion: 1\n")
            .is_err()
    );
}

#[test]
fn kernel_release() {
    assert_eq!(sw_vers::parse_kernel_release("24.1.0\n").unwrap(), "24.1.0");
    assert!(sw_vers::parse_kernel_release("").is_err());
    assert!(sw_vers::parse_kernel_release("Darwin 24.1.0").is_err());
}

// ---- fdesetup ----

fn disk_check(text: &str) -> Check {
    filevault::disk_encryption_check(&filevault::parse_fdesetup_status(text).unwrap())
}

#[test]
fn filevault_on_passes() {
    let vault = filevault::parse_fdesetup_status(fixture!("filevault/on.txt")).unwrap();
    assert_eq!(vault.status, filevault::FileVaultStatus::On);
    let check = filevault::disk_encryption_check(&vault);
    assert_eq!(check.status, Status::Pass);
    assert_eq!(fact(&check, "encrypted"), json!(true));
    assert_eq!(fact(&check, "method"), json!("FileVault"));
    assert_eq!(fact(&check, "volume"), json!("/"));
    assert_eq!(
        check.evidence,
        vec![r#"ran `fdesetup status`: "FileVault is On.""#]
    );
    assert_eq!(check.remediation, None);
}

#[test]
fn filevault_off_fails() {
    let check = disk_check(fixture!("filevault/off.txt"));
    assert_eq!(check.status, Status::Fail);
    assert_eq!(fact(&check, "encrypted"), json!(false));
    assert!(!has_fact(&check, "method"));
    assert!(
        check
            .remediation
            .as_deref()
            .unwrap()
            .contains("FileVault → Turn On")
    );
}

#[test]
fn filevault_in_progress_is_not_protected_yet() {
    let encrypting =
        filevault::parse_fdesetup_status(fixture!("filevault/encrypting.txt")).unwrap();
    assert_eq!(encrypting.status, filevault::FileVaultStatus::Encrypting);
    assert_eq!(
        encrypting.deciding_lines,
        vec![
            "FileVault is On.",
            "Encryption in progress: Percent completed = 35.2"
        ]
    );
    let check = filevault::disk_encryption_check(&encrypting);
    assert_eq!(check.status, Status::Fail);
    assert_eq!(fact(&check, "encrypted"), json!(false));
    assert_eq!(fact(&check, "method"), json!("FileVault"));
    assert!(check.remediation.as_deref().unwrap().contains("on power"));

    let decrypting = disk_check(fixture!("filevault/decrypting.txt"));
    assert_eq!(decrypting.status, Status::Fail);
    assert_eq!(fact(&decrypting, "encrypted"), json!(false));
}

#[test]
fn filevault_deferred_enablement_fails_and_names_the_user() {
    let vault = filevault::parse_fdesetup_status(fixture!("filevault/deferred.txt")).unwrap();
    assert_eq!(
        vault.status,
        filevault::FileVaultStatus::DeferredEnablement {
            user: Some("alice".into())
        }
    );
    let check = filevault::disk_encryption_check(&vault);
    assert_eq!(check.status, Status::Fail);
    assert_eq!(fact(&check, "encrypted"), json!(false));
    assert!(check.remediation.as_deref().unwrap().contains("'alice'"));
}

#[test]
fn filevault_informational_lines_are_ignored() {
    let check = disk_check(fixture!("filevault/on_master_keychain.txt"));
    assert_eq!(check.status, Status::Pass);
}

#[test]
fn filevault_odd_outputs_are_errors() {
    assert!(filevault::parse_fdesetup_status(fixture!("filevault/error.txt")).is_err());
    assert!(filevault::parse_fdesetup_status(fixture!("filevault/truncated.txt")).is_err());
    // APFS "encrypted" wording or a different case is not fdesetup's answer.
    assert!(filevault::parse_fdesetup_status("FileVault is on.\n").is_err());
    assert!(filevault::parse_fdesetup_status("").is_err());
}

// ---- firewall ----

#[test]
fn socketfilterfw_states() {
    let on = firewall::parse_socketfilterfw_global_state(fixture!(
        "firewall/socketfilterfw_enabled.txt"
    ))
    .unwrap();
    assert_eq!(on.mode, firewall::FirewallMode::On);
    assert_eq!(on.line, "Firewall is enabled. (State = 1)");
    let check = firewall::firewall_check(&on);
    assert_eq!(check.status, Status::Pass);
    assert_eq!(fact(&check, "enabled"), json!(true));
    assert_eq!(fact(&check, "source"), json!("socketfilterfw"));
    assert_eq!(
        check.evidence,
        vec![r#"ran `socketfilterfw --getglobalstate`: "Firewall is enabled. (State = 1)""#]
    );

    let block = firewall::parse_socketfilterfw_global_state(fixture!(
        "firewall/socketfilterfw_block_all.txt"
    ))
    .unwrap();
    assert_eq!(block.mode, firewall::FirewallMode::BlockAll);
    assert_eq!(firewall::firewall_check(&block).status, Status::Pass);

    let off = firewall::parse_socketfilterfw_global_state(fixture!(
        "firewall/socketfilterfw_disabled.txt"
    ))
    .unwrap();
    assert_eq!(off.mode, firewall::FirewallMode::Off);
    let check = firewall::firewall_check(&off);
    assert_eq!(check.status, Status::Fail);
    assert_eq!(fact(&check, "enabled"), json!(false));
    assert!(check.remediation.is_some());
}

#[test]
fn socketfilterfw_odd_outputs_are_errors() {
    assert!(
        firewall::parse_socketfilterfw_global_state(fixture!(
            "firewall/socketfilterfw_contradictory.txt"
        ))
        .is_err()
    );
    assert!(
        firewall::parse_socketfilterfw_global_state(fixture!(
            "firewall/socketfilterfw_unknown_state.txt"
        ))
        .is_err()
    );
    assert!(
        firewall::parse_socketfilterfw_global_state("Firewall is enabled. (State = )").is_err()
    );
    // Without a state number the words decide.
    let words = firewall::parse_socketfilterfw_global_state("Firewall is disabled.\n").unwrap();
    assert_eq!(words.mode, firewall::FirewallMode::Off);
}

#[test]
fn system_profiler_firewall_modes() {
    let on = firewall::parse_system_profiler_firewall(fixture!("firewall/system_profiler_on.txt"))
        .unwrap();
    assert_eq!(on.mode, firewall::FirewallMode::On);
    assert_eq!(on.source, firewall::FirewallSource::SystemProfiler);
    assert_eq!(
        on.line,
        "Mode: Limit incoming connections to specific services and applications"
    );
    assert_eq!(
        fact(&firewall::firewall_check(&on), "source"),
        json!("system_profiler")
    );

    let off =
        firewall::parse_system_profiler_firewall(fixture!("firewall/system_profiler_off.txt"))
            .unwrap();
    assert_eq!(off.mode, firewall::FirewallMode::Off);
    assert_eq!(firewall::firewall_check(&off).status, Status::Fail);

    let block = firewall::parse_system_profiler_firewall(fixture!(
        "firewall/system_profiler_block_all.txt"
    ))
    .unwrap();
    assert_eq!(block.mode, firewall::FirewallMode::BlockAll);
}

#[test]
fn system_profiler_firewall_localized_is_an_error_not_a_guess() {
    let err =
        firewall::parse_system_profiler_firewall(fixture!("firewall/system_profiler_german.txt"))
            .unwrap_err();
    assert!(err.detail.contains("Mode:"), "{err}");
}

// ---- csrutil ----

#[test]
fn sip_enabled_passes() {
    let parsed = sip::parse_csrutil_status(fixture!("sip/enabled.txt")).unwrap();
    assert_eq!(parsed.status, sip::SipStatus::Enabled);
    let check = sip::sip_check(&parsed);
    assert_eq!(check.status, Status::Pass);
    assert_eq!(fact(&check, "enabled"), json!(true));
    assert_eq!(
        check.evidence,
        vec![r#"ran `csrutil status`: "System Integrity Protection status: enabled.""#]
    );
}

#[test]
fn sip_disabled_and_custom_fail() {
    let disabled =
        sip::sip_check(&sip::parse_csrutil_status(fixture!("sip/disabled.txt")).unwrap());
    assert_eq!(disabled.status, Status::Fail);
    assert_eq!(fact(&disabled, "enabled"), json!(false));
    assert!(
        disabled
            .remediation
            .as_deref()
            .unwrap()
            .contains("Recovery")
    );

    let custom = sip::parse_csrutil_status(fixture!("sip/custom.txt")).unwrap();
    assert_eq!(custom.status, sip::SipStatus::CustomConfiguration);
    assert_eq!(custom.disabled_protections, vec!["Filesystem Protections"]);
    let check = sip::sip_check(&custom);
    assert_eq!(check.status, Status::Fail);
    assert_eq!(fact(&check, "enabled"), json!(false));
    assert!(check.summary.contains("Filesystem Protections"));
}

#[test]
fn sip_passes_only_on_the_exact_enabled_line() {
    let internal = sip::parse_csrutil_status(fixture!("sip/enabled_apple_internal.txt")).unwrap();
    assert_eq!(
        internal.status,
        sip::SipStatus::Other("enabled (Apple Internal).".into())
    );
    assert_eq!(sip::sip_check(&internal).status, Status::Fail);
    let no_period =
        sip::parse_csrutil_status("System Integrity Protection status: enabled\n").unwrap();
    assert_eq!(sip::sip_check(&no_period).status, Status::Fail);
}

#[test]
fn sip_odd_outputs_are_errors() {
    assert!(sip::parse_csrutil_status(fixture!("sip/truncated.txt")).is_err());
    assert!(sip::parse_csrutil_status("csrutil: command not found").is_err());
}

// ---- spctl ----

#[test]
fn gatekeeper_states() {
    assert!(gatekeeper::parse_spctl_status(fixture!("gatekeeper/enabled.txt")).unwrap());
    assert!(!gatekeeper::parse_spctl_status(fixture!("gatekeeper/disabled.txt")).unwrap());
    let on = gatekeeper::gatekeeper_check(true);
    assert_eq!(
        (on.status, fact(&on, "enabled")),
        (Status::Pass, json!(true))
    );
    assert_eq!(
        on.evidence,
        vec![r#"ran `spctl --status`: "assessments enabled""#]
    );
    let off = gatekeeper::gatekeeper_check(false);
    assert_eq!(
        (off.status, fact(&off, "enabled")),
        (Status::Fail, json!(false))
    );
    assert!(
        off.remediation
            .as_deref()
            .unwrap()
            .contains("spctl --global-enable")
    );
}

#[test]
fn gatekeeper_odd_outputs_are_errors() {
    assert!(gatekeeper::parse_spctl_status(fixture!("gatekeeper/usage_error.txt")).is_err());
    assert!(gatekeeper::parse_spctl_status("").is_err());
    assert!(gatekeeper::parse_spctl_status("assessments enabled\nassessments disabled\n").is_err());
}

// ---- screen lock ----

#[test]
fn sysadminctl_lines() {
    let immediate = screen_lock::parse_sysadminctl_screen_lock(fixture!(
        "screen_lock/sysadminctl_immediate.txt"
    ))
    .unwrap();
    assert_eq!(immediate.delay, screen_lock::LockDelay::Immediate);
    assert_eq!(immediate.line, "screenLock delay is immediate");
    let seconds = screen_lock::parse_sysadminctl_screen_lock(fixture!(
        "screen_lock/sysadminctl_300_seconds.txt"
    ))
    .unwrap();
    assert_eq!(seconds.delay, screen_lock::LockDelay::Seconds(300));
    let off =
        screen_lock::parse_sysadminctl_screen_lock(fixture!("screen_lock/sysadminctl_off.txt"))
            .unwrap();
    assert_eq!(off.delay, screen_lock::LockDelay::Off);
}

#[test]
fn sysadminctl_odd_outputs_are_errors() {
    assert!(
        screen_lock::parse_sysadminctl_screen_lock(fixture!("screen_lock/sysadminctl_minutes.txt"))
            .is_err()
    );
    assert!(
        screen_lock::parse_sysadminctl_screen_lock(fixture!(
            "screen_lock/sysadminctl_no_session.txt"
        ))
        .is_err()
    );
    assert!(screen_lock::parse_sysadminctl_screen_lock("screenLock delay is -5 seconds").is_err());
}

#[test]
fn idle_time_values() {
    assert_eq!(
        screen_lock::parse_idle_time(fixture!("screen_lock/idle_time_600.txt")).unwrap(),
        600
    );
    assert_eq!(
        screen_lock::parse_idle_time(fixture!("screen_lock/idle_time_never.txt")).unwrap(),
        0
    );
    assert!(screen_lock::parse_idle_time(fixture!("screen_lock/idle_time_float.txt")).is_err());
    assert!(screen_lock::parse_idle_time("-1\n").is_err());
    assert!(defaults::is_missing_default(fixture!(
        "screen_lock/idle_time_missing.stderr.txt"
    )));
    assert!(!defaults::is_missing_default(fixture!(
        "screen_lock/idle_time_600.txt"
    )));
}

fn lock_status(text: &str) -> screen_lock::ScreenLockStatus {
    screen_lock::parse_sysadminctl_screen_lock(text).unwrap()
}

#[test]
fn screen_lock_timeout_is_idle_plus_delay() {
    let status = lock_status(fixture!("screen_lock/sysadminctl_300_seconds.txt"));
    let check = screen_lock::screen_lock_check(&status, Some(600));
    assert_eq!(check.status, Status::Pass);
    assert_eq!(fact(&check, "enabled"), json!(true));
    assert_eq!(fact(&check, "timeout_seconds"), json!(900));
    assert_eq!(check.evidence.len(), 2);
    assert!(check.evidence[0].contains(r#""screenLock delay is 300 seconds""#));

    let immediate = lock_status(fixture!("screen_lock/sysadminctl_immediate.txt"));
    let check = screen_lock::screen_lock_check(&immediate, Some(300));
    assert_eq!(fact(&check, "timeout_seconds"), json!(300));
}

#[test]
fn screen_lock_off_or_never_idle_fails() {
    let off = lock_status(fixture!("screen_lock/sysadminctl_off.txt"));
    let check = screen_lock::screen_lock_check(&off, Some(600));
    assert_eq!(check.status, Status::Fail);
    assert_eq!(fact(&check, "enabled"), json!(false));
    assert!(!has_fact(&check, "timeout_seconds"));
    assert!(
        check
            .remediation
            .as_deref()
            .unwrap()
            .contains("Require password")
    );

    let immediate = lock_status(fixture!("screen_lock/sysadminctl_immediate.txt"));
    let never = screen_lock::screen_lock_check(&immediate, Some(0));
    assert_eq!(never.status, Status::Fail);
    assert_eq!(fact(&never, "enabled"), json!(false));
    assert!(!has_fact(&never, "timeout_seconds"));
    assert!(
        never
            .remediation
            .as_deref()
            .unwrap()
            .contains("Start Screen Saver")
    );
}

#[test]
fn screen_lock_with_default_idle_time_passes_without_a_made_up_timeout() {
    let immediate = lock_status(fixture!("screen_lock/sysadminctl_immediate.txt"));
    let check = screen_lock::screen_lock_check(&immediate, None);
    assert_eq!(check.status, Status::Pass);
    assert_eq!(fact(&check, "enabled"), json!(true));
    assert!(!has_fact(&check, "timeout_seconds"));
    assert!(check.evidence[1].contains("not set"));
}

#[test]
fn screen_lock_needs_the_console_user() {
    assert!(
        screen_lock::console_session_problem("root", "alice")
            .unwrap()
            .contains("root")
    );
    assert!(
        screen_lock::console_session_problem("alice", "root")
            .unwrap()
            .contains("nobody")
    );
    assert!(
        screen_lock::console_session_problem("bob", "alice")
            .unwrap()
            .contains("\"alice\"")
    );
    assert_eq!(screen_lock::console_session_problem("alice", "alice"), None);
    assert_eq!(
        screen_lock::parse_user_name("`id -un`", "alice\n").unwrap(),
        "alice"
    );
    assert!(screen_lock::parse_user_name("`id -un`", "").is_err());
}

// ---- profiles ----

#[test]
fn enrollment_enrolled() {
    let dep = enrollment::parse_profiles_enrollment(fixture!("enrollment/dep_user_approved.txt"))
        .unwrap();
    assert_eq!(dep.via_dep, Some(true));
    assert_eq!(dep.mdm, enrollment::MdmEnrollment::UserApproved);
    assert_eq!(
        dep.server.as_deref(),
        Some("https://mdm.example.com:8443/mdm/server")
    );
    let check = enrollment::enrollment_check(&dep);
    assert_eq!(check.status, Status::Pass);
    assert_eq!(fact(&check, "enrolled"), json!(true));
    assert_eq!(fact(&check, "kind"), json!("mdm"));
    assert_eq!(
        check.evidence,
        vec![
            r#"ran `profiles status -type enrollment`: "MDM enrollment: Yes (User Approved)", enrolled via DEP, server https://mdm.example.com:8443/mdm/server"#
        ]
    );

    let profile =
        enrollment::parse_profiles_enrollment(fixture!("enrollment/user_approved.txt")).unwrap();
    assert_eq!(
        (profile.via_dep, profile.mdm),
        (Some(false), enrollment::MdmEnrollment::UserApproved)
    );

    let unapproved =
        enrollment::parse_profiles_enrollment(fixture!("enrollment/not_approved.txt")).unwrap();
    assert_eq!(unapproved.mdm, enrollment::MdmEnrollment::Yes);
    let check = enrollment::enrollment_check(&unapproved);
    assert_eq!(check.status, Status::Pass);
    assert!(
        check
            .evidence
            .iter()
            .any(|e| e.contains("not user approved"))
    );
}

#[test]
fn enrollment_not_enrolled_fails() {
    let none =
        enrollment::parse_profiles_enrollment(fixture!("enrollment/not_enrolled.txt")).unwrap();
    assert_eq!(none.mdm, enrollment::MdmEnrollment::No);
    let check = enrollment::enrollment_check(&none);
    assert_eq!(check.status, Status::Fail);
    assert_eq!(fact(&check, "enrolled"), json!(false));
    assert!(!has_fact(&check, "kind"));
    assert!(check.remediation.is_some());
}

#[test]
fn enrollment_odd_outputs_are_errors() {
    assert!(enrollment::parse_profiles_enrollment(fixture!("enrollment/truncated.txt")).is_err());
    assert!(
        enrollment::parse_profiles_enrollment(fixture!("enrollment/unexpected_value.txt")).is_err()
    );
}

// ---- ioreg ----

#[test]
fn ioreg_identity() {
    let id = identity::parse_ioreg_platform(fixture!("identity/apple_silicon.txt")).unwrap();
    assert_eq!(id.uuid, "5D1D8E2A-3B8C-4F63-9A2E-7C0E1B4F9A10");
    assert_eq!(id.serial(), Some("FVFXK2Q7Q6L4"));
    let check = identity::device_identity_check(&id);
    assert_eq!(check.status, Status::Pass);
    assert_eq!(
        fact(&check, "machine_id"),
        json!("5D1D8E2A-3B8C-4F63-9A2E-7C0E1B4F9A10")
    );
    assert_eq!(fact(&check, "serial"), json!("FVFXK2Q7Q6L4"));
    assert_eq!(check.summary, "hardware UUID 5D1D8E2A…");
}

#[test]
fn ioreg_placeholder_serial_is_null() {
    let id =
        identity::parse_ioreg_platform(fixture!("identity/vm_placeholder_serial.txt")).unwrap();
    assert_eq!(id.raw_serial.as_deref(), Some("0"));
    assert_eq!(id.serial(), None);
    let check = identity::device_identity_check(&id);
    assert_eq!(check.status, Status::Pass);
    assert!(has_fact(&check, "serial"));
    assert_eq!(fact(&check, "serial"), Value::Null);
    assert!(check.evidence[0].contains("placeholder"));
    for placeholder in [
        "",
        "000000000000",
        "Not Available",
        "To Be Filled By O.E.M.",
    ] {
        assert!(
            identity::is_placeholder_serial(placeholder),
            "{placeholder:?}"
        );
    }
    assert!(!identity::is_placeholder_serial("C02ZK0XXMD6T"));
}

#[test]
fn ioreg_odd_outputs_are_errors() {
    assert!(identity::parse_ioreg_platform(fixture!("identity/no_uuid.txt")).is_err());
    let bad = identity::parse_ioreg_platform(fixture!("identity/bad_uuid.txt")).unwrap_err();
    assert!(bad.detail.contains("not-a-uuid"), "{bad}");
}

// ---- XProtect ----

#[test]
fn xprotect_version_and_age() {
    assert_eq!(
        xprotect::parse_xprotect_version(fixture!("xprotect/version_15.txt")).unwrap(),
        "5287"
    );
    assert_eq!(
        xprotect::parse_xprotect_version(fixture!("xprotect/version_14.txt")).unwrap(),
        "2195"
    );
    let installed = datetime!(2024-06-04 08:06:27 UTC);
    let check = xprotect::antivirus_check("5287", xprotect::INFO_PLISTS[0], Some(installed), NOW);
    assert_eq!(check.status, Status::Pass);
    assert_eq!(fact(&check, "present"), json!(true));
    assert_eq!(fact(&check, "product"), json!("XProtect"));
    assert_eq!(fact(&check, "signature_age_days"), json!(9));
    assert!(
        !has_fact(&check, "running"),
        "not observable, so not reported"
    );
    assert_eq!(check.summary, "XProtect 5287, signatures 9 day(s) old");

    let ageless = xprotect::antivirus_check("2195", xprotect::INFO_PLISTS[1], None, NOW);
    assert!(!has_fact(&ageless, "signature_age_days"));
    assert_eq!(
        xprotect::signature_age_days(NOW + time::Duration::days(2), NOW),
        0
    );
}

#[test]
fn xprotect_odd_outputs_are_errors() {
    assert!(xprotect::parse_xprotect_version(fixture!("xprotect/plist_error.txt")).is_err());
    assert!(xprotect::parse_xprotect_version(fixture!("xprotect/dict_value.txt")).is_err());
    assert!(xprotect::parse_xprotect_version("").is_err());
}

// ---- Software Update ----

#[test]
fn last_full_successful_date() {
    let at = software_update::parse_last_full_successful_date(fixture!(
        "software_update/last_full_successful_date.txt"
    ))
    .unwrap();
    assert_eq!(at, datetime!(2024-06-04 08:06:27 UTC));
    let offset = software_update::parse_last_full_successful_date(fixture!(
        "software_update/last_full_successful_date_offset.txt"
    ))
    .unwrap();
    assert_eq!(offset, at, "same instant written with +0200");

    let check = software_update::last_update_check(offset, NOW);
    assert_eq!(check.status, Status::Pass);
    assert_eq!(
        fact(&check, "last_installed_at"),
        json!("2024-06-04T08:06:27Z")
    );
    assert_eq!(fact(&check, "days_since"), json!(9));
    assert!(check.evidence[0].contains("not the install time"));
    assert_eq!(
        software_update::days_since(NOW + time::Duration::hours(30), NOW),
        0
    );
}

#[test]
fn last_full_successful_date_odd_outputs_are_errors() {
    assert!(
        software_update::parse_last_full_successful_date(fixture!(
            "software_update/last_full_successful_date_iso.txt"
        ))
        .is_err()
    );
    assert!(software_update::parse_last_full_successful_date("").is_err());
    assert!(software_update::parse_last_full_successful_date("2024-13-04 08:06:27 +0000").is_err());
}

#[test]
fn softwareupdate_list_with_os_update() {
    let updates =
        software_update::parse_softwareupdate_list(fixture!("software_update/list_pending.txt"))
            .unwrap();
    let labels: Vec<&str> = updates.iter().map(|u| u.label.as_str()).collect();
    assert_eq!(
        labels,
        vec![
            "macOS Sonoma 14.5-23F79",
            "Safari17.5SonomaAuto-17.5",
            "Command Line Tools for Xcode-15.3"
        ]
    );
    let os = &updates[0];
    assert_eq!(os.title.as_deref(), Some("macOS Sonoma 14.5"));
    assert_eq!(os.version.as_deref(), Some("14.5"));
    assert!(os.recommended);
    assert_eq!(os.action.as_deref(), Some("restart"));
    assert!(os.needs_restart() && os.is_security());
    assert_eq!(updates[1].action, None);
    assert!(!updates[1].is_security() && !updates[2].is_security());

    let source = software_update::ListSource::Live;
    let check = software_update::security_updates_check(&updates, &source, Some(3), Some(9));
    assert_eq!(check.status, Status::Fail);
    assert_eq!(fact(&check, "pending"), json!(3));
    assert_eq!(fact(&check, "security_pending"), json!(1));
    assert_eq!(fact(&check, "oldest_security_pending_days"), json!(3));
    assert_eq!(fact(&check, "metadata_age_days"), json!(9));
    assert_eq!(check.evidence[1], "security: macOS Sonoma 14.5-23F79");

    let reboot = software_update::reboot_pending_check(&updates, &source);
    assert_eq!(reboot.status, Status::Fail);
    assert_eq!(fact(&reboot, "reboot_pending"), json!(true));
    assert!(reboot.evidence[0].contains("macOS Sonoma 14.5-23F79"));
}

#[test]
fn softwareupdate_list_apps_only_is_not_security() {
    let updates =
        software_update::parse_softwareupdate_list(fixture!("software_update/list_apps_only.txt"))
            .unwrap();
    assert_eq!(updates.len(), 1);
    let source = software_update::ListSource::Cached { age_seconds: 120 };
    let check = software_update::security_updates_check(&updates, &source, None, None);
    assert_eq!(check.status, Status::Pass);
    assert_eq!(fact(&check, "pending"), json!(1));
    assert_eq!(fact(&check, "security_pending"), json!(0));
    assert_eq!(fact(&check, "oldest_security_pending_days"), Value::Null);
    assert!(!has_fact(&check, "metadata_age_days"));
    assert!(check.evidence[0].contains("cached 120s ago"));
    let reboot = software_update::reboot_pending_check(&updates, &source);
    assert_eq!(
        (reboot.status, fact(&reboot, "reboot_pending")),
        (Status::Pass, json!(false))
    );
}

#[test]
fn softwareupdate_rapid_security_response_counts_as_security() {
    let updates = software_update::parse_softwareupdate_list(fixture!(
        "software_update/list_rapid_security_response.txt"
    ))
    .unwrap();
    assert_eq!(updates.len(), 1);
    assert_eq!(
        updates[0].title.as_deref(),
        Some("macOS Ventura 13.4.1 (c)")
    );
    assert_eq!(updates[0].version.as_deref(), Some("13.4.1 (c)"));
    assert!(!updates[0].needs_restart());
    assert!(updates[0].is_security());
}

#[test]
fn softwareupdate_nothing_pending() {
    let updates =
        software_update::parse_softwareupdate_list(fixture!("software_update/list_none.txt"))
            .unwrap();
    assert!(updates.is_empty());
    let check = software_update::security_updates_check(
        &updates,
        &software_update::ListSource::Live,
        None,
        Some(0),
    );
    assert_eq!(check.status, Status::Pass);
    assert_eq!(fact(&check, "pending"), json!(0));
}

#[test]
fn softwareupdate_odd_outputs_are_errors() {
    assert!(
        software_update::parse_softwareupdate_list(fixture!(
            "software_update/list_network_error.txt"
        ))
        .is_err()
    );
    assert!(
        software_update::parse_softwareupdate_list(fixture!("software_update/list_truncated.txt"))
            .is_err()
    );
    assert!(
        software_update::parse_softwareupdate_list(fixture!(
            "software_update/list_catalina_old_format.txt"
        ))
        .is_err()
    );
    assert!(
        software_update::parse_softwareupdate_list("\tTitle: Safari, Version: 17.5,\n").is_err()
    );
    assert!(software_update::parse_softwareupdate_list("").is_err());
}

#[test]
fn softwareupdate_title_with_a_comma() {
    let text = "* Label: Pro Video Formats-2.3\n\tTitle: Pro Video Formats, Codecs, Version: 2.3, Size: 1K, Recommended: NO, \n";
    let updates = software_update::parse_softwareupdate_list(text).unwrap();
    assert_eq!(
        updates[0].title.as_deref(),
        Some("Pro Video Formats, Codecs")
    );
    assert_eq!(updates[0].version.as_deref(), Some("2.3"));
    assert!(!updates[0].recommended);
}

// ---- platform security ----

#[test]
fn t2_full_security_passes_secure_boot_and_tpm() {
    let bridge =
        platform_security::parse_ibridge(fixture!("platform_security/t2_full_security.txt"))
            .unwrap();
    assert_eq!(bridge.model_name.as_deref(), Some("Apple T2 Security Chip"));
    assert_eq!(bridge.secure_boot.as_deref(), Some("Full Security"));
    let check = platform_security::secure_boot_check(&bridge, false);
    assert_eq!(check.status, Status::Pass);
    assert_eq!(fact(&check, "enabled"), json!(true));
    assert_eq!(fact(&check, "firmware"), json!("uefi"));
    let tpm = platform_security::tpm_check(&bridge, false);
    assert_eq!(tpm.status, Status::Pass);
    assert_eq!(fact(&tpm, "present"), json!(true));
    assert_eq!(fact(&tpm, "version"), json!("Apple T2 Security Chip"));
}

#[test]
fn reduced_boot_security_fails() {
    let bridge =
        platform_security::parse_ibridge(fixture!("platform_security/t2_medium_security.txt"))
            .unwrap();
    let check = platform_security::secure_boot_check(&bridge, false);
    assert_eq!(check.status, Status::Fail);
    assert_eq!(fact(&check, "enabled"), json!(false));
    assert!(
        check
            .remediation
            .as_deref()
            .unwrap()
            .contains("Startup Security Utility")
    );
}

#[test]
fn intel_without_chip_and_t1() {
    let none =
        platform_security::parse_ibridge(fixture!("platform_security/intel_no_chip.txt")).unwrap();
    assert_eq!(none, platform_security::IBridge::default());
    let check = platform_security::secure_boot_check(&none, false);
    assert_eq!(
        (check.status, fact(&check, "enabled")),
        (Status::Fail, json!(false))
    );
    let tpm = platform_security::tpm_check(&none, false);
    assert_eq!(
        (tpm.status, fact(&tpm, "present")),
        (Status::Fail, json!(false))
    );

    let t1 = platform_security::parse_ibridge(fixture!("platform_security/t1.txt")).unwrap();
    assert_eq!(
        platform_security::secure_boot_check(&t1, false).status,
        Status::Fail
    );
    assert_eq!(
        platform_security::tpm_check(&t1, false).status,
        Status::Pass
    );
}

#[test]
fn apple_silicon_secure_enclave_and_unreadable_boot_policy() {
    let none = platform_security::IBridge::default();
    let tpm = platform_security::tpm_check(&none, true);
    assert_eq!(
        (tpm.status, fact(&tpm, "present")),
        (Status::Pass, json!(true))
    );
    let boot = platform_security::secure_boot_check(&none, true);
    assert_eq!(boot.status, Status::Unknown);
    assert_eq!(
        boot.unknown.as_ref().map(|u| u.kind),
        Some(UnknownKind::PermissionDenied)
    );
    assert!(boot.remediation.is_some());
    // A Secure Boot line, if Apple silicon prints one, decides; no `firmware`.
    let full = platform_security::IBridge {
        model_name: None,
        secure_boot: Some("Full Security".into()),
    };
    let check = platform_security::secure_boot_check(&full, true);
    assert_eq!(check.status, Status::Pass);
    assert!(!has_fact(&check, "firmware"));
}

#[test]
fn platform_odd_outputs() {
    assert!(platform_security::parse_ibridge(fixture!("platform_security/garbage.txt")).is_err());
    assert!(
        !platform_security::parse_arm64_flag(
            "",
            fixture!("platform_security/sysctl_arm64_unknown_oid.stderr.txt")
        )
        .unwrap()
    );
    assert!(platform_security::parse_arm64_flag("1\n", "").unwrap());
    assert!(!platform_security::parse_arm64_flag("0\n", "").unwrap());
    assert!(platform_security::parse_arm64_flag("", "sysctl: permission denied").is_err());
    let t2_no_line = platform_security::IBridge {
        model_name: Some("Apple T2 Security Chip".into()),
        secure_boot: None,
    };
    let check = platform_security::secure_boot_check(&t2_no_line, false);
    assert_eq!(
        check.unknown.as_ref().map(|u| u.kind),
        Some(UnknownKind::Unparseable)
    );
}

// ---- properties ----

/// Every text parser, called for its side effect of not panicking.
fn parse_all(text: &str) {
    let _ = sw_vers::parse_sw_vers(text);
    let _ = sw_vers::parse_kernel_release(text);
    let _ = filevault::parse_fdesetup_status(text).map(|v| filevault::disk_encryption_check(&v));
    let _ = firewall::parse_socketfilterfw_global_state(text).map(|s| firewall::firewall_check(&s));
    let _ = firewall::parse_system_profiler_firewall(text);
    let _ = sip::parse_csrutil_status(text).map(|s| sip::sip_check(&s));
    let _ = gatekeeper::parse_spctl_status(text);
    let _ = screen_lock::parse_sysadminctl_screen_lock(text)
        .map(|s| screen_lock::screen_lock_check(&s, Some(u32::MAX)));
    let _ = screen_lock::parse_idle_time(text);
    let _ = screen_lock::parse_user_name("`id -un`", text);
    let _ = screen_lock::console_session_problem(text, text);
    let _ = defaults::parse_defaults_integer("`defaults`", text);
    let _ = defaults::parse_defaults_string("`defaults`", text);
    let _ = enrollment::parse_profiles_enrollment(text).map(|e| enrollment::enrollment_check(&e));
    let _ = identity::parse_ioreg_platform(text).map(|i| identity::device_identity_check(&i));
    let _ = identity::is_placeholder_serial(text);
    let _ = xprotect::parse_xprotect_version(text);
    let _ = software_update::parse_last_full_successful_date(text)
        .map(|at| software_update::last_update_check(at, NOW));
    let _ = software_update::parse_softwareupdate_list(text).map(|u| {
        software_update::security_updates_check(&u, &software_update::ListSource::Live, None, None)
    });
    let _ = platform_security::parse_ibridge(text).map(|b| {
        platform_security::secure_boot_check(&b, false);
        platform_security::tpm_check(&b, true)
    });
    let _ = platform_security::parse_arm64_flag(text, text);
}

const FIXTURES: &[&str] = &[
    fixture!("sw_vers/ventura_rsr.txt"),
    fixture!("filevault/deferred.txt"),
    fixture!("firewall/socketfilterfw_enabled.txt"),
    fixture!("firewall/system_profiler_on.txt"),
    fixture!("sip/custom.txt"),
    fixture!("gatekeeper/enabled.txt"),
    fixture!("screen_lock/sysadminctl_300_seconds.txt"),
    fixture!("enrollment/dep_user_approved.txt"),
    fixture!("identity/apple_silicon.txt"),
    fixture!("xprotect/version_15.txt"),
    fixture!("software_update/list_pending.txt"),
    fixture!("software_update/last_full_successful_date.txt"),
    fixture!("platform_security/t2_full_security.txt"),
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn parsers_never_panic_on_arbitrary_text(text in "\\PC{0,400}") {
        parse_all(&text);
    }

    #[test]
    fn parsers_never_panic_on_tool_shaped_text(
        text in "(FileVault is |Firewall is |\\(State = |System Integrity Protection status: |assessments |screenLock delay is |\\* Label: |\tTitle: |, Version: |, Action: |MDM enrollment: |\"IOPlatformUUID\" = \"|Secure Boot: |Model Name: |[0-9]{1,12}|[ .:\n\t()-]){0,40}"
    ) {
        parse_all(&text);
    }

    #[test]
    fn parsers_never_panic_on_lines_mixed_into_fixtures(
        which in 0..FIXTURES.len(),
        at in 0usize..60,
        extra in proptest::collection::vec("\\PC{0,80}", 1..4),
    ) {
        let base = FIXTURES.get(which).copied().unwrap_or("");
        let mut lines: Vec<String> = base.lines().map(str::to_owned).collect();
        let at = at.min(lines.len());
        for (offset, line) in extra.into_iter().enumerate() {
            lines.insert(at + offset, line);
        }
        parse_all(&lines.join("\n"));
    }

    #[test]
    fn fixture_prefixes_never_panic(which in 0..FIXTURES.len(), cut in 0usize..2000) {
        let base = FIXTURES.get(which).copied().unwrap_or("");
        let cut = base.char_indices().map(|(i, _)| i).nth(cut).unwrap_or(base.len());
        parse_all(base.get(..cut).unwrap_or(base));
    }
}
