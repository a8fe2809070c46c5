//! The TPM backend against a real (software) TPM: one swtpm per test.
//! Key creation, ES256 signatures a plain P-256 verifier accepts, the same
//! key after reopening, and the recovery path when the TPM is cleared.

#![cfg(all(feature = "tpm", target_os = "linux"))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{Signature, VerifyingKey};
use service::keys::tpm::{DEFAULT_PERSISTENT_HANDLE, TpmKey};
use service::keys::{KeyAssurance, KeyBackend, KeyError};
use support::tpm::Swtpm;

fn verify(key: &TpmKey, message: &[u8], signature: &[u8; 64]) -> bool {
    let sec1 = key.public_jwk().to_sec1().unwrap();
    let verifier = VerifyingKey::from_sec1_bytes(&sec1).unwrap();
    let signature = Signature::from_slice(signature).unwrap();
    verifier.verify(message, &signature).is_ok()
}

#[test]
fn a_new_key_signs_es256_that_p256_verifies() {
    let Some(tpm) = Swtpm::start() else { return };
    let key = TpmKey::load_or_create(&tpm.tcti(), DEFAULT_PERSISTENT_HANDLE).unwrap();
    assert_eq!(key.assurance(), KeyAssurance::Tpm);
    for i in 0..20u8 {
        let message = format!("header.payload-{i}");
        let signature = key.sign_es256(message.as_bytes()).unwrap();
        assert!(
            verify(&key, message.as_bytes(), &signature),
            "signature {i}"
        );
        assert!(!verify(&key, b"another message", &signature));
    }
}

#[test]
fn reopening_finds_the_same_key() {
    let Some(tpm) = Swtpm::start() else { return };
    let first = TpmKey::load_or_create(&tpm.tcti(), DEFAULT_PERSISTENT_HANDLE).unwrap();
    let jwk = first.public_jwk().clone();
    drop(first);
    // Both ways of opening find it; neither makes another.
    let again = TpmKey::load(&tpm.tcti(), DEFAULT_PERSISTENT_HANDLE).unwrap();
    assert_eq!(again.public_jwk(), &jwk);
    let signature = again.sign_es256(b"m").unwrap();
    drop(again);
    let third = TpmKey::load_or_create(&tpm.tcti(), DEFAULT_PERSISTENT_HANDLE).unwrap();
    assert_eq!(third.public_jwk(), &jwk);
    assert!(verify(&third, b"m", &signature));
}

#[test]
fn a_cleared_tpm_has_no_key_and_a_new_one_is_made() {
    let Some(tpm) = Swtpm::start() else { return };
    let old = TpmKey::load_or_create(&tpm.tcti(), DEFAULT_PERSISTENT_HANDLE)
        .unwrap()
        .public_jwk()
        .clone();
    // (The key is dropped: swtpm serves one client at a time.)
    tpm.clear();
    match TpmKey::load(&tpm.tcti(), DEFAULT_PERSISTENT_HANDLE) {
        Err(KeyError::Gone(why)) => assert!(why.contains("cleared"), "{why}"),
        other => panic!("expected Gone, got {other:?}"),
    }
    let new = TpmKey::load_or_create(&tpm.tcti(), DEFAULT_PERSISTENT_HANDLE).unwrap();
    assert_ne!(new.public_jwk(), &old);
    let signature = new.sign_es256(b"after the clear").unwrap();
    assert!(verify(&new, b"after the clear", &signature));
}

#[test]
fn another_tpm_does_not_have_the_key() {
    let Some(first) = Swtpm::start() else { return };
    let Some(second) = Swtpm::start() else { return };
    let key = TpmKey::load_or_create(&first.tcti(), DEFAULT_PERSISTENT_HANDLE).unwrap();
    assert!(matches!(
        TpmKey::load(&second.tcti(), DEFAULT_PERSISTENT_HANDLE),
        Err(KeyError::Gone(_))
    ));
    // Evicting is how an administrator resets the key by hand.
    key.evict().unwrap();
    assert!(matches!(
        TpmKey::load(&first.tcti(), DEFAULT_PERSISTENT_HANDLE),
        Err(KeyError::Gone(_))
    ));
}

#[test]
fn no_tpm_is_unavailable() {
    let port = support::free_port();
    let tcti = format!("swtpm:host=127.0.0.1,port={port}");
    assert!(matches!(
        TpmKey::load_or_create(&tcti, DEFAULT_PERSISTENT_HANDLE),
        Err(KeyError::Unavailable { .. })
    ));
}
