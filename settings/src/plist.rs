//! macOS: the managed preferences of `com.sallyport.agent`, as an MDM
//! configuration profile installs them in `/Library/Managed
//! Preferences/com.sallyport.agent.plist`, converted to JSON with
//! `plutil -convert json -o - <file>` (plutil handles the binary plist
//! format, so no plist parser is needed here).
//!
//! Keys may be nested dictionaries (`identity` → `acr_values`) or dotted
//! names (`identity.acr_values`); both mean the same setting.

use serde_json::Value as Json;
use toml::{Table, Value};

use super::{ConfigError, nest};

/// Where configuration profiles put the managed preferences.
pub const MANAGED_PLIST: &str = "/Library/Managed Preferences/com.sallyport.agent.plist";

/// Parses `plutil -convert json -o - <plist>` output.
pub fn parse_plist_json(text: &str) -> Result<Table, ConfigError> {
    let malformed = |detail: String| ConfigError::Malformed {
        source_name: MANAGED_PLIST.to_owned(),
        detail,
    };
    let json: Json = serde_json::from_str(text).map_err(|e| malformed(e.to_string()))?;
    let Json::Object(map) = json else {
        return Err(malformed("the top level is not a dictionary".to_owned()));
    };
    let mut flat = Vec::new();
    for (key, value) in map {
        // Profiles carry their own bookkeeping keys (PayloadUUID,
        // PayloadIdentifier, PayloadType, ...); no setting starts so.
        if key.starts_with("Payload") {
            continue;
        }
        flat.push((key.clone(), to_toml(&key, value).map_err(malformed)?));
    }
    Ok(nest(flat))
}

fn to_toml(key: &str, value: Json) -> Result<Value, String> {
    Ok(match value {
        Json::Bool(b) => Value::Boolean(b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::Integer(i),
            None => Value::Float(n.as_f64().ok_or(format!("{key}: number out of range"))?),
        },
        Json::String(s) => Value::String(s),
        Json::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|item| to_toml(key, item))
                .collect::<Result<_, _>>()?,
        ),
        Json::Object(map) => {
            let mut table = Table::new();
            for (inner, value) in map {
                let path = format!("{key}.{inner}");
                table.insert(inner, to_toml(&path, value)?);
            }
            Value::Table(table)
        }
        Json::Null => return Err(format!("{key}: null is not a setting value")),
    })
}
