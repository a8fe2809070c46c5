//! Key attestation end to end at library level: evidence made by a real
//! (software) TPM, checked by the broker's pure verifier. It passes for the
//! TPM key with the TPM's CA configured, and each way of forging it fails.

#![cfg(all(feature = "tpm", target_os = "linux"))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use broker::server::keyattest::{self, KeyAttestError, TrustAnchors};
use posture::attestation::DeviceKey;
use service::keys::KeyBackend;
use service::keys::tpm::{DEFAULT_PERSISTENT_HANDLE, TpmKey};
use support::tpm::Swtpm;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn anchors(tpm: &Swtpm) -> TrustAnchors {
    TrustAnchors::load(&[tpm.issuer_ca()]).unwrap()
}

#[test]
fn evidence_from_the_tpm_verifies_with_its_ca() {
    let Some(tpm) = Swtpm::start() else { return };
    let key = TpmKey::load_or_create(&tpm.tcti(), DEFAULT_PERSISTENT_HANDLE).unwrap();
    let evidence = key.key_attestation().unwrap();
    assert_eq!(evidence.format, "tpm2-certify");
    keyattest::verify(&evidence, key.public_jwk(), &anchors(&tpm), now()).unwrap();
    // The root above the issuing CA is as good a trust anchor.
    let root = TrustAnchors::load(&[tpm.root_ca()]).unwrap();
    // ... once the device sends the intermediate along.
    let mut with_intermediate = evidence.clone();
    let pem = std::fs::read(tpm.issuer_ca()).unwrap();
    let der = x509_der(&pem);
    with_intermediate
        .ek_certificate_chain
        .push(base64::engine::general_purpose::STANDARD.encode(der));
    keyattest::verify(&with_intermediate, key.public_jwk(), &root, now()).unwrap();
    assert!(matches!(
        keyattest::verify(&evidence, key.public_jwk(), &root, now()),
        Err(KeyAttestError::Chain(_))
    ));
}

fn x509_der(pem: &[u8]) -> Vec<u8> {
    let text = std::str::from_utf8(pem).unwrap();
    let body: String = text
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap()
}

#[test]
fn tampered_certify_info_is_refused() {
    let Some(tpm) = Swtpm::start() else { return };
    let key = TpmKey::load_or_create(&tpm.tcti(), DEFAULT_PERSISTENT_HANDLE).unwrap();
    let mut evidence = key.key_attestation().unwrap();
    let mut info = B64URL.decode(&evidence.certify_info).unwrap();
    let last = info.len() - 40; // inside clockInfo/firmware/name
    info[last] ^= 1;
    evidence.certify_info = B64URL.encode(info);
    assert_eq!(
        keyattest::verify(&evidence, key.public_jwk(), &anchors(&tpm), now()),
        Err(KeyAttestError::Signature)
    );
}

#[test]
fn evidence_for_another_enrolment_is_refused() {
    let Some(tpm) = Swtpm::start() else { return };
    let key = TpmKey::load_or_create(&tpm.tcti(), DEFAULT_PERSISTENT_HANDLE).unwrap();
    let evidence = key
        .key_attestation_with(&service::keys::tpm::qualifying_data("another-device"))
        .unwrap();
    assert_eq!(
        keyattest::verify(&evidence, key.public_jwk(), &anchors(&tpm), now()),
        Err(KeyAttestError::QualifyingData)
    );
}

#[test]
fn a_software_key_with_evidence_from_the_tpm_key_is_refused() {
    let Some(tpm) = Swtpm::start() else { return };
    let key = TpmKey::load_or_create(&tpm.tcti(), DEFAULT_PERSISTENT_HANDLE).unwrap();
    let software = DeviceKey::generate();
    // The TPM's genuine evidence, presented for the software key (and with
    // its qualifying data made for the software key's id, too).
    for evidence in [
        key.key_attestation().unwrap(),
        key.key_attestation_with(&service::keys::tpm::qualifying_data(&software.kid()))
            .unwrap(),
    ] {
        assert!(matches!(
            keyattest::verify(&evidence, software.public_jwk(), &anchors(&tpm), now()),
            Err(KeyAttestError::WrongKey(_))
        ));
    }
}

#[test]
fn an_ek_certificate_from_another_ca_is_refused() {
    let Some(tpm) = Swtpm::start() else { return };
    let Some(other) = Swtpm::start() else { return };
    let key = TpmKey::load_or_create(&tpm.tcti(), DEFAULT_PERSISTENT_HANDLE).unwrap();
    let evidence = key.key_attestation().unwrap();
    let err = keyattest::verify(&evidence, key.public_jwk(), &anchors(&other), now()).unwrap_err();
    assert!(matches!(err, KeyAttestError::Chain(_)), "{err}");
    // No EK certificate at all is refused too.
    let mut bare = evidence.clone();
    bare.ek_certificate_chain.clear();
    assert!(matches!(
        keyattest::verify(&bare, key.public_jwk(), &anchors(&tpm), now()),
        Err(KeyAttestError::Chain(_))
    ));
}

/// The credential-activation round (broker: `make_credential` to the EK
/// certificate's key over the AK's name; device: TPM2_ActivateCredential):
/// only the TPM that holds both gets the secret back.
#[test]
fn credential_activation_binds_the_ak_to_the_ek() {
    let Some(tpm) = Swtpm::start() else { return };
    let Some(other) = Swtpm::start() else { return };
    let key = TpmKey::load_or_create(&tpm.tcti(), DEFAULT_PERSISTENT_HANDLE).unwrap();
    let other_key = TpmKey::load_or_create(&other.tcti(), DEFAULT_PERSISTENT_HANDLE).unwrap();
    let evidence = key.key_attestation().unwrap();
    let ek = base64::engine::general_purpose::STANDARD
        .decode(&evidence.ek_certificate_chain[0])
        .unwrap();
    let ak_name = keyattest::object_name(&B64URL.decode(&evidence.ak_public).unwrap());
    let secret = [0x5a; 32];
    let mut rng = rand_core::OsRng;

    let credential = keyattest::make_credential(&ek, &ak_name, &secret, &mut rng).unwrap();
    let recovered = key
        .activate_credential(&credential.credential_blob, &credential.encrypted_secret)
        .unwrap();
    assert_eq!(recovered, secret);

    // Another TPM (its own EK and AK) cannot recover it...
    assert!(
        other_key
            .activate_credential(&credential.credential_blob, &credential.encrypted_secret)
            .is_err()
    );
    // ...nor can this TPM when the credential names another AK (a software
    // "AK" presented with this TPM's EK certificate).
    let other_ak = other_key.key_attestation().unwrap().ak_public;
    let wrong_name = keyattest::object_name(&B64URL.decode(other_ak).unwrap());
    let credential = keyattest::make_credential(&ek, &wrong_name, &secret, &mut rng).unwrap();
    assert!(
        key.activate_credential(&credential.credential_blob, &credential.encrypted_secret)
            .is_err()
    );
}
