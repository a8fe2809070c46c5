//! The gateway's own capacity with 1 and 2 workers: a backlog queued while
//! the gateway's process is stopped, drained while nothing else runs.
//!
//! In `capacity` the load and the target share the two cores with the
//! gateway and take about a third of what a second worker would need, so
//! that ratio is bounded by the machine, not by the gateway. Here the
//! gateway runs in a process of its own (this binary, role `gateway`):
//!
//! - `PEERS` peers (`load::LoadPeer`), half of them owned by each worker
//!   when there are two (`Shard::of_key`), each with a real handshake and
//!   granted the sink as a UDP target. One untimed round opens the
//!   gateway's flows to the sink. The workers are pinned one per core
//!   (`pin_workers`).
//! - Each round: the gateway is stopped (SIGSTOP, and its threads seen
//!   stopped in `/proc`), every peer sends `PER_ROUND` encrypted datagrams
//!   in one `sendmsg`, which queue in the gateway's socket buffers; then
//!   the clock starts and the gateway continues (SIGCONT). Nobody reads the
//!   sink until the gateway is done; the kernel stamps each arrival
//!   (SO_TIMESTAMPNS), and the round's time is from SIGCONT to the last
//!   stamp.
//! - Throughput per round: the payload bytes that arrived over that time;
//!   the median of `ROUNDS` rounds. A round must lose nothing: the kernel's
//!   drop count and the sink's count are checked.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tunnel::core::Shard;
use x25519_dalek::{PublicKey, StaticSecret};

use crate::Part;
use crate::load::{LoadPeer, PAYLOAD, cmsg_space, recv_coalesced, target_socket};

/// Peers; with two workers, half are each one's.
const PEERS: usize = 32;
/// Datagrams each peer queues per round: one `sendmsg` (45 × 1,432 bytes;
/// 1,440 in all, 2 MB of payload, which one socket's 4 MB buffer holds).
const PER_ROUND: usize = 45;
/// Timed rounds per gateway.
pub const ROUNDS: usize = 15;

/// The medians and what was checked.
pub struct Backlog {
    /// Gbit/s of payload per round.
    pub gbits: Vec<f64>,
    /// Datagrams queued and received over all rounds.
    pub sent: u64,
    pub received: u64,
    /// The kernel's count of UDP datagrams dropped for a full buffer
    /// (each dropped GSO send counts once), during the rounds.
    pub kernel_drops: u64,
    /// From the gateway's status at the end: datagrams passed between its
    /// workers, and dropped.
    pub handed_over: u64,
    pub gateway_drops: u64,
}

pub fn run(workers: usize) -> Backlog {
    let mut gw = Part::spawn("gateway", Some((crate::WORKERS_ENV, workers.to_string())));
    let w = gw.line();
    let gw_addr: SocketAddr = w[1].parse().unwrap();
    let gw_key: tunnel::PublicKey = w[2].parse().unwrap();
    let gw_public = PublicKey::from(*gw_key.as_bytes());
    let pid = Pid::from_raw(i32::try_from(gw.child.id()).unwrap());
    let sink = target_socket(true, Duration::from_millis(500));
    let sink_addr = sink.local_addr().unwrap();
    let target = tunnel::Target::udp(sink_addr);

    let mut peers: Vec<LoadPeer> = balanced_secrets(PEERS, 2)
        .into_iter()
        .enumerate()
        .map(|(i, secret)| {
            let address = Ipv4Addr::from(0x6440_0000 | (u32::try_from(i).unwrap() + 2));
            let key = tunnel::PublicKey::from(PublicKey::from(&secret).to_bytes());
            gw.send(&format!("add {key} {address} {target}"));
            assert_eq!(gw.ask("sync"), ["ok"]);
            LoadPeer::connect(i, secret, gw_public, address, gw_addr, sink_addr)
        })
        .collect();
    // Untimed: the gateway opens its flows to the sink.
    let mut buf = vec![0u8; 65_536];
    let mut cmsg = cmsg_space();
    for p in &mut peers {
        p.encrypt(1);
        p.send(1);
    }
    drain(&sink, &mut buf, &mut cmsg, PEERS as u64);
    pin_workers(pid);

    let kernel_before = crate::udp_rcvbuf_errors();
    let (mut sent, mut received) = (0, 0);
    let mut gbits = Vec::new();
    for _ in 0..ROUNDS {
        for p in &mut peers {
            p.encrypt(PER_ROUND);
        }
        stop(pid);
        for p in &mut peers {
            p.send(PER_ROUND);
        }
        let round = (PEERS * PER_ROUND) as u64;
        sent += round;
        let start = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        kill(pid, Signal::SIGCONT).unwrap();
        let (got, last) = drain(&sink, &mut buf, &mut cmsg, round);
        received += got;
        let secs = last.saturating_sub(start).as_secs_f64();
        gbits.push(got as f64 * PAYLOAD as f64 * 8.0 / secs / 1e9);
    }
    let kernel_drops = crate::udp_rcvbuf_errors() - kernel_before;
    let status = gw.ask("status");
    gw.finish();
    Backlog {
        gbits,
        sent,
        received,
        kernel_drops,
        handed_over: status[0].parse().unwrap(),
        gateway_drops: status[1].parse().unwrap(),
    }
}

/// Secrets for `n` peers, `n / shards` owned by each worker of a gateway
/// with `shards` workers (and so also fine for one worker).
fn balanced_secrets(n: usize, shards: u32) -> Vec<StaticSecret> {
    let per_shard = n / shards as usize;
    let mut count = vec![0; shards as usize];
    let mut secrets = Vec::with_capacity(n);
    while secrets.len() < n {
        let secret = StaticSecret::random();
        let key = tunnel::PublicKey::from(PublicKey::from(&secret).to_bytes());
        let shard = Shard::of_key(&key, shards) as usize;
        if count[shard] < per_shard {
            count[shard] += 1;
            secrets.push(secret);
        }
    }
    secrets
}

/// Stop the gateway's process and wait until all its threads are stopped.
fn stop(pid: Pid) {
    kill(pid, Signal::SIGSTOP).unwrap();
    let tasks = format!("/proc/{pid}/task");
    loop {
        let all_stopped = std::fs::read_dir(&tasks).unwrap().all(|t| {
            let stat = std::fs::read_to_string(t.unwrap().path().join("stat")).unwrap_or_default();
            let state = stat.rsplit_once(')').map_or("", |(_, r)| r).trim_start();
            state.starts_with('T') || state.starts_with('t')
        });
        if all_stopped {
            return;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// Wait until the gateway has had time to finish, then read the sink until
/// `expected` datagrams arrived or it stays quiet for its read timeout.
/// Returns how many arrived, and the latest arrival (since the epoch).
fn drain(sink: &UdpSocket, buf: &mut [u8], cmsg: &mut [u8], expected: u64) -> (u64, Duration) {
    std::thread::sleep(Duration::from_millis(100));
    let (mut got, mut last) = (0, Duration::ZERO);
    while got < expected {
        let Ok(read) = recv_coalesced(sink, buf, cmsg) else {
            break;
        };
        got += read.peers(buf).count() as u64;
        last = last.max(read.at.expect("arrivals are stamped"));
    }
    (got, last)
}

/// Pin each of the gateway's worker threads to a core of its own
/// (`gw-worker-N` to core N), as a gateway with a worker per core is
/// deployed. Without it, SIGCONT woke both workers on one core, and the
/// second waited there for the scheduler to move it (1–3 ms of a 2–4 ms
/// round).
fn pin_workers(pid: Pid) {
    use nix::sched::{CpuSet, sched_setaffinity};
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let path = task.unwrap().path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        let Some(n) = comm.trim().strip_prefix("gw-worker-") else {
            continue;
        };
        let tid: i32 = path.file_name().unwrap().to_str().unwrap().parse().unwrap();
        let mut cpus = CpuSet::new();
        cpus.set(n.parse().unwrap()).unwrap();
        sched_setaffinity(Pid::from_raw(tid), &cpus).unwrap();
    }
}
