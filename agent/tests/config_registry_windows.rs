//! Windows: the managed settings read from the real registry, the way GPO,
//! Intune or the MSI leave them under `HKLM\SOFTWARE\Policies\Sallyport`
//! (CI runs this under Wine, whose registry and `reg.exe` are real enough
//! for `reg add` / `reg query`).
#![cfg(windows)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

const KEY: &str = r"HKLM\SOFTWARE\Policies\Sallyport";

fn reg(args: &[&str]) {
    let out = Command::new("reg")
        .args(args)
        .output()
        .expect("run reg.exe");
    assert!(
        out.status.success(),
        "reg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Deletes the policy key when the test ends, pass or fail.
struct Cleanup;
impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = Command::new("reg").args(["delete", KEY, "/f"]).output();
    }
}

#[test]
fn policy_values_in_the_registry_are_managed_and_locked() {
    let _cleanup = Cleanup;
    let _ = Command::new("reg").args(["delete", KEY, "/f"]).output();
    // Nothing there: nothing managed.
    let effective = agent::config::load().unwrap();
    assert!(effective.managed_source.is_none(), "{effective:?}");

    // As the ADMX writes them (typed values) and the MSI (text).
    reg(&[
        "add",
        KEY,
        "/v",
        "broker_url",
        "/t",
        "REG_SZ",
        "/d",
        "https://broker.corp.example",
        "/f",
    ]);
    reg(&[
        "add",
        KEY,
        "/v",
        "autostart",
        "/t",
        "REG_DWORD",
        "/d",
        "0",
        "/f",
    ]);
    reg(&["add", KEY, "/v", "issuer", "/t", "REG_SZ", "/d", "", "/f"]);
    let identity = format!(r"{KEY}\identity");
    reg(&[
        "add",
        &identity,
        "/v",
        "acr_values",
        "/t",
        "REG_MULTI_SZ",
        "/d",
        r"phr\0phrh",
        "/f",
    ]);
    reg(&[
        "add",
        &identity,
        "/v",
        "max_auth_age_secs",
        "/t",
        "REG_SZ",
        "/d",
        "3600",
        "/f",
    ]);

    let effective = agent::config::load().unwrap();
    let s = &effective.settings;
    assert_eq!(s.broker_url.as_deref(), Some("https://broker.corp.example"));
    assert!(!s.autostart);
    assert_eq!(s.identity.acr_values, ["phr", "phrh"]);
    assert_eq!(s.identity.max_auth_age_secs, Some(3600));
    assert!(s.issuer.is_none(), "an empty value is not set");
    let locked: Vec<&str> = effective.locked.iter().map(String::as_str).collect();
    assert_eq!(
        locked,
        [
            "autostart",
            "broker_url",
            "identity.acr_values",
            "identity.max_auth_age_secs"
        ]
    );

    // A typo in a managed value stops the agent with the key's name.
    reg(&[
        "add",
        KEY,
        "/v",
        "posture_interval_secs",
        "/t",
        "REG_SZ",
        "/d",
        "soon",
        "/f",
    ]);
    let err = agent::config::load().unwrap_err().to_string();
    assert!(err.contains("posture_interval_secs"), "{err}");
}
