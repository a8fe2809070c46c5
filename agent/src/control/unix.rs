//! The control channel over a Unix socket.
//!
//! Two locks on the door: the socket lives in a directory of the user's that
//! nobody else may enter (`$XDG_RUNTIME_DIR/sallyport`, mode 0700; the
//! socket itself 0600), and every connection's peer credentials
//! (`SO_PEERCRED` / `getpeereid`) must name the same user as the agent,
//! otherwise the connection is refused with a reason and closed. The second
//! lock matters when the first is misconfigured (a shared directory, a
//! permissive umask, root-owned paths).
//!
//! Clients check who answers, too: before sending anything, [`request`]
//! refuses a socket (or its directory) not owned by this user and a peer
//! process running as another uid. Without `XDG_RUNTIME_DIR` (always so on
//! macOS, and in some Linux sessions) the socket lives in a private
//! per-user directory (`$TMPDIR` on macOS, which is per-user there, else
//! `~/.local/state/sallyport/run`); only when that path would be too long
//! for a socket address does it fall back to `/tmp/sallyport-<uid>`, where
//! a directory another user made first is refused by both sides (a squat
//! can deny the service, never impersonate it).

use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::io::AsyncWriteExt;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;

pub use super::session::{ControlError, Incoming};
use super::session::{exchange, io_error, serve_lines};
use super::{Reply, Request, to_line};

/// `$XDG_RUNTIME_DIR/sallyport/agent.sock`, else a private per-user
/// directory (see the module docs).
pub fn default_socket_path() -> PathBuf {
    let env = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    socket_path_from(
        env("XDG_RUNTIME_DIR").map(PathBuf::from),
        if cfg!(target_os = "macos") {
            env("TMPDIR").map(PathBuf::from)
        } else {
            None
        },
        env("HOME").map(PathBuf::from),
        nix::unistd::geteuid().as_raw(),
    )
}

/// The longest socket path used: `sun_path` is 108 bytes on Linux and 104
/// on macOS, with its terminating NUL.
const MAX_SOCKET_PATH: usize = 100;

/// [`default_socket_path`] from its inputs (pure).
fn socket_path_from(
    runtime_dir: Option<PathBuf>,
    user_tmp: Option<PathBuf>,
    home: Option<PathBuf>,
    uid: u32,
) -> PathBuf {
    let candidates = [
        runtime_dir.map(|d| d.join("sallyport")),
        user_tmp.map(|d| d.join("sallyport")),
        home.map(|h| h.join(".local/state/sallyport/run")),
    ];
    candidates
        .into_iter()
        .flatten()
        .map(|dir| dir.join("agent.sock"))
        .find(|path| path.as_os_str().len() <= MAX_SOCKET_PATH)
        .unwrap_or_else(|| PathBuf::from(format!("/tmp/sallyport-{uid}/agent.sock")))
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

/// Sends one request to the agent at `path` and returns its reply, after
/// checking that this user's agent is the one answering: the socket and
/// its directory are this user's, and so is the peer process.
pub async fn request(path: &Path, request: &Request) -> Result<Reply, ControlError> {
    let me = nix::unistd::geteuid().as_raw();
    let impostor = |owner: u32| ControlError::Impostor {
        path: path.display().to_string(),
        owner: format!("uid {owner}"),
    };
    for checked in [Some(path), path.parent()].into_iter().flatten() {
        match std::fs::symlink_metadata(checked) {
            Ok(meta) if meta.uid() != me => return Err(impostor(meta.uid())),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ControlError::NotRunning(path.display().to_string()));
            }
            Err(e) => return Err(io_error(checked)(e)),
        }
    }
    let stream = UnixStream::connect(path)
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                ControlError::NotRunning(path.display().to_string())
            }
            _ => io_error(path)(e),
        })?;
    let peer = stream.peer_cred().map_err(io_error(path))?.uid();
    if peer != me {
        return Err(impostor(peer));
    }
    let (read, write) = stream.into_split();
    exchange(read, write, request)
        .await
        .map_err(io_error(path))?
        .map_err(ControlError::BadReply)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_socket_lives_in_a_private_per_user_place() {
        let p = |rt: Option<&str>, tmp: Option<&str>, home: Option<&str>| {
            socket_path_from(
                rt.map(PathBuf::from),
                tmp.map(PathBuf::from),
                home.map(PathBuf::from),
                1000,
            )
        };
        assert_eq!(
            p(Some("/run/user/1000"), None, Some("/home/a")),
            PathBuf::from("/run/user/1000/sallyport/agent.sock")
        );
        // macOS: the per-user $TMPDIR.
        assert_eq!(
            p(None, Some("/var/folders/xy/abc/T"), Some("/Users/a")),
            PathBuf::from("/var/folders/xy/abc/T/sallyport/agent.sock")
        );
        // No runtime directory: the user's own state directory, not /tmp.
        assert_eq!(
            p(None, None, Some("/home/a")),
            PathBuf::from("/home/a/.local/state/sallyport/run/agent.sock")
        );
        // Only when nothing else fits a socket address: /tmp, checked by both sides.
        let long = format!("/home/{}", "x".repeat(90));
        assert_eq!(
            p(None, None, Some(&long)),
            PathBuf::from("/tmp/sallyport-1000/agent.sock")
        );
        assert_eq!(
            p(None, None, None),
            PathBuf::from("/tmp/sallyport-1000/agent.sock")
        );
    }
}
