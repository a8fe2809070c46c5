//! Where the agent and the device service keep their log files, and the
//! `tracing` setup that writes them (see the `logfiles` crate: rotated at
//! 1 MiB, 4 files, every line redacted).
//!
//! - The agent (`sallyport run`): the user's state directory,
//!   `…/sallyport/logs/agent.log` (owner-only); the tray app and the agent
//!   it hosts: `logs/app.log` beside it.
//! - The device service: `/var/log/sallyport/sallyportd.log` (Linux),
//!   `/Library/Logs/Sallyport` (macOS), `%ProgramData%\Sallyport\logs`
//!   (Windows). Helpdesk bundles read it when the user may.

use std::path::PathBuf;

/// The agent's log set name (`agent.log`, `agent.log.1`, …).
pub const AGENT: &str = "agent";
/// The tray app's (and the agent it hosts), beside the agent's.
pub const APP: &str = "app";
/// The device service's.
pub const SERVICE: &str = "sallyportd";

/// The agent's log directory: `<user state dir>/logs`.
pub fn agent_dir() -> Option<PathBuf> {
    crate::config::user_state_dir().map(|d| d.join("logs"))
}

/// The device service's log directory.
pub fn service_dir() -> PathBuf {
    #[cfg(windows)]
    {
        let base = std::env::var_os("ProgramData")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(r"C:\ProgramData"));
        base.join("Sallyport").join("logs")
    }
    #[cfg(target_os = "macos")]
    {
        PathBuf::from("/Library/Logs/Sallyport")
    }
    #[cfg(not(any(windows, target_os = "macos")))]
    {
        PathBuf::from("/var/log/sallyport")
    }
}

/// Installs the global `tracing` subscriber: stderr (`env_var`, else
/// `stderr_default`), and the agent's rotating, redacted log file in
/// `dir` at `info` (see [`logfiles::init`]). Returns the file's path.
pub fn init(env_var: &str, stderr_default: &str, dir: Option<PathBuf>) -> Option<PathBuf> {
    logfiles::init(
        env_var,
        stderr_default,
        dir.map(|dir| logfiles::LogFile {
            dir,
            set: AGENT,
            default_filter: "info",
        }),
    )
}
