//! The client tunnel: a [`ClientCore`] driven by one tokio task that owns
//! the WireGuard UDP socket and the application's local listeners.
//!
//! Everything of one tunnel runs in that one task (no locks around the core,
//! no channels per packet); SOCKS negotiation alone runs in short-lived tasks
//! so a slow client cannot stall the tunnel.
//!
//! This module is the public face: binding the sockets, the handle and the
//! status. What the task does each turn is in `side` (on the loop shared
//! with the gateway, `crate::driver`), the SOCKS5 sessions in `socks_session`.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::{ConfigError, Protocol, Target, TunnelConfig};
use crate::core::{ClientCore, CloseReason, DropCounters, HandshakeState};
use crate::driver::{Driver, udp};
use crate::key::PublicKey;
use crate::local_owner::UdpSenders;

mod side;
mod socks_session;

use side::{ClientSide, UdpForward};

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

/// What the handle tells the driver task.
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
        let udp = udp::bind(udp_addr).map_err(bind_error("the WireGuard UDP socket", udp_addr))?;

        let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let mut forwards = Vec::new();
        let mut tcp_forwards = Vec::new();
        let mut udp_forwards = Vec::new();
        for target in &config.targets {
            let port = config.forward_ports.get(target).copied().unwrap_or(0);
            let addr = SocketAddr::new(loopback, port);
            match target.proto {
                Protocol::Tcp => {
                    let (l, bound) = bind_tcp("a TCP forward", addr).await?;
                    forwards.push((*target, bound));
                    tcp_forwards.push((l, *target));
                }
                Protocol::Udp => {
                    let what = "a UDP forward";
                    let s = UdpSocket::bind(addr)
                        .await
                        .map_err(bind_error(what, addr))?;
                    let bound = s.local_addr().map_err(bind_error(what, addr))?;
                    forwards.push((*target, bound));
                    udp_forwards.push(UdpForward {
                        socket: s,
                        bound,
                        target: *target,
                        flows: HashMap::new(),
                        senders: UdpSenders::new(config.local_access),
                    });
                }
            }
        }
        let (socks, socks_addr) = match config.socks_port {
            Some(port) => {
                let addr = SocketAddr::new(loopback, port);
                let (l, bound) = bind_tcp("the SOCKS5 listener", addr).await?;
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
        let (admitted_tx, admitted_rx) = mpsc::channel(64);
        tracing::info!(
            key = %config.private_key.public_key(),
            gateway = %config.gateway_endpoint,
            targets = config.targets.len(),
            local_access = ?config.local_access,
            socks_auth = config.socks_auth.is_some(),
            "tunnel starting"
        );
        let side = ClientSide {
            core,
            tcp_forwards,
            udp_forwards,
            socks,
            socks_tx,
            socks_rx,
            local_access: config.local_access,
            socks_auth: config.socks_auth.clone().map(Arc::new),
            admitted_tx,
            admitted_rx,
            commands: cmd_rx,
            conns: HashMap::new(),
            status: status.clone(),
            buf: vec![0u8; crate::core::wg::MAX_DATAGRAM],
            wall_at_start: (now, wall_now),
            targets: config.targets.clone(),
            local_tasks: Vec::new(),
        };
        let task = tokio::spawn(Driver::new(side, udp).run());
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

/// Maps a bind failure to [`TunnelError::Bind`] for `what` on `addr`.
fn bind_error(what: &'static str, addr: SocketAddr) -> impl FnOnce(io::Error) -> TunnelError {
    move |source| TunnelError::Bind { what, addr, source }
}

/// A local TCP listener and the address it got (port 0 picks one).
async fn bind_tcp(
    what: &'static str,
    addr: SocketAddr,
) -> Result<(TcpListener, SocketAddr), TunnelError> {
    let l = TcpListener::bind(addr)
        .await
        .map_err(bind_error(what, addr))?;
    let bound = l.local_addr().map_err(bind_error(what, addr))?;
    Ok((l, bound))
}
