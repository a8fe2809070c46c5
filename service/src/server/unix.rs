//! The service's Unix socket: any local user may connect (directory 0755,
//! socket 0666), because every user's agent needs attestations; who asked
//! is taken from the kernel (`SO_PEERCRED` via tokio's `peer_cred`) and
//! signed into the EAT as `local_uid`. The socket is not the access
//! control: nothing it answers lets a caller sign bytes of its choosing
//! (see `crate::protocol`).
//!
//! Limits (`super::connection`): a request line is bounded, an idle
//! connection is closed after [`IDLE_TIMEOUT`], and at most
//! [`MAX_CONNECTIONS`] are served at once, so one local user cannot
//! exhaust the service.

use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{UnixListener, UnixStream};

use super::connection::serve_lines;
use super::{Peer, Service};

pub use super::connection::{IDLE_TIMEOUT, MAX_CONNECTIONS};

/// The default socket path.
pub const DEFAULT_SOCKET: &str = "/run/sallyport/sallyportd.sock";

/// Why the socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// Creating, binding or setting permissions failed.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// Another service answers on the socket.
    #[error("another sallyportd already answers on {0}")]
    AlreadyRunning(String),
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> ListenError + '_ {
    move |source| ListenError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The bound socket; removed when dropped.
#[derive(Debug)]
pub struct Listener {
    listener: UnixListener,
    path: PathBuf,
}

impl Listener {
    /// Binds `path` (directory created 0755, socket 0666). A stale socket
    /// is replaced; a live one is an error.
    pub async fn bind(path: &Path) -> Result<Self, ListenError> {
        if let Some(dir) = path.parent()
            && !dir.exists()
        {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(dir)
                .map_err(io(dir))?;
        }
        if path.exists() {
            if UnixStream::connect(path).await.is_ok() {
                return Err(ListenError::AlreadyRunning(path.display().to_string()));
            }
            std::fs::remove_file(path).map_err(io(path))?;
        }
        let listener = UnixListener::bind(path).map_err(io(path))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666)).map_err(io(path))?;
        Ok(Listener {
            listener,
            path: path.to_owned(),
        })
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Serves connections until the task is dropped.
    pub async fn serve(self, service: Arc<Service>) {
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
        loop {
            let (stream, _) = match self.listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                tracing::warn!("too many connections; refusing one");
                continue;
            };
            let service = service.clone();
            tokio::spawn(async move {
                serve_connection(stream, service).await;
                drop(permit);
            });
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

async fn serve_connection(stream: UnixStream, service: Arc<Service>) {
    let peer = match stream.peer_cred() {
        Ok(cred) => Peer::from_uid(cred.uid()),
        Err(e) => {
            tracing::warn!(error = %e, "no peer credentials; closing the connection");
            return;
        }
    };
    let (read, write) = stream.into_split();
    serve_lines(read, write, &peer, &service).await;
}
