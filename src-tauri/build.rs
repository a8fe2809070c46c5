//! Generates the app's ACL: one permission per command (`allow-status`,
//! ...), so `capabilities/main.json` can grant the window exactly the
//! commands the UI calls and nothing else. Keep this list in step with
//! `src/lib.rs`'s `generate_handler!` (tests/capabilities.rs checks).
//!
//! First it checks that the built UI is there to embed. Without it,
//! `generate_context!` panics deep inside a proc macro ("frontendDist ...
//! doesn't exist"), which is how a fresh clone's `cargo build --workspace`
//! used to end; one line saying what to run is kinder. The UI is not
//! built from here: that would need Node and a network for `npm install`
//! in every cargo build (offline and CI caches included), run minutes of
//! npm inside a build script, and write outside `OUT_DIR`.

use std::path::Path;

const COMMANDS: &[&str] = &[
    "status",
    "apps",
    "posture",
    "recheck",
    "history",
    "connect",
    "disconnect",
    "sign_in",
    "sign_in_device",
    "sign_out",
    "export_diagnostics",
    "about",
];

/// The built UI's entry point (`frontendDist` in tauri.conf.json).
const UI_INDEX: &str = "../ui/dist/index.html";

fn main() {
    // Only the embedded UI needs the build; `tauri dev` turns the
    // `custom-protocol` feature off and serves ui/ from the dev server.
    let embedded = std::env::var_os("CARGO_FEATURE_CUSTOM_PROTOCOL").is_some();
    if embedded {
        // A rebuilt (or deleted) UI re-runs this check.
        println!("cargo::rerun-if-changed={UI_INDEX}");
        if !Path::new(UI_INDEX).is_file() {
            println!(
                "cargo::error=the tray app embeds the built UI, and ui/dist/index.html is missing: build it first with `cd ui && npm install --no-save && npm run build` (or run ./scripts/test, which does that too)"
            );
            return;
        }
    }
    let attributes = tauri_build::Attributes::new()
        .app_manifest(tauri_build::AppManifest::new().commands(COMMANDS));
    if let Err(e) = tauri_build::try_build(attributes) {
        panic!("tauri build step failed: {e:#}");
    }
}
