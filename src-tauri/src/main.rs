//! `sallyport-app`: the tray app. See the library for what it does.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

use std::process::ExitCode;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
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
