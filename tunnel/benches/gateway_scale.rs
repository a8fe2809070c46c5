//! How the gateway scales with its peers: one gateway, N client tunnels,
//! each with one TCP connection through its tunnel to an echo target.
//!
//! ```text
//! cargo bench -p tunnel --bench gateway_scale
//! SCALE_PEERS=10,100,1000,10000 cargo bench -p tunnel --bench gateway_scale
//! SCALE_SOCKETS_ONLY=1 cargo bench -p tunnel --bench gateway_scale   # first table only
//! SCALE_CAPACITY_ONLY=1 cargo bench -p tunnel --bench gateway_scale  # capacity, 1 and 2 workers
//! ```
//!
//! Printed, for each N (default 10, 100, 1,000 and 10,000; `SCALE_PEERS`
//! picks others, `0` none), with real sockets on loopback. The gateway, the
//! echo target and the client tunnels run in separate processes (this
//! binary again, `ROLE_ENV`; the clients at most `TUNNELS_PER_CLIENT` per
//! process), driven by this one over their stdin and stdout. Each tunnel
//! takes four file descriptors in its client process (UDP socket, forward
//! listener, the application's stream and its accepted end) and one each in
//! the gateway's and the target's, so 10,000 tunnels fit a limit of 20,000
//! per process (each raises its soft limit to the hard one):
//!
//! - setup: all N tunnels are started in a row, without waiting (a burst of
//!   N handshake initiations; each client process starts its share at the
//!   same moment). A tunnel's setup is the time from its start
//!   to its handshake completing (`HandshakeState::Established`); a
//!   handshake that waited for WireGuard's retry shows as about 5 s.
//! - echo round trip: each tunnel in turn writes 1,000 bytes into its local
//!   forward and reads the echo back (passes over all tunnels until at
//!   least 2,000 round trips, `SCALE_ROUNDS`; two passes at least; the mean
//!   per round trip). A pass goes through the client processes one after
//!   the other, each through its tunnels in turn, so one round trip is in
//!   flight at a time; the parent's messages between them are not timed.
//!   Then as many round trips on 10 of the N tunnels only.
//! - RSS per tunnel: the resident sets of the gateway, target and client
//!   processes after all N connections are open, minus each one's at its
//!   start, summed and divided by N.
//! - CPU with all N open and no traffic, over 2 s, per role (printed below
//!   the table): what timers and keepalives cost. The client processes'
//!   share is spent here on the same two cores as the round trips. And the
//!   CPU time per round trip during the passes over all N, of the gateway
//!   and of all processes (`/proc/<pid>/stat`, 10 ms resolution: use
//!   `SCALE_ROUNDS=10000` or more for small rows).
//!
//! Then, without sockets (the sans-IO cores, as `core/tests.rs` drives
//! them), in this process:
//!
//! - a UDP echo through the gateway core with 10 to 10,000 peers in session
//!   (`SCALE_CORE_PEERS`), the time per round trip in the gateway core's
//!   calls, over all peers in turn and over 10 of them;
//! - the gateway's cost of one handshake initiation (`handle_datagram`),
//!   from which the admission rate is derived (`core/admission.rs`);
//! - idle RSS per gateway peer: 10,000 peers added and handshaken, no
//!   connection (measured in a fresh child process of this binary).
//!
//! Aggregate throughput with 1 and 2 workers (`Gateway::start_with_workers`),
//! three ways:
//!
//! - 16 tunnels of this crate's client upload 16 MiB each at once (TCP);
//! - `capacity`: pre-encrypted UDP from 32 peers (`load`), the load on the
//!   same cores as the gateway (Linux);
//! - `backlog`: the gateway alone, in a process of its own, draining a
//!   backlog queued while it was stopped (Linux).
//!
//! And the flood case: a loopback socket sends bogus handshake initiations
//! (random keys, valid MAC1 for the gateway) at 30,000/s for 4 s while 100
//! established tunnels echo and 100 new tunnels start.
//!
//! The clients use `LocalAccess::Anyone`: the owner lookup reads
//! `/proc/net/tcp`, whose length grows with the tunnels on the machine,
//! and would measure the benchmark rather than the gateway.

// Setup failures panic by design; the table goes to stdout.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

#[cfg(target_os = "linux")]
#[path = "gateway_scale/backlog.rs"]
mod backlog;
#[cfg(target_os = "linux")]
#[path = "gateway_scale/capacity.rs"]
mod capacity;
mod common;
#[cfg(target_os = "linux")]
#[path = "gateway_scale/load.rs"]
mod load;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use boringtun::noise::{Tunn, TunnResult};
use tokio::runtime::Runtime;
use tunnel::core::{ClientCore, GatewayCore};
use tunnel::{
    Gateway, GatewayConfig, GatewayHandle, HandshakeState, LocalAccess, PeerGrant, PrivateKey,
    StackOptions, Target, Tunnel, TunnelConfig, TunnelHandle,
};
use x25519_dalek::{PublicKey, StaticSecret};

const ECHO_BYTES: usize = 1000;
const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// Bogus handshake initiations per second in the flood case.
const FLOOD_RATE: usize = 30_000;
/// How long all handshakes of one burst may take before the run gives up.
const SETUP_LIMIT: Duration = Duration::from_secs(60);

fn runtime(workers: usize) -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .unwrap()
}

/// Resident set of this process, in bytes (Linux: /proc/self/statm).
fn rss() -> u64 {
    let text = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// The client address of tunnel `i` (100.64.0.0/10 has room for 4M).
fn client_address(i: usize) -> IpAddr {
    let n = u32::try_from(i).unwrap() + 2;
    IpAddr::V4(Ipv4Addr::from(0x6440_0000 | n))
}

/// An echo target on its own runtime thread (so it does not share the
/// gateway's workers).
fn echo_target() -> SocketAddr {
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = std_listener.local_addr().unwrap();
    std_listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let _ = s.set_nodelay(true);
                    let mut buf = vec![0u8; 4096];
                    loop {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                if s.write_all(&buf[..n]).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
    });
    addr
}

/// A gateway on loopback with `workers` workers, on `rt`.
fn start_gateway(rt: &Runtime, workers: usize) -> GatewayHandle {
    rt.block_on(Gateway::start_with_workers(
        GatewayConfig {
            private_key: PrivateKey::generate(),
            listen: "127.0.0.1:0".parse().unwrap(),
            stack: StackOptions::default(),
        },
        workers,
    ))
    .unwrap()
}

fn config(
    gw_addr: SocketAddr,
    gw_key: tunnel::PublicKey,
    i: usize,
    target: Target,
) -> (TunnelConfig, PeerGrant) {
    let addr = client_address(i);
    let expires_at = SystemTime::now() + Duration::from_secs(3600);
    let mut cfg = TunnelConfig::new(gw_addr, gw_key, addr, vec![target], expires_at);
    cfg.socks_port = None;
    cfg.local_access = LocalAccess::Anyone;
    let grant = PeerGrant {
        public_key: cfg.private_key.public_key(),
        client_address: addr,
        targets: vec![target],
        expires_at,
    };
    (cfg, grant)
}

struct Client {
    handle: TunnelHandle,
    started: Instant,
    stream: Option<TcpStream>,
}

/// Grant `n` tunnels at `gw`, start them in a row (their handshakes
/// overlap) and wait until all are established. Returns the tunnels and
/// their setup times.
fn burst(
    rt: &Runtime,
    gw: &GatewayHandle,
    target: Target,
    first: usize,
    n: usize,
) -> (Vec<Client>, Vec<Duration>) {
    let mut configs = Vec::with_capacity(n);
    for i in first..first + n {
        let (cfg, grant) = config(gw.local_addr(), gw.public_key(), i, target);
        rt.block_on(gw.add_peer(grant)).unwrap();
        configs.push(cfg);
    }
    start_all(rt, configs)
}

/// Start the (already granted) tunnels in a row, without waiting, and wait
/// until all are established. Returns the tunnels and their setup times.
fn start_all(rt: &Runtime, configs: Vec<TunnelConfig>) -> (Vec<Client>, Vec<Duration>) {
    let n = configs.len();
    let mut clients: Vec<Client> = configs
        .into_iter()
        .map(|cfg| {
            let started = Instant::now();
            let handle = rt.block_on(Tunnel::start(cfg)).unwrap();
            Client {
                handle,
                started,
                stream: None,
            }
        })
        .collect();
    let mut setup: Vec<Option<Duration>> = vec![None; n];
    let deadline = Instant::now() + SETUP_LIMIT;
    while setup.iter().any(Option::is_none) {
        assert!(
            Instant::now() < deadline,
            "handshakes not done within {SETUP_LIMIT:?}"
        );
        for (c, s) in clients.iter_mut().zip(setup.iter_mut()) {
            if s.is_none()
                && let HandshakeState::Established { at } = c.handle.status().handshake
            {
                *s = Some(at.saturating_duration_since(c.started));
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    (clients, setup.into_iter().flatten().collect())
}

/// Open each client's connection and do one untimed round trip.
fn connect_all(clients: &mut [Client], target: Target) {
    for c in clients.iter_mut() {
        let s = TcpStream::connect(c.handle.forward_addr(&target).unwrap()).unwrap();
        s.set_nodelay(true).unwrap();
        s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        c.stream = Some(s);
        echo_once(c.stream.as_mut().unwrap());
    }
}

fn echo_once(s: &mut TcpStream) {
    let out = [0x5au8; ECHO_BYTES];
    let mut back = [0u8; ECHO_BYTES];
    s.write_all(&out).unwrap();
    s.read_exact(&mut back).unwrap();
}

/// Mean echo round trip over `passes` passes through all clients in turn.
fn echo_rtt(clients: &mut [Client], passes: usize) -> Duration {
    echo_total(clients, passes) / u32::try_from(passes * clients.len()).unwrap()
}

/// Time of `passes` passes of one echo through all clients in turn.
fn echo_total(clients: &mut [Client], passes: usize) -> Duration {
    let start = Instant::now();
    for _ in 0..passes {
        for c in clients.iter_mut() {
            echo_once(c.stream.as_mut().unwrap());
        }
    }
    start.elapsed()
}

fn mean(d: &[Duration]) -> Duration {
    d.iter().sum::<Duration>() / u32::try_from(d.len().max(1)).unwrap()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

struct Row {
    peers: usize,
    setup_mean: Duration,
    setup_max: Duration,
    rtt: Duration,
    rtt_hot: Duration,
    rss_per_tunnel: u64,
    /// CPU use with all N open and no traffic (percent of one core):
    /// gateway, client processes together, target.
    idle_cpu: (f64, f64, f64),
    /// CPU time per round trip during the passes over all N: the gateway
    /// process, and all processes of the table together.
    busy_cpu: (Duration, Duration),
}

// ---------------------------------------------------------------------------
// The socket-level table, over processes: the gateway in one, the echo
// target in another, the client tunnels in as many as `TUNNELS_PER_CLIENT`
// needs. Each child is this binary again (`ROLE_ENV` says which part it
// plays), driven by the parent over its stdin and stdout, one line per
// command and per answer.

/// Client tunnels per client process. Each takes four descriptors there
/// (its UDP socket and forward listener, the application's stream and its
/// accepted end), so 2,500 stay well below a hard limit of 20,000; the
/// gateway and the target take one per tunnel each.
const TUNNELS_PER_CLIENT: usize = 2500;

/// Set in a child of the socket-level table: `gateway`, `target` or
/// `clients`.
const ROLE_ENV: &str = "GATEWAY_SCALE_ROLE";
/// The clients' settings: the gateway's address, its key, the target and
/// the range of tunnel indices (`first count`), space-separated.
const CLIENTS_ENV: &str = "GATEWAY_SCALE_CLIENTS";
/// The gateway process's workers.
const WORKERS_ENV: &str = "GATEWAY_SCALE_WORKERS";

/// Raise the soft limit of open files to the hard limit (each process of
/// the table holds thousands of sockets). Unix only; elsewhere the limit
/// stays as it is.
fn raise_fd_limit() {
    #[cfg(unix)]
    {
        use nix::sys::resource::{Resource, getrlimit, setrlimit};
        if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
            && soft < hard
        {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
    }
}

/// A child of the table and its pipes.
struct Part {
    name: String,
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    stdout: std::io::BufReader<std::process::ChildStdout>,
}

impl Part {
    /// This binary as `role`, with one more variable `env` if given.
    fn spawn(role: &str, env: Option<(&str, String)>) -> Self {
        use std::process::{Command, Stdio};
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.env(ROLE_ENV, role)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let name = match env {
            Some((key, value)) => {
                cmd.env(key, &value);
                format!("{role} {value}")
            }
            None => role.to_string(),
        };
        let mut child = cmd.spawn().unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        Self {
            name,
            child,
            stdin,
            stdout,
        }
    }

    fn send(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").unwrap();
    }

    /// The next line of the child, as words.
    fn line(&mut self) -> Vec<String> {
        use std::io::BufRead;
        let mut line = String::new();
        let n = self.stdout.read_line(&mut line).unwrap();
        assert!(n > 0, "{} ended early", self.name);
        line.split_whitespace().map(str::to_string).collect()
    }

    fn ask(&mut self, line: &str) -> Vec<String> {
        self.send(line);
        self.stdin.flush().unwrap();
        self.line()
    }

    /// Close its stdin (it shuts down) and wait for it.
    fn finish(self) {
        let Self {
            name,
            mut child,
            stdin,
            stdout,
        } = self;
        drop(stdin);
        drop(stdout);
        let status = child.wait().unwrap();
        assert!(status.success(), "{name}: {status}");
    }
}

/// A child's commands, one per line of its stdin, until it closes; `run`
/// answers each (an empty answer sends nothing).
fn serve(mut run: impl FnMut(&[&str]) -> String) {
    for line in std::io::stdin().lines() {
        let line = line.unwrap();
        let words: Vec<&str> = line.split_whitespace().collect();
        let answer = run(&words);
        if !answer.is_empty() {
            println!("{answer}");
        }
    }
}

/// The echo target's process. Prints `ready <addr> <rss at start>`;
/// answers `rss`.
fn target_role() {
    raise_fd_limit();
    let before = rss();
    let addr = echo_target();
    println!("ready {addr} {before}");
    serve(|_| rss().to_string());
}

/// The gateway's process, with `WORKERS_ENV` workers (default one).
/// Prints `ready <addr> <key> <rss at start>`; `add <key> <client address>
/// <target>` grants a peer (no answer), `sync` answers `ok`, `rss` the
/// resident set, `status` the datagrams handed between workers and
/// dropped.
fn gateway_role() {
    raise_fd_limit();
    let before = rss();
    let rt = runtime(2);
    let workers = std::env::var(WORKERS_ENV)
        .ok()
        .and_then(|w| w.parse().ok())
        .unwrap_or(1);
    let gw = start_gateway(&rt, workers);
    println!("ready {} {} {before}", gw.local_addr(), gw.public_key());
    serve(|w| match w {
        ["add", key, addr, target] => {
            let target: Target = target.parse().unwrap();
            let grant = PeerGrant {
                public_key: key.parse().unwrap(),
                client_address: addr.parse().unwrap(),
                targets: vec![target],
                expires_at: SystemTime::now() + Duration::from_secs(3600),
            };
            rt.block_on(gw.add_peer(grant)).unwrap();
            String::new()
        }
        ["sync"] => "ok".into(),
        ["rss"] => rss().to_string(),
        ["status"] => {
            let s = gw.status();
            format!("{} {}", s.handed_over, s.dropped.total())
        }
        other => panic!("gateway: unknown command {other:?}"),
    });
    rt.block_on(gw.shutdown());
}

/// A process of client tunnels (`CLIENTS_ENV` says which). Prints
/// `ready <rss at start>`, then `grant <key> <client address>` for each
/// tunnel and `done`. Commands: `go` starts all tunnels in a row and
/// answers `<sum of setup times> <slowest>` (ns) once all are established;
/// `connect` opens each tunnel's connection (one untimed echo) and answers
/// `ok`; `pass` does one echo on each tunnel in turn and answers the time
/// it took (ns); `hot <n> <passes>` does `passes` passes over the first
/// `n`; `rss`.
fn clients_role() {
    raise_fd_limit();
    let before = rss();
    let rt = runtime(2);
    let settings = std::env::var(CLIENTS_ENV).unwrap();
    let w: Vec<&str> = settings.split_whitespace().collect();
    let [gw_addr, gw_key, target, first, count] = w[..] else {
        panic!("{CLIENTS_ENV}: {settings:?}");
    };
    let (gw_addr, gw_key) = (gw_addr.parse().unwrap(), gw_key.parse().unwrap());
    let target: Target = target.parse().unwrap();
    let first: usize = first.parse().unwrap();
    let count: usize = count.parse().unwrap();
    println!("ready {before}");
    let mut configs = Vec::with_capacity(count);
    for i in first..first + count {
        let (cfg, grant) = config(gw_addr, gw_key, i, target);
        println!("grant {} {}", grant.public_key, grant.client_address);
        configs.push(cfg);
    }
    println!("done");
    let mut configs = Some(configs);
    let mut clients = Vec::new();
    serve(|w| match w {
        ["go"] => {
            let (started, setup) = start_all(&rt, configs.take().unwrap());
            clients = started;
            let sum: Duration = setup.iter().sum();
            let max = setup.iter().max().copied().unwrap_or_default();
            format!("{} {}", sum.as_nanos(), max.as_nanos())
        }
        ["connect"] => {
            connect_all(&mut clients, target);
            "ok".into()
        }
        ["pass"] => echo_total(&mut clients, 1).as_nanos().to_string(),
        ["hot", n, passes] => {
            let n: usize = n.parse().unwrap();
            let passes: usize = passes.parse().unwrap();
            echo_total(&mut clients[..n], passes).as_nanos().to_string()
        }
        ["rss"] => rss().to_string(),
        other => panic!("clients: unknown command {other:?}"),
    });
    for c in clients {
        drop(c.stream);
        rt.block_on(c.handle.shutdown());
    }
}

fn nanos(word: &str) -> Duration {
    Duration::from_nanos(word.parse().unwrap())
}

fn scale_row(n: usize) -> Row {
    let mut target_part = Part::spawn("target", None);
    let w = target_part.line();
    let target = Target::tcp(w[1].parse().unwrap());
    let mut before: u64 = w[2].parse().unwrap();
    let mut gw = Part::spawn("gateway", None);
    let w = gw.line();
    let (gw_addr, gw_key) = (w[1].clone(), w[2].clone());
    before += w[3].parse::<u64>().unwrap();
    let mut parts: Vec<Part> = (0..n)
        .step_by(TUNNELS_PER_CLIENT)
        .map(|first| {
            let count = TUNNELS_PER_CLIENT.min(n - first);
            let settings = format!("{gw_addr} {gw_key} {target} {first} {count}");
            Part::spawn("clients", Some((CLIENTS_ENV, settings)))
        })
        .collect();
    for p in &mut parts {
        before += p.line()[1].parse::<u64>().unwrap();
        loop {
            let w = p.line();
            match &w[..] {
                [done] if done == "done" => break,
                [grant, key, addr] if grant == "grant" => {
                    gw.send(&format!("add {key} {addr} {target}"));
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    assert_eq!(gw.ask("sync"), ["ok"]);
    // The burst: every client process starts its tunnels at once.
    for p in &mut parts {
        p.send("go");
        p.stdin.flush().unwrap();
    }
    let (mut setup_sum, mut setup_max) = (Duration::ZERO, Duration::ZERO);
    for p in &mut parts {
        let w = p.line();
        setup_sum += nanos(&w[0]);
        setup_max = setup_max.max(nanos(&w[1]));
    }
    for p in &mut parts {
        p.send("connect");
        p.stdin.flush().unwrap();
    }
    for p in &mut parts {
        assert_eq!(p.line(), ["ok"]);
    }
    let mut after: u64 = 0;
    for p in parts.iter_mut().chain([&mut gw, &mut target_part]) {
        after += p.ask("rss")[0].parse::<u64>().unwrap();
    }
    let rss_per_tunnel = after.saturating_sub(before) / n as u64;
    // What the processes spend with no traffic (timers, keepalives): the
    // client processes' share is what N clients on N machines would spend
    // each on its own, and here it competes with the round trips for the
    // cores.
    let quiet = Duration::from_secs(2);
    let cpu = |p: &Part| cpu_ticks(p.child.id());
    let (g0, t0) = (cpu(&gw), cpu(&target_part));
    let c0: u64 = parts.iter().map(cpu).sum();
    std::thread::sleep(quiet);
    let percent = |ticks: u64| ticks as f64 / TICKS_PER_SEC / quiet.as_secs_f64() * 100.0;
    let idle_cpu = (
        percent(cpu(&gw) - g0),
        percent(parts.iter().map(cpu).sum::<u64>() - c0),
        percent(cpu(&target_part) - t0),
    );
    // At least 2,000 round trips per row (two passes at 1,000 tunnels and
    // more), so small rows are not one scheduler hiccup.
    let rounds = std::env::var("SCALE_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    // A pass visits all N tunnels in turn: each client process its own, one
    // process after the other (the parent's messages between them are not
    // timed).
    let passes = (rounds / n).max(2);
    let all_cpu = |parts: &[Part], gw: &Part, target: &Part| {
        parts.iter().map(cpu).sum::<u64>() + cpu(gw) + cpu(target)
    };
    let (g0, a0) = (cpu(&gw), all_cpu(&parts, &gw, &target_part));
    let mut total = Duration::ZERO;
    for _ in 0..passes {
        for p in &mut parts {
            total += nanos(&p.ask("pass")[0]);
        }
    }
    let count = u32::try_from(passes * n).unwrap();
    let rtt = total / count;
    let per_rtt = |ticks: u64| Duration::from_secs_f64(ticks as f64 / TICKS_PER_SEC) / count;
    let busy_cpu = (
        per_rtt(cpu(&gw) - g0),
        per_rtt(all_cpu(&parts, &gw, &target_part) - a0),
    );
    // The same number of round trips on the first 10 tunnels only, with all
    // N open: what a packet costs when the N tunnels' memory is not all
    // visited in turn (the round-robin above is the cache's worst case).
    let hot = n.min(10);
    let hot_passes = (rounds / hot).max(2);
    let rtt_hot = nanos(&parts[0].ask(&format!("hot {hot} {hot_passes}"))[0])
        / u32::try_from(hot_passes * hot).unwrap();
    for p in parts {
        p.finish();
    }
    gw.finish();
    target_part.finish();
    Row {
        peers: n,
        setup_mean: setup_sum / u32::try_from(n).unwrap(),
        setup_max,
        rtt,
        rtt_hot,
        rss_per_tunnel,
        idle_cpu,
        busy_cpu,
    }
}

/// Clock ticks per second of `/proc/<pid>/stat` (`USER_HZ`, 100 on Linux).
const TICKS_PER_SEC: f64 = 100.0;

/// CPU time of a process so far, user and system, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name (which may hold spaces).
    let rest = text.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|w| w.parse().ok())
        .collect();
    f.iter().sum()
}

// ---------------------------------------------------------------------------
// Sans-IO: handshake cost and idle peers.

/// One client core per grant for `gw` (its handshake initiation queued at
/// creation), and the grants, not yet added to the gateway.
struct CoreClient {
    from: SocketAddr,
    core: ClientCore,
    init: Vec<u8>,
}

fn core_clients(gw: &GatewayCore, now: Instant, n: usize) -> (Vec<CoreClient>, Vec<PeerGrant>) {
    let gw_addr: SocketAddr = "192.0.2.1:51820".parse().unwrap();
    let target: Target = "10.1.0.1:443/tcp".parse().unwrap();
    (0..n)
        .map(|i| {
            let (cfg, grant) = config(gw_addr, gw.public_key(), i, target);
            let mut core = ClientCore::new(&cfg, now, now + Duration::from_secs(3600)).unwrap();
            let init = core.poll_transmit().unwrap();
            let port = 1024 + u16::try_from(i % 60_000).unwrap();
            let host = u8::try_from(i / 60_000 + 1).unwrap();
            let from = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, host)), port);
            (CoreClient { from, core, init }, grant)
        })
        .unzip()
}

fn grant_all(gw: &mut GatewayCore, now: Instant, grants: Vec<PeerGrant>) {
    for grant in grants {
        gw.add_peer(
            now,
            SystemTime::now(),
            grant,
            now + Duration::from_secs(3600),
        )
        .unwrap();
    }
}

/// Feed every initiation to the gateway and the answers back to the
/// clients; returns (mean time per initiation at the gateway, how many got
/// a handshake response rather than a cookie).
fn handshake_all(
    gw: &mut GatewayCore,
    now: Instant,
    clients: &mut [CoreClient],
) -> (Duration, usize) {
    let start = Instant::now();
    for c in clients.iter() {
        gw.handle_datagram(now, c.from, &c.init);
    }
    let spent = start.elapsed();
    gw.poll(now);
    let index: HashMap<SocketAddr, usize> = clients
        .iter()
        .enumerate()
        .map(|(i, c)| (c.from, i))
        .collect();
    let gw_addr: SocketAddr = "192.0.2.1:51820".parse().unwrap();
    let mut responses = 0;
    while let Some((to, d)) = gw.poll_transmit() {
        // Message type 2 is a handshake response, 3 a cookie reply.
        if d.first() == Some(&2) {
            responses += 1;
            if let Some(&i) = index.get(&to) {
                clients[i].core.handle_datagram(now, gw_addr, &d);
            }
        }
        gw.recycle(d);
    }
    (spent / u32::try_from(clients.len()).unwrap(), responses)
}

/// (cost of one initiation at the gateway, how many of `n` simultaneous
/// initiations were answered, idle RSS per gateway peer in bytes).
fn core_figures(n: usize) -> (Duration, usize, u64) {
    let now = Instant::now();
    // Cost: a batch small enough for any admission limit.
    let mut gw = GatewayCore::new(PrivateKey::generate(), StackOptions::default(), now).unwrap();
    let (mut small, grants) = core_clients(&gw, now, 50);
    grant_all(&mut gw, now, grants);
    let (cost, _) = handshake_all(&mut gw, now, &mut small);
    drop(small);
    drop(gw);
    // Idle peers: the clients exist before the measurement starts.
    let mut gw = GatewayCore::new(PrivateKey::generate(), StackOptions::default(), now).unwrap();
    let (mut clients, grants) = core_clients(&gw, now, n);
    let before = rss();
    grant_all(&mut gw, now, grants);
    let (_, answered) = handshake_all(&mut gw, now, &mut clients);
    let per_peer = rss().saturating_sub(before) / n as u64;
    (cost, answered, per_peer)
}

// ---------------------------------------------------------------------------
// Sans-IO echo: the gateway core with N peers, no sockets (so N is not
// bounded by file descriptors: each real tunnel above takes six).

const CORE_GW: &str = "192.0.2.1:51820";

/// Deliver everything in flight between the clients and the gateway until
/// quiet (handshakes, cookie retries).
fn settle(gw: &mut GatewayCore, clients: &mut [CoreClient], index: &HashMap<SocketAddr, usize>) {
    let gw_addr: SocketAddr = CORE_GW.parse().unwrap();
    for _ in 0..100 {
        let mut moved = false;
        let now = Instant::now();
        for c in clients.iter_mut() {
            c.core.poll(now);
            while let Some(d) = c.core.poll_transmit() {
                moved = true;
                gw.handle_datagram(now, c.from, &d);
                c.core.recycle(d);
            }
        }
        gw.poll(now);
        while let Some((to, d)) = gw.poll_transmit() {
            moved = true;
            if let Some(&i) = index.get(&to) {
                clients[i].core.handle_datagram(now, gw_addr, &d);
            }
            gw.recycle(d);
        }
        if !moved {
            return;
        }
    }
}

struct CoreEcho {
    peers: usize,
    /// Whole round trip (client core, gateway core, echo), per round trip.
    rtt: Duration,
    /// The gateway core's calls alone, per round trip.
    gateway: Duration,
    /// The same, with the round trips on 10 of the N peers only (their
    /// memory stays in the CPU caches).
    gateway_hot: Duration,
}

/// N peers in session, each with a UDP flow to an echo target; then
/// `rounds` round trips of 1,000 bytes, the tunnels in turn. `now` is the
/// real clock, so the peers' timers fire as they would.
fn core_echo(n: usize, rounds: usize) -> CoreEcho {
    let now = Instant::now();
    let mut gw = GatewayCore::new(PrivateKey::generate(), StackOptions::default(), now).unwrap();
    let target: Target = "10.1.0.1:7/udp".parse().unwrap();
    let gw_addr: SocketAddr = CORE_GW.parse().unwrap();
    let (mut clients, grants): (Vec<CoreClient>, Vec<PeerGrant>) = (0..n)
        .map(|i| {
            let (cfg, grant) = config(gw_addr, gw.public_key(), i, target);
            let core = ClientCore::new(&cfg, now, now + Duration::from_secs(3600)).unwrap();
            let port = 1024 + u16::try_from(i % 60_000).unwrap();
            let host = u8::try_from(i / 60_000 + 1).unwrap();
            let from = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, host)), port);
            (
                CoreClient {
                    from,
                    core,
                    init: Vec::new(),
                },
                grant,
            )
        })
        .unzip();
    let peers: Vec<_> = grants.iter().map(|g| g.public_key).collect();
    grant_all(&mut gw, now, grants);
    let index: HashMap<SocketAddr, usize> = clients
        .iter()
        .enumerate()
        .map(|(i, c)| (c.from, i))
        .collect();
    settle(&mut gw, &mut clients, &index);
    let peers: Vec<_> = peers.iter().map(|k| gw.peer_id(k).unwrap()).collect();
    let conns: Vec<_> = clients
        .iter_mut()
        .map(|c| c.core.udp_open(target).unwrap())
        .collect();
    let payload = [0x5au8; ECHO_BYTES];
    let mut buf = vec![0u8; 2048];
    let mut gateway: Duration;
    let mut result = Vec::new();
    // An untimed pass over all (first packets, first allocations), then
    // `rounds` over all tunnels in turn, then `rounds` over the first 10.
    for (pass, (timed, among)) in [(n, n), (rounds.max(n), n), (rounds, n.min(10))]
        .into_iter()
        .enumerate()
    {
        let start = Instant::now();
        gateway = Duration::ZERO;
        for k in 0..timed {
            let i = k % among;
            let c = &mut clients[i];
            c.core.udp_send(conns[i], &payload);
            c.core.poll(Instant::now());
            let g = Instant::now();
            while let Some(d) = c.core.poll_transmit() {
                gw.handle_datagram(Instant::now(), c.from, &d);
                c.core.recycle(d);
            }
            gw.poll(Instant::now());
            for peer in gw.take_udp_ready() {
                for t in gw.udp_targets(peer) {
                    while let Some((len, client)) = gw.udp_recv(peer, t, &mut buf) {
                        // The echo target answers at once.
                        gw.udp_send(peer, t, client, &buf[..len]);
                    }
                }
            }
            gw.poll(Instant::now());
            let mut replies = Vec::new();
            while let Some((to, d)) = gw.poll_transmit() {
                replies.push((to, d));
            }
            gateway += g.elapsed();
            let mut got = false;
            for (to, d) in replies {
                let j = index[&to];
                let cj = &mut clients[j];
                cj.core.handle_datagram(Instant::now(), gw_addr, &d);
                cj.core.poll(Instant::now());
                gw.recycle(d);
                got |= j == i && cj.core.udp_recv(conns[j], &mut buf) == Some(ECHO_BYTES);
            }
            assert!(got, "echo {k} of peer {:?} did not come back", peers[i]);
        }
        if pass > 0 {
            let count = u32::try_from(timed).unwrap();
            result.push((start.elapsed() / count, gateway / count));
        }
    }
    CoreEcho {
        peers: n,
        rtt: result[0].0,
        gateway: result[0].1,
        gateway_hot: result[1].1,
    }
}

// ---------------------------------------------------------------------------
// Aggregate throughput over many peers, with 1 and 2 gateway workers.

/// Tunnels uploading at once in the throughput case.
const UPLOADERS: usize = 16;
/// Bytes each uploads.
const UPLOAD_BYTES: usize = 16 * 1024 * 1024;

/// Gbit/s of `UPLOADERS` tunnels uploading `UPLOAD_BYTES` each at once
/// through a gateway with `workers` workers (the gateway on a runtime of
/// its own with two threads), and the UDP datagrams the kernel dropped
/// meanwhile for a full receive buffer.
fn aggregate_throughput(workers: usize) -> (f64, u64) {
    let gw_rt = runtime(2);
    let client_rt = runtime(2);
    let gw = start_gateway(&gw_rt, workers);
    let target = Target::tcp(common::sink_target());
    let mut tunnels = Vec::new();
    let mut streams = Vec::new();
    for i in 0..UPLOADERS {
        let (cfg, grant) = config(gw.local_addr(), gw.public_key(), i, target);
        gw_rt.block_on(gw.add_peer(grant)).unwrap();
        let t = client_rt.block_on(Tunnel::start(cfg)).unwrap();
        let mut s = TcpStream::connect(t.forward_addr(&target).unwrap()).unwrap();
        s.set_nodelay(true).unwrap();
        s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        // One small message proves the path before timing starts.
        upload(&mut s, 1024);
        streams.push(s);
        tunnels.push(t);
    }
    let start = Instant::now();
    let drops = udp_rcvbuf_errors();
    let threads: Vec<_> = streams
        .into_iter()
        .map(|mut s| std::thread::spawn(move || upload(&mut s, UPLOAD_BYTES)))
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    let drops = udp_rcvbuf_errors().saturating_sub(drops);
    for t in tunnels {
        client_rt.block_on(t.shutdown());
    }
    gw_rt.block_on(gw.shutdown());
    ((UPLOADERS * UPLOAD_BYTES) as f64 * 8.0 / secs / 1e9, drops)
}

/// The kernel's count of UDP datagrams dropped for a full receive buffer
/// (all sockets of the machine; Linux `/proc/net/snmp`).
fn udp_rcvbuf_errors() -> u64 {
    let text = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let mut lines = text.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "RcvbufErrors")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

/// One message of `len` bytes and the target's acknowledgement.
fn upload(s: &mut TcpStream, len: usize) {
    let chunk = vec![0x5au8; 256 * 1024];
    s.write_all(&(len as u64).to_le_bytes()).unwrap();
    let mut left = len;
    while left > 0 {
        let n = left.min(chunk.len());
        s.write_all(&chunk[..n]).unwrap();
        left -= n;
    }
    let mut ack = [0u8; 1];
    s.read_exact(&mut ack).unwrap();
}

/// The gateway's capacity (`capacity`): 1 and 2 workers alternating,
/// three times each, then the medians.
#[cfg(target_os = "linux")]
fn capacity_rounds() {
    let (mut ones, mut twos) = (Vec::new(), Vec::new());
    for round in 1..=3 {
        for workers in [1, 2] {
            let c = capacity::run(workers);
            println!(
                "gateway capacity (round {round}), {workers} worker(s): {:.2} Gbit/s, {} of {} datagrams received (dropped: {} by the gateway, {} by the kernel); load: sender {:.0} %, sink {:.0} % of a core; whole process {:.0} %",
                c.gbits,
                c.received,
                c.sent,
                c.gateway_drops,
                c.kernel_drops,
                c.sender_cpu * 100.0,
                c.sink_cpu * 100.0,
                c.process_cpu * 100.0,
            );
            if workers == 1 {
                ones.push(c.gbits)
            } else {
                twos.push(c.gbits)
            }
        }
    }
    print_medians("gateway capacity, medians", ones, twos);
    // The gateway alone (`backlog`): 1, 2, 1, 2 workers.
    let (mut ones, mut twos) = (Vec::new(), Vec::new());
    for workers in [1, 2, 1, 2] {
        let b = backlog::run(workers);
        let slowest = b.gbits.iter().copied().fold(f64::INFINITY, f64::min);
        let fastest = b.gbits.iter().copied().fold(0.0, f64::max);
        println!(
            "gateway alone, backlog drained, {workers} worker(s): median {:.2} Gbit/s over {} rounds (slowest {slowest:.2}, fastest {fastest:.2}); {} of {} datagrams received, {} dropped by the kernel, {} by the gateway, {} handed between workers",
            median(b.gbits.clone()),
            b.gbits.len(),
            b.received,
            b.sent,
            b.kernel_drops,
            b.gateway_drops,
            b.handed_over,
        );
        if workers == 1 {
            ones.extend(b.gbits);
        } else {
            twos.extend(b.gbits);
        }
    }
    let label = format!("gateway alone, medians of {} rounds each", ones.len());
    print_medians(&label, ones, twos);
}

/// `label: 1 worker … Gbit/s, 2 workers … Gbit/s (ratio)`, of the medians.
fn print_medians(label: &str, ones: Vec<f64>, twos: Vec<f64>) {
    let (one, two) = (median(ones), median(twos));
    println!(
        "{label}: 1 worker {one:.2} Gbit/s, 2 workers {two:.2} Gbit/s ({:.2}x)",
        two / one
    );
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

// ---------------------------------------------------------------------------
// Flood: bogus initiations while real tunnels work.

/// Initiations from random keys to the gateway (valid MAC1, unknown key).
fn bogus_initiations(gw_key: [u8; 32], n: usize) -> Vec<Vec<u8>> {
    let gw_pub = PublicKey::from(gw_key);
    (0..n)
        .map(|i| {
            let mut t = Tunn::new(
                StaticSecret::random(),
                gw_pub,
                None,
                None,
                u32::try_from(i).unwrap(),
                None,
            );
            let mut buf = vec![0u8; 256];
            match t.format_handshake_initiation(&mut buf, false) {
                TunnResult::WriteToNetwork(d) => d.to_vec(),
                _ => panic!("no initiation"),
            }
        })
        .collect()
}

struct Flood {
    sent: u64,
    cookies: u64,
    secs: f64,
    rtt_quiet: Duration,
    rtt_flood: Duration,
    new_setup_mean: Duration,
    new_setup_max: Duration,
}

fn flood_case(established: usize, new: usize, secs: u64) -> Flood {
    let rt = runtime(2);
    let gw = start_gateway(&rt, 1);
    let target = Target::tcp(echo_target());
    let (mut clients, _) = burst(&rt, &gw, target, 0, established);
    connect_all(&mut clients, target);
    let rtt_quiet = echo_rtt(&mut clients, 2);

    let inits = bogus_initiations(*gw.public_key().as_bytes(), 4096);
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let cookies = Arc::new(AtomicU64::new(0));
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.connect(gw.local_addr()).unwrap();
    let reader = socket.try_clone().unwrap();
    reader
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let flood_started = Instant::now();
    let sender = {
        let (stop, sent) = (stop.clone(), sent.clone());
        std::thread::spawn(move || {
            // FLOOD_RATE per second, in batches every millisecond.
            let per_ms = FLOOD_RATE / 1000;
            let start = Instant::now();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..per_ms {
                    if socket.send(&inits[i % inits.len()]).is_ok() {
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                    i += 1;
                }
                let next = start + Duration::from_millis(i as u64 / per_ms as u64);
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
        })
    };
    let counter = {
        let (stop, cookies) = (stop.clone(), cookies.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 256];
            while !stop.load(Ordering::Relaxed) {
                if let Ok(n) = reader.recv(&mut buf)
                    && n > 0
                    && buf[0] == 3
                {
                    cookies.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let rtt_flood = echo_rtt(&mut clients, 2);
    let (new_clients, new_setup) = burst(&rt, &gw, target, established, new);
    let remaining = Duration::from_secs(secs).saturating_sub(flood_started.elapsed());
    std::thread::sleep(remaining);
    stop.store(true, Ordering::Relaxed);
    let secs = flood_started.elapsed().as_secs_f64();
    sender.join().unwrap();
    counter.join().unwrap();
    for c in clients.into_iter().chain(new_clients) {
        drop(c.stream);
        rt.block_on(c.handle.shutdown());
    }
    rt.block_on(gw.shutdown());
    Flood {
        sent: sent.load(Ordering::Relaxed),
        cookies: cookies.load(Ordering::Relaxed),
        secs,
        rtt_quiet,
        rtt_flood,
        new_setup_mean: mean(&new_setup),
        new_setup_max: new_setup.iter().copied().max().unwrap_or_default(),
    }
}

/// Peer counts of the sans-IO echo (`SCALE_CORE_PEERS`, default 10, 100,
/// 1,000 and 10,000).
fn core_counts() -> Vec<usize> {
    std::env::var("SCALE_CORE_PEERS")
        .ok()
        .map(|s| {
            s.split(',')
                .filter_map(|p| p.trim().parse().ok())
                .collect::<Vec<usize>>()
        })
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| vec![10, 100, 1000, 10_000])
}

fn peer_counts() -> Vec<usize> {
    std::env::var("SCALE_PEERS")
        .ok()
        .map(|s| {
            s.split(',')
                .filter_map(|p| p.trim().parse().ok())
                .collect::<Vec<usize>>()
        })
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| vec![10, 100, 1000, 10_000])
}

/// Runs `core_figures` in a fresh process (this binary again), so the
/// idle RSS is not hidden by memory that earlier parts freed and that the
/// allocator hands out again.
fn core_figures_in_child(n: usize) -> (Duration, usize, u64) {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .env(CHILD_ENV, n.to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let v: Vec<u64> = text
        .split_whitespace()
        .map(|w| w.parse().unwrap())
        .collect();
    (
        Duration::from_nanos(v[0]),
        usize::try_from(v[1]).unwrap(),
        v[2],
    )
}

/// Set (to the peer count) in the child that measures `core_figures`.
const CHILD_ENV: &str = "GATEWAY_SCALE_CORE_FIGURES";

fn main() {
    match std::env::var(ROLE_ENV).as_deref() {
        Ok("target") => return target_role(),
        Ok("gateway") => return gateway_role(),
        Ok("clients") => return clients_role(),
        _ => {}
    }
    if let Some(n) = std::env::var(CHILD_ENV).ok().and_then(|n| n.parse().ok()) {
        let (cost, answered, idle) = core_figures(n);
        println!("{} {answered} {idle}", cost.as_nanos());
        return;
    }
    #[cfg(target_os = "linux")]
    if std::env::var_os("SCALE_CAPACITY_ONLY").is_some() {
        return capacity_rounds();
    }
    // `cargo bench` passes `--bench`; nothing else is understood.
    let counts: Vec<usize> = peer_counts().into_iter().filter(|n| *n > 0).collect();
    println!(
        "gateway_scale: one gateway, N client tunnels, one TCP echo connection each (gateway, target and clients in separate processes, at most {TUNNELS_PER_CLIENT} tunnels per client process)"
    );
    println!();
    println!(
        "| tunnels | setup per tunnel | slowest setup | echo round trip per tunnel | vs. first row | round trip, 10 of the tunnels | RSS per tunnel (client, gateway and target processes) |"
    );
    println!("|---|---|---|---|---|---|---|");
    let mut reference = None;
    let mut idle = Vec::new();
    for n in counts {
        let row = scale_row(n);
        let reference = *reference.get_or_insert(row.rtt);
        println!(
            "| {} | {:.1} ms | {:.0} ms | {:.3} ms | {:.2}x | {:.3} ms | {} KB |",
            row.peers,
            ms(row.setup_mean),
            ms(row.setup_max),
            ms(row.rtt),
            row.rtt.as_secs_f64() / reference.as_secs_f64(),
            ms(row.rtt_hot),
            row.rss_per_tunnel / 1000,
        );
        idle.push((row.peers, row.idle_cpu, row.busy_cpu));
    }
    println!();
    for (n, (gw, clients, target), (gw_busy, all_busy)) in idle {
        println!(
            "CPU with {n} tunnels open and no traffic (2 s): gateway {gw:.0} %, client processes {clients:.0} %, target {target:.0} % of one core; per round trip over all {n}: gateway {:.0} µs, all processes {:.0} µs",
            gw_busy.as_secs_f64() * 1e6,
            all_busy.as_secs_f64() * 1e6,
        );
    }
    if std::env::var_os("SCALE_SOCKETS_ONLY").is_some() {
        return;
    }
    println!();
    println!(
        "gateway core alone (sans IO, no sockets): N peers in session, one UDP echo of {ECHO_BYTES} bytes per tunnel in turn"
    );
    println!();
    println!(
        "| peers | round trip (client + gateway core) | gateway core per round trip | vs. first row | gateway core, 10 of the peers | vs. first row |"
    );
    println!("|---|---|---|---|---|---|");
    let mut reference = None;
    for n in core_counts() {
        let e = core_echo(n, 20_000);
        let (all, hot) = *reference.get_or_insert((e.gateway, e.gateway_hot));
        println!(
            "| {} | {:.1} µs | {:.1} µs | {:.2}x | {:.1} µs | {:.2}x |",
            e.peers,
            e.rtt.as_secs_f64() * 1e6,
            e.gateway.as_secs_f64() * 1e6,
            e.gateway.as_secs_f64() / all.as_secs_f64(),
            e.gateway_hot.as_secs_f64() * 1e6,
            e.gateway_hot.as_secs_f64() / hot.as_secs_f64(),
        );
    }
    println!();
    let idle_n = 10_000;
    let (cost, answered, idle) = core_figures_in_child(idle_n);
    println!(
        "gateway core: {:.0} µs per handshake initiation (one core, sans IO); {answered} of {idle_n} simultaneous initiations answered with a handshake response",
        cost.as_secs_f64() * 1e6
    );
    println!(
        "idle gateway peer (added, handshaken, no connection): {} KB RSS per peer over {idle_n} peers",
        idle / 1000
    );
    println!();
    // Alternating, three times each, so a change in the machine's load
    // shows; then the medians.
    let (mut ones, mut twos) = (Vec::new(), Vec::new());
    for round in 1..=3 {
        let (one, one_drops) = aggregate_throughput(1);
        let (two, two_drops) = aggregate_throughput(2);
        println!(
            "aggregate throughput (round {round}), {UPLOADERS} tunnels uploading {} MiB each at once: 1 worker {one:.2} Gbit/s ({one_drops} datagrams dropped by the kernel, receive buffer full), 2 workers {two:.2} Gbit/s ({two_drops} dropped) ({:.2}x)",
            UPLOAD_BYTES / (1024 * 1024),
            two / one
        );
        ones.push(one);
        twos.push(two);
    }
    print_medians("aggregate throughput, medians", ones, twos);
    #[cfg(target_os = "linux")]
    capacity_rounds();
    println!();
    let f = flood_case(100, 100, 4);
    println!(
        "flood: {:.0} bogus initiations/s for {:.1} s from loopback, {} cookie replies seen by the flooder",
        f.sent as f64 / f.secs,
        f.secs,
        f.cookies
    );
    println!(
        "  100 established tunnels: echo round trip {:.3} ms quiet, {:.3} ms during the flood ({:.2}x)",
        ms(f.rtt_quiet),
        ms(f.rtt_flood),
        f.rtt_flood.as_secs_f64() / f.rtt_quiet.as_secs_f64()
    );
    println!(
        "  100 new tunnels during the flood: setup {:.1} ms mean, {:.0} ms slowest",
        ms(f.new_setup_mean),
        ms(f.new_setup_max)
    );
}
