//! Who may use a tunnel's local listeners, on a real loopback tunnel: a
//! connection from this process (the tunnel's own user) reaches the
//! target; one from another uid is reset before anything reaches it, on a
//! TCP forward and on the SOCKS5 listener, and its datagrams to a UDP
//! forward are dropped. `LocalAccess::Anyone` lets that
//! other uid through, which shows the refusal is the owner check's doing.
//!
//! The other-uid cases run a client as `nobody` (65534) and so need root;
//! without it they are a missing prerequisite (`support::prereq`: a skip on
//! a laptop, a failure in CI or as root).
#![cfg(target_os = "linux")]
// Setup helpers panic on failure by design; the prerequisite rule prints.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod common;

/// The workspace's prerequisite rule (`support::prereq`), shared with every
/// suite. Included by path rather than through the `support` crate, which
/// depends on the agent and the broker and so on this crate.
#[path = "../../tests/support/src/prereq.rs"]
mod prereq;
mod support {
    pub(crate) use super::prereq;
}

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use common::*;
use tokio::net::TcpListener;
use tunnel::{
    Gateway, GatewayConfig, GatewayHandle, LocalAccess, PeerGrant, PrivateKey, StackOptions,
    Target, Tunnel, TunnelConfig, TunnelHandle,
};

/// The uid the foreign client runs as.
const NOBODY: u32 = 65534;

/// An echo target that counts the connections it accepted.
async fn counting_echo() -> (SocketAddr, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            seen.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    (addr, count)
}

/// A gateway and one application's tunnel to `target`.
async fn tunnel_to(target: Target, access: LocalAccess) -> (GatewayHandle, TunnelHandle) {
    let gw = Gateway::start(GatewayConfig {
        private_key: PrivateKey::generate(),
        listen: "127.0.0.1:0".parse().unwrap(),
        stack: StackOptions::default(),
    })
    .await
    .unwrap();
    let expires_at = SystemTime::now() + Duration::from_secs(600);
    let client: IpAddr = "100.64.0.2".parse().unwrap();
    let mut cfg = TunnelConfig::new(
        gw.local_addr(),
        gw.public_key(),
        client,
        vec![target],
        expires_at,
    );
    cfg.local_access = access;
    gw.add_peer(PeerGrant {
        public_key: cfg.private_key.public_key(),
        client_address: client,
        targets: vec![target],
        expires_at,
    })
    .await
    .unwrap();
    let handle = Tunnel::start(cfg).await.unwrap();
    (gw, handle)
}

/// What a client running as `nobody` saw: it connects to `addr`, sends
/// `send`, and reports what came back within 5 s: `closed` (EOF or reset,
/// which can come as early as the connect), `data:<hex>`, or `timeout`.
async fn as_nobody(addr: SocketAddr, send: &[u8]) -> String {
    // One statement per line, no indentation: Rust's `\` line continuation
    // would strip it.
    let script = [
        "import socket,sys",
        "s=socket.socket()",
        "s.settimeout(5)",
        "try: s.connect(('127.0.0.1',int(sys.argv[1]))); s.sendall(bytes.fromhex(sys.argv[2])); d=s.recv(64); r='data:'+d.hex() if d else 'closed'",
        "except (ConnectionResetError,BrokenPipeError): r='closed'",
        "except socket.timeout: r='timeout'",
        "print(r)",
    ]
    .join("\n");
    python_as_nobody(script, addr, send).await
}

/// What a UDP client running as `nobody` got back from `addr` for
/// `send`: `data:<hex>`, or `timeout` after 5 tries of 400 ms (UDP may be
/// lost while the tunnel's handshake completes).
async fn udp_as_nobody(addr: SocketAddr, send: &[u8]) -> String {
    let script = [
        "import socket,sys",
        "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)",
        "s.settimeout(0.4)",
        "r='timeout'",
        "for _ in range(5):",
        " s.sendto(bytes.fromhex(sys.argv[2]),('127.0.0.1',int(sys.argv[1])))",
        " try: r='data:'+s.recv(64).hex(); break",
        " except socket.timeout: pass",
        "print(r)",
    ]
    .join("\n");
    python_as_nobody(script, addr, send).await
}

/// Runs the Python `script` as `nobody` with the port of `addr` and `send`
/// (hex) as its arguments; what it printed.
async fn python_as_nobody(script: String, addr: SocketAddr, send: &[u8]) -> String {
    let (port, payload) = (addr.port().to_string(), hex(send));
    let output = tokio::task::spawn_blocking(move || {
        use std::os::unix::process::CommandExt;
        std::process::Command::new(python())
            .args(["-c", &script, &port, &payload])
            .uid(NOBODY)
            .gid(NOBODY)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "client as nobody failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// A Python `nobody` can run: a per-user install under /root (pyenv) is
/// out of its reach, the system's is not.
fn python() -> &'static str {
    if std::path::Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Root is needed to run a client as another uid (and python3 for it).
fn can_run_as_nobody() -> bool {
    if !nix::unistd::geteuid().is_root() {
        support::prereq::missing("needs root to connect as another user (uid 65534)");
        return false;
    }
    if !support::prereq::have(python()) {
        support::prereq::missing("needs python3 for the client run as another user");
        return false;
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tunnel_users_own_connections_are_accepted() {
    let (echo, reached) = counting_echo().await;
    let target = Target::tcp(echo);
    let (_gw, app) = tunnel_to(target, LocalAccess::default()).await;

    let forward = app.forward_addr(&target).unwrap();
    assert_eq!(echo_via(forward, b"same user").await, b"same user");
    let (code, s) = socks_connect(app.socks_addr().unwrap(), echo).await;
    assert_eq!(code, 0x00, "SOCKS refused this process's own user");
    assert_eq!(echo_roundtrip(s, b"via socks").await, b"via socks");
    assert_eq!(reached.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_users_connections_are_refused_before_the_target() {
    if !can_run_as_nobody() {
        return;
    }
    let (echo, reached) = counting_echo().await;
    let target = Target::tcp(echo);
    let (_gw, app) = tunnel_to(target, LocalAccess::SameUser).await;

    let forward = app.forward_addr(&target).unwrap();
    assert_eq!(as_nobody(forward, b"let me in").await, "closed", "forward");
    // SOCKS5 greeting (version 5, one method: no authentication): a refused
    // client never gets the method choice.
    let socks = app.socks_addr().unwrap();
    assert_eq!(as_nobody(socks, &[5, 1, 0]).await, "closed", "SOCKS5");
    assert_eq!(
        reached.load(Ordering::SeqCst),
        0,
        "another user's connection reached the target"
    );

    // The tunnel itself is unharmed: its own user still gets through.
    assert_eq!(echo_via(forward, b"still mine").await, b"still mine");
    assert_eq!(reached.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anyone_lets_another_user_through() {
    if !can_run_as_nobody() {
        return;
    }
    let (echo, reached) = counting_echo().await;
    let target = Target::tcp(echo);
    let (_gw, app) = tunnel_to(target, LocalAccess::Anyone).await;

    let forward = app.forward_addr(&target).unwrap();
    assert_eq!(
        as_nobody(forward, b"hi").await,
        format!("data:{}", hex(b"hi"))
    );
    let socks = app.socks_addr().unwrap();
    assert_eq!(
        as_nobody(socks, &[5, 1, 0]).await,
        format!("data:{}", hex(&[5, 0]))
    );
    assert_eq!(reached.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_users_udp_datagrams_never_enter_the_tunnel() {
    if !can_run_as_nobody() {
        return;
    }
    let echo = udp_echo("127.0.0.1:0").await;
    let target = Target::udp(echo);
    let (_gw, app) = tunnel_to(target, LocalAccess::SameUser).await;
    let forward = app.forward_addr(&target).unwrap();
    // The tunnel's own user gets replies, before and after.
    assert_eq!(udp_roundtrip(forward, b"mine").await, b"mine");
    assert_eq!(udp_as_nobody(forward, b"let me in").await, "timeout");
    assert_eq!(udp_roundtrip(forward, b"still mine").await, b"still mine");

    // Anyone: the same client gets its reply, so the refusal above was the
    // owner check's.
    let (_gw, open) = tunnel_to(target, LocalAccess::Anyone).await;
    let forward = open.forward_addr(&target).unwrap();
    assert_eq!(
        udp_as_nobody(forward, b"hi").await,
        format!("data:{}", hex(b"hi"))
    );
}
