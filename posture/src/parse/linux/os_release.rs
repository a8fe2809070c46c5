//! `/etc/os-release` (os-release(5)): shell-style `KEY=value` lines.

use super::super::ParseError;

const SOURCE: &str = "/etc/os-release";

/// The fields of os-release that posture needs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OsRelease {
    /// `ID`, lower-case distribution id (`debian`, `ubuntu`, `fedora`).
    pub id: String,
    /// `ID_LIKE`, space-separated parents (`debian`, `rhel fedora`).
    pub id_like: Vec<String>,
    /// `NAME` (`Debian GNU/Linux`).
    pub name: String,
    /// `PRETTY_NAME`.
    pub pretty_name: Option<String>,
    /// `VERSION_ID` (`12`, `22.04`); absent on rolling releases.
    pub version_id: Option<String>,
    /// `VERSION_CODENAME` (`bookworm`).
    pub codename: Option<String>,
}

impl OsRelease {
    /// `VERSION_ID` as numbers (`22.04` → `[22, 4]`); empty when absent or
    /// not numeric (e.g. Debian testing has none).
    pub fn version_parts(&self) -> Vec<u64> {
        version_parts(self.version_id.as_deref().unwrap_or(""))
    }
}

/// Splits a dotted version into its leading numeric parts: `"22.04.3 LTS"` →
/// `[22, 4, 3]`; stops at the first part that is not a number.
pub fn version_parts(version: &str) -> Vec<u64> {
    version
        .split(|c: char| c == '.' || c.is_whitespace())
        .map_while(|part| part.parse::<u64>().ok())
        .collect()
}

/// Parses os-release text. `ID` defaults to `linux` as the spec says; a text
/// with neither `ID` nor `NAME` is not an os-release file.
pub fn parse_os_release(text: &str) -> Result<OsRelease, ParseError> {
    let mut release = OsRelease::default();
    let mut seen_any = false;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, raw)) = line.split_once('=') else {
            continue;
        };
        let value = unquote(raw.trim());
        match key.trim() {
            "ID" => release.id = value.to_ascii_lowercase(),
            "ID_LIKE" => release.id_like = value.split_whitespace().map(str::to_owned).collect(),
            "NAME" => release.name = value,
            "PRETTY_NAME" => release.pretty_name = Some(value),
            "VERSION_ID" => release.version_id = Some(value),
            "VERSION_CODENAME" => release.codename = Some(value).filter(|v| !v.is_empty()),
            _ => continue,
        }
        seen_any = true;
    }
    if !seen_any || (release.id.is_empty() && release.name.is_empty()) {
        return Err(ParseError::new(SOURCE, "no ID or NAME line"));
    }
    if release.id.is_empty() {
        release.id = "linux".to_owned();
    }
    if release.name.is_empty() {
        release.name = "Linux".to_owned();
    }
    Ok(release)
}

/// Removes shell quoting: `"a \"b\""` → `a "b"`, `'x'` → `x`.
fn unquote(raw: &str) -> String {
    let bytes = raw.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(b'"'), Some(b'"')) if raw.len() >= 2 => {
            let inner = &raw[1..raw.len() - 1];
            let mut out = String::with_capacity(inner.len());
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                if c == '\\' {
                    if let Some(next) = chars.next() {
                        out.push(next);
                    }
                } else {
                    out.push(c);
                }
            }
            out
        }
        (Some(b'\''), Some(b'\'')) if raw.len() >= 2 => raw[1..raw.len() - 1].to_owned(),
        _ => raw.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_parts_stop_at_text() {
        assert_eq!(version_parts("22.04.3 LTS"), vec![22, 4, 3]);
        assert_eq!(version_parts("12"), vec![12]);
        assert_eq!(version_parts("rolling"), Vec::<u64>::new());
    }

    #[test]
    fn unquote_handles_escapes_and_single_quotes() {
        assert_eq!(unquote(r#""a \"b\"""#), r#"a "b""#);
        assert_eq!(unquote("'x y'"), "x y");
        assert_eq!(unquote("\""), "\"");
    }
}
