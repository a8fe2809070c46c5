//! The control socket for real: a Unix socket, a handler task standing in
//! for the agent's runtime, and clients — including one running as another
//! user, which must be refused by the peer-credential check.

#![cfg(unix)]
// Test scaffolding: setup failures must abort loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use agent::control::unix::{ControlError, ControlServer, Incoming, request};
use agent::control::{MAX_LINE, Reply, Request};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::sync::mpsc;

/// Serves `path` with a handler that echoes the request back as data.
async fn start(path: &Path) -> (tokio::task::JoinHandle<()>, mpsc::Sender<Incoming>) {
    // tempdir honours the umask (often 0755); the agent wants 0700.
    let dir = path.parent().unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let server = ControlServer::bind(path).await.unwrap();
    let (tx, mut rx) = mpsc::channel::<Incoming>(8);
    tokio::spawn(async move {
        while let Some((req, reply)) = rx.recv().await {
            let _ = reply.send(Reply::Ok {
                data: serde_json::to_value(&req).unwrap(),
            });
        }
    });
    let handle = tokio::spawn(server.serve(tx.clone()));
    (handle, tx)
}

async fn raw_exchange(path: &Path, bytes: &[u8]) -> Vec<String> {
    let stream = UnixStream::connect(path).await.unwrap();
    let (read, mut write) = stream.into_split();
    let _ = write.write_all(bytes).await;
    let _ = write.shutdown().await;
    let mut lines = BufReader::new(read).lines();
    let mut out = Vec::new();
    while let Ok(Some(line)) = lines.next_line().await {
        out.push(line);
    }
    out
}

#[tokio::test]
async fn requests_are_answered_and_garbage_gets_an_error_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.sock");
    let _server = start(&path).await;

    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "socket must be private");

    let reply = request(&path, &Request::Connect { app: "wiki".into() })
        .await
        .unwrap();
    assert_eq!(
        reply,
        Reply::Ok {
            data: serde_json::json!({"request": "connect", "app": "wiki"})
        }
    );

    // Garbage, then a good request on the same connection.
    let lines = raw_exchange(&path, b"not json\n{\"request\":\"status\"}\n").await;
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].contains("malformed request"), "{}", lines[0]);
    assert!(lines[1].contains("\"reply\":\"ok\""), "{}", lines[1]);

    // An oversized line is refused and the connection closed.
    let mut huge = vec![b'x'; MAX_LINE + 10];
    huge.push(b'\n');
    huge.extend_from_slice(b"{\"request\":\"status\"}\n");
    let lines = raw_exchange(&path, &huge).await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("longer than"), "{}", lines[0]);
}

#[tokio::test]
async fn a_second_agent_is_refused_and_a_stale_socket_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.sock");
    let (server, _tx) = start(&path).await;
    assert!(matches!(
        ControlServer::bind(&path).await,
        Err(ControlError::AlreadyRunning(_))
    ));
    server.abort();
    let _ = server.await;
    // The socket file is left behind by the aborted task (its Drop ran, so
    // recreate a stale one by hand): binding again must replace it.
    let _stale = std::os::unix::net::UnixListener::bind(&path);
    drop(_stale);
    assert!(path.exists());
    let _again = start(&path).await;
    assert!(matches!(
        request(&path, &Request::Status).await.unwrap(),
        Reply::Ok { .. }
    ));
}

#[tokio::test]
async fn a_shared_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let err = ControlServer::bind(&dir.path().join("agent.sock"))
        .await
        .unwrap_err();
    assert!(matches!(err, ControlError::InsecureDirectory(_)), "{err}");
}

#[tokio::test]
async fn no_agent_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = request(&dir.path().join("agent.sock"), &Request::Status)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("sallyport run"), "{err}");
}

#[tokio::test]
async fn another_user_is_refused_by_peer_credentials() {
    if !nix::unistd::geteuid().is_root() {
        support::prereq::missing("needs root to run a client as another user");
        return;
    }
    // A directory everyone may enter and a socket everyone may open: only
    // the peer-credential check stands between `nobody` and the agent.
    let dir = tempfile::Builder::new().tempdir_in("/tmp").unwrap();
    let path = dir.path().join("agent.sock");
    let _server = start(&path).await;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();

    let script = "import socket,sys\n\
s=socket.socket(socket.AF_UNIX)\n\
s.connect(sys.argv[1])\n\
try: s.sendall(b'{\"request\":\"status\"}\\n')\n\
except BrokenPipeError: pass\n\
print(s.makefile().readline().strip())\n";
    let path_arg = path.to_str().unwrap().to_owned();
    let output = tokio::task::spawn_blocking(move || {
        use std::os::unix::process::CommandExt;
        std::process::Command::new("python3")
            .args(["-c", script, &path_arg])
            .uid(65534)
            .gid(65534)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "client failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("refused"), "{stdout}");
    assert!(!stdout.contains("\"ok\""), "{stdout}");
}

#[tokio::test]
async fn a_socket_squatted_by_another_user_is_refused_before_anything_is_sent() {
    if !nix::unistd::geteuid().is_root() {
        support::prereq::missing("needs root to run a server as another user");
        return;
    }
    // Another user got to the socket path first (as at a guessable /tmp
    // path): they serve a fake agent that would answer sign-in requests.
    let dir = tempfile::Builder::new().tempdir_in("/tmp").unwrap();
    let squat = dir.path().join("squat");
    std::fs::create_dir(&squat).unwrap();
    std::os::unix::fs::chown(&squat, Some(65534), Some(65534)).unwrap();
    let path = squat.join("agent.sock");
    let script = "import socket,sys,time\n\
s=socket.socket(socket.AF_UNIX)\n\
s.bind(sys.argv[1]); s.listen(1)\n\
print('listening', flush=True)\n\
s.settimeout(5)\n\
try:\n    c,_=s.accept(); c.settimeout(2)\n    data=c.recv(4096)\n    c.sendall(b'{\"ok\":{\"data\":null}}\\n')\n    print('received', len(data), flush=True)\n\
except Exception as e: print('nothing', type(e).__name__, flush=True)\n";
    let mut server = {
        use std::os::unix::process::CommandExt;
        std::process::Command::new("python3")
            .args(["-c", script, path.to_str().unwrap()])
            .uid(65534)
            .gid(65534)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut out = std::io::BufReader::new(server.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    assert_eq!(line.trim(), "listening");

    let err = request(&path, &Request::SignInDevice).await.unwrap_err();
    assert!(matches!(err, ControlError::Impostor { .. }), "{err}");
    assert!(err.to_string().contains("uid 65534"), "{err}");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    let _ = server.wait();
    assert!(
        rest.starts_with("nothing"),
        "the client must not even connect and send: {rest}"
    );
}
