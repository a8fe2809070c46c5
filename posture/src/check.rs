//! One posture check: what was measured, how, and what to do about it.
//!
//! A [`Check`] is a *measurement*, not a verdict. Its status says whether the
//! control was found in place (`pass`), found missing (`fail`) or could not be
//! determined (`unknown`, always with a reason). Thresholds that an
//! organisation chooses (minimum OS version, screen-lock delay, update age)
//! belong to the Rego policy in [`crate::policy`], which reads `observed`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The stable identifier of a check. These names are part of the broker API
/// and of the Rego policy input, so renaming one is a breaking change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckId {
    /// OS name, version, build and running kernel.
    OsVersion,
    /// Pending updates, how many of them are security updates, and for how long.
    SecurityUpdates,
    /// Days since an update was last installed.
    LastUpdate,
    /// Whether installed updates wait for a reboot.
    RebootPending,
    /// Encryption of the volume the OS runs from.
    DiskEncryption,
    /// Host firewall active with a filtering policy.
    Firewall,
    /// Screen lock enabled, and after how long.
    ScreenLock,
    /// Antivirus / EDR present and current.
    Antivirus,
    /// UEFI Secure Boot.
    SecureBoot,
    /// macOS System Integrity Protection.
    Sip,
    /// macOS Gatekeeper.
    Gatekeeper,
    /// Machine identifiers readable without admin rights.
    DeviceIdentity,
    /// A TPM (or equivalent) is present.
    Tpm,
    /// Directory domain or MDM enrolment.
    Enrollment,
    /// The version of this agent.
    AgentVersion,
}

impl CheckId {
    /// Every check id, in display order.
    pub const ALL: [CheckId; 15] = [
        CheckId::OsVersion,
        CheckId::SecurityUpdates,
        CheckId::LastUpdate,
        CheckId::RebootPending,
        CheckId::DiskEncryption,
        CheckId::Firewall,
        CheckId::ScreenLock,
        CheckId::Antivirus,
        CheckId::SecureBoot,
        CheckId::Sip,
        CheckId::Gatekeeper,
        CheckId::DeviceIdentity,
        CheckId::Tpm,
        CheckId::Enrollment,
        CheckId::AgentVersion,
    ];

    /// The snake_case name used on the wire and in policy.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckId::OsVersion => "os_version",
            CheckId::SecurityUpdates => "security_updates",
            CheckId::LastUpdate => "last_update",
            CheckId::RebootPending => "reboot_pending",
            CheckId::DiskEncryption => "disk_encryption",
            CheckId::Firewall => "firewall",
            CheckId::ScreenLock => "screen_lock",
            CheckId::Antivirus => "antivirus",
            CheckId::SecureBoot => "secure_boot",
            CheckId::Sip => "sip",
            CheckId::Gatekeeper => "gatekeeper",
            CheckId::DeviceIdentity => "device_identity",
            CheckId::Tpm => "tpm",
            CheckId::Enrollment => "enrollment",
            CheckId::AgentVersion => "agent_version",
        }
    }

    /// Parses the wire name back (for `--check NAME`).
    pub fn from_name(name: &str) -> Option<CheckId> {
        CheckId::ALL.into_iter().find(|id| id.as_str() == name)
    }
}

impl std::fmt::Display for CheckId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The outcome of a measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// The control was observed in place.
    Pass,
    /// The control was observed missing or off.
    Fail,
    /// The state could not be determined; see [`Check::unknown`] for why.
    Unknown,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Pass => "pass",
            Status::Fail => "fail",
            Status::Unknown => "unknown",
        })
    }
}

/// Why a check could not be determined. Never a guessed pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownKind {
    /// Only a privileged source would answer and we are not privileged.
    PermissionDenied,
    /// The command or file that answers this is not on the machine.
    SourceMissing,
    /// The source did not answer within the check's timeout.
    TimedOut,
    /// The source answered with something the parser does not understand.
    Unparseable,
    /// The signal does not exist in this environment (no desktop session, no EFI, ...).
    NotApplicable,
    /// The source failed in another way (non-zero exit, I/O error).
    SourceFailed,
}

impl std::fmt::Display for UnknownKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            UnknownKind::PermissionDenied => "permission denied",
            UnknownKind::SourceMissing => "source missing",
            UnknownKind::TimedOut => "timed out",
            UnknownKind::Unparseable => "unparseable output",
            UnknownKind::NotApplicable => "not applicable",
            UnknownKind::SourceFailed => "source failed",
        })
    }
}

/// The reason attached to an `unknown` check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unknown {
    /// The class of failure, for policy and dashboards.
    pub kind: UnknownKind,
    /// What exactly happened, for the helpdesk.
    pub detail: String,
}

impl Unknown {
    /// A reason of `kind` with a human explanation.
    pub fn new(kind: UnknownKind, detail: impl Into<String>) -> Self {
        Unknown {
            kind,
            detail: detail.into(),
        }
    }
}

impl std::fmt::Display for Unknown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind, self.detail)
    }
}

/// One measured signal.
///
/// Build it with [`Check::pass`], [`Check::fail`] or [`Check::unknown`] so that
/// an `unknown` always carries its reason, then add facts, evidence and a
/// remediation with the builder methods.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// Which signal this is.
    pub id: CheckId,
    /// Pass, fail or unknown.
    pub status: Status,
    /// One line a person can read, e.g. "LUKS2 on /dev/nvme0n1p3".
    pub summary: String,
    /// Structured facts the policy reads (`input.checks.<id>.observed.<fact>`).
    pub observed: Map<String, Value>,
    /// Where each fact came from: commands run, files read, with the raw line.
    pub evidence: Vec<String>,
    /// What the user or IT should do when this is not a pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remediation: Option<String>,
    /// Why the status is `unknown`; present exactly when it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unknown: Option<Unknown>,
}

impl Check {
    fn new(id: CheckId, status: Status, summary: impl Into<String>) -> Self {
        Check {
            id,
            status,
            summary: summary.into(),
            observed: Map::new(),
            evidence: Vec::new(),
            remediation: None,
            unknown: None,
        }
    }

    /// The control is in place.
    pub fn pass(id: CheckId, summary: impl Into<String>) -> Self {
        Check::new(id, Status::Pass, summary)
    }

    /// The control is missing or off.
    pub fn fail(id: CheckId, summary: impl Into<String>) -> Self {
        Check::new(id, Status::Fail, summary)
    }

    /// The state could not be determined, for `reason`.
    pub fn unknown(id: CheckId, reason: Unknown) -> Self {
        let mut check = Check::new(id, Status::Unknown, format!("unknown ({reason})"));
        check.unknown = Some(reason);
        check
    }

    /// Adds a structured fact for the policy.
    pub fn fact(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.observed.insert(key.to_owned(), value.into());
        self
    }

    /// Adds a line of evidence (a command run, a file read, a raw value).
    pub fn evidence(mut self, line: impl Into<String>) -> Self {
        self.evidence.push(line.into());
        self
    }

    /// Sets what to do about it.
    pub fn remediation(mut self, text: impl Into<String>) -> Self {
        self.remediation = Some(text.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_always_carries_its_reason() {
        let check = Check::unknown(
            CheckId::Firewall,
            Unknown::new(UnknownKind::PermissionDenied, "nft needs CAP_NET_ADMIN"),
        );
        assert_eq!(check.status, Status::Unknown);
        assert_eq!(
            check.unknown.as_ref().map(|u| u.kind),
            Some(UnknownKind::PermissionDenied)
        );
        assert!(check.summary.contains("nft needs CAP_NET_ADMIN"));
    }

    #[test]
    fn ids_round_trip_through_their_names() {
        for id in CheckId::ALL {
            assert_eq!(CheckId::from_name(id.as_str()), Some(id));
            let json = serde_json::to_string(&id).unwrap();
            assert_eq!(json, format!("\"{}\"", id.as_str()));
        }
        assert_eq!(CheckId::from_name("nope"), None);
    }
}
