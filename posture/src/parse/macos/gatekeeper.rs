//! `spctl --status`: Gatekeeper.
//!
//! It prints `assessments enabled` or `assessments disabled` (and exits
//! non-zero when disabled, so the collector reads the text, not the exit
//! code).

use crate::check::{Check, CheckId};

use super::{ParseError, unexpected};

const SOURCE: &str = "`spctl --status`";

/// Parses `spctl --status`: `true` when assessments are enabled. Both or
/// neither of the two lines is an error.
pub fn parse_spctl_status(text: &str) -> Result<bool, ParseError> {
    let mut enabled = false;
    let mut disabled = false;
    for line in text.lines().map(str::trim) {
        match line {
            "assessments enabled" => enabled = true,
            "assessments disabled" => disabled = true,
            _ => {}
        }
    }
    match (enabled, disabled) {
        (true, false) => Ok(true),
        (false, true) => Ok(false),
        _ => Err(unexpected(
            SOURCE,
            "exactly one of \"assessments enabled\" / \"assessments disabled\"",
            text,
        )),
    }
}

/// The `gatekeeper` check.
pub fn gatekeeper_check(enabled: bool) -> Check {
    let id = CheckId::Gatekeeper;
    if enabled {
        Check::pass(id, "Gatekeeper is on")
            .fact("enabled", true)
            .evidence(format!("ran {SOURCE}: \"assessments enabled\""))
    } else {
        Check::fail(id, "Gatekeeper is off: unsigned apps run without a check")
            .fact("enabled", false)
            .evidence(format!("ran {SOURCE}: \"assessments disabled\""))
            .remediation("Turn Gatekeeper back on: run `sudo spctl --global-enable` (before macOS 15: `sudo spctl --master-enable`), then in System Settings → Privacy & Security allow apps from the App Store and identified developers.")
    }
}
