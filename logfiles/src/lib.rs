//! Sallyport's local log files, shared by the agent (`sallyport run`, the
//! tray app's in-process agent) and the device service (`sallyportd`).
//!
//! Why a crate of its own: both processes must write logs the same way —
//! bounded in size, so a chatty day cannot fill a laptop's disk, and
//! redacted line by line with the same rules as the diagnostics bundle, so
//! a secret that slipped into a log line never reaches the disk — and the
//! service does not depend on the agent.
//!
//! - [`redact`]: the secret patterns (pure), also the bundle's second line
//!   of defence.
//! - [`RotatingFile`]: `NAME.log`, rotated to `NAME.log.1` … when it would
//!   pass its size, oldest dropped; a [`tracing_subscriber`] writer.
//! - [`recent`]: the newest bytes of a rotated set, for the bundle.
//! - [`init`]: the global subscriber: stderr plus the rotating file.

mod init;
mod redact;
mod rotating;

pub use init::{LogFile, init, private_dir};
pub use redact::{REDACTED, redact};
pub use rotating::{Limits, LineWriter, RotatingFile, open_append, recent};
