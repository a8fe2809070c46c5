//! The broker serves HTTPS with the configured certificate and key (the
//! only way it may listen beyond loopback). The certificate is made by the
//! `openssl` CLI, as an operator would.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use broker::api;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_https_with_the_configured_certificate() {
    let issuer = TestIssuer::start().await;
    let echo = tcp_echo().await;
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = support::certs::self_signed_server(dir.path(), "IP:127.0.0.1");
    let text = config(&issuer.url, &db_path(dir.path()), echo).with(|c| {
        c.server.tls_cert = Some(cert.clone());
        c.server.tls_key = Some(key.clone());
    });
    let broker = start_broker(&text).await;
    assert!(broker.base_url().starts_with("https://"));

    let root = reqwest::Certificate::from_pem(&std::fs::read(&cert).unwrap()).unwrap();
    let https = reqwest::Client::builder()
        .add_root_certificate(root)
        .build()
        .unwrap();
    let r = https
        .get(format!("{}{}", broker.base_url(), api::paths::CONFIG))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cfg: api::BrokerConfig = r.json().await.unwrap();
    assert_eq!(cfg.audience, AUDIENCE);

    // A client that does not trust the certificate gets nowhere.
    let untrusting = reqwest::Client::new();
    assert!(
        untrusting
            .get(format!("{}{}", broker.base_url(), api::paths::CONFIG))
            .send()
            .await
            .is_err()
    );
    broker.shutdown().await;
}
