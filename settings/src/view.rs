//! The effective settings as the user and the helpdesk read them: every
//! schema key, its value, and who set it. IT's managed values are shown
//! *locked*, so nobody wonders why editing their own file changes nothing.
//! Pure: `sallyport settings` prints it, the diagnostics bundle and the
//! tray app can show the same rows.

use serde::Serialize;
use toml::Value;

use super::Effective;
use super::schema::{self, Os};

/// Who decided a setting's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SetBy {
    /// IT's managed configuration (MDM, GPO, `/etc/sallyport/managed.toml`):
    /// locked.
    Managed,
    /// The user's own settings file.
    User,
    /// Nobody: the built-in default (or unset).
    Default,
}

impl SetBy {
    /// How the CLI names it.
    pub fn label(self) -> &'static str {
        match self {
            SetBy::Managed => "managed (locked)",
            SetBy::User => "user",
            SetBy::Default => "default",
        }
    }
}

/// One setting's row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SettingRow {
    /// The dotted key (`identity.max_auth_age_secs`).
    pub key: &'static str,
    /// The schema's title.
    pub title: &'static str,
    /// The effective value; `None` when unset.
    pub value: Option<serde_json::Value>,
    /// Who set it.
    pub set_by: SetBy,
    /// True when IT set it: the user cannot change it.
    pub locked: bool,
}

/// The whole view: where managed settings came from, and one row per key.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SettingsView {
    /// The managed source (a path, a registry key, a preference domain),
    /// when IT configured this machine.
    pub managed_source: Option<String>,
    /// One row per schema key that means something on this OS, in schema
    /// order.
    pub settings: Vec<SettingRow>,
}

/// The rows for `effective` on `os`.
pub fn describe(effective: &Effective, os: Os) -> SettingsView {
    let table = Value::try_from(&effective.settings)
        .ok()
        .and_then(|v| v.as_table().cloned())
        .unwrap_or_default();
    let settings = schema::KEYS
        .iter()
        .filter(|key| key.oses.contains(&os))
        .map(|key| {
            let locked = effective.is_locked(key.path);
            let set_by = if locked {
                SetBy::Managed
            } else if effective.user_set.contains(key.path) {
                SetBy::User
            } else {
                SetBy::Default
            };
            SettingRow {
                key: key.path,
                title: key.title,
                value: lookup(&table, key.path).and_then(|v| serde_json::to_value(v).ok()),
                set_by,
                locked,
            }
        })
        .collect();
    SettingsView {
        managed_source: effective.managed_source.clone(),
        settings,
    }
}

/// The value at a dotted path.
fn lookup<'t>(table: &'t toml::Table, path: &str) -> Option<&'t Value> {
    let mut parts = path.split('.');
    let mut current = table.get(parts.next()?)?;
    for part in parts {
        current = current.as_table()?.get(part)?;
    }
    Some(current)
}

/// A value as one line of text (`[]` for an empty list, `(unset)`).
pub fn display_value(value: Option<&serde_json::Value>) -> String {
    match value {
        None | Some(serde_json::Value::Null) => "(unset)".to_owned(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Source, merge};

    fn source(name: &str, text: &str) -> Source {
        Source::from_toml(name, text).unwrap()
    }

    fn row<'v>(view: &'v SettingsView, key: &str) -> &'v SettingRow {
        view.settings.iter().find(|r| r.key == key).unwrap()
    }

    #[test]
    fn each_key_says_who_set_it_and_managed_wins_locked() {
        let user = source(
            "config.toml",
            "broker_url = \"https://user.example\"\nposture_interval_secs = 30\n",
        );
        let managed = source(
            "/etc/sallyport/managed.toml",
            "broker_url = \"https://it.example\"\n[identity]\nmax_auth_age_secs = 3600\n",
        );
        let effective = merge(Some(&user), Some(&managed)).unwrap();
        let view = describe(&effective, Os::Linux);

        assert_eq!(
            view.managed_source.as_deref(),
            Some("/etc/sallyport/managed.toml")
        );
        let broker = row(&view, "broker_url");
        assert_eq!(broker.set_by, SetBy::Managed);
        assert!(broker.locked);
        assert_eq!(
            broker.value,
            Some(serde_json::json!("https://it.example")),
            "the managed value wins over the user's"
        );
        let age = row(&view, "identity.max_auth_age_secs");
        assert_eq!((age.set_by, age.locked), (SetBy::Managed, true));
        assert_eq!(age.value, Some(serde_json::json!(3600)));
        let interval = row(&view, "posture_interval_secs");
        assert_eq!((interval.set_by, interval.locked), (SetBy::User, false));
        assert_eq!(interval.value, Some(serde_json::json!(30)));
        let autostart = row(&view, "autostart");
        assert_eq!(autostart.set_by, SetBy::Default);
        assert_eq!(autostart.value, Some(serde_json::json!(true)));
        assert_eq!(
            display_value(row(&view, "issuer").value.as_ref()),
            "(unset)"
        );
    }

    #[test]
    fn every_schema_key_for_the_os_has_a_row_in_schema_order() {
        let effective = merge(None, None).unwrap();
        let view = describe(&effective, Os::Linux);
        let keys: Vec<&str> = view.settings.iter().map(|r| r.key).collect();
        let expected: Vec<&str> = schema::KEYS
            .iter()
            .filter(|k| k.oses.contains(&Os::Linux))
            .map(|k| k.path)
            .collect();
        assert_eq!(keys, expected);
        assert!(view.managed_source.is_none());
        assert!(view.settings.iter().all(|r| r.set_by == SetBy::Default));
    }
}
