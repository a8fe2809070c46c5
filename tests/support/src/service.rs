//! A real `sallyportd` process for end-to-end tests: the binary of the
//! `sallyport-service` package, on a temporary socket, key file and cache.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use agent::device_service::client::DeviceService;

/// The `sallyportd` binary next to the running test's target directory,
/// built with cargo first when this test run has not built it (a
/// `cargo test -p sallyport-e2e` builds only its own package's binaries).
pub fn sallyportd_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<test> -> target/<profile>/sallyportd
    let profile_dir = exe.parent().and_then(Path::parent).unwrap().to_owned();
    let binary = profile_dir.join("sallyportd");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    // Always asked: a no-op when up to date, and never a stale binary.
    let status = Command::new(cargo)
        .current_dir(&workspace)
        .args(["build", "-p", "sallyport-service", "--bin", "sallyportd"])
        .env("CARGO_TARGET_DIR", profile_dir.parent().unwrap())
        .status()
        .unwrap();
    assert!(status.success(), "building sallyportd failed");
    assert!(
        binary.exists(),
        "{} missing after the build",
        binary.display()
    );
    binary
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
    /// (comma-separated check ids).
    pub fn start(dir: &Path, only: &str) -> Sallyportd {
        let socket = dir.join("run/sallyportd.sock");
        let key = dir.join("state/device-key.p8");
        let child = Command::new(sallyportd_binary())
            .arg("--socket")
            .arg(&socket)
            .arg("--key")
            .arg(&key)
            .arg("--cache-dir")
            .arg(dir.join("cache"))
            .args(["--backend", "software", "--only", only])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !socket.exists() {
            assert!(
                Instant::now() < deadline,
                "sallyportd did not bind its socket"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Sallyportd { child, socket, key }
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
