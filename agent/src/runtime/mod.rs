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
//! The wait for the next deadline is recomputed from the wall clock on
//! every turn of the loop, so the tick also bounds how late a deadline
//! fires after the clock jumps forward (the supervisor's call contract).
//!
//! This file is the core: the state, the event loop, and the one place
//! supervisor commands are dispatched. The rest is split along its seams:
//! `tasks` (the background work and the results it reports), `outcomes`
//! (what those results mean to the supervisor), `tunnels` (carrying out
//! tunnel commands, inline), `control` (answering the CLI and the tray app)
//! and `view` (the state as they see it).

mod control;
mod outcomes;
mod tasks;
mod tunnels;
mod view;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use broker::api::BrokerConfig;
use posture::collect::Options as CollectOptions;
use posture::policy::{Evaluation, Policy};
use posture::report::Report;
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};
use tunnel::Target;

use crate::broker_client::BrokerClient;
use crate::control::{Reply, Request};
use crate::identity::Identity;
use crate::identity::session::SessionState;
use crate::supervisor::{Command, Event, Supervisor, Timing};
use crate::timeline::{Entry, Kind, Timeline};
use crate::triggers;
use tasks::{Device, Issued, Outcome};
use tunnels::Running;

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

/// A sign-in the broker refused, and why.
#[derive(Debug, Clone)]
struct RefusedSignIn {
    reason: crate::identity::session::ReauthReason,
    /// Which sign-in was refused: its `auth_time` (`None` when the IdP gave
    /// none) and how the user authenticated (a step-up within the same
    /// second still shows a new method).
    sign_in: (Option<i64>, String),
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
    /// Set while `GET /v1/config` fails: what `status` says about it.
    broker_unreachable: Option<String>,
    policy: Option<Arc<Policy>>,
    device: Option<Arc<Device>>,
    enrolling: bool,
    /// The enrolment in flight or waiting to be retried (aborted when the
    /// broker says the device was approved, to ask again at once).
    enrol_task: Option<tokio::task::JoinHandle<()>>,
    /// The device the broker holds for an administrator's approval, and
    /// since when; `device` stays `None` until it is approved.
    awaiting_approval: Option<(Arc<Device>, OffsetDateTime)>,
    /// The broker refused this sign-in (step-up, revoked session): the
    /// session counts as needing a new sign-in until one with another
    /// `auth_time` is made.
    refused_sign_in: Option<RefusedSignIn>,
    /// A report measured just before the runtime started, used instead of
    /// the first measurement while it is younger than its deadline.
    seed: Option<(Report, OffsetDateTime)>,
    /// Delay before enrolling again while pending or after a failure.
    enrol_backoff: Duration,
    report: Option<Arc<Report>>,
    evaluation: Option<Evaluation>,
    session_seen: Option<SessionState>,
    subject: Option<String>,
    issued: HashMap<String, Issued>,
    tunnels: BTreeMap<String, Running>,
    ports: HashMap<(String, Target), u16>,
    socks_ports: HashMap<String, u16>,
    /// Give each tunnel's SOCKS5 listener a fresh username and password
    /// (the managed setting `tunnels.socks_auth`).
    socks_auth: bool,
    /// What was decided and why: on disk when [`Runtime::with_timeline`]
    /// gave a stored one (the real agent), else in memory.
    timeline: Timeline,
    /// Where this agent's log files are, for the diagnostics bundle.
    logs_dir: Option<std::path::PathBuf>,
    /// The last verdict the timeline recorded (compliant, violations), so
    /// an unchanged renewal is not recorded again.
    verdict_recorded: Option<(bool, String)>,
    /// What the device service's updater last reported.
    update: Option<service::updater::UpdateStatus>,
    /// Wake / network / file triggers for an early posture run.
    prober: triggers::probe::Prober,
    watcher: triggers::Watcher,
    tx: mpsc::UnboundedSender<Outcome>,
    rx: mpsc::UnboundedReceiver<Outcome>,
    events_task: Option<tokio::task::JoinHandle<()>>,
    /// The device service that holds the key and signs; `None`: the
    /// keyring key (see `crate::device_key`).
    device_service: Option<service::client::DeviceService>,
    /// The broker's latest `GET /v1/apps` answer and when it came, reused
    /// for a few seconds (the tray asks every few seconds) and dropped at
    /// any event that may change it.
    apps_seen: Option<(broker::api::AppsDocument, OffsetDateTime)>,
    /// The step-up the broker's latest `GET /v1/apps` answer asks for (an
    /// app the user has not opened yet may need one): what the tray's
    /// "Sign in again" asks for when no grant was refused. Forgotten at
    /// the next session change.
    apps_step_up: Option<broker::api::StepUp>,
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

pub(crate) fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
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
            broker_unreachable: None,
            policy: None,
            device: None,
            enrolling: false,
            enrol_task: None,
            awaiting_approval: None,
            refused_sign_in: None,
            seed: None,
            enrol_backoff: tasks::ENROL_BACKOFF_MIN,
            report: None,
            evaluation: None,
            session_seen: None,
            subject: None,
            issued: HashMap::new(),
            tunnels: BTreeMap::new(),
            ports: HashMap::new(),
            socks_ports: HashMap::new(),
            socks_auth: false,
            timeline: Timeline::in_memory(),
            logs_dir: None,
            verdict_recorded: None,
            update: None,
            prober: triggers::probe::Prober::default(),
            watcher: triggers::Watcher::default(),
            tx,
            rx,
            events_task: None,
            device_service: None,
            apps_seen: None,
            apps_step_up: None,
        }
    }

    /// Starts from `report`, measured moments ago by the caller (the demo
    /// measures before it starts the agent): the first posture run uses it
    /// instead of collecting again, if it is still within `fresh_for`.
    /// Later runs always measure.
    #[must_use]
    pub fn with_report(mut self, report: Report, fresh_for: Duration) -> Self {
        let until = now() + fresh_for;
        self.seed = Some((report, until));
        self
    }

    /// Uses the device service for the device key, its EATs and its DPoP
    /// proofs, instead of a key in the user's keyring.
    pub fn with_device_service(mut self, link: service::client::DeviceService) -> Self {
        self.device_service = Some(link);
        self
    }

    /// Require a per-tunnel SOCKS5 username and password
    /// (`tunnels.socks_auth`). A builder method rather than a
    /// [`RuntimeOptions`] field, so embedders that build the options by
    /// hand keep compiling and keep today's behaviour.
    pub fn with_socks_auth(mut self, on: bool) -> Self {
        self.socks_auth = on;
        self
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
                    // Asks the broker: answered from a task, so the loop
                    // never waits on the network.
                    Some((Request::Apps, reply)) => self.answer_apps(reply),
                    // Checks the connection to the broker: the same.
                    Some((Request::ExportDiagnostics { path }, reply)) => {
                        self.export_diagnostics(path.into(), reply);
                    }
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
        if let Some(task) = self.enrol_task.take() {
            task.abort();
        }
        self.close_all_tunnels().await;
    }

    /// Adds `entry` to the timeline (and the log).
    fn record(&mut self, entry: Entry) {
        tracing::info!(kind = entry.kind.as_str(), app = entry.app.as_deref(), what = %entry.what, reason = entry.reason.as_deref(), "decision");
        self.timeline.push(entry);
    }

    /// Records `what`, of `kind`, now.
    fn note(&mut self, kind: Kind, what: impl Into<String>) {
        self.record(Entry::new(now(), kind, what));
    }

    /// Feeds one event to the supervisor and carries out its commands.
    async fn feed(&mut self, event: Event) {
        if !matches!(event, Event::Timer) {
            self.apps_seen = None;
        }
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
                self.record(Entry::new(now(), Kind::Notice, notice.title).reason(notice.body));
            }
        }
    }

    /// Queues an event for the next loop turn (used from inside `execute`,
    /// which may not recurse into the supervisor).
    fn feed_later(&self, event: Event) {
        let _ = self.tx.send(Outcome::Event(event));
    }

    async fn housekeeping(&mut self) {
        self.reap_closed_tunnels().await;
        // A sign-in or sign-out done by another process (`sallyport login`),
        // and anything that should re-measure posture before the schedule.
        if now().unix_timestamp() % 5 == 0 {
            self.poll_session().await;
            let found = self.watcher.observe(self.prober.snapshot());
            if !found.is_empty() {
                let why: Vec<String> = found.iter().map(ToString::to_string).collect();
                self.record(Entry::new(now(), Kind::Posture, "re-check").reason(why.join(", ")));
                self.feed(Event::EnvironmentChanged).await;
            }
        }
    }

    /// The timeline's entries since `since` (all kept ones when `None`),
    /// oldest first.
    pub fn history(&self, since: Option<OffsetDateTime>) -> Vec<Entry> {
        self.timeline.since(since)
    }

    /// Keeps the timeline in `timeline` (the real agent: on disk, see
    /// [`crate::timeline`]) instead of in memory.
    pub fn with_timeline(mut self, timeline: Timeline) -> Self {
        self.timeline = timeline;
        self
    }

    /// Names the directory of this agent's log files, so the diagnostics
    /// bundle carries their newest lines.
    pub fn with_logs_dir(mut self, dir: std::path::PathBuf) -> Self {
        self.logs_dir = Some(dir);
        self
    }
}
