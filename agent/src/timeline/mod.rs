//! The timeline: what the agent decided and why, kept on disk so that
//! "why was I blocked at 10:42 yesterday?" still has an answer after a
//! restart.
//!
//! Every decision the runtime records (posture results and what changed,
//! verdicts with their violations, grants, tunnels up and down with the
//! reason, sign-ins, step-ups, revocations) becomes an [`Entry`]: appended
//! as one JSON line to `timeline.jsonl` in the user's state directory
//! ([`crate::config::user_state_dir`]), and kept in memory for `history`
//! requests. Bounded twice: entries older than [`RETENTION`] (7 days) are
//! not shown or kept, and the file is rotated to `timeline.1.jsonl` at
//! [`MAX_FILE_BYTES`], so the pair never holds more than twice that.
//!
//! The file holds no secret (entries are the same texts `status` shows)
//! and is still created owner-only in an owner-only directory: it says
//! which applications a person used, and when.
//!
//! Writing is best effort: a full disk loses entries on disk (logged once),
//! never the agent.

mod entry;
mod updates;

use std::collections::VecDeque;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

pub use entry::{Entry, Kind, parse_lines, parse_since, posture_changes, posture_counts};
use time::OffsetDateTime;
pub use updates::{newest_update, update_entries, update_entry};

/// How far back the timeline goes.
pub const RETENTION: time::Duration = time::Duration::days(7);

/// Size at which `timeline.jsonl` is rotated to `timeline.1.jsonl` (about
/// 2,500 entries each).
pub const MAX_FILE_BYTES: u64 = 512 * 1024;

/// Entries kept in memory at most (what the two files can hold).
const MAX_ENTRIES: usize = 6_000;

/// The current file's name in the state directory.
pub const FILE: &str = "timeline.jsonl";
/// The previous one's.
pub const PREVIOUS: &str = "timeline.1.jsonl";

/// The agent's timeline; see the module doc.
#[derive(Debug)]
pub struct Timeline {
    dir: Option<PathBuf>,
    entries: VecDeque<Entry>,
    /// The open current file and its size.
    file: Option<(File, u64)>,
    /// A write failed; said once in the log, tried again on every entry.
    failing: bool,
}

impl Timeline {
    /// A timeline that lives in memory only (tests, and a machine without
    /// a state directory).
    pub fn in_memory() -> Timeline {
        Timeline {
            dir: None,
            entries: VecDeque::new(),
            file: None,
            failing: false,
        }
    }

    /// The timeline stored in `dir` (created owner-only if missing), with
    /// the entries of the last [`RETENTION`] before `now` loaded.
    pub fn open(dir: &Path, now: OffsetDateTime) -> Timeline {
        if let Err(e) = logfiles::private_dir(dir) {
            tracing::warn!(dir = %dir.display(), error = %e, "the timeline will not be kept on disk");
            return Timeline::in_memory();
        }
        let entries = read_dir_entries(dir, Some(now - RETENTION), now);
        let skip = entries.len().saturating_sub(MAX_ENTRIES);
        Timeline {
            dir: Some(dir.to_owned()),
            entries: entries.into_iter().skip(skip).collect(),
            file: None,
            failing: false,
        }
    }

    /// Where it is stored, if on disk.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// Records `entry`: in memory, and appended to the file.
    pub fn push(&mut self, entry: Entry) {
        let horizon = entry.at - RETENTION;
        while self
            .entries
            .front()
            .is_some_and(|e| e.at < horizon || self.entries.len() >= MAX_ENTRIES)
        {
            self.entries.pop_front();
        }
        self.append(&entry);
        self.entries.push_back(entry);
    }

    /// The entries at or after `since` (all kept ones when `None`), oldest
    /// first. Sorted, since an entry may carry an earlier time than the
    /// one before it (the device service's update events keep their own).
    pub fn since(&self, since: Option<OffsetDateTime>) -> Vec<Entry> {
        let mut entries: Vec<Entry> = self
            .entries
            .iter()
            .filter(|e| since.is_none_or(|s| e.at >= s))
            .cloned()
            .collect();
        entries.sort_by_key(|e| e.at);
        entries
    }

    /// The newest update entry kept: where the device service's events
    /// resume after a restart ([`update_entries`]).
    pub fn newest_update(&self) -> Option<OffsetDateTime> {
        newest_update(&self.entries)
    }

    fn append(&mut self, entry: &Entry) {
        let Some(dir) = self.dir.clone() else {
            return;
        };
        let Ok(mut line) = serde_json::to_string(entry) else {
            return;
        };
        line.push('\n');
        match self.write_line(&dir, line.as_bytes()) {
            Ok(()) => {
                if self.failing {
                    tracing::info!("the timeline is written to disk again");
                }
                self.failing = false;
            }
            Err(e) => {
                self.file = None;
                if !self.failing {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot write the timeline; entries are kept in memory only until it works again");
                }
                self.failing = true;
            }
        }
    }

    fn write_line(&mut self, dir: &Path, line: &[u8]) -> std::io::Result<()> {
        let len = line.len() as u64;
        if self.file.is_none() {
            let file = logfiles::open_append(&dir.join(FILE))?;
            let size = file.metadata()?.len();
            self.file = Some((file, size));
        }
        if self
            .file
            .as_ref()
            .is_some_and(|(_, size)| *size > 0 && size + len > MAX_FILE_BYTES)
        {
            self.file = None;
            std::fs::rename(dir.join(FILE), dir.join(PREVIOUS))?;
            self.file = Some((logfiles::open_append(&dir.join(FILE))?, 0));
        }
        if let Some((file, size)) = self.file.as_mut() {
            file.write_all(line)?;
            *size += len;
        }
        Ok(())
    }
}

/// The entries stored in `dir` at or after `since` and within
/// [`RETENTION`] of `now`, oldest first: what `sallyport history` shows
/// when no agent is running.
pub fn read_dir_entries(
    dir: &Path,
    since: Option<OffsetDateTime>,
    now: OffsetDateTime,
) -> Vec<Entry> {
    let horizon = now - RETENTION;
    let since = since.map_or(horizon, |s| s.max(horizon));
    let mut entries: Vec<Entry> = [PREVIOUS, FILE]
        .iter()
        .filter_map(|name| std::fs::read_to_string(dir.join(name)).ok())
        .flat_map(|text| parse_lines(&text))
        .filter(|e| e.at >= since)
        .collect();
    // Appends are in order; a clock set back must not shuffle the view.
    entries.sort_by_key(|e| e.at);
    entries
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn entry(at: OffsetDateTime, what: &str) -> Entry {
        Entry::new(at, Kind::Notice, what)
    }

    #[test]
    fn entries_survive_a_restart_and_old_ones_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let now = datetime!(2026-12-03 10:00:00 UTC);
        {
            let mut t = Timeline::open(dir.path(), now);
            t.push(entry(now - time::Duration::days(8), "too old"));
            t.push(entry(now - time::Duration::hours(1), "an hour ago"));
            t.push(entry(now, "now"));
        }
        let t = Timeline::open(dir.path(), now);
        let kept: Vec<String> = t.since(None).into_iter().map(|e| e.what).collect();
        assert_eq!(kept, ["an hour ago", "now"]);
        let recent: Vec<String> = t
            .since(Some(now - time::Duration::minutes(5)))
            .into_iter()
            .map(|e| e.what)
            .collect();
        assert_eq!(recent, ["now"]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&dir.path().join(FILE)), 0o600);
        }
    }

    #[test]
    fn the_files_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let now = datetime!(2026-12-03 10:00:00 UTC);
        let mut t = Timeline::open(dir.path(), now);
        let filler = "x".repeat(900);
        for i in 0..3_000 {
            t.push(entry(
                now + time::Duration::seconds(i),
                &format!("{i} {filler}"),
            ));
        }
        let size = |name: &str| std::fs::metadata(dir.path().join(name)).unwrap().len();
        assert!(size(FILE) <= MAX_FILE_BYTES);
        assert!(size(PREVIOUS) <= MAX_FILE_BYTES);
        // The newest entries are on disk, in order.
        let back = read_dir_entries(dir.path(), None, now + time::Duration::hours(1));
        assert!(back.last().unwrap().what.starts_with("2999 "));
        assert!(back.windows(2).all(|w| w[0].at <= w[1].at));
    }

    #[test]
    fn an_unwritable_directory_keeps_entries_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let now = datetime!(2026-12-03 10:00:00 UTC);
        let mut t = Timeline::open(dir.path(), now);
        std::fs::remove_dir_all(dir.path()).unwrap();
        t.push(entry(now, "kept in memory"));
        assert_eq!(t.since(None).len(), 1);
    }
}
