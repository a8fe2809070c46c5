//! Hosting the agent: what `sallyport run` does, as a library call, so the
//! tray app can run the agent inside its own process when none is running.
//!
//! Hosting is two steps on purpose. [`bind`] claims the control socket
//! first: a live socket means another agent (the `sallyport run` service,
//! or another app instance) already runs, and the caller must talk to that
//! one instead of starting a second. Only then does [`Hosted::run`] start
//! the runtime, serving the same control protocol on that socket — so the
//! CLI and the app reach an in-process agent exactly as they reach a
//! stand-alone one.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::broker_client::{BrokerClient, BrokerError};
use crate::config::Settings;
use crate::control::view::BROKER_UNREACHABLE;
use crate::identity::store::{KeyringStore, SecretStore, StoreError};
use crate::identity::{Identity, IdentityConfig};
use crate::runtime::{Runtime, RuntimeOptions};
use crate::supervisor::Timing;

/// How long one broker call may take before it counts as unreachable.
const BROKER_TIMEOUT: Duration = Duration::from_secs(10);

/// Keyring service name shared with the CLI, so a `sallyport login` in a
/// terminal signs the hosted agent in too.
const KEYRING_SERVICE: &str = "sallyport";

/// What an agent needs to start.
#[derive(Debug, Clone)]
pub struct HostSpec {
    /// The access broker's base URL.
    pub broker_url: String,
    /// Where to sign in; `None` asks the broker (`GET /v1/config`).
    pub identity: Option<IdentityConfig>,
    /// The control socket to serve.
    pub socket: PathBuf,
    /// Posture interval and apps to connect at start.
    pub settings: Settings,
    /// Where the timeline (`timeline.jsonl`) and the log files (`logs/`)
    /// live: the user's state directory; `None` keeps the timeline in
    /// memory.
    pub state_dir: Option<PathBuf>,
}

/// Why the agent could not be hosted.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The settings could not be read.
    #[error("configuration: {0}")]
    Config(#[from] crate::config::ConfigError),
    /// No broker URL anywhere. The message names the file to edit, since
    /// the tray app shows it to people who never used the CLI.
    #[error(
        "no access broker configured: set broker_url in {settings_file} (or in the managed configuration), or the SALLYPORT_BROKER environment variable"
    )]
    NoBroker {
        /// The user settings file.
        settings_file: String,
    },
    /// The configured issuer is not a URL.
    #[error("the configured issuer {0:?} is not a URL")]
    BadIssuer(String),
    /// Another agent answers on the socket: talk to it instead.
    #[error("an agent is already running on {0}")]
    AlreadyRunning(String),
    /// The control socket could not be set up.
    #[error("control socket: {0}")]
    Control(String),
    /// The broker could not be reached or refused (only when it must say
    /// where to sign in).
    #[error("access broker: {0}")]
    Broker(#[from] BrokerError),
    /// The OS keyring is unavailable.
    #[error("OS keyring: {0}")]
    Keyring(#[from] StoreError),
}

impl HostSpec {
    /// The spec from the effective settings: `broker` (a command-line flag)
    /// wins over `SALLYPORT_BROKER`, which wins over the settings file. The
    /// issuer comes from the settings when set there, else from the broker.
    pub fn from_settings(
        settings: Settings,
        broker: Option<String>,
        socket: PathBuf,
    ) -> Result<Self, HostError> {
        let broker_url = broker
            .or_else(|| {
                std::env::var("SALLYPORT_BROKER")
                    .ok()
                    .filter(|v| !v.is_empty())
            })
            .or_else(|| settings.broker_url.clone())
            .ok_or_else(|| HostError::NoBroker {
                settings_file: crate::config::user_config_path().map_or_else(
                    || "the user settings file".to_owned(),
                    |path| path.display().to_string(),
                ),
            })?;
        let identity = match &settings.issuer {
            None => None,
            Some(issuer) => {
                let url =
                    url::Url::parse(issuer).map_err(|_| HostError::BadIssuer(issuer.clone()))?;
                let client_id = settings
                    .client_id
                    .clone()
                    .unwrap_or_else(|| "sallyport-desktop".to_owned());
                Some(IdentityConfig::new(url, client_id))
            }
        };
        Ok(HostSpec {
            broker_url,
            identity,
            socket,
            settings,
            state_dir: crate::config::user_state_dir(),
        })
    }
}

/// An agent whose control socket is claimed, ready to run.
#[derive(Debug)]
pub struct Hosted {
    spec: HostSpec,
    server: ControlServer,
}

/// Claims the control socket. Fails with [`HostError::AlreadyRunning`] when
/// another agent answers there (a stale socket file is replaced).
pub async fn bind(spec: HostSpec) -> Result<Hosted, HostError> {
    let server = ControlServer::bind(&spec.socket).await?;
    Ok(Hosted { spec, server })
}

impl Hosted {
    /// The socket this agent serves.
    pub fn socket(&self) -> &std::path::Path {
        &self.spec.socket
    }

    /// Runs the agent until `shutdown` completes; every tunnel is closed
    /// when it returns.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), HostError> {
        let Hosted { spec, server } = self;
        let broker = BrokerClient::new(&spec.broker_url, BROKER_TIMEOUT)?;
        // The control socket answers from the start, so `status` and the
        // tray can say what the agent is waiting for.
        let (tx, mut rx) = tokio::sync::mpsc::channel(16);
        tokio::spawn(server.serve(tx));
        tokio::pin!(shutdown);
        // The timeline from the start: a laptop that boots offline records
        // why nothing opens, and `history` answers while it waits.
        let mut timeline = match &spec.state_dir {
            Some(dir) => crate::timeline::Timeline::open(dir, time::OffsetDateTime::now_utc()),
            None => crate::timeline::Timeline::in_memory(),
        };
        let mut identity_config = match spec.identity {
            Some(config) => config,
            None => {
                // Where to sign in comes from the broker. At boot the network
                // (or the VPN to the broker) may not be up yet: keep asking,
                // with backoff, instead of exiting.
                let remote = tokio::select! {
                    remote = wait_for_broker(&broker, &mut rx, &mut timeline) => remote?,
                    () = &mut shutdown => return Ok(()),
                };
                let issuer = url::Url::parse(&remote.issuer)
                    .map_err(|_| HostError::BadIssuer(remote.issuer.clone()))?;
                let mut config = IdentityConfig::new(issuer, remote.client_id);
                config.acr_values = remote.required_acr.into_iter().collect();
                config
            }
        };
        let wanted = &spec.settings.identity;
        if !wanted.acr_values.is_empty() {
            identity_config.acr_values = wanted.acr_values.clone();
        }
        if let Some(secs) = wanted.max_auth_age_secs {
            identity_config.max_auth_age = Some(Duration::from_secs(secs));
        }
        if !wanted.mfa_amr.is_empty() {
            identity_config.mfa.amr = wanted.mfa_amr.clone();
        }
        let store: Arc<dyn SecretStore> = Arc::new(KeyringStore::open_default(KEYRING_SERVICE)?);
        let identity = Arc::new(Identity::new(identity_config, store.clone()));
        let options = RuntimeOptions {
            timing: Timing {
                posture_interval: time::Duration::seconds(
                    i64::try_from(spec.settings.posture_interval_secs).unwrap_or(60),
                ),
                ..Timing::default()
            },
            collect: posture::collect::Options {
                cache: posture::cache::Cache::default_location(),
                ..posture::collect::Options::default()
            },
            auto_connect: spec.settings.apps.auto_connect.clone(),
        };
        tracing::info!(socket = %spec.socket.display(), broker = %spec.broker_url, "agent running");
        let mut runtime = Runtime::new(identity, store, broker, options)
            .with_socks_auth(spec.settings.tunnels.socks_auth);
        runtime = runtime.with_timeline(timeline);
        if let Some(dir) = &spec.state_dir {
            runtime = runtime.with_logs_dir(dir.join("logs"));
        }
        if let Some(socket) = device_service_socket(&spec.settings) {
            tracing::info!(socket = %socket, "the device service holds the device key");
            runtime = runtime.with_device_service(service::client::DeviceService::socket(socket));
        }
        runtime.run(rx, shutdown).await;
        tracing::info!("agent stopped; all tunnels closed");
        Ok(())
    }
}

/// First retry delay while the broker does not answer; doubles to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_secs(1);
/// Longest delay between two attempts.
const MAX_RETRY: Duration = Duration::from_secs(60);

/// `GET /v1/config` until the broker answers, answering control requests
/// meanwhile: `status` says the broker is unreachable (and why), `apps` is
/// empty, `history` answers from the timeline (where the first failure is
/// recorded), anything else is refused with the same sentence. A broker
/// that answers but refuses, or answers garbage, is a configuration error
/// and ends the wait.
async fn wait_for_broker(
    broker: &BrokerClient,
    control: &mut tokio::sync::mpsc::Receiver<crate::control::Incoming>,
    timeline: &mut crate::timeline::Timeline,
) -> Result<broker::api::BrokerConfig, BrokerError> {
    let mut delay = FIRST_RETRY;
    let mut recorded = false;
    loop {
        let error = match broker.config().await {
            Ok(config) => return Ok(config),
            Err(e) if retryable(&e) => e,
            Err(e) => return Err(e),
        };
        let message = format!("{BROKER_UNREACHABLE}: {error}");
        tracing::warn!(retry_in = ?delay, "{message}");
        if !recorded {
            recorded = true;
            timeline.push(
                crate::timeline::Entry::new(
                    time::OffsetDateTime::now_utc(),
                    crate::timeline::Kind::Broker,
                    "unreachable at start, retrying",
                )
                .reason(error.to_string()),
            );
        }
        let retry = tokio::time::sleep(delay);
        tokio::pin!(retry);
        loop {
            tokio::select! {
                () = &mut retry => break,
                request = control.recv() => match request {
                    Some((crate::control::Request::History { since }, reply)) => {
                        let _ = reply.send(crate::control::Reply::Ok {
                            data: serde_json::to_value(timeline.since(since)).unwrap_or_default(),
                        });
                    }
                    Some((request, reply)) => {
                        let _ = reply.send(offline_reply(&request, &message));
                    }
                    // Nobody can ask anything any more; keep trying quietly.
                    None => (&mut retry).await,
                },
            }
        }
        delay = (delay * 2).min(MAX_RETRY);
    }
}

/// Whether waiting may help: no connection, no answer in time, or the
/// broker's own failure (5xx).
fn retryable(e: &BrokerError) -> bool {
    match e {
        BrokerError::Unreachable(_) | BrokerError::Timeout(_) => true,
        BrokerError::Refused(problem) => problem.status >= 500,
        _ => false,
    }
}

/// The answer to a control request while the broker is unreachable.
fn offline_reply(request: &crate::control::Request, message: &str) -> crate::control::Reply {
    use crate::control::view::{IdentityView, StatusView};
    use crate::control::{Reply, Request};
    let ok = |data| Reply::Ok { data };
    match request {
        Request::Status => ok(serde_json::to_value(StatusView {
            identity: IdentityView::SignedOut,
            verdict: None,
            tunnels: Vec::new(),
            posture_collected_at: None,
            enrolment: Default::default(),
            broker_unreachable: Some(message.to_owned()),
            support_code: None,
            update: None,
        })
        .unwrap_or_default()),
        Request::Apps => ok(serde_json::Value::Array(Vec::new())),
        _ => Reply::Error {
            message: format!("{message}; try again once it answers"),
        },
    }
}

/// The device service's socket: `SALLYPORT_SERVICE_SOCKET`, else the
/// `device_service_socket` setting; `None` keeps the keyring key.
pub fn device_service_socket(settings: &crate::config::Settings) -> Option<String> {
    std::env::var(service::client::SOCKET_ENV)
        .ok()
        .filter(|v| !v.is_empty())
        .or_else(|| settings.device_service_socket.clone())
}

#[cfg(unix)]
use crate::control::unix::ControlServer;
#[cfg(windows)]
use crate::control::windows::ControlServer;

impl From<crate::control::ControlError> for HostError {
    fn from(e: crate::control::ControlError) -> Self {
        use crate::control::ControlError;
        match e {
            ControlError::AlreadyRunning(path) => HostError::AlreadyRunning(path),
            other => HostError::Control(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_wins_then_the_settings() {
        let settings = Settings {
            broker_url: Some("https://broker.example".into()),
            ..Settings::default()
        };
        // SALLYPORT_BROKER is not set in the test environment.
        let from_flag = HostSpec::from_settings(
            settings.clone(),
            Some("https://flag.example".into()),
            "/tmp/x".into(),
        )
        .unwrap();
        assert_eq!(from_flag.broker_url, "https://flag.example");
        let from_file = HostSpec::from_settings(settings, None, "/tmp/x".into()).unwrap();
        assert_eq!(from_file.broker_url, "https://broker.example");
        assert!(from_file.identity.is_none());
    }

    #[test]
    fn no_broker_or_a_bad_issuer_is_a_clear_error() {
        if std::env::var_os("SALLYPORT_BROKER").is_some() {
            return;
        }
        let err = HostSpec::from_settings(Settings::default(), None, "/tmp/x".into()).unwrap_err();
        assert!(matches!(err, HostError::NoBroker { .. }), "{err}");
        if let Some(file) = crate::config::user_config_path() {
            assert!(
                err.to_string().contains(&file.display().to_string()),
                "{err}"
            );
        }
        let settings = Settings {
            broker_url: Some("https://broker.example".into()),
            issuer: Some("not a url".into()),
            ..Settings::default()
        };
        let err = HostSpec::from_settings(settings, None, "/tmp/x".into()).unwrap_err();
        assert!(err.to_string().contains("not a URL"), "{err}");
    }
}
