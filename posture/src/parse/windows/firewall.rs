//! Windows Defender Firewall profiles from
//! `Get-NetFirewallProfile -PolicyStore ActiveStore | Format-Table …`.
//!
//! `ActiveStore` is the *effective* policy (local settings merged with Group
//! Policy), which `netsh advfirewall` only prints in localized text ("État
//! Actif"). Column headers are property names and the values are enum names
//! (`True`/`False`/`NotConfigured`, `Block`/`Allow`), so nothing here is
//! localized:
//!
//! ```text
//!
//! Name    Enabled DefaultInboundAction
//! ----    ------- --------------------
//! Domain     True                Block
//! Private    True                Block
//! Public     True                Block
//! ```
//!
//! Every profile must be enabled for a pass: Windows switches profile with
//! the network, so one disabled profile is an unprotected network. A profile
//! whose default inbound action is `Allow` accepts everything and counts as
//! not filtering. `NotConfigured` means "the Windows default applies", which
//! is enabled / block inbound.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::check::{Check, CheckId, Unknown};
use crate::parse::ParseError;

use super::CommandLine;

const SOURCE_NAME: &str = "`Get-NetFirewallProfile`";

/// The source named in the `source` fact.
pub const SOURCE: &str = "Get-NetFirewallProfile -PolicyStore ActiveStore";

const SCRIPT: &str = "Get-NetFirewallProfile -PolicyStore ActiveStore | Format-Table -AutoSize Name, Enabled, DefaultInboundAction";

/// The command the collector runs.
pub fn command() -> CommandLine {
    CommandLine::powershell(SCRIPT)
}

/// One firewall profile (Domain, Private, Public).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirewallProfile {
    /// `Domain`, `Private` or `Public`.
    pub name: String,
    /// `Enabled` (`NotConfigured` = the default, on).
    pub enabled: bool,
    /// `DefaultInboundAction` is `Allow` (accept everything).
    pub inbound_allowed: bool,
    /// The table row, for evidence.
    pub line: String,
}

impl FirewallProfile {
    /// On, and not accepting every inbound connection.
    pub fn filtering(&self) -> bool {
        self.enabled && !self.inbound_allowed
    }
}

/// Parses the `Format-Table` output: a header with `Name` and `Enabled`
/// (optionally `DefaultInboundAction`), a dash line, one row per profile.
pub fn parse_firewall(text: &str) -> Result<Vec<FirewallProfile>, ParseError> {
    let mut lines = text.lines().map(str::trim).filter(|line| !line.is_empty());
    let header: Vec<String> = lines
        .by_ref()
        .find(|line| {
            let mut tokens = line.split_whitespace();
            tokens
                .next()
                .is_some_and(|t| t.eq_ignore_ascii_case("Name"))
                && tokens
                    .next()
                    .is_some_and(|t| t.eq_ignore_ascii_case("Enabled"))
        })
        .ok_or_else(|| ParseError::new(SOURCE_NAME, "no \"Name Enabled\" header"))?
        .split_whitespace()
        .map(str::to_ascii_lowercase)
        .collect();
    let inbound_column = header.iter().position(|h| h == "defaultinboundaction");
    if header.len() > 3 || (header.len() == 3 && inbound_column.is_none()) {
        return Err(ParseError::new(
            SOURCE_NAME,
            format!("unexpected columns: {header:?}"),
        ));
    }
    if !lines
        .next()
        .is_some_and(|line| line.chars().all(|c| c == '-' || c == ' '))
    {
        return Err(ParseError::new(
            SOURCE_NAME,
            "no dash line under the header",
        ));
    }

    let mut profiles = Vec::new();
    for line in lines {
        let tokens: Vec<&str> = line.split_whitespace().collect();
        if tokens.len() != header.len() {
            return Err(ParseError::new(
                SOURCE_NAME,
                format!("row does not match the header: {line:?}"),
            ));
        }
        let (Some(name), Some(enabled)) = (tokens.first(), tokens.get(1)) else {
            return Err(ParseError::new(SOURCE_NAME, format!("short row: {line:?}")));
        };
        let enabled = match enabled.to_ascii_lowercase().as_str() {
            "true" | "notconfigured" => true,
            "false" => false,
            other => {
                return Err(ParseError::new(
                    SOURCE_NAME,
                    format!("Enabled is not True/False: {other:?}"),
                ));
            }
        };
        let inbound_allowed = match inbound_column.and_then(|col| tokens.get(col)) {
            None => false,
            Some(action) => match action.to_ascii_lowercase().as_str() {
                "allow" => true,
                "block" | "notconfigured" => false,
                other => {
                    return Err(ParseError::new(
                        SOURCE_NAME,
                        format!("DefaultInboundAction is not Block/Allow: {other:?}"),
                    ));
                }
            },
        };
        profiles.push(FirewallProfile {
            name: (*name).to_owned(),
            enabled,
            inbound_allowed,
            line: line.to_owned(),
        });
    }
    if profiles.is_empty() {
        return Err(ParseError::new(SOURCE_NAME, "no profile rows"));
    }
    Ok(profiles)
}

/// The `firewall` check: pass when every profile is on and filtering.
pub fn firewall_check(profiles: &[FirewallProfile]) -> Check {
    let cmd = command();
    let map: BTreeMap<&str, bool> = profiles
        .iter()
        .map(|p| (p.name.as_str(), p.filtering()))
        .collect();
    let not_filtering: Vec<&FirewallProfile> = profiles.iter().filter(|p| !p.filtering()).collect();
    let all_on = not_filtering.is_empty();

    let check = if all_on {
        Check::pass(
            CheckId::Firewall,
            format!(
                "Windows Firewall on for all profiles ({})",
                names(profiles.iter())
            ),
        )
    } else {
        Check::fail(
            CheckId::Firewall,
            format!(
                "Windows Firewall off or accepting all inbound traffic for: {}",
                names(not_filtering.iter().copied())
            ),
        )
        .remediation(
            "Open Windows Security > Firewall & network protection and turn Microsoft Defender \
             Firewall on for the Domain, Private and Public networks. If a policy keeps it off, \
             contact IT.",
        )
    };
    let profiles_fact: Map<String, Value> = map
        .into_iter()
        .map(|(name, on)| (name.to_owned(), Value::Bool(on)))
        .collect();
    let mut check = check
        .fact("enabled", all_on)
        .fact("source", SOURCE)
        .fact("profiles", Value::Object(profiles_fact));
    for profile in profiles {
        check = check.evidence(cmd.evidence(&profile.line));
    }
    check
}

fn names<'a>(profiles: impl Iterator<Item = &'a FirewallProfile>) -> String {
    profiles
        .map(|p| p.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The `firewall` check when the profiles could not be read.
pub fn firewall_unknown(reason: Unknown) -> Check {
    Check::unknown(CheckId::Firewall, reason)
        .evidence(command().evidence_note("no usable output"))
        .remediation(
            "The firewall state could not be read. Open Windows Security > Firewall & network \
             protection and check that every network shows \"Firewall is on\".",
        )
}
