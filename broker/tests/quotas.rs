//! Per-user limits over real HTTP: each answers `429 quota-exceeded`
//! problem+json (the request head: `431 headers-too-large`), is audited
//! once however often it is hit, and gives way once the user lets go of
//! something.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use broker::api::{self, ProblemType};
use common::*;
use serde_json::json;

async fn quota_rows(env: &Env, limit: &str) -> usize {
    env.audit()
        .await
        .iter()
        .filter(|e| e.action == "quota" && e.reason.starts_with(limit))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_grants_per_user_are_capped_and_audited_once() {
    let env = Env::start_with(|c, _| c.with(|c| c.limits.max_open_grants_per_user = 2)).await;
    let device = TestDevice::new(env.client(&env.issuer.token("alice")), "alice");
    assert_eq!(device.enrol().await.status(), 201);
    device.attest(healthy_report()).await;
    let mut open = Vec::new();
    for _ in 0..2 {
        let r = device
            .request_grant("echo", &tunnel::PrivateKey::generate().public_key())
            .await;
        assert_eq!(r.status(), 201);
        open.push(r.json::<api::Grant>().await.unwrap());
    }
    for _ in 0..5 {
        let r = device
            .request_grant("echo", &tunnel::PrivateKey::generate().public_key())
            .await;
        assert_eq!(r.status(), 429);
        let p = expect_problem(r, ProblemType::QuotaExceeded).await;
        assert!(p.detail.contains("close one first"), "{p:?}");
    }
    assert_eq!(quota_rows(&env, "max_open_grants_per_user").await, 1);
    let log = env.audit().await;
    assert!(
        !log.iter()
            .any(|e| e.action == "grant" && e.problem.as_deref() == Some("quota-exceeded")),
        "each refusal is not audited: {log:#?}"
    );
    // Closing one makes room.
    let r = device
        .api
        .delete(&format!("{}/{}", api::paths::GRANTS, open[0].id))
        .await;
    assert_eq!(r.status(), 204);
    let r = device
        .request_grant("echo", &tunnel::PrivateKey::generate().public_key())
        .await;
    assert_eq!(r.status(), 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outstanding_nonces_per_user_are_capped() {
    let env =
        Env::start_with(|c, _| c.with(|c| c.limits.max_outstanding_nonces_per_user = 3)).await;
    let device = TestDevice::new(env.client(&env.issuer.token("alice")), "alice");
    assert_eq!(device.enrol().await.status(), 201);
    let mut nonces = Vec::new();
    for _ in 0..3 {
        nonces.push(device.nonce().await);
    }
    let r = device.api.post(api::paths::CHALLENGE, &json!({})).await;
    let p = expect_problem(r, ProblemType::QuotaExceeded).await;
    assert!(p.detail.contains("unused attestation nonces"), "{p:?}");
    // Using one gives its place back.
    let claims = posture::attestation::EatClaims::new(
        &device.key,
        &nonces[0],
        AUDIENCE,
        "alice",
        healthy_report(),
        unix_now(),
        120,
    );
    assert_eq!(
        device
            .submit(device.key.sign_eat(&claims).unwrap())
            .await
            .status(),
        200
    );
    device.nonce().await;
    assert_eq!(quota_rows(&env, "max_outstanding_nonces_per_user").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_streams_per_user_are_capped_and_given_back_when_closed() {
    let env = Env::start_with(|c, _| c.with(|c| c.limits.max_event_streams_per_user = 2)).await;
    let device = TestDevice::new(env.client(&env.issuer.token("alice")), "alice");
    assert_eq!(device.enrol().await.status(), 201);
    let path = format!("{}?device_id={}", api::paths::EVENTS, device.id());
    let first = device.api.get(&path).await;
    assert_eq!(first.status(), 200);
    let second = device.api.get(&path).await;
    assert_eq!(second.status(), 200);
    let p = expect_problem(device.api.get(&path).await, ProblemType::QuotaExceeded).await;
    assert!(p.detail.contains("event streams"), "{p:?}");
    // Hanging up one stream frees its place.
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = device.api.get(&path).await;
        if r.status() == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the closed stream's place never came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_request_head_is_refused() {
    let env = Env::start_with(|c, _| c.with(|c| c.limits.max_header_bytes = 4096)).await;
    let r = env
        .http
        .get(env.url(api::paths::CONFIG))
        .header("x-padding", "a".repeat(8000))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 431);
    expect_problem(r, ProblemType::HeadersTooLarge).await;
    let r = env
        .http
        .get(env.url(api::paths::CONFIG))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// A flood of requests with forged tokens (each naming a long,
/// attacker-chosen `kid`) writes one audit row a minute per kind, with the
/// attacker's text cut short, and the next row says how many were folded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_forged_tokens_is_aggregated_in_the_audit_log() {
    use broker::server::{Clock as _, ManualClock};
    let clock = std::sync::Arc::new(ManualClock::starting_now());
    let env = Env::start_with_clock(|c, _| c, Some(clock.clone())).await;
    let forger = posture::attestation::DeviceKey::generate();
    let kid = "k".repeat(5000);
    let forged = env.issuer.token_signed(
        &forger,
        &kid,
        "alice",
        json!({"iat": clock.now(), "exp": clock.now() + 600}),
    );
    let api = env.client(&forged);
    for _ in 0..300 {
        let r = api.post(api::paths::CHALLENGE, &json!({})).await;
        assert_eq!(r.status(), 401);
    }
    let rows = |log: &[api::AuditEntry]| -> Vec<api::AuditEntry> {
        log.iter()
            .filter(|e| e.user.is_none() && e.outcome == "deny")
            .cloned()
            .collect()
    };
    let first = rows(&env.audit().await);
    assert_eq!(first.len(), 1, "{first:#?}");
    assert!(
        first[0].reason.chars().count() <= 200,
        "{}",
        first[0].reason
    );
    // A minute on, the next one says how many were folded into it.
    clock.advance(Duration::from_secs(61));
    let forged = env.issuer.token_signed(
        &forger,
        &kid,
        "alice",
        json!({"iat": clock.now(), "exp": clock.now() + 600}),
    );
    let r = env
        .client(&forged)
        .post(api::paths::CHALLENGE, &json!({}))
        .await;
    assert_eq!(r.status(), 401);
    let after = rows(&env.audit().await);
    assert_eq!(after.len(), 2, "{after:#?}");
    assert!(
        after[1].reason.contains("and 299 more like it"),
        "{}",
        after[1].reason
    );
}

/// When the allow row of a grant cannot be written, no tunnel opens: the
/// grant is closed and its peer removed before the answer. The fault is a
/// real one in the database (a trigger refusing exactly those rows, put in
/// next to the running broker: `refuse_audit_rows`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_whose_audit_row_cannot_be_written_does_not_open() {
    let env = Env::start().await;
    let device = TestDevice::new(env.client(&env.issuer.token("alice")), "alice");
    assert_eq!(device.enrol().await.status(), 201);
    device.attest(healthy_report()).await;
    refuse_audit_rows(
        env.dir.path(),
        "NEW.action = 'grant' AND NEW.outcome = 'allow'",
    );
    let r = device
        .request_grant("echo", &tunnel::PrivateKey::generate().public_key())
        .await;
    let p = expect_problem(r, ProblemType::Internal).await;
    assert!(p.detail.contains("audit log"), "{p:?}");
    let peers: Vec<api::GatewayPeer> = env
        .admin()
        .get(api::paths::ADMIN_GATEWAY_PEERS)
        .await
        .json()
        .await
        .unwrap();
    assert!(peers.is_empty(), "a peer stayed at the gateway: {peers:?}");
}

/// Any allowed action whose audit row cannot be written is answered as
/// refused: here an attestation (its verdict is not handed out).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_action_whose_audit_row_cannot_be_written_is_refused() {
    let env = Env::start().await;
    let device = TestDevice::new(env.client(&env.issuer.token("alice")), "alice");
    assert_eq!(device.enrol().await.status(), 201);
    refuse_audit_rows(env.dir.path(), "NEW.action = 'attest'");
    let claims = device.claims(healthy_report()).await;
    let r = device.submit(device.key.sign_eat(&claims).unwrap()).await;
    let p = expect_problem(r, ProblemType::Internal).await;
    assert!(p.detail.contains("audit log"), "{p:?}");
}

/// The gateway's per-tunnel connection limit is enforced inside the tunnel
/// (there is no HTTP answer to give there); the broker audits it against
/// the grant's user and device, once however often it is hit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_tunnel_connection_limit_is_audited_once_against_the_grant() {
    let env =
        Env::start_with(|c, _| c.with(|c| c.limits.max_tunnel_connections_per_peer = 1)).await;
    let device = TestDevice::new(env.client(&env.issuer.token("alice")), "alice");
    assert_eq!(device.enrol().await.status(), 201);
    device.attest(healthy_report()).await;
    let wg = tunnel::PrivateKey::generate();
    let r = device.request_grant("echo", &wg.public_key()).await;
    assert_eq!(r.status(), 201);
    let grant: api::Grant = r.json().await.unwrap();
    let tunnel = tunnel::Tunnel::start(tunnel_config(&grant, wg))
        .await
        .unwrap();
    let forward = tunnel
        .forward_addr(&grant.targets[0].parse().unwrap())
        .unwrap();
    // The one connection allowed works and stays open.
    let held = tokio::net::TcpStream::connect(forward).await.unwrap();
    let (mut r, mut w) = held.into_split();
    tokio::io::AsyncWriteExt::write_all(&mut w, b"x")
        .await
        .unwrap();
    let mut b = [0u8; 1];
    tokio::time::timeout(
        Duration::from_secs(10),
        tokio::io::AsyncReadExt::read_exact(&mut r, &mut b),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(quota_rows(&env, "max_tunnel_connections_per_peer").await, 0);

    // More connections: each SYN is refused at the gateway.
    let mut extra = Vec::new();
    for _ in 0..3 {
        extra.push(tokio::net::TcpStream::connect(forward).await.unwrap());
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while quota_rows(&env, "max_tunnel_connections_per_peer").await == 0 {
        assert!(Instant::now() < deadline, "the refusal was never audited");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let peer = &env.broker.gateway_status().unwrap().peers[0];
    assert!(peer.refused.connections >= 1, "{peer:?}");
    // Further refusals (SYN retries, more connections) over two more
    // sweeps add no row.
    for _ in 0..3 {
        extra.push(tokio::net::TcpStream::connect(forward).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let rows: Vec<_> = env
        .audit()
        .await
        .into_iter()
        .filter(|e| e.action == "quota" && e.reason.starts_with("max_tunnel_connections_per_peer"))
        .collect();
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert_eq!(rows[0].user.as_deref(), Some("alice"));
    assert_eq!(rows[0].device_id.as_deref(), Some(device.id().as_str()));
    assert!(rows[0].reason.contains(&grant.id), "{rows:?}");
    assert_eq!(rows[0].problem.as_deref(), Some("quota-exceeded"));
}
