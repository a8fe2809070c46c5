//! The gateway's capacity with 1 and 2 workers: how much it can carry when
//! the load costs this machine next to nothing.
//!
//! Real client tunnels spend about as much CPU per byte as the gateway
//! (they encrypt what it decrypts, and run a TCP stack each), so on two
//! cores shared with them a second gateway worker has no core to gain: the
//! upload case measures the machine, not the gateway. Here the load is made
//! before the clock starts, the way a traffic generator tests a router:
//!
//! - `PEERS` peers, each a boringtun session that did a real handshake with
//!   the gateway from its own UDP socket, each granted one UDP target: a
//!   sink in this process that counts what arrives, per peer.
//! - Untimed: each peer's `PER_PEER` WireGuard data messages are encrypted
//!   in advance, each an IPv4/UDP packet with `PAYLOAD` bytes for the sink.
//! - Timed: one thread sends them to the gateway, as many as fit one `sendmsg`
//!   (UDP GSO, as the tunnel client sends), keeping at most `WINDOW` of a
//!   peer's datagrams on their way (sent, not yet counted by the sink), so
//!   the gateway's socket buffer never overflows and the sender does not
//!   spend CPU on drops. A peer whose sink count stops moving for
//!   `LOST_AFTER` has lost what was on its way and goes on.
//! - Throughput: the payload bytes the sink received, over the time from the
//!   first send to the last arrival. The sender's and the sink's CPU time
//!   are printed next to it (`/proc/self/task`), to show what the load cost.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use tunnel::{PeerGrant, Target};
use x25519_dalek::{PublicKey, StaticSecret};

use crate::load::{
    LoadPeer, PAYLOAD, cmsg_space, process_cpu, recv_coalesced, target_socket, thread_cpu,
    thread_cpu_self,
};

/// Peers sending at once.
const PEERS: usize = 32;
/// Data messages each peer sends.
const PER_PEER: usize = 12_000;
/// A peer's datagrams on their way at most.
const WINDOW: u64 = 64;
/// A peer whose sink count has not moved for this long lost its datagrams.
const LOST_AFTER: Duration = Duration::from_millis(20);

/// One run's result.
pub struct Capacity {
    /// Payload delivered to the sink, Gbit/s.
    pub gbits: f64,
    /// Datagrams the sink received, of all sent.
    pub received: u64,
    pub sent: u64,
    /// CPU time of the sender and of the sink thread, as a share of the
    /// timed interval (1.0 = one core).
    pub sender_cpu: f64,
    pub sink_cpu: f64,
    /// CPU time of the whole process (gateway, sender, sink), likewise.
    pub process_cpu: f64,
    /// Datagrams the gateway dropped (all reasons), and the kernel's count of
    /// UDP datagrams dropped for a full receive buffer, during the run.
    pub gateway_drops: u64,
    pub kernel_drops: u64,
}

/// The gateway with `workers` workers, on a runtime of its own with two
/// threads, carrying the pre-encrypted load.
pub fn run(workers: usize) -> Capacity {
    let rt = crate::runtime(2);
    let gw = crate::start_gateway(&rt, workers);
    let sink = Sink::start();
    let gw_public = PublicKey::from(*gw.public_key().as_bytes());
    let expires_at = SystemTime::now() + Duration::from_secs(3600);
    let mut peers: Vec<Sender> = (0..PEERS)
        .map(|i| {
            let secret = StaticSecret::random();
            let address = Ipv4Addr::from(0x6440_0000 | (u32::try_from(i).unwrap() + 2));
            rt.block_on(gw.add_peer(PeerGrant {
                public_key: tunnel::PublicKey::from(PublicKey::from(&secret).to_bytes()),
                client_address: IpAddr::V4(address),
                targets: vec![Target::udp(sink.addr)],
                expires_at,
            }))
            .unwrap();
            let mut peer =
                LoadPeer::connect(i, secret, gw_public, address, gw.local_addr(), sink.addr);
            peer.encrypt(PER_PEER);
            Sender {
                peer,
                sent: 0,
                lost: 0,
                last_got: 0,
                last_change: Instant::now(),
            }
        })
        .collect();

    let kernel_drops = crate::udp_rcvbuf_errors();
    let cpu_before = (sink.cpu(), thread_cpu_self());
    let process_before = process_cpu();
    let start = Instant::now();
    let sent = send_all(&mut peers, &sink);
    let end = sink.last_arrival(start);
    let secs = end.saturating_duration_since(start).as_secs_f64();
    let sender_cpu = (thread_cpu_self() - cpu_before.1) / secs;
    let sink_cpu = (sink.cpu() - cpu_before.0) / secs;
    let process_cpu = (process_cpu() - process_before) / secs;
    let received = sink.total();
    let gateway_drops = gw.status().dropped.total();
    sink.stop();
    rt.block_on(gw.shutdown());
    Capacity {
        gbits: (received as f64 * PAYLOAD as f64 * 8.0) / secs / 1e9,
        received,
        sent,
        sender_cpu,
        sink_cpu,
        process_cpu,
        gateway_drops,
        kernel_drops: crate::udp_rcvbuf_errors() - kernel_drops,
    }
}

/// A peer of the load and its window.
struct Sender {
    peer: LoadPeer,
    sent: u64,
    /// Given up for lost (`LOST_AFTER`).
    lost: u64,
    /// The sink's count when it last changed, and when.
    last_got: u64,
    last_change: Instant,
}

/// Send every peer's datagrams within its window; returns how many were sent.
fn send_all(peers: &mut [Sender], sink: &Sink) -> u64 {
    let mut sent = 0;
    loop {
        let mut any_left = false;
        let mut progress = false;
        for p in peers.iter_mut() {
            if p.peer.remaining() == 0 {
                continue;
            }
            any_left = true;
            let got = sink.count(p.peer.number);
            let now = Instant::now();
            if got != p.last_got {
                p.last_got = got;
                p.last_change = now;
            }
            let on_way = p.sent - got - p.lost;
            if on_way >= WINDOW {
                if now.duration_since(p.last_change) >= LOST_AFTER {
                    p.lost += on_way;
                    p.last_change = now;
                }
                continue;
            }
            let room = usize::try_from(WINDOW - on_way).unwrap();
            let n = room.min(p.peer.per_send()).min(p.peer.remaining());
            p.peer.send(n);
            p.sent += n as u64;
            sent += n as u64;
            progress = true;
        }
        if !any_left {
            return sent;
        }
        if !progress {
            // Every window is full: let the gateway work.
            std::thread::sleep(Duration::from_micros(50));
        }
    }
}

/// The UDP target: a thread that reads and counts per peer (the first four
/// payload bytes of each datagram name it).
struct Sink {
    addr: SocketAddr,
    counts: Arc<Vec<AtomicU64>>,
    /// Nanoseconds since `epoch` of the last arrival.
    last: Arc<AtomicU64>,
    epoch: Instant,
    stop: Arc<AtomicBool>,
    tid: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<()>,
}

impl Sink {
    fn start() -> Sink {
        let socket = target_socket(false, Duration::from_millis(50));
        let addr = socket.local_addr().unwrap();
        let counts: Arc<Vec<AtomicU64>> = Arc::new((0..PEERS).map(|_| AtomicU64::new(0)).collect());
        let last = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let tid = Arc::new(AtomicU64::new(0));
        let epoch = Instant::now();
        let thread = {
            let (counts, last, stop, tid) =
                (counts.clone(), last.clone(), stop.clone(), tid.clone());
            std::thread::spawn(move || {
                tid.store(
                    u64::from(nix::unistd::gettid().as_raw().unsigned_abs()),
                    Ordering::Relaxed,
                );
                let mut buf = vec![0u8; 65_536];
                let mut cmsg = cmsg_space();
                while !stop.load(Ordering::Relaxed) {
                    let Ok(read) = recv_coalesced(&socket, &mut buf, &mut cmsg) else {
                        continue;
                    };
                    for peer in read.peers(&buf) {
                        if let Some(c) = counts.get(peer) {
                            c.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    let at = u64::try_from(epoch.elapsed().as_nanos()).unwrap();
                    last.store(at, Ordering::Relaxed);
                }
            })
        };
        while tid.load(Ordering::Relaxed) == 0 {
            std::thread::yield_now();
        }
        Sink {
            addr,
            counts,
            last,
            epoch,
            stop,
            tid,
            thread,
        }
    }

    fn count(&self, peer: usize) -> u64 {
        self.counts[peer].load(Ordering::Relaxed)
    }

    fn total(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// When the last datagram arrived, once nothing more has come for
    /// 100 ms (and not before `start`).
    fn last_arrival(&self, start: Instant) -> Instant {
        let mut seen = self.total();
        loop {
            std::thread::sleep(Duration::from_millis(100));
            let now = self.total();
            if now == seen {
                break;
            }
            seen = now;
        }
        (self.epoch + Duration::from_nanos(self.last.load(Ordering::Relaxed))).max(start)
    }

    /// The sink thread's CPU time so far, in seconds.
    fn cpu(&self) -> f64 {
        thread_cpu(self.tid.load(Ordering::Relaxed))
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap();
    }
}
