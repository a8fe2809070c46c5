//! `sallyport demo --keep-running`: the demo's agent on the control socket,
//! so `sallyport status`, `sallyport diagnostics` and the tray app attach
//! to it as they attach to `sallyport run`.
//!
//! The socket is claimed only once the demo is up (a half-built demo is not
//! worth looking at), at the path those front ends look at: the per-user
//! default, or `SALLYPORT_SOCKET`. Requests go to the demo's runtime over
//! the same channel the demo itself uses, so the front ends see exactly
//! what the narration describes. When another agent already answers there
//! (the user's real `sallyport run`, or the tray app hosting one), that one
//! keeps the socket: two agents must never share it, and the demo runs on
//! without.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use agent::control::ControlError;
use agent::runtime::ControlRequest;
use tokio::sync::mpsc;

#[cfg(unix)]
use agent::control::unix as transport;
#[cfg(windows)]
use agent::control::windows as transport;

/// The variable the CLI reads for the socket path (`sallyport --help`).
pub(crate) const SOCKET_VAR: &str = "SALLYPORT_SOCKET";

/// Where the front ends look for the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SocketPath {
    /// The socket.
    pub(crate) path: PathBuf,
    /// From `SALLYPORT_SOCKET`: other terminals find it only with the same
    /// variable, and the tray app not at all.
    pub(crate) from_variable: bool,
}

/// `SALLYPORT_SOCKET` when set and not empty, else the per-user default
/// (pure; `env` reads a variable).
pub(crate) fn socket_path(env: &dyn Fn(&str) -> Option<OsString>) -> SocketPath {
    match env(SOCKET_VAR).filter(|v| !v.is_empty()) {
        Some(path) => SocketPath {
            path: PathBuf::from(path),
            from_variable: true,
        },
        None => SocketPath {
            path: transport::default_socket_path(),
            from_variable: false,
        },
    }
}

/// The demo's agent, served on a control socket until [`Served::stop`].
#[derive(Debug)]
pub(crate) struct Served {
    path: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

/// Claims `path` and serves the runtime behind `control` there. Fails with
/// [`ControlError::AlreadyRunning`] when another agent answers on it (a
/// stale socket file, nobody answering, is replaced).
pub(crate) async fn serve(
    path: &Path,
    control: mpsc::Sender<ControlRequest>,
) -> Result<Served, ControlError> {
    let server = transport::ControlServer::bind(path).await?;
    Ok(Served {
        path: path.to_owned(),
        task: tokio::spawn(server.serve(control)),
    })
}

impl Served {
    /// The socket.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Stops accepting and removes the socket (the server removes its file
    /// when dropped, which the aborted task does).
    pub(crate) async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use agent::control::{Reply, Request};

    #[test]
    fn the_variable_wins_unless_empty() {
        let set =
            |value: &'static str| move |name: &str| (name == SOCKET_VAR).then(|| value.into());
        let default = SocketPath {
            path: transport::default_socket_path(),
            from_variable: false,
        };
        assert_eq!(
            socket_path(&set("/run/x.sock")),
            SocketPath {
                path: PathBuf::from("/run/x.sock"),
                from_variable: true,
            }
        );
        assert_eq!(socket_path(&set("")), default);
        assert_eq!(socket_path(&|_| None), default);
    }

    /// A stand-in runtime: answers every request with its name.
    fn echo_runtime() -> mpsc::Sender<ControlRequest> {
        let (tx, mut rx) = mpsc::channel::<ControlRequest>(4);
        tokio::spawn(async move {
            while let Some((request, reply)) = rx.recv().await {
                let _ = reply.send(Reply::Ok {
                    data: serde_json::json!(format!("{request:?}")),
                });
            }
        });
        tx
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn serves_the_runtime_refuses_a_second_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        // A folder that does not exist yet: the server makes it private
        // (tempdir itself honours the umask, which the server refuses).
        let path = dir.path().join("sallyport").join("agent.sock");
        let served = serve(&path, echo_runtime()).await.unwrap();
        assert_eq!(served.path(), path);
        let reply = transport::request(&path, &Request::Status).await.unwrap();
        assert!(
            matches!(&reply, Reply::Ok { data } if data == "Status"),
            "{reply:?}"
        );

        let second = serve(&path, echo_runtime()).await;
        assert!(
            matches!(second, Err(ControlError::AlreadyRunning(_))),
            "{second:?}"
        );

        served.stop().await;
        assert!(!path.exists(), "the socket file is removed at stop");
        assert!(matches!(
            transport::request(&path, &Request::Status).await,
            Err(ControlError::NotRunning(_))
        ));
    }
}
