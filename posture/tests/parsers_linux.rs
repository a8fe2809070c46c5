//! Linux parsers against captured and reconstructed outputs (provenance in
//! each fixture folder's README.md), plus no-panic properties.

// Fixture loaders below panic on a missing file by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use posture::parse::linux::{
    apt, block, dnf, firewall, gsettings, identity, os_release, realm, secure_boot,
};
use proptest::prelude::*;

macro_rules! fixture {
    ($path:literal) => {
        include_str!(concat!("fixtures/linux/", $path))
    };
}

// ---- os-release ----

#[test]
fn os_release_debian_captured_here() {
    let release = os_release::parse_os_release(fixture!("os_release/debian12.txt")).unwrap();
    assert_eq!(release.id, "debian");
    assert_eq!(release.name, "Debian GNU/Linux");
    assert_eq!(release.version_id.as_deref(), Some("12"));
    assert_eq!(release.version_parts(), vec![12]);
    assert_eq!(release.codename.as_deref(), Some("bookworm"));
}

#[test]
fn os_release_ubuntu_point_release() {
    let release = os_release::parse_os_release(fixture!("os_release/ubuntu2204.txt")).unwrap();
    assert_eq!(release.id, "ubuntu");
    assert_eq!(release.id_like, vec!["debian"]);
    assert_eq!(release.version_parts(), vec![22, 4]);
}

#[test]
fn os_release_rolling_has_no_version() {
    let release = os_release::parse_os_release(fixture!("os_release/arch_rolling.txt")).unwrap();
    assert_eq!(release.id, "arch");
    assert_eq!(release.version_id, None);
    assert!(release.version_parts().is_empty());
}

#[test]
fn os_release_quoting_and_escapes() {
    let release = os_release::parse_os_release(fixture!("os_release/quoted_odd.txt")).unwrap();
    assert_eq!(release.name, r#"My "Distro""#);
    assert_eq!(release.pretty_name.as_deref(), Some(r#"My "Distro" 3.1"#));
    assert_eq!(release.version_parts(), vec![3, 1]);
}

#[test]
fn os_release_garbage_is_an_error() {
    assert!(os_release::parse_os_release(fixture!("os_release/garbage.txt")).is_err());
}

// ---- apt-get -s upgrade ----

#[test]
fn apt_simulate_captured_debian_counts_security_and_skips_conf() {
    let plan = apt::parse_apt_simulate(fixture!("apt_simulate/debian12_pending.txt")).unwrap();
    assert_eq!(plan.packages.len(), 80);
    assert_eq!(plan.security().count(), 20);
    let gnutls = plan
        .packages
        .iter()
        .find(|p| p.name == "libgnutls28-dev")
        .unwrap();
    assert_eq!(gnutls.candidate, "3.7.9-2+deb12u7");
    assert!(gnutls.security);
    let base = plan
        .packages
        .iter()
        .find(|p| p.name == "base-files")
        .unwrap();
    assert!(
        !base.security,
        "oldstable point release is not a security origin"
    );
}

#[test]
fn apt_simulate_nothing_pending() {
    let plan = apt::parse_apt_simulate(fixture!("apt_simulate/debian12_none.txt")).unwrap();
    assert!(plan.packages.is_empty());
}

#[test]
fn apt_simulate_ubuntu_security_origin() {
    let plan = apt::parse_apt_simulate(fixture!("apt_simulate/ubuntu_security.txt")).unwrap();
    let security: Vec<&str> = plan.security().map(|p| p.name.as_str()).collect();
    assert_eq!(security, vec!["libruby3.0", "ruby3.0"]);
    assert_eq!(plan.packages.len(), 3);
}

#[test]
fn apt_simulate_cut_off_or_failed_output_is_an_error() {
    let err = apt::parse_apt_simulate(fixture!("apt_simulate/truncated.txt")).unwrap_err();
    assert!(err.detail.contains("cut off"), "{err}");
    assert!(apt::parse_apt_simulate(fixture!("apt_simulate/error_only.txt")).is_err());
}

// ---- apt history ----

#[test]
fn apt_history_last_upgrade_captured_here() {
    let last = apt::parse_apt_history_last_upgrade(fixture!("apt_history/debian12.log"))
        .unwrap()
        .unwrap();
    assert_eq!(last.to_string(), "2026-09-22 4:48:20.0");
}

#[test]
fn apt_history_without_upgrades_is_none() {
    let last =
        apt::parse_apt_history_last_upgrade(fixture!("apt_history/installs_only.log")).unwrap();
    assert_eq!(last, None);
}

#[test]
fn apt_history_single_space_and_unreadable_dates() {
    let last =
        apt::parse_apt_history_last_upgrade(fixture!("apt_history/odd_spacing_and_garbage.log"))
            .unwrap()
            .unwrap();
    assert_eq!(last.to_string(), "2026-01-02 3:04:05.0");
    assert!(apt::parse_apt_history_last_upgrade(fixture!("apt_history/garbage.log")).is_err());
}

// ---- dnf ----

#[test]
fn dnf_security_advisories() {
    let advisories = dnf::parse_dnf_security(fixture!("dnf_security/fedora_pending.txt")).unwrap();
    assert_eq!(advisories.len(), 3);
    assert_eq!(advisories[2].severity, "Important/Sec.");
    assert!(
        dnf::parse_dnf_security(fixture!("dnf_security/none.txt"))
            .unwrap()
            .is_empty()
    );
    assert!(dnf::parse_dnf_security(fixture!("dnf_security/metadata_error.txt")).is_err());
}

// ---- block devices ----

#[test]
fn root_mount_captured_here_is_a_block_device() {
    let root = block::parse_root_mount(fixture!("mountinfo/vm_ext4.txt")).unwrap();
    assert_eq!(root.source, "/dev/vda");
    assert_eq!(root.fstype, "ext4");
    assert!(root.is_block_device());
}

#[test]
fn root_mount_on_lvm_container_and_escapes() {
    let lvm = block::parse_root_mount(fixture!("mountinfo/luks_lvm.txt")).unwrap();
    assert_eq!(lvm.source, "/dev/mapper/vgubuntu-root");
    let overlay = block::parse_root_mount(fixture!("mountinfo/container_overlay.txt")).unwrap();
    assert!(!overlay.is_block_device());
    let shadowed = block::parse_root_mount(fixture!("mountinfo/escaped_and_shadowed.txt")).unwrap();
    assert_eq!(shadowed.source, "/dev/disk with space");
    assert_eq!(shadowed.fstype, "btrfs");
    assert!(block::parse_root_mount(fixture!("mountinfo/garbage.txt")).is_err());
}

#[test]
fn lsblk_chains() {
    let plain = block::parse_lsblk_chain(fixture!("lsblk/vm_plain.txt")).unwrap();
    assert_eq!(plain.len(), 1);
    assert!(plain.iter().all(|n| n.kind != "crypt"));

    let luks = block::parse_lsblk_chain(fixture!("lsblk/lvm_on_luks.txt")).unwrap();
    let crypt = luks.iter().find(|n| n.kind == "crypt").unwrap();
    assert_eq!(crypt.kname.as_deref(), Some("dm-0"));

    let reference = block::parse_lsblk_chain(fixture!("lsblk/reference_two_columns.txt")).unwrap();
    assert_eq!(reference.len(), 4);
    assert_eq!(reference[1].kname, None);

    assert!(block::parse_lsblk_chain(fixture!("lsblk/error.txt")).is_err());
}

#[test]
fn dm_uuid_kinds() {
    use block::DmKind;
    assert_eq!(
        block::classify_dm_uuid("CRYPT-LUKS2-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-ctest1\n"),
        DmKind::Luks2
    );
    assert_eq!(block::classify_dm_uuid("CRYPT-LUKS1-0123-x"), DmKind::Luks1);
    assert_eq!(block::classify_dm_uuid("CRYPT-PLAIN-swap"), DmKind::Plain);
    assert_eq!(
        block::classify_dm_uuid("CRYPT-BITLK-abc"),
        DmKind::OtherCrypt
    );
    assert_eq!(
        block::classify_dm_uuid("CRYPT-VERITY-abc-root"),
        DmKind::Verity
    );
    assert_eq!(block::classify_dm_uuid("LVM-Wq3…"), DmKind::Other);
}

// ---- Secure Boot ----

#[test]
fn secure_boot_efivar_bytes() {
    let on = include_bytes!("fixtures/linux/secure_boot/efivar_on.bin");
    let off = include_bytes!("fixtures/linux/secure_boot/efivar_off.bin");
    let short = include_bytes!("fixtures/linux/secure_boot/efivar_short.bin");
    assert!(secure_boot::parse_secure_boot_efivar(on).unwrap());
    assert!(!secure_boot::parse_secure_boot_efivar(off).unwrap());
    assert!(secure_boot::parse_secure_boot_efivar(short).is_err());
}

#[test]
fn mokutil_states() {
    use secure_boot::MokutilState::*;
    let parse = secure_boot::parse_mokutil_sb_state;
    assert_eq!(
        parse(fixture!("secure_boot/mokutil_enabled.txt")).unwrap(),
        Enabled
    );
    assert_eq!(
        parse(fixture!("secure_boot/mokutil_disabled.txt")).unwrap(),
        Disabled
    );
    assert_eq!(
        parse(fixture!("secure_boot/mokutil_no_efi.txt")).unwrap(),
        NoEfi
    );
    assert_eq!(
        parse(fixture!("secure_boot/mokutil_shim_validation_off.txt")).unwrap(),
        Enabled
    );
    assert!(parse("garbage").is_err());
}

// ---- firewall ----

#[test]
fn nft_policy_drop_filters() {
    let ruleset = firewall::parse_nft_ruleset(fixture!("nft/policy_drop.txt")).unwrap();
    assert_eq!(
        ruleset.input_chains.len(),
        1,
        "forward/output chains are not input"
    );
    assert_eq!(ruleset.input_chains[0].name, "inet filter/input");
    assert_eq!(ruleset.input_chains[0].rules, 3);
    assert!(ruleset.filters_inbound());
}

#[test]
fn nft_accept_everything_does_not_filter() {
    for text in [
        fixture!("nft/accept_only.txt"),
        fixture!("nft/accept_with_conditional_drops.txt"),
        fixture!("nft/empty.txt"),
    ] {
        let ruleset = firewall::parse_nft_ruleset(text).unwrap();
        assert!(!ruleset.filters_inbound(), "{text}");
    }
}

#[test]
fn nft_firewalld_style_reject_at_end_filters() {
    let ruleset = firewall::parse_nft_ruleset(fixture!("nft/firewalld_reject_at_end.txt")).unwrap();
    assert_eq!(ruleset.input_chains.len(), 1);
    assert_eq!(ruleset.input_chains[0].policy, "accept");
    assert!(ruleset.input_chains[0].ends_in_drop);
    assert!(ruleset.filters_inbound());
}

#[test]
fn nft_truncated_is_an_error() {
    assert!(firewall::parse_nft_ruleset(fixture!("nft/truncated.txt")).is_err());
    assert!(firewall::parse_nft_ruleset("Error: syntax error\n").is_err());
}

#[test]
fn iptables_rulesets() {
    let parse = firewall::parse_iptables_rules;
    assert!(
        parse(fixture!("iptables/policy_drop.txt"))
            .unwrap()
            .filters_inbound()
    );
    assert!(
        !parse(fixture!("iptables/accept_only.txt"))
            .unwrap()
            .filters_inbound()
    );
    assert!(
        parse(fixture!("iptables/reject_at_end.txt"))
            .unwrap()
            .filters_inbound()
    );
    assert!(parse(fixture!("iptables/permission_error.txt")).is_err());
}

#[test]
fn ufw_conf() {
    assert_eq!(
        firewall::parse_ufw_enabled(fixture!("ufw/enabled.conf")),
        Some(true)
    );
    assert_eq!(
        firewall::parse_ufw_enabled(fixture!("ufw/disabled.conf")),
        Some(false)
    );
    assert_eq!(
        firewall::parse_ufw_enabled(fixture!("ufw/commented.conf")),
        None
    );
}

// ---- screen lock ----

#[test]
fn gsettings_values_and_lock_timeout() {
    assert!(gsettings::parse_gsettings_bool(fixture!("gsettings/bool_true.txt")).unwrap());
    assert!(!gsettings::parse_gsettings_bool(fixture!("gsettings/bool_false.txt")).unwrap());
    assert_eq!(
        gsettings::parse_gsettings_uint(fixture!("gsettings/uint_300.txt")).unwrap(),
        300
    );
    assert_eq!(
        gsettings::parse_gsettings_uint(fixture!("gsettings/uint_0.txt")).unwrap(),
        0
    );
    assert!(gsettings::parse_gsettings_bool(fixture!("gsettings/no_schema.txt")).is_err());
    assert!(gsettings::parse_gsettings_uint(fixture!("gsettings/no_schema.txt")).is_err());

    let lock = |lock_enabled, idle_delay, lock_delay| gsettings::GnomeLock {
        lock_enabled,
        idle_delay,
        lock_delay,
    };
    assert_eq!(lock(true, 300, 30).timeout_seconds(), Some(330));
    assert_eq!(
        lock(true, 0, 0).timeout_seconds(),
        None,
        "never idle = never locks"
    );
    assert_eq!(lock(false, 300, 0).timeout_seconds(), None);
}

// ---- identity ----

#[test]
fn machine_ids() {
    assert_eq!(
        identity::parse_machine_id(fixture!("machine_id/valid.txt")).unwrap(),
        "3d1219c7c4c5404aaa1f6d2a48adfda4"
    );
    for bad in [
        fixture!("machine_id/uninitialized.txt"),
        fixture!("machine_id/zeros.txt"),
        fixture!("machine_id/uppercase.txt"),
    ] {
        assert!(identity::parse_machine_id(bad).is_err(), "{bad}");
    }
}

#[test]
fn serial_placeholders_are_not_identities() {
    assert_eq!(
        identity::real_serial("PF3ABCDE\n").as_deref(),
        Some("PF3ABCDE")
    );
    for placeholder in [
        "To Be Filled By O.E.M.\n",
        "Default string",
        "System Serial Number",
        "0",
        "   ",
        "0000000",
    ] {
        assert_eq!(identity::real_serial(placeholder), None, "{placeholder:?}");
    }
}

// ---- realm ----

#[test]
fn realm_membership() {
    let joined = realm::parse_realm_list(fixture!("realm/joined.txt"));
    assert_eq!(joined.len(), 1);
    assert!(joined[0].joined());
    assert_eq!(joined[0].name, "corp.example.com");
    let discovered = realm::parse_realm_list(fixture!("realm/discovered_not_joined.txt"));
    assert!(!discovered[0].joined());
    assert!(realm::parse_realm_list(fixture!("realm/none.txt")).is_empty());
}

// ---- no parser panics, whatever it is fed ----

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn parsers_never_panic_on_arbitrary_text(text in "\\PC{0,400}") {
        let _ = os_release::parse_os_release(&text);
        let _ = apt::parse_apt_simulate(&text);
        let _ = apt::parse_apt_history_last_upgrade(&text);
        let _ = dnf::parse_dnf_security(&text);
        let _ = block::parse_root_mount(&text);
        let _ = block::parse_lsblk_chain(&text);
        let _ = block::classify_dm_uuid(&text);
        let _ = secure_boot::parse_mokutil_sb_state(&text);
        let _ = secure_boot::parse_secure_boot_efivar(text.as_bytes());
        let _ = firewall::parse_nft_ruleset(&text);
        let _ = firewall::parse_iptables_rules(&text);
        let _ = firewall::parse_ufw_enabled(&text);
        let _ = gsettings::parse_gsettings_bool(&text);
        let _ = gsettings::parse_gsettings_uint(&text);
        let _ = identity::parse_machine_id(&text);
        let _ = identity::real_serial(&text);
        let _ = realm::parse_realm_list(&text);
    }

    #[test]
    fn parsers_never_panic_on_mutated_fixtures(
        which in 0usize..6,
        cut in 0usize..4000,
        noise in "[ -~\\t\\[\\]\\(\\){};=\\\\]{0,40}",
    ) {
        let base = [
            fixture!("apt_simulate/debian12_pending.txt"),
            fixture!("nft/policy_drop.txt"),
            fixture!("mountinfo/vm_ext4.txt"),
            fixture!("apt_history/debian12.log"),
            fixture!("os_release/debian12.txt"),
            fixture!("iptables/reject_at_end.txt"),
        ][which];
        let mut at = cut.min(base.len());
        while !base.is_char_boundary(at) {
            at -= 1;
        }
        let text = format!("{}{}\n{}", &base[..at], noise, &base[at..]);
        let _ = apt::parse_apt_simulate(&text);
        let _ = apt::parse_apt_history_last_upgrade(&text);
        let _ = firewall::parse_nft_ruleset(&text);
        let _ = firewall::parse_iptables_rules(&text);
        let _ = block::parse_root_mount(&text);
        let _ = os_release::parse_os_release(&text);
    }

    #[test]
    fn efivar_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..16)) {
        let _ = secure_boot::parse_secure_boot_efivar(&bytes);
    }
}
