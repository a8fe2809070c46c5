//! A software TPM 2.0 per test: `swtpm` on two loopback ports, manufactured
//! by `swtpm_setup --create-ek-cert` with EK certificates from a CA made for
//! this TPM alone (a private `swtpm-localca.conf`), so no test depends on
//! the machine's `/var/lib/swtpm-localca` or on another test's TPM.
//!
//! Debian: `swtpm swtpm-tools` (and `tpm2-tools` for [`Swtpm::clear`]).

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::prereq;

/// A running swtpm; killed (and its state removed) on drop.
#[derive(Debug)]
pub struct Swtpm {
    dir: tempfile::TempDir,
    child: Child,
    port: u16,
}

impl Swtpm {
    /// Manufactures and starts a TPM. `None` when swtpm is not installed
    /// and the test may skip (see [`prereq::missing`]: in CI or as root it
    /// panics instead).
    pub fn start() -> Option<Swtpm> {
        for program in ["swtpm", "swtpm_setup", "swtpm_localca", "certtool"] {
            if !prereq::have(program) {
                prereq::missing(&format!(
                    "{program} is not installed (Debian: apt-get install swtpm swtpm-tools)"
                ));
                return None;
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for sub in ["ca", "state"] {
            std::fs::create_dir(root.join(sub)).unwrap();
        }
        let ca = root.join("ca");
        let localca = root.join("swtpm-localca.conf");
        write(
            &localca,
            &format!(
                "statedir = {ca}\nsigningkey = {ca}/signkey.pem\nissuercert = {ca}/issuercert.pem\ncertserial = {ca}/certserial\n",
                ca = ca.display()
            ),
        );
        let options = root.join("swtpm-localca.options");
        write(
            &options,
            "--platform-manufacturer Sallyport\n--platform-version 2.1\n--platform-model test\n",
        );
        let setup = root.join("swtpm_setup.conf");
        write(
            &setup,
            &format!(
                "create_certs_tool = /usr/bin/swtpm_localca\ncreate_certs_tool_config = {}\ncreate_certs_tool_options = {}\nactive_pcr_banks = sha256\n",
                localca.display(),
                options.display()
            ),
        );
        let out = Command::new("swtpm_setup")
            .args(["--tpm2", "--tpmstate"])
            .arg(root.join("state"))
            .args([
                "--create-ek-cert",
                "--create-platform-cert",
                "--overwrite",
                "--config",
            ])
            .arg(&setup)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "swtpm_setup failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // The swtpm TCTI finds the control channel at port + 1, so two
        // adjacent free ports; another process may take one between this
        // check and swtpm's bind, so a failed start is retried.
        for _ in 0..20 {
            let port = crate::free_port();
            let Some(ctrl) = port.checked_add(1) else {
                continue;
            };
            if std::net::TcpListener::bind(("127.0.0.1", ctrl)).is_err() {
                continue;
            }
            let mut child = Command::new("swtpm")
                .args(["socket", "--tpm2", "--tpmstate"])
                .arg(format!("dir={}", root.join("state").display()))
                .args([
                    "--server",
                    &format!("type=tcp,port={port},bindaddr=127.0.0.1"),
                ])
                .args([
                    "--ctrl",
                    &format!("type=tcp,port={ctrl},bindaddr=127.0.0.1"),
                ])
                .args(["--flags", "startup-clear"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                // swtpm serves one client at a time; a probe connection
                // closed at once leaves it ready for the next.
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Some(Swtpm { dir, child, port });
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("swtpm did not start");
    }

    /// The TCTI string tpm2-tss (and tss-esapi) connect with.
    pub fn tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }

    /// The CA that issued this TPM's EK certificates (PEM file).
    pub fn issuer_ca(&self) -> PathBuf {
        self.dir.path().join("ca/issuercert.pem")
    }

    /// The root above [`Swtpm::issuer_ca`] (PEM file).
    pub fn root_ca(&self) -> PathBuf {
        self.dir.path().join("ca/swtpm-localca-rootca-cert.pem")
    }

    /// `tpm2_clear`: the owner hierarchy's objects (persistent keys) are
    /// gone, as when a user clears the TPM in firmware. No client may be
    /// connected (swtpm serves one at a time).
    pub fn clear(&self) {
        clear(&self.tcti());
    }

    /// A front on other ports that several clients may hold open at once,
    /// as the kernel's `/dev/tpmrm0` allows: each command is passed to the
    /// TPM whole, one at a time. There is no resource manager behind it
    /// (one client's transient objects are visible to all), which is
    /// enough for a service that keeps only a persistent key open while a
    /// test clears the TPM under it. Holds swtpm's one connection until
    /// dropped.
    pub fn shared(&self) -> SharedTpm {
        SharedTpm::start(self.port)
    }
}

fn clear(tcti: &str) {
    if !prereq::have("tpm2_clear") {
        prereq::missing("tpm2_clear is not installed (Debian: apt-get install tpm2-tools)");
        panic!("cannot clear the TPM without tpm2-tools");
    }
    let out = Command::new("tpm2_clear")
        .args(["-T", tcti])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tpm2_clear failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// See [`Swtpm::shared`]. Its threads end with the process (a test's).
#[derive(Debug)]
pub struct SharedTpm {
    port: u16,
}

impl SharedTpm {
    fn start(tpm_port: u16) -> SharedTpm {
        let upstream = Arc::new(Mutex::new(
            TcpStream::connect(("127.0.0.1", tpm_port)).unwrap(),
        ));
        // The swtpm TCTI finds the control channel at port + 1.
        let (data, control) = loop {
            let data = TcpListener::bind("127.0.0.1:0").unwrap();
            let port = data.local_addr().unwrap().port();
            let Some(ctrl) = port.checked_add(1) else {
                continue;
            };
            if let Ok(control) = TcpListener::bind(("127.0.0.1", ctrl)) {
                break (data, control);
            }
        };
        let port = data.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for client in data.incoming().flatten() {
                let upstream = upstream.clone();
                std::thread::spawn(move || serve_commands(client, &upstream));
            }
        });
        // Control messages (locality, cancel) go straight to swtpm's
        // control channel, one connection each.
        std::thread::spawn(move || {
            for client in control.incoming().flatten() {
                std::thread::spawn(move || {
                    let Ok(tpm) = TcpStream::connect(("127.0.0.1", tpm_port + 1)) else {
                        return;
                    };
                    let (Ok(mut tpm_write), Ok(mut client_read)) =
                        (tpm.try_clone(), client.try_clone())
                    else {
                        return;
                    };
                    // Each side's end is passed on: swtpm serves one
                    // control connection at a time and answers the next
                    // only once this one is closed.
                    let to_tpm = std::thread::spawn(move || {
                        let _ = std::io::copy(&mut client_read, &mut tpm_write);
                        let _ = tpm_write.shutdown(std::net::Shutdown::Write);
                    });
                    let (mut tpm, mut client) = (tpm, client);
                    let _ = std::io::copy(&mut tpm, &mut client);
                    let _ = client.shutdown(std::net::Shutdown::Write);
                    let _ = to_tpm.join();
                });
            }
        });
        SharedTpm { port }
    }

    /// The TCTI string of this front.
    pub fn tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }

    /// `tpm2_clear` through this front, while other clients stay connected.
    pub fn clear(&self) {
        clear(&self.tcti());
    }
}

/// Passes one client's commands to the TPM: a TPM 2.0 command or response
/// is a 10-byte header whose bytes 2..6 give the whole length.
fn serve_commands(mut client: TcpStream, upstream: &Mutex<TcpStream>) {
    fn message(stream: &mut TcpStream) -> Option<Vec<u8>> {
        let mut header = [0u8; 10];
        stream.read_exact(&mut header).ok()?;
        let size = u32::from_be_bytes([header[2], header[3], header[4], header[5]]) as usize;
        let mut whole = header.to_vec();
        whole.resize(size.max(10), 0);
        stream.read_exact(&mut whole[10..]).ok()?;
        Some(whole)
    }
    while let Some(command) = message(&mut client) {
        let response = {
            let mut tpm = upstream.lock().unwrap_or_else(|e| e.into_inner());
            if tpm.write_all(&command).is_err() {
                return;
            }
            message(&mut tpm)
        };
        let Some(response) = response else { return };
        if client.write_all(&response).is_err() {
            return;
        }
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write(path: &std::path::Path, text: &str) {
    std::fs::File::create(path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
}
