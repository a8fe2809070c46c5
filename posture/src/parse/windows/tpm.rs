//! TPM presence from `tpmtool getdeviceinformation`.
//!
//! `Get-Tpm` and the `Win32_Tpm` WMI class need admin rights; `tpmtool`
//! (Windows 10 1809 and later) asks the TPM Base Services
//! (`Tbsi_GetDeviceInfo`), which any user may call, and prints `-Key: Value`
//! lines:
//!
//! ```text
//! -TPM Present: True
//! -TPM Version: 2.0
//! -TPM Manufacturer ID: INTC
//! ```
//!
//! If it is refused anyway, the check is `unknown` (`permission_denied`).
//! Keys are matched in English; `True`/`False` are not localized.

use crate::check::{Check, CheckId, Unknown, UnknownKind};
use crate::parse::ParseError;

use super::fields::{boolean, fields, find};
use super::{CommandLine, Seen};

const SOURCE_NAME: &str = "`tpmtool getdeviceinformation`";

/// The command the collector runs.
pub fn command() -> CommandLine {
    CommandLine::new("tpmtool.exe", &["getdeviceinformation"])
}

/// What `tpmtool` says about the TPM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TpmInfo {
    /// `-TPM Present`.
    pub present: Seen<bool>,
    /// `-TPM Version`, e.g. `2.0` (absent when no TPM).
    pub version: Option<Seen<String>>,
    /// `-TPM Manufacturer Full Name` / `-TPM Manufacturer ID`.
    pub manufacturer: Option<String>,
}

/// Parses `tpmtool getdeviceinformation`; needs a `TPM Present` line.
pub fn parse_tpm(text: &str) -> Result<TpmInfo, ParseError> {
    let all = fields(text);
    let present_field = find(&all, "TPM Present")
        .ok_or_else(|| ParseError::new(SOURCE_NAME, "no \"TPM Present\" line"))?;
    let present = boolean(present_field.value)
        .map(|value| Seen::new(value, present_field.line))
        .ok_or_else(|| {
            ParseError::new(
                SOURCE_NAME,
                format!("TPM Present is not True/False: {:?}", present_field.value),
            )
        })?;
    let version = find(&all, "TPM Version")
        .filter(|field| !field.value.is_empty())
        .map(|field| Seen::new(field.value.to_owned(), field.line));
    let manufacturer = ["TPM Manufacturer Full Name", "TPM Manufacturer ID"]
        .iter()
        .find_map(|key| find(&all, key).filter(|field| !field.value.is_empty()))
        .map(|field| field.value.to_owned());
    Ok(TpmInfo {
        present,
        version,
        manufacturer,
    })
}

/// The `tpm` check: pass when a TPM is present.
pub fn tpm_check(info: &TpmInfo) -> Check {
    let cmd = command();
    let check = if info.present.value {
        let version = info
            .version
            .as_ref()
            .map_or("of unknown version", |v| v.value.as_str());
        let by = info
            .manufacturer
            .as_ref()
            .map_or_else(String::new, |m| format!(" ({m})"));
        Check::pass(CheckId::Tpm, format!("TPM {version} present{by}"))
    } else {
        Check::fail(CheckId::Tpm, "no TPM found").remediation(
            "Turn on the TPM (often called PTT on Intel or fTPM on AMD) in the PC's UEFI firmware \
             settings, or contact IT: some PCs have none.",
        )
    };
    let mut check = check
        .fact("present", info.present.value)
        .evidence(cmd.evidence(&info.present.line));
    if let Some(version) = &info.version {
        check = check
            .fact("version", version.value.clone())
            .evidence(cmd.evidence(&version.line));
    }
    check
}

/// The `tpm` check when `tpmtool` was refused.
pub fn tpm_denied(message: &str) -> Check {
    Check::unknown(
        CheckId::Tpm,
        Unknown::new(
            UnknownKind::PermissionDenied,
            format!("tpmtool was refused access to the TPM Base Services: {message}"),
        ),
    )
    .evidence(command().evidence(message))
    .remediation(tpm_remediation())
}

/// The `tpm` check when `tpmtool` could not answer (missing before 1809, …).
pub fn tpm_unknown(reason: Unknown) -> Check {
    Check::unknown(CheckId::Tpm, reason)
        .evidence(command().evidence_note("no usable output"))
        .remediation(tpm_remediation())
}

fn tpm_remediation() -> &'static str {
    "The TPM state could not be read without administrator rights. Check by hand: run `tpm.msc` \
     or Windows Security > Device security > Security processor."
}
