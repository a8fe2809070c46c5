//! A small on-disk cache for slow posture sources.
//!
//! Simulating a package upgrade takes about a second; the rest of a
//! collection takes milliseconds. The cache keeps the raw output of such a
//! source together with a *stamp* (e.g. the modification times of the package
//! database) and the time it was stored. An entry is reused only while the
//! stamp is unchanged and it is younger than the caller's maximum age, and the
//! collector reports its age in the evidence so nobody mistakes it for live.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Where cached sources are kept; cheap to clone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cache {
    dir: Option<PathBuf>,
}

/// A cached source output and how old it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// The raw output stored.
    pub value: String,
    /// How long ago it was stored.
    pub age: Duration,
}

#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    #[serde(with = "time::serde::rfc3339")]
    stored_at: OffsetDateTime,
    stamp: String,
    value: String,
}

impl Cache {
    /// No cache at all: every source is read live (a cold collection).
    pub fn disabled() -> Self {
        Cache { dir: None }
    }

    /// A cache in `dir` (created on first write).
    pub fn at(dir: impl Into<PathBuf>) -> Self {
        Cache {
            dir: Some(dir.into()),
        }
    }

    /// `$XDG_CACHE_HOME/sallyport/posture`, else `~/.cache/sallyport/posture`,
    /// else (no home) disabled.
    pub fn default_location() -> Self {
        let base = std::env::var_os("XDG_CACHE_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cache")))
            .or_else(|| std::env::var_os("LOCALAPPDATA").map(PathBuf::from));
        match base {
            Some(base) => Cache::at(base.join("sallyport").join("posture")),
            None => Cache::disabled(),
        }
    }

    /// The entry for `key` if its stamp matches and it is at most `max_age` old.
    pub fn get(
        &self,
        key: &str,
        stamp: &str,
        max_age: Duration,
        now: OffsetDateTime,
    ) -> Option<Hit> {
        let entry: Entry = self.load_state(key)?;
        fresh(&entry, stamp, max_age, now).map(|age| Hit {
            value: entry.value,
            age,
        })
    }

    /// Stores `value` for `key` under `stamp`. Failures only cost speed, so
    /// they are logged, not returned.
    pub fn put(&self, key: &str, stamp: &str, value: &str, now: OffsetDateTime) {
        let entry = Entry {
            stored_at: now,
            stamp: stamp.to_owned(),
            value: value.to_owned(),
        };
        self.store_state(key, &entry);
    }

    /// Loads a small piece of state kept between collections (e.g. when a
    /// pending update was first seen); `None` when absent or unreadable.
    pub fn load_state<T: serde::de::DeserializeOwned>(&self, key: &str) -> Option<T> {
        let bytes = std::fs::read(self.path(key)?).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Stores state for [`Cache::load_state`]; failures are logged only.
    /// Returns false when nothing could be kept (cache disabled or I/O error).
    pub fn store_state<T: Serialize>(&self, key: &str, state: &T) -> bool {
        let Some(path) = self.path(key) else {
            return false;
        };
        let write = || -> std::io::Result<()> {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let tmp = path.with_extension("tmp");
            std::fs::write(
                &tmp,
                serde_json::to_vec(state).map_err(std::io::Error::other)?,
            )?;
            std::fs::rename(&tmp, &path)
        };
        match write() {
            Ok(()) => true,
            Err(err) => {
                tracing::debug!(key, error = %err, "could not write posture state");
                false
            }
        }
    }

    fn path(&self, key: &str) -> Option<PathBuf> {
        let safe: String = key
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.dir
            .as_ref()
            .map(|dir| dir.join(format!("{safe}.json")))
    }
}

/// The age of `entry` if it may be reused: same stamp, not from the future,
/// and no older than `max_age`.
fn fresh(entry: &Entry, stamp: &str, max_age: Duration, now: OffsetDateTime) -> Option<Duration> {
    if entry.stamp != stamp {
        return None;
    }
    let age = Duration::try_from(now - entry.stored_at).ok()?;
    (age <= max_age).then_some(age)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn hit_only_with_same_stamp_and_within_max_age() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::at(dir.path());
        let t0 = OffsetDateTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        cache.put("apt", "stamp-1", "raw output", t0);

        let later = t0 + Duration::from_secs(60);
        let hit = cache.get("apt", "stamp-1", HOUR, later).unwrap();
        assert_eq!(hit.value, "raw output");
        assert_eq!(hit.age, Duration::from_secs(60));

        assert_eq!(
            cache.get("apt", "stamp-2", HOUR, later),
            None,
            "stamp changed"
        );
        assert_eq!(
            cache.get("apt", "stamp-1", HOUR, t0 + 2 * HOUR),
            None,
            "too old"
        );
        assert_eq!(
            cache.get("apt", "stamp-1", HOUR, t0 - Duration::from_secs(1)),
            None,
            "stored in the future (clock moved back)"
        );
    }

    #[test]
    fn disabled_and_corrupt_caches_miss() {
        let now = OffsetDateTime::UNIX_EPOCH;
        let disabled = Cache::disabled();
        disabled.put("k", "s", "v", now);
        assert_eq!(disabled.get("k", "s", HOUR, now), None);

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("k.json"), b"{not json").unwrap();
        assert_eq!(Cache::at(dir.path()).get("k", "s", HOUR, now), None);
    }
}
