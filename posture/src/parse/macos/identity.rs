//! `ioreg -rd1 -c IOPlatformExpertDevice`: hardware UUID and serial number,
//! readable without admin rights.
//!
//! ```text
//! +-o MacBookPro18,3  <class IOPlatformExpertDevice, id 0x100000110, registered, matched, active, busy 0 (38 ms), retain 37>
//!     {
//!       "IOPlatformSerialNumber" = "C02ZK0XXMD6T"
//!       "IOPlatformUUID" = "5D1D8E2A-3B8C-4F63-9A2E-7C0E1B4F9A10"
//!       "model" = <"MacBookPro18,3">
//!     }
//! ```
//!
//! The UUID (the "Hardware UUID" of System Information) is the machine id;
//! virtual machines and repaired logic boards can carry placeholder serials,
//! which become `null` rather than a shared, meaningless identifier.

use crate::check::{Check, CheckId};

use super::{ParseError, clip, unexpected};

const SOURCE: &str = "`ioreg -rd1 -c IOPlatformExpertDevice`";

/// The identifiers read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformIdentity {
    /// `IOPlatformUUID`, upper-case as printed.
    pub uuid: String,
    /// `IOPlatformSerialNumber` as printed, when present.
    pub raw_serial: Option<String>,
}

impl PlatformIdentity {
    /// The serial, unless it is missing or a placeholder.
    pub fn serial(&self) -> Option<&str> {
        self.raw_serial
            .as_deref()
            .filter(|s| !is_placeholder_serial(s))
    }
}

/// Parses the `ioreg` property lines. A well-formed `IOPlatformUUID` is
/// required; the serial is optional.
pub fn parse_ioreg_platform(text: &str) -> Result<PlatformIdentity, ParseError> {
    let mut uuid = None;
    let mut serial = None;
    for (key, value) in text.lines().filter_map(quoted_property) {
        match key {
            "IOPlatformUUID" if uuid.is_none() => uuid = Some(value),
            "IOPlatformSerialNumber" if serial.is_none() => serial = Some(value),
            _ => {}
        }
    }
    let uuid = uuid.ok_or_else(|| unexpected(SOURCE, "an \"IOPlatformUUID\" property", text))?;
    if !is_uuid(uuid) {
        return Err(ParseError::new(
            SOURCE,
            format!("IOPlatformUUID {:?} is not a UUID", clip(uuid, 40)),
        ));
    }
    Ok(PlatformIdentity {
        uuid: uuid.to_owned(),
        raw_serial: serial.map(str::to_owned),
    })
}

/// `"Key" = "value"` → `(Key, value)`; other value kinds (`<…>`, numbers)
/// are not needed and give `None`.
fn quoted_property(line: &str) -> Option<(&str, &str)> {
    let rest = line.trim().strip_prefix('"')?;
    let (key, rest) = rest.split_once("\" = \"")?;
    let value = rest.strip_suffix('"')?;
    Some((key, value))
}

/// 8-4-4-4-12 hexadecimal digits.
fn is_uuid(text: &str) -> bool {
    text.len() == 36
        && text.chars().enumerate().all(|(i, c)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                c == '-'
            } else {
                c.is_ascii_hexdigit()
            }
        })
}

/// Serials that do not identify a machine: empty, all one character
/// (`0`, `000000000000`), or a firmware placeholder text.
pub fn is_placeholder_serial(serial: &str) -> bool {
    let serial = serial.trim();
    let mut chars = serial.chars();
    let Some(first) = chars.next() else {
        return true;
    };
    if chars.all(|c| c == first) {
        return true;
    }
    let lower = serial.to_ascii_lowercase();
    [
        "not available",
        "not specified",
        "to be filled by o.e.m.",
        "system serial#",
        "default string",
        "none",
        "unknown",
    ]
    .contains(&lower.as_str())
}

/// The `device_identity` check: pass when the hardware UUID was read.
pub fn device_identity_check(identity: &PlatformIdentity) -> Check {
    let serial_evidence = match (&identity.raw_serial, identity.serial()) {
        (_, Some(_)) => "IOPlatformSerialNumber read".to_owned(),
        (Some(raw), None) => format!(
            "IOPlatformSerialNumber is a placeholder ({:?})",
            clip(raw, 40)
        ),
        (None, None) => "no IOPlatformSerialNumber property".to_owned(),
    };
    Check::pass(
        CheckId::DeviceIdentity,
        format!(
            "hardware UUID {}…",
            identity.uuid.get(..8).unwrap_or(&identity.uuid)
        ),
    )
    .fact("machine_id", identity.uuid.clone())
    .fact("serial", identity.serial().map(str::to_owned))
    .evidence(format!(
        "ran {SOURCE}: IOPlatformUUID {:?}; {serial_evidence}",
        identity.uuid
    ))
}
