//! `sallyport-app`: the tray app. See the library for what it does.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

use std::process::ExitCode;

fn main() -> ExitCode {
    // First, while this is the only thread: WebKit's drawing without GL
    // (see the module for why and what it saves).
    #[cfg(target_os = "linux")]
    sallyport_app::linux_webview::draw_without_gl();
    // stderr, and `logs/app.log` in the user's state directory (rotated,
    // redacted): the agent it hosts logs there too, and the diagnostics
    // bundle carries it. Not `agent.log`: a `sallyport run` may own that.
    logfiles::init(
        "RUST_LOG",
        "info",
        agent::logs::agent_dir().map(|dir| logfiles::LogFile {
            dir,
            set: agent::logs::APP,
            default_filter: "info",
        }),
    );
    // Before Tauri starts its threads, so they all find the same tokens in
    // the kernel keyring (see the function's doc).
    if let Err(e) = agent::identity::store::share_session_keyring() {
        tracing::debug!(error = %e, "no session keyring to share");
    }
    match sallyport_app::run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "Sallyport could not start");
            ExitCode::FAILURE
        }
    }
}
