//! UEFI Secure Boot from
//! `reg query HKLM\SYSTEM\CurrentControlSet\Control\SecureBoot\State /v UEFISecureBootEnabled`
//! (REG_DWORD 1 = on, 0 = off; readable without admin, unlike
//! `Confirm-SecureBootUEFI`).
//!
//! On a legacy-BIOS boot the value may not exist at all. Windows exposes the
//! firmware type in the `firmware_type` environment variable (`UEFI` /
//! `Legacy`), which turns "value absent" into a measured fail on BIOS;
//! without it, an absent value stays `unknown`.

use crate::check::{Check, CheckId, Unknown, UnknownKind};
use crate::parse::ParseError;

use super::registry::parse_reg_query;
use super::{CommandLine, Seen};

const SOURCE_NAME: &str = "`reg query …\\SecureBoot\\State /v UEFISecureBootEnabled`";

/// The command the collector runs.
pub fn command() -> CommandLine {
    CommandLine::reg_query_value(
        r"HKLM\SYSTEM\CurrentControlSet\Control\SecureBoot\State",
        "UEFISecureBootEnabled",
    )
}

/// How the machine booted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firmware {
    /// UEFI boot.
    Uefi,
    /// Legacy BIOS (or CSM) boot: Secure Boot cannot be on.
    Bios,
}

impl Firmware {
    /// The `firmware_type` value Windows sets for it.
    pub fn env_value(self) -> &'static str {
        match self {
            Firmware::Uefi => "UEFI",
            Firmware::Bios => "Legacy",
        }
    }

    /// The `firmware` fact value.
    pub fn as_str(self) -> &'static str {
        match self {
            Firmware::Uefi => "uefi",
            Firmware::Bios => "bios",
        }
    }
}

/// The `firmware_type` environment variable (`UEFI`, `Legacy`).
pub fn parse_firmware_type(value: &str) -> Option<Firmware> {
    match value.trim().to_ascii_lowercase().as_str() {
        "uefi" => Some(Firmware::Uefi),
        "legacy" | "bios" => Some(Firmware::Bios),
        _ => None,
    }
}

/// Parses the `reg query … /v UEFISecureBootEnabled` output.
pub fn parse_secure_boot(text: &str) -> Result<Seen<bool>, ParseError> {
    let key = parse_reg_query(text, SOURCE_NAME)?;
    let value = key
        .value("UEFISecureBootEnabled")
        .ok_or_else(|| ParseError::new(SOURCE_NAME, "no UEFISecureBootEnabled value"))?;
    match value.number() {
        Some(0) => Ok(Seen::new(false, &value.line)),
        Some(1) => Ok(Seen::new(true, &value.line)),
        _ => Err(ParseError::new(
            SOURCE_NAME,
            format!("not 0x0 or 0x1: {:?}", value.line),
        )),
    }
}

/// The `secure_boot` check. `state` is `None` when the registry value does
/// not exist; `firmware` is `None` when the firmware type is not known.
pub fn secure_boot_check(state: Option<&Seen<bool>>, firmware: Option<Firmware>) -> Check {
    let cmd = command();
    let remediation = "Turn on Secure Boot in the PC's UEFI firmware settings (Settings > System > \
                       Recovery > Advanced startup > Restart now > Troubleshoot > Advanced options > \
                       UEFI Firmware Settings). Ask IT first if the disk is encrypted: BitLocker may \
                       ask for its recovery key.";
    let check = match (state, firmware) {
        (Some(seen), firmware) => {
            let firmware = firmware.unwrap_or(Firmware::Uefi);
            let check = if seen.value {
                Check::pass(CheckId::SecureBoot, "UEFI Secure Boot is on")
            } else {
                Check::fail(CheckId::SecureBoot, "UEFI Secure Boot is off").remediation(remediation)
            };
            check
                .fact("enabled", seen.value)
                .fact("firmware", firmware.as_str())
                .evidence(cmd.evidence(&seen.line))
        }
        (None, Some(Firmware::Bios)) => Check::fail(
            CheckId::SecureBoot,
            "the PC boots in legacy BIOS mode, so Secure Boot is not available",
        )
        .fact("enabled", false)
        .fact("firmware", Firmware::Bios.as_str())
        .evidence(cmd.evidence_note("value absent"))
        .remediation(
            "The PC starts in legacy BIOS (CSM) mode. IT can convert the disk to GPT (mbr2gpt) and \
             switch the firmware to UEFI with Secure Boot; contact IT.",
        ),
        (None, firmware) => {
            let check = Check::unknown(
                CheckId::SecureBoot,
                Unknown::new(
                    UnknownKind::SourceMissing,
                    if firmware.is_some() {
                        "the PC boots with UEFI but UEFISecureBootEnabled is not in the registry"
                    } else {
                        "UEFISecureBootEnabled is not in the registry and the firmware type is not known"
                    },
                ),
            )
            .evidence(cmd.evidence_note("value absent"))
            .remediation("Run `msinfo32` and check \"Secure Boot State\"; contact IT if it is not \"On\".");
            match firmware {
                Some(firmware) => check.fact("firmware", firmware.as_str()),
                None => check,
            }
        }
    };
    match firmware {
        Some(firmware) => check.evidence(format!(
            "environment firmware_type: {}",
            firmware.env_value()
        )),
        None => check,
    }
}

/// The `secure_boot` check when the registry could not be read.
pub fn secure_boot_unknown(reason: Unknown) -> Check {
    Check::unknown(CheckId::SecureBoot, reason)
        .evidence(command().evidence_note("no usable output"))
        .remediation(
            "Run `msinfo32` and check \"Secure Boot State\"; contact IT if it is not \"On\".",
        )
}
