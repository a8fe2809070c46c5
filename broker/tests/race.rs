//! Grant creation raced against what ends grants, over real HTTP: many
//! concurrent grant requests while an administrator revokes the user, and
//! separately while the policy is reloaded to a stricter one, repeated. The
//! broker serialises "decide + allocate + add peer" against "revoke or
//! reload + close + remove peers"; afterwards no grant may be open and no
//! peer left at the gateway, whichever request won each race.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::sync::Arc;

use broker::api::{self, ProblemType};
use common::*;
use serde_json::json;

/// Rounds per test, and grant requests per round.
const ROUNDS: usize = 20;
const REQUESTS: usize = 24;

/// Nothing survived: no peer at the gateway (as its status and the admin
/// API see it), and every grant the broker opened is closed in its store
/// (closing it again, with a token issued after everything, finds nothing).
async fn assert_nothing_survived(env: &Env, device: &TestDevice, opened: &[String], round: usize) {
    let peers = env.broker.gateway_status().unwrap().peers;
    assert!(
        peers.is_empty(),
        "round {round}: {} peer(s) left at the gateway ({} grant(s) had been opened)",
        peers.len(),
        opened.len()
    );
    let listed: Vec<api::GatewayPeer> = env
        .admin()
        .get(api::paths::ADMIN_GATEWAY_PEERS)
        .await
        .json()
        .await
        .unwrap();
    assert!(listed.is_empty(), "round {round}: {listed:#?}");
    // A sign-in after everything (a revocation covers earlier ones), from
    // the same device (user calls are DPoP-bound).
    let after = unix_now() + 2;
    let later = env
        .client(
            &env.issuer
                .token_with(&device.user, json!({"iat": after, "auth_time": after})),
        )
        .with_key(&device.key);
    for id in opened {
        let r = later.delete(&format!("{}/{id}", api::paths::GRANTS)).await;
        assert_eq!(
            r.status(),
            404,
            "round {round}: grant {id} is still open in the store"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn grants_racing_a_user_revocation_never_outlive_it() {
    let env = Env::start().await;
    let mut opened_total = 0;
    for round in 0..ROUNDS {
        // A user per round: each round's revocation is its own.
        let user = format!("user-{round}");
        let device = Arc::new(TestDevice::new(env.client(&env.issuer.token(&user)), &user));
        assert_eq!(device.enrol().await.status(), 201);
        assert!(device.attest(healthy_report()).await.compliant);

        let admin = env.admin();
        // Let the first requests get going.
        let revoke = revoke_user_after(&admin, &user, std::time::Duration::from_millis(2));
        let opened = race_grants(
            &device,
            REQUESTS,
            revoke,
            &[ProblemType::SessionRevoked, ProblemType::WireguardKeyInUse],
        )
        .await;
        opened_total += opened.len();
        assert_nothing_survived(&env, &device, &opened, round).await;
    }
    // The race was a race: some grants won it (and were then closed).
    assert!(
        opened_total > 0,
        "no grant request ever beat the revocation"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn grants_racing_a_stricter_policy_reload_never_outlive_it() {
    let env = Env::start_with(|config, dir: &Path| {
        std::fs::write(dir.join("policy.rego"), posture::policy::DEFAULT_POLICY).unwrap();
        config.policy(&dir.join("policy.rego"))
    })
    .await;
    let policy = env.dir.path().join("policy.rego");
    let device = Arc::new(TestDevice::new(
        env.client(&env.issuer.token("alice")),
        "alice",
    ));
    assert_eq!(device.enrol().await.status(), 201);
    let mut opened_total = 0;
    for round in 0..ROUNDS {
        // Lenient (a new text each round, so each reload is a change), attest.
        std::fs::write(
            &policy,
            format!("{}\n# round {round}\n", posture::policy::DEFAULT_POLICY),
        )
        .unwrap();
        let r = env
            .admin()
            .post(api::paths::ADMIN_POLICY_RELOAD, &json!({}))
            .await;
        assert_eq!(r.status(), 200);
        assert!(device.attest(healthy_report()).await.compliant);

        let strict = format!(
            "{}\n# round {round}\nviolations contains v if {{\n\tinput.platform == \"linux\"\n\tv := {{\"check\": \"fleet_agent\", \"message\": \"missing\", \"remediation\": \"install it\"}}\n}}\n",
            posture::policy::DEFAULT_POLICY
        );
        let admin = env.admin();
        let reload = async {
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            std::fs::write(&policy, &strict).unwrap();
            let r = admin
                .post(api::paths::ADMIN_POLICY_RELOAD, &json!({}))
                .await;
            assert_eq!(r.status(), 200);
        };
        let opened = race_grants(
            &device,
            REQUESTS,
            reload,
            &[
                ProblemType::VerdictStalePolicy,
                ProblemType::WireguardKeyInUse,
            ],
        )
        .await;
        opened_total += opened.len();
        assert_nothing_survived(&env, &device, &opened, round).await;
    }
    assert!(opened_total > 0, "no grant request ever beat the reload");
}
