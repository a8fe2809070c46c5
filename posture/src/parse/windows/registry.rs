//! `reg query` output.
//!
//! `reg.exe` is the registry reader of choice: it needs no admin rights for
//! the keys we read, starts in milliseconds (PowerShell takes ~1 s), and
//! prints value names, types and data untranslated on every UI language:
//!
//! ```text
//!
//! HKEY_LOCAL_MACHINE\SOFTWARE\Microsoft\Windows NT\CurrentVersion
//!     CurrentBuild    REG_SZ    22631
//!     UBR    REG_DWORD    0xf28
//!
//! HKEY_LOCAL_MACHINE\SOFTWARE\Microsoft\Windows NT\CurrentVersion\Winlogon
//! ```
//!
//! Without `/s`, the first `HKEY_…` line is the queried key, indented lines
//! are its values, and later `HKEY_…` lines are its immediate subkeys.

use crate::parse::ParseError;

/// Registry value types `reg.exe` prints.
const VALUE_TYPES: [&str; 12] = [
    "REG_SZ",
    "REG_EXPAND_SZ",
    "REG_MULTI_SZ",
    "REG_DWORD",
    "REG_DWORD_BIG_ENDIAN",
    "REG_QWORD",
    "REG_BINARY",
    "REG_NONE",
    "REG_LINK",
    "REG_RESOURCE_LIST",
    "REG_FULL_RESOURCE_DESCRIPTOR",
    "REG_RESOURCE_REQUIREMENTS_LIST",
];

/// One value line: `    Name    REG_TYPE    data`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegValue {
    /// The value name (`(Default)` for the unnamed value).
    pub name: String,
    /// The type, e.g. `REG_SZ`.
    pub kind: String,
    /// The data as printed (hex `0x…` for DWORD/QWORD), trimmed.
    pub data: String,
    /// The raw line, trimmed, for evidence.
    pub line: String,
}

impl RegValue {
    /// The number in a `REG_DWORD` / `REG_QWORD` (printed as `0x…` hex).
    pub fn number(&self) -> Option<u64> {
        let hex = self
            .data
            .strip_prefix("0x")
            .or_else(|| self.data.strip_prefix("0X"))?;
        u64::from_str_radix(hex, 16).ok()
    }

    /// A decimal number stored as text (`REG_SZ "600"`), or a DWORD.
    pub fn decimal(&self) -> Option<u64> {
        if self.kind == "REG_DWORD" || self.kind == "REG_QWORD" {
            return self.number();
        }
        self.data.trim().parse().ok()
    }

    /// A `"1"` / `"0"` flag, as text (`REG_SZ`) or as a DWORD.
    pub fn flag(&self) -> Option<bool> {
        self.decimal().and_then(|n| match n {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        })
    }
}

/// A queried key: its values and the names of its immediate subkeys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegKey {
    /// The key as `reg.exe` printed it, e.g. `HKEY_LOCAL_MACHINE\SOFTWARE\…`.
    pub path: String,
    /// Its values, in output order.
    pub values: Vec<RegValue>,
    /// Full paths of its immediate subkeys.
    pub subkeys: Vec<String>,
}

impl RegKey {
    /// The value named `name` (registry names ignore case).
    pub fn value(&self, name: &str) -> Option<&RegValue> {
        self.values
            .iter()
            .find(|value| value.name.eq_ignore_ascii_case(name))
    }

    /// The full path of the immediate subkey whose last segment is `leaf`.
    pub fn subkey(&self, leaf: &str) -> Option<&str> {
        self.subkeys.iter().map(String::as_str).find(|path| {
            path.rsplit('\\')
                .next()
                .is_some_and(|last| last.eq_ignore_ascii_case(leaf))
        })
    }
}

/// Parses the output of `reg query KEY` or `reg query KEY /v NAME` (without
/// `/s`). `source_name` names the command in the error.
///
/// Lines that are neither a key nor a value (blank lines, `End of search`)
/// are skipped; output without any `HKEY_…` line is an error.
pub fn parse_reg_query(text: &str, source_name: &'static str) -> Result<RegKey, ParseError> {
    let mut key: Option<RegKey> = None;
    for raw in text.lines() {
        let line = raw.trim_end();
        if line.starts_with("HKEY_") {
            match key.as_mut() {
                None => {
                    key = Some(RegKey {
                        path: line.to_owned(),
                        ..RegKey::default()
                    });
                }
                Some(key) => key.subkeys.push(line.to_owned()),
            }
        } else if let (Some(key), Some(value)) = (key.as_mut(), parse_value_line(line)) {
            key.values.push(value);
        }
    }
    key.ok_or_else(|| ParseError::new(source_name, "no HKEY_… key line in the output"))
}

/// `    Name    REG_TYPE    data` → a value; `None` for any other line.
///
/// The name may contain single spaces and the data any text, so the split is
/// at the first whitespace-delimited token that is a known `REG_` type.
fn parse_value_line(line: &str) -> Option<RegValue> {
    let body = line.trim_start();
    if body.len() == line.len() {
        return None; // value lines are indented
    }
    for (at, _) in body.match_indices("REG_") {
        let (Some(before), Some(rest)) = (body.get(..at), body.get(at..)) else {
            continue;
        };
        if !before.ends_with(char::is_whitespace) {
            continue;
        }
        let type_end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let (Some(kind), Some(data)) = (rest.get(..type_end), rest.get(type_end..)) else {
            continue;
        };
        let name = before.trim();
        if name.is_empty() || !VALUE_TYPES.contains(&kind) {
            continue;
        }
        return Some(RegValue {
            name: name.to_owned(),
            kind: kind.to_owned(),
            data: data.trim().to_owned(),
            line: body.to_owned(),
        });
    }
    None
}

/// How a `reg query` run ended, from its exit code and stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegExit {
    /// Exit 0: stdout holds the key.
    Found,
    /// Exit 1 without an access error: the key or value does not exist
    /// (`ERROR: The system was unable to find the specified registry key or
    /// value.`, localized, so it is recognized by elimination).
    Absent,
    /// Exit 1 with an access error; holds the message.
    Denied(String),
    /// Anything else (killed, unexpected exit code); holds a description.
    Failed(String),
}

/// Classifies a finished `reg query`: `reg.exe` exits 1 both for a missing
/// key and for a refused one, so the (English/French/German) message tells
/// them apart.
pub fn classify_exit(code: Option<i32>, stderr: &str) -> RegExit {
    let message = super::first_line(stderr).to_owned();
    match code {
        Some(0) => RegExit::Found,
        Some(1) if super::mentions_access_denied(stderr) => RegExit::Denied(message),
        Some(1) => RegExit::Absent,
        Some(other) => RegExit::Failed(format!("exit code {other}: {message}")),
        None => RegExit::Failed("killed before it finished".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\r\nHKEY_LOCAL_MACHINE\\SOFTWARE\\Test\r\n    (Default)    REG_SZ    \r\n    Product Name    REG_SZ    Windows 10 Pro\r\n    UBR    REG_DWORD    0xf28\r\n    Junk line without a type\r\n\r\nHKEY_LOCAL_MACHINE\\SOFTWARE\\Test\\RebootRequired\r\n";

    #[test]
    fn reads_values_and_subkeys() {
        let key = parse_reg_query(SAMPLE, "test").unwrap();
        assert_eq!(key.path, r"HKEY_LOCAL_MACHINE\SOFTWARE\Test");
        assert_eq!(key.values.len(), 3);
        assert_eq!(
            key.value("product name").map(|v| v.data.as_str()),
            Some("Windows 10 Pro")
        );
        assert_eq!(key.value("(Default)").map(|v| v.data.as_str()), Some(""));
        assert_eq!(key.value("UBR").and_then(RegValue::number), Some(3880));
        assert_eq!(
            key.subkey("rebootrequired"),
            Some(r"HKEY_LOCAL_MACHINE\SOFTWARE\Test\RebootRequired")
        );
        assert_eq!(key.subkey("Reboot"), None);
    }

    #[test]
    fn output_without_a_key_is_an_error() {
        assert!(parse_reg_query("ERROR: Invalid syntax.\r\n", "test").is_err());
        assert!(parse_reg_query("", "test").is_err());
    }

    #[test]
    fn exit_codes_are_classified() {
        assert_eq!(classify_exit(Some(0), ""), RegExit::Found);
        assert_eq!(
            classify_exit(
                Some(1),
                "ERROR: The system was unable to find the specified registry key or value.\r\n"
            ),
            RegExit::Absent
        );
        assert_eq!(
            classify_exit(Some(1), "ERROR: Access is denied.\r\n"),
            RegExit::Denied("ERROR: Access is denied.".into())
        );
        assert_eq!(
            classify_exit(Some(1), "FEHLER: Zugriff verweigert\r\n"),
            RegExit::Denied("FEHLER: Zugriff verweigert".into())
        );
        assert!(matches!(classify_exit(None, ""), RegExit::Failed(_)));
        assert!(matches!(classify_exit(Some(5), ""), RegExit::Failed(_)));
    }
}
