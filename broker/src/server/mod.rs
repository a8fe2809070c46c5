//! The reference access broker (feature `server`): the v1 HTTP API over
//! SQLite or PostgreSQL state ([`store`]), with the WireGuard gateway of crate `tunnel` in the same
//! process. Enforcement happens at the gateway: a grant is a peer there, and
//! closing, expiring or revoking a grant removes the peer before the API
//! answers.
//!
//! Layout: pure decisions in [`eat`] (attestation), [`token`] (access
//! tokens), [`mfa`] (how the caller signed in), [`dpop`] (proofs of
//! possession of the device key), [`grants`] (expiry, addresses), [`wgkey`]
//! (which WireGuard keys a grant may name) and [`config`]; JOSE in
//! [`jose`]; state in
//! [`store`]; the operations in [`service`]; routes in [`http`]; the time
//! they all decide on in [`clock`].

pub mod access;
pub mod audit_chain;
pub mod audit_sink;
pub mod audit_writer;
pub mod clock;
pub mod config;
pub mod dpop;
pub mod eat;
pub mod events;
pub mod gateway_sync;
pub mod grants;
pub mod http;
pub mod jose;
pub mod keyattest;
pub mod mfa;
pub mod relay;
pub mod remote_gateways;
pub mod service;
pub mod state_files;
pub mod store;
pub mod support_view;
pub mod token;
pub mod wgkey;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum_server::Handle;
use axum_server::tls_rustls::RustlsConfig;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::task::JoinHandle;
use tunnel::{Gateway, GatewayConfig, GatewayStatus, PublicKey, StackOptions};

pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{Config, ConfigError, Settings};
pub use service::{Broker, StartError};

use service::LoadedPolicy;

/// How often expired grants are swept from the store (the gateway drops
/// their peers itself at the exact expiry). The tick is real (tokio) time;
/// whether a grant is due is decided on the broker's [`Clock`], so with a
/// [`ManualClock`] a grant moved past its expiry is closed within a tick.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// A running broker.
#[derive(Debug)]
pub struct BrokerHandle {
    addr: SocketAddr,
    tls: bool,
    broker: Option<Arc<Broker>>,
    http: Handle<SocketAddr>,
    server: Option<JoinHandle<std::io::Result<()>>>,
    sweeper: JoinHandle<()>,
    /// Follows the other replicas' messages (PostgreSQL only).
    follower: Option<JoinHandle<()>>,
}

impl BrokerHandle {
    /// Where the HTTP API listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The API's base URL (`http://127.0.0.1:port` or `https://...`).
    pub fn base_url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    fn broker(&self) -> Option<&Arc<Broker>> {
        self.broker.as_ref()
    }

    /// The gateway's UDP address.
    pub fn gateway_addr(&self) -> Option<SocketAddr> {
        self.broker().map(|b| b.gateway().local_addr())
    }

    /// The gateway's WireGuard public key.
    pub fn gateway_public_key(&self) -> Option<PublicKey> {
        self.broker().map(|b| b.gateway().public_key())
    }

    /// The gateway's peers and counters right now.
    pub fn gateway_status(&self) -> Option<GatewayStatus> {
        self.broker().map(|b| b.gateway().status())
    }

    /// Stops serving, closes connections, stops the gateway (every peer
    /// removed), and releases the database.
    pub async fn shutdown(mut self) {
        self.http.graceful_shutdown(Some(Duration::from_secs(2)));
        self.sweeper.abort();
        if let Some(follower) = self.follower.take() {
            follower.abort();
            let _ = follower.await;
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
        let _ = (&mut self.sweeper).await;
        if let Some(broker) = self.broker.take() {
            match Arc::try_unwrap(broker) {
                Ok(broker) => broker.shutdown().await,
                Err(shared) => {
                    tracing::warn!(
                        "broker still referenced at shutdown; the gateway stops when it is dropped"
                    );
                    drop(shared);
                }
            }
        }
    }
}

impl Broker {
    /// Stops the gateway and closes the store.
    pub async fn shutdown(self) {
        let (gateway, store) = self.into_parts();
        gateway.shutdown().await;
        drop(store);
    }
}

fn load_tls(cert: &std::path::Path, key: &std::path::Path) -> Result<RustlsConfig, StartError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| StartError::Listen(format!("TLS certificate {}: {e}", cert.display())))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| StartError::Listen(format!("TLS key {}: {e}", key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StartError::Listen(format!("TLS: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| StartError::Listen(format!("TLS certificate and key do not fit: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(RustlsConfig::from_config(Arc::new(config)))
}

/// Completes on Ctrl-C or, on Unix, SIGTERM (how systemd stops a service):
/// when the broker and the separate gateway shut down gracefully.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// Starts the broker on the system clock: opens the store, loads the
/// policy, starts the gateway with its persistent key, restores open grants,
/// then serves the API.
pub async fn start(settings: Settings) -> Result<BrokerHandle, StartError> {
    start_with_clock(settings, Arc::new(SystemClock)).await
}

/// [`start`], with every expiry decided and every record stamped on `clock`
/// instead of the system clock: tests pass a [`ManualClock`] and move it
/// rather than wait. Timers that only pace work (the sweep tick, the
/// gateway's peer timers) stay on real time; see [`clock`].
pub async fn start_with_clock(
    settings: Settings,
    clock: Arc<dyn Clock>,
) -> Result<BrokerHandle, StartError> {
    let database = &settings.raw.server.database;
    let location = settings.database();
    // The directory holds gateway.key on either backend; the file is
    // SQLite's.
    match &location {
        store::Database::Sqlite(path) => state_files::prepare_database(path)?,
        store::Database::Postgres(_) => state_files::prepare_directory(database)?,
    }
    let store = store::open_with(&location, settings.raw.server.database_ca.as_deref())?;
    let audit_writer = audit_writer::AuditWriter::start(store.clone())?;
    let policy = LoadedPolicy::load(&settings)?;
    // The gateway key persists (agents hold grants naming it, and they must
    // stay valid across a restart) in its own 0600 file, not the database.
    let private_key = state_files::gateway_key(&*store, &state_files::gateway_key_path(database))?;
    let gateway = Gateway::start(GatewayConfig {
        private_key,
        listen: settings.raw.gateway.listen,
        stack: StackOptions {
            max_connections: settings.raw.limits.max_tunnel_connections_per_peer,
            max_udp_flows: settings.raw.limits.max_udp_flows_per_peer,
            ..StackOptions::default()
        },
    })
    .await?;
    // Fetches the issuer's discovery document and keys only: no redirect is
    // followed, so a compromised or misconfigured host cannot point the
    // broker at keys elsewhere (token::JwksCache refuses a 3xx answer).
    let http_client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| StartError::Listen(format!("HTTP client: {e}")))?;
    let tls = match (&settings.raw.server.tls_cert, &settings.raw.server.tls_key) {
        (Some(cert), Some(key)) => Some(load_tls(cert, key)?),
        _ => None,
    };
    let tpm_cas = keyattest::TrustAnchors::load(&settings.raw.enrolment.tpm_ca_certificates)
        .map_err(StartError::TpmCa)?;
    let listen = settings.raw.server.listen;
    let sink = audit_sink::AuditSink::start(
        settings.raw.audit.jsonl.as_deref(),
        settings.syslog.as_ref(),
    )
    .map_err(|e| StartError::Listen(e.to_string()))?;
    let broker = Arc::new(Broker::new(
        settings,
        store,
        policy,
        gateway,
        http_client,
        clock,
        tpm_cas,
        sink,
        audit_writer,
    ));
    // Follow the other replicas from the newest message on: what came
    // before is in the store, read below and on every later call.
    let follower = match broker.store().follow_relayed() {
        Some(wake) => {
            let last = broker.store().last_relayed()?;
            Some(tokio::spawn(relay::follow(broker.clone(), wake, last)))
        }
        None => None,
    };
    let restored = broker
        .restore()
        .await
        .map_err(|e| StartError::Listen(format!("restoring grants: {}", e.problem.detail)))?;
    tracing::info!(restored, "open grants reinstalled at the gateway");

    let listener = std::net::TcpListener::bind(listen)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|e| StartError::Listen(format!("cannot listen on {listen}: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| StartError::Listen(e.to_string()))?;
    let is_tls = tls.is_some();
    broker.listening_at(if is_tls { "https" } else { "http" }, addr);
    let handle = Handle::new();
    let app =
        http::router(broker.clone()).into_make_service_with_connect_info::<std::net::SocketAddr>();
    let server = match tls {
        Some(tls) => {
            let server = axum_server::from_tcp_rustls(listener, tls)
                .map_err(|e| StartError::Listen(e.to_string()))?
                .handle(handle.clone());
            tokio::spawn(server.serve(app))
        }
        None => {
            let server = axum_server::from_tcp(listener)
                .map_err(|e| StartError::Listen(e.to_string()))?
                .handle(handle.clone());
            tokio::spawn(server.serve(app))
        }
    };
    let sweeper = {
        let broker = Arc::downgrade(&broker);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SWEEP_INTERVAL);
            loop {
                tick.tick().await;
                let Some(broker) = broker.upgrade() else {
                    return;
                };
                broker.sweep_dpop();
                broker.audit_tunnel_limits();
                if let Err(e) = broker.expire_due().await {
                    tracing::warn!(detail = %e.problem.detail, "expiry sweep failed");
                }
            }
        })
    };
    tracing::info!(%addr, tls = is_tls, "broker listening");
    Ok(BrokerHandle {
        addr,
        tls: is_tls,
        broker: Some(broker),
        http: handle,
        server: Some(server),
        sweeper,
        follower,
    })
}
