//! End to end, the helpdesk question "why was I blocked at 10:42?": the
//! real OpenID provider, the broker and its gateway, the agent's runtime
//! with its timeline on disk, and the real `sallyport` CLI.
//!
//! Posture breaks (the broker's policy now requires a disk encryption this
//! machine does not have), which closes the tunnel; then it is restored and
//! the tunnel comes back. The same story, in order and with its reasons,
//! must then be found in three places: `sallyport history --json` (from
//! the running agent, and from the disk after the agent stopped), the
//! exported diagnostics bundle (with no token or private key in it), and
//! the broker's admin view of the device by the support code the app
//! shows.

// Test scaffolding: a setup failure must abort loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use agent::identity::store::{MemoryStore, SecretStore};
use agent::identity::{Identity, IdentityConfig};
use agent::runtime::RuntimeOptions;
use agent::supervisor::Timing;
use agent::timeline::{Entry, Kind};
use posture::CheckId;
use support::agent::{AgentHandle, login};
use support::broker::{BrokerConfig, LENIENT, STRICT};
use support::echo::tcp_echo;
use support::{free_port, idp};

const APP: &str = "echo";

/// Whether `entries` tell the story, in order: the tunnel up; then the
/// failing verdict naming the disk and the tunnel closed with a reason (in
/// either order: a policy reload revokes the grant before the device
/// attests again); then a compliant verdict; then the tunnel up again.
fn story_positions(entries: &[Entry]) -> Result<Vec<usize>, String> {
    let find = |from: usize, what: &str, matches: &dyn Fn(&Entry) -> bool| {
        entries[from..]
            .iter()
            .position(matches)
            .map(|i| i + from)
            .ok_or_else(|| format!("{what}: not found after entry {from}"))
    };
    let up = |e: &Entry| e.kind == Kind::TunnelUp && e.app.as_deref() == Some(APP);
    let first_up = find(0, "the tunnel up at first", &up)?;
    let failing = find(first_up, "a verdict naming the disk encryption", &|e| {
        e.kind == Kind::Verdict
            && e.what.starts_with("not compliant")
            && e.reason
                .as_deref()
                .is_some_and(|r| r.contains("disk_encryption"))
    })?;
    let closed = find(first_up, "the tunnel closed, with a reason", &|e| {
        e.kind == Kind::TunnelDown
            && e.app.as_deref() == Some(APP)
            && e.reason.as_deref().is_some_and(|r| !r.trim().is_empty())
    })?;
    let restored = find(failing.max(closed), "a compliant verdict again", &|e| {
        e.kind == Kind::Verdict && e.what.starts_with("compliant")
    })?;
    let up_again = find(restored, "the tunnel up again", &up)?;
    Ok(vec![first_up, failing, closed, restored, up_again])
}

fn assert_story(entries: &[Entry], source: &str) {
    if let Err(e) = story_positions(entries) {
        let lines: Vec<String> = entries.iter().map(|e| e.line(true)).collect();
        panic!("{source}: {e}\n{}", lines.join("\n"));
    }
}

/// `sallyport ARGS` as this user would run it, its state directory being
/// `state`; stdout, or a panic with stderr.
fn cli(args: &[&str], socket: &Path, state: &Path) -> String {
    let out = std::process::Command::new(support::binary::sallyport())
        .args(args)
        .arg("--socket")
        .arg(socket)
        .env("XDG_STATE_HOME", state)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "sallyport {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn why_was_i_blocked_is_answered_by_history_bundle_and_broker() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SALLYPORT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off")),
        )
        .with_test_writer()
        .try_init();
    let Some(idp) = idp::Idp::start(&idp::Options {
        access_ttl: 600,
        ..idp::Options::default()
    }) else {
        return; // node or its packages are missing on this laptop (a failure in CI)
    };
    let dir = tempfile::tempdir().unwrap();
    // The user's state directory: `$XDG_STATE_HOME/sallyport`.
    let xdg_state = dir.path().join("state");
    let state = xdg_state.join("sallyport");
    let echo = tcp_echo().await;
    let policy = dir.path().join("policy.rego");
    std::fs::write(&policy, LENIENT).unwrap();
    let config = BrokerConfig::new(&idp.issuer, &dir.path().join("broker.sqlite"))
        .policy(&policy)
        .http_port(free_port())
        .udp_port(free_port())
        .verdict_ttl(60)
        .app(APP, "Echo service", echo);
    let broker = config.start().await;
    let http = reqwest::Client::new();
    let set_policy = |rego: &str| {
        std::fs::write(&policy, rego).unwrap();
        let (http, url) = (http.clone(), broker.base_url());
        async move {
            support::broker::admin(
                &http,
                &url,
                broker::api::paths::ADMIN_POLICY_RELOAD,
                &serde_json::json!({}),
            )
            .await
            .unwrap();
        }
    };

    let mut identity_config = IdentityConfig::new(idp.issuer.parse().unwrap(), idp::CLIENT_ID);
    identity_config.resource = Some(idp::BROKER_RESOURCE.to_owned());
    let store: Arc<dyn SecretStore> = Arc::new(MemoryStore::new());
    let identity = Arc::new(Identity::new(identity_config, store.clone()));
    login(&identity).await;
    let options = RuntimeOptions {
        timing: Timing {
            posture_interval: time::Duration::seconds(3),
            reattest_margin: time::Duration::seconds(15),
            refresh_margin: time::Duration::seconds(30),
            grant_renew_margin: time::Duration::seconds(5),
            min_backoff: time::Duration::milliseconds(500),
            max_backoff: time::Duration::seconds(2),
        },
        collect: posture::collect::Options {
            only: vec![CheckId::OsVersion, CheckId::DiskEncryption],
            cache: posture::cache::Cache::disabled(),
            ..posture::collect::Options::default()
        },
        auto_connect: vec![APP.to_owned()],
    };
    let agent =
        AgentHandle::start_with_state(identity.clone(), store, &broker.base_url(), options, &state);

    // The story: up, posture breaks and the tunnel closes, restored, up.
    let local = agent
        .until_traffic_flows(APP, Duration::from_secs(30), "first connect")
        .await;
    set_policy(STRICT).await;
    agent
        .until_closed(APP, &local, Duration::from_secs(15), "posture broken")
        .await;
    // The reload closes the grant at once; the verdict on the disk comes
    // with the next attestation.
    agent
        .until_status(Duration::from_secs(15), "the verdict names the disk", |s| {
            s.verdict.as_ref().is_some_and(|v| {
                !v.compliant && v.violations.iter().any(|x| x.check == "disk_encryption")
            })
        })
        .await;
    set_policy(LENIENT).await;
    agent
        .until_traffic_flows(APP, Duration::from_secs(30), "posture restored")
        .await;

    // 1. `sallyport history --json`, from the running agent.
    let socket = dir.path().join("control/agent.sock");
    agent.serve_control(&socket).await;
    let live: Vec<Entry> =
        serde_json::from_str(&cli(&["history", "--json"], &socket, &xdg_state)).unwrap();
    assert_story(&live, "sallyport history --json (live)");
    let text = cli(&["history", "--since", "1h"], &socket, &xdg_state);
    assert!(text.contains("tunnel-down"), "{text}");
    assert!(text.contains("disk_encryption"), "{text}");
    // `--since` in the future: nothing.
    let none: Vec<Entry> = serde_json::from_str(&cli(
        &["history", "--json", "--since", "2999-01-01T00:00:00Z"],
        &socket,
        &xdg_state,
    ))
    .unwrap();
    assert!(none.is_empty(), "{none:?}");

    // 2. The bundle, written by the agent for the CLI.
    let bundle = dir.path().join("bundle.zip");
    cli(
        &["diagnostics", "--out", bundle.to_str().unwrap()],
        &socket,
        &xdg_state,
    );
    let files = support::zip::texts(&bundle);
    let file = |name: &str| {
        files
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t.clone())
            .unwrap_or_else(|| {
                let names: Vec<&String> = files.iter().map(|(n, _)| n).collect();
                panic!("{name} missing from the bundle: {names:?}")
            })
    };
    let in_bundle: Vec<Entry> = serde_json::from_str(&file("timeline.json")).unwrap();
    assert_story(&in_bundle, "the bundle's timeline.json");
    let connectivity: serde_json::Value = serde_json::from_str(&file("connectivity.json")).unwrap();
    assert_eq!(connectivity["dns"]["outcome"], "ok", "{connectivity:#}");
    assert_eq!(connectivity["tcp"]["outcome"], "ok", "{connectivity:#}");
    assert_eq!(
        connectivity["tls"]["outcome"], "skipped",
        "{connectivity:#}"
    );
    assert_eq!(connectivity["http"]["outcome"], "ok", "{connectivity:#}");
    let skew = connectivity["clock_skew_seconds"].as_i64().unwrap();
    assert!(skew.abs() <= 2, "same machine, same clock: {skew}");
    let settings: serde_json::Value = serde_json::from_str(&file("settings.json")).unwrap();
    assert!(
        settings["settings"]
            .as_array()
            .is_some_and(|rows| rows.iter().all(|r| r.get("locked").is_some())),
        "every setting says whether it is locked: {settings:#}"
    );
    assert!(file("versions.txt").contains("sallyport "));
    let total: usize = files.iter().map(|(_, t)| t.len()).sum();
    assert!(
        total < 8 * 1024 * 1024,
        "the bundle is bounded: {total} bytes"
    );
    let token = identity.access_token().await.unwrap();
    let all: String = files.iter().map(|(_, t)| t.as_str()).collect();
    assert!(
        !all.contains(token.expose()),
        "a token leaked into the bundle"
    );
    assert!(
        !all.contains("eyJ"),
        "something JWT-shaped leaked into the bundle"
    );
    assert!(
        !all.contains("PRIVATE KEY"),
        "a private key leaked into the bundle"
    );

    // 3. The broker's side, by the support code the app shows.
    let status = agent.status().await;
    let code = status
        .support_code
        .clone()
        .expect("a support code once enrolled");
    let r = http
        .get(format!(
            "{}{}",
            broker.base_url(),
            broker::api::paths::admin_support(&code)
        ))
        .bearer_auth(support::broker::ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let found: Vec<broker::api::DeviceSupport> = r.json().await.unwrap();
    assert_eq!(found.len(), 1);
    let view = &found[0];
    // Its verdicts tell the same story: compliant, then failing on the
    // disk, then compliant again.
    let failing = view
        .verdicts
        .iter()
        .position(|v| !v.compliant && v.violations.iter().any(|x| x.check == "disk_encryption"))
        .unwrap_or_else(|| panic!("no failing verdict: {:#?}", view.verdicts));
    assert!(view.verdicts[..failing].iter().any(|v| v.compliant));
    assert!(view.verdicts[failing..].iter().any(|v| v.compliant));
    // The grant the failure closed, with why.
    assert!(
        view.grants
            .iter()
            .any(|g| g.app == APP && g.closed_at.is_some() && g.close_reason.is_some()),
        "{:#?}",
        view.grants
    );
    assert!(
        view.grants
            .iter()
            .any(|g| g.app == APP && g.closed_at.is_none())
    );
    assert!(
        view.audit
            .iter()
            .any(|a| a.action == "attest" && a.outcome == "deny")
    );

    // 4. After the agent stops (a laptop the next morning): the CLI reads
    // the timeline it left on disk.
    agent.stop().await;
    let stored: Vec<Entry> =
        serde_json::from_str(&cli(&["history", "--json"], &socket, &xdg_state)).unwrap();
    assert_story(&stored, "sallyport history --json (from disk)");
    assert!(state.join(agent::timeline::FILE).exists());
}
