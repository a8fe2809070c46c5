//! The control channel over a Windows named pipe.
//!
//! The pipe is per user (`\\.\pipe\sallyport-agent-<USERNAME>`), refuses
//! remote clients, and is created as the first instance of its name, so a
//! second agent (or another user squatting the name first) makes binding
//! fail instead of sharing the pipe. The pipe's default security
//! descriptor gives full control to the creating user, LocalSystem and
//! administrators, read-only to everyone else; on top of that every
//! connection's client process must run as the agent's own user (its SID,
//! see `service::win_security`), and the CLI checks that the process serving
//! the pipe runs as its user too, so neither side talks to another
//! account's process.
//!
//! The same API as [`super::unix`], so the CLI, the host and the tray app
//! use either without caring which.

use std::os::windows::io::AsRawHandle as _;
use std::path::{Path, PathBuf};

use tokio::net::windows::named_pipe::{NamedPipeServer, ServerOptions};
use tokio::sync::mpsc;

pub use super::session::{ControlError, Incoming};
use super::session::{exchange, io_error, serve_lines};
use super::{Reply, Request};
use service::win_security::{self as pipe_peer, End, Sid};

/// `\\.\pipe\sallyport-agent-<USERNAME>`.
pub fn default_socket_path() -> PathBuf {
    let user = std::env::var("USERNAME").unwrap_or_else(|_| "default".to_owned());
    let user: String = user
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    PathBuf::from(format!(r"\\.\pipe\sallyport-agent-{user}"))
}

/// A created pipe, waiting for its first client.
#[derive(Debug)]
pub struct ControlServer {
    next: NamedPipeServer,
    path: PathBuf,
}

impl ControlServer {
    /// Creates the pipe's first instance; fails with
    /// [`ControlError::AlreadyRunning`] when the name is taken.
    pub async fn bind(path: &Path) -> Result<Self, ControlError> {
        let next = ServerOptions::new()
            .first_pipe_instance(true)
            .reject_remote_clients(true)
            .create(path)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::PermissionDenied => {
                    ControlError::AlreadyRunning(path.display().to_string())
                }
                _ => io_error(path)(e),
            })?;
        Ok(ControlServer {
            next,
            path: path.to_owned(),
        })
    }

    /// The pipe name.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Accepts clients until the handler side is dropped; each is served
    /// on its own task while a fresh instance waits for the next.
    pub async fn serve(mut self, handler: mpsc::Sender<Incoming>) {
        loop {
            tokio::select! {
                () = handler.closed() => return,
                connected = self.next.connect() => {
                    if let Err(e) = connected {
                        tracing::warn!(error = %e, "control pipe connect failed");
                        continue;
                    }
                    let fresh = match ServerOptions::new()
                        .reject_remote_clients(true)
                        .create(&self.path)
                    {
                        Ok(fresh) => fresh,
                        Err(e) => {
                            tracing::warn!(error = %e, "control pipe: no new instance");
                            return;
                        }
                    };
                    let client = std::mem::replace(&mut self.next, fresh);
                    if let Err(why) = same_user(client.as_raw_handle(), End::Client, None) {
                        tracing::warn!(%why, "control connection from another account refused");
                        continue;
                    }
                    let (read, write) = tokio::io::split(client);
                    tokio::spawn(serve_lines(read, write, handler.clone()));
                }
            }
        }
    }
}

/// Sends one request to the agent at `path` and returns its reply.
pub async fn request(path: &Path, request: &Request) -> Result<Reply, ControlError> {
    let client = pipe_peer::open_pipe_client(path)
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => ControlError::NotRunning(path.display().to_string()),
            _ => io_error(path)(e),
        })?;
    same_user(client.as_raw_handle(), End::Server, None).map_err(|owner| {
        ControlError::Impostor {
            path: path.display().to_string(),
            owner,
        }
    })?;
    let (read, write) = tokio::io::split(client);
    exchange(read, write, request)
        .await
        .map_err(io_error(path))?
        .map_err(ControlError::BadReply)
}

/// Checks that the process at `end` of `pipe` runs as `expected` (this
/// process's user when `None`); the error names who it is instead.
pub fn same_user(
    pipe: std::os::windows::io::RawHandle,
    end: End,
    expected: Option<&Sid>,
) -> Result<(), String> {
    let me = match expected {
        Some(sid) => sid.clone(),
        None => pipe_peer::current_user().map_err(|e| format!("own account unknown: {e}"))?,
    };
    let peer = pipe_peer::peer_user(pipe, end).map_err(|e| format!("peer account unknown: {e}"))?;
    if pipe_peer::same(&me, &peer) {
        Ok(())
    } else {
        Err(peer.to_string())
    }
}
