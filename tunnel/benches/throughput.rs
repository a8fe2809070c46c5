//! Throughput and setup latency of one application's tunnel on loopback,
//! against the raw WireGuard crypto rate as the ceiling.
//!
//! ```text
//! cargo bench -p tunnel --bench throughput
//! ```
//!
//! - `wireguard_ceiling`: boringtun `encapsulate` on one `Tunn` plus
//!   `decapsulate` on its peer, after a handshake, one inner packet of the
//!   tunnel's MTU at a time, on one core. No sockets, no TCP/IP stack.
//! - `tcp_throughput`: one TCP stream app -> local forward (client) ->
//!   WireGuard over loopback UDP -> gateway -> real TCP socket -> target, for
//!   64 KiB .. 64 MiB per message. One message = length header + payload,
//!   timed until the target has read all of it and acknowledged (1 byte back).
//! - `setup`: from a `TunnelConfig` (gateway running, peer granted) to the
//!   target reading the first byte an application wrote into the forward:
//!   UDP socket + listener bind, WireGuard handshake, in-tunnel TCP handshake
//!   and the gateway's connect to the target. One setup at a time, well
//!   inside the gateway's handshake admission (`core/admission.rs`).
//!
//! After the run a summary table (Gbit/s, ratio to the ceiling) is printed
//! from criterion's own estimates (median of the samples).

// Setup failures panic by design; the summary table goes to stdout.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use boringtun::noise::{Tunn, TunnResult};
use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use tokio::runtime::Runtime;
use tunnel::{
    Gateway, GatewayConfig, GatewayHandle, PeerGrant, PrivateKey, StackOptions, Target, Tunnel,
    TunnelConfig, TunnelHandle,
};
use x25519_dalek::{PublicKey, StaticSecret};

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;
/// Transfer sizes of the throughput group, with criterion settings that keep
/// the whole run at a few minutes: (bytes, label, samples, measurement time).
const SIZES: [(usize, &str, usize, u64); 4] = [
    (64 * KIB, "64KiB", 30, 3),
    (MIB, "1MiB", 20, 4),
    (16 * MIB, "16MiB", 10, 6),
    (64 * MIB, "64MiB", 10, 10),
];
const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// Untimed pause between two setups (see `bench_setup`).
const SETUP_PAUSE: Duration = Duration::from_millis(12);

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn stack() -> StackOptions {
    StackOptions::default()
}

// ---------------------------------------------------------------------------
// Ceiling: boringtun alone.

/// A well-formed IPv4/TCP-sized inner packet of `len` bytes (boringtun checks
/// the version and total length of what it decrypts).
fn inner_packet(len: usize) -> Vec<u8> {
    let mut p = vec![0xa5u8; len];
    p[0] = 0x45;
    p[1] = 0;
    p[2..4].copy_from_slice(&u16::try_from(len).unwrap().to_be_bytes());
    p[8] = 64;
    p[9] = 6;
    p[12..16].copy_from_slice(&[100, 64, 0, 2]);
    p[16..20].copy_from_slice(&[127, 0, 0, 1]);
    p
}

/// Two `Tunn`s with a completed handshake (a initiated, b responded).
fn tunn_pair() -> (Tunn, Tunn) {
    let a_sk = StaticSecret::random();
    let b_sk = StaticSecret::random();
    let a_pk = PublicKey::from(&a_sk);
    let b_pk = PublicKey::from(&b_sk);
    let mut a = Tunn::new(a_sk, b_pk, None, None, 1, None);
    let mut b = Tunn::new(b_sk, a_pk, None, None, 2, None);
    let mut buf_a = vec![0u8; 65536 + 32];
    let mut buf_b = vec![0u8; 65536 + 32];
    let init = match a.format_handshake_initiation(&mut buf_a, false) {
        TunnResult::WriteToNetwork(d) => d.to_vec(),
        _ => panic!("no handshake initiation"),
    };
    let resp = match b.decapsulate(None, &init, &mut buf_b) {
        TunnResult::WriteToNetwork(d) => d.to_vec(),
        _ => panic!("no handshake response"),
    };
    // The initiator confirms the session with a keepalive.
    if let TunnResult::WriteToNetwork(keepalive) = a.decapsulate(None, &resp, &mut buf_a) {
        let keepalive = keepalive.to_vec();
        assert!(matches!(
            b.decapsulate(None, &keepalive, &mut buf_b),
            TunnResult::Done
        ));
    }
    (a, b)
}

fn bench_ceiling(c: &mut Criterion, mtu: usize) {
    let mut group = c.benchmark_group("wireguard_ceiling");
    group
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Bytes(mtu as u64));
    let (mut a, mut b) = tunn_pair();
    let packet = inner_packet(mtu);
    let mut buf_a = vec![0u8; mtu + 32];
    let mut buf_b = vec![0u8; mtu + 32];
    group.bench_function(BenchmarkId::new("encap_decap", mtu), |bench| {
        bench.iter(|| {
            let datagram = match a.encapsulate(std::hint::black_box(&packet), &mut buf_a) {
                TunnResult::WriteToNetwork(d) => d,
                _ => panic!("encapsulate did not produce a datagram"),
            };
            match b.decapsulate(None, datagram, &mut buf_b) {
                TunnResult::WriteToTunnelV4(p, _) => std::hint::black_box(p.len()),
                _ => panic!("decapsulate did not produce the packet"),
            }
        });
    });
    group.finish();
}

// ---------------------------------------------------------------------------
// The real path: app -> client tunnel -> gateway -> target.

/// Target that reports when the first byte of each connection arrived.
fn first_byte_target() -> (SocketAddr, mpsc::Receiver<Instant>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { return };
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut b = [0u8; 1];
                if s.read_exact(&mut b).is_ok() {
                    let _ = tx.send(Instant::now());
                }
                // Hold the connection until the client side goes away.
                let _ = s.read(&mut b);
            });
        }
    });
    (addr, rx)
}

fn start_gateway(rt: &Runtime, stack: StackOptions) -> GatewayHandle {
    rt.block_on(Gateway::start(GatewayConfig {
        private_key: PrivateKey::generate(),
        listen: "127.0.0.1:0".parse().unwrap(),
        stack,
    }))
    .unwrap()
}

/// A client config for `target` and the matching gateway grant.
fn config(gw: &GatewayHandle, target: Target, stack: StackOptions) -> (TunnelConfig, PeerGrant) {
    let addr: IpAddr = "100.64.0.2".parse().unwrap();
    let expires_at = SystemTime::now() + Duration::from_secs(3600);
    let mut cfg = TunnelConfig::new(
        gw.local_addr(),
        gw.public_key(),
        addr,
        vec![target],
        expires_at,
    );
    cfg.socks_port = None;
    cfg.stack = stack;
    let grant = PeerGrant {
        public_key: cfg.private_key.public_key(),
        client_address: addr,
        targets: vec![target],
        expires_at,
    };
    (cfg, grant)
}

struct Path {
    stream: TcpStream,
    _tunnel: TunnelHandle,
    _gateway: GatewayHandle,
    // Dropped last: the handles above need it to shut down.
    _rt: Runtime,
}

fn open_path(stack: StackOptions) -> Path {
    let rt = runtime();
    let gw = start_gateway(&rt, stack.clone());
    let target = Target::tcp(common::sink_target());
    let (cfg, grant) = config(&gw, target, stack);
    rt.block_on(gw.add_peer(grant)).unwrap();
    let tunnel = rt.block_on(Tunnel::start(cfg)).unwrap();
    let stream = TcpStream::connect(tunnel.forward_addr(&target).unwrap()).unwrap();
    stream.set_nodelay(true).unwrap();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut path = Path {
        stream,
        _tunnel: tunnel,
        _gateway: gw,
        _rt: rt,
    };
    // One small message proves the path end to end before timing starts.
    transfer(&mut path.stream, &vec![0u8; 64 * KIB], 1);
    path
}

/// Send one message of `len` bytes and wait for the target's acknowledgement.
fn transfer(stream: &mut TcpStream, chunk: &[u8], len: usize) {
    stream.write_all(&(len as u64).to_le_bytes()).unwrap();
    let mut left = len;
    while left > 0 {
        let n = left.min(chunk.len());
        stream.write_all(&chunk[..n]).unwrap();
        left -= n;
    }
    let mut ack = [0u8; 1];
    stream.read_exact(&mut ack).unwrap();
}

fn bench_tcp(c: &mut Criterion, name: &str, stack: StackOptions) {
    let mut path = open_path(stack);
    let chunk = vec![0x5au8; MIB];
    let mut group = c.benchmark_group("tcp_throughput");
    for (bytes, label, samples, secs) in SIZES {
        group
            .throughput(Throughput::Bytes(bytes as u64))
            .sample_size(samples)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(secs))
            .sampling_mode(if bytes >= 16 * MIB {
                SamplingMode::Flat
            } else {
                SamplingMode::Auto
            });
        group.bench_function(BenchmarkId::new(name, label), |b| {
            b.iter(|| transfer(&mut path.stream, &chunk, bytes));
        });
    }
    group.finish();
}

fn bench_setup(c: &mut Criterion) {
    let rt = runtime();
    let gw = start_gateway(&rt, stack());
    let (addr, arrivals) = first_byte_target();
    let target = Target::tcp(addr);
    let mut group = c.benchmark_group("setup");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sampling_mode(SamplingMode::Flat);
    group.bench_function("config_to_first_byte", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let (cfg, grant) = config(&gw, target, stack());
                let key = grant.public_key;
                rt.block_on(gw.add_peer(grant)).unwrap();
                let start = Instant::now();
                let tunnel = rt.block_on(Tunnel::start(cfg)).unwrap();
                let mut s = TcpStream::connect(tunnel.forward_addr(&target).unwrap()).unwrap();
                s.write_all(b"x").unwrap();
                let arrived = arrivals.recv_timeout(IO_TIMEOUT).unwrap();
                total += arrived.saturating_duration_since(start);
                rt.block_on(tunnel.shutdown());
                rt.block_on(gw.remove_peer(key)).unwrap();
                // Stay below the gateway's handshake rate limit (100
                // initiations/s, then WireGuard cookies and a 5 s retry):
                // this measures one tunnel's setup, not the gateway's
                // handshake capacity.
                std::thread::sleep(SETUP_PAUSE);
            }
            total
        });
    });
    group.finish();
}

// ---------------------------------------------------------------------------
// Summary from criterion's estimates.

fn criterion_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(home);
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(target).join("criterion");
    }
    // target/<profile>/deps/<this binary>
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.parent()?.join("criterion")))
        .unwrap_or_else(|| PathBuf::from("target/criterion"))
}

/// Median time per iteration in ns, from `<id>/new/estimates.json`.
fn median_ns(dir: &std::path::Path, id: &str) -> Option<f64> {
    let text = std::fs::read_to_string(dir.join(id).join("new/estimates.json")).ok()?;
    let at = text.find("\"median\"")?;
    let rest = &text[at..];
    let at = rest.find("\"point_estimate\":")? + "\"point_estimate\":".len();
    let rest = &rest[at..];
    let end = rest.find([',', '}'])?;
    rest[..end].trim().parse().ok()
}

fn gbits(bytes: usize, ns: f64) -> f64 {
    bytes as f64 * 8.0 / ns
}

fn summary(dir: &std::path::Path, mtu: usize, variants: &[&str]) {
    let ceiling =
        median_ns(dir, &format!("wireguard_ceiling/encap_decap/{mtu}")).map(|ns| gbits(mtu, ns));
    println!();
    println!("summary (median of criterion samples; {})", dir.display());
    println!("| benchmark | size | time | Gbit/s | of ceiling |");
    println!("|---|---|---|---|---|");
    match ceiling {
        Some(g) => println!(
            "| WireGuard encap+decap (ceiling) | {mtu} B packets | {:.2} µs/packet | {g:.2} | 100% |",
            mtu as f64 * 8.0 / g / 1000.0
        ),
        None => println!("| WireGuard encap+decap (ceiling) | {mtu} B | not run | | |"),
    }
    for variant in variants {
        for (bytes, label, _, _) in SIZES {
            let Some(ns) = median_ns(dir, &format!("tcp_throughput/{variant}/{label}")) else {
                continue;
            };
            let g = gbits(bytes, ns);
            let ratio =
                ceiling.map_or_else(|| "-".to_owned(), |c| format!("{:.0}%", 100.0 * g / c));
            println!(
                "| TCP {variant} | {label} | {:.2} ms | {g:.2} | {ratio} |",
                ns / 1e6
            );
        }
    }
    if let Some(ns) = median_ns(dir, "setup/config_to_first_byte") {
        println!(
            "| setup: TunnelConfig -> first byte at target | 1 B | {:.2} ms | | |",
            ns / 1e6
        );
    }
}

fn main() {
    let dir = criterion_dir();
    let mut c = Criterion::default()
        .output_directory(&dir)
        .configure_from_args();
    let mtu = stack().mtu;
    bench_ceiling(&mut c, mtu);
    bench_tcp(&mut c, "upload", stack());
    bench_setup(&mut c);
    c.final_summary();
    summary(&dir, mtu, &["upload"]);
}
