//! `sallyport demo`: the orchestration. Every piece is the real one — the
//! agent's sign-in path, posture collectors, attestation, broker client,
//! runtime and userspace WireGuard tunnels; the reference broker and its
//! gateway — except three clearly marked demo-only stand-ins: the OpenID
//! issuer ([`crate::issuer`]), the application ([`crate::app`]) and the
//! policy written from this machine's own report ([`crate::policy`]).
//!
//! Everything listens on 127.0.0.1 and stops when the demo ends; nothing
//! needs admin rights. The flow follows `tests/e2e/gate.rs`: sign in, get a
//! compliant verdict, open the app, fetch a page through the tunnel, then
//! tighten the broker's policy so this machine fails a check, watch the
//! tunnel close, restore the policy and watch it come back.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use broker::server::BrokerHandle;
use posture::check::Status;
use posture::report::Report;
use ring::rand::{SecureRandom as _, SystemRandom};
use tokio::sync::{mpsc, oneshot};

use crate::app::{self, DemoApp};
use crate::issuer::{DEMO_ACR, DEMO_CLIENT_ID, DEMO_PASSWORD, DEMO_USER, DemoIssuer};
use crate::narrate::{Narrator, clip};
use crate::policy;
use crate::signin;
use crate::store::{DemoStore, SERVICE};
use agent::broker_client::BrokerClient;
use agent::control::view::{StatusView, TunnelState, TunnelView};
use agent::control::{Reply, Request};
use agent::identity::client::AuthOverrides;
use agent::identity::store::SecretStore;
use agent::identity::{Identity, IdentityConfig};
use agent::runtime::{ControlRequest, Runtime, RuntimeOptions};
use agent::supervisor::Timing;

/// The application's id in the broker's catalogue.
pub const APP_ID: &str = "demo-app";
/// The broker's audience (access tokens' `aud`, every EAT's `aud`).
const AUDIENCE: &str = "sallyport-demo-broker";
/// How long one stage (first verdict, tunnel up, tunnel down) may take.
const STAGE_TIMEOUT: Duration = Duration::from_secs(30);
/// One fetch through the tunnel may take this long.
const FETCH_TIMEOUT: Duration = Duration::from_secs(3);

/// Flags of `sallyport demo`.
#[derive(Debug, Clone, Default)]
pub struct DemoOptions {
    /// After the demo, keep everything up until Ctrl-C.
    pub keep_running: bool,
    /// Keep tokens and the device key in memory, never in the OS keyring.
    pub memory_only: bool,
}

/// Why the demo stopped early. Each names the stage, so the user knows
/// which part of the product did not work here.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// A component could not start.
    #[error("could not start {what}: {detail}")]
    Start {
        /// Which component.
        what: &'static str,
        /// Why.
        detail: String,
    },
    /// Signing in failed.
    #[error("signing in failed: {0}")]
    SignIn(String),
    /// Something expected did not happen in time.
    #[error("{what} did not happen within {} s; last state: {state}", within.as_secs())]
    Timeout {
        /// What was awaited.
        what: &'static str,
        /// How long.
        within: Duration,
        /// The agent's last status (no secrets: see `control::view`).
        state: String,
    },
    /// The product did something it must not (traffic while closed, ...).
    #[error("{0}")]
    Broken(String),
    /// The user pressed Ctrl-C before the end.
    #[error("interrupted (Ctrl-C); everything the demo started was stopped")]
    Interrupted,
}

/// What runs while the demo does; torn down in reverse order, also after
/// a failure.
#[derive(Default)]
struct World {
    memory_only: bool,
    issuer: Option<DemoIssuer>,
    app: Option<DemoApp>,
    dir: Option<tempfile::TempDir>,
    broker: Option<BrokerHandle>,
    admin_token: String,
    store: Option<Arc<DemoStore>>,
    control: Option<mpsc::Sender<ControlRequest>>,
    stop: Option<oneshot::Sender<()>>,
    agent: Option<tokio::task::JoinHandle<()>>,
}

/// Runs the whole demo, narrating to `n`.
pub async fn run(options: &DemoOptions, n: &mut Narrator<'_>) -> Result<(), DemoError> {
    let started = Instant::now();
    n.plain("Sallyport demo: the whole product on this machine, on 127.0.0.1 only.");
    n.plain("Pieces marked DEMO ONLY stand in for your identity provider and applications;");
    n.plain("everything else is the real agent, broker and gateway. No admin rights needed.");
    let env = |name: &str| std::env::var(name).ok();
    if let Some(warning) = proxy_warning(&env) {
        n.detail(&warning);
    }
    let mut world = World {
        memory_only: options.memory_only,
        ..World::default()
    };
    // Ctrl-C mid-way still stops every component and deletes what the
    // demo stored (dropping `flow` releases the world it was building).
    let result = tokio::select! {
        result = flow(n, &mut world) => result,
        _ = tokio::signal::ctrl_c() => Err(DemoError::Interrupted),
    };
    let finished = started.elapsed();
    if let (Ok(local), true) = (&result, options.keep_running) {
        n.step(&format!(
            "Everything stays up: open http://{local}/ in a browser, or run `sallyport posture`. Press Ctrl-C to stop."
        ));
        let _ = tokio::signal::ctrl_c().await;
    }
    let cleaned = teardown(world, n, result.is_ok()).await;
    if let Err(e) = &cleaned {
        n.detail(&format!("Cleanup: {e}"));
    }
    result?;
    n.plain(&format!(
        "\nDemo finished in {:.1} s: signed in with MFA, attested real posture, used a tunnel,",
        finished.as_secs_f64()
    ));
    n.plain("lost it when the policy changed, and got it back when the policy was restored.");
    Ok(())
}

/// Everything up to the restored tunnel; returns the app's local address.
async fn flow(n: &mut Narrator<'_>, world: &mut World) -> Result<String, DemoError> {
    // 1. The identity provider.
    let issuer = DemoIssuer::start(AUDIENCE)
        .await
        .map_err(|e| start_error("the demo identity provider", e))?;
    n.step(&format!(
        "Starting a DEMO-ONLY OpenID issuer on {} (one built-in user, keys in memory; not for production).",
        issuer.issuer
    ));
    n.detail(&format!(
        "User {DEMO_USER}, password \"{DEMO_PASSWORD}\", plus an authenticator (TOTP) code as the second factor."
    ));
    let issuer_url = issuer.issuer.clone();
    world.issuer = Some(issuer);

    // 2. The application.
    let app = DemoApp::start()
        .await
        .map_err(|e| start_error("the demo application", e))?;
    n.step(&format!(
        "Starting the DEMO-ONLY application, a small web page on http://{}.",
        app.addr()
    ));
    n.detail("In a real deployment it sits on a private network only the gateway reaches;");
    n.detail("here it is on loopback, and the demo reaches it only through the tunnel.");
    let app_addr = app.addr();
    world.app = Some(app);

    // 3. Posture, and the policies written from it.
    n.step("Measuring this machine's real security posture (the checks of `sallyport posture`)...");
    n.detail("(The first run can take several seconds: the pending-updates check asks the package manager.)");
    let collect = posture::collect::Options::default();
    let report = posture::collect::collect(&collect).await;
    describe_report(n, &report);
    let required = policy::passing(&report);
    let tightening = policy::choose_tightening(&report).ok_or_else(|| {
        DemoError::Broken(
            "every check passed and the OS version is not numeric: there is no requirement this machine fails, so the demo cannot show access being withdrawn".to_owned(),
        )
    })?;
    let names: Vec<&str> = required.iter().map(|id| id.as_str()).collect();
    n.detail(&format!(
        "The demo policy starts by requiring what passes here: {}.",
        if names.is_empty() {
            "nothing".to_owned()
        } else {
            names.join(", ")
        }
    ));
    let baseline = policy::rego(&required, None);
    let strict = policy::rego(&required, Some(&tightening));

    // 4. The broker and its gateway.
    let dir = tempfile::Builder::new()
        .prefix("sallyport-demo-")
        .tempdir()
        .map_err(|e| start_error("the broker (temporary folder)", e))?;
    let policy_path = dir.path().join("demo-policy.rego");
    std::fs::write(&policy_path, &baseline)
        .map_err(|e| start_error("the broker (policy file)", e))?;
    world.admin_token = random_token();
    let broker = start_broker(
        &issuer_url,
        &dir.path().join("broker.sqlite"),
        &policy_path,
        app_addr,
        &world.admin_token,
    )
    .await?;
    n.step("Starting the access broker and its WireGuard gateway, embedded in this process.");
    n.detail(&format!(
        "Broker API {}; gateway UDP {}; application `{APP_ID}` -> {app_addr}/tcp.",
        broker.base_url(),
        broker
            .gateway_addr()
            .map(|a| a.to_string())
            .unwrap_or_default()
    ));
    n.detail("Demo configuration: state in a temporary folder, a random admin token that is never shown.");
    let broker_url = broker.base_url();
    world.dir = Some(dir);
    world.broker = Some(broker);

    // 5. Sign-in.
    let run_id = random_token().chars().take(12).collect::<String>();
    let store = Arc::new(DemoStore::open(&run_id, world.memory_only));
    world.store = Some(store.clone());
    let mut config = IdentityConfig::new(
        issuer_url
            .parse()
            .map_err(|e| start_error("sign-in", format!("issuer URL: {e}")))?,
        DEMO_CLIENT_ID,
    );
    config.acr_values = vec![DEMO_ACR.to_owned()];
    config.login_timeout = Duration::from_secs(20);
    let store_dyn: Arc<dyn SecretStore> = store.clone();
    let identity = Arc::new(Identity::new(config, store_dyn.clone()));
    let code = world
        .issuer
        .as_ref()
        .map(DemoIssuer::current_code)
        .unwrap_or_default();
    n.step(&format!(
        "Signing in as {DEMO_USER} with a password and MFA."
    ));
    n.detail("The demo plays your browser: it opens the issuer's sign-in page, types the password");
    n.detail(&format!(
        "and the code {code} that the demo authenticator shows right now, and submits."
    ));
    match &store.fallback_reason {
        None => n.detail(&format!(
            "Tokens and the device key go to the OS keyring ({}) under the separate service `{SERVICE}`",
            store.backend_name()
        )),
        Some(reason) => n.detail(&format!(
            "Tokens and the device key are kept in this process's memory only (OS keyring not used: {})",
            clip(reason, 120)
        )),
    }
    n.detail("and are deleted when the demo ends; your real Sallyport sign-in is not touched.");
    let who = sign_in(&identity, code).await?;
    n.detail(&format!(
        "Signed in as {}; second factor: {}. (Tokens are never shown.)",
        who.user, who.mfa_method
    ));

    // 6. The agent: enrol, measure, attest.
    n.step(
        "Starting the Sallyport agent: it enrols this device's key, measures posture, and attests.",
    );
    n.detail(
        "Attesting = signing the posture report (an EAT) with the device key; the broker checks",
    );
    n.detail("the signature and evaluates its Rego policy to a verdict.");
    let client = BrokerClient::new(&broker_url, Duration::from_secs(5))
        .map_err(|e| start_error("the broker client", e))?;
    let runtime = Runtime::new(identity, store_dyn, client, runtime_options(collect));
    let agent_started = Instant::now();
    let (control, rx) = mpsc::channel(8);
    let (stop, stopped) = oneshot::channel::<()>();
    world.agent = Some(tokio::spawn(runtime.run(rx, async {
        let _ = stopped.await;
    })));
    world.control = Some(control.clone());
    world.stop = Some(stop);
    let agent = Agent { control };
    let status = agent
        .until("a compliant verdict", STAGE_TIMEOUT, |s| {
            s.verdict.as_ref().is_some_and(|v| v.compliant)
        })
        .await?;
    if let Some(device) = agent.decision_containing("device enrolled as").await {
        n.detail(&format!("Device {}", device.trim_start_matches("device ")));
    }
    if let Some(verdict) = &status.verdict {
        n.detail(&format!(
            "Broker verdict: COMPLIANT after {:.1} s (valid until {}).",
            agent_started.elapsed().as_secs_f64(),
            verdict.valid_until
        ));
    }

    // 7. The tunnel.
    n.step(&format!(
        "Opening `{APP_ID}`: the broker issues a grant and the agent brings up a userspace WireGuard tunnel."
    ));
    agent
        .ask(Request::Connect {
            app: APP_ID.to_owned(),
        })
        .await?;
    let opened = Instant::now();
    let (local, page) = agent.until_traffic_flows("the tunnel coming up").await?;
    n.detail(&format!(
        "Tunnel UP after {:.1} s; the application is now at http://{local} on this machine.",
        opened.elapsed().as_secs_f64()
    ));
    n.detail(&format!(
        "The gateway holds {} WireGuard peer(s): this device's grant.",
        gateway_peers(world)
    ));

    // 8. A page through it.
    n.step(&format!("Fetching http://{local}/ through the tunnel..."));
    describe_page(n, &page, &agent).await;

    // 9. Tighten the policy.
    n.step(&format!(
        "Tightening the policy: the broker now also requires check `{}` ({}).",
        tightening.check(),
        tightening.why()
    ));
    n.detail(
        "As an administrator would: the broker re-reads its policy file and tells every agent.",
    );
    set_policy(world, &policy_path, &strict, &broker_url).await?;
    let tightened = Instant::now();
    let reason = agent
        .until_closed(&local, tightening.check().as_str())
        .await?;
    n.detail(&format!(
        "Tunnel DOWN after {:.1} s. The agent tells the user:",
        tightened.elapsed().as_secs_f64()
    ));
    n.detail(&format!("  \"{reason}\""));
    if let Ok(status) = agent
        .until("a non-compliant verdict", Duration::from_secs(10), |s| {
            s.verdict.as_ref().is_some_and(|v| !v.compliant)
        })
        .await
        && let Some(verdict) = status.verdict
    {
        let failed: Vec<&str> = verdict
            .violations
            .iter()
            .map(|v| v.check.as_str())
            .collect();
        n.detail(&format!(
            "Broker verdict: NOT COMPLIANT (failed: {}).",
            failed.join(", ")
        ));
    }
    n.detail(&format!(
        "The gateway holds {} WireGuard peer(s).",
        gateway_peers(world)
    ));
    match fetch(&local).await {
        Ok(_) => {
            return Err(DemoError::Broken(format!(
                "the page could still be fetched through http://{local} after the tunnel closed"
            )));
        }
        Err(e) => n.detail(&format!("Fetching http://{local}/ now fails: {e}.")),
    }

    // 10. Restore it.
    n.step("Restoring the policy: the check is no longer required.");
    set_policy(world, &policy_path, &baseline, &broker_url).await?;
    let restored = Instant::now();
    let (again, page) = agent.until_traffic_flows("the tunnel coming back").await?;
    n.detail(&format!(
        "Tunnel UP again after {:.1} s at http://{again}.",
        restored.elapsed().as_secs_f64()
    ));
    if let Some(verdict) = agent.status().await?.verdict {
        n.detail(&format!(
            "The agent re-attested; broker verdict: {}.",
            if verdict.compliant {
                "COMPLIANT"
            } else {
                "NOT COMPLIANT"
            }
        ));
    }
    n.step(&format!(
        "Fetching http://{again}/ through the tunnel again..."
    ));
    describe_page(n, &page, &agent).await;

    Ok(again)
}

/// Stops everything in reverse order and deletes what the demo stored.
async fn teardown(mut world: World, n: &mut Narrator<'_>, narrate: bool) -> Result<(), String> {
    if narrate {
        n.step("Shutting down: the agent (closing its tunnel), the broker and gateway, the issuer and the application.");
    }
    if let Some(stop) = world.stop.take() {
        let _ = stop.send(());
    }
    drop(world.control.take());
    if let Some(agent) = world.agent.take() {
        let _ = tokio::time::timeout(Duration::from_secs(10), agent).await;
    }
    if let Some(broker) = world.broker.take() {
        broker.shutdown().await;
    }
    drop(world.issuer.take());
    drop(world.app.take());
    drop(world.dir.take());
    let Some(store) = world.store.take() else {
        return Ok(());
    };
    match store.sweep() {
        Ok(count) if narrate && store.fallback_reason.is_none() => {
            n.detail(&format!(
                "Deleted the {count} entries the demo wrote to the OS keyring ({}).",
                store.backend_name()
            ));
            Ok(())
        }
        Ok(_) => Ok(()),
        Err(e) => Err(format!(
            "could not delete the demo's keyring items under `{SERVICE}`: {e}"
        )),
    }
}

/// A hint when an HTTP proxy is configured: the agent's own HTTP clients
/// honour `HTTP(S)_PROXY` and would send the demo's loopback requests to
/// the proxy unless `NO_PROXY` exempts 127.0.0.1 (pure; `env` reads a
/// variable).
fn proxy_warning(env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    let set = |name: &str| env(name).is_some_and(|v| !v.trim().is_empty());
    let proxy = [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ]
    .into_iter()
    .find(|name| set(name))?;
    let exempt = ["NO_PROXY", "no_proxy"].into_iter().any(|name| {
        env(name).is_some_and(|v| {
            v.split(',')
                .map(str::trim)
                .any(|entry| matches!(entry, "*" | "127.0.0.1" | "127.0.0.0/8"))
        })
    });
    (!exempt).then(|| {
        format!(
            "Note: {proxy} is set, so the agent would send the demo's 127.0.0.1 requests to that proxy; if a step cannot reach its service, run again with NO_PROXY=127.0.0.1."
        )
    })
}

fn start_error(what: &'static str, e: impl std::fmt::Display) -> DemoError {
    DemoError::Start {
        what,
        detail: e.to_string(),
    }
}

/// 32 random bytes, hex: the admin token and the per-run id.
fn random_token() -> String {
    let mut bytes = [0u8; 32];
    // Only fails without any OS entropy source; the token then is still
    // unique per process because the broker never leaves loopback.
    let _ = SystemRandom::new().fill(&mut bytes);
    broker::server::config::to_hex(&bytes)
}

fn describe_report(n: &mut Narrator<'_>, report: &Report) {
    for check in &report.checks {
        let status = match check.status {
            Status::Pass => "pass",
            Status::Fail => "FAIL",
            Status::Unknown => "unknown",
        };
        n.detail(&format!(
            "  {status:<8} {:<17} {}",
            check.id.as_str(),
            clip(&check.summary, 60)
        ));
    }
    n.detail(&format!(
        "({} checks in {} ms: {} pass, {} fail, {} unknown.)",
        report.checks.len(),
        report.duration_ms,
        report.count(Status::Pass),
        report.count(Status::Fail),
        report.count(Status::Unknown)
    ));
}

fn broker_config(
    issuer: &str,
    db: &std::path::Path,
    policy: &std::path::Path,
    app: SocketAddr,
    gateway: SocketAddr,
    admin_token: &str,
) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, admin_token.as_bytes());
    let toml_path = |p: &std::path::Path| p.display().to_string().replace('\\', "\\\\");
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
database = "{db}"
admin_token_sha256 = "{admin}"

[oidc]
issuer = "{issuer}"
audience = "{AUDIENCE}"
client_id = "{DEMO_CLIENT_ID}"
required_acr = "{DEMO_ACR}"

[attestation]
verdict_ttl_seconds = 120
policy = "{policy}"

# The demo's one device is let in at once; a real deployment keeps the
# default, "approval".
[enrolment]
mode = "open"

[gateway]
listen = "{gateway}"
client_network = "100.64.0.0/24"
max_grant_seconds = 600

[[apps]]
id = "{APP_ID}"
name = "Sallyport demo application"
targets = ["{app}/tcp"]
"#,
        db = toml_path(db),
        policy = toml_path(policy),
        admin = broker::server::config::to_hex(digest.as_ref()),
    )
}

/// Starts the broker; the gateway's UDP port is picked free first (the
/// gateway advertises its listen address, so it cannot be port 0), and a
/// port taken in between is retried.
async fn start_broker(
    issuer: &str,
    db: &std::path::Path,
    policy: &std::path::Path,
    app: SocketAddr,
    admin_token: &str,
) -> Result<BrokerHandle, DemoError> {
    let mut last = String::new();
    for _ in 0..3 {
        let gateway = std::net::UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .map_err(|e| start_error("the gateway", e))?;
        let text = broker_config(issuer, db, policy, app, gateway, admin_token);
        let settings =
            broker::server::Config::parse(&text).map_err(|e| start_error("the broker", e))?;
        match broker::server::start(settings).await {
            Ok(handle) => return Ok(handle),
            Err(e) => last = e.to_string(),
        }
    }
    Err(start_error("the broker", last))
}

/// Signs in through the agent's real browser flow, with the demo playing
/// the browser; a refused form fails at once instead of at the timeout.
async fn sign_in(identity: &Identity, code: String) -> Result<agent::identity::WhoAmI, DemoError> {
    let (fail_tx, fail_rx) = oneshot::channel::<String>();
    let fail_tx = std::sync::Mutex::new(Some(fail_tx));
    let open = move |url: &url::Url| {
        let url = url.to_string();
        let code = code.clone();
        let fail_tx = fail_tx.lock().ok().and_then(|mut s| s.take());
        tokio::spawn(async move {
            if let Err(e) = signin::play_browser(&url, &code).await
                && let Some(tx) = fail_tx
            {
                let _ = tx.send(e);
            }
        });
        Ok(())
    };
    let overrides = AuthOverrides::default();
    tokio::select! {
        result = identity.login_browser(&open, &overrides) => {
            result.map_err(|e| DemoError::SignIn(e.to_string()))
        }
        Ok(reason) = fail_rx => Err(DemoError::SignIn(reason)),
    }
}

fn runtime_options(collect: posture::collect::Options) -> RuntimeOptions {
    RuntimeOptions {
        timing: Timing {
            posture_interval: time::Duration::seconds(5),
            reattest_margin: time::Duration::seconds(20),
            refresh_margin: time::Duration::seconds(30),
            grant_renew_margin: time::Duration::seconds(10),
            min_backoff: time::Duration::milliseconds(300),
            max_backoff: time::Duration::seconds(2),
        },
        collect,
        auto_connect: Vec::new(),
    }
}

fn gateway_peers(world: &World) -> usize {
    world
        .broker
        .as_ref()
        .and_then(BrokerHandle::gateway_status)
        .map_or(0, |s| s.peers.len())
}

/// Writes the policy file and has the broker reload it (admin call), the
/// way an administrator changes policy; the broker tells every agent.
async fn set_policy(
    world: &World,
    path: &std::path::Path,
    rego: &str,
    broker_url: &str,
) -> Result<(), DemoError> {
    std::fs::write(path, rego).map_err(|e| DemoError::Broken(format!("policy file: {e}")))?;
    let reply = http()
        .post(format!(
            "{broker_url}{}",
            broker::api::paths::ADMIN_POLICY_RELOAD
        ))
        .bearer_auth(&world.admin_token)
        .json(&serde_json::json!({}))
        .send()
        .await
        .map_err(|e| DemoError::Broken(format!("policy reload: {e}")))?;
    if !reply.status().is_success() {
        return Err(DemoError::Broken(format!(
            "the broker refused the new policy ({})",
            reply.status()
        )));
    }
    Ok(())
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(FETCH_TIMEOUT)
        .build()
        .unwrap_or_default()
}

/// A page fetched through the tunnel.
#[derive(Debug)]
struct Page {
    status: u16,
    body: String,
}

/// One GET of `http://local/` with a short timeout.
async fn fetch(local: &str) -> Result<Page, String> {
    let reply = http()
        .get(format!("http://{local}/"))
        .send()
        .await
        .map_err(|e| describe_fetch_error(&e))?;
    let status = reply.status().as_u16();
    let body = reply.text().await.map_err(|e| describe_fetch_error(&e))?;
    Ok(Page { status, body })
}

fn describe_fetch_error(e: &reqwest::Error) -> String {
    let mut source: Option<&dyn std::error::Error> = Some(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return match io.kind() {
                std::io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
                std::io::ErrorKind::ConnectionReset => "connection reset".to_owned(),
                _ => io.to_string(),
            };
        }
        source = err.source();
    }
    if e.is_timeout() {
        "timed out".to_owned()
    } else {
        e.to_string()
    }
}

async fn describe_page(n: &mut Narrator<'_>, page: &Page, agent: &Agent) {
    match app::summarize(&page.body) {
        Some(summary) => n.detail(&format!(
            "HTTP {}: the page says \"{}\" (request #{} at the application, {} bytes).",
            page.status,
            summary.heading,
            summary
                .request
                .map_or_else(|| "?".to_owned(), |r| r.to_string()),
            page.body.len()
        )),
        None => n.detail(&format!(
            "HTTP {}: {} bytes (no heading found).",
            page.status,
            page.body.len()
        )),
    }
    if let Ok(status) = agent.status().await
        && let Some(t) = status.tunnels.iter().find(|t| t.app == APP_ID)
    {
        n.detail(&format!(
            "Through this tunnel so far: {} bytes out, {} bytes in (WireGuard-encrypted to the gateway).",
            t.bytes_out, t.bytes_in
        ));
    }
}

/// The in-process agent, asked over its control channel exactly as the
/// CLI and tray app ask it over the socket.
struct Agent {
    control: mpsc::Sender<ControlRequest>,
}

impl Agent {
    async fn ask(&self, request: Request) -> Result<serde_json::Value, DemoError> {
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

    async fn status(&self) -> Result<StatusView, DemoError> {
        let data = self.ask(Request::Status).await?;
        serde_json::from_value(data)
            .map_err(|e| DemoError::Broken(format!("unexpected status from the agent: {e}")))
    }

    /// The newest decision mentioning `text`.
    async fn decision_containing(&self, text: &str) -> Option<String> {
        let history = self.ask(Request::History).await.ok()?;
        history
            .as_array()?
            .iter()
            .rev()
            .filter_map(|d| d.get("what")?.as_str())
            .find(|what| what.contains(text))
            .map(str::to_owned)
    }

    async fn timeout(&self, what: &'static str, within: Duration) -> DemoError {
        let state = match self.status().await {
            Ok(status) => summarize_status(&status),
            Err(e) => e.to_string(),
        };
        let history = self
            .ask(Request::History)
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

    async fn until(
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
    async fn until_traffic_flows(&self, what: &'static str) -> Result<(String, Page), DemoError> {
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
    async fn until_closed(&self, local: &str, check: &str) -> Result<String, DemoError> {
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
}

fn app_tunnel(status: &StatusView) -> Option<&TunnelView> {
    status.tunnels.iter().find(|t| t.app == APP_ID)
}

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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_broker_config_is_valid_and_names_the_app() {
        let dir = std::env::temp_dir();
        let text = broker_config(
            "http://127.0.0.1:9000",
            &dir.join("b.sqlite"),
            &dir.join("p.rego"),
            SocketAddr::from(([127, 0, 0, 1], 8080)),
            SocketAddr::from(([127, 0, 0, 1], 51820)),
            "token",
        );
        let settings = broker::server::Config::parse(&text).unwrap();
        assert_eq!(settings.apps.len(), 1);
        assert_eq!(settings.apps[0].0.id, APP_ID);
        assert_eq!(settings.gateway_endpoint, "127.0.0.1:51820");
        assert_eq!(
            settings.raw.enrolment.mode,
            broker::server::config::EnrolmentMode::Open,
            "the demo's device must not wait for an approval nobody gives"
        );
        assert!(!text.contains("\"token\""), "only the token's digest");
    }

    #[test]
    fn a_proxy_without_a_loopback_exemption_is_pointed_out() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        assert!(proxy_warning(&env(&[])).is_none());
        let warned = proxy_warning(&env(&[("https_proxy", "http://proxy:3128")])).unwrap();
        assert!(warned.contains("https_proxy"), "{warned}");
        assert!(
            proxy_warning(&env(&[
                ("HTTP_PROXY", "http://proxy:3128"),
                ("NO_PROXY", "localhost, 127.0.0.1")
            ]))
            .is_none()
        );
    }

    #[test]
    fn random_tokens_differ() {
        assert_ne!(random_token(), random_token());
        assert_eq!(random_token().len(), 64);
    }
}
