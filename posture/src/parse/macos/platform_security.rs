//! Boot security and the Secure Enclave: `system_profiler SPiBridgeDataType`
//! (the T1/T2 security chip) and `sysctl -n hw.optional.arm64` (Apple
//! silicon, also true for an Intel binary running under Rosetta).
//!
//! On a T2 Mac:
//!
//! ```text
//! Controller Information:
//!
//!       Model Name: Apple T2 Security Chip
//!       Firmware Version: 20.16.4252.0.0,0
//!       Secure Boot: Full Security
//!       External Boot: Disallowed
//! ```
//!
//! An Intel Mac without a security chip prints nothing. Decisions:
//!
//! - `secure_boot`: `Secure Boot: Full Security` passes; Medium / No
//!   Security fail; an Intel Mac with no chip (or a T1, which does not
//!   verify the boot) fails with `enabled: false`. On Apple silicon, when
//!   no `Secure Boot:` line is printed, the boot policy is only readable
//!   with `bputil -d` as an admin or through MDM: `unknown`.
//! - `tpm`: every Apple silicon SoC contains the Secure Enclave; on Intel,
//!   a T1/T2 chip (which carries it) is one. Neither: `present: false`.

use crate::check::{Check, CheckId, Unknown, UnknownKind};

use super::{ParseError, clip, key_value, unexpected};

const IBRIDGE: &str = "`system_profiler SPiBridgeDataType`";
const ARM64: &str = "`sysctl -n hw.optional.arm64`";

/// What `system_profiler SPiBridgeDataType` says; both `None` when there
/// is no security chip (empty output).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IBridge {
    /// `Model Name:`, e.g. `Apple T2 Security Chip`.
    pub model_name: Option<String>,
    /// `Secure Boot:`, e.g. `Full Security`.
    pub secure_boot: Option<String>,
}

/// Parses `system_profiler SPiBridgeDataType`. Empty output is valid (no
/// chip); non-empty output without a `Model Name:` or `Secure Boot:` line
/// is an error.
pub fn parse_ibridge(text: &str) -> Result<IBridge, ParseError> {
    if text.trim().is_empty() {
        return Ok(IBridge::default());
    }
    let mut bridge = IBridge::default();
    for (key, value) in text.lines().filter_map(key_value) {
        let slot = match key {
            "Model Name" => &mut bridge.model_name,
            "Secure Boot" => &mut bridge.secure_boot,
            _ => continue,
        };
        if slot.is_none() && !value.is_empty() {
            *slot = Some(value.to_owned());
        }
    }
    if bridge == IBridge::default() {
        return Err(unexpected(
            IBRIDGE,
            "\"Model Name:\" or \"Secure Boot:\" lines",
            text,
        ));
    }
    Ok(bridge)
}

/// Parses `sysctl -n hw.optional.arm64`: `1` on Apple silicon, `0` on
/// Intel; an Intel Mac that does not know the name says `unknown oid` on
/// stderr, which also means Intel.
pub fn parse_arm64_flag(stdout: &str, stderr: &str) -> Result<bool, ParseError> {
    match stdout.trim() {
        "1" => Ok(true),
        "0" => Ok(false),
        "" if stderr.contains("unknown oid") => Ok(false),
        other => Err(ParseError::new(
            ARM64,
            format!("expected 1 or 0, got {:?}", clip(other, 40)),
        )),
    }
}

/// The `secure_boot` check under the rules in the module docs.
pub fn secure_boot_check(bridge: &IBridge, apple_silicon: bool) -> Check {
    let id = CheckId::SecureBoot;
    let remediation = "Start up in macOS Recovery, open Utilities → Startup Security Utility, and choose Full Security.";
    let chip = bridge.model_name.as_deref().unwrap_or("no security chip");
    let with_firmware = |check: Check| {
        // T2 Intel Macs boot through UEFI; Apple silicon boots through iBoot,
        // which is neither of the two firmware values.
        if apple_silicon {
            check
        } else {
            check.fact("firmware", "uefi")
        }
    };
    match (&bridge.secure_boot, apple_silicon) {
        (Some(level), _) => {
            let evidence = format!("ran {IBRIDGE}: \"Secure Boot: {level}\" ({chip})");
            if level == "Full Security" {
                with_firmware(Check::pass(id, "Secure Boot: Full Security"))
                    .fact("enabled", true)
                    .evidence(evidence)
            } else {
                with_firmware(Check::fail(id, format!("Secure Boot: {level}")))
                    .fact("enabled", false)
                    .evidence(evidence)
                    .remediation(remediation)
            }
        }
        (None, true) => Check::unknown(
            id,
            Unknown::new(
                UnknownKind::PermissionDenied,
                format!("{IBRIDGE} reports no Secure Boot policy on Apple silicon; it is readable with `bputil -d` as an admin, or through MDM"),
            ),
        )
        .evidence(format!("ran {ARM64}: 1 (Apple silicon)"))
        .remediation("IT can read the boot policy (Full / Reduced / Permissive Security) through MDM; to check locally, run `bputil -d` as an admin."),
        (None, false) if bridge.model_name.is_none() => with_firmware(Check::fail(id, "Intel Mac without a T2 chip: no Secure Boot"))
            .fact("enabled", false)
            .evidence(format!("ran {IBRIDGE}: empty (no T1/T2 security chip); {ARM64}: Intel"))
            .remediation("This Mac cannot verify its boot chain (no T2 chip); plan to replace it with a Mac with Apple silicon or a T2 chip."),
        (None, false) if chip.contains("T1") => with_firmware(Check::fail(id, "Intel Mac with a T1 chip: no Secure Boot"))
            .fact("enabled", false)
            .evidence(format!("ran {IBRIDGE}: \"Model Name: {chip}\", no Secure Boot line"))
            .remediation("This Mac cannot verify its boot chain (the T1 chip does not); plan to replace it with a Mac with Apple silicon or a T2 chip."),
        (None, false) => Check::unknown(
            id,
            Unknown::new(UnknownKind::Unparseable, format!("{IBRIDGE} names {chip:?} but prints no \"Secure Boot:\" line")),
        ),
    }
}

/// The `tpm` check: the Secure Enclave (Apple silicon, or a T1/T2 chip).
pub fn tpm_check(bridge: &IBridge, apple_silicon: bool) -> Check {
    let id = CheckId::Tpm;
    if apple_silicon {
        return Check::pass(id, "Secure Enclave (Apple silicon)")
            .fact("present", true)
            .fact("version", "Secure Enclave (Apple silicon)")
            .evidence(format!(
                "ran {ARM64}: 1 — every Apple silicon SoC contains the Secure Enclave"
            ));
    }
    match &bridge.model_name {
        Some(chip) => Check::pass(id, format!("Secure Enclave in the {chip}"))
            .fact("present", true)
            .fact("version", chip.clone())
            .evidence(format!("ran {IBRIDGE}: \"Model Name: {chip}\"")),
        None => Check::fail(id, "no Secure Enclave: Intel Mac without a T1/T2 chip")
            .fact("present", false)
            .evidence(format!("ran {IBRIDGE}: empty (no T1/T2 security chip); {ARM64}: Intel"))
            .remediation("This Mac has no Secure Enclave for hardware-bound keys; plan to replace it with a Mac with Apple silicon or a T2 chip."),
    }
}
