//! The broker's one notion of "now". Every expiry the broker decides — the
//! 60 s challenge nonce, a verdict's validity, a grant's expiry and the
//! sweep that closes it, an access token's `exp`/`nbf` and its sign-in's age,
//! the JWKS cache's TTL, an open event stream's end, an EAT's
//! `iat`/`exp`, a revocation's cut-off — and every timestamp it records
//! (enrolment, audit log, verdicts, grants) reads the [`Clock`] the broker
//! was started with, never the system clock directly. Production uses
//! [`SystemClock`]; tests inject a [`ManualClock`] and move it, so an expiry
//! is checked in microseconds of virtual time rather than a minute of
//! waiting, and exactly at its boundary.
//!
//! # What stays on real time
//!
//! Durations that pace work rather than decide validity run on the
//! monotonic clock and ignore the injected one: the grant sweep's 1 s tick,
//! the JWKS refetch throttle (`token::JwksCache::MIN_REFETCH`), the HTTP
//! client's timeout, the event stream's keep-alive and 1 s check tick
//! (whether the stream is due to end is decided on the broker's clock), and
//! the gateway's own peer timers (crate `tunnel` schedules a peer's removal
//! on `Instant`s).
//! The gateway is handed each grant's expiry through
//! [`Clock::to_system_time`]: the grant's remaining life measured on the
//! broker's clock when the peer is installed, then counted down in real
//! time. So with a [`ManualClock`], moving the clock past a grant's expiry
//! does not fire the gateway's timer; the sweep (next real tick, within
//! ~1 s) closes the grant in the store and removes the peer instead.
//!
//! # When the wall clock jumps (with [`SystemClock`])
//!
//! The broker stores absolute Unix times, so a jump of the system clock by
//! Δ is a jump of every stored deadline's distance by Δ.
//!
//! * **Forward by Δ**: everything ages by Δ at once. Outstanding nonces,
//!   verdicts and grants expire early (nonce-expired, verdict-expired; the
//!   next sweep closes grants whose expiry is now past, removes their peers
//!   and tells the agents "expired"). Access tokens and EATs signed on an
//!   unjumped clock look Δ older and are refused as expired once Δ exceeds
//!   the 60 s skew. Nothing is honoured longer than intended; users re-attest
//!   or sign in again. Used nonces older than a day by the new clock are
//!   forgotten, so a replay of one is refused as unknown rather than replayed.
//! * **Backward by Δ**: everything lives up to Δ longer in the store.
//!   Nonces are accepted up to Δ past their 60 s, verdicts honoured up to Δ
//!   past `valid_until`, access tokens accepted up to Δ past `exp`; grants
//!   stay open in the store (their WireGuard key and tunnel address held)
//!   until the sweep catches up. The gateway still drops each peer at its
//!   real expiry, because its timers are monotonic — but a broker restarted
//!   during those Δ reinstalls the peer for the remaining (lengthened) time.
//!   Tokens and EATs issued on a correct clock look up to Δ in the future and
//!   are refused as not yet valid once Δ exceeds the skew. A session
//!   revocation is stamped with the jumped time, so it only covers sign-ins
//!   whose `auth_time` is at or before that stamp: sign-ins in the Δ before
//!   the revocation survive it (an until-cleared revocation does not depend
//!   on the stamp). Audit timestamps go backwards (the log stays ordered by
//!   its sequence number, not by time).
//!
//! Run the broker on an NTP-disciplined clock that slews rather than steps.

use std::fmt::Debug;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The source of "now" for every time-dependent decision the broker makes.
/// Unix seconds: the unit the store, the tokens and the API's expiries use.
/// See the [module documentation](self) for what happens when it jumps.
pub trait Clock: Debug + Send + Sync {
    /// Unix seconds now.
    fn now(&self) -> i64;

    /// `unix` (a time on this clock) as a wall-clock time for the gateway,
    /// whose peer timers run on real time. The default is the plain
    /// conversion, right for a clock that follows the system clock; a clock
    /// that does not must map the remaining time onto the system clock.
    fn to_system_time(&self, unix: i64) -> SystemTime {
        system_time(unix)
    }
}

/// The system's wall clock: what `broker::server::start` uses.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        unix(SystemTime::now())
    }
}

/// A clock that moves only when told to, for tests: start it at a time,
/// then [`set`](Self::set) or [`advance`](Self::advance) it to put nonces,
/// verdicts, grants and tokens past (or exactly at) their expiry. Shared
/// between the test and the broker through an `Arc`.
#[derive(Debug)]
pub struct ManualClock {
    now: AtomicI64,
}

impl ManualClock {
    /// A clock stopped at `unix` seconds.
    pub fn new(unix: i64) -> Self {
        Self {
            now: AtomicI64::new(unix),
        }
    }

    /// A clock stopped at the system clock's current second (so tokens and
    /// attestations stamped with real time are current for the broker).
    pub fn starting_now() -> Self {
        Self::new(SystemClock.now())
    }

    /// Moves the clock to `unix` (backwards too: that is a clock jump).
    pub fn set(&self, unix: i64) {
        self.now.store(unix, Ordering::SeqCst);
    }

    /// Moves the clock forward by `by` (whole seconds; the rest is dropped)
    /// and returns the new time.
    pub fn advance(&self, by: Duration) -> i64 {
        let by = i64::try_from(by.as_secs()).unwrap_or(i64::MAX);
        let step = |t: i64| Some(t.saturating_add(by));
        // `fetch_update` with a closure that always answers `Some` cannot
        // fail; either arm holds the previous value.
        let previous = self
            .now
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, step)
            .unwrap_or_else(|t| t);
        previous.saturating_add(by)
    }
}

impl Clock for ManualClock {
    fn now(&self) -> i64 {
        self.now.load(Ordering::SeqCst)
    }

    /// The time left until `unix` on this clock, counted from the system
    /// clock's now: a grant with 30 s left on the manual clock lives 30 real
    /// seconds at the gateway, whatever the manual clock reads.
    fn to_system_time(&self, unix: i64) -> SystemTime {
        let left = unix.saturating_sub(self.now());
        let real_now = SystemTime::now();
        match u64::try_from(left) {
            Ok(left) => real_now
                .checked_add(Duration::from_secs(left))
                .unwrap_or(real_now),
            // Already past: a time in the past, so the gateway refuses it.
            Err(_) => real_now
                .checked_sub(Duration::from_secs(left.unsigned_abs()))
                .unwrap_or(UNIX_EPOCH),
        }
    }
}

/// Unix seconds of `t` (0 before the epoch, saturating far in the future).
fn unix(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// `unix` seconds as a [`SystemTime`] (the epoch for negative values).
pub fn system_time(unix: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::try_from(unix).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = ManualClock::new(1_800_000_000);
        assert_eq!(clock.now(), 1_800_000_000);
        assert_eq!(clock.advance(Duration::from_millis(61_900)), 1_800_000_061);
        assert_eq!(clock.now(), 1_800_000_061);
        clock.set(1_700_000_000);
        assert_eq!(clock.now(), 1_700_000_000, "backwards is allowed");
        clock.set(i64::MAX - 1);
        assert_eq!(clock.advance(Duration::from_secs(10)), i64::MAX);
    }

    #[test]
    fn manual_clock_maps_remaining_time_onto_real_time() {
        let clock = ManualClock::new(1_000);
        let before = SystemTime::now();
        let at = clock.to_system_time(1_030);
        let after = SystemTime::now();
        assert!(at >= before + Duration::from_secs(30));
        assert!(at <= after + Duration::from_secs(30));
        assert!(clock.to_system_time(990) < before, "past stays past");
    }

    #[test]
    fn system_clock_is_the_plain_conversion() {
        let now = SystemClock.now();
        assert!(now > 1_700_000_000);
        assert_eq!(SystemClock.to_system_time(now), system_time(now));
        assert_eq!(system_time(-5), UNIX_EPOCH);
    }
}
