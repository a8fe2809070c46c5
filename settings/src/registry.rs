//! Windows: the managed settings as Group Policy / Intune write them, under
//! `HKLM\SOFTWARE\Policies\Sallyport`, read with `reg query <key> /s`.
//!
//! Value names are the dotted setting keys (`broker_url`,
//! `identity.max_auth_age_secs`); a subkey adds its name as a prefix
//! (`...\Sallyport\identity` holding `acr_values`). Types map as: `REG_SZ` /
//! `REG_EXPAND_SZ` → string, `REG_DWORD` / `REG_QWORD` → integer (or a
//! boolean for the settings [`super::schema`] declares boolean, 0/1 as the
//! ADMX writes them),
//! `REG_MULTI_SZ` → array of strings. `reg` prints value names and types
//! untranslated, so this parser is locale-independent.
//!
//! The MSI (`installers/windows/sallyport.wxs`) writes every setting as
//! `REG_SZ`, whatever its type, because an MSI writes all of a component's
//! values and only text can say "not set" (empty). So text is read by the
//! schema's type (see [`text_value`]): an empty string is not set, a number
//! is a number, `0`/`1`/`true`/`false` a boolean, and a comma-separated
//! string a list.

use toml::{Table, Value};

use super::schema::{self, Kind};
use super::{ConfigError, nest};

/// The policy key the ADMX template writes.
pub const POLICY_KEY: &str = r"HKEY_LOCAL_MACHINE\SOFTWARE\Policies\Sallyport";

/// Parses `reg query HKLM\SOFTWARE\Policies\Sallyport /s` output.
pub fn parse_reg_query(text: &str) -> Result<Table, ConfigError> {
    let malformed = |detail: String| ConfigError::Malformed {
        source_name: POLICY_KEY.to_owned(),
        detail,
    };
    let mut root: Option<String> = None;
    let mut prefix = String::new();
    let mut flat = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        if line.starts_with("HKEY_") {
            let key = line.trim();
            match &root {
                None => root = Some(key.to_owned()),
                Some(root) => {
                    let sub = key
                        .strip_prefix(root.as_str())
                        .and_then(|s| s.strip_prefix('\\'));
                    let Some(sub) = sub else {
                        return Err(malformed(format!(
                            "line {}: key {key:?} outside {root:?}",
                            number + 1
                        )));
                    };
                    prefix = sub.replace('\\', ".");
                }
            }
            continue;
        }
        if root.is_none() {
            return Err(malformed(format!(
                "line {}: expected a registry key, got {:?}",
                number + 1,
                line.trim()
            )));
        }
        let fields: Vec<&str> = line.trim_start().splitn(3, "    ").collect();
        let (name, kind, data) = match fields[..] {
            [name, kind, data] => (name, kind.trim(), data),
            [name, kind] => (name, kind.trim(), ""),
            _ => {
                return Err(malformed(format!(
                    "line {}: expected `name    TYPE    data`, got {:?}",
                    number + 1,
                    line.trim()
                )));
            }
        };
        if name == "(Default)" {
            continue;
        }
        let key = if prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{prefix}.{name}")
        };
        let value = match kind {
            "REG_SZ" | "REG_EXPAND_SZ" => match text_value(&key, data) {
                Ok(Some(value)) => value,
                Ok(None) => continue,
                Err(detail) => return Err(malformed(detail)),
            },
            "REG_DWORD" | "REG_QWORD" => {
                let hex = data.trim().trim_start_matches("0x");
                let number = i64::from_str_radix(hex, 16)
                    .map_err(|_| malformed(format!("{key}: {kind} {data:?} is not a number")))?;
                // The registry holds booleans as DWORDs; the schema says which.
                if schema::key(&key).is_some_and(|k| k.kind == Kind::Bool) {
                    Value::Boolean(number != 0)
                } else {
                    Value::Integer(number)
                }
            }
            "REG_MULTI_SZ" => Value::Array(
                data.split("\\0")
                    .filter(|s| !s.is_empty())
                    .map(|s| Value::String(s.to_owned()))
                    .collect(),
            ),
            other => return Err(malformed(format!("{key}: unsupported value type {other}"))),
        };
        flat.push((key, value));
    }
    Ok(nest(flat))
}

/// A `REG_SZ` value read by the schema's type for `key`; `None` when empty
/// (not set). Keys the schema does not know stay strings, so the merge
/// reports them as unknown by name.
fn text_value(key: &str, data: &str) -> Result<Option<Value>, String> {
    if data.trim().is_empty() {
        return Ok(None);
    }
    let Some(kind) = schema::key(key).map(|k| k.kind) else {
        return Ok(Some(Value::String(data.to_owned())));
    };
    let value = match kind {
        Kind::Integer { .. } => data
            .trim()
            .parse::<i64>()
            .map(Value::Integer)
            .map_err(|_| format!("{key}: {data:?} is not a whole number"))?,
        Kind::Bool => match data.trim().to_ascii_lowercase().as_str() {
            "1" | "true" => Value::Boolean(true),
            "0" | "false" => Value::Boolean(false),
            _ => return Err(format!("{key}: {data:?} is not 0, 1, true or false")),
        },
        Kind::StringList => Value::Array(
            data.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.to_owned()))
                .collect(),
        ),
        Kind::String | Kind::HttpsUrl | Kind::Choice(_) => Value::String(data.to_owned()),
    };
    Ok(Some(value))
}
