//! Pending (security) updates and the last install, from APT or DNF.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use time::OffsetDateTime;

use crate::check::{Check, CheckId, Unknown, UnknownKind};
use crate::collect::{CheckFuture, Context, boxed};
use crate::parse::linux::{apt, dnf};
use crate::pending::{self, FirstSeen};
use crate::probe;

const APT_LISTS: &str = "/var/lib/apt/lists";
const DPKG_STATUS: &str = "/var/lib/dpkg/status";
/// A package-manager simulation is slow; reuse it while the package database
/// and lists are unchanged, for at most this long.
const SIMULATION_MAX_AGE: Duration = Duration::from_secs(3600);
/// Solving an upgrade can take seconds on a busy machine.
const SIMULATION_TIMEOUT: Duration = Duration::from_secs(30);

pub(super) fn security_updates(context: Arc<Context>) -> CheckFuture {
    boxed(async move {
        if Path::new("/usr/bin/apt-get").exists() {
            apt_security(&context).await
        } else if Path::new("/usr/bin/dnf").exists() {
            dnf_security(&context).await
        } else {
            Check::unknown(
                CheckId::SecurityUpdates,
                Unknown::new(
                    UnknownKind::SourceMissing,
                    "no supported package manager (apt-get, dnf) found",
                ),
            )
        }
    })
}

async fn apt_security(context: &Context) -> Check {
    let id = CheckId::SecurityUpdates;
    let Some(lists_mtime) = newest_list_mtime() else {
        return Check::unknown(
            id,
            Unknown::new(
                UnknownKind::SourceMissing,
                format!("no package lists in {APT_LISTS}: APT cannot know what is pending"),
            ),
        )
        .remediation("Run `sudo apt-get update` (or let the updater run), then collect again.");
    };
    let stamp = format!(
        "{}|{}",
        mtime_secs(Path::new(DPKG_STATUS)).unwrap_or(0),
        unix_secs(lists_mtime)
    );
    let (raw, cached_age) = match context.cache.get(
        "apt-simulate-upgrade",
        &stamp,
        SIMULATION_MAX_AGE,
        context.now,
    ) {
        Some(hit) => (hit.value, Some(hit.age)),
        None => {
            match probe::run_ok(
                "apt-get",
                &["-s", "-o", "Debug::NoLocking=1", "upgrade"],
                SIMULATION_TIMEOUT,
            )
            .await
            {
                Ok(out) => {
                    context
                        .cache
                        .put("apt-simulate-upgrade", &stamp, &out.stdout, context.now);
                    (out.stdout, None)
                }
                Err(err) => return Check::unknown(id, err.into()),
            }
        }
    };
    let plan = match apt::parse_apt_simulate(&raw) {
        Ok(plan) => plan,
        Err(err) => return Check::unknown(id, err.into()),
    };
    let security: Vec<String> = plan
        .security()
        .map(|p| format!("{}={}", p.name, p.candidate))
        .collect();
    let metadata_age_days = age_days(lists_mtime, context.now);
    let source = match cached_age {
        Some(age) => format!(
            "`apt-get -s upgrade` (cached {}s ago; package database unchanged since)",
            age.as_secs()
        ),
        None => "ran `apt-get -s upgrade`".to_owned(),
    };
    let check = pending_check(context, "apt", &security, plan.packages.len())
        .fact("metadata_age_days", metadata_age_days)
        .evidence(format!(
            "{source}: {} upgradable, {} from a security archive",
            plan.packages.len(),
            security.len()
        ))
        .evidence(format!(
            "package lists last refreshed {metadata_age_days} day(s) ago ({APT_LISTS})"
        ));
    if security.is_empty() {
        check
    } else {
        check.remediation("Install the pending security updates: `sudo apt-get update && sudo apt-get upgrade`, or use Software Updates.")
    }
}

async fn dnf_security(context: &Context) -> Check {
    let id = CheckId::SecurityUpdates;
    let out = match probe::run_ok(
        "dnf",
        &["-C", "-q", "updateinfo", "list", "--security"],
        SIMULATION_TIMEOUT,
    )
    .await
    {
        Ok(out) => out,
        Err(err) => return Check::unknown(id, err.into()),
    };
    match dnf::parse_dnf_security(&out.stdout) {
        Ok(advisories) => {
            let keys: Vec<String> = advisories.iter().map(|a| a.package.clone()).collect();
            let check = pending_check(context, "dnf", &keys, keys.len()).evidence(format!(
                "ran `dnf -C -q updateinfo list --security`: {} advisories",
                advisories.len()
            ));
            if keys.is_empty() {
                check
            } else {
                check.remediation(
                    "Install the pending security updates: `sudo dnf upgrade --security`.",
                )
            }
        }
        Err(err) => Check::unknown(id, err.into()),
    }
}

/// Builds the check from the security updates pending now, tracking how long
/// each has been pending across collections.
fn pending_check(context: &Context, manager: &str, security: &[String], total: usize) -> Check {
    let id = CheckId::SecurityUpdates;
    let state_key = format!("{manager}-security-first-seen");
    let previous: FirstSeen = context.cache.load_state(&state_key).unwrap_or_default();
    let observed = pending::observe(previous, security, context.now);
    let kept = context.cache.store_state(&state_key, &observed.state);
    let since = observed
        .state
        .tracking_since
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default();
    let check = if security.is_empty() {
        Check::pass(
            id,
            format!("no security updates pending ({total} other updates)"),
        )
    } else {
        Check::fail(
            id,
            format!(
                "{} security update(s) pending, oldest seen {} day(s) ago",
                security.len(),
                observed.oldest_days.unwrap_or(0)
            ),
        )
    };
    let check = check
        .fact("pending", total)
        .fact("security_pending", security.len())
        .fact("oldest_security_pending_days", observed.oldest_days);
    let shown: Vec<&str> = security.iter().take(10).map(String::as_str).collect();
    let check = if shown.is_empty() {
        check
    } else {
        check.evidence(format!(
            "security: {}{}",
            shown.join(", "),
            if security.len() > 10 { ", …" } else { "" }
        ))
    };
    if kept {
        check.evidence(format!(
            "pending age measured from first sighting; tracking since {since}"
        ))
    } else {
        check.evidence(
            "pending age not tracked (no writable cache): ages count from this collection",
        )
    }
}

pub(super) fn last_update(context: Arc<Context>) -> CheckFuture {
    boxed(async move {
        let id = CheckId::LastUpdate;
        let path = "/var/log/apt/history.log";
        let text = match probe::read_text(path) {
            Ok(text) => text,
            Err(err) => {
                let reason: Unknown = err.into();
                return Check::unknown(
                    id,
                    Unknown::new(
                        reason.kind,
                        format!("{}; only APT's history is read for now", reason.detail),
                    ),
                );
            }
        };
        match apt::parse_apt_history_last_upgrade(&text) {
            Ok(Some(start)) => {
                // history.log is in local time without an offset; read as
                // UTC it is off by at most a day's fraction.
                let at = start.assume_utc();
                let days = (context.now - at).whole_days().max(0);
                Check::pass(id, format!("last update installed {days} day(s) ago"))
                    .fact(
                        "last_installed_at",
                        at.format(&time::format_description::well_known::Rfc3339)
                            .unwrap_or_default(),
                    )
                    .fact("days_since", days)
                    .evidence(format!(
                        "read {path}: last entry with an Upgrade: line started {start}"
                    ))
            }
            Ok(None) => Check::unknown(
                id,
                Unknown::new(
                    UnknownKind::SourceMissing,
                    format!("{path} records no upgrade (older entries may be in rotated logs)"),
                ),
            )
            .remediation("Install updates: `sudo apt-get update && sudo apt-get upgrade`."),
            Err(err) => Check::unknown(id, err.into()),
        }
    })
}

/// The newest modification time among the downloaded package lists; `None`
/// when there are none (lists deleted, as in many container images).
fn newest_list_mtime() -> Option<SystemTime> {
    std::fs::read_dir(APT_LISTS)
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.contains("_Packages") || name.ends_with("Release")
        })
        .filter_map(|e| e.metadata().ok()?.modified().ok())
        .max()
}

fn mtime_secs(path: &Path) -> Option<u64> {
    std::fs::metadata(path).ok()?.modified().ok().map(unix_secs)
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn age_days(t: SystemTime, now: OffsetDateTime) -> i64 {
    (now - OffsetDateTime::from(t)).whole_days().max(0)
}
