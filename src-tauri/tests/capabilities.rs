//! The window may call exactly the commands the UI uses: the command list
//! in `build.rs` (which generates their permissions), the handler list in
//! `src/lib.rs`, the UI's `COMMANDS` in `ui/src/api.ts` and the grants in
//! `capabilities/main.json` must all name the same set. Also pins the CSP.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test: failures abort with the reason

use std::collections::BTreeSet;

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR")))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The quoted words between `start` and the next `end`.
fn quoted(text: &str, start: &str, end: &str) -> BTreeSet<String> {
    let from = text
        .find(start)
        .unwrap_or_else(|| panic!("{start} not found"))
        + start.len();
    let block = &text[from..from + text[from..].find(end).unwrap()];
    block
        .split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_capability_grants_exactly_the_commands_the_ui_calls() {
    let ui = quoted(&read("../ui/src/api.ts"), "export const COMMANDS = [", "]");
    let build = quoted(&read("build.rs"), "const COMMANDS: &[&str] = &[", "];");
    let lib = read("src/lib.rs");
    let from = lib.find("generate_handler![").unwrap();
    let handlers: BTreeSet<String> = lib[from..from + lib[from..].find(']').unwrap()]
        .split("commands::")
        .skip(1)
        .map(|s| s.split(',').next().unwrap().trim().to_owned())
        .collect();
    assert_eq!(ui.len(), 12, "{ui:?}");
    assert_eq!(ui, build, "ui/src/api.ts vs build.rs");
    assert_eq!(ui, handlers, "ui/src/api.ts vs generate_handler!");

    let capability: serde_json::Value =
        serde_json::from_str(&read("capabilities/main.json")).unwrap();
    let granted: BTreeSet<String> = capability["permissions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_owned())
        .collect();
    let mut expected: BTreeSet<String> = ui
        .iter()
        .map(|c| format!("allow-{}", c.replace('_', "-")))
        .collect();
    // The tray's "navigate" event and the watcher's "agent" updates reach
    // the window through these two.
    expected.insert("core:event:allow-listen".into());
    expected.insert("core:event:allow-unlisten".into());
    assert_eq!(granted, expected);
    assert_eq!(capability["windows"], serde_json::json!(["main"]));
}

#[test]
fn the_csp_is_strict_and_the_window_loads_only_local_content() {
    let config: serde_json::Value = serde_json::from_str(&read("tauri.conf.json")).unwrap();
    let csp = config["app"]["security"]["csp"].as_str().unwrap();
    for directive in [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src ipc: http://ipc.localhost",
        "object-src 'none'",
    ] {
        assert!(csp.contains(directive), "CSP lacks {directive}: {csp}");
    }
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{csp}"
    );
    assert!(!csp.contains("https:"), "no remote origins: {csp}");
    assert_eq!(config["build"]["frontendDist"], "../ui/dist");
    assert_eq!(config["app"]["withGlobalTauri"], false);
}
