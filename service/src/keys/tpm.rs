//! The device key in a TPM 2.0 (through tss-esapi and the system's
//! tpm2-tss). The key is made inside the TPM and never leaves it: a P-256
//! ECDSA-SHA256 signing key (`fixedTPM`, `fixedParent`,
//! `sensitiveDataOrigin`, not restricted, sign only) under a storage
//! primary of the owner hierarchy, made persistent with `EvictControl` at
//! a handle the service chooses, so a restart finds the same key (and the
//! same JWK, so the same device id) without any key blob on disk.
//!
//! A cleared or replaced TPM loses every owner-hierarchy object: the handle
//! is then empty, [`TpmKey::load`] answers [`KeyError::Gone`], and
//! [`TpmKey::load_or_create`] makes a new key, which must be enrolled again.
//!
//! [`attest`] produces the evidence the broker's `hardware` enrolment mode
//! checks: a TPM2_Certify of this key by an attestation key of the same
//! TPM, with the TPM's EK certificate.

mod attest;

pub use attest::qualifying_data;

use std::str::FromStr;
use std::sync::{Mutex, MutexGuard};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use posture::attestation::PublicJwk;
use sha2::{Digest as _, Sha256};
use tss_esapi::constants::CapabilityType;
use tss_esapi::constants::response_code::Tss2ResponseCodeKind;
use tss_esapi::constants::tss::{TPM2_RH_NULL, TPM2_ST_HASHCHECK};
use tss_esapi::handles::{KeyHandle, ObjectHandle, PersistentTpmHandle, TpmHandle};
use tss_esapi::interface_types::algorithm::{HashingAlgorithm, PublicAlgorithm};
use tss_esapi::interface_types::dynamic_handles::Persistent;
use tss_esapi::interface_types::ecc::EccCurve;
use tss_esapi::interface_types::resource_handles::{Hierarchy, Provision};
use tss_esapi::interface_types::session_handles::AuthSession;
use tss_esapi::structures::{
    CapabilityData, Digest, EccPoint, EccScheme, HashScheme, Public, PublicBuilder,
    PublicEccParametersBuilder, Signature, SignatureScheme, SymmetricDefinitionObject,
};
use tss_esapi::tcti_ldr::TctiNameConf;
use tss_esapi::tss2_esys::TPMT_TK_HASHCHECK;
use tss_esapi::{Context, attributes::ObjectAttributesBuilder};

use super::{KeyAssurance, KeyBackend, KeyError};

/// The persistent handle `sallyportd` keeps its key at unless configured
/// otherwise ([`crate::server::DEFAULT_TPM_HANDLE`]).
pub const DEFAULT_PERSISTENT_HANDLE: u32 = crate::server::DEFAULT_TPM_HANDLE;

const BACKEND: &str = "tpm";

/// The device key held by a TPM at a persistent handle.
pub struct TpmKey {
    /// tss-esapi's context is not `Sync`; every command goes through this
    /// lock (a TPM runs one command at a time anyway).
    context: Mutex<Context>,
    key: KeyHandle,
    persistent_handle: u32,
    /// The key's `TPMT_PUBLIC`, as the TPM reports it.
    public: Public,
    jwk: PublicJwk,
}

impl std::fmt::Debug for TpmKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TpmKey")
            .field(
                "persistent_handle",
                &format_args!("{:#010x}", self.persistent_handle),
            )
            .field("kid", &self.jwk.thumbprint())
            .finish_non_exhaustive()
    }
}

impl TpmKey {
    /// Opens the key persisted at `persistent_handle` in the TPM `tcti`
    /// names (`device:/dev/tpmrm0`, `swtpm:host=127.0.0.1,port=2321`, ...).
    /// An empty handle (never made, or the TPM was cleared) is
    /// [`KeyError::Gone`]; a handle holding some other object is
    /// [`KeyError::Unavailable`]: it is not ours to evict.
    pub fn load(tcti: &str, persistent_handle: u32) -> Result<TpmKey, KeyError> {
        let mut context = connect(tcti)?;
        let handle = persistent(persistent_handle)?;
        // Asked first, never found by failing: tpm2-tss 3.2.1's
        // Esys_TR_FromTPMPublic crashes on the error path of an empty handle.
        if !is_persisted(&mut context, persistent_handle)? {
            return Err(KeyError::Gone(format!(
                "no key at TPM handle {persistent_handle:#010x} (the TPM was cleared or replaced?)"
            )));
        }
        let object = context
            .tr_from_tpm_public(TpmHandle::Persistent(handle))
            .map_err(|e| unavailable(format!("opening {persistent_handle:#010x}: {e}")))?;
        let key = KeyHandle::from(object);
        let (public, _, _) = context
            .read_public(key)
            .map_err(|e| unavailable(format!("reading the key's public area: {e}")))?;
        let jwk = jwk_of(&public).ok_or_else(|| {
            unavailable(format!(
                "TPM handle {persistent_handle:#010x} holds an object that is not a P-256 signing key"
            ))
        })?;
        Ok(TpmKey {
            context: Mutex::new(context),
            key,
            persistent_handle,
            public,
            jwk,
        })
    }

    /// [`TpmKey::load`], or, when the key is gone, a new key made in the
    /// TPM and persisted at `persistent_handle`. The caller learns that the
    /// key is new from its JWK (a new device id) and must enrol it.
    pub fn load_or_create(tcti: &str, persistent_handle: u32) -> Result<TpmKey, KeyError> {
        match TpmKey::load(tcti, persistent_handle) {
            Err(KeyError::Gone(_)) => {
                create(tcti, persistent_handle)?;
                TpmKey::load(tcti, persistent_handle)
            }
            other => other,
        }
    }

    /// The persistent handle the key lives at.
    pub fn persistent_handle(&self) -> u32 {
        self.persistent_handle
    }

    /// Removes the key from the TPM (`EvictControl` of the persistent
    /// object): for an administrator's reset and for tests; the device must
    /// enrol a new key afterwards.
    pub fn evict(self) -> Result<(), KeyError> {
        let TpmKey {
            context,
            key,
            persistent_handle,
            ..
        } = self;
        let mut context = context.into_inner().unwrap_or_else(|e| e.into_inner());
        let handle = persistent(persistent_handle)?;
        with_password(&mut context, |ctx| {
            ctx.evict_control(Provision::Owner, key.into(), Persistent::Persistent(handle))
        })
        .map_err(|e| KeyError::Sign(format!("evicting {persistent_handle:#010x}: {e}")))?;
        Ok(())
    }

    fn context(&self) -> MutexGuard<'_, Context> {
        // A panic while holding the lock leaves no half-done state we track.
        self.context.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl KeyBackend for TpmKey {
    fn public_jwk(&self) -> &PublicJwk {
        &self.jwk
    }

    fn sign_es256(&self, message: &[u8]) -> Result<[u8; 64], KeyError> {
        let digest = Digest::try_from(Sha256::digest(message).to_vec())
            .map_err(|e| KeyError::Sign(e.to_string()))?;
        // No hashcheck ticket: the key is not restricted, so the TPM signs
        // any digest (a restricted key would need proof it hashed the data).
        let validation = TPMT_TK_HASHCHECK {
            tag: TPM2_ST_HASHCHECK,
            hierarchy: TPM2_RH_NULL,
            digest: Default::default(),
        }
        .try_into()
        .map_err(|e: tss_esapi::Error| KeyError::Sign(e.to_string()))?;
        let signature = self
            .context()
            .execute_with_session(Some(AuthSession::Password), |ctx| {
                ctx.sign(self.key, digest, SignatureScheme::Null, validation)
            })
            .map_err(|e| {
                if is_absent(&e) {
                    KeyError::Gone(format!("the TPM no longer has the key: {e}"))
                } else {
                    KeyError::Sign(format!("TPM2_Sign: {e}"))
                }
            })?;
        match signature {
            Signature::EcDsa(sig) => {
                jose_signature(sig.signature_r().value(), sig.signature_s().value())
            }
            other => Err(KeyError::Sign(format!(
                "the TPM signed with {:?}, expected ECDSA",
                other.algorithm()
            ))),
        }
    }

    fn assurance(&self) -> KeyAssurance {
        KeyAssurance::Tpm
    }

    /// One `GetCapability` on the open connection: after a TPM clear the
    /// persistent handle is empty, and the service makes a new key rather
    /// than failing every request until it is restarted.
    fn check(&self) -> Result<(), KeyError> {
        if is_persisted(&mut self.context(), self.persistent_handle)? {
            Ok(())
        } else {
            Err(KeyError::Gone(format!(
                "TPM handle {:#010x} is empty (the TPM was cleared or replaced?)",
                self.persistent_handle
            )))
        }
    }

    fn key_attestation(&self) -> Result<Option<broker::api::KeyAttestation>, KeyError> {
        TpmKey::key_attestation(self).map(Some)
    }

    fn activate_credential(
        &self,
        credential_blob: &[u8],
        encrypted_secret: &[u8],
    ) -> Result<Vec<u8>, KeyError> {
        TpmKey::activate_credential(self, credential_blob, encrypted_secret)
    }
}

/// `r || s`, each left-padded to 32 bytes (the TPM drops leading zeros).
fn jose_signature(r: &[u8], s: &[u8]) -> Result<[u8; 64], KeyError> {
    let mut out = [0u8; 64];
    for (half, value) in [(0usize, r), (32, s)] {
        let value = strip_zeros(value);
        if value.len() > 32 {
            return Err(KeyError::Sign(format!(
                "an ECDSA half of {} bytes from the TPM",
                value.len()
            )));
        }
        out[half + 32 - value.len()..half + 32].copy_from_slice(value);
    }
    Ok(out)
}

fn strip_zeros(mut value: &[u8]) -> &[u8] {
    while let [0, rest @ ..] = value {
        value = rest;
    }
    value
}

/// Makes the key under a storage primary of the owner hierarchy and
/// persists it. The primary is transient: it is derived again from the
/// same template whenever needed, so nothing but the device key takes a
/// persistent slot.
fn create(tcti: &str, persistent_handle: u32) -> Result<(), KeyError> {
    let mut context = connect(tcti)?;
    let handle = persistent(persistent_handle)?;
    let failed = |what: &str, e: tss_esapi::Error| KeyError::Sign(format!("{what}: {e}"));
    let template = storage_primary_template()?;
    let primary = with_password(&mut context, |ctx| {
        ctx.create_primary(Hierarchy::Owner, template, None, None, None, None)
    })
    .map_err(|e| failed("creating the storage primary", e))?
    .key_handle;
    let result = (|| {
        let template = device_key_template()?;
        let created = with_password(&mut context, |ctx| {
            ctx.create(primary, template, None, None, None, None)
        })
        .map_err(|e| failed("creating the device key", e))?;
        let loaded = with_password(&mut context, |ctx| {
            ctx.load(primary, created.out_private, created.out_public)
        })
        .map_err(|e| failed("loading the device key", e))?;
        let persisted = with_password(&mut context, |ctx| {
            ctx.evict_control(
                Provision::Owner,
                loaded.into(),
                Persistent::Persistent(handle),
            )
        })
        .map_err(|e| {
            failed(
                &format!("persisting the key at {persistent_handle:#010x}"),
                e,
            )
        });
        let _ = context.flush_context(loaded.into());
        persisted.map(|_| ())
    })();
    let _ = context.flush_context(primary.into());
    result
}

/// The device key: P-256 ECDSA-SHA256, sign only, not restricted (it signs
/// JWS input digests), non-duplicable (`fixedTPM`, `fixedParent`), made in
/// the TPM (`sensitiveDataOrigin`), empty auth (the service's access to the
/// TPM device is the gate).
fn device_key_template() -> Result<Public, KeyError> {
    let attributes = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_sensitive_data_origin(true)
        .with_user_with_auth(true)
        .with_sign_encrypt(true)
        .with_decrypt(false)
        .with_restricted(false)
        .build()
        .map_err(template_error)?;
    PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::Ecc)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attributes)
        .with_ecc_parameters(
            PublicEccParametersBuilder::new_unrestricted_signing_key(
                EccScheme::EcDsa(HashScheme::new(HashingAlgorithm::Sha256)),
                EccCurve::NistP256,
            )
            .build()
            .map_err(template_error)?,
        )
        .with_ecc_unique_identifier(EccPoint::default())
        .build()
        .map_err(template_error)
}

/// The owner hierarchy's storage primary (ECC P-256, AES-128-CFB: the
/// TCG's "SRK" template), derived from the owner seed: the same key every
/// time until the TPM is cleared.
fn storage_primary_template() -> Result<Public, KeyError> {
    let attributes = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_sensitive_data_origin(true)
        .with_user_with_auth(true)
        .with_decrypt(true)
        .with_sign_encrypt(false)
        .with_restricted(true)
        .with_no_da(true)
        .build()
        .map_err(template_error)?;
    PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::Ecc)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attributes)
        .with_ecc_parameters(
            PublicEccParametersBuilder::new_restricted_decryption_key(
                SymmetricDefinitionObject::AES_128_CFB,
                EccCurve::NistP256,
            )
            .build()
            .map_err(template_error)?,
        )
        .with_ecc_unique_identifier(EccPoint::default())
        .build()
        .map_err(template_error)
}

fn template_error(e: tss_esapi::Error) -> KeyError {
    KeyError::Sign(format!("building a key template: {e}"))
}

/// The JWK of a P-256 signing key's public area; `None` for anything else.
fn jwk_of(public: &Public) -> Option<PublicJwk> {
    let Public::Ecc {
        object_attributes,
        parameters,
        unique,
        ..
    } = public
    else {
        return None;
    };
    if parameters.ecc_curve() != EccCurve::NistP256 || !object_attributes.sign_encrypt() {
        return None;
    }
    let coordinate = |c: &[u8]| {
        let c = strip_zeros(c);
        (c.len() <= 32).then(|| {
            let mut out = [0u8; 32];
            out[32 - c.len()..].copy_from_slice(c);
            B64URL.encode(out)
        })
    };
    let jwk = PublicJwk {
        kty: "EC".to_owned(),
        crv: "P-256".to_owned(),
        x: coordinate(unique.x().value())?,
        y: coordinate(unique.y().value())?,
    };
    jwk.to_sec1().is_ok().then_some(jwk)
}

fn connect(tcti: &str) -> Result<Context, KeyError> {
    let conf =
        TctiNameConf::from_str(tcti).map_err(|e| unavailable(format!("TCTI {tcti:?}: {e}")))?;
    let context = Context::new(conf)
        .map_err(|e| unavailable(format!("connecting to the TPM at {tcti:?}: {e}")))?;
    // No default session: commands without authorisation (ReadPublic,
    // GetCapability, FlushContext) refuse a password session, so each
    // command that needs one says so ([`with_password`]).
    Ok(context)
}

/// Whether a persistent object sits at `handle` (`GetCapability` of the
/// handles from `handle` on: the first one listed is it, or it is absent).
pub(crate) fn is_persisted(context: &mut Context, handle: u32) -> Result<bool, KeyError> {
    let (data, _) = context
        .get_capability(CapabilityType::Handles, handle, 1)
        .map_err(|e| unavailable(format!("listing the TPM's persistent handles: {e}")))?;
    Ok(match data {
        CapabilityData::Handles(list) => list.iter().any(|h| u32::from(*h) == handle),
        _ => false,
    })
}

/// Runs `f` with one password session of the empty auth value: every
/// object and hierarchy here has one (access to the TPM device is the gate).
fn with_password<T>(
    context: &mut Context,
    f: impl FnOnce(&mut Context) -> tss_esapi::Result<T>,
) -> tss_esapi::Result<T> {
    context.execute_with_session(Some(AuthSession::Password), f)
}

fn persistent(handle: u32) -> Result<PersistentTpmHandle, KeyError> {
    PersistentTpmHandle::new(handle)
        .map_err(|_| unavailable(format!("{handle:#010x} is not a persistent TPM handle")))
}

/// Whether `e` says the handle names no object (`TPM_RC_HANDLE`,
/// `TPM_RC_REFERENCE_*`): the key is gone, not merely unreachable.
fn is_absent(e: &tss_esapi::Error) -> bool {
    match e {
        tss_esapi::Error::Tss2Error(rc) => matches!(
            rc.kind(),
            Some(Tss2ResponseCodeKind::Handle) | Some(Tss2ResponseCodeKind::ReferenceH0)
        ),
        tss_esapi::Error::WrapperError(_) => false,
    }
}

fn unavailable(reason: String) -> KeyError {
    KeyError::Unavailable {
        backend: BACKEND,
        reason,
    }
}

// The attestation key and the evidence need the same context and handles.
impl TpmKey {
    fn object(&self) -> ObjectHandle {
        self.key.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jose_halves_are_left_padded_and_bounded() {
        let sig = jose_signature(&[1, 2], &[0, 0, 3]).unwrap_or([9; 64]);
        assert_eq!(&sig[..30], &[0; 30]);
        assert_eq!(&sig[30..32], &[1, 2]);
        assert_eq!(&sig[32..63], &[0; 31]);
        assert_eq!(sig[63], 3);
        assert!(jose_signature(&[1; 33], &[1]).is_err());
    }

    #[test]
    fn the_device_key_template_is_non_exportable_and_sign_only() {
        let Ok(Public::Ecc {
            object_attributes: a,
            ..
        }) = device_key_template()
        else {
            panic!("not an ECC template");
        };
        assert!(a.fixed_tpm() && a.fixed_parent() && a.sensitive_data_origin());
        assert!(a.sign_encrypt() && !a.decrypt() && !a.restricted());
    }
}
