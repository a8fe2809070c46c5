//! Windows parsers and check mappings against reconstructed outputs (no
//! Windows machine was available: provenance in each fixture folder's
//! README.md), plus no-panic and round-trip properties.

// Fixture loaders below panic on a missing file by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use posture::parse::windows::registry::{self, RegExit};
use posture::parse::windows::{
    self, CommandLine, Seen, antivirus, bitlocker, bitlocker_cim, defender, device_identity,
    enrollment, fields, firewall, last_update, os_version, reboot_pending, screen_lock,
    secure_boot, security_center, security_updates, tpm,
};
use posture::{Check, CheckId, Status, Unknown, UnknownKind};
use proptest::prelude::*;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::macros::datetime;

macro_rules! fixture {
    ($path:literal) => {
        include_str!(concat!("fixtures/windows/", $path))
    };
}

/// A fixture stored in an OEM code page (CP850), decoded the way
/// `probe::run` decodes a console tool's pipe: lossy UTF-8.
macro_rules! oem_fixture {
    ($path:literal) => {
        String::from_utf8_lossy(include_bytes!(concat!("fixtures/windows/", $path))).into_owned()
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

fn unknown_kind(check: &Check) -> Option<UnknownKind> {
    check.unknown.as_ref().map(|u| u.kind)
}

/// A `Seen` with the given value and (trimmed) line.
fn seen<T>(value: T, line: &str) -> Seen<T> {
    Seen::new(value, line)
}

const NOW: OffsetDateTime = datetime!(2024-06-14 08:00:00 UTC);

// ---- shared helpers: reg query, Key : Value fields, access denied ----

#[test]
fn reg_query_reads_values_types_and_subkeys_of_a_real_shaped_key() {
    let key = registry::parse_reg_query(fixture!("os_version/win11_23h2_pro.txt"), "test").unwrap();
    assert_eq!(
        key.path,
        r"HKEY_LOCAL_MACHINE\SOFTWARE\Microsoft\Windows NT\CurrentVersion"
    );
    assert_eq!(key.values.len(), 31);
    assert_eq!(key.subkeys.len(), 7);
    assert_eq!(
        key.subkey("winlogon"),
        Some(r"HKEY_LOCAL_MACHINE\SOFTWARE\Microsoft\Windows NT\CurrentVersion\Winlogon")
    );
    let ubr = key.value("ubr").unwrap();
    assert_eq!(
        (ubr.kind.as_str(), ubr.data.as_str(), ubr.number()),
        ("REG_DWORD", "0xf28", Some(3880))
    );
    assert_eq!(ubr.line, "UBR    REG_DWORD    0xf28");
    let qword = key.value("InstallTime").unwrap();
    assert_eq!(qword.kind, "REG_QWORD");
    assert_eq!(qword.number(), Some(0x01da_0d4f_0c7e_2a40));
    assert_eq!(key.value("DigitalProductId").unwrap().kind, "REG_BINARY");
    // An empty REG_SZ keeps its (empty) data.
    assert_eq!(
        key.value("RegisteredOrganization").map(|v| v.data.as_str()),
        Some("")
    );
    assert_eq!(
        key.value("CurrentBuild")
            .and_then(registry::RegValue::decimal),
        Some(22631)
    );
    assert_eq!(
        key.value("CurrentBuild")
            .and_then(registry::RegValue::number),
        None,
        "a REG_SZ is not hex"
    );
    assert_eq!(
        key.value("BaseBuildRevisionNumber")
            .and_then(registry::RegValue::flag),
        Some(true)
    );
    assert_eq!(
        key.value("ProductName").and_then(registry::RegValue::flag),
        None
    );
}

#[test]
fn reg_query_without_a_key_line_is_an_error() {
    for text in [
        fixture!("os_version/reg_error.txt"),
        fixture!("reboot_pending/not_reg_output.txt"),
        "",
        "    ProductName    REG_SZ    Windows 10 Pro\r\n",
    ] {
        let err = registry::parse_reg_query(text, "`reg query X`").unwrap_err();
        assert_eq!(err.source_name, "`reg query X`");
        assert!(err.detail.contains("no HKEY_"), "{err}");
    }
}

#[test]
fn reg_exit_codes_tell_missing_from_refused() {
    assert_eq!(registry::classify_exit(Some(0), ""), RegExit::Found);
    assert_eq!(
        registry::classify_exit(Some(1), fixture!("secure_boot/value_missing.txt")),
        RegExit::Absent
    );
    assert_eq!(
        registry::classify_exit(Some(1), "ERREUR : Acc\u{fffd}s refus\u{fffd}.\r\n"),
        RegExit::Denied("ERREUR : Acc\u{fffd}s refus\u{fffd}.".into())
    );
    assert_eq!(
        registry::classify_exit(Some(2), "ERROR: Invalid syntax.\r\n"),
        RegExit::Failed("exit code 2: ERROR: Invalid syntax.".into())
    );
    assert_eq!(
        registry::classify_exit(None, ""),
        RegExit::Failed("killed before it finished".into())
    );
}

#[test]
fn access_denied_in_three_languages_and_as_hresult() {
    assert!(windows::mentions_access_denied("ERROR: Access is denied."));
    assert!(windows::mentions_access_denied(
        "ERROR: An attempt to access a required resource was denied."
    ));
    assert!(windows::mentions_access_denied("Acc\u{e8}s refus\u{e9}."));
    assert!(windows::mentions_access_denied(
        "Acc\u{fffd}s refus\u{fffd}."
    ));
    assert!(windows::mentions_access_denied(
        "FEHLER: Zugriff verweigert"
    ));
    assert!(windows::mentions_access_denied("HRESULT 0x80070005"));
    assert!(!windows::mentions_access_denied(fixture!(
        "bitlocker/protected_en.txt"
    )));
    assert!(!windows::mentions_access_denied(fixture!(
        "bitlocker/protected_fr.txt"
    )));
    assert!(!windows::mentions_access_denied(fixture!(
        "tpm/present_2_0.txt"
    )));
    assert_eq!(windows::first_line("\r\n\r\n  a b \r\nc"), "a b");
    assert_eq!(windows::first_line(" \r\n"), "");
}

#[test]
fn key_value_fields_and_booleans() {
    let all = fields::fields(fixture!("tpm/present_2_0.txt"));
    assert_eq!(
        fields::find(&all, "tpm present").map(|f| (f.key, f.value, f.line)),
        Some(("TPM Present", "True", "-TPM Present: True"))
    );
    // Split at the first colon only; tab-indented keys are found too.
    assert_eq!(
        fields::find(&all, "TPM Errata Date").map(|f| f.value),
        Some("Wednesday, December 18, 2019")
    );
    assert_eq!(
        fields::find(&all, "Lockout Interval").map(|f| f.value),
        Some("7200s")
    );
    assert_eq!(
        fields::find(&all, "Lockout Information").map(|f| f.value),
        Some("")
    );
    assert_eq!(fields::boolean(" YES "), Some(true));
    assert_eq!(fields::boolean("False"), Some(false));
    assert_eq!(fields::boolean("Vrai"), None);
    assert_eq!(fields::boolean(""), None);
}

#[test]
fn command_lines_are_the_documented_ones() {
    assert_eq!(
        os_version::command().display(),
        r#"reg.exe query "HKLM\SOFTWARE\Microsoft\Windows NT\CurrentVersion""#
    );
    assert_eq!(
        secure_boot::command().display(),
        r"reg.exe query HKLM\SYSTEM\CurrentControlSet\Control\SecureBoot\State /v UEFISecureBootEnabled"
    );
    assert_eq!(
        device_identity::guid_command().display(),
        r"reg.exe query HKLM\SOFTWARE\Microsoft\Cryptography /v MachineGuid"
    );
    assert_eq!(
        bitlocker::command("D:").display(),
        "manage-bde.exe -status D:"
    );
    assert_eq!(tpm::command().display(), "tpmtool.exe getdeviceinformation");
    assert_eq!(enrollment::command().display(), "dsregcmd.exe /status");
    assert_eq!(
        screen_lock::machine_command().display(),
        r"reg.exe query HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Policies\System /v InactivityTimeoutSecs"
    );
    for cmd in [
        defender::command(),
        firewall::command(),
        last_update::command(),
        security_center::command(),
        security_updates::command(),
        device_identity::serial_command(),
    ] {
        assert_eq!(cmd.program, "powershell.exe");
        assert_eq!(
            cmd.arg_refs().get(..3),
            Some(&["-NoProfile", "-NonInteractive", "-Command"][..])
        );
        assert_eq!(cmd.args.len(), 4, "the script is one argument");
        assert!(
            !cmd.args.get(3).unwrap().contains('"'),
            "scripts use single quotes only"
        );
    }
    assert_eq!(
        CommandLine::new("x.exe", &["", "a b"]).display(),
        r#"x.exe "" "a b""#
    );
}

// ---- os_version ----

#[test]
fn os_version_windows_11_is_named_from_its_build() {
    let os = os_version::parse_os_version(fixture!("os_version/win11_23h2_pro.txt")).unwrap();
    assert_eq!(
        os.product_name,
        seen(
            "Windows 10 Pro".to_owned(),
            "ProductName    REG_SZ    Windows 10 Pro"
        )
    );
    assert_eq!((os.major, os.minor), (10, 0));
    assert_eq!(os.build, seen(22631, "CurrentBuild    REG_SZ    22631"));
    assert_eq!(os.ubr, Some(seen(3880, "UBR    REG_DWORD    0xf28")));
    assert_eq!(
        os.display_version.as_ref().map(|d| d.value.as_str()),
        Some("23H2")
    );
    assert_eq!(
        os.edition.as_ref().map(|e| e.value.as_str()),
        Some("Professional")
    );
    assert_eq!(os.name(), "Windows 11 Pro");
    assert_eq!(os.version(), "10.0.22631.3880");
    assert_eq!(os.version_parts(), vec![10, 0, 22631, 3880]);
    assert_eq!(os.build_string(), "22631.3880");

    let check = os_version::os_version_check(&os);
    assert_eq!(check.id, CheckId::OsVersion);
    assert_eq!(check.status, Status::Pass);
    assert_eq!(check.summary, "Windows 11 Pro 23H2 (build 22631.3880)");
    assert_eq!(fact(&check, "platform_id"), json!("windows"));
    assert_eq!(fact(&check, "name"), json!("Windows 11 Pro"));
    assert_eq!(fact(&check, "version"), json!("10.0.22631.3880"));
    assert_eq!(fact(&check, "version_parts"), json!([10, 0, 22631, 3880]));
    assert_eq!(fact(&check, "build"), json!("22631.3880"));
    assert_eq!(fact(&check, "display_version"), json!("23H2"));
    assert_eq!(fact(&check, "edition"), json!("Professional"));
    assert!(!has_fact(&check, "kernel"));
    assert_eq!(
        check.evidence.first().map(String::as_str),
        Some(
            r#"ran `reg.exe query "HKLM\SOFTWARE\Microsoft\Windows NT\CurrentVersion"`: "ProductName    REG_SZ    Windows 10 Pro""#
        )
    );
    assert!(
        check
            .evidence
            .contains(&r#"build 22631 >= 22000: "Windows 10 Pro" is Windows 11 Pro"#.to_owned()),
        "{:?}",
        check.evidence
    );
    assert_eq!(check.unknown, None);
}

#[test]
fn os_version_windows_10_keeps_its_name() {
    let os =
        os_version::parse_os_version(fixture!("os_version/win10_22h2_enterprise.txt")).unwrap();
    assert_eq!(os.name(), "Windows 10 Enterprise");
    assert_eq!(os.version(), "10.0.19045.4608");
    let check = os_version::os_version_check(&os);
    assert_eq!(check.status, Status::Pass);
    assert_eq!(
        check.summary,
        "Windows 10 Enterprise 22H2 (build 19045.4608)"
    );
    assert_eq!(fact(&check, "display_version"), json!("22H2"));
    assert_eq!(fact(&check, "edition"), json!("Enterprise"));
    assert!(
        !check.evidence.iter().any(|line| line.contains(">= 22000")),
        "no correction on build 19045"
    );
}

#[test]
fn os_version_server_without_display_version_falls_back_to_release_id() {
    let os = os_version::parse_os_version(fixture!("os_version/server2019_no_display_version.txt"))
        .unwrap();
    assert_eq!(os.name(), "Windows Server 2019 Standard");
    assert_eq!(os.version_parts(), vec![10, 0, 17763, 6750]);
    assert_eq!(
        os.display_version,
        Some(seen("1809".to_owned(), "ReleaseId    REG_SZ    1809"))
    );
    let check = os_version::os_version_check(&os);
    assert_eq!(
        check.summary,
        "Windows Server 2019 Standard 1809 (build 17763.6750)"
    );
    assert_eq!(fact(&check, "edition"), json!("ServerStandard"));
}

#[test]
fn os_version_legacy_values_without_ubr() {
    let text = "\r\nHKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion\r\n    CurrentBuildNumber    REG_SZ    9600\r\n    CurrentVersion    REG_SZ    6.3\r\n    ProductName    REG_SZ    Windows 8.1 Pro\r\n";
    let os = os_version::parse_os_version(text).unwrap();
    assert_eq!(os.version_parts(), vec![6, 3, 9600]);
    assert_eq!(os.build_string(), "9600");
    let check = os_version::os_version_check(&os);
    assert_eq!(check.summary, "Windows 8.1 Pro (build 9600)");
    assert!(!has_fact(&check, "display_version"));
    assert!(!has_fact(&check, "edition"));
}

#[test]
fn os_version_odd_outputs_are_unparseable() {
    let missing = os_version::parse_os_version(fixture!("os_version/reg_error.txt")).unwrap_err();
    assert!(missing.detail.contains("no HKEY_"), "{missing}");
    let truncated = os_version::parse_os_version(fixture!("os_version/truncated.txt")).unwrap_err();
    assert_eq!(truncated.detail, "no ProductName value");
    let no_number = "HKEY_LOCAL_MACHINE\\X\r\n    ProductName    REG_SZ    Windows 10 Pro\r\n    CurrentBuild    REG_SZ    22631a\r\n    CurrentMajorVersionNumber    REG_DWORD    0xa\r\n";
    assert_eq!(
        os_version::parse_os_version(no_number).unwrap_err().detail,
        "no numeric CurrentBuild value"
    );
    let no_major = "HKEY_LOCAL_MACHINE\\X\r\n    ProductName    REG_SZ    Windows 10 Pro\r\n    CurrentBuild    REG_SZ    19045\r\n";
    assert!(os_version::parse_os_version(no_major).is_err());

    let check = os_version::os_version_unknown(truncated.into());
    assert_eq!(check.status, Status::Unknown);
    assert_eq!(unknown_kind(&check), Some(UnknownKind::Unparseable));
    assert!(check.remediation.as_deref().unwrap().contains("winver"));
}

#[test]
fn windows_11_name_correction_boundaries() {
    assert_eq!(
        os_version::corrected_name("Windows 10 Pro", 21999),
        "Windows 10 Pro"
    );
    assert_eq!(
        os_version::corrected_name("Windows 10 Pro", 22000),
        "Windows 11 Pro"
    );
    assert_eq!(
        os_version::corrected_name("Windows 10 Enterprise LTSC 2024", 26100),
        "Windows 11 Enterprise LTSC 2024"
    );
    assert_eq!(
        os_version::corrected_name("Windows Server 2022 Datacenter", 20348),
        "Windows Server 2022 Datacenter"
    );
}

// ---- security_updates ----

#[test]
fn security_updates_pending_fail_with_ages() {
    let found =
        security_updates::parse_security_updates(fixture!("security_updates/security_pending.txt"))
            .unwrap();
    assert_eq!(
        found.last_search.value,
        Some(datetime!(2024-06-12 06:10:11 UTC))
    );
    assert_eq!(found.count_line, "Pending 3");
    assert_eq!(found.updates.len(), 3);
    let first = found.updates.first().unwrap();
    assert_eq!(first.published, Some(datetime!(2024-06-11 00:00:00 UTC)));
    assert_eq!(first.severity.as_deref(), Some("Critical"));
    assert_eq!(
        first.categories,
        vec![
            "0fa1201d-4330-4fa8-8ae9-b877473b6441",
            "72e7624a-5b00-45d2-b92f-e561c0a6a160"
        ]
    );
    assert_eq!(
        first.title,
        "2024-06 Cumulative Update for Windows 11 Version 23H2 for x64-based Systems (KB5039212)"
    );
    let driver = found.updates.get(2).unwrap();
    assert_eq!(driver.severity, None);
    assert!(!driver.is_security(), "a driver is not a security update");
    assert_eq!(found.security().count(), 2);

    let check = security_updates::security_updates_check(&found, NOW);
    assert_eq!(check.id, CheckId::SecurityUpdates);
    assert_eq!(check.status, Status::Fail);
    assert_eq!(
        check.summary,
        "2 security update(s) pending (3 update(s) in total)"
    );
    assert_eq!(fact(&check, "pending"), json!(3));
    assert_eq!(fact(&check, "security_pending"), json!(2));
    assert_eq!(fact(&check, "oldest_security_pending_days"), json!(31));
    assert_eq!(fact(&check, "metadata_age_days"), json!(2));
    assert_eq!(check.evidence.len(), 4, "{:?}", check.evidence);
    assert!(check.remediation.is_some());
}

#[test]
fn security_updates_localized_titles_do_not_matter() {
    let found = security_updates::parse_security_updates(fixture!(
        "security_updates/security_pending_fr.txt"
    ))
    .unwrap();
    assert_eq!(found.updates.len(), 2);
    assert_eq!(
        found.updates.first().map(|u| u.title.as_str()),
        Some(
            "Mise \u{e0} jour cumulative 2024-06 pour Windows 11 Version 23H2 pour les syst\u{e8}mes x64 (KB5039212)"
        )
    );
    let check = security_updates::security_updates_check(&found, NOW);
    assert_eq!(check.status, Status::Fail);
    assert_eq!(fact(&check, "pending"), json!(2));
    assert_eq!(fact(&check, "security_pending"), json!(1));
    assert_eq!(fact(&check, "oldest_security_pending_days"), json!(3));
    assert_eq!(fact(&check, "metadata_age_days"), json!(3));
}

#[test]
fn security_updates_definition_update_only_passes_on_fresh_metadata() {
    let found =
        security_updates::parse_security_updates(fixture!("security_updates/none_pending.txt"))
            .unwrap();
    assert_eq!(found.updates.len(), 1);
    assert_eq!(found.security().count(), 0);
    let check = security_updates::security_updates_check(&found, NOW);
    assert_eq!(check.status, Status::Pass);
    assert_eq!(
        check.summary,
        "no security update pending (1 other update(s) pending)"
    );
    assert_eq!(fact(&check, "pending"), json!(1));
    assert_eq!(fact(&check, "security_pending"), json!(0));
    assert_eq!(fact(&check, "metadata_age_days"), json!(2));
    assert!(!has_fact(&check, "oldest_security_pending_days"));
    assert_eq!(check.remediation, None);

    // The freshness limit: 7 whole days passes, 8 does not.
    let searched = datetime!(2024-06-12 06:10:11 UTC);
    let at_limit = security_updates::security_updates_check(
        &found,
        searched + time::Duration::days(8) - time::Duration::seconds(1),
    );
    assert_eq!(at_limit.status, Status::Pass);
    assert_eq!(fact(&at_limit, "metadata_age_days"), json!(7));
    let over = security_updates::security_updates_check(&found, searched + time::Duration::days(8));
    assert_eq!(over.status, Status::Unknown);
    assert_eq!(unknown_kind(&over), Some(UnknownKind::SourceFailed));
}

#[test]
fn security_updates_stale_or_missing_metadata_is_unknown_not_pass() {
    let stale =
        security_updates::parse_security_updates(fixture!("security_updates/stale_metadata.txt"))
            .unwrap();
    assert!(stale.updates.is_empty());
    let check = security_updates::security_updates_check(&stale, NOW);
    assert_eq!(check.status, Status::Unknown);
    assert_eq!(unknown_kind(&check), Some(UnknownKind::SourceFailed));
    assert!(
        check
            .unknown
            .as_ref()
            .unwrap()
            .detail
            .contains("44 days old"),
        "{:?}",
        check.unknown
    );
    assert_eq!(fact(&check, "pending"), json!(0));
    assert_eq!(fact(&check, "metadata_age_days"), json!(44));

    let never =
        security_updates::parse_security_updates(fixture!("security_updates/never_searched.txt"))
            .unwrap();
    assert_eq!(never.last_search, seen(None, "LastSearchSuccess never"));
    let check = security_updates::security_updates_check(&never, NOW);
    assert_eq!(check.status, Status::Unknown);
    assert_eq!(unknown_kind(&check), Some(UnknownKind::SourceFailed));
    assert!(!has_fact(&check, "metadata_age_days"));

    // A pending security update fails whatever the metadata age.
    let text = "LastSearchSuccess never\r\nPending 1\r\nUpdate 2024-06-11T00:00:00.0000000Z |  | 0FA1201D-4330-4FA8-8AE9-B877473B6441 | KB1\r\n";
    let found = security_updates::parse_security_updates(text).unwrap();
    assert!(
        found.updates.first().unwrap().is_security(),
        "category ids compare ignoring case"
    );
    assert_eq!(
        security_updates::security_updates_check(&found, NOW).status,
        Status::Fail
    );
}

#[test]
fn security_updates_truncated_or_garbled_output_is_an_error() {
    let truncated =
        security_updates::parse_security_updates(fixture!("security_updates/truncated.txt"))
            .unwrap_err();
    assert!(truncated.detail.contains("without 4 fields"), "{truncated}");
    let short = "LastSearchSuccess 2024-06-12T06:10:11.0000000Z\r\nPending 2\r\nUpdate 2024-06-11T00:00:00.0000000Z | Critical | 0fa1201d-4330-4fa8-8ae9-b877473b6441 | KB1\r\n";
    assert_eq!(
        security_updates::parse_security_updates(short)
            .unwrap_err()
            .detail,
        "announced 2 pending updates but listed 1"
    );
    for (text, detail) in [
        ("Pending 0\r\n", "no LastSearchSuccess line"),
        (
            "LastSearchSuccess 2024-06-12T06:10:11.0000000Z\r\n",
            "no Pending line",
        ),
        (
            "LastSearchSuccess 12.06.2024 06:10\r\nPending 0\r\n",
            "bad LastSearchSuccess time",
        ),
        (
            "LastSearchSuccess never\r\nPending deux\r\n",
            "bad Pending count",
        ),
    ] {
        let err = security_updates::parse_security_updates(text).unwrap_err();
        assert!(err.detail.contains(detail), "{err}");
    }
    let check = security_updates::security_updates_unknown(Unknown::new(
        UnknownKind::TimedOut,
        "WUA search took too long",
    ));
    assert_eq!(unknown_kind(&check), Some(UnknownKind::TimedOut));
}

// ---- last_update ----

#[test]
fn last_update_utc_and_offset_times_pass() {
    let recent = last_update::parse_last_update(fixture!("last_update/recent.txt")).unwrap();
    let last_update::LastInstall::At(at) = &recent else {
        panic!("expected a time: {recent:?}");
    };
    assert_eq!(at.value, datetime!(2024-06-12 06:10:11 UTC));
    assert_eq!(at.line, "2024-06-12T06:10:11.0000000Z");
    let check = last_update::last_update_check(&recent, NOW);
    assert_eq!(check.id, CheckId::LastUpdate);
    assert_eq!(check.status, Status::Pass);
    assert_eq!(
        check.summary,
        "updates last installed 2 day(s) ago (2024-06-12T06:10:11Z)"
    );
    assert_eq!(
        fact(&check, "last_installed_at"),
        json!("2024-06-12T06:10:11Z")
    );
    assert_eq!(fact(&check, "days_since"), json!(2));

    let offset = last_update::parse_last_update(fixture!("last_update/with_offset.txt")).unwrap();
    let last_update::LastInstall::At(local) = &offset else {
        panic!("expected a time: {offset:?}");
    };
    assert_eq!(local.value, at.value, "the same instant");
    let check = last_update::last_update_check(&offset, NOW);
    assert_eq!(fact(&check, "days_since"), json!(2));
    assert_eq!(
        fact(&check, "last_installed_at"),
        json!("2024-06-12T08:10:11+02:00")
    );
}

#[test]
fn last_update_never_is_unknown() {
    let never = last_update::parse_last_update(fixture!("last_update/never.txt")).unwrap();
    assert_eq!(never, last_update::LastInstall::Never(seen((), "never")));
    let check = last_update::last_update_check(&never, NOW);
    assert_eq!(check.status, Status::Unknown);
    assert_eq!(unknown_kind(&check), Some(UnknownKind::SourceFailed));
    assert!(!has_fact(&check, "days_since"));
    assert_eq!(
        check.evidence,
        vec![last_update::command().evidence("never")]
    );
}

#[test]
fn last_update_localized_or_offsetless_dates_are_refused() {
    for text in [
        fixture!("last_update/localized_date.txt"),
        fixture!("last_update/no_offset.txt"),
    ] {
        let err = last_update::parse_last_update(text).unwrap_err();
        assert!(
            err.detail.contains("not an ISO 8601 time with offset"),
            "{err}"
        );
    }
    assert_eq!(
        last_update::parse_last_update(" \r\n").unwrap_err().detail,
        "empty output"
    );
    assert_eq!(
        last_update::days_between(NOW, datetime!(2024-06-10 08:00:00 UTC)),
        -4,
        "a skewed clock is reported, not hidden"
    );
    let check = last_update::last_update_unknown(
        last_update::parse_last_update("garbage")
            .unwrap_err()
            .into(),
    );
    assert_eq!(unknown_kind(&check), Some(UnknownKind::Unparseable));
}

// ---- reboot_pending ----

fn marker(
    text: &str,
    which: reboot_pending::RebootMarker,
) -> Result<reboot_pending::MarkerState, Unknown> {
    reboot_pending::parse_reboot_marker(text, which).map_err(Unknown::from)
}

#[test]
fn reboot_markers_are_subkeys_of_their_parent() {
    use reboot_pending::RebootMarker::{ComponentServicing, WindowsUpdate};
    let wu = marker(
        fixture!("reboot_pending/wu_reboot_required.txt"),
        WindowsUpdate,
    )
    .unwrap();
    assert_eq!(
        wu.pending,
        seen(
            true,
            r"HKEY_LOCAL_MACHINE\SOFTWARE\Microsoft\Windows\CurrentVersion\WindowsUpdate\Auto Update\RebootRequired"
        )
    );
    let wu_clean = marker(fixture!("reboot_pending/wu_clean.txt"), WindowsUpdate).unwrap();
    assert_eq!(
        wu_clean.pending,
        seen(
            false,
            r"HKEY_LOCAL_MACHINE\SOFTWARE\Microsoft\Windows\CurrentVersion\WindowsUpdate\Auto Update"
        )
    );
    let cbs = marker(
        fixture!("reboot_pending/cbs_reboot_pending.txt"),
        ComponentServicing,
    )
    .unwrap();
    assert!(cbs.pending.value);
    // `PackagesPending` / `SessionsPending` are not `RebootPending`.
    let cbs_clean = marker(fixture!("reboot_pending/cbs_clean.txt"), ComponentServicing).unwrap();
    assert!(!cbs_clean.pending.value);
    // Each marker only looks for its own leaf.
    assert!(
        !marker(
            fixture!("reboot_pending/cbs_reboot_pending.txt"),
            WindowsUpdate
        )
        .unwrap()
        .pending
        .value
    );
    assert_eq!(
        marker(fixture!("reboot_pending/not_reg_output.txt"), WindowsUpdate)
            .unwrap_err()
            .kind,
        UnknownKind::Unparseable
    );
    assert_eq!(
        reboot_pending::RebootMarker::ALL.map(reboot_pending::RebootMarker::leaf),
        ["RebootRequired", "RebootPending"]
    );
}

#[test]
fn reboot_pending_check_combines_both_markers() {
    use reboot_pending::RebootMarker::{ComponentServicing, WindowsUpdate};
    let wu_clean = marker(fixture!("reboot_pending/wu_clean.txt"), WindowsUpdate);
    let wu_pending = marker(
        fixture!("reboot_pending/wu_reboot_required.txt"),
        WindowsUpdate,
    );
    let cbs_clean = marker(fixture!("reboot_pending/cbs_clean.txt"), ComponentServicing);
    let cbs_pending = marker(
        fixture!("reboot_pending/cbs_reboot_pending.txt"),
        ComponentServicing,
    );
    let denied: Result<reboot_pending::MarkerState, Unknown> = Err(Unknown::new(
        UnknownKind::PermissionDenied,
        "ERROR: Access is denied.",
    ));

    let pass = reboot_pending::reboot_pending_check(&[wu_clean.clone(), cbs_clean.clone()]);
    assert_eq!(pass.id, CheckId::RebootPending);
    assert_eq!(pass.status, Status::Pass);
    assert_eq!(fact(&pass, "reboot_pending"), json!(false));
    assert_eq!(
        pass.evidence.first().map(String::as_str),
        Some(
            r#"ran `reg.exe query "HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\WindowsUpdate\Auto Update"`: no RebootRequired subkey under "HKEY_LOCAL_MACHINE\SOFTWARE\Microsoft\Windows\CurrentVersion\WindowsUpdate\Auto Update""#
        )
    );
    assert_eq!(pass.evidence.len(), 2);

    let fail = reboot_pending::reboot_pending_check(&[wu_pending.clone(), cbs_clean.clone()]);
    assert_eq!(fail.status, Status::Fail);
    assert_eq!(fact(&fail, "reboot_pending"), json!(true));
    assert_eq!(fail.evidence.len(), 1);
    assert!(
        fail.evidence
            .first()
            .unwrap()
            .ends_with(r#"Auto Update\RebootRequired""#)
    );

    let both = reboot_pending::reboot_pending_check(&[wu_pending, cbs_pending.clone()]);
    assert_eq!((both.status, both.evidence.len()), (Status::Fail, 2));

    // One marker present decides even when the other could not be read.
    let partial = reboot_pending::reboot_pending_check(&[denied.clone(), cbs_pending]);
    assert_eq!(partial.status, Status::Fail);

    // Clean + unreadable is not a pass.
    let unknown = reboot_pending::reboot_pending_check(&[denied, cbs_clean]);
    assert_eq!(unknown.status, Status::Unknown);
    assert_eq!(unknown_kind(&unknown), Some(UnknownKind::PermissionDenied));
    assert!(!has_fact(&unknown, "reboot_pending"));

    let nothing = reboot_pending::reboot_pending_check(&[]);
    assert_eq!(unknown_kind(&nothing), Some(UnknownKind::SourceFailed));
}

// ---- disk_encryption (manage-bde) ----

#[test]
fn bitlocker_protected_english_passes() {
    let status = bitlocker::parse_bitlocker(fixture!("bitlocker/protected_en.txt")).unwrap();
    assert_eq!(status.volume.as_deref(), Some("C:"));
    assert_eq!(
        status.conversion.as_ref().map(|c| c.value.as_str()),
        Some("Used Space Only Encrypted")
    );
    assert_eq!(
        status.percent_encrypted,
        seen(100.0, "Percentage Encrypted: 100.0%")
    );
    assert_eq!(
        status.method,
        Some(seen(
            "XTS-AES 256".to_owned(),
            "Encryption Method:    XTS-AES 256"
        ))
    );
    assert_eq!(
        status.protection_on,
        seen(true, "Protection Status:    Protection On")
    );
    assert!(status.encrypted());

    let check = bitlocker::disk_encryption_check(&status, "C:");
    assert_eq!(check.id, CheckId::DiskEncryption);
    assert_eq!(check.status, Status::Pass);
    assert_eq!(
        check.summary,
        "BitLocker on C: (XTS-AES 256), protection on"
    );
    assert_eq!(fact(&check, "encrypted"), json!(true));
    assert_eq!(fact(&check, "protection_on"), json!(true));
    assert_eq!(fact(&check, "volume"), json!("C:"));
    assert_eq!(fact(&check, "method"), json!("XTS-AES 256"));
    assert_eq!(
        check.evidence,
        vec![
            r#"ran `manage-bde.exe -status C:`: "Percentage Encrypted: 100.0%""#,
            r#"ran `manage-bde.exe -status C:`: "Protection Status:    Protection On""#,
            r#"ran `manage-bde.exe -status C:`: "Encryption Method:    XTS-AES 256""#,
            r#"ran `manage-bde.exe -status C:`: "Conversion Status:    Used Space Only Encrypted""#,
        ]
    );
    assert_eq!(check.remediation, None);
}

#[test]
fn bitlocker_suspended_fails_even_though_fully_encrypted() {
    let status = bitlocker::parse_bitlocker(fixture!("bitlocker/suspended_en.txt")).unwrap();
    assert!(status.encrypted());
    assert_eq!(
        status.protection_on,
        seen(
            false,
            "Protection Status:    Protection Off (1 reboots left)"
        )
    );
    let check = bitlocker::disk_encryption_check(&status, "C:");
    assert_eq!(check.status, Status::Fail);
    assert_eq!(
        check.summary,
        "BitLocker on C: is suspended (encrypted, protection off)"
    );
    assert_eq!(fact(&check, "encrypted"), json!(true));
    assert_eq!(fact(&check, "protection_on"), json!(false));
    assert!(
        check
            .remediation
            .as_deref()
            .unwrap()
            .contains("Resume protection")
    );
}

#[test]
fn bitlocker_partial_or_no_encryption_fails() {
    let encrypting = bitlocker::parse_bitlocker(fixture!("bitlocker/encrypting_en.txt")).unwrap();
    assert_eq!(encrypting.percent_encrypted.value, 67.3);
    assert!(!encrypting.encrypted());
    let check = bitlocker::disk_encryption_check(&encrypting, "C:");
    assert_eq!(check.status, Status::Fail);
    assert_eq!(check.summary, "C: is not fully encrypted (67.3% encrypted)");
    assert_eq!(fact(&check, "encrypted"), json!(false));
    assert_eq!(fact(&check, "method"), json!("XTS-AES 128"));

    let decrypted = bitlocker::parse_bitlocker(fixture!("bitlocker/decrypted_en.txt")).unwrap();
    assert_eq!(decrypted.percent_encrypted.value, 0.0);
    assert!(!decrypted.protection_on.value);
    assert_eq!(
        decrypted.conversion.as_ref().map(|c| c.value.as_str()),
        Some("Fully Decrypted")
    );
    let check = bitlocker::disk_encryption_check(&decrypted, "C:");
    assert_eq!(check.status, Status::Fail);
    assert_eq!(check.summary, "C: is not fully encrypted (0% encrypted)");
    assert_eq!(fact(&check, "method"), json!("None"));
    assert!(
        check
            .remediation
            .as_deref()
            .unwrap()
            .contains("Turn on BitLocker")
    );
}

#[test]
fn bitlocker_french_utf8_passes() {
    let status = bitlocker::parse_bitlocker(fixture!("bitlocker/protected_fr.txt")).unwrap();
    assert_eq!(status.volume.as_deref(), Some("C:"));
    assert_eq!(
        status.percent_encrypted,
        seen(100.0, "Pourcentage chiffr\u{e9} :        100,0%")
    );
    assert_eq!(
        status.protection_on,
        seen(
            true,
            "\u{c9}tat de la protection :      Protection activ\u{e9}e"
        )
    );
    assert_eq!(
        status.method.as_ref().map(|m| m.value.as_str()),
        Some("XTS-AES 128")
    );
    assert_eq!(
        status.conversion.as_ref().map(|c| c.value.as_str()),
        Some("Espace utilis\u{e9} uniquement chiffr\u{e9}")
    );
    let check = bitlocker::disk_encryption_check(&status, "C:");
    assert_eq!(check.status, Status::Pass);
}

#[test]
fn bitlocker_french_oem_code_page_decrypted_fails() {
    let text = oem_fixture!("bitlocker/decrypted_fr_cp850.txt");
    assert!(text.contains('\u{fffd}'), "accents arrive mangled");
    let status = bitlocker::parse_bitlocker(&text).unwrap();
    assert_eq!(status.volume.as_deref(), Some("C:"));
    assert_eq!(status.percent_encrypted.value, 0.0);
    assert_eq!(
        status.protection_on,
        seen(
            false,
            "\u{fffd}tat de la protection :      Protection d\u{fffd}sactiv\u{fffd}e"
        )
    );
    assert_eq!(
        status.method.as_ref().map(|m| m.value.as_str()),
        Some("Aucun")
    );
    let check = bitlocker::disk_encryption_check(&status, "C:");
    assert_eq!(check.status, Status::Fail);
    assert_eq!(fact(&check, "encrypted"), json!(false));
    assert_eq!(fact(&check, "protection_on"), json!(false));
}

#[test]
fn bitlocker_german_oem_code_page_with_spaced_percent() {
    let text = oem_fixture!("bitlocker/protected_de_cp850.txt");
    let status = bitlocker::parse_bitlocker(&text).unwrap();
    assert_eq!(status.volume.as_deref(), Some("C:"), "quoted \"C:\"");
    assert_eq!(
        status.percent_encrypted,
        seen(100.0, "Verschl\u{fffd}sselt (Prozent):      100,0 %")
    );
    assert_eq!(
        status.protection_on,
        seen(
            true,
            "Schutzstatus:                 Der Schutz ist aktiviert."
        )
    );
    assert_eq!(
        status.method.as_ref().map(|m| m.value.as_str()),
        Some("XTS-AES 128")
    );
    assert_eq!(
        status.conversion.as_ref().map(|c| c.value.as_str()),
        Some("Nur verwendeter Speicherplatz ist verschl\u{fffd}sselt")
    );
    assert_eq!(
        bitlocker::disk_encryption_check(&status, "C:").status,
        Status::Pass
    );

    // The same output with the German "off" wording is suspended BitLocker.
    let suspended = text.replace("Der Schutz ist aktiviert.", "Der Schutz ist deaktiviert.");
    let status = bitlocker::parse_bitlocker(&suspended).unwrap();
    assert!(status.encrypted());
    assert!(!status.protection_on.value);
    assert_eq!(
        bitlocker::disk_encryption_check(&status, "C:").status,
        Status::Fail
    );
}

#[test]
fn bitlocker_truncated_or_unknown_wording_is_unparseable() {
    let truncated = bitlocker::parse_bitlocker(fixture!("bitlocker/truncated.txt")).unwrap_err();
    assert!(
        truncated.detail.contains("no percentage line"),
        "{truncated}"
    );
    let check = bitlocker::disk_encryption_unknown("C:", truncated.into());
    assert_eq!(check.status, Status::Unknown);
    assert_eq!(unknown_kind(&check), Some(UnknownKind::Unparseable));
    assert!(
        check
            .remediation
            .as_deref()
            .unwrap()
            .contains("manage-bde -status C:")
    );

    let unknown_word = fixture!("bitlocker/protected_en.txt").replace(
        "Protection Status:    Protection On",
        "Protection Status:    Protection Unknown",
    );
    let err = bitlocker::parse_bitlocker(&unknown_word).unwrap_err();
    assert!(
        err.detail.contains("protection status not recognized"),
        "{err}"
    );

    let no_protection_line = fixture!("bitlocker/protected_en.txt")
        .replace("Protection Status:    Protection On\r\n", "");
    assert_eq!(
        bitlocker::parse_bitlocker(&no_protection_line)
            .unwrap_err()
            .detail,
        "no protection status line"
    );
    // A percentage out of range is not a percentage.
    let over = fixture!("bitlocker/protected_en.txt").replace("100.0%", "100.1%");
    assert!(bitlocker::parse_bitlocker(&over).is_err());
}

#[test]
fn bitlocker_refused_is_permission_denied_never_unencrypted() {
    let text = fixture!("bitlocker/access_denied_en.txt");
    let e_accessdenied = 0x8007_0005_u32 as i32;
    let message = bitlocker::access_denied(Some(e_accessdenied), text).unwrap();
    assert_eq!(
        message,
        "ERROR: An attempt to access a required resource was denied."
    );
    // Recognized from the message alone, and from the code alone.
    assert_eq!(
        bitlocker::access_denied(Some(1), text).as_deref(),
        Some("ERROR: An attempt to access a required resource was denied.")
    );
    assert_eq!(
        bitlocker::access_denied(Some(e_accessdenied), "").as_deref(),
        Some("")
    );
    assert_eq!(
        bitlocker::access_denied(Some(0), fixture!("bitlocker/protected_en.txt")),
        None
    );
    assert_eq!(
        bitlocker::access_denied(Some(0), &oem_fixture!("bitlocker/decrypted_fr_cp850.txt")),
        None
    );
    assert!(bitlocker::parse_bitlocker(text).is_err());

    let check = bitlocker::disk_encryption_denied("C:", &message);
    assert_eq!(check.status, Status::Unknown);
    assert_eq!(unknown_kind(&check), Some(UnknownKind::PermissionDenied));
    assert_eq!(
        check.evidence,
        vec![
            r#"ran `manage-bde.exe -status C:`: "ERROR: An attempt to access a required resource was denied.""#
        ]
    );
    assert!(!has_fact(&check, "encrypted"), "never a guessed value");
}

#[test]
fn bitlocker_volume_and_system_drive() {
    assert_eq!(bitlocker::system_drive(Some("D:")), "D:");
    assert_eq!(bitlocker::system_drive(Some(" e: ")), "E:");
    assert_eq!(bitlocker::system_drive(Some("%SystemDrive%")), "C:");
    assert_eq!(bitlocker::system_drive(Some("")), "C:");
    assert_eq!(bitlocker::system_drive(None), "C:");
    // Without a `Volume X:` line the checked drive names the volume.
    let no_volume =
        "    Percentage Encrypted: 100.0%\r\n    Protection Status:    Protection On\r\n";
    let status = bitlocker::parse_bitlocker(no_volume).unwrap();
    assert_eq!(status.volume, None);
    assert_eq!(status.method, None);
    let check = bitlocker::disk_encryption_check(&status, "D:");
    assert_eq!(
        check.summary,
        "BitLocker on D: (method not shown), protection on"
    );
    assert_eq!(fact(&check, "volume"), json!("D:"));
    assert!(!has_fact(&check, "method"));
}

// ---- firewall ----

fn profiles_fact(check: &Check) -> Value {
    fact(check, "profiles")
}

#[test]
fn firewall_all_profiles_on_pass() {
    let profiles = firewall::parse_firewall(fixture!("firewall/all_on.txt")).unwrap();
    assert_eq!(
        profiles,
        vec![
            firewall::FirewallProfile {
                name: "Domain".into(),
                enabled: true,
                inbound_allowed: false,
                line: "Domain     True                Block".into(),
            },
            firewall::FirewallProfile {
                name: "Private".into(),
                enabled: true,
                inbound_allowed: false,
                line: "Private    True                Block".into(),
            },
            firewall::FirewallProfile {
                name: "Public".into(),
                enabled: true,
                inbound_allowed: false,
                line: "Public     True                Block".into(),
            },
        ]
    );
    let check = firewall::firewall_check(&profiles);
    assert_eq!(check.id, CheckId::Firewall);
    assert_eq!(check.status, Status::Pass);
    assert_eq!(
        check.summary,
        "Windows Firewall on for all profiles (Domain, Private, Public)"
    );
    assert_eq!(fact(&check, "enabled"), json!(true));
    assert_eq!(
        fact(&check, "source"),
        json!("Get-NetFirewallProfile -PolicyStore ActiveStore")
    );
    assert_eq!(
        profiles_fact(&check),
        json!({"Domain": true, "Private": true, "Public": true})
    );
    assert_eq!(check.evidence.len(), 3);
    assert_eq!(check.remediation, None);
}

#[test]
fn firewall_reference_two_column_table_passes() {
    let profiles = firewall::parse_firewall(fixture!("firewall/two_columns.txt")).unwrap();
    assert_eq!(profiles.len(), 3);
    assert!(profiles.iter().all(firewall::FirewallProfile::filtering));
    assert_eq!(firewall::firewall_check(&profiles).status, Status::Pass);
}

#[test]
fn firewall_one_profile_off_fails() {
    let profiles = firewall::parse_firewall(fixture!("firewall/public_off.txt")).unwrap();
    let public = profiles.iter().find(|p| p.name == "Public").unwrap();
    assert!(!public.enabled);
    let check = firewall::firewall_check(&profiles);
    assert_eq!(check.status, Status::Fail);
    assert_eq!(
        check.summary,
        "Windows Firewall off or accepting all inbound traffic for: Public"
    );
    assert_eq!(fact(&check, "enabled"), json!(false));
    assert_eq!(
        profiles_fact(&check),
        json!({"Domain": true, "Private": true, "Public": false})
    );
    assert!(check.remediation.is_some());
}

#[test]
fn firewall_allow_inbound_is_not_filtering() {
    let profiles =
        firewall::parse_firewall(fixture!("firewall/private_allows_inbound.txt")).unwrap();
    let flags: Vec<(bool, bool)> = profiles
        .iter()
        .map(|p| (p.enabled, p.inbound_allowed))
        .collect();
    assert_eq!(flags, [(true, false), (true, true), (true, false)]);
    let check = firewall::firewall_check(&profiles);
    assert_eq!(check.status, Status::Fail);
    assert_eq!(
        check.summary,
        "Windows Firewall off or accepting all inbound traffic for: Private"
    );
    assert_eq!(
        profiles_fact(&check),
        json!({"Domain": true, "Private": false, "Public": true})
    );
}

#[test]
fn firewall_odd_tables_are_errors() {
    let truncated = firewall::parse_firewall(fixture!("firewall/truncated.txt")).unwrap_err();
    assert!(
        truncated.detail.contains("row does not match the header"),
        "{truncated}"
    );
    let not_configured = "Name    Enabled\r\n----    -------\r\nDomain  NotConfigured\r\n";
    assert!(
        firewall::parse_firewall(not_configured)
            .unwrap()
            .first()
            .unwrap()
            .enabled,
        "NotConfigured = the Windows default, on"
    );
    for (text, detail) in [
        ("", "no \"Name Enabled\" header"),
        (
            "Get-NetFirewallProfile : Access denied\r\n",
            "no \"Name Enabled\" header",
        ),
        (
            "Name    Enabled\r\nDomain     True\r\n",
            "no dash line under the header",
        ),
        (
            "Name    Enabled\r\n----    -------\r\n\r\n",
            "no profile rows",
        ),
        (
            "Name    Enabled\r\n----    -------\r\nDomain  Vrai\r\n",
            "Enabled is not True/False",
        ),
        (
            "Name Enabled DefaultInboundAction\r\n---- ------- --------------------\r\nDomain True Accept\r\n",
            "DefaultInboundAction is not Block/Allow",
        ),
        (
            "Name Enabled LogAllowed\r\n---- ------- ----------\r\nDomain True False\r\n",
            "unexpected columns",
        ),
    ] {
        let err = firewall::parse_firewall(text).unwrap_err();
        assert!(err.detail.contains(detail), "{text:?}: {err}");
    }
    let check = firewall::firewall_unknown(truncated.into());
    assert_eq!(check.status, Status::Unknown);
    assert_eq!(unknown_kind(&check), Some(UnknownKind::Unparseable));
}

// ---- screen_lock ----

fn desktop(text: &str) -> screen_lock::ScreenSaver {
    screen_lock::parse_desktop(text).unwrap()
}

#[test]
fn screen_lock_user_settings_are_parsed() {
    let user = desktop(fixture!("screen_lock/user_secure_600.txt"));
    assert_eq!(
        user.active,
        Some(seen(true, "ScreenSaveActive    REG_SZ    1"))
    );
    assert_eq!(
        user.secure,
        Some(seen(true, "ScreenSaverIsSecure    REG_SZ    1"))
    );
    assert_eq!(
        user.timeout_seconds,
        Some(seen(600, "ScreenSaveTimeOut    REG_SZ    600"))
    );
    assert_eq!(
        user.executable.as_ref().map(|e| e.value.as_str()),
        Some(r"C:\WINDOWS\system32\scrnsave.scr")
    );

    let none = desktop(fixture!("screen_lock/user_no_saver.txt"));
    assert_eq!(none.active.as_ref().map(|s| s.value), Some(true));
    assert_eq!(none.secure.as_ref().map(|s| s.value), Some(false));
    assert_eq!(none.timeout_seconds.as_ref().map(|s| s.value), Some(900));
    assert_eq!(none.executable, None);

    let policy = desktop(fixture!("screen_lock/policy_secure_300.txt"));
    assert_eq!(policy.timeout_seconds.as_ref().map(|s| s.value), Some(300));
    assert_eq!(
        policy.executable.as_ref().map(|e| e.value.as_str()),
        Some("scrnsave.scr")
    );
    let off = desktop(fixture!("screen_lock/policy_saver_off.txt"));
    assert_eq!(off.active.as_ref().map(|s| s.value), Some(false));
    assert_eq!(
        (off.secure, off.timeout_seconds, off.executable),
        (None, None, None)
    );
}

#[test]
fn screen_lock_secure_saver_passes() {
    let user = desktop(fixture!("screen_lock/user_secure_600.txt"));
    let check = screen_lock::screen_lock_check(&user, None, None);
    assert_eq!(check.id, CheckId::ScreenLock);
    assert_eq!(check.status, Status::Pass);
    assert_eq!(
        check.summary,
        "screen locks after 600 s idle (password-protected screen saver)"
    );
    assert_eq!(fact(&check, "enabled"), json!(true));
    assert_eq!(fact(&check, "timeout_seconds"), json!(600));
    assert_eq!(
        check.evidence,
        vec![
            r#"ran `reg.exe query "HKCU\Control Panel\Desktop"`: "ScreenSaveActive    REG_SZ    1""#,
            r#"ran `reg.exe query "HKCU\Control Panel\Desktop"`: "ScreenSaverIsSecure    REG_SZ    1""#,
            r#"ran `reg.exe query "HKCU\Control Panel\Desktop"`: "ScreenSaveTimeOut    REG_SZ    600""#,
            r#"ran `reg.exe query "HKCU\Control Panel\Desktop"`: "SCRNSAVE.EXE    REG_SZ    C:\WINDOWS\system32\scrnsave.scr""#,
            r#"ran `reg.exe query "HKCU\Software\Policies\Microsoft\Windows\Control Panel\Desktop"`: key absent (no Group Policy)"#,
            r"ran `reg.exe query HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Policies\System /v InactivityTimeoutSecs`: value absent (no inactivity limit)",
        ]
    );
}

#[test]
fn screen_lock_without_saver_or_password_fails() {
    let user = desktop(fixture!("screen_lock/user_no_saver.txt"));
    let check = screen_lock::screen_lock_check(&user, None, None);
    assert_eq!(check.status, Status::Fail);
    assert_eq!(
        check.summary,
        "no automatic screen lock: no screen saver is selected, \"On resume, display logon screen\" is off and no machine inactivity limit"
    );
    assert_eq!(fact(&check, "enabled"), json!(false));
    assert!(!has_fact(&check, "timeout_seconds"));
    assert!(check.remediation.is_some());
}

#[test]
fn screen_lock_policy_wins_value_by_value() {
    let user = desktop(fixture!("screen_lock/user_secure_600.txt"));
    let policy = desktop(fixture!("screen_lock/policy_secure_300.txt"));
    let check = screen_lock::screen_lock_check(&user, Some(&policy), None);
    assert_eq!(check.status, Status::Pass);
    assert_eq!(fact(&check, "timeout_seconds"), json!(300));
    assert!(check.evidence.contains(
        &r#"ran `reg.exe query "HKCU\Software\Policies\Microsoft\Windows\Control Panel\Desktop"`: "ScreenSaveTimeOut    REG_SZ    300""#.to_owned()
    ));
    assert!(
        !check
            .evidence
            .iter()
            .any(|line| line.contains("key absent")),
        "the policy key was read"
    );

    // A policy that turns the saver off overrides the user's secure saver.
    let off = desktop(fixture!("screen_lock/policy_saver_off.txt"));
    let check = screen_lock::screen_lock_check(&user, Some(&off), None);
    assert_eq!(check.status, Status::Fail);
    assert_eq!(
        check.summary,
        "no automatic screen lock: the screen saver is off and no machine inactivity limit"
    );
}

#[test]
fn screen_lock_machine_inactivity_limit() {
    let limit = screen_lock::parse_inactivity_limit(fixture!("screen_lock/inactivity_900.txt"))
        .unwrap()
        .unwrap();
    assert_eq!(
        limit,
        seen(900, "InactivityTimeoutSecs    REG_DWORD    0x384")
    );

    let no_saver = desktop(fixture!("screen_lock/user_no_saver.txt"));
    let check = screen_lock::screen_lock_check(&no_saver, None, Some(&limit));
    assert_eq!(check.status, Status::Pass);
    assert_eq!(
        check.summary,
        "screen locks after 900 s idle (machine inactivity limit)"
    );
    assert_eq!(fact(&check, "timeout_seconds"), json!(900));

    // The shorter of the two locks first.
    let secure = desktop(fixture!("screen_lock/user_secure_600.txt"));
    let check = screen_lock::screen_lock_check(&secure, None, Some(&limit));
    assert_eq!(fact(&check, "timeout_seconds"), json!(600));
    let short = seen(300, "InactivityTimeoutSecs    REG_DWORD    0x12c");
    let check = screen_lock::screen_lock_check(&secure, None, Some(&short));
    assert_eq!(
        check.summary,
        "screen locks after 300 s idle (machine inactivity limit)"
    );
    // Policy turned the saver off, the machine limit still locks.
    let off = desktop(fixture!("screen_lock/policy_saver_off.txt"));
    assert_eq!(
        screen_lock::screen_lock_check(&secure, Some(&off), Some(&limit)).status,
        Status::Pass
    );
    // A zero limit is no limit.
    let zero = seen(0, "InactivityTimeoutSecs    REG_DWORD    0x0");
    assert_eq!(
        screen_lock::screen_lock_check(&no_saver, None, Some(&zero)).status,
        Status::Fail
    );
    // The key without the value: no limit.
    assert_eq!(
        screen_lock::parse_inactivity_limit(
            "\r\nHKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Policies\\System\r\n"
        )
        .unwrap(),
        None
    );
}

#[test]
fn screen_lock_odd_values_are_errors() {
    let err = screen_lock::parse_desktop(fixture!("screen_lock/odd_timeout.txt")).unwrap_err();
    assert!(
        err.detail.contains("ScreenSaveTimeOut is not a number"),
        "{err}"
    );
    let err = screen_lock::parse_inactivity_limit(fixture!("screen_lock/inactivity_not_dword.txt"))
        .unwrap_err();
    assert!(err.detail.contains("not a DWORD"), "{err}");
    assert!(screen_lock::parse_desktop(fixture!("os_version/reg_error.txt")).is_err());

    let check = screen_lock::screen_lock_unknown(
        screen_lock::parse_desktop(fixture!("screen_lock/odd_timeout.txt"))
            .unwrap_err()
            .into(),
    );
    assert_eq!(check.status, Status::Unknown);
    assert_eq!(unknown_kind(&check), Some(UnknownKind::Unparseable));
}

#[test]
fn screen_lock_as_a_service_is_not_applicable() {
    assert!(screen_lock::is_machine_account("DESKTOP-7Q2K$"));
    assert!(screen_lock::is_machine_account("system"));
    assert!(!screen_lock::is_machine_account("jdoe"));
    let check = screen_lock::screen_lock_not_user_session("WORKGROUP\\DESKTOP-7Q2K$");
    assert_eq!(check.status, Status::Unknown);
    assert_eq!(unknown_kind(&check), Some(UnknownKind::NotApplicable));
    assert!(
        check
            .unknown
            .as_ref()
            .unwrap()
            .detail
            .contains("DESKTOP-7Q2K$")
    );
}

// ---- secure_boot ----

#[test]
fn secure_boot_registry_value() {
    let on = secure_boot::parse_secure_boot(fixture!("secure_boot/enabled.txt")).unwrap();
    assert_eq!(on, seen(true, "UEFISecureBootEnabled    REG_DWORD    0x1"));
    let check = secure_boot::secure_boot_check(Some(&on), Some(secure_boot::Firmware::Uefi));
    assert_eq!(check.id, CheckId::SecureBoot);
    assert_eq!(check.status, Status::Pass);
    assert_eq!(fact(&check, "enabled"), json!(true));
    assert_eq!(fact(&check, "firmware"), json!("uefi"));
    assert_eq!(
        check.evidence,
        vec![
            r#"ran `reg.exe query HKLM\SYSTEM\CurrentControlSet\Control\SecureBoot\State /v UEFISecureBootEnabled`: "UEFISecureBootEnabled    REG_DWORD    0x1""#,
            "environment firmware_type: UEFI",
        ]
    );

    let off = secure_boot::parse_secure_boot(fixture!("secure_boot/disabled.txt")).unwrap();
    assert!(!off.value);
    let check = secure_boot::secure_boot_check(Some(&off), None);
    assert_eq!(check.status, Status::Fail);
    assert_eq!(fact(&check, "enabled"), json!(false));
    assert_eq!(
        fact(&check, "firmware"),
        json!("uefi"),
        "the value exists only on UEFI"
    );
    assert_eq!(check.evidence.len(), 1);
    assert!(check.remediation.is_some());
}

#[test]
fn secure_boot_value_absent_depends_on_firmware() {
    // `reg query` exits 1 with this message: the collector maps it to "absent".
    let missing = fixture!("secure_boot/value_missing.txt");
    assert_eq!(registry::classify_exit(Some(1), missing), RegExit::Absent);
    assert!(secure_boot::parse_secure_boot(missing).is_err());

    let bios = secure_boot::secure_boot_check(None, Some(secure_boot::Firmware::Bios));
    assert_eq!(bios.status, Status::Fail);
    assert_eq!(fact(&bios, "enabled"), json!(false));
    assert_eq!(fact(&bios, "firmware"), json!("bios"));
    assert_eq!(
        bios.evidence.last().map(String::as_str),
        Some("environment firmware_type: Legacy")
    );

    let uefi = secure_boot::secure_boot_check(None, Some(secure_boot::Firmware::Uefi));
    assert_eq!(uefi.status, Status::Unknown);
    assert_eq!(unknown_kind(&uefi), Some(UnknownKind::SourceMissing));
    assert_eq!(fact(&uefi, "firmware"), json!("uefi"));
    assert!(!has_fact(&uefi, "enabled"));

    let neither = secure_boot::secure_boot_check(None, None);
    assert_eq!(unknown_kind(&neither), Some(UnknownKind::SourceMissing));
    assert!(!has_fact(&neither, "firmware"));

    assert_eq!(
        secure_boot::parse_firmware_type("UEFI"),
        Some(secure_boot::Firmware::Uefi)
    );
    assert_eq!(
        secure_boot::parse_firmware_type(" Legacy\r\n"),
        Some(secure_boot::Firmware::Bios)
    );
    assert_eq!(secure_boot::parse_firmware_type("Unknown"), None);
}

#[test]
fn secure_boot_odd_value_is_unparseable() {
    let err = secure_boot::parse_secure_boot(fixture!("secure_boot/odd_value.txt")).unwrap_err();
    assert!(err.detail.contains("not 0x0 or 0x1"), "{err}");
    let no_value =
        "\r\nHKEY_LOCAL_MACHINE\\SYSTEM\\CurrentControlSet\\Control\\SecureBoot\\State\r\n";
    assert_eq!(
        secure_boot::parse_secure_boot(no_value).unwrap_err().detail,
        "no UEFISecureBootEnabled value"
    );
    let check = secure_boot::secure_boot_unknown(err.into());
    assert_eq!(check.status, Status::Unknown);
    assert_eq!(unknown_kind(&check), Some(UnknownKind::Unparseable));
}

// ---- antivirus: Defender ----

fn defender_status(text: &str) -> defender::DefenderStatus {
    defender::parse_defender(text).unwrap()
}

#[test]
fn defender_normal_mode_passes() {
    let status = defender_status(fixture!("defender/normal.txt"));
    assert_eq!(
        status.running_mode,
        Some(seen(
            defender::RunningMode::Normal,
            "AMRunningMode                 : Normal"
        ))
    );
    assert_eq!(status.service_enabled.as_ref().map(|s| s.value), Some(true));
    assert_eq!(
        status.antivirus_enabled.as_ref().map(|s| s.value),
        Some(true)
    );
    assert_eq!(
        status.real_time_enabled.as_ref().map(|s| s.value),
        Some(true)
    );
    assert_eq!(
        status.signature_age_days,
        Some(seen(Some(1), "AntivirusSignatureAge         : 1"))
    );
    assert_eq!(
        status.signatures_out_of_date.as_ref().map(|s| s.value),
        Some(false)
    );
    assert_eq!(status.product_version.as_deref(), Some("4.18.24050.7"));
    assert!(status.is_primary() && status.running() && !status.out_of_date());
    assert_eq!(status.signature_age(), Some(1));

    let check = defender::defender_check(&status);
    assert_eq!(check.id, CheckId::Antivirus);
    assert_eq!(check.status, Status::Pass);
    assert_eq!(
        check.summary,
        "Microsoft Defender Antivirus running, signatures 1 day(s) old"
    );
    assert_eq!(fact(&check, "present"), json!(true));
    assert_eq!(fact(&check, "running"), json!(true));
    assert_eq!(
        fact(&check, "product"),
        json!("Microsoft Defender Antivirus")
    );
    assert_eq!(fact(&check, "signature_age_days"), json!(1));
    assert_eq!(check.evidence.len(), 5);
    assert_eq!(
        check.evidence.first(),
        Some(&defender::command().evidence("AMRunningMode                 : Normal"))
    );
}

#[test]
fn defender_full_listing_and_localized_dates_pass() {
    let full = defender_status(fixture!("defender/full_listing.txt"));
    assert_eq!(full.signature_age(), Some(1));
    assert_eq!(full.product_version.as_deref(), Some("4.18.24050.7"));
    assert_eq!(defender::defender_check(&full).status, Status::Pass);

    // The date is localized, but only the numeric age is read.
    let de = defender_status(fixture!("defender/normal_de_dates.txt"));
    assert_eq!(de.signature_age(), Some(0));
    let check = defender::defender_check(&de);
    assert_eq!(check.status, Status::Pass);
    assert_eq!(fact(&check, "signature_age_days"), json!(0));
}

#[test]
fn defender_real_time_off_or_stale_fails() {
    let off = defender_status(fixture!("defender/realtime_off.txt"));
    assert!(off.is_primary() && !off.running());
    let check = defender::defender_check(&off);
    assert_eq!(check.status, Status::Fail);
    assert_eq!(
        check.summary,
        "Microsoft Defender Antivirus is installed but real-time protection is off"
    );
    assert_eq!(fact(&check, "running"), json!(false));
    assert!(
        check
            .remediation
            .as_deref()
            .unwrap()
            .contains("Real-time protection")
    );

    let stale = defender_status(fixture!("defender/signatures_out_of_date.txt"));
    assert!(stale.running() && stale.out_of_date());
    let check = defender::defender_check(&stale);
    assert_eq!(check.status, Status::Fail);
    assert_eq!(
        check.summary,
        "Microsoft Defender Antivirus signatures are out of date (14 day(s) old)"
    );
    assert_eq!(fact(&check, "running"), json!(true));
    assert_eq!(fact(&check, "signature_age_days"), json!(14));
}

#[test]
fn defender_passive_or_not_running_is_not_primary() {
    let passive = defender_status(fixture!("defender/passive.txt"));
    assert_eq!(
        passive.running_mode.as_ref().map(|m| m.value.clone()),
        Some(defender::RunningMode::Passive)
    );
    assert!(!passive.is_primary() && !passive.running());
    assert!(antivirus::needs_security_center(&Ok(passive)));

    let stopped = defender_status(fixture!("defender/not_running.txt"));
    assert_eq!(
        stopped.running_mode.as_ref().map(|m| m.value.clone()),
        Some(defender::RunningMode::NotRunning)
    );
    assert_eq!(
        stopped.signature_age_days,
        Some(seen(None, "AntivirusSignatureAge         : 4294967295")),
        "4294967295 = unknown age, not 136 years"
    );
    assert_eq!(stopped.signature_age(), None);
    assert_eq!(stopped.product_version.as_deref(), Some("4.18.24050.7"));
    assert!(!stopped.is_primary());

    assert!(!antivirus::needs_security_center(&Ok(defender_status(
        fixture!("defender/normal.txt")
    ))));
    assert!(antivirus::needs_security_center(&Err(Unknown::new(
        UnknownKind::SourceMissing,
        "Get-MpComputerStatus is not available"
    ))));
}

#[test]
fn defender_running_modes() {
    use defender::RunningMode;
    assert_eq!(RunningMode::from_value(" Normal "), RunningMode::Normal);
    assert_eq!(
        RunningMode::from_value("Passive Mode"),
        RunningMode::Passive
    );
    assert_eq!(
        RunningMode::from_value("SxS Passive Mode"),
        RunningMode::SxsPassive
    );
    assert_eq!(
        RunningMode::from_value("EDR Block Mode"),
        RunningMode::EdrBlock
    );
    assert_eq!(
        RunningMode::from_value("Not running"),
        RunningMode::NotRunning
    );
    assert_eq!(
        RunningMode::from_value("Mode normal"),
        RunningMode::Other("Mode normal".into())
    );
    let edr = defender_status("AMRunningMode : EDR Block Mode\r\nAntivirusEnabled : True\r\n");
    assert!(!edr.is_primary(), "EDR block mode is passive");
    let other = defender_status("AMRunningMode : Normal Mode\r\nAntivirusEnabled : True\r\n");
    assert!(
        !other.is_primary(),
        "an unknown mode is never a guessed Normal"
    );
}

#[test]
fn defender_without_running_mode_uses_antivirus_enabled() {
    let old = defender_status(
        "AntivirusEnabled : True\r\nRealTimeProtectionEnabled : True\r\nAntivirusSignatureAge : 65535\r\n",
    );
    assert_eq!(old.running_mode, None);
    assert!(old.is_primary() && old.running());
    assert_eq!(old.signature_age(), None, "65535 = unknown age");
    let check = defender::defender_check(&old);
    assert_eq!(
        check.summary,
        "Microsoft Defender Antivirus running, signatures of unknown age"
    );
    assert!(!has_fact(&check, "signature_age_days"));
    let off = defender_status("AntivirusEnabled : False\r\n");
    assert!(!off.is_primary());
    assert_eq!(
        defender::not_primary_note(&off),
        defender::command().evidence("AntivirusEnabled : False")
    );
}

#[test]
fn defender_odd_outputs_are_errors() {
    let garbled = defender::parse_defender(fixture!("defender/garbled_boolean.txt")).unwrap_err();
    assert_eq!(
        garbled.detail,
        "AntivirusEnabled is not True/False: \"Vrai\""
    );
    let truncated = defender::parse_defender(fixture!("defender/truncated.txt")).unwrap_err();
    assert_eq!(
        truncated.detail,
        "AntivirusEnabled is not True/False: \"Tr\""
    );
    let age = defender::parse_defender("AMRunningMode : Normal\r\nAntivirusSignatureAge : -1\r\n")
        .unwrap_err();
    assert!(
        age.detail.contains("AntivirusSignatureAge is not a number"),
        "{age}"
    );
    let neither = defender::parse_defender("AMServiceEnabled : True\r\n").unwrap_err();
    assert!(
        neither
            .detail
            .contains("neither AMRunningMode nor AntivirusEnabled")
    );
    assert!(defender::parse_defender("").is_err());
}

// ---- antivirus: Security Center ----

#[test]
fn security_center_third_party_on_passes() {
    let products =
        security_center::parse_security_center(fixture!("security_center/third_party_on.txt"))
            .unwrap();
    assert_eq!(
        products,
        vec![
            security_center::AvProduct {
                name: "Windows Defender".into(),
                state: 393_472,
                line: "393472 Windows Defender".into(),
            },
            security_center::AvProduct {
                name: "CrowdStrike Falcon Sensor".into(),
                state: 397_312,
                line: "397312 CrowdStrike Falcon Sensor".into(),
            },
        ]
    );
    let (defender_sc, falcon) = (products.first().unwrap(), products.get(1).unwrap());
    assert!(!defender_sc.enabled());
    assert!(falcon.enabled() && falcon.up_to_date());
    let check = security_center::security_center_check(&products);
    assert_eq!(check.status, Status::Pass);
    assert_eq!(
        check.summary,
        "CrowdStrike Falcon Sensor running and up to date"
    );
    assert_eq!(fact(&check, "product"), json!("CrowdStrike Falcon Sensor"));
    assert_eq!(fact(&check, "running"), json!(true));
    assert_eq!(check.evidence.len(), 2);
}

#[test]
fn security_center_out_of_date_or_off_fails() {
    let stale = security_center::parse_security_center(fixture!("security_center/out_of_date.txt"))
        .unwrap();
    let eset = stale.get(1).unwrap();
    assert!(eset.enabled() && !eset.up_to_date());
    let check = security_center::security_center_check(&stale);
    assert_eq!(check.status, Status::Fail);
    assert_eq!(
        check.summary,
        "ESET Security is running but reports out-of-date signatures"
    );
    assert_eq!(fact(&check, "product"), json!("ESET Security"));
    assert_eq!(fact(&check, "running"), json!(true));
    assert_eq!(
        check.remediation.as_deref(),
        Some("Open ESET Security and update its signatures, or contact IT.")
    );

    let off =
        security_center::parse_security_center(fixture!("security_center/third_party_off.txt"))
            .unwrap();
    assert!(off.iter().all(|p| !p.enabled()));
    let check = security_center::security_center_check(&off);
    assert_eq!(check.status, Status::Fail);
    assert_eq!(fact(&check, "present"), json!(true));
    assert_eq!(fact(&check, "running"), json!(false));
    assert_eq!(
        check.summary, "Windows Defender is installed but not running",
        "the first registered product is named"
    );
    assert_eq!(check.evidence.len(), 2);
}

#[test]
fn security_center_nothing_registered_fails() {
    let none =
        security_center::parse_security_center(fixture!("security_center/none_registered.txt"))
            .unwrap();
    assert!(none.is_empty());
    let check = security_center::security_center_check(&none);
    assert_eq!(check.status, Status::Fail);
    assert_eq!(check.summary, "no antivirus is registered or running");
    assert_eq!(fact(&check, "present"), json!(false));
    assert_eq!(fact(&check, "running"), json!(false));
    assert!(!has_fact(&check, "product"));
    assert_eq!(
        check.evidence,
        vec![security_center::command().evidence_note("no AntiVirusProduct registered")]
    );
}

#[test]
fn security_center_odd_lines_are_errors() {
    let err = security_center::parse_security_center(fixture!("security_center/not_a_state.txt"))
        .unwrap_err();
    assert!(err.detail.contains("productState is not a number"), "{err}");
    let err = security_center::parse_security_center("397568\r\n").unwrap_err();
    assert!(err.detail.contains("no product name"), "{err}");
    assert!(security_center::parse_security_center("4294967296 Too Big\r\n").is_err());
}

// ---- antivirus: both sources ----

fn products(text: &str) -> Result<Vec<security_center::AvProduct>, Unknown> {
    security_center::parse_security_center(text).map_err(Unknown::from)
}

#[test]
fn antivirus_defender_primary_needs_nothing_else() {
    let defender = Ok(defender_status(fixture!("defender/normal.txt")));
    let check = antivirus::antivirus_check(&defender, None);
    assert_eq!(check.status, Status::Pass);
    assert_eq!(
        fact(&check, "product"),
        json!("Microsoft Defender Antivirus")
    );
    // Even if Security Center was asked, the active Defender decides.
    let sc = products(fixture!("security_center/none_registered.txt"));
    assert_eq!(
        antivirus::antivirus_check(&defender, Some(&sc)).status,
        Status::Pass
    );
    let stale = Ok(defender_status(fixture!(
        "defender/signatures_out_of_date.txt"
    )));
    assert_eq!(
        antivirus::antivirus_check(&stale, None).status,
        Status::Fail
    );
}

#[test]
fn antivirus_passive_defender_defers_to_security_center() {
    let passive = Ok(defender_status(fixture!("defender/passive.txt")));
    let sc = products(fixture!("security_center/third_party_on.txt"));
    let check = antivirus::antivirus_check(&passive, Some(&sc));
    assert_eq!(check.status, Status::Pass);
    assert_eq!(fact(&check, "product"), json!("CrowdStrike Falcon Sensor"));
    assert_eq!(
        check.evidence.last(),
        Some(&defender::command().evidence("AMRunningMode                 : Passive Mode"))
    );

    let stopped = Ok(defender_status(fixture!("defender/not_running.txt")));
    let none = products(fixture!("security_center/none_registered.txt"));
    let check = antivirus::antivirus_check(&stopped, Some(&none));
    assert_eq!(check.status, Status::Fail);
    assert_eq!(fact(&check, "present"), json!(false));

    let stale = products(fixture!("security_center/out_of_date.txt"));
    assert_eq!(
        antivirus::antivirus_check(&stopped, Some(&stale)).status,
        Status::Fail
    );
}

#[test]
fn antivirus_unreadable_sources_are_unknown() {
    let passive = Ok(defender_status(fixture!("defender/passive.txt")));
    let sc_failed = products(fixture!("security_center/not_a_state.txt"));
    let check = antivirus::antivirus_check(&passive, Some(&sc_failed));
    assert_eq!(check.status, Status::Unknown);
    assert_eq!(unknown_kind(&check), Some(UnknownKind::Unparseable));
    assert!(
        check.unknown.as_ref().unwrap().detail.starts_with(
            "Microsoft Defender is not the active antivirus and Security Center could not be read ("
        ),
        "{:?}",
        check.unknown
    );
    assert_eq!(check.evidence.len(), 2);

    let defender_failed: Result<defender::DefenderStatus, Unknown> = Err(Unknown::new(
        UnknownKind::TimedOut,
        "Get-MpComputerStatus did not answer",
    ));
    let server = Err(Unknown::new(
        UnknownKind::SourceFailed,
        "Invalid namespace root/SecurityCenter2",
    ));
    let check = antivirus::antivirus_check(&defender_failed, Some(&server));
    assert_eq!(unknown_kind(&check), Some(UnknownKind::TimedOut));
    assert_eq!(
        check.unknown.as_ref().unwrap().detail,
        "Get-MpComputerStatus did not answer; Security Center could not be read either (Invalid namespace root/SecurityCenter2)"
    );
    assert!(check.remediation.is_some());

    let check = antivirus::antivirus_check(&defender_failed, None);
    assert_eq!(unknown_kind(&check), Some(UnknownKind::TimedOut));
    let check = antivirus::antivirus_check(&passive, None);
    assert_eq!(unknown_kind(&check), Some(UnknownKind::SourceMissing));

    // Defender unreadable, but another product answers for itself.
    let sc = products(fixture!("security_center/third_party_on.txt"));
    let check = antivirus::antivirus_check(&defender_failed, Some(&sc));
    assert_eq!(check.status, Status::Pass);
    assert_eq!(
        check.evidence.last(),
        Some(&defender::failed_note(&Unknown::new(
            UnknownKind::TimedOut,
            "Get-MpComputerStatus did not answer"
        )))
    );
}

// ---- device_identity ----

#[test]
fn machine_guid_and_serial_pass() {
    let guid =
        device_identity::parse_machine_guid(fixture!("device_identity/machine_guid.txt")).unwrap();
    assert_eq!(
        guid,
        seen(
            "6f1d2c3b-4a59-4e8f-9b7a-0c1d2e3f4a5b".to_owned(),
            "MachineGuid    REG_SZ    6f1d2c3b-4a59-4e8f-9b7a-0c1d2e3f4a5b"
        )
    );
    let serial =
        device_identity::parse_bios_serial(fixture!("device_identity/bios_serial_real.txt"))
            .unwrap();
    assert_eq!(
        serial,
        device_identity::Serial::Real(seen("PF3ABC12".to_owned(), "PF3ABC12"))
    );
    assert_eq!(serial.value(), Some("PF3ABC12"));

    let check = device_identity::device_identity_check(&Ok(guid), &Ok(serial));
    assert_eq!(check.id, CheckId::DeviceIdentity);
    assert_eq!(check.status, Status::Pass);
    assert_eq!(
        check.summary,
        "MachineGuid 6f1d2c3b-4a59-4e8f-9b7a-0c1d2e3f4a5b"
    );
    assert_eq!(
        fact(&check, "machine_id"),
        json!("6f1d2c3b-4a59-4e8f-9b7a-0c1d2e3f4a5b")
    );
    assert_eq!(fact(&check, "serial"), json!("PF3ABC12"));
    assert_eq!(
        check.evidence,
        vec![
            r#"ran `reg.exe query HKLM\SOFTWARE\Microsoft\Cryptography /v MachineGuid`: "MachineGuid    REG_SZ    6f1d2c3b-4a59-4e8f-9b7a-0c1d2e3f4a5b""#.to_owned(),
            device_identity::serial_command().evidence("PF3ABC12"),
        ]
    );
}

#[test]
fn placeholder_or_missing_serials_are_null() {
    let guid = Ok(device_identity::parse_machine_guid(fixture!(
        "device_identity/machine_guid.txt"
    ))
    .unwrap());
    for (text, expected) in [
        (
            fixture!("device_identity/bios_serial_placeholder.txt"),
            device_identity::Serial::Placeholder(seen(
                "To Be Filled By O.E.M.".to_owned(),
                "To Be Filled By O.E.M.",
            )),
        ),
        (
            fixture!("device_identity/bios_serial_zero.txt"),
            device_identity::Serial::Placeholder(seen("0".to_owned(), "0")),
        ),
        (
            fixture!("device_identity/bios_serial_empty.txt"),
            device_identity::Serial::Missing,
        ),
    ] {
        let serial = device_identity::parse_bios_serial(text).unwrap();
        assert_eq!(serial, expected);
        assert_eq!(serial.value(), None);
        let check = device_identity::device_identity_check(&guid, &Ok(serial));
        assert_eq!(check.status, Status::Pass, "the serial is only a fact");
        assert!(has_fact(&check, "serial"));
        assert_eq!(fact(&check, "serial"), Value::Null);
    }
    let check = device_identity::device_identity_check(
        &guid,
        &device_identity::parse_bios_serial(fixture!(
            "device_identity/bios_serial_placeholder.txt"
        ))
        .map_err(Unknown::from),
    );
    assert!(
        check
            .evidence
            .last()
            .unwrap()
            .ends_with("\"To Be Filled By O.E.M.\" is a vendor placeholder, reported as null"),
        "{:?}",
        check.evidence
    );
    assert!(device_identity::is_placeholder(" default STRING "));
    assert!(device_identity::is_placeholder("00000000"));
    assert!(device_identity::is_placeholder(""));
    assert!(!device_identity::is_placeholder("PF3ABC12"));
    assert!(!device_identity::is_placeholder(
        "0000-0007-4519-8871-3421-4436-39"
    ));
}

#[test]
fn unreadable_machine_guid_is_unknown() {
    let err =
        device_identity::parse_machine_guid(fixture!("device_identity/machine_guid_truncated.txt"))
            .unwrap_err();
    assert!(err.detail.contains("not a GUID"), "{err}");
    let serial = Ok(device_identity::parse_bios_serial(fixture!(
        "device_identity/bios_serial_real.txt"
    ))
    .unwrap());
    let check = device_identity::device_identity_check(&Err(err.into()), &serial);
    assert_eq!(check.status, Status::Unknown);
    assert_eq!(unknown_kind(&check), Some(UnknownKind::Unparseable));
    assert!(!has_fact(&check, "machine_id"));
    assert_eq!(fact(&check, "serial"), json!("PF3ABC12"));
    assert!(check.remediation.is_some());

    // Braces and upper case are normalized; other shapes are refused.
    let braces = "\r\nHKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Cryptography\r\n    MachineGuid    REG_SZ    {6F1D2C3B-4A59-4E8F-9B7A-0C1D2E3F4A5B}\r\n";
    assert_eq!(
        device_identity::parse_machine_guid(braces).unwrap().value,
        "6f1d2c3b-4a59-4e8f-9b7a-0c1d2e3f4a5b"
    );
    let no_value = "\r\nHKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Cryptography\r\n";
    assert_eq!(
        device_identity::parse_machine_guid(no_value)
            .unwrap_err()
            .detail,
        "no MachineGuid value"
    );
    assert!(device_identity::parse_bios_serial("A\r\nB\r\n").is_err());

    // A failed serial query leaves the serial null but the check passes.
    let guid = device_identity::parse_machine_guid(fixture!("device_identity/machine_guid.txt"));
    let check = device_identity::device_identity_check(
        &guid.map_err(Unknown::from),
        &Err(Unknown::new(UnknownKind::TimedOut, "Get-CimInstance")),
    );
    assert_eq!(check.status, Status::Pass);
    assert_eq!(fact(&check, "serial"), Value::Null);
}

// ---- enrollment ----

#[test]
fn enrollment_azure_ad_joined_passes() {
    let state = enrollment::parse_dsregcmd(fixture!("enrollment/azure_ad_joined.txt")).unwrap();
    assert_eq!(state.azure_ad, seen(true, "AzureAdJoined : YES"));
    assert_eq!(state.domain, seen(false, "DomainJoined : NO"));
    assert_eq!(state.enterprise, Some(seen(false, "EnterpriseJoined : NO")));
    assert_eq!(state.domain_name, None);
    assert_eq!(state.tenant_name.as_deref(), Some("Contoso"));
    assert_eq!(state.kind(), Some("azure_ad"));
    let check = enrollment::enrollment_check(&state);
    assert_eq!(check.id, CheckId::Enrollment);
    assert_eq!(check.status, Status::Pass);
    assert_eq!(check.summary, "joined to Contoso");
    assert_eq!(fact(&check, "enrolled"), json!(true));
    assert_eq!(fact(&check, "kind"), json!("azure_ad"));
    assert_eq!(
        check.evidence,
        vec![
            r#"ran `dsregcmd.exe /status`: "AzureAdJoined : YES""#,
            r#"ran `dsregcmd.exe /status`: "DomainJoined : NO""#,
            r#"ran `dsregcmd.exe /status`: "EnterpriseJoined : NO""#,
        ]
    );
}

#[test]
fn enrollment_hybrid_is_reported_as_azure_ad() {
    let state = enrollment::parse_dsregcmd(fixture!("enrollment/hybrid_joined.txt")).unwrap();
    assert!(state.azure_ad.value && state.domain.value);
    assert_eq!(state.domain_name.as_deref(), Some("CONTOSO"));
    let check = enrollment::enrollment_check(&state);
    assert_eq!(check.status, Status::Pass);
    assert_eq!(check.summary, "hybrid-joined to Contoso");
    assert_eq!(fact(&check, "kind"), json!("azure_ad"));
}

#[test]
fn enrollment_on_premises_domain_passes() {
    let state = enrollment::parse_dsregcmd(fixture!("enrollment/domain_joined.txt")).unwrap();
    assert!(!state.azure_ad.value && state.domain.value);
    assert_eq!(state.enterprise, None, "no EnterpriseJoined line on 22H2+");
    assert_eq!(state.domain_name.as_deref(), Some("CONTOSO"));
    assert_eq!(state.tenant_name, None);
    let check = enrollment::enrollment_check(&state);
    assert_eq!(check.status, Status::Pass);
    assert_eq!(check.summary, "joined to CONTOSO");
    assert_eq!(fact(&check, "kind"), json!("domain"));
    assert_eq!(check.evidence.len(), 2);

    let enterprise = enrollment::parse_dsregcmd(
        "AzureAdJoined : NO\r\nEnterpriseJoined : YES\r\nDomainJoined : NO\r\n",
    )
    .unwrap();
    assert_eq!(enterprise.kind(), Some("domain"));
    assert_eq!(
        enrollment::enrollment_check(&enterprise).summary,
        "joined to a domain"
    );
}

#[test]
fn enrollment_workplace_registration_is_not_a_join() {
    let state = enrollment::parse_dsregcmd(fixture!("enrollment/not_joined.txt")).unwrap();
    assert_eq!(state.kind(), None);
    let check = enrollment::enrollment_check(&state);
    assert_eq!(check.status, Status::Fail);
    assert_eq!(check.summary, "not joined to Azure AD or a domain");
    assert_eq!(fact(&check, "enrolled"), json!(false));
    assert!(!has_fact(&check, "kind"));
    assert!(check.remediation.is_some());
}

#[test]
fn enrollment_truncated_or_garbled_is_unparseable() {
    let err = enrollment::parse_dsregcmd(fixture!("enrollment/truncated.txt")).unwrap_err();
    assert_eq!(err.detail, "no DomainJoined line");
    let garbled =
        enrollment::parse_dsregcmd("AzureAdJoined : OUI\r\nDomainJoined : NON\r\n").unwrap_err();
    assert_eq!(garbled.detail, "AzureAdJoined is not YES/NO: \"OUI\"");
    let check = enrollment::enrollment_unknown(err.into());
    assert_eq!(check.status, Status::Unknown);
    assert_eq!(unknown_kind(&check), Some(UnknownKind::Unparseable));
}

// ---- tpm ----

#[test]
fn tpm_present_passes() {
    let info = tpm::parse_tpm(fixture!("tpm/present_2_0.txt")).unwrap();
    assert_eq!(info.present, seen(true, "-TPM Present: True"));
    assert_eq!(
        info.version,
        Some(seen("2.0".to_owned(), "-TPM Version: 2.0"))
    );
    assert_eq!(info.manufacturer.as_deref(), Some("Intel"));
    let check = tpm::tpm_check(&info);
    assert_eq!(check.id, CheckId::Tpm);
    assert_eq!(check.status, Status::Pass);
    assert_eq!(check.summary, "TPM 2.0 present (Intel)");
    assert_eq!(fact(&check, "present"), json!(true));
    assert_eq!(fact(&check, "version"), json!("2.0"));
    assert_eq!(
        check.evidence,
        vec![
            r#"ran `tpmtool.exe getdeviceinformation`: "-TPM Present: True""#,
            r#"ran `tpmtool.exe getdeviceinformation`: "-TPM Version: 2.0""#,
        ]
    );
}

#[test]
fn tpm_absent_fails() {
    let info = tpm::parse_tpm(fixture!("tpm/absent.txt")).unwrap();
    assert_eq!(info.present, seen(false, "-TPM Present: False"));
    assert_eq!(
        (info.version.clone(), info.manufacturer.clone()),
        (None, None)
    );
    let check = tpm::tpm_check(&info);
    assert_eq!(check.status, Status::Fail);
    assert_eq!(check.summary, "no TPM found");
    assert_eq!(fact(&check, "present"), json!(false));
    assert!(!has_fact(&check, "version"));
    assert!(check.remediation.is_some());
}

#[test]
fn tpm_odd_outputs_are_unknown() {
    let err = tpm::parse_tpm(fixture!("tpm/no_present_line.txt")).unwrap_err();
    assert_eq!(err.detail, "no \"TPM Present\" line");
    let localized = tpm::parse_tpm("-TPM Present: Vrai\r\n").unwrap_err();
    assert!(
        localized.detail.contains("TPM Present is not True/False"),
        "{localized}"
    );
    let check = tpm::tpm_unknown(err.into());
    assert_eq!(check.status, Status::Unknown);
    assert_eq!(unknown_kind(&check), Some(UnknownKind::Unparseable));

    let check = tpm::tpm_denied("Access is denied.");
    assert_eq!(unknown_kind(&check), Some(UnknownKind::PermissionDenied));
    assert_eq!(
        check.evidence,
        vec![r#"ran `tpmtool.exe getdeviceinformation`: "Access is denied.""#]
    );
    // Manufacturer falls back to the ID.
    let id_only = tpm::parse_tpm(
        fixture!("tpm/no_present_line.txt")
            .replace("-TPM Version", "-TPM Present: True\n-TPM Version")
            .as_str(),
    )
    .unwrap();
    assert_eq!(id_only.manufacturer.as_deref(), Some("AMD"));
    assert_eq!(tpm::tpm_check(&id_only).summary, "TPM 2.0 present (AMD)");
}

// ---- properties ----

/// Every text parser, and the check built from what it returns, called for
/// the side effect of not panicking.
fn parse_all(text: &str) {
    use reboot_pending::RebootMarker;
    let _ = registry::parse_reg_query(text, "test");
    let _ = registry::classify_exit(Some(1), text);
    let _ = windows::mentions_access_denied(text);
    let _ = fields::fields(text);
    let _ = os_version::parse_os_version(text).map(|os| os_version::os_version_check(&os));
    let _ = security_updates::parse_security_updates(text)
        .map(|found| security_updates::security_updates_check(&found, NOW));
    let _ =
        last_update::parse_last_update(text).map(|last| last_update::last_update_check(&last, NOW));
    let markers: Vec<_> = RebootMarker::ALL
        .iter()
        .map(|m| reboot_pending::parse_reboot_marker(text, *m).map_err(Unknown::from))
        .collect();
    let _ = reboot_pending::reboot_pending_check(&markers);
    let _ = bitlocker::access_denied(Some(0), text);
    let _ = bitlocker::system_drive(Some(text));
    let _ = bitlocker::parse_bitlocker(text).map(|s| bitlocker::disk_encryption_check(&s, "C:"));
    let _ = firewall::parse_firewall(text).map(|p| firewall::firewall_check(&p));
    let _ = screen_lock::parse_desktop(text).map(|user| {
        let limit = screen_lock::parse_inactivity_limit(text).ok().flatten();
        screen_lock::screen_lock_check(&user, Some(&user), limit.as_ref())
    });
    let _ = screen_lock::is_machine_account(text);
    let _ = secure_boot::parse_firmware_type(text);
    let _ = secure_boot::parse_secure_boot(text)
        .map(|s| secure_boot::secure_boot_check(Some(&s), None));
    let defender = defender::parse_defender(text).map_err(Unknown::from);
    let sc = security_center::parse_security_center(text).map_err(Unknown::from);
    let _ = antivirus::antivirus_check(&defender, Some(&sc));
    let _ = defender::RunningMode::from_value(text);
    let guid = device_identity::parse_machine_guid(text).map_err(Unknown::from);
    let serial = device_identity::parse_bios_serial(text).map_err(Unknown::from);
    let _ = device_identity::device_identity_check(&guid, &serial);
    let _ = enrollment::parse_dsregcmd(text).map(|s| enrollment::enrollment_check(&s));
    let _ = tpm::parse_tpm(text).map(|info| tpm::tpm_check(&info));
}

const FIXTURES: &[&str] = &[
    fixture!("os_version/win11_23h2_pro.txt"),
    fixture!("security_updates/security_pending.txt"),
    fixture!("last_update/recent.txt"),
    fixture!("reboot_pending/wu_reboot_required.txt"),
    fixture!("bitlocker/protected_en.txt"),
    fixture!("bitlocker/protected_fr.txt"),
    fixture!("firewall/all_on.txt"),
    fixture!("screen_lock/user_secure_600.txt"),
    fixture!("secure_boot/enabled.txt"),
    fixture!("defender/full_listing.txt"),
    fixture!("security_center/third_party_on.txt"),
    fixture!("device_identity/machine_guid.txt"),
    fixture!("enrollment/hybrid_joined.txt"),
    fixture!("tpm/present_2_0.txt"),
];

/// One `Update` line of the WUA script: published day, security or not.
fn update_line(day: u8, severity: Option<&str>, security_category: bool) -> String {
    let category = if security_category {
        security_updates::SECURITY_UPDATES_CATEGORY
    } else {
        "e0789628-ce08-4437-be74-2495b842f43b"
    };
    format!(
        "Update 2024-06-{day:02}T00:00:00.0000000Z | {} | {category},8c3fcc84-7410-4a95-8b89-a166a0190486 | KB50{day:02} | title with | bars",
        severity.unwrap_or("")
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn parsers_never_panic_on_arbitrary_text(text in "\\PC{0,400}") {
        parse_all(&text);
    }

    #[test]
    fn parsers_never_panic_on_oem_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        parse_all(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn parsers_never_panic_on_tool_shaped_text(
        text in r"(HKEY_LOCAL_MACHINE\\Key|    |REG_SZ|REG_DWORD|REG_|0x[0-9a-fA-F]{0,18}|Name|Enabled|DefaultInboundAction|----|True|False|YES|NO|Block|Allow|NotConfigured|LastSearchSuccess |Pending |Update |never|Z|[+-][0-9]{2}:[0-9]{2}|T|AMRunningMode|AntivirusSignatureAge|AzureAdJoined|DomainJoined|-TPM Present|MachineGuid|UEFISecureBootEnabled|ScreenSaveTimeOut|Percentage Encrypted|Protection On|Protection Off|Volume C:|%|\u{fffd}|[0-9]{1,12}|[ .,:{}\n\r\t|-]){0,40}"
    ) {
        parse_all(&text);
    }

    #[test]
    fn parsers_never_panic_on_lines_mixed_into_fixtures(
        which in 0..FIXTURES.len(),
        at in 0usize..90,
        extra in proptest::collection::vec("\\PC{0,80}", 1..4),
    ) {
        let base = FIXTURES.get(which).copied().unwrap_or("");
        let mut lines: Vec<String> = base.lines().map(str::to_owned).collect();
        let at = at.min(lines.len());
        for (offset, line) in extra.into_iter().enumerate() {
            lines.insert(at + offset, line);
        }
        parse_all(&lines.join("\r\n"));
    }

    #[test]
    fn fixture_prefixes_never_panic(which in 0..FIXTURES.len(), cut in 0usize..6000) {
        let base = FIXTURES.get(which).copied().unwrap_or("");
        let cut = base.char_indices().map(|(i, _)| i).nth(cut).unwrap_or(base.len());
        parse_all(base.get(..cut).unwrap_or(base));
    }

    /// Any value line `reg.exe` prints reads back as the same name, type and data.
    #[test]
    fn reg_value_lines_round_trip(
        name in "[A-Za-z(][A-Za-z0-9 .()-]{0,20}[A-Za-z0-9)]",
        kind in prop::sample::select(vec!["REG_SZ", "REG_EXPAND_SZ", "REG_MULTI_SZ", "REG_DWORD", "REG_QWORD", "REG_BINARY", "REG_NONE"]),
        data in "([!-~]([ -~]{0,30}[!-~])?)?",
    ) {
        let text = format!("\r\nHKEY_CURRENT_USER\\Test\r\n    {name}    {kind}    {data}\r\n\r\n");
        let key = registry::parse_reg_query(&text, "test").unwrap();
        prop_assert_eq!(key.values.len(), 1);
        let value = key.value(&name).unwrap();
        prop_assert_eq!(&value.name, &name);
        prop_assert_eq!(value.kind.as_str(), kind);
        prop_assert_eq!(&value.data, &data);
    }

    /// `manage-bde` decides on the percentage and the protection line alone,
    /// in both decimal styles.
    #[test]
    fn bitlocker_pass_needs_100_percent_and_protection_on(
        tenths in 0u32..=1000,
        on in any::<bool>(),
        comma in any::<bool>(),
        space in any::<bool>(),
    ) {
        let sep = if comma { "," } else { "." };
        let gap = if space { " " } else { "" };
        let protection = if on { "Protection On" } else { "Protection Off" };
        let text = format!(
            "Volume C: [Windows]\r\n[OS Volume]\r\n\r\n    Conversion Status:    X\r\n    Percentage Encrypted: {}{sep}{}{gap}%\r\n    Protection Status:    {protection}\r\n",
            tenths / 10,
            tenths % 10,
        );
        let status = bitlocker::parse_bitlocker(&text).unwrap();
        prop_assert_eq!(status.percent_encrypted.value, f64::from(tenths) / 10.0);
        prop_assert_eq!(status.protection_on.value, on);
        let check = bitlocker::disk_encryption_check(&status, "C:");
        let expected = if tenths == 1000 && on { Status::Pass } else { Status::Fail };
        prop_assert_eq!(check.status, expected);
    }

    /// The firewall passes exactly when every profile is on and blocks inbound.
    #[test]
    fn firewall_pass_iff_every_profile_filters(
        rows in proptest::collection::vec(
            (
                prop::sample::select(vec!["True", "False", "NotConfigured"]),
                prop::sample::select(vec!["Block", "Allow", "NotConfigured"]),
            ),
            1..=3,
        ),
    ) {
        let names = ["Domain", "Private", "Public"];
        let mut text = String::from("\r\nName    Enabled DefaultInboundAction\r\n----    ------- --------------------\r\n");
        for (name, (enabled, action)) in names.iter().zip(&rows) {
            text.push_str(&format!("{name:<8}{enabled:>7}{action:>21}\r\n"));
        }
        let profiles = firewall::parse_firewall(&text).unwrap();
        prop_assert_eq!(profiles.len(), rows.len());
        let filtering = |(enabled, action): &(&str, &str)| *enabled != "False" && *action != "Allow";
        let check = firewall::firewall_check(&profiles);
        let expected = if rows.iter().all(filtering) { Status::Pass } else { Status::Fail };
        prop_assert_eq!(check.status, expected);
        for (name, row) in names.iter().zip(&rows) {
            prop_assert_eq!(fact(&check, "profiles").get(*name).cloned(), Some(json!(filtering(row))));
        }
    }

    /// Security updates are counted from the classification or the MSRC
    /// rating; a dropped line is an error, never a smaller count.
    #[test]
    fn security_updates_are_counted_and_truncation_is_caught(
        updates in proptest::collection::vec(
            (1u8..=13, prop::option::of(prop::sample::select(vec!["Critical", "Important", "Moderate", "Low"])), any::<bool>()),
            0..6,
        ),
    ) {
        let mut lines = vec![
            "LastSearchSuccess 2024-06-13T06:10:11.0000000Z".to_owned(),
            format!("Pending {}", updates.len()),
        ];
        lines.extend(updates.iter().map(|(day, severity, category)| update_line(*day, *severity, *category)));
        let found = security_updates::parse_security_updates(&lines.join("\r\n")).unwrap();
        let expected = updates.iter().filter(|(_, severity, category)| severity.is_some() || *category).count();
        prop_assert_eq!(found.security().count(), expected);
        for (update, (day, _, _)) in found.updates.iter().zip(&updates) {
            prop_assert_eq!(update.title.clone(), format!("KB50{day:02} | title with | bars"));
        }
        let check = security_updates::security_updates_check(&found, NOW);
        prop_assert_eq!(check.status, if expected > 0 { Status::Fail } else { Status::Pass });
        prop_assert_eq!(fact(&check, "security_pending"), json!(expected));
        if !updates.is_empty() {
            lines.pop();
            prop_assert!(security_updates::parse_security_updates(&lines.join("\r\n")).is_err());
        }
    }
}

// ------------------------------------------------- BitLocker from CIM (JSON)

#[test]
fn bitlocker_cim_protected_passes_with_one_evidence_line() {
    let text = fixture!("bitlocker_cim/protected.json");
    let status = bitlocker_cim::parse_bitlocker_cim(text).unwrap();
    assert_eq!(status.volume.as_deref(), Some("C:"));
    assert!(status.encrypted());
    assert!(status.protection_on.value);
    let cmd = bitlocker_cim::command("C:");
    let check = bitlocker::disk_encryption_check_from(&status, "C:", &cmd);
    assert_eq!(check.status, Status::Pass);
    assert_eq!(
        check.summary,
        "BitLocker on C: (XTS-AES 256), protection on"
    );
    assert_eq!(fact(&check, "method"), json!("XTS-AES 256"));
    assert_eq!(check.evidence, vec![cmd.evidence(text.trim())]);
}

#[test]
fn bitlocker_cim_suspended_partial_and_decrypted_fail() {
    for (file, summary) in [
        (
            "suspended",
            "BitLocker on C: is suspended (encrypted, protection off)",
        ),
        ("encrypting", "C: is not fully encrypted (67% encrypted)"),
        ("decrypted", "C: is not fully encrypted (0% encrypted)"),
    ] {
        let text = match file {
            "suspended" => fixture!("bitlocker_cim/suspended.json"),
            "encrypting" => fixture!("bitlocker_cim/encrypting.json"),
            _ => fixture!("bitlocker_cim/decrypted.json"),
        };
        let status = bitlocker_cim::parse_bitlocker_cim(text).unwrap();
        let check =
            bitlocker::disk_encryption_check_from(&status, "C:", &bitlocker_cim::command("C:"));
        assert_eq!(check.status, Status::Fail, "{file}");
        assert_eq!(check.summary, summary, "{file}");
        assert!(check.remediation.is_some(), "{file}");
    }
}

#[test]
fn bitlocker_cim_odd_outputs_are_errors_not_guesses() {
    let locked = bitlocker_cim::parse_bitlocker_cim(fixture!("bitlocker_cim/locked.json"))
        .unwrap_err()
        .to_string();
    assert!(locked.contains("locked"), "{locked}");
    assert!(bitlocker_cim::parse_bitlocker_cim(fixture!("bitlocker_cim/truncated.json")).is_err());
    for odd in [
        "",
        "null",
        "[]",
        r#"{"DriveLetter":"C:","ProtectionStatus":1,"ConversionStatus":9,"EncryptionPercentage":100,"EncryptionMethod":7}"#,
        r#"{"DriveLetter":"C:","ProtectionStatus":1,"ConversionStatus":1,"EncryptionPercentage":101,"EncryptionMethod":7}"#,
        r#"{"DriveLetter":"C:","ProtectionStatus":"On","ConversionStatus":1,"EncryptionPercentage":100,"EncryptionMethod":7}"#,
    ] {
        assert!(bitlocker_cim::parse_bitlocker_cim(odd).is_err(), "{odd:?}");
    }
}
