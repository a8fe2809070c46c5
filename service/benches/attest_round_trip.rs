//! The attestation round trip as the agent makes it through the device
//! service, with the key in a TPM (swtpm) against the software key: DPoP
//! proof from `sallyportd` → `POST /v1/attestations/challenge` → EAT from
//! `sallyportd` (its cached posture, signed by its key) → DPoP proof →
//! `POST /v1/attestations` (the broker verifies the proof and the EAT and
//! evaluates its policy) → verdict. Three signatures by the service's key
//! per round, each over the service's Unix socket with its peer checks.
//!
//! Real parts: two `sallyportd` processes (this package's binary, built
//! with feature `tpm`), one `--backend tpm` on a per-run swtpm (loopback
//! TCP), one `--backend software`; the reference broker over HTTP in this
//! process (the broker tests' issuer and configuration, enrolment `open`,
//! so both keys are active at once); the client side is what
//! `agent::device_key::DeviceHolder::Service` does (service client, then
//! HTTP). The posture the service signs is measured once and reused
//! (`--posture-max-age`), so a round is signing, IPC and the broker.
//!
//! The ratio is printed at the end (mean of a separate timed loop of each,
//! interleaved).
//!
//! Run: `cargo bench -p sallyport-service --features tpm --bench attest_round_trip`
//! (needs swtpm: Debian `swtpm swtpm-tools`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

#[path = "../../broker/tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use broker::api::{self, DeviceStatus};
use broker::server::config::EnrolmentMode;
use common::{AUDIENCE, Auth, Client, Env};
use criterion::{Criterion, criterion_group, criterion_main};
use service::client::DeviceService;
use support::tpm::Swtpm;

/// A running `sallyportd`; killed on drop.
struct Daemon {
    child: Child,
    socket: PathBuf,
}

impl Daemon {
    fn start(dir: &Path, backend: &[&str]) -> Daemon {
        let socket = dir.join("run/sallyportd.sock");
        let child = Command::new(env!("CARGO_BIN_EXE_sallyportd"))
            .arg("--socket")
            .arg(&socket)
            .arg("--key")
            .arg(dir.join("state/device-key.p8"))
            .arg("--cache-dir")
            .arg(dir.join("cache"))
            .args(backend)
            .args(["--only", "os_version", "--posture-max-age", "3600"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !socket.exists() {
            assert!(Instant::now() < deadline, "sallyportd did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Daemon { child, socket }
    }

    fn link(&self) -> DeviceService {
        DeviceService::Socket {
            path: self.socket.clone(),
            service_uid: nix::unistd::geteuid().as_raw(),
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `POST` of `body` to `path`, with a DPoP proof made by the service.
async fn post(
    client: &Client,
    link: &DeviceService,
    path: &str,
    body: &serde_json::Value,
) -> reqwest::Response {
    let ath = posture::dpop::access_token_hash(&client.token);
    let proof = link
        .sign_dpop("POST", &client.url(path), &ath, None)
        .await
        .unwrap();
    client
        .send(
            reqwest::Method::POST,
            path,
            Some(body),
            Auth::Dpop(Some(proof.token)),
        )
        .await
}

/// Enrols the service's key (with its evidence, if any).
async fn enrol(client: &Client, link: &DeviceService) {
    let info = link.device_info().await.unwrap();
    let evidence = link.key_attestation().await.unwrap().evidence;
    let mut request = api::EnrolRequest {
        public_jwk: info.public_jwk,
        name: Some(info.key_assurance),
        key_attestation: evidence,
        activation_secret: None,
    };
    let body = serde_json::to_value(&request).unwrap();
    let mut r = post(client, link, api::paths::DEVICES, &body).await;
    if r.status() == 403 {
        // `hardware` mode: the TPM activates the broker's credential.
        let problem: api::Problem = r.json().await.unwrap();
        let challenge = problem.key_activation.expect("a key-activation challenge");
        request.activation_secret = Some(link.activate_credential(&challenge).await.unwrap());
        let body = serde_json::to_value(&request).unwrap();
        r = post(client, link, api::paths::DEVICES, &body).await;
    }
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let device: api::Device = r.json().await.unwrap();
    assert_eq!(device.status, DeviceStatus::Active);
}

/// One round: challenge, EAT from the service, submission, verdict.
async fn round_trip(client: &Client, link: &DeviceService) -> api::Verdict {
    let r = post(client, link, api::paths::CHALLENGE, &serde_json::json!({})).await;
    assert_eq!(r.status(), 200);
    let challenge: api::Challenge = r.json().await.unwrap();
    let eat = link
        .attest(&challenge.nonce, "alice", AUDIENCE)
        .await
        .unwrap()
        .token;
    let body = serde_json::to_value(api::AttestationRequest { eat }).unwrap();
    let r = post(client, link, api::paths::ATTESTATIONS, &body).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    r.json().await.unwrap()
}

fn bench(c: &mut Criterion) {
    let Some(tpm) = Swtpm::start() else { return };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let tpm_daemon = Daemon::start(dirs[0].path(), &["--backend", "tpm", "--tcti", &tpm.tcti()]);
    let software_daemon = Daemon::start(dirs[1].path(), &["--backend", "software"]);
    let (tpm_link, software_link) = (tpm_daemon.link(), software_daemon.link());
    let env = runtime.block_on(Env::start_with(|config, _| {
        config.enrolment(EnrolmentMode::Open)
    }));
    let client = env.client(&env.issuer.token("alice"));
    runtime.block_on(async {
        assert_eq!(tpm_link.device_info().await.unwrap().key_assurance, "tpm");
        enrol(&client, &tpm_link).await;
        enrol(&client, &software_link).await;
        // Warm: posture measured once, connections open.
        round_trip(&client, &tpm_link).await;
        round_trip(&client, &software_link).await;
    });

    let mut group = c.benchmark_group("attest_round_trip");
    group.sample_size(30);
    group.bench_function("tpm (swtpm)", |b| {
        b.iter(|| runtime.block_on(round_trip(&client, &tpm_link)))
    });
    group.bench_function("software", |b| {
        b.iter(|| runtime.block_on(round_trip(&client, &software_link)))
    });
    group.finish();

    let rounds: u32 = std::env::var("SALLYPORT_BENCH_ROUNDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200);
    let (mut tpm_total, mut software_total) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..rounds {
        for (link, total) in [
            (&tpm_link, &mut tpm_total),
            (&software_link, &mut software_total),
        ] {
            let start = Instant::now();
            runtime.block_on(round_trip(&client, link));
            *total += start.elapsed();
        }
    }
    let (tpm_mean, software_mean) = (tpm_total / rounds, software_total / rounds);
    eprintln!(
        "attest round trip ({rounds} rounds each, interleaved): tpm (swtpm) {tpm_mean:?}, \
         software {software_mean:?}, ratio {:.2}x",
        tpm_mean.as_secs_f64() / software_mean.as_secs_f64()
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
