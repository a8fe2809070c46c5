//! `sallyport.access` over real HTTP: a group-gated app refused with its
//! reason (also in `GET /v1/apps`), a time window that refuses before it
//! opens and ends the grant at its close (the broker's clock is moved, not
//! waited for), a step-up for a new network on a sensitive app, trusted
//! proxies, the denial-burst signal, a reloaded access policy closing what
//! it now refuses, and every decision in the JSON-lines sink and behind the
//! admin API's cursor.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use broker::api::{self, Event, ProblemType};
use broker::server::{Clock as _, ManualClock};
use common::*;
use serde_json::json;

/// A policy with the documented examples: payroll for the finance group,
/// git in a window the test writes, and a denial burst shutting everything.
fn policy(window: Option<(&str, &str, &str)>) -> String {
    let window = match window {
        Some((from, to, zone)) => format!(
            r#"window := {{"from": "{from}", "to": "{to}", "time_zone": "{zone}"}} if input.app.id == "git""#
        ),
        None => String::new(),
    };
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
allow := false if input.context.signals.denial_burst
reasons contains {{"message": "Too many refused requests in a short time.",
	"remediation": "Wait ten minutes, or call the helpdesk."}} if input.context.signals.denial_burst
default window := null
{window}
decision := {{"allow": allow, "reasons": reasons, "window": window}}
"#
    )
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

async fn ready_device(env: &Env, token: &str) -> TestDevice {
    let device = TestDevice::new(env.client(token), "alice");
    assert_eq!(device.enrol().await.status(), 201);
    assert!(device.attest(healthy_report()).await.compliant);
    device
}

async fn grant(device: &TestDevice, app: &str) -> reqwest::Response {
    device
        .request_grant(app, &tunnel::PrivateKey::generate().public_key())
        .await
}

async fn apps(device: &TestDevice) -> api::AppsDocument {
    let r = device
        .api
        .get(&format!("{}?device_id={}", api::paths::APPS, device.id()))
        .await;
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_gated_app_is_refused_with_its_reason_and_decisions_reach_the_sink() {
    let sink_dir = tempfile::tempdir().unwrap();
    let jsonl = sink_dir.path().join("decisions.jsonl");
    let policy_path = write(sink_dir.path(), "access.rego", &policy(None));
    let env = Env::start_with(|c, _| {
        c.app("payroll", "Payroll", "127.0.0.1:9".parse().unwrap())
            .label("sensitivity", "high")
            .with(|c| {
                c.access.policy = Some(policy_path.clone());
                c.audit.jsonl = Some(jsonl.clone());
            })
    })
    .await;
    let token = env.issuer.token_with(
        "alice",
        json!({"groups": ["engineering"], "email": "alice@example.com"}),
    );
    let device = ready_device(&env, &token).await;

    let r = grant(&device, "payroll").await;
    let p = expect_problem(r, ProblemType::AccessDenied).await;
    let access = p.access.expect("the decision rides along");
    assert!(!access.allow);
    assert_eq!(
        access.reasons[0].message,
        "Payroll is for the finance team."
    );
    assert_eq!(
        access.reasons[0].remediation,
        "Ask IT to add you to the finance group."
    );
    assert_eq!(p.detail, "Payroll is for the finance team.");
    assert_eq!(grant(&device, "echo").await.status(), 201);

    // The preview says the same, per app, without opening anything.
    let doc = apps(&device).await;
    let by_id = |id: &str| doc.apps.iter().find(|a| a.app.id == id).unwrap().clone();
    assert!(by_id("echo").access.allow);
    let payroll = by_id("payroll");
    assert!(!payroll.access.allow);
    assert_eq!(payroll.app.labels["sensitivity"], "high");
    assert!(
        payroll.access.reasons[0]
            .remediation
            .contains("finance group")
    );

    // In the finance group it opens.
    let finance = env
        .issuer
        .token_with("alice", json!({"groups": ["finance"]}));
    let member = TestDevice {
        api: env.client(&finance).with_key(&device.key),
        key: device.key.clone(),
        user: "alice".into(),
    };
    assert_eq!(grant(&member, "payroll").await.status(), 201);

    // Every decision is in the audit log with what decided it, and in the
    // JSON-lines sink with every documented field.
    let log = env.audit().await;
    let decisions: Vec<_> = log.iter().filter(|e| e.action == "grant").collect();
    assert_eq!(decisions.len(), 3, "{log:#?}");
    let denied = decisions[0];
    assert_eq!(denied.outcome, "deny");
    assert_eq!(denied.problem.as_deref(), Some("access-denied"));
    assert_eq!(denied.app.as_deref(), Some("payroll"));
    assert_eq!(denied.source_ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(
        denied.reasons,
        vec!["Payroll is for the finance team.".to_owned()]
    );
    for d in &decisions {
        assert_eq!(d.input_digest.as_ref().map(String::len), Some(64), "{d:?}");
        assert_eq!(d.policy_digest.as_ref().map(String::len), Some(64));
        assert_eq!(d.access_policy_digest.as_ref().map(String::len), Some(64));
    }
    assert_ne!(
        decisions[0].input_digest, decisions[2].input_digest,
        "another group is another input"
    );
    let mut lines = Vec::new();
    for _ in 0..100 {
        lines = std::fs::read_to_string(&jsonl)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .collect();
        if lines.len() >= log.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sunk: Vec<_> = lines.iter().filter(|l| l["action"] == "grant").collect();
    assert_eq!(sunk.len(), 3, "{lines:#?}");
    for field in [
        "seq",
        "at",
        "action",
        "outcome",
        "user",
        "device_id",
        "problem",
        "reason",
        "app",
        "source_ip",
        "reasons",
        "input_digest",
        "policy_digest",
        "access_policy_digest",
    ] {
        assert!(
            sunk[0].get(field).is_some(),
            "{field} missing in {}",
            sunk[0]
        );
    }
    assert_eq!(sunk[0]["seq"], denied.seq);

    // The admin API resumes from a cursor.
    let r = env
        .admin()
        .get(&format!("{}?after={}", api::paths::ADMIN_AUDIT, denied.seq))
        .await;
    let after: Vec<api::AuditEntry> = r.json().await.unwrap();
    assert!(after.iter().all(|e| e.seq > denied.seq));
    assert_eq!(after[0].seq, denied.seq + 1);
}

/// A fixed-offset zone in which `now` is around noon, so a window of a few
/// minutes around now never crosses local midnight whenever the test runs.
fn noon_zone(now: i64) -> (String, jiff::tz::TimeZone) {
    let utc_hour = (now.rem_euclid(86_400) / 3600) as i32;
    let offset = 12 - utc_hour; // -11 ..= 12
    // POSIX-style names: Etc/GMT-5 is five hours *ahead* of UTC.
    let name = match offset {
        0 => "Etc/GMT".to_owned(),
        o if o > 0 => format!("Etc/GMT-{o}"),
        o => format!("Etc/GMT+{}", -o),
    };
    let tz = jiff::tz::TimeZone::get(&name).unwrap();
    (name, tz)
}

fn hh_mm(at: i64, tz: &jiff::tz::TimeZone) -> String {
    jiff::Timestamp::from_second(at)
        .unwrap()
        .to_zoned(tz.clone())
        .strftime("%H:%M")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_refuses_before_it_opens_and_ends_the_grant_at_its_close() {
    let clock = Arc::new(ManualClock::starting_now());
    let now = clock.now();
    let (zone, tz) = noon_zone(now);
    // Opens at the start of the minute after next, closes two minutes later.
    let opens = (now / 60 + 2) * 60;
    let closes = opens + 120;
    let dir = tempfile::tempdir().unwrap();
    let policy_path = write(
        dir.path(),
        "access.rego",
        &policy(Some((&hh_mm(opens, &tz), &hh_mm(closes, &tz), &zone))),
    );
    let env = Env::start_with_clock(
        |c, _| {
            c.app("git", "Git server", "127.0.0.1:9".parse().unwrap())
                .verdict_ttl(3600)
                .with(|c| c.access.policy = Some(policy_path.clone()))
        },
        Some(clock.clone()),
    )
    .await;
    let token = env.issuer.token_with("alice", json!({"exp": now + 7200}));
    let device = ready_device(&env, &token).await;
    let mut events = EventStream::open(&device.api, &device.id()).await;

    // Before the window: refused, with when it opens.
    let p = expect_problem(grant(&device, "git").await, ProblemType::AccessDenied).await;
    let access = p.access.unwrap();
    assert_eq!(access.opens_at.unwrap().unix_timestamp(), opens);
    let expected = format!(
        "Git server is available {}–{} ({zone}); it opens again at {}.",
        hh_mm(opens, &tz),
        hh_mm(closes, &tz),
        hh_mm(opens, &tz)
    );
    assert_eq!(access.reasons[0].message, expected);

    // Inside it: a grant that ends at the close, saying why and when it
    // opens again (tomorrow).
    clock.set(opens + 10);
    let r = grant(&device, "git").await;
    assert_eq!(r.status(), 201);
    let g: api::Grant = r.json().await.unwrap();
    assert_eq!(g.expires_at.unix_timestamp(), closes);
    let ends = g.ends.clone().expect("the window ends it");
    assert_eq!(ends.reopens_at.unwrap().unix_timestamp(), opens + 86_400);
    assert!(
        ends.reason.starts_with("Git server is available"),
        "{ends:?}"
    );
    let doc = apps(&device).await;
    let git = doc.apps.iter().find(|a| a.app.id == "git").unwrap();
    assert_eq!(git.access.closes_at.unwrap().unix_timestamp(), closes);

    // At the close the broker ends it (its 1 s sweep, on the moved clock)
    // and tells the device why.
    clock.set(closes);
    let event = events.next().await;
    let Event::GrantRevoked {
        grant_id, reason, ..
    } = event
    else {
        panic!("{event:?}")
    };
    assert_eq!(grant_id, g.id);
    assert_eq!(reason, ends.reason);
    let peers: Vec<api::GatewayPeer> = env
        .admin()
        .get(api::paths::ADMIN_GATEWAY_PEERS)
        .await
        .json()
        .await
        .unwrap();
    assert!(peers.is_empty(), "{peers:?}");
    let p = expect_problem(grant(&device, "git").await, ProblemType::AccessDenied).await;
    assert_eq!(
        p.access.unwrap().opens_at.unwrap().unix_timestamp(),
        opens + 86_400
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_network_on_a_sensitive_app_asks_for_a_step_up_once() {
    let env = Env::start_with(|c, _| {
        c.app("vault", "Secrets vault", "127.0.0.1:9".parse().unwrap())
            .label("sensitivity", "high")
            .with(|c| {
                c.oidc.required_acr = vec![ACR_MFA.to_owned()];
                c.access
                    .networks
                    .insert("office".into(), vec!["10.0.0.0/8".into()]);
            })
    })
    .await;
    let an_hour_ago = unix_now() - 3600;
    let old = env
        .issuer
        .token_with("alice", json!({"auth_time": an_hour_ago}));
    let device = ready_device(&env, &old).await;

    // Loopback is no named network and new for alice: the sensitive app asks
    // for a second factor within five minutes; the ordinary app opens, and
    // opening it with an hour-old sign-in does not make the network known.
    let p = expect_problem(
        grant(&device, "vault").await,
        ProblemType::AccessStepUpRequired,
    )
    .await;
    let access = p.access.unwrap();
    let step = access.step_up.clone().unwrap();
    assert_eq!(step.max_age, Some(300));
    assert_eq!(step.acr_values, vec![ACR_MFA.to_owned()]);
    assert!(access.reasons[0].message.contains("network"), "{access:?}");
    assert_eq!(grant(&device, "echo").await.status(), 201);
    let preview = apps(&device).await;
    let vault = preview.apps.iter().find(|a| a.app.id == "vault").unwrap();
    assert!(vault.access.step_up.is_some(), "{vault:?}");

    // A fresh sign-in passes it, and the network is known from then on.
    let fresh = env.issuer.token_with("alice", json!({}));
    let stepped = TestDevice {
        api: env.client(&fresh).with_key(&device.key),
        key: device.key.clone(),
        user: "alice".into(),
    };
    assert_eq!(grant(&stepped, "vault").await.status(), 201);
    assert_eq!(grant(&device, "vault").await.status(), 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_proxy_names_the_caller() {
    let env = Env::start_with(|c, _| {
        c.with(|c| {
            c.access.trusted_proxies = vec!["127.0.0.1/32".into()];
            c.access
                .networks
                .insert("office".into(), vec!["10.0.0.0/8".into()]);
        })
    })
    .await;
    let device = ready_device(&env, &env.issuer.token("alice")).await;
    let wg = tunnel::PrivateKey::generate().public_key();
    let body =
        json!({"app": "echo", "device_id": device.id(), "wireguard_public_key": wg.to_string()});
    let proof = device
        .api
        .proof("POST", api::paths::GRANTS, Some(&wg.to_string()))
        .unwrap();
    let r = device
        .api
        .http
        .post(device.api.url(api::paths::GRANTS))
        .header("authorization", format!("DPoP {}", device.api.token))
        .header("dpop", proof)
        .header("x-forwarded-for", "203.0.113.50, 10.1.2.3")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let log = env.audit().await;
    let last = log.iter().rev().find(|e| e.action == "grant").unwrap();
    assert_eq!(last.source_ip.as_deref(), Some("10.1.2.3"), "{last:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_denials_becomes_a_signal_the_policy_acts_on() {
    let dir = tempfile::tempdir().unwrap();
    let policy_path = write(dir.path(), "access.rego", &policy(None));
    let env = Env::start_with(|c, _| {
        c.app("payroll", "Payroll", "127.0.0.1:9".parse().unwrap())
            .with(|c| {
                c.access.policy = Some(policy_path.clone());
                c.access.denials_threshold = 3;
            })
    })
    .await;
    let device = ready_device(&env, &env.issuer.token("alice")).await;
    assert_eq!(grant(&device, "echo").await.status(), 201);
    for _ in 0..3 {
        expect_problem(grant(&device, "payroll").await, ProblemType::AccessDenied).await;
    }
    let p = expect_problem(grant(&device, "echo").await, ProblemType::AccessDenied).await;
    assert_eq!(
        p.access.unwrap().reasons[0].message,
        "Too many refused requests in a short time."
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reloaded_access_policy_closes_the_grants_it_now_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let policy_path = write(dir.path(), "access.rego", &policy(None));
    let env = Env::start_with(|c, _| c.with(|c| c.access.policy = Some(policy_path.clone()))).await;
    let device = ready_device(&env, &env.issuer.token("alice")).await;
    let mut events = EventStream::open(&device.api, &device.id()).await;
    let r = grant(&device, "echo").await;
    assert_eq!(r.status(), 201);
    let g: api::Grant = r.json().await.unwrap();

    let closed = policy(None).replace(
        "default allow := true",
        "default allow := true\nallow := false if input.app.id == \"echo\"\nreasons contains {\"message\": \"Echo is retired.\", \"remediation\": \"\"} if input.app.id == \"echo\"",
    );
    std::fs::write(&policy_path, closed).unwrap();
    let r = env
        .admin()
        .post(api::paths::ADMIN_POLICY_RELOAD, &json!({}))
        .await;
    assert_eq!(r.status(), 200);
    loop {
        match events.next().await {
            Event::GrantRevoked {
                grant_id, reason, ..
            } => {
                assert_eq!(grant_id, g.id);
                assert!(reason.contains("Echo is retired."), "{reason}");
                break;
            }
            Event::PolicyChanged { .. } => continue,
            other => panic!("{other:?}"),
        }
    }
    let p = expect_problem(grant(&device, "echo").await, ProblemType::AccessDenied).await;
    assert_eq!(p.detail, "Echo is retired.");
}
