//! The Tauri commands the window calls. Each is a thin relay: one control
//! request to the agent, its answer back, typed. No business logic lives
//! here — the agent decides; the app only shows and asks.
//!
//! The list of commands is also in `build.rs` (which generates one
//! permission per command) and in `ui/src/api.ts`; `tests/capabilities.rs`
//! keeps the three and the capability file in step.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent::control::view::{AppView, DeviceCodeView, StatusView};
use agent::control::{Reply, Request};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tauri::{Manager, Runtime, State};

/// Shown whenever the agent's socket has no listener.
pub const NOT_RUNNING: &str = "The Sallyport agent is not running. Start it with `sallyport run`, or restart the Sallyport app.";

/// How long the app waits for any one answer. The agent itself gives up on
/// a request after 30 s; a little more here so its own message wins.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(35);

/// Why a command failed. Serialised as its message: that is what the window
/// shows.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CommandError {
    /// No agent listens on the control socket.
    #[error("{NOT_RUNNING}")]
    NotRunning,
    /// No agent listens, and the app could not run one in-process.
    #[error("The Sallyport agent is not running, and the app could not start it: {0}")]
    CannotHost(String),
    /// The agent refused, with its reason.
    #[error("{0}")]
    Agent(String),
    /// The socket exists but talking over it failed.
    #[error("Could not reach the Sallyport agent: {0}")]
    Channel(String),
    /// The agent answered with data this app does not understand.
    #[error(
        "The Sallyport agent answered something this app does not understand ({0}); are the app and the agent the same version?"
    )]
    Unexpected(String),
}

impl Serialize for CommandError {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_string())
    }
}

/// The way to the agent: its control socket, whoever serves it — the
/// `sallyport run` service, or the agent this app hosts in-process when none
/// was running (see [`crate::in_process`]); both answer the same protocol.
#[derive(Debug, Clone)]
pub struct AgentLink {
    socket: PathBuf,
    /// Why the app could not host an agent, when it tried and failed: the
    /// window shows it instead of a bare "not running".
    cannot_host: Arc<Mutex<Option<String>>>,
}

impl AgentLink {
    /// A link to the agent listening on `socket`.
    pub fn new(socket: PathBuf) -> Self {
        AgentLink {
            socket,
            cannot_host: Arc::default(),
        }
    }

    /// Records why no agent could be hosted (`None`: one is, or may be).
    pub fn set_cannot_host(&self, reason: Option<String>) {
        if let Ok(mut slot) = self.cannot_host.lock() {
            *slot = reason;
        }
    }

    fn not_running(&self) -> CommandError {
        match self.cannot_host.lock().ok().and_then(|slot| slot.clone()) {
            Some(reason) => CommandError::CannotHost(reason),
            None => CommandError::NotRunning,
        }
    }

    /// The socket this link uses.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Sends `request` and returns the agent's data.
    pub async fn ask(&self, request: &Request) -> Result<serde_json::Value, CommandError> {
        let answer = tokio::time::timeout(ANSWER_TIMEOUT, self.send(request))
            .await
            .map_err(|_| CommandError::Channel("no answer in time".into()))??;
        match answer {
            Reply::Ok { data } => Ok(data),
            Reply::Error { message } => Err(CommandError::Agent(message)),
        }
    }

    /// Sends `request` and decodes the agent's data as `T`.
    pub async fn ask_as<T: DeserializeOwned>(&self, request: &Request) -> Result<T, CommandError> {
        let data = self.ask(request).await?;
        serde_json::from_value(data).map_err(|e| CommandError::Unexpected(e.to_string()))
    }

    async fn send(&self, request: &Request) -> Result<Reply, CommandError> {
        use agent::control::ControlError;
        #[cfg(unix)]
        use agent::control::unix as transport;
        #[cfg(windows)]
        use agent::control::windows as transport;
        transport::request(&self.socket, request)
            .await
            .map_err(|e| match e {
                ControlError::NotRunning(_) => self.not_running(),
                other => CommandError::Channel(other.to_string()),
            })
    }
}

/// Answer to [`about`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AboutView {
    /// This app's version.
    pub version: String,
    /// The agent socket the app talks to.
    pub socket: String,
}

/// Identity, verdict and tunnels.
#[tauri::command]
pub async fn status(link: State<'_, AgentLink>) -> Result<StatusView, CommandError> {
    link.ask_as(&Request::Status).await
}

/// The application catalogue.
#[tauri::command]
pub async fn apps(link: State<'_, AgentLink>) -> Result<Vec<AppView>, CommandError> {
    link.ask_as(&Request::Apps).await
}

/// The latest posture report and its violations, passed through as the
/// agent sent it (`ui/src/types.ts` `PostureView`).
#[tauri::command]
pub async fn posture(link: State<'_, AgentLink>) -> Result<serde_json::Value, CommandError> {
    link.ask(&Request::Posture).await
}

/// Collect posture now.
#[tauri::command]
pub async fn recheck(link: State<'_, AgentLink>) -> Result<(), CommandError> {
    link.ask(&Request::Recheck).await.map(drop)
}

/// Open an application.
#[tauri::command]
pub async fn connect(link: State<'_, AgentLink>, app: String) -> Result<(), CommandError> {
    link.ask(&Request::Connect { app }).await.map(drop)
}

/// Close an application.
#[tauri::command]
pub async fn disconnect(link: State<'_, AgentLink>, app: String) -> Result<(), CommandError> {
    link.ask(&Request::Disconnect { app }).await.map(drop)
}

/// The agent's timeline (what it decided and why, 7 days), oldest first,
/// passed through as the agent sent it (`ui/src/types.ts` `TimelineEntry`).
#[tauri::command]
pub async fn history(link: State<'_, AgentLink>) -> Result<serde_json::Value, CommandError> {
    link.ask(&Request::History { since: None }).await
}

/// Start a browser sign-in (the agent opens the browser).
#[tauri::command]
pub async fn sign_in(link: State<'_, AgentLink>) -> Result<(), CommandError> {
    link.ask(&Request::SignIn).await.map(drop)
}

/// Start a device-code sign-in; returns the code to show.
#[tauri::command]
pub async fn sign_in_device(link: State<'_, AgentLink>) -> Result<DeviceCodeView, CommandError> {
    link.ask_as(&Request::SignInDevice).await
}

/// Sign out.
#[tauri::command]
pub async fn sign_out(link: State<'_, AgentLink>) -> Result<(), CommandError> {
    link.ask(&Request::SignOut).await.map(drop)
}

/// Has the agent write the diagnostics bundle into the user's Downloads
/// folder and returns where.
#[tauri::command]
pub async fn export_diagnostics<R: Runtime>(
    app: tauri::AppHandle<R>,
    link: State<'_, AgentLink>,
) -> Result<String, CommandError> {
    export(&app, &link).await
}

/// Shared by the command and the tray's "Export diagnostics…".
pub async fn export<R: Runtime>(
    app: &tauri::AppHandle<R>,
    link: &AgentLink,
) -> Result<String, CommandError> {
    let dir = app
        .path()
        .download_dir()
        .or_else(|_| app.path().home_dir())
        .unwrap_or_else(|_| std::env::temp_dir());
    let path = dir.join(export_file_name(time::OffsetDateTime::now_utc()));
    let path = path.display().to_string();
    let written = link
        .ask(&Request::ExportDiagnostics { path: path.clone() })
        .await?;
    Ok(written.as_str().map(str::to_owned).unwrap_or(path))
}

/// `sallyport-diagnostics-20261123T102246Z.zip`: sortable, no characters
/// any file system refuses.
pub fn export_file_name(now: time::OffsetDateTime) -> String {
    let now = now.to_offset(time::UtcOffset::UTC);
    format!(
        "sallyport-diagnostics-{:04}{:02}{:02}T{:02}{:02}{:02}Z.zip",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    )
}

/// This app's version and the socket it uses.
#[tauri::command]
pub fn about(link: State<'_, AgentLink>) -> AboutView {
    AboutView {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        socket: link.socket().display().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_file_names_sort_by_time_and_are_portable() {
        let t = time::macros::datetime!(2026-11-23 10:22:46 +02:00);
        assert_eq!(
            export_file_name(t),
            "sallyport-diagnostics-20261123T082246Z.zip"
        );
    }

    #[test]
    fn errors_reach_the_window_as_their_message() {
        assert_eq!(
            serde_json::to_value(CommandError::NotRunning).ok(),
            Some(serde_json::Value::String(NOT_RUNNING.into()))
        );
        assert_eq!(
            serde_json::to_value(CommandError::Agent("no application \"x\"".into())).ok(),
            Some(serde_json::Value::String("no application \"x\"".into()))
        );
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn no_agent_listening_is_reported_as_not_running() {
        let dir = tempfile::tempdir().unwrap();
        let link = AgentLink::new(dir.path().join("agent.sock"));
        assert_eq!(
            link.ask(&Request::Status).await,
            Err(CommandError::NotRunning)
        );
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn answers_and_refusals_are_relayed_unchanged() {
        use agent::control::unix::ControlServer;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sallyport").join("agent.sock");
        let server = ControlServer::bind(&path).await.unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(server.serve(tx));
        tokio::spawn(async move {
            while let Some((request, reply)) = rx.recv().await {
                let answer = match request {
                    Request::SignInDevice => Reply::Ok {
                        data: serde_json::json!({
                            "user_code": "WDJB-MJHT",
                            "verification_uri": "https://idp.example/device",
                            "verification_uri_complete": null,
                            "expires_in": 600
                        }),
                    },
                    Request::Connect { app } => Reply::Error {
                        message: format!("no application {app:?} in the catalogue"),
                    },
                    _ => Reply::Ok {
                        data: serde_json::json!({"unexpected": true}),
                    },
                };
                let _ = reply.send(answer);
            }
        });
        let link = AgentLink::new(path);
        let code: DeviceCodeView = link.ask_as(&Request::SignInDevice).await.unwrap();
        assert_eq!(code.user_code, "WDJB-MJHT");
        assert_eq!(
            link.ask(&Request::Connect { app: "x".into() }).await,
            Err(CommandError::Agent(
                "no application \"x\" in the catalogue".into()
            ))
        );
        assert!(matches!(
            link.ask_as::<StatusView>(&Request::Status).await,
            Err(CommandError::Unexpected(_))
        ));
    }
}
