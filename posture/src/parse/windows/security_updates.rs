//! Pending (security) updates from an *offline* Windows Update Agent search.
//!
//! `IUpdateSearcher.Search` works without admin rights. With `Online =
//! $false` it searches the metadata Windows Update last downloaded, so it
//! answers in about a second instead of minutes and touches no network; how
//! fresh that metadata is comes from `LastSearchSuccessDate` (UTC), reported
//! as `metadata_age_days`. Even so, a search plus PowerShell start-up is the
//! slowest Windows source: **the collector must cache the raw output** in
//! `context.cache` (hourly maximum age, stamped with the modification time
//! of the WUA data store, which changes on every scan and installation).
//!
//! The script prints one fact per line, with nothing localized:
//!
//! ```text
//! LastSearchSuccess 2024-06-12T06:10:11.0000000Z
//! Pending 2
//! Update 2024-06-11T00:00:00.0000000Z | Critical | 0fa1201d-4330-4fa8-8ae9-b877473b6441,… | 2024-06 Cumulative Update …
//! Update 2024-06-12T00:00:00.0000000Z |  | e0789628-ce08-4437-be74-2495b842f43b,… | Security Intelligence Update …
//! ```
//!
//! An update is a security update when it is in the *Security Updates*
//! classification (category id `0fa1201d-…`, the same on every language;
//! category *names* are localized) or carries an MSRC severity. Defender
//! definition updates are classified *Definition Updates* and do not count.

use time::OffsetDateTime;

use crate::check::{Check, CheckId, Unknown, UnknownKind};
use crate::parse::ParseError;

use super::last_update::{days_between, parse_instant};
use super::{CommandLine, Seen};

const SOURCE_NAME: &str = "WUA offline update search";

/// The *Security Updates* classification, identical on every Windows.
pub const SECURITY_UPDATES_CATEGORY: &str = "0fa1201d-4330-4fa8-8ae9-b877473b6441";

/// Metadata older than this cannot vouch for "nothing pending": the check is
/// `unknown` instead of `pass` (a pending security update is still a `fail`).
pub const MAX_METADATA_AGE_DAYS: i64 = 7;

/// Key under which the collector caches the raw output.
pub const CACHE_KEY: &str = "windows-wua-offline-search";

/// The search script (see the module docs for its output).
const SCRIPT: &str = "$ErrorActionPreference = 'Stop'; \
[Console]::OutputEncoding = [Text.Encoding]::UTF8; \
$d = (New-Object -ComObject Microsoft.Update.AutoUpdate).Results.LastSearchSuccessDate; \
if ($d -is [DateTime]) { 'LastSearchSuccess ' + [DateTime]::SpecifyKind($d, 'Utc').ToString('o') } else { 'LastSearchSuccess never' }; \
$s = (New-Object -ComObject Microsoft.Update.Session).CreateUpdateSearcher(); \
$s.Online = $false; \
$u = $s.Search('IsInstalled=0 and IsHidden=0 and Type=''Software''').Updates; \
'Pending ' + $u.Count; \
foreach ($x in $u) { 'Update ' + [DateTime]::SpecifyKind($x.LastDeploymentChangeTime, 'Utc').ToString('o') + ' | ' + $x.MsrcSeverity + ' | ' + (($x.Categories | ForEach-Object { $_.CategoryID }) -join ',') + ' | ' + $x.Title }";

/// The command the collector runs.
pub fn command() -> CommandLine {
    CommandLine::powershell(SCRIPT)
}

/// One pending update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingUpdate {
    /// `LastDeploymentChangeTime`: when it was published (or last revised).
    pub published: Option<OffsetDateTime>,
    /// `MsrcSeverity` (`Critical`, `Important`, …) when Microsoft rated it.
    pub severity: Option<String>,
    /// Category ids (classification and product).
    pub categories: Vec<String>,
    /// The update title (localized; for evidence only).
    pub title: String,
    /// The raw line.
    pub line: String,
}

impl PendingUpdate {
    /// Security classification, or an MSRC severity rating.
    pub fn is_security(&self) -> bool {
        self.severity.is_some()
            || self
                .categories
                .iter()
                .any(|id| id.eq_ignore_ascii_case(SECURITY_UPDATES_CATEGORY))
    }
}

/// The result of the search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingUpdates {
    /// When Windows Update last searched successfully (`None`: never).
    pub last_search: Seen<Option<OffsetDateTime>>,
    /// The updates found, as many as the `Pending` count announced.
    pub updates: Vec<PendingUpdate>,
    /// The `Pending N` line.
    pub count_line: String,
}

impl PendingUpdates {
    /// The security updates among the pending ones.
    pub fn security(&self) -> impl Iterator<Item = &PendingUpdate> {
        self.updates.iter().filter(|update| update.is_security())
    }
}

/// Parses the script output. The `Pending N` count must match the number of
/// `Update` lines, so a truncated output is an error, not a smaller count.
pub fn parse_security_updates(text: &str) -> Result<PendingUpdates, ParseError> {
    let mut last_search = None;
    let mut count = None;
    let mut updates = Vec::new();
    for raw in text.lines() {
        let line = raw.trim();
        if let Some(rest) = line.strip_prefix("LastSearchSuccess ") {
            let rest = rest.trim();
            let at = if rest.eq_ignore_ascii_case("never") {
                None
            } else {
                Some(parse_instant(rest).ok_or_else(|| {
                    ParseError::new(SOURCE_NAME, format!("bad LastSearchSuccess time: {rest:?}"))
                })?)
            };
            last_search = Some(Seen::new(at, line));
        } else if let Some(rest) = line.strip_prefix("Pending ") {
            let n: usize = rest.trim().parse().map_err(|_| {
                ParseError::new(SOURCE_NAME, format!("bad Pending count: {rest:?}"))
            })?;
            count = Some((n, line.to_owned()));
        } else if let Some(rest) = line.strip_prefix("Update ") {
            updates.push(parse_update(rest, line)?);
        }
    }
    let last_search =
        last_search.ok_or_else(|| ParseError::new(SOURCE_NAME, "no LastSearchSuccess line"))?;
    let (count, count_line) =
        count.ok_or_else(|| ParseError::new(SOURCE_NAME, "no Pending line"))?;
    if count != updates.len() {
        return Err(ParseError::new(
            SOURCE_NAME,
            format!(
                "announced {count} pending updates but listed {}",
                updates.len()
            ),
        ));
    }
    Ok(PendingUpdates {
        last_search,
        updates,
        count_line,
    })
}

/// `<published> | <severity> | <category ids> | <title>`.
fn parse_update(rest: &str, line: &str) -> Result<PendingUpdate, ParseError> {
    let mut parts = rest.splitn(4, '|').map(str::trim);
    let (Some(published), Some(severity), Some(categories), Some(title)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ParseError::new(
            SOURCE_NAME,
            format!("update line without 4 fields: {line:?}"),
        ));
    };
    Ok(PendingUpdate {
        published: parse_instant(published),
        severity: (!severity.is_empty()).then(|| severity.to_owned()),
        categories: categories
            .split(',')
            .map(str::trim)
            .filter(|id| !id.is_empty())
            .map(str::to_owned)
            .collect(),
        title: title.to_owned(),
        line: line.to_owned(),
    })
}

/// The `security_updates` check.
///
/// fail: a security update is pending (whatever the metadata age);
/// pass: none pending and the metadata is at most
/// [`MAX_METADATA_AGE_DAYS`] old; unknown: none pending but the metadata is
/// older or Windows Update never searched.
pub fn security_updates_check(found: &PendingUpdates, now: OffsetDateTime) -> Check {
    let cmd = command();
    let security: Vec<&PendingUpdate> = found.security().collect();
    let oldest_days = security
        .iter()
        .filter_map(|update| update.published)
        .min()
        .map(|published| days_between(published, now));
    let metadata_age = found.last_search.value.map(|at| days_between(at, now));

    let pending = found.updates.len();
    let check = if !security.is_empty() {
        Check::fail(
            CheckId::SecurityUpdates,
            format!(
                "{} security update(s) pending ({pending} update(s) in total)",
                security.len()
            ),
        )
        .remediation(
            "Open Settings > Windows Update, install the pending updates and restart when asked.",
        )
    } else {
        match metadata_age {
            Some(age) if age <= MAX_METADATA_AGE_DAYS => Check::pass(
                CheckId::SecurityUpdates,
                format!("no security update pending ({pending} other update(s) pending)"),
            ),
            Some(age) => Check::unknown(
                CheckId::SecurityUpdates,
                Unknown::new(
                    UnknownKind::SourceFailed,
                    format!(
                        "no security update pending in Windows Update metadata that is {age} days old \
                         (more than {MAX_METADATA_AGE_DAYS})"
                    ),
                ),
            )
            .remediation(stale_remediation()),
            None => Check::unknown(
                CheckId::SecurityUpdates,
                Unknown::new(
                    UnknownKind::SourceFailed,
                    "Windows Update has never searched for updates successfully",
                ),
            )
            .remediation(stale_remediation()),
        }
    };

    let mut check = check
        .fact("pending", pending)
        .fact("security_pending", security.len())
        .evidence(cmd.evidence(&found.last_search.line))
        .evidence(cmd.evidence(&found.count_line));
    if let Some(days) = oldest_days {
        check = check.fact("oldest_security_pending_days", days);
    }
    if let Some(age) = metadata_age {
        check = check.fact("metadata_age_days", age);
    }
    for update in security {
        check = check.evidence(cmd.evidence(&update.line));
    }
    check
}

fn stale_remediation() -> &'static str {
    "Open Settings > Windows Update and select \"Check for updates\" so Windows downloads current \
     update information; contact IT if the search fails."
}

/// The `security_updates` check when the search could not run.
pub fn security_updates_unknown(reason: Unknown) -> Check {
    Check::unknown(CheckId::SecurityUpdates, reason)
        .evidence(command().evidence_note("no usable output"))
        .remediation(
            "Pending updates could not be listed. Open Settings > Windows Update to check for \
             updates; contact IT if the Windows Update service is disabled.",
        )
}
