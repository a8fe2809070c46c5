//! Key attestation: evidence for the broker's `hardware` enrolment mode
//! that the device key lives in a TPM (format `tpm2-certify`, see
//! broker/API.md).
//!
//! An attestation key (AK) is derived in the endorsement hierarchy
//! (restricted ECC P-256 ECDSA-SHA256 signing key: it signs only what the
//! TPM itself produced, so a `TPMS_ATTEST` it signs is the TPM's word), and
//! certifies the device key with `TPM2_Certify`. The qualifying data is
//! [`qualifying_data`] of the device id, so the evidence is about this
//! key's enrolment and no other. With it go both public areas (the broker
//! recomputes the certified name from the device key's and checks its
//! attributes and its point against the enrolled JWK) and the EK
//! certificate the manufacturer wrote into NV, which chains to a CA the
//! broker trusts.
//!
//! The evidence alone does not prove that the AK and the EK are in the
//! same TPM. The credential-activation round does (the broker's
//! `keyattest::make_credential` to the EK certificate's key over the AK's
//! name, [`TpmKey::activate_credential`] here); the enrolment protocol does
//! not carry that round yet (broker/API.md, "Known gap").

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use broker::api::KeyAttestation;
use sha2::{Digest as _, Sha256};
use tss_esapi::abstraction::{AsymmetricAlgorithmSelection, ek};
use tss_esapi::attributes::ObjectAttributesBuilder;
use tss_esapi::constants::SessionType;
use tss_esapi::handles::{AuthHandle, KeyHandle, NvIndexHandle, NvIndexTpmHandle, SessionHandle};
use tss_esapi::interface_types::algorithm::{HashingAlgorithm, PublicAlgorithm};
use tss_esapi::interface_types::ecc::EccCurve;
use tss_esapi::interface_types::key_bits::RsaKeyBits;
use tss_esapi::interface_types::resource_handles::{Hierarchy, NvAuth};
use tss_esapi::interface_types::session_handles::AuthSession;
use tss_esapi::interface_types::session_handles::PolicySession;
use tss_esapi::structures::{
    Data, EccPoint, EccScheme, EncryptedSecret, HashScheme, IdObject, Public, PublicBuilder,
    PublicEccParametersBuilder, Signature, SignatureScheme, SymmetricDefinition,
    SymmetricDefinitionObject,
};
use tss_esapi::traits::Marshall;

use super::{KeyError, TpmKey, is_persisted, jose_signature, with_password};
use crate::keys::KeyBackend;

/// The only evidence format defined (broker/API.md).
pub const FORMAT: &str = "tpm2-certify";

/// Where TPM manufacturers (and `swtpm_setup --create-ek-cert`) store the
/// EK certificate (TCG EK Credential Profile 2.x §2.2.1.4): RSA 2048, ECC
/// P-256, ECC P-384, tried in this order.
const EK_CERTIFICATE_INDICES: [u32; 3] = [0x01c0_0002, 0x01c0_000a, 0x01c0_0016];

/// The qualifying data (`extraData`) the evidence for `device_id` carries:
/// SHA-256 of `sallyport-key-attestation-v1`, a zero byte and the device id
/// (the JWK thumbprint). The broker computes the same value.
pub fn qualifying_data(device_id: &str) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(b"sallyport-key-attestation-v1\0");
    hash.update(device_id.as_bytes());
    hash.finalize().into()
}

impl TpmKey {
    /// The `tpm2-certify` key attestation of this key, for its enrolment.
    pub fn key_attestation(&self) -> Result<KeyAttestation, KeyError> {
        self.key_attestation_with(&qualifying_data(&self.public_jwk().thumbprint()))
    }

    /// [`TpmKey::key_attestation`] with other qualifying data (tests make
    /// evidence the broker must refuse this way).
    pub fn key_attestation_with(&self, qualifying: &[u8]) -> Result<KeyAttestation, KeyError> {
        let failed = |what: &str, e: tss_esapi::Error| KeyError::Sign(format!("{what}: {e}"));
        let qualifying =
            Data::try_from(qualifying.to_vec()).map_err(|e| failed("qualifying data", e))?;
        let mut context = self.context();
        let ek_certificate = read_ek_certificate(&mut context)?;
        let template = ak_template()?;
        let ak = with_password(&mut context, |ctx| {
            ctx.create_primary(Hierarchy::Endorsement, template, None, None, None, None)
        })
        .map_err(|e| failed("creating the attestation key", e))?;
        let ak_handle: KeyHandle = ak.key_handle;
        let certified = context.execute_with_sessions(
            (
                Some(AuthSession::Password),
                Some(AuthSession::Password),
                None,
            ),
            |ctx| ctx.certify(self.object(), ak_handle, qualifying, SignatureScheme::Null),
        );
        let _ = context.flush_context(ak_handle.into());
        let (attest, signature) = certified.map_err(|e| failed("TPM2_Certify", e))?;
        let signature = match signature {
            Signature::EcDsa(sig) => {
                jose_signature(sig.signature_r().value(), sig.signature_s().value())?
            }
            other => {
                return Err(KeyError::Sign(format!(
                    "the attestation key signed with {:?}, expected ECDSA",
                    other.algorithm()
                )));
            }
        };
        let marshal = |what: &str, r: tss_esapi::Result<Vec<u8>>| r.map_err(|e| failed(what, e));
        Ok(KeyAttestation {
            format: FORMAT.to_owned(),
            certify_info: B64URL.encode(marshal("encoding TPMS_ATTEST", attest.marshall())?),
            signature: B64URL.encode(signature),
            key_public: B64URL.encode(marshal(
                "encoding the key's TPMT_PUBLIC",
                self.public.marshall(),
            )?),
            ak_public: B64URL.encode(marshal(
                "encoding the AK's TPMT_PUBLIC",
                ak.out_public.marshall(),
            )?),
            ek_certificate_chain: vec![B64.encode(ek_certificate)],
        })
    }
}

impl TpmKey {
    /// The device's half of the credential-activation round that binds the
    /// AK to the EK (TPM2_ActivateCredential): recovers the secret the
    /// broker protected with `make_credential` for this TPM's RSA EK and AK.
    /// Only the TPM whose EK the certificate names, holding an object with
    /// the AK's name, can.
    pub fn activate_credential(
        &self,
        credential_blob: &[u8],
        encrypted_secret: &[u8],
    ) -> Result<Vec<u8>, KeyError> {
        let failed = |what: &str, e: tss_esapi::Error| KeyError::Sign(format!("{what}: {e}"));
        let blob = IdObject::try_from(credential_blob.to_vec())
            .map_err(|e| failed("credential blob", e))?;
        let secret = EncryptedSecret::try_from(encrypted_secret.to_vec())
            .map_err(|e| failed("encrypted secret", e))?;
        let mut context = self.context();
        let ek = ek::create_ek_object_2(
            &mut context,
            AsymmetricAlgorithmSelection::Rsa(RsaKeyBits::Rsa2048),
            None,
        )
        .map_err(|e| failed("deriving the RSA EK", e))?;
        let template = ak_template()?;
        let ak = match with_password(&mut context, |ctx| {
            ctx.create_primary(Hierarchy::Endorsement, template, None, None, None, None)
        }) {
            Ok(ak) => ak.key_handle,
            Err(e) => {
                let _ = context.flush_context(ek.into());
                return Err(failed("creating the attestation key", e));
            }
        };
        // The EK's policy (TCG default template): PolicySecret(endorsement).
        let activated = (|| {
            let session = context
                .start_auth_session(
                    None,
                    None,
                    None,
                    SessionType::Policy,
                    SymmetricDefinition::AES_128_CFB,
                    HashingAlgorithm::Sha256,
                )?
                .ok_or(tss_esapi::Error::WrapperError(
                    tss_esapi::WrapperErrorKind::WrongValueFromTpm,
                ))?;
            let result = (|| {
                let policy = PolicySession::try_from(session)?;
                with_password(&mut context, |ctx| {
                    ctx.policy_secret(
                        policy,
                        AuthHandle::Endorsement,
                        Default::default(),
                        Default::default(),
                        Default::default(),
                        None,
                    )
                })?;
                context.execute_with_sessions(
                    (Some(AuthSession::Password), Some(session), None),
                    |ctx| ctx.activate_credential(ak, ek, blob, secret),
                )
            })();
            let _ = context.flush_context(SessionHandle::from(session).into());
            result
        })();
        let _ = context.flush_context(ak.into());
        let _ = context.flush_context(ek.into());
        activated
            .map(|digest| digest.value().to_vec())
            .map_err(|e| failed("TPM2_ActivateCredential", e))
    }
}

/// The first EK certificate present, DER (NV indices may pad it; the
/// broker's parser reads one certificate and ignores what follows).
fn read_ek_certificate(context: &mut tss_esapi::Context) -> Result<Vec<u8>, KeyError> {
    let failed =
        |index: u32, e: tss_esapi::Error| KeyError::Sign(format!("NV index {index:#x}: {e}"));
    for index in EK_CERTIFICATE_INDICES {
        // Asked first: a lookup of an absent index would hit tpm2-tss
        // 3.2.1's crash in Esys_TR_FromTPMPublic's error path.
        if !is_persisted(context, index)? {
            continue;
        }
        let tpm_handle = NvIndexTpmHandle::new(index).map_err(|e| failed(index, e))?;
        let object = context
            .tr_from_tpm_public(tpm_handle.into())
            .map_err(|e| failed(index, e))?;
        let nv = NvIndexHandle::from(object);
        let read = (|| {
            let (public, _) = context.nv_read_public(nv)?;
            let size = public.data_size();
            let mut der = Vec::with_capacity(size);
            while der.len() < size {
                let chunk = (size - der.len()).min(NV_CHUNK);
                let offset = u16::try_from(der.len()).unwrap_or(u16::MAX);
                let part = with_password(context, |ctx| {
                    ctx.nv_read(NvAuth::Owner, nv, chunk as u16, offset)
                })?;
                der.extend_from_slice(part.value());
            }
            Ok(der)
        })();
        let mut object = object;
        let _ = context.tr_close(&mut object);
        let der = read.map_err(|e| failed(index, e))?;
        if !der.is_empty() {
            return Ok(der);
        }
    }
    Err(KeyError::Unavailable {
        backend: super::BACKEND,
        reason: "the TPM holds no EK certificate, so its keys cannot be attested".to_owned(),
    })
}

/// NV reads go in pieces no larger than any TPM's `MAX_NV_BUFFER_SIZE`.
const NV_CHUNK: usize = 512;

/// The attestation key: a restricted P-256 ECDSA-SHA256 signing key in the
/// endorsement hierarchy, derived from the endorsement seed (the same AK
/// every time, until the TPM is replaced), never persisted.
fn ak_template() -> Result<Public, KeyError> {
    let error = |e: tss_esapi::Error| KeyError::Sign(format!("building the AK template: {e}"));
    let attributes = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_sensitive_data_origin(true)
        .with_user_with_auth(true)
        .with_sign_encrypt(true)
        .with_decrypt(false)
        .with_restricted(true)
        .build()
        .map_err(error)?;
    PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::Ecc)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attributes)
        .with_ecc_parameters(
            PublicEccParametersBuilder::new()
                .with_symmetric(SymmetricDefinitionObject::Null)
                .with_ecc_scheme(EccScheme::EcDsa(HashScheme::new(HashingAlgorithm::Sha256)))
                .with_curve(EccCurve::NistP256)
                .with_key_derivation_function_scheme(
                    tss_esapi::structures::KeyDerivationFunctionScheme::Null,
                )
                .with_is_signing_key(true)
                .with_is_decryption_key(false)
                .with_restricted(true)
                .build()
                .map_err(error)?,
        )
        .with_ecc_unique_identifier(EccPoint::default())
        .build()
        .map_err(error)
}
