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
//!
//! `flow` is the list of stages; each stage (module `stages`) is one
//! function that starts or does one thing and narrates it as one numbered
//! step. What a stage starts goes into the `World`, which is torn down in
//! reverse order whatever happens (failure, Ctrl-C).

use std::sync::Arc;
use std::time::{Duration, Instant};

use agent::identity::store::SecretStore as _;
use agent::runtime::{ControlRequest, Runtime};
use ring::rand::{SecureRandom as _, SystemRandom};
use tokio::sync::{mpsc, oneshot};

use crate::app::DemoApp;
use crate::embedded::EmbeddedBroker;
use crate::issuer::DemoIssuer;
use crate::link::AgentLink;
use crate::narrate::Narrator;
use crate::socket::Served;
use crate::stages::{
    measure_posture, open_tunnel, restore_policy, show_page, show_page_again, sign_in, start_agent,
    start_app, start_broker, start_issuer, stay_up, tighten_policy,
};
use crate::store::{DemoStore, SERVICE};

/// The application's id in the broker's catalogue.
pub const APP_ID: &str = "demo-app";
/// The broker's audience (access tokens' `aud`, every EAT's `aud`).
pub(crate) const AUDIENCE: &str = "sallyport-demo-broker";
/// How long one stage (first verdict, tunnel up, tunnel down) may take.
pub(crate) const STAGE_TIMEOUT: Duration = Duration::from_secs(30);

/// Flags of `sallyport demo`.
#[derive(Debug, Clone, Default)]
pub struct DemoOptions {
    /// After the demo, keep everything up until Ctrl-C, with the demo's
    /// agent on the control socket, where `sallyport status` finds it.
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
pub(crate) struct World {
    /// `--no-keyring`.
    pub(crate) memory_only: bool,
    pub(crate) issuer: Option<DemoIssuer>,
    pub(crate) app: Option<DemoApp>,
    pub(crate) broker: Option<EmbeddedBroker>,
    pub(crate) store: Option<Arc<DemoStore>>,
    /// The runtime's control channel; the socket serves a clone.
    pub(crate) control: Option<mpsc::Sender<ControlRequest>>,
    stop: Option<oneshot::Sender<()>>,
    agent: Option<tokio::task::JoinHandle<()>>,
    /// The control socket, with `--keep-running`.
    pub(crate) served: Option<Served>,
    /// The in-process device service's key file (deleted with the demo).
    pub(crate) device_dir: Option<tempfile::TempDir>,
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
        stay_up(n, &mut world, local).await;
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

/// Everything up to the restored tunnel, stage by stage; returns the app's
/// local address.
async fn flow(n: &mut Narrator<'_>, world: &mut World) -> Result<String, DemoError> {
    let issuer_url = start_issuer(n, world).await?;
    let app_addr = start_app(n, world).await?;
    let measured = measure_posture(n).await?;
    let broker_url = start_broker(n, world, &issuer_url, app_addr, &measured.baseline).await?;
    let signed_in = sign_in(n, world, &issuer_url).await?;
    let agent = start_agent(n, world, signed_in, &broker_url, &measured).await?;
    let (local, page) = open_tunnel(n, world, &agent).await?;
    show_page(n, &local, &page, &agent).await;
    tighten_policy(n, world, &agent, &local, &measured).await?;
    let (again, page) = restore_policy(n, world, &agent, &measured.baseline).await?;
    show_page_again(n, &again, &page, &agent).await;
    Ok(again)
}

impl World {
    /// Starts `runtime` on its own task, keeping what stops it; returns
    /// the demo's line to it.
    pub(crate) fn spawn_agent(&mut self, runtime: Runtime) -> AgentLink {
        let (control, rx) = mpsc::channel(8);
        let (stop, stopped) = oneshot::channel::<()>();
        self.agent = Some(tokio::spawn(runtime.run(rx, async {
            let _ = stopped.await;
        })));
        self.control = Some(control.clone());
        self.stop = Some(stop);
        AgentLink::new(control)
    }

    /// The gateway's WireGuard peers right now (0 without a broker).
    pub(crate) fn gateway_peers(&self) -> usize {
        self.broker
            .as_ref()
            .map_or(0, EmbeddedBroker::gateway_peers)
    }

    /// Changes the broker's policy as its administrator would.
    pub(crate) async fn set_policy(&self, rego: &str) -> Result<(), DemoError> {
        match &self.broker {
            Some(broker) => broker.set_policy(rego).await,
            None => Err(DemoError::Broken("the broker is not running".to_owned())),
        }
    }
}

/// Stops everything in reverse order and deletes what the demo stored.
async fn teardown(mut world: World, n: &mut Narrator<'_>, narrate: bool) -> Result<(), String> {
    if narrate {
        n.step("Shutting down: the agent (closing its tunnel), the broker and gateway, the issuer and the application.");
    }
    // The socket first: no front end should find a half-stopped agent.
    if let Some(served) = world.served.take() {
        served.stop().await;
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

pub(crate) fn start_error(what: &'static str, e: impl std::fmt::Display) -> DemoError {
    DemoError::Start {
        what,
        detail: e.to_string(),
    }
}

/// 32 random bytes, hex: the admin token and the per-run id.
pub(crate) fn random_token() -> String {
    let mut bytes = [0u8; 32];
    // Only fails without any OS entropy source; the token then is still
    // unique per process because the broker never leaves loopback.
    let _ = SystemRandom::new().fill(&mut bytes);
    broker::server::config::to_hex(&bytes)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

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
