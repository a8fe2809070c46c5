//! The real `sallyportd` binary, as a process on a temporary socket and key
//! path: it answers device info and attestations, keeps its key across a
//! restart, makes a new one when the key file is deleted (recovery), keeps
//! the key file from other users, and the client refuses a service that
//! runs as the wrong account.

// Test scaffolding: a setup failure must abort loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// The Unix socket service (Windows' named pipe is not built yet).
#![cfg(unix)]

use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use p256::ecdsa::signature::Verifier as _;
use posture::attestation::{EAT_TYP, EatClaims, EatHeader};
use service::client::{ClientError, DeviceService};

/// A running `sallyportd`; killed on drop.
struct Daemon {
    child: Child,
    socket: PathBuf,
}

impl Daemon {
    fn start(dir: &Path, as_uid: Option<u32>) -> Daemon {
        let socket = dir.join("run/sallyportd.sock");
        let binary = match as_uid {
            // Another account may not reach the build's binary (CI builds
            // under root's 0700 home): it runs a copy in `dir`.
            Some(_) => {
                let copy = dir.join("sallyportd");
                std::fs::copy(env!("CARGO_BIN_EXE_sallyportd"), &copy).unwrap();
                std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
                copy
            }
            None => PathBuf::from(env!("CARGO_BIN_EXE_sallyportd")),
        };
        let mut command = Command::new(binary);
        command
            .arg("--socket")
            .arg(&socket)
            .arg("--key")
            .arg(dir.join("state/device-key.p8"))
            .arg("--cache-dir")
            .arg(dir.join("cache"))
            .arg("--log-dir")
            .arg(dir.join("logs"))
            .arg("--update-state-dir")
            .arg(dir.join("update"))
            .args(["--update-check-secs", "0"])
            .args(["--backend", "software", "--only", "os_version"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        if let Some(uid) = as_uid {
            command.uid(uid).gid(uid);
        }
        let child = command.spawn().expect("spawn sallyportd");
        let daemon = Daemon { child, socket };
        let deadline = Instant::now() + Duration::from_secs(20);
        // Accepting, not only bound: the file exists from `bind`, a moment
        // before `listen`, when a connection is still refused.
        while std::os::unix::net::UnixStream::connect(&daemon.socket).is_err() {
            assert!(
                Instant::now() < deadline,
                "sallyportd did not bind its socket"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        daemon
    }

    fn client(&self) -> DeviceService {
        DeviceService::Socket {
            path: self.socket.clone(),
            service_uid: nix::unistd::geteuid().as_raw(),
        }
    }

    fn stop(mut self) {
        let _ = nix_kill(self.child.id());
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// SIGTERM, the way systemd stops the service.
fn nix_kill(pid: u32) -> std::io::Result<()> {
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()?;
    assert!(status.success());
    Ok(())
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn decode<T: serde::de::DeserializeOwned>(part: &str) -> T {
    serde_json::from_slice(&B64URL.decode(part).unwrap()).unwrap()
}

#[tokio::test]
async fn device_info_attest_restart_and_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), None);
    let client = daemon.client();

    let info = client.device_info().await.unwrap();
    assert_eq!(info.key_assurance, "software");
    assert_eq!(info.device_id, info.public_jwk.thumbprint());
    assert!(info.key_replaced_at.is_none());
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir.path().join("state/device-key.p8")), 0o600);
    assert_eq!(mode(&dir.path().join("state")), 0o700);
    assert_eq!(mode(&daemon.socket), 0o666, "any local user may connect");
    assert_eq!(mode(&dir.path().join("run")), 0o755);

    // An EAT over the service's own posture, naming who asked.
    let signed = client
        .attest("AAAAAAAAAAAAAAAAAAAAAA", "alice", "sallyport-broker")
        .await
        .unwrap();
    assert_eq!(signed.device_id, info.device_id);
    let parts: Vec<&str> = signed.token.split('.').collect();
    let header: EatHeader = decode(parts[0]);
    assert_eq!(header.typ, EAT_TYP);
    assert_eq!(header.kid, info.device_id);
    let claims: EatClaims = decode(parts[1]);
    assert_eq!(claims.key_assurance.as_deref(), Some("software"));
    assert_eq!(claims.local_uid, Some(nix::unistd::geteuid().as_raw()));
    assert_eq!(claims.sub, "alice");
    assert_eq!(claims.swname, "sallyportd");
    assert!(
        claims
            .posture
            .checks
            .iter()
            .any(|c| c.id.as_str() == "os_version")
    );
    let vk =
        p256::ecdsa::VerifyingKey::from_sec1_bytes(&info.public_jwk.to_sec1().unwrap()).unwrap();
    let sig = p256::ecdsa::Signature::from_slice(&B64URL.decode(parts[2]).unwrap()).unwrap();
    vk.verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &sig)
        .unwrap();

    // A DPoP proof with the service's own iat and jti.
    let ath = posture::dpop::access_token_hash("token");
    let proof = client
        .sign_dpop("POST", "http://127.0.0.1:1/v1/grants?x=1", &ath, None)
        .await
        .unwrap();
    let claims: posture::dpop::DpopClaims = decode(proof.token.split('.').nth(1).unwrap());
    assert_eq!(claims.htu, "http://127.0.0.1:1/v1/grants");
    assert_eq!(claims.ath, ath);

    // A restart keeps the key.
    daemon.stop();
    let daemon = Daemon::start(dir.path(), None);
    let client = daemon.client();
    assert_eq!(
        client.device_info().await.unwrap().device_id,
        info.device_id
    );

    // The key file is deleted: the service notices, makes a new key, says so.
    std::fs::remove_file(dir.path().join("state/device-key.p8")).unwrap();
    let recovered = client.device_info().await.unwrap();
    assert_ne!(recovered.device_id, info.device_id);
    assert!(recovered.key_replaced_at.is_some(), "{recovered:?}");
    assert!(dir.path().join("state/device-key.p8").exists());
    let signed = client
        .attest("AAAAAAAAAAAAAAAAAAAAAA", "alice", "sallyport-broker")
        .await
        .unwrap();
    assert_eq!(signed.device_id, recovered.device_id);
    // ... and keeps the new one across a restart.
    daemon.stop();
    let daemon = Daemon::start(dir.path(), None);
    assert_eq!(
        daemon.client().device_info().await.unwrap().device_id,
        recovered.device_id
    );
}

#[tokio::test]
async fn a_bad_request_gets_a_clear_error_over_the_socket() {
    use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), None);
    let stream = tokio::net::UnixStream::connect(&daemon.socket)
        .await
        .unwrap();
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    // Unknown request: an error, and the connection stays usable.
    write
        .write_all(b"{\"op\":\"sign_bytes\",\"bytes\":\"AAAA\"}\n")
        .await
        .unwrap();
    let reply = lines.next_line().await.unwrap().unwrap();
    assert!(reply.contains("bad-request"), "{reply}");
    write
        .write_all(b"{\"op\":\"device_info\"}\n")
        .await
        .unwrap();
    let reply = lines.next_line().await.unwrap().unwrap();
    assert!(reply.contains("\"device_info\""), "{reply}");
    // An oversized line: an error, then the service closes.
    let big = vec![b'x'; service::protocol::MAX_REQUEST_LINE + 10];
    let _ = write.write_all(&big).await;
    let reply = lines.next_line().await.unwrap().unwrap();
    assert!(reply.contains("too-large"), "{reply}");
    assert!(lines.next_line().await.unwrap().is_none(), "closed");
}

#[tokio::test]
async fn another_user_cannot_read_the_key() {
    if !is_root() {
        support::prereq::missing("reading the key as another user needs root (setuid to nobody)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), None);
    daemon.client().device_info().await.unwrap();
    let key = dir.path().join("state/device-key.p8");
    let meta = std::fs::metadata(&key).unwrap();
    assert_eq!(
        std::os::unix::fs::MetadataExt::uid(&meta),
        0,
        "owned by root"
    );
    // Even with every directory on the way open, the file itself refuses.
    for d in [dir.path(), &dir.path().join("state")] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let out = Command::new("cat")
        .arg(&key)
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Permission denied"), "{stderr}");
    assert!(out.stdout.is_empty());
    // With the directory as the service made it (0700), not even its
    // listing is visible.
    std::fs::set_permissions(
        dir.path().join("state"),
        std::fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    let out = Command::new("ls")
        .arg(dir.path().join("state"))
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[tokio::test]
async fn the_client_refuses_a_service_running_as_another_user() {
    if !is_root() {
        support::prereq::missing("running a look-alike service as nobody needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::chown(dir.path(), Some(65534), Some(65534)).unwrap();
    // A user's process posing as the service on the expected path.
    let fake = Daemon::start(dir.path(), Some(65534));
    let root_client = DeviceService::socket(fake.socket.clone());
    let err = root_client.device_info().await.unwrap_err();
    assert!(
        matches!(&err, ClientError::Impostor { reason, .. } if reason.contains("owned by uid 65534")),
        "{err}"
    );
    // Even when the socket file is root's, the process answering is not.
    std::os::unix::fs::chown(&fake.socket, Some(0), None).unwrap();
    let err = root_client.device_info().await.unwrap_err();
    assert!(
        matches!(&err, ClientError::Impostor { reason, .. } if reason.contains("runs as uid 65534")),
        "{err}"
    );
}

/// Without TPM support built in, asking for the TPM is an error at start,
/// never a quiet software key.
#[cfg(not(feature = "tpm"))]
#[test]
fn backend_tpm_without_tpm_support_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sallyportd"))
        .arg("--socket")
        .arg(dir.path().join("run/sallyportd.sock"))
        .arg("--key")
        .arg(dir.path().join("state/device-key.p8"))
        .arg("--log-dir")
        .arg(dir.path().join("logs"))
        .arg("--update-state-dir")
        .arg(dir.path().join("update"))
        .args(["--update-check-secs", "0"])
        .args(["--backend", "tpm"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("built without TPM support"), "{stderr}");
    assert!(!dir.path().join("state/device-key.p8").exists());
    assert!(!dir.path().join("run/sallyportd.sock").exists());
}
