//! The IdP down, slow, or answering garbage: a clear error within a bounded
//! time, and nothing stored. These are failures the real test IdP cannot be
//! made to produce, so tiny raw TCP servers on 127.0.0.1 stand in for it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agent::identity::client::AuthOverrides;
use agent::identity::store::MemoryStore;
use agent::identity::{Identity, IdentityConfig, IdentityError};
use url::Url;

fn identity(port: u16, store: Arc<MemoryStore>) -> Identity {
    let mut config = IdentityConfig::new(
        Url::parse(&format!("http://127.0.0.1:{port}")).unwrap(),
        "sallyport-desktop",
    );
    config.http_timeout = Duration::from_secs(2);
    Identity::new(config, store)
}

/// A server answering every request with `response` (after `delay`).
fn serve(response: &'static str, delay: Duration) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(8) {
            let Ok(mut stream) = stream else { break };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf);
                std::thread::sleep(delay);
                let _ = stream.write_all(response.as_bytes());
            });
        }
    });
    port
}

async fn login(identity: &Identity) -> (IdentityError, Duration) {
    let started = Instant::now();
    let open = |_: &Url| -> Result<(), String> { panic!("must not open a browser") };
    let err = identity
        .login_browser(&open, &AuthOverrides::default())
        .await
        .unwrap_err();
    (err, started.elapsed())
}

#[tokio::test]
async fn idp_down() {
    // Bind then drop: nothing listens on this port any more.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let store = Arc::new(MemoryStore::new());
    let (err, took) = login(&identity(port, store.clone())).await;
    assert!(matches!(err, IdentityError::Unreachable { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("cannot reach the identity provider"),
        "{err}"
    );
    assert!(took < Duration::from_secs(10));
    assert!(store.is_empty());
}

#[tokio::test]
async fn idp_slow() {
    let port = serve(
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}",
        Duration::from_secs(30),
    );
    let store = Arc::new(MemoryStore::new());
    let (err, took) = login(&identity(port, store.clone())).await;
    assert!(matches!(err, IdentityError::Timeout { .. }), "{err:?}");
    assert!(
        err.to_string().contains("did not answer within 2 s"),
        "{err}"
    );
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert!(store.is_empty());
}

#[tokio::test]
async fn idp_returns_garbage() {
    let port = serve(
        "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 21\r\nConnection: close\r\n\r\n<html>garbage</html>\n",
        Duration::ZERO,
    );
    let store = Arc::new(MemoryStore::new());
    let (err, took) = login(&identity(port, store.clone())).await;
    assert!(matches!(err, IdentityError::BadResponse { .. }), "{err:?}");
    assert!(
        err.to_string().contains("invalid discovery document"),
        "{err}"
    );
    assert!(took < Duration::from_secs(10));
    assert!(store.is_empty());
}

#[tokio::test]
async fn idp_http_error() {
    let port = serve(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        Duration::ZERO,
    );
    let store = Arc::new(MemoryStore::new());
    let (err, _) = login(&identity(port, store.clone())).await;
    assert!(
        matches!(err, IdentityError::Unreachable { ref message, .. } if message.contains("503")),
        "{err:?}"
    );
    assert!(store.is_empty());
}

#[tokio::test]
async fn plain_http_issuer_refused() {
    let mut config = IdentityConfig::new(Url::parse("http://idp.example.com").unwrap(), "c");
    config.http_timeout = Duration::from_secs(1);
    let store = Arc::new(MemoryStore::new());
    let identity = Identity::new(config, store.clone());
    let (err, _) = login(&identity).await;
    assert!(matches!(err, IdentityError::Insecure { .. }), "{err:?}");
    assert!(store.is_empty());
}
