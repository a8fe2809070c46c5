//! Linux: the user file under `$XDG_CONFIG_HOME`, the managed file in /etc.

use std::path::PathBuf;

use super::{ConfigError, Source, read_toml_file};

/// Where MDM / configuration management drops the managed settings.
pub const MANAGED_PATH: &str = "/etc/sallyport/managed.toml";

pub(super) fn user_config_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("sallyport").join("config.toml"))
}

pub(super) fn user_state_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_STATE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))?;
    Some(base.join("sallyport"))
}

pub(super) fn managed_source() -> Result<Option<Source>, ConfigError> {
    read_toml_file(std::path::Path::new(MANAGED_PATH))
}
