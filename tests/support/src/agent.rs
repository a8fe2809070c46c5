//! The agent's runtime in-process, driven over the same control requests
//! the CLI and the tray app send, with helpers that wait for what a user
//! would see (a tunnel carrying traffic, a tunnel closed with its reason).

use std::sync::Arc;
use std::time::{Duration, Instant};

use agent::broker_client::BrokerClient;
use agent::control::view::{StatusView, TunnelState};
use agent::control::{Reply, Request};
use agent::identity::Identity;
use agent::identity::client::AuthOverrides;
use agent::identity::store::SecretStore;
use agent::runtime::{ControlRequest, Runtime, RuntimeOptions};
use tokio::sync::{mpsc, oneshot};

use crate::echo::echo_through;
use crate::idp;

/// A running in-process agent; [`AgentHandle::stop`] ends it.
#[derive(Debug)]
pub struct AgentHandle {
    control: mpsc::Sender<ControlRequest>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl AgentHandle {
    /// Starts the runtime on the current tokio runtime.
    pub fn start(
        identity: Arc<Identity>,
        store: Arc<dyn SecretStore>,
        broker: &str,
        options: RuntimeOptions,
    ) -> AgentHandle {
        let client = BrokerClient::new(broker, Duration::from_secs(5)).unwrap();
        Self::start_runtime(Runtime::new(identity, store, client, options))
    }

    /// Starts the runtime with the device service signing for it.
    pub fn start_with_service(
        identity: Arc<Identity>,
        store: Arc<dyn SecretStore>,
        broker: &str,
        options: RuntimeOptions,
        link: agent::device_service::client::DeviceService,
    ) -> AgentHandle {
        let client = BrokerClient::new(broker, Duration::from_secs(5)).unwrap();
        Self::start_runtime(
            Runtime::new(identity, store, client, options).with_device_service(link),
        )
    }

    /// Starts the runtime with its timeline stored in `state_dir` (as the
    /// real agent keeps it in the user's state directory) and its log
    /// directory named for the diagnostics bundle.
    pub fn start_with_state(
        identity: Arc<Identity>,
        store: Arc<dyn SecretStore>,
        broker: &str,
        options: RuntimeOptions,
        state_dir: &std::path::Path,
    ) -> AgentHandle {
        let client = BrokerClient::new(broker, Duration::from_secs(5)).unwrap();
        let timeline =
            agent::timeline::Timeline::open(state_dir, std::time::SystemTime::now().into());
        Self::start_runtime(
            Runtime::new(identity, store, client, options)
                .with_timeline(timeline)
                .with_logs_dir(state_dir.join("logs")),
        )
    }

    fn start_runtime(runtime: Runtime) -> AgentHandle {
        let (control, rx) = mpsc::channel(8);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(runtime.run(rx, async {
            let _ = stopped.await;
        }));
        AgentHandle {
            control,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Serves the agent's control socket at `path` (as `sallyport run` does),
    /// so the real CLI can talk to this agent; stops with the agent.
    #[cfg(unix)]
    pub async fn serve_control(&self, path: &std::path::Path) {
        let server = agent::control::unix::ControlServer::bind(path)
            .await
            .unwrap();
        tokio::spawn(server.serve(self.control.clone()));
    }

    /// One control request; its data, or a panic with the agent's refusal.
    pub async fn ask(&self, request: Request) -> serde_json::Value {
        match self.try_ask(request).await {
            Ok(data) => data,
            Err(message) => panic!("agent refused: {message}"),
        }
    }

    /// One control request; its data, or the agent's refusal.
    pub async fn try_ask(&self, request: Request) -> Result<serde_json::Value, String> {
        let (tx, rx) = oneshot::channel();
        self.control
            .send((request, tx))
            .await
            .map_err(|_| "the agent has stopped".to_owned())?;
        match rx.await.map_err(|_| "the agent has stopped".to_owned())? {
            Reply::Ok { data } => Ok(data),
            Reply::Error { message } => Err(message),
        }
    }

    /// What `sallyport status` shows.
    pub async fn status(&self) -> StatusView {
        serde_json::from_value(self.ask(Request::Status).await).unwrap()
    }

    /// Waits until `app`'s tunnel is up and carries traffic; returns its
    /// local forward address.
    pub async fn until_traffic_flows(&self, app: &str, within: Duration, what: &str) -> String {
        let deadline = Instant::now() + within;
        loop {
            let status = self.status().await;
            if let Some(local) = status
                .tunnels
                .iter()
                .find(|t| t.app == app && t.state == TunnelState::Up)
                .and_then(|t| t.forwards.first())
                .map(|f| f.local.clone())
                && echo_through(&local).await.is_ok()
            {
                return local;
            }
            if Instant::now() >= deadline {
                let history = self.ask(Request::History { since: None }).await;
                panic!(
                    "{what}: traffic did not flow within {within:?}; status: {status:#?}\nhistory: {history:#}"
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until `app`'s tunnel is closed and traffic through `local`
    /// stops; returns the reason the agent gives.
    pub async fn until_closed(
        &self,
        app: &str,
        local: &str,
        within: Duration,
        what: &str,
    ) -> String {
        let deadline = Instant::now() + within;
        loop {
            let status = self.status().await;
            let tunnel = status.tunnels.iter().find(|t| t.app == app);
            if let Some(t) = tunnel
                && t.state != TunnelState::Up
                && t.forwards.is_empty()
            {
                assert!(
                    echo_through(local).await.is_err(),
                    "{what}: tunnel reported closed but traffic still flows"
                );
                return t.reason.clone().unwrap_or_default();
            }
            if Instant::now() >= deadline {
                let history = self.ask(Request::History { since: None }).await;
                panic!(
                    "{what}: the tunnel did not close within {within:?}; status: {status:#?}\nhistory: {history:#}"
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the status satisfies `what_we_see`; returns that status.
    pub async fn until_status(
        &self,
        within: Duration,
        what: &str,
        what_we_see: impl Fn(&StatusView) -> bool,
    ) -> StatusView {
        let deadline = Instant::now() + within;
        loop {
            let status = self.status().await;
            if what_we_see(&status) {
                return status;
            }
            if Instant::now() >= deadline {
                let history = self.ask(Request::History { since: None }).await;
                panic!(
                    "{what}: not seen within {within:?}; status: {status:#?}\nhistory: {history:#}"
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops the runtime and waits for it (its tunnels close).
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

/// Signs `identity` in at the test IdP (browser flow, password + TOTP),
/// playing the user's browser.
pub async fn login(identity: &Identity) {
    let open = |url: &url::Url| {
        let url = url.to_string();
        tokio::spawn(async move {
            idp::complete_browser_login(&url).await;
        });
        Ok(())
    };
    identity
        .login_browser(&open, &AuthOverrides::default())
        .await
        .unwrap();
}
