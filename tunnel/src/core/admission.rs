//! Which handshake initiations the gateway processes without asking for a
//! cookie first: a token bucket sized from what a handshake costs, so an
//! honest burst (a whole office opening its tunnels at once) goes through
//! and a flood is answered with cookies at a bounded CPU cost.
//!
//! WireGuard's cookie (MAC2) makes an initiator prove its source address
//! before the responder spends the Diffie-Hellman operations of a
//! handshake on it. boringtun's own limiter counts initiations in fixed
//! one-second windows (the gateway used 100/s), so 200 honest tunnels
//! opened in a row already got cookies and waited for WireGuard's 5 s
//! retry. Here the decision is a token bucket with time passed in (sans
//! IO, testable); boringtun still checks MAC1 and MAC2 and formats the
//! cookie replies.

use std::time::{Duration, Instant};

/// Gateway CPU time for one handshake initiation: `parse_handshake_anon`
/// plus boringtun's responder (five X25519 operations in all). Measured by
/// `cargo bench -p tunnel --bench gateway_scale` ("gateway core: ... µs per
/// handshake initiation"): 284 µs on the 2-core VM of tunnel/README.md,
/// rounded up.
pub(crate) const HANDSHAKE_COST: Duration = Duration::from_micros(300);

/// Share of one core that handshakes may take when initiations keep coming:
/// a quarter, so data traffic keeps the rest even under a flood.
const SUSTAINED_SHARE: u32 = 4;

/// Initiations per second admitted when sustained: one core's handshake
/// capacity (1 s / `HANDSHAKE_COST`, about 3,300) divided by
/// `SUSTAINED_SHARE`: 833/s.
pub(crate) fn sustained_rate() -> f64 {
    1.0 / HANDSHAKE_COST.as_secs_f64() / f64::from(SUSTAINED_SHARE)
}

/// Initiations admitted at once from a full bucket: twice the 1,000
/// simultaneous setups the gateway is sized for. Such a burst costs about
/// 0.6 s of one core, once; a flood then gets `sustained_rate`.
pub(crate) const BURST: f64 = 2048.0;

/// A token bucket: `capacity` tokens, refilled at `per_sec`.
#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    capacity: f64,
    per_sec: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub(crate) fn new(capacity: f64, per_sec: f64, now: Instant) -> Self {
        Self {
            capacity,
            per_sec,
            tokens: capacity,
            last: now,
        }
    }

    /// Take one token if there is one.
    pub(crate) fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.tokens = (self.tokens + elapsed * self.per_sec).min(self.capacity);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The gateway's admission of handshake initiations (before any X25519
/// work). Initiations from the endpoint a configured peer last
/// authenticated from draw on a bucket of their own, so a flood from
/// strangers cannot starve the rekeys of peers already in session.
#[derive(Debug, Clone)]
pub(crate) struct Admission {
    strangers: TokenBucket,
    known: TokenBucket,
}

impl Admission {
    pub(crate) fn new(now: Instant) -> Self {
        Self {
            strangers: TokenBucket::new(BURST, sustained_rate(), now),
            known: TokenBucket::new(BURST, sustained_rate(), now),
        }
    }

    /// An admission with other limits (tests: a flood without thousands of
    /// handshakes).
    #[cfg(test)]
    pub(crate) fn with_limits(capacity: f64, per_sec: f64, now: Instant) -> Self {
        Self {
            strangers: TokenBucket::new(capacity, per_sec, now),
            known: TokenBucket::new(capacity, per_sec, now),
        }
    }

    /// Whether to process an initiation without a cookie. `known_endpoint`:
    /// it comes from where a configured peer's traffic last came from.
    pub(crate) fn admit(&mut self, now: Instant, known_endpoint: bool) -> bool {
        if known_endpoint {
            self.known.take(now)
        } else {
            self.strangers.take(now)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sustained_rate_follows_the_measured_cost() {
        let rate = sustained_rate();
        assert!((rate - 833.3).abs() < 1.0, "{rate}");
    }

    #[test]
    fn a_burst_of_a_thousand_at_one_instant_is_admitted() {
        let now = Instant::now();
        let mut a = Admission::new(now);
        let admitted = (0..1000).filter(|_| a.admit(now, false)).count();
        assert_eq!(admitted, 1000);
    }

    #[test]
    fn a_flood_is_held_to_the_burst_plus_the_sustained_rate() {
        let t0 = Instant::now();
        let mut a = Admission::new(t0);
        // 30,000 initiations per second for two seconds.
        let step = Duration::from_micros(33);
        let n = 60_000u32;
        let admitted = (0..n).filter(|i| a.admit(t0 + step * *i, false)).count();
        let elapsed = (step * n).as_secs_f64();
        let bound = BURST + elapsed * sustained_rate();
        assert!(
            admitted as f64 <= bound + 1.0,
            "{admitted} admitted, at most {bound}"
        );
        assert!(
            admitted as f64 >= bound - 2.0,
            "{admitted} admitted, the bucket refills at {bound}"
        );
        // Known peers still get in: their bucket is untouched.
        assert!(a.admit(t0 + step * n, true));
    }

    #[test]
    fn the_bucket_refills_but_never_beyond_its_capacity() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(3.0, 10.0, t0);
        assert!(b.take(t0) && b.take(t0) && b.take(t0));
        assert!(!b.take(t0), "empty");
        assert!(
            b.take(t0 + Duration::from_millis(100)),
            "one token per 100 ms"
        );
        assert!(!b.take(t0 + Duration::from_millis(100)));
        let later = t0 + Duration::from_secs(3600);
        assert_eq!((0..10).filter(|_| b.take(later)).count(), 3, "capped");
        // A clock that goes backwards does not mint tokens.
        assert!(!b.take(t0));
    }
}
