//! End to end, access per application in context (`sallyport.access`):
//! the real OpenID provider (with groups in its access tokens), the
//! reference broker and gateway, the agent's runtime, the real `sallyport`
//! CLI and TCP targets.
//!
//! - a group-gated application is refused for a user outside the group,
//!   with the policy's reason and remedy shown by `sallyport apps`, while
//!   another application opens;
//! - a time window computed around now: the tunnel stays closed until the
//!   window opens, comes up by itself, closes at the window's end with the
//!   reason, and comes back by itself when a new window opens;
//! - a source network outside the named ones makes the built-in policy ask
//!   for a step-up on a high-sensitivity application (other tunnels stay
//!   up); the step-up sign-in opens it;
//! - the decision records reach the JSON-lines sink with every field the
//!   README documents.

// Test scaffolding: a setup failure must abort loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use agent::control::Request;
use agent::control::view::{AppView, StepUpView, TunnelState};
use agent::identity::session::StepUpChallenge;
use agent::identity::store::{MemoryStore, SecretStore};
use agent::identity::{Identity, IdentityConfig};
use agent::runtime::RuntimeOptions;
use agent::supervisor::Timing;
use broker::server::BrokerHandle;
use posture::CheckId;
use support::agent::{AgentHandle, login};
use support::broker::{BrokerConfig, LENIENT};
use support::echo::tcp_echo;
use support::{free_port, idp};

/// An access policy with a group gate for `payroll` and, when given, a
/// window for `git` (`from`, `to`, zone).
fn policy(window: Option<(&str, &str, &str)>) -> String {
    let window = window.map_or(String::new(), |(from, to, zone)| {
        format!(
            r#"window := {{"from": "{from}", "to": "{to}", "time_zone": "{zone}"}} if input.app.id == "git""#
        )
    });
    format!(
        r#"
package sallyport.access
import rego.v1

default allow := true
allow := false if {{
	input.app.id == "payroll"
	not "finance" in input.user.groups
}}
reasons contains {{"message": "Payroll is for the finance team.",
	"remediation": "Ask IT to add you to the finance group."}} if {{
	input.app.id == "payroll"
	not "finance" in input.user.groups
}}
default window := null
{window}
decision := {{"allow": allow, "reasons": reasons, "window": window}}
"#
    )
}

struct World {
    _idp: idp::Idp,
    dir: tempfile::TempDir,
    broker: BrokerHandle,
    identity: Arc<Identity>,
    agent: AgentHandle,
}

impl World {
    fn access_policy(&self) -> PathBuf {
        self.dir.path().join("access.rego")
    }

    fn jsonl(&self) -> PathBuf {
        self.dir.path().join("decisions.jsonl")
    }

    async fn apps(&self) -> Vec<AppView> {
        serde_json::from_value(self.agent.ask(Request::Apps).await).unwrap()
    }

    async fn reload(&self, rego: &str) {
        std::fs::write(self.access_policy(), rego).unwrap();
        support::broker::admin(
            &reqwest::Client::new(),
            &self.broker.base_url(),
            broker::api::paths::ADMIN_POLICY_RELOAD,
            &serde_json::json!({}),
        )
        .await
        .unwrap();
    }
}

/// An application of the test catalogue: id, name, labels.
type TestApp<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);

struct Setup<'a> {
    idp: idp::Options,
    /// The access policy; `None`: the built-in one.
    access: Option<String>,
    /// `(id, name, labels)`; each gets its own echo target.
    apps: &'a [TestApp<'a>],
    connect: &'a [&'a str],
    /// The agent accepts a password-only sign-in (the broker decides).
    password_only: bool,
    broker: fn(BrokerConfig) -> BrokerConfig,
}

async fn start(setup: Setup<'_>) -> Option<World> {
    let idp = idp::Idp::start(&setup.idp)?;
    let dir = tempfile::tempdir().unwrap();
    let mut config = BrokerConfig::new(&idp.issuer, &dir.path().join("broker.sqlite"))
        .policy(&write(dir.path(), "policy.rego", LENIENT))
        .http_port(free_port())
        .udp_port(free_port())
        .verdict_ttl(120);
    for (id, name, labels) in setup.apps {
        config = config.app(id, name, tcp_echo().await);
        for (k, v) in labels.iter() {
            config = config.label(k, v);
        }
    }
    let jsonl = dir.path().join("decisions.jsonl");
    let access = setup
        .access
        .as_deref()
        .map(|rego| write(dir.path(), "access.rego", rego));
    config = (setup.broker)(config.with(|c| {
        c.audit.jsonl = Some(jsonl);
        c.access.policy = access;
    }));
    let broker = config.start().await;

    let mut identity_config = IdentityConfig::new(idp.issuer.parse().unwrap(), idp::CLIENT_ID);
    identity_config.resource = Some(idp::BROKER_RESOURCE.to_owned());
    if setup.password_only {
        identity_config.mfa.amr.push("pwd".to_owned());
    }
    let store: Arc<dyn SecretStore> = Arc::new(MemoryStore::new());
    let identity = Arc::new(Identity::new(identity_config, store.clone()));
    login(&identity).await;
    let options = RuntimeOptions {
        timing: Timing {
            posture_interval: time::Duration::seconds(5),
            min_backoff: time::Duration::milliseconds(500),
            max_backoff: time::Duration::seconds(2),
            ..Timing::default()
        },
        collect: posture::collect::Options {
            only: vec![CheckId::OsVersion],
            cache: posture::cache::Cache::disabled(),
            ..posture::collect::Options::default()
        },
        auto_connect: setup.connect.iter().map(|s| (*s).to_owned()).collect(),
    };
    let agent = AgentHandle::start(identity.clone(), store, &broker.base_url(), options);
    Some(World {
        _idp: idp,
        dir,
        broker,
        identity,
        agent,
    })
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn same(c: BrokerConfig) -> BrokerConfig {
    c
}

const GROUPS: &[&str] = &["--groups", "engineering,vpn-users"];

fn idp_with_groups() -> idp::Options {
    idp::Options {
        access_ttl: 600,
        extra_args: GROUPS.iter().map(|s| (*s).to_owned()).collect(),
        ..idp::Options::default()
    }
}

/// `echo` and the finance team's `payroll`, both wanted, for a user in
/// `engineering`; returns once `echo` carries traffic.
async fn group_gated_world() -> Option<World> {
    let world = start(Setup {
        idp: idp_with_groups(),
        access: Some(policy(None)),
        apps: &[("echo", "Echo service", &[]), ("payroll", "Payroll", &[])],
        connect: &["echo", "payroll"],
        password_only: false,
        broker: same,
    })
    .await?;
    world
        .agent
        .until_traffic_flows("echo", Duration::from_secs(30), "the ungated app")
        .await;
    Some(world)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_gated_app_is_refused_with_its_reason_in_sallyport_apps() {
    let Some(world) = group_gated_world().await else {
        return; // node or its packages are missing on this laptop (a failure in CI)
    };
    // The refusal reaches the tunnel's state with the policy's words.
    let status = world
        .agent
        .until_status(Duration::from_secs(30), "payroll refused", |s| {
            s.tunnels.iter().any(|t| {
                t.app == "payroll"
                    && t.state == TunnelState::Down
                    && t.reason
                        .as_deref()
                        .is_some_and(|r| r.contains("Payroll is for the finance team"))
            })
        })
        .await;
    assert!(
        status
            .tunnels
            .iter()
            .any(|t| t.app == "echo" && t.state == TunnelState::Up)
    );

    // `sallyport apps`, the real CLI over the agent's control socket.
    let socket = world.dir.path().join("control/agent.sock");
    world.agent.serve_control(&socket).await;
    let cli = support::binary::sallyport();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(&cli)
            .args(args)
            .arg("--socket")
            .arg(&socket)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "sallyport {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let text = run(&["apps"]);
    assert!(text.contains("payroll"), "{text}");
    assert!(
        text.contains("Payroll is for the finance team."),
        "the reason: {text}"
    );
    assert!(
        text.contains("Ask IT to add you to the finance group."),
        "what to do: {text}"
    );
    let echo_line = text
        .lines()
        .skip_while(|l| !l.contains("echo"))
        .nth(1)
        .unwrap_or_default();
    assert!(echo_line.contains("can open now"), "{text}");
    let apps: Vec<AppView> = serde_json::from_str(&run(&["apps", "--json"])).unwrap();
    let payroll = apps.iter().find(|a| a.id == "payroll").unwrap();
    assert!(!payroll.access.can_open, "{payroll:?}");
    assert_eq!(
        payroll.access.reasons[0].remediation,
        "Ask IT to add you to the finance group."
    );
    world.agent.stop().await;
}

/// A fixed-offset zone in which `now` is around noon, so a window of
/// seconds around now never crosses local midnight whenever the test runs.
fn noon_zone(now: i64) -> (String, i64) {
    let utc_hour = now.rem_euclid(86_400) / 3600;
    let offset = 12 - utc_hour; // -11 ..= 12
    // POSIX-style names: Etc/GMT-5 is five hours *ahead* of UTC.
    let name = match offset {
        0 => "Etc/GMT".to_owned(),
        o if o > 0 => format!("Etc/GMT-{o}"),
        o => format!("Etc/GMT+{}", -o),
    };
    (name, offset * 3600)
}

fn local_hms(at: i64, offset: i64) -> String {
    let s = (at + offset).rem_euclid(86_400);
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_time_window_closes_the_tunnel_at_its_end_and_reopens_it() {
    let now = unix_now();
    let (zone, offset) = noon_zone(now);
    // Opens in 12 s, for 15 s.
    let (opens, closes) = (now + 12, now + 27);
    let window = policy(Some((
        &local_hms(opens, offset),
        &local_hms(closes, offset),
        &zone,
    )));
    let Some(world) = start(Setup {
        idp: idp_with_groups(),
        access: Some(window),
        apps: &[("git", "Git server", &[])],
        connect: &["git"],
        password_only: false,
        broker: same,
    })
    .await
    else {
        return; // node or its packages are missing on this laptop (a failure in CI)
    };

    // Before the window: closed, saying when it opens.
    world
        .agent
        .until_status(Duration::from_secs(10), "closed before the window", |s| {
            s.tunnels.iter().any(|t| {
                t.app == "git"
                    && t.reason
                        .as_deref()
                        .is_some_and(|r| r.contains("opens again at"))
            })
        })
        .await;
    assert!(
        unix_now() < opens,
        "the setup took longer than the window's lead"
    );

    // It comes up by itself when the window opens.
    let local = world
        .agent
        .until_traffic_flows("git", Duration::from_secs(25), "the window opened")
        .await;
    assert!(unix_now() >= opens, "up before the window opened");

    // At the window's end the tunnel closes, with the broker's reason.
    world
        .agent
        .until_closed("git", &local, Duration::from_secs(25), "the window's end")
        .await;
    assert!(unix_now() >= closes - 1, "closed before the window's end");
    let status = world
        .agent
        .until_status(Duration::from_secs(5), "the window's reason", |s| {
            s.tunnels.iter().any(|t| {
                t.app == "git"
                    && t.reason.as_deref().is_some_and(|r| {
                        r.contains("Git server is available") && r.contains("opens again at")
                    })
            })
        })
        .await;
    let git = status.tunnels.iter().find(|t| t.app == "git").unwrap();
    assert_ne!(git.state, TunnelState::Up, "{git:?}");

    // IT widens the hours: a new window opening in a few seconds. The
    // tunnel the user still wants comes back by itself when it opens.
    let now = unix_now();
    let reopens = now + 6;
    world
        .reload(&policy(Some((
            &local_hms(reopens, offset),
            &local_hms(now + 120, offset),
            &zone,
        ))))
        .await;
    world
        .agent
        .until_traffic_flows("git", Duration::from_secs(30), "the new window opened")
        .await;
    assert!(unix_now() >= reopens, "up before the new window opened");
    world.agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_outside_the_named_ones_asks_for_a_step_up_on_a_sensitive_app() {
    let Some(world) = start(Setup {
        idp: idp::Options {
            mfa: false,
            mfa_on_request: true,
            access_ttl: 600,
            ..idp_with_groups()
        },
        // The built-in access policy.
        access: None,
        apps: &[
            ("echo", "Echo service", &[]),
            ("vault", "Secrets vault", &[("sensitivity", "high")]),
        ],
        connect: &["echo", "vault"],
        password_only: true,
        broker: |c| {
            c.with(|c| {
                // Password sign-ins are accepted broker-wide; what shows
                // MFA is the provider's MFA acr.
                c.oidc.require_mfa = false;
                c.oidc.required_acr = vec![idp::ACR_MFA.to_owned()];
                c.access
                    .networks
                    .insert("office".into(), vec!["10.0.0.0/8".into()]);
            })
        },
    })
    .await
    else {
        return; // node or its packages are missing on this laptop (a failure in CI)
    };
    let echo = world
        .agent
        .until_traffic_flows("echo", Duration::from_secs(30), "the ordinary app")
        .await;

    // Loopback is not the office: the vault asks for a second factor; the
    // session stays good and the echo tunnel stays up.
    let mut step_up = None;
    for _ in 0..60 {
        let apps = world.apps().await;
        let vault = apps.iter().find(|a| a.id == "vault").unwrap();
        if let Some(s) = &vault.access.step_up {
            assert!(!vault.access.can_open);
            assert!(
                vault.access.reasons[0].message.contains("network"),
                "{vault:?}"
            );
            step_up = Some(s.clone());
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let StepUpView {
        acr_values,
        max_age,
    } = step_up.expect("the vault asks for a step-up");
    assert_eq!(acr_values, vec![idp::ACR_MFA.to_owned()]);
    assert_eq!(max_age, Some(300));
    let status = world.agent.status().await;
    let vault = status.tunnels.iter().find(|t| t.app == "vault").unwrap();
    assert_ne!(vault.state, TunnelState::Up);
    support::echo::echo_through(&echo)
        .await
        .unwrap_or_else(|e| panic!("the other tunnel must stay up: {e}"));

    // The step-up sign-in (what `sallyport login` and the tray do), in a
    // later second so its auth_time is new; the vault opens by itself.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let open = |url: &url::Url| {
        let url = url.to_string();
        tokio::spawn(async move {
            idp::complete_browser_login(&url).await;
        });
        Ok(())
    };
    world
        .identity
        .step_up(
            &StepUpChallenge {
                acr_values,
                max_age,
            },
            &open,
        )
        .await
        .unwrap();
    world
        .agent
        .until_traffic_flows("vault", Duration::from_secs(30), "after the step-up")
        .await;
    world.agent.stop().await;
}

/// The field names of the README's decision-record table.
fn documented_fields() -> Vec<String> {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .unwrap();
    let section = readme
        .split("### Decision records for a SIEM")
        .nth(1)
        .expect("the README documents the decision records");
    section
        .lines()
        .skip_while(|l| !l.starts_with("| field"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .filter_map(|l| {
            l.split('|')
                .nth(1)
                .map(|c| c.trim().trim_matches('`').to_owned())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decision_records_reach_the_jsonl_sink_with_every_documented_field() {
    let fields = documented_fields();
    assert!(fields.len() >= 10, "{fields:?}");
    let Some(world) = group_gated_world().await else {
        return; // node or its packages are missing on this laptop (a failure in CI)
    };
    let mut records: Vec<serde_json::Value> = Vec::new();
    for _ in 0..100 {
        records = std::fs::read_to_string(world.jsonl())
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let denied = records
            .iter()
            .any(|r| r["action"] == "grant" && r["outcome"] == "deny");
        if denied {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let denied = records
        .iter()
        .find(|r| r["action"] == "grant" && r["outcome"] == "deny")
        .unwrap_or_else(|| panic!("no grant denial in the sink: {records:#?}"));
    for field in &fields {
        assert!(
            denied.get(field).is_some(),
            "{field} (documented in the README) is missing from {denied}"
        );
    }
    assert_eq!(denied["app"], "payroll");
    assert_eq!(denied["problem"], "access-denied");
    assert_eq!(denied["source_ip"], "127.0.0.1");
    assert_eq!(denied["reasons"][0], "Payroll is for the finance team.");
    let allowed = records
        .iter()
        .find(|r| r["action"] == "grant" && r["outcome"] == "allow")
        .unwrap();
    assert_eq!(allowed["app"], "echo");
    assert_eq!(
        allowed["input_digest"].as_str().map(str::len),
        Some(64),
        "{allowed}"
    );
    // Every row has a seq, increasing: the SIEM's cursor.
    let seqs: Vec<i64> = records.iter().map(|r| r["seq"].as_i64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    world.agent.stop().await;
}
