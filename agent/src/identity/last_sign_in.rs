//! Where the user last signed in: the issuer and client id of the latest
//! successful `sallyport login`, so `whoami`, `logout` and the next `login`
//! find the session without `--issuer` being repeated.
//!
//! The tokens live in the keyring under an item named after the issuer and
//! client id ([`IdentityConfig::store_account`](super::IdentityConfig::store_account)),
//! so without these two nothing can find them. Neither is secret — the
//! issuer is a public URL and the client id a public client's name — so
//! they go in a small TOML file in the per-user state directory
//! ([`crate::config::user_state_dir`]), not in the keyring: reading them
//! must not need a keyring daemon, and nothing else may ever be added to
//! this file (see [`LastSignIn`]).
//!
//! It is the last resort: command-line flags, the `SALLYPORT_*`
//! environment and the settings (user file, managed by IT) all win. Logging
//! out keeps it: `whoami` then says "not signed in" instead of asking for
//! an issuer, and the next `login` goes to the same place.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The file's name in [`crate::config::user_state_dir`].
pub const FILE_NAME: &str = "last-sign-in.toml";

/// What is remembered. Only these two public identifiers: unknown fields
/// are refused when reading, so the format cannot grow into a place where a
/// token ends up outside the keyring unnoticed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LastSignIn {
    /// The issuer URL signed in at.
    pub issuer: String,
    /// The OAuth client id used.
    pub client_id: String,
}

/// Why the remembered sign-in could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum LastSignInError {
    /// The file or its directory could not be read or written.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// "read" or "write".
        action: &'static str,
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not what this module writes.
    #[error("{path} is malformed ({detail}); delete it, or pass --issuer")]
    Malformed {
        /// The file.
        path: String,
        /// What is wrong.
        detail: String,
    },
    /// No per-user state directory (no HOME / LOCALAPPDATA).
    #[error("no per-user state directory to remember the sign-in in")]
    NoStateDir,
}

impl LastSignIn {
    /// The file in this user's state directory, if there is one.
    pub fn default_path() -> Option<PathBuf> {
        crate::config::user_state_dir().map(|dir| dir.join(FILE_NAME))
    }

    /// The remembered sign-in at `path`; `None` when nothing is remembered.
    pub fn load_from(path: &Path) -> Result<Option<Self>, LastSignInError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(LastSignInError::Io {
                    action: "read",
                    path: path.display().to_string(),
                    source,
                });
            }
        };
        let malformed = |detail: String| LastSignInError::Malformed {
            path: path.display().to_string(),
            detail,
        };
        let remembered: LastSignIn =
            toml::from_str(&text).map_err(|e| malformed(e.message().to_owned()))?;
        url::Url::parse(&remembered.issuer)
            .map_err(|e| malformed(format!("issuer {:?}: {e}", remembered.issuer)))?;
        Ok(Some(remembered))
    }

    /// Remembers this sign-in at `path`, replacing what was there. Written
    /// to a temporary file first and renamed, so a crash leaves the old
    /// file or the new one, never half of one.
    pub fn save_to(&self, path: &Path) -> Result<(), LastSignInError> {
        let io = |source| LastSignInError::Io {
            action: "write",
            path: path.display().to_string(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let text = toml::to_string(self).map_err(|e| LastSignInError::Malformed {
            path: path.display().to_string(),
            detail: e.to_string(),
        })?;
        let text = format!(
            "# Where `sallyport login` last signed in (no secrets: the tokens are in the OS keyring).\n{text}"
        );
        let tmp = path.with_extension("toml.tmp");
        std::fs::write(&tmp, text).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }

    /// [`LastSignIn::load_from`] the default path; `None` without one.
    pub fn load() -> Result<Option<Self>, LastSignInError> {
        match Self::default_path() {
            Some(path) => Self::load_from(&path),
            None => Ok(None),
        }
    }

    /// [`LastSignIn::save_to`] the default path.
    pub fn save(&self) -> Result<(), LastSignInError> {
        let path = Self::default_path().ok_or(LastSignInError::NoStateDir)?;
        self.save_to(&path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_then_loaded_and_nothing_else_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state").join(FILE_NAME);
        assert_eq!(LastSignIn::load_from(&path).unwrap(), None);
        let remembered = LastSignIn {
            issuer: "https://idp.example/realms/corp".into(),
            client_id: "sallyport-desktop".into(),
        };
        remembered.save_to(&path).unwrap();
        assert_eq!(
            LastSignIn::load_from(&path).unwrap(),
            Some(remembered.clone())
        );
        // Replaced, not appended to.
        let other = LastSignIn {
            issuer: "http://127.0.0.1:9/".into(),
            ..remembered
        };
        other.save_to(&path).unwrap();
        assert_eq!(LastSignIn::load_from(&path).unwrap(), Some(other));

        // A field this module never writes (a token, say) is refused.
        std::fs::write(
            &path,
            "issuer = \"https://idp.example\"\nclient_id = \"x\"\nrefresh_token = \"r\"\n",
        )
        .unwrap();
        let err = LastSignIn::load_from(&path).unwrap_err();
        assert!(err.to_string().contains("refresh_token"), "{err}");
        std::fs::write(&path, "issuer = \"not a url\"\nclient_id = \"x\"\n").unwrap();
        let err = LastSignIn::load_from(&path).unwrap_err();
        assert!(err.to_string().contains("--issuer"), "{err}");
    }
}
