//! What the client's task does each turn, as a [`Side`] of the poll loop
//! shared with the gateway: accept local connections, bridge them into the
//! tunnel, carry the UDP forwards, and fail closed at the end.
//!
//! The loop itself (receive, send, budget, sleep) is `crate::driver`'s; this
//! is the client's own part of it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::socks_session;
use super::{Command, TunnelStatus};
use crate::config::{SocksCredential, Target};
use crate::core::client::CoreStatus;
use crate::core::{ClientCore, CloseReason, ConnId, HandshakeState};
use crate::driver::Side;
use crate::driver::bridge::{self, Step, TcpBridge};
use crate::driver::flow::{FLOW_IDLE, recv_each};
use crate::driver::udp::{self, Outbox, UdpIo};
use crate::local_owner::{self, LocalAccess, UdpSenders};

/// A connect inside the tunnel that is not answered in this time fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// One local UDP forward and the in-tunnel flows behind it.
pub(super) struct UdpForward {
    pub(super) socket: UdpSocket,
    /// Where `socket` is bound (the senders' destination).
    pub(super) bound: SocketAddr,
    pub(super) target: Target,
    /// Local application address -> (in-tunnel flow, last use).
    pub(super) flows: HashMap<SocketAddr, (ConnId, Instant)>,
    /// Who may start a flow (`LocalAccess`, per new sender).
    pub(super) senders: UdpSenders,
}

/// Everything of one tunnel except the WireGuard socket and the timer,
/// which the shared loop owns.
pub(super) struct ClientSide {
    pub(super) core: ClientCore,
    pub(super) tcp_forwards: Vec<(TcpListener, Target)>,
    pub(super) udp_forwards: Vec<UdpForward>,
    pub(super) socks: Option<TcpListener>,
    /// Negotiated SOCKS connections come back from their tasks on this.
    pub(super) socks_tx: mpsc::Sender<(TcpStream, Target)>,
    pub(super) socks_rx: mpsc::Receiver<(TcpStream, Target)>,
    /// Who may connect to the forwards and the SOCKS listener.
    pub(super) local_access: LocalAccess,
    /// The credential SOCKS clients must present, if any; shared with the
    /// negotiation tasks rather than copied into each.
    pub(super) socks_auth: Option<Arc<SocksCredential>>,
    /// Forward connections whose owner was checked come back on this.
    pub(super) admitted_tx: mpsc::Sender<(TcpStream, Target)>,
    pub(super) admitted_rx: mpsc::Receiver<(TcpStream, Target)>,
    pub(super) commands: mpsc::Receiver<Command>,
    pub(super) conns: HashMap<ConnId, TcpBridge>,
    pub(super) status: Arc<Mutex<TunnelStatus>>,
    /// One datagram of a local UDP forward, either way.
    pub(super) buf: Vec<u8>,
    /// To turn the core's `Instant`s into wall-clock times for the status.
    pub(super) wall_at_start: (Instant, SystemTime),
    pub(super) targets: Vec<Target>,
    /// Owner checks and SOCKS negotiations in flight; aborted at teardown.
    pub(super) local_tasks: Vec<JoinHandle<()>>,
}

impl Side for ClientSide {
    type Exit = CloseReason;

    fn control(&mut self, cx: &mut Context<'_>, _now: Instant) -> ControlFlow<CloseReason, bool> {
        match self.commands.poll_recv(cx) {
            Poll::Ready(Some(Command::Shutdown)) | Poll::Ready(None) => {
                ControlFlow::Break(CloseReason::Shutdown)
            }
            Poll::Pending => ControlFlow::Continue(false),
        }
    }

    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        self.core.handle_datagram(now, from, datagram);
    }

    fn work(&mut self, cx: &mut Context<'_>, now: Instant) -> ControlFlow<CloseReason, bool> {
        let mut progress = self.accept(cx);
        progress |= self.pump_udp_forwards(cx, now);
        progress |= self.pump_connections(cx, now);
        self.core.poll(now);
        if let Some(reason) = self.core.closed() {
            return ControlFlow::Break(reason);
        }
        progress |= self.pump_connections(cx, now);
        progress |= self.pump_udp_replies(now);
        self.core.poll(now);
        ControlFlow::Continue(progress)
    }

    fn deadline(&mut self, now: Instant) -> Instant {
        self.core
            .poll_timeout(now)
            .unwrap_or(now + Duration::from_secs(1))
    }

    fn publish_status(&mut self, now: Instant) {
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

    /// Fail closed: reset every local connection and drop every socket.
    fn teardown(&mut self, reason: CloseReason, udp: &UdpIo) {
        let now = Instant::now();
        self.core.close(now, reason);
        // Best effort: get the RSTs to the gateway so it frees its side now.
        udp.send_now(self);
        for (_, bridge) in self.conns.drain() {
            bridge.reset();
        }
        for t in self.local_tasks.drain(..) {
            t.abort();
        }
        self.tcp_forwards.clear();
        self.udp_forwards.clear();
        self.socks = None;
        self.publish_status(now);
        tracing::info!(?reason, "tunnel closed");
    }
}

/// The client core's datagrams, all to the gateway.
impl Outbox for ClientSide {
    fn next_datagram(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        let to = self.core.gateway();
        self.core.poll_transmit().map(|d| (to, d))
    }

    fn recycle(&mut self, buf: Vec<u8>) {
        self.core.recycle(buf);
    }
}

impl ClientSide {
    /// Accept on every listener. A forward's connection goes into the tunnel
    /// once its owner passed `local_access` (checked in a task of its own,
    /// so the lookup never stalls the loop); a SOCKS connection's task
    /// checks the owner before it negotiates.
    fn accept(&mut self, cx: &mut Context<'_>) -> bool {
        let mut progress = false;
        let mut accepted = Vec::new();
        let mut to_check = Vec::new();
        for (listener, target) in &self.tcp_forwards {
            while let Poll::Ready(r) = listener.poll_accept(cx) {
                progress = true;
                match r {
                    Ok((stream, _)) if self.local_access.needs_lookup() => {
                        to_check.push((stream, *target));
                    }
                    Ok((stream, _)) => accepted.push((stream, *target, false)),
                    Err(e) => {
                        tracing::debug!(error = %e, "accept failed");
                        break;
                    }
                }
            }
        }
        if !to_check.is_empty() {
            self.local_tasks.retain(|t| !t.is_finished());
        }
        for (stream, target) in to_check {
            let (access, admitted) = (self.local_access, self.admitted_tx.clone());
            self.local_tasks.push(tokio::spawn(async move {
                if let Some(stream) = local_owner::admit(access, stream, "a TCP forward").await {
                    let _ = admitted.send((stream, target)).await;
                }
            }));
        }
        if let Some(listener) = &self.socks {
            while let Poll::Ready(r) = listener.poll_accept(cx) {
                progress = true;
                match r {
                    Ok((stream, _)) => {
                        self.local_tasks.retain(|t| !t.is_finished());
                        self.local_tasks.push(socks_session::spawn(
                            stream,
                            self.local_access,
                            self.socks_auth.clone(),
                            self.targets.clone(),
                            self.socks_tx.clone(),
                        ));
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "accept failed");
                        break;
                    }
                }
            }
        }
        while let Poll::Ready(Some((stream, target))) = self.admitted_rx.poll_recv(cx) {
            progress = true;
            accepted.push((stream, target, false));
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
                        socks_session::refuse(stream);
                    } else {
                        let _ = stream.set_zero_linger();
                    }
                }
            }
        }
        progress
    }

    fn pump_connections(&mut self, cx: &mut Context<'_>, now: Instant) -> bool {
        bridge::pump_all(
            &mut self.conns,
            &mut self.core,
            |core, id, bridge| {
                let Some(socket) = core.tcp(id) else {
                    return Step::Finished { progress: false };
                };
                let mut progress = false;
                if bridge.is_held() {
                    match socks_session::reply_once_connected(bridge, socket, cx) {
                        ControlFlow::Break(step) => return step,
                        ControlFlow::Continue(p) => progress = p,
                    }
                }
                match Step::from(bridge.pump(socket, cx)) {
                    Step::Running(p) => Step::Running(progress | p),
                    finished => finished,
                }
            },
            |core, id| core.remove(now, id),
        )
    }

    fn pump_udp_forwards(&mut self, cx: &mut Context<'_>, now: Instant) -> bool {
        let mut progress = false;
        let core = &mut self.core;
        for fwd in &mut self.udp_forwards {
            let (flows, target, bound) = (&mut fwd.flows, fwd.target, fwd.bound);
            let senders = &mut fwd.senders;
            progress |= recv_each(
                &fwd.socket,
                &mut self.buf,
                cx,
                udp::BATCH,
                UdpSocket::try_recv_from,
                |from, datagram| {
                    let id = match flows.get_mut(&from) {
                        Some((id, last)) => {
                            *last = now;
                            *id
                        }
                        None if !senders.admit(from, bound, now) => return,
                        None => match core.udp_open(target) {
                            Ok(id) => {
                                flows.insert(from, (id, now));
                                id
                            }
                            Err(e) => {
                                tracing::debug!(error = %e, "udp flow refused");
                                return;
                            }
                        },
                    };
                    core.udp_send(id, datagram);
                },
            );
            let idle: Vec<SocketAddr> = fwd
                .flows
                .iter()
                .filter(|(_, (_, last))| now.saturating_duration_since(*last) > FLOW_IDLE)
                .map(|(a, _)| *a)
                .collect();
            for a in idle {
                if let Some((id, _)) = fwd.flows.remove(&a) {
                    core.remove(now, id);
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
