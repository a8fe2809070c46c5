//! Screen lock from the registry.
//!
//! Windows locks an idle session in two ways:
//! - a password-protected screen saver, per user, in `HKCU\Control
//!   Panel\Desktop`: `ScreenSaveActive` = "1", `ScreenSaverIsSecure` = "1",
//!   `ScreenSaveTimeOut` = idle seconds (REG_SZ), and `SCRNSAVE.EXE` = the
//!   screen saver. Group Policy writes the same names under `HKCU\Software\
//!   Policies\Microsoft\Windows\Control Panel\Desktop`, and a policy value
//!   wins over the user's, value by value. Per the Group Policy
//!   documentation the screen saver only runs when one is selected
//!   (`SCRNSAVE.EXE`) and the timeout is non-zero, so both are required;
//! - the machine inactivity limit (`InactivityTimeoutSecs`, REG_DWORD, in
//!   `HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Policies\System`),
//!   which locks any session after that many idle seconds.
//!
//! The HKCU keys are the *current user's*: the collector must run in the
//! desktop user's session. Run as SYSTEM (a service), it would read the
//! SYSTEM profile, so the check is then `unknown` rather than a guess.
//! Power settings ("require sign-in on wake" after the display turns off) and
//! Dynamic Lock are not read: a machine locked only by those reads as `fail`.

use crate::check::{Check, CheckId, Unknown, UnknownKind};
use crate::parse::ParseError;

use super::registry::{RegKey, parse_reg_query};
use super::{CommandLine, Seen};

const DESKTOP_SOURCE: &str = "`reg query …\\Control Panel\\Desktop`";
const INACTIVITY_SOURCE: &str = "`reg query …\\Policies\\System /v InactivityTimeoutSecs`";

/// The user's own settings.
pub fn user_command() -> CommandLine {
    CommandLine::reg_query(r"HKCU\Control Panel\Desktop")
}

/// The Group Policy settings for the user (often absent).
pub fn policy_command() -> CommandLine {
    CommandLine::reg_query(r"HKCU\Software\Policies\Microsoft\Windows\Control Panel\Desktop")
}

/// The machine inactivity limit (often absent).
pub fn machine_command() -> CommandLine {
    CommandLine::reg_query_value(
        r"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Policies\System",
        "InactivityTimeoutSecs",
    )
}

/// Screen-saver settings from one `Control Panel\Desktop` key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScreenSaver {
    /// `ScreenSaveActive`.
    pub active: Option<Seen<bool>>,
    /// `ScreenSaverIsSecure` ("On resume, display logon screen").
    pub secure: Option<Seen<bool>>,
    /// `ScreenSaveTimeOut`, seconds.
    pub timeout_seconds: Option<Seen<u64>>,
    /// `SCRNSAVE.EXE`, the selected screen saver.
    pub executable: Option<Seen<String>>,
}

/// Parses `reg query` of a `Control Panel\Desktop` key (user or policy).
/// A present value that is not a number is an error.
pub fn parse_desktop(text: &str) -> Result<ScreenSaver, ParseError> {
    let key = parse_reg_query(text, DESKTOP_SOURCE)?;
    Ok(ScreenSaver {
        active: number(&key, "ScreenSaveActive")?
            .map(|seen| Seen::new(seen.value != 0, &seen.line)),
        secure: number(&key, "ScreenSaverIsSecure")?
            .map(|seen| Seen::new(seen.value != 0, &seen.line)),
        timeout_seconds: number(&key, "ScreenSaveTimeOut")?,
        executable: key
            .value("SCRNSAVE.EXE")
            .filter(|value| !value.data.is_empty())
            .map(|value| Seen::new(value.data.clone(), &value.line)),
    })
}

fn number(key: &RegKey, name: &str) -> Result<Option<Seen<u64>>, ParseError> {
    key.value(name)
        .filter(|value| !value.data.is_empty())
        .map(|value| {
            value
                .decimal()
                .map(|n| Seen::new(n, &value.line))
                .ok_or_else(|| {
                    ParseError::new(
                        DESKTOP_SOURCE,
                        format!("{name} is not a number: {:?}", value.data),
                    )
                })
        })
        .transpose()
}

/// Parses `reg query …\Policies\System /v InactivityTimeoutSecs`.
pub fn parse_inactivity_limit(text: &str) -> Result<Option<Seen<u64>>, ParseError> {
    let key = parse_reg_query(text, INACTIVITY_SOURCE)?;
    key.value("InactivityTimeoutSecs")
        .map(|value| {
            value
                .number()
                .map(|n| Seen::new(n, &value.line))
                .ok_or_else(|| {
                    ParseError::new(INACTIVITY_SOURCE, format!("not a DWORD: {:?}", value.line))
                })
        })
        .transpose()
}

/// True when the account name is a machine account (SYSTEM shows as
/// `COMPUTERNAME$`), i.e. the agent runs as a service, not as the user.
pub fn is_machine_account(username: &str) -> bool {
    username.ends_with('$') || username.eq_ignore_ascii_case("SYSTEM")
}

/// One setting with the command it was read from (policy wins over user).
struct Effective<'a, T> {
    seen: &'a Seen<T>,
    from: CommandLine,
}

fn effective<'a, T>(
    policy: Option<&'a ScreenSaver>,
    user: &'a ScreenSaver,
    field: fn(&ScreenSaver) -> &Option<Seen<T>>,
) -> Option<Effective<'a, T>> {
    policy
        .and_then(|policy| field(policy).as_ref())
        .map(|seen| Effective {
            seen,
            from: policy_command(),
        })
        .or_else(|| {
            field(user).as_ref().map(|seen| Effective {
                seen,
                from: user_command(),
            })
        })
}

/// The `screen_lock` check: pass when a password-protected screen saver or
/// the machine inactivity limit locks the session after an idle time.
pub fn screen_lock_check(
    user: &ScreenSaver,
    policy: Option<&ScreenSaver>,
    inactivity: Option<&Seen<u64>>,
) -> Check {
    let active = effective(policy, user, |s| &s.active);
    let secure = effective(policy, user, |s| &s.secure);
    let timeout = effective(policy, user, |s| &s.timeout_seconds);
    let executable = effective(policy, user, |s| &s.executable);

    let mut missing = Vec::new();
    if !active.as_ref().is_some_and(|e| e.seen.value) {
        missing.push("the screen saver is off");
    }
    if executable.is_none() {
        missing.push("no screen saver is selected");
    }
    if !secure.as_ref().is_some_and(|e| e.seen.value) {
        missing.push("\"On resume, display logon screen\" is off");
    }
    let saver_timeout = timeout
        .as_ref()
        .map(|e| e.seen.value)
        .filter(|secs| *secs > 0);
    if saver_timeout.is_none() {
        missing.push("the screen saver has no wait time");
    }
    let saver_lock = if missing.is_empty() {
        saver_timeout
    } else {
        None
    };
    let machine_lock = inactivity.map(|seen| seen.value).filter(|secs| *secs > 0);

    let lock = match (saver_lock, machine_lock) {
        (Some(saver), Some(machine)) if machine < saver => {
            Some((machine, "machine inactivity limit"))
        }
        (Some(saver), _) => Some((saver, "password-protected screen saver")),
        (None, Some(machine)) => Some((machine, "machine inactivity limit")),
        (None, None) => None,
    };

    let check = match lock {
        Some((seconds, how)) => Check::pass(
            CheckId::ScreenLock,
            format!("screen locks after {seconds} s idle ({how})"),
        )
        .fact("enabled", true)
        .fact("timeout_seconds", seconds),
        None => Check::fail(
            CheckId::ScreenLock,
            format!(
                "no automatic screen lock: {} and no machine inactivity limit",
                missing.join(", ")
            ),
        )
        .fact("enabled", false)
        .remediation(
            "Open Settings > Personalization > Lock screen > Screen saver, choose a screen saver \
             (\"Blank\" is fine), set Wait to the time your organization requires (e.g. 5 \
             minutes) and tick \"On resume, display logon screen\".",
        ),
    };

    let mut check = check;
    let evidence = [
        active.map(|e| e.from.evidence(&e.seen.line)),
        secure.map(|e| e.from.evidence(&e.seen.line)),
        timeout.map(|e| e.from.evidence(&e.seen.line)),
        executable.map(|e| e.from.evidence(&e.seen.line)),
        inactivity.map(|seen| machine_command().evidence(&seen.line)),
    ];
    for line in evidence.into_iter().flatten() {
        check = check.evidence(line);
    }
    if policy.is_none() {
        check = check.evidence(policy_command().evidence_note("key absent (no Group Policy)"));
    }
    if inactivity.is_none() {
        check =
            check.evidence(machine_command().evidence_note("value absent (no inactivity limit)"));
    }
    check
}

/// The `screen_lock` check when the agent does not run as the desktop user.
pub fn screen_lock_not_user_session(username: &str) -> Check {
    Check::unknown(
        CheckId::ScreenLock,
        Unknown::new(
            UnknownKind::NotApplicable,
            format!(
                "the agent runs as {username}, not as the desktop user; screen-lock settings are \
                 per user"
            ),
        ),
    )
    .remediation("Run the Sallyport posture check from the signed-in user's session.")
}

/// The `screen_lock` check when the settings could not be read.
pub fn screen_lock_unknown(reason: Unknown) -> Check {
    Check::unknown(CheckId::ScreenLock, reason).remediation(
        "The screen-lock settings could not be read. Check Settings > Personalization > Lock \
         screen > Screen saver: a screen saver with \"On resume, display logon screen\" ticked.",
    )
}
