//! Directory join state from `dsregcmd /status`.
//!
//! The "Device State" box prints `AzureAdJoined : YES|NO`, `DomainJoined :
//! YES|NO` and (before Windows 11 22H2) `EnterpriseJoined : YES|NO`; the
//! keys and values are not localized. A hybrid-joined device says YES to
//! both Azure AD and the domain and is reported as `azure_ad` (the join that
//! conditional access sees), with both lines in the evidence.
//!
//! `WorkplaceJoined` (a registered personal device) is not a join. MDM-only
//! enrolment (`HKLM\SOFTWARE\Microsoft\Enrollments`) is not read yet, so an
//! Intune-enrolled but unjoined device reads as `fail`.

use crate::check::{Check, CheckId, Unknown};
use crate::parse::ParseError;

use super::fields::{Field, boolean, fields, find};
use super::{CommandLine, Seen};

const SOURCE_NAME: &str = "`dsregcmd /status`";

/// The command the collector runs.
pub fn command() -> CommandLine {
    CommandLine::new("dsregcmd.exe", &["/status"])
}

/// The join state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinState {
    /// `AzureAdJoined` (Microsoft Entra joined).
    pub azure_ad: Seen<bool>,
    /// `DomainJoined` (on-premises Active Directory).
    pub domain: Seen<bool>,
    /// `EnterpriseJoined` (on-premises device registration service).
    pub enterprise: Option<Seen<bool>>,
    /// `DomainName`, when joined.
    pub domain_name: Option<String>,
    /// `TenantName`, when Azure AD joined.
    pub tenant_name: Option<String>,
}

impl JoinState {
    /// The `kind` fact, or `None` when not joined.
    pub fn kind(&self) -> Option<&'static str> {
        if self.azure_ad.value {
            Some("azure_ad")
        } else if self.domain.value || self.enterprise.as_ref().is_some_and(|e| e.value) {
            Some("domain")
        } else {
            None
        }
    }
}

/// Parses `dsregcmd /status`; needs `AzureAdJoined` and `DomainJoined`.
pub fn parse_dsregcmd(text: &str) -> Result<JoinState, ParseError> {
    let all = fields(text);
    Ok(JoinState {
        azure_ad: required_flag(&all, "AzureAdJoined")?,
        domain: required_flag(&all, "DomainJoined")?,
        enterprise: find(&all, "EnterpriseJoined")
            .and_then(|field| boolean(field.value).map(|value| Seen::new(value, field.line))),
        domain_name: text_field(&all, "DomainName"),
        tenant_name: text_field(&all, "TenantName"),
    })
}

fn required_flag(all: &[Field<'_>], key: &str) -> Result<Seen<bool>, ParseError> {
    let field =
        find(all, key).ok_or_else(|| ParseError::new(SOURCE_NAME, format!("no {key} line")))?;
    boolean(field.value)
        .map(|value| Seen::new(value, field.line))
        .ok_or_else(|| {
            ParseError::new(
                SOURCE_NAME,
                format!("{key} is not YES/NO: {:?}", field.value),
            )
        })
}

fn text_field(all: &[Field<'_>], key: &str) -> Option<String> {
    find(all, key)
        .filter(|field| !field.value.is_empty())
        .map(|field| field.value.to_owned())
}

/// The `enrollment` check: pass when joined to Azure AD or a domain.
pub fn enrollment_check(state: &JoinState) -> Check {
    let cmd = command();
    let hybrid = state.azure_ad.value && state.domain.value;
    let check = match state.kind() {
        Some(kind) => {
            let to = match kind {
                "azure_ad" => state
                    .tenant_name
                    .clone()
                    .unwrap_or_else(|| "Azure AD".to_owned()),
                _ => state
                    .domain_name
                    .clone()
                    .unwrap_or_else(|| "a domain".to_owned()),
            };
            let how = if hybrid { "hybrid-joined" } else { "joined" };
            Check::pass(CheckId::Enrollment, format!("{how} to {to}"))
                .fact("enrolled", true)
                .fact("kind", kind)
        }
        None => Check::fail(CheckId::Enrollment, "not joined to Azure AD or a domain")
            .fact("enrolled", false)
            .remediation(
                "This PC is not joined to your organization. Ask IT to enroll it (Settings > \
                 Accounts > Access work or school > Connect, using your work account).",
            ),
    };
    let mut check = check
        .evidence(cmd.evidence(&state.azure_ad.line))
        .evidence(cmd.evidence(&state.domain.line));
    if let Some(enterprise) = &state.enterprise {
        check = check.evidence(cmd.evidence(&enterprise.line));
    }
    check
}

/// The `enrollment` check when `dsregcmd` could not answer.
pub fn enrollment_unknown(reason: Unknown) -> Check {
    Check::unknown(CheckId::Enrollment, reason)
        .evidence(command().evidence_note("no usable output"))
        .remediation(
            "The join state could not be read. Run `dsregcmd /status` in a command prompt and \
             send the \"Device State\" section to IT.",
        )
}
