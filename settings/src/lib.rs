//! Sallyport's settings: the user's own file, overlaid by the managed
//! configuration IT pushes through MDM, which always wins. The agent reads
//! both ([`load`]); the device service, which runs for every user, reads
//! the managed configuration alone ([`load_managed`]).
//!
//! Both sources become a TOML table first, so one pure [`merge`] serves every
//! OS: Linux reads `/etc/sallyport/managed.toml`; Windows reads the policy
//! registry key (`HKLM\SOFTWARE\Policies\Sallyport`, see [`registry`]); macOS
//! reads the managed preferences of `com.sallyport.agent` (see [`plist`]).
//! The per-OS files only fetch the raw text.
//!
//! Keys are dotted paths (`identity.max_auth_age_secs`). Every key set by
//! the managed source is reported *locked*, so the UI greys it out and the
//! CLI refuses to change it. Unknown keys are an error naming the source and
//! the key: a typo in a managed file must not silently weaken a setting.
//! Which keys exist, their types, ranges and defaults is [`schema::KEYS`],
//! the one list the checks here and every installer template come from.

pub mod plist;
pub mod registry;
pub mod schema;
pub mod view;

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
use linux as this_os;
#[cfg(target_os = "macos")]
mod macos;
#[cfg(target_os = "macos")]
use macos as this_os;
#[cfg(target_os = "windows")]
mod windows;
#[cfg(target_os = "windows")]
use windows as this_os;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use toml::{Table, Value};

use schema::Origin;

/// Why the settings could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A source could not be read.
    #[error("cannot read {source_name}: {detail}")]
    Read {
        /// Which source (a path, a registry key).
        source_name: String,
        /// What went wrong.
        detail: String,
    },
    /// A source is not valid TOML / registry / plist output.
    #[error("{source_name} is malformed: {detail}")]
    Malformed {
        /// Which source.
        source_name: String,
        /// Where and why.
        detail: String,
    },
    /// The merged settings are not what the agent understands.
    #[error("invalid setting in {source_name}: {detail}")]
    Invalid {
        /// Which source set it (or "merged settings").
        source_name: String,
        /// Which key and why.
        detail: String,
    },
}

/// Everything the agent can be configured with: the typed form of
/// [`schema::KEYS`] (a test keeps the two in step; the schema checks keys,
/// types and ranges before serde fills this).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// The access broker's base URL (HTTPS, except loopback).
    pub broker_url: Option<String>,
    /// The OpenID issuer; when unset, the broker's `/v1/config` tells.
    pub issuer: Option<String>,
    /// The OIDC client id; when unset, the broker's `/v1/config` tells.
    pub client_id: Option<String>,
    /// How often posture is collected, in seconds.
    pub posture_interval_secs: u64,
    /// Start the tray app at login.
    pub autostart: bool,
    /// Sign-in settings.
    pub identity: IdentitySettings,
    /// Application settings.
    pub apps: AppSettings,
    /// Tunnel settings.
    pub tunnels: TunnelSettings,
    /// Update policy (read by the device service, which installs updates).
    pub update: UpdateSettings,
    /// The device service's socket (`sallyportd`, e.g.
    /// `/run/sallyport/sallyportd.sock`): when set, the device key, the
    /// EATs and the DPoP proofs come from it and the agent holds no key.
    /// The environment variable `SALLYPORT_SERVICE_SOCKET` overrides it.
    pub device_service_socket: Option<String>,
}

/// Sign-in settings (see `agent::identity`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdentitySettings {
    /// `acr_values` requested at sign-in.
    pub acr_values: Vec<String>,
    /// `amr` values that count as a second factor (empty: the built-in set).
    pub mfa_amr: Vec<String>,
    /// Oldest accepted authentication, in seconds (forces a fresh MFA login).
    pub max_auth_age_secs: Option<u64>,
}

/// Application settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AppSettings {
    /// Apps connected automatically after sign-in.
    pub auto_connect: Vec<String>,
}

/// Tunnel settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TunnelSettings {
    /// Give each tunnel's SOCKS5 listener a fresh username and password
    /// (RFC 1929): the owner check admits every process of the user, the
    /// secret narrows that to the applications the user configured with it.
    pub socks_auth: bool,
}

/// Update policy: IT's keys for the device service's updater (the
/// `update` crate checks the feed; the settings say whether and when).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpdateSettings {
    /// `off`, `notify` or `auto`.
    pub mode: String,
    /// The signed feed's URL.
    pub feed_url: Option<String>,
    /// Install exactly this version (SemVer).
    pub pin: Option<String>,
    /// Local hours `HH:MM-HH:MM` when `auto` may install.
    pub window: Option<String>,
}

impl Default for UpdateSettings {
    fn default() -> Self {
        UpdateSettings {
            mode: "notify".to_owned(),
            feed_url: None,
            pin: None,
            window: None,
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            broker_url: None,
            issuer: None,
            client_id: None,
            posture_interval_secs: 60,
            autostart: true,
            identity: IdentitySettings::default(),
            apps: AppSettings::default(),
            tunnels: TunnelSettings::default(),
            update: UpdateSettings::default(),
            device_service_socket: None,
        }
    }
}

impl Default for IdentitySettings {
    fn default() -> Self {
        IdentitySettings {
            acr_values: Vec::new(),
            mfa_amr: Vec::new(),
            max_auth_age_secs: Some(12 * 3600),
        }
    }
}

/// The effective settings and which keys IT locked.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Effective {
    /// The merged settings.
    pub settings: Settings,
    /// Dotted paths of every key the managed source set.
    pub locked: BTreeSet<String>,
    /// Dotted paths of every key the user's file set (a locked key may be
    /// in both: the managed value wins).
    pub user_set: BTreeSet<String>,
    /// Where the managed settings came from, when there were any.
    pub managed_source: Option<String>,
}

impl Effective {
    /// True when IT set `key` (a dotted path, e.g. `autostart`).
    pub fn is_locked(&self, key: &str) -> bool {
        self.locked.contains(key)
    }
}

/// A parsed source: its name (for errors) and its table.
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    /// A path or registry key, quoted in errors.
    pub name: String,
    /// The settings it holds.
    pub table: Table,
}

impl Source {
    /// Parses TOML text.
    pub fn from_toml(name: impl Into<String>, text: &str) -> Result<Self, ConfigError> {
        let name = name.into();
        let table = text.parse::<Table>().map_err(|e| ConfigError::Malformed {
            source_name: name.clone(),
            detail: e.to_string().trim().to_owned(),
        })?;
        Ok(Source { name, table })
    }
}

/// Overlay `managed` on `user` and check the result. Pure.
///
/// Each source is validated on its own first, so an unknown or mistyped key
/// is blamed on the file that holds it.
pub fn merge(user: Option<&Source>, managed: Option<&Source>) -> Result<Effective, ConfigError> {
    if let Some(user) = user {
        validate(&user.name, user.table.clone(), Origin::User)?;
    }
    if let Some(managed) = managed {
        validate(&managed.name, managed.table.clone(), Origin::Managed)?;
    }
    let mut merged = user.map(|s| s.table.clone()).unwrap_or_default();
    let mut locked = BTreeSet::new();
    if let Some(managed) = managed {
        overlay(&mut merged, &managed.table, "", &mut locked);
    }
    let settings = validate("merged settings", merged, Origin::User)?;
    let mut user_set = BTreeSet::new();
    if let Some(user) = user {
        overlay(&mut Table::new(), &user.table, "", &mut user_set);
    }
    Ok(Effective {
        settings,
        locked,
        user_set,
        managed_source: managed.map(|s| s.name.clone()),
    })
}

/// The schema's checks (known key, type, range, manageable), then serde.
fn validate(name: &str, table: Table, origin: Origin) -> Result<Settings, ConfigError> {
    let invalid = |detail: String| ConfigError::Invalid {
        source_name: name.to_owned(),
        detail,
    };
    schema::check_table(schema::KEYS, &table, origin).map_err(invalid)?;
    Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| invalid(e.message().to_owned()))
}

/// Managed values replace user values leaf by leaf; tables merge.
fn overlay(base: &mut Table, over: &Table, prefix: &str, locked: &mut BTreeSet<String>) {
    for (key, value) in over {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match (base.get_mut(key), value) {
            (Some(Value::Table(base_table)), Value::Table(over_table)) => {
                overlay(base_table, over_table, &path, locked);
            }
            (_, Value::Table(over_table)) => {
                let mut fresh = Table::new();
                overlay(&mut fresh, over_table, &path, locked);
                base.insert(key.clone(), Value::Table(fresh));
            }
            (_, leaf) => {
                base.insert(key.clone(), leaf.clone());
                locked.insert(path);
            }
        }
    }
}

/// Turns dotted keys (`identity.acr_values`), as the registry and plist
/// sources carry them, into nested tables.
pub fn nest(flat: impl IntoIterator<Item = (String, Value)>) -> Table {
    let mut root = Table::new();
    for (key, value) in flat {
        let parts: Vec<&str> = key.split('.').collect();
        insert_path(&mut root, &parts, value);
    }
    root
}

fn insert_path(table: &mut Table, parts: &[&str], value: Value) {
    match parts {
        [] => {}
        [last] => {
            table.insert((*last).to_owned(), value);
        }
        [first, rest @ ..] => {
            let entry = table
                .entry((*first).to_owned())
                .or_insert_with(|| Value::Table(Table::new()));
            if !entry.is_table() {
                *entry = Value::Table(Table::new());
            }
            if let Value::Table(inner) = entry {
                insert_path(inner, rest, value);
            }
        }
    }
}

/// The user's settings file: `$XDG_CONFIG_HOME/sallyport/config.toml`
/// (Linux), `%APPDATA%\Sallyport\config.toml`, `~/Library/Application
/// Support/Sallyport/config.toml`.
pub fn user_config_path() -> Option<PathBuf> {
    this_os::user_config_path()
}

/// The per-user directory for what the agent remembers between runs (not
/// settings, not secrets): `$XDG_STATE_HOME/sallyport` (Linux, default
/// `~/.local/state/sallyport`), `%LOCALAPPDATA%\Sallyport`,
/// `~/Library/Application Support/Sallyport`.
pub fn user_state_dir() -> Option<PathBuf> {
    this_os::user_state_dir()
}

/// The managed configuration alone (no user file): what the device
/// service obeys, since it acts for the machine, not for one user.
pub fn load_managed() -> Result<Effective, ConfigError> {
    let managed = this_os::managed_source()?;
    merge(None, managed.as_ref())
}

/// Reads the user file (if any) and the managed source (if any) and merges them.
pub fn load() -> Result<Effective, ConfigError> {
    let user = match user_config_path() {
        Some(path) => read_toml_file(&path)?,
        None => None,
    };
    let managed = this_os::managed_source()?;
    merge(user.as_ref(), managed.as_ref())
}

/// A TOML file as a [`Source`]; `None` when it does not exist.
pub fn read_toml_file(path: &Path) -> Result<Option<Source>, ConfigError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Source::from_toml(path.display().to_string(), &text).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ConfigError::Read {
            source_name: path.display().to_string(),
            detail: e.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests;
