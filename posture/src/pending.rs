//! How long has a security update been pending?
//!
//! Package managers say *what* is pending, not *since when*. The agent
//! remembers when it first saw each pending update (name + version) and
//! forgets it once it is no longer pending; the age of the oldest one is what
//! the policy's "no security update pending longer than N days" reads. The
//! evidence says when tracking began, so a fresh install is not mistaken for
//! a well-patched machine.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// First sightings of pending updates, keyed by `name=version`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FirstSeen {
    /// When this agent started tracking on this machine.
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub tracking_since: Option<OffsetDateTime>,
    /// `name=version` → first seen.
    #[serde(default)]
    pub updates: BTreeMap<String, String>,
}

/// The result of one observation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    /// The state to store for next time.
    pub state: FirstSeen,
    /// Whole days the oldest of `pending` has been pending; `None` when none is.
    pub oldest_days: Option<i64>,
}

/// Updates `previous` with the updates pending `now`, and measures the oldest.
pub fn observe(previous: FirstSeen, pending: &[String], now: OffsetDateTime) -> Observation {
    let stamp = |t: OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    };
    let mut updates = BTreeMap::new();
    let mut oldest: Option<OffsetDateTime> = None;
    for key in pending {
        let seen = previous
            .updates
            .get(key)
            .and_then(|s| {
                OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
            })
            .filter(|seen| *seen <= now)
            .unwrap_or(now);
        oldest = Some(oldest.map_or(seen, |o| o.min(seen)));
        updates.insert(key.clone(), stamp(seen));
    }
    Observation {
        state: FirstSeen {
            tracking_since: Some(previous.tracking_since.filter(|t| *t <= now).unwrap_or(now)),
            updates,
        },
        oldest_days: oldest.map(|o| (now - o).whole_days()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::Duration;

    #[test]
    fn remembers_first_sighting_and_forgets_installed_updates() {
        let t0 = OffsetDateTime::UNIX_EPOCH + Duration::days(20_000);
        let first = observe(FirstSeen::default(), &["openssl=3.0.1".into()], t0);
        assert_eq!(first.oldest_days, Some(0));
        assert_eq!(first.state.tracking_since, Some(t0));

        let t1 = t0 + Duration::days(9);
        let second = observe(
            first.state,
            &["openssl=3.0.1".into(), "curl=8.1".into()],
            t1,
        );
        assert_eq!(second.oldest_days, Some(9));
        assert_eq!(second.state.updates.len(), 2);

        let t2 = t1 + Duration::days(1);
        let third = observe(second.state, &["curl=8.1".into()], t2);
        assert_eq!(third.oldest_days, Some(1), "openssl was installed");
        assert_eq!(third.state.tracking_since, Some(t0));

        let none = observe(third.state, &[], t2);
        assert_eq!(none.oldest_days, None);
        assert!(none.state.updates.is_empty());
    }

    #[test]
    fn sightings_from_the_future_are_reset() {
        let now = OffsetDateTime::UNIX_EPOCH + Duration::days(20_000);
        let mut state = FirstSeen::default();
        state
            .updates
            .insert("a=1".into(), "2999-01-01T00:00:00Z".into());
        let seen = observe(state, &["a=1".into()], now);
        assert_eq!(seen.oldest_days, Some(0));
    }
}
