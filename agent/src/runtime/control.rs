//! Answering the control requests of the CLI and the tray app
//! ([`crate::control`]): status and history from the runtime's state, and
//! the user's wishes (connect, sign in or out, re-check) as supervisor
//! events. Sign-in runs on a task; the session poll picks its result up.

use std::time::Duration;

use tokio::sync::oneshot;

use super::tasks::Outcome;
use super::{Runtime, now};
use crate::control::{Reply, Request};
use crate::identity::session::SessionState;
use crate::supervisor::Event;
use crate::timeline::{Entry, Kind};

impl Runtime {
    pub(super) async fn answer(&mut self, request: Request) -> Reply {
        let ok = |data: serde_json::Value| Reply::Ok { data };
        match request {
            Request::Status => ok(serde_json::to_value(self.status_view()).unwrap_or_default()),
            Request::Posture => ok(serde_json::json!({
                "report": self.report.as_deref(),
                "violations": self.evaluation.as_ref().map(|e| &e.violations),
            })),
            Request::Recheck => {
                self.feed(Event::EnvironmentChanged).await;
                ok(serde_json::Value::Null)
            }
            // The run loop answers `apps` from a task (`answer_apps`, it may
            // ask the broker); this is what the agent knows by itself.
            Request::Apps => ok(serde_json::to_value(self.apps_view()).unwrap_or_default()),
            Request::Connect { app } => {
                if !self.known_app(&app) {
                    return Reply::Error {
                        message: format!("no application {app:?} in the catalogue"),
                    };
                }
                self.feed(Event::Connect(app)).await;
                ok(serde_json::Value::Null)
            }
            Request::Disconnect { app } => {
                self.feed(Event::Disconnect(app)).await;
                ok(serde_json::Value::Null)
            }
            Request::History { since } => {
                ok(serde_json::to_value(self.history(since)).unwrap_or_default())
            }
            Request::SignIn => {
                self.spawn_sign_in();
                ok(serde_json::Value::Null)
            }
            Request::SignInDevice => match self.start_device_sign_in().await {
                Ok(view) => ok(serde_json::to_value(view).unwrap_or_default()),
                Err(message) => Reply::Error { message },
            },
            // The run loop answers this from a task (`export_diagnostics`:
            // it checks the broker connection); here only if called
            // directly.
            Request::ExportDiagnostics { path } => {
                let path = std::path::PathBuf::from(path);
                let mut bundle = self.diagnostics_bundle();
                bundle.json("connectivity.json", &self.broker.connectivity().await);
                match bundle.write_zip(&path) {
                    Ok(()) => ok(serde_json::json!(path.display().to_string())),
                    Err(e) => Reply::Error {
                        message: e.to_string(),
                    },
                }
            }
            Request::SignOut => {
                self.feed(Event::UserSignedOut).await;
                let result = self.identity.logout().await;
                self.session_seen = Some(SessionState::SignedOut);
                match result {
                    Ok(_) => ok(serde_json::Value::Null),
                    Err(e) => Reply::Error {
                        message: e.to_string(),
                    },
                }
            }
        }
    }

    /// A browser sign-in in the background; the session poll picks it up.
    /// When the broker asked for a stronger or more recent one (RFC 9470)
    /// for the whole session, or an app the user wants waits on its access
    /// policy's step-up, with those `acr_values` and `max_age` (the
    /// session's first: without it nothing opens).
    pub(super) fn spawn_sign_in(&self) {
        let identity = self.identity.clone();
        let tx = self.tx.clone();
        let overrides = match self.refused_sign_in.as_ref().map(|r| &r.reason) {
            Some(crate::identity::session::ReauthReason::StepUp {
                acr_values,
                max_age,
            }) => overrides(acr_values, *max_age),
            _ => match self.pending_step_up() {
                Some(step_up) => overrides(&step_up.acr_values, step_up.max_age),
                None => crate::identity::client::AuthOverrides::default(),
            },
        };
        tokio::spawn(async move {
            let open = |url: &url::Url| crate::identity::browser::open(url);
            let outcome = match identity.login_browser(&open, &overrides).await {
                Ok(who) => Outcome::Session(who.state),
                Err(e) => Outcome::Note(
                    Entry::new(now(), Kind::Session, "sign-in failed").reason(e.to_string()),
                ),
            };
            let _ = tx.send(outcome);
        });
    }

    /// Starts a device-code sign-in and returns the code to show as soon as
    /// the IdP hands it out; the polling goes on in the background.
    pub(super) async fn start_device_sign_in(
        &self,
    ) -> Result<crate::control::view::DeviceCodeView, String> {
        use crate::control::view::DeviceCodeView;
        let identity = self.identity.clone();
        let tx = self.tx.clone();
        let (prompt_tx, prompt_rx) = oneshot::channel::<DeviceCodeView>();
        let prompt_tx = std::sync::Mutex::new(Some(prompt_tx));
        let (done_tx, done_rx) = oneshot::channel::<String>();
        tokio::spawn(async move {
            let show = |prompt: &crate::identity::client::DevicePrompt| {
                if let Some(sender) = prompt_tx.lock().ok().and_then(|mut s| s.take()) {
                    let _ = sender.send(DeviceCodeView {
                        user_code: prompt.user_code.clone(),
                        verification_uri: prompt.verification_uri.clone(),
                        verification_uri_complete: prompt.verification_uri_complete.clone(),
                        expires_in: prompt.expires_in,
                    });
                }
            };
            match identity.login_device(&show).await {
                Ok(who) => {
                    let _ = tx.send(Outcome::Session(who.state));
                }
                Err(e) => {
                    let _ = tx.send(Outcome::Note(
                        Entry::new(now(), Kind::Session, "device sign-in failed")
                            .reason(e.to_string()),
                    ));
                    let _ = done_tx.send(e.to_string());
                }
            }
        });
        tokio::select! {
            Ok(view) = prompt_rx => Ok(view),
            Ok(error) = done_rx => Err(error),
            () = tokio::time::sleep(Duration::from_secs(30)) => {
                Err("the identity provider did not start a device sign-in in time".to_owned())
            }
        }
    }

    /// Everything helpdesk needs, nothing secret (see `agent::diagnostics`),
    /// but the connectivity check, which needs the network.
    pub(super) fn diagnostics_bundle(&self) -> crate::diagnostics::Bundle {
        let mut bundle = crate::diagnostics::Bundle::default();
        let timeline = self.history(None);
        let lines: Vec<String> = timeline.iter().map(|e| e.line(true)).collect();
        bundle
            .machine_parts(Some(self.broker.base().as_str()), self.logs_dir.as_deref())
            .json(
                "status.json",
                &crate::diagnostics::without_socks_passwords(self.status_view()),
            )
            .json(
                "posture.json",
                &serde_json::json!({
                    "report": self.report.as_deref(),
                    "violations": self.evaluation.as_ref().map(|e| &e.violations),
                }),
            )
            .json("timeline.json", &timeline)
            .text("timeline.txt", lines.join("\n") + "\n");
        bundle
    }

    /// Writes the bundle from a task: the broker connectivity check and
    /// the zip never hold up the run loop (tunnels are enforced there).
    pub(super) fn export_diagnostics(
        &self,
        path: std::path::PathBuf,
        reply: oneshot::Sender<Reply>,
    ) {
        let mut bundle = self.diagnostics_bundle();
        let broker = self.broker.clone();
        tokio::spawn(async move {
            bundle.json("connectivity.json", &broker.connectivity().await);
            let written =
                tokio::task::spawn_blocking(move || bundle.write_zip(&path).map(|()| path)).await;
            let answer = match written {
                Ok(Ok(path)) => Reply::Ok {
                    data: serde_json::json!(path.display().to_string()),
                },
                Ok(Err(e)) => Reply::Error {
                    message: e.to_string(),
                },
                Err(e) => Reply::Error {
                    message: format!("the bundle could not be written: {e}"),
                },
            };
            let _ = reply.send(answer);
        });
    }

    pub(super) fn known_app(&self, app: &str) -> bool {
        // Before the catalogue arrives, accept: the broker refuses unknown apps.
        self.config
            .as_ref()
            .is_none_or(|c| c.apps.iter().any(|a| a.id == app))
    }
}

/// What a step-up asks the identity provider for.
fn overrides(
    acr_values: &[String],
    max_age: Option<u64>,
) -> crate::identity::client::AuthOverrides {
    crate::identity::client::AuthOverrides {
        acr_values: (!acr_values.is_empty()).then(|| acr_values.to_vec()),
        max_age,
    }
}
