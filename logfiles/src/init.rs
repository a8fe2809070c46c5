//! The process-wide `tracing` setup the agent and the device service share.

use std::path::{Path, PathBuf};

use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

use crate::{Limits, RotatingFile};

/// Creates `dir` owner-only (0700 on Unix) if it is missing.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
    }
    #[cfg(not(unix))]
    {
        std::fs::create_dir_all(dir)
    }
}

/// The log file [`init`] adds beside stderr.
#[derive(Debug, Clone)]
pub struct LogFile<'a> {
    /// Its directory (made owner-only if missing).
    pub dir: PathBuf,
    /// The set's name (`agent` for `agent.log`, `agent.log.1`, …).
    pub set: &'a str,
    /// Its filter when the environment variable sets none (`info`).
    pub default_filter: &'a str,
}

/// Installs the global `tracing` subscriber: stderr filtered by `env_var`
/// (else `stderr_default`), and, when `file` is given, its rotating,
/// redacted log file (filtered by `env_var`, else its own default).
/// Returns where the file is, if one is written.
///
/// A directory that cannot be made is not fatal: the program logs to
/// stderr only and says so.
pub fn init(env_var: &str, stderr_default: &str, file: Option<LogFile<'_>>) -> Option<PathBuf> {
    let filter = |default: &str| {
        EnvFilter::try_from_env(env_var).unwrap_or_else(|_| EnvFilter::new(default))
    };
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(filter(stderr_default));
    let mut problem = None;
    let mut path = None;
    let file_layer = file.and_then(|file| match private_dir(&file.dir) {
        Ok(()) => {
            let writer = RotatingFile::new(&file.dir, file.set, Limits::default());
            path = Some(writer.path());
            Some(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .with_writer(writer)
                    .with_filter(filter(file.default_filter)),
            )
        }
        Err(e) => {
            problem = Some(format!("no log file in {}: {e}", file.dir.display()));
            None
        }
    });
    let _ = tracing_subscriber::registry()
        .with(stderr)
        .with(file_layer)
        .try_init();
    if let Some(problem) = problem {
        tracing::warn!("{problem}");
    }
    path
}
