//! The service's named pipe (Windows), the twin of `server/unix.rs`.
//!
//! Every interactive user's agent must reach the service, so the pipe's
//! DACL ([`PIPE_SDDL`]) gives LocalSystem and administrators full control
//! and authenticated users read and write, but not `FILE_CREATE_PIPE_INSTANCE`
//! (which `GENERIC_WRITE` would include), so no user can add an instance
//! of the service's pipe and answer in its place. Remote clients are
//! refused, and the first instance is created exclusively, so a squatter
//! who took the name first makes the service fail to start rather than
//! share the name. Who asked is the client process's token user (its SID,
//! [`crate::win_security::peer_user`]), signed into the EAT as `local_user`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::windows::named_pipe::{NamedPipeServer, ServerOptions};

use super::connection::{MAX_CONNECTIONS, serve_lines};
use super::{Peer, Service};
use crate::win_security::{End, SecurityDescriptor, create_pipe, peer_user};

/// The default pipe.
pub const DEFAULT_PIPE: &str = r"\\.\pipe\sallyportd";

/// The pipe's DACL: protected (no inherited entries); LocalSystem (`SY`)
/// and administrators (`BA`) all access; authenticated users (`AU`)
/// `FILE_GENERIC_READ | FILE_WRITE_DATA` (0x0012_008B), so they can talk
/// but not create instances.
pub const PIPE_SDDL: &str = "D:P(A;;GA;;;SY)(A;;GA;;;BA)(A;;0x12008b;;;AU)";

/// Why the pipe could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// Creating the pipe failed.
    #[error("{path}: {source}")]
    Io {
        /// The pipe.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// The name is taken (another sallyportd, or a squatter).
    #[error("the pipe {0} already exists (another sallyportd, or another process took the name)")]
    AlreadyRunning(String),
}

/// The created pipe, waiting for its first client.
#[derive(Debug)]
pub struct Listener {
    next: NamedPipeServer,
    path: PathBuf,
    descriptor: SecurityDescriptor,
}

fn options() -> ServerOptions {
    let mut options = ServerOptions::new();
    options.reject_remote_clients(true);
    options
}

impl Listener {
    /// Creates the pipe's first instance with [`PIPE_SDDL`].
    pub async fn bind(path: &Path) -> Result<Self, ListenError> {
        let io = |source| ListenError::Io {
            path: path.display().to_string(),
            source,
        };
        let descriptor = SecurityDescriptor::from_sddl(PIPE_SDDL).map_err(io)?;
        let mut first = options();
        first.first_pipe_instance(true);
        let next = create_pipe(&first, path, &descriptor).map_err(|e| {
            if e.kind() == std::io::ErrorKind::PermissionDenied {
                ListenError::AlreadyRunning(path.display().to_string())
            } else {
                io(e)
            }
        })?;
        Ok(Listener {
            next,
            path: path.to_owned(),
            descriptor,
        })
    }

    /// The pipe name.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Serves clients until the task is dropped: each on its own task
    /// while a fresh instance waits for the next.
    pub async fn serve(mut self, service: Arc<Service>) {
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
        loop {
            if let Err(e) = self.next.connect().await {
                tracing::warn!(error = %e, "pipe connect failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            let fresh = match create_pipe(&options(), &self.path, &self.descriptor) {
                Ok(fresh) => fresh,
                Err(e) => {
                    tracing::error!(error = %e, "no new pipe instance; stopping");
                    return;
                }
            };
            let client = std::mem::replace(&mut self.next, fresh);
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                tracing::warn!("too many connections; refusing one");
                continue;
            };
            let service = service.clone();
            tokio::spawn(async move {
                serve_connection(client, service).await;
                drop(permit);
            });
        }
    }
}

async fn serve_connection(pipe: NamedPipeServer, service: Arc<Service>) {
    use std::os::windows::io::AsRawHandle as _;
    let peer = match peer_user(pipe.as_raw_handle(), End::Client) {
        Ok(sid) => Peer::from_sid(sid.to_string()),
        Err(e) => {
            tracing::warn!(error = %e, "no client account; closing the connection");
            return;
        }
    };
    let (read, write) = tokio::io::split(pipe);
    serve_lines(read, write, &peer, &service).await;
}
