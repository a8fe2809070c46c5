//! Token storage through the real OS keyrings on Linux: the Secret Service
//! (gnome-keyring on a private session bus this test starts) and the
//! kernel keyutils backend. Values are larger than Windows Credential
//! Manager's 2560-byte limit, so the chunking every platform uses is
//! exercised too.
//!
//! D-Bus picks its bus from the process-global `DBUS_SESSION_BUS_ADDRESS`,
//! and tests run in parallel threads, so the Secret Service test starts a
//! private `dbus-daemon` + `gnome-keyring-daemon` and re-runs this test
//! binary as a child with that variable set, rather than mutating the
//! environment of this process. `cargo test --workspace` runs it as is.

#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::process::Command;

use agent::identity::store::{Backend, KeyringStore, SecretStore as _};
use agent::secrets::Secret;

/// Set in the child process that talks to the private bus.
const INNER_ENV: &str = "SALLYPORT_TEST_SECRET_SERVICE_INNER";

fn big_value() -> String {
    // Looks like a token bundle; 3.5 KB, over the Windows limit.
    let mut value = String::from("{\"id_token\":\"");
    while value.len() < 3500 {
        value.push_str("eyJhbGciOiJSUzI1NiJ9.abcdefghijklmnopqrstuvwxyz0123456789");
    }
    value.push_str("\"}");
    value
}

fn round_trip(store: &KeyringStore, account: &str) {
    store.delete(account).unwrap();
    assert!(store.get(account).unwrap().is_none());
    let small = Secret::new("small-secret".to_owned());
    store.set(account, &small).unwrap();
    assert_eq!(
        store.get(account).unwrap().unwrap().expose(),
        "small-secret"
    );
    let big = big_value();
    store.set(account, &Secret::new(big.clone())).unwrap();
    assert_eq!(store.get(account).unwrap().unwrap().expose(), big);
    // Shrinking again must not leave stale parts behind.
    store.set(account, &small).unwrap();
    assert_eq!(
        store.get(account).unwrap().unwrap().expose(),
        "small-secret"
    );
    store.delete(account).unwrap();
    assert!(store.get(account).unwrap().is_none());
    store.delete(account).unwrap();
}

#[test]
fn keyutils_round_trip() {
    let store = KeyringStore::with_backend("sallyport-test", Backend::Keyutils);
    // Containers with a seccomp profile that forbids keyctl cannot run this.
    if let Err(err) = store.get("probe") {
        support::prereq::missing(&format!("kernel keyring not usable here: {err}"));
        return;
    }
    round_trip(&store, &format!("keyutils-{}", std::process::id()));
}

/// Set in the child process of `keyutils_entries_are_shared_by_all_threads`:
/// `share` calls `share_session_keyring` first, `plain` does not.
const THREADS_ENV: &str = "SALLYPORT_TEST_KEYUTILS_THREADS_INNER";

/// Runs only inside the child started by
/// `keyutils_entries_are_shared_by_all_threads`, in a process that has not
/// touched a keyring yet: one fresh thread writes, another reads, the way a
/// multi-threaded runtime's workers do.
#[test]
#[ignore = "run by keyutils_entries_are_shared_by_all_threads in a fresh process"]
fn keyutils_threads_inner() {
    let Some(mode) = std::env::var_os(THREADS_ENV) else {
        return;
    };
    if mode == "share" {
        agent::identity::store::share_session_keyring().unwrap();
    }
    let store = std::sync::Arc::new(KeyringStore::with_backend(
        "sallyport-test",
        Backend::Keyutils,
    ));
    let account = format!("threads-{}", std::process::id());
    let writer = {
        let (store, account) = (store.clone(), account.clone());
        std::thread::spawn(move || {
            store
                .set(&account, &Secret::new("written-by-thread-1".to_owned()))
                .unwrap();
        })
    };
    writer.join().unwrap();
    let reader = {
        let (store, account) = (store.clone(), account.clone());
        std::thread::spawn(move || store.get(&account).unwrap().map(|s| s.expose().to_owned()))
    };
    let read = reader.join().unwrap();
    store.delete(&account).unwrap();
    assert_eq!(read.as_deref(), Some("written-by-thread-1"));
}

fn run_threads_inner(mode: &str) -> (bool, String) {
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "keyutils_threads_inner",
            "--ignored",
            "--nocapture",
        ])
        .env(THREADS_ENV, mode)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    (
        output.status.success() && stdout.contains("1 passed"),
        format!("{stdout}\n{stderr}"),
    )
}

/// What `sallyport run`, the demo and the tray app rely on: after
/// `share_session_keyring`, a token one runtime thread stores is found by
/// every other thread, whatever session keyring the process started with.
#[test]
fn keyutils_entries_are_shared_by_all_threads() {
    let probe = KeyringStore::with_backend("sallyport-test", Backend::Keyutils);
    if let Err(err) = probe.get("probe") {
        support::prereq::missing(&format!("kernel keyring not usable here: {err}"));
        return;
    }
    let (shared, output) = run_threads_inner("share");
    assert!(shared, "with a shared session keyring:\n{output}");
    // Without it the outcome depends on the kernel and on how the process
    // was started (a demo run once lost a token this way); say which.
    let (plain, _) = run_threads_inner("plain");
    eprintln!(
        "without share_session_keyring, another thread {} the entry here",
        if plain { "found" } else { "did NOT find" }
    );
}

/// Runs only inside the child started by `secret_service_round_trip`.
#[test]
#[ignore = "run by secret_service_round_trip on a private session bus"]
fn secret_service_inner() {
    if std::env::var_os(INNER_ENV).is_none() {
        return;
    }
    let store = KeyringStore::with_backend("sallyport-test", Backend::SecretService);
    round_trip(&store, "secret-service");
    // The default chooser picks the Secret Service when one is reachable.
    let default = KeyringStore::open_default("sallyport-test").unwrap();
    assert_eq!(default.backend(), Backend::SecretService);
}

#[test]
fn secret_service_round_trip() {
    let Some(service) = support::keyring::SecretService::start() else {
        return;
    };
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "secret_service_inner",
            "--ignored",
            "--nocapture",
        ])
        .env("DBUS_SESSION_BUS_ADDRESS", &service.address)
        .env(INNER_ENV, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "inner test failed:\n{stdout}\n{stderr}"
    );
}
