//! Software Update: when it last ran, what is pending, and whether a pending
//! update needs a restart.
//!
//! **Last update.** `defaults read /Library/Preferences/com.apple.SoftwareUpdate
//! LastFullSuccessfulDate` prints `2024-06-04 08:06:27 +0000`. Caveat for
//! the policy: this is the last *complete, successful Software Update run*
//! (a full scan, installing whatever was due automatically), not the
//! install time of a particular update; the evidence says so. It is also
//! the freshness of the pending list (`metadata_age_days`).
//!
//! **Pending updates.** `softwareupdate --list` (slow, asks Apple's servers)
//! prints, since macOS 10.15 (the `Title:` lines are indented with a tab):
//!
//! ```text
//! Software Update Tool
//!
//! Finding available software
//! Software Update found the following new or updated software:
//! * Label: macOS Sonoma 14.5-23F79
//!     Title: macOS Sonoma 14.5, Version: 14.5, Size: 6845924K, Recommended: YES, Action: restart,
//! * Label: Safari17.5SonomaAuto-17.5
//!     Title: Safari, Version: 17.5, Size: 165385K, Recommended: YES,
//! ```
//!
//! or `No new software available.` (some of it on stderr, so the collector
//! hands over stderr + stdout).
//!
//! **Security rule** ([`PendingUpdate::is_security`]): Apple does not flag
//! security content in this listing, so an update counts as security when
//! its label or title says "Security" (Security Update 2024-002, Rapid /
//! Background Security Response), carries a Rapid Security Response
//! suffix like `(a)`, or needs a restart (`Action: restart` / `shut down`:
//! macOS point releases and firmware, which are where Apple ships security
//! fixes). App updates without a restart (Safari, Command Line Tools) count
//! as pending but not as security.
//!
//! **Reboot rule** ([`reboot_pending_check`]): macOS installs an update
//! that needs a restart *during* that restart, so "installed updates wait
//! for a reboot" is read as "an update with `Action: restart` (or
//! `shut down`) is pending". It also fires when such an update has not been
//! downloaded yet; the evidence names the update.

use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};

use crate::check::{Check, CheckId};

use super::{ParseError, clip, unexpected};

const LAST_DATE: &str =
    "`defaults read /Library/Preferences/com.apple.SoftwareUpdate LastFullSuccessfulDate`";
const LIST: &str = "`softwareupdate --list`";

/// Parses `LastFullSuccessfulDate` as printed by `defaults read`:
/// `2024-06-04 08:06:27 +0000`.
pub fn parse_last_full_successful_date(text: &str) -> Result<OffsetDateTime, ParseError> {
    let trimmed = text.trim();
    let (date_time, offset) = trimmed
        .rsplit_once(' ')
        .ok_or_else(|| unexpected(LAST_DATE, "\"YYYY-MM-DD HH:MM:SS +0000\"", text))?;
    let local = PrimitiveDateTime::parse(
        date_time,
        format_description!("[year]-[month]-[day] [hour]:[minute]:[second]"),
    )
    .map_err(|err| {
        ParseError::new(
            LAST_DATE,
            format!("bad date {:?}: {err}", clip(date_time, 40)),
        )
    })?;
    let offset = UtcOffset::parse(
        offset,
        format_description!("[offset_hour sign:mandatory][offset_minute]"),
    )
    .map_err(|err| {
        ParseError::new(
            LAST_DATE,
            format!("bad offset {:?}: {err}", clip(offset, 10)),
        )
    })?;
    Ok(local.assume_offset(offset))
}

/// Whole days from `at` to `now`; a time in the future counts as 0.
pub fn days_since(at: OffsetDateTime, now: OffsetDateTime) -> i64 {
    (now - at).whole_days().max(0)
}

/// The `last_update` check from `LastFullSuccessfulDate`.
pub fn last_update_check(at: OffsetDateTime, now: OffsetDateTime) -> Check {
    let days = days_since(at, now);
    let rfc3339 = at
        .to_offset(UtcOffset::UTC)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    Check::pass(CheckId::LastUpdate, format!("Software Update last completed a full run {days} day(s) ago"))
        .fact("last_installed_at", rfc3339.clone())
        .fact("days_since", days)
        .evidence(format!("ran {LAST_DATE}: {rfc3339} (the last complete, successful Software Update run, not the install time of one update)"))
}

/// One item of `softwareupdate --list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingUpdate {
    /// `* Label:`, unique per update and version.
    pub label: String,
    /// `Title:`.
    pub title: Option<String>,
    /// `Version:`.
    pub version: Option<String>,
    /// `Recommended: YES`.
    pub recommended: bool,
    /// `Action:` (`restart`, `shut down`), when printed.
    pub action: Option<String>,
}

impl PendingUpdate {
    /// Installing it needs a restart (or a shutdown).
    pub fn needs_restart(&self) -> bool {
        matches!(self.action.as_deref(), Some("restart" | "shut down"))
    }

    /// Counts as a security update under the rule in the module docs.
    pub fn is_security(&self) -> bool {
        let names = [Some(self.label.as_str()), self.title.as_deref()];
        let says_security = names
            .iter()
            .flatten()
            .any(|name| name.to_ascii_lowercase().contains("security") || has_rsr_suffix(name));
        says_security || self.needs_restart()
    }
}

/// A Rapid Security Response marker: `(a)` … `(z)`.
fn has_rsr_suffix(name: &str) -> bool {
    name.as_bytes()
        .windows(3)
        .any(|w| matches!(w, [b'(', letter, b')'] if letter.is_ascii_lowercase()))
}

/// Parses `softwareupdate --list` (stderr + stdout). Every `* Label:` line
/// starts an item; the `Title:` line after it fills it in. An output that
/// announces updates but lists none in this shape, or that neither lists
/// any nor says "No new software available.", is an error.
pub fn parse_softwareupdate_list(text: &str) -> Result<Vec<PendingUpdate>, ParseError> {
    let mut updates: Vec<PendingUpdate> = Vec::new();
    for line in text.lines().map(str::trim) {
        if let Some(label) = line.strip_prefix("* Label:") {
            let label = label.trim();
            if label.is_empty() {
                return Err(ParseError::new(LIST, "an empty \"* Label:\""));
            }
            updates.push(PendingUpdate {
                label: label.to_owned(),
                title: None,
                version: None,
                recommended: false,
                action: None,
            });
        } else if let Some(fields) = line.strip_prefix("Title:") {
            let Some(update) = updates.last_mut() else {
                return Err(ParseError::new(
                    LIST,
                    "a \"Title:\" line before any \"* Label:\"",
                ));
            };
            fill_fields(update, fields);
        }
    }
    let announced = text.contains("found the following new or updated software");
    let none = text.contains("No new software available.");
    match (updates.is_empty(), announced, none) {
        (false, _, false) => Ok(updates),
        (true, false, true) => Ok(updates),
        (false, _, true) => Err(ParseError::new(
            LIST,
            "lists updates and says none are available",
        )),
        (true, true, _) => Err(ParseError::new(
            LIST,
            "announces updates but none has a \"* Label:\" line",
        )),
        (true, false, false) => Err(unexpected(
            LIST,
            "\"* Label:\" items or \"No new software available.\"",
            text,
        )),
    }
}

/// Reads `Title: T, Version: V, Size: S, Recommended: YES, Action: restart,`.
/// The title may itself contain ", " so it ends at ", Version: ".
fn fill_fields(update: &mut PendingUpdate, fields: &str) {
    let (title, rest) = match fields.split_once(", Version:") {
        Some((title, rest)) => (title, format!("Version:{rest}")),
        None => (fields.trim_end_matches(','), String::new()),
    };
    let title = title.trim();
    if !title.is_empty() {
        update.title = Some(title.to_owned());
    }
    for field in rest.split(',') {
        let Some((key, value)) = field.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match key.trim() {
            "Version" if !value.is_empty() => update.version = Some(value.to_owned()),
            "Recommended" => update.recommended = value.eq_ignore_ascii_case("YES"),
            "Action" if !value.is_empty() => update.action = Some(value.to_owned()),
            _ => {}
        }
    }
}

/// How the pending list was obtained, for evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListSource {
    /// Ran `softwareupdate --list` now.
    Live,
    /// Reused a cached listing this many seconds old.
    Cached {
        /// Age of the cached listing.
        age_seconds: u64,
    },
}

impl ListSource {
    fn describe(&self) -> String {
        match self {
            ListSource::Live => format!("ran {LIST}"),
            ListSource::Cached { age_seconds } => {
                format!("{LIST} (cached {age_seconds}s ago; Software Update has not run since)")
            }
        }
    }
}

/// The `security_updates` check. `oldest_security_pending_days` comes from
/// [`crate::pending::observe`]; `metadata_age_days` from
/// `LastFullSuccessfulDate`, when readable.
pub fn security_updates_check(
    updates: &[PendingUpdate],
    source: &ListSource,
    oldest_security_pending_days: Option<i64>,
    metadata_age_days: Option<i64>,
) -> Check {
    let id = CheckId::SecurityUpdates;
    let security: Vec<&PendingUpdate> = updates.iter().filter(|u| u.is_security()).collect();
    let check = if security.is_empty() {
        Check::pass(
            id,
            format!(
                "no security updates pending ({} other updates)",
                updates.len()
            ),
        )
    } else {
        Check::fail(
            id,
            format!(
                "{} security update(s) pending, oldest seen {} day(s) ago",
                security.len(),
                oldest_security_pending_days.unwrap_or(0)
            ),
        )
        .remediation("Install the pending updates: System Settings → General → Software Update → Update Now (or `softwareupdate --install --all --restart` as an admin).")
    };
    let mut check = check
        .fact("pending", updates.len())
        .fact("security_pending", security.len())
        .fact("oldest_security_pending_days", oldest_security_pending_days)
        .evidence(format!(
            "{}: {} pending, {} counted as security (title says Security / RSR, or needs a restart)",
            source.describe(),
            updates.len(),
            security.len()
        ));
    let shown: Vec<&str> = security.iter().take(10).map(|u| u.label.as_str()).collect();
    if !shown.is_empty() {
        check = check.evidence(format!(
            "security: {}{}",
            shown.join(", "),
            if security.len() > shown.len() {
                ", …"
            } else {
                ""
            }
        ));
    }
    match metadata_age_days {
        Some(days) => check.fact("metadata_age_days", days).evidence(format!(
            "Software Update last completed a full check {days} day(s) ago (LastFullSuccessfulDate)"
        )),
        None => {
            check.evidence("LastFullSuccessfulDate not readable: freshness of the list unknown")
        }
    }
}

/// The `reboot_pending` check under the reboot rule in the module docs.
pub fn reboot_pending_check(updates: &[PendingUpdate], source: &ListSource) -> Check {
    let id = CheckId::RebootPending;
    let restart: Vec<&str> = updates
        .iter()
        .filter(|u| u.needs_restart())
        .map(|u| u.label.as_str())
        .collect();
    if restart.is_empty() {
        Check::pass(id, "no update waits for a restart")
            .fact("reboot_pending", false)
            .evidence(format!(
                "{}: no item with Action: restart",
                source.describe()
            ))
    } else {
        Check::fail(id, format!("{} update(s) install at the next restart", restart.len()))
            .fact("reboot_pending", true)
            .evidence(format!(
                "{}: Action: restart for {}",
                source.describe(),
                restart.join(", ")
            ))
            .remediation("Restart the Mac to install the pending updates: System Settings → General → Software Update → Restart Now (or Update Now).")
    }
}
