//! `csrutil status`: System Integrity Protection.
//!
//! ```text
//! System Integrity Protection status: enabled.
//! System Integrity Protection status: disabled.
//! System Integrity Protection status: unknown (Custom Configuration).
//!
//! Configuration:
//!     Apple Internal: disabled
//!     Kext Signing: enabled
//!     Filesystem Protections: disabled
//!     ...
//! ```
//!
//! Only the exact `enabled.` passes: a custom configuration means some
//! protections were switched off in Recovery, which is what SIP is there to
//! prevent. Any other value after the prefix that starts with a known word
//! (`enabled`, `disabled`, `unknown`) is a measured deviation and fails; a
//! value that starts with none of them is unparseable.

use crate::check::{Check, CheckId};

use super::{ParseError, clip, key_value, unexpected};

const SOURCE: &str = "`csrutil status`";
const PREFIX: &str = "System Integrity Protection status:";

/// The SIP status word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SipStatus {
    /// Exactly `enabled.`.
    Enabled,
    /// `disabled.`.
    Disabled,
    /// `unknown (Custom Configuration).`.
    CustomConfiguration,
    /// Another value starting with a known word, e.g. `enabled (Apple Internal).`.
    Other(String),
}

/// What `csrutil status` said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sip {
    /// The status.
    pub status: SipStatus,
    /// The raw status line.
    pub line: String,
    /// Protections listed as `disabled` in the Configuration block (custom
    /// configurations), e.g. `Filesystem Protections`. `Apple Internal` is
    /// left out: it is disabled on every customer Mac.
    pub disabled_protections: Vec<String>,
}

/// Parses `csrutil status`.
pub fn parse_csrutil_status(text: &str) -> Result<Sip, ParseError> {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with(PREFIX))
        .ok_or_else(|| unexpected(SOURCE, &format!("a {PREFIX:?} line"), text))?;
    let value = line.get(PREFIX.len()..).unwrap_or("").trim();
    let status = if value == "enabled." {
        SipStatus::Enabled
    } else if value == "disabled." {
        SipStatus::Disabled
    } else if value.starts_with("unknown (Custom Configuration)") {
        SipStatus::CustomConfiguration
    } else if ["enabled", "disabled", "unknown"]
        .iter()
        .any(|word| value.starts_with(word))
    {
        SipStatus::Other(value.to_owned())
    } else {
        return Err(ParseError::new(
            SOURCE,
            format!("unknown status {:?}", clip(value, 60)),
        ));
    };
    let disabled_protections = text
        .lines()
        .skip_while(|l| l.trim() != "Configuration:")
        .filter_map(key_value)
        .filter(|(name, state)| *state == "disabled" && *name != "Apple Internal")
        .map(|(name, _)| name.to_owned())
        .collect();
    Ok(Sip {
        status,
        line: line.to_owned(),
        disabled_protections,
    })
}

/// The `sip` check: pass only on exactly `enabled.`.
pub fn sip_check(sip: &Sip) -> Check {
    let id = CheckId::Sip;
    let summary = match &sip.status {
        SipStatus::Enabled => {
            return Check::pass(id, "System Integrity Protection is enabled")
                .fact("enabled", true)
                .evidence(format!("ran {SOURCE}: {:?}", sip.line));
        }
        SipStatus::Disabled => "System Integrity Protection is disabled".to_owned(),
        SipStatus::CustomConfiguration if !sip.disabled_protections.is_empty() => format!(
            "System Integrity Protection is partly disabled: {}",
            sip.disabled_protections.join(", ")
        ),
        SipStatus::CustomConfiguration => {
            "System Integrity Protection has a custom configuration".to_owned()
        }
        SipStatus::Other(value) => format!(
            "System Integrity Protection status is {:?}, not \"enabled.\"",
            clip(value, 40)
        ),
    };
    Check::fail(id, summary)
        .fact("enabled", false)
        .evidence(format!("ran {SOURCE}: {:?}", sip.line))
        .remediation(
            "Turn SIP fully back on: start up in macOS Recovery, open Utilities → Terminal, run `csrutil clear` (or `csrutil enable`), and restart.",
        )
}
