//! APT: `apt-get -s upgrade` (what is pending) and `/var/log/apt/history.log`
//! (when updates were last installed).

use time::PrimitiveDateTime;
use time::macros::format_description;

use super::super::ParseError;

const SIMULATE: &str = "`apt-get -s upgrade`";
const HISTORY: &str = "/var/log/apt/history.log";

/// One package an upgrade would install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingPackage {
    /// Package name (`libgcrypt20`).
    pub name: String,
    /// The version that would be installed.
    pub candidate: String,
    /// True when one of the candidate's origins is a security archive.
    pub security: bool,
}

/// What `apt-get -s upgrade` would do.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UpgradePlan {
    /// The packages it would upgrade (`Inst` lines; `Conf` lines are the
    /// configure step of the same packages, not more updates).
    pub packages: Vec<PendingPackage>,
}

impl UpgradePlan {
    /// Packages from a security archive.
    pub fn security(&self) -> impl Iterator<Item = &PendingPackage> {
        self.packages.iter().filter(|p| p.security)
    }
}

/// Parses a simulated upgrade. The text must contain APT's summary line
/// (`N upgraded, M newly installed, ...`) and exactly N + M `Inst` lines: a
/// missing summary or a short list means the output was cut off, and nothing
/// can be concluded from it.
pub fn parse_apt_simulate(text: &str) -> Result<UpgradePlan, ParseError> {
    let mut plan = UpgradePlan::default();
    let mut expected = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("Inst ") {
            plan.packages.push(parse_inst(rest)?);
        } else if let Some(total) = summary_total(line) {
            expected = Some(total);
        }
    }
    match expected {
        None => Err(ParseError::new(
            SIMULATE,
            "no 'N upgraded, N newly installed' summary line",
        )),
        Some(total) if total != plan.packages.len() => Err(ParseError::new(
            SIMULATE,
            format!(
                "summary announces {total} packages but {} Inst lines follow (output cut off?)",
                plan.packages.len()
            ),
        )),
        Some(_) => Ok(plan),
    }
}

/// `102 upgraded, 3 newly installed, 0 to remove and 0 not upgraded.` → 105.
fn summary_total(line: &str) -> Option<usize> {
    let (upgraded, rest) = line.split_once(" upgraded, ")?;
    let (new, _) = rest.split_once(" newly installed")?;
    let upgraded = upgraded.trim().parse::<usize>().ok()?;
    let new = new.trim().parse::<usize>().ok()?;
    upgraded.checked_add(new)
}

/// `name [current] (candidate origin, origin [arch]) []`
fn parse_inst(rest: &str) -> Result<PendingPackage, ParseError> {
    let name = rest
        .split_whitespace()
        .next()
        .ok_or_else(|| ParseError::new(SIMULATE, "Inst line without a package name"))?;
    let open = rest.find('(').ok_or_else(|| {
        ParseError::new(
            SIMULATE,
            format!("Inst line for {name} without a candidate"),
        )
    })?;
    let inner = rest[open + 1..].split(')').next().unwrap_or("");
    let candidate = inner.split_whitespace().next().unwrap_or("").to_owned();
    if candidate.is_empty() {
        return Err(ParseError::new(
            SIMULATE,
            format!("Inst line for {name} without a version"),
        ));
    }
    // Origins look like `Debian-Security:12/oldstable-security` or
    // `Ubuntu:22.04/jammy-security`; either spelling marks a security update.
    let security = inner
        .split(", ")
        .any(|origin| origin.to_ascii_lowercase().contains("-security"));
    Ok(PendingPackage {
        name: name.to_owned(),
        candidate,
        security,
    })
}

/// The start of the most recent history entry that upgraded packages (an
/// `Upgrade:` line). Times in the log are local time without an offset.
/// `Ok(None)` when the log has entries but none upgraded anything.
pub fn parse_apt_history_last_upgrade(text: &str) -> Result<Option<PrimitiveDateTime>, ParseError> {
    let format = format_description!("[year]-[month]-[day]  [hour]:[minute]:[second]");
    let mut current_start: Option<PrimitiveDateTime> = None;
    let mut last_upgrade: Option<PrimitiveDateTime> = None;
    let mut entries = 0usize;
    for line in text.lines() {
        if let Some(stamp) = line.strip_prefix("Start-Date: ") {
            entries += 1;
            current_start = PrimitiveDateTime::parse(stamp.trim_end(), format)
                .or_else(|_| {
                    // Some writers use a single space between date and time.
                    let single =
                        format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
                    PrimitiveDateTime::parse(stamp.trim(), single)
                })
                .ok();
        } else if line.starts_with("Upgrade: ")
            && let Some(start) = current_start
        {
            last_upgrade = Some(last_upgrade.map_or(start, |prev| prev.max(start)));
        }
    }
    if entries == 0 {
        return Err(ParseError::new(HISTORY, "no Start-Date entries"));
    }
    Ok(last_upgrade)
}
