//! UEFI Secure Boot state on Linux.

use super::super::ParseError;

const EFIVAR: &str = "SecureBoot efivar";
const MOKUTIL: &str = "`mokutil --sb-state`";

/// Reads the `SecureBoot-8be4df61-…` efivarfs file: 4 bytes of attributes,
/// then one value byte (1 = enabled, 0 = disabled).
pub fn parse_secure_boot_efivar(bytes: &[u8]) -> Result<bool, ParseError> {
    match bytes {
        [_, _, _, _, 1] => Ok(true),
        [_, _, _, _, 0] => Ok(false),
        [_, _, _, _, other] => Err(ParseError::new(
            EFIVAR,
            format!("unexpected value byte {other}"),
        )),
        _ => Err(ParseError::new(
            EFIVAR,
            format!("expected 5 bytes, got {}", bytes.len()),
        )),
    }
}

/// What `mokutil --sb-state` said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MokutilState {
    /// `SecureBoot enabled`.
    Enabled,
    /// `SecureBoot disabled`.
    Disabled,
    /// `EFI variables are not supported on this system` (legacy BIOS boot).
    NoEfi,
}

/// Parses `mokutil --sb-state` (it may add a "SecureBoot validation is
/// disabled in shim" line, which does not change the firmware state).
pub fn parse_mokutil_sb_state(text: &str) -> Result<MokutilState, ParseError> {
    for line in text.lines().map(str::trim) {
        match line {
            "SecureBoot enabled" => return Ok(MokutilState::Enabled),
            "SecureBoot disabled" => return Ok(MokutilState::Disabled),
            l if l.starts_with("EFI variables are not supported") => {
                return Ok(MokutilState::NoEfi);
            }
            _ => {}
        }
    }
    Err(ParseError::new(
        MOKUTIL,
        "no 'SecureBoot enabled/disabled' line",
    ))
}
