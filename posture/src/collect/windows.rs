//! Windows collectors: thin shims over `crate::parse::windows`.
//!
//! Each one runs the command(s) named by its parse module, hands the text to
//! the pure parser and builds the check with the module's pure `*_check`
//! function. The only logic here is I/O plumbing: exit codes, the cache,
//! environment variables. Sources need no admin rights except `manage-bde`
//! (BitLocker), whose refusal is reported as `unknown` (`permission_denied`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::check::{Check, CheckId, Unknown, UnknownKind};
use crate::parse::windows::registry::{RegExit, classify_exit};
use crate::parse::windows::{
    CommandLine, antivirus, bitlocker, bitlocker_cim, defender, device_identity, enrollment,
    firewall, first_line, last_update, mentions_access_denied, os_version, reboot_pending,
    screen_lock, secure_boot, security_center, security_updates, tpm,
};
use crate::probe;

use super::{CheckFuture, Collector, Context, boxed};

/// How long a cached Windows Update search may be reused.
const WUA_CACHE_MAX_AGE: Duration = Duration::from_secs(3600);

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
        (CheckId::DeviceIdentity, device_identity),
        (CheckId::Tpm, tpm),
        (CheckId::Enrollment, enrollment),
        (CheckId::AgentVersion, super::agent_version),
    ]
}

// ---------------------------------------------------------------- plumbing

/// Runs `cmd` and returns its stdout; a non-zero exit is an error.
async fn stdout_of(cmd: &CommandLine, timeout: Duration) -> Result<String, Unknown> {
    probe::run_ok(cmd.program, &cmd.arg_refs(), timeout)
        .await
        .map(|out| out.stdout)
        .map_err(Unknown::from)
}

/// Runs a `reg query`: `Some(stdout)` when the key/value exists, `None` when
/// it does not.
async fn reg_query(cmd: &CommandLine, timeout: Duration) -> Result<Option<String>, Unknown> {
    let out = probe::run(cmd.program, &cmd.arg_refs(), timeout).await?;
    match classify_exit(out.code, &out.stderr) {
        RegExit::Found => Ok(Some(out.stdout)),
        RegExit::Absent => Ok(None),
        RegExit::Denied(message) => Err(Unknown::new(
            UnknownKind::PermissionDenied,
            format!("`{}`: {message}", cmd.display()),
        )),
        RegExit::Failed(detail) => Err(Unknown::new(
            UnknownKind::SourceFailed,
            format!("`{}`: {detail}", cmd.display()),
        )),
    }
}

/// A `reg query` of a key or value that must exist.
async fn reg_query_required(cmd: &CommandLine, timeout: Duration) -> Result<String, Unknown> {
    reg_query(cmd, timeout).await?.ok_or_else(|| {
        Unknown::new(
            UnknownKind::SourceMissing,
            format!("`{}`: the key or value does not exist", cmd.display()),
        )
    })
}

// ---------------------------------------------------------------- collectors

fn os_version(context: Arc<Context>) -> CheckFuture {
    boxed(async move {
        let parsed = reg_query_required(&os_version::command(), context.command_timeout)
            .await
            .and_then(|text| os_version::parse_os_version(&text).map_err(Unknown::from));
        match parsed {
            Ok(os) => os_version::os_version_check(&os),
            Err(reason) => os_version::os_version_unknown(reason),
        }
    })
}

/// The offline WUA search is the slowest Windows source, so its raw output is
/// cached for an hour, stamped with the WUA data store's modification time.
fn security_updates(context: Arc<Context>) -> CheckFuture {
    boxed(async move {
        let stamp = wua_stamp();
        let cached = context.cache.get(
            security_updates::CACHE_KEY,
            &stamp,
            WUA_CACHE_MAX_AGE,
            context.now,
        );
        let (text, age) = match cached {
            Some(hit) => (hit.value, Some(hit.age)),
            None => match stdout_of(&security_updates::command(), context.command_timeout).await {
                Ok(text) => (text, None),
                Err(reason) => return security_updates::security_updates_unknown(reason),
            },
        };
        match security_updates::parse_security_updates(&text) {
            Ok(found) => {
                let check = security_updates::security_updates_check(&found, context.now);
                match age {
                    Some(age) => check.evidence(format!(
                        "from the cached search result, {} minute(s) old",
                        age.as_secs() / 60
                    )),
                    None => {
                        context
                            .cache
                            .put(security_updates::CACHE_KEY, &stamp, &text, context.now);
                        check
                    }
                }
            }
            Err(err) => security_updates::security_updates_unknown(err.into()),
        }
    })
}

/// The modification time of the WUA data store, which changes on every scan
/// and installation; a constant when it cannot be read (the hourly maximum
/// age still applies).
fn wua_stamp() -> String {
    let windows =
        std::env::var_os("SystemRoot").map_or_else(|| PathBuf::from(r"C:\Windows"), PathBuf::from);
    let store = windows.join(r"SoftwareDistribution\DataStore\DataStore.edb");
    std::fs::metadata(store)
        .and_then(|meta| meta.modified())
        .ok()
        .and_then(|modified| modified.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or_else(
            || "datastore-unreadable".to_owned(),
            |since| since.as_nanos().to_string(),
        )
}

fn last_update(context: Arc<Context>) -> CheckFuture {
    boxed(async move {
        let parsed = stdout_of(&last_update::command(), context.command_timeout)
            .await
            .and_then(|text| last_update::parse_last_update(&text).map_err(Unknown::from));
        match parsed {
            Ok(last) => last_update::last_update_check(&last, context.now),
            Err(reason) => last_update::last_update_unknown(reason),
        }
    })
}

fn reboot_pending(context: Arc<Context>) -> CheckFuture {
    boxed(async move {
        let read = |marker: reboot_pending::RebootMarker| {
            let timeout = context.command_timeout;
            async move {
                reg_query_required(&marker.command(), timeout)
                    .await
                    .and_then(|text| {
                        reboot_pending::parse_reboot_marker(&text, marker).map_err(Unknown::from)
                    })
            }
        };
        let [windows_update, servicing] = reboot_pending::RebootMarker::ALL;
        let (a, b) = tokio::join!(read(windows_update), read(servicing));
        reboot_pending::reboot_pending_check(&[a, b])
    })
}

/// BitLocker from CIM first (numbers, the same in every language); when
/// CIM cannot answer, from `manage-bde`'s localized text, with the reason
/// for the fallback in the evidence.
fn disk_encryption(context: Arc<Context>) -> CheckFuture {
    boxed(async move {
        let drive = bitlocker::system_drive(std::env::var("SystemDrive").ok().as_deref());
        let cim = bitlocker_cim::command(&drive);
        let why_not_cim = match stdout_of(&cim, context.command_timeout).await {
            Ok(json) => match bitlocker_cim::parse_bitlocker_cim(&json) {
                Ok(status) => return bitlocker::disk_encryption_check_from(&status, &drive, &cim),
                Err(err) => Unknown::from(err).to_string(),
            },
            Err(reason) => reason.to_string(),
        };
        let note = format!("CIM did not answer ({why_not_cim}); fell back to manage-bde's text");
        let mut check = disk_encryption_manage_bde(&drive, context).await;
        check.evidence.insert(0, note);
        check
    })
}

/// BitLocker from `manage-bde -status` (localized text: English, French and
/// German are understood).
async fn disk_encryption_manage_bde(drive: &str, context: Arc<Context>) -> Check {
    let cmd = bitlocker::command(drive);
    let out = match probe::run(cmd.program, &cmd.arg_refs(), context.command_timeout).await {
        Ok(out) => out,
        Err(err) => return bitlocker::disk_encryption_unknown(drive, err.into()),
    };
    // manage-bde prints its errors on stdout.
    let all_output = format!("{}\n{}", out.stdout, out.stderr);
    if let Some(message) = bitlocker::access_denied(out.code, &all_output) {
        return bitlocker::disk_encryption_denied(drive, &message);
    }
    if !out.success() {
        let detail = format!("exit code {:?}: {}", out.code, first_line(&all_output));
        return bitlocker::disk_encryption_unknown(
            drive,
            Unknown::new(UnknownKind::SourceFailed, detail),
        );
    }
    match bitlocker::parse_bitlocker(&out.stdout) {
        Ok(status) => bitlocker::disk_encryption_check(&status, drive),
        Err(err) => bitlocker::disk_encryption_unknown(drive, err.into()),
    }
}

fn firewall(context: Arc<Context>) -> CheckFuture {
    boxed(async move {
        let parsed = stdout_of(&firewall::command(), context.command_timeout)
            .await
            .and_then(|text| firewall::parse_firewall(&text).map_err(Unknown::from));
        match parsed {
            Ok(profiles) => firewall::firewall_check(&profiles),
            Err(reason) => firewall::firewall_unknown(reason),
        }
    })
}

fn screen_lock(context: Arc<Context>) -> CheckFuture {
    boxed(async move {
        let username = std::env::var("USERNAME").unwrap_or_default();
        if screen_lock::is_machine_account(&username) {
            return screen_lock::screen_lock_not_user_session(&username);
        }
        let timeout = context.command_timeout;
        let (user_cmd, policy_cmd, machine_cmd) = (
            screen_lock::user_command(),
            screen_lock::policy_command(),
            screen_lock::machine_command(),
        );
        let (user, policy, machine) = tokio::join!(
            reg_query_required(&user_cmd, timeout),
            reg_query(&policy_cmd, timeout),
            reg_query(&machine_cmd, timeout),
        );
        let parsed = (|| -> Result<_, Unknown> {
            let user = screen_lock::parse_desktop(&user?)?;
            let policy = policy?
                .map(|text| screen_lock::parse_desktop(&text))
                .transpose()?;
            let inactivity = machine?
                .map(|text| screen_lock::parse_inactivity_limit(&text))
                .transpose()?
                .flatten();
            Ok((user, policy, inactivity))
        })();
        match parsed {
            Ok((user, policy, inactivity)) => {
                screen_lock::screen_lock_check(&user, policy.as_ref(), inactivity.as_ref())
            }
            Err(reason) => screen_lock::screen_lock_unknown(reason),
        }
    })
}

fn antivirus(context: Arc<Context>) -> CheckFuture {
    boxed(async move {
        let timeout = context.command_timeout;
        let defender = stdout_of(&defender::command(), timeout)
            .await
            .and_then(|text| defender::parse_defender(&text).map_err(Unknown::from));
        if !antivirus::needs_security_center(&defender) {
            return antivirus::antivirus_check(&defender, None);
        }
        let products = stdout_of(&security_center::command(), timeout)
            .await
            .and_then(|text| security_center::parse_security_center(&text).map_err(Unknown::from));
        antivirus::antivirus_check(&defender, Some(&products))
    })
}

fn secure_boot(context: Arc<Context>) -> CheckFuture {
    boxed(async move {
        let firmware = std::env::var("firmware_type")
            .ok()
            .and_then(|value| secure_boot::parse_firmware_type(&value));
        match reg_query(&secure_boot::command(), context.command_timeout).await {
            Ok(Some(text)) => match secure_boot::parse_secure_boot(&text) {
                Ok(state) => secure_boot::secure_boot_check(Some(&state), firmware),
                Err(err) => secure_boot::secure_boot_unknown(err.into()),
            },
            Ok(None) => secure_boot::secure_boot_check(None, firmware),
            Err(reason) => secure_boot::secure_boot_unknown(reason),
        }
    })
}

fn device_identity(context: Arc<Context>) -> CheckFuture {
    boxed(async move {
        let timeout = context.command_timeout;
        let (guid, serial) = tokio::join!(
            async {
                reg_query_required(&device_identity::guid_command(), timeout)
                    .await
                    .and_then(|text| {
                        device_identity::parse_machine_guid(&text).map_err(Unknown::from)
                    })
            },
            async {
                stdout_of(&device_identity::serial_command(), timeout)
                    .await
                    .and_then(|text| {
                        device_identity::parse_bios_serial(&text).map_err(Unknown::from)
                    })
            },
        );
        device_identity::device_identity_check(&guid, &serial)
    })
}

fn tpm(context: Arc<Context>) -> CheckFuture {
    boxed(async move {
        let cmd = tpm::command();
        let out = match probe::run(cmd.program, &cmd.arg_refs(), context.command_timeout).await {
            Ok(out) => out,
            Err(err) => return tpm::tpm_unknown(err.into()),
        };
        let all_output = format!("{}\n{}", out.stdout, out.stderr);
        if mentions_access_denied(&all_output) {
            let message = all_output
                .lines()
                .map(str::trim)
                .find(|line| mentions_access_denied(line))
                .unwrap_or_else(|| first_line(&all_output));
            return tpm::tpm_denied(message);
        }
        if !out.success() {
            let detail = format!("exit code {:?}: {}", out.code, first_line(&all_output));
            return tpm::tpm_unknown(Unknown::new(UnknownKind::SourceFailed, detail));
        }
        match tpm::parse_tpm(&out.stdout) {
            Ok(info) => tpm::tpm_check(&info),
            Err(err) => tpm::tpm_unknown(err.into()),
        }
    })
}

fn enrollment(context: Arc<Context>) -> CheckFuture {
    boxed(async move {
        let parsed = stdout_of(&enrollment::command(), context.command_timeout)
            .await
            .and_then(|text| enrollment::parse_dsregcmd(&text).map_err(Unknown::from));
        match parsed {
            Ok(state) => enrollment::enrollment_check(&state),
            Err(reason) => enrollment::enrollment_unknown(reason),
        }
    })
}
