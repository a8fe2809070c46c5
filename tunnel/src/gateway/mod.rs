//! The gateway: a [`GatewayCore`] driven by one tokio task that owns the UDP
//! socket and the real OS sockets to the targets.
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
use tokio::task::JoinHandle;

use crate::config::{ConfigError, GatewayConfig, PeerGrant};
use crate::core::gateway::{PeerError, PeerStatus, PeerView};
use crate::core::{DropCounters, GatewayCore, PeerId};
use crate::driver::{Driver, udp};
use crate::key::PublicKey;

mod side;

use side::GatewaySide;

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
}

impl StatusBoard {
    fn at(&self, now: Instant) -> GatewayStatus {
        GatewayStatus {
            peers: self.peers.values().map(|v| v.at(now)).collect(),
            dropped: self.dropped,
            open_connections: self.open_connections,
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
    /// Bind the UDP socket and start terminating tunnels (no peers yet).
    pub async fn start(config: GatewayConfig) -> Result<GatewayHandle, GatewayError> {
        let now = Instant::now();
        let core = GatewayCore::new(config.private_key.clone(), config.stack.clone(), now)?;
        let socket = udp::bind(config.listen).map_err(|source| GatewayError::Bind {
            addr: config.listen,
            source,
        })?;
        let local_addr = socket.local_addr().map_err(|source| GatewayError::Bind {
            addr: config.listen,
            source,
        })?;
        let status = Arc::new(Mutex::new(StatusBoard::default()));
        let (tx, rx) = mpsc::channel(64);
        let public_key = core.public_key();
        tracing::info!(%local_addr, key = %public_key, "gateway listening");
        let side = GatewaySide {
            core,
            commands: rx,
            conns: HashMap::new(),
            by_peer: HashMap::new(),
            ready: Default::default(),
            flows: HashMap::new(),
            flow_ready: Default::default(),
            next_flow_sweep: now,
            status: status.clone(),
            buf: vec![0u8; crate::core::wg::MAX_DATAGRAM],
            max_flows: config.stack.max_udp_flows,
        };
        let task = tokio::spawn(Driver::new(side, socket).run());
        Ok(GatewayHandle {
            commands: tx,
            status,
            task: Some(task),
            local_addr,
            public_key,
        })
    }
}

/// Control of a running gateway. Dropping it stops the gateway.
#[derive(Debug)]
pub struct GatewayHandle {
    commands: mpsc::Sender<Command>,
    status: Arc<Mutex<StatusBoard>>,
    task: Option<JoinHandle<()>>,
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

    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, GatewayError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .await
            .map_err(|_| GatewayError::Stopped)?;
        Ok(rx.await.map_err(|_| GatewayError::Stopped)??)
    }

    /// Start accepting a client tunnel.
    pub async fn add_peer(&self, grant: PeerGrant) -> Result<(), GatewayError> {
        self.call(|r| Command::Add(grant, r)).await
    }

    /// Replace a peer's grant; connections to targets it loses are reset.
    pub async fn update_peer(&self, grant: PeerGrant) -> Result<(), GatewayError> {
        self.call(|r| Command::Update(grant, r)).await
    }

    /// Remove a peer at once: its connections are reset and its keys
    /// forgotten. Returns whether it existed.
    pub async fn remove_peer(&self, key: PublicKey) -> Result<bool, GatewayError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Remove(key, tx))
            .await
            .map_err(|_| GatewayError::Stopped)?;
        rx.await.map_err(|_| GatewayError::Stopped)
    }

    /// Current status.
    pub fn status(&self) -> GatewayStatus {
        self.status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .at(Instant::now())
    }

    /// Stop: reset every connection, close every socket, wait for it.
    pub async fn shutdown(mut self) {
        let _ = self.commands.send(Command::Shutdown).await;
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for GatewayHandle {
    fn drop(&mut self) {
        let _ = self.commands.try_send(Command::Shutdown);
    }
}
