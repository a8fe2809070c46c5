//! Every way a request can be wrong, over real HTTP: each is refused with
//! its own RFC 9457 problem type, and the audit log records the denial with
//! the reason.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use broker::api::{self, MAX_BODY_BYTES, ProblemType};
use broker::server::service::NONCE_TTL_SECS;
use broker::server::{Clock as _, ManualClock};
use common::*;
use posture::attestation::{DeviceKey, EatClaims};
use serde_json::json;

/// An enrolled, ready device of alice's.
async fn alice_device(env: &Env) -> TestDevice {
    let device = TestDevice::new(env.client(&env.issuer.token("alice")), "alice");
    assert_eq!(device.enrol().await.status(), 201);
    device
}

fn header_for(kid: &str) -> Vec<u8> {
    format!(r#"{{"alg":"ES256","typ":"eat+jwt","kid":"{kid}"}}"#).into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_nonce() {
    let env = Env::start().await;
    let device = alice_device(&env).await;
    let eat = device
        .key
        .sign_eat(&device.claims(healthy_report()).await)
        .unwrap();
    assert_eq!(device.submit(eat.clone()).await.status(), 200);
    let r = device.submit(eat).await;
    expect_problem(r, ProblemType::NonceReplayed).await;
    env.assert_audited(ProblemType::NonceReplayed, "already used")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_nonce_and_nonce_of_another_user() {
    let env = Env::start().await;
    let device = alice_device(&env).await;
    let claims = EatClaims::new(
        &device.key,
        "bm90LWlzc3VlZC1ieS10aGUtYnJva2Vy",
        AUDIENCE,
        "alice",
        healthy_report(),
        unix_now(),
        60,
    );
    let r = device.submit(device.key.sign_eat(&claims).unwrap()).await;
    expect_problem(r, ProblemType::NonceUnknown).await;
    // Bob's nonce in alice's attestation.
    let bob = TestDevice::new(env.client(&env.issuer.token("bob")), "bob");
    assert_eq!(bob.enrol().await.status(), 201);
    let mut claims = device.claims(healthy_report()).await;
    claims.eat_nonce = bob.nonce().await;
    let r = device.submit(device.key.sign_eat(&claims).unwrap()).await;
    expect_problem(r, ProblemType::NonceUnknown).await;
    env.assert_audited(ProblemType::NonceUnknown, "not issued")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_eat() {
    let env = Env::start().await;
    let device = alice_device(&env).await;
    let mut claims = device.claims(healthy_report()).await;
    claims.iat = unix_now() - 400;
    claims.exp = unix_now() - 200;
    let r = device.submit(device.key.sign_eat(&claims).unwrap()).await;
    expect_problem(r, ProblemType::EatExpired).await;
    env.assert_audited(ProblemType::EatExpired, "expired").await;

    // A lifetime over five minutes is refused even when still current.
    let mut claims = device.claims(healthy_report()).await;
    claims.exp = claims.iat + 3600;
    let eat = device.key.sign_compact(
        &header_for(&device.id()),
        &serde_json::to_vec(&claims).unwrap(),
    );
    let r = device.submit(eat).await;
    expect_problem(r, ProblemType::EatExpired).await;
    env.assert_audited(ProblemType::EatExpired, "lifetime")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eat_for_another_audience() {
    let env = Env::start().await;
    let device = alice_device(&env).await;
    let mut claims = device.claims(healthy_report()).await;
    claims.aud = "https://other-broker.example".into();
    let r = device.submit(device.key.sign_eat(&claims).unwrap()).await;
    expect_problem(r, ProblemType::EatWrongAudience).await;
    env.assert_audited(ProblemType::EatWrongAudience, "other-broker")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signature_by_another_devices_key() {
    let env = Env::start().await;
    let device = alice_device(&env).await;
    let other = TestDevice::new(device.api.clone(), "alice");
    assert_eq!(other.enrol().await.status(), 201);

    // The other device's key signs under this device's kid.
    let claims = device.claims(healthy_report()).await;
    let eat = other.key.sign_compact(
        &header_for(&device.id()),
        &serde_json::to_vec(&claims).unwrap(),
    );
    let r = device.submit(eat).await;
    expect_problem(r, ProblemType::EatSignatureInvalid).await;
    env.assert_audited(ProblemType::EatSignatureInvalid, "does not verify")
        .await;

    // The other device signs honestly but claims to be this device.
    let mut claims = other.claims(healthy_report()).await;
    claims.ueid = device.key.ueid();
    let r = other.submit(other.key.sign_eat(&claims).unwrap()).await;
    expect_problem(r, ProblemType::EatUeidMismatch).await;
    env.assert_audited(ProblemType::EatUeidMismatch, "ueid")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_enrolled_by_another_user() {
    let env = Env::start().await;
    let bob = TestDevice::new(env.client(&env.issuer.token("bob")), "bob");
    assert_eq!(bob.enrol().await.status(), 201);

    // Alice cannot enrol bob's key (even holding it)...
    let alice_api = env.client(&env.issuer.token("alice"));
    let stolen = TestDevice {
        key: bob.key.clone(),
        user: "alice".into(),
        api: alice_api.with_key(&bob.key),
    };
    expect_problem(stolen.enrol().await, ProblemType::DeviceKeyConflict).await;
    env.assert_audited(ProblemType::DeviceKeyConflict, "another user")
        .await;

    // ...nor use it with her token: a proof by a key enrolled for bob does
    // not authenticate alice (no challenge, so no attestation either).
    let r = stolen.api.post(api::paths::CHALLENGE, &json!({})).await;
    expect_problem(r, ProblemType::InvalidDpopProof).await;
    env.assert_audited(ProblemType::InvalidDpopProof, "another user")
        .await;

    // Bob's own device claiming alice as its subject.
    let mut claims = bob.claims(healthy_report()).await;
    claims.sub = "alice".into();
    let r = bob.submit(bob.key.sign_eat(&claims).unwrap()).await;
    expect_problem(r, ProblemType::EatSubjectMismatch).await;

    // And alice cannot get grants or events for bob's device, neither with
    // bob's key...
    let r = stolen
        .request_grant("echo", &tunnel::PrivateKey::generate().public_key())
        .await;
    expect_problem(r, ProblemType::InvalidDpopProof).await;
    // ...nor naming it from her own device.
    let alice = TestDevice::new(alice_api, "alice");
    assert_eq!(alice.enrol().await.status(), 201);
    let r = TestDevice {
        key: bob.key.clone(),
        user: "alice".into(),
        api: alice.api.clone(),
    }
    .request_grant("echo", &tunnel::PrivateKey::generate().public_key())
    .await;
    expect_problem(r, ProblemType::DeviceUserMismatch).await;
    let r = alice
        .api
        .get(&format!("{}?device_id={}", api::paths::EVENTS, bob.id()))
        .await;
    expect_problem(r, ProblemType::DeviceUserMismatch).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_posture_claim() {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
    let env = Env::start().await;
    let device = alice_device(&env).await;
    // A non-compliant report, signed; then the payload is edited to a healthy one.
    let claims = device.claims(firewall_off_report()).await;
    let eat = device.key.sign_eat(&claims).unwrap();
    let parts: Vec<&str> = eat.split('.').collect();
    let mut edited = claims.clone();
    edited.posture = healthy_report();
    let payload = B64URL.encode(serde_json::to_vec(&edited).unwrap());
    let tampered = format!("{}.{payload}.{}", parts[0], parts[2]);
    let r = device.submit(tampered).await;
    expect_problem(r, ProblemType::EatSignatureInvalid).await;
    env.assert_audited(ProblemType::EatSignatureInvalid, "does not verify")
        .await;
    // The nonce was not burnt by the forgery: the honest token still counts.
    let r = device.submit(eat).await;
    assert_eq!(r.status(), 200);
    let verdict: api::Verdict = r.json().await.unwrap();
    assert!(!verdict.compliant);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_eats_and_unknown_devices() {
    let env = Env::start().await;
    let device = alice_device(&env).await;
    let r = device.submit("not-a-jwt".into()).await;
    expect_problem(r, ProblemType::EatMalformed).await;
    let claims = device.claims(healthy_report()).await;
    let body = serde_json::to_vec(&claims).unwrap();
    let wrong_typ = device.key.sign_compact(
        format!(r#"{{"alg":"ES256","typ":"JWT","kid":"{}"}}"#, device.id()).as_bytes(),
        &body,
    );
    expect_problem(device.submit(wrong_typ).await, ProblemType::EatMalformed).await;
    env.assert_audited(ProblemType::EatMalformed, "typ").await;
    let stranger = DeviceKey::generate();
    let eat = stranger.sign_compact(&header_for(&stranger.kid()), &body);
    expect_problem(device.submit(eat).await, ProblemType::DeviceUnknown).await;
    env.assert_audited(ProblemType::DeviceUnknown, "no device")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grant_refusals() {
    let env = Env::start().await;
    let device = alice_device(&env).await;
    let wg = tunnel::PrivateKey::generate().public_key();

    // No verdict yet.
    let r = device.request_grant("echo", &wg).await;
    expect_problem(r, ProblemType::VerdictMissing).await;
    env.assert_audited(ProblemType::VerdictMissing, "attestation first")
        .await;

    // Non-compliant verdict: the problem lists the failed checks.
    device.attest(firewall_off_report()).await;
    let r = device.request_grant("echo", &wg).await;
    let p = expect_problem(r, ProblemType::DeviceNotCompliant).await;
    assert!(p.detail.contains("firewall"), "{p:?}");
    assert_eq!(p.violations.len(), 1);
    assert_eq!(p.violations[0].check, "firewall");
    assert!(!p.violations[0].remediation.is_empty());
    env.assert_audited(ProblemType::DeviceNotCompliant, "firewall")
        .await;

    // Unknown app, bad WireGuard key, key reuse.
    device.attest(healthy_report()).await;
    let r = device.request_grant("payroll", &wg).await;
    expect_problem(r, ProblemType::UnknownApp).await;
    env.assert_audited(ProblemType::UnknownApp, "payroll").await;
    let r = device
        .api
        .post(
            api::paths::GRANTS,
            &json!({"app": "echo", "device_id": device.id(), "wireguard_public_key": "AAAA"}),
        )
        .await;
    expect_problem(r, ProblemType::InvalidWireguardKey).await;
    assert_eq!(device.request_grant("echo", &wg).await.status(), 201);
    let r = device.request_grant("echo", &wg).await;
    expect_problem(r, ProblemType::WireguardKeyInUse).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_malformed_and_mistyped_bodies() {
    let env = Env::start().await;
    let device = alice_device(&env).await;
    let token = env.issuer.token("alice");

    let huge = json!({"eat": "a".repeat(MAX_BODY_BYTES + 1)});
    let r = device.api.post(api::paths::ATTESTATIONS, &huge).await;
    expect_problem(r, ProblemType::BodyTooLarge).await;
    env.assert_audited(ProblemType::BodyTooLarge, "exceeds")
        .await;

    // Chunked (no Content-Length): the limit still holds.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = vec![
        Ok(b"{\"eat\":\"".to_vec()),
        Ok(vec![b'a'; MAX_BODY_BYTES]),
        Ok(b"\"}".to_vec()),
    ];
    let body = reqwest::Body::wrap_stream(tokio_stream::iter(chunks));
    let r = env
        .http
        .post(env.url(api::paths::ATTESTATIONS))
        .header("authorization", format!("DPoP {token}"))
        .header(
            "dpop",
            device
                .api
                .proof("POST", api::paths::ATTESTATIONS, None)
                .unwrap(),
        )
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    expect_problem(r, ProblemType::BodyTooLarge).await;

    let r = env
        .http
        .post(env.url(api::paths::ATTESTATIONS))
        .header("authorization", format!("DPoP {token}"))
        .header(
            "dpop",
            device
                .api
                .proof("POST", api::paths::ATTESTATIONS, None)
                .unwrap(),
        )
        .header("content-type", "application/json")
        .body("{\"eat\": ")
        .send()
        .await
        .unwrap();
    expect_problem(r, ProblemType::MalformedRequest).await;
    env.assert_audited(ProblemType::MalformedRequest, "/v1/attestations")
        .await;

    let r = env
        .http
        .post(env.url(api::paths::GRANTS))
        .header("authorization", format!("DPoP {token}"))
        .header(
            "dpop",
            device.api.proof("POST", api::paths::GRANTS, None).unwrap(),
        )
        .header("content-type", "application/json")
        .body(r#"{"app": "echo"}"#)
        .send()
        .await
        .unwrap();
    let p = expect_problem(r, ProblemType::MalformedRequest).await;
    assert!(p.detail.contains("missing field"), "{p:?}");

    let r = env
        .http
        .post(env.url(api::paths::ATTESTATIONS))
        .header("authorization", format!("DPoP {token}"))
        .header(
            "dpop",
            device
                .api
                .proof("POST", api::paths::ATTESTATIONS, None)
                .unwrap(),
        )
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    expect_problem(r, ProblemType::UnsupportedMediaType).await;

    let r = env.http.get(env.url("/v2/nothing")).send().await.unwrap();
    expect_problem(r, ProblemType::NotFound).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_token_refusals() {
    let env = Env::start().await;
    let path = api::paths::CHALLENGE;
    let body = json!({});

    let r = env
        .http
        .post(env.url(path))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["www-authenticate"],
        r#"Bearer error="invalid_token""#
    );
    expect_problem(r, ProblemType::TokenMissing).await;

    let forged = {
        let other = DeviceKey::generate();
        let header = json!({"alg": "ES256", "typ": "at+jwt", "kid": env.issuer.kid});
        let claims = json!({"iss": env.issuer.url, "sub": "alice", "aud": AUDIENCE,
            "iat": unix_now(), "exp": unix_now() + 600});
        other.sign_compact(header.to_string().as_bytes(), claims.to_string().as_bytes())
    };
    expect_problem(
        env.client(&forged).post(path, &body).await,
        ProblemType::TokenInvalid,
    )
    .await;
    env.assert_audited(ProblemType::TokenInvalid, "signature")
        .await;

    let wrong_aud = env
        .issuer
        .token_with("alice", json!({"aud": "some-other-api"}));
    expect_problem(
        env.client(&wrong_aud).post(path, &body).await,
        ProblemType::TokenWrongAudience,
    )
    .await;
    env.assert_audited(ProblemType::TokenWrongAudience, "some-other-api")
        .await;

    let wrong_iss = env
        .issuer
        .token_with("alice", json!({"iss": "https://evil.example"}));
    expect_problem(
        env.client(&wrong_iss).post(path, &body).await,
        ProblemType::TokenWrongAudience,
    )
    .await;

    let expired = env.issuer.token_with(
        "alice",
        json!({"iat": unix_now() - 7200, "exp": unix_now() - 3600}),
    );
    expect_problem(
        env.client(&expired).post(path, &body).await,
        ProblemType::TokenExpired,
    )
    .await;
    env.assert_audited(ProblemType::TokenExpired, "expired")
        .await;

    let none_alg = {
        use base64::Engine as _;
        let b = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let claims = json!({"iss": env.issuer.url, "sub": "alice", "aud": AUDIENCE, "exp": unix_now() + 600});
        format!(
            "{}.{}.",
            b.encode(br#"{"alg":"none"}"#),
            b.encode(claims.to_string())
        )
    };
    expect_problem(
        env.client(&none_alg).post(path, &body).await,
        ProblemType::TokenInvalid,
    )
    .await;

    // Admin calls need the admin token, not a user's.
    let user = env.client(&env.issuer.token("alice"));
    expect_problem(
        user.get(api::paths::ADMIN_AUDIT).await,
        ProblemType::AdminUnauthorized,
    )
    .await;
    let r = env
        .admin()
        .post(
            api::paths::ADMIN_REVOCATIONS,
            &json!({"reason": "nothing named"}),
        )
        .await;
    expect_problem(r, ProblemType::InvalidRevocation).await;
}

/// A challenge taken now.
async fn take_challenge(device: &TestDevice) -> api::Challenge {
    let r = device.api.post(api::paths::CHALLENGE, &json!({})).await;
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// A healthy attestation answering `nonce`, freshly signed at `now` on the
/// broker's clock (so only the nonce can be stale).
async fn attestation_at(device: &TestDevice, nonce: &str, now: i64) -> String {
    let mut claims = device.claims(healthy_report()).await;
    claims.eat_nonce = nonce.to_owned();
    claims.iat = now;
    claims.exp = now + 120;
    device.key.sign_eat(&claims).unwrap()
}

/// The two clocks the broker keeps itself: a nonce lives 60 s, a verdict
/// `verdict_ttl_seconds` (30 here, the smallest allowed). The broker runs on
/// a [`ManualClock`] the test moves, so each expiry is checked exactly at
/// its boundary (still good one second before, refused at it) over real
/// HTTP, without waiting for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_nonce_and_expired_verdict() {
    let clock = Arc::new(ManualClock::starting_now());
    let issuer = TestIssuer::start().await;
    let echo = tcp_echo().await;
    let dir = tempfile::tempdir().unwrap();
    let text = config(&issuer.url, &db_path(dir.path()), echo).verdict_ttl(30);
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

    // Two nonces taken now: one is used in its last second, the other just
    // after it expired.
    let challenge = take_challenge(&device).await;
    let spare = take_challenge(&device).await;
    assert_eq!(
        challenge.expires_at.unix_timestamp(),
        clock.now() + NONCE_TTL_SECS
    );
    assert_eq!(spare.expires_at, challenge.expires_at);

    // A verdict that opens a grant while fresh...
    let verdict = device.attest(healthy_report()).await;
    assert!(verdict.compliant);
    let valid_until = verdict.valid_until.unix_timestamp();
    assert_eq!(valid_until, clock.now() + 30);
    let fresh_wg = tunnel::PrivateKey::generate().public_key();
    let r = device.request_grant("echo", &fresh_wg).await;
    assert_eq!(r.status(), 201);
    let grant: api::Grant = r.json().await.unwrap();
    assert!(
        grant.expires_at <= verdict.valid_until,
        "grant {} outlives verdict {}",
        grant.expires_at,
        verdict.valid_until
    );

    // ...still does in its last second...
    clock.set(valid_until - 1);
    let last_wg = tunnel::PrivateKey::generate().public_key();
    let r = device.request_grant("echo", &last_wg).await;
    assert_eq!(r.status(), 201);
    let last: api::Grant = r.json().await.unwrap();
    assert_eq!(last.expires_at, verdict.valid_until);

    // ...and none once it has expired.
    clock.set(valid_until);
    let late_wg = tunnel::PrivateKey::generate().public_key();
    let r = device.request_grant("echo", &late_wg).await;
    let p = expect_problem(r, ProblemType::VerdictExpired).await;
    assert!(p.detail.contains("expired"), "{p:?}");
    let entry = env
        .assert_audited(ProblemType::VerdictExpired, "expired")
        .await;
    assert_eq!(
        entry.at, verdict.valid_until,
        "audited on the broker's clock"
    );

    // The grants it opened end with it: the sweep (a real 1 s tick) finds
    // them due on the broker's clock, closes them and removes their peers,
    // though the gateway's own timers still give them ~30 real seconds.
    let swept = std::time::Instant::now();
    while !env.broker.gateway_status().unwrap().peers.is_empty() {
        assert!(
            swept.elapsed() < std::time::Duration::from_secs(5),
            "peers outlive their grants: {:?}",
            env.broker.gateway_status()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // Each grant's audit row follows its peer's removal (enforcement
    // first; on PostgreSQL the event relay sits between the two), so the
    // last row may land just after the gateway is empty.
    for id in [&grant.id, &last.id] {
        let waited = std::time::Instant::now();
        loop {
            let log = env.audit().await;
            if log
                .iter()
                .any(|e| e.action == "grant-expire" && e.reason.contains(id.as_str()))
            {
                break;
            }
            assert!(
                waited.elapsed() < std::time::Duration::from_secs(5),
                "grant {id} not expired: {log:#?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    // The nonces, in otherwise valid attestations signed on the broker's
    // clock: accepted in their last second, refused once expired.
    let expires_at = challenge.expires_at.unix_timestamp();
    clock.set(expires_at - 1);
    let eat = attestation_at(&device, &spare.nonce, clock.now()).await;
    assert_eq!(device.submit(eat).await.status(), 200);
    clock.set(expires_at);
    let eat = attestation_at(&device, &challenge.nonce, clock.now()).await;
    expect_problem(device.submit(eat).await, ProblemType::NonceExpired).await;
    let entry = env
        .assert_audited(ProblemType::NonceExpired, "expired")
        .await;
    assert_eq!(
        entry.at, challenge.expires_at,
        "audited on the broker's clock"
    );
}
