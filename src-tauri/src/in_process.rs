//! Running the agent inside the app when none is running.
//!
//! At start the app asks the control socket. When an agent answers (the
//! `sallyport run` service IT installed, or another session's app), the app
//! only talks to it. When nothing answers, the app hosts the agent itself
//! with [`agent::host`], on the same socket: the window, the tray and the
//! `sallyport` CLI then reach it the usual way. The hosted agent lives as
//! long as the app; quitting stops it and closes its tunnels.
//!
//! Decision order, and why: ask first (a running agent always wins, never
//! two agents gating the same tunnels); then claim the socket, which fails
//! if another app instance won the race (it is then external too).

use std::sync::Arc;
use std::time::Duration;

use agent::control::Request;
use agent::host::{HostError, HostSpec};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::commands::{AgentLink, CommandError};

/// How long quitting waits for the hosted agent to close its tunnels and
/// release its grants.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// Who serves the control socket.
#[derive(Debug)]
pub enum Hosting {
    /// Another process's agent answers; the app only talks to it.
    External,
    /// This app runs the agent.
    InProcess(HostedAgent),
    /// No agent runs and none could be started, with the reason (also
    /// recorded on the link, so the window shows it).
    Unavailable(String),
}

/// The agent running inside the app.
#[derive(Debug)]
pub struct HostedAgent {
    stop: Arc<Notify>,
    task: JoinHandle<Result<(), HostError>>,
}

impl HostedAgent {
    /// Stops the agent (every tunnel closes) and waits for it, at most
    /// [`STOP_GRACE`].
    pub async fn stop(self) {
        self.stop.notify_one();
        match tokio::time::timeout(STOP_GRACE, self.task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "hosted agent ended with an error"),
            Ok(Err(e)) => tracing::warn!(error = %e, "hosted agent task failed"),
            Err(_) => tracing::warn!("hosted agent did not stop in time"),
        }
    }

    /// Whether the agent already ended (it failed after starting).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

/// Hosts an agent on `link`'s socket unless one answers there already.
/// `spec` is only built when needed (it reads the configuration).
pub async fn start_if_absent(
    link: &AgentLink,
    spec: impl FnOnce() -> Result<HostSpec, HostError>,
) -> Hosting {
    match link.ask(&Request::Status).await {
        // Any answer, even a refusal, means an agent is there.
        Ok(_) | Err(CommandError::Agent(_) | CommandError::Unexpected(_)) => {
            link.set_cannot_host(None);
            return Hosting::External;
        }
        Err(CommandError::NotRunning | CommandError::CannotHost(_)) => {}
        Err(CommandError::Channel(e)) => {
            // Something is there but talking failed: starting a second agent
            // next to it would be worse than reporting the fault.
            return unavailable(link, format!("the agent's socket is not usable: {e}"));
        }
    }
    let spec = match spec() {
        Ok(spec) => spec,
        Err(e) => return unavailable(link, e.to_string()),
    };
    if spec.socket != link.socket() {
        return unavailable(
            link,
            "the agent would listen where the app does not look".to_owned(),
        );
    }
    let hosted = match agent::host::bind(spec).await {
        Ok(hosted) => hosted,
        Err(HostError::AlreadyRunning(_)) => {
            link.set_cannot_host(None);
            return Hosting::External;
        }
        Err(e) => return unavailable(link, e.to_string()),
    };
    link.set_cannot_host(None);
    let stop = Arc::new(Notify::new());
    let stopped = stop.clone();
    let failure = link.clone();
    let task = tokio::spawn(async move {
        let result = hosted.run(async move { stopped.notified().await }).await;
        if let Err(e) = &result {
            // E.g. the broker answered but refused to say where to sign in
            // (an unreachable broker is waited for instead): the socket is
            // gone again, and the window says why.
            tracing::warn!(error = %e, "the in-process agent stopped");
            failure.set_cannot_host(Some(e.to_string()));
        }
        result
    });
    tracing::info!(socket = %link.socket().display(), "no agent was running; hosting one in-process");
    Hosting::InProcess(HostedAgent { stop, task })
}

fn unavailable(link: &AgentLink, reason: String) -> Hosting {
    tracing::warn!(%reason, "no agent running and none could be hosted");
    link.set_cannot_host(Some(reason.clone()));
    Hosting::Unavailable(reason)
}
