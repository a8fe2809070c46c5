//! The fallback device key: P-256 in software, kept as PKCS#8 DER in a file
//! only the service's account may read (0600 in a 0700 directory, owned by
//! root when the service runs as root). It is the reported fallback: every
//! EAT it signs says `key_assurance: software`, so a policy can refuse it.
//!
//! Loading refuses a file another account could read or that the service's
//! account does not own: such a key may have been copied, and a device key
//! that left the device proves nothing. Recovery: [`SoftwareKey::check`]
//! notices a deleted or replaced file ([`KeyError::Gone`]), and the service
//! then makes a new key, which must be enrolled (and approved) again.
//!
//! The P-256 arithmetic is `p256`'s, through `posture::attestation::DeviceKey`
//! (the same key type the agent's keyring fallback uses). The file
//! protection is per OS: `software/unix.rs` (modes and owner, checked),
//! `software/windows.rs` (a LocalSystem + administrators DACL, enforced);
//! other OSes refuse the software backend.

use std::fmt;
use std::path::{Path, PathBuf};

use jsonwebtoken::signature::Signer as _;
use posture::attestation::{DeviceKey, PublicJwk, SecretBytes};

use super::{KeyAssurance, KeyBackend, KeyError};

#[cfg(unix)]
mod unix;
#[cfg(unix)]
use unix as os;
#[cfg(windows)]
mod windows;
#[cfg(windows)]
use windows as os;
#[cfg(not(any(unix, windows)))]
mod other;
#[cfg(not(any(unix, windows)))]
use other as os;

/// Which file a loaded key came from, to notice it was deleted or replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileId {
    pub(crate) dev: u64,
    pub(crate) ino: u64,
    pub(crate) ctime: (i64, i64),
}

/// A software device key in a root-only file.
pub struct SoftwareKey {
    key: DeviceKey,
    path: PathBuf,
    file: FileId,
    created: bool,
}

impl fmt::Debug for SoftwareKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SoftwareKey")
            .field("path", &self.path)
            .field("kid", &self.key.kid())
            .field("created", &self.created)
            .finish_non_exhaustive()
    }
}

impl SoftwareKey {
    /// The key in `path`, or a new one written there (directory 0700, file
    /// 0600, owned by this process's account) when there is none. Refuses a
    /// file that is readable by group or others, not owned by this account,
    /// or not a P-256 PKCS#8 key.
    pub fn load_or_create(path: &Path) -> Result<Self, KeyError> {
        match os::read_private(path)? {
            Some((der, file)) => {
                let key = DeviceKey::from_pkcs8_der(&der).map_err(|e| KeyError::Insecure {
                    path: path.display().to_string(),
                    reason: format!("not a P-256 PKCS#8 key ({e}); delete it to make a new one"),
                })?;
                Ok(SoftwareKey {
                    key,
                    path: path.to_owned(),
                    file,
                    created: false,
                })
            }
            None => {
                let key = DeviceKey::generate();
                let der = key
                    .to_pkcs8_der()
                    .map_err(|e| KeyError::Sign(e.to_string()))?;
                let file = os::write_private(path, &der)?;
                tracing::info!(kid = %key.kid(), path = %path.display(), "created a new software device key");
                Ok(SoftwareKey {
                    key,
                    path: path.to_owned(),
                    file,
                    created: true,
                })
            }
        }
    }

    /// Whether this key was made by the call that loaded it (first start,
    /// or recovery after the file was lost).
    pub fn created(&self) -> bool {
        self.created
    }

    /// The key file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `key` to `path` as this backend would (for tests and tools
    /// that need a key file with a known key).
    pub fn store(path: &Path, key: &DeviceKey) -> Result<(), KeyError> {
        let der = key
            .to_pkcs8_der()
            .map_err(|e| KeyError::Sign(e.to_string()))?;
        os::write_private(path, &der).map(|_| ())
    }
}

impl KeyBackend for SoftwareKey {
    fn public_jwk(&self) -> &PublicJwk {
        self.key.public_jwk()
    }

    fn sign_es256(&self, message: &[u8]) -> Result<[u8; 64], KeyError> {
        let sig = self
            .key
            .try_sign(message)
            .map_err(|e| KeyError::Sign(e.to_string()))?;
        sig.try_into()
            .map_err(|_| KeyError::Sign("ES256 signature is not 64 bytes".to_owned()))
    }

    fn assurance(&self) -> KeyAssurance {
        KeyAssurance::Software
    }

    fn check(&self) -> Result<(), KeyError> {
        match os::file_id(&self.path)? {
            None => Err(KeyError::Gone(format!(
                "the key file {} was deleted",
                self.path.display()
            ))),
            Some(id) if id != self.file => Err(KeyError::Gone(format!(
                "the key file {} was replaced",
                self.path.display()
            ))),
            Some(_) => Ok(()),
        }
    }
}

/// Keeps `SecretBytes` in this module's vocabulary for the OS parts.
pub(crate) type Der = SecretBytes;

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn creates_0600_in_a_0700_dir_and_loads_the_same_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/device-key.p8");
        let key = SoftwareKey::load_or_create(&path).unwrap();
        assert!(key.created());
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        let again = SoftwareKey::load_or_create(&path).unwrap();
        assert!(!again.created());
        assert_eq!(again.public_jwk(), key.public_jwk());
        assert_eq!(key.assurance(), KeyAssurance::Software);
        key.check().unwrap();
        assert!(!format!("{key:?}").contains("BEGIN"));
    }

    #[test]
    fn refuses_a_group_or_world_readable_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("device-key.p8");
        SoftwareKey::load_or_create(&path).unwrap();
        for mode in [0o640, 0o604, 0o660] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let err = SoftwareKey::load_or_create(&path).unwrap_err();
            assert!(matches!(err, KeyError::Insecure { .. }), "{err}");
            assert!(err.to_string().contains("readable"), "{err}");
        }
    }

    #[test]
    fn a_garbled_file_is_refused_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("device-key.p8");
        SoftwareKey::load_or_create(&path).unwrap();
        std::fs::write(&path, b"garbage").unwrap();
        let err = SoftwareKey::load_or_create(&path).unwrap_err();
        assert!(err.to_string().contains("PKCS#8"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"garbage");
    }

    #[test]
    fn a_deleted_or_replaced_file_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("device-key.p8");
        let key = SoftwareKey::load_or_create(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(key.check(), Err(KeyError::Gone(_))));
        let new = SoftwareKey::load_or_create(&path).unwrap();
        assert!(new.created());
        assert_ne!(new.public_jwk(), key.public_jwk());
        assert!(matches!(key.check(), Err(KeyError::Gone(_))), "replaced");
        new.check().unwrap();
    }

    #[test]
    fn signatures_verify_with_the_public_jwk() {
        use p256::ecdsa::signature::Verifier as _;
        let dir = tempfile::tempdir().unwrap();
        let key = SoftwareKey::load_or_create(&dir.path().join("k")).unwrap();
        let sig = key.sign_es256(b"hello").unwrap();
        let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(&key.public_jwk().to_sec1().unwrap())
            .unwrap();
        vk.verify(b"hello", &p256::ecdsa::Signature::from_slice(&sig).unwrap())
            .unwrap();
    }
}
