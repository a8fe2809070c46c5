//! The Tauri side of the tray: turns a [`MenuModel`] into the native menu
//! and icon, handles clicks, and watches the agent to keep the tray and the
//! window (when there is one) current and to raise notifications.
//! Everything it decides comes from [`crate::menu`], [`crate::notify`] and
//! [`crate::watch`]; this file only wires them up.

use std::sync::Arc;
use std::time::Instant;

use agent::control::Request;
use agent::control::view::{AppView, StatusView};
use tauri::image::Image;
use tauri::menu::{IsMenuItem, Menu, MenuItem, PredefinedMenuItem, Submenu};
use tauri::tray::{MouseButton, MouseButtonState, TrayIcon, TrayIconBuilder, TrayIconEvent};
use tauri::{AppHandle, Emitter, Manager, Runtime};
use tauri_plugin_clipboard_manager::ClipboardExt;
use tauri_plugin_notification::NotificationExt;
use tokio::sync::Notify;

use crate::commands::{self, AgentLink, CommandError};
use crate::menu::{Action, Item, MenuModel, TrayState};
use crate::notify::{Notice, notices};
use crate::watch::{self, Update};
use crate::window::{self, MAIN_WINDOW};

/// Wakes the watcher early (after a menu action, when the window opens or
/// closes) so the tray and the window reflect it at once.
#[derive(Debug, Default, Clone)]
pub struct Wake(Arc<Notify>);

impl Wake {
    /// Asks the watcher to look now.
    pub fn wake(&self) {
        self.0.notify_one();
    }
}

/// The icon for a state.
pub fn icon(state: TrayState) -> tauri::Result<Image<'static>> {
    Image::from_bytes(match state {
        TrayState::SignedOut => include_bytes!("../icons/tray-signed-out.png"),
        TrayState::Compliant => include_bytes!("../icons/tray-compliant.png"),
        TrayState::NonCompliant => include_bytes!("../icons/tray-noncompliant.png"),
        TrayState::Error => include_bytes!("../icons/tray-error.png"),
    })
}

enum Native<R: Runtime> {
    Item(MenuItem<R>),
    Submenu(Submenu<R>),
    Separator(PredefinedMenuItem<R>),
}

impl<R: Runtime> Native<R> {
    fn as_item(&self) -> &dyn IsMenuItem<R> {
        match self {
            Native::Item(i) => i,
            Native::Submenu(s) => s,
            Native::Separator(s) => s,
        }
    }
}

fn native<R: Runtime>(app: &AppHandle<R>, item: &Item) -> tauri::Result<Native<R>> {
    Ok(match item {
        Item::Entry {
            label,
            action: Some(action),
            enabled,
        } => Native::Item(MenuItem::with_id(
            app,
            action.id(),
            label,
            *enabled,
            None::<&str>,
        )?),
        Item::Entry {
            label,
            action: None,
            enabled,
        } => Native::Item(MenuItem::new(app, label, *enabled, None::<&str>)?),
        Item::Submenu {
            label,
            items,
            enabled,
        } => {
            let submenu = Submenu::new(app, label, *enabled)?;
            for child in items {
                submenu.append(native(app, child)?.as_item())?;
            }
            Native::Submenu(submenu)
        }
        Item::Separator => Native::Separator(PredefinedMenuItem::separator(app)?),
    })
}

/// The native menu for `model`.
pub fn native_menu<R: Runtime>(app: &AppHandle<R>, model: &MenuModel) -> tauri::Result<Menu<R>> {
    let menu = Menu::new(app)?;
    for item in &model.items {
        menu.append(native(app, item)?.as_item())?;
    }
    Ok(menu)
}

/// Creates the tray icon, showing "asking the agent…" until the first answer.
/// On Windows a left click opens the window (the menu is on the right
/// button, as the platform does it); on macOS a click shows the menu; on
/// Linux the tray host always shows the menu, whose "Open Sallyport"
/// builds the window.
pub fn create<R: Runtime>(app: &AppHandle<R>) -> tauri::Result<TrayIcon<R>> {
    let model = MenuModel::build(Err("Asking the Sallyport agent…"));
    let click_opens_window = cfg!(windows);
    TrayIconBuilder::with_id("sallyport")
        .icon(icon(TrayState::SignedOut)?)
        .tooltip("Sallyport")
        .menu(&native_menu(app, &model)?)
        .show_menu_on_left_click(!click_opens_window)
        .on_menu_event(|app, event| {
            if let Some(action) = Action::from_id(event.id().as_ref()) {
                tracing::debug!(?action, "tray menu");
                let app = app.clone();
                tauri::async_runtime::spawn(async move { act(&app, action).await });
            }
        })
        .on_tray_icon_event(move |tray, event| {
            if let TrayIconEvent::Click {
                button: MouseButton::Left,
                button_state: MouseButtonState::Up,
                ..
            } = event
                && click_opens_window
            {
                window::show(tray.app_handle(), None);
            }
        })
        .build(app)
}

fn apply<R: Runtime>(app: &AppHandle<R>, model: &MenuModel) -> tauri::Result<()> {
    let Some(tray) = app.tray_by_id("sallyport") else {
        return Ok(());
    };
    tray.set_menu(Some(native_menu(app, model)?))?;
    tray.set_icon(Some(icon(model.state)?))?;
    tray.set_tooltip(Some(&model.tooltip))?;
    Ok(())
}

fn notify<R: Runtime>(app: &AppHandle<R>, notice: &Notice) {
    if let Err(e) = app
        .notification()
        .builder()
        .title(&notice.title)
        .body(&notice.body)
        .show()
    {
        tracing::warn!(error = %e, title = %notice.title, "notification not shown");
    }
}

fn report<R: Runtime>(app: &AppHandle<R>, what: &str, result: Result<(), CommandError>) {
    if let Err(e) = result {
        notify(
            app,
            &Notice {
                title: format!("Could not {what}"),
                body: e.to_string(),
            },
        );
    }
}

async fn act<R: Runtime>(app: &AppHandle<R>, action: Action) {
    let link = app.state::<AgentLink>().inner().clone();
    match action {
        Action::SignIn => {
            window::show(app, Some("apps"));
            let result = link.ask(&Request::SignIn).await.map(drop);
            report(app, "start the sign-in", result);
        }
        Action::SignOut => {
            let result = link.ask(&Request::SignOut).await.map(drop);
            report(app, "sign out", result);
        }
        Action::Connect(id) => {
            let result = link.ask(&Request::Connect { app: id.clone() }).await;
            report(app, &format!("open {id}"), result.map(drop));
        }
        Action::Disconnect(id) => {
            let result = link.ask(&Request::Disconnect { app: id.clone() }).await;
            report(app, &format!("close {id}"), result.map(drop));
        }
        Action::Copy(address) => match app.clipboard().write_text(address.clone()) {
            Ok(()) => notify(
                app,
                &Notice {
                    title: format!("Copied {address}"),
                    body: "Paste it where the application asks for its address.".into(),
                },
            ),
            Err(e) => tracing::warn!(error = %e, "clipboard write failed"),
        },
        Action::Posture => window::show(app, Some("posture")),
        Action::History => window::show(app, Some("history")),
        Action::Open => window::show(app, None),
        Action::ExportDiagnostics => match commands::export(app, &link).await {
            Ok(path) => notify(
                app,
                &Notice {
                    title: "Diagnostics exported".into(),
                    body: format!("Saved to {path}"),
                },
            ),
            Err(e) => report(app, "export diagnostics", Err(e)),
        },
        Action::About => window::show(app, Some("diagnostics")),
        Action::Quit => app.exit(0),
    }
    app.state::<Wake>().wake();
}

/// Keeps the tray and the window in step with the agent and raises
/// notifications on changes, for as long as the app runs. It asks for the
/// status only (a local read), the catalogue only when needed, and pushes
/// what changed to the window; see [`crate::watch`] for the cadence.
pub async fn watch<R: Runtime>(app: AppHandle<R>) {
    let link = app.state::<AgentLink>().inner().clone();
    let wake = app.state::<Wake>().0.clone();
    let mut shown: Option<MenuModel> = None;
    let mut last: Option<StatusView> = None;
    let mut apps: Vec<AppView> = Vec::new();
    let mut apps_asked: Option<Instant> = None;
    let mut woken = true;
    let mut pushed: Option<Update> = None;
    // The app's own file, to restart into a new version once the device
    // service has installed one (see `watch::restart_for_update`).
    let exe = std::env::current_exe().ok();
    let exe_at_start = exe.as_deref().and_then(watch::ExeStamp::of);
    loop {
        let window = app.get_webview_window(MAIN_WINDOW).is_some();
        let answer: Result<StatusView, CommandError> = link.ask_as(&Request::Status).await;
        let mut apps_changed = None;
        if let Ok(status) = &answer {
            let stale = apps_asked.is_none_or(|at| at.elapsed() >= watch::apps_every(window));
            if woken || stale || watch::apps_may_differ(last.as_ref(), status) {
                // The catalogue is decoration for the menu: a failure here
                // must not hide the status.
                let asked = link
                    .ask_as::<Vec<AppView>>(&Request::Apps)
                    .await
                    .unwrap_or_default();
                apps_asked = Some(Instant::now());
                if asked != apps || pushed.is_none() {
                    apps_changed = Some(asked.clone());
                }
                apps = asked;
            }
        }
        let model = match &answer {
            Ok(status) => MenuModel::build(Ok((status, &apps))),
            Err(e) => MenuModel::build(Err(&e.to_string())),
        };
        if shown.as_ref() != Some(&model) {
            match apply(&app, &model) {
                Ok(()) => shown = Some(model),
                Err(e) => tracing::warn!(error = %e, "tray not updated"),
            }
        }
        let update = match &answer {
            Ok(status) => Update {
                status: Some(status.clone()),
                apps: apps_changed,
                error: None,
            },
            Err(e) => Update {
                status: None,
                apps: None,
                error: Some(e.to_string()),
            },
        };
        if !window {
            pushed = None;
        } else if pushed.as_ref().is_none_or(|p| {
            p.status != update.status || p.error != update.error || update.apps.is_some()
        }) {
            match app.emit_to(MAIN_WINDOW, watch::EVENT, &update) {
                Ok(()) => pushed = Some(update),
                Err(e) => tracing::debug!(error = %e, "window not updated"),
            }
        }
        if let Ok(status) = answer {
            for notice in notices(last.as_ref(), &status) {
                notify(&app, &notice);
            }
            let now = exe.as_deref().and_then(watch::ExeStamp::of);
            if watch::restart_for_update(&status, exe_at_start.as_ref(), now.as_ref()) {
                tracing::info!("Sallyport was updated: restarting the app into the new version");
                app.restart();
            }
            last = Some(status);
        }
        woken = tokio::select! {
            () = tokio::time::sleep(watch::poll_every(window)) => false,
            () = wake.notified() => true,
        };
    }
}
