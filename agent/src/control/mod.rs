//! The local control channel between the running agent (`sallyport run`)
//! and its front ends (the CLI, the tray app).
//!
//! The protocol is one JSON object per line in each direction: a
//! [`Request`], then its [`Reply`]. It is deliberately tiny so the tray app
//! and the CLI cannot drift, and it never carries a token or a key: the
//! agent answers with states and reports only.
//!
//! Transport: a Unix socket in a directory only the user can enter, and on
//! top of that a peer-credential check that refuses any other user (see
//! [`unix`]). On Windows a per-user named pipe (see `windows`: its
//! default security descriptor lets only the user, SYSTEM and
//! administrators write to it, and every connection's peer account is
//! checked, see `pipe_peer`).

/// The named pipe's peer-account check lives in the service crate (one
/// unsafe module for both ends of both pipes).
#[cfg(windows)]
pub use service::win_security as pipe_peer;
mod session;
#[cfg(unix)]
pub mod unix;
pub mod view;
#[cfg(windows)]
pub mod windows;

pub use session::{ControlError, Incoming};

use serde::{Deserialize, Serialize};

/// A line longer than this is refused (and the connection closed): the
/// requests are tiny, so a long line is a bug or an attack.
pub const MAX_LINE: usize = 64 * 1024;

/// What a front end can ask the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Identity, verdict, tunnels.
    Status,
    /// The latest posture report with its evaluation.
    Posture,
    /// Collect posture now.
    Recheck,
    /// The application catalogue.
    Apps,
    /// Open an application.
    Connect {
        /// Its id in the catalogue.
        app: String,
    },
    /// Close an application.
    Disconnect {
        /// Its id in the catalogue.
        app: String,
    },
    /// Sign out (tunnels close, tokens are deleted).
    SignOut,
    /// The timeline (`crate::timeline`): what was decided and why, oldest
    /// first, from `since` on (everything kept, 7 days, when absent).
    History {
        /// The earliest entry wanted (RFC 3339).
        #[serde(default, with = "time::serde::rfc3339::option")]
        since: Option<time::OffsetDateTime>,
    },
    /// Start a browser sign-in (authorization code + PKCE): the agent opens
    /// the system browser and finishes on its own; front ends watch
    /// `Status`. Replies at once (null) so no reply waits on the user.
    SignIn,
    /// Start a device-code sign-in (RFC 8628) for machines without a usable
    /// browser. Replies with a [`view::DeviceCodeView`] to show; the agent
    /// polls the IdP and front ends watch `Status`.
    SignInDevice,
    /// Write the redacted diagnostics bundle to `path` (a `.zip` the user
    /// chose or the app's default); replies with the path written. The agent
    /// writes it because it holds everything the bundle needs and knows what
    /// to redact; the tray app only picks where.
    ExportDiagnostics {
        /// Absolute path of the zip to write.
        path: String,
    },
}

/// The agent's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    /// Done; `data` depends on the request (a status, a report, or null).
    Ok {
        /// The answer.
        data: serde_json::Value,
    },
    /// Not done, and why.
    Error {
        /// For the user.
        message: String,
    },
}

/// Why a request line could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtocolError {
    /// Longer than [`MAX_LINE`].
    #[error("request longer than {MAX_LINE} bytes")]
    TooLong,
    /// Not a request this agent understands.
    #[error("malformed request: {0}")]
    Malformed(String),
}

/// Parses one request line (without its newline). Pure.
pub fn parse_request(line: &[u8]) -> Result<Request, ProtocolError> {
    if line.len() > MAX_LINE {
        return Err(ProtocolError::TooLong);
    }
    serde_json::from_slice(line).map_err(|e| ProtocolError::Malformed(e.to_string()))
}

/// Serialises a value as one line, newline included.
pub fn to_line<T: Serialize>(value: &T) -> Vec<u8> {
    // Serialising these plain enums cannot fail; fall back to a valid
    // error line rather than panic if it ever did.
    let mut line = serde_json::to_vec(value).unwrap_or_else(|_| {
        br#"{"reply":"error","message":"internal serialisation error"}"#.to_vec()
    });
    line.push(b'\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_garbage_is_refused() {
        for request in [
            Request::Status,
            Request::Connect { app: "wiki".into() },
            Request::SignOut,
        ] {
            let line = to_line(&request);
            assert_eq!(parse_request(&line[..line.len() - 1]).unwrap(), request);
        }
        assert_eq!(
            parse_request(br#"{"request":"connect","app":"wiki"}"#).unwrap(),
            Request::Connect { app: "wiki".into() }
        );
        assert!(matches!(
            parse_request(br#"{"request":"format_disk"}"#),
            Err(ProtocolError::Malformed(_))
        ));
        assert!(matches!(
            parse_request(br#"{"request":"connect","app":"wiki","token":"x"}"#),
            Err(ProtocolError::Malformed(_))
        ));
        assert!(matches!(
            parse_request(b"\xff\xfe"),
            Err(ProtocolError::Malformed(_))
        ));
        assert_eq!(
            parse_request(&vec![b' '; MAX_LINE + 1]),
            Err(ProtocolError::TooLong)
        );
    }
}
