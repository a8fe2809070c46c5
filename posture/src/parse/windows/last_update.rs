//! When Windows Update last installed something, from the Windows Update
//! Agent's `IAutomaticUpdatesResults.LastInstallationSuccessDate`.
//!
//! `Get-HotFix` prints `InstalledOn` in the user's date format (and leaves it
//! empty on some locales), so a one-liner asks WUA instead and prints the date
//! as ISO 8601 (`ToString('o')`). WUA documents the value as UTC but hands it
//! over without a kind, so the script marks it UTC before printing: the
//! output is e.g. `2024-06-12T06:10:11.0000000Z`, or `never` when WUA has no
//! date (VT_EMPTY). The date is set by Windows Update itself (also under
//! WSUS); updates installed by hand (`wusa`, DISM) do not move it.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::check::{Check, CheckId, Unknown, UnknownKind};
use crate::parse::ParseError;

use super::{CommandLine, Seen};

const SOURCE_NAME: &str = "WUA LastInstallationSuccessDate";

/// Prints the last successful installation as ISO 8601 UTC, or `never`.
const SCRIPT: &str = "$d = (New-Object -ComObject Microsoft.Update.AutoUpdate).Results.LastInstallationSuccessDate; \
if ($d -is [DateTime]) { [DateTime]::SpecifyKind($d, 'Utc').ToString('o') } else { 'never' }";

/// The command the collector runs.
pub fn command() -> CommandLine {
    CommandLine::powershell(SCRIPT)
}

/// What WUA says about the last installation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LastInstall {
    /// Updates were last installed at this instant.
    At(Seen<OffsetDateTime>),
    /// WUA has no record of a successful installation.
    Never(Seen<()>),
}

/// Parses the script output: the first non-empty line is an ISO 8601
/// timestamp *with* an offset (`Z` or `±hh:mm`) or the word `never`.
pub fn parse_last_update(text: &str) -> Result<LastInstall, ParseError> {
    let line = super::first_line(text);
    if line.is_empty() {
        return Err(ParseError::new(SOURCE_NAME, "empty output"));
    }
    if line.eq_ignore_ascii_case("never") {
        return Ok(LastInstall::Never(Seen::new((), line)));
    }
    parse_instant(line)
        .map(|at| LastInstall::At(Seen::new(at, line)))
        .ok_or_else(|| {
            ParseError::new(
                SOURCE_NAME,
                format!("not an ISO 8601 time with offset: {line:?}"),
            )
        })
}

/// An ISO 8601 / RFC 3339 instant as .NET's `'o'` format prints it (up to
/// 7 fractional digits). A time without an offset is refused: it would be a
/// guess of the time zone.
pub fn parse_instant(text: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(text.trim(), &Rfc3339).ok()
}

/// Whole days from `then` to `now` (negative if `then` is in the future,
/// i.e. a skewed clock; reported as is rather than hidden).
pub fn days_between(then: OffsetDateTime, now: OffsetDateTime) -> i64 {
    (now - then).whole_days()
}

/// The `last_update` check: pass when the time is known.
pub fn last_update_check(last: &LastInstall, now: OffsetDateTime) -> Check {
    let cmd = command();
    match last {
        LastInstall::At(at) => {
            let days = days_between(at.value, now);
            let stamp = at
                .value
                .format(&Rfc3339)
                .unwrap_or_else(|_| at.line.clone());
            Check::pass(
                CheckId::LastUpdate,
                format!("updates last installed {days} day(s) ago ({stamp})"),
            )
            .fact("last_installed_at", stamp)
            .fact("days_since", days)
            .evidence(cmd.evidence(&at.line))
        }
        LastInstall::Never(seen) => Check::unknown(
            CheckId::LastUpdate,
            Unknown::new(
                UnknownKind::SourceFailed,
                "Windows Update has no record of a successful installation",
            ),
        )
        .evidence(cmd.evidence(&seen.line))
        .remediation(
            "Open Settings > Windows Update and select \"Check for updates\", then install what \
             it offers. If updates are managed by IT (WSUS, Intune, SCCM), contact IT.",
        ),
    }
}

/// The `last_update` check when WUA could not be asked.
pub fn last_update_unknown(reason: Unknown) -> Check {
    Check::unknown(CheckId::LastUpdate, reason)
        .evidence(command().evidence_note("no usable output"))
        .remediation(
            "The date of the last update could not be read. Open Settings > Windows Update > \
             Update history to check it; contact IT if the Windows Update service is disabled.",
        )
}
