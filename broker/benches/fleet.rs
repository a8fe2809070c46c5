//! A fleet on loopback: simulated devices against three deployment shapes
//! in one run — the SQLite single node, one broker on PostgreSQL, and three
//! broker replicas on one PostgreSQL database — so the figures compare.
//!
//! ```text
//! cargo bench -p broker --bench fleet                   # 10,000 devices, 60 s steady
//! SALLYPORT_FLEET_DEVICES=2000 SALLYPORT_FLEET_STEADY_SECS=20 cargo bench -p broker --bench fleet
//! ```
//!
//! Per shape:
//! 1. **Morning burst**: every device signs in (a token from the in-process
//!    issuer, validated by the broker on every call), enrols, asks a nonce
//!    and attests, as fast as the brokers answer (64 in flight), spread
//!    round-robin over the replicas. Reported: devices per second, how long
//!    all of them took (the goal is 60 s), and the CPU the bench process
//!    (brokers, gateways, issuer and the simulated devices: one process) and
//!    PostgreSQL used, as a share of the machine's cores.
//! 2. **Steady state**: each device attests once every 60 s (open loop, at
//!    devices/60 per second), and every tenth attestation also opens a grant
//!    and closes it, for `SALLYPORT_FLEET_STEADY_SECS`.
//! 3. **Revocations**: a device holds a grant whose peer is at the first
//!    replica's gateway; the administrator revokes the device at the last
//!    replica; the time from the call to the peer leaving the first
//!    replica's gateway (the tunnel refusing traffic) is the fan-out
//!    latency. On a single node both are the same broker.
//!
//! Brokers run in this process (the gateway's own state is what the
//! fan-out measurement watches), each on the real HTTP API with DPoP. A
//! call that fails is counted and shown next to its latency, not fatal.

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::unwrap_used,
    clippy::expect_used
)]

#[path = "../tests/common/mod.rs"]
mod common;
mod load;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use broker::api;
use broker::server::BrokerHandle;
use common::*;
use load::{Latencies, percentile, timed};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Devices in flight during the burst.
const BURST_IN_FLIGHT: usize = 64;
/// Revocations measured per shape.
const REVOCATIONS: usize = 20;
/// Steady-state requests allowed in flight before new ones are skipped
/// (counted): the brokers are then past what they can take.
const STEADY_IN_FLIGHT: usize = 2_000;

struct Shape {
    name: &'static str,
    replicas: usize,
    postgres: bool,
}

const SHAPES: [Shape; 3] = [
    Shape {
        name: "SQLite, 1 node",
        replicas: 1,
        postgres: false,
    },
    Shape {
        name: "PostgreSQL, 1 replica",
        replicas: 1,
        postgres: true,
    },
    Shape {
        name: "PostgreSQL, 3 replicas",
        replicas: 3,
        postgres: true,
    },
];

/// Calls answered with something else than success, by call.
type Failures = Arc<Mutex<BTreeMap<&'static str, u64>>>;

/// Whether `r` succeeded; a failure is counted under `call` (and shown in
/// the table) rather than ending the run.
fn ok(failures: &Failures, call: &'static str, r: &reqwest::Response) -> bool {
    let good = r.status().is_success();
    if !good {
        *failures.lock().unwrap().entry(call).or_default() += 1;
    }
    good
}

/// What one shape measured.
struct Outcome {
    burst_secs: f64,
    devices: usize,
    cpu_bench: f64,
    cpu_postgres: f64,
    steady_offered: f64,
    steady_done: usize,
    steady_skipped: usize,
    steady_secs: f64,
    latencies: BTreeMap<&'static str, Vec<f64>>,
    failures: BTreeMap<&'static str, u64>,
    fanout_ms: Vec<f64>,
}

/// CPU seconds used so far by this process and by every `postgres`
/// process (from `/proc`).
fn cpu_seconds() -> (f64, f64) {
    let ticks = 100.0;
    let of = |stat: &str| -> f64 {
        // Fields after the `(comm)`: state is 3rd, utime 14th, stime 15th.
        let rest = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or("");
        let f: Vec<&str> = rest.split_whitespace().collect();
        let n = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        (n(11) + n(12)) / ticks
    };
    let me = std::fs::read_to_string("/proc/self/stat")
        .map(|s| of(&s))
        .unwrap_or(0.0);
    let mut pg = 0.0;
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let path = entry.path();
            if std::fs::read_to_string(path.join("comm")).is_ok_and(|c| c.trim() == "postgres") {
                pg += std::fs::read_to_string(path.join("stat"))
                    .map(|s| of(&s))
                    .unwrap_or(0.0);
            }
        }
    }
    (me, pg)
}

fn cores() -> f64 {
    std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64)
}

async fn run_shape(
    shape: &Shape,
    issuer: &TestIssuer,
    echo: std::net::SocketAddr,
    cluster: &support::postgres::Cluster,
    devices: usize,
    steady_secs: u64,
) -> Outcome {
    let dirs: Vec<tempfile::TempDir> = (0..shape.replicas)
        .map(|_| tempfile::tempdir().unwrap())
        .collect();
    let url = shape
        .postgres
        .then(|| cluster.create_database(&format!("fleet{}", shape.replicas)));
    let mut brokers: Vec<BrokerHandle> = Vec::new();
    for dir in &dirs {
        let url = url.clone();
        let cfg = config(&issuer.url, &db_path(dir.path()), echo)
            .with(move |c| c.server.database_url = url);
        brokers.push(start_broker(&cfg).await);
    }
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .unwrap();
    let api_at = |i: usize, token: String| Client {
        http: http.clone(),
        base: brokers[i % brokers.len()].base_url(),
        token,
        key: None,
        clock: None,
    };
    let lat: Latencies = Arc::default();
    let failures: Failures = Arc::default();

    // ---- morning burst ----
    let fleet: Vec<Arc<TestDevice>> = (0..devices)
        .map(|i| {
            let user = format!("user-{i}");
            Arc::new(TestDevice::new(api_at(i, issuer.token(&user)), &user))
        })
        .collect();
    let (cpu0, pg0) = cpu_seconds();
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..BURST_IN_FLIGHT {
        let (fleet, next, lat, failures) =
            (fleet.clone(), next.clone(), lat.clone(), failures.clone());
        workers.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(device) = fleet.get(i) else {
                    return;
                };
                let r = timed(&lat, "burst: enrol", device.enrol()).await;
                if !ok(&failures, "burst: enrol", &r) {
                    continue;
                }
                let nonce = timed(&lat, "burst: nonce", device.nonce()).await;
                let claims = posture::attestation::EatClaims::new(
                    &device.key,
                    &nonce,
                    AUDIENCE,
                    &device.user,
                    healthy_report(),
                    unix_now(),
                    120,
                );
                let eat = device.key.sign_eat(&claims).unwrap();
                let r = timed(&lat, "burst: attest", device.submit(eat)).await;
                ok(&failures, "burst: attest", &r);
            }
        });
    }
    while workers.join_next().await.is_some() {}
    let burst_secs = started.elapsed().as_secs_f64();
    let (cpu1, pg1) = cpu_seconds();
    eprintln!(
        "{}: burst of {devices} devices in {burst_secs:.1} s",
        shape.name
    );

    // ---- steady state: each device attests every 60 s; every tenth
    // attestation also opens and closes a grant ----
    let steady_devices = devices.saturating_sub(REVOCATIONS).max(1);
    let offered = steady_devices as f64 / 60.0;
    let total = (offered * steady_secs as f64).round() as usize;
    let in_flight = Arc::new(AtomicUsize::new(0));
    let (done, skipped) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / offered));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let steady_started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for k in 0..total {
        tick.tick().await;
        if in_flight.load(Ordering::Relaxed) >= STEADY_IN_FLIGHT {
            skipped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        in_flight.fetch_add(1, Ordering::Relaxed);
        let device = fleet[k % steady_devices].clone();
        let (lat, in_flight, done, failures) = (
            lat.clone(),
            in_flight.clone(),
            done.clone(),
            failures.clone(),
        );
        tasks.spawn(async move {
            let claims = timed(&lat, "steady: nonce", device.claims(healthy_report())).await;
            let eat = device.key.sign_eat(&claims).unwrap();
            let r = timed(&lat, "steady: attest", device.submit(eat)).await;
            if ok(&failures, "steady: attest", &r) && k % 10 == 0 {
                let wg = tunnel::PrivateKey::generate().public_key();
                let r = timed(&lat, "steady: grant", device.request_grant("echo", &wg)).await;
                if ok(&failures, "steady: grant", &r) {
                    let grant: api::Grant = r.json().await.unwrap();
                    let path = format!("{}/{}", api::paths::GRANTS, grant.id);
                    let r = timed(&lat, "steady: close grant", device.api.delete(&path)).await;
                    ok(&failures, "steady: close grant", &r);
                }
            }
            done.fetch_add(1, Ordering::Relaxed);
            in_flight.fetch_sub(1, Ordering::Relaxed);
        });
    }
    while tasks.join_next().await.is_some() {}
    let steady_took = steady_started.elapsed().as_secs_f64();

    // ---- revocations: peer at the first replica, revoked at the last ----
    let admin = Client {
        http: http.clone(),
        base: brokers[brokers.len() - 1].base_url(),
        token: ADMIN_TOKEN.to_owned(),
        key: None,
        clock: None,
    };
    let mut fanout_ms = Vec::new();
    for device in fleet.iter().rev().take(REVOCATIONS.min(devices)) {
        let at_first = TestDevice {
            api: Client {
                base: brokers[0].base_url(),
                ..device.api.clone()
            },
            key: device.key.clone(),
            user: device.user.clone(),
        };
        let wg = tunnel::PrivateKey::generate().public_key();
        let r = at_first.request_grant("echo", &wg).await;
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
        let grant: api::Grant = r.json().await.unwrap();
        let holds = |b: &BrokerHandle| {
            b.gateway_status()
                .unwrap()
                .peers
                .iter()
                .any(|p| p.client_address.to_string() == grant.client_address)
        };
        assert!(holds(&brokers[0]));
        let revoked_at = Instant::now();
        let r = admin
            .post(
                api::paths::ADMIN_REVOCATIONS,
                &api::RevocationRequest {
                    device_id: Some(device.id()),
                    reason: "fleet bench".into(),
                    ..Default::default()
                },
            )
            .await;
        assert_eq!(r.status(), 200);
        while holds(&brokers[0]) {
            assert!(
                revoked_at.elapsed() < Duration::from_secs(30),
                "never removed"
            );
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        fanout_ms.push(revoked_at.elapsed().as_secs_f64() * 1000.0);
    }

    for b in brokers {
        b.shutdown().await;
    }
    let latencies = std::mem::take(&mut *lat.lock().unwrap());
    let failures = std::mem::take(&mut *failures.lock().unwrap());
    Outcome {
        burst_secs,
        devices,
        cpu_bench: (cpu1 - cpu0) / (burst_secs * cores()),
        cpu_postgres: (pg1 - pg0) / (burst_secs * cores()),
        steady_offered: offered,
        steady_done: done.load(Ordering::Relaxed),
        steady_skipped: skipped.load(Ordering::Relaxed),
        steady_secs: steady_took,
        latencies,
        failures,
        fanout_ms,
    }
}

fn p50_p99(values: &mut [f64]) -> String {
    values.sort_by(|a, b| a.total_cmp(b));
    format!(
        "{:.1} / {:.1}",
        percentile(values, 0.50),
        percentile(values, 0.99)
    )
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let devices = env_usize("SALLYPORT_FLEET_DEVICES", 10_000);
    let steady_secs = env_usize("SALLYPORT_FLEET_STEADY_SECS", 60) as u64;
    let issuer = TestIssuer::start().await;
    let echo = tcp_echo().await;
    let cluster = support::postgres::Cluster::start();
    let mut outcomes = Vec::new();
    for shape in &SHAPES {
        outcomes.push(run_shape(shape, &issuer, echo, &cluster, devices, steady_secs).await);
    }
    let reference = outcomes[0].devices as f64 / outcomes[0].burst_secs;
    println!(
        "\n{devices} devices, steady {steady_secs} s, {} cores\n",
        cores()
    );
    println!(
        "| shape | burst: devices/s | × SQLite | all enrolled + attested in | CPU: bench process / PostgreSQL (share of all cores) | steady: attestations/s offered → done (skipped) |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    for (shape, o) in SHAPES.iter().zip(&outcomes) {
        let rate = o.devices as f64 / o.burst_secs;
        println!(
            "| {} | {:.0} | {:.2} | {:.1} s | {:.0} % / {:.0} % | {:.0} → {:.0} ({}) |",
            shape.name,
            rate,
            rate / reference,
            o.burst_secs,
            o.cpu_bench * 100.0,
            o.cpu_postgres * 100.0,
            o.steady_offered,
            o.steady_done as f64 / o.steady_secs,
            o.steady_skipped,
        );
    }
    let calls: Vec<&'static str> = outcomes[0].latencies.keys().copied().collect();
    println!("\nLatency p50 / p99, ms:\n");
    print!("| call |");
    for shape in &SHAPES {
        print!(" {} |", shape.name);
    }
    println!();
    println!("| --- |{}", " --- |".repeat(SHAPES.len()));
    let outcomes = Mutex::new(outcomes);
    for call in calls {
        print!("| {call} |");
        for o in outcomes.lock().unwrap().iter_mut() {
            let failed = match o.failures.get(call) {
                Some(n) => format!(" ({n} failed)"),
                None => String::new(),
            };
            let cell = o
                .latencies
                .get_mut(call)
                .map_or_else(|| "-".to_owned(), |v| p50_p99(v))
                + &failed;
            print!(" {cell} |");
        }
        println!();
    }
    print!("| revocation fan-out (admin call → peer gone at the first replica's gateway) |");
    for o in outcomes.lock().unwrap().iter_mut() {
        print!(" {} |", p50_p99(&mut o.fanout_ms));
    }
    println!();
}
