//! The control channel over a Windows named pipe.
//!
//! The pipe is per user (`\\.\pipe\sallyport-agent-<USERNAME>`), refuses
//! remote clients, and is created as the first instance of its name, so a
//! second agent (or another user squatting the name first) makes binding
//! fail instead of sharing the pipe. Who may connect is left to the pipe's
//! default security descriptor: full control for the creating user,
//! LocalSystem and administrators, read-only for everyone else — another
//! user can open it but cannot write a request. A client-SID check per
//! connection (GetNamedPipeClientProcessId + the process token) needs
//! `unsafe` Win32 calls and is not done.
//!
//! The same API as [`super::unix`], so the CLI, the host and the tray app
//! use either without caring which.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::net::windows::named_pipe::{ClientOptions, NamedPipeServer, ServerOptions};
use tokio::sync::mpsc;

pub use super::session::{ControlError, Incoming};
use super::session::{exchange, io_error, serve_lines};
use super::{Reply, Request};

/// ERROR_PIPE_BUSY: every instance is taken; retry shortly.
const ERROR_PIPE_BUSY: i32 = 231;

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
                    let (read, write) = tokio::io::split(client);
                    tokio::spawn(serve_lines(read, write, handler.clone()));
                }
            }
        }
    }
}

/// Sends one request to the agent at `path` and returns its reply.
pub async fn request(path: &Path, request: &Request) -> Result<Reply, ControlError> {
    let mut busy = 0;
    let client = loop {
        match ClientOptions::new().open(path) {
            Ok(client) => break client,
            Err(e) if e.raw_os_error() == Some(ERROR_PIPE_BUSY) && busy < 40 => {
                busy += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ControlError::NotRunning(path.display().to_string()));
            }
            Err(e) => return Err(io_error(path)(e)),
        }
    };
    let (read, write) = tokio::io::split(client);
    exchange(read, write, request)
        .await
        .map_err(io_error(path))?
        .map_err(ControlError::BadReply)
}
