//! Gateway side, sans IO: many peers on one UDP port, each with its own
//! WireGuard session, its own smoltcp stack and its own grant (one core per
//! worker when several share the port, see [`Shard`]).
//!
//! Incoming datagrams are routed to a peer by the receiver index in the
//! WireGuard header (data, response, cookie) or, for a handshake initiation,
//! by decrypting the initiator's static key (`parse_handshake_anon`) and
//! looking it up; nothing is processed for a key that has no grant.
//!
//! The work per datagram does not grow with the number of peers: a
//! datagram marks only its own peer for the next `poll`, and timers, stack
//! deadlines and grant expiry come from a heap of per-peer deadlines
//! (`deadlines`), not from a pass over all peers.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use boringtun::noise::handshake::parse_handshake_anon;
use boringtun::noise::rate_limiter::RateLimiter;
use boringtun::noise::{Packet, Tunn, TunnResult};
use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp;
use smoltcp::wire::IpListenEndpoint;

use super::admission::Admission;
use super::deadlines::Deadlines;
use super::device::BufferPool;
use super::packet::{Unparsable, inspect};
use super::stack::{Stack, endpoint, socket_addr, to_smol};
use super::wg::{Decapsulated, HandshakeState, WgPeer};
use super::{CloseReason, ConnId, DropCounters, TIMER_TICK};
use crate::config::{ConfigError, PeerGrant, Protocol, StackOptions, Target};
use crate::key::{PrivateKey, PublicKey};

/// A peer's initiations from its known endpoint use the known peers' bucket
/// at most this often (WireGuard retries every 5 s, rekeys every 2 min).
const KNOWN_PEER_PASS: Duration = Duration::from_secs(1);
/// Peers' timer ticks are rounded up to this grid, so one wakeup of the
/// driver serves every peer whose tick falls into the same slot (10,000
/// peers in session: 100 wakeups a second instead of 40,000).
const TIMER_SLOT: Duration = Duration::from_millis(10);
/// Buffers a peer's device keeps for reuse once it has no connection left.
const IDLE_POOL: usize = 8;
/// Peer indices are 24 bits: boringtun puts a session counter in the low 8.
const MAX_PEER_INDEX: u32 = (1 << 24) - 1;

/// Which of the gateway's workers a core is, when several share the UDP
/// port (one socket each, `SO_REUSEPORT`). Each peer lives in exactly one
/// worker, the one `Shard::of_key` names, so its limits, counters and
/// status are kept in one place; a datagram that the kernel hands to
/// another worker is forwarded to the owner (`GatewayCore::poll_forward`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// This worker, `0..count`.
    pub index: u32,
    /// How many workers there are.
    pub count: u32,
}

impl Shard {
    /// The only worker.
    pub const SINGLE: Shard = Shard { index: 0, count: 1 };

    /// The worker that owns the peer with this key (keys are uniformly
    /// random, so peers spread evenly).
    pub fn of_key(key: &PublicKey, count: u32) -> u32 {
        let b = key.as_bytes();
        u32::from_le_bytes([b[0], b[1], b[2], b[3]]) % count.max(1)
    }

    /// The worker that owns a peer index (indices are allocated so that
    /// `index % count` is the owner).
    fn of_index(index: u32, count: u32) -> u32 {
        index % count.max(1)
    }
}

/// A datagram that arrived at this worker for a peer of another worker.
#[derive(Debug)]
pub struct Forwarded {
    /// The worker to hand it to (`GatewayCore::handle_forwarded`).
    pub shard: u32,
    from: SocketAddr,
    datagram: Vec<u8>,
    /// For a handshake initiation: the initiator's key, already decrypted
    /// (and admitted) by the receiving worker.
    key: Option<PublicKey>,
}

/// Identifies a peer for as long as it is configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub(crate) u32);

/// Something the driver has to act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayEvent {
    /// A peer opened a TCP connection to one of its targets: connect a real
    /// socket to `target` and bridge it to `conn`.
    TcpAccepted {
        /// Whose tunnel.
        peer: PeerId,
        /// The in-tunnel connection.
        conn: ConnId,
        /// The granted destination.
        target: Target,
    },
    /// A peer is gone (removed or expired): close everything of it.
    PeerRemoved {
        /// Which peer.
        peer: PeerId,
        /// Its key.
        key: PublicKey,
        /// Why.
        reason: CloseReason,
    },
}

/// Why a peer change was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PeerError {
    /// The grant itself is invalid.
    #[error("invalid grant: {0}")]
    Config(#[from] ConfigError),
    /// A peer with this key already exists.
    #[error("peer {0} already exists; use update_peer to change its grant")]
    Duplicate(PublicKey),
    /// No peer with this key.
    #[error("no peer with key {0}")]
    Unknown(PublicKey),
    /// The gateway's own key was used as a peer key.
    #[error("a peer cannot use the gateway's own key")]
    OwnKey,
    /// No free peer index.
    #[error("too many peers on this gateway")]
    Full,
    /// The key belongs to another worker of this gateway (`Shard::of_key`).
    #[error("the peer belongs to another worker of this gateway")]
    OtherShard,
}

/// Status of one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStatus {
    /// The peer's key.
    pub public_key: PublicKey,
    /// Its inner address.
    pub client_address: IpAddr,
    /// Where its datagrams last came from.
    pub endpoint: Option<SocketAddr>,
    /// Handshake state.
    pub handshake: HandshakeState,
    /// Inner bytes sent to it.
    pub bytes_out: u64,
    /// Inner bytes received from it.
    pub bytes_in: u64,
    /// Open TCP connections.
    pub open_connections: usize,
    /// Time left until the gateway drops it.
    pub expires_in: Duration,
    /// What its per-tunnel limits refused so far.
    pub refused: LimitRefusals,
}

/// How often a peer hit its per-tunnel limits (`StackOptions`): counters
/// that only grow while the peer exists, so whoever watches the status can
/// tell a new refusal from an old one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimitRefusals {
    /// In-tunnel TCP connections refused at `max_connections`.
    pub connections: u64,
    /// UDP flows refused at `max_udp_flows`.
    pub udp_flows: u64,
}

#[derive(Debug)]
struct Peer {
    grant: PeerGrant,
    targets: HashSet<Target>,
    wg: WgPeer,
    stack: Stack,
    endpoint: Option<SocketAddr>,
    expires_at: Instant,
    /// Listening TCP sockets per target (spares for the next SYN).
    listeners: HashMap<Target, Vec<SocketHandle>>,
    /// SYNs seen per target since the last stack poll.
    syns: HashMap<Target, usize>,
    udp: HashMap<Target, SocketHandle>,
    conns: HashMap<ConnId, Target>,
    /// When boringtun's timers run next; `None` until the peer has an
    /// endpoint (before that they have nothing to send anywhere).
    next_timer: Option<Instant>,
    /// The deadline this peer has in `GatewayCore::deadlines` (entries
    /// with another time are stale).
    scheduled: Option<Instant>,
    /// Queued in `GatewayCore::dirty` for the next `poll`.
    dirty: bool,
    /// When the stack needs a poll (smoltcp's timers), as of its last run.
    stack_at: Option<Instant>,
    /// Queued in `GatewayCore::flushed` / `GatewayCore::udp_ready`.
    in_flushed: bool,
    in_udp_ready: bool,
    /// Last initiation admitted through the known peers' bucket.
    last_known_pass: Option<Instant>,
    /// Refusals at the per-tunnel limits, for the status (the broker
    /// audits a rise).
    refused: LimitRefusals,
}

/// The gateway: terminates many client tunnels on one UDP socket.
pub struct GatewayCore {
    key: PrivateKey,
    public: PublicKey,
    /// Checks MAC1 only (its limit is never reached); shared by every
    /// peer's `Tunn`.
    mac1_only: Arc<RateLimiter>,
    /// Always "under load": accepts an initiation with a valid MAC2
    /// (cookie) and formats the cookie reply for one without.
    cookies: Arc<RateLimiter>,
    admission: Admission,
    cookies_sent: u64,
    opts: StackOptions,
    /// Boxed: the table stays small and dense (a `Peer` is kilobytes), so
    /// finding a peer touches few cache lines whatever the peer count.
    peers: HashMap<PeerId, Box<Peer>>,
    by_key: HashMap<PublicKey, PeerId>,
    /// Where each peer's authenticated traffic last came from.
    by_endpoint: HashMap<SocketAddr, PeerId>,
    next_index: u32,
    out: VecDeque<(SocketAddr, Vec<u8>)>,
    pool: BufferPool,
    events: VecDeque<GatewayEvent>,
    dropped: DropCounters,
    deadlines: Deadlines<PeerId>,
    /// Which worker this is.
    shard: Shard,
    /// Datagrams for peers of other workers.
    forwards: VecDeque<Forwarded>,
    /// Datagrams passed to another worker so far (`handed_over`).
    handed_over: u64,
    /// Origin of the `TIMER_SLOT` grid.
    epoch: Instant,
    /// Peers with input since the last `poll` (each at most once).
    dirty: Vec<PeerId>,
    /// Peers whose status may have changed since `take_changed_peers`.
    changed: HashSet<PeerId>,
    /// Peers whose in-tunnel UDP sockets may hold datagrams for a target.
    udp_ready: Vec<PeerId>,
    /// Peers whose stack ran since `take_flushed_peers`: their
    /// connections' sockets may have news for the driver.
    flushed: Vec<PeerId>,
}

impl std::fmt::Debug for GatewayCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayCore")
            .field("public", &self.public)
            .field("peers", &self.peers.len())
            .field("dropped", &self.dropped)
            .finish_non_exhaustive()
    }
}

fn push_to(
    out: &mut VecDeque<(SocketAddr, Vec<u8>)>,
    pool: &mut BufferPool,
    to: Option<SocketAddr>,
    d: &[u8],
) {
    if let Some(to) = to {
        let mut buf = pool.take();
        buf.extend_from_slice(d);
        out.push_back((to, buf));
    }
}

impl GatewayCore {
    /// A gateway with no peers.
    pub fn new(key: PrivateKey, opts: StackOptions, now: Instant) -> Result<Self, ConfigError> {
        Self::new_shard(key, opts, now, Shard::SINGLE)
    }

    /// One worker of a gateway with several (see [`Shard`]): it accepts
    /// only peers whose key it owns and forwards datagrams of the others.
    pub fn new_shard(
        key: PrivateKey,
        opts: StackOptions,
        now: Instant,
        shard: Shard,
    ) -> Result<Self, ConfigError> {
        opts.validate()?;
        let public = key.public_key();
        Ok(Self {
            mac1_only: Arc::new(RateLimiter::new(&public.to_dalek(), u64::MAX)),
            cookies: Arc::new(RateLimiter::new(&public.to_dalek(), 0)),
            admission: Admission::new(now),
            cookies_sent: 0,
            key,
            public,
            opts,
            peers: HashMap::new(),
            by_key: HashMap::new(),
            by_endpoint: HashMap::new(),
            next_index: 1,
            shard,
            forwards: VecDeque::new(),
            handed_over: 0,
            out: VecDeque::new(),
            pool: BufferPool::default(),
            events: VecDeque::new(),
            dropped: DropCounters::default(),
            deadlines: Deadlines::default(),
            epoch: now,
            dirty: Vec::new(),
            changed: HashSet::new(),
            udp_ready: Vec::new(),
            flushed: Vec::new(),
        })
    }

    /// The gateway's public key (what clients are configured with).
    pub fn public_key(&self) -> PublicKey {
        self.public
    }

    fn alloc_index(&mut self) -> Result<u32, PeerError> {
        for _ in 0..MAX_PEER_INDEX {
            let idx = self.next_index;
            self.next_index = if idx >= MAX_PEER_INDEX { 1 } else { idx + 1 };
            if Shard::of_index(idx, self.shard.count) == self.shard.index
                && !self.peers.contains_key(&PeerId(idx))
            {
                return Ok(idx);
            }
        }
        Err(PeerError::Full)
    }

    /// Add a peer. `expires_at` is the grant expiry on the caller's clock;
    /// `wall_now` is used to validate the grant's own expiry.
    pub fn add_peer(
        &mut self,
        now: Instant,
        wall_now: std::time::SystemTime,
        grant: PeerGrant,
        expires_at: Instant,
    ) -> Result<PeerId, PeerError> {
        grant.validate(wall_now)?;
        if grant.public_key == self.public {
            return Err(PeerError::OwnKey);
        }
        if Shard::of_key(&grant.public_key, self.shard.count) != self.shard.index {
            return Err(PeerError::OtherShard);
        }
        if self.by_key.contains_key(&grant.public_key) {
            return Err(PeerError::Duplicate(grant.public_key));
        }
        let index = self.alloc_index()?;
        let id = PeerId(index);
        let wg = WgPeer::new(
            &self.key,
            grant.public_key,
            None,
            index,
            Some(self.mac1_only.clone()),
            // The gateway never needs to reach a client on its own; this only
            // affects how its status reads.
            Duration::from_secs(90),
            self.opts.mtu,
        );
        let stack = Stack::new(&self.opts, None, grant.client_address, now);
        let mut peer = Peer {
            targets: HashSet::new(),
            grant: grant.clone(),
            wg,
            stack,
            endpoint: None,
            expires_at,
            listeners: HashMap::new(),
            syns: HashMap::new(),
            refused: LimitRefusals::default(),
            udp: HashMap::new(),
            conns: HashMap::new(),
            next_timer: None,
            scheduled: None,
            dirty: false,
            stack_at: None,
            in_flushed: false,
            in_udp_ready: false,
            last_known_pass: None,
        };
        apply_targets(&mut peer, &grant.targets, now);
        tracing::info!(peer = %grant.public_key, targets = grant.targets.len(), "peer added");
        self.by_key.insert(grant.public_key, id);
        self.peers.insert(id, Box::new(peer));
        self.changed.insert(id);
        self.reschedule(id, now);
        Ok(id)
    }

    /// Change a peer's grant (targets, address, expiry) in place. Open
    /// connections to targets that are no longer granted are reset; if the
    /// client address changed, all of them are.
    pub fn update_peer(
        &mut self,
        now: Instant,
        wall_now: std::time::SystemTime,
        grant: PeerGrant,
        expires_at: Instant,
    ) -> Result<PeerId, PeerError> {
        grant.validate(wall_now)?;
        let id = *self
            .by_key
            .get(&grant.public_key)
            .ok_or(PeerError::Unknown(grant.public_key))?;
        let Some(peer) = self.peers.get_mut(&id) else {
            return Err(PeerError::Unknown(grant.public_key));
        };
        if peer.grant.client_address != grant.client_address {
            let conns: Vec<ConnId> = peer.conns.keys().copied().collect();
            for c in conns {
                abort_conn(peer, c);
            }
            peer.stack = Stack::new(&self.opts, None, grant.client_address, now);
            peer.listeners.clear();
            peer.udp.clear();
            peer.targets.clear();
        }
        apply_targets(peer, &grant.targets, now);
        peer.grant = grant;
        peer.expires_at = expires_at;
        flush_peer(peer, &mut self.out, &mut self.pool, now);
        self.after_flush(id, now);
        Ok(id)
    }

    /// Remove a peer: reset its connections (the RSTs are sent), forget its
    /// keys. Returns its id if it existed.
    pub fn remove_peer(&mut self, now: Instant, key: &PublicKey) -> Option<PeerId> {
        let id = self.by_key.get(key).copied()?;
        self.drop_peer(now, id, CloseReason::Shutdown);
        Some(id)
    }

    fn drop_peer(&mut self, now: Instant, id: PeerId, reason: CloseReason) {
        let Some(mut peer) = self.peers.remove(&id) else {
            return;
        };
        let conns: Vec<ConnId> = peer.conns.keys().copied().collect();
        for c in conns {
            abort_conn(&mut peer, c);
        }
        flush_peer(&mut peer, &mut self.out, &mut self.pool, now);
        self.by_key.remove(&peer.grant.public_key);
        if let Some(ep) = peer.endpoint
            && self.by_endpoint.get(&ep) == Some(&id)
        {
            self.by_endpoint.remove(&ep);
        }
        self.changed.insert(id);
        tracing::info!(peer = %peer.grant.public_key, ?reason, "peer removed");
        self.events.push_back(GatewayEvent::PeerRemoved {
            peer: id,
            key: peer.grant.public_key,
            reason,
        });
    }

    /// Feed one datagram from the UDP socket.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        let Ok(packet) = Tunn::parse_incoming_packet(datagram) else {
            self.dropped.malformed += 1;
            return;
        };
        let index = match packet {
            Packet::HandshakeInit(ref init) => {
                if !self.admit_initiation(now, from, datagram) {
                    return;
                }
                let public = self.public.to_dalek();
                match parse_handshake_anon(&self.key.secret(), &public, init) {
                    Ok(half) => {
                        let key = PublicKey::from(half.peer_static_public);
                        let owner = Shard::of_key(&key, self.shard.count);
                        if owner != self.shard.index {
                            self.forward(owner, from, datagram, Some(key));
                            return;
                        }
                        match self.by_key.get(&key) {
                            Some(id) => id.0,
                            None => {
                                self.dropped.unknown_peer += 1;
                                return;
                            }
                        }
                    }
                    Err(_) => {
                        self.dropped.rejected_by_wireguard += 1;
                        return;
                    }
                }
            }
            Packet::HandshakeResponse(ref p) => p.receiver_idx >> 8,
            Packet::PacketCookieReply(ref p) => p.receiver_idx >> 8,
            Packet::PacketData(ref p) => p.receiver_idx >> 8,
        };
        let owner = Shard::of_index(index, self.shard.count);
        if owner != self.shard.index {
            self.forward(owner, from, datagram, None);
            return;
        }
        self.deliver(now, from, datagram, index);
    }

    fn forward(&mut self, shard: u32, from: SocketAddr, datagram: &[u8], key: Option<PublicKey>) {
        let mut buf = self.pool.take();
        buf.extend_from_slice(datagram);
        self.handed_over += 1;
        self.forwards.push_back(Forwarded {
            shard,
            from,
            datagram: buf,
            key,
        });
    }

    /// The next datagram for another worker (see [`Shard`]).
    pub fn poll_forward(&mut self) -> Option<Forwarded> {
        self.forwards.pop_front()
    }

    /// A datagram another worker received for one of this worker's peers.
    /// An initiation was admitted there already.
    pub fn handle_forwarded(&mut self, now: Instant, fwd: Forwarded) {
        let index = match fwd.key {
            Some(key) => match self.by_key.get(&key) {
                Some(id) => Some(id.0),
                None => {
                    self.dropped.unknown_peer += 1;
                    None
                }
            },
            None => match Tunn::parse_incoming_packet(&fwd.datagram) {
                Ok(Packet::HandshakeResponse(p)) => Some(p.receiver_idx >> 8),
                Ok(Packet::PacketCookieReply(p)) => Some(p.receiver_idx >> 8),
                Ok(Packet::PacketData(p)) => Some(p.receiver_idx >> 8),
                // Initiations come with their key; anything else was
                // checked by the sender.
                _ => {
                    self.dropped.malformed += 1;
                    None
                }
            },
        };
        if let Some(index) = index
            && Shard::of_index(index, self.shard.count) == self.shard.index
        {
            self.deliver(now, fwd.from, &fwd.datagram, index);
        }
        self.pool.give(fwd.datagram);
    }

    /// A datagram the driver dropped for a full queue: a forward that the
    /// other worker's inbox would not take, or a datagram for a target
    /// whose OS socket would not take it (send buffer full).
    pub fn dropped_queue_full(&mut self) {
        self.dropped.queue_full += 1;
    }

    /// Decrypt a datagram for peer `index` and apply the policy.
    fn deliver(&mut self, now: Instant, from: SocketAddr, datagram: &[u8], index: u32) {
        let Some(peer) = self.peers.get_mut(&PeerId(index)) else {
            self.dropped.unknown_peer += 1;
            return;
        };
        let (out, pool) = (&mut self.out, &mut self.pool);
        // Decrypt straight into a device buffer: an accepted packet is queued
        // for smoltcp without another copy.
        let mut packet = peer.stack.device.take_buffer();
        let result = peer
            .wg
            .decapsulate(now, Some(from.ip()), datagram, &mut packet, &mut |d| {
                push_to(out, pool, Some(from), d)
            });
        match result {
            Err(e) => {
                tracing::trace!(error = ?e, "datagram rejected by wireguard");
                self.dropped.rejected_by_wireguard += 1;
                peer.stack.device.recycle(packet);
                return;
            }
            Ok(Decapsulated::Control) => {
                note_endpoint(&mut self.by_endpoint, PeerId(index), peer, from, now);
                mark_dirty(&mut self.dirty, PeerId(index), peer);
                peer.stack.device.recycle(packet);
                return;
            }
            Ok(Decapsulated::Packet(src)) => {
                if src != peer.grant.client_address {
                    self.dropped.bad_source += 1;
                    peer.stack.device.recycle(packet);
                    return;
                }
            }
        }
        // Authenticated: the peer may have roamed.
        note_endpoint(&mut self.by_endpoint, PeerId(index), peer, from, now);
        mark_dirty(&mut self.dirty, PeerId(index), peer);
        let flow = match inspect(&packet) {
            Ok(f) => f,
            Err(Unparsable::Malformed) => {
                self.dropped.malformed += 1;
                return;
            }
            Err(Unparsable::Unsupported) => {
                self.dropped.unsupported += 1;
                return;
            }
        };
        let target = Target {
            addr: SocketAddr::new(flow.dst, flow.dst_port),
            proto: flow.proto,
        };
        if !peer.targets.contains(&target) {
            tracing::debug!(peer = %peer.grant.public_key, %target, "packet to a target outside the grant dropped");
            self.dropped.not_granted += 1;
            return;
        }
        if target.proto == Protocol::Udp {
            ensure_udp_socket(peer, target);
        }
        let in_use = peer.conns.len()
            + peer.listeners.values().map(Vec::len).sum::<usize>()
            + peer.udp.len();
        if flow.syn
            && !ensure_listener(
                &mut peer.syns,
                &mut peer.listeners,
                &mut peer.stack,
                in_use,
                target,
            )
        {
            self.dropped.over_limit += 1;
            peer.refused.connections += 1;
            return;
        }
        if !peer.stack.device.push_rx_owned(packet) {
            self.dropped.queue_full += 1;
        }
    }

    /// Whether to process a handshake initiation (MAC1 valid, and admitted
    /// or carrying a valid cookie). Otherwise it is counted, or answered
    /// with a cookie reply, here.
    fn admit_initiation(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) -> bool {
        let mut reply = [0u8; 64];
        // MAC1 first: cheap (a keyed hash), and proves the sender knows
        // the gateway's public key.
        if self
            .mac1_only
            .verify_packet(Some(from.ip()), datagram, &mut reply)
            .is_err()
        {
            self.dropped.rejected_by_wireguard += 1;
            return false;
        }
        let known = self
            .by_endpoint
            .get(&from)
            .and_then(|id| self.peers.get_mut(id))
            .filter(|p| {
                p.last_known_pass
                    .is_none_or(|t| now.saturating_duration_since(t) >= KNOWN_PEER_PASS)
            });
        let is_known = known.is_some();
        if self.admission.admit(now, is_known) {
            if let Some(p) = known {
                p.last_known_pass = Some(now);
            }
            return true;
        }
        match self
            .cookies
            .verify_packet(Some(from.ip()), datagram, &mut reply)
        {
            // A valid cookie: the sender proved its address.
            Ok(_) => true,
            Err(TunnResult::WriteToNetwork(cookie)) => {
                push_to(&mut self.out, &mut self.pool, Some(from), cookie);
                self.cookies_sent += 1;
                false
            }
            Err(_) => {
                self.dropped.rejected_by_wireguard += 1;
                false
            }
        }
    }

    /// Run what is due: peers that received input since the last call, and
    /// peers whose deadline (WireGuard timers, stack timers, grant expiry)
    /// has come. Call after input, after moving data, and at
    /// `poll_timeout`. Costs O(due peers × log peers), not O(peers).
    pub fn poll(&mut self, now: Instant) {
        // Peers whose deadline came: only what is due runs (a timer tick
        // alone does not run the stack).
        loop {
            let peers = &self.peers;
            let due = self.deadlines.pop_due(now, |id, at| {
                peers.get(&id).is_some_and(|p| p.scheduled == Some(at))
            });
            let Some(id) = due else { break };
            let Some(peer) = self.peers.get_mut(&id) else {
                continue;
            };
            peer.scheduled = None;
            if peer.dirty {
                // Runs in full below.
                continue;
            }
            if now >= peer.expires_at {
                self.drop_peer(now, id, CloseReason::Expired);
                continue;
            }
            self.run_timers(id, now);
            let stack_due = self
                .peers
                .get(&id)
                .is_some_and(|p| p.stack_at.is_some_and(|at| at <= now));
            if stack_due {
                self.run_stack(id, now);
            } else {
                // A timer tick does not touch the stack: its `stack_at`
                // stands (smoltcp's `poll_at` walks the peer's sockets).
                self.schedule(id);
            }
        }
        // Peers with input: timers if due, then the stack.
        for id in std::mem::take(&mut self.dirty) {
            let Some(peer) = self.peers.get_mut(&id) else {
                continue;
            };
            peer.dirty = false;
            if now >= peer.expires_at {
                self.drop_peer(now, id, CloseReason::Expired);
                continue;
            }
            self.run_timers(id, now);
            self.run_stack(id, now);
        }
        self.compact_deadlines();
    }

    /// boringtun's timers of one peer, if due. The next tick is put on the
    /// gateway's `TIMER_SLOT` grid, so the ticks of many peers share a
    /// wakeup of the driver.
    fn run_timers(&mut self, id: PeerId, now: Instant) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        let Some(at) = peer.next_timer else {
            return;
        };
        if now < at {
            return;
        }
        // As on the client: a second between ticks unless a handshake of
        // the gateway's own waits for its answer (`WgPeer::timer_tick`).
        peer.next_timer = Some(on_grid(self.epoch, now + peer.wg.timer_tick()));
        let to = peer.endpoint;
        let (out, pool) = (&mut self.out, &mut self.pool);
        if peer
            .wg
            .update_timers(now, &mut |d| push_to(out, pool, to, d))
        {
            self.changed.insert(id);
        }
    }

    /// Run one peer's stack: deliver its input, encrypt its output, accept
    /// its new connections.
    fn run_stack(&mut self, id: PeerId, now: Instant) {
        if let Some(peer) = self.peers.get_mut(&id) {
            peer.syns.clear();
            flush_peer(peer, &mut self.out, &mut self.pool, now);
            accept_new(id, peer, &mut self.events);
            self.after_flush(id, now);
        }
    }

    /// Poll one peer's stack only (after moving data on its connections).
    pub fn poll_peer(&mut self, now: Instant, peer: PeerId) {
        if let Some(p) = self.peers.get_mut(&peer) {
            p.syns.clear();
            flush_peer(p, &mut self.out, &mut self.pool, now);
            accept_new(peer, p, &mut self.events);
            self.after_flush(peer, now);
        }
    }

    /// When `poll` must run next at the latest: O(1) amortized (stale heap
    /// entries on top are dropped on the way).
    pub fn poll_timeout(&mut self, now: Instant) -> Instant {
        if !self.dirty.is_empty() {
            return now;
        }
        let peers = &self.peers;
        self.deadlines
            .next(|id, at| peers.get(&id).is_some_and(|p| p.scheduled == Some(at)))
            // No peer, nothing due: only input can make work.
            .unwrap_or(now + Duration::from_secs(3600))
    }

    /// After a peer's stack ran: its status may have changed, its UDP
    /// sockets may hold datagrams for the driver, an idle peer gives back
    /// its spare buffers, and its deadline moves.
    fn after_flush(&mut self, id: PeerId, now: Instant) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        self.changed.insert(id);
        if !peer.in_flushed {
            peer.in_flushed = true;
            self.flushed.push(id);
        }
        let udp = &peer.udp;
        let stack = &mut peer.stack;
        if !peer.in_udp_ready && udp.values().any(|h| stack.udp(*h).can_recv()) {
            peer.in_udp_ready = true;
            self.udp_ready.push(id);
        }
        if peer.conns.is_empty() && peer.listeners.values().all(Vec::is_empty) {
            peer.stack.device.trim(IDLE_POOL);
        }
        self.reschedule(id, now);
    }

    /// Put the peer's next deadline in the heap if it moved earlier, with
    /// its stack's next deadline computed afresh.
    fn reschedule(&mut self, id: PeerId, now: Instant) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        peer.stack_at = peer.stack.poll_at(now);
        self.schedule(id);
    }

    /// Put the peer's next deadline in the heap if it moved earlier (its
    /// stack's deadline as last computed).
    fn schedule(&mut self, id: PeerId) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        let mut at = peer.expires_at;
        if let Some(t) = peer.next_timer {
            at = at.min(t);
        }
        if let Some(s) = peer.stack_at {
            at = at.min(s);
        }
        // A deadline that moved later keeps its earlier entry: it fires
        // early once, finds nothing due and is put at the new time then.
        // That saves a push per flush of a busy peer (smoltcp's timers move
        // later with every segment), which would pile up stale entries.
        if peer.scheduled.is_none_or(|cur| at < cur) {
            peer.scheduled = Some(at);
            self.deadlines.push(at, id);
        }
    }

    /// Drop stale heap entries once they outnumber the live ones.
    fn compact_deadlines(&mut self) {
        if self.deadlines.len() > 2 * self.peers.len() + 1024 {
            let peers = &self.peers;
            self.deadlines
                .compact(|id, at| peers.get(&id).is_some_and(|p| p.scheduled == Some(at)));
        }
    }

    /// Peers whose status may have changed (or that are gone) since the
    /// last call: the driver refreshes only their part of the status.
    pub fn take_changed_peers(&mut self) -> Vec<PeerId> {
        self.changed.drain().collect()
    }

    /// Peers whose in-tunnel UDP sockets received datagrams for a target
    /// since the last call (read them with `udp_targets` / `udp_recv`).
    pub fn take_udp_ready(&mut self) -> Vec<PeerId> {
        let v = std::mem::take(&mut self.udp_ready);
        for id in &v {
            if let Some(p) = self.peers.get_mut(id) {
                p.in_udp_ready = false;
            }
        }
        v
    }

    /// Peers whose stack ran since the last call (each once): the driver
    /// pumps their connections, and no others, for news from the tunnel.
    pub fn take_flushed_peers(&mut self) -> Vec<PeerId> {
        let v = std::mem::take(&mut self.flushed);
        for id in &v {
            if let Some(p) = self.peers.get_mut(id) {
                p.in_flushed = false;
            }
        }
        v
    }

    /// Whether peers ran since `take_flushed_peers` was last called.
    pub fn has_flushed_peers(&self) -> bool {
        !self.flushed.is_empty()
    }

    #[cfg(test)]
    pub(crate) fn set_admission(&mut self, admission: Admission) {
        self.admission = admission;
    }

    /// Cookie replies sent instead of processing an initiation.
    pub fn cookies_sent(&self) -> u64 {
        self.cookies_sent
    }

    /// What the status of one peer is made of, to be read at a later time
    /// (None: no such peer).
    pub(crate) fn peer_view(&self, peer: PeerId) -> Option<PeerView> {
        self.peers.get(&peer).map(|p| {
            let (bytes_out, bytes_in) = p.wg.bytes();
            PeerView {
                public_key: p.grant.public_key,
                client_address: p.grant.client_address,
                endpoint: p.endpoint,
                handshake: p.wg.handshake_clock(),
                bytes_out,
                bytes_in,
                open_connections: p.conns.len(),
                expires_at: p.expires_at,
                refused: p.refused,
            }
        })
    }

    /// The next datagram to send, and where.
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.out.pop_front()
    }

    /// Hand a sent datagram's buffer back for reuse.
    pub fn recycle(&mut self, buf: Vec<u8>) {
        self.pool.give(buf);
    }

    /// The next event for the driver.
    pub fn poll_event(&mut self) -> Option<GatewayEvent> {
        self.events.pop_front()
    }

    /// The TCP socket of an accepted connection.
    pub(crate) fn tcp(&mut self, peer: PeerId, conn: ConnId) -> Option<&mut tcp::Socket<'static>> {
        let p = self.peers.get_mut(&peer)?;
        if !p.conns.contains_key(&conn) {
            return None;
        }
        Some(p.stack.tcp(conn.0))
    }

    /// Forget a connection (reset first if still open) and free its socket.
    pub fn remove_conn(&mut self, now: Instant, peer: PeerId, conn: ConnId) {
        if let Some(p) = self.peers.get_mut(&peer)
            && p.conns.contains_key(&conn)
        {
            abort_conn(p, conn);
            flush_peer(p, &mut self.out, &mut self.pool, now);
            self.after_flush(peer, now);
        }
    }

    /// The UDP targets of a peer.
    pub fn udp_targets(&self, peer: PeerId) -> Vec<Target> {
        self.peers
            .get(&peer)
            .map(|p| p.udp.keys().copied().collect())
            .unwrap_or_default()
    }

    /// Receive one datagram a peer sent to a UDP target: (length, the
    /// client's in-tunnel endpoint).
    pub fn udp_recv(
        &mut self,
        peer: PeerId,
        target: Target,
        buf: &mut [u8],
    ) -> Option<(usize, SocketAddr)> {
        let p = self.peers.get_mut(&peer)?;
        let h = *p.udp.get(&target)?;
        let (n, meta) = p.stack.udp(h).recv_slice(buf).ok()?;
        Some((n, socket_addr(meta.endpoint)))
    }

    /// Send a reply from a UDP target back to a peer's in-tunnel endpoint.
    pub fn udp_send(
        &mut self,
        peer: PeerId,
        target: Target,
        client: SocketAddr,
        payload: &[u8],
    ) -> bool {
        let Some(p) = self.peers.get_mut(&peer) else {
            return false;
        };
        let Some(h) = p.udp.get(&target).copied() else {
            return false;
        };
        if client.ip() != p.grant.client_address {
            self.dropped.not_granted += 1;
            return false;
        }
        let ok = p.stack.udp(h).send_slice(payload, endpoint(client)).is_ok();
        if ok {
            mark_dirty(&mut self.dirty, peer, p);
        } else {
            self.dropped.queue_full += 1;
        }
        ok
    }

    /// The driver refused a new UDP flow of `peer` at its flow limit (the
    /// flows' OS sockets are the driver's, so it counts them).
    pub fn udp_flow_refused(&mut self, peer: PeerId) {
        self.dropped.over_limit += 1;
        if let Some(p) = self.peers.get_mut(&peer) {
            p.refused.udp_flows += 1;
            self.changed.insert(peer);
        }
    }

    /// Ids of all peers.
    pub fn peer_ids(&self) -> Vec<PeerId> {
        self.peers.keys().copied().collect()
    }

    /// Whether a peer exists.
    pub fn has_peer(&self, peer: PeerId) -> bool {
        self.peers.contains_key(&peer)
    }

    /// The id of the peer with this key.
    pub fn peer_id(&self, key: &PublicKey) -> Option<PeerId> {
        self.by_key.get(key).copied()
    }

    /// The grant of a peer, as currently enforced.
    pub fn grant(&self, peer: PeerId) -> Option<&PeerGrant> {
        self.peers.get(&peer).map(|p| &p.grant)
    }

    /// Number of peers.
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// What was dropped, by reason.
    pub fn dropped(&self) -> DropCounters {
        self.dropped
    }

    /// Datagrams this worker received for another worker's peer and passed
    /// on (`poll_forward`). With the kernel steering data messages to their
    /// owner, only handshake initiations should be among them.
    pub fn handed_over(&self) -> u64 {
        self.handed_over
    }

    /// Status of every peer.
    pub fn peer_statuses(&self, now: Instant) -> Vec<PeerStatus> {
        self.peers.values().map(|p| status_of(p, now)).collect()
    }
}

fn status_of(p: &Peer, now: Instant) -> PeerStatus {
    let (bytes_out, bytes_in) = p.wg.bytes();
    PeerStatus {
        public_key: p.grant.public_key,
        client_address: p.grant.client_address,
        endpoint: p.endpoint,
        handshake: p.wg.handshake_state(now),
        bytes_out,
        bytes_in,
        open_connections: p.conns.len(),
        expires_in: p.expires_at.saturating_duration_since(now),
        refused: p.refused,
    }
}

/// A peer's status as of its last change, with the parts that depend on
/// the time of reading (expiry countdown, handshake timeout) kept as
/// instants: the driver refreshes a view only when its peer changed, and
/// [`PeerView::at`] gives the exact status whenever it is read.
#[derive(Debug, Clone)]
pub(crate) struct PeerView {
    public_key: PublicKey,
    client_address: IpAddr,
    endpoint: Option<SocketAddr>,
    handshake: super::wg::HandshakeClock,
    bytes_out: u64,
    bytes_in: u64,
    open_connections: usize,
    expires_at: Instant,
    refused: LimitRefusals,
}

impl PeerView {
    /// The status at `now`.
    pub(crate) fn at(&self, now: Instant) -> PeerStatus {
        PeerStatus {
            public_key: self.public_key,
            client_address: self.client_address,
            endpoint: self.endpoint,
            handshake: self.handshake.state(now),
            bytes_out: self.bytes_out,
            bytes_in: self.bytes_in,
            open_connections: self.open_connections,
            expires_in: self.expires_at.saturating_duration_since(now),
            refused: self.refused,
        }
    }
}

/// Queue a peer for the next `poll` (once).
fn mark_dirty(dirty: &mut Vec<PeerId>, id: PeerId, peer: &mut Peer) {
    if !peer.dirty {
        peer.dirty = true;
        dirty.push(id);
    }
}

/// An authenticated datagram came from `from`: remember it as the peer's
/// endpoint (replies go there; initiations from it count as a known
/// peer's), and start its WireGuard timers.
fn note_endpoint(
    by_endpoint: &mut HashMap<SocketAddr, PeerId>,
    id: PeerId,
    peer: &mut Peer,
    from: SocketAddr,
    now: Instant,
) {
    if peer.endpoint != Some(from) {
        if let Some(old) = peer.endpoint
            && by_endpoint.get(&old) == Some(&id)
        {
            by_endpoint.remove(&old);
        }
        by_endpoint.insert(from, id);
        peer.endpoint = Some(from);
    }
    peer.next_timer.get_or_insert(now + TIMER_TICK);
}

/// `at` rounded up to the next `TIMER_SLOT` boundary after `epoch`.
fn on_grid(epoch: Instant, at: Instant) -> Instant {
    let slot = TIMER_SLOT.as_nanos();
    let since = at.saturating_duration_since(epoch).as_nanos();
    let rounded = since.div_ceil(slot) * slot;
    epoch + Duration::from_nanos(u64::try_from(rounded).unwrap_or(u64::MAX))
}

/// Make the peer's sockets match `targets`: drop listeners, UDP sockets
/// and connections of targets no longer granted (UDP sockets are made on
/// first use, `ensure_udp_socket`).
fn apply_targets(peer: &mut Peer, targets: &[Target], _now: Instant) {
    let new: HashSet<Target> = targets.iter().copied().collect();
    let gone: Vec<Target> = peer.targets.difference(&new).copied().collect();
    for t in &gone {
        if let Some(hs) = peer.listeners.remove(t) {
            for h in hs {
                peer.stack.sockets.remove(h);
            }
        }
        if let Some(h) = peer.udp.remove(t) {
            peer.stack.sockets.remove(h);
        }
        let conns: Vec<ConnId> = peer
            .conns
            .iter()
            .filter(|(_, ct)| *ct == t)
            .map(|(c, _)| *c)
            .collect();
        for c in conns {
            abort_conn(peer, c);
        }
    }
    peer.targets = new;
}

/// The in-tunnel UDP socket of a granted UDP target, made when the peer
/// first sends to it: its buffers (2 x 256 KiB, and 256 packet slots each
/// way) are not held by peers that never use the target.
fn ensure_udp_socket(peer: &mut Peer, target: Target) {
    if peer.udp.contains_key(&target) {
        return;
    }
    let mut s = peer.stack.new_udp_socket();
    let ep = IpListenEndpoint {
        addr: Some(to_smol(target.addr.ip())),
        port: target.addr.port(),
    };
    if s.bind(ep).is_ok() {
        let h = peer.stack.add(s);
        peer.udp.insert(target, h);
    }
}

/// Reset a connection: the RST goes out on the next flush; the socket is
/// removed after that flush would have sent it (here: right after an
/// explicit stack poll by the caller via `flush_peer`).
fn abort_conn(peer: &mut Peer, conn: ConnId) {
    if peer.conns.remove(&conn).is_some() {
        let s = peer.stack.tcp(conn.0);
        s.abort();
        // Keep the socket until its RST has been emitted, then free it.
        peer.stack.poll_aborted.push(conn.0);
    }
}

/// Make sure a listening socket is waiting for this SYN.
fn ensure_listener(
    syns: &mut HashMap<Target, usize>,
    listeners: &mut HashMap<Target, Vec<SocketHandle>>,
    stack: &mut Stack,
    in_use: usize,
    target: Target,
) -> bool {
    let seen = syns.entry(target).or_insert(0);
    *seen += 1;
    let need = *seen;
    let have = listeners.get(&target).map_or(0, Vec::len);
    if have >= need {
        return true;
    }
    if in_use >= stack.max_connections() {
        return false;
    }
    let mut s = stack.new_tcp_socket();
    let ep = IpListenEndpoint {
        addr: Some(to_smol(target.addr.ip())),
        port: target.addr.port(),
    };
    if s.listen(ep).is_err() {
        return false;
    }
    let h = stack.add(s);
    listeners.entry(target).or_default().push(h);
    true
}

/// Poll the stack, encrypt what it emitted, free sockets whose RST is out.
fn flush_peer(
    peer: &mut Peer,
    out: &mut VecDeque<(SocketAddr, Vec<u8>)>,
    pool: &mut BufferPool,
    now: Instant,
) {
    peer.stack.poll(now);
    let to = peer.endpoint;
    while let Some(packet) = peer.stack.device.pop_tx() {
        // Encrypt straight into the datagram buffer that will be sent.
        let mut datagram = pool.take_dirty();
        if peer
            .wg
            .encapsulate_into(now, &packet, &mut datagram, &mut |d| {
                push_to(out, pool, to, d)
            })
            && let Some(to) = to
        {
            out.push_back((to, datagram));
        } else {
            pool.give(datagram);
        }
        peer.stack.device.recycle(packet);
    }
    for h in std::mem::take(&mut peer.stack.poll_aborted) {
        peer.stack.sockets.remove(h);
    }
}

/// Move listeners that received a connection into `conns`.
fn accept_new(id: PeerId, peer: &mut Peer, events: &mut VecDeque<GatewayEvent>) {
    for (target, handles) in &mut peer.listeners {
        let mut i = 0;
        while i < handles.len() {
            let h = handles[i];
            let state = peer.stack.tcp(h).state();
            if state == tcp::State::Listen {
                i += 1;
                continue;
            }
            handles.swap_remove(i);
            if state == tcp::State::Closed {
                peer.stack.sockets.remove(h);
                continue;
            }
            let conn = ConnId(h);
            peer.conns.insert(conn, *target);
            events.push_back(GatewayEvent::TcpAccepted {
                peer: id,
                conn,
                target: *target,
            });
        }
    }
}

#[cfg(test)]
mod grid_tests {
    use super::*;

    #[test]
    fn ticks_are_rounded_up_to_the_slot_grid() {
        let epoch = Instant::now();
        let slot = TIMER_SLOT;
        assert_eq!(on_grid(epoch, epoch), epoch);
        assert_eq!(on_grid(epoch, epoch + slot), epoch + slot);
        assert_eq!(
            on_grid(epoch, epoch + Duration::from_nanos(1)),
            epoch + slot
        );
        assert_eq!(
            on_grid(epoch, epoch + slot * 7 + Duration::from_micros(1)),
            epoch + slot * 8
        );
        // Two peers whose ticks are a few milliseconds apart share a slot.
        let a = on_grid(epoch, epoch + Duration::from_millis(1001));
        let b = on_grid(epoch, epoch + Duration::from_millis(1008));
        assert_eq!(a, b);
    }
}
