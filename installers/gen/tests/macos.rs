//! The hand-written macOS installer files: the launchd plists parse and
//! run what the pkg installs, and the pkg scripts are valid shell.

// Test helpers outside `#[test]` functions: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;

fn macos_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../macos")
}

fn load(name: &str) -> plist::Dictionary {
    let value: plist::Value = plist::from_file(macos_dir().join(name))
        .unwrap_or_else(|e| panic!("{name} is not a plist: {e}"));
    value.into_dictionary().unwrap()
}

fn program_arguments(dict: &plist::Dictionary) -> Vec<String> {
    dict.get("ProgramArguments")
        .and_then(|v| v.as_array())
        .unwrap()
        .iter()
        .map(|v| v.as_string().unwrap().to_owned())
        .collect()
}

#[test]
fn the_daemon_plist_runs_sallyportd_at_load_and_keeps_it_alive() {
    let daemon = load("com.sallyport.sallyportd.plist");
    assert_eq!(
        daemon.get("Label").and_then(|v| v.as_string()),
        Some("com.sallyport.sallyportd")
    );
    assert_eq!(
        program_arguments(&daemon),
        vec!["/usr/local/libexec/sallyportd"]
    );
    assert_eq!(
        daemon.get("RunAtLoad").and_then(|v| v.as_boolean()),
        Some(true)
    );
    assert_eq!(
        daemon.get("KeepAlive").and_then(|v| v.as_boolean()),
        Some(true)
    );
}

#[test]
fn the_agent_plist_starts_the_tray_app_minimized_in_gui_sessions() {
    let agent = load("com.sallyport.app.plist");
    assert_eq!(
        agent.get("Label").and_then(|v| v.as_string()),
        Some("com.sallyport.app")
    );
    let args = program_arguments(&agent);
    assert!(args[0].starts_with("/Applications/Sallyport.app/Contents/MacOS/"));
    // The flag the tray app itself recognises for a tray-only start.
    assert_eq!(args[1..], ["--minimized".to_owned()]);
    assert_eq!(
        agent
            .get("LimitLoadToSessionType")
            .and_then(|v| v.as_string()),
        Some("Aqua")
    );
    assert_eq!(
        agent.get("RunAtLoad").and_then(|v| v.as_boolean()),
        Some(true)
    );
}

#[test]
fn the_pkg_scripts_are_valid_shell_and_name_the_installed_plists() {
    for script in ["scripts/preinstall", "scripts/postinstall", "build-pkg.sh"] {
        let path = macos_dir().join(script);
        let output = Command::new("bash")
            .arg("-n")
            .arg(&path)
            .output()
            .expect("bash runs (it is part of every Debian and macOS install)");
        assert!(
            output.status.success(),
            "bash -n {script}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("#!/bin/bash\n"), "{script}: shebang");
    }
    let postinstall = std::fs::read_to_string(macos_dir().join("scripts/postinstall")).unwrap();
    for needle in [
        "/Library/LaunchDaemons/${DAEMON_LABEL}.plist",
        "DAEMON_LABEL=\"com.sallyport.sallyportd\"",
        "AGENT_LABEL=\"com.sallyport.app\"",
        "launchctl bootstrap system",
    ] {
        assert!(postinstall.contains(needle), "postinstall lacks {needle}");
    }
    let build = std::fs::read_to_string(macos_dir().join("build-pkg.sh")).unwrap();
    assert!(build.contains("com.sallyport.sallyportd.plist"));
    assert!(build.contains("usr/local/libexec/sallyportd"));
}
