//! The broker against the real OpenID provider in `tests/idp/`
//! (`oidc-provider`, RS256 JWT access tokens for `sallyport-broker`): a token
//! obtained through the device authorization grant (password + TOTP) is
//! accepted by discovery + JWKS validation, and the whole enrol → attest →
//! grant path works with it. A token signed by a key the provider does not
//! publish is refused. Skips (with a message) when node or the npm packages
//! are missing; CI installs both.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use support::idp;

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use broker::api::{self, ProblemType};
use common::*;
use serde_json::Value;

/// Runs the device grant: the test plays the user in a browser while it
/// polls the token endpoint like a headless agent would.
async fn device_grant_access_token(issuer: &str) -> String {
    let http = reqwest::Client::new();
    let discovery: Value = http
        .get(format!("{issuer}/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let device_ep = discovery["device_authorization_endpoint"].as_str().unwrap();
    let token_ep = discovery["token_endpoint"].as_str().unwrap().to_owned();
    let auth: Value = http
        .post(device_ep)
        .form(&[("client_id", idp::CLIENT_ID), ("scope", "openid")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let complete = auth["verification_uri_complete"]
        .as_str()
        .unwrap()
        .to_owned();
    let device_code = auth["device_code"].as_str().unwrap().to_owned();
    let user = tokio::spawn(async move { idp::complete_device_login(&complete).await });
    for _ in 0..60 {
        let r: Value = http
            .post(&token_ep)
            .form(&[
                ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                ("device_code", &device_code),
                ("client_id", idp::CLIENT_ID),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if let Some(token) = r["access_token"].as_str() {
            user.await.unwrap();
            return token.to_owned();
        }
        let err = r["error"].as_str().unwrap_or_default();
        assert!(
            matches!(err, "authorization_pending" | "slow_down"),
            "token endpoint: {r}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("no access token after 30 s");
}

fn claim(token: &str, name: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(&B64URL.decode(payload).unwrap()).unwrap();
    claims[name].clone()
}

fn sign_rs256_with_attacker_key(genuine: &str) -> String {
    let pem = String::from_utf8(idp::key_pem("attacker-rs256.pem")).unwrap();
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap();
    let key = ring::signature::RsaKeyPair::from_pkcs8(&der).unwrap();
    let mut parts = genuine.split('.');
    let signing_input = format!("{}.{}", parts.next().unwrap(), parts.next().unwrap());
    let mut sig = vec![0u8; key.public().modulus_len()];
    key.sign(
        &ring::signature::RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        signing_input.as_bytes(),
        &mut sig,
    )
    .unwrap();
    format!("{signing_input}.{}", B64URL.encode(sig))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_token_from_the_real_oidc_provider_enrols_attests_and_gets_a_grant() {
    let Some(provider) = idp::Idp::start(&idp::Options::default()) else {
        return;
    };
    let token = device_grant_access_token(&provider.issuer).await;
    assert_eq!(claim(&token, "aud"), idp::BROKER_AUDIENCE);
    let sub = claim(&token, "sub").as_str().unwrap().to_owned();

    let echo = tcp_echo().await;
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(&config(&provider.issuer, &db_path(dir.path()), echo)).await;
    let api_client = Client {
        http: reqwest::Client::new(),
        base: broker.base_url(),
        token: token.clone(),
        key: None,
        clock: None,
    };
    let device = TestDevice::new(api_client.clone(), &sub);
    assert_eq!(device.enrol().await.status(), 201);
    assert!(device.attest(healthy_report()).await.compliant);
    let wg = tunnel::PrivateKey::generate();
    // The agent's grant request, captured on the way (token and proof).
    let body = serde_json::json!({"app": "echo", "device_id": device.id(),
        "wireguard_public_key": wg.public_key().to_string()});
    let proof = device
        .api
        .proof(
            "POST",
            api::paths::GRANTS,
            Some(&wg.public_key().to_string()),
        )
        .unwrap();
    let send = |proof: String| {
        device.api.send(
            reqwest::Method::POST,
            api::paths::GRANTS,
            Some(&body),
            Auth::Dpop(Some(proof)),
        )
    };
    let r = send(proof.clone()).await;
    assert_eq!(r.status(), 201);
    let grant: api::Grant = r.json().await.unwrap();
    // Replayed as captured: refused before anything else is looked at.
    expect_problem(send(proof).await, ProblemType::DpopReplay).await;
    // The IdP's genuine token from another machine: its own key, or none.
    let thief = api_client.with_key(&posture::attestation::DeviceKey::generate());
    let r = thief.post(api::paths::GRANTS, &body).await;
    expect_problem(r, ProblemType::InvalidDpopProof).await;
    let r = api_client
        .send(
            reqwest::Method::POST,
            api::paths::CHALLENGE,
            Some(&serde_json::json!({})),
            Auth::Bearer,
        )
        .await;
    expect_problem(r, ProblemType::InvalidDpopProof).await;
    // The grant ends no later than the session (the access token).
    let exp = claim(&token, "exp").as_i64().unwrap();
    assert!(grant.expires_at.unix_timestamp() <= exp);

    // The same claims signed with the attacker's RS256 key (not in the
    // provider's JWKS) under the provider's kid are refused as invalid.
    let forged = sign_rs256_with_attacker_key(&token);
    let r = Client {
        token: forged,
        ..api_client
    }
    .post(api::paths::CHALLENGE, &serde_json::json!({}))
    .await;
    expect_problem(r, ProblemType::TokenInvalid).await;
    broker.shutdown().await;
}
