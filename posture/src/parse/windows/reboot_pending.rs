//! Whether installed updates wait for a restart.
//!
//! Windows marks it with the existence of a registry *key* (not a value):
//! - `…\WindowsUpdate\Auto Update\RebootRequired` (Windows Update), and
//! - `…\Component Based Servicing\RebootPending` (servicing stack / CBS).
//!
//! Querying the marker key directly would answer "absent" through a
//! localized error message, indistinguishable from other failures; querying
//! its *parent* (which always exists) lists the immediate subkeys instead, so
//! the marker is present or not in a successful output. `PendingFileRename
//! Operations` is deliberately not used: installers and drivers set it for
//! reasons unrelated to updates.

use crate::check::{Check, CheckId, Unknown, UnknownKind};
use crate::parse::ParseError;

use super::registry::parse_reg_query;
use super::{CommandLine, Seen};

/// A registry key whose subkey marks a pending restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RebootMarker {
    /// `…\WindowsUpdate\Auto Update\RebootRequired`.
    WindowsUpdate,
    /// `…\Component Based Servicing\RebootPending`.
    ComponentServicing,
}

impl RebootMarker {
    /// Both markers, in the order the collector reads them.
    pub const ALL: [RebootMarker; 2] = [
        RebootMarker::WindowsUpdate,
        RebootMarker::ComponentServicing,
    ];

    /// The parent key that is queried.
    pub fn parent(self) -> &'static str {
        match self {
            RebootMarker::WindowsUpdate => {
                r"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\WindowsUpdate\Auto Update"
            }
            RebootMarker::ComponentServicing => {
                r"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Component Based Servicing"
            }
        }
    }

    /// The subkey whose existence means "restart pending".
    pub fn leaf(self) -> &'static str {
        match self {
            RebootMarker::WindowsUpdate => "RebootRequired",
            RebootMarker::ComponentServicing => "RebootPending",
        }
    }

    fn source_name(self) -> &'static str {
        match self {
            RebootMarker::WindowsUpdate => "`reg query …\\WindowsUpdate\\Auto Update`",
            RebootMarker::ComponentServicing => "`reg query …\\Component Based Servicing`",
        }
    }

    /// The command the collector runs for this marker.
    pub fn command(self) -> CommandLine {
        CommandLine::reg_query(self.parent())
    }
}

/// What one marker query showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkerState {
    /// Which marker.
    pub marker: RebootMarker,
    /// Present (`true`) or not; the line is the subkey line, or the queried
    /// key's line when the subkey is absent.
    pub pending: Seen<bool>,
}

/// Parses `reg query <parent>` and looks for the marker subkey.
pub fn parse_reboot_marker(text: &str, marker: RebootMarker) -> Result<MarkerState, ParseError> {
    let key = parse_reg_query(text, marker.source_name())?;
    let pending = match key.subkey(marker.leaf()) {
        Some(line) => Seen::new(true, line),
        None => Seen::new(false, &key.path),
    };
    Ok(MarkerState { marker, pending })
}

/// The `reboot_pending` check from both markers.
///
/// fail as soon as one marker is present (even if the other could not be
/// read); pass only when both were read and absent; otherwise unknown with
/// the first error.
pub fn reboot_pending_check(states: &[Result<MarkerState, Unknown>]) -> Check {
    if states.is_empty() {
        return Check::unknown(
            CheckId::RebootPending,
            Unknown::new(UnknownKind::SourceFailed, "no restart marker was read"),
        );
    }
    let present: Vec<&MarkerState> = states
        .iter()
        .filter_map(|state| state.as_ref().ok())
        .filter(|state| state.pending.value)
        .collect();
    if !present.is_empty() {
        let mut check = Check::fail(
            CheckId::RebootPending,
            "installed updates wait for a restart",
        )
        .fact("reboot_pending", true)
        .remediation("Save your work and restart Windows to finish installing updates.");
        for state in present {
            check = check.evidence(state.marker.command().evidence(&state.pending.line));
        }
        return check;
    }
    if let Some(reason) = states.iter().find_map(|state| state.as_ref().err()) {
        return Check::unknown(CheckId::RebootPending, reason.clone()).remediation(
            "Whether a restart is pending could not be read; restarting Windows clears any \
             pending restart.",
        );
    }
    let mut check =
        Check::pass(CheckId::RebootPending, "no restart pending").fact("reboot_pending", false);
    for state in states.iter().filter_map(|state| state.as_ref().ok()) {
        check = check.evidence(state.marker.command().evidence_note(&format!(
            "no {} subkey under \"{}\"",
            state.marker.leaf(),
            state.pending.line
        )));
    }
    check
}
