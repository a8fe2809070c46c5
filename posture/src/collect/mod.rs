//! Runs the collectors of this OS concurrently, each under its own timeout.
//!
//! A collector is a thin async shim: it runs a command or reads a file through
//! [`crate::probe`], hands the raw text to a pure parser in [`crate::parse`],
//! and turns the parsed value into a [`Check`]. The per-OS sets live in
//! `linux.rs`, `windows.rs` and `macos.rs`, compiled only on their OS.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use time::OffsetDateTime;

use crate::cache::Cache;
use crate::check::{Check, CheckId, Unknown, UnknownKind};
use crate::report::{Platform, Report};

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
use linux as this_os;
#[cfg(target_os = "macos")]
mod macos;
#[cfg(target_os = "macos")]
use macos as this_os;
#[cfg(target_os = "windows")]
mod windows;
#[cfg(target_os = "windows")]
use windows as this_os;

#[cfg(not(any(target_os = "linux", target_os = "macos", target_os = "windows")))]
mod this_os {
    pub(crate) fn collectors() -> Vec<(super::CheckId, super::Collector)> {
        Vec::new()
    }
}

/// A boxed collector future; `'static` so it can run on its own task.
pub type CheckFuture = Pin<Box<dyn Future<Output = Check> + Send + 'static>>;

/// A collector: given the shared context, measure one signal.
pub type Collector = fn(Arc<Context>) -> CheckFuture;

/// What every collector may use: the time of this collection, the cache for
/// slow sources and the timeout for one command.
#[derive(Debug)]
pub struct Context {
    /// The instant this collection is for (injected, so parsers stay pure).
    pub now: OffsetDateTime,
    /// Cache for slow sources (package manager simulations).
    pub cache: Cache,
    /// How long one command may run.
    pub command_timeout: Duration,
}

/// How to run a collection.
#[derive(Debug, Clone)]
pub struct Options {
    /// Collect only these checks (all when empty).
    pub only: Vec<CheckId>,
    /// Time one whole check may take; past it the check is `unknown`.
    pub check_timeout: Duration,
    /// Time one command may take.
    pub command_timeout: Duration,
    /// Cache for slow sources; [`Cache::disabled`] for a cold run.
    pub cache: Cache,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            only: Vec::new(),
            check_timeout: Duration::from_secs(10),
            command_timeout: crate::probe::COMMAND_TIMEOUT,
            cache: Cache::default_location(),
        }
    }
}

/// The check ids this OS collects, in display order.
pub fn supported_checks() -> Vec<CheckId> {
    this_os::collectors()
        .into_iter()
        .map(|(id, _)| id)
        .collect()
}

/// Collects every supported check (or `options.only`) concurrently.
///
/// Never fails: a collector that times out, panics or cannot look yields an
/// `unknown` check with the reason, so one hung command cannot stall or sink
/// the report.
pub async fn collect(options: &Options) -> Report {
    let started = Instant::now();
    let context = Arc::new(Context {
        now: OffsetDateTime::now_utc(),
        cache: options.cache.clone(),
        command_timeout: options.command_timeout,
    });
    let wanted: Vec<(CheckId, Collector)> = this_os::collectors()
        .into_iter()
        .filter(|(id, _)| options.only.is_empty() || options.only.contains(id))
        .collect();

    let mut tasks = tokio::task::JoinSet::new();
    for (index, (id, collector)) in wanted.iter().copied().enumerate() {
        let context = Arc::clone(&context);
        let limit = options.check_timeout;
        tasks.spawn(async move {
            let check = match tokio::time::timeout(limit, collector(context)).await {
                Ok(check) => check,
                Err(_) => Check::unknown(
                    id,
                    Unknown::new(
                        UnknownKind::TimedOut,
                        format!("collector did not finish within {limit:?}"),
                    ),
                ),
            };
            (index, check)
        });
    }

    let mut slots: Vec<Option<Check>> = vec![None; wanted.len()];
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((index, check)) => {
                if let Some(slot) = slots.get_mut(index) {
                    *slot = Some(check);
                }
            }
            Err(err) => tracing::error!(error = %err, "posture collector task failed"),
        }
    }
    let checks = slots
        .into_iter()
        .zip(&wanted)
        .map(|(slot, (id, _))| {
            slot.unwrap_or_else(|| {
                Check::unknown(
                    *id,
                    Unknown::new(UnknownKind::SourceFailed, "collector crashed"),
                )
            })
        })
        .collect();

    Report {
        collected_at: context.now,
        platform: Platform::current(),
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        checks,
    }
}

/// Boxes a collector body; keeps the per-OS tables short.
pub(crate) fn boxed<F>(future: F) -> CheckFuture
where
    F: Future<Output = Check> + Send + 'static,
{
    Box::pin(future)
}

/// The agent version check is the same everywhere: it is a fact of this build.
pub(crate) fn agent_version(_context: Arc<Context>) -> CheckFuture {
    boxed(async {
        let version = env!("CARGO_PKG_VERSION");
        Check::pass(CheckId::AgentVersion, format!("Sallyport {version}"))
            .fact("version", version)
            .evidence(format!("built into this binary: {version}"))
    })
}
