//! The sans-IO core: WireGuard (boringtun) + TCP/IP (smoltcp) + the grant
//! policy, with no sockets, no tasks and no clock of its own.
//!
//! Datagrams and `now` go in through `handle_datagram` / `poll`; datagrams
//! to send come out of `poll_transmit`, and `poll_timeout` says when to call
//! `poll` again. The tokio driver (`crate::driver`) owns the real sockets.
//! Keeping the core free of I/O makes it testable with random input (see the
//! proptests) and keeps every enforcement decision in one place.

pub(crate) mod admission;
pub(crate) mod buffers;
pub(crate) mod client;
pub(crate) mod deadlines;
pub(crate) mod device;
pub(crate) mod gateway;
pub(crate) mod packet;
pub(crate) mod stack;
pub(crate) mod wg;

use std::time::Duration;

use smoltcp::iface::SocketHandle;

pub use client::ClientCore;
pub use gateway::{Forwarded, GatewayCore, GatewayEvent, PeerId, Shard};
pub use wg::HandshakeState;

/// How often boringtun's `update_timers` runs (boringtun's own device uses
/// 250 ms). A 1 s tick was tried for the gateway's sake (WireGuard's
/// timers are whole seconds), and the wireguard-go interop test then took
/// 7-15 s, which was read as a 5 s handshake retry. The slow runs were
/// later traced (with 250 ms, where they happened too) to the test's TCP
/// echo, not its handshake (done in 10-20 ms every time): burst loss at
/// wireguard-go's socket buffer and smoltcp's backed-off retransmit
/// timeouts, fixed by congestion control (`stack.rs` `new_tcp_socket`).
/// Client and gateway now tick once a second while no handshake of their
/// own is in flight ([`IDLE_TIMER_TICK`]), and the gateway puts its
/// peers' ticks on a grid so that many share a wakeup
/// (`gateway::TIMER_SLOT`).
pub(crate) const TIMER_TICK: Duration = Duration::from_millis(250);

/// The tick of a client, and of a gateway peer, while no handshake of its
/// own is in flight. WireGuard's timers
/// (keepalive, rekey after 120 s, session expiry) are whole seconds, so an
/// established, idle tunnel only needs its timers checked once a second;
/// the 250 ms [`TIMER_TICK`] is kept while a handshake waits for its answer
/// (its retry and its give-up timeout). An agent with three idle tunnels
/// woke 12 times a second for their ticks alone, most of its idle CPU
/// (`scripts/bench-app-idle`, README "Tray app").
pub(crate) const IDLE_TIMER_TICK: Duration = Duration::from_secs(1);

/// One in-tunnel connection (TCP stream or UDP flow).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub(crate) SocketHandle);

/// Packets and datagrams dropped instead of processed, by reason. Every
/// drop is counted so a helpdesk can tell "blocked by policy" from "broken".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DropCounters {
    /// Datagrams that are not WireGuard, or inner packets that are not IP.
    pub malformed: u64,
    /// Datagrams that failed WireGuard authentication or replay checks.
    pub rejected_by_wireguard: u64,
    /// Datagrams for a peer this side does not know (gateway), or from an
    /// address other than the gateway (client).
    pub unknown_peer: u64,
    /// Inner packets whose source is outside the peer's allowed IPs.
    pub bad_source: u64,
    /// Inner packets to or from a destination outside the grant.
    pub not_granted: u64,
    /// Inner packets of a kind no grant allows (ICMP, fragments, ...).
    pub unsupported: u64,
    /// Packets dropped because a queue or buffer was full.
    pub queue_full: u64,
    /// Connections refused because the per-tunnel limit was reached.
    pub over_limit: u64,
}

impl DropCounters {
    /// Both counts added, reason by reason (a gateway's workers).
    pub fn plus(&self, o: &DropCounters) -> DropCounters {
        DropCounters {
            malformed: self.malformed + o.malformed,
            rejected_by_wireguard: self.rejected_by_wireguard + o.rejected_by_wireguard,
            unknown_peer: self.unknown_peer + o.unknown_peer,
            bad_source: self.bad_source + o.bad_source,
            not_granted: self.not_granted + o.not_granted,
            unsupported: self.unsupported + o.unsupported,
            queue_full: self.queue_full + o.queue_full,
            over_limit: self.over_limit + o.over_limit,
        }
    }

    /// Sum over all reasons.
    pub fn total(&self) -> u64 {
        self.malformed
            + self.rejected_by_wireguard
            + self.unknown_peer
            + self.bad_source
            + self.not_granted
            + self.unsupported
            + self.queue_full
            + self.over_limit
    }
}

/// Why a tunnel (or a gateway peer) stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// Asked to (shutdown, peer removed, supervisor decision).
    Shutdown,
    /// The grant expired.
    Expired,
}

/// Why the core refused to open an in-tunnel connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    /// The destination is not one of the application's targets.
    #[error("{0} is not a target of this application's grant")]
    NotGranted(crate::config::Target),
    /// The tunnel is closed.
    #[error("the tunnel is closed ({0:?}); no new connections")]
    Closed(CloseReason),
    /// Too many open connections.
    #[error("too many open connections in this tunnel (limit {0})")]
    Limit(usize),
    /// The target's address family has no address inside the tunnel.
    #[error("target {0} is of a different IP family than the tunnel address")]
    Family(crate::config::Target),
    /// No free local port inside the tunnel.
    #[error("no free local port inside the tunnel")]
    NoPort,
}
#[cfg(test)]
mod tests;
