//! Interop with an independent WireGuard implementation: `wireguard-go` on a
//! TUN device in a network namespace, with the kernel's TCP/IP stack and
//! echo servers behind it. Our client runs in a second namespace, joined to
//! the first by a veth pair; every address used lives only inside these two
//! namespaces, which the test creates and always deletes.
//!
//! Needs root, `ip` (iproute2), `wireguard-go` and `wg` (wireguard-tools).
//! Without them the test prints why and passes as skipped, unless
//! `SALLYPORT_REQUIRE_NETNS_TEST=1` is set (CI sets it), in which case it fails.
//! Linux only: network namespaces are a Linux kernel feature.
#![cfg(target_os = "linux")]

mod common;

use std::fs::File;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime};

use common::*;
use nix::sched::CloneFlags;
use tunnel::{HandshakeState, PrivateKey, Target, Tunnel, TunnelConfig};

const VETH_CLIENT: &str = "10.213.0.1/30";
const VETH_GATEWAY_IP: &str = "10.213.0.2";
const VETH_GATEWAY: &str = "10.213.0.2/30";
const WG_GATEWAY: &str = "10.214.0.1/24";
const WG_GATEWAY_IP: &str = "10.214.0.1";
const WG_CLIENT_IP: &str = "10.214.0.2";
const WG_PORT: u16 = 51820;

fn run(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn missing_prerequisite() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("not running as root (network namespaces need CAP_NET_ADMIN)".into());
    }
    for cmd in ["ip", "wireguard-go", "wg"] {
        if !have(cmd) {
            return Some(format!(
                "`{cmd}` not found (apt-get install -y wireguard-go wireguard-tools iproute2)"
            ));
        }
    }
    None
}

/// Two namespaces and the wireguard-go process; removed on drop, also when
/// the test panics.
struct Lab {
    client_ns: String,
    gateway_ns: String,
    wireguard_go: Option<Child>,
    key_file: std::path::PathBuf,
    /// Unique per lab: wireguard-go's control socket is
    /// `/var/run/wireguard/<interface>.sock`, shared by every namespace, so
    /// two runs at once with one fixed name would talk to each other's
    /// daemon.
    wg_if: String,
    /// wireguard-go's stderr, quoted when it fails to start.
    wg_log: std::path::PathBuf,
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut child) = self.wireguard_go.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = run(&["ip", "netns", "del", &self.client_ns]);
        let _ = run(&["ip", "netns", "del", &self.gateway_ns]);
        let _ = std::fs::remove_file(&self.key_file);
        let _ = std::fs::remove_file(&self.wg_log);
    }
}

#[allow(clippy::expect_used)] // test setup: a failure here must abort the test
fn enter(ns: &str) {
    let f = File::open(format!("/var/run/netns/{ns}")).expect("namespace file");
    nix::sched::setns(f, CloneFlags::CLONE_NEWNET).expect("setns");
}

static SEQ: AtomicU32 = AtomicU32::new(0);
static SEQ_IF: AtomicU32 = AtomicU32::new(0);

fn build_lab(gateway_key: &PrivateKey, client_public: &str) -> Result<Lab, String> {
    let id = format!(
        "{}x{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    );
    let mut lab = Lab {
        client_ns: format!("spc-{id}"),
        gateway_ns: format!("spg-{id}"),
        wireguard_go: None,
        key_file: std::env::temp_dir().join(format!("sallyport-wg-{id}.key")),
        wg_if: format!(
            "wgsp{}",
            SEQ_IF.fetch_add(1, Ordering::Relaxed) + std::process::id() % 100_000 * 100
        ),
        wg_log: std::env::temp_dir().join(format!("sallyport-wg-{id}.log")),
    };
    let wg_if = lab.wg_if.clone();
    let (c, g) = (lab.client_ns.clone(), lab.gateway_ns.clone());
    run(&["ip", "netns", "add", &c])?;
    run(&["ip", "netns", "add", &g])?;
    // Interface names are per namespace, so fixed names cannot collide.
    run(&[
        "ip", "link", "add", "spveth", "netns", &c, "type", "veth", "peer", "name", "spveth",
        "netns", &g,
    ])?;
    run(&["ip", "-n", &c, "addr", "add", VETH_CLIENT, "dev", "spveth"])?;
    run(&["ip", "-n", &g, "addr", "add", VETH_GATEWAY, "dev", "spveth"])?;
    for ns in [&c, &g] {
        run(&["ip", "-n", ns, "link", "set", "lo", "up"])?;
        run(&["ip", "-n", ns, "link", "set", "spveth", "up"])?;
    }
    let log = File::create(&lab.wg_log).map_err(|e| e.to_string())?;
    let child = Command::new("ip")
        .args(["netns", "exec", &g, "wireguard-go", "-f", &wg_if])
        .env("LOG_LEVEL", "error")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("starting wireguard-go: {e}"))?;
    lab.wireguard_go = Some(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while run(&["ip", "-n", &g, "link", "show", &wg_if]).is_err() {
        if Instant::now() > deadline {
            let said = std::fs::read_to_string(&lab.wg_log).unwrap_or_default();
            return Err(format!(
                "wireguard-go did not create its TUN device {wg_if}; it said: {said:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&lab.key_file)
        .map_err(|e| e.to_string())?;
    f.write_all(gateway_key.to_base64().as_bytes())
        .map_err(|e| e.to_string())?;
    let key_path = lab.key_file.to_string_lossy().to_string();
    let port = WG_PORT.to_string();
    let allowed = format!("{WG_CLIENT_IP}/32");
    run(&[
        "ip",
        "netns",
        "exec",
        &g,
        "wg",
        "set",
        &wg_if,
        "private-key",
        &key_path,
        "listen-port",
        &port,
        "peer",
        client_public,
        "allowed-ips",
        &allowed,
    ])?;
    run(&["ip", "-n", &g, "addr", "add", WG_GATEWAY, "dev", &wg_if])?;
    run(&["ip", "-n", &g, "link", "set", &wg_if, "up"])?;
    Ok(lab)
}

#[test]
fn client_tunnel_interoperates_with_wireguard_go() {
    if let Some(reason) = missing_prerequisite() {
        if std::env::var_os("SALLYPORT_REQUIRE_NETNS_TEST").is_some() {
            panic!("netns interop test required but cannot run: {reason}");
        }
        println!("SKIPPED client_tunnel_interoperates_with_wireguard_go: {reason}");
        return;
    }
    let gateway_key = PrivateKey::generate();
    let tcp_target: Target = format!("{WG_GATEWAY_IP}:7000/tcp").parse().unwrap();
    let udp_target: Target = format!("{WG_GATEWAY_IP}:7001/udp").parse().unwrap();
    let mut config = TunnelConfig::new(
        format!("{VETH_GATEWAY_IP}:{WG_PORT}").parse().unwrap(),
        gateway_key.public_key(),
        WG_CLIENT_IP.parse().unwrap(),
        vec![tcp_target, udp_target],
        SystemTime::now() + Duration::from_secs(300),
    );
    config.handshake_timeout = Duration::from_secs(5);
    let lab = build_lab(&gateway_key, &config.private_key.public_key().to_string())
        .expect("building the namespaces");

    // Echo servers inside the gateway namespace, behind wireguard-go.
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let gw_ns = lab.gateway_ns.clone();
    let servers = std::thread::spawn(move || {
        enter(&gw_ns);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            tcp_echo(&format!("{WG_GATEWAY_IP}:7000")).await;
            udp_echo(&format!("{WG_GATEWAY_IP}:7001")).await;
            ready_tx.send(()).unwrap();
            let _ = stop_rx.await;
        });
    });
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("echo servers");

    // Our client, inside the client namespace.
    let client_ns = lab.client_ns.clone();
    let client = std::thread::spawn(move || {
        enter(&client_ns);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let t = Tunnel::start(config).await.unwrap();
            let payload: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
            let got = echo_via(t.forward_addr(&tcp_target).unwrap(), &payload).await;
            assert!(got == payload, "TCP echo through wireguard-go corrupted");
            let reply = udp_roundtrip(
                t.forward_addr(&udp_target).unwrap(),
                b"udp through wireguard-go",
            )
            .await;
            assert_eq!(reply, b"udp through wireguard-go");
            let (code, s) = socks_connect(t.socks_addr().unwrap(), tcp_target.addr).await;
            assert_eq!(code, 0);
            assert_eq!(echo_roundtrip(s, b"socks").await, b"socks");
            let (code, _) = socks_connect(
                t.socks_addr().unwrap(),
                format!("{WG_GATEWAY_IP}:22").parse().unwrap(),
            )
            .await;
            assert_eq!(code, 0x02, "SOCKS allowed a target outside the grant");
            let st = t.status();
            assert!(
                matches!(st.handshake, HandshakeState::Established { .. }),
                "{st:?}"
            );
            assert!(st.bytes_in >= payload.len() as u64, "{st:?}");
            t.shutdown().await;
        });
    });
    let result = client.join();
    let _ = stop_tx.send(());
    let _ = servers.join();

    // wireguard-go's own view: a handshake with our key happened.
    let shown = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.gateway_ns,
            "wg",
            "show",
            &lab.wg_if,
            "latest-handshakes",
        ])
        .output()
        .expect("wg show");
    let text = String::from_utf8_lossy(&shown.stdout).to_string();
    drop(lab);
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
    let stamp: u64 = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    assert!(stamp > 0, "wireguard-go reports no handshake: {text:?}");
}
