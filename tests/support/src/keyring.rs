//! A real Secret Service for tests: a private `dbus-daemon` session bus
//! with `gnome-keyring-daemon` on it, its login keyring unlocked, all in a
//! temporary home. Both die with the value, so tests never touch the
//! developer's own keyring.

use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::prereq;

/// A child process killed (and reaped) on drop.
#[derive(Debug)]
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running private Secret Service.
#[derive(Debug)]
pub struct SecretService {
    /// `DBUS_SESSION_BUS_ADDRESS` of the private bus.
    pub address: String,
    _daemon: Killed,
    _bus: Killed,
    _home: tempfile::TempDir,
}

impl SecretService {
    /// Starts one, or returns `None` where its programs are missing (a
    /// failure instead under CI or as root: [`prereq::missing`]).
    pub fn start() -> Option<SecretService> {
        for program in ["dbus-daemon", "gnome-keyring-daemon", "dbus-send"] {
            if !prereq::have(program) {
                prereq::missing(&format!(
                    "{program} is not installed (apt-get install dbus-daemon dbus-bin gnome-keyring)"
                ));
                return None;
            }
        }
        let home = tempfile::tempdir().unwrap();
        let mut bus = Command::new("dbus-daemon")
            .args(["--session", "--print-address=1", "--nofork"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(bus.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let bus = Killed(bus);
        let address = line.trim().to_owned();
        assert!(address.starts_with("unix:"), "dbus address {address:?}");
        let mut daemon = Command::new("gnome-keyring-daemon")
            .args(["--foreground", "--unlock", "--components=secrets"])
            .env("DBUS_SESSION_BUS_ADDRESS", &address)
            .env("HOME", home.path())
            .env("XDG_RUNTIME_DIR", home.path())
            .env("XDG_DATA_HOME", home.path().join("data"))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // The login keyring's password; it is created and unlocked with it.
        let mut stdin = daemon.stdin.take().unwrap();
        stdin.write_all(b"sallyport-test").unwrap();
        drop(stdin);
        let daemon = Killed(daemon);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !name_has_owner(&address, "org.freedesktop.secrets") {
            assert!(Instant::now() < deadline, "gnome-keyring did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(SecretService {
            address,
            _daemon: daemon,
            _bus: bus,
            _home: home,
        })
    }
}

fn name_has_owner(address: &str, name: &str) -> bool {
    Command::new("dbus-send")
        .args([
            &format!("--bus={address}"),
            "--print-reply",
            "--dest=org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus.NameHasOwner",
            &format!("string:{name}"),
        ])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("boolean true"))
        .unwrap_or(false)
}
