//! The real `sallyportd` binary with `--backend tpm` on a software TPM (one
//! swtpm per test): the key is made in the TPM, signs EATs that say so, and
//! comes with evidence the broker's verifier accepts; a restart finds the
//! same key; after a TPM clear the service makes a new one (with evidence
//! of its own) and keeps that one across restarts. `auto` takes the TPM
//! when one answers and the software key when none does; `tpm` without a
//! TPM fails to start.
//!
//! swtpm serves one client at a time and the service keeps its connection:
//! the TPM is cleared while the service is stopped (as a firmware clear
//! happens across a reboot), and, through a front that lets several
//! clients take turns (`Swtpm::shared`, as `/dev/tpmrm0` does), while it
//! runs: the service notices (`KeyBackend::check`), makes a new key and
//! says so (`key_replaced_at`).

#![cfg(all(feature = "tpm", target_os = "linux"))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use broker::server::keyattest::{self, TrustAnchors};
use p256::ecdsa::signature::Verifier as _;
use posture::attestation::{EatClaims, PublicJwk};
use service::client::DeviceService;
use support::tpm::Swtpm;

/// A running `sallyportd`; killed on drop.
struct Daemon {
    child: Child,
    socket: PathBuf,
}

fn command(dir: &Path, backend: &str, tcti: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sallyportd"));
    command
        .arg("--socket")
        .arg(dir.join("run/sallyportd.sock"))
        .arg("--key")
        .arg(dir.join("state/device-key.p8"))
        .arg("--cache-dir")
        .arg(dir.join("cache"))
        .arg("--log-dir")
        .arg(dir.join("logs"))
        .arg("--update-state-dir")
        .arg(dir.join("update"))
        .args(["--update-check-secs", "0"])
        .args(["--backend", backend, "--tcti", tcti, "--only", "os_version"]);
    command
}

impl Daemon {
    fn start(dir: &Path, backend: &str, tcti: &str) -> Daemon {
        let socket = dir.join("run/sallyportd.sock");
        let _ = std::fs::remove_file(&socket);
        let mut child = command(dir, backend, tcti)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn sallyportd");
        let deadline = Instant::now() + Duration::from_secs(30);
        // Accepting, not only bound: the file exists from `bind`, a moment
        // before `listen`, when a connection is still refused.
        while std::os::unix::net::UnixStream::connect(&socket).is_err() {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("sallyportd exited before serving: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "sallyportd did not bind its socket"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Daemon { child, socket }
    }

    fn client(&self) -> DeviceService {
        DeviceService::Socket {
            path: self.socket.clone(),
            service_uid: nix::unistd::geteuid().as_raw(),
        }
    }

    /// SIGTERM, as systemd stops it; waits until it has exited (and so
    /// closed its TPM connection: swtpm serves one client at a time).
    fn stop(mut self) {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        let status = self.child.wait().unwrap();
        assert!(status.success(), "sallyportd stopped with {status}");
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Checks what the service says about its key, and returns it: held by the
/// TPM, with evidence the broker's verifier accepts for this TPM's CA, and
/// EATs that say `tpm` and verify with the key.
async fn tpm_key(client: &DeviceService, tpm: &Swtpm) -> PublicJwk {
    let info = client.device_info().await.unwrap();
    assert_eq!(info.key_assurance, "tpm");
    assert_eq!(info.device_id, info.public_jwk.thumbprint());

    let answer = client.key_attestation().await.unwrap();
    assert_eq!(answer.device_id, info.device_id);
    assert_eq!(answer.note, None);
    let evidence = answer.evidence.expect("a TPM key comes with evidence");
    assert_eq!(evidence.format, "tpm2-certify");
    let anchors = TrustAnchors::load(&[tpm.issuer_ca()]).unwrap();
    keyattest::verify(&evidence, &info.public_jwk, &anchors, now()).unwrap();

    let signed = client
        .attest("AAAAAAAAAAAAAAAAAAAAAA", "alice", "sallyport-broker")
        .await
        .unwrap();
    assert_eq!(signed.device_id, info.device_id);
    let parts: Vec<&str> = signed.token.split('.').collect();
    let claims: EatClaims = serde_json::from_slice(&B64URL.decode(parts[1]).unwrap()).unwrap();
    assert_eq!(claims.key_assurance.as_deref(), Some("tpm"));
    let vk =
        p256::ecdsa::VerifyingKey::from_sec1_bytes(&info.public_jwk.to_sec1().unwrap()).unwrap();
    let sig = p256::ecdsa::Signature::from_slice(&B64URL.decode(parts[2]).unwrap()).unwrap();
    vk.verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &sig)
        .unwrap();
    info.public_jwk
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tpm_key_survives_a_restart_and_is_replaced_after_a_tpm_clear() {
    let Some(tpm) = Swtpm::start() else { return };
    let dir = tempfile::tempdir().unwrap();

    let daemon = Daemon::start(dir.path(), "tpm", &tpm.tcti());
    let first = tpm_key(&daemon.client(), &tpm).await;
    assert!(
        !dir.path().join("state/device-key.p8").exists(),
        "no key file: the key lives in the TPM"
    );

    // A restart finds the same key in the TPM: the same JWK, the same
    // device id.
    daemon.stop();
    let daemon = Daemon::start(dir.path(), "tpm", &tpm.tcti());
    assert_eq!(tpm_key(&daemon.client(), &tpm).await, first);

    // The TPM is cleared (the owner hierarchy's objects are gone): the
    // service makes a new key, with its own evidence.
    daemon.stop();
    tpm.clear();
    let daemon = Daemon::start(dir.path(), "tpm", &tpm.tcti());
    let second = tpm_key(&daemon.client(), &tpm).await;
    assert_ne!(second, first);

    // ... and keeps that one.
    daemon.stop();
    let daemon = Daemon::start(dir.path(), "tpm", &tpm.tcti());
    assert_eq!(tpm_key(&daemon.client(), &tpm).await, second);
    daemon.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tpm_cleared_while_the_service_runs_gets_a_new_key() {
    let Some(tpm) = Swtpm::start() else { return };
    let shared = tpm.shared();
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), "tpm", &shared.tcti());
    let client = daemon.client();
    let first = tpm_key(&client, &tpm).await;
    assert!(
        client
            .device_info()
            .await
            .unwrap()
            .key_replaced_at
            .is_none()
    );

    shared.clear();
    let info = client.device_info().await.unwrap();
    assert_ne!(info.public_jwk, first, "a new key after the clear");
    assert!(info.key_replaced_at.is_some(), "{info:?}");
    // The new key is a TPM key with evidence of its own, and signs.
    assert_eq!(tpm_key(&client, &tpm).await, info.public_jwk);

    // A restart keeps the new key.
    daemon.stop();
    let daemon = Daemon::start(dir.path(), "tpm", &shared.tcti());
    assert_eq!(tpm_key(&daemon.client(), &tpm).await, info.public_jwk);
    daemon.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_takes_the_tpm_when_one_answers_else_the_software_key() {
    let Some(tpm) = Swtpm::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), "auto", &tpm.tcti());
    tpm_key(&daemon.client(), &tpm).await;
    daemon.stop();

    // Nothing listens on this port: auto falls back, and says so.
    let nothing = format!("swtpm:host=127.0.0.1,port={}", support::free_port());
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), "auto", &nothing);
    let client = daemon.client();
    assert_eq!(
        client.device_info().await.unwrap().key_assurance,
        "software"
    );
    let answer = client.key_attestation().await.unwrap();
    assert!(answer.evidence.is_none());
    assert!(
        answer
            .note
            .as_deref()
            .is_some_and(|n| n.contains("no hardware evidence")),
        "{answer:?}"
    );
    daemon.stop();
}

#[test]
fn backend_tpm_without_a_tpm_does_not_start() {
    let nothing = format!("swtpm:host=127.0.0.1,port={}", support::free_port());
    let dir = tempfile::tempdir().unwrap();
    let out = command(dir.path(), "tpm", &nothing).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("opening the device key in the TPM at swtpm:"),
        "{stderr}"
    );
    assert!(
        !dir.path().join("state/device-key.p8").exists(),
        "no quiet software key"
    );
}
