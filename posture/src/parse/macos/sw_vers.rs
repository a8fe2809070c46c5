//! `sw_vers` (product name, version, Rapid Security Response, build) and
//! `uname -r` (the Darwin kernel release).
//!
//! `sw_vers` prints one `Key:<tabs>value` line per field (tabs shown as
//! spaces here):
//!
//! ```text
//! ProductName:        macOS
//! ProductVersion:        13.4.1
//! ProductVersionExtra:    (a)
//! BuildVersion:        22F770820d
//! ```
//!
//! `ProductVersionExtra` only appears while a Rapid Security Response is
//! installed; the policy needs it because `13.4.1 (a)` carries fixes that
//! `13.4.1` does not.

use crate::check::{Check, CheckId};

use super::{ParseError, clip, key_value, unexpected};

const SOURCE: &str = "`sw_vers`";
const UNAME: &str = "`uname -r`";

/// What `sw_vers` says about the running macOS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwVers {
    /// `ProductName`: `macOS` (older releases: `Mac OS X`).
    pub product_name: String,
    /// `ProductVersion`, e.g. `15.1.1`.
    pub product_version: String,
    /// `ProductVersionExtra`, e.g. `(a)`: the Rapid Security Response level.
    pub product_version_extra: Option<String>,
    /// `BuildVersion`, e.g. `24B91`.
    pub build_version: String,
    /// `ProductVersion` as numbers, e.g. `[15, 1, 1]`.
    pub version_parts: Vec<u32>,
}

/// Parses `sw_vers`. Name, version and build are required; a version that is
/// not dotted numbers is an error (the policy compares `version_parts`).
pub fn parse_sw_vers(text: &str) -> Result<SwVers, ParseError> {
    let mut name = None;
    let mut version = None;
    let mut extra = None;
    let mut build = None;
    for (key, value) in text.lines().filter_map(key_value) {
        let slot = match key {
            "ProductName" => &mut name,
            "ProductVersion" => &mut version,
            "ProductVersionExtra" => &mut extra,
            "BuildVersion" => &mut build,
            _ => continue,
        };
        if slot.is_none() && !value.is_empty() {
            *slot = Some(value.to_owned());
        }
    }
    let missing = |field: &str| unexpected(SOURCE, &format!("a {field} line"), text);
    let product_name = name.ok_or_else(|| missing("ProductName"))?;
    let product_version = version.ok_or_else(|| missing("ProductVersion"))?;
    let build_version = build.ok_or_else(|| missing("BuildVersion"))?;
    let version_parts = version_parts(&product_version).ok_or_else(|| {
        ParseError::new(
            SOURCE,
            format!(
                "ProductVersion {:?} is not dotted numbers",
                clip(&product_version, 40)
            ),
        )
    })?;
    if !build_version.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(ParseError::new(
            SOURCE,
            format!(
                "BuildVersion {:?} is not alphanumeric",
                clip(&build_version, 40)
            ),
        ));
    }
    Ok(SwVers {
        product_name,
        product_version,
        product_version_extra: extra,
        build_version,
        version_parts,
    })
}

/// `15.1.1` → `[15, 1, 1]`; `None` unless 1 to 4 dot-separated numbers.
fn version_parts(version: &str) -> Option<Vec<u32>> {
    let parts: Vec<u32> = version
        .split('.')
        .map(|part| {
            if part.is_empty() || !part.chars().all(|c| c.is_ascii_digit()) {
                None
            } else {
                part.parse().ok()
            }
        })
        .collect::<Option<_>>()?;
    (1..=4).contains(&parts.len()).then_some(parts)
}

/// Parses `uname -r`, e.g. `24.1.0`: one token on one line.
pub fn parse_kernel_release(text: &str) -> Result<String, ParseError> {
    let trimmed = text.trim();
    if trimmed.is_empty() || trimmed.contains(char::is_whitespace) {
        return Err(unexpected(UNAME, "one release token", text));
    }
    Ok(trimmed.to_owned())
}

impl SwVers {
    /// The version as Apple displays it: `13.4.1 (a)`.
    pub fn display_version(&self) -> String {
        match &self.product_version_extra {
            Some(extra) => format!("{} {extra}", self.product_version),
            None => self.product_version.clone(),
        }
    }
}

/// The `os_version` check: identified means pass. `version` is the plain
/// `ProductVersion`; the RSR suffix is its own fact (`null` when none is
/// installed, which is a measurement too).
pub fn os_version_check(sw: &SwVers, kernel: Option<&str>) -> Check {
    let summary = format!(
        "{} {} ({})",
        sw.product_name,
        sw.display_version(),
        sw.build_version
    );
    let mut check = Check::pass(CheckId::OsVersion, summary)
        .fact("platform_id", "macos")
        .fact("name", sw.product_name.clone())
        .fact("version", sw.product_version.clone())
        .fact("version_parts", sw.version_parts.clone())
        .fact("build", sw.build_version.clone())
        .fact("rapid_security_response", sw.product_version_extra.clone())
        .evidence(format!(
            "ran {SOURCE}: ProductVersion={} ProductVersionExtra={} BuildVersion={}",
            sw.product_version,
            sw.product_version_extra.as_deref().unwrap_or("(none)"),
            sw.build_version
        ));
    if let Some(kernel) = kernel {
        check = check
            .fact("kernel", kernel)
            .evidence(format!("ran {UNAME}: {kernel}"));
    }
    check
}
