//! What Sallyport's integration tests share (a dev-dependency, never
//! shipped): real peers, started per test, and typed helpers around them.
//!
//! - [`idp`]: the real OpenID provider (npm `oidc-provider`, `tests/idp/`);
//! - [`keyring`]: a private D-Bus session with a real gnome-keyring;
//! - `desktop` (Linux): a private Xvfb display and session bus for the tray
//!   app, with its window's close request and its tray menu over D-Bus;
//! - [`echo`]: TCP echo targets and the probe that says whether bytes flow;
//! - [`agent`]: the agent's runtime in-process, with `status`/`until_*` helpers;
//! - [`binary`]: workspace binaries (`sallyport`, `sallyportd`) built for tests that run them;
//! - [`broker`]: a typed builder for the reference broker's configuration,
//!   its admin calls, and the policies the tests switch between;
//! - `postgres` (Unix): a throwaway PostgreSQL cluster per test (`initdb`,
//!   `pg_ctl`, a Unix socket in a temporary directory);
//! - [`prereq`]: the rule that no test passes by skipping in CI;
//! - [`tpm`]: a software TPM 2.0 (swtpm) with its own EK CA, and a front
//!   several clients may share (as `/dev/tpmrm0` allows);
//! - `service`: a real `sallyportd` process (Unix), with the software key
//!   or (built with feature `tpm`) a TPM's.
//!
//! Scaffolding: a setup failure must abort the test loudly, so `unwrap` is
//! allowed here.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

pub mod agent;
pub mod binary;
pub mod broker;
pub mod certs;
#[cfg(target_os = "linux")]
pub mod desktop;
pub mod echo;
pub mod idp;
pub mod keyring;
#[cfg(unix)]
pub mod postgres;
pub mod prereq;
#[cfg(unix)]
pub mod service;
pub mod tpm;
pub mod zip;

/// A loopback port free at the time of the call.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
