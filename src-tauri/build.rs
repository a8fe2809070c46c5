//! Generates the app's ACL: one permission per command (`allow-status`,
//! ...), so `capabilities/main.json` can grant the window exactly the
//! commands the UI calls and nothing else. Keep this list in step with
//! `src/lib.rs`'s `generate_handler!` (tests/capabilities.rs checks).

const COMMANDS: &[&str] = &[
    "status",
    "apps",
    "posture",
    "recheck",
    "connect",
    "disconnect",
    "sign_in",
    "sign_in_device",
    "sign_out",
    "export_diagnostics",
    "about",
];

fn main() {
    let attributes = tauri_build::Attributes::new()
        .app_manifest(tauri_build::AppManifest::new().commands(COMMANDS));
    if let Err(e) = tauri_build::try_build(attributes) {
        panic!("tauri build step failed: {e:#}");
    }
}
