//! An agent started while the access broker is unreachable (a laptop at
//! boot, before the network or the VPN is up) keeps running, says so in
//! `status`, and carries on by itself once the broker answers.
//!
//! Real parts: the agent's host (`sallyport run` as a library) with its
//! control socket and the OS keyring, the reference broker started late on
//! the port the agent was told, the control protocol the CLI speaks.
#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use agent::config::Settings;
use agent::control::unix::request;
use agent::control::view::{BROKER_UNREACHABLE, IdentityView, StatusView};
use agent::control::{Reply, Request};
use agent::host::{HostSpec, bind};
use support::broker::BrokerConfig;
use support::free_port;

async fn status(socket: &std::path::Path) -> StatusView {
    match request(socket, &Request::Status).await.unwrap() {
        Reply::Ok { data } => serde_json::from_value(data).unwrap(),
        Reply::Error { message } => panic!("status refused: {message}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_started_without_its_broker_waits_for_it_and_then_connects() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("run/agent.sock");
    let port = free_port();
    // No issuer in the settings: where to sign in must come from the broker.
    let settings = Settings {
        broker_url: Some(format!("http://127.0.0.1:{port}")),
        ..Settings::default()
    };
    let mut spec = HostSpec::from_settings(settings, None, socket.clone()).unwrap();
    // Its timeline in the test's directory, not this user's.
    spec.state_dir = Some(dir.path().join("state"));
    let hosted = bind(spec).await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let agent = tokio::spawn(hosted.run(async {
        let _ = stopped.await;
    }));

    // It runs, and says why nothing works yet.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!agent.is_finished(), "the agent exited: {:?}", agent.await);
    let s = status(&socket).await;
    let said = s
        .broker_unreachable
        .clone()
        .expect("status names the broker");
    assert!(said.starts_with(BROKER_UNREACHABLE), "{said}");
    assert_eq!(s.identity, IdentityView::SignedOut);
    let Reply::Error { message } = request(&socket, &Request::SignIn).await.unwrap() else {
        panic!("a sign-in cannot start before the broker says where");
    };
    assert!(message.contains(BROKER_UNREACHABLE), "{message}");
    // The timeline says so too, and `history` answers while it waits.
    let waiting = history(&socket).await;
    assert!(
        waiting
            .iter()
            .any(|e| e.kind == agent::timeline::Kind::Broker
                && e.what.contains("unreachable")
                && e.reason.is_some()),
        "{waiting:?}"
    );

    // The broker comes up on its port: the agent finds it by itself.
    let db = tempfile::tempdir().unwrap();
    let broker = BrokerConfig::new("http://127.0.0.1:9", &db.path().join("broker.sqlite"))
        .http_port(port)
        .udp_port(free_port())
        .start()
        .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = status(&socket).await;
        if s.broker_unreachable.is_none() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still unreachable after the broker started: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(!agent.is_finished());
    // The same timeline goes on once the runtime runs: the wait is still
    // in it, and so is the broker answering.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let entries = history(&socket).await;
        let connected = entries.iter().position(|e| e.what.starts_with("connected"));
        let waited = entries.iter().position(|e| e.what.contains("unreachable"));
        if let (Some(c), Some(w)) = (connected, waited) {
            assert!(w < c, "{entries:?}");
            break;
        }
        assert!(Instant::now() < deadline, "{entries:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = stop.send(());
    agent.await.unwrap().unwrap();
    broker.shutdown().await;
}

async fn history(socket: &std::path::Path) -> Vec<agent::timeline::Entry> {
    match request(socket, &Request::History { since: None })
        .await
        .unwrap()
    {
        Reply::Ok { data } => serde_json::from_value(data).unwrap(),
        Reply::Error { message } => panic!("history refused: {message}"),
    }
}
