//! The gateway: a [`GatewayCore`] driven by one tokio task that owns the UDP
//! socket and the real OS sockets to the targets.
//!
//! For each connection a peer opens inside its tunnel (to a target in its
//! grant — anything else never reaches the stack), the driver connects a real
//! TCP socket to that target and bridges the two. UDP to a granted target
//! gets one connected OS UDP socket per (peer, in-tunnel source) flow.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::future::{Future, poll_fn};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Sleep;

use crate::config::{ConfigError, GatewayConfig, PeerGrant, Target};
use crate::core::gateway::{PeerError, PeerStatus};
use crate::core::{ConnId, DropCounters, GatewayCore, GatewayEvent, PeerId};
use crate::driver::bridge::{Pumped, TcpBridge};
use crate::driver::udp::{self, Outbox, UdpIo};
use crate::key::PublicKey;

/// Connecting to a target must finish within this time.
const TARGET_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Idle UDP flows are closed after this.
const UDP_FLOW_IDLE: Duration = Duration::from_secs(120);
/// Most loop turns per wakeup before yielding.
const TURNS_PER_WAKEUP: usize = 32;

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

type Reply<T> = oneshot::Sender<Result<T, PeerError>>;

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
        let status = Arc::new(Mutex::new(GatewayStatus {
            peers: Vec::new(),
            dropped: DropCounters::default(),
            open_connections: 0,
        }));
        let (tx, rx) = mpsc::channel(64);
        let public_key = core.public_key();
        tracing::info!(%local_addr, key = %public_key, "gateway listening");
        let driver = GatewayDriver {
            core,
            udp: socket,
            commands: rx,
            conns: HashMap::new(),
            flows: HashMap::new(),
            sleep: Box::pin(tokio::time::sleep(Duration::ZERO)),
            status: status.clone(),
            buf: vec![0u8; crate::core::wg::MAX_DATAGRAM],
        };
        let task = tokio::spawn(driver.run());
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
    status: Arc<Mutex<GatewayStatus>>,
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
            .clone()
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

type ConnectFuture = Pin<Box<dyn Future<Output = io::Result<TcpStream>> + Send>>;

enum Conn {
    Connecting(ConnectFuture),
    Open(TcpBridge),
}

struct Flow {
    socket: UdpSocket,
    last: Instant,
}

struct GatewayDriver {
    core: GatewayCore,
    udp: UdpIo,
    commands: mpsc::Receiver<Command>,
    conns: HashMap<(PeerId, ConnId), Conn>,
    /// (peer, target, client's in-tunnel endpoint) -> OS socket.
    flows: HashMap<(PeerId, Target, SocketAddr), Flow>,
    sleep: Pin<Box<Sleep>>,
    status: Arc<Mutex<GatewayStatus>>,
    buf: Vec<u8>,
}

fn expiry(wall: SystemTime, now: Instant) -> Instant {
    now + wall
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO)
}

impl GatewayDriver {
    async fn run(mut self) {
        poll_fn(|cx| self.poll(cx)).await;
        // Fail closed: every peer removed (RSTs into the tunnels), every
        // target connection reset.
        let now = Instant::now();
        let keys: Vec<PublicKey> = self
            .core
            .peer_statuses(now)
            .iter()
            .map(|p| p.public_key)
            .collect();
        for k in keys {
            self.core.remove_peer(now, &k);
        }
        while let Some((to, d)) = self.core.poll_transmit() {
            let _ = self.udp.try_send_to(&d, to);
        }
        for (_, conn) in self.conns.drain() {
            if let Conn::Open(b) = conn {
                b.reset();
            }
        }
        self.flows.clear();
        self.publish_status(now);
        tracing::info!("gateway stopped");
    }

    fn publish_status(&self, now: Instant) {
        let mut s = self.status.lock().unwrap_or_else(PoisonError::into_inner);
        s.peers = self.core.peer_statuses(now);
        s.dropped = self.core.dropped();
        s.open_connections = self.conns.len();
    }

    /// Applies one command. The status snapshot is published before the
    /// caller hears back, so `status()` after an awaited add/update/remove
    /// already shows it (it used to lag until the loop went idle, which made
    /// "restore, then read the peers" racy).
    fn handle_command(&mut self, cmd: Command, now: Instant) {
        match cmd {
            Command::Add(grant, reply) => {
                let exp = expiry(grant.expires_at, now);
                let r = self
                    .core
                    .add_peer(now, SystemTime::now(), grant, exp)
                    .map(|_| ());
                self.handle_events();
                self.publish_status(now);
                let _ = reply.send(r);
            }
            Command::Update(grant, reply) => {
                let exp = expiry(grant.expires_at, now);
                let r = self
                    .core
                    .update_peer(now, SystemTime::now(), grant, exp)
                    .map(|_| ());
                self.handle_events();
                self.publish_status(now);
                let _ = reply.send(r);
            }
            Command::Remove(key, reply) => {
                let removed = self.core.remove_peer(now, &key).is_some();
                self.handle_events();
                self.publish_status(now);
                let _ = reply.send(removed);
            }
            Command::Shutdown => self.handle_events(),
        }
    }

    /// Drop OS sockets of connections and peers the core has let go of.
    fn handle_events(&mut self) {
        while let Some(ev) = self.core.poll_event() {
            match ev {
                GatewayEvent::TcpAccepted { peer, conn, target } => {
                    tracing::debug!(?peer, %target, "connecting to target");
                    let fut = async move {
                        match tokio::time::timeout(
                            TARGET_CONNECT_TIMEOUT,
                            TcpStream::connect(target.addr),
                        )
                        .await
                        {
                            Ok(r) => r,
                            Err(_) => {
                                Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))
                            }
                        }
                    };
                    self.conns
                        .insert((peer, conn), Conn::Connecting(Box::pin(fut)));
                }
                GatewayEvent::PeerRemoved { peer, .. } => {
                    let keys: Vec<(PeerId, ConnId)> = self
                        .conns
                        .keys()
                        .filter(|(p, _)| *p == peer)
                        .copied()
                        .collect();
                    for k in keys {
                        if let Some(Conn::Open(b)) = self.conns.remove(&k) {
                            b.reset();
                        }
                    }
                    self.flows.retain(|(p, _, _), _| *p != peer);
                }
            }
        }
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        for _ in 0..TURNS_PER_WAKEUP {
            let now = Instant::now();
            let mut progress = false;
            loop {
                match self.commands.poll_recv(cx) {
                    Poll::Ready(Some(Command::Shutdown)) | Poll::Ready(None) => {
                        return Poll::Ready(());
                    }
                    Poll::Ready(Some(cmd)) => {
                        progress = true;
                        self.handle_command(cmd, now);
                    }
                    Poll::Pending => break,
                }
            }
            progress |= self.receive_datagrams(cx, now);
            self.core.poll(now);
            self.handle_events();
            progress |= self.pump_connections(cx, now);
            progress |= self.pump_udp(cx, now);
            self.core.poll(now);
            self.handle_events();
            progress |= self.send_datagrams(cx);
            if !progress {
                self.publish_status(now);
                let deadline = self.core.poll_timeout(now);
                self.sleep.as_mut().reset(deadline.into());
                if self.sleep.as_mut().poll(cx).is_ready() {
                    continue;
                }
                return Poll::Pending;
            }
        }
        self.publish_status(Instant::now());
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    fn receive_datagrams(&mut self, cx: &mut Context<'_>, now: Instant) -> bool {
        let core = &mut self.core;
        self.udp
            .recv(cx, |from, d| core.handle_datagram(now, from, d))
    }

    fn send_datagrams(&mut self, cx: &mut Context<'_>) -> bool {
        self.udp.send(cx, &mut GatewayOutbox(&mut self.core))
    }

    fn pump_connections(&mut self, cx: &mut Context<'_>, now: Instant) -> bool {
        let mut progress = false;
        let mut finished = Vec::new();
        let mut touched = Vec::new();
        for ((peer, id), conn) in &mut self.conns {
            if let Conn::Connecting(fut) = conn {
                match fut.as_mut().poll(cx) {
                    Poll::Pending => continue,
                    Poll::Ready(Ok(stream)) => {
                        progress = true;
                        *conn = Conn::Open(TcpBridge::new(stream));
                    }
                    Poll::Ready(Err(e)) => {
                        tracing::debug!(error = %e, "target connect failed; resetting the tunnel connection");
                        finished.push((*peer, *id));
                        continue;
                    }
                }
            }
            let Conn::Open(bridge) = conn else { continue };
            let Some(socket) = self.core.tcp(*peer, *id) else {
                finished.push((*peer, *id));
                continue;
            };
            match bridge.pump(socket, cx) {
                Pumped::Running(p) => {
                    if p {
                        progress = true;
                        touched.push(*peer);
                    }
                }
                Pumped::Finished => {
                    progress = true;
                    finished.push((*peer, *id));
                }
            }
        }
        for (peer, id) in finished {
            if let Some(Conn::Open(b)) = self.conns.remove(&(peer, id)) {
                drop(b);
            }
            self.core.remove_conn(now, peer, id);
        }
        touched.sort_unstable();
        touched.dedup();
        for peer in touched {
            self.core.poll_peer(now, peer);
        }
        progress
    }

    fn pump_udp(&mut self, cx: &mut Context<'_>, now: Instant) -> bool {
        let mut progress = false;
        // Tunnel -> targets.
        for peer in self.core.peer_ids() {
            for target in self.core.udp_targets(peer) {
                while let Some((n, client)) = self.core.udp_recv(peer, target, &mut self.buf) {
                    progress = true;
                    let key = (peer, target, client);
                    let flow = match self.flows.entry(key) {
                        Entry::Occupied(entry) => entry.into_mut(),
                        Entry::Vacant(entry) => match open_flow(target) {
                            Ok(socket) => entry.insert(Flow { socket, last: now }),
                            Err(e) => {
                                tracing::debug!(error = %e, %target, "cannot open UDP flow");
                                continue;
                            }
                        },
                    };
                    flow.last = now;
                    let _ = flow.socket.try_send(&self.buf[..n]);
                }
            }
        }
        // Targets -> tunnel.
        let mut idle = Vec::new();
        for ((peer, target, client), flow) in &mut self.flows {
            loop {
                match flow.socket.try_recv(&mut self.buf) {
                    Ok(n) => {
                        progress = true;
                        flow.last = now;
                        self.core.udp_send(*peer, *target, *client, &self.buf[..n]);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        if flow.socket.poll_recv_ready(cx).is_ready() {
                            continue;
                        }
                        break;
                    }
                    Err(_) => break,
                }
            }
            if now.saturating_duration_since(flow.last) > UDP_FLOW_IDLE
                || !self.core.has_peer(*peer)
            {
                idle.push((*peer, *target, *client));
            }
        }
        for k in idle {
            self.flows.remove(&k);
        }
        progress
    }
}

/// The gateway core's datagrams, each to its peer's endpoint.
struct GatewayOutbox<'a>(&'a mut GatewayCore);

impl Outbox for GatewayOutbox<'_> {
    fn next_datagram(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.0.poll_transmit()
    }

    fn recycle(&mut self, buf: Vec<u8>) {
        self.0.recycle(buf);
    }
}

/// A UDP socket connected to the target, so only the target's replies are
/// accepted by the kernel.
fn open_flow(target: Target) -> io::Result<UdpSocket> {
    let any: IpAddr = if target.addr.is_ipv4() {
        Ipv4Addr::UNSPECIFIED.into()
    } else {
        Ipv6Addr::UNSPECIFIED.into()
    };
    let socket = std::net::UdpSocket::bind(SocketAddr::new(any, 0))?;
    socket.connect(target.addr)?;
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket)
}
