//! The demo's stages, one function each, in the order `run::flow` calls
//! them. Each does one thing with the real product (or starts a demo-only
//! stand-in), narrates it as one numbered step, and puts what it started
//! into the `World`, so it is torn down whatever happens next. What a later
//! stage needs from an earlier one is returned and passed on, so `flow`
//! shows what depends on what.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agent::broker_client::BrokerClient;
use agent::control::{ControlError, Request};
use agent::identity::store::SecretStore;
use agent::identity::{Identity, IdentityConfig};
use agent::runtime::{Runtime, RuntimeOptions};
use agent::supervisor::Timing;
use posture::check::Status;
use posture::report::Report;

use crate::app::{self, DemoApp};
use crate::embedded::EmbeddedBroker;
use crate::fetch::{Page, fetch};
use crate::issuer::{DEMO_ACR, DEMO_CLIENT_ID, DEMO_PASSWORD, DEMO_USER, DemoIssuer};
use crate::link::{AgentLink, app_tunnel};
use crate::narrate::{Narrator, clip};
use crate::policy::{self, Tightening};
use crate::run::{APP_ID, AUDIENCE, DemoError, STAGE_TIMEOUT, World, random_token, start_error};
use crate::signin;
use crate::socket;
use crate::store::{DemoStore, SERVICE};

/// What step 3 measured, and the two policies written from it.
pub(crate) struct Measured {
    /// How posture was collected; the agent collects the same way, with
    /// the same cache, so its first collection reuses the slow sources
    /// (the package manager's simulation) step 3 just ran.
    collect: posture::collect::Options,
    /// Requires what passes here.
    pub(crate) baseline: String,
    /// The baseline plus one requirement this machine fails.
    strict: String,
    /// That requirement.
    tightening: Tightening,
    /// What step 3 measured, handed to the agent so its first attestation
    /// does not measure again seconds later.
    report: Report,
    /// When step 3 measured it.
    measured_at: Instant,
}

/// The signed-in identity and where its tokens are, for the agent.
pub(crate) struct SignedIn {
    identity: Arc<Identity>,
    store: Arc<dyn SecretStore>,
}

/// Step 1: the identity provider; returns its issuer URL.
pub(crate) async fn start_issuer(
    n: &mut Narrator<'_>,
    world: &mut World,
) -> Result<String, DemoError> {
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
    Ok(issuer_url)
}

/// Step 2: the application; returns where it listens.
pub(crate) async fn start_app(
    n: &mut Narrator<'_>,
    world: &mut World,
) -> Result<SocketAddr, DemoError> {
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
    Ok(app_addr)
}

/// Step 3: posture, and the policies written from it.
pub(crate) async fn measure_posture(n: &mut Narrator<'_>) -> Result<Measured, DemoError> {
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
    Ok(Measured {
        collect,
        baseline: policy::rego(&required, None),
        strict: policy::rego(&required, Some(&tightening)),
        tightening,
        report,
        measured_at: Instant::now(),
    })
}

/// How long step 3's report may stand in for the agent's first measurement.
const REPORT_FRESH_FOR: Duration = Duration::from_secs(60);

/// Step 4: the broker and its gateway, with the baseline policy; returns the
/// broker's URL.
pub(crate) async fn start_broker(
    n: &mut Narrator<'_>,
    world: &mut World,
    issuer_url: &str,
    app_addr: SocketAddr,
    baseline: &str,
) -> Result<String, DemoError> {
    let broker = EmbeddedBroker::start(issuer_url, app_addr, baseline).await?;
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
    world.broker = Some(broker);
    Ok(broker_url)
}

/// Step 5: sign-in with password and MFA, the demo playing the browser.
pub(crate) async fn sign_in(
    n: &mut Narrator<'_>,
    world: &mut World,
    issuer_url: &str,
) -> Result<SignedIn, DemoError> {
    let run_id = random_token().chars().take(12).collect::<String>();
    let store = Arc::new(DemoStore::open(&run_id, world.memory_only));
    world.store = Some(store.clone());
    let store_dyn: Arc<dyn SecretStore> = store.clone();
    let identity = Arc::new(Identity::new(
        identity_config(issuer_url)?,
        store_dyn.clone(),
    ));
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
    describe_store(n, &store);
    let who = signin::log_in(&identity, code)
        .await
        .map_err(DemoError::SignIn)?;
    n.detail(&format!(
        "Signed in as {}; second factor: {}. (Tokens are never shown.)",
        who.user, who.mfa_method
    ));
    Ok(SignedIn {
        identity,
        store: store_dyn,
    })
}

/// Where to sign in: the demo issuer, with its MFA requirement.
fn identity_config(issuer_url: &str) -> Result<IdentityConfig, DemoError> {
    let issuer = issuer_url
        .parse()
        .map_err(|e| start_error("sign-in", format!("issuer URL: {e}")))?;
    let mut config = IdentityConfig::new(issuer, DEMO_CLIENT_ID);
    config.acr_values = vec![DEMO_ACR.to_owned()];
    config.login_timeout = Duration::from_secs(20);
    Ok(config)
}

/// Where the tokens go, and that they go away again.
fn describe_store(n: &mut Narrator<'_>, store: &DemoStore) {
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
}

/// Step 6: the agent: enrol, measure, attest; returns once it holds a
/// compliant verdict.
pub(crate) async fn start_agent(
    n: &mut Narrator<'_>,
    world: &mut World,
    signed_in: SignedIn,
    broker_url: &str,
    measured: &Measured,
) -> Result<AgentLink, DemoError> {
    n.step(
        "Starting the Sallyport agent: it enrols this device's key, measures posture, and attests.",
    );
    n.detail(
        "Attesting = signing the posture report (an EAT) with the device key; the broker checks",
    );
    n.detail("the signature and evaluates its Rego policy to a verdict.");
    n.detail(
        "The device service (sallyportd) runs in-process here, without admin rights: it holds",
    );
    n.detail(
        "the device key (a software key in a temporary file) and signs every EAT and DPoP proof.",
    );
    n.detail("A real install runs sallyportd as root, so the signed-in user never sees the key.");
    let client = BrokerClient::new(broker_url, Duration::from_secs(5))
        .map_err(|e| start_error("the broker client", e))?;
    let device_dir = tempfile::Builder::new()
        .prefix("sallyport-demo-device-")
        .tempdir()
        .map_err(|e| start_error("the device service (temporary folder)", e))?;
    let device_service = agent::device_service::server::Service::open(
        agent::device_service::server::ServiceConfig {
            backend: agent::device_service::server::Backend::Software,
            key_path: device_dir.path().join("device-key.p8"),
            tpm: agent::device_service::server::TpmConfig::default(),
            collect: measured.collect.clone(),
            posture_max_age: Duration::from_secs(30),
        },
    )
    .map_err(|e| start_error("the device service", e))?;
    world.device_dir = Some(device_dir);
    // Step 3's report is seconds old: the agent attests with it rather
    // than measuring again, unless it has grown stale meanwhile.
    let fresh_for = REPORT_FRESH_FOR.saturating_sub(measured.measured_at.elapsed());
    let runtime = Runtime::new(
        signed_in.identity,
        signed_in.store,
        client,
        runtime_options(measured.collect.clone()),
    )
    .with_report(measured.report.clone(), fresh_for)
    .with_device_service(agent::device_service::client::DeviceService::in_process(
        std::sync::Arc::new(device_service),
    ));
    let agent_started = Instant::now();
    let agent = world.spawn_agent(runtime);
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
    Ok(agent)
}

/// Step 7: the tunnel; returns its local address and the first page through it.
pub(crate) async fn open_tunnel(
    n: &mut Narrator<'_>,
    world: &World,
    agent: &AgentLink,
) -> Result<(String, Page), DemoError> {
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
        world.gateway_peers()
    ));
    Ok((local, page))
}

/// Step 8: the page that came through the tunnel.
pub(crate) async fn show_page(n: &mut Narrator<'_>, local: &str, page: &Page, agent: &AgentLink) {
    n.step(&format!("Fetching http://{local}/ through the tunnel..."));
    describe_page(n, page, agent).await;
}

/// Step 9: tighten the policy: the tunnel must close, with a reason naming the
/// check, and traffic must stop.
pub(crate) async fn tighten_policy(
    n: &mut Narrator<'_>,
    world: &World,
    agent: &AgentLink,
    local: &str,
    measured: &Measured,
) -> Result<(), DemoError> {
    let tightening = &measured.tightening;
    n.step(&format!(
        "Tightening the policy: the broker now also requires check `{}` ({}).",
        tightening.check(),
        tightening.why()
    ));
    n.detail(
        "As an administrator would: the broker re-reads its policy file and tells every agent.",
    );
    world.set_policy(&measured.strict).await?;
    let tightened = Instant::now();
    let reason = agent
        .until_closed(local, tightening.check().as_str())
        .await?;
    n.detail(&format!(
        "Tunnel DOWN after {:.1} s. The agent tells the user:",
        tightened.elapsed().as_secs_f64()
    ));
    n.detail(&format!("  \"{reason}\""));
    describe_non_compliant_verdict(n, agent).await;
    n.detail(&format!(
        "The gateway holds {} WireGuard peer(s).",
        world.gateway_peers()
    ));
    traffic_stopped(n, local).await
}

/// The broker's verdict after the tightening, once the agent has it (it
/// follows the tunnel closing; a slow one is left out, not waited for).
async fn describe_non_compliant_verdict(n: &mut Narrator<'_>, agent: &AgentLink) {
    let non_compliant = agent
        .until("a non-compliant verdict", Duration::from_secs(10), |s| {
            s.verdict.as_ref().is_some_and(|v| !v.compliant)
        })
        .await;
    if let Ok(status) = non_compliant
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
}

/// The closed tunnel really carries nothing: a page still coming through
/// would mean the product failed open.
async fn traffic_stopped(n: &mut Narrator<'_>, local: &str) -> Result<(), DemoError> {
    match fetch(local).await {
        Ok(_) => Err(DemoError::Broken(format!(
            "the page could still be fetched through http://{local} after the tunnel closed"
        ))),
        Err(e) => {
            n.detail(&format!("Fetching http://{local}/ now fails: {e}."));
            Ok(())
        }
    }
}

/// Step 10: restore the policy; returns the tunnel's local address and the
/// first page through it once it is back.
pub(crate) async fn restore_policy(
    n: &mut Narrator<'_>,
    world: &World,
    agent: &AgentLink,
    baseline: &str,
) -> Result<(String, Page), DemoError> {
    n.step("Restoring the policy: the check is no longer required.");
    world.set_policy(baseline).await?;
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
    Ok((again, page))
}

/// Step 11: the page through the restored tunnel.
pub(crate) async fn show_page_again(
    n: &mut Narrator<'_>,
    local: &str,
    page: &Page,
    agent: &AgentLink,
) {
    n.step(&format!(
        "Fetching http://{local}/ through the tunnel again..."
    ));
    describe_page(n, page, agent).await;
}

/// Step 12, with `--keep-running`: serves the demo's agent on the control
/// socket and waits for Ctrl-C.
pub(crate) async fn stay_up(n: &mut Narrator<'_>, world: &mut World, local: &str) {
    n.step(&format!(
        "Everything stays up: open http://{local}/ in a browser, or run `sallyport posture`. Press Ctrl-C to stop."
    ));
    serve_control_socket(n, world).await;
    let _ = tokio::signal::ctrl_c().await;
}

/// Puts the demo's agent on the control socket, and says where, or why not.
async fn serve_control_socket(n: &mut Narrator<'_>, world: &mut World) {
    let path = socket::socket_path(&|name: &str| std::env::var_os(name));
    let Some(control) = world.control.clone() else {
        return;
    };
    match socket::serve(&path.path, control).await {
        Ok(served) => {
            n.detail(&format!(
                "The demo's agent answers on its control socket {}:",
                served.path().display()
            ));
            // The front ends find the default path by themselves; a path
            // from the variable only where the variable is set too.
            if path.from_variable {
                n.detail(&format!(
                    "`sallyport status` (or `sallyport diagnostics`) in another terminal with the same {} shows this agent; the tray app looks only at the default socket.",
                    socket::SOCKET_VAR
                ));
            } else {
                n.detail("`sallyport status` in another terminal shows this agent; so do `sallyport diagnostics` and the tray app.");
            }
            world.served = Some(served);
        }
        Err(ControlError::AlreadyRunning(_)) => n.detail(&format!(
            "Another Sallyport agent already answers on {}, so `sallyport status` shows that one, not the demo's; the demo keeps running without its socket.",
            path.path.display()
        )),
        Err(e) => n.detail(&format!(
            "The demo's agent is not on a control socket ({e}); the demo keeps running without it."
        )),
    }
}

/// The report as `sallyport posture` would list it, one check a line.
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

/// Short intervals, so the policy change and its reversal show within
/// seconds instead of the production minute.
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

/// What the page says (it counts requests, so a real round trip shows)
/// and how many bytes the tunnel has carried.
async fn describe_page(n: &mut Narrator<'_>, page: &Page, agent: &AgentLink) {
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
        && let Some(t) = app_tunnel(&status)
    {
        n.detail(&format!(
            "Through this tunnel so far: {} bytes out, {} bytes in (WireGuard-encrypted to the gateway).",
            t.bytes_out, t.bytes_in
        ));
    }
}
