//! Sallyport's tray app: a thin Tauri 2 shell over the agent.
//!
//! The tray and the window only show what the agent reports and pass the
//! user's requests on over the agent's control socket; every decision
//! (sign-in, posture, gating) stays in the agent, which the CLI drives the
//! same way. When no agent is running the app hosts one in-process, on
//! the same socket ([`in_process`]). The pure parts — the tray menu
//! ([`menu`]), which changes deserve a notification ([`notify`]) and how
//! often the agent is asked ([`watch`]) — are tested without Tauri.
//!
//! The app lives in the tray; the window exists only while it is open
//! ([`window`]): closing it destroys it and its WebKit processes, and the
//! app goes on until Quit.

pub mod commands;
pub mod in_process;
#[cfg(target_os = "linux")]
pub mod linux_memory;
#[cfg(target_os = "linux")]
pub mod linux_webview;
pub mod menu;
pub mod notify;
mod tray;
pub mod watch;
mod window;

use std::sync::Mutex;

use tauri::{Manager, RunEvent, WindowEvent};
use tauri_plugin_autostart::{MacosLauncher, ManagerExt};
use window::MAIN_WINDOW;

/// The argument autostart launches the app with: start in the tray only.
pub const MINIMIZED_ARG: &str = "--minimized";

/// Whether start-at-login must change: `Some(wanted)` when the OS entry
/// differs from what the effective settings (where IT's managed
/// configuration overrides the user's) ask for.
pub fn autostart_change(wanted: bool, enabled: bool) -> Option<bool> {
    (wanted != enabled).then_some(wanted)
}

/// Whether a launch goes on. A login launch (`--minimized`: the app's own
/// start-at-login entry, or the Linux packages'
/// `/etc/xdg/autostart/sallyport.desktop`, which the app cannot remove)
/// stops at once when the effective `autostart` setting is off, so IT's
/// managed `autostart = false` holds for the system-wide entry too. Any
/// other launch goes on; so does a login launch whose settings do not load
/// (the app then says what is wrong).
pub fn launch_goes_on(minimized: bool, autostart: Option<bool>) -> bool {
    !minimized || autostart != Some(false)
}

/// Whether a second launch, handed over to the running instance, shows its
/// window: yes when the user started it, no when it is a login launch
/// (with both the app's own entry and the packages' system-wide one, two
/// start at login; the second must not pop the window up).
pub fn handover_shows_window(args: &[String]) -> bool {
    !args.iter().any(|a| a == MINIMIZED_ARG)
}

fn sync_autostart<R: tauri::Runtime>(app: &tauri::AppHandle<R>) {
    let settings = match agent::config::load() {
        Ok(effective) => effective,
        Err(e) => {
            tracing::warn!(error = %e, "configuration not readable; start-at-login left as it is");
            return;
        }
    };
    let launcher = app.autolaunch();
    let enabled = launcher.is_enabled().unwrap_or(false);
    let result = match autostart_change(settings.settings.autostart, enabled) {
        Some(true) => launcher.enable(),
        Some(false) => launcher.disable(),
        None => Ok(()),
    };
    if let Err(e) = result {
        tracing::warn!(error = %e, locked = settings.is_locked("autostart"), "start-at-login not updated");
    }
}

/// Runs the app until Quit.
pub fn run() -> tauri::Result<()> {
    let minimized = std::env::args().any(|a| a == MINIMIZED_ARG);
    if minimized {
        let autostart = agent::config::load().ok().map(|e| e.settings.autostart);
        if !launch_goes_on(minimized, autostart) {
            tracing::info!("launched at login, but start-at-login is off: exiting");
            return Ok(());
        }
    }
    #[cfg(unix)]
    let socket = agent::control::unix::default_socket_path();
    #[cfg(windows)]
    let socket = agent::control::windows::default_socket_path();

    tauri::Builder::default()
        // First: a second launch hands over to the running instance, which
        // shows its window unless that launch was a login one.
        .plugin(tauri_plugin_single_instance::init(|app, args, _cwd| {
            if handover_shows_window(&args) {
                window::show(app, None);
            }
        }))
        .plugin(tauri_plugin_autostart::init(
            MacosLauncher::LaunchAgent,
            Some(vec![MINIMIZED_ARG]),
        ))
        .plugin(tauri_plugin_notification::init())
        .plugin(tauri_plugin_clipboard_manager::init())
        .manage(commands::AgentLink::new(socket))
        .manage(HostedSlot::default())
        .manage(tray::Wake::default())
        .invoke_handler(tauri::generate_handler![
            commands::status,
            commands::apps,
            commands::posture,
            commands::recheck,
            commands::history,
            commands::connect,
            commands::disconnect,
            commands::sign_in,
            commands::sign_in_device,
            commands::sign_out,
            commands::export_diagnostics,
            commands::about,
        ])
        .on_window_event(|w, event| {
            // Closing the window destroys it (the app stays in the tray:
            // see ExitRequested below); Quit is in the menu.
            if let WindowEvent::Destroyed = event
                && w.label() == MAIN_WINDOW
            {
                window::destroyed(w.app_handle());
            }
        })
        .setup(move |app| {
            let handle = app.handle().clone();
            sync_autostart(&handle);
            if let Err(e) = tray::create(&handle) {
                // No tray host (a bare X server, some GNOME setups): the window still works.
                tracing::warn!(error = %e, "no tray icon");
            }
            // A login launch starts with no window at all; the tray (or a
            // second launch) makes one.
            if !minimized {
                window::show(&handle, None);
            }
            tauri::async_runtime::spawn(host_agent_if_absent(handle.clone()));
            tauri::async_runtime::spawn(tray::watch(handle));
            Ok(())
        })
        .build(tauri::generate_context!())?
        .run(|app, event| match event {
            // The last window closed: the app stays in the tray. Quit
            // (`app.exit(0)`) comes with a code and goes through.
            RunEvent::ExitRequested {
                code: None, api, ..
            } => api.prevent_exit(),
            RunEvent::Exit => {
                // Quit: the in-process agent (if any) closes its tunnels first.
                let hosted = app
                    .state::<HostedSlot>()
                    .lock()
                    .ok()
                    .and_then(|mut slot| slot.take());
                if let Some(hosted) = hosted {
                    tauri::async_runtime::block_on(hosted.stop());
                }
            }
            _ => {}
        });
    Ok(())
}

/// The agent this app hosts, when it hosts one.
type HostedSlot = Mutex<Option<in_process::HostedAgent>>;

/// Starts the agent in-process unless one already answers on the socket.
async fn host_agent_if_absent<R: tauri::Runtime>(app: tauri::AppHandle<R>) {
    let link = app.state::<commands::AgentLink>().inner().clone();
    let socket = link.socket().to_owned();
    let hosting = in_process::start_if_absent(&link, || {
        let effective = agent::config::load()?;
        agent::host::HostSpec::from_settings(effective.settings, None, socket)
    })
    .await;
    if let in_process::Hosting::InProcess(hosted) = hosting
        && let Ok(mut slot) = app.state::<HostedSlot>().lock()
    {
        *slot = Some(hosted);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn autostart_follows_the_effective_setting() {
        assert_eq!(autostart_change(true, false), Some(true));
        assert_eq!(autostart_change(false, true), Some(false));
        assert_eq!(autostart_change(true, true), None);
        assert_eq!(autostart_change(false, false), None);
    }

    #[test]
    fn a_login_launch_stops_when_start_at_login_is_off() {
        assert!(!launch_goes_on(true, Some(false)));
        assert!(launch_goes_on(true, Some(true)));
        // Settings that do not load: go on and say so in the window.
        assert!(launch_goes_on(true, None));
        // The user started it: always.
        assert!(launch_goes_on(false, Some(false)));
    }

    #[test]
    fn only_a_user_launch_pops_the_window_up() {
        let args = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert!(handover_shows_window(&args(&["sallyport-app"])));
        assert!(!handover_shows_window(&args(&[
            "/usr/bin/sallyport-app",
            MINIMIZED_ARG
        ])));
    }
}
