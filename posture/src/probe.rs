//! The only I/O the collectors do: run a command with a timeout, read a file.
//!
//! Every failure is classified into an [`UnknownKind`] so a collector can turn
//! it straight into an `unknown` check with a reason (`?` works through the
//! `From` impl), instead of mistaking "could not look" for "is off".

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::check::{Unknown, UnknownKind};

/// Default time one command may take before its check becomes `unknown`.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a probe could not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    /// The program or file does not exist.
    #[error("{what} not found")]
    Missing {
        /// The program or path.
        what: String,
    },
    /// The OS refused access.
    #[error("permission denied for {what}")]
    PermissionDenied {
        /// The program or path.
        what: String,
    },
    /// The command did not finish in time and was killed.
    #[error("{what} did not finish within {after:?}")]
    TimedOut {
        /// The command.
        what: String,
        /// The timeout that ran out.
        after: Duration,
    },
    /// The command exited with an error, or another I/O error happened.
    #[error("{what} failed: {detail}")]
    Failed {
        /// The program or path.
        what: String,
        /// The exit status and the first line of stderr, or the I/O error.
        detail: String,
    },
}

impl From<ProbeError> for Unknown {
    fn from(err: ProbeError) -> Self {
        let kind = match &err {
            ProbeError::Missing { .. } => UnknownKind::SourceMissing,
            ProbeError::PermissionDenied { .. } => UnknownKind::PermissionDenied,
            ProbeError::TimedOut { .. } => UnknownKind::TimedOut,
            ProbeError::Failed { .. } => UnknownKind::SourceFailed,
        };
        Unknown::new(kind, err.to_string())
    }
}

/// What a finished command printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// Exit code; `None` when killed by a signal.
    pub code: Option<i32>,
    /// Standard output, lossily decoded.
    pub stdout: String,
    /// Standard error, lossily decoded.
    pub stderr: String,
}

impl Output {
    /// True when the command exited with code 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// Runs `program args…` with no stdin, killing it after `timeout`.
///
/// A non-zero exit is *not* an error here: many tools (e.g. `systemctl
/// is-active`) answer through their exit code. Callers that need success use
/// [`run_ok`].
pub async fn run(program: &str, args: &[&str], timeout: Duration) -> Result<Output, ProbeError> {
    let what = command_line(program, args);
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Commands print in the user's language otherwise; parsers expect C.
        .env("LC_ALL", "C")
        .env("LANG", "C")
        .kill_on_drop(true);
    let child = command.spawn().map_err(|err| io_error(&what, &err))?;
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Err(_) => Err(ProbeError::TimedOut {
            what,
            after: timeout,
        }),
        Ok(Err(err)) => Err(io_error(&what, &err)),
        Ok(Ok(out)) => Ok(Output {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }),
    }
}

/// Like [`run`], but a non-zero exit becomes an error that quotes stderr, and
/// stderr mentioning a permission problem becomes [`ProbeError::PermissionDenied`].
pub async fn run_ok(program: &str, args: &[&str], timeout: Duration) -> Result<Output, ProbeError> {
    let out = run(program, args, timeout).await?;
    if out.success() {
        return Ok(out);
    }
    let what = command_line(program, args);
    let first_line = out.stderr.lines().next().unwrap_or("").trim().to_owned();
    if mentions_permission(&out.stderr) {
        return Err(ProbeError::PermissionDenied { what });
    }
    let code = out.code.map_or_else(
        || "killed by a signal".to_owned(),
        |c| format!("exit code {c}"),
    );
    Err(ProbeError::Failed {
        what,
        detail: if first_line.is_empty() {
            code
        } else {
            format!("{code}: {first_line}")
        },
    })
}

/// Reads a small text file, classifying the failure.
pub fn read_text(path: impl AsRef<Path>) -> Result<String, ProbeError> {
    let path = path.as_ref();
    std::fs::read(path)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .map_err(|err| io_error(&path.display().to_string(), &err))
}

/// Reads a small binary file (e.g. an EFI variable), classifying the failure.
pub fn read_bytes(path: impl AsRef<Path>) -> Result<Vec<u8>, ProbeError> {
    let path = path.as_ref();
    std::fs::read(path).map_err(|err| io_error(&path.display().to_string(), &err))
}

/// Turns an I/O error on `what` into the matching probe error.
pub fn io_error(what: &str, err: &std::io::Error) -> ProbeError {
    let what = what.to_owned();
    match err.kind() {
        std::io::ErrorKind::NotFound => ProbeError::Missing { what },
        std::io::ErrorKind::PermissionDenied => ProbeError::PermissionDenied { what },
        _ => ProbeError::Failed {
            what,
            detail: err.to_string(),
        },
    }
}

fn mentions_permission(stderr: &str) -> bool {
    let lower = stderr.to_ascii_lowercase();
    [
        "permission denied",
        "operation not permitted",
        "access is denied",
        "must be run as root",
        "requires root",
    ]
    .iter()
    .any(|needle| lower.contains(needle))
}

fn command_line(program: &str, args: &[&str]) -> String {
    let mut line = program.to_owned();
    for arg in args {
        line.push(' ');
        line.push_str(arg);
    }
    format!("`{line}`")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn missing_program_is_source_missing() {
        let err = run("sallyport-no-such-program", &[], COMMAND_TIMEOUT)
            .await
            .unwrap_err();
        assert!(matches!(err, ProbeError::Missing { .. }), "{err:?}");
        assert_eq!(Unknown::from(err).kind, UnknownKind::SourceMissing);
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn hung_command_times_out_and_is_killed() {
        let err = run("sleep", &["30"], Duration::from_millis(100))
            .await
            .unwrap_err();
        assert!(matches!(err, ProbeError::TimedOut { .. }), "{err:?}");
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn non_zero_exit_quotes_stderr() {
        let err = run_ok("sh", &["-c", "echo boom >&2; exit 3"], COMMAND_TIMEOUT)
            .await
            .unwrap_err();
        assert_eq!(
            err,
            ProbeError::Failed {
                what: "`sh -c echo boom >&2; exit 3`".into(),
                detail: "exit code 3: boom".into()
            }
        );
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn permission_text_in_stderr_is_permission_denied() {
        let err = run_ok(
            "sh",
            &["-c", "echo 'Operation not permitted' >&2; exit 1"],
            COMMAND_TIMEOUT,
        )
        .await
        .unwrap_err();
        assert!(
            matches!(err, ProbeError::PermissionDenied { .. }),
            "{err:?}"
        );
    }

    #[test]
    fn unreadable_file_is_classified() {
        let err = read_text("/nonexistent/sallyport").unwrap_err();
        assert!(matches!(err, ProbeError::Missing { .. }));
    }
}
