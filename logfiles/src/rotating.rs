//! A size-bounded, rotated log file that redacts every line before it
//! reaches the disk.
//!
//! `NAME.log` grows until the next line would take it past
//! [`Limits::max_file_bytes`]; then `NAME.log.(k-1)` becomes `NAME.log.k`
//! (the oldest, `NAME.log.(keep-1)`, is dropped), `NAME.log` becomes
//! `NAME.log.1`, and a new `NAME.log` starts. So the set never holds more
//! than `keep × max_file_bytes` (plus one line), whatever is logged.
//!
//! Files are created owner-only (0600 on Unix) in a directory the caller
//! made private: a log names users, devices and applications.
//!
//! A write error (disk full, directory removed) never stops the program
//! that logs: the line is dropped, the next write tries to reopen, and the
//! failure is counted ([`RotatingFile::dropped_lines`]).

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use tracing_subscriber::fmt::MakeWriter;

use crate::redact::redact;

/// How large a log set may grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest size of one file, in bytes.
    pub max_file_bytes: u64,
    /// How many files to keep, the current one included (at least 1).
    pub keep: usize,
}

impl Default for Limits {
    /// 1 MiB × 4 files: days of a normal agent's info-level log, 4 MiB at
    /// most on disk.
    fn default() -> Self {
        Limits {
            max_file_bytes: 1024 * 1024,
            keep: 4,
        }
    }
}

/// One log set (`dir/NAME.log`, `dir/NAME.log.1`, …).
#[derive(Debug)]
pub struct RotatingFile {
    dir: PathBuf,
    name: String,
    limits: Limits,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// The open current file and its size; `None` after a failure (the
    /// next write reopens it).
    file: Option<(File, u64)>,
    dropped: u64,
}

impl RotatingFile {
    /// The set `dir/NAME.log*`; nothing is opened until the first line.
    pub fn new(dir: impl Into<PathBuf>, name: &str, limits: Limits) -> Self {
        RotatingFile {
            dir: dir.into(),
            name: name.to_owned(),
            limits: Limits {
                keep: limits.keep.max(1),
                max_file_bytes: limits.max_file_bytes.max(1),
            },
            state: Mutex::new(State::default()),
        }
    }

    /// The current file's path (`dir/NAME.log`).
    pub fn path(&self) -> PathBuf {
        file_path(&self.dir, &self.name, 0)
    }

    /// Lines lost to write errors so far.
    pub fn dropped_lines(&self) -> u64 {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .dropped
    }

    /// Redacts `text` and appends it, rotating first if it would not fit.
    pub fn append(&self, text: &str) {
        let clean = redact(text);
        let bytes = clean.as_bytes();
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if self.write_locked(&mut state, bytes).is_err() {
            state.file = None;
            state.dropped += 1;
        }
    }

    fn write_locked(&self, state: &mut State, bytes: &[u8]) -> io::Result<()> {
        let len = bytes.len() as u64;
        if state.file.is_none() {
            let file = open_append(&self.path())?;
            let size = file.metadata()?.len();
            state.file = Some((file, size));
        }
        let size = state.file.as_ref().map_or(0, |(_, size)| *size);
        if size > 0 && size + len > self.limits.max_file_bytes {
            state.file = None;
            self.rotate()?;
            state.file = Some((open_append(&self.path())?, 0));
        }
        if let Some((file, size)) = state.file.as_mut() {
            file.write_all(bytes)?;
            *size += len;
        }
        Ok(())
    }

    /// Shifts every file one place older, dropping the oldest.
    fn rotate(&self) -> io::Result<()> {
        let keep = self.limits.keep;
        if keep == 1 {
            return remove_if_there(&self.path());
        }
        remove_if_there(&file_path(&self.dir, &self.name, keep - 1))?;
        for k in (0..keep - 1).rev() {
            let from = file_path(&self.dir, &self.name, k);
            if from.exists() {
                std::fs::rename(&from, file_path(&self.dir, &self.name, k + 1))?;
            }
        }
        Ok(())
    }
}

/// `dir/NAME.log` for 0, `dir/NAME.log.K` for K.
fn file_path(dir: &Path, name: &str, k: usize) -> PathBuf {
    if k == 0 {
        dir.join(format!("{name}.log"))
    } else {
        dir.join(format!("{name}.log.{k}"))
    }
}

fn remove_if_there(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Opens `path` for appending, creating it owner-only (0600 on Unix).
pub fn open_append(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

/// The newest `max_bytes` of the set `dir/NAME.log*`, oldest line first,
/// starting at a line boundary; empty when there is no log yet. For the
/// diagnostics bundle, which must stay bounded however large the set is.
pub fn recent(dir: &Path, name: &str, max_bytes: u64) -> io::Result<String> {
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    let mut left = max_bytes;
    let mut k = 0;
    while left > 0 {
        let path = file_path(dir, name, k);
        let mut file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => break,
            Err(e) => return Err(e),
        };
        let size = file.metadata()?.len();
        let take = size.min(left);
        file.seek(SeekFrom::Start(size - take))?;
        let mut chunk = Vec::with_capacity(usize::try_from(take).unwrap_or(0));
        file.take(take).read_to_end(&mut chunk)?;
        left -= take;
        let cut_short = take < size;
        if cut_short {
            // Start at the first whole line.
            let start = chunk
                .iter()
                .position(|b| *b == b'\n')
                .map_or(chunk.len(), |i| i + 1);
            chunk.drain(..start);
        }
        chunks.push(chunk);
        if cut_short {
            break;
        }
        k += 1;
    }
    chunks.reverse();
    Ok(String::from_utf8_lossy(&chunks.concat()).into_owned())
}

/// One log event's text, collected by the `tracing` formatter and handed
/// to the file, redacted, when the formatter is done with it (on drop), so
/// a pattern never straddles two writes.
#[derive(Debug)]
pub struct LineWriter<'a> {
    file: &'a RotatingFile,
    buffer: Vec<u8>,
}

impl Write for LineWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.buffer.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter<'_> {
    fn drop(&mut self) {
        if !self.buffer.is_empty() {
            self.file.append(&String::from_utf8_lossy(&self.buffer));
        }
    }
}

impl<'a> MakeWriter<'a> for RotatingFile {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter {
            file: self,
            buffer: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn total_size(dir: &Path) -> u64 {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum()
    }

    #[test]
    fn the_set_rotates_and_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let limits = Limits {
            max_file_bytes: 1000,
            keep: 3,
        };
        let log = RotatingFile::new(dir.path(), "agent", limits);
        for i in 0..1000 {
            log.append(&format!("line {i:04} of the agent's log\n"));
        }
        assert_eq!(
            names(dir.path()),
            ["agent.log", "agent.log.1", "agent.log.2"]
        );
        assert!(
            total_size(dir.path()) <= 3 * 1000,
            "{}",
            total_size(dir.path())
        );
        // The newest line is in the current file, and the set holds a
        // contiguous run of the newest lines, oldest first.
        let tail = recent(dir.path(), "agent", 10_000).unwrap();
        assert!(tail.ends_with("line 0999 of the agent's log\n"), "{tail}");
        let numbers: Vec<u32> = tail.lines().map(|l| l[5..9].parse().unwrap()).collect();
        assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "{numbers:?}");
        assert_eq!(log.dropped_lines(), 0);
    }

    #[test]
    fn recent_is_bounded_and_starts_at_a_line() {
        let dir = tempfile::tempdir().unwrap();
        let log = RotatingFile::new(dir.path(), "svc", Limits::default());
        for i in 0..100 {
            log.append(&format!("event {i}\n"));
        }
        let tail = recent(dir.path(), "svc", 50).unwrap();
        assert!(tail.len() <= 50);
        assert!(tail.starts_with("event "), "{tail:?}");
        assert!(tail.ends_with("event 99\n"));
        assert_eq!(recent(dir.path(), "none", 50).unwrap(), "");
    }

    #[test]
    fn secrets_never_reach_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let log = RotatingFile::new(dir.path(), "agent", Limits::default());
        let jwt = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ";
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(log)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(
                token = jwt,
                "refreshed; Authorization: Bearer abcdefgh12345678"
            );
        });
        let text = std::fs::read_to_string(dir.path().join("agent.log")).unwrap();
        assert!(text.contains("refreshed"), "{text}");
        assert!(!text.contains(jwt), "{text}");
        assert!(!text.contains("abcdefgh12345678"), "{text}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("agent.log"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_write_failure_drops_the_line_and_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("gone");
        let log = RotatingFile::new(&gone, "agent", Limits::default());
        log.append("lost\n");
        assert_eq!(log.dropped_lines(), 1);
        std::fs::create_dir(&gone).unwrap();
        log.append("kept\n");
        assert_eq!(
            std::fs::read_to_string(gone.join("agent.log")).unwrap(),
            "kept\n"
        );
    }
}
