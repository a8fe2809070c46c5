//! Posture command outputs: every `posture::parse::<os>` parser (and the
//! check built from its result), seeded with the captured outputs under
//! `posture/tests/fixtures/<os>/`. Each input goes through every parser of
//! its OS, so one parser's mutated output is also another's strange input.

use posture::parse::{linux, macos, windows};
use time::OffsetDateTime;

use super::{files_under, text, tokens, workspace};
use crate::Target;

fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn fixtures(os: &str) -> Vec<Vec<u8>> {
    files_under(&workspace().join("posture/tests/fixtures").join(os))
}

fn run_linux(input: &[u8]) {
    use linux::*;
    let t = text(input);
    let t = t.as_ref();
    let _ = apt::parse_apt_simulate(t);
    let _ = apt::parse_apt_history_last_upgrade(t);
    let _ = block::parse_root_mount(t);
    let _ = block::parse_lsblk_chain(t);
    let _ = block::classify_dm_uuid(t);
    let _ = dnf::parse_dnf_security(t);
    let _ = firewall::parse_nft_ruleset(t);
    let _ = firewall::parse_iptables_rules(t);
    let _ = firewall::parse_ufw_enabled(t);
    let _ = gsettings::parse_gsettings_bool(t);
    let _ = gsettings::parse_gsettings_uint(t);
    let _ = identity::parse_machine_id(t);
    let _ = identity::real_serial(t);
    let _ = os_release::parse_os_release(t);
    let _ = os_release::version_parts(t);
    let _ = realm::parse_realm_list(t);
    let _ = secure_boot::parse_secure_boot_efivar(input);
    let _ = secure_boot::parse_mokutil_sb_state(t);
    let names: Vec<&str> = t.lines().collect();
    let kernels = kernel::installed_kernels(names.iter().copied());
    let _ = kernel::newest_kernel(&kernels);
    if let [a, b, ..] = names.as_slice() {
        let _ = kernel::natural_cmp(a, b);
    }
}

fn run_macos(input: &[u8]) {
    use macos::*;
    let t = text(input);
    let t = t.as_ref();
    let now = now();
    let _ = defaults::parse_defaults_integer("defaults", t);
    let _ = defaults::parse_defaults_string("defaults", t);
    let _ = defaults::is_missing_default(t);
    if let Ok(e) = enrollment::parse_profiles_enrollment(t) {
        let _ = enrollment::enrollment_check(&e);
    }
    if let Ok(v) = filevault::parse_fdesetup_status(t) {
        let _ = filevault::disk_encryption_check(&v);
    }
    for state in [
        firewall::parse_socketfilterfw_global_state(t),
        firewall::parse_system_profiler_firewall(t),
    ]
    .iter()
    .flatten()
    {
        let _ = firewall::firewall_check(state);
    }
    if let Ok(enabled) = gatekeeper::parse_spctl_status(t) {
        let _ = gatekeeper::gatekeeper_check(enabled);
    }
    if let Ok(id) = identity::parse_ioreg_platform(t) {
        let _ = identity::device_identity_check(&id);
    }
    let _ = identity::is_placeholder_serial(t);
    if let Ok(bridge) = platform_security::parse_ibridge(t) {
        for silicon in [false, true] {
            let _ = platform_security::secure_boot_check(&bridge, silicon);
            let _ = platform_security::tpm_check(&bridge, silicon);
        }
    }
    let _ = platform_security::parse_arm64_flag(t, t);
    let idle = screen_lock::parse_idle_time(t).ok();
    if let Ok(status) = screen_lock::parse_sysadminctl_screen_lock(t) {
        let _ = screen_lock::screen_lock_check(&status, idle);
    }
    let _ = screen_lock::parse_user_name("stat", t);
    let _ = screen_lock::console_session_problem("alice", t);
    if let Ok(sip) = sip::parse_csrutil_status(t) {
        let _ = sip::sip_check(&sip);
    }
    if let Ok(at) = software_update::parse_last_full_successful_date(t) {
        let _ = software_update::days_since(at, now);
        let _ = software_update::last_update_check(at, now);
    }
    if let Ok(updates) = software_update::parse_softwareupdate_list(t) {
        let live = software_update::ListSource::Live;
        let _ = software_update::reboot_pending_check(&updates, &live);
        let _ = software_update::security_updates_check(&updates, &live, Some(40), Some(400));
        let _ = software_update::security_updates_check(&updates, &live, None, None);
    }
    if let Ok(sw) = sw_vers::parse_sw_vers(t) {
        let kernel = sw_vers::parse_kernel_release(t).ok();
        let _ = sw_vers::os_version_check(&sw, kernel.as_deref());
    }
    let _ = xprotect::parse_xprotect_version(t);
}

fn run_windows(input: &[u8]) {
    use windows::*;
    let t = text(input);
    let t = t.as_ref();
    let now = now();
    let _ = mentions_access_denied(t);
    let _ = first_line(t);
    let f = fields::fields(t);
    let _ = fields::find(&f, "Name");
    let _ = fields::boolean(t);
    if let Ok(s) = bitlocker::parse_bitlocker(t) {
        let _ = bitlocker::disk_encryption_check(&s, "C:");
    }
    if let Ok(s) = bitlocker_cim::parse_bitlocker_cim(t) {
        let _ = bitlocker::disk_encryption_check(&s, "C:");
    }
    let _ = bitlocker::system_drive(Some(t));
    let _ = bitlocker::access_denied(Some(5), t);
    let defender = defender::parse_defender(t);
    if let Ok(d) = &defender {
        let _ = defender::defender_check(d);
        let _ = defender::not_primary_note(d);
    }
    if let Ok(products) = security_center::parse_security_center(t) {
        let _ = security_center::security_center_check(&products);
    }
    if let Ok(id) = device_identity::parse_machine_guid(t) {
        let _ = id;
    }
    let _ = device_identity::parse_bios_serial(t);
    let _ = device_identity::is_placeholder(t);
    if let Ok(j) = enrollment::parse_dsregcmd(t) {
        let _ = enrollment::enrollment_check(&j);
    }
    if let Ok(profiles) = firewall::parse_firewall(t) {
        let _ = firewall::firewall_check(&profiles);
    }
    if let Ok(last) = last_update::parse_last_update(t) {
        let _ = last_update::last_update_check(&last, now);
    }
    if let Some(at) = last_update::parse_instant(t) {
        let _ = last_update::days_between(at, now);
        let _ = last_update::days_between(now, at);
    }
    if let Ok(os) = os_version::parse_os_version(t) {
        let _ = os_version::os_version_check(&os);
    }
    let _ = os_version::corrected_name(t, 22_000);
    let states: Vec<_> = reboot_pending::RebootMarker::ALL
        .iter()
        .map(|m| {
            reboot_pending::parse_reboot_marker(t, *m).map_err(|e| {
                posture::Unknown::new(posture::UnknownKind::Unparseable, e.to_string())
            })
        })
        .collect();
    let _ = reboot_pending::reboot_pending_check(&states);
    let _ = registry::parse_reg_query(t, "reg");
    let _ = registry::classify_exit(Some(1), t);
    if let Ok(s) = screen_lock::parse_desktop(t) {
        let limit = screen_lock::parse_inactivity_limit(t).ok().flatten();
        let _ = (s, limit);
    }
    let _ = screen_lock::is_machine_account(t);
    if let Ok(sb) = secure_boot::parse_secure_boot(t) {
        let fw = secure_boot::parse_firmware_type(t);
        let _ = secure_boot::secure_boot_check(Some(&sb), fw);
    }
    if let Ok(found) = security_updates::parse_security_updates(t) {
        let _ = security_updates::security_updates_check(&found, now);
    }
    if let Ok(info) = tpm::parse_tpm(t) {
        let _ = tpm::tpm_check(&info);
    }
}

fn dict() -> Vec<Vec<u8>> {
    tokens(&[
        " : ",
        ": ",
        "=",
        "\"",
        "True",
        "False",
        "Yes",
        "No",
        "enabled",
        "disabled",
        "0x",
        "-",
        "(",
        ")",
        "{",
        "}",
        ";",
        "/",
        "%",
        "20240101",
        "2024-13-45 25:61:61",
        "/Date(99999999999999999)/",
        "18446744073709551616",
        "-9223372036854775808",
        "REG_DWORD",
        "REG_SZ",
        "HKEY_LOCAL_MACHINE",
        "\r\n",
        "\\x20",
        "\\040",
        "Start-Date:",
        "End-Date:",
        "Upgrade:",
        "Inst ",
        "Conf ",
        "table inet filter {",
        "chain input {",
        "policy drop;",
        "-P INPUT DROP",
        "ENABLED=yes",
        "ID=",
        "VERSION_ID=",
    ])
}

pub(super) fn targets() -> Vec<Target> {
    vec![
        Target {
            name: "posture parsers: linux",
            weight: 25,
            seeds: fixtures("linux"),
            dict: dict(),
            run: Box::new(run_linux),
            note: None,
        },
        Target {
            name: "posture parsers: macos",
            weight: 25,
            seeds: fixtures("macos"),
            dict: dict(),
            run: Box::new(run_macos),
            note: None,
        },
        Target {
            name: "posture parsers: windows",
            weight: 25,
            seeds: fixtures("windows"),
            dict: dict(),
            run: Box::new(run_windows),
            note: None,
        },
    ]
}
