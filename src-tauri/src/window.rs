//! The window exists only while it is open.
//!
//! Closing it destroys it, and with it the WebKit processes behind it; the
//! app lives on in the tray (see [`crate::run`]: the last window closing
//! does not end it, Quit does). Opening it again (the tray, a second
//! launch) builds a new one from the `main` entry of tauri.conf.json, which
//! is marked `"create": false` so no window is made at start either: a
//! login launch (`--minimized`) starts with none. A new window shows the
//! current state at once, since all state lives in the agent.
//!
//! On Linux WebKitGTK keeps its network process for as long as the web
//! context lives, and Tauri keeps the context for the app's lifetime (a
//! new context per window would leave one network process behind each, and
//! an incognito window gets a context Tauri registers no `tauri://` scheme
//! on the second time); so once the window is gone its network process is
//! ended ([`end_webkit_leftovers`]) and WebKit starts a new one for the
//! next window. A moment later the app gives back the memory the window
//! used in its own process (`linux_memory`).

use tauri::{AppHandle, Emitter, Manager, Runtime, WebviewUrl, WebviewWindowBuilder};

use crate::tray::Wake;

/// The window's label in tauri.conf.json.
pub const MAIN_WINDOW: &str = "main";

/// Shows the window, building it when there is none, and turns it to
/// `page` when given. Runs on the main thread (where windows are made), so
/// two requests at once still make one window.
pub fn show<R: Runtime>(app: &AppHandle<R>, page: Option<&str>) {
    let page = page.map(str::to_owned);
    let handle = app.clone();
    let queued = app.run_on_main_thread(move || show_now(&handle, page.as_deref()));
    if let Err(e) = queued {
        tracing::warn!(error = %e, "window not shown");
    }
}

fn show_now<R: Runtime>(app: &AppHandle<R>, page: Option<&str>) {
    if let Some(window) = app.get_webview_window(MAIN_WINDOW) {
        let _ = window.unminimize();
        let _ = window.show();
        let _ = window.set_focus();
        if let Some(page) = page {
            let _ = window.emit("navigate", page);
        }
        return;
    }
    let Some(mut config) = app
        .config()
        .app
        .windows
        .iter()
        .find(|w| w.label == MAIN_WINDOW)
        .cloned()
    else {
        tracing::warn!("tauri.conf.json has no main window");
        return;
    };
    if let Some(page) = page {
        // The page reads its section from the fragment at start.
        config.url = WebviewUrl::App(format!("index.html#{page}").into());
    }
    match WebviewWindowBuilder::from_config(app, &config).and_then(|b| b.build()) {
        Ok(window) => {
            let _ = window.show();
            let _ = window.set_focus();
            tracing::info!("window opened");
        }
        Err(e) => tracing::warn!(error = %e, "window not built"),
    }
    // The watcher polls faster while a window shows the state.
    app.state::<Wake>().wake();
}

/// The window was destroyed: the watcher slows down, and WebKit's
/// leftovers go.
pub fn destroyed<R: Runtime>(app: &AppHandle<R>) {
    tracing::info!("window closed; Sallyport stays in the tray");
    app.state::<Wake>().wake();
    end_webkit_leftovers();
    #[cfg(target_os = "linux")]
    {
        // Once WebKit's teardown is over, and unless a window came back.
        let app = app.clone();
        tauri::async_runtime::spawn(async move {
            tokio::time::sleep(RELEASE_AFTER).await;
            if app.get_webview_window(MAIN_WINDOW).is_none() {
                let released = crate::linux_memory::release();
                tracing::info!(?released, "memory the window used given back");
            }
        });
    }
}

/// How long after the window closed its memory is given back.
#[cfg(target_os = "linux")]
const RELEASE_AFTER: std::time::Duration = std::time::Duration::from_secs(3);

/// Ends the WebKit network process WebKitGTK keeps after its last view
/// closed (the web processes end with their views). A new window starts a
/// new one. Only this process's own children are touched.
#[cfg(target_os = "linux")]
fn end_webkit_leftovers() {
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // "PID (COMM) STATE PPID ...": COMM may hold spaces, so split at the last ')'.
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let comm = head.split_once('(').map(|(_, c)| c).unwrap_or_default();
        let parent = rest.split_whitespace().nth(1).and_then(|p| p.parse().ok());
        if parent == Some(me) && comm.starts_with("WebKitNetwork") {
            let pid = nix::unistd::Pid::from_raw(pid);
            match nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM) {
                Ok(()) => tracing::info!(%pid, "WebKit network process ended with the window"),
                Err(e) => tracing::warn!(%pid, error = %e, "WebKit network process not ended"),
            }
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn end_webkit_leftovers() {}
