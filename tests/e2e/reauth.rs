//! End to end: an administrator revokes a signed-in user's sessions while
//! a tunnel is open. Real OpenID provider, reference broker and gateway,
//! the agent's runtime, a TCP target. The tunnel closes at once; the agent
//! does not hammer the broker with the refused sign-in (a refresh keeps its
//! `auth_time`, which the broker refuses) but says the user must sign in
//! again; after a new sign-in, traffic flows again without a restart.

// Test scaffolding: a setup failure must abort loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use agent::control::view::{IdentityView, TunnelState};
use agent::identity::store::{MemoryStore, SecretStore};
use agent::identity::{Identity, IdentityConfig};
use agent::runtime::RuntimeOptions;
use agent::supervisor::Timing;
use broker::server::config::EnrolmentMode;
use posture::CheckId;
use support::agent::{AgentHandle, login};
use support::broker::{BrokerConfig, LENIENT};
use support::echo::tcp_echo;
use support::{free_port, idp};

const APP: &str = "echo";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_session_closes_the_tunnel_until_the_user_signs_in_again() {
    let Some(idp) = idp::Idp::start(&idp::Options {
        access_ttl: 600,
        ..idp::Options::default()
    }) else {
        return; // node or its packages are missing on this laptop (a failure in CI)
    };
    let dir = tempfile::tempdir().unwrap();
    let echo = tcp_echo().await;
    let policy = dir.path().join("policy.rego");
    std::fs::write(&policy, LENIENT).unwrap();
    let broker = BrokerConfig::new(&idp.issuer, &dir.path().join("broker.sqlite"))
        .enrolment(EnrolmentMode::Open)
        .policy(&policy)
        .http_port(free_port())
        .udp_port(free_port())
        .verdict_ttl(60)
        .app(APP, "Echo service", echo)
        .start()
        .await;

    let mut identity_config = IdentityConfig::new(idp.issuer.parse().unwrap(), idp::CLIENT_ID);
    identity_config.resource = Some(idp::BROKER_RESOURCE.to_owned());
    let store: Arc<dyn SecretStore> = Arc::new(MemoryStore::new());
    let identity = Arc::new(Identity::new(identity_config, store.clone()));
    login(&identity).await;
    let subject = identity.whoami().unwrap().unwrap().subject;
    let options = RuntimeOptions {
        timing: Timing {
            posture_interval: time::Duration::seconds(3),
            ..Timing::default()
        },
        collect: posture::collect::Options {
            only: vec![CheckId::OsVersion],
            cache: posture::cache::Cache::disabled(),
            ..posture::collect::Options::default()
        },
        auto_connect: vec![APP.to_owned()],
    };
    let agent = AgentHandle::start(identity.clone(), store, &broker.base_url(), options);
    let local = agent
        .until_traffic_flows(APP, Duration::from_secs(30), "before the revocation")
        .await;

    // The administrator revokes the user's sessions.
    let http = reqwest::Client::new();
    support::broker::admin(
        &http,
        &broker.base_url(),
        broker::api::paths::ADMIN_REVOCATIONS,
        &serde_json::json!({"user": subject, "reason": "laptop reported stolen"}),
    )
    .await
    .unwrap();
    agent
        .until_closed(APP, &local, Duration::from_secs(10), "after the revocation")
        .await;

    // The agent says why, and that only a new sign-in helps.
    let status = agent
        .until_status(Duration::from_secs(20), "the refused sign-in", |s| {
            matches!(&s.identity, IdentityView::NeedsReauth { reason, .. }
                if reason.contains("administrator ended your session"))
        })
        .await;
    assert_eq!(status.tunnels[0].state, TunnelState::Down, "{status:#?}");

    // It stays closed: the agent does not reopen it with the same sign-in.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let status = agent.status().await;
    assert!(
        matches!(status.identity, IdentityView::NeedsReauth { .. }),
        "{status:#?}"
    );
    assert_ne!(status.tunnels[0].state, TunnelState::Up, "{status:#?}");

    // A new sign-in (in a later second than the revocation) opens it again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    login(&identity).await;
    agent
        .until_traffic_flows(APP, Duration::from_secs(30), "after signing in again")
        .await;
    let status = agent.status().await;
    assert!(
        matches!(status.identity, IdentityView::Valid { .. }),
        "{status:#?}"
    );

    agent.stop().await;
    broker.shutdown().await;
}
