//! OS name, version and patch level from
//! `reg query "HKLM\SOFTWARE\Microsoft\Windows NT\CurrentVersion"`.
//!
//! The registry is read instead of `systeminfo`/`winver` text because value
//! names are never localized. Windows 11 kept `ProductName` = "Windows 10 …"
//! for compatibility, so the name is corrected from the build number
//! (Windows 11 = build 22000 or later).

use crate::check::{Check, CheckId, Unknown};
use crate::parse::ParseError;

use super::registry::{RegKey, RegValue, parse_reg_query};
use super::{CommandLine, Seen};

const SOURCE_NAME: &str = "`reg query HKLM\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion`";

/// The first build of Windows 11.
pub const WINDOWS_11_FIRST_BUILD: u64 = 22000;

/// The command the collector runs.
pub fn command() -> CommandLine {
    CommandLine::reg_query(r"HKLM\SOFTWARE\Microsoft\Windows NT\CurrentVersion")
}

/// What `CurrentVersion` says about the installed Windows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OsVersion {
    /// `ProductName` as stored (Windows 11 still says "Windows 10 …").
    pub product_name: Seen<String>,
    /// `CurrentMajorVersionNumber` (10 on Windows 10 and 11).
    pub major: u64,
    /// `CurrentMinorVersionNumber` (0).
    pub minor: u64,
    /// `CurrentBuild`, e.g. 22631.
    pub build: Seen<u64>,
    /// `UBR` (update build revision, the patch level), e.g. 3880.
    pub ubr: Option<Seen<u64>>,
    /// `DisplayVersion` (`23H2`), else the older `ReleaseId` (`2009`).
    pub display_version: Option<Seen<String>>,
    /// `EditionID`, e.g. `Professional`, `Enterprise`.
    pub edition: Option<Seen<String>>,
}

impl OsVersion {
    /// The product name, with "Windows 10" corrected to "Windows 11" when the
    /// build says so.
    pub fn name(&self) -> String {
        corrected_name(&self.product_name.value, self.build.value)
    }

    /// `[major, minor, build, ubr]` (without `ubr` when it is not recorded).
    pub fn version_parts(&self) -> Vec<u64> {
        let mut parts = vec![self.major, self.minor, self.build.value];
        if let Some(ubr) = &self.ubr {
            parts.push(ubr.value);
        }
        parts
    }

    /// `10.0.22631.3880`.
    pub fn version(&self) -> String {
        self.version_parts()
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(".")
    }

    /// The OS build as Windows shows it: `22631.3880`.
    pub fn build_string(&self) -> String {
        match &self.ubr {
            Some(ubr) => format!("{}.{}", self.build.value, ubr.value),
            None => self.build.value.to_string(),
        }
    }
}

/// "Windows 10 Pro" at build ≥ 22000 is "Windows 11 Pro"; anything else
/// (Server names, older builds) is kept as is.
pub fn corrected_name(product_name: &str, build: u64) -> String {
    match product_name.strip_prefix("Windows 10") {
        Some(rest) if build >= WINDOWS_11_FIRST_BUILD => format!("Windows 11{rest}"),
        _ => product_name.to_owned(),
    }
}

/// Parses the `reg query` output of the `CurrentVersion` key.
///
/// Requires `ProductName` and a numeric `CurrentBuild` (or
/// `CurrentBuildNumber`); the major/minor version come from
/// `CurrentMajorVersionNumber`/`CurrentMinorVersionNumber`, else from the
/// legacy `CurrentVersion` string (`6.3`).
pub fn parse_os_version(text: &str) -> Result<OsVersion, ParseError> {
    let key = parse_reg_query(text, SOURCE_NAME)?;
    let product_name = text_value(&key, "ProductName")
        .ok_or_else(|| ParseError::new(SOURCE_NAME, "no ProductName value"))?;
    let build = ["CurrentBuild", "CurrentBuildNumber"]
        .iter()
        .find_map(|name| key.value(name))
        .and_then(|value| value.decimal().map(|n| Seen::new(n, &value.line)))
        .ok_or_else(|| ParseError::new(SOURCE_NAME, "no numeric CurrentBuild value"))?;
    let (major, minor) = major_minor(&key).ok_or_else(|| {
        ParseError::new(
            SOURCE_NAME,
            "no CurrentMajorVersionNumber or CurrentVersion",
        )
    })?;
    let ubr = key
        .value("UBR")
        .and_then(|value| value.number().map(|n| Seen::new(n, &value.line)));
    let display_version =
        text_value(&key, "DisplayVersion").or_else(|| text_value(&key, "ReleaseId"));
    Ok(OsVersion {
        product_name,
        major,
        minor,
        build,
        ubr,
        display_version,
        edition: text_value(&key, "EditionID"),
    })
}

fn text_value(key: &RegKey, name: &str) -> Option<Seen<String>> {
    key.value(name)
        .filter(|value| !value.data.is_empty())
        .map(|value| Seen::new(value.data.clone(), &value.line))
}

fn major_minor(key: &RegKey) -> Option<(u64, u64)> {
    let major = key
        .value("CurrentMajorVersionNumber")
        .and_then(RegValue::number);
    let minor = key
        .value("CurrentMinorVersionNumber")
        .and_then(RegValue::number);
    if let Some(major) = major {
        return Some((major, minor.unwrap_or(0)));
    }
    let legacy = key.value("CurrentVersion")?;
    let (major, minor) = legacy.data.split_once('.')?;
    Some((major.trim().parse().ok()?, minor.trim().parse().ok()?))
}

/// The `os_version` check: pass, since the OS and its version were identified.
pub fn os_version_check(os: &OsVersion) -> Check {
    let cmd = command();
    let name = os.name();
    let summary = match &os.display_version {
        Some(display) => format!("{name} {} (build {})", display.value, os.build_string()),
        None => format!("{name} (build {})", os.build_string()),
    };
    let mut check = Check::pass(CheckId::OsVersion, summary)
        .fact("platform_id", "windows")
        .fact("name", name.clone())
        .fact("version", os.version())
        .fact("version_parts", os.version_parts())
        .fact("build", os.build_string())
        .evidence(cmd.evidence(&os.product_name.line))
        .evidence(cmd.evidence(&os.build.line));
    if name != os.product_name.value {
        check = check.evidence(format!(
            "build {} >= {WINDOWS_11_FIRST_BUILD}: \"{}\" is {name}",
            os.build.value, os.product_name.value
        ));
    }
    if let Some(ubr) = &os.ubr {
        check = check.evidence(cmd.evidence(&ubr.line));
    }
    if let Some(display) = &os.display_version {
        check = check
            .fact("display_version", display.value.clone())
            .evidence(cmd.evidence(&display.line));
    }
    if let Some(edition) = &os.edition {
        check = check
            .fact("edition", edition.value.clone())
            .evidence(cmd.evidence(&edition.line));
    }
    check
}

/// The `os_version` check when the key could not be read.
pub fn os_version_unknown(reason: Unknown) -> Check {
    Check::unknown(CheckId::OsVersion, reason)
        .evidence(command().evidence_note("no usable output"))
        .remediation(
            "The Windows version could not be read from the registry. Run `winver` to see it, \
             and contact IT if the registry key HKLM\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion \
             is not readable.",
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_10_name_is_corrected_only_from_build_22000() {
        assert_eq!(corrected_name("Windows 10 Pro", 22631), "Windows 11 Pro");
        assert_eq!(corrected_name("Windows 10 Pro", 22000), "Windows 11 Pro");
        assert_eq!(corrected_name("Windows 10 Pro", 19045), "Windows 10 Pro");
        assert_eq!(
            corrected_name("Windows Server 2025 Datacenter", 26100),
            "Windows Server 2025 Datacenter"
        );
    }
}
