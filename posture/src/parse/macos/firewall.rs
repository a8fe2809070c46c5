//! The macOS application firewall, from `socketfilterfw --getglobalstate`
//! or, where that is gone or says nothing useful (macOS 15 removed
//! `com.apple.alf.plist`), from `system_profiler SPFirewallDataType`.
//!
//! ```text
//! Firewall is enabled. (State = 1)
//! Firewall is enabled. (State = 2)      <- block all incoming connections
//! Firewall is disabled. (State = 0)
//! ```
//!
//! ```text
//! Firewall:
//!
//!     Firewall Settings:
//!
//!       Mode: Limit incoming connections to specific services and applications
//! ```
//!
//! State 1 and 2 are both a filtering policy (pass); state 0 / "Allow all
//! incoming connections" accepts everything (fail).

use crate::check::{Check, CheckId};

use super::{ParseError, key_value, unexpected};

const SOCKETFILTERFW: &str = "`socketfilterfw --getglobalstate`";
const SYSTEM_PROFILER: &str = "`system_profiler SPFirewallDataType`";

/// How the firewall treats incoming connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirewallMode {
    /// Off: every incoming connection is allowed.
    Off,
    /// On: only allowed services and signed apps may listen.
    On,
    /// On, blocking all incoming connections except essential services.
    BlockAll,
}

/// Which tool answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirewallSource {
    /// `/usr/libexec/ApplicationFirewall/socketfilterfw --getglobalstate`.
    SocketFilterFw,
    /// `system_profiler SPFirewallDataType`.
    SystemProfiler,
}

impl FirewallSource {
    /// The `source` fact.
    pub fn as_str(self) -> &'static str {
        match self {
            FirewallSource::SocketFilterFw => "socketfilterfw",
            FirewallSource::SystemProfiler => "system_profiler",
        }
    }

    fn command(self) -> &'static str {
        match self {
            FirewallSource::SocketFilterFw => SOCKETFILTERFW,
            FirewallSource::SystemProfiler => SYSTEM_PROFILER,
        }
    }
}

/// The firewall state and the line that decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirewallState {
    /// Off, on or block-all.
    pub mode: FirewallMode,
    /// The tool that said so.
    pub source: FirewallSource,
    /// The raw deciding line.
    pub line: String,
}

/// Parses `socketfilterfw --getglobalstate`. The `(State = N)` number decides
/// and must agree with the words; without it, the words alone decide.
pub fn parse_socketfilterfw_global_state(text: &str) -> Result<FirewallState, ParseError> {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("Firewall is"))
        .ok_or_else(|| unexpected(SOCKETFILTERFW, "a \"Firewall is …\" line", text))?;
    let says_enabled = line.starts_with("Firewall is enabled");
    let says_disabled = line.starts_with("Firewall is disabled");
    let mode = match state_number(line) {
        Some(Ok(0)) if !says_enabled => FirewallMode::Off,
        Some(Ok(1)) if !says_disabled => FirewallMode::On,
        Some(Ok(2)) if !says_disabled => FirewallMode::BlockAll,
        Some(_) => {
            return Err(ParseError::new(
                SOCKETFILTERFW,
                format!("unknown or contradictory state in {line:?}"),
            ));
        }
        None if says_enabled => FirewallMode::On,
        None if says_disabled => FirewallMode::Off,
        None => {
            return Err(unexpected(
                SOCKETFILTERFW,
                "enabled/disabled or a State",
                text,
            ));
        }
    };
    Ok(FirewallState {
        mode,
        source: FirewallSource::SocketFilterFw,
        line: line.to_owned(),
    })
}

/// `(State = 2)` → `Some(Ok(2))`; `None` when the line has no state at all.
fn state_number(line: &str) -> Option<Result<u8, ()>> {
    let (_, rest) = line.split_once("(State = ")?;
    let digits = rest.split(')').next().unwrap_or("").trim();
    Some(digits.parse::<u8>().map_err(|_| ()))
}

/// Parses `system_profiler SPFirewallDataType`: its `Mode:` line decides.
pub fn parse_system_profiler_firewall(text: &str) -> Result<FirewallState, ParseError> {
    let (line, mode) = text
        .lines()
        .map(str::trim)
        .find_map(|line| match key_value(line) {
            Some(("Mode", value)) => Some((line, value)),
            _ => None,
        })
        .ok_or_else(|| unexpected(SYSTEM_PROFILER, "a \"Mode:\" line", text))?;
    let mode = if mode.starts_with("Allow all incoming connections") {
        FirewallMode::Off
    } else if mode.starts_with("Block all incoming connections") {
        FirewallMode::BlockAll
    } else if mode.starts_with("Limit incoming connections") {
        FirewallMode::On
    } else {
        return Err(ParseError::new(
            SYSTEM_PROFILER,
            format!("unknown firewall mode in {line:?}"),
        ));
    };
    Ok(FirewallState {
        mode,
        source: FirewallSource::SystemProfiler,
        line: line.to_owned(),
    })
}

/// The `firewall` check: on or block-all pass, off fails.
pub fn firewall_check(state: &FirewallState) -> Check {
    let id = CheckId::Firewall;
    let check = match state.mode {
        FirewallMode::On => Check::pass(id, "macOS firewall is on"),
        FirewallMode::BlockAll => {
            Check::pass(id, "macOS firewall is on, blocking all incoming connections")
        }
        FirewallMode::Off => Check::fail(id, "macOS firewall is off").remediation(
            "Turn on the firewall: System Settings → Network → Firewall (macOS 13 and later) or System Preferences → Security & Privacy → Firewall.",
        ),
    };
    check
        .fact("enabled", state.mode != FirewallMode::Off)
        .fact("source", state.source.as_str())
        .evidence(format!("ran {}: {:?}", state.source.command(), state.line))
}
