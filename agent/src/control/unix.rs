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
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

use super::{MAX_LINE, ProtocolError, Reply, Request, parse_request, to_line};

/// A request and where to send its reply; the agent's runtime receives these.
pub type Incoming = (Request, oneshot::Sender<Reply>);

/// How long the agent may take to answer one request.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the control channel failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Filesystem or socket error, with the path.
    #[error("{path}: {source}")]
    Io {
        /// The socket or directory.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The socket directory is not private to this user.
    #[error("{0} is not private to this user (owner or permissions); refusing to use it")]
    InsecureDirectory(String),
    /// Another agent already listens there.
    #[error("an agent is already running ({0})")]
    AlreadyRunning(String),
    /// No agent listens there.
    #[error("no agent is running ({0}); start it with `sallyport run`")]
    NotRunning(String),
    /// The agent's answer was not a reply.
    #[error("the agent answered something unexpected: {0}")]
    BadReply(String),
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> ControlError + '_ {
    move |source| ControlError::Io {
        path: path.display().to_string(),
        source,
    }
}

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
    let mut reader = BufReader::new(read);
    let mut line = Vec::new();
    loop {
        line.clear();
        let limit = u64::try_from(MAX_LINE + 1).unwrap_or(u64::MAX);
        match (&mut reader).take(limit).read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let complete = line.last() == Some(&b'\n');
        if complete {
            line.pop();
        }
        let reply = if !complete && line.len() > MAX_LINE {
            let reply = Reply::Error {
                message: ProtocolError::TooLong.to_string(),
            };
            let _ = write.write_all(&to_line(&reply)).await;
            return;
        } else {
            match parse_request(&line) {
                Ok(request) => ask(&handler, request).await,
                Err(e) => Reply::Error {
                    message: e.to_string(),
                },
            }
        };
        if write.write_all(&to_line(&reply)).await.is_err() {
            return;
        }
    }
}

async fn ask(handler: &mpsc::Sender<Incoming>, request: Request) -> Reply {
    let (tx, rx) = oneshot::channel();
    if handler.send((request, tx)).await.is_err() {
        return Reply::Error {
            message: "the agent is shutting down".to_owned(),
        };
    }
    match tokio::time::timeout(REPLY_TIMEOUT, rx).await {
        Ok(Ok(reply)) => reply,
        _ => Reply::Error {
            message: "the agent did not answer in time".to_owned(),
        },
    }
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
    let (read, mut write) = stream.into_split();
    write
        .write_all(&to_line(request))
        .await
        .map_err(io_error(path))?;
    let mut line = Vec::new();
    let limit = u64::try_from(16 * MAX_LINE).unwrap_or(u64::MAX);
    BufReader::new(read)
        .take(limit)
        .read_until(b'\n', &mut line)
        .await
        .map_err(io_error(path))?;
    serde_json::from_slice(&line).map_err(|e| ControlError::BadReply(e.to_string()))
}
