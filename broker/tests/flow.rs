//! The whole flow over real HTTP and a real WireGuard tunnel: enrol,
//! challenge, attest, grant, move bytes through the broker's gateway to a
//! TCP echo target, then revoke and see the peer gone at the gateway.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use broker::api::{self, ComplianceStatus, Event, ProblemType};
use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrol_attest_grant_tunnel_then_revoke_removes_the_peer_within_100ms() {
    let env = Env::start().await;
    let alice = env.client(&env.issuer.token("alice"));

    // Discovery of the broker itself.
    let cfg: api::BrokerConfig = alice.get(api::paths::CONFIG).await.json().await.unwrap();
    assert_eq!(cfg.audience, AUDIENCE);
    assert_eq!(cfg.apps[0].id, "echo");
    let policy: api::PolicyDocument = alice.get(api::paths::POLICY).await.json().await.unwrap();
    assert_eq!(policy.digest, cfg.policy_digest);
    assert!(policy.rego.contains("package sallyport.posture"));

    // Enrol (201), and again (200, idempotent).
    let device = TestDevice::new(alice.clone(), "alice");
    let r = device.enrol().await;
    assert_eq!(r.status(), 201);
    let enrolled: api::Device = r.json().await.unwrap();
    assert_eq!(enrolled.device_id, device.id());
    assert_eq!(enrolled.ueid, device.key.ueid());
    assert_eq!(enrolled.user, "alice");
    assert_eq!(device.enrol().await.status(), 200);

    let mut events = EventStream::open(&device.api, &device.id()).await;

    // Attest: compliant, valid for the configured ten minutes.
    let verdict = device.attest(healthy_report()).await;
    assert!(verdict.compliant, "{verdict:#?}");
    assert!(verdict.violations.is_empty());
    let ttl = verdict.valid_until - verdict.evaluated_at;
    assert_eq!(ttl.whole_seconds(), 600);

    // Grant, with a fresh WireGuard key for this app only.
    let wg = tunnel::PrivateKey::generate();
    let r = device.request_grant("echo", &wg.public_key()).await;
    assert_eq!(r.status(), 201);
    let grant: api::Grant = r.json().await.unwrap();
    assert_eq!(grant.targets, vec![format!("{}/tcp", env.echo)]);
    assert_eq!(
        grant.gateway.public_key,
        env.broker.gateway_public_key().unwrap().to_string()
    );
    assert!(grant.expires_at <= verdict.valid_until);
    assert_eq!(grant.client_address, "100.64.0.2");

    // A real tunnel client through the broker's gateway to the echo target.
    let tunnel = tunnel::Tunnel::start(tunnel_config(&grant, wg))
        .await
        .unwrap();
    let target: tunnel::Target = grant.targets[0].parse().unwrap();
    let forward = tunnel.forward_addr(&target).unwrap();
    let payload: Vec<u8> = (0..100_000u32).map(|i| (i * 13) as u8).collect();
    assert_eq!(echo_through(forward, &payload).await.unwrap(), payload);

    let peers: Vec<api::GatewayPeer> = env
        .admin()
        .get(api::paths::ADMIN_GATEWAY_PEERS)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0].client_address, "100.64.0.2");
    assert!(peers[0].bytes_in >= payload.len() as u64);

    // Revoke the device: the reply comes after the peer is removed; the
    // status must show it gone within 100 ms of the reply.
    let r = env
        .admin()
        .post(
            api::paths::ADMIN_REVOCATIONS,
            &api::RevocationRequest {
                device_id: Some(device.id()),
                reason: "laptop reported stolen".into(),
                ..Default::default()
            },
        )
        .await;
    let replied = Instant::now();
    assert_eq!(r.status(), 200);
    let result: api::RevocationResult = r.json().await.unwrap();
    assert_eq!(result.grants_closed, vec![grant.id.clone()]);
    loop {
        if env.broker.gateway_status().unwrap().peers.is_empty() {
            break;
        }
        assert!(
            replied.elapsed() < Duration::from_millis(100),
            "peer still at the gateway 100 ms after the revoke reply"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let gone_after = replied.elapsed();
    assert!(gone_after < Duration::from_millis(100), "{gone_after:?}");

    // The device hears about it.
    assert_eq!(
        events.next().await,
        Event::GrantRevoked {
            grant_id: grant.id.clone(),
            device_id: device.id(),
            reason: "laptop reported stolen".into()
        }
    );
    match events.next().await {
        Event::DeviceComplianceChange { current_status, .. } => {
            assert_eq!(current_status, ComplianceStatus::NotCompliant)
        }
        other => panic!("unexpected {other:?}"),
    }

    // Traffic no longer passes: a new connection gets no echo.
    let r = tokio::time::timeout(Duration::from_secs(2), echo_through(forward, b"after")).await;
    assert!(
        !matches!(r, Ok(Ok(ref v)) if v == b"after"),
        "echo still works after revocation"
    );

    // A revoked device can neither attest nor get grants.
    let claims = device.claims(healthy_report()).await;
    let r = device.submit(device.key.sign_eat(&claims).unwrap()).await;
    expect_problem(r, ProblemType::DeviceRevoked).await;
    let r = device
        .request_grant("echo", &tunnel::PrivateKey::generate().public_key())
        .await;
    expect_problem(r, ProblemType::DeviceRevoked).await;

    // Every decision is in the audit log.
    let log = env.audit().await;
    for action in ["enrol", "attest", "grant", "revoke", "grant-revoke"] {
        assert!(
            log.iter().any(|e| e.action == action),
            "no {action} in the audit log"
        );
    }
    tunnel.shutdown().await;
    env.broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_compliance_closes_open_grants_and_client_close_removes_the_peer() {
    let env = Env::start().await;
    let alice = env.client(&env.issuer.token("alice"));
    let device = TestDevice::new(alice.clone(), "alice");
    assert_eq!(device.enrol().await.status(), 201);
    device.attest(healthy_report()).await;
    let mut events = EventStream::open(&device.api, &device.id()).await;

    // Client-initiated close.
    let wg = tunnel::PrivateKey::generate();
    let grant: api::Grant = device
        .request_grant("echo", &wg.public_key())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(env.broker.gateway_status().unwrap().peers.len(), 1);
    let r = device.api.delete(&format!("/v1/grants/{}", grant.id)).await;
    assert_eq!(r.status(), 204);
    assert!(env.broker.gateway_status().unwrap().peers.is_empty());
    let r = device.api.delete(&format!("/v1/grants/{}", grant.id)).await;
    expect_problem(r, ProblemType::GrantNotFound).await;

    // A second grant, then the device turns its firewall off.
    let wg = tunnel::PrivateKey::generate();
    let grant: api::Grant = device
        .request_grant("echo", &wg.public_key())
        .await
        .json()
        .await
        .unwrap();
    let verdict = device.attest(firewall_off_report()).await;
    assert!(!verdict.compliant);
    assert_eq!(verdict.violations[0].check, "firewall");
    assert!(env.broker.gateway_status().unwrap().peers.is_empty());
    assert!(
        matches!(events.next().await, Event::GrantRevoked { grant_id, .. } if grant_id == grant.id)
    );
    assert!(matches!(
        events.next().await,
        Event::DeviceComplianceChange {
            previous_status: ComplianceStatus::Compliant,
            current_status: ComplianceStatus::NotCompliant,
            ..
        }
    ));

    // Admin revokes the user: old tokens are refused with session-revoked.
    let r = env
        .admin()
        .post(
            api::paths::ADMIN_REVOCATIONS,
            &json!({"user": "alice", "reason": "left the company"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert!(matches!(events.next().await, Event::SessionRevoked { user, .. } if user == "alice"));
    let r = alice.get(api::paths::POLICY).await; // public call: still fine
    assert_eq!(r.status(), 200);
    let r = alice.post(api::paths::CHALLENGE, &json!({})).await;
    expect_problem(r, ProblemType::SessionRevoked).await;
    env.assert_audited(ProblemType::SessionRevoked, "revoked")
        .await;
    env.broker.shutdown().await;
}
