//! DNF: `dnf -C -q updateinfo list --security` (security advisories pending).

use super::super::ParseError;

const SOURCE: &str = "`dnf updateinfo list --security`";

/// One pending security advisory line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advisory {
    /// Advisory id (`FEDORA-2021-83fdddca0f`, `RHSA-2024:1234`).
    pub id: String,
    /// Severity/type column (`Moderate/Sec.`, `Important/Sec.`).
    pub severity: String,
    /// The package NEVRA that fixes it.
    pub package: String,
}

/// Parses the advisory list: three whitespace-separated columns per line.
/// An empty output means nothing is pending; a line of another shape (an
/// error message, a metadata warning) makes the whole output untrustworthy.
pub fn parse_dnf_security(text: &str) -> Result<Vec<Advisory>, ParseError> {
    let mut advisories = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let columns: Vec<&str> = line.split_whitespace().collect();
        match columns.as_slice() {
            [id, severity, package]
                if severity.contains("Sec") || severity.contains("security") =>
            {
                advisories.push(Advisory {
                    id: (*id).to_owned(),
                    severity: (*severity).to_owned(),
                    package: (*package).to_owned(),
                });
            }
            _ => {
                return Err(ParseError::new(
                    SOURCE,
                    format!("unexpected line: {line:.80}"),
                ));
            }
        }
    }
    Ok(advisories)
}
