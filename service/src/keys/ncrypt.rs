//! The device key on Windows, held by a CNG key storage provider through
//! NCrypt. In production that provider is the Microsoft Platform Crypto
//! Provider ([`NcryptProvider::PlatformCrypto`]): the TPM behind CNG, so the
//! P-256 key is made inside the TPM and its private half never leaves it.
//! The key is persisted by name as a machine key (`NCRYPT_MACHINE_KEY_FLAG`,
//! so `sallyportd` running as LocalSystem finds it whichever user is logged
//! on) with export policy none, and a restart opens the same key (the same
//! JWK, so the same device id) with no key material on disk.
//!
//! The provider is a parameter so the same code can be exercised where no
//! TPM exists: [`NcryptProvider::Software`] is the Microsoft Software Key
//! Storage Provider (a key file protected by DPAPI). It reports
//! [`KeyAssurance::Software`], never hardware, and the service does not
//! choose it: it is for tests and for diagnosing a machine whose TPM is
//! missing.
//!
//! A TPM cleared or replaced loses the key: opening it by name then answers
//! `NTE_BAD_KEYSET`, which [`NcryptKey::check`] reports as
//! [`KeyError::Gone`], and [`NcryptKey::open_or_create`] makes a new key
//! (which must be enrolled again). No `tpm2-certify` evidence is produced
//! here yet: the PCP's own attestation (`NCryptCreateClaim`) is later work,
//! so [`KeyBackend::key_attestation`] keeps its default (`None`).
//!
//! All FFI is in the small `ffi_*` functions at the bottom of this module;
//! everything above them is safe Rust.
#![allow(unsafe_code)]

use std::sync::Mutex;

use posture::attestation::PublicJwk;
use sha2::{Digest as _, Sha256};
use windows_sys::Win32::Foundation::{
    NTE_BAD_KEYSET, NTE_BAD_PROVIDER, NTE_DEVICE_NOT_READY, NTE_EXISTS, NTE_NOT_FOUND,
    NTE_NOT_SUPPORTED, NTE_PROV_DLL_NOT_FOUND,
};
use windows_sys::Win32::Security::Cryptography::{
    BCRYPT_ECCKEY_BLOB, BCRYPT_ECCPUBLIC_BLOB, BCRYPT_ECDSA_PUBLIC_P256_MAGIC,
    MS_KEY_STORAGE_PROVIDER, MS_PLATFORM_CRYPTO_PROVIDER, NCRYPT_ECDSA_P256_ALGORITHM,
    NCRYPT_EXPORT_POLICY_PROPERTY, NCRYPT_HANDLE, NCRYPT_MACHINE_KEY_FLAG, NCRYPT_SILENT_FLAG,
    NCryptCreatePersistedKey, NCryptDeleteKey, NCryptExportKey, NCryptFinalizeKey,
    NCryptFreeObject, NCryptOpenKey, NCryptOpenStorageProvider, NCryptSetProperty, NCryptSignHash,
};
use windows_sys::core::{HRESULT, PCWSTR};

use super::{KeyAssurance, KeyBackend, KeyError, encoding};

/// The key name `sallyportd` uses unless configured otherwise.
pub const DEFAULT_KEY_NAME: &str = "Sallyport device key";

/// Which CNG key storage provider holds the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NcryptProvider {
    /// `MS_PLATFORM_CRYPTO_PROVIDER`: the TPM behind CNG (production).
    PlatformCrypto,
    /// `MS_KEY_STORAGE_PROVIDER`: software keys protected by DPAPI. Not
    /// hardware; for tests and diagnosis only.
    Software,
}

impl NcryptProvider {
    /// The provider's registered name, which also names it in errors.
    pub fn name(self) -> &'static str {
        match self {
            NcryptProvider::PlatformCrypto => "Microsoft Platform Crypto Provider",
            NcryptProvider::Software => "Microsoft Software Key Storage Provider",
        }
    }

    /// The assurance a key in this provider has: only the PCP's is in
    /// hardware.
    pub fn assurance(self) -> KeyAssurance {
        match self {
            NcryptProvider::PlatformCrypto => KeyAssurance::PlatformCryptoProvider,
            NcryptProvider::Software => KeyAssurance::Software,
        }
    }

    fn wide_name(self) -> PCWSTR {
        match self {
            NcryptProvider::PlatformCrypto => MS_PLATFORM_CRYPTO_PROVIDER,
            NcryptProvider::Software => MS_KEY_STORAGE_PROVIDER,
        }
    }
}

/// A persisted, non-exportable P-256 machine key in a CNG provider.
pub struct NcryptKey {
    provider: NcryptProvider,
    name: String,
    /// NCrypt handles may be used from any thread, but the PCP runs one TPM
    /// command at a time and a deleted key must not be signed with while
    /// [`NcryptKey::delete`] runs; one lock keeps that simple.
    handles: Mutex<Handles>,
    jwk: PublicJwk,
    created: bool,
}

/// The provider and key handles, freed together.
#[derive(Debug)]
struct Handles {
    /// Never read: held open for as long as the key handle from it.
    _provider: Handle,
    key: Handle,
}

impl std::fmt::Debug for NcryptKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NcryptKey")
            .field("provider", &self.provider.name())
            .field("name", &self.name)
            .field("kid", &self.jwk.thumbprint())
            .field("created", &self.created)
            .finish_non_exhaustive()
    }
}

impl NcryptKey {
    /// Opens the machine key `name` in `provider`. A key that does not
    /// exist (never made, or the TPM was cleared) is [`KeyError::Gone`]; a
    /// provider that cannot be loaded (no TPM, no PCP, Wine) is
    /// [`KeyError::Unavailable`] naming the provider.
    pub fn open(provider: NcryptProvider, name: &str) -> Result<NcryptKey, KeyError> {
        let prov = open_provider(provider)?;
        let key = ffi_open_key(&prov, &wide(name))
            .map_err(|hr| not_found_or(provider, hr, format!("opening the key {name:?}")))?;
        NcryptKey::from_handles(provider, name, prov, key, false)
    }

    /// [`NcryptKey::open`], or, when there is no such key, a new one made
    /// in `provider` and persisted as `name`. The caller learns from
    /// [`NcryptKey::created`] (and the new JWK) that it must enrol it.
    pub fn open_or_create(provider: NcryptProvider, name: &str) -> Result<NcryptKey, KeyError> {
        match NcryptKey::open(provider, name) {
            Err(KeyError::Gone(_)) => {}
            other => return other,
        }
        NcryptKey::create(provider, name)
    }

    /// Makes a new key `name` in `provider` (no open first: an existing key
    /// of that name is opened instead, `NTE_EXISTS`).
    fn create(provider: NcryptProvider, name: &str) -> Result<NcryptKey, KeyError> {
        let prov = open_provider(provider)?;
        match ffi_create_key(&prov, &wide(name)) {
            Ok(key) => {
                let key = NcryptKey::from_handles(provider, name, prov, key, true)?;
                tracing::info!(kid = %key.jwk.thumbprint(), provider = provider.name(), name, "created a new CNG device key");
                Ok(key)
            }
            // Another process made it between our open and create.
            Err((_, NTE_EXISTS)) => NcryptKey::open(provider, name),
            Err((step, hr)) => Err(unavailable(
                provider,
                format!("creating the key {name:?} ({step}): {}", describe(hr)),
            )),
        }
    }

    fn from_handles(
        provider: NcryptProvider,
        name: &str,
        prov: Handle,
        key: Handle,
        created: bool,
    ) -> Result<NcryptKey, KeyError> {
        let blob = ffi_export_public(&key).map_err(|hr| {
            unavailable(
                provider,
                format!("exporting the public key of {name:?}: {}", describe(hr)),
            )
        })?;
        let jwk = jwk_of_ecc_public_blob(&blob).map_err(|why| {
            unavailable(
                provider,
                format!("the key {name:?} is not a P-256 ECDSA key: {why}"),
            )
        })?;
        Ok(NcryptKey {
            provider,
            name: name.to_owned(),
            handles: Mutex::new(Handles {
                _provider: prov,
                key,
            }),
            jwk,
            created,
        })
    }

    /// Whether this key was made by the call that returned it.
    pub fn created(&self) -> bool {
        self.created
    }

    /// The key's name in its provider.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The provider that holds the key.
    pub fn provider(&self) -> NcryptProvider {
        self.provider
    }

    /// Deletes the key from its provider (`NCryptDeleteKey`): for an
    /// administrator's reset and for tests; the device must enrol a new key
    /// afterwards.
    pub fn delete(self) -> Result<(), KeyError> {
        let handles = self.handles.into_inner().unwrap_or_else(|e| e.into_inner());
        ffi_delete_key(handles.key).map_err(|hr| {
            KeyError::Sign(format!(
                "deleting the key {:?} from the {}: {}",
                self.name,
                self.provider.name(),
                describe(hr)
            ))
        })
    }
}

impl KeyBackend for NcryptKey {
    fn public_jwk(&self) -> &PublicJwk {
        &self.jwk
    }

    fn sign_es256(&self, message: &[u8]) -> Result<[u8; 64], KeyError> {
        let digest: [u8; 32] = Sha256::digest(message).into();
        // A panic while holding the lock leaves no half-done state.
        let handles = self.handles.lock().unwrap_or_else(|e| e.into_inner());
        // CNG's ECDSA signature is already JOSE's form: r || s, 32 bytes each.
        ffi_sign_hash(&handles.key, &digest).map_err(|hr| {
            if is_absent(hr) {
                KeyError::Gone(format!(
                    "the {} no longer has the key {:?}: {}",
                    self.provider.name(),
                    self.name,
                    describe(hr)
                ))
            } else {
                KeyError::Sign(format!("NCryptSignHash: {}", describe(hr)))
            }
        })
    }

    fn assurance(&self) -> KeyAssurance {
        self.provider.assurance()
    }

    /// Opens the key by name again: an open handle can outlive a key
    /// deleted or a TPM cleared under it, so only a fresh open tells. A key
    /// of that name with another public key was replaced: also gone.
    fn check(&self) -> Result<(), KeyError> {
        match NcryptKey::open(self.provider, &self.name) {
            Ok(again) if again.jwk == self.jwk => Ok(()),
            Ok(_) => Err(KeyError::Gone(format!(
                "the key {:?} in the {} was replaced",
                self.name,
                self.provider.name()
            ))),
            Err(e) => Err(e),
        }
    }
}

/// The provider, or [`KeyError::Unavailable`] naming it.
fn open_provider(provider: NcryptProvider) -> Result<Handle, KeyError> {
    ffi_open_provider(provider.wide_name())
        .map_err(|hr| unavailable(provider, format!("loading the provider: {}", describe(hr))))
}

fn unavailable(provider: NcryptProvider, reason: String) -> KeyError {
    KeyError::Unavailable {
        backend: provider.name(),
        reason,
    }
}

/// `NTE_BAD_KEYSET` (and `NTE_NOT_FOUND`) mean there is no key of that name.
fn is_absent(hr: HRESULT) -> bool {
    hr == NTE_BAD_KEYSET || hr == NTE_NOT_FOUND
}

fn not_found_or(provider: NcryptProvider, hr: HRESULT, what: String) -> KeyError {
    if is_absent(hr) {
        KeyError::Gone(format!(
            "{what} in the {}: {} (never made, or the TPM was cleared)",
            provider.name(),
            describe(hr)
        ))
    } else {
        unavailable(provider, format!("{what}: {}", describe(hr)))
    }
}

/// An HRESULT in hex with its name when it is one a reader will meet here.
fn describe(hr: HRESULT) -> String {
    let name = match hr {
        NTE_BAD_KEYSET => " NTE_BAD_KEYSET (no such key)",
        NTE_NOT_FOUND => " NTE_NOT_FOUND",
        NTE_EXISTS => " NTE_EXISTS",
        NTE_BAD_PROVIDER => " NTE_BAD_PROVIDER (no such provider)",
        NTE_PROV_DLL_NOT_FOUND => " NTE_PROV_DLL_NOT_FOUND (the provider's DLL is missing)",
        NTE_DEVICE_NOT_READY => " NTE_DEVICE_NOT_READY (no usable TPM)",
        NTE_NOT_SUPPORTED => " NTE_NOT_SUPPORTED",
        _ => "",
    };
    format!("{:#010x}{name}", hr as u32)
}

/// A NUL-terminated UTF-16 string for a `PCWSTR` argument.
fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().chain(std::iter::once(0)).collect()
}

/// The JWK of a `BCRYPT_ECCPUBLIC_BLOB`: a `BCRYPT_ECCKEY_BLOB` header
/// (magic, coordinate length, little-endian u32 each) then X then Y, big
/// endian. Anything but a P-256 ECDSA public key is refused.
fn jwk_of_ecc_public_blob(blob: &[u8]) -> Result<PublicJwk, String> {
    let header = std::mem::size_of::<BCRYPT_ECCKEY_BLOB>();
    let field = |at: usize| -> Result<u32, String> {
        blob.get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
            .ok_or_else(|| format!("a blob of {} bytes is too short", blob.len()))
    };
    let (magic, len) = (field(0)?, field(4)?);
    if magic != BCRYPT_ECDSA_PUBLIC_P256_MAGIC {
        return Err(format!(
            "blob magic {magic:#010x}, expected ECS1 (P-256 ECDSA)"
        ));
    }
    if len != 32 || blob.len() != header + 64 {
        return Err(format!(
            "coordinates of {len} bytes in a blob of {}, expected 32 in {}",
            blob.len(),
            header + 64
        ));
    }
    let (x, y) = blob[header..].split_at(32);
    encoding::jwk_of_xy(x, y)
}

// ---------------------------------------------------------------------------
// FFI: each function wraps one NCrypt call (or one short sequence) and
// returns the failing HRESULT; the handles they hand out are freed by
// `Handle`'s Drop.

/// An NCrypt provider or key handle, freed with `NCryptFreeObject`.
#[derive(Debug)]
struct Handle(NCRYPT_HANDLE);

impl Drop for Handle {
    fn drop(&mut self) {
        if self.0 != 0 {
            // SAFETY: the handle came from NCryptOpenStorageProvider,
            // NCryptOpenKey or NCryptCreatePersistedKey, is owned by this
            // value alone, and is freed once (here).
            unsafe {
                NCryptFreeObject(self.0);
            }
        }
    }
}

fn ok(hr: HRESULT) -> Result<(), HRESULT> {
    if hr == 0 { Ok(()) } else { Err(hr) }
}

fn ffi_open_provider(name: PCWSTR) -> Result<Handle, HRESULT> {
    let mut handle: NCRYPT_HANDLE = 0;
    // SAFETY: `name` is one of windows-sys's static NUL-terminated UTF-16
    // provider names; `handle` is a valid out pointer for the call.
    ok(unsafe { NCryptOpenStorageProvider(&mut handle, name, 0) })?;
    Ok(Handle(handle))
}

fn ffi_open_key(provider: &Handle, name: &[u16]) -> Result<Handle, HRESULT> {
    let mut key: NCRYPT_HANDLE = 0;
    // SAFETY: `provider` is a live provider handle; `name` is NUL-terminated
    // (from `wide`) and outlives the call; `key` is a valid out pointer.
    ok(unsafe {
        NCryptOpenKey(
            provider.0,
            &mut key,
            name.as_ptr(),
            0,
            NCRYPT_MACHINE_KEY_FLAG | NCRYPT_SILENT_FLAG,
        )
    })?;
    Ok(Handle(key))
}

/// Creates, sets the export policy (none: the private key never leaves)
/// and finalizes (which persists) a P-256 ECDSA machine key. The error
/// names the step.
fn ffi_create_key(provider: &Handle, name: &[u16]) -> Result<Handle, (&'static str, HRESULT)> {
    let mut raw: NCRYPT_HANDLE = 0;
    // SAFETY: `provider` is a live provider handle; the algorithm id is a
    // static NUL-terminated UTF-16 string; `name` is NUL-terminated and
    // outlives the call; `raw` is a valid out pointer.
    ok(unsafe {
        NCryptCreatePersistedKey(
            provider.0,
            &mut raw,
            NCRYPT_ECDSA_P256_ALGORITHM,
            name.as_ptr(),
            0,
            NCRYPT_MACHINE_KEY_FLAG,
        )
    })
    .map_err(|hr| ("NCryptCreatePersistedKey", hr))?;
    // Owned from here, so an error below frees the unfinished key.
    let key = Handle(raw);
    let policy: u32 = 0; // no NCRYPT_ALLOW_*_EXPORT_FLAG
    let policy = policy.to_le_bytes();
    // SAFETY: `key` is a live, not yet finalized key handle; the property
    // name is static; the input is the 4-byte DWORD the property takes.
    ok(unsafe {
        NCryptSetProperty(
            key.0,
            NCRYPT_EXPORT_POLICY_PROPERTY,
            policy.as_ptr(),
            policy.len() as u32,
            0,
        )
    })
    .map_err(|hr| ("NCryptSetProperty(Export Policy)", hr))?;
    // SAFETY: `key` is a live, not yet finalized key handle.
    ok(unsafe { NCryptFinalizeKey(key.0, NCRYPT_SILENT_FLAG) })
        .map_err(|hr| ("NCryptFinalizeKey", hr))?;
    Ok(key)
}

/// The key's `BCRYPT_ECCPUBLIC_BLOB` (public half only: allowed under
/// export policy none).
fn ffi_export_public(key: &Handle) -> Result<Vec<u8>, HRESULT> {
    let mut len: u32 = 0;
    // SAFETY: `key` is a live key handle; the blob type is static; a null
    // output buffer of length 0 asks for the size, written to `len`.
    ok(unsafe {
        NCryptExportKey(
            key.0,
            0,
            BCRYPT_ECCPUBLIC_BLOB,
            std::ptr::null(),
            std::ptr::null_mut(),
            0,
            &mut len,
            0,
        )
    })?;
    let mut blob = vec![0u8; len as usize];
    // SAFETY: as above, with `blob` writable for `len` bytes; the provider
    // writes at most that many and reports how many in `len`.
    ok(unsafe {
        NCryptExportKey(
            key.0,
            0,
            BCRYPT_ECCPUBLIC_BLOB,
            std::ptr::null(),
            blob.as_mut_ptr(),
            len,
            &mut len,
            0,
        )
    })?;
    blob.truncate(len as usize);
    Ok(blob)
}

/// An ECDSA signature of a SHA-256 digest: `r || s`, 32 bytes each.
fn ffi_sign_hash(key: &Handle, digest: &[u8; 32]) -> Result<[u8; 64], HRESULT> {
    let mut sig = [0u8; 64];
    let mut len: u32 = 0;
    // SAFETY: `key` is a live key handle; ECDSA takes no padding info
    // (null); `digest` is readable for 32 bytes and `sig` writable for 64,
    // the size of a P-256 signature; `len` is a valid out pointer.
    ok(unsafe {
        NCryptSignHash(
            key.0,
            std::ptr::null(),
            digest.as_ptr(),
            digest.len() as u32,
            sig.as_mut_ptr(),
            sig.len() as u32,
            &mut len,
            NCRYPT_SILENT_FLAG,
        )
    })?;
    if len as usize != sig.len() {
        return Err(NTE_NOT_SUPPORTED);
    }
    Ok(sig)
}

/// Deletes the key; on success NCrypt has also freed the handle.
fn ffi_delete_key(key: Handle) -> Result<(), HRESULT> {
    let key = std::mem::ManuallyDrop::new(key);
    // SAFETY: `key` is a live key handle we own; on success NCryptDeleteKey
    // frees it, so it is not freed again (ManuallyDrop).
    let hr = unsafe { NCryptDeleteKey(key.0, 0) };
    if hr != 0 {
        // Failed: the handle is still ours to free.
        drop(std::mem::ManuallyDrop::into_inner(key));
    }
    ok(hr)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A name no other test run uses, so parallel runs do not collide.
    fn test_name(what: &str) -> String {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        format!("sallyport-test-{what}-{}-{nanos}", std::process::id())
    }

    #[test]
    fn blob_parsing_takes_p256_and_refuses_the_rest() {
        let sk = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
        let point = sk.verifying_key().to_encoded_point(false);
        let mut blob = Vec::new();
        blob.extend_from_slice(&BCRYPT_ECDSA_PUBLIC_P256_MAGIC.to_le_bytes());
        blob.extend_from_slice(&32u32.to_le_bytes());
        blob.extend_from_slice(&point.as_bytes()[1..]);
        let jwk = jwk_of_ecc_public_blob(&blob).unwrap();
        assert_eq!(&jwk.to_sec1().unwrap()[..], point.as_bytes());

        let mut wrong_magic = blob.clone();
        wrong_magic[0] ^= 1;
        assert!(
            jwk_of_ecc_public_blob(&wrong_magic)
                .unwrap_err()
                .contains("magic")
        );
        assert!(jwk_of_ecc_public_blob(&blob[..40]).is_err());
        let mut off_curve = blob.clone();
        off_curve[70] ^= 1;
        assert!(jwk_of_ecc_public_blob(&off_curve).is_err());
    }

    /// Wine (and a Windows machine without a TPM) has no Platform Crypto
    /// Provider: opening the key must be a clear `Unavailable` naming it.
    /// On a Windows machine with a TPM the key opens; the test then checks
    /// it is a PCP key and deletes nothing (the name is its own).
    #[test]
    fn the_platform_crypto_provider_is_unavailable_or_works() {
        let name = test_name("pcp");
        match NcryptKey::open_or_create(NcryptProvider::PlatformCrypto, &name) {
            Err(err @ KeyError::Unavailable { backend, .. }) => {
                assert_eq!(backend, "Microsoft Platform Crypto Provider");
                assert!(
                    err.to_string()
                        .contains("Microsoft Platform Crypto Provider"),
                    "{err}"
                );
                // Wine loads any provider name, then cannot open a key.
                if under_wine() {
                    assert!(err.to_string().contains("NTE_NOT_SUPPORTED"), "{err}");
                }
            }
            Ok(key) => {
                assert_eq!(key.assurance(), KeyAssurance::PlatformCryptoProvider);
                key.delete().unwrap();
            }
            Err(other) => panic!("expected Unavailable or a key, got {other:?}"),
        }
    }

    /// Whether this runs under Wine (the runner's `WINEPREFIX` reaches the
    /// Windows environment).
    fn under_wine() -> bool {
        std::env::var_os("WINEPREFIX").is_some()
    }

    /// The software provider: a new key signs and its signatures verify
    /// against its JWK; it is reopened by name (the same JWK), deleted, and
    /// `check` then says gone. Wine 8's ncrypt makes RSA keys only, keeps
    /// none (the name and `NCRYPT_MACHINE_KEY_FLAG` are ignored,
    /// `NCryptOpenKey` and `NCryptDeleteKey` answer `NTE_NOT_SUPPORTED`), so
    /// under Wine the P-256 creation must fail as `Unavailable`: pinned, so
    /// a Wine that gains ECDSA shows here. On Windows it needs an
    /// administrator: machine keys are.
    #[test]
    fn a_software_provider_key_signs_reopens_and_is_gone_after_delete() {
        use p256::ecdsa::signature::Verifier as _;
        let name = test_name("ksp");
        let key = match NcryptKey::create(NcryptProvider::Software, &name) {
            Ok(key) => key,
            Err(KeyError::Unavailable { backend, reason }) if under_wine() => {
                assert_eq!(backend, NcryptProvider::Software.name());
                assert!(
                    reason.contains("NCryptCreatePersistedKey")
                        && reason.contains("NTE_NOT_SUPPORTED"),
                    "{reason}"
                );
                return;
            }
            Err(other) => panic!("creating {name:?}: {other:?}"),
        };
        assert!(key.created());
        assert_eq!(key.assurance(), KeyAssurance::Software);
        assert!(!format!("{key:?}").contains("PRIVATE"));

        let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(&key.public_jwk().to_sec1().unwrap())
            .unwrap();
        for message in [&b"hello"[..], b"", &[0xa5; 1000]] {
            let sig = key.sign_es256(message).unwrap();
            vk.verify(message, &p256::ecdsa::Signature::from_slice(&sig).unwrap())
                .unwrap();
        }

        let again = NcryptKey::open_or_create(NcryptProvider::Software, &name).unwrap();
        assert!(!again.created());
        assert_eq!(again.public_jwk(), key.public_jwk());
        key.check().unwrap();
        again.delete().unwrap();
        assert!(
            matches!(key.check(), Err(KeyError::Gone(_))),
            "{:?}",
            key.check()
        );
        assert!(matches!(
            NcryptKey::open(NcryptProvider::Software, &name),
            Err(KeyError::Gone(_))
        ));
    }
}
