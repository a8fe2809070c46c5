//! A real `sallyportd` process for end-to-end tests: the binary of the
//! `sallyport-service` package, on a temporary socket, key file and cache,
//! with the software key or (built with feature `tpm`) a TPM's.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use agent::device_service::client::DeviceService;

use crate::binary::BUILD;
use crate::prereq;

/// The `sallyportd` binary next to the running test's target directory,
/// built with cargo first when this test run has not built it (see
/// [`crate::binary`]).
pub fn sallyportd_binary() -> PathBuf {
    let _build = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    build(&[])
}

fn build(features: &[&str]) -> PathBuf {
    crate::binary::build_locked("sallyport-service", "sallyportd", features)
}

/// `sallyportd` built with feature `tpm` (tss-esapi, linking the system's
/// tpm2-tss), copied to `target/<profile>/sallyportd-tpm`. `None` when
/// tpm2-tss's development files are missing and the test may skip (see
/// [`prereq::missing`]: under CI or root it fails instead).
pub fn sallyportd_tpm_binary() -> Option<PathBuf> {
    let have_tss = Command::new("pkg-config")
        .args(["--exists", "tss2-esys"])
        .status()
        .is_ok_and(|s| s.success());
    if !have_tss {
        prereq::missing(
            "tpm2-tss development files are missing, so sallyportd cannot be built with \
             its TPM backend (Debian: apt-get install libtss2-dev pkg-config)",
        );
        return None;
    }
    let _build = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let built = build(&["--features", "tpm"]);
    let copy = built.with_file_name("sallyportd-tpm");
    std::fs::copy(&built, &copy).unwrap();
    // Put the default build back at `target/<profile>/sallyportd`: other
    // test binaries run later in the same `cargo test` take it from there
    // (`CARGO_BIN_EXE_sallyportd`), and one of them checks that a build
    // without TPM support refuses `--backend tpm`.
    build(&[]);
    Some(copy)
}

/// A running `sallyportd`; killed on drop.
#[derive(Debug)]
pub struct Sallyportd {
    child: Child,
    /// Its socket.
    pub socket: PathBuf,
    /// Its key file.
    pub key: PathBuf,
}

impl Sallyportd {
    /// Starts it with its files under `dir`, measuring only `only`
    /// (comma-separated check ids), with the software key.
    pub fn start(dir: &Path, only: &str) -> Sallyportd {
        Self::spawn(&sallyportd_binary(), dir, only, &["--backend", "software"])
    }

    /// Starts it with its key in the TPM at `tcti` (a
    /// [`crate::tpm::Swtpm::tcti`]); `None` when it cannot be built here
    /// and the test may skip ([`sallyportd_tpm_binary`]).
    pub fn start_tpm(dir: &Path, only: &str, tcti: &str) -> Option<Sallyportd> {
        let binary = sallyportd_tpm_binary()?;
        Some(Self::spawn(
            &binary,
            dir,
            only,
            &["--backend", "tpm", "--tcti", tcti],
        ))
    }

    fn spawn(binary: &Path, dir: &Path, only: &str, backend: &[&str]) -> Sallyportd {
        let socket = dir.join("run/sallyportd.sock");
        // A stopped service leaves its socket file behind.
        let _ = std::fs::remove_file(&socket);
        let key = dir.join("state/device-key.p8");
        let mut child = Command::new(binary)
            .arg("--socket")
            .arg(&socket)
            .arg("--key")
            .arg(&key)
            .arg("--cache-dir")
            .arg(dir.join("cache"))
            .arg("--log-dir")
            .arg(dir.join("logs"))
            .arg("--update-state-dir")
            .arg(dir.join("update"))
            .args(["--update-check-secs", "0"])
            .args(backend)
            .args(["--only", only])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        // Accepting, not only bound: the file exists from `bind`, a moment
        // before `listen`, when a connection is still refused.
        while std::os::unix::net::UnixStream::connect(&socket).is_err() {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("sallyportd {backend:?} exited before serving: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "sallyportd did not bind its socket"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Sallyportd { child, socket, key }
    }

    /// Stops it and waits until it has exited (so a software TPM, which
    /// serves one client at a time, is free for the next).
    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// A client that requires the service to run as this test's account
    /// (root in CI, as in production).
    pub fn link(&self) -> DeviceService {
        DeviceService::Socket {
            path: self.socket.clone(),
            service_uid: nix::unistd::geteuid().as_raw(),
        }
    }
}

impl Drop for Sallyportd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
