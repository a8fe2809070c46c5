use super::*;

fn input(edit: impl FnOnce(&mut serde_json::Value)) -> serde_json::Value {
    let mut v = sample_input();
    edit(&mut v);
    v
}

fn utc() -> jiff::tz::TimeZone {
    jiff::tz::TimeZone::UTC
}

#[test]
fn the_default_policy_allows_what_the_verdict_allows() {
    let p = AccessPolicy::default_policy().unwrap();
    let out = p.evaluate(&sample_input()).unwrap();
    assert!(out.allow && out.step_up.is_none() && out.reasons.is_empty());
    assert_eq!(out.window, None);
    assert_eq!(out.max_lifetime_seconds, None);
}

#[test]
fn the_default_policy_steps_up_a_new_network_on_a_sensitive_app() {
    let p = AccessPolicy::default_policy().unwrap();
    let new_network = |mfa_age: i64, sensitivity: &str| {
        input(|v| {
            v["app"]["labels"]["sensitivity"] = sensitivity.into();
            v["context"]["signals"]["new_network"] = true.into();
            v["sign_in"]["mfa_age_seconds"] = mfa_age.into();
            v["sign_in"]["mfa_acr_values"] = serde_json::json!(["urn:x:mfa"]);
        })
    };
    let out = p.evaluate(&new_network(3600, "high")).unwrap();
    assert!(out.allow, "a step-up, not a denial");
    let step = out.step_up.clone().expect("a step-up");
    assert_eq!(step.max_age, Some(300));
    assert_eq!(step.acr_values, vec!["urn:x:mfa".to_owned()]);
    assert!(out.reasons[0].message.contains("network"), "{out:?}");
    // A fresh second factor satisfies it; so does a known network or a normal app.
    assert!(
        p.evaluate(&new_network(60, "high"))
            .unwrap()
            .step_up
            .is_none()
    );
    assert!(
        p.evaluate(&new_network(3600, "low"))
            .unwrap()
            .step_up
            .is_none()
    );
    let known = input(|v| v["app"]["labels"]["sensitivity"] = "high".into());
    assert!(p.evaluate(&known).unwrap().step_up.is_none());
}

/// The default policy's commented examples, uncommented: they must work as
/// written there.
const EXAMPLES: &str = r#"
package sallyport.access
import rego.v1

default allow := true
fresh_mfa(seconds) if {
	input.sign_in.mfa
	input.sign_in.mfa_age_seconds != null
	input.sign_in.mfa_age_seconds <= seconds
}
allow := false if {
	input.app.id == "payroll"
	not "finance" in input.user.groups
}
reasons contains {"message": "Payroll is for the finance team.",
	"remediation": "Ask IT to add you to the finance group."} if {
	input.app.id == "payroll"
	not "finance" in input.user.groups
}
default step_up := null
step_up := {"acr_values": input.sign_in.mfa_acr_values, "max_age": 3600} if {
	input.app.id == "payroll"
	not fresh_mfa(3600)
}
default window := null
window := {"from": "07:00", "to": "20:00", "time_zone": "Europe/Paris",
	"days": ["mon", "tue", "wed", "thu", "fri"]} if input.app.id == "git"
allow := false if {
	input.app.id == "admin-console"
	count(input.context.networks) == 0
}
reasons contains {"message": "The admin console opens only from the office or the VPN.",
	"remediation": "Connect from the office network or the corporate VPN."} if {
	input.app.id == "admin-console"
	count(input.context.networks) == 0
}
decision := {"allow": allow, "reasons": reasons, "step_up": step_up, "window": window}
"#;

#[test]
fn the_documented_examples_decide_as_documented() {
    let p = AccessPolicy::from_source("examples.rego", EXAMPLES).unwrap();
    let app = |id: &str, groups: &[&str], mfa_age: i64| {
        input(|v| {
            v["app"]["id"] = id.into();
            v["user"]["groups"] = serde_json::json!(groups);
            v["sign_in"]["mfa_age_seconds"] = mfa_age.into();
        })
    };
    let out = p.evaluate(&app("payroll", &["engineering"], 10)).unwrap();
    assert!(!out.allow);
    assert!(out.reasons[0].remediation.contains("finance group"));
    let out = p.evaluate(&app("payroll", &["finance"], 7200)).unwrap();
    assert!(out.allow);
    assert_eq!(out.step_up.unwrap().max_age, Some(3600));
    let out = p.evaluate(&app("payroll", &["finance"], 60)).unwrap();
    assert!(out.allow && out.step_up.is_none());
    let out = p.evaluate(&app("git", &[], 60)).unwrap();
    assert_eq!(
        out.window.unwrap().time_zone.as_deref(),
        Some("Europe/Paris")
    );
    let out = p.evaluate(&app("admin-console", &[], 60)).unwrap();
    assert!(!out.allow);
    let office = input(|v| {
        v["app"]["id"] = "admin-console".into();
        v["context"]["networks"] = serde_json::json!(["office"]);
    });
    assert!(p.evaluate(&office).unwrap().allow);
}

#[test]
fn malformed_policies_are_refused_at_load() {
    for (what, source) in [
        ("no decision", "package sallyport.access\nallow := true\n"),
        (
            "not an object",
            "package sallyport.access\ndecision := \"yes\"\n",
        ),
        (
            "no allow",
            "package sallyport.access\ndecision := {\"reasons\": []}\n",
        ),
        ("syntax", "package sallyport.access\ndecision := {\n"),
        (
            "bad lifetime",
            "package sallyport.access\ndecision := {\"allow\": true, \"max_lifetime_seconds\": 0}\n",
        ),
    ] {
        assert!(
            AccessPolicy::from_source("bad.rego", source).is_err(),
            "{what} should be refused"
        );
    }
}

fn out(allow: bool) -> AccessOutput {
    AccessOutput {
        allow,
        reasons: vec![],
        step_up: None,
        max_lifetime_seconds: None,
        window: None,
    }
}

fn at(text: &str) -> i64 {
    text.parse::<jiff::Timestamp>().unwrap().as_second()
}

#[test]
fn judge_orders_denial_window_step_up() {
    let now = at("2026-12-03T21:00:00Z");
    let mut o = out(false);
    o.step_up = Some(StepUp {
        acr_values: vec![],
        max_age: Some(60),
    });
    o.window = Some(WindowSpec {
        from: "07:00".into(),
        to: "20:00".into(),
        days: None,
        time_zone: None,
    });
    let j = judge(&o, "Git", &utc(), now + 3600, now);
    assert_eq!(j.refusal, Some(ProblemType::AccessDenied));
    assert!(j.decision.step_up.is_none(), "a denial asks for nothing");
    assert!(j.decision.reasons[0].message.contains("does not allow Git"));

    o.allow = true;
    let j = judge(&o, "Git", &utc(), now + 3600, now);
    assert_eq!(j.refusal, Some(ProblemType::AccessDenied));
    assert_eq!(
        j.decision.reasons[0].message,
        "Git is available 07:00–20:00 (UTC); it opens again at 07:00."
    );
    assert_eq!(
        j.decision.opens_at.unwrap().unix_timestamp(),
        at("2026-12-04T07:00:00Z")
    );

    let morning = at("2026-12-04T09:00:00Z");
    let j = judge(&o, "Git", &utc(), morning + 3600, morning);
    assert_eq!(j.refusal, Some(ProblemType::AccessStepUpRequired));
    assert_eq!(j.decision.step_up.as_ref().unwrap().max_age, Some(60));
    assert!(!j.decision.reasons.is_empty());
}

#[test]
fn a_grant_never_outlives_its_window() {
    let mut o = out(true);
    o.window = Some(WindowSpec {
        from: "07:00".into(),
        to: "20:00".into(),
        days: None,
        time_zone: None,
    });
    // 19:30 with a verdict good until 21:00: the window's close wins.
    let now = at("2026-12-03T19:30:00Z");
    let j = judge(&o, "Git", &utc(), at("2026-12-03T21:00:00Z"), now);
    assert_eq!(j.refusal, None);
    assert_eq!(j.expires_at, Some(at("2026-12-03T20:00:00Z")));
    let ends = j.ends.unwrap();
    assert_eq!(
        ends.reason,
        "Git is available 07:00–20:00 (UTC); it opens again at 07:00."
    );
    assert_eq!(
        ends.reopens_at.unwrap().unix_timestamp(),
        at("2026-12-04T07:00:00Z")
    );
    assert_eq!(
        j.decision.closes_at.unwrap().unix_timestamp(),
        at("2026-12-03T20:00:00Z")
    );
    // At 10:00 the verdict ends first: no window end is announced.
    let now = at("2026-12-03T10:00:00Z");
    let j = judge(&o, "Git", &utc(), now + 900, now);
    assert_eq!(j.expires_at, Some(now + 900));
    assert_eq!(j.ends, None);
    // The policy's own lifetime bounds it too.
    o.max_lifetime_seconds = Some(60);
    let j = judge(&o, "Git", &utc(), now + 900, now);
    assert_eq!(j.expires_at, Some(now + 60));
}

#[test]
fn a_broken_window_fails_closed() {
    let mut o = out(true);
    o.window = Some(WindowSpec {
        from: "late".into(),
        to: "20:00".into(),
        days: None,
        time_zone: None,
    });
    let j = judge(&o, "Git", &utc(), 2000, 1000);
    assert_eq!(j.refusal, Some(ProblemType::PolicyError));
    assert_eq!(j.expires_at, None);
}
