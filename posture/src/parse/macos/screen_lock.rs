//! Screen lock: `sysadminctl -screenLock status` (the password delay) and
//! `defaults -currentHost read com.apple.screensaver idleTime` (when the
//! screen saver starts), both as the signed-in console user.
//!
//! `sysadminctl` logs its answer on **stderr**, behind a timestamp:
//!
//! ```text
//! 2024-06-04 08:06:27.934 sysadminctl[55361:106849336] screenLock delay is immediate
//! 2024-06-04 08:06:27.934 sysadminctl[55361:106849336] screenLock delay is 300 seconds
//! 2024-06-04 08:06:27.934 sysadminctl[55361:106849336] screenLock is off
//! ```
//!
//! Both settings are per user. Read by a daemon (root, no session) they
//! describe root's defaults, not the person at the screen, so
//! [`console_session_problem`] refuses that case before anything is read.
//!
//! `timeout_seconds` = screen-saver idle time + password delay. Not
//! included: display sleep (`pmset displaysleep`) also locks the screen and
//! may come first, and a configuration profile may set `idleTime` in the
//! managed domain; both would only shorten the real timeout.

use crate::check::{Check, CheckId};

use super::defaults::parse_defaults_integer;
use super::{ParseError, clip, unexpected};

const SYSADMINCTL: &str = "`sysadminctl -screenLock status`";
const IDLE_TIME: &str = "`defaults -currentHost read com.apple.screensaver idleTime`";

/// How long after the screen saver starts (or the display sleeps) the
/// password is required.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockDelay {
    /// Required at once.
    Immediate,
    /// Required after this many seconds.
    Seconds(u32),
    /// Never required: waking the screen needs no password.
    Off,
}

impl LockDelay {
    /// Seconds until the password is required; `None` when never.
    pub fn seconds(self) -> Option<u32> {
        match self {
            LockDelay::Immediate => Some(0),
            LockDelay::Seconds(seconds) => Some(seconds),
            LockDelay::Off => None,
        }
    }
}

/// The screen-lock line of `sysadminctl` and what it means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScreenLockStatus {
    /// The delay.
    pub delay: LockDelay,
    /// The raw line from `screenLock` on (timestamp prefix removed).
    pub line: String,
}

/// Parses the stderr of `sysadminctl -screenLock status`.
pub fn parse_sysadminctl_screen_lock(text: &str) -> Result<ScreenLockStatus, ParseError> {
    let line = text
        .lines()
        .find_map(|l| l.find("screenLock ").and_then(|at| l.get(at..)))
        .map(str::trim)
        .ok_or_else(|| unexpected(SYSADMINCTL, "a \"screenLock …\" line", text))?;
    let delay = match line {
        "screenLock is off" => LockDelay::Off,
        "screenLock delay is immediate" => LockDelay::Immediate,
        _ => line
            .strip_prefix("screenLock delay is ")
            .and_then(|rest| {
                rest.strip_suffix(" seconds")
                    .or_else(|| rest.strip_suffix(" second"))
            })
            .and_then(|n| n.trim().parse::<u32>().ok())
            .map(LockDelay::Seconds)
            .ok_or_else(|| {
                ParseError::new(
                    SYSADMINCTL,
                    format!("unknown screenLock line {:?}", clip(line, 60)),
                )
            })?,
    };
    Ok(ScreenLockStatus {
        delay,
        line: line.to_owned(),
    })
}

/// Parses `defaults -currentHost read com.apple.screensaver idleTime`:
/// seconds of inactivity before the screen saver starts; `0` = never.
pub fn parse_idle_time(text: &str) -> Result<u32, ParseError> {
    let value = parse_defaults_integer(IDLE_TIME, text)?;
    u32::try_from(value)
        .map_err(|_| ParseError::new(IDLE_TIME, format!("idleTime {value} is out of range")))
}

/// The two settings combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScreenLock {
    /// The password delay.
    pub delay: LockDelay,
    /// Screen-saver idle time in seconds; `None` when the user never set it
    /// (the macOS default applies, which this does not guess).
    pub idle_seconds: Option<u32>,
}

impl ScreenLock {
    /// True when the screen locks by itself: a password is required and the
    /// screen saver starts at some point.
    pub fn enabled(self) -> bool {
        self.delay != LockDelay::Off && self.idle_seconds != Some(0)
    }

    /// Idle seconds until a password is needed: idle time + delay. `None`
    /// when it never locks by itself, or when the idle time is the unset
    /// default.
    pub fn timeout_seconds(self) -> Option<u64> {
        let delay = self.delay.seconds()?;
        match self.idle_seconds? {
            0 => None,
            idle => Some(u64::from(idle) + u64::from(delay)),
        }
    }
}

/// The `screen_lock` check. `idle_seconds` is `None` when `idleTime` is not
/// set for the user (`defaults` says the pair does not exist).
pub fn screen_lock_check(status: &ScreenLockStatus, idle_seconds: Option<u32>) -> Check {
    let id = CheckId::ScreenLock;
    let lock = ScreenLock {
        delay: status.delay,
        idle_seconds,
    };
    let delay_evidence = format!("ran {SYSADMINCTL} as the console user: {:?}", status.line);
    let idle_evidence = match idle_seconds {
        Some(0) => format!("ran {IDLE_TIME}: 0 (the screen saver never starts)"),
        Some(seconds) => format!("ran {IDLE_TIME}: {seconds}"),
        None => format!(
            "ran {IDLE_TIME}: not set for this user, so the macOS default applies (not measured)"
        ),
    };
    let check = if lock.delay == LockDelay::Off {
        Check::fail(id, "no password is required after the screen saver or sleep")
            .remediation("System Settings → Lock Screen: set \"Require password after screen saver begins or display is turned off\" to Immediately (or at most 5 minutes).")
    } else if !lock.enabled() {
        Check::fail(id, "the screen saver never starts, so the screen never locks by itself")
            .remediation("System Settings → Lock Screen: set \"Start Screen Saver when inactive\" to 5 minutes or less.")
    } else {
        match lock.timeout_seconds() {
            Some(seconds) => Check::pass(id, format!("locks after {seconds} s idle")),
            None => Check::pass(
                id,
                "password required after the screen saver (idle time is the macOS default)",
            ),
        }
    };
    let check = check
        .fact("enabled", lock.enabled())
        .evidence(delay_evidence)
        .evidence(idle_evidence);
    match lock.timeout_seconds() {
        Some(seconds) => check.fact("timeout_seconds", seconds),
        None => check,
    }
}

/// Why this process cannot read the console user's screen lock, or `None`
/// when it runs as that user. `current_user` is `id -un`, `console_owner`
/// the owner of `/dev/console` (`stat -f %Su /dev/console`; `root` at the
/// login window).
pub fn console_session_problem(current_user: &str, console_owner: &str) -> Option<String> {
    if current_user == "root" {
        Some("running as root (e.g. a launchd daemon), not in a user session: the screen-lock settings belong to the signed-in user; collect from the user's session (LaunchAgent)".to_owned())
    } else if console_owner == "root" || console_owner.is_empty() {
        Some("nobody is signed in at the console (login window)".to_owned())
    } else if current_user != console_owner {
        Some(format!(
            "the console belongs to {console_owner:?} but this process runs as {current_user:?}: their screen-lock settings cannot be read from here"
        ))
    } else {
        None
    }
}

/// Parses a user name printed alone on a line (`id -un`, `stat -f %Su`).
pub fn parse_user_name(source: &'static str, text: &str) -> Result<String, ParseError> {
    let trimmed = text.trim();
    if trimmed.is_empty() || trimmed.contains(char::is_whitespace) {
        return Err(unexpected(source, "one user name", text));
    }
    Ok(trimmed.to_owned())
}
