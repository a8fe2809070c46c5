//! TPM2_MakeCredential in software, for the credential-activation round
//! that binds the AK to the EK (TPM 2.0 Library Part 1 §24, "Credential
//! Protection"): the broker encrypts a secret so that only a TPM holding
//! the EK's private key *and* an object named like the AK can recover it
//! (TPM2_ActivateCredential). A device that answers with the secret proves
//! the AK is in the TPM the EK certificate describes.
//!
//! RSA EKs only (the TCG's RSA-2048 template, the EK certificate at NV
//! `0x01c00002`): the seed is RSA-OAEP(SHA-256, label `IDENTITY\0`)
//! encrypted; ECC EKs (ECDH + KDFe) are not implemented.

use aes::cipher::{AsyncStreamCipher as _, KeyIvInit as _};
use rsa::pkcs1::DecodeRsaPublicKey as _;
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer as _;

/// What the broker sends the device: `TPM2B_ID_OBJECT`'s contents and the
/// `TPM2B_ENCRYPTED_SECRET`'s, as `TPM2_ActivateCredential` takes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// `outerHMAC` (as a `TPM2B_DIGEST`) `|| encIdentity`.
    pub credential_blob: Vec<u8>,
    /// The seed, RSA-OAEP encrypted to the EK.
    pub encrypted_secret: Vec<u8>,
}

/// Makes the credential protecting `secret` (at most 32 bytes) for the
/// object named `ak_name`, to the EK whose certificate is `ek_certificate`.
pub fn make_credential(
    ek_certificate: &[u8],
    ak_name: &[u8],
    secret: &[u8],
    rng: &mut impl rand_core::CryptoRngCore,
) -> Result<Credential, String> {
    if secret.len() > 32 {
        return Err("a credential secret is at most 32 bytes".to_owned());
    }
    let (_, cert) = X509Certificate::from_der(ek_certificate)
        .map_err(|e| format!("the EK certificate does not parse: {e}"))?;
    let spki = cert.public_key();
    // rsaEncryption: the subjectPublicKey is a PKCS#1 RSAPublicKey.
    let ek = rsa::RsaPublicKey::from_pkcs1_der(&spki.subject_public_key.data)
        .map_err(|_| "credential activation needs an RSA EK".to_owned())?;

    // The seed: one SHA-256 digest's worth (the EK's nameAlg).
    let mut seed = [0u8; 32];
    rng.fill_bytes(&mut seed);
    let encrypted_secret = ek
        .encrypt(
            rng,
            rsa::Oaep::new_with_label::<sha2::Sha256, _>("IDENTITY\0"),
            &seed,
        )
        .map_err(|e| format!("RSA-OAEP: {e}"))?;

    // The credential as a TPM2B_DIGEST, encrypted with AES-128-CFB (the EK
    // template's symmetric algorithm), zero IV.
    let sym_key = kdfa(&seed, b"STORAGE", ak_name, &[], 128);
    let mut enc_identity = Vec::with_capacity(2 + secret.len());
    enc_identity.extend_from_slice(&(secret.len() as u16).to_be_bytes());
    enc_identity.extend_from_slice(secret);
    cfb_mode::Encryptor::<aes::Aes128>::new_from_slices(&sym_key, &[0u8; 16])
        .map_err(|e| format!("AES key: {e}"))?
        .encrypt(&mut enc_identity);

    let hmac_key = kdfa(&seed, b"INTEGRITY", &[], &[], 256);
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &hmac_key);
    let mut ctx = ring::hmac::Context::with_key(&key);
    ctx.update(&enc_identity);
    ctx.update(ak_name);
    let outer_hmac = ctx.sign();

    let mut credential_blob = Vec::with_capacity(2 + 32 + enc_identity.len());
    credential_blob.extend_from_slice(&32u16.to_be_bytes());
    credential_blob.extend_from_slice(outer_hmac.as_ref());
    credential_blob.extend_from_slice(&enc_identity);
    Ok(Credential {
        credential_blob,
        encrypted_secret,
    })
}

/// KDFa with HMAC-SHA-256 (Part 1 §11.4.10.2): counter mode,
/// `HMAC(key, [i] || label || 0x00 || contextU || contextV || [bits])`.
fn kdfa(key: &[u8], label: &[u8], context_u: &[u8], context_v: &[u8], bits: u32) -> Vec<u8> {
    let hmac = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    let bytes = (bits / 8) as usize;
    let mut out = Vec::with_capacity(bytes + 32);
    let mut counter = 1u32;
    while out.len() < bytes {
        let mut ctx = ring::hmac::Context::with_key(&hmac);
        ctx.update(&counter.to_be_bytes());
        ctx.update(label);
        ctx.update(&[0]);
        ctx.update(context_u);
        ctx.update(context_v);
        ctx.update(&bits.to_be_bytes());
        out.extend_from_slice(ctx.sign().as_ref());
        counter += 1;
    }
    out.truncate(bytes);
    out
}
