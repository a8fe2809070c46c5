//! The gateway: a [`GatewayCore`] driven by one worker (a thread with its
//! own single-threaded tokio runtime) that owns the UDP socket and the real
//! OS sockets to the targets; or, with [`Gateway::start_with_workers`],
//! several such workers on one UDP port, each with the core of its share
//! of the peers (`core::gateway::Shard`).
//!
//! For each connection a peer opens inside its tunnel (to a target in its
//! grant — anything else never reaches the stack), the driver connects a real
//! TCP socket to that target and bridges the two. UDP to a granted target
//! gets one connected OS UDP socket per (peer, in-tunnel source) flow.
//!
//! This module is the public face: starting, the handle with its peer
//! commands, and the status. What the task does each turn is in `side`,
//! on the poll loop shared with the client (`crate::driver`).

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use crate::config::{ConfigError, GatewayConfig, PeerGrant};
use crate::core::gateway::{PeerError, PeerStatus, PeerView, Shard};
use crate::core::{DropCounters, GatewayCore, PeerId};
use crate::driver::flow::Segments;
use crate::driver::{Driver, udp};
use crate::key::PublicKey;

mod side;

use side::{GatewaySide, ShardLinks};

/// Why the gateway or a peer change failed.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// Bad configuration.
    #[error("invalid gateway configuration: {0}")]
    Config(#[from] ConfigError),
    /// The UDP socket could not be bound.
    #[error("cannot bind the gateway UDP socket on {addr}: {source} (is the port in use?)")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// OS error.
        source: io::Error,
    },
    /// A peer change was refused.
    #[error(transparent)]
    Peer(#[from] PeerError),
    /// A worker's thread or its runtime could not be started.
    #[error("cannot start a gateway worker: {0}")]
    Worker(io::Error),
    /// The gateway task has stopped.
    #[error("the gateway has stopped")]
    Stopped,
}

/// A point-in-time view of the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayStatus {
    /// Every configured peer.
    pub peers: Vec<PeerStatus>,
    /// Drops by reason, over all peers.
    pub dropped: DropCounters,
    /// Open connections to targets.
    pub open_connections: usize,
    /// Datagrams a worker received for another worker's peer and passed on
    /// (several workers only; see `Gateway::start_with_workers`).
    pub handed_over: u64,
}

/// What the driver publishes: each peer's view as of its last change.
/// [`GatewayHandle::status`] turns it into a [`GatewayStatus`] at the time
/// of reading, so the driver updates only the peers that changed and the
/// status is still exact (expiry countdowns and handshake timeouts are
/// computed when read).
#[derive(Debug, Default)]
pub(crate) struct StatusBoard {
    peers: BTreeMap<PeerId, PeerView>,
    dropped: DropCounters,
    open_connections: usize,
    handed_over: u64,
}

impl StatusBoard {
    fn at(&self, now: Instant) -> GatewayStatus {
        GatewayStatus {
            peers: self.peers.values().map(|v| v.at(now)).collect(),
            dropped: self.dropped,
            open_connections: self.open_connections,
            handed_over: self.handed_over,
        }
    }
}

type Reply<T> = oneshot::Sender<Result<T, PeerError>>;

/// What the handle asks of the driver task.
enum Command {
    Add(PeerGrant, Reply<()>),
    Update(PeerGrant, Reply<()>),
    Remove(PublicKey, oneshot::Sender<bool>),
    Shutdown,
}

/// Starts gateways.
#[derive(Debug)]
pub struct Gateway;

impl Gateway {
    /// Bind the UDP socket and start terminating tunnels (no peers yet),
    /// with one worker.
    pub async fn start(config: GatewayConfig) -> Result<GatewayHandle, GatewayError> {
        Self::start_with_workers(config, 1).await
    }

    /// Like [`Gateway::start`], with `workers` workers that share the UDP
    /// port (one socket and one thread each, `SO_REUSEPORT`; Linux only,
    /// elsewhere one worker), so the peers are spread over the cores. Each
    /// peer belongs to one worker (`core::gateway::Shard`), which enforces
    /// its grant and limits and reports its status. The kernel hands data
    /// messages straight to their peer's worker (`driver::udp`); what
    /// reaches another worker (handshake initiations) is forwarded to the
    /// owner.
    pub async fn start_with_workers(
        config: GatewayConfig,
        workers: usize,
    ) -> Result<GatewayHandle, GatewayError> {
        let now = Instant::now();
        config.stack.validate()?;
        let bind_error = |source| GatewayError::Bind {
            addr: config.listen,
            source,
        };
        let sockets = udp::bind_workers(config.listen, workers.max(1)).map_err(bind_error)?;
        let local_addr = sockets
            .first()
            .ok_or_else(|| bind_error(io::Error::from(io::ErrorKind::AddrNotAvailable)))?
            .local_addr()
            .map_err(bind_error)?;
        let count = u32::try_from(sockets.len()).unwrap_or(1);
        let public_key = config.private_key.public_key();
        let (inboxes, senders): (Vec<_>, Vec<_>) = (0..count)
            .map(|_| {
                let (tx, rx) = mpsc::channel(FORWARD_QUEUE);
                (rx, tx)
            })
            .unzip();
        let mut handle = GatewayHandle {
            commands: Vec::new(),
            status: Vec::new(),
            workers: Vec::new(),
            local_addr,
            public_key,
        };
        for ((index, socket), inbox) in (0..count).zip(sockets).zip(inboxes) {
            let shard = Shard { index, count };
            let core = GatewayCore::new_shard(
                config.private_key.clone(),
                config.stack.clone(),
                now,
                shard,
            )?;
            let status = Arc::new(Mutex::new(StatusBoard::default()));
            let (tx, rx) = mpsc::channel(64);
            let links = (count > 1).then(|| ShardLinks {
                inbox,
                workers: senders.clone(),
            });
            let side = GatewaySide {
                core,
                commands: rx,
                conns: HashMap::new(),
                by_peer: HashMap::new(),
                ready: Default::default(),
                flows: HashMap::new(),
                flow_ready: Default::default(),
                segments: Segments::new(),
                next_flow_sweep: now,
                status: status.clone(),
                buf: vec![0u8; crate::core::wg::MAX_DATAGRAM],
                max_flows: config.stack.max_udp_flows,
                links,
            };
            handle.commands.push(tx);
            handle.status.push(status);
            handle.workers.push(spawn_worker(index, side, socket)?);
        }
        tracing::info!(%local_addr, key = %public_key, workers = count, "gateway listening");
        Ok(handle)
    }
}

/// Run one worker on a thread of its own with a single-threaded runtime,
/// its WireGuard socket registered there. A worker is a loop over one
/// socket and its share of the peers; on a runtime shared by several
/// workers, which thread ran which worker changed from wakeup to wakeup
/// (work stealing) and two workers often shared one core while the other
/// idled. Its own thread lets the OS keep each worker running on a core.
fn spawn_worker(
    index: u32,
    side: GatewaySide,
    socket: udp::OpenSocket,
) -> Result<oneshot::Receiver<()>, GatewayError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(GatewayError::Worker)?;
    let (done, finished) = oneshot::channel();
    std::thread::Builder::new()
        .name(format!("gw-worker-{index}"))
        .spawn(move || {
            runtime.block_on(async move {
                match socket.register() {
                    Ok(udp) => Driver::new(side, udp).run().await,
                    Err(e) => tracing::error!(error = %e, "gateway worker cannot use its socket"),
                }
            });
            let _ = done.send(());
        })
        .map_err(GatewayError::Worker)?;
    Ok(finished)
}

/// Datagrams one worker may queue for another before they are dropped
/// (and counted as `queue_full`).
const FORWARD_QUEUE: usize = 4096;

/// Control of a running gateway. Dropping it stops the gateway.
#[derive(Debug)]
pub struct GatewayHandle {
    /// One per worker, by shard index.
    commands: Vec<mpsc::Sender<Command>>,
    status: Vec<Arc<Mutex<StatusBoard>>>,
    /// One per worker: closed when its thread ends.
    workers: Vec<oneshot::Receiver<()>>,
    local_addr: SocketAddr,
    public_key: PublicKey,
}

impl GatewayHandle {
    /// Where the gateway listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The gateway's public key.
    pub fn public_key(&self) -> PublicKey {
        self.public_key
    }

    /// The command channel of the worker that owns `key`.
    fn owner(&self, key: &PublicKey) -> Result<&mpsc::Sender<Command>, GatewayError> {
        let count = u32::try_from(self.commands.len()).unwrap_or(1);
        let index = usize::try_from(Shard::of_key(key, count)).unwrap_or(0);
        self.commands.get(index).ok_or(GatewayError::Stopped)
    }

    async fn call<T>(
        &self,
        key: &PublicKey,
        make: impl FnOnce(Reply<T>) -> Command,
    ) -> Result<T, GatewayError> {
        let (tx, rx) = oneshot::channel();
        self.owner(key)?
            .send(make(tx))
            .await
            .map_err(|_| GatewayError::Stopped)?;
        Ok(rx.await.map_err(|_| GatewayError::Stopped)??)
    }

    /// Start accepting a client tunnel.
    pub async fn add_peer(&self, grant: PeerGrant) -> Result<(), GatewayError> {
        let key = grant.public_key;
        self.call(&key, |r| Command::Add(grant, r)).await
    }

    /// Replace a peer's grant; connections to targets it loses are reset.
    pub async fn update_peer(&self, grant: PeerGrant) -> Result<(), GatewayError> {
        let key = grant.public_key;
        self.call(&key, |r| Command::Update(grant, r)).await
    }

    /// Remove a peer at once: its connections are reset and its keys
    /// forgotten. Returns whether it existed.
    pub async fn remove_peer(&self, key: PublicKey) -> Result<bool, GatewayError> {
        let (tx, rx) = oneshot::channel();
        self.owner(&key)?
            .send(Command::Remove(key, tx))
            .await
            .map_err(|_| GatewayError::Stopped)?;
        rx.await.map_err(|_| GatewayError::Stopped)
    }

    /// Current status (every worker's peers; counters summed).
    pub fn status(&self) -> GatewayStatus {
        let now = Instant::now();
        let mut all = GatewayStatus {
            peers: Vec::new(),
            dropped: DropCounters::default(),
            open_connections: 0,
            handed_over: 0,
        };
        for board in &self.status {
            let s = board.lock().unwrap_or_else(PoisonError::into_inner).at(now);
            all.peers.extend(s.peers);
            all.dropped = all.dropped.plus(&s.dropped);
            all.open_connections += s.open_connections;
            all.handed_over += s.handed_over;
        }
        all
    }

    /// Stop: reset every connection, close every socket, wait for it.
    pub async fn shutdown(mut self) {
        for c in &self.commands {
            let _ = c.send(Command::Shutdown).await;
        }
        for done in std::mem::take(&mut self.workers) {
            // A closed channel is an ended worker, whether it said so or
            // its thread ended without a word.
            let _ = done.await;
        }
    }
}

impl Drop for GatewayHandle {
    fn drop(&mut self) {
        for c in &self.commands {
            let _ = c.try_send(Command::Shutdown);
        }
    }
}
