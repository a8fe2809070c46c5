//! Windows: the user file under `%APPDATA%`, the managed settings in the
//! policy registry key (parsed by [`super::registry`]).

use std::path::PathBuf;
use std::process::Command;

use super::registry::{POLICY_KEY, parse_reg_query};
use super::{ConfigError, Source};

pub(super) fn user_config_path() -> Option<PathBuf> {
    std::env::var_os("APPDATA").map(|d| PathBuf::from(d).join("Sallyport").join("config.toml"))
}

pub(super) fn user_state_dir() -> Option<PathBuf> {
    std::env::var_os("LOCALAPPDATA").map(|d| PathBuf::from(d).join("Sallyport"))
}

pub(super) fn managed_source() -> Result<Option<Source>, ConfigError> {
    let output = Command::new("reg")
        .args(["query", POLICY_KEY, "/s"])
        .output()
        .map_err(|e| ConfigError::Read {
            source_name: POLICY_KEY.to_owned(),
            detail: e.to_string(),
        })?;
    if !output.status.success() {
        // `reg query` exits 1 when the key does not exist: nothing managed.
        return Ok(None);
    }
    let text = String::from_utf8_lossy(&output.stdout);
    Ok(Some(Source {
        name: POLICY_KEY.to_owned(),
        table: parse_reg_query(&text)?,
    }))
}
