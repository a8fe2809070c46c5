//! What the broker enforces on every caller itself, with tokens from the
//! test-controlled issuer (`common::TestIssuer`) over real HTTP: MFA and
//! sign-in age (RFC 9470 challenge), session revocation by `auth_time` and
//! until cleared, the JWKS TTL, discovery without redirects or plain-http
//! keys, event streams that end with their token or on revocation, and
//! low-order WireGuard keys. The same rules against the real OpenID
//! provider are in `real_idp_auth.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::response::{IntoResponse, Redirect};
use axum::routing::get;
use broker::api::{self, ProblemType};
use broker::server::{Clock as _, ManualClock};
use common::*;
use posture::attestation::DeviceKey;
use serde_json::json;
use support::broker::BrokerConfig;

/// A broker trusting a fresh TestIssuer, configured by `change`, on `clock`
/// (the system clock when `None`).
async fn env_with(
    change: impl FnOnce(BrokerConfig) -> BrokerConfig,
    clock: Option<Arc<ManualClock>>,
) -> Env {
    let issuer = TestIssuer::start().await;
    let echo = tcp_echo().await;
    let dir = tempfile::tempdir().unwrap();
    let config = change(config(&issuer.url, &db_path(dir.path()), echo));
    let broker = match &clock {
        Some(clock) => start_broker_with_clock(&config, clock.clone()).await,
        None => start_broker(&config).await,
    };
    Env {
        issuer,
        echo,
        dir,
        broker,
        http: reqwest::Client::new(),
        clock,
    }
}

/// The device every call here is made from (user calls are DPoP-bound).
/// One key per process is enough: each test has its own broker and store.
fn device_key() -> &'static DeviceKey {
    static KEY: std::sync::OnceLock<DeviceKey> = std::sync::OnceLock::new();
    KEY.get_or_init(DeviceKey::generate)
}

/// Any authenticated call, as the agent makes it: the device key enrolled
/// (again; enrolment is idempotent for its user), then a nonce asked for.
/// A refusal of the token is the enrolment's reply.
async fn call(env: &Env, token: &str) -> reqwest::Response {
    let client = env.client(token).with_key(device_key());
    let enrolled = client
        .post(
            api::paths::DEVICES,
            &api::EnrolRequest {
                public_jwk: device_key().public_jwk().clone(),
                name: Some("test-host".into()),
                key_attestation: None,
                activation_secret: None,
            },
        )
        .await;
    if !enrolled.status().is_success() {
        return enrolled;
    }
    client.post(api::paths::CHALLENGE, &json!({})).await
}

#[tokio::test]
async fn a_sign_in_without_a_second_factor_or_too_old_gets_an_rfc9470_challenge() {
    let env = env_with(
        |c| {
            c.with(|c| {
                c.oidc.required_acr = vec![ACR_MFA.to_owned()];
                c.oidc.max_auth_age_seconds = Some(3600);
            })
        },
        None,
    )
    .await;
    let now = unix_now();
    // MFA by amr (default token) and by acr alone both pass.
    assert_eq!(call(&env, &env.issuer.token("alice")).await.status(), 200);
    let acr_only = env.issuer.token_with("alice", json!({"amr": null}));
    assert_eq!(call(&env, &acr_only).await.status(), 200);

    // Password only: 401, problem type, RFC 9470 challenge, audited.
    let pwd = env.issuer.token_with(
        "alice",
        json!({"amr": ["pwd"], "acr": "urn:sallyport:acr:pwd"}),
    );
    let r = call(&env, &pwd).await;
    assert_eq!(r.status(), 401);
    let challenge = bearer_challenge(&r);
    let p = expect_problem(r, ProblemType::InsufficientUserAuthentication).await;
    assert!(p.detail.contains("multi-factor"), "{}", p.detail);
    assert_eq!(challenge["error"], "insufficient_user_authentication");
    assert_eq!(challenge["acr_values"], ACR_MFA);
    assert_eq!(challenge["max_age"], "3600");
    assert!(challenge["error_description"].contains("multi-factor"));
    let entry = env
        .assert_audited(ProblemType::InsufficientUserAuthentication, "multi-factor")
        .await;
    assert_eq!(entry.user.as_deref(), Some("alice"));

    // MFA, but signed in two hours ago: the challenge asks for max_age.
    let old = env
        .issuer
        .token_with("alice", json!({"auth_time": now - 7200}));
    let r = call(&env, &old).await;
    let challenge = bearer_challenge(&r);
    let p = expect_problem(r, ProblemType::InsufficientUserAuthentication).await;
    assert!(p.detail.contains("3600"), "{}", p.detail);
    assert_eq!(challenge["max_age"], "3600");

    // No auth_time while a limit is set: refused, not assumed recent.
    let no_time = env.issuer.token_with("alice", json!({"auth_time": null}));
    let p = expect_problem(
        call(&env, &no_time).await,
        ProblemType::InsufficientUserAuthentication,
    )
    .await;
    assert!(p.detail.contains("auth_time"), "{}", p.detail);
    env.broker.shutdown().await;
}

#[tokio::test]
async fn a_session_revocation_follows_auth_time_and_until_cleared_needs_an_admin() {
    let clock = Arc::new(ManualClock::starting_now());
    let env = env_with(|c| c, Some(clock.clone())).await;
    let t = unix_now();
    let signed_in_at = |at: i64| env.issuer.token_with("alice", json!({"auth_time": at}));
    let before = signed_in_at(t - 10);
    assert_eq!(call(&env, &before).await.status(), 200);

    let revoke = |until_cleared: bool| api::RevocationRequest {
        user: Some("alice".into()),
        reason: "account compromised".into(),
        until_cleared,
        ..Default::default()
    };
    let r = env
        .admin()
        .post(api::paths::ADMIN_REVOCATIONS, &revoke(false))
        .await;
    assert_eq!(r.status(), 200);
    let revoked_at = clock.now();
    // A refresh: same sign-in, new iat. Still refused.
    let refreshed = env
        .issuer
        .token_with("alice", json!({"auth_time": t - 10, "iat": revoked_at + 5}));
    expect_problem(call(&env, &refreshed).await, ProblemType::SessionRevoked).await;
    // No auth_time: cannot show it is a later sign-in.
    let unknown = env.issuer.token_with("alice", json!({"auth_time": null}));
    expect_problem(call(&env, &unknown).await, ProblemType::SessionRevoked).await;
    // A sign-in in the revocation's second is not after it.
    expect_problem(
        call(&env, &signed_in_at(revoked_at)).await,
        ProblemType::SessionRevoked,
    )
    .await;
    // A new sign-in lifts it.
    assert_eq!(
        call(&env, &signed_in_at(revoked_at + 1)).await.status(),
        200
    );

    // until_cleared is for users only.
    let bad = api::RevocationRequest {
        device_id: Some("d".into()),
        until_cleared: true,
        reason: "x".into(),
        ..Default::default()
    };
    expect_problem(
        env.admin().post(api::paths::ADMIN_REVOCATIONS, &bad).await,
        ProblemType::InvalidRevocation,
    )
    .await;
    let clear = api::RevocationClearRequest {
        user: Some("alice".into()),
        reason: "cleared by the test".into(),
        ..Default::default()
    };

    // Until cleared: even a new sign-in is refused.
    let blocked_at = clock.advance(Duration::from_secs(2));
    let r = env
        .admin()
        .post(api::paths::ADMIN_REVOCATIONS, &revoke(true))
        .await;
    assert_eq!(r.status(), 200);
    let during = signed_in_at(blocked_at + 3);
    let p = expect_problem(call(&env, &during).await, ProblemType::SessionRevoked).await;
    assert!(p.detail.contains("until"), "{}", p.detail);
    // A later plain revocation does not lift the block.
    clock.advance(Duration::from_secs(5));
    let r = env
        .admin()
        .post(api::paths::ADMIN_REVOCATIONS, &revoke(false))
        .await;
    assert_eq!(r.status(), 200);
    expect_problem(
        call(&env, &signed_in_at(clock.now() + 1)).await,
        ProblemType::SessionRevoked,
    )
    .await;
    // The user may not clear it.
    let user = env.client(&signed_in_at(clock.now() + 1));
    assert_eq!(
        user.post(api::paths::ADMIN_REVOCATIONS_CLEAR, &clear)
            .await
            .status(),
        401
    );

    // Cleared: sign-ins after the clear pass; the one made while blocked
    // (perhaps by whoever caused the block) does not.
    let cleared_at = clock.advance(Duration::from_secs(10));
    let r = env
        .admin()
        .post(api::paths::ADMIN_REVOCATIONS_CLEAR, &clear)
        .await;
    assert_eq!(r.status(), 200);
    let r: api::RevocationClearResult = r.json().await.unwrap();
    assert!(r.cleared);
    expect_problem(call(&env, &during).await, ProblemType::SessionRevoked).await;
    assert_eq!(
        call(&env, &signed_in_at(cleared_at + 1)).await.status(),
        200
    );
    // Nothing left to clear.
    let r = env
        .admin()
        .post(api::paths::ADMIN_REVOCATIONS_CLEAR, &clear)
        .await;
    let r: api::RevocationClearResult = r.json().await.unwrap();
    assert!(!r.cleared);
    let log = env.audit().await;
    assert!(
        log.iter()
            .any(|e| e.action == "revocation-clear" && e.outcome == "allow"),
        "{log:#?}"
    );
    env.broker.shutdown().await;
}

#[tokio::test]
async fn issuer_keys_are_refetched_after_their_ttl_so_a_withdrawn_key_stops_working() {
    let clock = Arc::new(ManualClock::starting_now());
    let env = env_with(
        |c| c.with(|c| c.oidc.jwks_ttl_seconds = 300),
        Some(clock.clone()),
    )
    .await;
    let old = env.issuer.token("alice");
    assert_eq!(call(&env, &old).await.status(), 200);
    assert_eq!(env.issuer.jwks_fetches(), 1);

    // The issuer withdraws its key and publishes a new one.
    let next = DeviceKey::generate();
    env.issuer.publish(&[(&next, "next")]);
    // Within the TTL the cached keys are used (no fetch per call).
    clock.advance(Duration::from_secs(299));
    assert_eq!(call(&env, &old).await.status(), 200);
    assert_eq!(env.issuer.jwks_fetches(), 1);
    // Past it, they are fetched again: the withdrawn key no longer works.
    clock.advance(Duration::from_secs(2));
    expect_problem(call(&env, &old).await, ProblemType::TokenInvalid).await;
    assert!(env.issuer.jwks_fetches() >= 2);
    let fresh = env.issuer.token_signed(&next, "next", "alice", json!({}));
    assert_eq!(call(&env, &fresh).await.status(), 200);
    env.broker.shutdown().await;
}

/// How the rogue issuer serves its documents.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Rogue {
    /// Everything where it should be (the control).
    Direct,
    /// Discovery answers 302 to the real document.
    RedirectDiscovery,
    /// `jwks_uri` answers 302 to the keys.
    RedirectJwks,
    /// Discovery names a plain-http, non-loopback `jwks_uri`.
    PlainHttpJwks,
}

/// An issuer at its own URL publishing `issuer`'s key, in `mode`.
async fn rogue_issuer(issuer: &TestIssuer, mode: Rogue) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let jwks_uri = match mode {
        Rogue::RedirectJwks => format!("{url}/jwks-moved"),
        Rogue::PlainHttpJwks => "http://keys.example.test/jwks".to_owned(),
        Rogue::Direct | Rogue::RedirectDiscovery => format!("{url}/jwks"),
    };
    let jwks = jwk_set(&[(&issuer.key, &issuer.kid)]);
    let discovery = json!({"issuer": url, "jwks_uri": jwks_uri});
    let served = discovery.clone();
    let app = Router::new()
        .route(
            "/.well-known/openid-configuration",
            get(move || {
                let d = discovery.clone();
                async move {
                    if mode == Rogue::RedirectDiscovery {
                        Redirect::to("/real-discovery").into_response()
                    } else {
                        axum::Json(d).into_response()
                    }
                }
            }),
        )
        .route(
            "/real-discovery",
            get(move || {
                let d = served.clone();
                async move { axum::Json(d) }
            }),
        )
        .route("/jwks-moved", get(|| async { Redirect::to("/jwks") }))
        .route(
            "/jwks",
            get(move || {
                let j = jwks.clone();
                async move { axum::Json(j) }
            }),
        );
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    url
}

#[tokio::test]
async fn discovery_and_keys_are_fetched_without_redirects_and_never_over_plain_http() {
    let issuer = TestIssuer::start().await;
    let echo = tcp_echo().await;
    for mode in [
        Rogue::Direct,
        Rogue::RedirectDiscovery,
        Rogue::RedirectJwks,
        Rogue::PlainHttpJwks,
    ] {
        let url = rogue_issuer(&issuer, mode).await;
        let dir = tempfile::tempdir().unwrap();
        let broker = start_broker(&config(&url, &db_path(dir.path()), echo)).await;
        let token = issuer.token_with("alice", json!({"iss": url}));
        let api = Client {
            http: reqwest::Client::new(),
            base: broker.base_url(),
            token,
            key: None,
            clock: None,
        };
        // Enrolment is the first call that validates the token.
        let r = TestDevice::new(api, "alice").enrol().await;
        if mode == Rogue::Direct {
            assert!(
                r.status().is_success(),
                "{mode:?}: {}",
                r.text().await.unwrap()
            );
        } else {
            let p = expect_problem(r, ProblemType::IssuerUnavailable).await;
            let expected = if mode == Rogue::PlainHttpJwks {
                "not https"
            } else {
                "redirect"
            };
            assert!(p.detail.contains(expected), "{mode:?}: {}", p.detail);
        }
        broker.shutdown().await;
    }
}

/// Enrols and attests a device of alice; returns it.
async fn compliant_device(env: &Env, token: &str) -> TestDevice {
    let device = TestDevice::new(env.client(token), "alice");
    assert_eq!(device.enrol().await.status(), 201);
    assert!(device.attest(healthy_report()).await.compliant);
    device
}

#[tokio::test]
async fn the_event_stream_ends_when_its_token_expires() {
    let clock = Arc::new(ManualClock::starting_now());
    let env = env_with(|c| c, Some(clock.clone())).await;
    let token = env.issuer.token("alice"); // exp = now + 600
    let device = TestDevice::new(env.client(&token), "alice");
    assert_eq!(device.enrol().await.status(), 201);
    let mut stream = EventStream::open(&device.api, &device.id()).await;
    stream.open_for(Duration::from_millis(1500)).await;
    // Within the skew (exp + 60 s) it is still good.
    clock.advance(Duration::from_secs(600 + 30));
    stream.open_for(Duration::from_millis(1500)).await;
    clock.advance(Duration::from_secs(60));
    stream.closed_within(Duration::from_secs(5)).await;
    env.assert_audited(ProblemType::TokenExpired, "event stream")
        .await;
    env.broker.shutdown().await;
}

#[tokio::test]
async fn the_event_stream_ends_when_the_device_or_the_user_is_revoked() {
    let env = env_with(|c| c, None).await;
    let token = env.issuer.token("alice");
    let laptop = compliant_device(&env, &token).await;
    let desktop = compliant_device(&env, &token).await;
    let mut laptop_events = EventStream::open(&laptop.api, &laptop.id()).await;
    let mut desktop_events = EventStream::open(&desktop.api, &desktop.id()).await;

    // The device: its stream gets the event, then ends; the other stays.
    let r = env
        .admin()
        .post(
            api::paths::ADMIN_REVOCATIONS,
            &api::RevocationRequest {
                device_id: Some(laptop.id()),
                reason: "stolen".into(),
                ..Default::default()
            },
        )
        .await;
    assert_eq!(r.status(), 200);
    assert!(matches!(
        laptop_events.next().await,
        api::Event::DeviceComplianceChange { .. }
    ));
    laptop_events.closed_within(Duration::from_secs(5)).await;
    desktop_events.open_for(Duration::from_millis(1500)).await;
    // A new stream for the revoked device is refused.
    let r = laptop
        .api
        .get(&format!("{}?device_id={}", api::paths::EVENTS, laptop.id()))
        .await;
    expect_problem(r, ProblemType::DeviceRevoked).await;

    // The user: session-revoked, then the end.
    let r = env
        .admin()
        .post(
            api::paths::ADMIN_REVOCATIONS,
            &api::RevocationRequest {
                user: Some("alice".into()),
                reason: "left".into(),
                ..Default::default()
            },
        )
        .await;
    assert_eq!(r.status(), 200);
    assert!(matches!(
        desktop_events.next().await,
        api::Event::SessionRevoked { .. }
    ));
    desktop_events.closed_within(Duration::from_secs(5)).await;
    env.broker.shutdown().await;
}

#[tokio::test]
async fn low_order_wireguard_keys_are_refused() {
    let env = env_with(|c| c, None).await;
    let token = env.issuer.token("alice");
    let device = compliant_device(&env, &token).await;
    let b64 = |bytes: [u8; 32]| {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(bytes)
    };
    let mut order8 = [0u8; 32];
    order8.copy_from_slice(&[
        0xe0, 0xeb, 0x7a, 0x7c, 0x3b, 0x41, 0xb8, 0xae, 0x16, 0x56, 0xe3, 0xfa, 0xf1, 0x9f, 0xc4,
        0x6a, 0xda, 0x09, 0x8d, 0xeb, 0x9c, 0x32, 0xb1, 0xfd, 0x86, 0x62, 0x05, 0x16, 0x5f, 0x49,
        0xb8, 0x00,
    ]);
    let mut one = [0u8; 32];
    one[0] = 1;
    for key in [[0u8; 32], one, order8] {
        let r = device
            .api
            .post(
                api::paths::GRANTS,
                &api::GrantRequest {
                    app: "echo".into(),
                    device_id: device.id(),
                    wireguard_public_key: b64(key),
                },
            )
            .await;
        let p = expect_problem(r, ProblemType::InvalidWireguardKey).await;
        assert!(p.detail.contains("low-order"), "{}", p.detail);
    }
    env.assert_audited(ProblemType::InvalidWireguardKey, "low-order")
        .await;
    assert!(env.broker.gateway_status().unwrap().peers.is_empty());
    let real = tunnel::PrivateKey::generate().public_key();
    assert_eq!(device.request_grant("echo", &real).await.status(), 201);
    env.broker.shutdown().await;
}
