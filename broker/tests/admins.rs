//! One credential per administrator: each admin call is audited with the
//! name of the administrator whose token made it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use broker::api::{self, ProblemType};
use broker::server::config::AdminCredential;
use common::*;
use serde_json::json;

fn sha256_hex(text: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, text.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_actions_name_the_administrator_who_acted() {
    let env = Env::start_with(|c, _| {
        c.with(|c| {
            c.server.admin_token_sha256 = None;
            c.server.admins = vec![
                AdminCredential {
                    name: "alice@example.com".into(),
                    token_sha256: sha256_hex("token-of-alice"),
                },
                AdminCredential {
                    name: "bob@example.com".into(),
                    token_sha256: sha256_hex("token-of-bob"),
                },
            ];
        })
    })
    .await;
    let device = TestDevice::new(env.client(&env.issuer.token("carol")), "carol");
    assert_eq!(device.enrol().await.status(), 201);

    let alice = env.client("token-of-alice");
    let r = alice
        .post(
            api::paths::ADMIN_REVOCATIONS,
            &json!({"device_id": device.id(), "reason": "laptop lost"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let bob = env.client("token-of-bob");
    let r = bob.post(api::paths::ADMIN_POLICY_RELOAD, &json!({})).await;
    assert_eq!(r.status(), 200);
    // The shared token is not configured: refused, as is any other.
    let r = env.admin().get(api::paths::ADMIN_AUDIT).await;
    expect_problem(r, ProblemType::AdminUnauthorized).await;

    let log: Vec<api::AuditEntry> = alice
        .get(&format!("{}?limit=100", api::paths::ADMIN_AUDIT))
        .await
        .json()
        .await
        .unwrap();
    let revoke = log.iter().find(|e| e.action == "revoke").unwrap();
    assert_eq!(
        revoke.admin.as_deref(),
        Some("alice@example.com"),
        "{revoke:?}"
    );
    let reload = log.iter().find(|e| e.action == "policy-reload").unwrap();
    assert_eq!(
        reload.admin.as_deref(),
        Some("bob@example.com"),
        "{reload:?}"
    );
}
