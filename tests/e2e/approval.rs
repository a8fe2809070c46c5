//! End to end, with the broker in enrolment mode `approval`: the real
//! OpenID provider, the reference broker and gateway, the agent's runtime
//! and a TCP target. A freshly signed-in agent's device is held pending;
//! the agent tells the user it is waiting for IT to approve the device and
//! keeps asking; once an administrator approves it through the admin API,
//! traffic flows without restarting anything.

// Test scaffolding: a setup failure must abort loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use agent::control::view::{AWAITING_APPROVAL, EnrolmentView, TunnelState};
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
async fn a_device_waits_for_it_to_approve_it_then_connects_by_itself() {
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
        .enrolment(EnrolmentMode::Approval)
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
    let options = RuntimeOptions {
        // The shipped timing: after the approval the agent must not sit out
        // the backoff its failed attempts earned while it waited.
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
    let agent = AgentHandle::start(identity, store, &broker.base_url(), options);

    // The user is told why nothing opens, in `status` and on the app.
    let status = agent
        .until_status(Duration::from_secs(30), "waiting for approval", |s| {
            matches!(s.enrolment, EnrolmentView::PendingApproval { .. })
                && s.tunnels
                    .iter()
                    .any(|t| t.app == APP && t.reason.as_deref() == Some(AWAITING_APPROVAL))
        })
        .await;
    let EnrolmentView::PendingApproval { device_id, .. } = status.enrolment else {
        unreachable!()
    };
    assert!(
        AWAITING_APPROVAL
            .to_lowercase()
            .contains("waiting for it to approve this device")
    );
    assert_eq!(status.tunnels[0].state, TunnelState::Down);
    assert!(status.verdict.is_none(), "a pending device has no verdict");

    // It stays that way while nobody approves it (the agent keeps asking).
    tokio::time::sleep(Duration::from_secs(5)).await;
    let status = agent.status().await;
    assert!(
        matches!(status.enrolment, EnrolmentView::PendingApproval { .. }),
        "{status:#?}"
    );

    // The administrator finds it among the pending devices and approves it.
    let http = reqwest::Client::new();
    let pending: Vec<broker::api::AdminDevice> = http
        .get(format!(
            "{}{}?state=pending",
            broker.base_url(),
            broker::api::paths::ADMIN_DEVICES
        ))
        .bearer_auth(support::broker::ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(pending.len(), 1, "{pending:#?}");
    assert_eq!(pending[0].device_id, device_id);
    support::broker::admin(
        &http,
        &broker.base_url(),
        &broker::api::paths::admin_device_approve(&device_id),
        &serde_json::json!({}),
    )
    .await
    .unwrap();

    // Traffic flows, with no restart of anything.
    agent
        .until_traffic_flows(APP, Duration::from_secs(20), "after approval")
        .await;
    let status = agent.status().await;
    assert_eq!(status.enrolment, EnrolmentView::Enrolled { device_id });

    agent.stop().await;
    broker.shutdown().await;
}
