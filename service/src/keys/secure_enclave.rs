//! The device key on macOS, made and held by the Secure Enclave (through
//! the Security framework, `security-framework`). The P-256 key is
//! generated inside the enclave (`kSecAttrTokenIDSecureEnclave`); the
//! keychain stores only a reference the enclave alone can use, found again
//! by its application tag (`kSecAttrApplicationTag`), so a restart opens the
//! same key (the same JWK, so the same device id). Signing is
//! `ECDSASignatureMessageX962SHA256` (SHA-256 inside, DER out), turned into
//! JOSE's `r || s` by `keys::encoding` (whose tests run on every OS).
//!
//! # Which process can hold the key
//!
//! A Secure Enclave key lives in the *data protection* keychain (macOS
//! offers the enclave only there, `kSecUseDataProtectionKeychain`), and that
//! keychain hands an item only to a process whose code signature carries
//! the item's keychain access group: the creating binary must be signed by
//! a team with the `keychain-access-groups` (and application identifier)
//! entitlements, which on macOS needs a provisioning profile. An unsigned
//! or ad-hoc signed `sallyportd` gets `errSecMissingEntitlement` (-34018),
//! reported here as [`KeyError::Unavailable`].
//!
//! What this implies for `sallyportd`, which runs as root under launchd:
//! Apple's DTS states that launchd daemons cannot use the data protection
//! keychain (it belongs to a user's login session; the file-based System
//! keychain a daemon can use has no Secure Enclave support). So this
//! backend works in a signed process in a user's session (a LaunchAgent or
//! the app), not in the root daemon as packaged today. Holding an enclave
//! key in the daemon needs a different route: CryptoKit's
//! `SecureEnclave.P256.Signing.PrivateKey`, whose `dataRepresentation` (a
//! blob only this Mac's enclave can use) the daemon would keep in a
//! root-only file, through a small Swift shim; or the privilege split moves
//! the key into a signed per-user agent. Which one is a design decision
//! still open; nothing here has run on a Mac (this repository type-checks
//! the macOS targets from Linux).
//!
//! Recovery: a key deleted from the keychain (or an enclave reset by an
//! erase) is no longer found by its tag: [`SecureEnclaveKey::check`]
//! reports [`KeyError::Gone`] and [`SecureEnclaveKey::open_or_create`]
//! makes a new one, which must be enrolled again.
//!
//! The Security framework constants are `extern` statics and the keychain
//! query is a C call; both are in the small functions at the bottom of this
//! module, the only unsafe code in it.
#![allow(unsafe_code)]

use core_foundation::base::{CFType, TCFType};
use core_foundation::boolean::CFBoolean;
use core_foundation::data::CFData;
use core_foundation::dictionary::CFDictionary;
use core_foundation::error::CFError;
use core_foundation::number::CFNumber;
use core_foundation::string::{CFString, CFStringRef};
use posture::attestation::PublicJwk;
use security_framework::access_control::{ProtectionMode, SecAccessControl};
use security_framework::key::{Algorithm, SecKey};
use security_framework_sys::access_control::kSecAccessControlPrivateKeyUsage;
use security_framework_sys::base::{errSecItemNotFound, errSecSuccess};

use super::{KeyAssurance, KeyBackend, KeyError, encoding};

/// The application tag `sallyportd` uses unless configured otherwise.
pub const DEFAULT_TAG: &str = "com.sallyport.device-key";

const BACKEND: &str = "Secure Enclave";

/// `errSecMissingEntitlement`: the process is not signed with the keychain
/// access group the data protection keychain requires.
const ERR_SEC_MISSING_ENTITLEMENT: i32 = -34018;

/// A P-256 key in the Secure Enclave, found by its application tag.
pub struct SecureEnclaveKey {
    tag: String,
    key: SecKey,
    jwk: PublicJwk,
    created: bool,
}

impl std::fmt::Debug for SecureEnclaveKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecureEnclaveKey")
            .field("tag", &self.tag)
            .field("kid", &self.jwk.thumbprint())
            .field("created", &self.created)
            .finish_non_exhaustive()
    }
}

impl SecureEnclaveKey {
    /// Opens the enclave key tagged `tag`. No such key (never made, deleted)
    /// is [`KeyError::Gone`]; a keychain this process may not use (no
    /// entitlement, a daemon) is [`KeyError::Unavailable`].
    pub fn open(tag: &str) -> Result<SecureEnclaveKey, KeyError> {
        let key = find_private_key(tag.as_bytes())?.ok_or_else(|| {
            KeyError::Gone(format!(
                "no Secure Enclave key tagged {tag:?} in the keychain"
            ))
        })?;
        SecureEnclaveKey::from_key(tag, key, false)
    }

    /// [`SecureEnclaveKey::open`], or, when there is no such key, a new one
    /// made in the enclave and kept in the data protection keychain under
    /// `tag`. The caller learns from [`SecureEnclaveKey::created`] (and the
    /// new JWK) that it must enrol it.
    pub fn open_or_create(tag: &str) -> Result<SecureEnclaveKey, KeyError> {
        match SecureEnclaveKey::open(tag) {
            Err(KeyError::Gone(_)) => {}
            other => return other,
        }
        let key = generate(tag.as_bytes())?;
        let key = SecureEnclaveKey::from_key(tag, key, true)?;
        tracing::info!(kid = %key.jwk.thumbprint(), tag, "created a new Secure Enclave device key");
        Ok(key)
    }

    fn from_key(tag: &str, key: SecKey, created: bool) -> Result<SecureEnclaveKey, KeyError> {
        let jwk = jwk_of(&key)?;
        Ok(SecureEnclaveKey {
            tag: tag.to_owned(),
            key,
            jwk,
            created,
        })
    }

    /// Whether this key was made by the call that returned it.
    pub fn created(&self) -> bool {
        self.created
    }

    /// The key's application tag.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// Deletes the key from the keychain (and so from use: the enclave
    /// cannot be asked for it again): for an administrator's reset and for
    /// tests; the device must enrol a new key afterwards.
    pub fn delete(self) -> Result<(), KeyError> {
        delete_private_key(self.tag.as_bytes()).map_err(|status| {
            KeyError::Sign(format!(
                "deleting the key tagged {:?}: OSStatus {status}",
                self.tag
            ))
        })
    }
}

impl KeyBackend for SecureEnclaveKey {
    fn public_jwk(&self) -> &PublicJwk {
        &self.jwk
    }

    fn sign_es256(&self, message: &[u8]) -> Result<[u8; 64], KeyError> {
        let der = self
            .key
            .create_signature(Algorithm::ECDSASignatureMessageX962SHA256, message)
            .map_err(|e| KeyError::Sign(format!("SecKeyCreateSignature: {e}")))?;
        encoding::jose_of_der(&der)
            .map_err(|e| KeyError::Sign(format!("the enclave's signature is not DER ECDSA: {e}")))
    }

    fn assurance(&self) -> KeyAssurance {
        KeyAssurance::SecureEnclave
    }

    /// Looks the key up by its tag again: the reference we hold outlives a
    /// deletion from the keychain. Another key under the tag was replaced:
    /// also gone.
    fn check(&self) -> Result<(), KeyError> {
        match find_private_key(self.tag.as_bytes())? {
            None => Err(KeyError::Gone(format!(
                "the Secure Enclave key tagged {:?} was deleted",
                self.tag
            ))),
            Some(key) if jwk_of(&key)? != self.jwk => Err(KeyError::Gone(format!(
                "the Secure Enclave key tagged {:?} was replaced",
                self.tag
            ))),
            Some(_) => Ok(()),
        }
    }
}

/// The JWK of an enclave key: its public key's external representation is
/// the SEC1 point `04 || x || y`.
fn jwk_of(key: &SecKey) -> Result<PublicJwk, KeyError> {
    let public = key
        .public_key()
        .ok_or_else(|| unavailable("the key has no public key".to_owned()))?;
    let point = public
        .external_representation()
        .ok_or_else(|| unavailable("the public key cannot be exported".to_owned()))?;
    encoding::jwk_of_sec1(point.bytes()).map_err(unavailable)
}

fn unavailable(reason: String) -> KeyError {
    KeyError::Unavailable {
        backend: BACKEND,
        reason,
    }
}

fn status_unavailable(what: &str, status: i32) -> KeyError {
    let hint = if status == ERR_SEC_MISSING_ENTITLEMENT {
        " errSecMissingEntitlement: the process is not signed with a keychain access group \
          (the data protection keychain needs one; a launchd daemon cannot use it)"
    } else {
        ""
    };
    unavailable(format!("{what}: OSStatus {status}{hint}"))
}

fn cf_unavailable(what: &str, e: &CFError) -> KeyError {
    let code = e.code();
    match i32::try_from(code) {
        Ok(status) if status == ERR_SEC_MISSING_ENTITLEMENT => status_unavailable(what, status),
        _ => unavailable(format!("{what}: {e} (code {code})")),
    }
}

// ---------------------------------------------------------------------------
// The Security framework's names and the keychain query: the only unsafe
// code here.

#[link(name = "Security", kind = "framework")]
unsafe extern "C" {
    /// Not exported by `security-framework-sys`.
    static kSecAttrApplicationTag: CFStringRef;
}

/// The Security framework's attribute names, read once per use.
struct Names {
    class: CFString,
    class_key: CFString,
    key_class: CFString,
    key_class_private: CFString,
    key_type: CFString,
    key_type_ec: CFString,
    key_size: CFString,
    token_id: CFString,
    token_secure_enclave: CFString,
    permanent: CFString,
    private_key_attrs: CFString,
    application_tag: CFString,
    access_control: CFString,
    data_protection_keychain: CFString,
    return_ref: CFString,
}

fn names() -> Names {
    use security_framework_sys::item::{
        kSecAttrAccessControl, kSecAttrIsPermanent, kSecAttrKeyClass, kSecAttrKeyClassPrivate,
        kSecAttrKeySizeInBits, kSecAttrKeyType, kSecAttrKeyTypeECSECPrimeRandom, kSecAttrTokenID,
        kSecAttrTokenIDSecureEnclave, kSecClass, kSecClassKey, kSecPrivateKeyAttrs, kSecReturnRef,
        kSecUseDataProtectionKeychain,
    };
    let name = |s: CFStringRef| {
        // SAFETY: `s` is one of the Security framework's constant CFStrings
        // (valid for the life of the process); the get rule retains it.
        unsafe { CFString::wrap_under_get_rule(s) }
    };
    // SAFETY: reading `extern` statics the Security framework defines and
    // never writes after load.
    unsafe {
        Names {
            class: name(kSecClass),
            class_key: name(kSecClassKey),
            key_class: name(kSecAttrKeyClass),
            key_class_private: name(kSecAttrKeyClassPrivate),
            key_type: name(kSecAttrKeyType),
            key_type_ec: name(kSecAttrKeyTypeECSECPrimeRandom),
            key_size: name(kSecAttrKeySizeInBits),
            token_id: name(kSecAttrTokenID),
            token_secure_enclave: name(kSecAttrTokenIDSecureEnclave),
            permanent: name(kSecAttrIsPermanent),
            private_key_attrs: name(kSecPrivateKeyAttrs),
            application_tag: name(kSecAttrApplicationTag),
            access_control: name(kSecAttrAccessControl),
            data_protection_keychain: name(kSecUseDataProtectionKeychain),
            return_ref: name(kSecReturnRef),
        }
    }
}

fn dictionary(pairs: &[(&CFString, CFType)]) -> CFDictionary<CFType, CFType> {
    let pairs: Vec<(CFType, CFType)> = pairs
        .iter()
        .map(|(k, v)| (k.as_CFType(), v.clone()))
        .collect();
    CFDictionary::from_CFType_pairs(&pairs)
}

/// `SecKeyCreateRandomKey` for a permanent P-256 enclave key tagged `tag`,
/// usable after the first unlock since boot (so the service signs while
/// the screen is locked), never migrated to another device.
fn generate(tag: &[u8]) -> Result<SecKey, KeyError> {
    let n = names();
    let access = SecAccessControl::create_with_protection(
        Some(ProtectionMode::AccessibleAfterFirstUnlockThisDeviceOnly),
        kSecAccessControlPrivateKeyUsage,
    )
    .map_err(|e| status_unavailable("making the key's access control", e.code()))?;
    let private = dictionary(&[
        (&n.permanent, CFBoolean::true_value().as_CFType()),
        (&n.application_tag, CFData::from_buffer(tag).as_CFType()),
        (&n.access_control, access.as_CFType()),
    ]);
    let attributes = dictionary(&[
        (&n.key_type, n.key_type_ec.as_CFType()),
        (&n.key_size, CFNumber::from(256i32).as_CFType()),
        (&n.token_id, n.token_secure_enclave.as_CFType()),
        (
            &n.data_protection_keychain,
            CFBoolean::true_value().as_CFType(),
        ),
        (&n.private_key_attrs, private.as_CFType()),
    ]);
    // `SecKey::new` takes `GenerateKeyOptions`, which cannot carry an
    // application tag; this is the same call with our dictionary.
    #[allow(deprecated)]
    SecKey::generate(attributes.to_untyped()).map_err(|e| cf_unavailable("creating the key", &e))
}

/// The keychain query for the private enclave key tagged `tag`, in the
/// data protection keychain (every call that touches such an item must say
/// so, `SecItemDelete` included).
fn key_query(n: &Names, tag: &[u8], return_ref: bool) -> CFDictionary<CFType, CFType> {
    let mut pairs = vec![
        (&n.class, n.class_key.as_CFType()),
        (&n.key_class, n.key_class_private.as_CFType()),
        (&n.key_type, n.key_type_ec.as_CFType()),
        (&n.application_tag, CFData::from_buffer(tag).as_CFType()),
        (&n.token_id, n.token_secure_enclave.as_CFType()),
        (
            &n.data_protection_keychain,
            CFBoolean::true_value().as_CFType(),
        ),
    ];
    if return_ref {
        pairs.push((&n.return_ref, CFBoolean::true_value().as_CFType()));
    }
    dictionary(&pairs)
}

/// `SecItemCopyMatching` for the private enclave key tagged `tag` (the
/// match limit defaults to one); `None` when there is none.
fn find_private_key(tag: &[u8]) -> Result<Option<SecKey>, KeyError> {
    use security_framework_sys::keychain_item::SecItemCopyMatching;
    let query = key_query(&names(), tag, true);
    let mut result = std::ptr::null();
    // SAFETY: `query` is a live CFDictionary for the call; `result` is a
    // valid out pointer, set to an owned (+1) reference on success only.
    let status = unsafe { SecItemCopyMatching(query.as_concrete_TypeRef(), &mut result) };
    if status == errSecItemNotFound {
        return Ok(None);
    }
    if status != errSecSuccess || result.is_null() {
        return Err(status_unavailable("looking the key up", status));
    }
    // SAFETY: on success `result` is a +1 reference we now own.
    let item = unsafe { CFType::wrap_under_create_rule(result) };
    item.downcast_into::<SecKey>()
        .map(Some)
        .ok_or_else(|| unavailable("the keychain item is not a key".to_owned()))
}

/// `SecItemDelete` of the private enclave key tagged `tag`.
fn delete_private_key(tag: &[u8]) -> Result<(), i32> {
    use security_framework_sys::keychain_item::SecItemDelete;
    let query = key_query(&names(), tag, false);
    // SAFETY: `query` is a live CFDictionary for the call.
    let status = unsafe { SecItemDelete(query.as_concrete_TypeRef()) };
    if status == errSecSuccess {
        Ok(())
    } else {
        Err(status)
    }
}
