//! `sallyport demo --keep-running`, run as the built binary: once the demo
//! says it is up, its agent answers on the control socket
//! (`SALLYPORT_SOCKET` here, so the test never touches the user's real
//! agent), `sallyport status --json` in another process sees the demo
//! app's tunnel up, the page comes through that tunnel, and Ctrl-C
//! (SIGINT) stops the demo cleanly and removes the socket.

#![cfg(all(feature = "demo", unix))]
// Test scaffolding: failures must abort loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use agent::control::view::{StatusView, TunnelState};
use demo::app::HEADING;

/// Far above the ~15 s the demo takes to come up, below any CI job limit.
const UP_LIMIT: Duration = Duration::from_secs(180);
/// Shutting down closes a tunnel and stops the broker: seconds.
const STOP_LIMIT: Duration = Duration::from_secs(30);
/// The narration's line once the socket is served.
const SERVED: &str = "shows this agent";

/// Kills the demo if the test fails half-way, so no demo outlives it.
struct Demo(Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Behind a CI proxy, the agent's HTTP clients must still reach 127.0.0.1
/// directly (the demo itself points this out when it is missing).
fn no_proxy() -> String {
    match std::env::var("NO_PROXY") {
        Ok(v) if !v.is_empty() => format!("{v},127.0.0.1"),
        _ => "127.0.0.1".to_owned(),
    }
}

fn sallyport(socket: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sallyport"));
    command
        .env("SALLYPORT_SOCKET", socket)
        .env_remove("SALLYPORT_LOG")
        .env("NO_PROXY", no_proxy())
        .env("no_proxy", no_proxy())
        .stdin(Stdio::null());
    command
}

/// Lines of `stdout` until `needle` shows up (all of them, for messages);
/// panics when the demo exits or takes too long first.
fn wait_for(lines: &mpsc::Receiver<String>, needle: &str, seen: &mut String) {
    let deadline = Instant::now() + UP_LIMIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => {
                seen.push_str(&line);
                seen.push('\n');
                if line.contains(needle) {
                    return;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                panic!("no {needle:?} within {UP_LIMIT:?}; output so far:\n{seen}")
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                panic!("the demo ended before saying {needle:?}; output:\n{seen}")
            }
        }
    }
}

/// One GET of `http://local/` over a plain TCP connection.
fn get(local: &str) -> String {
    let mut stream = std::net::TcpStream::connect(local).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(
        stream,
        "GET / HTTP/1.1\r\nHost: {local}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    let _ = stream.read_to_string(&mut reply);
    reply
}

#[test]
fn keep_running_serves_the_demo_agent_on_the_control_socket() {
    let dir = tempfile::tempdir().unwrap();
    // Not created yet: the agent creates it private (0700); tempdir
    // itself follows the umask, which the agent refuses.
    let socket = dir.path().join("sallyport").join("agent.sock");

    let mut child = sallyport(&socket)
        .args(["demo", "--keep-running", "--no-keyring"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start sallyport demo --keep-running");
    let stdout = child.stdout.take().unwrap();
    let mut demo = Demo(child);
    let (tx, lines) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });

    let mut seen = String::new();
    wait_for(&lines, SERVED, &mut seen);
    assert!(
        seen.contains(&socket.display().to_string()),
        "the narration names the socket:\n{seen}"
    );
    assert!(socket.exists(), "{} is served", socket.display());

    // Another process attaches to the demo's agent, as a user would.
    let status = sallyport(&socket)
        .args(["status", "--json"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&status.stdout);
    assert_eq!(
        status.status.code(),
        Some(0),
        "compliant; stdout:\n{text}\nstderr:\n{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let view: StatusView = serde_json::from_str(&text).unwrap();
    let tunnel = view
        .tunnels
        .iter()
        .find(|t| t.app == demo::run::APP_ID)
        .unwrap_or_else(|| panic!("no {} tunnel in {text}", demo::run::APP_ID));
    assert_eq!(tunnel.state, TunnelState::Up, "{text}");
    let local = &tunnel.forwards.first().expect("a local forward").local;
    let page = get(local);
    assert!(page.contains(HEADING), "through {local}: {page}");

    // Ctrl-C: everything stops and the socket goes with it.
    let pid = demo.0.id().to_string();
    let killed = Command::new("kill").args(["-INT", &pid]).status().unwrap();
    assert!(killed.success(), "kill -INT {pid}");
    let deadline = Instant::now() + STOP_LIMIT;
    let exit = loop {
        if let Some(exit) = demo.0.try_wait().unwrap() {
            break exit;
        }
        assert!(
            Instant::now() < deadline,
            "still running {STOP_LIMIT:?} after SIGINT"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    reader.join().unwrap();
    seen.extend(lines.try_iter().map(|l| l + "\n"));
    assert!(exit.success(), "exit {exit:?}; output:\n{seen}");
    assert!(seen.contains("Shutting down"), "{seen}");
    assert!(
        !socket.exists(),
        "{} must be removed at shutdown",
        socket.display()
    );
    let after = sallyport(&socket).arg("status").output().unwrap();
    assert_eq!(after.status.code(), Some(2), "no agent any more");
}
