//! Hardware enrolment over real HTTP: a broker in `hardware` mode that
//! trusts the software TPM's EK CA enrols the TPM-held key (its DPoP proofs
//! signed inside the TPM, its evidence made by the TPM, the broker's
//! credential activated by the TPM) and refuses a software key, with or
//! without borrowed evidence, and a wrong activation secret.

#![cfg(all(feature = "tpm", target_os = "linux"))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../broker/tests/common/mod.rs"]
mod common;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use broker::api::{self, DeviceStatus, ProblemType};
use broker::server::config::EnrolmentMode;
use common::*;
use posture::attestation::DeviceSigner;
use serde_json::json;
use service::keys::tpm::{DEFAULT_PERSISTENT_HANDLE, TpmKey};
use service::keys::{BackendSigner, KeyBackend};
use support::tpm::Swtpm;

/// Sends `body` to `path` with a DPoP proof signed by `signer`.
async fn post_signed(
    client: &Client,
    signer: &dyn DeviceSigner,
    path: &str,
    body: serde_json::Value,
) -> reqwest::Response {
    let proof = posture::dpop::proof(
        signer,
        "POST",
        &client.url(path),
        &client.token,
        unix_now(),
        None,
    )
    .unwrap();
    client
        .send(
            reqwest::Method::POST,
            path,
            Some(&body),
            Auth::Dpop(Some(proof)),
        )
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hardware_mode_enrols_a_tpm_key_and_refuses_a_software_key() {
    let Some(tpm) = Swtpm::start() else { return };
    let ca = tpm.issuer_ca();
    let env = Env::start_with(move |config, _| {
        config
            .enrolment(EnrolmentMode::Hardware)
            .tpm_ca_certificates(&[ca])
    })
    .await;
    let client = env.client(&env.issuer.token("alice"));

    let key = TpmKey::load_or_create(&tpm.tcti(), DEFAULT_PERSISTENT_HANDLE).unwrap();
    let evidence = key.key_attestation().unwrap();
    let signer = BackendSigner(&key);
    let jwk = signer.0.public_jwk().clone();

    // A software key: no evidence, then the TPM key's genuine evidence.
    let software = TestDevice::new(client.clone(), "alice");
    expect_problem(software.enrol().await, ProblemType::KeyAttestationRequired).await;
    let r = software
        .api
        .post(
            api::paths::DEVICES,
            &api::EnrolRequest {
                public_jwk: software.key.public_jwk().clone(),
                name: None,
                key_attestation: Some(evidence.clone()),
                activation_secret: None,
            },
        )
        .await;
    let p = expect_problem(r, ProblemType::KeyAttestationUnverifiable).await;
    assert!(
        p.detail.contains("not the key being enrolled"),
        "{}",
        p.detail
    );

    // The TPM key with its evidence, every proof signed in the TPM: the
    // broker answers with a credential to activate (binding the AK to the
    // EK), nothing is enrolled yet.
    let mut request = api::EnrolRequest {
        public_jwk: jwk.clone(),
        name: Some("tpm-host".into()),
        key_attestation: Some(evidence),
        activation_secret: None,
    };
    let body = serde_json::to_value(&request).unwrap();
    let r = post_signed(&client, &signer, api::paths::DEVICES, body).await;
    let problem = expect_problem(r, ProblemType::KeyActivationRequired).await;
    let challenge = problem.key_activation.expect("the challenge");

    // A wrong secret (a TPM without this AK and EK cannot do better) is
    // refused, and still nothing is enrolled.
    request.activation_secret = Some(B64URL.encode([7u8; 32]));
    let body = serde_json::to_value(&request).unwrap();
    let r = post_signed(&client, &signer, api::paths::DEVICES, body).await;
    expect_problem(r, ProblemType::KeyActivationFailed).await;

    // This TPM activates the credential; with its secret the key enrols.
    let secret = KeyBackend::activate_credential(
        &key,
        &B64URL.decode(&challenge.credential_blob).unwrap(),
        &B64URL.decode(&challenge.encrypted_secret).unwrap(),
    )
    .unwrap();
    request.activation_secret = Some(B64URL.encode(secret));
    let body = serde_json::to_value(&request).unwrap();
    let r = post_signed(&client, &signer, api::paths::DEVICES, body).await;
    assert!(
        r.status().is_success(),
        "{}: {}",
        r.status(),
        r.text().await.unwrap()
    );
    let device: api::Device = r.json().await.unwrap();
    assert_eq!(device.device_id, jwk.thumbprint());
    assert_eq!(device.status, DeviceStatus::Active);

    // Enrolled and active: it may ask for an attestation nonce at once.
    let r = post_signed(&client, &signer, api::paths::CHALLENGE, json!({})).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}
