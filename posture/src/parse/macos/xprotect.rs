//! XProtect, the anti-malware built into macOS: its signature version and
//! age.
//!
//! The version is `CFBundleShortVersionString` of `XProtect.bundle`'s
//! Info.plist, read with `defaults read <Info.plist> CFBundleShortVersionString`
//! (prints e.g. `5287`). The bundle moved in macOS 15, and the old copy may
//! linger there, so the collector reads the 15+ location first:
//!
//! - macOS 15+: `/var/protected/xprotect/XProtect.bundle`
//! - macOS 14 and earlier: `/Library/Apple/System/Library/CoreServices/XProtect.bundle`
//!
//! The age is taken from the modification time of that Info.plist: the
//! bundle is replaced whole on every signature update.
//!
//! XProtect is part of the OS, protected by SIP and started on demand (when
//! a file is opened or a scan is scheduled); there is no resident process
//! whose presence would prove it "running", so the `running` fact is left
//! out rather than guessed.

use time::OffsetDateTime;

use crate::check::{Check, CheckId};

use super::{ParseError, clip, unexpected};

const SOURCE: &str =
    "`defaults read …/XProtect.bundle/Contents/Info.plist CFBundleShortVersionString`";

/// Where the bundle's Info.plist is, newest macOS first.
pub const INFO_PLISTS: [&str; 2] = [
    "/var/protected/xprotect/XProtect.bundle/Contents/Info.plist",
    "/Library/Apple/System/Library/CoreServices/XProtect.bundle/Contents/Info.plist",
];

/// Parses the version printed by `defaults read`: digits and dots only.
pub fn parse_xprotect_version(text: &str) -> Result<String, ParseError> {
    let trimmed = text.trim();
    let well_formed = !trimmed.is_empty()
        && trimmed.len() <= 20
        && trimmed.chars().all(|c| c.is_ascii_digit() || c == '.')
        && trimmed.chars().next().is_some_and(|c| c.is_ascii_digit());
    if !well_formed {
        return Err(match trimmed.lines().count() {
            0 | 1 => ParseError::new(
                SOURCE,
                format!("expected a version like 5287, got {:?}", clip(trimmed, 40)),
            ),
            _ => unexpected(SOURCE, "a version on one line", text),
        });
    }
    Ok(trimmed.to_owned())
}

/// Whole days from `installed_at` to `now`; a time in the future (clock
/// skew) counts as 0.
pub fn signature_age_days(installed_at: OffsetDateTime, now: OffsetDateTime) -> i64 {
    (now - installed_at).whole_days().max(0)
}

/// The `antivirus` check for XProtect: present with a readable version
/// passes; `signature_age_days` is set when the install time is known, and
/// the policy decides how old is too old.
pub fn antivirus_check(
    version: &str,
    info_plist: &str,
    installed_at: Option<OffsetDateTime>,
    now: OffsetDateTime,
) -> Check {
    let age = installed_at.map(|at| signature_age_days(at, now));
    let summary = match age {
        Some(days) => format!("XProtect {version}, signatures {days} day(s) old"),
        None => format!("XProtect {version}"),
    };
    let check = Check::pass(CheckId::Antivirus, summary)
        .fact("present", true)
        .fact("product", "XProtect")
        .evidence(format!(
            "ran `defaults read {info_plist} CFBundleShortVersionString`: {version}"
        ))
        .evidence("XProtect is built into macOS and runs on demand; no process to observe, so `running` is not reported");
    match (installed_at, age) {
        (Some(at), Some(days)) => check.fact("signature_age_days", days).evidence(format!(
            "{info_plist} last modified {} ({days} day(s) ago)",
            at.format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default()
        )),
        _ => check.evidence(format!(
            "modification time of {info_plist} not readable: signature age unknown"
        )),
    }
}
