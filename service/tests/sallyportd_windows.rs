//! The real `sallyportd.exe` on Windows (CI: under Wine) in console mode,
//! serving its named pipe: a client that expects the serving process's
//! account gets the device identity and a signed attestation whose
//! `local_user` is the caller's SID (from the pipe, never from the
//! request); a client that expects LocalSystem, as the agent does, refuses
//! the same process because it does not run as LocalSystem.
#![cfg(windows)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use posture::attestation::EatClaims;
use service::client::{ClientError, DeviceService};
use service::win_security::{LOCAL_SYSTEM, current_user};

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(pipe: &str, dir: &std::path::Path) -> Daemon {
    let child = Command::new(env!("CARGO_BIN_EXE_sallyportd"))
        .args([
            "--socket",
            pipe,
            "--backend",
            "software",
            "--only",
            "os_version",
        ])
        .arg("--key")
        .arg(dir.join("device-key.p8"))
        .arg("--cache-dir")
        .arg(dir.join("cache"))
        .arg("--log-dir")
        .arg(dir.join("logs"))
        .arg("--update-state-dir")
        .arg(dir.join("update"))
        .args(["--update-check-secs", "0"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn sallyportd.exe");
    Daemon(child)
}

#[tokio::test]
async fn the_pipe_serves_the_caller_by_sid_and_the_client_checks_who_serves() {
    let dir = tempfile::tempdir().unwrap();
    let pipe = format!(r"\\.\pipe\sallyportd-test-{}", std::process::id());
    let _daemon = start(&pipe, dir.path());
    let me = current_user().unwrap().to_string();
    let as_me = DeviceService::Pipe {
        path: PathBuf::from(&pipe),
        service_sid: me.clone(),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let info = loop {
        match as_me.device_info().await {
            Ok(info) => break info,
            Err(ClientError::NotRunning { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(info.key_assurance, "software");

    let signed = as_me
        .attest("AAAAAAAAAAAAAAAAAAAAAA", "alice", "sallyport-broker")
        .await
        .unwrap();
    assert_eq!(signed.device_id, info.device_id);
    let payload = signed.token.split('.').nth(1).unwrap();
    let claims: EatClaims = serde_json::from_slice(&B64URL.decode(payload).unwrap()).unwrap();
    assert_eq!(claims.local_user.as_deref(), Some(me.as_str()));
    assert_eq!(claims.local_uid, None);

    // The agent's default: the service must be LocalSystem. This process
    // is not (Wine runs everything as one user), so it is refused.
    if me != LOCAL_SYSTEM {
        let err = DeviceService::socket(&pipe)
            .device_info()
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ClientError::Impostor { reason, .. } if reason.contains(&me)),
            "{err}"
        );
    }
}
