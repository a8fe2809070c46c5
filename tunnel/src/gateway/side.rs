//! What the gateway's task does each turn, as a [`Side`] of the poll loop
//! shared with the client: apply peer commands, act on the core's events,
//! connect and bridge the targets, carry the UDP flows, and fail closed at
//! the end.
//!
//! The loop itself (receive, send, budget, sleep) is `crate::driver`'s; this
//! is the gateway's own part of it.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::ControlFlow;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant, SystemTime};

use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::mpsc;

use super::{Command, StatusBoard};
use crate::config::Target;
use crate::core::gateway::Forwarded;
use crate::core::{ConnId, GatewayCore, GatewayEvent, PeerId};
use crate::driver::Side;
use crate::driver::bridge::{Step, TcpBridge};
use crate::driver::flow::{FLOW_IDLE, Segments, recv_each};
use crate::driver::ready::ReadySet;
use crate::driver::udp::{Outbox, UdpIo, send_segments};
use crate::key::PublicKey;

/// Connecting to a target must finish within this time.
const TARGET_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

type ConnectFuture = Pin<Box<dyn Future<Output = io::Result<TcpStream>> + Send>>;

/// A connection a peer opened inside its tunnel, and its target side.
pub(super) enum Conn {
    /// The OS socket to the target is still connecting.
    Connecting(ConnectFuture),
    Open(TcpBridge),
}

/// A connection and the waker its OS side is polled with (which queues it
/// in `GatewaySide::ready`).
pub(super) struct Tracked {
    conn: Conn,
    waker: Waker,
}

/// Key of a connection: whose tunnel, and which in-tunnel socket.
pub(super) type ConnKey = (PeerId, ConnId);

/// One UDP flow's connected OS socket to its target.
pub(super) struct Flow {
    socket: UdpSocket,
    /// Send bursts with segmentation offload (cleared if the kernel or
    /// the route refuses it).
    gso: bool,
    last: Instant,
    /// Queues the flow in `GatewaySide::flow_ready` when its socket has
    /// datagrams.
    waker: Waker,
}

/// Key of a UDP flow: (peer, target, the client's in-tunnel endpoint).
pub(super) type FlowKey = (PeerId, Target, SocketAddr);

/// How often idle UDP flows are looked for (a pass over all flows).
const FLOW_SWEEP: Duration = Duration::from_secs(1);

/// Most forwarded datagrams taken from the inbox per turn.
const FORWARDS_PER_TURN: usize = 256;

/// How the workers of one gateway hand each other datagrams that the
/// kernel delivered to the wrong one (see `core::gateway::Shard`).
pub(super) struct ShardLinks {
    /// Datagrams for this worker's peers.
    pub(super) inbox: mpsc::Receiver<Forwarded>,
    /// Every worker's inbox, by shard index.
    pub(super) workers: Vec<mpsc::Sender<Forwarded>>,
}

/// Everything of the gateway except the WireGuard socket and the timer,
/// which the shared loop owns.
pub(super) struct GatewaySide {
    pub(super) core: GatewayCore,
    pub(super) commands: mpsc::Receiver<Command>,
    pub(super) conns: HashMap<ConnKey, Tracked>,
    /// The connections of each peer, to pump them when its stack ran.
    pub(super) by_peer: HashMap<PeerId, HashSet<ConnId>>,
    /// Connections whose OS socket (or connect) became ready.
    pub(super) ready: ReadySet<ConnKey>,
    /// (peer, target, client's in-tunnel endpoint) -> OS socket.
    pub(super) flows: HashMap<FlowKey, Flow>,
    /// Flows whose OS socket became readable.
    pub(super) flow_ready: ReadySet<FlowKey>,
    /// Datagrams from the tunnels for one flow, sent together.
    pub(super) segments: Segments<FlowKey>,
    /// When idle flows are looked for next.
    pub(super) next_flow_sweep: Instant,
    pub(super) status: Arc<Mutex<StatusBoard>>,
    /// One UDP datagram, either way between a flow and the core.
    pub(super) buf: Vec<u8>,
    /// Most UDP flows per peer (`StackOptions::max_udp_flows`).
    pub(super) max_flows: usize,
    /// The other workers, if there are any.
    pub(super) links: Option<ShardLinks>,
}

/// The monotonic deadline of a grant that ends at wall-clock `wall`.
fn expiry(wall: SystemTime, now: Instant) -> Instant {
    now + wall
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO)
}

impl Side for GatewaySide {
    type Exit = ();

    fn control(&mut self, cx: &mut Context<'_>, now: Instant) -> ControlFlow<(), bool> {
        let mut progress = false;
        loop {
            match self.commands.poll_recv(cx) {
                Poll::Ready(Some(Command::Shutdown)) | Poll::Ready(None) => {
                    return ControlFlow::Break(());
                }
                Poll::Ready(Some(cmd)) => {
                    progress = true;
                    self.handle_command(cmd, now);
                }
                Poll::Pending => break,
            }
        }
        if let Some(links) = &mut self.links {
            for _ in 0..FORWARDS_PER_TURN {
                match links.inbox.poll_recv(cx) {
                    Poll::Ready(Some(fwd)) => {
                        progress = true;
                        self.core.handle_forwarded(now, fwd);
                    }
                    Poll::Ready(None) | Poll::Pending => break,
                }
            }
        }
        ControlFlow::Continue(progress)
    }

    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        self.core.handle_datagram(now, from, datagram);
    }

    fn work(&mut self, cx: &mut Context<'_>, now: Instant) -> ControlFlow<(), bool> {
        self.core.poll(now);
        self.handle_events();
        let mut progress = self.pump_connections(cx, now);
        progress |= self.pump_udp(cx, now);
        self.core.poll(now);
        self.handle_events();
        progress |= self.send_forwards();
        ControlFlow::Continue(progress)
    }

    fn deadline(&mut self, now: Instant) -> Instant {
        // Peers that ran after this turn's pass over connections: their
        // connections get a pass before the task sleeps.
        if self.core.has_flushed_peers() {
            return now;
        }
        let at = self.core.poll_timeout(now);
        if self.flows.is_empty() {
            at
        } else {
            at.min(self.next_flow_sweep)
        }
    }

    /// Refreshes only the peers that changed since the last call, so an
    /// idle turn costs O(changed peers), not O(peers).
    fn publish_status(&mut self, _now: Instant) {
        let changed = self.core.take_changed_peers();
        let mut s = self.status.lock().unwrap_or_else(PoisonError::into_inner);
        for peer in changed {
            match self.core.peer_view(peer) {
                Some(view) => s.peers.insert(peer, view),
                None => s.peers.remove(&peer),
            };
        }
        s.dropped = self.core.dropped();
        s.open_connections = self.conns.len();
        s.handed_over = self.core.handed_over();
    }

    /// Fail closed: every peer removed (RSTs into the tunnels), every target
    /// connection reset.
    fn teardown(&mut self, (): (), udp: &UdpIo) {
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
        udp.send_now(self);
        for (_, tracked) in self.conns.drain() {
            if let Conn::Open(b) = tracked.conn {
                b.reset();
            }
        }
        self.by_peer.clear();
        self.flows.clear();
        self.publish_status(now);
        tracing::info!("gateway stopped");
    }
}

/// The gateway core's datagrams, each to its peer's endpoint.
impl Outbox for GatewaySide {
    fn next_datagram(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.core.poll_transmit()
    }

    fn recycle(&mut self, buf: Vec<u8>) {
        self.core.recycle(buf);
    }
}

impl GatewaySide {
    /// Hands datagrams for other workers' peers to their inboxes.
    fn send_forwards(&mut self) -> bool {
        let mut progress = false;
        while let Some(fwd) = self.core.poll_forward() {
            progress = true;
            let sent = self
                .links
                .as_ref()
                .and_then(|l| l.workers.get(fwd.shard as usize))
                .is_some_and(|w| w.try_send(fwd).is_ok());
            if !sent {
                self.core.dropped_queue_full();
            }
        }
        progress
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
                    let key = (peer, conn);
                    self.conns.insert(
                        key,
                        Tracked {
                            conn: Conn::Connecting(Box::pin(fut)),
                            waker: self.ready.waker(key),
                        },
                    );
                    self.by_peer.entry(peer).or_default().insert(conn);
                    // Its first pump starts the connect.
                    self.ready.push(key);
                }
                GatewayEvent::PeerRemoved { peer, .. } => {
                    for conn in self.by_peer.remove(&peer).unwrap_or_default() {
                        if let Some(Tracked {
                            conn: Conn::Open(b),
                            ..
                        }) = self.conns.remove(&(peer, conn))
                        {
                            b.reset();
                        }
                    }
                    self.flows.retain(|(p, _, _), _| *p != peer);
                }
            }
        }
    }

    /// Pumps the connections that can have news, not all of them: those
    /// whose OS socket or connect woke their waker, and those of peers
    /// whose in-tunnel stack ran. Every pump polls the OS side with the
    /// connection's own waker, so a connection that is not pumped now is
    /// woken (and queued) when its socket becomes ready.
    fn pump_connections(&mut self, cx: &mut Context<'_>, now: Instant) -> bool {
        self.ready.set_task(cx.waker());
        let mut keys = self.ready.drain();
        for peer in self.core.take_flushed_peers() {
            if let Some(conns) = self.by_peer.get(&peer) {
                keys.extend(conns.iter().map(|c| (peer, *c)));
            }
        }
        keys.sort_unstable();
        keys.dedup();
        let mut progress = false;
        let mut touched = Vec::new();
        for key in keys {
            let Some(tracked) = self.conns.get_mut(&key) else {
                continue;
            };
            let waker = tracked.waker.clone();
            let mut own = Context::from_waker(&waker);
            match pump_one(&mut self.core, key, &mut tracked.conn, &mut own) {
                Step::Running(p) => {
                    progress |= p;
                    if p {
                        touched.push(key.0);
                    }
                }
                Step::Finished { progress: p } => {
                    progress |= p;
                    self.conns.remove(&key);
                    if let Some(conns) = self.by_peer.get_mut(&key.0) {
                        conns.remove(&key.1);
                        if conns.is_empty() {
                            self.by_peer.remove(&key.0);
                        }
                    }
                    self.core.remove_conn(now, key.0, key.1);
                }
            }
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
        // Tunnel -> targets: only peers whose stack received UDP for a
        // target since the last turn.
        for peer in self.core.take_udp_ready() {
            for target in self.core.udp_targets(peer) {
                while let Some((n, client)) = self.core.udp_recv(peer, target, &mut self.buf) {
                    progress = true;
                    let key = (peer, target, client);
                    if !self.segments.fits(key, n) {
                        send_gathered(&mut self.segments, &mut self.flows, &mut self.core);
                    }
                    if !self.flows.contains_key(&key)
                        && !may_open_flow(
                            self.flows.keys().map(|(p, _, _)| *p),
                            peer,
                            self.max_flows,
                        )
                    {
                        // Each flow holds an OS socket: one peer sending
                        // from every source port must not exhaust the
                        // gateway's file descriptors.
                        tracing::debug!(%target, max = self.max_flows, "UDP flow refused: the peer holds the most allowed");
                        self.core.udp_flow_refused(peer);
                        continue;
                    }
                    let flow = match self.flows.entry(key) {
                        Entry::Occupied(entry) => entry.into_mut(),
                        Entry::Vacant(entry) => match open_flow(target) {
                            Ok(socket) => {
                                // Its first read registers the waker.
                                self.flow_ready.push(key);
                                entry.insert(Flow {
                                    socket,
                                    gso: true,
                                    last: now,
                                    waker: self.flow_ready.waker(key),
                                })
                            }
                            Err(e) => {
                                tracing::debug!(error = %e, %target, "cannot open UDP flow");
                                continue;
                            }
                        },
                    };
                    flow.last = now;
                    self.segments.push(key, &self.buf[..n]);
                }
            }
        }
        send_gathered(&mut self.segments, &mut self.flows, &mut self.core);
        // Targets -> tunnel: only flows whose socket woke its waker. Each
        // is read until it runs dry (no per-flow cap, unlike the client's
        // forwards), which registers the waker again.
        self.flow_ready.set_task(cx.waker());
        let mut ready = self.flow_ready.drain();
        ready.sort_unstable();
        ready.dedup();
        for key in ready {
            let (peer, target, client) = key;
            let Some(flow) = self.flows.get_mut(&key) else {
                continue;
            };
            let waker = flow.waker.clone();
            let mut own = Context::from_waker(&waker);
            let (core, last) = (&mut self.core, &mut flow.last);
            progress |= recv_each(
                &flow.socket,
                &mut self.buf,
                &mut own,
                usize::MAX,
                |socket, buf| socket.try_recv(buf).map(|n| (n, ())),
                |(), datagram| {
                    *last = now;
                    core.udp_send(peer, target, client, datagram);
                },
            );
        }
        // Idle flows: a pass over all of them once a second, not per turn.
        if now >= self.next_flow_sweep {
            self.next_flow_sweep = now + FLOW_SWEEP;
            let core = &self.core;
            self.flows.retain(|(peer, _, _), flow| {
                now.saturating_duration_since(flow.last) <= FLOW_IDLE && core.has_peer(*peer)
            });
        }
        progress
    }
}

/// Send the datagrams gathered for one flow. UDP may drop what the socket
/// will not take, but every drop is counted.
fn send_gathered(
    segments: &mut Segments<FlowKey>,
    flows: &mut HashMap<FlowKey, Flow>,
    core: &mut GatewayCore,
) {
    segments.flush(|key, data, segment| {
        let Some(flow) = flows.get_mut(&key) else {
            return;
        };
        for _ in 0..send_segments(&flow.socket, data, segment, &mut flow.gso) {
            core.dropped_queue_full();
        }
    });
}

/// One connection's pump: finish the connect to the target, then move
/// bytes between the OS socket and the in-tunnel socket.
fn pump_one(
    core: &mut GatewayCore,
    (peer, id): ConnKey,
    conn: &mut Conn,
    cx: &mut Context<'_>,
) -> Step {
    let mut progress = false;
    if let Conn::Connecting(fut) = conn {
        match fut.as_mut().poll(cx) {
            Poll::Pending => return Step::Running(false),
            Poll::Ready(Ok(stream)) => {
                progress = true;
                *conn = Conn::Open(TcpBridge::new(stream));
            }
            Poll::Ready(Err(e)) => {
                tracing::debug!(error = %e, "target connect failed; resetting the tunnel connection");
                return Step::Finished { progress: false };
            }
        }
    }
    let Conn::Open(bridge) = conn else {
        return Step::Running(progress);
    };
    let Some(socket) = core.tcp(peer, id) else {
        return Step::Finished { progress };
    };
    match Step::from(bridge.pump(socket, cx)) {
        Step::Running(p) => Step::Running(progress | p),
        finished => finished,
    }
}

/// A UDP socket connected to the target, so only the target's replies are
/// accepted by the kernel.
/// Whether `peer` may open one more flow (each an OS socket to its
/// target), given the peers of the open ones and the per-peer maximum.
fn may_open_flow(open: impl Iterator<Item = PeerId>, peer: PeerId, max: usize) -> bool {
    open.filter(|p| *p == peer).take(max).count() < max
}

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

#[cfg(test)]
mod flow_cap_tests {
    use super::*;

    #[test]
    fn one_peer_cannot_hold_more_than_its_share_of_flows() {
        let (a, b) = (PeerId(1), PeerId(2));
        let full: Vec<PeerId> = std::iter::repeat_n(a, 64).collect();
        assert!(
            !may_open_flow(full.iter().copied(), a, 64),
            "a is at its cap"
        );
        assert!(
            may_open_flow(full.iter().copied(), b, 64),
            "b is not limited by a"
        );
        assert!(may_open_flow(full.iter().copied(), a, 65));
        let almost: Vec<PeerId> = std::iter::repeat_n(a, 63).collect();
        assert!(may_open_flow(almost.iter().copied(), a, 64));
    }
}
