//! Verifying a hardware key attestation (`tpm2-certify`, API.md "Key
//! attestation"): the broker's `hardware` enrolment mode enrols a key only
//! with evidence that a TPM holds it and cannot export it. Pure: the
//! evidence, the key being enrolled, the configured CAs and a time in, a
//! verdict out.
//!
//! What is checked, in order:
//! 1. the device key's `TPMT_PUBLIC` is a sign-only P-256 key, `fixedTPM`, `fixedParent`, `sensitiveDataOrigin`, and its
//!    point is the enrolled JWK's (a software key, or any other key, fails
//!    here);
//! 2. the AK's `TPMT_PUBLIC` is a restricted, `fixedTPM` P-256 ECDSA-SHA256
//!    signing key, and its signature over `certify_info` verifies;
//! 3. `certify_info` is the TPM's own (`TPM_GENERATED_VALUE`) certify
//!    structure, naming the device key (`nameAlg || SHA-256(TPMT_PUBLIC)`)
//!    with [`qualifying_data`] of this device id as `extraData`;
//! 4. the EK certificate chains to a configured TPM CA ([`chain`]).
//!
//! The gap (documented in API.md): nothing here proves that the AK lives in
//! the TPM the EK certificate describes. A credential-activation round
//! (MakeCredential to the EK, ActivateCredential in the TPM) closes it.

mod activation;
mod chain;
mod credential;
/// The TPM 2.0 structures in the evidence (public: the fuzz harness feeds
/// them directly).
pub mod tpm2;

pub use activation::Activations;
pub use chain::{TrustAnchors, verify_ek_chain};
pub use credential::{Credential, make_credential};

/// The name of a SHA-256-named object: `0x000b || SHA-256(TPMT_PUBLIC)`.
pub fn object_name(public_area: &[u8]) -> Vec<u8> {
    tpm2::name_sha256(public_area)
}
pub use tpm2::ParseError;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use posture::attestation::PublicJwk;

use crate::api::{KEY_ATTESTATION_TPM2_CERTIFY, KeyAttestation};
use tpm2::attr;

/// Why evidence was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyAttestError {
    /// A format other than `tpm2-certify`.
    #[error("unknown key attestation format {0:?} (only tpm2-certify is defined)")]
    Format(String),
    /// A field is not the base64 it must be.
    #[error("{0} is not valid base64")]
    Encoding(&'static str),
    /// A TPM structure does not parse.
    #[error("malformed evidence: {0}")]
    Malformed(#[from] ParseError),
    /// The certified key is not the one being enrolled.
    #[error("the attested key is not the key being enrolled: {0}")]
    WrongKey(String),
    /// The key is not a non-exportable TPM signing key.
    #[error("the key is not a non-exportable TPM signing key: {0}")]
    NotHardware(String),
    /// The attestation key is not a TPM attestation key.
    #[error("the attestation key is not a restricted TPM P-256 signing key: {0}")]
    AttestationKey(String),
    /// The AK's signature does not verify.
    #[error("the attestation key's signature over certify_info does not verify")]
    Signature,
    /// The evidence was made for another enrolment.
    #[error("the certification's qualifying data is not this device's")]
    QualifyingData,
    /// The EK certificate does not chain to a configured CA.
    #[error("EK certificate: {0}")]
    Chain(String),
}

/// The qualifying data evidence for `device_id` must carry: SHA-256 of
/// `sallyport-key-attestation-v1`, a zero byte and the device id.
pub fn qualifying_data(device_id: &str) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(b"sallyport-key-attestation-v1\0");
    ctx.update(device_id.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// What the credential-activation round needs from verified evidence: the
/// EK certificate (DER) and the AK's name.
pub fn activation_inputs(evidence: &KeyAttestation) -> Result<(Vec<u8>, Vec<u8>), KeyAttestError> {
    let ak_public = B64URL
        .decode(&evidence.ak_public)
        .map_err(|_| KeyAttestError::Encoding("ak_public"))?;
    let ek = evidence
        .ek_certificate_chain
        .first()
        .and_then(|c| B64.decode(c).ok())
        .ok_or(KeyAttestError::Encoding("ek_certificate_chain"))?;
    Ok((ek, object_name(&ak_public)))
}

/// Verifies `evidence` for the enrolment of `jwk` (see the module docs).
pub fn verify(
    evidence: &KeyAttestation,
    jwk: &PublicJwk,
    anchors: &TrustAnchors,
    now_unix: i64,
) -> Result<(), KeyAttestError> {
    if evidence.format != KEY_ATTESTATION_TPM2_CERTIFY {
        return Err(KeyAttestError::Format(evidence.format.clone()));
    }
    let b64url = |field: &'static str, text: &str| {
        B64URL
            .decode(text)
            .map_err(|_| KeyAttestError::Encoding(field))
    };
    let certify_info = b64url("certify_info", &evidence.certify_info)?;
    let signature = b64url("signature", &evidence.signature)?;
    let key_public = b64url("key_public", &evidence.key_public)?;
    let ak_public = b64url("ak_public", &evidence.ak_public)?;
    let chain = evidence
        .ek_certificate_chain
        .iter()
        .map(|c| {
            B64.decode(c)
                .map_err(|_| KeyAttestError::Encoding("ek_certificate_chain"))
        })
        .collect::<Result<Vec<_>, _>>()?;

    // 1. The device key.
    let key = tpm2::parse_ecc_public(&key_public)?;
    let enrolled = jwk
        .to_sec1()
        .map_err(|e| KeyAttestError::WrongKey(e.to_string()))?;
    if key.curve != tpm2::ECC_NIST_P256 || key.sec1_p256() != Some(enrolled) {
        return Err(KeyAttestError::WrongKey(
            "its public area holds another point".to_owned(),
        ));
    }
    let required = attr::FIXED_TPM | attr::FIXED_PARENT | attr::SENSITIVE_DATA_ORIGIN | attr::SIGN;
    if key.attributes & required != required || key.attributes & attr::DECRYPT != 0 {
        return Err(KeyAttestError::NotHardware(format!(
            "attributes {:#010x}: not fixedTPM, fixedParent, sensitiveDataOrigin and sign-only",
            key.attributes
        )));
    }
    if key.name_alg != tpm2::ALG_SHA256 {
        return Err(KeyAttestError::NotHardware(
            "its name algorithm is not SHA-256".to_owned(),
        ));
    }

    // 2. The attestation key and its signature.
    let ak = tpm2::parse_ecc_public(&ak_public)?;
    let ak_required = attr::FIXED_TPM | attr::FIXED_PARENT | attr::RESTRICTED | attr::SIGN;
    if ak.attributes & ak_required != ak_required || ak.attributes & attr::DECRYPT != 0 {
        return Err(KeyAttestError::AttestationKey(format!(
            "attributes {:#010x}",
            ak.attributes
        )));
    }
    if ak.curve != tpm2::ECC_NIST_P256 || ak.scheme != (tpm2::ALG_ECDSA, tpm2::ALG_SHA256) {
        return Err(KeyAttestError::AttestationKey(
            "not a P-256 ECDSA-SHA256 key".to_owned(),
        ));
    }
    let ak_point = ak
        .sec1_p256()
        .ok_or_else(|| KeyAttestError::AttestationKey("its point is too long".to_owned()))?;
    ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, ak_point)
        .verify(&certify_info, &signature)
        .map_err(|_| KeyAttestError::Signature)?;

    // 3. What the TPM certified.
    let info = tpm2::parse_certify_info(&certify_info)?;
    if info.name != tpm2::name_sha256(&key_public) {
        return Err(KeyAttestError::WrongKey(
            "the TPM certified another object than this public area".to_owned(),
        ));
    }
    if info.extra_data != qualifying_data(&jwk.thumbprint()) {
        return Err(KeyAttestError::QualifyingData);
    }

    // 4. The TPM's EK certificate.
    verify_ek_chain(&chain, anchors, now_unix).map_err(KeyAttestError::Chain)
}

#[cfg(test)]
mod tests {
    //! The verifier on synthetic evidence (the real thing from swtpm is in
    //! service/tests/tpm_attest.rs): every check before the EK chain, each
    //! broken on its own. With no CA configured, evidence that passes them
    //! all stops at the chain, which is how "all else passed" shows.
    #![allow(clippy::unwrap_used)]

    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};

    const DEVICE: u32 =
        attr::FIXED_TPM | attr::FIXED_PARENT | attr::SENSITIVE_DATA_ORIGIN | attr::SIGN;
    const AK: u32 = DEVICE | attr::RESTRICTED;

    fn keypair() -> EcdsaKeyPair {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap()
    }

    fn jwk(key: &EcdsaKeyPair) -> PublicJwk {
        let p = key.public_key().as_ref();
        PublicJwk {
            kty: "EC".into(),
            crv: "P-256".into(),
            x: B64URL.encode(&p[1..33]),
            y: B64URL.encode(&p[33..]),
        }
    }

    struct Parts {
        device: EcdsaKeyPair,
        device_attributes: u32,
        ak: EcdsaKeyPair,
        ak_attributes: u32,
        extra_data: Option<Vec<u8>>,
        certified: Option<Vec<u8>>,
    }

    fn parts() -> Parts {
        Parts {
            device: keypair(),
            device_attributes: DEVICE,
            ak: keypair(),
            ak_attributes: AK,
            extra_data: None,
            certified: None,
        }
    }

    fn evidence(p: &Parts) -> KeyAttestation {
        let point = p.device.public_key().as_ref();
        let key_public = tpm2::public_area(p.device_attributes, &point[1..33], &point[33..]);
        let ak_point = p.ak.public_key().as_ref();
        let ak_public = tpm2::public_area(p.ak_attributes, &ak_point[1..33], &ak_point[33..]);
        let extra = p
            .extra_data
            .clone()
            .unwrap_or_else(|| qualifying_data(&jwk(&p.device).thumbprint()).to_vec());
        let name = p
            .certified
            .clone()
            .unwrap_or_else(|| tpm2::name_sha256(&key_public));
        let info = tpm2::certify_info(&extra, &name);
        let signature = p.ak.sign(&SystemRandom::new(), &info).unwrap();
        KeyAttestation {
            format: KEY_ATTESTATION_TPM2_CERTIFY.into(),
            certify_info: B64URL.encode(&info),
            signature: B64URL.encode(signature.as_ref()),
            key_public: B64URL.encode(&key_public),
            ak_public: B64URL.encode(&ak_public),
            ek_certificate_chain: vec![],
        }
    }

    fn check(p: &Parts) -> Result<(), KeyAttestError> {
        verify(
            &evidence(p),
            &jwk(&p.device),
            &TrustAnchors::default(),
            1_800_000_000,
        )
    }

    #[test]
    fn sound_evidence_passes_every_check_but_the_missing_chain() {
        assert!(matches!(check(&parts()), Err(KeyAttestError::Chain(_))));
    }

    #[test]
    fn a_key_that_can_leave_the_tpm_is_refused() {
        for missing in [
            attr::FIXED_TPM,
            attr::FIXED_PARENT,
            attr::SENSITIVE_DATA_ORIGIN,
        ] {
            let p = Parts {
                device_attributes: DEVICE & !missing,
                ..parts()
            };
            assert!(
                matches!(check(&p), Err(KeyAttestError::NotHardware(_))),
                "{missing:#x}"
            );
        }
    }

    #[test]
    fn another_keys_evidence_is_refused() {
        let p = parts();
        let other = keypair();
        assert!(matches!(
            verify(&evidence(&p), &jwk(&other), &TrustAnchors::default(), 0),
            Err(KeyAttestError::WrongKey(_))
        ));
        // The TPM certified some other object than the public area sent.
        let p = Parts {
            certified: Some(vec![0, 0x0b, 1, 2, 3]),
            ..parts()
        };
        assert!(matches!(check(&p), Err(KeyAttestError::WrongKey(_))));
    }

    #[test]
    fn an_unrestricted_attestation_key_is_refused() {
        // An unrestricted key signs any digest, so its "TPMS_ATTEST" proves nothing.
        let p = Parts {
            ak_attributes: DEVICE,
            ..parts()
        };
        assert!(matches!(check(&p), Err(KeyAttestError::AttestationKey(_))));
    }

    #[test]
    fn a_signature_by_another_key_or_over_other_bytes_is_refused() {
        let p = parts();
        let mut e = evidence(&p);
        let other = evidence(&parts());
        e.signature = other.signature;
        assert_eq!(
            verify(&e, &jwk(&p.device), &TrustAnchors::default(), 0),
            Err(KeyAttestError::Signature)
        );
    }

    #[test]
    fn other_qualifying_data_is_refused() {
        let p = Parts {
            extra_data: Some(qualifying_data("another-device").to_vec()),
            ..parts()
        };
        assert_eq!(check(&p), Err(KeyAttestError::QualifyingData));
    }

    #[test]
    fn unknown_formats_and_bad_encodings_are_refused() {
        let p = parts();
        let mut e = evidence(&p);
        e.format = "android-key".into();
        assert!(matches!(
            verify(&e, &jwk(&p.device), &TrustAnchors::default(), 0),
            Err(KeyAttestError::Format(_))
        ));
        let mut e = evidence(&p);
        e.key_public = "***".into();
        assert_eq!(
            verify(&e, &jwk(&p.device), &TrustAnchors::default(), 0),
            Err(KeyAttestError::Encoding("key_public"))
        );
    }

    #[test]
    fn the_qualifying_data_rule_is_the_documented_one() {
        let expected =
            ring::digest::digest(&ring::digest::SHA256, b"sallyport-key-attestation-v1\0dev");
        assert_eq!(qualifying_data("dev").as_slice(), expected.as_ref());
    }
}
