//! macOS: the user file under Application Support, the managed preferences
//! installed by a configuration profile (parsed by [`super::plist`]).

use std::path::{Path, PathBuf};
use std::process::Command;

use super::plist::{MANAGED_PLIST, parse_plist_json};
use super::{ConfigError, Source};

pub(super) fn user_config_path() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|h| {
        PathBuf::from(h)
            .join("Library/Application Support/Sallyport")
            .join("config.toml")
    })
}

pub(super) fn user_state_dir() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join("Library/Application Support/Sallyport"))
}

pub(super) fn managed_source() -> Result<Option<Source>, ConfigError> {
    if !Path::new(MANAGED_PLIST).exists() {
        return Ok(None);
    }
    let read_error = |detail: String| ConfigError::Read {
        source_name: MANAGED_PLIST.to_owned(),
        detail,
    };
    let output = Command::new("/usr/bin/plutil")
        .args(["-convert", "json", "-o", "-", MANAGED_PLIST])
        .output()
        .map_err(|e| read_error(e.to_string()))?;
    if !output.status.success() {
        return Err(read_error(
            String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        ));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    Ok(Some(Source {
        name: MANAGED_PLIST.to_owned(),
        table: parse_plist_json(&text)?,
    }))
}
