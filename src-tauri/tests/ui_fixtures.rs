//! The UI tests' mock agent answers with the fixtures in ui/tests/fixtures.
//! Deserialising them into the agent's own types here keeps the UI's
//! TypeScript types (ui/src/types.ts), its test data and the agent's
//! control views from drifting apart.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test: failures abort with the reason

use agent::control::view::{
    AccessSource, AccessView, AppView, DeviceCodeView, IdentityView, StatusView, TunnelState,
};

fn fixture<T: serde::de::DeserializeOwned>(name: &str) -> T {
    let path = format!("{}/../ui/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{path} does not match the agent's type: {e}"))
}

#[test]
fn status_apps_and_device_code_fixtures_are_the_agents_shapes() {
    let status: StatusView = fixture("status.json");
    assert!(matches!(status.identity, IdentityView::Valid { .. }));
    assert!(status.tunnels.iter().all(|t| t.state == TunnelState::Up));
    let apps: Vec<AppView> = fixture("apps.json");
    assert_eq!(apps.len(), 2);
    // Every app the mock can connect has a tunnel template.
    for app in &apps {
        assert!(status.tunnels.iter().any(|t| t.app == app.id), "{}", app.id);
    }
    let code: DeviceCodeView = fixture("device-code.json");
    assert_eq!(code.user_code, "WDJB-MJHT");
}

#[test]
fn the_access_fixtures_are_the_agents_access_views() {
    let access: std::collections::BTreeMap<String, AccessView> = fixture("access.json");
    let closed = &access["window-closed"];
    assert!(!closed.can_open && closed.opens_at.is_some());
    assert!(access["step-up"].step_up.is_some());
    assert_eq!(access["signed-out-agent"].source, AccessSource::Agent);
    assert!(access["window-open"].can_open && access["window-open"].closes_at.is_some());
}

#[test]
fn the_posture_fixture_is_a_real_report_with_its_evaluation() {
    #[derive(serde::Deserialize)]
    struct CliPosture {
        report: posture::Report,
        evaluation: posture::policy::Evaluation,
    }
    let captured: CliPosture = fixture("posture-cli.json");
    assert_eq!(captured.report.checks.len(), 13);
    assert!(!captured.evaluation.compliant);
    assert!(
        captured
            .evaluation
            .violations
            .iter()
            .all(|v| !v.remediation.is_empty())
    );
}

#[test]
fn the_history_fixture_is_the_agents_timeline() {
    let entries: Vec<agent::timeline::Entry> = fixture("history.json");
    assert!(
        entries
            .iter()
            .any(|e| e.kind == agent::timeline::Kind::TunnelDown && e.reason.is_some())
    );
    assert!(
        entries.windows(2).all(|w| w[0].at <= w[1].at),
        "oldest first"
    );
    let status: StatusView = fixture("status.json");
    assert_eq!(status.support_code.as_deref(), Some("BVEN Pka4"));
}
