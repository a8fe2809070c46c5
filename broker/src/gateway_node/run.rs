//! The gateway's I/O loop: the tunnel gateway, one sync stream to a
//! broker at a time, and the fail-closed timer.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;
use tunnel::{Gateway, GatewayConfig, GatewayError, GatewayHandle, StackOptions};

use super::config::{NodeConfig, NodeConfigError};
use super::lines::{Lines, MAX_LINE};
use super::peers::{Action, PeerSet, peer_grant};
use crate::api::{GatewaySync, paths};
use crate::server::gateway_sync::{NDJSON, PING_EVERY};

/// A stream that says nothing for this long is taken for dead.
const SILENCE: Duration = Duration::from_secs(3 * PING_EVERY.as_secs());
/// How long a broker may take to answer the sync request.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The wait after a stream that worked, and the longest between attempts.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(8);

/// Why the gateway cannot run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The configuration or a file it names.
    #[error(transparent)]
    Config(#[from] NodeConfigError),
    /// The tunnel gateway.
    #[error(transparent)]
    Gateway(#[from] GatewayError),
    /// The HTTPS client.
    #[error("HTTPS client: {0}")]
    Client(String),
}

/// How one sync stream ended.
enum Ended {
    /// It could not be opened (`why`), or it broke after a while.
    Failed(String),
    /// The broker refused the credential: retrying the same broker will not
    /// help, but another may be configured differently, or this one fixed.
    Refused(String),
}

/// Runs the gateway until `shutdown` completes.
pub async fn run(config: NodeConfig, shutdown: impl Future<Output = ()>) -> Result<(), RunError> {
    let token = config.token()?;
    let client = https_client(&config)?;
    let gateway = Gateway::start_with_workers(
        GatewayConfig {
            private_key: config.private_key()?,
            listen: config.listen,
            stack: StackOptions::default(),
        },
        config.workers(),
    )
    .await?;
    tracing::info!(
        listen = %gateway.local_addr(),
        public_key = %gateway.public_key(),
        workers = config.workers(),
        "gateway listening"
    );
    let mut node = Node {
        gateway,
        peers: PeerSet::default(),
        // Nothing is held at start, so there is nothing to drop yet.
        cut_off_since: Some(Instant::now()),
        grace: config.grace(),
    };
    tokio::pin!(shutdown);
    let mut backoff = FIRST_BACKOFF;
    let mut turn = 0usize;
    loop {
        let broker = &config.brokers[turn % config.brokers.len()];
        turn = turn.wrapping_add(1);
        let (ended, synced) = tokio::select! {
            ended = node.follow(&client, broker, &token) => ended,
            () = &mut shutdown => break,
        };
        match ended {
            Ended::Failed(why) => tracing::warn!(broker, %why, "sync stream ended"),
            Ended::Refused(why) => tracing::error!(broker, %why, "the broker refused this gateway"),
        }
        // A stream that delivered its full set was a working link: try
        // again soon. Otherwise back off, up to MAX_BACKOFF.
        backoff = if synced {
            FIRST_BACKOFF
        } else {
            (backoff * 2).min(MAX_BACKOFF)
        };
        // Wait before the next attempt, waking to drop every peer on time
        // if the cut-off outlasts the grace period.
        let mut wake = Instant::now() + backoff;
        if let Some(deadline) = node.drop_deadline()
            && deadline > Instant::now()
        {
            wake = wake.min(deadline);
        }
        tokio::select! {
            () = tokio::time::sleep_until(wake) => {}
            () = &mut shutdown => break,
        }
        node.fail_closed_if_due().await;
    }
    node.gateway.shutdown().await;
    Ok(())
}

/// The gateway and what it was told.
struct Node {
    gateway: GatewayHandle,
    peers: PeerSet,
    /// Since when no sync stream has been working (`None` while one is:
    /// it delivered its full set and has not gone silent or closed).
    cut_off_since: Option<Instant>,
    grace: Duration,
}

impl Node {
    /// When every peer goes unless a stream works again before.
    fn drop_deadline(&self) -> Option<Instant> {
        self.cut_off_since.map(|since| since + self.grace)
    }

    /// Drops every peer once the gateway has been cut off from the brokers
    /// for the grace period: it would not hear a revocation.
    async fn fail_closed_if_due(&mut self) {
        let due = self.drop_deadline().is_some_and(|d| Instant::now() >= d);
        if due && !self.peers.is_empty() {
            tracing::warn!(
                peers = self.peers.len(),
                "cut off from the brokers for the grace period: dropping every peer"
            );
            let actions = self.peers.clear();
            self.act(actions).await;
        }
    }

    /// Follows one broker's sync stream until it ends; says how, and
    /// whether it delivered a full set. While it works the gateway is not
    /// cut off; when it ends (or goes silent for [`SILENCE`]) the cut-off
    /// starts.
    async fn follow(
        &mut self,
        client: &reqwest::Client,
        broker: &str,
        token: &str,
    ) -> (Ended, bool) {
        let mut synced = false;
        let ended = self.read_stream(client, broker, token, &mut synced).await;
        if synced {
            self.cut_off_since = Some(Instant::now());
        }
        (ended, synced)
    }

    async fn read_stream(
        &mut self,
        client: &reqwest::Client,
        broker: &str,
        token: &str,
        synced: &mut bool,
    ) -> Ended {
        let url = format!("{}{}", broker.trim_end_matches('/'), paths::GATEWAY_SYNC);
        let request = client
            .get(&url)
            .bearer_auth(token)
            .header(reqwest::header::ACCEPT, NDJSON)
            .send();
        let mut response = match tokio::time::timeout(CONNECT_TIMEOUT, request).await {
            Err(_) => return Ended::Failed("no answer in time".into()),
            Ok(Err(e)) => return Ended::Failed(e.to_string()),
            Ok(Ok(r)) => r,
        };
        if response.status() == reqwest::StatusCode::UNAUTHORIZED {
            return Ended::Refused(
                "HTTP 401: check token_file and the broker's [[gateways]]".into(),
            );
        }
        if !response.status().is_success() {
            return Ended::Failed(format!("HTTP {}", response.status()));
        }
        let mut lines = Lines::new(MAX_LINE);
        loop {
            // Before the full set arrives the gateway is still cut off, and
            // its grace period still runs.
            let silent_at = Instant::now() + SILENCE;
            let wake = match self.drop_deadline() {
                Some(deadline) if !*synced && deadline > Instant::now() => silent_at.min(deadline),
                _ => silent_at,
            };
            let chunk = tokio::select! {
                chunk = response.chunk() => chunk,
                () = tokio::time::sleep_until(wake) => {
                    self.fail_closed_if_due().await;
                    if Instant::now() >= silent_at {
                        return Ended::Failed(format!("nothing heard for {} s", SILENCE.as_secs()));
                    }
                    continue;
                }
            };
            let bytes = match chunk {
                Ok(Some(bytes)) => bytes,
                Ok(None) => return Ended::Failed("the broker closed the stream".into()),
                Err(e) => return Ended::Failed(e.to_string()),
            };
            let complete = match lines.push(&bytes) {
                Ok(complete) => complete,
                Err(e) => return Ended::Failed(e.to_string()),
            };
            for line in complete {
                let sync: GatewaySync = match serde_json::from_slice(&line) {
                    Ok(sync) => sync,
                    Err(e) => return Ended::Failed(format!("malformed sync line: {e}")),
                };
                if !*synced {
                    if !matches!(sync, GatewaySync::Snapshot { .. }) {
                        return Ended::Failed("the stream did not start with the full set".into());
                    }
                    tracing::info!(broker, "synchronising the full peer set");
                    *synced = true;
                    self.cut_off_since = None;
                }
                let actions = self.peers.apply(sync);
                self.act(actions).await;
            }
        }
    }

    /// Makes the changes at the gateway. A peer that cannot be installed
    /// is logged and left out (its agent's handshake then gets no answer).
    async fn act(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Add(peer) => {
                    let grant = match peer_grant(&peer) {
                        Ok(grant) => grant,
                        Err(why) => {
                            tracing::warn!(%why, "skipping a peer the broker sent");
                            continue;
                        }
                    };
                    let result = match self.gateway.add_peer(grant.clone()).await {
                        Err(GatewayError::Peer(_)) => self.gateway.update_peer(grant).await,
                        other => other,
                    };
                    if let Err(e) = result {
                        tracing::warn!(error = %e, "the gateway refused a peer");
                    }
                }
                Action::Remove(key) => {
                    if let Ok(key) = tunnel::PublicKey::from_base64(&key) {
                        let _ = self.gateway.remove_peer(key).await;
                    }
                }
            }
        }
    }
}

/// The client for the brokers: rustls with the system's roots plus the
/// configured CA, no redirects (a sync request goes where it is
/// configured to, with its credential, nowhere else).
fn https_client(config: &NodeConfig) -> Result<reqwest::Client, RunError> {
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(CONNECT_TIMEOUT);
    if let Some(path) = &config.ca_certificate {
        let pem = std::fs::read(path).map_err(|source| NodeConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let ca = reqwest::Certificate::from_pem(&pem)
            .map_err(|e| RunError::Client(format!("{}: {e}", path.display())))?;
        builder = builder.add_root_certificate(ca);
    }
    builder.build().map_err(|e| RunError::Client(e.to_string()))
}
