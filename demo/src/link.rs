//! The demo's line to the in-process agent: the same control requests the
//! CLI and the tray app send over the socket, sent over the runtime's
//! channel, plus the waits each stage needs ("until the tunnel is up and a
//! page comes through"). A wait that runs out says what it waited for and
//! what the agent last reported, so a failed demo tells which part of the
//! product did not work here.

use std::time::{Duration, Instant};

use agent::control::view::{StatusView, TunnelState, TunnelView};
use agent::control::{Reply, Request};
use agent::runtime::ControlRequest;
use tokio::sync::{mpsc, oneshot};

use crate::fetch::{Page, fetch};
use crate::run::{APP_ID, DemoError, STAGE_TIMEOUT};

/// The in-process agent, asked over its control channel exactly as the
/// CLI and tray app ask it over the socket.
#[derive(Debug, Clone)]
pub(crate) struct AgentLink {
    control: mpsc::Sender<ControlRequest>,
}

impl AgentLink {
    /// A link over the runtime's control channel.
    pub(crate) fn new(control: mpsc::Sender<ControlRequest>) -> Self {
        AgentLink { control }
    }

    /// One request; the agent's data, or why there is none.
    pub(crate) async fn ask(&self, request: Request) -> Result<serde_json::Value, DemoError> {
        let (tx, rx) = oneshot::channel();
        let stopped = || DemoError::Broken("the agent stopped unexpectedly".to_owned());
        self.control
            .send((request, tx))
            .await
            .map_err(|_| stopped())?;
        match rx.await.map_err(|_| stopped())? {
            Reply::Ok { data } => Ok(data),
            Reply::Error { message } => {
                Err(DemoError::Broken(format!("the agent refused: {message}")))
            }
        }
    }

    /// The agent's status, as `sallyport status --json` shows it.
    pub(crate) async fn status(&self) -> Result<StatusView, DemoError> {
        let data = self.ask(Request::Status).await?;
        serde_json::from_value(data)
            .map_err(|e| DemoError::Broken(format!("unexpected status from the agent: {e}")))
    }

    /// The newest decision mentioning `text`.
    pub(crate) async fn decision_containing(&self, text: &str) -> Option<String> {
        let history = self.ask(Request::History { since: None }).await.ok()?;
        history
            .as_array()?
            .iter()
            .rev()
            .filter_map(|d| d.get("what")?.as_str())
            .find(|what| what.contains(text))
            .map(str::to_owned)
    }

    /// Polls the status until `done` holds, for at most `within`.
    pub(crate) async fn until(
        &self,
        what: &'static str,
        within: Duration,
        done: impl Fn(&StatusView) -> bool,
    ) -> Result<StatusView, DemoError> {
        let deadline = Instant::now() + within;
        loop {
            let status = self.status().await?;
            if done(&status) {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                return Err(self.timeout(what, within).await);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the app's tunnel is up and a page comes through it;
    /// returns the local address and that page.
    pub(crate) async fn until_traffic_flows(
        &self,
        what: &'static str,
    ) -> Result<(String, Page), DemoError> {
        let deadline = Instant::now() + STAGE_TIMEOUT;
        loop {
            let status = self.status().await?;
            if let Some(local) = up_forward(&status)
                && let Ok(page) = fetch(&local).await
                && page.status == 200
            {
                return Ok((local, page));
            }
            if Instant::now() >= deadline {
                return Err(self.timeout(what, STAGE_TIMEOUT).await);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until the app's tunnel is closed and gives the agent's reason,
    /// preferring one that names `check` (the first reason shown may be an
    /// intermediate one, such as "being checked").
    pub(crate) async fn until_closed(&self, local: &str, check: &str) -> Result<String, DemoError> {
        let deadline = Instant::now() + STAGE_TIMEOUT;
        let mut closed_reason: Option<String> = None;
        let mut closed_at: Option<Instant> = None;
        loop {
            let status = self.status().await?;
            match app_tunnel(&status) {
                Some(t) if t.state != TunnelState::Up && t.forwards.is_empty() => {
                    let reason = t.reason.clone().unwrap_or_default();
                    if closed_at.is_none() {
                        closed_at = Some(Instant::now());
                        if fetch(local).await.is_ok() {
                            return Err(DemoError::Broken(format!(
                                "the agent reports the tunnel closed, but http://{local} still answers"
                            )));
                        }
                    }
                    if reason.contains(check) {
                        return Ok(reason);
                    }
                    if !reason.is_empty() {
                        closed_reason = Some(reason);
                    }
                }
                _ => {}
            }
            let give_up = closed_at.is_some_and(|t| t.elapsed() > Duration::from_secs(10));
            if give_up && let Some(reason) = closed_reason.take() {
                return Ok(reason);
            }
            if Instant::now() >= deadline {
                return Err(self.timeout("the tunnel closing", STAGE_TIMEOUT).await);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The error for a wait that ran out: what was awaited, the agent's
    /// state and its last few decisions.
    async fn timeout(&self, what: &'static str, within: Duration) -> DemoError {
        let state = match self.status().await {
            Ok(status) => summarize_status(&status),
            Err(e) => e.to_string(),
        };
        let history = self
            .ask(Request::History { since: None })
            .await
            .ok()
            .and_then(|h| {
                h.as_array().map(|items| {
                    items
                        .iter()
                        .rev()
                        .take(5)
                        .filter_map(|d| d.get("what")?.as_str().map(str::to_owned))
                        .collect::<Vec<_>>()
                })
            })
            .unwrap_or_default();
        DemoError::Timeout {
            what,
            within,
            state: format!("{state}; recent decisions: {}", history.join(" | ")),
        }
    }
}

/// The demo app's tunnel in a status, if the agent has one.
pub(crate) fn app_tunnel(status: &StatusView) -> Option<&TunnelView> {
    status.tunnels.iter().find(|t| t.app == APP_ID)
}

/// The local address of the demo app's tunnel, while it is up.
fn up_forward(status: &StatusView) -> Option<String> {
    app_tunnel(status)
        .filter(|t| t.state == TunnelState::Up)
        .and_then(|t| t.forwards.first())
        .map(|f| f.local.clone())
}

/// One line of agent state for error messages (facts only, no tokens).
fn summarize_status(status: &StatusView) -> String {
    let verdict = match &status.verdict {
        None => "no verdict".to_owned(),
        Some(v) if v.compliant => "verdict compliant".to_owned(),
        Some(v) => format!(
            "verdict not compliant ({})",
            v.violations
                .iter()
                .map(|v| v.check.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let tunnel = match app_tunnel(status) {
        None => "tunnel not requested".to_owned(),
        Some(t) => format!(
            "tunnel {:?}{}",
            t.state,
            t.reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        ),
    };
    format!("{verdict}, {tunnel}")
}
