//! macOS collectors: thin shims over `crate::parse::macos`.
//!
//! Each runs one or two Apple tools (by absolute path, so a daemon's
//! minimal `PATH` or a planted binary cannot change the answer), hands the
//! text to a pure parser and lets the parse module build the check. Every
//! pass/fail rule lives there and is tested on any OS; what is left here is
//! I/O and choosing between sources.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use time::OffsetDateTime;

use super::{CheckFuture, CheckId, Collector, Context, boxed};
use crate::check::{Check, Unknown, UnknownKind};
use crate::parse::ParseError;
use crate::parse::macos::software_update::{ListSource, PendingUpdate};
use crate::parse::macos::{
    defaults, enrollment as mdm, filevault, firewall as alf, gatekeeper as spctl, identity,
    platform_security as platform, screen_lock as lock, sip as csrutil, software_update, sw_vers,
    xprotect,
};
use crate::pending::{self, FirstSeen};
use crate::probe::{self, Output};

const SW_VERS: &str = "/usr/bin/sw_vers";
const UNAME: &str = "/usr/bin/uname";
const FDESETUP: &str = "/usr/bin/fdesetup";
const SOCKETFILTERFW: &str = "/usr/libexec/ApplicationFirewall/socketfilterfw";
const SYSTEM_PROFILER: &str = "/usr/sbin/system_profiler";
const CSRUTIL: &str = "/usr/bin/csrutil";
const SPCTL: &str = "/usr/sbin/spctl";
const SYSADMINCTL: &str = "/usr/sbin/sysadminctl";
const DEFAULTS: &str = "/usr/bin/defaults";
const PROFILES: &str = "/usr/bin/profiles";
const IOREG: &str = "/usr/sbin/ioreg";
const SYSCTL: &str = "/usr/sbin/sysctl";
const SOFTWAREUPDATE: &str = "/usr/sbin/softwareupdate";
const ID: &str = "/usr/bin/id";
const STAT: &str = "/usr/bin/stat";

const SOFTWARE_UPDATE_PREFS: &str = "/Library/Preferences/com.apple.SoftwareUpdate";

pub(crate) fn collectors() -> Vec<(CheckId, Collector)> {
    vec![
        (CheckId::OsVersion, os_version),
        (CheckId::SecurityUpdates, security_updates),
        (CheckId::LastUpdate, last_update),
        (CheckId::RebootPending, reboot_pending),
        (CheckId::DiskEncryption, disk_encryption),
        (CheckId::Firewall, firewall),
        (CheckId::ScreenLock, screen_lock),
        (CheckId::Antivirus, antivirus),
        (CheckId::SecureBoot, secure_boot),
        (CheckId::Sip, sip),
        (CheckId::Gatekeeper, gatekeeper),
        (CheckId::DeviceIdentity, device_identity),
        (CheckId::Tpm, tpm),
        (CheckId::Enrollment, enrollment),
        (CheckId::AgentVersion, super::agent_version),
    ]
}

// ---------------------------------------------------------------------------
// Small helpers shared by the collectors.

/// Runs `program args` (a non-zero exit is an error) and parses its stdout.
async fn read_stdout<T>(
    context: &Context,
    program: &str,
    args: &[&str],
    parse: impl FnOnce(&str) -> Result<T, ParseError>,
) -> Result<T, Unknown> {
    let out = probe::run_ok(program, args, context.command_timeout).await?;
    Ok(parse(&out.stdout)?)
}

/// Runs `program args` whatever its exit code, and parses stderr + stdout:
/// for tools that answer on stderr (`sysadminctl`) or through their exit
/// code (`spctl`). When the text does not parse and the tool failed, the
/// failure is the reason, not the parse.
async fn read_all_output<T>(
    context: &Context,
    program: &str,
    args: &[&str],
    parse: impl FnOnce(&str) -> Result<T, ParseError>,
) -> Result<T, Unknown> {
    let out = probe::run(program, args, context.command_timeout).await?;
    let text = format!("{}\n{}", out.stderr, out.stdout);
    parse(&text).map_err(|err| {
        if out.success() {
            Unknown::from(err)
        } else {
            failed(program, args, &out)
        }
    })
}

/// The `unknown` reason for a command that exited non-zero.
fn failed(program: &str, args: &[&str], out: &Output) -> Unknown {
    let first = out.stderr.lines().map(str::trim).find(|l| !l.is_empty());
    let code = out.code.map_or_else(
        || "killed by a signal".to_owned(),
        |c| format!("exit code {c}"),
    );
    Unknown::new(
        UnknownKind::SourceFailed,
        format!(
            "`{program} {}` failed: {code}{}",
            args.join(" "),
            first.map(|l| format!(": {l}")).unwrap_or_default()
        ),
    )
}

/// `defaults read DOMAIN KEY`; `Ok(None)` when the key is not set.
async fn read_default(
    timeout: Duration,
    domain: &str,
    key: &str,
) -> Result<Option<String>, Unknown> {
    let args = ["read", domain, key];
    let out = probe::run(DEFAULTS, &args, timeout).await?;
    if out.success() {
        Ok(Some(out.stdout))
    } else if defaults::is_missing_default(&out.stderr) {
        Ok(None)
    } else {
        Err(failed(DEFAULTS, &args, &out))
    }
}

/// An `unknown` check with a remediation that fits its reason.
fn unknown(id: CheckId, reason: Unknown) -> Check {
    let advice = match reason.kind {
        UnknownKind::PermissionDenied => {
            "macOS did not let Sallyport read this. Make sure the Sallyport agent is installed as IT provided it; if this persists, send this report to IT."
        }
        UnknownKind::SourceMissing => {
            "The macOS component that answers this is missing. Update macOS (System Settings → General → Software Update); if this persists, send this report to IT."
        }
        UnknownKind::TimedOut => "macOS took too long to answer. Check again in a minute.",
        UnknownKind::Unparseable => {
            "macOS answered in a form Sallyport does not understand. Update Sallyport; if this persists, send this report to IT."
        }
        UnknownKind::NotApplicable => "Nothing to do on this Mac for now.",
        UnknownKind::SourceFailed => {
            "macOS could not answer. Check again; if this persists, restart the Mac or send this report to IT."
        }
    };
    Check::unknown(id, reason).remediation(advice)
}

/// Turns a collector result into the check, or an `unknown` one.
fn or_unknown(id: CheckId, result: Result<Check, Unknown>) -> Check {
    result.unwrap_or_else(|reason| unknown(id, reason))
}

// ---------------------------------------------------------------------------
// OS identity.

fn os_version(context: Arc<Context>) -> CheckFuture {
    boxed(async move {
        let (product, kernel) = tokio::join!(
            read_stdout(&context, SW_VERS, &[], sw_vers::parse_sw_vers),
            read_stdout(&context, UNAME, &["-r"], sw_vers::parse_kernel_release),
        );
        // The kernel is a detail: without it the OS is still identified.
        or_unknown(
            CheckId::OsVersion,
            product.map(|sw| sw_vers::os_version_check(&sw, kernel.ok().as_deref())),
        )
    })
}

// ---------------------------------------------------------------------------
// Updates.

/// Cache key of the raw `softwareupdate --list` output.
const LIST_CACHE_KEY: &str = "macos-softwareupdate-list";
/// Reuse a listing for at most an hour, and only while Software Update has
/// not completed another run (the stamp is `LastFullSuccessfulDate`).
const LIST_MAX_AGE: Duration = Duration::from_secs(3600);
/// `softwareupdate --list` asks Apple's servers; give it time, in the
/// background, so a slow network does not kill it before it is cached.
const LIST_TIMEOUT: Duration = Duration::from_secs(180);
/// State key for when each pending security update was first seen.
const FIRST_SEEN_KEY: &str = "macos-softwareupdate-security-first-seen";

/// The last listing run by this process, so `security_updates` and
/// `reboot_pending` of one collection share one run even without a cache,
/// and two listings never run at once.
#[derive(Debug)]
struct Listing {
    collected_at: OffsetDateTime,
    text: String,
}

static LISTING: OnceLock<Arc<tokio::sync::Mutex<Option<Listing>>>> = OnceLock::new();

/// `LastFullSuccessfulDate`: the raw value (the cache stamp) and its time.
async fn last_full_successful(
    timeout: Duration,
) -> Result<Option<(String, OffsetDateTime)>, Unknown> {
    let Some(raw) = read_default(timeout, SOFTWARE_UPDATE_PREFS, "LastFullSuccessfulDate").await?
    else {
        return Ok(None);
    };
    let value = defaults::parse_defaults_string(
        "`defaults read com.apple.SoftwareUpdate LastFullSuccessfulDate`",
        &raw,
    )?;
    let at = software_update::parse_last_full_successful_date(&value)?;
    Ok(Some((value, at)))
}

/// The cache stamp: the last full Software Update run, or `never`.
fn stamp_of(last: &Result<Option<(String, OffsetDateTime)>, Unknown>) -> String {
    match last {
        Ok(Some((raw, _))) => raw.clone(),
        _ => "never".to_owned(),
    }
}

/// The pending updates, from the cache or a (background) listing.
///
/// The listing runs on its own task: when it outlasts this check's wait
/// (`command_timeout`), the check is `unknown` (timed out) but the listing
/// goes on and is cached for the next collection (in the long-running
/// agent; a one-shot CLI exits first).
async fn pending_updates(
    context: &Context,
    stamp: String,
) -> Result<(Vec<PendingUpdate>, ListSource), Unknown> {
    if let Some(hit) = context
        .cache
        .get(LIST_CACHE_KEY, &stamp, LIST_MAX_AGE, context.now)
    {
        let updates = software_update::parse_softwareupdate_list(&hit.value)?;
        return Ok((
            updates,
            ListSource::Cached {
                age_seconds: hit.age.as_secs(),
            },
        ));
    }
    let slot = Arc::clone(LISTING.get_or_init(|| Arc::new(tokio::sync::Mutex::new(None))));
    let cache = context.cache.clone();
    let now = context.now;
    let timeout = context.command_timeout;
    let task = tokio::spawn(async move {
        let mut last = slot.lock().await;
        if let Some(listing) = last.as_ref().filter(|l| l.collected_at == now) {
            return Ok((listing.text.clone(), ListSource::Live));
        }
        if let Some(hit) = cache.get(LIST_CACHE_KEY, &stamp, LIST_MAX_AGE, now) {
            return Ok((
                hit.value,
                ListSource::Cached {
                    age_seconds: hit.age.as_secs(),
                },
            ));
        }
        let out = probe::run_ok(SOFTWAREUPDATE, &["--list"], LIST_TIMEOUT).await?;
        let text = format!("{}\n{}", out.stderr, out.stdout);
        // The run may itself complete a full check and move the stamp:
        // store under the stamp as it is now, so the next collection hits.
        let stamp_after = stamp_of(&last_full_successful(timeout).await);
        cache.put(LIST_CACHE_KEY, &stamp_after, &text, now);
        *last = Some(Listing {
            collected_at: now,
            text: text.clone(),
        });
        Ok::<_, Unknown>((text, ListSource::Live))
    });
    let (text, source) = match tokio::time::timeout(context.command_timeout, task).await {
        Ok(Ok(result)) => result?,
        Ok(Err(join_error)) => {
            return Err(Unknown::new(
                UnknownKind::SourceFailed,
                format!("the `softwareupdate --list` task failed: {join_error}"),
            ));
        }
        Err(_) => {
            return Err(Unknown::new(
                UnknownKind::TimedOut,
                format!(
                    "`softwareupdate --list` asks Apple's servers and did not answer within {:?}; it keeps running in the background and its result is cached for the next collection",
                    context.command_timeout
                ),
            ));
        }
    };
    let updates = software_update::parse_softwareupdate_list(&text)?;
    Ok((updates, source))
}

fn security_updates(context: Arc<Context>) -> CheckFuture {
    boxed(async move {
        let id = CheckId::SecurityUpdates;
        let last = last_full_successful(context.command_timeout).await;
        let metadata_age_days = match &last {
            Ok(Some((_, at))) => Some(software_update::days_since(*at, context.now)),
            _ => None,
        };
        let (updates, source) = match pending_updates(&context, stamp_of(&last)).await {
            Ok(found) => found,
            Err(reason) => return unknown(id, reason),
        };
        let security: Vec<String> = updates
            .iter()
            .filter(|u| u.is_security())
            .map(|u| u.label.clone())
            .collect();
        let previous: FirstSeen = context.cache.load_state(FIRST_SEEN_KEY).unwrap_or_default();
        let observed = pending::observe(previous, &security, context.now);
        let kept = context.cache.store_state(FIRST_SEEN_KEY, &observed.state);
        let check = software_update::security_updates_check(
            &updates,
            &source,
            observed.oldest_days,
            metadata_age_days,
        );
        if kept {
            let since = observed
                .state
                .tracking_since
                .and_then(|t| {
                    t.format(&time::format_description::well_known::Rfc3339)
                        .ok()
                })
                .unwrap_or_default();
            check.evidence(format!(
                "pending age measured from first sighting; tracking since {since}"
            ))
        } else {
            check.evidence(
                "pending age not tracked (no writable cache): ages count from this collection",
            )
        }
    })
}

fn last_update(context: Arc<Context>) -> CheckFuture {
    boxed(async move {
        let id = CheckId::LastUpdate;
        match last_full_successful(context.command_timeout).await {
            Ok(Some((_, at))) => software_update::last_update_check(at, context.now),
            Ok(None) => Check::unknown(
                id,
                Unknown::new(
                    UnknownKind::SourceMissing,
                    format!("{SOFTWARE_UPDATE_PREFS} has no LastFullSuccessfulDate: Software Update has never completed a full run"),
                ),
            )
            .remediation("Open System Settings → General → Software Update, let it check for updates and install them."),
            Err(reason) => unknown(id, reason),
        }
    })
}

fn reboot_pending(context: Arc<Context>) -> CheckFuture {
    boxed(async move {
        let last = last_full_successful(context.command_timeout).await;
        or_unknown(
            CheckId::RebootPending,
            pending_updates(&context, stamp_of(&last))
                .await
                .map(|(updates, source)| software_update::reboot_pending_check(&updates, &source)),
        )
    })
}

// ---------------------------------------------------------------------------
// Protections.

fn disk_encryption(context: Arc<Context>) -> CheckFuture {
    boxed(async move {
        or_unknown(
            CheckId::DiskEncryption,
            read_stdout(
                &context,
                FDESETUP,
                &["status"],
                filevault::parse_fdesetup_status,
            )
            .await
            .map(|vault| filevault::disk_encryption_check(&vault)),
        )
    })
}

/// `socketfilterfw` first; `system_profiler` when it is missing or says
/// something else (macOS 15+ changed where the state lives).
fn firewall(context: Arc<Context>) -> CheckFuture {
    boxed(async move {
        let id = CheckId::Firewall;
        let first = read_stdout(
            &context,
            SOCKETFILTERFW,
            &["--getglobalstate"],
            alf::parse_socketfilterfw_global_state,
        )
        .await;
        let first_reason = match first {
            Ok(state) => return alf::firewall_check(&state),
            Err(reason) => reason,
        };
        match read_stdout(
            &context,
            SYSTEM_PROFILER,
            &["SPFirewallDataType"],
            alf::parse_system_profiler_firewall,
        )
        .await
        {
            Ok(state) => alf::firewall_check(&state).evidence(format!(
                "socketfilterfw did not answer ({first_reason}), so system_profiler was asked"
            )),
            Err(second) => unknown(
                id,
                Unknown::new(
                    first_reason.kind,
                    format!(
                        "{}; system_profiler: {}",
                        first_reason.detail, second.detail
                    ),
                ),
            ),
        }
    })
}

/// Read as the console user only: a daemon would read root's settings.
fn screen_lock(context: Arc<Context>) -> CheckFuture {
    boxed(async move {
        let id = CheckId::ScreenLock;
        let (me, console) = tokio::join!(
            read_stdout(&context, ID, &["-un"], |t| lock::parse_user_name(
                "`id -un`", t
            )),
            read_stdout(&context, STAT, &["-f", "%Su", "/dev/console"], |t| {
                lock::parse_user_name("`stat -f %Su /dev/console`", t)
            }),
        );
        let (me, console) = match (me, console) {
            (Ok(me), Ok(console)) => (me, console),
            (Err(reason), _) | (_, Err(reason)) => return unknown(id, reason),
        };
        if let Some(problem) = lock::console_session_problem(&me, &console) {
            return Check::unknown(id, Unknown::new(UnknownKind::NotApplicable, problem))
                .evidence(format!("ran `id -un`: {me}; `stat -f %Su /dev/console`: {console}"))
                .remediation("Screen lock is a per-user setting: Sallyport reads it from the signed-in user's session (its per-user agent). Sign in at the Mac and check again.");
        }
        let status = match read_all_output(
            &context,
            SYSADMINCTL,
            &["-screenLock", "status"],
            lock::parse_sysadminctl_screen_lock,
        )
        .await
        {
            Ok(status) => status,
            Err(reason) => return unknown(id, reason),
        };
        let idle = match read_default_current_host_idle(&context).await {
            Ok(idle) => idle,
            Err(reason) => return unknown(id, reason),
        };
        lock::screen_lock_check(&status, idle)
    })
}

/// `defaults -currentHost read com.apple.screensaver idleTime`; `None` when unset.
async fn read_default_current_host_idle(context: &Context) -> Result<Option<u32>, Unknown> {
    let args = ["-currentHost", "read", "com.apple.screensaver", "idleTime"];
    let out = probe::run(DEFAULTS, &args, context.command_timeout).await?;
    if out.success() {
        Ok(Some(lock::parse_idle_time(&out.stdout)?))
    } else if defaults::is_missing_default(&out.stderr) {
        Ok(None)
    } else {
        Err(failed(DEFAULTS, &args, &out))
    }
}

/// XProtect: the first Info.plist that exists, newest macOS layout first.
fn antivirus(context: Arc<Context>) -> CheckFuture {
    boxed(async move {
        let id = CheckId::Antivirus;
        for info_plist in xprotect::INFO_PLISTS {
            let metadata = match std::fs::metadata(info_plist) {
                Ok(metadata) => metadata,
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
                // Unreadable new location: the old one may hold a stale copy,
                // so do not fall back to it.
                Err(err) => return unknown(id, probe::io_error(info_plist, &err).into()),
            };
            let installed_at = metadata.modified().ok().map(OffsetDateTime::from);
            return or_unknown(
                id,
                read_stdout(
                    &context,
                    DEFAULTS,
                    &["read", info_plist, "CFBundleShortVersionString"],
                    xprotect::parse_xprotect_version,
                )
                .await
                .map(|version| {
                    xprotect::antivirus_check(&version, info_plist, installed_at, context.now)
                }),
            );
        }
        Check::unknown(
            id,
            Unknown::new(
                UnknownKind::SourceMissing,
                format!("XProtect.bundle not found at {}", xprotect::INFO_PLISTS.join(" or ")),
            ),
        )
        .remediation("XProtect is part of macOS: install the latest macOS updates (System Settings → General → Software Update); if this persists, send this report to IT.")
    })
}

fn sip(context: Arc<Context>) -> CheckFuture {
    boxed(async move {
        or_unknown(
            CheckId::Sip,
            read_stdout(
                &context,
                CSRUTIL,
                &["status"],
                csrutil::parse_csrutil_status,
            )
            .await
            .map(|sip| csrutil::sip_check(&sip)),
        )
    })
}

fn gatekeeper(context: Arc<Context>) -> CheckFuture {
    boxed(async move {
        or_unknown(
            CheckId::Gatekeeper,
            read_all_output(&context, SPCTL, &["--status"], spctl::parse_spctl_status)
                .await
                .map(spctl::gatekeeper_check),
        )
    })
}

// ---------------------------------------------------------------------------
// Hardware.

/// The security chip report and whether this is Apple silicon.
async fn platform_security(context: &Context) -> Result<(platform::IBridge, bool), Unknown> {
    let (bridge, arm64) = tokio::join!(
        read_stdout(
            context,
            SYSTEM_PROFILER,
            &["SPiBridgeDataType"],
            platform::parse_ibridge
        ),
        probe::run(
            SYSCTL,
            &["-n", "hw.optional.arm64"],
            context.command_timeout
        ),
    );
    let arm64 = arm64?;
    let apple_silicon = platform::parse_arm64_flag(&arm64.stdout, &arm64.stderr)?;
    Ok((bridge?, apple_silicon))
}

fn secure_boot(context: Arc<Context>) -> CheckFuture {
    boxed(async move {
        or_unknown(
            CheckId::SecureBoot,
            platform_security(&context)
                .await
                .map(|(bridge, apple_silicon)| platform::secure_boot_check(&bridge, apple_silicon)),
        )
    })
}

fn tpm(context: Arc<Context>) -> CheckFuture {
    boxed(async move {
        or_unknown(
            CheckId::Tpm,
            platform_security(&context)
                .await
                .map(|(bridge, apple_silicon)| platform::tpm_check(&bridge, apple_silicon)),
        )
    })
}

fn device_identity(context: Arc<Context>) -> CheckFuture {
    boxed(async move {
        or_unknown(
            CheckId::DeviceIdentity,
            read_stdout(
                &context,
                IOREG,
                &["-rd1", "-c", "IOPlatformExpertDevice"],
                identity::parse_ioreg_platform,
            )
            .await
            .map(|found| identity::device_identity_check(&found)),
        )
    })
}

fn enrollment(context: Arc<Context>) -> CheckFuture {
    boxed(async move {
        or_unknown(
            CheckId::Enrollment,
            read_stdout(
                &context,
                PROFILES,
                &["status", "-type", "enrollment"],
                mdm::parse_profiles_enrollment,
            )
            .await
            .map(|found| mdm::enrollment_check(&found)),
        )
    })
}
