//! DPoP over real HTTP (broker/API.md, "Authentication"): an access token
//! opens nothing without a fresh proof by the device key it was enrolled
//! with, for this very call. Each refusal has its problem type, the DPoP
//! challenge header, and an audit entry.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use broker::api::{self, ProblemType};
use broker::server::{Clock as _, ManualClock};
use common::*;
use posture::attestation::DeviceKey;
use posture::dpop::{DpopClaims, access_token_hash, new_jti, sign_proof};
use reqwest::Method;
use serde_json::json;

const CHALLENGE: &str = api::paths::CHALLENGE;

/// An enrolled device of alice's.
async fn alice_device(env: &Env) -> TestDevice {
    let device = TestDevice::new(env.client(&env.issuer.token("alice")), "alice");
    assert_eq!(device.enrol().await.status(), 201);
    device
}

/// Expects the DPoP refusal `kind`, with the RFC 9449 challenge.
async fn expect_dpop(r: reqwest::Response, kind: ProblemType) -> api::Problem {
    assert_eq!(
        r.headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_owned()),
        Some(r#"DPoP error="invalid_dpop_proof", algs="ES256""#.to_owned()),
    );
    expect_problem(r, kind).await
}

/// Claims of a proof for `method` on `path` of `client`, correct in every
/// way; tests then break one.
fn claims(client: &Client, method: &str, path: &str) -> DpopClaims {
    DpopClaims {
        jti: new_jti(),
        htm: method.into(),
        htu: client.url(path),
        iat: client.now(),
        ath: access_token_hash(&client.token),
        wg_pub: None,
    }
}

async fn post_with(
    client: &Client,
    path: &str,
    body: serde_json::Value,
    proof: String,
) -> reqwest::Response {
    client
        .send(Method::POST, path, Some(&body), Auth::Dpop(Some(proof)))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stolen_token_is_useless_with_any_other_key() {
    let env = Env::start().await;
    let device = alice_device(&env).await;
    let token = device.api.token.clone();
    // The owner's call works.
    assert_eq!(device.api.post(CHALLENGE, &json!({})).await.status(), 200);

    // The thief has the token, not the key: a proof by a key of its own
    // (not enrolled) is refused...
    let thief = env.client(&token).with_key(&DeviceKey::generate());
    let p = expect_dpop(
        thief.post(CHALLENGE, &json!({})).await,
        ProblemType::InvalidDpopProof,
    )
    .await;
    assert!(p.detail.contains("not an enrolled device"), "{p:?}");
    env.assert_audited(ProblemType::InvalidDpopProof, "not an enrolled device")
        .await;

    // ...as is one by a key enrolled, but for another user (bob)...
    let bob = TestDevice::new(env.client(&env.issuer.token("bob")), "bob");
    assert_eq!(bob.enrol().await.status(), 201);
    let with_bobs_key = env.client(&token).with_key(&bob.key);
    expect_dpop(
        with_bobs_key.post(CHALLENGE, &json!({})).await,
        ProblemType::InvalidDpopProof,
    )
    .await;
    env.assert_audited(ProblemType::InvalidDpopProof, "another user")
        .await;

    // ...and so is the proof of the owner's key signed by another key
    // under the owner's jwk.
    let mut forged = claims(&device.api, "POST", CHALLENGE);
    forged.jti = new_jti();
    let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": device.key.public_jwk()});
    let proof = posture::attestation::sign_raw(
        header.to_string().as_bytes(),
        &serde_json::to_vec(&forged).unwrap(),
        &DeviceKey::generate(),
    )
    .unwrap();
    let p = expect_dpop(
        post_with(&thief, CHALLENGE, json!({}), proof).await,
        ProblemType::InvalidDpopProof,
    )
    .await;
    assert!(p.detail.contains("signature"), "{p:?}");

    // Without any proof: Bearer, or DPoP with no proof header, or two.
    let bare = env.client(&token);
    let p = expect_dpop(
        bare.send(Method::POST, CHALLENGE, Some(&json!({})), Auth::Bearer)
            .await,
        ProblemType::InvalidDpopProof,
    )
    .await;
    assert!(p.detail.contains("DPoP-bound"), "{p:?}");
    expect_dpop(
        bare.send(Method::POST, CHALLENGE, Some(&json!({})), Auth::Dpop(None))
            .await,
        ProblemType::InvalidDpopProof,
    )
    .await;
    env.assert_audited(ProblemType::InvalidDpopProof, "needs a DPoP proof")
        .await;
    let two = env
        .http
        .post(env.url(CHALLENGE))
        .header("authorization", format!("DPoP {token}"))
        .header("dpop", device.api.proof("POST", CHALLENGE, None).unwrap())
        .header("dpop", device.api.proof("POST", CHALLENGE, None).unwrap())
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    expect_dpop(two, ProblemType::InvalidDpopProof).await;

    // A token problem is still reported as such on a DPoP call.
    let expired = env.issuer.token_with(
        "alice",
        json!({"iat": unix_now() - 7200, "exp": unix_now() - 3600}),
    );
    let r = env
        .client(&expired)
        .with_key(&device.key)
        .post(CHALLENGE, &json!({}))
        .await;
    expect_problem(r, ProblemType::TokenExpired).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_captured_proof_cannot_be_replayed() {
    let env = Env::start().await;
    let device = alice_device(&env).await;
    let proof = device.api.proof("POST", CHALLENGE, None).unwrap();
    assert_eq!(
        post_with(&device.api, CHALLENGE, json!({}), proof.clone())
            .await
            .status(),
        200
    );
    let p = expect_dpop(
        post_with(&device.api, CHALLENGE, json!({}), proof.clone()).await,
        ProblemType::DpopReplay,
    )
    .await;
    assert!(p.detail.contains("already used"), "{p:?}");
    env.assert_audited(ProblemType::DpopReplay, "already used")
        .await;
    // Nor on another call: the proof names the one it was made for.
    let p = expect_dpop(
        post_with(
            &device.api,
            api::paths::ATTESTATIONS,
            json!({"eat": "x"}),
            proof,
        )
        .await,
        ProblemType::InvalidDpopProof,
    )
    .await;
    assert!(p.detail.contains("/v1/attestations/challenge"), "{p:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_proof_binds_its_wireguard_key() {
    let env = Env::start().await;
    let device = alice_device(&env).await;
    device.attest(healthy_report()).await;
    let signed_for = tunnel::PrivateKey::generate().public_key().to_string();
    let other = tunnel::PrivateKey::generate().public_key().to_string();
    let body =
        |wg: &str| json!({"app": "echo", "device_id": device.id(), "wireguard_public_key": wg});

    // The proof names one WireGuard key, the body another.
    let proof = device
        .api
        .proof("POST", api::paths::GRANTS, Some(&signed_for))
        .unwrap();
    let p = expect_dpop(
        post_with(&device.api, api::paths::GRANTS, body(&other), proof).await,
        ProblemType::InvalidDpopProof,
    )
    .await;
    assert!(p.detail.contains("wg_pub"), "{p:?}");
    env.assert_audited(ProblemType::InvalidDpopProof, "WireGuard key")
        .await;
    // A proof naming none.
    let proof = device.api.proof("POST", api::paths::GRANTS, None).unwrap();
    expect_dpop(
        post_with(&device.api, api::paths::GRANTS, body(&other), proof).await,
        ProblemType::InvalidDpopProof,
    )
    .await;
    assert!(env.broker.gateway_status().unwrap().peers.is_empty());
    // The honest request.
    let proof = device
        .api
        .proof("POST", api::paths::GRANTS, Some(&signed_for))
        .unwrap();
    let r = post_with(&device.api, api::paths::GRANTS, body(&signed_for), proof).await;
    assert_eq!(r.status(), 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proof_must_match_method_url_time_and_token() {
    let clock = Arc::new(ManualClock::starting_now());
    let issuer = TestIssuer::start().await;
    let echo = tcp_echo().await;
    let dir = tempfile::tempdir().unwrap();
    let text = config(&issuer.url, &db_path(dir.path()), echo);
    let broker = start_broker_with_clock(&text, clock.clone()).await;
    let env = Env {
        issuer,
        echo,
        dir,
        broker,
        http: reqwest::Client::new(),
        clock: None,
    };
    let mut device = alice_device(&env).await;
    device.api.clock = Some(clock.clone());
    let api = &device.api;
    let refused = |edit: fn(&mut DpopClaims), what: &'static str| {
        let mut c = claims(api, "POST", CHALLENGE);
        edit(&mut c);
        let proof = sign_proof(&device.key, &c).unwrap();
        async move {
            let p = expect_dpop(
                post_with(api, CHALLENGE, json!({}), proof).await,
                ProblemType::InvalidDpopProof,
            )
            .await;
            assert!(p.detail.contains(what), "{what}: {p:?}");
        }
    };
    refused(|c| c.htm = "GET".into(), "is for GET").await;
    refused(|c| c.htm = "post".into(), "is for post").await;
    refused(
        |c| c.htu = c.htu.replace("challenge", "CHALLENGE"),
        "is for",
    )
    .await;
    refused(
        |c| c.htu = c.htu.replace("127.0.0.1", "localhost"),
        "is for",
    )
    .await;
    refused(|c| c.htu = format!("{}?x=1", c.htu), "is for").await;
    refused(|c| c.htu = c.htu.replace("http:", "https:"), "is for").await;
    refused(
        |c| c.ath = access_token_hash("another access token"),
        "another access token",
    )
    .await;
    refused(|c| c.iat -= 61, "outside").await;
    refused(|c| c.iat += 61, "outside").await;
    env.assert_audited(ProblemType::InvalidDpopProof, "outside ±60 s")
        .await;

    // The window is the broker's clock: moved 61 s ahead, a proof made on
    // the device's (real) clock is stale; one made on the broker's passes.
    let real_now = unix_now();
    clock.set(real_now + 61);
    let mut c = claims(api, "POST", CHALLENGE);
    c.iat = real_now;
    let stale = sign_proof(&device.key, &c).unwrap();
    expect_dpop(
        post_with(api, CHALLENGE, json!({}), stale).await,
        ProblemType::InvalidDpopProof,
    )
    .await;
    assert_eq!(api.post(CHALLENGE, &json!({})).await.status(), 200);

    // Another token of the same user with this token's proof.
    let second = env.issuer.token_with("alice", json!({"iat": clock.now()}));
    let proof = api.proof("POST", CHALLENGE, None).unwrap();
    let p = expect_dpop(
        post_with(&env.client(&second), CHALLENGE, json!({}), proof).await,
        ProblemType::InvalidDpopProof,
    )
    .await;
    assert!(p.detail.contains("another access token"), "{p:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrolment_proves_possession_and_a_device_speaks_only_for_itself() {
    let env = Env::start().await;
    let token = env.issuer.token("alice");

    // Enrolling a key with a proof by another key: refused, nothing enrolled.
    let victim = DeviceKey::generate();
    let other = env.client(&token).with_key(&DeviceKey::generate());
    let r = other
        .post(
            api::paths::DEVICES,
            &api::EnrolRequest {
                public_jwk: victim.public_jwk().clone(),
                name: None,
                key_attestation: None,
                activation_secret: None,
            },
        )
        .await;
    let p = expect_dpop(r, ProblemType::InvalidDpopProof).await;
    assert!(p.detail.contains("key being enrolled"), "{p:?}");
    env.assert_audited(ProblemType::InvalidDpopProof, "key being enrolled")
        .await;
    let r = env
        .client(&token)
        .send(
            Method::POST,
            api::paths::DEVICES,
            Some(&json!({"public_jwk": victim.public_jwk()})),
            Auth::Bearer,
        )
        .await;
    expect_dpop(r, ProblemType::InvalidDpopProof).await;

    // Two devices of alice's: one cannot attest, listen or close for the other.
    let a = alice_device(&env).await;
    let b = alice_device(&env).await;
    b.attest(healthy_report()).await;
    let eat_of_b = b.key.sign_eat(&b.claims(healthy_report()).await).unwrap();
    let p = expect_dpop(
        a.submit(eat_of_b.clone()).await,
        ProblemType::InvalidDpopProof,
    )
    .await;
    assert!(p.detail.contains("another device"), "{p:?}");
    // The nonce was not burnt by the refusal.
    assert_eq!(b.submit(eat_of_b).await.status(), 200);
    let r = a
        .api
        .get(&format!("{}?device_id={}", api::paths::EVENTS, b.id()))
        .await;
    expect_dpop(r, ProblemType::InvalidDpopProof).await;
    let r = TestDevice {
        key: b.key.clone(),
        user: "alice".into(),
        api: a.api.clone(),
    }
    .request_grant("echo", &tunnel::PrivateKey::generate().public_key())
    .await;
    expect_dpop(r, ProblemType::InvalidDpopProof).await;
    let grant: api::Grant = b
        .request_grant("echo", &tunnel::PrivateKey::generate().public_key())
        .await
        .json()
        .await
        .unwrap();
    let path = format!("{}/{}", api::paths::GRANTS, grant.id);
    expect_problem(a.api.delete(&path).await, ProblemType::GrantNotFound).await;
    assert_eq!(b.api.delete(&path).await.status(), 204);
}
