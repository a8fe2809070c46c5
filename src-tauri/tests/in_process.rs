//! The app hosts the agent itself when none is running, on the usual
//! control socket, and leaves a running agent alone.
//!
//! Real parts: the agent's runtime and control server (agent::host) and
//! the socket protocol. The broker is a loopback port nobody listens on:
//! what matters here is who serves the socket, and an agent must run (and
//! say the broker is unreachable) without one. The agent with a real broker
//! is covered end to end in tests/e2e.
#![cfg(unix)]
// Tests panic on a failed expectation by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use agent::config::Settings;
use agent::control::Request;
use agent::control::view::StatusView;
use agent::host::HostSpec;
use sallyport_app::commands::{AgentLink, CommandError};
use sallyport_app::in_process::{Hosting, start_if_absent};

fn spec(broker_url: &str, socket: PathBuf) -> HostSpec {
    let settings = Settings {
        broker_url: Some(broker_url.to_owned()),
        // Where to sign in comes from the settings here, so the agent does
        // not need the broker to say (the broker test below covers that).
        issuer: Some("http://127.0.0.1:9/".into()),
        ..Settings::default()
    };
    HostSpec::from_settings(settings, None, socket).unwrap()
}

#[tokio::test]
async fn with_no_agent_the_app_hosts_one_that_the_cli_protocol_reaches() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("sallyport").join("agent.sock");
    let link = AgentLink::new(socket.clone());
    assert_eq!(
        link.ask(&Request::Status).await,
        Err(CommandError::NotRunning)
    );

    // A broker nobody listens on: the agent still runs and reports it.
    let hosting = start_if_absent(&link, || Ok(spec("http://127.0.0.1:9", socket.clone()))).await;
    let Hosting::InProcess(hosted) = hosting else {
        panic!("expected the app to host the agent, got {hosting:?}");
    };
    let status: StatusView = link.ask_as(&Request::Status).await.unwrap();
    assert!(status.tunnels.is_empty(), "{status:?}");

    // A second app instance (or the app restarted while it runs) finds it
    // and does not start another; the spec is not even read.
    let other = AgentLink::new(socket.clone());
    let again = start_if_absent(&other, || panic!("must not build a spec")).await;
    assert!(matches!(again, Hosting::External), "{again:?}");

    // Quitting stops it: the socket no longer answers.
    hosted.stop().await;
    assert_eq!(
        link.ask(&Request::Status).await,
        Err(CommandError::NotRunning)
    );
}

#[tokio::test]
async fn when_no_agent_can_be_hosted_the_window_is_told_why() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("sallyport").join("agent.sock");
    let link = AgentLink::new(socket);
    let hosting = start_if_absent(&link, || {
        Err(agent::host::HostError::NoBroker {
            settings_file: "/home/u/.config/sallyport/config.toml".into(),
        })
    })
    .await;
    assert!(matches!(hosting, Hosting::Unavailable(_)), "{hosting:?}");
    let err = link.ask(&Request::Status).await.unwrap_err();
    assert!(matches!(err, CommandError::CannotHost(_)), "{err:?}");
    let shown = serde_json::to_value(&err).unwrap();
    let shown = shown.as_str().unwrap();
    assert!(shown.contains("not running"), "{shown}");
    assert!(shown.contains("no access broker configured"), "{shown}");
    assert!(
        shown.contains("/home/u/.config/sallyport/config.toml"),
        "{shown}"
    );
}

#[tokio::test]
async fn a_broker_that_does_not_answer_is_reported_while_the_agent_waits_for_it() {
    // The issuer is not configured, so the hosted agent asks the broker;
    // nothing listens there (a laptop at boot, before the network is up):
    // the agent keeps running and says so, for the window and the tray.
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("sallyport").join("agent.sock");
    let link = AgentLink::new(socket.clone());
    let settings = Settings {
        broker_url: Some("http://127.0.0.1:9".into()),
        ..Settings::default()
    };
    let hosting = start_if_absent(&link, || HostSpec::from_settings(settings, None, socket)).await;
    let Hosting::InProcess(hosted) = hosting else {
        panic!("expected the socket to be claimed, got {hosting:?}");
    };
    let status: StatusView = link.ask_as(&Request::Status).await.unwrap();
    let said = status
        .broker_unreachable
        .expect("status says what it waits for");
    assert!(
        said.starts_with(agent::control::view::BROKER_UNREACHABLE),
        "{said}"
    );
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert!(
        !hosted.is_finished(),
        "the agent must keep running and retrying"
    );
    hosted.stop().await;
}
