//! Policy freshness over real HTTP: a grant needs a verdict made under the
//! policy in force, and reloading a changed policy closes every grant
//! decided under the old one, its peer gone from the gateway before the
//! reply.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use broker::api::{self, Event, ProblemType};
use common::*;
use serde_json::json;

/// The built-in policy, from a file the test can rewrite.
fn with_policy_file(
    config: support::broker::BrokerConfig,
    dir: &Path,
) -> support::broker::BrokerConfig {
    std::fs::write(policy_path(dir), posture::policy::DEFAULT_POLICY).unwrap();
    config.policy(&policy_path(dir))
}

fn policy_path(dir: &Path) -> PathBuf {
    dir.join("policy.rego")
}

/// The built-in policy plus a rule no device meets.
fn stricter() -> String {
    format!(
        "{}\nviolations contains v if {{\n\tinput.platform == \"linux\"\n\tv := {{\"check\": \"fleet_agent\", \"message\": \"The fleet agent is not installed.\", \"remediation\": \"Install it.\"}}\n}}\n",
        posture::policy::DEFAULT_POLICY
    )
}

async fn reload(env: &Env, rego: &str) -> api::PolicyDocument {
    std::fs::write(policy_path(env.dir.path()), rego).unwrap();
    let r = env
        .admin()
        .post(api::paths::ADMIN_POLICY_RELOAD, &json!({}))
        .await;
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verdict_made_under_an_earlier_policy_gets_no_grant() {
    let env = Env::start_with(with_policy_file).await;
    let device = TestDevice::new(env.client(&env.issuer.token("alice")), "alice");
    assert_eq!(device.enrol().await.status(), 201);
    let verdict = device.attest(healthy_report()).await;
    assert!(verdict.compliant);

    // Same rules, new text: a new policy all the same.
    let revised = format!("{}\n# revised\n", posture::policy::DEFAULT_POLICY);
    let doc = reload(&env, &revised).await;
    assert_ne!(doc.digest, verdict.policy_digest);

    let wg = tunnel::PrivateKey::generate();
    let p = expect_problem(
        device.request_grant("echo", &wg.public_key()).await,
        ProblemType::VerdictStalePolicy,
    )
    .await;
    assert!(p.detail.contains(&verdict.policy_digest[..12]), "{p:#?}");
    env.assert_audited(ProblemType::VerdictStalePolicy, "attest again")
        .await;

    // Attesting again under the policy in force is all it takes.
    let verdict = device.attest(healthy_report()).await;
    assert_eq!(verdict.policy_digest, doc.digest);
    assert_eq!(
        device
            .request_grant("echo", &wg.public_key())
            .await
            .status(),
        201
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloading_a_stricter_policy_removes_the_peers_before_the_reply() {
    let env = Env::start_with(with_policy_file).await;
    let alice = env.client(&env.issuer.token("alice"));
    let device = TestDevice::new(alice.clone(), "alice");
    assert_eq!(device.enrol().await.status(), 201);
    assert!(device.attest(healthy_report()).await.compliant);
    let mut events = EventStream::open(&device.api, &device.id()).await;

    // A working tunnel.
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
    assert_eq!(echo_through(forward, b"before").await.unwrap(), b"before");

    // Reloading the same file changes nothing and closes nothing.
    let unchanged = reload(&env, posture::policy::DEFAULT_POLICY).await;
    assert_eq!(env.broker.gateway_status().unwrap().peers.len(), 1);

    // The stricter policy: the peer is gone when the reply arrives.
    let doc = reload(&env, &stricter()).await;
    assert_ne!(doc.digest, unchanged.digest);
    assert!(
        env.broker.gateway_status().unwrap().peers.is_empty(),
        "the peer outlived the reload"
    );
    let peers: Vec<api::GatewayPeer> = env
        .admin()
        .get(api::paths::ADMIN_GATEWAY_PEERS)
        .await
        .json()
        .await
        .unwrap();
    assert!(peers.is_empty(), "{peers:#?}");
    let r = tokio::time::timeout(Duration::from_secs(2), echo_through(forward, b"after")).await;
    assert!(
        !matches!(r, Ok(Ok(ref v)) if v == b"after"),
        "traffic still flows after the reload"
    );

    // The agent hears why, then that the policy changed.
    match events.next().await {
        Event::GrantRevoked {
            grant_id, reason, ..
        } => {
            assert_eq!(grant_id, grant.id);
            assert!(reason.contains("policy changed"), "{reason}");
        }
        other => panic!("expected grant-revoked, got {other:?}"),
    }
    assert_eq!(
        events.next().await,
        Event::PolicyChanged {
            digest: doc.digest.clone()
        }
    );
    let log = env.audit().await;
    assert!(
        log.iter()
            .any(|e| e.action == "policy-reload" && e.reason.contains("closed 1 grant(s)")),
        "{log:#?}"
    );

    // Under the new policy the device does not comply: no new grant.
    let verdict = device.attest(healthy_report()).await;
    assert!(!verdict.compliant);
    assert_eq!(verdict.violations[0].check, "fleet_agent");
    let wg = tunnel::PrivateKey::generate();
    expect_problem(
        device.request_grant("echo", &wg.public_key()).await,
        ProblemType::DeviceNotCompliant,
    )
    .await;
}
