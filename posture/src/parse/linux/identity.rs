//! Machine identifiers: `/etc/machine-id` and the DMI serial.

use super::super::ParseError;

const MACHINE_ID: &str = "/etc/machine-id";

/// Validates `/etc/machine-id`: 32 lower-case hex characters (machine-id(5)).
/// The literal `uninitialized` (first boot) and all-zero ids are rejected.
pub fn parse_machine_id(text: &str) -> Result<String, ParseError> {
    let id = text.trim();
    if id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        if id.bytes().all(|b| b == b'0') {
            return Err(ParseError::new(MACHINE_ID, "all-zero machine id"));
        }
        return Ok(id.to_owned());
    }
    Err(ParseError::new(
        MACHINE_ID,
        format!("not a 32-hex-digit id: {id:.40}"),
    ))
}

/// Vendor placeholders that firmware leaves in serial-number fields.
const PLACEHOLDERS: &[&str] = &[
    "to be filled by o.e.m.",
    "default string",
    "system serial number",
    "not specified",
    "not applicable",
    "none",
    "n/a",
    "0",
    "0123456789",
    "123456789",
    "chassis serial number",
];

/// A hardware serial, or `None` when the field is empty or a placeholder
/// (so duplicated placeholders never pose as identities).
pub fn real_serial(text: &str) -> Option<String> {
    let serial = text.trim().trim_matches(char::from(0)).trim();
    let lower = serial.to_ascii_lowercase();
    if serial.is_empty()
        || PLACEHOLDERS.contains(&lower.as_str())
        || serial.bytes().all(|b| b == b'0' || b == b' ')
    {
        None
    } else {
        Some(serial.to_owned())
    }
}
