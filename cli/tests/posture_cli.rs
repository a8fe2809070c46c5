//! `sallyport posture` on this very machine: every Linux collector's answer
//! is checked against what the machine really is, read independently with
//! the standard tools (not with our parsers).

#![cfg(target_os = "linux")]
// Setup helpers below panic on failure by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

fn sallyport(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sallyport"))
        .args(args)
        .env("XDG_CACHE_HOME", cache_dir())
        .output()
        .expect("run sallyport")
}

/// A cache private to this test run, so runs do not see each other's state.
fn cache_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("sallyport-test-cache-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn posture_json(extra: &[&str]) -> (Value, i32) {
    let mut args = vec!["posture", "--json"];
    args.extend_from_slice(extra);
    let out = sallyport(&args);
    let code = out.status.code().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let json: Value = serde_json::from_str(&stdout).unwrap_or_else(|err| {
        panic!(
            "not JSON ({err}): {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (json, code)
}

fn check<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["report"]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no check {id}"))
}

fn sh(script: &str) -> String {
    let out = Command::new("sh").args(["-c", script]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn is_root() -> bool {
    sh("id -u") == "0"
}

#[test]
fn every_linux_collector_matches_the_machine() {
    let (json, code) = posture_json(&[]);
    let compliant = json["evaluation"]["compliant"].as_bool().unwrap();
    assert_eq!(
        code,
        if compliant { 0 } else { 1 },
        "exit code follows the verdict"
    );

    // Every check has a status, and every unknown says why.
    for c in json["report"]["checks"].as_array().unwrap() {
        let status = c["status"].as_str().unwrap();
        assert!(["pass", "fail", "unknown"].contains(&status), "{c}");
        if status == "unknown" {
            assert!(!c["unknown"]["detail"].as_str().unwrap().is_empty(), "{c}");
        } else {
            assert!(c.get("unknown").is_none(), "{c}");
        }
    }

    // OS: the same ID / VERSION_ID as `. /etc/os-release`, the kernel as `uname -r`.
    let os = check(&json, "os_version");
    assert_eq!(os["status"], "pass");
    assert_eq!(
        os["observed"]["platform_id"],
        sh(". /etc/os-release; echo $ID")
    );
    assert_eq!(
        os["observed"]["version"],
        sh(". /etc/os-release; echo $VERSION_ID")
    );
    assert_eq!(os["observed"]["kernel"], sh("uname -r"));

    // Disk: the device under / per findmnt, encrypted iff lsblk shows a crypt ancestor.
    let disk = check(&json, "disk_encryption");
    let source = sh("findmnt -n -o SOURCE /");
    if source.starts_with("/dev/") {
        let has_crypt = sh(&format!(
            "lsblk -s -n -r -o TYPE {source} | grep -c '^crypt$'"
        )) != "0";
        assert_eq!(disk["observed"]["volume"], source.as_str(), "{disk}");
        assert_eq!(disk["observed"]["encrypted"], has_crypt, "{disk}");
        assert_eq!(disk["status"], if has_crypt { "pass" } else { "fail" });
    } else {
        assert_eq!(disk["status"], "unknown", "{disk}");
    }

    // Secure Boot: no EFI means legacy boot, a fail (not unknown, not pass).
    let sb = check(&json, "secure_boot");
    if !Path::new("/sys/firmware/efi").exists() {
        assert_eq!(sb["status"], "fail");
        assert_eq!(sb["observed"]["firmware"], "bios");
    }

    // TPM: present iff the kernel exposes one.
    let tpm = check(&json, "tpm");
    assert_eq!(
        tpm["observed"]["present"],
        Path::new("/sys/class/tpm/tpm0").exists()
    );

    // Machine id: the file's content.
    let identity = check(&json, "device_identity");
    assert_eq!(
        identity["observed"]["machine_id"],
        sh("cat /etc/machine-id")
    );

    // Screen lock: without a desktop session it must be unknown, never a pass.
    let lock = check(&json, "screen_lock");
    if std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_none() {
        assert_eq!(lock["status"], "unknown");
        assert_eq!(lock["unknown"]["kind"], "not_applicable");
    }

    // Security updates: the same count as grepping apt's own simulation.
    let updates = check(&json, "security_updates");
    let lists = sh("ls /var/lib/apt/lists | grep -c _Packages");
    if Path::new("/usr/bin/apt-get").exists() && lists != "0" {
        let truth = sh(
            "apt-get -s -o Debug::NoLocking=1 upgrade 2>/dev/null | grep '^Inst ' | grep -c -- '-security'",
        );
        assert_eq!(
            updates["observed"]["security_pending"].to_string(),
            truth,
            "{updates}"
        );
        assert_eq!(
            updates["status"],
            if truth == "0" { "pass" } else { "fail" }
        );
    }

    // Agent version: this build.
    assert_eq!(
        check(&json, "agent_version")["observed"]["version"],
        env!("CARGO_PKG_VERSION")
    );

    // Firewall: the real ruleset of this namespace, when we may read it.
    let fw = check(&json, "firewall");
    if is_root() && Path::new("/usr/sbin/nft").exists() {
        let input_drop = sh("nft list ruleset | grep -c 'hook input.*policy drop'") != "0";
        if input_drop {
            assert_eq!(fw["status"], "pass", "{fw}");
        }
    }
}

#[test]
fn second_run_reuses_the_slow_source_and_says_so() {
    let (first, _) = posture_json(&["--check", "security_updates"]);
    let (second, _) = posture_json(&["--check", "security_updates"]);
    let a = check(&first, "security_updates");
    let b = check(&second, "security_updates");
    if a["status"] == "unknown" {
        // No package lists on this machine: nothing is cached.
        support::prereq::missing(&format!("security_updates is unknown here: {a}"));
        return;
    }
    assert_eq!(
        a["observed"]["security_pending"],
        b["observed"]["security_pending"]
    );
    let evidence = b["evidence"].to_string();
    assert!(evidence.contains("cached"), "{evidence}");
    let (fresh, _) = posture_json(&["--check", "security_updates", "--no-cache"]);
    assert!(
        !check(&fresh, "security_updates")["evidence"]
            .to_string()
            .contains("cached")
    );
}

/// A network namespace of our own, removed on drop.
struct Netns(String);

impl Netns {
    fn create(tag: &str) -> Option<Netns> {
        let name = format!("sp-fw-{tag}-{}", std::process::id());
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .ok()?
            .success();
        ok.then_some(Netns(name))
    }

    fn nft(&self, ruleset: &str) {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.0, "nft", "-f", "-"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(ruleset.as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success(), "nft -f failed");
    }

    fn firewall_check(&self) -> Value {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.0,
                env!("CARGO_BIN_EXE_sallyport"),
                "posture",
                "--json",
                "--check",
                "firewall",
            ])
            .env("XDG_CACHE_HOME", cache_dir())
            .output()
            .unwrap();
        let json: Value = serde_json::from_slice(&out.stdout).unwrap();
        check(&json, "firewall").clone()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

#[test]
fn firewall_follows_the_real_nftables_state_of_a_test_namespace() {
    if !is_root() || !Path::new("/usr/sbin/nft").exists() {
        support::prereq::missing(
            "needs root and nft (apt-get install nftables) to create a network namespace",
        );
        return;
    }
    let Some(empty) = Netns::create("empty") else {
        support::prereq::missing("`ip netns add` is not permitted here");
        return;
    };
    let fw = empty.firewall_check();
    assert_eq!(fw["status"], "fail", "no ruleset: {fw}");
    assert_eq!(fw["observed"]["enabled"], false);

    let accept = Netns::create("accept").unwrap();
    accept.nft("table inet t {\n chain input {\n  type filter hook input priority 0; policy accept;\n  tcp dport 23 drop\n }\n}\n");
    let fw = accept.firewall_check();
    assert_eq!(
        fw["status"], "fail",
        "accept policy with a conditional drop: {fw}"
    );

    let drop = Netns::create("drop").unwrap();
    drop.nft("table inet filter {\n chain input {\n  type filter hook input priority 0; policy drop;\n  ct state established,related accept\n  iif \"lo\" accept\n }\n}\n");
    let fw = drop.firewall_check();
    assert_eq!(fw["status"], "pass", "default-deny input: {fw}");
    assert_eq!(fw["observed"]["source"], "nftables");
    assert!(
        fw["evidence"]
            .to_string()
            .contains("inet filter/input policy drop"),
        "{fw}"
    );
}

#[test]
fn a_hung_source_becomes_unknown_within_the_timeout() {
    // A fault a real lsblk cannot be made to produce: a stand-in that hangs.
    let bin = std::env::temp_dir().join(format!("sallyport-hang-{}", std::process::id()));
    std::fs::create_dir_all(&bin).unwrap();
    let fake = bin.join("lsblk");
    std::fs::write(&fake, "#!/bin/sh\nexec sleep 60\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );

    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_sallyport"))
        .args([
            "posture",
            "--json",
            "--check",
            "disk_encryption",
            "--check",
            "os_version",
            "--timeout",
            "2",
        ])
        .env("PATH", path)
        .env("XDG_CACHE_HOME", cache_dir())
        .output()
        .unwrap();
    let elapsed = started.elapsed();
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let disk = check(&json, "disk_encryption");
    if sh("findmnt -n -o SOURCE /").starts_with("/dev/") {
        assert_eq!(disk["status"], "unknown", "{disk}");
        assert_eq!(disk["unknown"]["kind"], "timed_out", "{disk}");
    }
    assert_eq!(
        check(&json, "os_version")["status"],
        "pass",
        "other checks still answer"
    );
    assert!(
        elapsed < Duration::from_secs(30),
        "the hung child was not waited for: {elapsed:?}"
    );
}

#[test]
fn policy_errors_and_bad_arguments_exit_2_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.rego");
    std::fs::write(
        &broken,
        "package sallyport.posture\n\nimport rego.v1\n\nviolations contains v if {\n  v := \n}\n",
    )
    .unwrap();
    let out = sallyport(&["posture", "--policy", broken.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("broken.rego:7:") || stderr.contains("broken.rego:6:"),
        "{stderr}"
    );

    let out = sallyport(&["posture", "--check", "nonsense"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown check \"nonsense\""));
}

#[test]
fn another_policy_decides_the_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let lenient = dir.path().join("lenient.rego");
    std::fs::write(
        &lenient,
        "package sallyport.posture\n\nimport rego.v1\n\nviolations := set()\n",
    )
    .unwrap();
    let out = sallyport(&[
        "posture",
        "--policy",
        lenient.to_str().unwrap(),
        "--check",
        "os_version",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("COMPLIANT"), "{table}");
    assert!(table.contains("os_version"), "{table}");

    let strict = dir.path().join("strict.rego");
    std::fs::write(&strict, "package sallyport.posture\n\nimport rego.v1\n\nviolations contains {\"check\": \"os_version\", \"message\": \"no\", \"remediation\": \"none\"} if true\n").unwrap();
    let out = sallyport(&[
        "posture",
        "--policy",
        strict.to_str().unwrap(),
        "--check",
        "os_version",
    ]);
    assert_eq!(out.status.code(), Some(1));
}

/// `--check` measures one check, so the verdict and the exit code judge that
/// one only: the policy's "X was not measured on this device" for every
/// check left out is about the run, not the device.
#[test]
fn a_partial_run_reports_no_violation_of_checks_it_did_not_measure() {
    let (json, code) = posture_json(&["--check", "os_version"]);
    let measured: Vec<&str> = json["report"]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(measured, ["os_version"]);
    let violations = json["evaluation"]["violations"].as_array().unwrap();
    for v in violations {
        assert_eq!(v["check"], "os_version", "a check not measured: {v}");
    }
    let compliant = json["evaluation"]["compliant"].as_bool().unwrap();
    assert_eq!(compliant, violations.is_empty(), "{json}");
    assert_eq!(code, if compliant { 0 } else { 1 }, "{json}");
    assert_eq!(json["only_checks"], serde_json::json!(["os_version"]));

    let out = sallyport(&["posture", "--check", "os_version"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(!table.contains("not measured"), "{table}");
    assert!(table.contains("(only os_version)"), "{table}");
    assert_eq!(out.status.code(), Some(code), "{table}");
}
