//! The diagnostics bundle's connectivity check against real sockets: a
//! broker name that does not resolve, a port nobody listens on, and an
//! HTTPS broker whose certificate (made by the `openssl` CLI, as an
//! operator would) this machine does not trust — its chain is still
//! described, and nothing is sent over it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use agent::connectivity::{Outcome, check};
use tokio::io::AsyncReadExt;

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

#[tokio::test]
async fn a_name_that_does_not_resolve_stops_at_dns() {
    let url = "https://broker.sallyport-test.invalid".parse().unwrap();
    let report = check(&url, &client()).await;
    assert_eq!(report.dns.outcome, Outcome::Failed, "{report:#?}");
    assert!(report.dns.detail.contains("broker.sallyport-test.invalid"));
    assert_eq!(report.tcp.outcome, Outcome::Skipped);
    assert_eq!(report.clock_skew_seconds, None);
}

#[tokio::test]
async fn a_closed_port_stops_at_tcp() {
    // Bound then dropped: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}").parse().unwrap();
    let report = check(&url, &client()).await;
    assert_eq!(report.dns.outcome, Outcome::Ok, "{report:#?}");
    assert_eq!(report.tcp.outcome, Outcome::Failed, "{report:#?}");
    assert_eq!(report.http.outcome, Outcome::Skipped);
}

#[tokio::test]
async fn an_untrusted_certificate_is_described_and_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = support::certs::self_signed_server_named(
        dir.path(),
        "IP:127.0.0.1",
        "sallyport-test-broker",
        30,
    );

    let certs: Vec<rustls::pki_types::CertificateDer<'static>> =
        rustls::pki_types::pem::PemObject::pem_file_iter(&cert)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
    let key = rustls::pki_types::pem::PemObject::from_pem_file(&key).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    // Counts the bytes of application data the client sends after a
    // completed handshake: there must be none.
    let received = Arc::new(AtomicUsize::new(0));
    let seen = received.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let seen = seen.clone();
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(tcp).await {
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = tls.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        seen.fetch_add(n, Ordering::SeqCst);
                    }
                }
            });
        }
    });

    let url = format!("https://127.0.0.1:{port}").parse().unwrap();
    let report = check(&url, &client()).await;
    assert_eq!(report.tcp.outcome, Outcome::Ok, "{report:#?}");
    assert_eq!(report.tls.outcome, Outcome::Failed, "{report:#?}");
    assert!(
        report.tls.detail.contains("handshake refused"),
        "{report:#?}"
    );
    assert_eq!(report.certificates.len(), 1, "{report:#?}");
    let leaf = &report.certificates[0];
    assert!(leaf.subject.contains("sallyport-test-broker"), "{leaf:?}");
    assert!((29..=30).contains(&leaf.days_left), "{leaf:?}");
    assert_eq!(report.http.outcome, Outcome::Skipped);
    assert_eq!(received.load(Ordering::SeqCst), 0);
}
