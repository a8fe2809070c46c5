//! Antivirus products registered with Windows Security Center
//! (`root\SecurityCenter2` `AntiVirusProduct`), for machines where another
//! product replaced Microsoft Defender.
//!
//! Readable without admin rights, but absent on Windows Server. The script
//! prints one `productState displayName` line per product.
//!
//! `productState` is undocumented; its layout is the one every vendor and
//! tool relies on: bits 8–15 hold the scanner state (`0x10`/`0x11` = on,
//! `0x00`/`0x01` = off/snoozed) and bits 0–7 the signature state (`0x00` =
//! up to date, `0x10` = out of date). E.g. `397568` = `0x061100`: on, up to
//! date; `393472` = `0x060100`: off; `397584` = `0x061110`: on, out of date.

use crate::check::{Check, CheckId, Unknown};
use crate::parse::ParseError;

use super::CommandLine;

const SOURCE_NAME: &str = "`Get-CimInstance root/SecurityCenter2 AntiVirusProduct`";

const SCRIPT: &str = "$ErrorActionPreference = 'Stop'; \
Get-CimInstance -Namespace root/SecurityCenter2 -ClassName AntiVirusProduct | \
ForEach-Object { '{0} {1}' -f $_.productState, $_.displayName }";

/// The command the collector runs.
pub fn command() -> CommandLine {
    CommandLine::powershell(SCRIPT)
}

/// One registered antivirus product.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvProduct {
    /// `displayName`, e.g. `CrowdStrike Falcon Sensor`.
    pub name: String,
    /// `productState`.
    pub state: u32,
    /// The raw line.
    pub line: String,
}

impl AvProduct {
    /// The scanner is on (bit 12 of `productState`, i.e. `0x10` in byte 1).
    pub fn enabled(&self) -> bool {
        (self.state >> 8) & 0x10 != 0
    }

    /// The product reports its signatures as current.
    pub fn up_to_date(&self) -> bool {
        self.state & 0xFF == 0
    }
}

/// Parses `productState displayName` lines; no line = no product registered.
pub fn parse_security_center(text: &str) -> Result<Vec<AvProduct>, ParseError> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(|line| {
            let (state, name) = line.split_once(char::is_whitespace).ok_or_else(|| {
                ParseError::new(SOURCE_NAME, format!("no product name: {line:?}"))
            })?;
            let state = state.parse().map_err(|_| {
                ParseError::new(
                    SOURCE_NAME,
                    format!("productState is not a number: {line:?}"),
                )
            })?;
            Ok(AvProduct {
                name: name.trim().to_owned(),
                state,
                line: line.to_owned(),
            })
        })
        .collect()
}

/// The `antivirus` check from Security Center: pass when a registered
/// product is on and up to date.
pub fn security_center_check(products: &[AvProduct]) -> Check {
    let cmd = command();
    let current = products.iter().find(|p| p.enabled() && p.up_to_date());
    let stale = products.iter().find(|p| p.enabled());
    let check = match (current, stale, products.first()) {
        (Some(product), _, _) => Check::pass(
            CheckId::Antivirus,
            format!("{} running and up to date", product.name),
        )
        .fact("present", true)
        .fact("running", true)
        .fact("product", product.name.clone()),
        (None, Some(product), _) => Check::fail(
            CheckId::Antivirus,
            format!(
                "{} is running but reports out-of-date signatures",
                product.name
            ),
        )
        .fact("present", true)
        .fact("running", true)
        .fact("product", product.name.clone())
        .remediation(format!(
            "Open {} and update its signatures, or contact IT.",
            product.name
        )),
        (None, None, Some(product)) => Check::fail(
            CheckId::Antivirus,
            format!("{} is installed but not running", product.name),
        )
        .fact("present", true)
        .fact("running", false)
        .fact("product", product.name.clone())
        .remediation(format!(
            "Turn on real-time protection in {} (or in Windows Security > Virus & threat \
             protection), or contact IT.",
            product.name
        )),
        (None, None, None) => {
            Check::fail(CheckId::Antivirus, "no antivirus is registered or running")
                .fact("present", false)
                .fact("running", false)
                .remediation(
                    "Turn on Microsoft Defender Antivirus in Windows Security > Virus & threat \
                 protection, or install the antivirus your organization provides.",
                )
        }
    };
    if products.is_empty() {
        return check.evidence(cmd.evidence_note("no AntiVirusProduct registered"));
    }
    products.iter().fold(check, |check, product| {
        check.evidence(cmd.evidence(&product.line))
    })
}

/// An evidence line for a Security Center query that failed.
pub fn failed_note(reason: &Unknown) -> String {
    command().evidence_note(&format!("failed ({reason})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn product(state: u32) -> AvProduct {
        AvProduct {
            name: "X".into(),
            state,
            line: String::new(),
        }
    }

    #[test]
    fn product_state_bits() {
        assert!(product(397_568).enabled() && product(397_568).up_to_date());
        assert!(!product(393_472).enabled());
        assert!(product(397_584).enabled() && !product(397_584).up_to_date());
        assert!(product(266_240).enabled() && product(266_240).up_to_date());
        assert!(!product(262_144).enabled());
    }
}
