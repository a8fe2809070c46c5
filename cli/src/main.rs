//! `sallyport`: the headless command line of the Sallyport agent.
//!
//! A thin front end over the `agent` library (see docs/ARCHITECTURE.md):
//! it parses flags, asks the library or the running agent, and renders
//! text ([`posture_view`], [`status_view`]). The `demo` feature adds
//! `sallyport demo` from the `demo` crate.

mod posture_view;
mod settings_view;
mod status_view;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use std::sync::Arc;

use agent::control::view::{AppView, IdentityView, StatusView};
use agent::control::{Reply, Request};
use agent::diagnostics::Bundle;
use agent::host::HostSpec;
use agent::identity::client::{AuthOverrides, DevicePrompt};
use agent::identity::last_sign_in::LastSignIn;
use agent::identity::session::SessionState;
use agent::identity::store::KeyringStore;
use agent::identity::{Identity, IdentityConfig, WhoAmI, browser};
use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use posture::CheckId;
use posture::cache::Cache;
use posture::collect::{self, Options};
use posture::policy::Policy;
use posture_view::PostureOutput;

/// The control channel's transport: a Unix socket, or a named pipe.
#[cfg(unix)]
mod transport {
    pub use agent::control::unix::{default_socket_path, request};
}

#[cfg(windows)]
mod transport {
    pub use agent::control::windows::{default_socket_path, request};
}

/// Exit code when the command itself failed (bad arguments, bad policy).
const EXIT_ERROR: u8 = 2;

#[derive(Debug, Parser)]
#[command(name = "sallyport", version, about = "Sallyport zero-trust client")]
struct Cli {
    /// The running agent's control socket (default: per-user runtime dir,
    /// or SALLYPORT_SOCKET).
    #[arg(long, global = true, value_name = "PATH")]
    socket: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Measure this device's health and evaluate the posture policy.
    ///
    /// Exit code: 0 compliant, 1 not compliant, 2 error.
    Posture {
        /// Print the full report and verdict as JSON.
        #[arg(long)]
        json: bool,
        /// Evaluate this Rego policy instead of the built-in default.
        #[arg(long, value_name = "FILE")]
        policy: Option<PathBuf>,
        /// Collect only these checks (repeatable), e.g. `--check firewall`.
        #[arg(long = "check", value_name = "ID")]
        checks: Vec<String>,
        /// Ignore cached slow sources (package manager simulation).
        #[arg(long)]
        no_cache: bool,
        /// Seconds one check may take before it is reported unknown.
        #[arg(long, default_value_t = 45, value_name = "SECONDS")]
        timeout: u64,
    },
    /// Sign in with your organisation's identity provider (MFA required).
    ///
    /// Opens the system browser; with --no-browser (or without a display)
    /// shows a code to enter on another device instead.
    Login {
        /// Use the device flow: enter a code on another device.
        #[arg(long)]
        no_browser: bool,
        #[command(flatten)]
        idp: IdpArgs,
    },
    /// Sign out: end the session at the identity provider and delete the
    /// tokens from the OS keyring.
    Logout {
        /// Do not open the identity provider's sign-out page.
        #[arg(long)]
        no_browser: bool,
        #[command(flatten)]
        idp: IdpArgs,
    },
    /// Show who is signed in, until when, and with which second factor
    /// (never the tokens).
    Whoami {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        idp: IdpArgs,
    },
    /// Run the agent: keep measuring posture, attest, and keep the
    /// applications you opened connected while identity and posture hold.
    Run {
        /// The access broker's URL (else SALLYPORT_BROKER or the settings).
        #[arg(long, value_name = "URL")]
        broker: Option<String>,
        #[command(flatten)]
        idp: IdpArgs,
    },
    /// Identity, device verdict and tunnels of the running agent.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The applications you can open.
    Apps {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Open an application: its tunnel comes up whenever identity and
    /// posture allow, and stays wanted until `disconnect`.
    Connect {
        /// The application id (see `sallyport apps`).
        app: String,
    },
    /// Close an application's tunnel.
    Disconnect {
        /// The application id.
        app: String,
    },
    /// Show the whole product working on this machine, nothing else needed.
    ///
    /// Starts a demo-only identity provider, the broker and gateway, and a
    /// demo application on 127.0.0.1; signs in (password + TOTP), measures
    /// this machine's posture, attests, opens a tunnel and fetches a page
    /// through it; then tightens the policy so a check of this machine
    /// fails, shows the tunnel close, restores it. Narrated step by step.
    #[cfg(feature = "demo")]
    Demo {
        /// Leave everything running at the end (until Ctrl-C) to look around.
        #[arg(long)]
        keep_running: bool,
        /// Keep the demo's tokens and device key in memory instead of the
        /// OS keyring (they are deleted at the end either way).
        #[arg(long)]
        no_keyring: bool,
    },
    /// Every setting, its value, and who set it: IT's managed values are
    /// shown locked (they win over your own settings file).
    Settings {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// What the agent decided and why, oldest first: posture changes,
    /// verdicts, grants, tunnels up and down with the reason, sign-ins,
    /// step-ups, revocations. Kept 7 days, across restarts.
    History {
        /// Print JSON (one array of entries).
        #[arg(long)]
        json: bool,
        /// Only entries from then on: a span back from now (`90s`, `30m`,
        /// `2h`, `7d`) or an RFC 3339 time.
        #[arg(long, value_name = "WHEN")]
        since: Option<String>,
    },
    /// Write a redacted diagnostics bundle (zip) for your helpdesk.
    Diagnostics {
        /// Where to write it.
        #[arg(long, value_name = "FILE", default_value = "sallyport-diagnostics.zip")]
        out: PathBuf,
    },
}

/// Where to sign in. Each value comes from the first of: these flags, the
/// environment (`SALLYPORT_ISSUER` / `SALLYPORT_CLIENT_ID` /
/// `SALLYPORT_ACR_VALUES` / `SALLYPORT_MAX_AUTH_AGE` / `SALLYPORT_RESOURCE`),
/// the settings (the user's file overlaid by IT's managed configuration,
/// `agent::config`), and — for the issuer and client id only — where the
/// latest `sallyport login` signed in (`agent::identity::last_sign_in`), so
/// `whoami` and `logout` need no `--issuer` after a login.
#[derive(Debug, clap::Args)]
struct IdpArgs {
    /// The identity provider's issuer URL.
    #[arg(long, value_name = "URL")]
    issuer: Option<String>,
    /// The OAuth client id registered for Sallyport.
    #[arg(long, value_name = "ID")]
    client_id: Option<String>,
    /// acr_values to request (space-separated).
    #[arg(long, value_name = "VALUES")]
    acr_values: Option<String>,
    /// Oldest accepted MFA sign-in, seconds (also sent as max_age).
    #[arg(long, value_name = "SECONDS")]
    max_auth_age: Option<u64>,
    /// RFC 8707 resource to get access tokens for (the broker).
    #[arg(long, value_name = "URI")]
    resource: Option<String>,
}

/// The client id when no source names one.
const DEFAULT_CLIENT_ID: &str = "sallyport-desktop";

/// What [`IdpArgs::resolve`] may fall back on after the flags.
struct IdpSources<'a> {
    /// The environment (a closure, so tests need not set variables).
    env: &'a dyn Fn(&str) -> Option<String>,
    /// The effective settings, when they apply.
    settings: Option<&'a agent::config::Settings>,
    /// Where the latest `sallyport login` signed in, when it applies.
    last_sign_in: Option<&'a LastSignIn>,
}

fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Issuers compare without a trailing slash, as the keyring item names do.
fn same_issuer(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

impl IdpArgs {
    /// For `login`, `logout` and `whoami`: every source, down to where the
    /// user last signed in.
    fn config(&self) -> anyhow::Result<IdentityConfig> {
        let effective = agent::config::load()?;
        let last_sign_in = LastSignIn::load()?;
        self.resolve(&IdpSources {
            env: &process_env,
            settings: Some(&effective.settings),
            last_sign_in: last_sign_in.as_ref(),
        })?
        .with_context(|| {
            let settings = agent::config::user_config_path().map_or_else(
                || "the settings".to_owned(),
                |path| path.display().to_string(),
            );
            format!(
                "no identity provider configured: pass --issuer URL, set SALLYPORT_ISSUER, or set issuer in {settings}"
            )
        })
    }

    /// For `run`: only what the flags and environment say, since the agent
    /// itself falls back on the settings and then asks the broker, whose
    /// answer must win over an older sign-in somewhere else.
    fn explicit_config(&self) -> anyhow::Result<Option<IdentityConfig>> {
        self.resolve(&IdpSources {
            env: &process_env,
            settings: None,
            last_sign_in: None,
        })
    }

    /// The configuration from the flags and `sources`, each value from the
    /// first that has it; `None` when none names an issuer. The remembered
    /// client id is used only with the remembered issuer: it belongs to that
    /// IdP, not to whichever issuer a flag names.
    fn resolve(&self, sources: &IdpSources<'_>) -> anyhow::Result<Option<IdentityConfig>> {
        let env = sources.env;
        let settings = sources.settings;
        let Some(issuer) = self
            .issuer
            .clone()
            .or_else(|| env("SALLYPORT_ISSUER"))
            .or_else(|| settings.and_then(|s| s.issuer.clone()))
            .or_else(|| sources.last_sign_in.map(|l| l.issuer.clone()))
        else {
            return Ok(None);
        };
        let issuer =
            url::Url::parse(&issuer).with_context(|| format!("bad issuer URL {issuer:?}"))?;
        let client_id = self
            .client_id
            .clone()
            .or_else(|| env("SALLYPORT_CLIENT_ID"))
            .or_else(|| settings.and_then(|s| s.client_id.clone()))
            .or_else(|| {
                sources
                    .last_sign_in
                    .filter(|l| same_issuer(&l.issuer, issuer.as_str()))
                    .map(|l| l.client_id.clone())
            })
            .unwrap_or_else(|| DEFAULT_CLIENT_ID.to_owned());
        let mut config = IdentityConfig::new(issuer, client_id);
        let acr_values = self
            .acr_values
            .clone()
            .or_else(|| env("SALLYPORT_ACR_VALUES"))
            .map(|acr| acr.split_whitespace().map(str::to_owned).collect())
            .or_else(|| {
                settings
                    .map(|s| s.identity.acr_values.clone())
                    .filter(|acr| !acr.is_empty())
            });
        if let Some(acr_values) = acr_values {
            config.acr_values = acr_values;
        }
        let max_age = match self.max_auth_age {
            Some(v) => Some(v),
            None => match env("SALLYPORT_MAX_AUTH_AGE") {
                Some(v) => Some(
                    v.parse::<u64>()
                        .context("SALLYPORT_MAX_AUTH_AGE must be seconds")?,
                ),
                None => settings.and_then(|s| s.identity.max_auth_age_secs),
            },
        };
        config.max_auth_age = max_age.map(Duration::from_secs);
        config.resource = self.resource.clone().or_else(|| env("SALLYPORT_RESOURCE"));
        Ok(Some(config))
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `sallyport run` also keeps a rotating, redacted log file for the
    // diagnostics bundle; the short commands log to stderr only.
    let log_dir = matches!(cli.command, Command::Run { .. })
        .then(agent::logs::agent_dir)
        .flatten();
    agent::logs::init("SALLYPORT_LOG", "warn", log_dir);
    // Before any runtime thread exists (see the function's doc).
    if let Err(err) = agent::identity::store::share_session_keyring() {
        tracing::debug!(error = %err, "no session keyring to share");
    }
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            #[allow(clippy::print_stderr)]
            {
                eprintln!("sallyport: {err:#}");
            }
            ExitCode::from(EXIT_ERROR)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Posture {
            json,
            policy,
            checks,
            no_cache,
            timeout,
        } => posture_command(json, policy, &checks, no_cache, timeout),
        Command::Login { no_browser, idp } => login_command(no_browser, &idp, cli.socket),
        Command::Logout { no_browser, idp } => logout_command(no_browser, &idp),
        Command::Whoami { json, idp } => whoami_command(json, &idp),
        Command::Run { broker, idp } => agent_run_command(broker, &idp, cli.socket),
        Command::Status { json } => status_command(json, cli.socket),
        Command::Apps { json } => apps_command(json, cli.socket),
        Command::Connect { app } => {
            control_command(cli.socket, &Request::Connect { app: app.clone() })?;
            say(&format!(
                "{app}: connecting; `sallyport status` shows its local address."
            ));
            Ok(0)
        }
        Command::Disconnect { app } => {
            control_command(cli.socket, &Request::Disconnect { app: app.clone() })?;
            say(&format!("{app}: disconnected."));
            Ok(0)
        }
        Command::Settings { json } => settings_command(json),
        Command::Diagnostics { out } => diagnostics_command(&out, cli.socket),
        Command::History { json, since } => history_command(json, since.as_deref(), cli.socket),
        #[cfg(feature = "demo")]
        Command::Demo {
            keep_running,
            no_keyring,
        } => demo_command(keep_running, no_keyring),
    }
}

/// `sallyport demo`: narration on stdout; a failure is an error (exit 2)
/// after everything the demo started has been stopped.
#[cfg(feature = "demo")]
fn demo_command(keep_running: bool, no_keyring: bool) -> anyhow::Result<u8> {
    let options = demo::DemoOptions {
        keep_running,
        memory_only: no_keyring,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let mut stdout = std::io::stdout();
    let mut narrator = demo::narrate::Narrator::new(&mut stdout);
    rt.block_on(demo::run(&options, &mut narrator))
        .context("the demo stopped")?;
    Ok(0)
}

fn socket_path(socket: Option<PathBuf>) -> PathBuf {
    socket
        .or_else(|| std::env::var_os("SALLYPORT_SOCKET").map(PathBuf::from))
        .unwrap_or_else(transport::default_socket_path)
}

/// Sends one request to the running agent; its `data` on success.
fn control_command(
    socket: Option<PathBuf>,
    request: &Request,
) -> anyhow::Result<serde_json::Value> {
    let path = socket_path(socket);
    match runtime()?.block_on(transport::request(&path, request))? {
        Reply::Ok { data } => Ok(data),
        Reply::Error { message } => bail!("{message}"),
    }
}

fn print_out(text: &str) {
    #[allow(clippy::print_stdout)]
    {
        print!("{text}");
    }
}

fn status_command(json: bool, socket: Option<PathBuf>) -> anyhow::Result<u8> {
    let data = control_command(socket, &Request::Status)?;
    let status: StatusView =
        serde_json::from_value(data).context("the agent sent an unexpected status")?;
    if json {
        print_out(&(serde_json::to_string_pretty(&status)? + "\n"));
    } else {
        print_out(&crate::status_view::render_status(&status));
    }
    let compliant = status.verdict.as_ref().is_some_and(|v| v.compliant);
    Ok(if compliant { 0 } else { 1 })
}

fn apps_command(json: bool, socket: Option<PathBuf>) -> anyhow::Result<u8> {
    let data = control_command(socket, &Request::Apps)?;
    let apps: Vec<AppView> =
        serde_json::from_value(data).context("the agent sent an unexpected catalogue")?;
    if json {
        print_out(&(serde_json::to_string_pretty(&apps)? + "\n"));
    } else {
        print_out(&crate::status_view::render_apps(&apps));
    }
    Ok(0)
}

/// `sallyport settings`: the effective settings and who set each one.
fn settings_command(json: bool) -> anyhow::Result<u8> {
    let effective = agent::config::load()?;
    let view = agent::config::view::describe(&effective, agent::config::schema::Os::current());
    if json {
        print_out(&(serde_json::to_string_pretty(&view)? + "\n"));
    } else {
        print_out(&settings_view::render_settings(&view));
    }
    Ok(0)
}

/// `sallyport history`: from the running agent, else from the timeline it
/// left on disk (a laptop blocked yesterday still shows why today).
fn history_command(json: bool, since: Option<&str>, socket: Option<PathBuf>) -> anyhow::Result<u8> {
    let now = time::OffsetDateTime::now_utc();
    let since = since
        .map(|text| agent::timeline::parse_since(text, now).map_err(anyhow::Error::msg))
        .transpose()
        .context("--since")?;
    let (entries, from_disk) = match control_command(socket, &Request::History { since }) {
        Ok(data) => (
            serde_json::from_value::<Vec<agent::timeline::Entry>>(data)
                .context("the agent sent an unexpected history")?,
            None,
        ),
        Err(e) if e.to_string().contains("no agent is running") => {
            let dir = agent::config::user_state_dir()
                .context("no state directory (HOME is not set) and no agent running")?;
            let mut entries = agent::timeline::read_dir_entries(&dir, since, now);
            entries.extend(
                device_service_updates(&entries)
                    .into_iter()
                    .filter(|e| since.is_none_or(|s| e.at >= s)),
            );
            entries.sort_by_key(|e| e.at);
            (entries, Some(dir))
        }
        Err(e) => return Err(e),
    };
    if json {
        print_out(&(serde_json::to_string_pretty(&entries)? + "\n"));
        return Ok(0);
    }
    if let Some(dir) = from_disk {
        say(&format!(
            "(no agent running: the timeline stored in {})",
            dir.display()
        ));
    }
    if entries.is_empty() {
        print_out("Nothing recorded in that period.\n");
    }
    for entry in &entries {
        print_out(&(entry.line(true) + "\n"));
    }
    Ok(0)
}

/// The device service's update events the stored timeline lacks (what
/// happened while no agent ran): nothing when no device service is
/// configured or it does not answer within 5 s.
fn device_service_updates(stored: &[agent::timeline::Entry]) -> Vec<agent::timeline::Entry> {
    let Some(socket) = agent::config::load()
        .ok()
        .and_then(|effective| agent::host::device_service_socket(&effective.settings))
    else {
        return Vec::new();
    };
    let link = agent::device_service::client::DeviceService::socket(socket);
    let asked = runtime().ok().and_then(|rt| {
        rt.block_on(async {
            tokio::time::timeout(std::time::Duration::from_secs(5), link.update_status()).await
        })
        .ok()
    });
    match asked {
        Some(Ok(status)) => {
            agent::timeline::update_entries(&status, agent::timeline::newest_update(stored))
        }
        Some(Err(e)) => {
            tracing::debug!(error = %e, "the device service's update events");
            Vec::new()
        }
        None => Vec::new(),
    }
}

/// `sallyport diagnostics`: the running agent writes the bundle (it holds
/// the status, the timeline and knows what to redact); without one, this
/// process gathers what it can from the machine.
fn diagnostics_command(out: &std::path::Path, socket: Option<PathBuf>) -> anyhow::Result<u8> {
    let absolute = std::path::absolute(out).with_context(|| format!("{}", out.display()))?;
    let request = Request::ExportDiagnostics {
        path: absolute.display().to_string(),
    };
    match control_command(socket, &request) {
        Ok(_) => {
            say(&format!(
                "Wrote {} (tokens and keys are never included).",
                absolute.display()
            ));
            return Ok(0);
        }
        Err(e) if e.to_string().contains("no agent is running") => {}
        Err(e) => return Err(e),
    }
    let mut bundle = Bundle::default();
    let effective = agent::config::load().ok();
    let broker = std::env::var("SALLYPORT_BROKER")
        .ok()
        .filter(|v| !v.is_empty())
        .or_else(|| {
            effective
                .as_ref()
                .and_then(|e| e.settings.broker_url.clone())
        });
    bundle.machine_parts(broker.as_deref(), agent::logs::agent_dir().as_deref());
    bundle.text(
        "status.json.error.txt",
        "no agent was running: the status and the decisions in memory are not included",
    );
    // No agent: measure here so the bundle still says what is wrong.
    let rt = runtime()?;
    let report = rt.block_on(collect::collect(&Options::default()));
    let evaluation = Policy::default_policy()?.evaluate(&report)?;
    bundle.json(
        "posture.json",
        &PostureOutput {
            report: &report,
            policy: "default",
            evaluation: &evaluation,
            only_checks: None,
        },
    );
    if let Some(dir) = agent::config::user_state_dir() {
        let now = time::OffsetDateTime::now_utc();
        bundle.json(
            "timeline.json",
            &agent::timeline::read_dir_entries(&dir, None, now),
        );
    }
    match broker
        .as_deref()
        .map(|b| agent::broker_client::BrokerClient::new(b, Duration::from_secs(5)))
    {
        Some(Ok(client)) => {
            bundle.json("connectivity.json", &rt.block_on(client.connectivity()));
        }
        Some(Err(e)) => {
            bundle.text("connectivity.error.txt", e.to_string());
        }
        None => {
            bundle.text("connectivity.error.txt", "no broker configured");
        }
    }
    bundle.write_zip(&absolute)?;
    say(&format!(
        "Wrote {} (no agent was running; tokens and keys are never included).",
        absolute.display()
    ));
    Ok(0)
}

fn agent_run_command(
    broker: Option<String>,
    idp: &IdpArgs,
    socket: Option<PathBuf>,
) -> anyhow::Result<u8> {
    let effective = agent::config::load()?;
    let mut spec = HostSpec::from_settings(effective.settings, broker, socket_path(socket))
        .map_err(|err| match err {
            agent::host::HostError::NoBroker { .. } => {
                anyhow::anyhow!("{err}, or pass --broker URL")
            }
            other => other.into(),
        })?;
    // Issuer flags/env win; otherwise the settings, otherwise the broker says.
    if let Some(config) = idp.explicit_config()? {
        spec.identity = Some(config);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async move {
        let hosted = agent::host::bind(spec).await?;
        say(&format!(
            "Sallyport agent running; control socket {}",
            hosted.socket().display()
        ));
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        hosted.run(shutdown).await?;
        say("Sallyport agent stopped; all tunnels closed.");
        anyhow::Ok(0)
    })
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn identity(idp: &IdpArgs) -> anyhow::Result<Identity> {
    let config = idp.config()?;
    let store = KeyringStore::open_default("sallyport")?;
    Ok(Identity::new(config, Arc::new(store)))
}

/// Remembers where this login signed in, for the commands after it. A
/// failure costs only convenience (`--issuer` is needed next time), so it
/// is reported, not fatal.
fn remember_sign_in(identity: &Identity) {
    let config = identity.config();
    let remembered = LastSignIn {
        issuer: config.issuer.to_string(),
        client_id: config.client_id.clone(),
    };
    if let Err(err) = remembered.save() {
        say(&format!(
            "(could not remember where you signed in: {err}; pass --issuer to whoami and logout)"
        ));
    }
}

/// How long a device code lasts, in words: "45 seconds", "1 minute",
/// "10 minutes" (whole minutes, rounded down: never longer than it is).
fn expires_in_words(seconds: u64) -> String {
    let plural = |n: u64| if n == 1 { "" } else { "s" };
    if seconds < 60 {
        format!("{seconds} second{}", plural(seconds))
    } else {
        let minutes = seconds / 60;
        format!("{minutes} minute{}", plural(minutes))
    }
}

#[allow(clippy::print_stderr)]
fn say(text: &str) {
    eprintln!("{text}");
}

fn format_time(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}

fn describe(who: &WhoAmI) -> String {
    let state = match &who.state {
        SessionState::SignedOut => "signed out".to_owned(),
        SessionState::Valid { until, .. } => format!(
            "valid until {}{}",
            format_time(*until),
            if who.can_refresh {
                " (renews automatically)"
            } else {
                ""
            }
        ),
        SessionState::NeedsReauth { reason } => format!("needs sign-in: {reason}"),
    };
    let auth_time = who
        .auth_time
        .map(format_time)
        .unwrap_or_else(|| "unknown".to_owned());
    format!(
        "Signed in as {}\n  issuer:       {}\n  subject:      {}\n  MFA:          {} (at {auth_time})\n  session:      {state}\n  tokens kept in: {}\n",
        who.user, who.issuer, who.subject, who.mfa_method, who.keyring
    )
}

/// What the running agent says the next sign-in must show, when the broker
/// asked for a stronger or more recent one (RFC 9470 step-up), for the
/// session or for an application the user wants. No agent, or no such
/// request: the configured defaults.
fn step_up_overrides(socket: Option<PathBuf>) -> AuthOverrides {
    let step_up = control_command(socket, &Request::Status)
        .ok()
        .and_then(|data| serde_json::from_value::<StatusView>(data).ok())
        .and_then(|status| match status.identity {
            // The session's own step-up first: without it nothing opens.
            IdentityView::NeedsReauth { step_up, .. } => step_up,
            // An application's (its access policy's) step-up.
            IdentityView::Valid { step_up, .. } => step_up,
            IdentityView::SignedOut => None,
        });
    let Some(step_up) = step_up else {
        return AuthOverrides::default();
    };
    say(
        "The access broker asks for a stronger or more recent sign-in; asking the identity provider for it.",
    );
    AuthOverrides {
        acr_values: (!step_up.acr_values.is_empty()).then_some(step_up.acr_values),
        max_age: step_up.max_age,
    }
}

fn login_command(no_browser: bool, idp: &IdpArgs, socket: Option<PathBuf>) -> anyhow::Result<u8> {
    let identity = identity(idp)?;
    let headless = cfg!(target_os = "linux")
        && std::env::var_os("DISPLAY").is_none()
        && std::env::var_os("WAYLAND_DISPLAY").is_none()
        && std::env::var_os("SALLYPORT_BROWSER").is_none();
    // The device flow asks for the configured acr_values only (RFC 8628
    // has no per-request step-up); the browser flow honours the broker's.
    let overrides = if no_browser || headless {
        AuthOverrides::default()
    } else {
        step_up_overrides(socket)
    };
    let who = runtime()?.block_on(async {
        if no_browser || headless {
            let show = |prompt: &DevicePrompt| {
                say(&format!(
                    "To sign in, open {} and enter the code {}",
                    prompt.verification_uri, prompt.user_code
                ));
                if let Some(complete) = &prompt.verification_uri_complete {
                    say(&format!("  (or open {complete})"));
                }
                say(&format!(
                    "The code expires in {}.",
                    expires_in_words(prompt.expires_in)
                ));
            };
            identity.login_device(&show).await
        } else {
            let open = |url: &url::Url| {
                say("Opening your browser to sign in. If it does not open, visit:");
                say(&format!("  {url}"));
                browser::open(url).or_else(|err| {
                    say(&format!("(could not open a browser: {err})"));
                    Ok(())
                })
            };
            identity.login_browser(&open, &overrides).await
        }
    })?;
    remember_sign_in(&identity);
    #[allow(clippy::print_stdout)]
    {
        print!("{}", describe(&who));
    }
    Ok(0)
}

fn logout_command(no_browser: bool, idp: &IdpArgs) -> anyhow::Result<u8> {
    let identity = identity(idp)?;
    let end_session = runtime()?.block_on(identity.logout())?;
    say("Signed out; tokens deleted from the OS keyring.");
    if let Some(url) = end_session
        && (no_browser || browser::open(&url).is_err())
    {
        say("To end the session at your identity provider too, visit:");
        say(&format!(
            "  {}",
            url.as_str().split('?').next().unwrap_or_default()
        ));
    }
    Ok(0)
}

fn whoami_command(json: bool, idp: &IdpArgs) -> anyhow::Result<u8> {
    let identity = identity(idp)?;
    let Some(who) = identity.whoami()? else {
        say("Not signed in; run `sallyport login`.");
        return Ok(1);
    };
    let text = if json {
        serde_json::to_string_pretty(&who)? + "\n"
    } else {
        describe(&who)
    };
    #[allow(clippy::print_stdout)]
    {
        print!("{text}");
    }
    Ok(match who.state {
        SessionState::Valid { .. } => 0,
        _ => 1,
    })
}

fn posture_command(
    json: bool,
    policy_path: Option<PathBuf>,
    check_names: &[String],
    no_cache: bool,
    timeout: u64,
) -> anyhow::Result<u8> {
    let mut only = Vec::new();
    for name in check_names {
        match CheckId::from_name(name) {
            Some(id) => only.push(id),
            None => {
                let known: Vec<&str> = CheckId::ALL.iter().map(|id| id.as_str()).collect();
                bail!("unknown check {name:?}; known checks: {}", known.join(", "));
            }
        }
    }
    // Load the policy first: a broken policy is an error before any work.
    let policy = match &policy_path {
        Some(path) => Policy::from_file(path)?,
        None => Policy::default_policy()?,
    };
    let options = Options {
        only,
        check_timeout: Duration::from_secs(timeout),
        cache: if no_cache {
            Cache::disabled()
        } else {
            Cache::default_location()
        },
        ..Options::default()
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let report = runtime.block_on(collect::collect(&options));
    let evaluation = policy.evaluate(&report)?;
    // `--check`: judge only what was measured (see `restrict_to`).
    let only_checks: Option<Vec<String>> = (!options.only.is_empty()).then(|| {
        options
            .only
            .iter()
            .map(|id| id.as_str().to_owned())
            .collect()
    });
    let evaluation = match &only_checks {
        Some(checks) => posture_view::restrict_to(evaluation, checks),
        None => evaluation,
    };
    let text = if json {
        let output = PostureOutput {
            report: &report,
            policy: policy.name(),
            evaluation: &evaluation,
            only_checks: only_checks.as_deref(),
        };
        serde_json::to_string_pretty(&output)? + "\n"
    } else {
        posture_view::render_table(&report, policy.name(), &evaluation, only_checks.as_deref())
    };
    #[allow(clippy::print_stdout)]
    {
        print!("{text}");
    }
    Ok(posture_view::exit_code(&evaluation))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(issuer: Option<&str>, client_id: Option<&str>) -> IdpArgs {
        IdpArgs {
            issuer: issuer.map(str::to_owned),
            client_id: client_id.map(str::to_owned),
            acr_values: None,
            max_auth_age: None,
            resource: None,
        }
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    /// (issuer, client id) the sources resolve to.
    fn resolved(idp: &IdpArgs, sources: &IdpSources<'_>) -> Option<(String, String)> {
        idp.resolve(sources)
            .unwrap()
            .map(|c| (c.issuer.to_string(), c.client_id))
    }

    #[test]
    fn flags_then_env_then_settings_then_the_last_sign_in() {
        let last = LastSignIn {
            issuer: "https://last.example/".into(),
            client_id: "last-client".into(),
        };
        let settings = agent::config::Settings {
            issuer: Some("https://settings.example/".into()),
            client_id: Some("settings-client".into()),
            ..agent::config::Settings::default()
        };
        let env = |name: &str| match name {
            "SALLYPORT_ISSUER" => Some("https://env.example/".to_owned()),
            _ => None,
        };
        let all = IdpSources {
            env: &env,
            settings: Some(&settings),
            last_sign_in: Some(&last),
        };
        let flag = args(Some("https://flag.example/"), None);
        assert_eq!(
            resolved(&flag, &all),
            Some(("https://flag.example/".into(), "settings-client".into()))
        );
        assert_eq!(
            resolved(&args(None, None), &all).map(|r| r.0),
            Some("https://env.example/".into())
        );
        let from_settings = IdpSources {
            env: &no_env,
            ..all
        };
        assert_eq!(
            resolved(&args(None, None), &from_settings),
            Some(("https://settings.example/".into(), "settings-client".into()))
        );
        // Nothing configured anywhere: where the user last signed in.
        let bare = agent::config::Settings::default();
        let only_last = IdpSources {
            env: &no_env,
            settings: Some(&bare),
            last_sign_in: Some(&last),
        };
        assert_eq!(
            resolved(&args(None, None), &only_last),
            Some(("https://last.example/".into(), "last-client".into()))
        );
        // Its client id goes with its issuer only.
        assert_eq!(
            resolved(&args(Some("https://other.example/"), None), &only_last),
            Some(("https://other.example/".into(), DEFAULT_CLIENT_ID.into()))
        );
        assert_eq!(
            resolved(&args(Some("https://last.example"), None), &only_last).map(|r| r.1),
            Some("last-client".into())
        );
        let nothing = IdpSources {
            env: &no_env,
            settings: Some(&bare),
            last_sign_in: None,
        };
        assert_eq!(resolved(&args(None, None), &nothing), None);
    }

    #[test]
    fn the_settings_supply_acr_values_and_max_auth_age_after_flags_and_env() {
        let settings = agent::config::Settings {
            identity: agent::config::IdentitySettings {
                acr_values: vec!["urn:settings".into()],
                mfa_amr: Vec::new(),
                max_auth_age_secs: Some(600),
            },
            ..agent::config::Settings::default()
        };
        let sources = IdpSources {
            env: &no_env,
            settings: Some(&settings),
            last_sign_in: None,
        };
        let config = args(Some("https://idp.example/"), None)
            .resolve(&sources)
            .unwrap()
            .unwrap();
        assert_eq!(config.acr_values, vec!["urn:settings"]);
        assert_eq!(config.max_auth_age, Some(Duration::from_secs(600)));
        let mut flags = args(Some("https://idp.example/"), None);
        flags.acr_values = Some("urn:a urn:b".into());
        flags.max_auth_age = Some(60);
        let config = flags.resolve(&sources).unwrap().unwrap();
        assert_eq!(config.acr_values, vec!["urn:a", "urn:b"]);
        assert_eq!(config.max_auth_age, Some(Duration::from_secs(60)));
    }

    #[test]
    fn device_code_expiry_in_words() {
        assert_eq!(expires_in_words(0), "0 seconds");
        assert_eq!(expires_in_words(1), "1 second");
        assert_eq!(expires_in_words(59), "59 seconds");
        assert_eq!(expires_in_words(60), "1 minute");
        assert_eq!(expires_in_words(119), "1 minute");
        assert_eq!(expires_in_words(120), "2 minutes");
        assert_eq!(expires_in_words(600), "10 minutes");
    }
}
