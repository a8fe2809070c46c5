//! One WireGuard peer: boringtun's `Tunn` plus the bookkeeping Sallyport
//! reports (handshake state, byte counts).
//!
//! boringtun keeps its own monotonic clock for the protocol timers, so the
//! WireGuard timers cannot be injected; everything Sallyport adds on top
//! (handshake timeout, expiry, smoltcp time) takes `now` from the caller.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use boringtun::noise::errors::WireGuardError;
use boringtun::noise::rate_limiter::RateLimiter;
use boringtun::noise::{Tunn, TunnResult};
use std::sync::Arc;

use crate::key::{PrivateKey, PublicKey};

/// Largest datagram boringtun may produce or consume: a maximal inner packet
/// plus the 32-byte data header/tag, and never less than a handshake (148).
pub(crate) const MAX_DATAGRAM: usize = 65535 + 32;

/// WireGuard message type of a handshake initiation (first byte, LE u32).
const HANDSHAKE_INIT: u8 = 1;
/// WireGuard message type of a handshake response.
const HANDSHAKE_RESP: u8 = 2;
/// WireGuard message type of a cookie reply.
const COOKIE_REPLY: u8 = 3;

/// Where the handshake with this peer stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeState {
    /// No handshake has completed yet and none has timed out.
    Pending,
    /// A session is up; the last handshake completed at this time.
    Established {
        /// When (monotonic clock) the last handshake completed.
        at: Instant,
    },
    /// A handshake was sent and not answered within the configured timeout:
    /// the gateway is unreachable or does not know this key (any more).
    TimedOut {
        /// When the unanswered attempt started.
        since: Instant,
    },
}

/// Smallest output buffer boringtun accepts (a handshake initiation).
const MIN_DST: usize = 148;

/// What a datagram turned into.
pub(crate) enum Decapsulated {
    /// An inner IP packet, now in the caller's buffer, with the source
    /// address boringtun read from it.
    Packet(IpAddr),
    /// Protocol traffic only (handshake, keepalive, cookie).
    Control,
}

/// What the handshake state is derived from, apart from `now`: a copy can
/// tell the state at a later time (the gateway's status is read that way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HandshakeClock {
    started: Option<Instant>,
    established_at: Option<Instant>,
    timeout: Duration,
}

impl HandshakeClock {
    pub(crate) fn state(&self, now: Instant) -> HandshakeState {
        if let Some(since) = self.started
            && now.saturating_duration_since(since) >= self.timeout
        {
            return HandshakeState::TimedOut { since };
        }
        match self.established_at {
            Some(at) => HandshakeState::Established { at },
            None => HandshakeState::Pending,
        }
    }
}

pub(crate) struct WgPeer {
    tunn: Tunn,
    /// Scratch space for boringtun's own output (handshakes, keepalives,
    /// queued packets), reused for every call.
    scratch: Vec<u8>,
    clock: HandshakeClock,
}

impl std::fmt::Debug for WgPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WgPeer")
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

impl WgPeer {
    pub(crate) fn new(
        own: &PrivateKey,
        peer: PublicKey,
        keepalive: Option<u16>,
        index: u32,
        rate_limiter: Option<Arc<RateLimiter>>,
        timeout: Duration,
        mtu: usize,
    ) -> Self {
        Self {
            tunn: Tunn::new(
                own.secret(),
                peer.to_dalek(),
                None,
                keepalive,
                index,
                rate_limiter,
            ),
            // Room for what boringtun writes here: handshake messages,
            // keepalives and queued inner packets (at most one MTU). Sized
            // to that rather than to MAX_DATAGRAM, so an idle gateway peer
            // does not hold 64 KiB for it.
            scratch: vec![0u8; (mtu + 32).max(MIN_DST)],
            clock: HandshakeClock {
                started: None,
                established_at: None,
                timeout,
            },
        }
    }

    fn note_sent(&mut self, datagram_first_byte: Option<u8>, now: Instant) {
        if datagram_first_byte == Some(HANDSHAKE_INIT) && self.clock.started.is_none() {
            self.clock.started = Some(now);
        }
    }

    fn note_established(&mut self, now: Instant) {
        self.clock.started = None;
        self.clock.established_at = Some(now);
    }

    /// Start a handshake now instead of waiting for the first packet, so
    /// the first byte an application sends does not pay for the round trip.
    pub(crate) fn initiate(&mut self, now: Instant, out: &mut impl FnMut(&[u8])) {
        if let TunnResult::WriteToNetwork(d) = self
            .tunn
            .format_handshake_initiation(&mut self.scratch, false)
        {
            let first = d.first().copied();
            out(d);
            self.note_sent(first, now);
        }
    }

    /// Decrypt one datagram into `dst` (resized to the inner packet, so the
    /// caller can hand the buffer on without copying). `out` receives
    /// datagrams to send back (handshake responses, cookies, queued packets).
    pub(crate) fn decapsulate(
        &mut self,
        now: Instant,
        from: Option<IpAddr>,
        datagram: &[u8],
        dst: &mut Vec<u8>,
        out: &mut impl FnMut(&[u8]),
    ) -> Result<Decapsulated, WireGuardError> {
        let kind = datagram.first().copied();
        dst.resize(datagram.len().max(MIN_DST), 0);
        // First the datagram itself; then, as boringtun asks, drain whatever it
        // queued while the handshake was pending (repeat with an empty input).
        let (len, src) = match self.tunn.decapsulate(from, datagram, dst) {
            TunnResult::Done => {
                if kind == Some(HANDSHAKE_RESP) {
                    self.note_established(now);
                }
                if kind == Some(COOKIE_REPLY) {
                    self.retry_with_cookie(now, out);
                }
                (None, None)
            }
            TunnResult::Err(e) => return Err(e),
            TunnResult::WriteToNetwork(d) => {
                out(d);
                if matches!(kind, Some(HANDSHAKE_RESP) | Some(HANDSHAKE_INIT)) {
                    self.note_established(now);
                }
                self.flush_queued(now, out);
                (None, None)
            }
            TunnResult::WriteToTunnelV4(p, a) => (Some(p.len()), Some(IpAddr::V4(a))),
            TunnResult::WriteToTunnelV6(p, a) => (Some(p.len()), Some(IpAddr::V6(a))),
        };
        match (len, src) {
            (Some(len), Some(src)) => {
                dst.truncate(len);
                Ok(Decapsulated::Packet(src))
            }
            _ => Ok(Decapsulated::Control),
        }
    }

    /// The responder is under load and sent a cookie (boringtun checked it
    /// against our last initiation and stored it): initiate again at once,
    /// now with a valid MAC2, which a loaded responder processes. Without
    /// this, boringtun waits for its 5 s retransmit. One initiation per
    /// authenticated cookie reply, so this cannot be used to amplify.
    fn retry_with_cookie(&mut self, now: Instant, out: &mut impl FnMut(&[u8])) {
        if let TunnResult::WriteToNetwork(d) = self
            .tunn
            .format_handshake_initiation(&mut self.scratch, true)
        {
            let first = d.first().copied();
            out(d);
            self.note_sent(first, now);
        }
    }

    fn flush_queued(&mut self, now: Instant, out: &mut impl FnMut(&[u8])) {
        while let TunnResult::WriteToNetwork(d) =
            self.tunn.decapsulate(None, &[], &mut self.scratch)
        {
            let first = d.first().copied();
            out(d);
            self.note_sent(first, now);
        }
    }

    /// Encrypt one inner packet into `dst` (resized to the datagram).
    /// Returns false if there is nothing to send: then boringtun queued the
    /// packet and `out` got a handshake initiation instead.
    pub(crate) fn encapsulate_into(
        &mut self,
        now: Instant,
        packet: &[u8],
        dst: &mut Vec<u8>,
        out: &mut impl FnMut(&[u8]),
    ) -> bool {
        dst.resize((packet.len() + 32).max(MIN_DST), 0);
        let (len, first) = match self.tunn.encapsulate(packet, dst) {
            TunnResult::WriteToNetwork(d) => (d.len(), d.first().copied()),
            _ => return false,
        };
        if first == Some(HANDSHAKE_INIT) {
            // No session yet: the packet is queued; this is the initiation.
            let init = dst.get(..len).unwrap_or_default();
            out(init);
            self.note_sent(first, now);
            return false;
        }
        dst.truncate(len);
        self.note_sent(first, now);
        true
    }

    /// Run the WireGuard timers (rekey, retransmit, keepalive). Returns
    /// whether they sent something.
    pub(crate) fn update_timers(&mut self, now: Instant, out: &mut impl FnMut(&[u8])) -> bool {
        match self.tunn.update_timers(&mut self.scratch) {
            TunnResult::WriteToNetwork(d) => {
                let first = d.first().copied();
                out(d);
                self.note_sent(first, now);
                return true;
            }
            TunnResult::Err(WireGuardError::ConnectionExpired) => {
                // Session keys are gone (REJECT_AFTER_TIME * 3 or
                // REKEY_ATTEMPT_TIME exceeded). Not an error by itself: the
                // next packet starts a new handshake.
            }
            TunnResult::Err(e) => tracing::debug!(error = ?e, "wireguard timer error"),
            _ => {}
        }
        false
    }

    pub(crate) fn handshake_state(&self, now: Instant) -> HandshakeState {
        self.clock.state(now)
    }

    /// How long until boringtun's timers should run again: the short
    /// [`super::TIMER_TICK`] while a handshake initiation waits for its
    /// answer (its retry and give-up timeout), [`super::IDLE_TIMER_TICK`]
    /// otherwise. Client and gateway both schedule by it.
    pub(crate) fn timer_tick(&self) -> Duration {
        if self.clock.started.is_some() {
            super::TIMER_TICK
        } else {
            super::IDLE_TIMER_TICK
        }
    }

    pub(crate) fn handshake_clock(&self) -> HandshakeClock {
        self.clock
    }

    /// (inner bytes sent, inner bytes received) as counted by boringtun.
    pub(crate) fn bytes(&self) -> (u64, u64) {
        let (_, tx, rx, _, _) = self.tunn.stats();
        (tx as u64, rx as u64)
    }
}
