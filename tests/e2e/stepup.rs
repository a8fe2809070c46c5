//! End to end, RFC 9470 step-up: the broker requires MFA (the `acr` of a
//! password + one-time-code sign-in), the user signed in with a password
//! only. Real OpenID provider (MFA on request, as where MFA is per
//! application), reference broker and gateway, the agent's runtime, a TCP
//! target. The broker answers the agent with a step-up challenge; the agent
//! keeps the tunnel closed and shows what the next sign-in must show; the
//! step-up sign-in (what `sallyport login` and the tray's "Sign in again…"
//! do) asks the provider for it, and the tunnel comes up by itself.

// Test scaffolding: a setup failure must abort loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use agent::control::view::{IdentityView, StepUpView, TunnelState};
use agent::identity::session::StepUpChallenge;
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
async fn a_password_only_sign_in_steps_up_and_the_tunnel_comes_back() {
    let Some(idp) = idp::Idp::start(&idp::Options {
        mfa: false,
        mfa_on_request: true,
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
        .with(|c| c.oidc.required_acr = vec![idp::ACR_MFA.to_owned()])
        .start()
        .await;

    let mut identity_config = IdentityConfig::new(idp.issuer.parse().unwrap(), idp::CLIENT_ID);
    identity_config.resource = Some(idp::BROKER_RESOURCE.to_owned());
    // This deployment leaves MFA to the broker: the agent accepts a
    // password-only sign-in, the broker does not.
    identity_config.mfa.amr.push("pwd".to_owned());
    let store: Arc<dyn SecretStore> = Arc::new(MemoryStore::new());
    let identity = Arc::new(Identity::new(identity_config, store.clone()));
    login(&identity).await;
    assert_eq!(
        identity.whoami().unwrap().unwrap().mfa_method,
        "amr pwd",
        "the provider must not have asked for a second factor yet"
    );
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

    // The broker's challenge reaches the user: what to sign in with, and no
    // tunnel meanwhile.
    let status = agent
        .until_status(Duration::from_secs(30), "the step-up request", |s| {
            matches!(
                &s.identity,
                IdentityView::NeedsReauth {
                    step_up: Some(_),
                    ..
                }
            )
        })
        .await;
    assert_ne!(status.tunnels[0].state, TunnelState::Up, "{status:#?}");
    assert!(status.tunnels[0].forwards.is_empty(), "{status:#?}");
    let IdentityView::NeedsReauth {
        step_up: Some(StepUpView {
            acr_values,
            max_age,
        }),
        ..
    } = status.identity
    else {
        unreachable!()
    };
    assert_eq!(acr_values, vec![idp::ACR_MFA.to_owned()]);
    assert_eq!(max_age, None);

    // The step-up sign-in, with what the broker asked for (in a later
    // second, so its auth_time is new).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let open = |url: &url::Url| {
        let url = url.to_string();
        tokio::spawn(async move {
            idp::complete_browser_login(&url).await;
        });
        Ok(())
    };
    let who = identity
        .step_up(
            &StepUpChallenge {
                acr_values,
                max_age,
            },
            &open,
        )
        .await
        .unwrap();
    assert_eq!(
        who.mfa_method, "amr pwd",
        "the agent's first accepted method"
    );

    // The tunnel comes back by itself.
    agent
        .until_traffic_flows(APP, Duration::from_secs(30), "after the step-up")
        .await;
    let status = agent.status().await;
    assert!(
        matches!(status.identity, IdentityView::Valid { .. }),
        "{status:#?}"
    );

    agent.stop().await;
    broker.shutdown().await;
}
