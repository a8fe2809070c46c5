//! The control channel over a Unix socket.
//!
//! Two locks on the door: the socket lives in a directory of the user's that
//! nobody else may enter (`$XDG_RUNTIME_DIR/sallyport`, mode 0700; the
//! socket itself 0600), and every connection's peer credentials
//! (`SO_PEERCRED` / `getpeereid`) must name the same user as the agent,
//! otherwise the connection is refused with a reason and closed. The second
//! lock matters when the first is misconfigured (a shared directory, a
//! permissive umask, root-owned paths).

use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::io::AsyncWriteExt;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;

pub use super::session::{ControlError, Incoming};
use super::session::{exchange, io_error, serve_lines};
use super::{Reply, Request, to_line};

/// `$XDG_RUNTIME_DIR/sallyport/agent.sock`, else a per-user folder in /tmp.
pub fn default_socket_path() -> PathBuf {
    let dir = std::env::var_os("XDG_RUNTIME_DIR")
        .filter(|v| !v.is_empty())
        .map(|d| PathBuf::from(d).join("sallyport"))
        .unwrap_or_else(|| {
            PathBuf::from(format!(
                "/tmp/sallyport-{}",
                nix::unistd::geteuid().as_raw()
            ))
        });
    dir.join("agent.sock")
}

/// A bound control socket.
#[derive(Debug)]
pub struct ControlServer {
    listener: UnixListener,
    path: PathBuf,
}

impl ControlServer {
    /// Binds `path`, creating its directory (0700) when missing and checking
    /// it is private when present. A stale socket (nobody answering) is
    /// replaced; a live one means another agent runs.
    pub async fn bind(path: &Path) -> Result<Self, ControlError> {
        let dir = path.parent().unwrap_or(Path::new("."));
        ensure_private_dir(dir)?;
        if path.exists() {
            if UnixStream::connect(path).await.is_ok() {
                return Err(ControlError::AlreadyRunning(path.display().to_string()));
            }
            std::fs::remove_file(path).map_err(io_error(path))?;
        }
        let listener = UnixListener::bind(path).map_err(io_error(path))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(io_error(path))?;
        Ok(ControlServer {
            listener,
            path: path.to_owned(),
        })
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Accepts connections until the handler side is dropped; each
    /// connection is served on its own task.
    pub async fn serve(self, handler: mpsc::Sender<Incoming>) {
        let me = nix::unistd::geteuid().as_raw();
        loop {
            tokio::select! {
                () = handler.closed() => return,
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        tokio::spawn(serve_connection(stream, me, handler.clone()));
                    }
                    Err(e) => tracing::warn!(error = %e, "control socket accept failed"),
                },
            }
        }
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn ensure_private_dir(dir: &Path) -> Result<(), ControlError> {
    match std::fs::metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_error(dir)),
        Err(e) => Err(io_error(dir)(e)),
        Ok(meta) => {
            let me = nix::unistd::geteuid().as_raw();
            if meta.uid() != me || meta.mode() & 0o077 != 0 {
                return Err(ControlError::InsecureDirectory(dir.display().to_string()));
            }
            Ok(())
        }
    }
}

async fn serve_connection(stream: UnixStream, me: u32, handler: mpsc::Sender<Incoming>) {
    let peer = stream.peer_cred().map(|c| c.uid());
    let (read, mut write) = stream.into_split();
    if peer.as_ref().ok() != Some(&me) {
        tracing::warn!(peer = ?peer, "control connection from another user refused");
        let refusal = Reply::Error {
            message: "refused: this agent belongs to another user".to_owned(),
        };
        let _ = write.write_all(&to_line(&refusal)).await;
        return;
    }
    serve_lines(read, write, handler).await;
}

/// Sends one request to the agent at `path` and returns its reply.
pub async fn request(path: &Path, request: &Request) -> Result<Reply, ControlError> {
    let stream = UnixStream::connect(path)
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                ControlError::NotRunning(path.display().to_string())
            }
            _ => io_error(path)(e),
        })?;
    let (read, write) = stream.into_split();
    exchange(read, write, request)
        .await
        .map_err(io_error(path))?
        .map_err(ControlError::BadReply)
}
