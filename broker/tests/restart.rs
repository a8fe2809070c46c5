//! Nothing is lost across a restart: devices, verdicts, used nonces,
//! revocations and open grants come back (the gateway key too, so a grant
//! handed out before still reaches its target), and a grant that expired
//! while the broker was down does not. Both brokers run on one
//! [`ManualClock`], moved forward while the broker is down instead of
//! waiting for the short grant to run out.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use broker::api::{self, ProblemType};
use broker::server::{Clock as _, ManualClock};
use common::*;
use serde_json::json;

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_survives_a_restart_and_expired_grants_stay_gone() {
    let issuer = TestIssuer::start().await;
    let echo = tcp_echo().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_udp_port();
    let text = config(&issuer.url, &db_path(dir.path()), echo).udp_port(port);
    let http = reqwest::Client::new();
    let clock = Arc::new(ManualClock::starting_now());
    let api_for = |base: &str, token: String| Client {
        http: http.clone(),
        base: base.to_owned(),
        token,
        key: None,
        clock: Some(clock.clone()),
    };

    // ---- before ----
    let first = start_broker_with_clock(&text, clock.clone()).await;
    let base = first.base_url();
    let gateway_key = first.gateway_public_key().unwrap();
    let alice = api_for(&base, issuer.token("alice"));

    let device = TestDevice::new(alice.clone(), "alice");
    assert_eq!(device.enrol().await.status(), 201);
    assert!(device.attest(healthy_report()).await.compliant);
    // An attestation already used: must stay used after the restart.
    let used_eat = {
        let claims = device.claims(healthy_report()).await;
        let eat = device.key.sign_eat(&claims).unwrap();
        assert_eq!(device.submit(eat.clone()).await.status(), 200);
        eat
    };

    // A long grant (restored) and a short one (expires while down): the
    // short one is bounded by a session that ends in 30 s.
    let long_key = tunnel::PrivateKey::generate();
    let r = device.request_grant("echo", &long_key.public_key()).await;
    assert_eq!(r.status(), 201);
    let long: api::Grant = r.json().await.unwrap();
    let short_session = TestDevice {
        key: device.key.clone(),
        user: "alice".into(),
        api: api_for(
            &base,
            issuer.token_with("alice", json!({"exp": clock.now() + 30})),
        )
        .with_key(&device.key),
    };
    let short_key = tunnel::PrivateKey::generate();
    let r = short_session
        .request_grant("echo", &short_key.public_key())
        .await;
    assert_eq!(r.status(), 201);
    let short: api::Grant = r.json().await.unwrap();
    assert!(short.expires_at < long.expires_at);

    // A second device, revoked; and bob, whose sessions are revoked.
    let revoked = TestDevice::new(alice.clone(), "alice");
    assert_eq!(revoked.enrol().await.status(), 201);
    // Issued (and signed in) on the broker's clock: the revocation below,
    // stamped on it too, covers sign-ins at or before it (`auth_time`), and
    // the stopped clock lags the real seconds the issuer would otherwise
    // stamp once the steps above took more than a second (they do on
    // PostgreSQL).
    let bob_token = issuer.token_with("bob", json!({"iat": clock.now(), "auth_time": clock.now()}));
    let bob = TestDevice::new(api_for(&base, bob_token), "bob");
    assert_eq!(bob.enrol().await.status(), 201);
    bob.attest(healthy_report()).await;
    let bob_key = tunnel::PrivateKey::generate();
    assert_eq!(
        bob.request_grant("echo", &bob_key.public_key())
            .await
            .status(),
        201
    );
    let admin = api_for(&base, ADMIN_TOKEN.into());
    for body in [
        json!({"device_id": revoked.id(), "reason": "lost"}),
        json!({"user": "bob", "reason": "offboarded"}),
    ] {
        assert_eq!(
            admin
                .post(api::paths::ADMIN_REVOCATIONS, &body)
                .await
                .status(),
            200
        );
    }
    assert_eq!(first.gateway_status().unwrap().peers.len(), 2);
    first.shutdown().await;

    // Let the short grant expire while the broker is down.
    clock.set(short.expires_at.unix_timestamp());

    // ---- after ----
    let second = start_broker_with_clock(&text, clock.clone()).await;
    let base = second.base_url();
    assert_eq!(second.gateway_public_key().unwrap(), gateway_key);
    let peers = second.gateway_status().unwrap().peers;
    assert_eq!(
        peers.len(),
        1,
        "{peers:?}; long grant expires {}, short {}, now {}",
        long.expires_at,
        short.expires_at,
        clock.now()
    );
    assert_eq!(peers[0].public_key, long_key.public_key());
    assert_eq!(peers[0].client_address.to_string(), long.client_address);

    // The restored grant carries traffic (same gateway key and port).
    let tunnel = tunnel::Tunnel::start(tunnel_config(&long, long_key.clone()))
        .await
        .unwrap();
    let target: tunnel::Target = long.targets[0].parse().unwrap();
    let forward = tunnel.forward_addr(&target).unwrap();
    assert_eq!(
        echo_through(forward, b"after restart").await.unwrap(),
        b"after restart"
    );
    tunnel.shutdown().await;

    let alice = api_for(&base, issuer.token("alice"));
    let device = TestDevice {
        api: alice.with_key(&device.key),
        ..device
    };
    // The used nonce stays used.
    expect_problem(device.submit(used_eat).await, ProblemType::NonceReplayed).await;
    // The verdict survived: a new grant without attesting again.
    let r = device
        .request_grant("echo", &tunnel::PrivateKey::generate().public_key())
        .await;
    assert_eq!(r.status(), 201);
    // The short grant's key is free again only because it expired.
    let closed = device.api.delete(&format!("/v1/grants/{}", short.id)).await;
    expect_problem(closed, ProblemType::GrantNotFound).await;

    // Revocations held.
    let revoked = TestDevice {
        api: alice.with_key(&revoked.key),
        ..revoked
    };
    let claims = revoked.claims(healthy_report()).await;
    let r = revoked.submit(revoked.key.sign_eat(&claims).unwrap()).await;
    expect_problem(r, ProblemType::DeviceRevoked).await;
    let bob_old = api_for(&base, bob.api.token.clone());
    expect_problem(
        bob_old.post(api::paths::CHALLENGE, &json!({})).await,
        ProblemType::SessionRevoked,
    )
    .await;

    // The audit log kept everything from before, and says why the short
    // grant is gone.
    let log: Vec<api::AuditEntry> = api_for(&base, ADMIN_TOKEN.into())
        .get(&format!("{}?limit=1000", api::paths::ADMIN_AUDIT))
        .await
        .json()
        .await
        .unwrap();
    assert!(log.iter().any(|e| e.action == "enrol"));
    assert!(
        log.iter()
            .any(|e| e.action == "grant-expire" && e.reason.contains(&short.id)),
        "{log:#?}"
    );
    assert!(
        log.iter()
            .any(|e| e.action == "revoke" && e.reason.contains("offboarded"))
    );
    second.shutdown().await;
}
