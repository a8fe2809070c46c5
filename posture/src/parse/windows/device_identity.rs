//! Machine identifiers readable without admin rights:
//! - `MachineGuid` from `reg query HKLM\SOFTWARE\Microsoft\Cryptography /v
//!   MachineGuid` (created at setup; duplicated on un-sysprepped clones);
//! - the BIOS serial number from `Win32_BIOS.SerialNumber`, or null when the
//!   vendor left a placeholder ("To Be Filled By O.E.M.", "Default string",
//!   "System Serial Number", "0", …), which would make many machines look
//!   like one.

use crate::check::{Check, CheckId, Unknown};
use crate::parse::ParseError;

use super::registry::parse_reg_query;
use super::{CommandLine, Seen};

const GUID_SOURCE: &str = "`reg query HKLM\\SOFTWARE\\Microsoft\\Cryptography /v MachineGuid`";
const SERIAL_SOURCE: &str = "`Win32_BIOS.SerialNumber`";

/// Serial numbers vendors ship instead of a real one (compared ignoring
/// case and surrounding space).
const PLACEHOLDER_SERIALS: [&str; 16] = [
    "To Be Filled By O.E.M.",
    "Default string",
    "System Serial Number",
    "Chassis Serial Number",
    "Not Specified",
    "Not Applicable",
    "None",
    "N/A",
    "NA",
    "Unknown",
    "Invalid",
    "Serial",
    "SerialNumber",
    "0123456789",
    "123456789",
    "1234567890",
];

const SERIAL_SCRIPT: &str =
    "$ErrorActionPreference = 'Stop'; (Get-CimInstance -ClassName Win32_BIOS).SerialNumber";

/// The MachineGuid command.
pub fn guid_command() -> CommandLine {
    CommandLine::reg_query_value(r"HKLM\SOFTWARE\Microsoft\Cryptography", "MachineGuid")
}

/// The BIOS serial command.
pub fn serial_command() -> CommandLine {
    CommandLine::powershell(SERIAL_SCRIPT)
}

/// Parses the MachineGuid query; the value must be a GUID
/// (`8-4-4-4-12` hex digits), returned in lower case.
pub fn parse_machine_guid(text: &str) -> Result<Seen<String>, ParseError> {
    let key = parse_reg_query(text, GUID_SOURCE)?;
    let value = key
        .value("MachineGuid")
        .ok_or_else(|| ParseError::new(GUID_SOURCE, "no MachineGuid value"))?;
    let guid = value.data.trim().trim_matches(|c| c == '{' || c == '}');
    if !is_guid(guid) {
        return Err(ParseError::new(
            GUID_SOURCE,
            format!("not a GUID: {:?}", value.data),
        ));
    }
    Ok(Seen::new(guid.to_ascii_lowercase(), &value.line))
}

fn is_guid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(group, len)| group.len() == len && group.chars().all(|c| c.is_ascii_hexdigit()))
}

/// What `Win32_BIOS.SerialNumber` held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Serial {
    /// A real-looking serial number.
    Real(Seen<String>),
    /// A vendor placeholder (reported as null).
    Placeholder(Seen<String>),
    /// Nothing (empty output).
    Missing,
}

impl Serial {
    /// The serial for the `serial` fact: `None` unless it is real.
    pub fn value(&self) -> Option<&str> {
        match self {
            Serial::Real(seen) => Some(&seen.value),
            _ => None,
        }
    }
}

/// Parses the serial script output: one line with the serial, or nothing.
/// More than one non-empty line is not what the property prints.
pub fn parse_bios_serial(text: &str) -> Result<Serial, ParseError> {
    let mut lines = text.lines().map(str::trim).filter(|line| !line.is_empty());
    let Some(line) = lines.next() else {
        return Ok(Serial::Missing);
    };
    if lines.next().is_some() {
        return Err(ParseError::new(SERIAL_SOURCE, "more than one line"));
    }
    Ok(if is_placeholder(line) {
        Serial::Placeholder(Seen::new(line.to_owned(), line))
    } else {
        Serial::Real(Seen::new(line.to_owned(), line))
    })
}

/// Known placeholders, and serials made of one repeated character
/// (`0`, `00000000`, `xxxxxxxx`, `........`).
pub fn is_placeholder(serial: &str) -> bool {
    let serial = serial.trim();
    let mut chars = serial.chars();
    let repeated = chars
        .next()
        .is_none_or(|first| serial.chars().all(|c| c == first));
    repeated
        || PLACEHOLDER_SERIALS
            .iter()
            .any(|placeholder| placeholder.eq_ignore_ascii_case(serial))
}

/// The `device_identity` check: pass when the MachineGuid was read; the
/// serial is a fact that may be null.
pub fn device_identity_check(
    guid: &Result<Seen<String>, Unknown>,
    serial: &Result<Serial, Unknown>,
) -> Check {
    let serial_fact = serial
        .as_ref()
        .ok()
        .and_then(Serial::value)
        .map(str::to_owned);
    let serial_evidence = match serial {
        Ok(Serial::Real(seen)) => serial_command().evidence(&seen.line),
        Ok(Serial::Placeholder(seen)) => serial_command().evidence_note(&format!(
            "\"{}\" is a vendor placeholder, reported as null",
            seen.line
        )),
        Ok(Serial::Missing) => serial_command().evidence_note("empty"),
        Err(reason) => serial_command().evidence_note(&format!("failed ({reason})")),
    };
    let check = match guid {
        Ok(guid) => Check::pass(
            CheckId::DeviceIdentity,
            format!("MachineGuid {}", guid.value),
        )
        .fact("machine_id", guid.value.clone())
        .evidence(guid_command().evidence(&guid.line)),
        Err(reason) => Check::unknown(CheckId::DeviceIdentity, reason.clone())
            .evidence(guid_command().evidence_note("no usable output"))
            .remediation(
                "The machine identifier could not be read from the registry \
                 (HKLM\\SOFTWARE\\Microsoft\\Cryptography MachineGuid); contact IT.",
            ),
    };
    check
        .fact(
            "serial",
            serial_fact.map_or(serde_json::Value::Null, serde_json::Value::String),
        )
        .evidence(serial_evidence)
}
