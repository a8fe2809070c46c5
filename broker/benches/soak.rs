//! Soak and faults: the real `sallyport-broker` process (its gateway
//! included) on loopback under simulated devices, then the faults an
//! operator meets. Prints tables; exits non-zero when an expectation fails.
//!
//! ```text
//! cargo bench -p broker --bench soak                          # 600 s, 50 devices
//! SALLYPORT_SOAK_SECS=120 SALLYPORT_SOAK_DEVICES=20 cargo bench -p broker --bench soak
//! ```
//!
//! **Load.** Each device enrols, then loops: a nonce and an attestation,
//! a grant, closes it, pauses 0.2–1 s. Every 15 s an administrator revokes
//! one device and clears it; that device enrols again. The broker's RSS and
//! open file descriptors are sampled every 5 s from `/proc/PID`; each call's
//! latency is recorded. Growth is judged between the first sample after a
//! 30 s warm-up and the last.
//!
//! **Faults**, each checked:
//! 1. `kill -9` and restart: the grants open at the kill are open again (and
//!    installed at the gateway), the one closed just before stays closed,
//!    and the verdicts survived (a grant needs no new attestation).
//! 2. The issuer's JWKS endpoint goes down: calls go on with the cached keys
//!    until their TTL (10 s here), then fail closed (`issuer-unavailable`),
//!    and recover when it is back.
//! 3. The disk fills (the database on a 4 MiB tmpfs, root only): calls fail
//!    with the broker's clear `internal` problem and no grant is issued,
//!    then work again once space is freed.
//!
//! The issuer is in this process (real HTTP discovery + JWKS, ES256), so
//! tokens cost nothing and the broker's figures are its own.

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::unwrap_used,
    clippy::expect_used
)]

#[path = "../tests/common/mod.rs"]
mod common;
mod load;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use broker::api::{self, ProblemType};
use common::*;
use load::{Latencies, percentile, timed};
use serde_json::json;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct BrokerProcess {
    child: Child,
}

impl BrokerProcess {
    async fn start(config: &Path, base: &str) -> BrokerProcess {
        // Its log next to its configuration, out of the tables' way.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(config.with_extension("log"))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_sallyport-broker"))
            .args(["--config", config.to_str().unwrap()])
            .env("RUST_LOG", "warn")
            .stderr(log)
            .spawn()
            .unwrap();
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while http
            .get(format!("{base}{}", api::paths::CONFIG))
            .send()
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "the broker did not come up");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        BrokerProcess { child }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn kill9(&mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// VmRSS (KiB) and open fds of `pid`.
fn sample(pid: u32) -> (u64, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0);
    (rss, fds)
}

fn client(base: &str, token: &str) -> Client {
    Client {
        http: reqwest::Client::new(),
        base: base.to_owned(),
        token: token.to_owned(),
        key: None,
        clock: None,
    }
}

/// One simulated device until `stop`; returns its last open grant.
async fn device_loop(
    base: String,
    issuer: Arc<TestIssuer>,
    user: String,
    stop: Arc<AtomicBool>,
    lat: Latencies,
    errors: Arc<Mutex<BTreeMap<String, u64>>>,
) -> (TestDevice, Option<api::Grant>) {
    let token = issuer.token_with(&user, json!({"exp": unix_now() + 4 * 3600}));
    let device = TestDevice::new(client(&base, &token), &user);
    let mut enrolled = false;
    let mut rng_state = user.len() as u64 * 7919;
    let last;
    let mut after_stop = 0;
    loop {
        if stop.load(Ordering::SeqCst) {
            after_stop += 1;
            if after_stop > 50 {
                last = None;
                break;
            }
        }
        if !enrolled {
            let r = timed(&lat, "enrol", device.enrol()).await;
            enrolled = r.status().is_success();
            if !enrolled {
                // Revoked and not cleared yet: try again shortly.
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        }
        let r = timed(
            &lat,
            "challenge",
            device.api.post(api::paths::CHALLENGE, &json!({})),
        )
        .await;
        if !r.status().is_success() {
            count_refusal(&errors, "challenge", r).await;
            enrolled = false;
            continue;
        }
        let challenge: api::Challenge = r.json().await.unwrap();
        let claims = posture::attestation::EatClaims::new(
            &device.key,
            &challenge.nonce,
            AUDIENCE,
            &user,
            healthy_report(),
            unix_now(),
            120,
        );
        let r = timed(
            &lat,
            "attest",
            device.submit(device.key.sign_eat(&claims).unwrap()),
        )
        .await;
        if !r.status().is_success() {
            count_refusal(&errors, "attest", r).await;
            enrolled = false;
            continue;
        }
        let wg = tunnel::PrivateKey::generate().public_key();
        let r = timed(&lat, "grant", device.request_grant("echo", &wg)).await;
        if r.status().as_u16() != 201 {
            count_refusal(&errors, "grant", r).await;
            enrolled = false;
            continue;
        }
        let grant: api::Grant = r.json().await.unwrap();
        if stop.load(Ordering::SeqCst) {
            last = Some(grant);
            break;
        }
        rng_state = rng_state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        tokio::time::sleep(Duration::from_millis(200 + (rng_state >> 33) % 800)).await;
        let path = format!("{}/{}", api::paths::GRANTS, grant.id);
        let r = timed(&lat, "close", device.api.delete(&path)).await;
        if r.status().as_u16() != 204 {
            *errors
                .lock()
                .unwrap()
                .entry("close (revoked meanwhile)".into())
                .or_default() += 1;
        }
    }
    (device, last)
}

/// Counts a refusal the devices saw, by call and problem type.
async fn count_refusal(errors: &Mutex<BTreeMap<String, u64>>, call: &str, r: reqwest::Response) {
    let p = problem(r).await;
    let kind = p.type_uri.rsplit('/').next().unwrap_or("").to_owned();
    *errors
        .lock()
        .unwrap()
        .entry(format!("{call} {kind}"))
        .or_default() += 1;
}

fn write_config(path: &Path, cfg: &support::broker::BrokerConfig) {
    std::fs::write(path, toml::to_string(cfg.config()).unwrap()).unwrap();
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("soak: FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), String> {
    let secs = env_u64("SALLYPORT_SOAK_SECS", 600);
    let devices = env_u64("SALLYPORT_SOAK_DEVICES", 50) as usize;
    let issuer = Arc::new(TestIssuer::start().await);
    let echo = tcp_echo().await;
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let cfg = config(&issuer.url, &db_path(dir.path()), echo)
        .http_port(port)
        .udp_port(support::free_port())
        .client_network("100.64.0.0/16")
        .with(|c| {
            c.oidc.jwks_ttl_seconds = 10;
            c.limits.max_open_grants_per_user = 4;
        });
    let cfg_path = dir.path().join("broker.toml");
    write_config(&cfg_path, &cfg);
    let base = format!("http://127.0.0.1:{port}");
    let mut broker = BrokerProcess::start(&cfg_path, &base).await;
    println!(
        "soak: {devices} devices for {secs} s against sallyport-broker (pid {})",
        broker.pid()
    );

    // ---- load ----
    let stop = Arc::new(AtomicBool::new(false));
    let lat: Latencies = Arc::default();
    let errors: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let mut tasks = Vec::new();
    for i in 0..devices {
        tasks.push(tokio::spawn(device_loop(
            base.clone(),
            issuer.clone(),
            format!("user{i:04}"),
            stop.clone(),
            lat.clone(),
            errors.clone(),
        )));
    }
    let admin = client(&base, ADMIN_TOKEN);
    let started = Instant::now();
    let mut samples = Vec::new();
    let mut next_revoke = Instant::now() + Duration::from_secs(15);
    let mut revoked = 0u32;
    while started.elapsed() < Duration::from_secs(secs) {
        samples.push((started.elapsed().as_secs(), sample(broker.pid())));
        if Instant::now() >= next_revoke {
            next_revoke += Duration::from_secs(15);
            // Revoke one active device, then clear it: it enrols again.
            let active: Vec<api::AdminDevice> = admin
                .get(&format!("{}?state=active", api::paths::ADMIN_DEVICES))
                .await
                .json()
                .await
                .unwrap_or_default();
            if let Some(d) = active.get(revoked as usize % active.len().max(1)) {
                let body = json!({"device_id": d.device_id, "reason": "soak"});
                let r = timed(
                    &lat,
                    "admin revoke",
                    admin.post(api::paths::ADMIN_REVOCATIONS, &body),
                )
                .await;
                if r.status().is_success() {
                    revoked += 1;
                }
                let _ = admin.post(api::paths::ADMIN_REVOCATIONS_CLEAR, &body).await;
            }
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    stop.store(true, Ordering::SeqCst);
    let mut ended = Vec::new();
    for t in tasks {
        ended.push(t.await.unwrap());
    }
    samples.push((started.elapsed().as_secs(), sample(broker.pid())));

    let warm = samples
        .iter()
        .find(|(t, _)| *t >= 30)
        .copied()
        .unwrap_or(samples[0]);
    let last = *samples.last().unwrap();
    let max_rss = samples.iter().map(|(_, (r, _))| *r).max().unwrap_or(0);
    let max_fds = samples.iter().map(|(_, (_, f))| *f).max().unwrap_or(0);
    println!();
    println!(
        "| broker | after warm-up ({} s) | end ({} s) | max |",
        warm.0, last.0
    );
    println!("| --- | --- | --- | --- |");
    println!(
        "| RSS (MiB) | {:.1} | {:.1} | {:.1} |",
        warm.1.0 as f64 / 1024.0,
        last.1.0 as f64 / 1024.0,
        max_rss as f64 / 1024.0
    );
    println!("| open fds | {} | {} | {} |", warm.1.1, last.1.1, max_fds);
    println!();
    println!("| call | count | per second | p50 (ms) | p99 (ms) |");
    println!("| --- | --- | --- | --- | --- |");
    let elapsed = started.elapsed().as_secs_f64();
    for (what, mut v) in lat.lock().unwrap().clone() {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        println!(
            "| {what} | {} | {:.1} | {:.1} | {:.1} |",
            v.len(),
            v.len() as f64 / elapsed,
            percentile(&v, 0.5),
            percentile(&v, 0.99)
        );
    }
    println!();
    println!(
        "revocations: {revoked}; refusals seen by devices: {:?}",
        errors.lock().unwrap()
    );
    let rss_growth = last.1.0 as f64 / warm.1.0.max(1) as f64;
    if rss_growth > 1.5 || last.1.1 > warm.1.1 + 20 {
        return Err(format!(
            "resources grew: RSS ×{rss_growth:.2}, fds {} → {}",
            warm.1.1, last.1.1
        ));
    }

    // ---- fault 1: kill -9 and restart ----
    // Each device holds one open grant; close one just before the kill.
    let open: Vec<(TestDevice, api::Grant)> = ended
        .into_iter()
        .filter_map(|(d, g)| g.map(|g| (d, g)))
        .collect();
    let (closer, closed) = &open[0];
    let r = closer
        .api
        .delete(&format!("{}/{}", api::paths::GRANTS, closed.id))
        .await;
    if r.status().as_u16() != 204 {
        return Err(format!("closing a grant before the kill: {}", r.status()));
    }
    let expected: HashSet<String> = open[1..].iter().map(|(_, g)| g.id.clone()).collect();
    let peers_before: Vec<api::GatewayPeer> = admin
        .get(api::paths::ADMIN_GATEWAY_PEERS)
        .await
        .json()
        .await
        .unwrap();
    broker.kill9();
    let t = Instant::now();
    let broker = BrokerProcess::start(&cfg_path, &base).await;
    let restart = t.elapsed();
    let peers_after: Vec<api::GatewayPeer> = admin
        .get(api::paths::ADMIN_GATEWAY_PEERS)
        .await
        .json()
        .await
        .unwrap();
    let keys_after: HashSet<String> = peers_after
        .iter()
        .map(|p| p.public_key.to_string())
        .collect();
    let keys_before: HashSet<String> = peers_before
        .iter()
        .map(|p| p.public_key.to_string())
        .collect();
    let closed_key = closed.client_address.clone();
    let resurrected = peers_after.iter().any(|p| p.client_address == closed_key);
    if keys_after != keys_before || resurrected {
        return Err(format!(
            "after kill -9: {} peers before, {} after; the closed grant's address {} {}",
            keys_before.len(),
            keys_after.len(),
            closed_key,
            if resurrected {
                "came back"
            } else {
                "stayed gone"
            }
        ));
    }
    // Verdicts survived: a new grant without attesting again.
    let (survivor, _) = &open[1];
    let r = survivor
        .request_grant("echo", &tunnel::PrivateKey::generate().public_key())
        .await;
    let verdict_kept = r.status().as_u16() == 201;
    if !verdict_kept {
        return Err(format!(
            "after kill -9 the verdict was lost: {}",
            r.status()
        ));
    }
    println!();
    println!("| fault | result |");
    println!("| --- | --- |");
    println!(
        "| kill -9 with {} grants open, restart | back in {:.1} s; {} of {} grants reinstalled at the gateway, the one closed before the kill stayed closed, verdicts kept (grant without attesting) |",
        expected.len(),
        restart.as_secs_f64(),
        keys_after.len(),
        keys_before.len()
    );

    // ---- fault 2: the issuer's JWKS endpoint goes down ----
    // A call that holds nothing (the access preview), so a long probe hits
    // no per-user limit.
    let probe = &open[2 % open.len()].0;
    let apps_path = format!("{}?device_id={}", api::paths::APPS, probe.id());
    let t = Instant::now();
    issuer.set_down(true);
    let mut first_refusal = None;
    let mut ok_while_down = 0;
    while t.elapsed() < Duration::from_secs(25) {
        let r = probe.api.get(&apps_path).await;
        if r.status().is_success() {
            if first_refusal.is_some() {
                return Err("a call succeeded after the broker had failed closed".into());
            }
            ok_while_down += 1;
        } else {
            let p = problem(r).await;
            if p.kind() != Some(ProblemType::IssuerUnavailable) {
                return Err(format!("JWKS down: unexpected refusal {}", p.type_uri));
            }
            first_refusal.get_or_insert(t.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let Some(refused_after) = first_refusal else {
        return Err(
            "the broker kept accepting tokens with its JWKS endpoint down past the TTL".into(),
        );
    };
    issuer.set_down(false);
    let t = Instant::now();
    loop {
        let r = probe.api.get(&apps_path).await;
        if r.status().is_success() {
            break;
        }
        if t.elapsed() > Duration::from_secs(30) {
            return Err("the broker did not recover when the JWKS endpoint came back".into());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    println!(
        "| JWKS endpoint down (keys cached for 10 s) | {ok_while_down} calls served from the cached keys, then refused `issuer-unavailable` from {:.1} s on; served again {:.1} s after it came back |",
        refused_after.as_secs_f64(),
        t.elapsed().as_secs_f64()
    );
    drop(broker);

    // ---- fault 3: the disk fills ----
    disk_full(&issuer, echo).await?;
    Ok(())
}

async fn disk_full(issuer: &Arc<TestIssuer>, echo: std::net::SocketAddr) -> Result<(), String> {
    if !nix_is_root() {
        println!("| disk full | not run: needs root to mount a small tmpfs |");
        return Ok(());
    }
    let mnt = tempfile::tempdir().unwrap();
    let state: PathBuf = mnt.path().join("fs");
    std::fs::create_dir(&state).unwrap();
    let ok = Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            "size=4m,mode=0700",
            "tmpfs",
            state.to_str().unwrap(),
        ])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        println!("| disk full | not run: mount -t tmpfs failed |");
        return Ok(());
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(state.clone());
    let port = support::free_port();
    let cfg = config(&issuer.url, &state.join("broker.db"), echo)
        .http_port(port)
        .udp_port(support::free_port());
    let cfg_path = mnt.path().join("broker.toml");
    write_config(&cfg_path, &cfg);
    let base = format!("http://127.0.0.1:{port}");
    let broker = BrokerProcess::start(&cfg_path, &base).await;
    let token = issuer.token_with("filler", json!({"exp": unix_now() + 3600}));
    let device = TestDevice::new(client(&base, &token), "filler");
    if !device.enrol().await.status().is_success() {
        return Err("disk-full phase: enrolment failed before the disk filled".into());
    }
    device.attest(healthy_report()).await;
    // Fill the filesystem.
    let filler = state.join("filler");
    let _ = Command::new("dd")
        .args([
            "if=/dev/zero",
            &format!("of={}", filler.display()),
            "bs=64k",
        ])
        .stderr(std::process::Stdio::null())
        .status();
    let mut refusals = BTreeMap::<String, u32>::new();
    let mut issued = 0;
    for _ in 0..20 {
        let r = device
            .request_grant("echo", &tunnel::PrivateKey::generate().public_key())
            .await;
        if r.status().as_u16() == 201 {
            issued += 1;
        } else {
            let p = problem(r).await;
            *refusals
                .entry(format!(
                    "{} {}",
                    p.status,
                    p.type_uri.rsplit('/').next().unwrap_or("")
                ))
                .or_default() += 1;
        }
    }
    let peers: Vec<api::GatewayPeer> = client(&base, ADMIN_TOKEN)
        .get(api::paths::ADMIN_GATEWAY_PEERS)
        .await
        .json()
        .await
        .unwrap_or_default();
    std::fs::remove_file(&filler).unwrap();
    let r = device
        .request_grant("echo", &tunnel::PrivateKey::generate().public_key())
        .await;
    let recovered = r.status().as_u16() == 201;
    println!(
        "| disk full (database on a 4 MiB tmpfs, filled) | {issued} of 20 grant requests succeeded while full, refusals {refusals:?}; gateway peers meanwhile {}; after freeing space: {} |",
        peers.len(),
        if recovered {
            "grants issued again"
        } else {
            "still failing"
        }
    );
    drop(broker);
    if !recovered {
        return Err("the broker did not recover after the disk was freed".into());
    }
    if peers.len() > issued {
        return Err(format!(
            "{} peers at the gateway but only {issued} grants recorded: a grant was not failed closed",
            peers.len()
        ));
    }
    Ok(())
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .map(|v| v.split_whitespace().next() == Some("0"))
        })
        .unwrap_or(false)
}
