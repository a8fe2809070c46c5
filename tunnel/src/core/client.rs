//! Client side of one application's tunnel, sans IO.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use smoltcp::socket::tcp;

use super::device::BufferPool;
use super::packet::{Unparsable, inspect};
use super::stack::{Stack, endpoint, socket_addr, to_smol};
use super::wg::{Decapsulated, HandshakeState, WgPeer};
use super::{CloseReason, ConnId, ConnectError, DropCounters, TIMER_TICK};
use crate::config::{ConfigError, Protocol, Target, TunnelConfig};

/// First port of the ephemeral range used inside the tunnel (IANA dynamic).
const EPHEMERAL_START: u16 = 49152;

#[derive(Debug, Clone, Copy)]
struct Conn {
    target: Target,
    local_port: u16,
}

/// A snapshot of the core's state for status reporting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreStatus {
    /// Handshake with the gateway.
    pub handshake: HandshakeState,
    /// Inner bytes sent into the tunnel.
    pub bytes_out: u64,
    /// Inner bytes received from the tunnel.
    pub bytes_in: u64,
    /// Open in-tunnel connections and UDP flows.
    pub open_connections: usize,
    /// What was dropped, by reason.
    pub dropped: DropCounters,
    /// Set once the tunnel is closed.
    pub closed: Option<CloseReason>,
}

/// One application's tunnel: its WireGuard peer (the gateway), its in-tunnel
/// TCP/IP stack, and the policy (only the grant's targets, both ways).
#[derive(Debug)]
pub struct ClientCore {
    wg: WgPeer,
    stack: Stack,
    gateway: SocketAddr,
    client_addr: IpAddr,
    targets: HashSet<Target>,
    /// The gateway's allowed IPs: the target addresses, nothing else.
    allowed_sources: HashSet<IpAddr>,
    conns: HashMap<ConnId, Conn>,
    out: VecDeque<Vec<u8>>,
    pool: BufferPool,
    dropped: DropCounters,
    expires_at: Instant,
    next_timer: Instant,
    next_port: u16,
    /// Local ports of the open connections (so finding a free one does
    /// not walk every connection).
    ports_in_use: HashSet<u16>,
    closed: Option<CloseReason>,
}

impl ClientCore {
    /// Build the core and queue the first handshake initiation. `expires_at`
    /// is the grant expiry on the caller's monotonic clock.
    pub fn new(
        config: &TunnelConfig,
        now: Instant,
        expires_at: Instant,
    ) -> Result<Self, ConfigError> {
        config.stack.validate()?;
        let mut core = Self {
            wg: WgPeer::new(
                &config.private_key,
                config.gateway_public_key,
                config.persistent_keepalive,
                0,
                None,
                config.handshake_timeout,
                config.stack.mtu,
            ),
            stack: Stack::new(
                &config.stack,
                Some(config.client_address),
                config.client_address,
                now,
            ),
            gateway: config.gateway_endpoint,
            client_addr: config.client_address,
            targets: config.targets.iter().copied().collect(),
            allowed_sources: config.targets.iter().map(|t| t.addr.ip()).collect(),
            conns: HashMap::new(),
            out: VecDeque::new(),
            pool: BufferPool::default(),
            dropped: DropCounters::default(),
            expires_at,
            next_timer: now + TIMER_TICK,
            next_port: EPHEMERAL_START,
            ports_in_use: HashSet::new(),
            closed: None,
        };
        let (out, pool) = (&mut core.out, &mut core.pool);
        core.wg.initiate(now, &mut |d| push_out(out, pool, d));
        Ok(core)
    }

    /// The gateway's UDP endpoint (where every transmit goes).
    pub fn gateway(&self) -> SocketAddr {
        self.gateway
    }

    /// The targets of the grant.
    pub fn targets(&self) -> impl Iterator<Item = &Target> {
        self.targets.iter()
    }

    /// Feed one datagram received on the UDP socket.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        if self.closed.is_some() {
            return;
        }
        if from != self.gateway {
            self.dropped.unknown_peer += 1;
            return;
        }
        let (out, pool) = (&mut self.out, &mut self.pool);
        // Decrypt straight into a device buffer: an accepted packet is queued
        // for smoltcp without another copy.
        let mut packet = self.stack.device.take_buffer();
        let result = self
            .wg
            .decapsulate(now, Some(from.ip()), datagram, &mut packet, &mut |d| {
                push_out(out, pool, d)
            });
        let src = match result {
            Err(e) => {
                tracing::trace!(error = ?e, "datagram rejected by wireguard");
                self.dropped.rejected_by_wireguard += 1;
                None
            }
            Ok(Decapsulated::Control) => None,
            Ok(Decapsulated::Packet(src)) => Some(src),
        };
        let Some(src) = src else {
            self.stack.device.recycle(packet);
            return;
        };
        if !self.allowed_sources.contains(&src) {
            self.dropped.bad_source += 1;
            self.stack.device.recycle(packet);
            return;
        }
        match inspect(&packet) {
            Err(Unparsable::Malformed) => self.dropped.malformed += 1,
            Err(Unparsable::Unsupported) => self.dropped.unsupported += 1,
            Ok(flow) => {
                let from_target = Target {
                    addr: SocketAddr::new(flow.src, flow.src_port),
                    proto: flow.proto,
                };
                if flow.dst != self.client_addr || !self.targets.contains(&from_target) {
                    self.dropped.not_granted += 1;
                } else if !self.stack.device.push_rx_owned(packet) {
                    self.dropped.queue_full += 1;
                }
                return;
            }
        }
        self.stack.device.recycle(packet);
    }

    /// Run the stack and the timers; call after feeding datagrams, after
    /// moving data in or out of connections, and at `poll_timeout`.
    pub fn poll(&mut self, now: Instant) {
        if self.closed.is_some() {
            return;
        }
        if now >= self.expires_at {
            tracing::info!("grant expired; closing the tunnel");
            self.close(now, CloseReason::Expired);
            return;
        }
        if now >= self.next_timer {
            let (out, pool) = (&mut self.out, &mut self.pool);
            self.wg.update_timers(now, &mut |d| push_out(out, pool, d));
            self.next_timer = now + self.wg.timer_tick();
        }
        self.stack.poll(now);
        self.encapsulate_pending(now);
        // Data for a session that ran out starts a handshake here, outside
        // the timers: its retry wants the short tick from now on.
        self.next_timer = self.next_timer.min(now + self.wg.timer_tick());
    }

    fn encapsulate_pending(&mut self, now: Instant) {
        while let Some(packet) = self.stack.device.pop_tx() {
            // Encrypt straight into the datagram buffer that will be sent.
            let mut datagram = self.pool.take_dirty();
            let (out, pool) = (&mut self.out, &mut self.pool);
            if self
                .wg
                .encapsulate_into(now, &packet, &mut datagram, &mut |d| push_out(out, pool, d))
            {
                self.out.push_back(datagram);
            } else {
                self.pool.give(datagram);
            }
            self.stack.device.recycle(packet);
        }
    }

    /// When `poll` must run next at the latest.
    pub fn poll_timeout(&mut self, now: Instant) -> Option<Instant> {
        if self.closed.is_some() {
            return None;
        }
        let mut at = self.next_timer.min(self.expires_at);
        if let Some(s) = self.stack.poll_at(now) {
            at = at.min(s);
        }
        Some(at)
    }

    /// The next datagram to send to [`Self::gateway`].
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.out.pop_front()
    }

    /// Hand a sent datagram's buffer back for reuse.
    pub fn recycle(&mut self, buf: Vec<u8>) {
        self.pool.give(buf);
    }

    fn check_target(&self, target: Target, proto: Protocol) -> Result<(), ConnectError> {
        if let Some(reason) = self.closed {
            return Err(ConnectError::Closed(reason));
        }
        if target.proto != proto || !self.targets.contains(&target) {
            return Err(ConnectError::NotGranted(target));
        }
        if target.addr.is_ipv4() != self.client_addr.is_ipv4() {
            return Err(ConnectError::Family(target));
        }
        if self.conns.len() >= self.stack.max_connections() {
            return Err(ConnectError::Limit(self.stack.max_connections()));
        }
        Ok(())
    }

    fn free_port(&mut self) -> Result<u16, ConnectError> {
        for _ in 0..=(u16::MAX - EPHEMERAL_START) {
            let port = self.next_port;
            self.next_port = if port == u16::MAX {
                EPHEMERAL_START
            } else {
                port + 1
            };
            if !self.ports_in_use.contains(&port) {
                return Ok(port);
            }
        }
        Err(ConnectError::NoPort)
    }

    /// Open a TCP connection to a granted target through the tunnel.
    pub fn tcp_connect(&mut self, target: Target) -> Result<ConnId, ConnectError> {
        if let Err(e) = self.check_target(target, Protocol::Tcp) {
            if matches!(e, ConnectError::Limit(_)) {
                self.dropped.over_limit += 1;
            }
            return Err(e);
        }
        let port = self.free_port()?;
        let mut socket = self.stack.new_tcp_socket();
        let local = smoltcp::wire::IpEndpoint::new(to_smol(self.client_addr), port);
        if socket
            .connect(self.stack.context(), endpoint(target.addr), local)
            .is_err()
        {
            return Err(ConnectError::NoPort);
        }
        let id = ConnId(self.stack.add(socket));
        self.ports_in_use.insert(port);
        self.conns.insert(
            id,
            Conn {
                target,
                local_port: port,
            },
        );
        Ok(id)
    }

    /// Open a UDP flow to a granted target through the tunnel.
    pub fn udp_open(&mut self, target: Target) -> Result<ConnId, ConnectError> {
        if let Err(e) = self.check_target(target, Protocol::Udp) {
            if matches!(e, ConnectError::Limit(_)) {
                self.dropped.over_limit += 1;
            }
            return Err(e);
        }
        let port = self.free_port()?;
        let mut socket = self.stack.new_udp_socket();
        let local = smoltcp::wire::IpEndpoint::new(to_smol(self.client_addr), port);
        if socket.bind(local).is_err() {
            return Err(ConnectError::NoPort);
        }
        let id = ConnId(self.stack.add(socket));
        self.ports_in_use.insert(port);
        self.conns.insert(
            id,
            Conn {
                target,
                local_port: port,
            },
        );
        Ok(id)
    }

    /// The TCP socket of a connection (None for unknown ids or UDP flows).
    pub(crate) fn tcp(&mut self, id: ConnId) -> Option<&mut tcp::Socket<'static>> {
        let conn = self.conns.get(&id)?;
        if conn.target.proto != Protocol::Tcp {
            return None;
        }
        Some(self.stack.tcp(id.0))
    }

    /// Send one datagram on a UDP flow. Returns false if it was dropped
    /// (unknown flow or full buffer; counted).
    pub fn udp_send(&mut self, id: ConnId, payload: &[u8]) -> bool {
        let Some(conn) = self.conns.get(&id).copied() else {
            return false;
        };
        if conn.target.proto != Protocol::Udp {
            return false;
        }
        let ok = self
            .stack
            .udp(id.0)
            .send_slice(payload, endpoint(conn.target.addr))
            .is_ok();
        if !ok {
            self.dropped.queue_full += 1;
        }
        ok
    }

    /// Receive one datagram from a UDP flow into `buf`; returns its length.
    pub fn udp_recv(&mut self, id: ConnId, buf: &mut [u8]) -> Option<usize> {
        let conn = self.conns.get(&id).copied()?;
        if conn.target.proto != Protocol::Udp {
            return None;
        }
        let socket = self.stack.udp(id.0);
        loop {
            let (n, meta) = socket.recv_slice(buf).ok()?;
            if socket_addr(meta.endpoint) == conn.target.addr {
                return Some(n);
            }
            // Another target's reply cannot belong to this flow.
            self.dropped.not_granted += 1;
        }
    }

    /// Forget a connection and free its socket. A TCP connection that is
    /// still open is reset first, and the RST is sent before the socket goes.
    pub fn remove(&mut self, now: Instant, id: ConnId) {
        if let Some(conn) = self.conns.remove(&id) {
            self.ports_in_use.remove(&conn.local_port);
            if conn.target.proto == Protocol::Tcp {
                let socket = self.stack.tcp(id.0);
                if socket.state() != tcp::State::Closed && socket.state() != tcp::State::TimeWait {
                    socket.abort();
                    self.stack.poll(now);
                    self.encapsulate_pending(now);
                }
            }
            self.stack.sockets.remove(id.0);
        }
    }

    /// Reset every connection and stop. The RSTs are queued for sending so
    /// the gateway frees its side at once too.
    pub fn close(&mut self, now: Instant, reason: CloseReason) {
        if self.closed.is_some() {
            return;
        }
        for (id, conn) in &self.conns {
            if conn.target.proto == Protocol::Tcp {
                self.stack.tcp(id.0).abort();
            }
        }
        self.stack.poll(now);
        self.encapsulate_pending(now);
        let ids: Vec<ConnId> = self.conns.keys().copied().collect();
        for id in ids {
            self.conns.remove(&id);
            self.stack.sockets.remove(id.0);
        }
        self.ports_in_use.clear();
        self.stack.device.clear();
        self.closed = Some(reason);
    }

    /// Why the tunnel closed, if it did.
    pub fn closed(&self) -> Option<CloseReason> {
        self.closed
    }

    /// Open connections and flows.
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// Status snapshot.
    pub fn status(&self, now: Instant) -> CoreStatus {
        let (bytes_out, bytes_in) = self.wg.bytes();
        CoreStatus {
            handshake: self.wg.handshake_state(now),
            bytes_out,
            bytes_in,
            open_connections: self.conns.len(),
            dropped: self.dropped,
            closed: self.closed,
        }
    }
}

pub(crate) fn push_out(out: &mut VecDeque<Vec<u8>>, pool: &mut BufferPool, datagram: &[u8]) {
    let mut buf = pool.take();
    buf.extend_from_slice(datagram);
    out.push_back(buf);
}

/// The client's timer tick: short while a handshake waits, a second once
/// the session is up (an idle agent's wake-ups, README "Tray app").
#[cfg(test)]
mod idle_ticks {
    use std::time::Duration;

    use super::super::tests::Net;
    use super::*;
    use crate::config::Target;
    use crate::core::IDLE_TIMER_TICK;

    #[test]
    fn an_established_idle_tunnel_ticks_once_a_second_and_a_pending_one_faster() {
        let mut net = Net::new();
        let target: Target = "10.1.0.1:443/tcp".parse().unwrap();
        let c = net.add_client(2, &[target], &[target]);
        // Before the gateway answers, the initiation is in flight.
        let now = net.now;
        let pending = net.clients[c].1.poll_timeout(now).unwrap();
        assert!(pending <= now + TIMER_TICK, "fast tick while pending");
        net.run();
        assert!(matches!(
            net.clients[c].1.status(net.now).handshake,
            HandshakeState::Established { .. }
        ));
        // Walk the client's own deadlines for a minute: after the short tick
        // that was due when the answer came, no wake-up comes sooner than
        // the idle tick.
        let start = net.now;
        let mut wakeups = 0;
        while net.now < start + Duration::from_secs(60) {
            let next = net.clients[c].1.poll_timeout(net.now).unwrap();
            assert!(
                wakeups == 0 || next >= net.now + IDLE_TIMER_TICK - Duration::from_millis(1),
                "woken after {:?}",
                next - net.now
            );
            net.now = next;
            net.clients[c].1.poll(net.now);
            while net.clients[c].1.poll_transmit().is_some() {}
            wakeups += 1;
        }
        assert!(wakeups <= 61, "{wakeups} wake-ups in 60 s");
    }
}
