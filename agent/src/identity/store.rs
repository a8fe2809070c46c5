//! Where tokens live: only in the OS keyring.
//!
//! Never in files, logs or diagnostics. On Linux the Secret Service (GNOME
//! Keyring, KWallet) is used when a session bus offers one, and the kernel's
//! keyutils otherwise (headless machines, SSH sessions); on Windows the
//! Credential Manager; on macOS the Keychain.
//!
//! Windows Credential Manager refuses blobs over 2560 bytes (and stores
//! passwords as UTF-16, so about 1280 characters), while an ID token plus a
//! JWT access token are several kilobytes. Values are therefore split into
//! chunks of [`CHUNK_CHARS`] on *every* platform — one code path, tested on
//! Linux, rather than a Windows-only branch nobody runs.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;

use crate::secrets::Secret;

/// The largest piece stored in one keyring item (characters, ASCII data).
pub const CHUNK_CHARS: usize = 1000;
/// Prefix of the head item of a chunked value: `sallyport-chunked:v1:<n>`.
const CHUNK_HEADER: &str = "sallyport-chunked:v1:";
/// A sanity bound on chunk counts read back from the keyring.
const MAX_CHUNKS: usize = 64;

/// A keyring operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No usable keyring on this machine.
    #[error(
        "no OS keyring is available ({0}); on Linux start a Secret Service (e.g. gnome-keyring) or make sure the kernel keyring (keyutils) is usable"
    )]
    Unavailable(String),
    /// The keyring refused an operation.
    #[error("the OS keyring ({backend}) failed to {op}: {message}")]
    Backend {
        /// Which keyring.
        backend: &'static str,
        /// What we tried (read, write, delete).
        op: &'static str,
        /// The keyring's own words (never the stored value).
        message: String,
    },
    /// What was stored is not what we wrote (partly deleted, edited by hand).
    #[error("the stored sign-in data is damaged ({0}); run `sallyport logout` and sign in again")]
    Corrupt(String),
}

/// A place to keep secrets by name. Implemented by the OS keyring and, for
/// tests and previews, by memory.
pub trait SecretStore: Send + Sync + fmt::Debug {
    /// Reads `account`, `None` when nothing is stored.
    fn get(&self, account: &str) -> Result<Option<Secret>, StoreError>;
    /// Writes `account`, replacing what was there.
    fn set(&self, account: &str, value: &Secret) -> Result<(), StoreError>;
    /// Deletes `account`; deleting nothing is not an error.
    fn delete(&self, account: &str) -> Result<(), StoreError>;
    /// A human name of the backend, for `whoami` and diagnostics.
    fn backend_name(&self) -> &'static str;
}

/// Which OS keyring a [`KeyringStore`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Freedesktop Secret Service over D-Bus (Linux desktops).
    SecretService,
    /// The Linux kernel key retention service (session keyring).
    Keyutils,
    /// Windows Credential Manager.
    WindowsCredentialManager,
    /// macOS Keychain.
    MacosKeychain,
}

impl Backend {
    /// A human name.
    pub fn name(self) -> &'static str {
        match self {
            Backend::SecretService => "Secret Service",
            Backend::Keyutils => "kernel keyutils",
            Backend::WindowsCredentialManager => "Windows Credential Manager",
            Backend::MacosKeychain => "macOS Keychain",
        }
    }
}

/// The OS keyring, with values chunked as the module docs explain.
#[derive(Debug, Clone)]
pub struct KeyringStore {
    service: String,
    backend: Backend,
}

impl KeyringStore {
    /// A store on an explicit backend (tests pick Secret Service or keyutils).
    pub fn with_backend(service: &str, backend: Backend) -> Self {
        Self {
            service: service.to_owned(),
            backend,
        }
    }

    /// The platform's keyring. On Linux: Secret Service when reachable,
    /// otherwise kernel keyutils.
    pub fn open_default(service: &str) -> Result<Self, StoreError> {
        #[cfg(target_os = "linux")]
        {
            let ss = Self::with_backend(service, Backend::SecretService);
            match ss.raw_get("sallyport-probe") {
                Ok(_) => return Ok(ss),
                Err(err) => {
                    tracing::info!(error = %err, "Secret Service unavailable; using kernel keyutils");
                }
            }
            let keyutils = Self::with_backend(service, Backend::Keyutils);
            keyutils.raw_get("sallyport-probe")?;
            Ok(keyutils)
        }
        #[cfg(target_os = "windows")]
        {
            Ok(Self::with_backend(
                service,
                Backend::WindowsCredentialManager,
            ))
        }
        #[cfg(target_os = "macos")]
        {
            Ok(Self::with_backend(service, Backend::MacosKeychain))
        }
        #[cfg(not(any(target_os = "linux", target_os = "windows", target_os = "macos")))]
        {
            let _ = service;
            Err(StoreError::Unavailable(
                "this operating system has no supported keyring".to_owned(),
            ))
        }
    }

    /// The backend in use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    #[cfg(any(target_os = "linux", target_os = "windows", target_os = "macos"))]
    fn entry(&self, account: &str) -> Result<keyring::Entry, StoreError> {
        let map = |err: keyring::Error| self.error("open", &err);
        let credential: Box<keyring::credential::Credential> = match self.backend {
            #[cfg(target_os = "linux")]
            Backend::SecretService => Box::new(
                keyring::secret_service::SsCredential::new_with_target(
                    None,
                    &self.service,
                    account,
                )
                .map_err(map)?,
            ),
            #[cfg(target_os = "linux")]
            Backend::Keyutils => Box::new(
                keyring::keyutils::KeyutilsCredential::new_with_target(
                    None,
                    &self.service,
                    account,
                )
                .map_err(map)?,
            ),
            #[cfg(target_os = "windows")]
            Backend::WindowsCredentialManager => Box::new(
                keyring::windows::WinCredential::new_with_target(None, &self.service, account)
                    .map_err(map)?,
            ),
            #[cfg(target_os = "macos")]
            Backend::MacosKeychain => Box::new(
                keyring::macos::MacCredential::new_with_target(None, &self.service, account)
                    .map_err(map)?,
            ),
            #[allow(unreachable_patterns)]
            other => {
                return Err(StoreError::Unavailable(format!(
                    "{} is not available on this operating system",
                    other.name()
                )));
            }
        };
        Ok(keyring::Entry::new_with_credential(credential))
    }

    #[cfg(any(target_os = "linux", target_os = "windows", target_os = "macos"))]
    fn error(&self, op: &'static str, err: &keyring::Error) -> StoreError {
        // keyring's Display never includes stored bytes (BadEncoding hides them).
        let message = err.to_string();
        match err {
            keyring::Error::NoStorageAccess(_) | keyring::Error::PlatformFailure(_)
                if op == "open" || message.contains("D-Bus") || message.contains("dbus") =>
            {
                StoreError::Unavailable(format!("{}: {message}", self.backend.name()))
            }
            _ => StoreError::Backend {
                backend: self.backend.name(),
                op,
                message,
            },
        }
    }

    #[cfg(any(target_os = "linux", target_os = "windows", target_os = "macos"))]
    fn raw_get(&self, account: &str) -> Result<Option<Secret>, StoreError> {
        match self.entry(account)?.get_password() {
            Ok(value) => Ok(Some(Secret::new(value))),
            Err(keyring::Error::NoEntry) => Ok(None),
            Err(err) => Err(self.error("read", &err)),
        }
    }

    #[cfg(any(target_os = "linux", target_os = "windows", target_os = "macos"))]
    fn raw_set(&self, account: &str, value: &str) -> Result<(), StoreError> {
        self.entry(account)?
            .set_password(value)
            .map_err(|err| self.error("write", &err))
    }

    #[cfg(any(target_os = "linux", target_os = "windows", target_os = "macos"))]
    fn raw_delete(&self, account: &str) -> Result<(), StoreError> {
        match self.entry(account)?.delete_credential() {
            Ok(()) | Err(keyring::Error::NoEntry) => Ok(()),
            Err(err) => Err(self.error("delete", &err)),
        }
    }

    #[cfg(not(any(target_os = "linux", target_os = "windows", target_os = "macos")))]
    fn raw_get(&self, _account: &str) -> Result<Option<Secret>, StoreError> {
        Err(StoreError::Unavailable("unsupported OS".to_owned()))
    }
    #[cfg(not(any(target_os = "linux", target_os = "windows", target_os = "macos")))]
    fn raw_set(&self, _account: &str, _value: &str) -> Result<(), StoreError> {
        Err(StoreError::Unavailable("unsupported OS".to_owned()))
    }
    #[cfg(not(any(target_os = "linux", target_os = "windows", target_os = "macos")))]
    fn raw_delete(&self, _account: &str) -> Result<(), StoreError> {
        Err(StoreError::Unavailable("unsupported OS".to_owned()))
    }
}

/// Gives the calling thread a session keyring when it has none, so that
/// every thread it starts afterwards shares it. Call it at the top of
/// `main`, before any runtime or thread starts: threads inherit their
/// parent's keyrings when they are created, not later.
///
/// Why: the kernel keeps keyrings in each thread's credentials. A process
/// started without a session keyring (containers, CI, services, `ssh host
/// cmd` without `pam_keyinit`) gets one attached lazily to each thread that
/// touches the keyring, so whether two runtime workers see the same keys
/// depends on what each touched first. Once, a demo run saw a token stored
/// by one worker go missing from another (Linux 6.18); it has not been
/// reproduced since (`agent/tests/identity_keyring.rs` prints whether a
/// plain process shows it), so this is a guarantee bought cheaply (one
/// syscall) rather than a fix for a known case. The keyring joined is the
/// user's session keyring (`_uid_ses`), the one a `sallyport login` typed
/// in such a terminal writes to, so nothing is hidden from it; a process
/// that already has a session keyring (a normal login) keeps its own. Off
/// Linux there is nothing to do.
pub fn share_session_keyring() -> Result<(), StoreError> {
    #[cfg(target_os = "linux")]
    {
        use linux_keyutils::{KeyRing, KeyRingIdentifier};
        KeyRing::from_special_id(KeyRingIdentifier::Session, false)
            .map(|_| ())
            .map_err(|err| StoreError::Unavailable(format!("kernel keyutils: {err:?}")))
    }
    #[cfg(not(target_os = "linux"))]
    {
        Ok(())
    }
}

/// One keyring item per chunk: `<account>`, then `<account>#<i>`.
fn chunk_account(account: &str, index: usize) -> String {
    format!("{account}#{index}")
}

/// Splits `value` into pieces of at most `size` characters.
pub fn split_chunks(value: &str, size: usize) -> Vec<&str> {
    let mut chunks = Vec::new();
    let mut rest = value;
    while !rest.is_empty() {
        let mut cut = rest.len().min(size.max(1));
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let (head, tail) = rest.split_at(cut);
        chunks.push(head);
        rest = tail;
    }
    chunks
}

/// Parses a chunk header, `None` when `head` is a whole value.
fn parse_header(head: &str) -> Result<Option<usize>, StoreError> {
    let Some(count) = head.strip_prefix(CHUNK_HEADER) else {
        return Ok(None);
    };
    match count.parse::<usize>() {
        Ok(n) if (1..=MAX_CHUNKS).contains(&n) => Ok(Some(n)),
        _ => Err(StoreError::Corrupt("bad chunk header".to_owned())),
    }
}

impl SecretStore for KeyringStore {
    fn get(&self, account: &str) -> Result<Option<Secret>, StoreError> {
        let Some(head) = self.raw_get(account)? else {
            return Ok(None);
        };
        let Some(count) = parse_header(head.expose())? else {
            return Ok(Some(head));
        };
        let mut value = zeroize::Zeroizing::new(String::new());
        for index in 0..count {
            match self.raw_get(&chunk_account(account, index))? {
                Some(part) => value.push_str(part.expose()),
                None => {
                    return Err(StoreError::Corrupt(format!(
                        "part {} of {count} is missing",
                        index + 1
                    )));
                }
            }
        }
        Ok(Some(Secret::new(std::mem::take(&mut *value))))
    }

    fn set(&self, account: &str, value: &Secret) -> Result<(), StoreError> {
        let old_count = self
            .raw_get(account)
            .ok()
            .flatten()
            .and_then(|head| parse_header(head.expose()).ok().flatten())
            .unwrap_or(0);
        let chunks = split_chunks(value.expose(), CHUNK_CHARS);
        if chunks.len() > MAX_CHUNKS {
            return Err(StoreError::Backend {
                backend: self.backend.name(),
                op: "write",
                message: "value too large".to_owned(),
            });
        }
        // Parts first, head last: a crash in between leaves the old head
        // (or none), never a head pointing at parts that were not written.
        for (index, chunk) in chunks.iter().enumerate() {
            self.raw_set(&chunk_account(account, index), chunk)?;
        }
        self.raw_set(account, &format!("{CHUNK_HEADER}{}", chunks.len().max(1)))?;
        if chunks.is_empty() {
            self.raw_set(&chunk_account(account, 0), "")?;
        }
        for index in chunks.len().max(1)..old_count {
            self.raw_delete(&chunk_account(account, index))?;
        }
        Ok(())
    }

    fn delete(&self, account: &str) -> Result<(), StoreError> {
        let count = match self.raw_get(account)? {
            Some(head) => parse_header(head.expose()).ok().flatten().unwrap_or(0),
            None => 0,
        };
        self.raw_delete(account)?;
        // Also sweep parts a damaged head no longer names.
        for index in 0..count.max(1) {
            self.raw_delete(&chunk_account(account, index))?;
        }
        Ok(())
    }

    fn backend_name(&self) -> &'static str {
        self.backend.name()
    }
}

/// Secrets in process memory: for tests and for `--ephemeral` previews.
#[derive(Debug, Default)]
pub struct MemoryStore {
    items: Mutex<HashMap<String, Secret>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many items are stored (tests assert "nothing stored").
    pub fn len(&self) -> usize {
        self.items.lock().map(|items| items.len()).unwrap_or(0)
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl SecretStore for MemoryStore {
    fn get(&self, account: &str) -> Result<Option<Secret>, StoreError> {
        let items = self
            .items
            .lock()
            .map_err(|_| StoreError::Unavailable("memory store poisoned".to_owned()))?;
        Ok(items.get(account).cloned())
    }

    fn set(&self, account: &str, value: &Secret) -> Result<(), StoreError> {
        let mut items = self
            .items
            .lock()
            .map_err(|_| StoreError::Unavailable("memory store poisoned".to_owned()))?;
        items.insert(account.to_owned(), value.clone());
        Ok(())
    }

    fn delete(&self, account: &str) -> Result<(), StoreError> {
        let mut items = self
            .items
            .lock()
            .map_err(|_| StoreError::Unavailable("memory store poisoned".to_owned()))?;
        items.remove(account);
        Ok(())
    }

    fn backend_name(&self) -> &'static str {
        "memory"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_respects_size_and_reassembles() {
        let value = "a".repeat(2500);
        let chunks = split_chunks(&value, CHUNK_CHARS);
        assert_eq!(chunks.len(), 3);
        assert!(chunks.iter().all(|c| c.len() <= CHUNK_CHARS));
        assert_eq!(chunks.concat(), value);
        assert!(split_chunks("", 10).is_empty());
        let unicode = "é".repeat(7);
        let chunks = split_chunks(&unicode, 3);
        assert_eq!(chunks.concat(), unicode);
    }

    #[test]
    fn header_parsing() {
        assert_eq!(parse_header("plain value").unwrap(), None);
        assert_eq!(parse_header("sallyport-chunked:v1:3").unwrap(), Some(3));
        assert!(parse_header("sallyport-chunked:v1:0").is_err());
        assert!(parse_header("sallyport-chunked:v1:999").is_err());
        assert!(parse_header("sallyport-chunked:v1:x").is_err());
    }

    #[test]
    fn memory_store_round_trip() {
        let store = MemoryStore::new();
        assert!(store.get("a").unwrap().is_none());
        store.set("a", &Secret::new("v".to_owned())).unwrap();
        assert_eq!(store.get("a").unwrap().unwrap().expose(), "v");
        store.delete("a").unwrap();
        store.delete("a").unwrap();
        assert!(store.is_empty());
    }
}
