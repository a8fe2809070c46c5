//! The client tunnel: a [`ClientCore`] driven by one tokio task that owns
//! the WireGuard UDP socket and the application's local listeners.
//!
//! Everything of one tunnel runs in that one task (no locks around the core,
//! no channels per packet); SOCKS negotiation alone runs in short-lived tasks
//! so a slow client cannot stall the tunnel.

use std::collections::HashMap;
use std::future::poll_fn;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Sleep;

use crate::config::{ConfigError, Protocol, Target, TunnelConfig};
use crate::core::client::CoreStatus;
use crate::core::{ClientCore, CloseReason, ConnId, DropCounters, HandshakeState};
use crate::driver::bridge::{Connect, Pumped, TcpBridge};
use crate::driver::udp::{self, Outbox, UdpIo};
use crate::key::PublicKey;
use crate::socks::{self, Reply};

/// How long a SOCKS client has to send its request.
const SOCKS_NEGOTIATION_TIMEOUT: Duration = Duration::from_secs(10);
/// Idle UDP flows (one per local source address) are forgotten after this.
const UDP_FLOW_IDLE: Duration = Duration::from_secs(120);
/// A connect inside the tunnel that is not answered in this time fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// Most loop turns per wakeup before yielding to other tasks.
const TURNS_PER_WAKEUP: usize = 32;

/// Why a tunnel could not be started.
#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    /// The configuration (grant) is unusable.
    #[error("invalid tunnel configuration: {0}")]
    Config(#[from] ConfigError),
    /// A local socket could not be bound.
    #[error("cannot bind {what} on {addr}: {source} (is the port already in use?)")]
    Bind {
        /// Which listener.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: io::Error,
    },
    /// Must be called within a tokio runtime.
    #[error("no tokio runtime: start tunnels from within a tokio runtime")]
    NoRuntime,
}

/// A point-in-time view of a tunnel, for the UI and diagnostics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelStatus {
    /// This tunnel's public key.
    pub public_key: PublicKey,
    /// The gateway.
    pub gateway: SocketAddr,
    /// Handshake with the gateway; `TimedOut` means it is unreachable.
    pub handshake: HandshakeState,
    /// Wall-clock time of the last completed handshake.
    pub last_handshake: Option<SystemTime>,
    /// Inner bytes sent.
    pub bytes_out: u64,
    /// Inner bytes received.
    pub bytes_in: u64,
    /// Open connections (TCP) and flows (UDP).
    pub open_connections: usize,
    /// Drops by reason.
    pub dropped: DropCounters,
    /// Local forward address of each target.
    pub forwards: Vec<(Target, SocketAddr)>,
    /// The SOCKS5 listener, if any.
    pub socks: Option<SocketAddr>,
    /// Set once closed; a closed tunnel never reopens (start a new one).
    pub closed: Option<CloseReason>,
}

enum Command {
    Shutdown,
}

/// Starts client tunnels.
#[derive(Debug)]
pub struct Tunnel;

impl Tunnel {
    /// Bring up one application's tunnel: bind the UDP socket and the local
    /// listeners, start the handshake, and run until shutdown or expiry.
    pub async fn start(config: TunnelConfig) -> Result<TunnelHandle, TunnelError> {
        let wall_now = SystemTime::now();
        config.validate(wall_now)?;
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(TunnelError::NoRuntime);
        }
        let now = Instant::now();
        let expires_at = now
            + config
                .expires_at
                .duration_since(wall_now)
                .unwrap_or(Duration::ZERO);

        let any: IpAddr = if config.gateway_endpoint.is_ipv4() {
            Ipv4Addr::UNSPECIFIED.into()
        } else {
            Ipv6Addr::UNSPECIFIED.into()
        };
        let udp_addr = SocketAddr::new(any, 0);
        let udp = udp::bind(udp_addr).map_err(|source| TunnelError::Bind {
            what: "the WireGuard UDP socket",
            addr: udp_addr,
            source,
        })?;

        let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let mut forwards = Vec::new();
        let mut tcp_forwards = Vec::new();
        let mut udp_forwards = Vec::new();
        for target in &config.targets {
            let port = config.forward_ports.get(target).copied().unwrap_or(0);
            let addr = SocketAddr::new(loopback, port);
            match target.proto {
                Protocol::Tcp => {
                    let l = TcpListener::bind(addr)
                        .await
                        .map_err(|source| TunnelError::Bind {
                            what: "a TCP forward",
                            addr,
                            source,
                        })?;
                    let bound = l.local_addr().map_err(|source| TunnelError::Bind {
                        what: "a TCP forward",
                        addr,
                        source,
                    })?;
                    forwards.push((*target, bound));
                    tcp_forwards.push((l, *target));
                }
                Protocol::Udp => {
                    let s = UdpSocket::bind(addr)
                        .await
                        .map_err(|source| TunnelError::Bind {
                            what: "a UDP forward",
                            addr,
                            source,
                        })?;
                    let bound = s.local_addr().map_err(|source| TunnelError::Bind {
                        what: "a UDP forward",
                        addr,
                        source,
                    })?;
                    forwards.push((*target, bound));
                    udp_forwards.push(UdpForward {
                        socket: s,
                        target: *target,
                        flows: HashMap::new(),
                    });
                }
            }
        }
        let (socks, socks_addr) = match config.socks_port {
            Some(port) => {
                let addr = SocketAddr::new(loopback, port);
                let l = TcpListener::bind(addr)
                    .await
                    .map_err(|source| TunnelError::Bind {
                        what: "the SOCKS5 listener",
                        addr,
                        source,
                    })?;
                let bound = l.local_addr().map_err(|source| TunnelError::Bind {
                    what: "the SOCKS5 listener",
                    addr,
                    source,
                })?;
                (Some(l), Some(bound))
            }
            None => (None, None),
        };

        let core = ClientCore::new(&config, now, expires_at)?;
        let status = Arc::new(Mutex::new(TunnelStatus {
            public_key: config.private_key.public_key(),
            gateway: config.gateway_endpoint,
            handshake: HandshakeState::Pending,
            last_handshake: None,
            bytes_out: 0,
            bytes_in: 0,
            open_connections: 0,
            dropped: DropCounters::default(),
            forwards: forwards.clone(),
            socks: socks_addr,
            closed: None,
        }));
        let (cmd_tx, cmd_rx) = mpsc::channel(4);
        let (socks_tx, socks_rx) = mpsc::channel(64);
        tracing::info!(
            key = %config.private_key.public_key(),
            gateway = %config.gateway_endpoint,
            targets = config.targets.len(),
            "tunnel starting"
        );
        let driver = ClientDriver {
            core,
            udp,
            tcp_forwards,
            udp_forwards,
            socks,
            socks_tx,
            socks_rx,
            commands: cmd_rx,
            conns: HashMap::new(),
            sleep: Box::pin(tokio::time::sleep(Duration::ZERO)),
            status: status.clone(),
            buf: vec![0u8; crate::core::wg::MAX_DATAGRAM],
            wall_at_start: (now, wall_now),
            targets: config.targets.clone(),
            socks_tasks: Vec::new(),
        };
        let task = tokio::spawn(driver.run());
        Ok(TunnelHandle {
            commands: cmd_tx,
            status,
            task: Some(task),
            forwards,
            socks: socks_addr,
        })
    }
}

/// Control of a running tunnel. Dropping it shuts the tunnel down too
/// (fail closed), but only `shutdown().await` waits until every socket is
/// closed.
#[derive(Debug)]
pub struct TunnelHandle {
    commands: mpsc::Sender<Command>,
    status: Arc<Mutex<TunnelStatus>>,
    task: Option<JoinHandle<()>>,
    forwards: Vec<(Target, SocketAddr)>,
    socks: Option<SocketAddr>,
}

impl TunnelHandle {
    /// Current status.
    pub fn status(&self) -> TunnelStatus {
        self.status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The local address forwarding to `target`.
    pub fn forward_addr(&self, target: &Target) -> Option<SocketAddr> {
        self.forwards
            .iter()
            .find(|(t, _)| t == target)
            .map(|(_, a)| *a)
    }

    /// The SOCKS5 listener.
    pub fn socks_addr(&self) -> Option<SocketAddr> {
        self.socks
    }

    /// Close the tunnel now: reset every open connection, close every
    /// listener and socket, and wait until that is done.
    pub async fn shutdown(mut self) {
        let _ = self.commands.send(Command::Shutdown).await;
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Wait until the tunnel closed by itself (expiry) or was shut down.
    pub async fn closed(&mut self) -> Option<CloseReason> {
        if let Some(task) = self.task.as_mut() {
            let _ = task.await;
            self.task = None;
        }
        self.status().closed
    }
}

impl Drop for TunnelHandle {
    fn drop(&mut self) {
        // The driver also stops when the command channel closes; this makes
        // it stop even if the channel is full.
        let _ = self.commands.try_send(Command::Shutdown);
    }
}

struct UdpForward {
    socket: UdpSocket,
    target: Target,
    /// Local application address -> (in-tunnel flow, last use).
    flows: HashMap<SocketAddr, (ConnId, Instant)>,
}

struct ClientDriver {
    core: ClientCore,
    udp: UdpIo,
    tcp_forwards: Vec<(TcpListener, Target)>,
    udp_forwards: Vec<UdpForward>,
    socks: Option<TcpListener>,
    socks_tx: mpsc::Sender<(TcpStream, Target)>,
    socks_rx: mpsc::Receiver<(TcpStream, Target)>,
    commands: mpsc::Receiver<Command>,
    conns: HashMap<ConnId, TcpBridge>,
    sleep: Pin<Box<Sleep>>,
    status: Arc<Mutex<TunnelStatus>>,
    buf: Vec<u8>,
    wall_at_start: (Instant, SystemTime),
    targets: Vec<Target>,
    socks_tasks: Vec<JoinHandle<()>>,
}

impl ClientDriver {
    async fn run(mut self) {
        let reason = poll_fn(|cx| self.poll(cx)).await;
        self.teardown(reason);
    }

    /// Fail closed: reset every local connection and drop every socket.
    fn teardown(&mut self, reason: CloseReason) {
        let now = Instant::now();
        self.core.close(now, reason);
        // Best effort: get the RSTs to the gateway so it frees its side now.
        while let Some(d) = self.core.poll_transmit() {
            let _ = self.udp.try_send_to(&d, self.core.gateway());
        }
        for (_, bridge) in self.conns.drain() {
            bridge.reset();
        }
        for t in self.socks_tasks.drain(..) {
            t.abort();
        }
        self.tcp_forwards.clear();
        self.udp_forwards.clear();
        self.socks = None;
        self.publish_status(now);
        tracing::info!(?reason, "tunnel closed");
    }

    fn publish_status(&self, now: Instant) {
        let CoreStatus {
            handshake,
            bytes_out,
            bytes_in,
            open_connections,
            dropped,
            closed,
        } = self.core.status(now);
        let last_handshake = match handshake {
            HandshakeState::Established { at } => {
                let (i0, w0) = self.wall_at_start;
                Some(w0 + at.saturating_duration_since(i0))
            }
            _ => None,
        };
        let mut s = self.status.lock().unwrap_or_else(PoisonError::into_inner);
        s.handshake = handshake;
        s.last_handshake = last_handshake;
        s.bytes_out = bytes_out;
        s.bytes_in = bytes_in;
        s.open_connections = open_connections;
        s.dropped = dropped;
        s.closed = closed;
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<CloseReason> {
        for _ in 0..TURNS_PER_WAKEUP {
            let now = Instant::now();
            match self.commands.poll_recv(cx) {
                Poll::Ready(Some(Command::Shutdown)) | Poll::Ready(None) => {
                    return Poll::Ready(CloseReason::Shutdown);
                }
                Poll::Pending => {}
            }
            let mut progress = self.receive_datagrams(cx, now);
            progress |= self.accept(cx);
            progress |= self.pump_udp_forwards(cx, now);
            progress |= self.pump_connections(cx, now);
            self.core.poll(now);
            if let Some(reason) = self.core.closed() {
                return Poll::Ready(reason);
            }
            progress |= self.pump_connections(cx, now);
            progress |= self.pump_udp_replies(now);
            self.core.poll(now);
            progress |= self.send_datagrams(cx);
            if !progress {
                self.publish_status(now);
                let deadline = self
                    .core
                    .poll_timeout(now)
                    .unwrap_or(now + Duration::from_secs(1));
                self.sleep.as_mut().reset(deadline.into());
                if self.sleep.as_mut().poll(cx).is_ready() {
                    continue;
                }
                return Poll::Pending;
            }
        }
        // Still busy: let other tasks run, then continue.
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
        self.udp.send(cx, &mut ClientOutbox(&mut self.core))
    }

    fn accept(&mut self, cx: &mut Context<'_>) -> bool {
        let mut progress = false;
        let mut accepted = Vec::new();
        for (listener, target) in &self.tcp_forwards {
            while let Poll::Ready(r) = listener.poll_accept(cx) {
                progress = true;
                match r {
                    Ok((stream, _)) => accepted.push((stream, *target, false)),
                    Err(e) => {
                        tracing::debug!(error = %e, "accept failed");
                        break;
                    }
                }
            }
        }
        if let Some(listener) = &self.socks {
            while let Poll::Ready(r) = listener.poll_accept(cx) {
                progress = true;
                match r {
                    Ok((stream, _)) => {
                        self.socks_tasks.retain(|t| !t.is_finished());
                        let tx = self.socks_tx.clone();
                        let targets = self.targets.clone();
                        self.socks_tasks.push(tokio::spawn(async move {
                            let negotiated = tokio::time::timeout(
                                SOCKS_NEGOTIATION_TIMEOUT,
                                negotiate(stream, &targets),
                            )
                            .await;
                            if let Ok(Some(pair)) = negotiated {
                                let _ = tx.send(pair).await;
                            }
                        }));
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "accept failed");
                        break;
                    }
                }
            }
        }
        while let Poll::Ready(Some((stream, target))) = self.socks_rx.poll_recv(cx) {
            progress = true;
            accepted.push((stream, target, true));
        }
        for (stream, target, socks) in accepted {
            match self.core.tcp_connect(target) {
                Ok(id) => {
                    if let Some(s) = self.core.tcp(id) {
                        s.set_timeout(Some(smoltcp::time::Duration::from_millis(
                            CONNECT_TIMEOUT.as_millis() as u64,
                        )));
                    }
                    let bridge = if socks {
                        TcpBridge::new_held(stream)
                    } else {
                        TcpBridge::new(stream)
                    };
                    self.conns.insert(id, bridge);
                }
                Err(e) => {
                    tracing::debug!(error = %e, %target, "connection refused locally");
                    if socks {
                        let reply = socks::encode_reply(Reply::GeneralFailure, unspecified());
                        tokio::spawn(async move {
                            let mut stream = stream;
                            let _ = stream.write_all(&reply).await;
                        });
                    } else {
                        let _ = stream.set_zero_linger();
                    }
                }
            }
        }
        progress
    }

    fn pump_connections(&mut self, cx: &mut Context<'_>, now: Instant) -> bool {
        let mut progress = false;
        let mut finished = Vec::new();
        for (id, bridge) in &mut self.conns {
            let Some(socket) = self.core.tcp(*id) else {
                finished.push(*id);
                continue;
            };
            if bridge.is_held() {
                match bridge.connect_state(socket) {
                    Connect::Pending => continue,
                    Connect::Established => {
                        let bound = socket
                            .local_endpoint()
                            .map(crate::core::stack::socket_addr)
                            .unwrap_or_else(unspecified);
                        bridge.release_with_prefix(socks::encode_reply(Reply::Succeeded, bound));
                        progress = true;
                    }
                    Connect::Failed => {
                        // Refused by the target (RST) or no answer in time.
                        bridge.release_with_prefix(socks::encode_reply(
                            Reply::ConnectionRefused,
                            unspecified(),
                        ));
                        progress = true;
                        if matches!(bridge.flush_prefix(cx), Ok(false)) {
                            continue;
                        }
                        finished.push(*id);
                        continue;
                    }
                }
            }
            match bridge.pump(socket, cx) {
                Pumped::Running(p) => progress |= p,
                Pumped::Finished => {
                    progress = true;
                    finished.push(*id);
                }
            }
        }
        for id in finished {
            self.conns.remove(&id);
            self.core.remove(now, id);
        }
        progress
    }

    fn pump_udp_forwards(&mut self, cx: &mut Context<'_>, now: Instant) -> bool {
        let mut progress = false;
        for fwd in &mut self.udp_forwards {
            for _ in 0..udp::BATCH {
                match fwd.socket.try_recv_from(&mut self.buf) {
                    Ok((n, from)) => {
                        progress = true;
                        let id = match fwd.flows.get_mut(&from) {
                            Some((id, last)) => {
                                *last = now;
                                *id
                            }
                            None => match self.core.udp_open(fwd.target) {
                                Ok(id) => {
                                    fwd.flows.insert(from, (id, now));
                                    id
                                }
                                Err(e) => {
                                    tracing::debug!(error = %e, "udp flow refused");
                                    continue;
                                }
                            },
                        };
                        self.core.udp_send(id, &self.buf[..n]);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        if fwd.socket.poll_recv_ready(cx).is_ready() {
                            continue;
                        }
                        break;
                    }
                    Err(_) => break,
                }
            }
            let idle: Vec<SocketAddr> = fwd
                .flows
                .iter()
                .filter(|(_, (_, last))| now.saturating_duration_since(*last) > UDP_FLOW_IDLE)
                .map(|(a, _)| *a)
                .collect();
            for a in idle {
                if let Some((id, _)) = fwd.flows.remove(&a) {
                    self.core.remove(now, id);
                }
            }
        }
        progress
    }

    fn pump_udp_replies(&mut self, now: Instant) -> bool {
        let mut progress = false;
        for fwd in &mut self.udp_forwards {
            for (app, (id, last)) in &mut fwd.flows {
                while let Some(n) = self.core.udp_recv(*id, &mut self.buf) {
                    progress = true;
                    *last = now;
                    // A full local socket buffer drops the datagram, as UDP does.
                    let _ = fwd.socket.try_send_to(&self.buf[..n], *app);
                }
            }
        }
        progress
    }
}

/// The client core's datagrams, all to the gateway.
struct ClientOutbox<'a>(&'a mut ClientCore);

impl Outbox for ClientOutbox<'_> {
    fn next_datagram(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        let to = self.0.gateway();
        self.0.poll_transmit().map(|d| (to, d))
    }

    fn recycle(&mut self, buf: Vec<u8>) {
        self.0.recycle(buf);
    }
}

fn unspecified() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0)
}

/// Run the SOCKS5 handshake up to the request. Refusals are answered here;
/// an allowed request is handed to the driver, which sends the final reply
/// once the in-tunnel connect has succeeded or failed.
async fn negotiate(mut stream: TcpStream, targets: &[Target]) -> Option<(TcpStream, Target)> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    let no_auth = loop {
        match socks::parse_greeting(&buf) {
            Ok(Some((used, no_auth))) => {
                buf.drain(..used);
                break no_auth;
            }
            Ok(None) => {}
            Err(e) => {
                tracing::debug!(error = %e, "not a SOCKS5 client");
                return None;
            }
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 || buf.len() > 4096 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    stream.write_all(&socks::method_reply(no_auth)).await.ok()?;
    if !no_auth {
        return None;
    }
    let request = loop {
        match socks::parse_request(&buf) {
            Ok(Some((_, r))) => break r,
            Ok(None) => {}
            Err(e) => {
                tracing::debug!(error = %e, "bad SOCKS5 request");
                return None;
            }
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 || buf.len() > 4096 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    match socks::decide(&request, targets) {
        Ok(target) => Some((stream, target)),
        Err(reply) => {
            tracing::info!(
                ?request,
                ?reply,
                "SOCKS request refused: not in this application's grant"
            );
            let _ = stream
                .write_all(&socks::encode_reply(reply, unspecified()))
                .await;
            let _ = stream.shutdown().await;
            None
        }
    }
}
