//! The running agent (`sallyport run`): the tokio driver of the
//! [`Supervisor`](crate::supervisor::Supervisor).
//!
//! It owns the I/O the supervisor asks for — posture collection, the broker
//! calls, the identity session, the tunnels — and feeds every result back as
//! an event. Slow work (HTTP, posture) runs on spawned tasks that report
//! through one channel; enforcement (`StopTunnel`) runs inline, so a failed
//! condition closes the tunnel before the next event is even looked at.
//!
//! Sources of events: the supervisor's own deadlines, task results, the
//! broker's event stream (reconnected with backoff), a 1 s housekeeping tick
//! (tunnel health, session changes made by another process such as
//! `sallyport login`), and control requests from the CLI and the tray app.

mod view;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use broker::api::{self, BrokerConfig};
use posture::attestation::{DeviceKey, EatClaims, MAX_EAT_LIFETIME_SECS};
use posture::collect::Options as CollectOptions;
use posture::policy::{Evaluation, Policy};
use posture::report::Report;
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};
use tunnel::{PrivateKey, PublicKey, Target, Tunnel, TunnelConfig, TunnelHandle};

use crate::broker_client::{BrokerClient, BrokerError};
use crate::control::{Reply, Request};
use crate::identity::Identity;
use crate::identity::session::SessionState;
use crate::supervisor::{
    self, Blocked, BrokerEvent, Command, Event, Grant, Session, Supervisor, Timing, Verdict,
};
use crate::triggers;

/// How many decisions the agent remembers for status and diagnostics.
const HISTORY: usize = 200;

/// What the runtime needs besides its collaborators.
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// The supervisor's timing.
    pub timing: Timing,
    /// How posture is collected.
    pub collect: CollectOptions,
    /// Apps to connect as soon as the agent starts.
    pub auto_connect: Vec<String>,
}

/// The enrolled device.
#[derive(Debug)]
struct Device {
    key: DeviceKey,
    id: String,
}

/// A grant the broker issued, with the tunnel key made for it.
struct Issued {
    grant: api::Grant,
    key: PrivateKey,
    endpoint: SocketAddr,
}

struct Running {
    grant_id: String,
    handle: TunnelHandle,
    expires_at: OffsetDateTime,
}

/// One decision, for `status`, notifications and the diagnostics bundle.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Decision {
    /// When (RFC 3339).
    pub at: String,
    /// What happened.
    pub what: String,
}

/// Results of spawned work.
enum Outcome {
    Setup(Result<(BrokerConfig, Result<Policy, String>), String>),
    Enrolled(Result<Device, String>),
    Posture {
        report: Box<Report>,
        evaluation: Result<Evaluation, String>,
    },
    Verdict(api::Verdict),
    AttestFailed(String),
    GrantIssued(String, Box<Issued>),
    GrantFailed(String, String),
    Session(SessionState),
    RefreshFailed(String),
    Broker(api::Event),
    PolicyFetched(Policy),
    /// A supervisor event raised while executing a command.
    Event(Event),
    /// Something to remember for status and diagnostics.
    Note(String),
}

/// A control request and where its reply goes.
pub type ControlRequest = (Request, oneshot::Sender<Reply>);

/// The agent.
pub struct Runtime {
    sup: Supervisor,
    identity: Arc<Identity>,
    broker: BrokerClient,
    options: RuntimeOptions,
    store: Arc<dyn crate::identity::store::SecretStore>,
    config: Option<BrokerConfig>,
    policy: Option<Arc<Policy>>,
    device: Option<Arc<Device>>,
    enrolling: bool,
    report: Option<Arc<Report>>,
    evaluation: Option<Evaluation>,
    session_seen: Option<SessionState>,
    subject: Option<String>,
    issued: HashMap<String, Issued>,
    tunnels: BTreeMap<String, Running>,
    ports: HashMap<(String, Target), u16>,
    socks_ports: HashMap<String, u16>,
    decisions: VecDeque<Decision>,
    /// Wake / network / file triggers for an early posture run.
    prober: triggers::probe::Prober,
    watcher: triggers::Watcher,
    tx: mpsc::UnboundedSender<Outcome>,
    rx: mpsc::UnboundedReceiver<Outcome>,
    events_task: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("broker", self.broker.base())
            .field("tunnels", &self.tunnels.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

fn to_session(state: &SessionState) -> Session {
    match state {
        SessionState::SignedOut => Session::SignedOut,
        SessionState::Valid { until, .. } => Session::Valid {
            until: OffsetDateTime::from_unix_timestamp(*until)
                .unwrap_or(OffsetDateTime::UNIX_EPOCH),
        },
        SessionState::NeedsReauth { reason } => Session::NeedsReauth {
            reason: reason.to_string(),
        },
    }
}

impl Runtime {
    /// A runtime over these collaborators. Nothing happens until [`Runtime::run`].
    pub fn new(
        identity: Arc<Identity>,
        store: Arc<dyn crate::identity::store::SecretStore>,
        broker: BrokerClient,
        options: RuntimeOptions,
    ) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Runtime {
            sup: Supervisor::new(options.timing.clone()),
            identity,
            broker,
            options,
            store,
            config: None,
            policy: None,
            device: None,
            enrolling: false,
            report: None,
            evaluation: None,
            session_seen: None,
            subject: None,
            issued: HashMap::new(),
            tunnels: BTreeMap::new(),
            ports: HashMap::new(),
            socks_ports: HashMap::new(),
            decisions: VecDeque::new(),
            prober: triggers::probe::Prober::default(),
            watcher: triggers::Watcher::default(),
            tx,
            rx,
            events_task: None,
        }
    }

    /// Runs until `control` closes or `shutdown` completes, then closes
    /// every tunnel.
    pub async fn run(
        mut self,
        mut control: mpsc::Receiver<ControlRequest>,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        self.spawn_setup(Duration::ZERO);
        for app in self.options.auto_connect.clone() {
            self.feed(Event::Connect(app)).await;
        }
        self.poll_session().await;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let sleep = self.sleep_until_deadline();
            tokio::select! {
                request = control.recv() => match request {
                    Some((request, reply)) => {
                        let answer = self.answer(request).await;
                        let _ = reply.send(answer);
                    }
                    None => break,
                },
                Some(outcome) = self.rx.recv() => self.on_outcome(outcome).await,
                () = sleep => self.feed(Event::Timer).await,
                () = &mut shutdown => break,
                _ = tick.tick() => self.housekeeping().await,
            }
        }
        self.shutdown().await;
    }

    fn sleep_until_deadline(&self) -> tokio::time::Sleep {
        let wait = match self.sup.next_deadline() {
            Some(deadline) => {
                let delta = deadline - now();
                Duration::try_from(delta).unwrap_or(Duration::ZERO)
            }
            None => Duration::from_secs(3600),
        };
        tokio::time::sleep(wait)
    }

    async fn shutdown(&mut self) {
        if let Some(task) = self.events_task.take() {
            task.abort();
        }
        let running = std::mem::take(&mut self.tunnels);
        for (_, tunnel) in running {
            tunnel.handle.shutdown().await;
        }
    }

    fn record(&mut self, what: String) {
        tracing::info!(decision = %what);
        if self.decisions.len() == HISTORY {
            self.decisions.pop_front();
        }
        self.decisions.push_back(Decision {
            at: rfc3339(now()),
            what,
        });
    }

    /// Feeds one event to the supervisor and carries out its commands.
    async fn feed(&mut self, event: Event) {
        let commands = self.sup.handle(now(), event);
        for command in commands {
            self.execute(command).await;
        }
    }

    async fn execute(&mut self, command: Command) {
        tracing::debug!(?command, "supervisor command");
        match command {
            Command::StopTunnel { app, reason } => self.stop_tunnel(&app, &reason).await,
            Command::StartTunnel { app, grant_id } => self.start_tunnel(app, grant_id).await,
            Command::CollectPosture => self.spawn_posture(),
            Command::Attest => self.spawn_attest(),
            Command::RefreshSession => self.spawn_refresh(),
            Command::RequestGrant { app } => self.spawn_grant(app),
            Command::ReleaseGrant { app, grant_id } => self.spawn_release(app, grant_id),
            Command::Notify(notice) => {
                self.record(format!("{}: {}", notice.title, notice.body));
            }
        }
    }

    async fn stop_tunnel(&mut self, app: &str, reason: &Blocked) {
        if let Some(running) = self.tunnels.remove(app) {
            running.handle.shutdown().await;
            self.record(format!(
                "{app}: tunnel closed (grant {}) — {}",
                running.grant_id,
                reason.explain()
            ));
        }
    }

    async fn start_tunnel(&mut self, app: String, grant_id: String) {
        let Some(issued) = self.issued.get(&grant_id) else {
            self.feed_later(Event::TunnelClosed {
                app,
                reason: "internal: grant unknown to the driver".to_owned(),
            });
            return;
        };
        let targets: Result<Vec<Target>, _> = issued
            .grant
            .targets
            .iter()
            .map(|t| t.parse::<Target>())
            .collect();
        let (targets, gateway_key, client_address) = match (
            targets,
            PublicKey::from_base64(&issued.grant.gateway.public_key),
            issued.grant.client_address.parse(),
        ) {
            (Ok(t), Ok(k), Ok(a)) => (t, k, a),
            _ => {
                self.feed_later(Event::TunnelClosed {
                    app,
                    reason: "the broker's grant is malformed".to_owned(),
                });
                return;
            }
        };
        let expires_at = SystemTime::from(issued.grant.expires_at);
        let mut config = TunnelConfig::new(
            issued.endpoint,
            gateway_key,
            client_address,
            targets.clone(),
            expires_at,
        );
        config.private_key = issued.key.clone();
        for target in &targets {
            if let Some(port) = self.ports.get(&(app.clone(), *target)) {
                config.forward_ports.insert(*target, *port);
            }
        }
        config.socks_port = Some(self.socks_ports.get(&app).copied().unwrap_or(0));
        let expires = issued.grant.expires_at;
        // A replaced tunnel (renewed grant) frees its ports first, so the
        // new one can take the same local addresses.
        if let Some(old) = self.tunnels.remove(&app) {
            old.handle.shutdown().await;
        }
        match Tunnel::start(config).await {
            Ok(handle) => {
                let status = handle.status();
                for (target, addr) in &status.forwards {
                    self.ports.insert((app.clone(), *target), addr.port());
                }
                if let Some(socks) = status.socks {
                    self.socks_ports.insert(app.clone(), socks.port());
                }
                self.record(format!("{app}: tunnel up (grant {grant_id})"));
                self.tunnels.insert(
                    app,
                    Running {
                        grant_id,
                        handle,
                        expires_at: expires,
                    },
                );
            }
            Err(e) => self.feed_later(Event::TunnelClosed {
                app,
                reason: e.to_string(),
            }),
        }
    }

    /// Queues an event for the next loop turn (used from inside `execute`,
    /// which may not recurse into the supervisor).
    fn feed_later(&self, event: Event) {
        let _ = self.tx.send(Outcome::Event(event));
    }

    /// Fetches the catalogue and the policy, after `delay` (retries).
    fn spawn_setup(&self, delay: Duration) {
        let broker = self.broker.clone();
        let tx = self.tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let result = async {
                let config = broker.config().await.map_err(|e| e.to_string())?;
                Ok((config, fetch_policy(&broker).await))
            }
            .await;
            let _ = tx.send(Outcome::Setup(result));
        });
    }

    fn spawn_enrol(&mut self) {
        if self.enrolling || self.device.is_some() {
            return;
        }
        self.enrolling = true;
        let broker = self.broker.clone();
        let identity = self.identity.clone();
        let store = self.store.clone();
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let result = async {
                let key =
                    crate::device_key::load_or_create(store.as_ref()).map_err(|e| e.to_string())?;
                let token = identity.access_token().await.map_err(|e| e.to_string())?;
                let request = api::EnrolRequest {
                    public_jwk: key.public_jwk().clone(),
                    name: hostname(),
                };
                let device = broker
                    .enrol(&token, &request)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(Device {
                    id: device.device_id,
                    key,
                })
            }
            .await;
            let _ = tx.send(Outcome::Enrolled(result));
        });
    }

    fn spawn_posture(&self) {
        let options = self.options.collect.clone();
        let policy = self.policy.clone();
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let report = posture::collect::collect(&options).await;
            let evaluation = match policy {
                Some(policy) => policy.evaluate(&report).map_err(|e| e.to_string()),
                None => Policy::default_policy()
                    .and_then(|p| p.evaluate(&report))
                    .map_err(|e| e.to_string()),
            };
            let _ = tx.send(Outcome::Posture {
                report: Box::new(report),
                evaluation,
            });
        });
    }

    fn spawn_attest(&self) {
        let tx = self.tx.clone();
        let (Some(device), Some(report), Some(config), Some(subject)) = (
            self.device.clone(),
            self.report.clone(),
            self.config.clone(),
            self.subject.clone(),
        ) else {
            let _ = tx.send(Outcome::AttestFailed(
                "not ready to attest yet (enrolment or broker configuration pending)".to_owned(),
            ));
            return;
        };
        let broker = self.broker.clone();
        let identity = self.identity.clone();
        tokio::spawn(async move {
            let result = async {
                let token = identity.access_token().await.map_err(|e| e.to_string())?;
                let challenge = broker.challenge(&token).await.map_err(|e| e.to_string())?;
                let claims = EatClaims::new(
                    &device.key,
                    &challenge.nonce,
                    &config.audience,
                    &subject,
                    (*report).clone(),
                    now().unix_timestamp(),
                    MAX_EAT_LIFETIME_SECS.min(120),
                );
                let eat = device.key.sign_eat(&claims).map_err(|e| e.to_string())?;
                broker.attest(&token, eat).await.map_err(|e| e.to_string())
            }
            .await;
            let _ = tx.send(match result {
                Ok(verdict) => Outcome::Verdict(verdict),
                Err(e) => Outcome::AttestFailed(e),
            });
        });
    }

    fn spawn_grant(&self, app: String) {
        let tx = self.tx.clone();
        let Some(device) = self.device.clone() else {
            let _ = tx.send(Outcome::GrantFailed(
                app,
                "device not enrolled yet".to_owned(),
            ));
            return;
        };
        let broker = self.broker.clone();
        let identity = self.identity.clone();
        tokio::spawn(async move {
            let key = PrivateKey::generate();
            let result = async {
                let token = identity.access_token().await.map_err(|e| e.to_string())?;
                let request = api::GrantRequest {
                    app: app.clone(),
                    device_id: device.id.clone(),
                    wireguard_public_key: key.public_key().to_string(),
                };
                let grant = broker
                    .open_grant(&token, &request)
                    .await
                    .map_err(|e| explain_broker(&e))?;
                let endpoint = tokio::net::lookup_host(grant.gateway.endpoint.as_str())
                    .await
                    .ok()
                    .and_then(|mut addrs| addrs.next())
                    .ok_or_else(|| {
                        format!("cannot resolve the gateway {}", grant.gateway.endpoint)
                    })?;
                Ok(Issued {
                    grant,
                    key,
                    endpoint,
                })
            }
            .await;
            let _ = tx.send(match result {
                Ok(issued) => Outcome::GrantIssued(app, Box::new(issued)),
                Err(reason) => Outcome::GrantFailed(app, reason),
            });
        });
    }

    fn spawn_release(&mut self, _app: String, grant_id: String) {
        self.issued.remove(&grant_id);
        let broker = self.broker.clone();
        let identity = self.identity.clone();
        tokio::spawn(async move {
            if let Ok(token) = identity.access_token().await {
                let _ = broker.close_grant(&token, &grant_id).await;
            }
        });
    }

    fn spawn_refresh(&self) {
        let identity = self.identity.clone();
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let outcome = match identity.refresh().await {
                Ok(who) => Outcome::Session(who.state),
                Err(e) => Outcome::RefreshFailed(e.to_string()),
            };
            let _ = tx.send(outcome);
        });
    }

    fn spawn_events(&mut self) {
        let Some(device) = self.device.clone() else {
            return;
        };
        if let Some(task) = self.events_task.take() {
            task.abort();
        }
        let broker = self.broker.clone();
        let identity = self.identity.clone();
        let tx = self.tx.clone();
        self.events_task = Some(tokio::spawn(async move {
            let mut backoff = Duration::from_secs(1);
            loop {
                let stream = match identity.access_token().await {
                    Ok(token) => broker
                        .events(&token, &device.id)
                        .await
                        .map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                let stream = match stream {
                    Ok(stream) => Some(stream),
                    Err(e) => {
                        let note = format!(
                            "broker event stream unavailable ({e}); retrying in {backoff:?}"
                        );
                        if tx.send(Outcome::Note(note)).is_err() {
                            return;
                        }
                        None
                    }
                };
                if let Some(mut stream) = stream {
                    backoff = Duration::from_secs(1);
                    while let Ok(event) = stream.next().await {
                        if tx.send(Outcome::Broker(event)).is_err() {
                            return;
                        }
                    }
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }));
    }

    async fn poll_session(&mut self) {
        let state = match self.identity.state(now().unix_timestamp()) {
            Ok(state) => state,
            Err(e) => SessionState::NeedsReauth {
                reason: crate::identity::session::ReauthReason::RefreshRejected {
                    message: e.to_string(),
                },
            },
        };
        self.session_changed(state).await;
    }

    async fn session_changed(&mut self, state: SessionState) {
        if self.session_seen.as_ref() == Some(&state) {
            return;
        }
        self.session_seen = Some(state.clone());
        if matches!(state, SessionState::Valid { .. }) {
            self.subject = self.identity.whoami().ok().flatten().map(|who| who.subject);
            self.spawn_enrol();
        }
        self.record(format!("session: {}", describe_session(&state)));
        self.feed(Event::SessionChanged(to_session(&state))).await;
    }

    async fn housekeeping(&mut self) {
        // Tunnels that closed by themselves (handshake timeout, expiry).
        let closed: Vec<(String, String)> = self
            .tunnels
            .iter()
            .filter_map(|(app, t)| {
                t.handle
                    .status()
                    .closed
                    .map(|reason| (app.clone(), format!("{reason:?}")))
            })
            .collect();
        for (app, reason) in closed {
            if let Some(t) = self.tunnels.remove(&app) {
                t.handle.shutdown().await;
            }
            self.feed(Event::TunnelClosed { app, reason }).await;
        }
        // A sign-in or sign-out done by another process (`sallyport login`),
        // and anything that should re-measure posture before the schedule.
        if now().unix_timestamp() % 5 == 0 {
            self.poll_session().await;
            let found = self.watcher.observe(self.prober.snapshot());
            if !found.is_empty() {
                let why: Vec<String> = found.iter().map(ToString::to_string).collect();
                self.record(format!("posture re-check: {}", why.join(", ")));
                self.feed(Event::EnvironmentChanged).await;
            }
        }
    }

    async fn on_outcome(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Setup(Ok((config, policy))) => {
                self.record(format!(
                    "broker: {} applications in the catalogue",
                    config.apps.len()
                ));
                self.config = Some(config);
                match policy {
                    Ok(policy) => self.policy = Some(Arc::new(policy)),
                    // The broker's verdict still decides; only the instant
                    // local check falls back, and the user can see why.
                    Err(e) => self.record(format!(
                        "the broker's policy is unavailable ({e}); local checks use the built-in policy"
                    )),
                }
            }
            Outcome::Setup(Err(e)) => {
                self.record(format!("broker unreachable: {e}; retrying"));
                self.spawn_setup(Duration::from_secs(5));
            }
            Outcome::Enrolled(Ok(device)) => {
                self.enrolling = false;
                self.record(format!("device enrolled as {}", device.id));
                self.device = Some(Arc::new(device));
                self.spawn_events();
                // Attest now that it can.
                self.feed(Event::EnvironmentChanged).await;
            }
            Outcome::Enrolled(Err(e)) => {
                self.enrolling = false;
                self.record(format!("enrolment failed: {e}"));
            }
            Outcome::Posture { report, evaluation } => {
                let violations = match &evaluation {
                    Ok(evaluation) => evaluation.violations.clone(),
                    Err(e) => vec![posture::policy::Violation {
                        check: "policy".to_owned(),
                        message: format!("the posture policy could not be evaluated: {e}"),
                        remediation: "Contact your IT helpdesk.".to_owned(),
                    }],
                };
                self.report = Some(Arc::new(*report));
                self.evaluation = evaluation.ok();
                self.feed(Event::PostureCollected { violations }).await;
            }
            Outcome::Verdict(verdict) => {
                self.record(format!(
                    "verdict: {} until {}",
                    if verdict.compliant {
                        "compliant"
                    } else {
                        "not compliant"
                    },
                    rfc3339(verdict.valid_until)
                ));
                self.feed(Event::Verdict(Verdict {
                    compliant: verdict.compliant,
                    violations: verdict.violations,
                    valid_until: verdict.valid_until,
                }))
                .await;
            }
            Outcome::AttestFailed(reason) => {
                self.record(format!("attestation failed: {reason}"));
                self.feed(Event::AttestFailed { reason }).await;
            }
            Outcome::GrantIssued(app, issued) => {
                let grant = Grant {
                    id: issued.grant.id.clone(),
                    expires_at: issued.grant.expires_at,
                };
                self.issued.insert(issued.grant.id.clone(), *issued);
                self.feed(Event::GrantIssued { app, grant }).await;
            }
            Outcome::GrantFailed(app, reason) => {
                self.record(format!("{app}: {reason}"));
                self.feed(Event::GrantFailed { app, reason }).await;
            }
            Outcome::Session(state) => self.session_changed(state).await,
            Outcome::RefreshFailed(reason) => {
                self.record(format!("session refresh failed: {reason}"));
                self.feed(Event::RefreshFailed { reason }).await;
                self.poll_session().await;
            }
            Outcome::Broker(event) => self.on_broker_event(event).await,
            Outcome::PolicyFetched(policy) => {
                self.policy = Some(Arc::new(policy));
                self.feed(Event::Broker(BrokerEvent::PolicyChanged)).await;
            }
            Outcome::Event(event) => self.feed(event).await,
            Outcome::Note(what) => self.record(what),
        }
    }

    async fn on_broker_event(&mut self, event: api::Event) {
        let ours = self.device.as_ref().map(|d| d.id.clone());
        let mapped = match event {
            api::Event::GrantRevoked {
                grant_id, reason, ..
            } => Some(BrokerEvent::GrantRevoked { grant_id, reason }),
            api::Event::SessionRevoked { user, reason } => (self.subject.as_deref()
                == Some(user.as_str()))
            .then_some(BrokerEvent::SessionRevoked { reason }),
            api::Event::DeviceComplianceChange {
                device_id,
                current_status,
                reason,
                ..
            } => (ours.as_deref() == Some(device_id.as_str())).then(|| {
                BrokerEvent::ComplianceChanged {
                    compliant: current_status == api::ComplianceStatus::Compliant,
                    reason,
                }
            }),
            api::Event::PolicyChanged { .. } => {
                let broker = self.broker.clone();
                let tx = self.tx.clone();
                tokio::spawn(async move {
                    match fetch_policy(&broker).await {
                        Ok(policy) => {
                            let _ = tx.send(Outcome::PolicyFetched(policy));
                        }
                        Err(e) => {
                            let _ = tx.send(Outcome::Note(format!(
                                "the broker's new policy is unavailable ({e}); keeping the previous one"
                            )));
                        }
                    }
                });
                None
            }
        };
        if let Some(event) = mapped {
            self.record(format!("broker event: {event:?}"));
            self.feed(Event::Broker(event)).await;
        }
    }

    async fn answer(&mut self, request: Request) -> Reply {
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
            Request::History => ok(serde_json::to_value(&self.decisions).unwrap_or_default()),
            Request::SignIn => {
                self.spawn_sign_in();
                ok(serde_json::Value::Null)
            }
            Request::SignInDevice => match self.start_device_sign_in().await {
                Ok(view) => ok(serde_json::to_value(view).unwrap_or_default()),
                Err(message) => Reply::Error { message },
            },
            Request::ExportDiagnostics { path } => {
                let path = std::path::PathBuf::from(path);
                match self.diagnostics_bundle().write_zip(&path) {
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

    /// Browser sign-in in the background; the session poll picks it up.
    fn spawn_sign_in(&self) {
        let identity = self.identity.clone();
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let open = |url: &url::Url| crate::identity::browser::open(url);
            let outcome = match identity
                .login_browser(&open, &crate::identity::client::AuthOverrides::default())
                .await
            {
                Ok(who) => Outcome::Session(who.state),
                Err(e) => Outcome::Note(format!("sign-in failed: {e}")),
            };
            let _ = tx.send(outcome);
        });
    }

    /// Starts a device-code sign-in and returns the code to show as soon as
    /// the IdP hands it out; the polling goes on in the background.
    async fn start_device_sign_in(&self) -> Result<crate::control::view::DeviceCodeView, String> {
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
                    let _ = tx.send(Outcome::Note(format!("device sign-in failed: {e}")));
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

    /// Everything helpdesk needs, nothing secret (see `agent::diagnostics`).
    fn diagnostics_bundle(&self) -> crate::diagnostics::Bundle {
        let mut bundle = crate::diagnostics::Bundle::default();
        bundle
            .text(
                "versions.txt",
                format!(
                    "sallyport {}\nos: {} {}\nbroker: {}\n",
                    env!("CARGO_PKG_VERSION"),
                    std::env::consts::OS,
                    std::env::consts::ARCH,
                    self.broker.base()
                ),
            )
            .json("status.json", &self.status_view())
            .json(
                "posture.json",
                &serde_json::json!({
                    "report": self.report.as_deref(),
                    "violations": self.evaluation.as_ref().map(|e| &e.violations),
                }),
            )
            .json("decisions.json", &self.decisions);
        match crate::config::load() {
            Ok(effective) => bundle.json("settings.json", &effective),
            Err(e) => bundle.text("settings.error.txt", e.to_string()),
        };
        bundle
    }

    fn known_app(&self, app: &str) -> bool {
        // Before the catalogue arrives, accept: the broker refuses unknown apps.
        self.config
            .as_ref()
            .is_none_or(|c| c.apps.iter().any(|a| a.id == app))
    }

    /// Recent decisions, oldest first.
    pub fn decisions(&self) -> impl Iterator<Item = &Decision> {
        self.decisions.iter()
    }
}

/// The broker's policy, compiled; why not, when it cannot be had.
async fn fetch_policy(broker: &BrokerClient) -> Result<Policy, String> {
    let doc = broker.policy().await.map_err(|e| e.to_string())?;
    Policy::from_source(&doc.name, &doc.rego).map_err(|e| e.to_string())
}

fn describe_session(state: &SessionState) -> String {
    match state {
        SessionState::SignedOut => "signed out".to_owned(),
        SessionState::Valid { user, .. } => format!("signed in as {user}"),
        SessionState::NeedsReauth { reason } => format!("needs sign-in: {reason}"),
    }
}

fn explain_broker(e: &BrokerError) -> String {
    match e {
        BrokerError::Refused(problem) if !problem.violations.is_empty() => {
            format!(
                "{} ({})",
                problem.detail,
                supervisor::Blocked::NonCompliant(problem.violations.clone()).explain()
            )
        }
        other => other.to_string(),
    }
}

fn hostname() -> Option<String> {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
}
