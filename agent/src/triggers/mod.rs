//! When to re-measure posture before the schedule says so: the machine woke
//! from sleep, its network changed, or a file that decides a posture check
//! changed (an update installed, the firewall configuration rewritten).
//!
//! Sans-IO: [`Watcher::observe`] compares one [`Snapshot`] with the previous
//! one and names what changed; [`probe::snapshot`] takes snapshots (cheap:
//! the interface list and a handful of file times). The runtime takes one
//! every few seconds and feeds `EnvironmentChanged` to the supervisor on any
//! trigger, which collects posture at once and re-attests.
//!
//! Wake is seen without OS hooks: the monotonic clock stops while the
//! machine sleeps (CLOCK_MONOTONIC on Linux, the uptime clock on macOS) and
//! the wall clock does not, so wall time running ahead of monotonic time
//! between two snapshots means the machine slept. A wall clock stepped by NTP
//! looks the same; that costs one extra posture run, never a missed one.
//!
//! # Call contract
//!
//! - **Who calls.** The runtime's housekeeping takes a [`Snapshot`] with
//!   [`probe::Prober::snapshot`] every five seconds and passes it to
//!   [`Watcher::observe`]; any trigger becomes `EnvironmentChanged` for the
//!   supervisor. The watcher has no deadline of its own: it is sampled, and
//!   only compares a snapshot with the one before.
//! - **Time is passed in**, in the snapshot: `wall` is the wall clock
//!   (`SystemTime`) and `monotonic` a clock that never steps, both read by
//!   the prober at the same moment. The watcher reads no clock.
//! - **The wall clock jumps forward** (or the machine slept): wall time ran
//!   ahead of monotonic time by more than [`WAKE_THRESHOLD`], and the next
//!   observation returns [`Trigger::Wake`], so posture is measured again at
//!   once. The supervisor, fed the same new time, has already closed
//!   whatever the jump expired.
//! - **The wall clock jumps backward:** monotonic time ran ahead of wall
//!   time by more than the threshold, and the next observation returns
//!   [`Trigger::ClockSteppedBack`]. Posture is measured again at once for
//!   the same reason as a wake (the measurement schedule is wall-clock and
//!   would otherwise wait the size of the jump), which restarts that
//!   schedule from the new time. Either way the jump costs at most one extra
//!   posture run, and the next observation compares with the stepped clock,
//!   so a later sleep is still seen.

pub mod probe;

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

/// What the machine looked like at one instant.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// Wall-clock time.
    pub wall: SystemTime,
    /// Monotonic time since any fixed origin (stops during sleep).
    pub monotonic: Duration,
    /// A digest of the network interfaces and their addresses (`None` when
    /// they could not be listed).
    pub network: Option<u64>,
    /// Modification time of each watched file (`None`: missing).
    pub files: BTreeMap<PathBuf, Option<SystemTime>>,
}

/// Why posture is re-measured now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// The machine slept (about this long) and woke.
    Wake {
        /// Time the monotonic clock did not see.
        slept: Duration,
    },
    /// The wall clock was set back (about this far): the supervisor's
    /// wall-clock posture schedule would wait that much longer.
    ClockSteppedBack {
        /// How far monotonic time ran ahead of wall time.
        by: Duration,
    },
    /// Interfaces or addresses changed (joined another network, VPN, ...).
    NetworkChanged,
    /// A posture-relevant file appeared, disappeared or was modified.
    FileChanged(PathBuf),
}

impl std::fmt::Display for Trigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Trigger::Wake { slept } => write!(f, "woke from sleep (~{} s)", slept.as_secs()),
            Trigger::ClockSteppedBack { by } => {
                write!(f, "the clock was set back (~{} s)", by.as_secs())
            }
            Trigger::NetworkChanged => f.write_str("network changed"),
            Trigger::FileChanged(path) => write!(f, "{} changed", path.display()),
        }
    }
}

/// Wall time may run ahead of monotonic time (or behind it) by this much
/// between two snapshots before it counts as sleep (or a clock set back):
/// scheduling jitter, small NTP slews.
pub const WAKE_THRESHOLD: Duration = Duration::from_secs(20);

/// Compares snapshots.
#[derive(Debug, Default)]
pub struct Watcher {
    last: Option<Snapshot>,
}

impl Watcher {
    /// Records `now` and returns what changed since the previous snapshot
    /// (nothing on the first).
    pub fn observe(&mut self, now: Snapshot) -> Vec<Trigger> {
        let mut triggers = Vec::new();
        if let Some(last) = &self.last {
            // Wall time passed, forwards or (set back) backwards.
            let (ahead, behind) = match now.wall.duration_since(last.wall) {
                Ok(forward) => (forward, Duration::ZERO),
                Err(back) => (Duration::ZERO, back.duration()),
            };
            let mono = now.monotonic.saturating_sub(last.monotonic);
            let slept = ahead.saturating_sub(mono);
            let stepped_back = (mono + behind).saturating_sub(ahead);
            if slept > WAKE_THRESHOLD {
                triggers.push(Trigger::Wake { slept });
            } else if stepped_back > WAKE_THRESHOLD {
                triggers.push(Trigger::ClockSteppedBack { by: stepped_back });
            }
            // Unknown on either side is not a change: a listing that failed
            // once must not look like a new network every time.
            if let (Some(a), Some(b)) = (last.network, now.network)
                && a != b
            {
                triggers.push(Trigger::NetworkChanged);
            }
            for (path, time) in &now.files {
                if last.files.get(path).is_some_and(|before| before != time) {
                    triggers.push(Trigger::FileChanged(path.clone()));
                }
            }
        }
        self.last = Some(now);
        triggers
    }
}

/// A digest of interfaces and their addresses, independent of listing
/// order; traffic counters are left out (they change all the time).
pub fn network_digest<'a>(interfaces: impl IntoIterator<Item = (&'a str, Vec<String>)>) -> u64 {
    let mut sorted: Vec<(&str, Vec<String>)> = interfaces
        .into_iter()
        .map(|(name, mut addrs)| {
            addrs.sort();
            (name, addrs)
        })
        .collect();
    sorted.sort();
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    sorted.hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(wall: u64, mono: u64, network: Option<u64>, files: &[(&str, Option<u64>)]) -> Snapshot {
        Snapshot {
            wall: SystemTime::UNIX_EPOCH + Duration::from_secs(wall),
            monotonic: Duration::from_secs(mono),
            network,
            files: files
                .iter()
                .map(|(p, t)| {
                    (
                        PathBuf::from(p),
                        t.map(|t| SystemTime::UNIX_EPOCH + Duration::from_secs(t)),
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn first_snapshot_and_a_quiet_machine_trigger_nothing() {
        let mut w = Watcher::default();
        assert!(
            w.observe(snap(1000, 10, Some(1), &[("/etc/os-release", Some(5))]))
                .is_empty()
        );
        assert!(
            w.observe(snap(1005, 15, Some(1), &[("/etc/os-release", Some(5))]))
                .is_empty()
        );
        // Jitter under the threshold is not sleep.
        assert!(
            w.observe(snap(1030, 20, Some(1), &[("/etc/os-release", Some(5))]))
                .is_empty()
        );
    }

    #[test]
    fn wall_time_running_ahead_of_monotonic_time_is_a_wake() {
        let mut w = Watcher::default();
        w.observe(snap(1000, 10, Some(1), &[]));
        let t = w.observe(snap(4605, 15, Some(1), &[]));
        assert_eq!(
            t,
            vec![Trigger::Wake {
                slept: Duration::from_secs(3600)
            }]
        );
        // A wall clock stepped backwards is not sleep (see the next test).
        assert!(
            !w.observe(snap(100, 20, Some(1), &[]))
                .iter()
                .any(|t| matches!(t, Trigger::Wake { .. }))
        );
    }

    /// The call contract: a forward jump re-measures posture at once.
    #[test]
    fn a_forward_clock_jump_triggers_a_posture_run() {
        let mut w = Watcher::default();
        w.observe(snap(1000, 10, Some(1), &[]));
        // Five seconds passed, the wall clock says an hour and five.
        let t = w.observe(snap(4605, 15, Some(1), &[]));
        assert_eq!(t.len(), 1, "{t:?}");
        assert!(matches!(t[0], Trigger::Wake { .. }), "{t:?}");
        // Once: the next snapshot compares with the stepped clock.
        assert!(w.observe(snap(4610, 20, Some(1), &[])).is_empty());
    }

    /// The call contract: a backward jump re-measures posture at once too,
    /// and does not hide a later sleep.
    #[test]
    fn a_backward_clock_jump_triggers_a_posture_run_and_hides_no_later_wake() {
        let mut w = Watcher::default();
        w.observe(snap(10_000, 10, Some(1), &[]));
        // Five seconds passed, the wall clock was set back an hour.
        let t = w.observe(snap(6405, 15, Some(1), &[]));
        assert_eq!(
            t,
            vec![Trigger::ClockSteppedBack {
                by: Duration::from_secs(3600)
            }]
        );
        assert_eq!(t[0].to_string(), "the clock was set back (~3600 s)");
        // Set back by less than the threshold: jitter, nothing.
        assert!(w.observe(snap(6400, 20, Some(1), &[])).is_empty());
        assert!(w.observe(snap(6405, 25, Some(1), &[])).is_empty());
        // Then the machine sleeps an hour: seen as usual.
        let t = w.observe(snap(10_010, 30, Some(1), &[]));
        assert!(matches!(t[..], [Trigger::Wake { .. }]), "{t:?}");
    }

    #[test]
    fn network_changes_count_but_an_unlistable_network_does_not() {
        let mut w = Watcher::default();
        w.observe(snap(0, 0, Some(1), &[]));
        assert_eq!(
            w.observe(snap(5, 5, Some(2), &[])),
            vec![Trigger::NetworkChanged]
        );
        assert!(w.observe(snap(10, 10, None, &[])).is_empty());
        assert!(w.observe(snap(15, 15, Some(2), &[])).is_empty());
    }

    #[test]
    fn a_file_modified_created_or_removed_is_named() {
        let mut w = Watcher::default();
        w.observe(snap(
            0,
            0,
            None,
            &[("/a", Some(1)), ("/b", None), ("/c", Some(3))],
        ));
        let t = w.observe(snap(
            5,
            5,
            None,
            &[("/a", Some(2)), ("/b", Some(9)), ("/c", None)],
        ));
        assert_eq!(
            t,
            vec![
                Trigger::FileChanged("/a".into()),
                Trigger::FileChanged("/b".into()),
                Trigger::FileChanged("/c".into()),
            ]
        );
        assert_eq!(t[0].to_string(), "/a changed");
    }

    #[test]
    fn the_network_digest_ignores_order_but_not_addresses() {
        let a = network_digest([
            (
                "eth0",
                vec!["10.0.0.2/24".to_owned(), "fe80::1/64".to_owned()],
            ),
            ("lo", vec!["127.0.0.1/8".to_owned()]),
        ]);
        let b = network_digest([
            ("lo", vec!["127.0.0.1/8".to_owned()]),
            (
                "eth0",
                vec!["fe80::1/64".to_owned(), "10.0.0.2/24".to_owned()],
            ),
        ]);
        let c = network_digest([
            ("lo", vec!["127.0.0.1/8".to_owned()]),
            ("eth0", vec!["192.168.1.7/24".to_owned()]),
        ]);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}
