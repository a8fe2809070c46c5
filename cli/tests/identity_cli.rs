//! The real `sallyport` binary against the real test IdP (tests/idp):
//! `login` (browser and `--no-browser` device flow), `whoami`, `logout`,
//! and a login refused for lack of MFA — with the tokens in an OS keyring
//! this test controls, and never in the CLI's output.
//!
//! The browser step: `SALLYPORT_BROWSER` names a program the CLI runs with
//! the authorization URL instead of the system browser. Here it is a
//! two-line shell script that writes the URL to a file; the test reads it
//! and plays the user (password + TOTP) exactly as identity_login.rs does.
//!
//! The keyring: the CLI has no keyring switch; it uses the Secret Service
//! when a D-Bus session bus offers one and kernel keyutils otherwise
//! (`KeyringStore::open_default`). The test decides through the
//! environment of every CLI child (`env_clear`, so nothing of the
//! developer's session leaks in):
//! - keyutils: `DBUS_SESSION_BUS_ADDRESS` points at a socket that does not
//!   exist, so the Secret Service probe fails and the CLI falls back to
//!   keyutils. Do all the CLI runs (separate processes) and the test process
//!   (which reads the store to learn the token values) see the same keys?
//!   keyring-rs adds each key to the caller's session keyring *and* links
//!   it into the per-user persistent keyring, which it links into the
//!   caller's session keyring before searching. A session keyring is
//!   inherited across fork/exec, so under a login session (pam_keyinit) all
//!   runs share the test's session keyring; where the test has none (CI
//!   containers, as observed here) each run gets a fresh anonymous session
//!   keyring and finds the keys through the persistent keyring; on kernels
//!   without persistent keyrings every such process falls back to the same
//!   per-user session keyring (`_uid_ses`). So the runs are deliberately
//!   *not* wrapped in `keyctl session`: that gains no isolation (the
//!   persistent keyring is per user) and could only separate the runs.
//!   Isolation from a developer's real sign-in comes from the item name,
//!   `<issuer>|<client id>`, whose issuer holds the test IdP's random port;
//!   a guard deletes the item if a test fails before its `logout` (the
//!   persistent keyring outlives the test by days).
//! - Secret Service: a private `dbus-daemon` + `gnome-keyring-daemon` in a
//!   temporary home, as in identity_keyring.rs; nothing touches the
//!   developer's keyrings. The test process reads that keyring by re-running
//!   this test binary (`secret_service_reader`) on the private bus, since
//!   D-Bus takes its bus from the process-global environment.
//!
//! `whoami --json` reports which keyring holds the tokens, so each test
//! also proves the CLI used the keyring the test chose.

// Test code: a failed unwrap is the test failing, with its location.
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use support::idp;

use std::io::{BufRead as _, BufReader, Read as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use agent::identity::store::{Backend, KeyringStore, SecretStore as _};

/// The keyring service name the CLI uses (main.rs).
const SERVICE: &str = "sallyport";
/// Set in the child that reads the private Secret Service for the test.
const READER_ENV: &str = "SALLYPORT_TEST_CLI_READ_ACCOUNT";
/// How long one CLI invocation may take.
const CLI_TIMEOUT: Duration = Duration::from_secs(90);

/// The OS keyring a test gives the CLI.
enum Keyring {
    Keyutils,
    SecretService(support::keyring::SecretService),
}

impl Keyring {
    /// Kernel keyutils, or `None` (after saying why) where the kernel
    /// keyring is not usable (e.g. a seccomp profile forbidding keyctl).
    fn keyutils() -> Option<Keyring> {
        let store = KeyringStore::with_backend(SERVICE, Backend::Keyutils);
        match store.get("sallyport-cli-test-probe") {
            Ok(_) => Some(Keyring::Keyutils),
            Err(err) => {
                support::prereq::missing(&format!("kernel keyring not usable here: {err}"));
                None
            }
        }
    }

    /// A private Secret Service, or `None` when its programs are missing.
    fn secret_service() -> Option<Keyring> {
        support::keyring::SecretService::start().map(Keyring::SecretService)
    }

    /// What `whoami` calls it.
    fn name(&self) -> &'static str {
        match self {
            Keyring::Keyutils => Backend::Keyutils.name(),
            Keyring::SecretService(_) => Backend::SecretService.name(),
        }
    }

    /// The session bus the CLI is given.
    fn bus_address(&self, scratch: &Path) -> String {
        match self {
            // No such socket: the Secret Service probe fails at once.
            Keyring::Keyutils => format!("unix:path={}", scratch.join("no-bus").display()),
            Keyring::SecretService(service) => service.address.clone(),
        }
    }

    /// The stored item of `account`, read straight from the keyring.
    fn read(&self, account: &str) -> Option<String> {
        match self {
            Keyring::Keyutils => KeyringStore::with_backend(SERVICE, Backend::Keyutils)
                .get(account)
                .unwrap()
                .map(|s| s.expose().to_owned()),
            Keyring::SecretService(service) => {
                let output = Command::new(std::env::current_exe().unwrap())
                    .args([
                        "--exact",
                        "secret_service_reader",
                        "--ignored",
                        "--nocapture",
                        "--test-threads=1",
                    ])
                    .env("DBUS_SESSION_BUS_ADDRESS", &service.address)
                    .env(READER_ENV, account)
                    .output()
                    .unwrap();
                let stdout = String::from_utf8_lossy(&output.stdout);
                assert!(
                    output.status.success(),
                    "reader failed:\n{stdout}\n{}",
                    String::from_utf8_lossy(&output.stderr)
                );
                // libtest prints `test secret_service_reader ... ` before it.
                let line = stdout
                    .lines()
                    .find_map(|l| l.split_once("STORED:").map(|(_, v)| v))
                    .unwrap_or_else(|| panic!("reader printed nothing:\n{stdout}"));
                serde_json::from_str::<Option<String>>(line).unwrap()
            }
        }
    }

    fn delete(&self, account: &str) {
        if let Keyring::Keyutils = self {
            let _ = KeyringStore::with_backend(SERVICE, Backend::Keyutils).delete(account);
        }
        // The private Secret Service dies with the test.
    }
}

/// Runs only inside the child `Keyring::read` starts on the private bus.
#[test]
#[ignore = "run by Keyring::read on a private session bus"]
#[allow(clippy::print_stdout)]
fn secret_service_reader() {
    let Some(account) = std::env::var_os(READER_ENV) else {
        return;
    };
    let store = KeyringStore::with_backend(SERVICE, Backend::SecretService);
    let value = store
        .get(account.to_str().unwrap())
        .unwrap()
        .map(|s| s.expose().to_owned());
    println!("STORED:{}", serde_json::to_string(&value).unwrap());
}

/// What one CLI run printed.
#[derive(Debug)]
struct Output {
    code: i32,
    stdout: String,
    stderr: String,
}

/// A started CLI run.
struct Running {
    child: Child,
    stderr_lines: mpsc::Receiver<String>,
    stderr: std::thread::JoinHandle<String>,
    stdout: std::thread::JoinHandle<String>,
}

impl Running {
    fn finish(mut self) -> Output {
        let deadline = Instant::now() + CLI_TIMEOUT;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "sallyport did not finish within {CLI_TIMEOUT:?}; stderr:\n{}",
                    self.stderr.join().unwrap()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        Output {
            code: status.code().unwrap_or(-1),
            stdout: self.stdout.join().unwrap(),
            stderr: self.stderr.join().unwrap(),
        }
    }

    /// Waits for a stderr line containing `needle`.
    fn stderr_line(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr_lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => panic!("sallyport printed no line with {needle:?}"),
            }
        }
    }
}

/// The CLI, configured for one test IdP and one keyring.
struct Cli<'a> {
    keyring: &'a Keyring,
    issuer: String,
    scratch: tempfile::TempDir,
    /// Everything every run printed, for the token grep.
    printed: Vec<String>,
}

impl<'a> Cli<'a> {
    fn new(idp: &idp::Idp, keyring: &'a Keyring) -> Self {
        let scratch = tempfile::tempdir().unwrap();
        // SALLYPORT_BROWSER hook: record the URL; the test plays the user.
        let script = scratch.path().join("browser.sh");
        let url_file = scratch.path().join("opened.url");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\nprintf '%s\\n' \"$1\" > '{0}.tmp' && mv '{0}.tmp' '{0}'\n",
                url_file.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        Self {
            keyring,
            issuer: idp.issuer.clone(),
            scratch,
            printed: Vec::new(),
        }
    }

    /// The keyring item of this issuer + client (IdentityConfig::store_account).
    fn account(&self) -> String {
        format!("{}|{}", self.issuer.trim_end_matches('/'), idp::CLIENT_ID)
    }

    fn url_file(&self) -> PathBuf {
        self.scratch.path().join("opened.url")
    }

    /// Where the CLI remembers the last sign-in: `$HOME/.local/state`,
    /// as `XDG_STATE_HOME` is cleared with the rest of the environment.
    fn last_sign_in_file(&self) -> PathBuf {
        self.scratch
            .path()
            .join(".local/state/sallyport/last-sign-in.toml")
    }

    /// A run told where to sign in (the IdP's issuer and client id in the
    /// environment, as a first `login` needs).
    fn spawn(&self, args: &[&str]) -> Running {
        self.spawn_with(args, true)
    }

    /// A run told nothing about the IdP: it must find it by itself (the
    /// last sign-in), as `whoami` and `logout` do after a `login`.
    fn spawn_bare(&self, args: &[&str]) -> Running {
        self.spawn_with(args, false)
    }

    fn spawn_with(&self, args: &[&str], idp_env: bool) -> Running {
        let mut command = Command::new(env!("CARGO_BIN_EXE_sallyport"));
        command
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.scratch.path())
            .env(
                "DBUS_SESSION_BUS_ADDRESS",
                self.keyring.bus_address(self.scratch.path()),
            )
            .env("SALLYPORT_BROWSER", self.scratch.path().join("browser.sh"))
            // Debug logs too must never show a token.
            .env("SALLYPORT_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if idp_env {
            command
                .env("SALLYPORT_ISSUER", &self.issuer)
                .env("SALLYPORT_CLIENT_ID", idp::CLIENT_ID)
                .env("SALLYPORT_RESOURCE", idp::BROKER_RESOURCE)
                .env("SALLYPORT_ACR_VALUES", "urn:sallyport:acr:mfa");
        }
        let mut child = command.spawn().unwrap();
        let mut out = child.stdout.take().unwrap();
        let stdout = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = out.read_to_string(&mut text);
            text
        });
        let err = child.stderr.take().unwrap();
        let (tx, stderr_lines) = mpsc::channel();
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                text.push_str(&line);
                text.push('\n');
                let _ = tx.send(line);
            }
            text
        });
        Running {
            child,
            stderr_lines,
            stderr,
            stdout,
        }
    }

    fn record(&mut self, output: Output) -> Output {
        self.printed.push(output.stdout.clone());
        self.printed.push(output.stderr.clone());
        output
    }

    fn run(&mut self, args: &[&str]) -> Output {
        let output = self.spawn(args).finish();
        self.record(output)
    }

    /// [`Cli::run`] without telling the CLI where to sign in.
    fn run_bare(&mut self, args: &[&str]) -> Output {
        let output = self.spawn_bare(args).finish();
        self.record(output)
    }

    /// `sallyport login` through the SALLYPORT_BROWSER hook; returns the
    /// URL the CLI opened and what it printed.
    async fn browser_login(&mut self) -> (String, Output) {
        let _ = std::fs::remove_file(self.url_file());
        let mut running = self.spawn(&["login"]);
        let deadline = Instant::now() + Duration::from_secs(30);
        let url = loop {
            if let Ok(url) = std::fs::read_to_string(self.url_file()) {
                break url.trim().to_owned();
            }
            if running.child.try_wait().unwrap().is_some() || Instant::now() > deadline {
                let output = running.finish();
                panic!("sallyport did not open the browser: {output:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let page = idp::complete_browser_login(&url).await;
        let text = page.text().await.unwrap_or_default();
        assert!(text.contains("return to the app"), "callback page: {text}");
        let output = running.finish();
        (url, self.record(output))
    }

    /// Every token of a stored session, from the keyring itself.
    fn stored_tokens(&self) -> Vec<String> {
        let blob = self
            .keyring
            .read(&self.account())
            .expect("nothing stored after login");
        let blob: serde_json::Value = serde_json::from_str(&blob).unwrap();
        let tokens: Vec<String> = ["access_token", "refresh_token", "id_token"]
            .iter()
            .filter_map(|k| blob[*k].as_str().map(str::to_owned))
            .collect();
        assert_eq!(tokens.len(), 3, "stored session lacks a token");
        tokens
    }

    /// No run printed any of `tokens`, nor anything JWT-shaped.
    fn assert_no_tokens_printed(&self, tokens: &[String]) {
        for text in &self.printed {
            for token in tokens {
                assert!(
                    !text.contains(token.as_str()),
                    "a token was printed:\n{text}"
                );
            }
            assert!(
                !text.contains("eyJ"),
                "something JWT-shaped was printed:\n{text}"
            );
        }
    }
}

/// Deletes the test's keyring item however the test ends.
struct Cleanup<'a>(&'a Keyring, String);
impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        self.0.delete(&self.1);
    }
}

fn whoami_json(output: &Output) -> serde_json::Value {
    assert_eq!(output.code, 0, "{output:?}");
    serde_json::from_str(&output.stdout).unwrap()
}

fn assert_signed_out(cli: &mut Cli<'_>) {
    assert_signed_out_with(cli, Cli::run);
}

/// [`assert_signed_out`], the CLI run by `run` (told the IdP, or not).
fn assert_signed_out_with<'a>(cli: &mut Cli<'a>, run: fn(&mut Cli<'a>, &[&str]) -> Output) {
    let output = run(cli, &["whoami", "--json"]);
    assert_eq!(output.code, 1, "{output:?}");
    assert!(output.stderr.contains("Not signed in"), "{output:?}");
    assert!(output.stdout.is_empty(), "{output:?}");
    assert_eq!(cli.keyring.read(&cli.account()), None, "tokens left behind");
}

/// login → whoami (JSON and text) → logout → whoami, all through the binary.
async fn browser_login_whoami_logout(keyring: &Keyring) {
    let Some(idp) = idp::Idp::start(&idp::Options::default()) else {
        return;
    };
    let mut cli = Cli::new(&idp, keyring);
    let _cleanup = Cleanup(keyring, cli.account());
    assert_signed_out(&mut cli);

    let (url, output) = cli.browser_login().await;
    assert_eq!(output.code, 0, "{output:?}");
    let auth_url = url::Url::parse(&url).unwrap();
    assert!(url.starts_with(&idp.issuer), "{url}");
    let params: std::collections::HashMap<_, _> = auth_url.query_pairs().into_owned().collect();
    assert_eq!(params["code_challenge_method"], "S256");
    assert_eq!(params["acr_values"], "urn:sallyport:acr:mfa");
    assert!(
        output.stdout.contains("Signed in as alice@example.com"),
        "{output:?}"
    );
    assert!(output.stdout.contains("amr otp"), "{output:?}");
    let tokens = cli.stored_tokens();

    // From here on the CLI is not told where to sign in: it remembers
    // where the login went (issuer and client id, nothing secret).
    let remembered = std::fs::read_to_string(cli.last_sign_in_file()).unwrap();
    assert!(remembered.contains(&idp.issuer), "{remembered}");
    assert!(remembered.contains(idp::CLIENT_ID), "{remembered}");
    for token in &tokens {
        assert!(!remembered.contains(token.as_str()), "{remembered}");
    }
    let who = whoami_json(&cli.run_bare(&["whoami", "--json"]));
    assert_eq!(who["user"], "alice@example.com");
    assert_eq!(who["subject"], idp::USER);
    assert_eq!(who["issuer"], idp.issuer.as_str());
    assert_eq!(who["mfa_method"], "amr otp");
    assert_eq!(who["state"]["state"], "valid");
    assert_eq!(who["can_refresh"], true);
    assert_eq!(
        who["keyring"],
        keyring.name(),
        "the CLI used another keyring"
    );
    let keys: Vec<&String> = who.as_object().unwrap().keys().collect();
    assert!(
        keys.iter().all(|k| !k.contains("token")),
        "whoami shows token fields: {keys:?}"
    );

    let text = cli.run_bare(&["whoami"]);
    assert_eq!(text.code, 0, "{text:?}");
    assert!(text.stdout.contains("amr otp"), "{text:?}");
    assert!(text.stdout.contains(keyring.name()), "{text:?}");

    let output = cli.run_bare(&["logout", "--no-browser"]);
    assert_eq!(output.code, 0, "{output:?}");
    assert!(output.stderr.contains("Signed out"), "{output:?}");
    // The IdP's sign-out page is shown without its id_token_hint query.
    assert!(
        output
            .stderr
            .contains(&format!("{}/session/end", idp.issuer)),
        "{output:?}"
    );
    assert!(!output.stderr.contains("id_token_hint"), "{output:?}");
    // Still known where to sign in: "not signed in", not "pass --issuer".
    assert_signed_out_with(&mut cli, Cli::run_bare);
    cli.assert_no_tokens_printed(&tokens);
}

#[tokio::test]
async fn cli_login_whoami_logout_with_keyutils() {
    let Some(keyring) = Keyring::keyutils() else {
        return;
    };
    browser_login_whoami_logout(&keyring).await;
}

#[tokio::test]
async fn cli_login_whoami_logout_with_secret_service() {
    let Some(keyring) = Keyring::secret_service() else {
        return;
    };
    browser_login_whoami_logout(&keyring).await;
}

/// Keyutils where it works, else a private Secret Service.
fn any_keyring() -> Option<Keyring> {
    let keyutils = KeyringStore::with_backend(SERVICE, Backend::Keyutils);
    if keyutils.get("sallyport-cli-test-probe").is_ok() {
        Some(Keyring::Keyutils)
    } else {
        Keyring::secret_service()
    }
}

#[tokio::test]
async fn cli_login_without_mfa_fails() {
    let Some(keyring) = any_keyring() else { return };
    let Some(idp) = idp::Idp::start(&idp::Options {
        mfa: false,
        ..idp::Options::default()
    }) else {
        return;
    };
    let mut cli = Cli::new(&idp, &keyring);
    let _cleanup = Cleanup(&keyring, cli.account());
    let (_, output) = cli.browser_login().await;
    assert_ne!(output.code, 0, "{output:?}");
    assert!(
        output
            .stderr
            .contains("multi-factor authentication is required"),
        "{output:?}"
    );
    assert!(!output.stdout.contains("Signed in"), "{output:?}");
    assert_signed_out(&mut cli);
    cli.assert_no_tokens_printed(&[]);
}

#[tokio::test]
async fn cli_device_login_no_browser() {
    let Some(keyring) = any_keyring() else { return };
    let Some(idp) = idp::Idp::start(&idp::Options::default()) else {
        return;
    };
    let mut cli = Cli::new(&idp, &keyring);
    let _cleanup = Cleanup(&keyring, cli.account());
    let mut running = cli.spawn(&["login", "--no-browser"]);
    let line = running.stderr_line("(or open ");
    let complete = line
        .split("(or open ")
        .nth(1)
        .unwrap()
        .trim_end_matches(')')
        .to_owned();
    assert!(complete.starts_with(&idp.issuer), "{complete}");
    idp::complete_device_login(&complete).await;
    let output = running.finish();
    let output = cli.record(output);
    assert_eq!(output.code, 0, "{output:?}");
    assert!(output.stderr.contains("enter the code"), "{output:?}");
    assert!(
        output.stdout.contains("Signed in as alice@example.com"),
        "{output:?}"
    );
    // The device flow never opens a browser.
    assert!(!cli.url_file().exists());
    let tokens = cli.stored_tokens();

    let who = whoami_json(&cli.run(&["whoami", "--json"]));
    assert_eq!(who["user"], "alice@example.com");
    assert_eq!(who["mfa_method"], "amr otp");
    assert_eq!(who["keyring"], keyring.name());

    let output = cli.run(&["logout", "--no-browser"]);
    assert_eq!(output.code, 0, "{output:?}");
    assert_signed_out(&mut cli);
    cli.assert_no_tokens_printed(&tokens);
}
