//! Microsoft Defender Antivirus state from `Get-MpComputerStatus | Format-List …`.
//!
//! Property names and their values (`True`/`False`, numbers, the
//! `AMRunningMode` strings) are not localized. `AMRunningMode` says whether
//! Defender is the active antivirus:
//! - `Normal`: Defender is the active AV;
//! - `Passive Mode` / `SxS Passive Mode` / `EDR Block Mode`: another product
//!   registered as the active AV (see [`super::security_center`]);
//! - `Not running`: Defender is off (replaced by another product, or disabled).
//!
//! `AntivirusSignatureAge` is `4294967295` (and on some builds `65535`) when
//! Defender does not know the age: that is "unknown", not 136 years.

use crate::check::{Check, CheckId, Unknown};
use crate::parse::ParseError;

use super::fields::{Field, boolean, fields, find};
use super::{CommandLine, Seen};

const SOURCE_NAME: &str = "`Get-MpComputerStatus`";

/// The product name reported when Defender is the active antivirus.
pub const PRODUCT: &str = "Microsoft Defender Antivirus";

/// `AntivirusSignatureAge` values that mean "unknown".
const UNKNOWN_AGES: [u64; 2] = [4_294_967_295, 65_535];

const SCRIPT: &str = "$ErrorActionPreference = 'Stop'; Get-MpComputerStatus | Format-List \
AMRunningMode, AMServiceEnabled, AntivirusEnabled, RealTimeProtectionEnabled, AntivirusSignatureAge, \
AntivirusSignatureLastUpdated, DefenderSignaturesOutOfDate, AMProductVersion";

/// The command the collector runs.
pub fn command() -> CommandLine {
    CommandLine::powershell(SCRIPT)
}

/// `AMRunningMode`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunningMode {
    /// Defender is the active antivirus.
    Normal,
    /// Passive: another antivirus is active, Defender only reports.
    Passive,
    /// Side-by-side passive mode (Defender for Endpoint with another AV).
    SxsPassive,
    /// EDR in block mode: passive, but remediates EDR detections.
    EdrBlock,
    /// Defender is not running.
    NotRunning,
    /// A value this parser does not know (kept verbatim).
    Other(String),
}

impl RunningMode {
    /// Classifies an `AMRunningMode` value.
    pub fn from_value(value: &str) -> RunningMode {
        let lower = value.trim().to_ascii_lowercase();
        if lower == "normal" {
            RunningMode::Normal
        } else if lower.starts_with("sxs passive") {
            RunningMode::SxsPassive
        } else if lower.contains("edr block") {
            RunningMode::EdrBlock
        } else if lower.contains("passive") {
            RunningMode::Passive
        } else if lower == "not running" {
            RunningMode::NotRunning
        } else {
            RunningMode::Other(value.trim().to_owned())
        }
    }
}

/// The fields of `Get-MpComputerStatus` that decide the check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefenderStatus {
    /// `AMRunningMode` (absent before Windows 10 1703).
    pub running_mode: Option<Seen<RunningMode>>,
    /// `AMServiceEnabled`.
    pub service_enabled: Option<Seen<bool>>,
    /// `AntivirusEnabled`.
    pub antivirus_enabled: Option<Seen<bool>>,
    /// `RealTimeProtectionEnabled`.
    pub real_time_enabled: Option<Seen<bool>>,
    /// `AntivirusSignatureAge` in days; `Some(None)` = printed as "unknown".
    pub signature_age_days: Option<Seen<Option<u64>>>,
    /// `DefenderSignaturesOutOfDate`.
    pub signatures_out_of_date: Option<Seen<bool>>,
    /// `AMProductVersion`.
    pub product_version: Option<String>,
}

impl DefenderStatus {
    /// Defender is the active antivirus (mode `Normal`; on builds without
    /// `AMRunningMode`, when its antivirus is enabled).
    pub fn is_primary(&self) -> bool {
        match &self.running_mode {
            Some(mode) => mode.value == RunningMode::Normal,
            None => self
                .antivirus_enabled
                .as_ref()
                .is_some_and(|seen| seen.value),
        }
    }

    /// Active, with its service, antivirus and real-time protection on.
    pub fn running(&self) -> bool {
        let on = |field: &Option<Seen<bool>>| field.as_ref().is_some_and(|seen| seen.value);
        self.is_primary()
            && self.service_enabled.as_ref().is_none_or(|seen| seen.value)
            && on(&self.antivirus_enabled)
            && on(&self.real_time_enabled)
    }

    /// Defender itself says its signatures are out of date.
    pub fn out_of_date(&self) -> bool {
        self.signatures_out_of_date
            .as_ref()
            .is_some_and(|seen| seen.value)
    }

    /// The signature age when Defender knows it.
    pub fn signature_age(&self) -> Option<u64> {
        self.signature_age_days.as_ref().and_then(|seen| seen.value)
    }
}

/// Parses the `Format-List` output. Needs `AMRunningMode` or
/// `AntivirusEnabled`; a boolean field that is not `True`/`False` is an error.
pub fn parse_defender(text: &str) -> Result<DefenderStatus, ParseError> {
    let all = fields(text);
    let running_mode =
        present(&all, "AMRunningMode").map(|f| Seen::new(RunningMode::from_value(f.value), f.line));
    let status = DefenderStatus {
        service_enabled: flag(&all, "AMServiceEnabled")?,
        antivirus_enabled: flag(&all, "AntivirusEnabled")?,
        real_time_enabled: flag(&all, "RealTimeProtectionEnabled")?,
        signatures_out_of_date: flag(&all, "DefenderSignaturesOutOfDate")?,
        signature_age_days: signature_age(&all)?,
        product_version: present(&all, "AMProductVersion").map(|f| f.value.to_owned()),
        running_mode,
    };
    if status.running_mode.is_none() && status.antivirus_enabled.is_none() {
        return Err(ParseError::new(
            SOURCE_NAME,
            "neither AMRunningMode nor AntivirusEnabled in the output",
        ));
    }
    Ok(status)
}

fn present<'f, 'a>(all: &'f [Field<'a>], key: &str) -> Option<&'f Field<'a>> {
    find(all, key).filter(|field| !field.value.is_empty())
}

fn flag(all: &[Field<'_>], key: &str) -> Result<Option<Seen<bool>>, ParseError> {
    present(all, key)
        .map(|field| {
            boolean(field.value)
                .map(|value| Seen::new(value, field.line))
                .ok_or_else(|| {
                    ParseError::new(
                        SOURCE_NAME,
                        format!("{key} is not True/False: {:?}", field.value),
                    )
                })
        })
        .transpose()
}

fn signature_age(all: &[Field<'_>]) -> Result<Option<Seen<Option<u64>>>, ParseError> {
    present(all, "AntivirusSignatureAge")
        .map(|field| {
            let days: u64 = field.value.parse().map_err(|_| {
                ParseError::new(
                    SOURCE_NAME,
                    format!("AntivirusSignatureAge is not a number: {:?}", field.value),
                )
            })?;
            Ok(Seen::new(
                (!UNKNOWN_AGES.contains(&days)).then_some(days),
                field.line,
            ))
        })
        .transpose()
}

/// The `antivirus` check when Defender is the active antivirus.
pub fn defender_check(status: &DefenderStatus) -> Check {
    let cmd = command();
    let running = status.running();
    let age = status.signature_age();
    let age_text = age.map_or_else(
        || "of unknown age".to_owned(),
        |days| format!("{days} day(s) old"),
    );
    let check = if !running {
        Check::fail(
            CheckId::Antivirus,
            format!("{PRODUCT} is installed but real-time protection is off"),
        )
        .remediation(
            "Open Windows Security > Virus & threat protection > Manage settings and turn on \
                 Real-time protection. If it is managed by your organization, contact IT.",
        )
    } else if status.out_of_date() {
        Check::fail(
            CheckId::Antivirus,
            format!("{PRODUCT} signatures are out of date ({age_text})"),
        )
        .remediation(
            "Open Windows Security > Virus & threat protection > Protection updates and select \
             \"Check for updates\".",
        )
    } else {
        Check::pass(
            CheckId::Antivirus,
            format!("{PRODUCT} running, signatures {age_text}"),
        )
    };
    let mut check = check
        .fact("present", true)
        .fact("running", running)
        .fact("product", PRODUCT);
    if let Some(days) = age {
        check = check.fact("signature_age_days", days);
    }
    let lines = [
        status.running_mode.as_ref().map(|s| s.line.as_str()),
        status.antivirus_enabled.as_ref().map(|s| s.line.as_str()),
        status.real_time_enabled.as_ref().map(|s| s.line.as_str()),
        status.signature_age_days.as_ref().map(|s| s.line.as_str()),
        status
            .signatures_out_of_date
            .as_ref()
            .map(|s| s.line.as_str()),
    ];
    for line in lines.into_iter().flatten() {
        check = check.evidence(cmd.evidence(line));
    }
    check
}

/// An evidence line saying why Defender was not the answer.
pub fn not_primary_note(status: &DefenderStatus) -> String {
    let cmd = command();
    match (&status.running_mode, &status.antivirus_enabled) {
        (Some(mode), _) => cmd.evidence(&mode.line),
        (None, Some(enabled)) => cmd.evidence(&enabled.line),
        (None, None) => cmd.evidence_note("Defender is not the active antivirus"),
    }
}

/// An evidence line for a Defender query that failed.
pub fn failed_note(reason: &Unknown) -> String {
    command().evidence_note(&format!("failed ({reason})"))
}
