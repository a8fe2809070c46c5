//! Helpdesk's view of one device over real HTTP: `GET
//! /v1/admin/support/{code}` finds it by the support code its user reads
//! out (any case, any spaces) and shows its enrolment, verdicts with their
//! violations, grants and the audit rows naming it; and the same from the
//! database with `sallyport-broker admin device CODE`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use broker::api::{self, ProblemType};
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_support_code_shows_the_brokers_side_of_the_device() {
    let env = Env::start().await;
    let device = TestDevice::new(env.client(&env.issuer.token("alice")), "alice");
    assert_eq!(device.enrol().await.status(), 201);
    device.attest(healthy_report()).await;
    let r = device
        .request_grant("echo", &tunnel::PrivateKey::generate().public_key())
        .await;
    assert_eq!(r.status(), 201);
    let grant: api::Grant = r.json().await.unwrap();
    // The firewall goes off: the broker's verdict says so and the grant closes.
    let verdict = device.attest(firewall_off_report()).await;
    assert!(!verdict.compliant);

    // Read out over the phone: lower case, a space in the middle.
    let code = api::support_code(&device.id());
    let spoken = code.to_lowercase();
    assert!(spoken.contains(' '), "{spoken}");
    let r = env.admin().get(&api::paths::admin_support(&spoken)).await;
    assert_eq!(r.status(), 200);
    let found: Vec<api::DeviceSupport> = r.json().await.unwrap();
    assert_eq!(found.len(), 1);
    let view = &found[0];
    assert_eq!(view.device.device_id, device.id());
    assert_eq!(view.device.user, "alice");
    assert_eq!(view.support_code, code);
    let compliant: Vec<bool> = view.verdicts.iter().map(|v| v.compliant).collect();
    assert_eq!(compliant, [true, false]);
    assert!(
        view.verdicts[1]
            .violations
            .iter()
            .any(|v| v.check == "firewall"),
        "{:?}",
        view.verdicts[1]
    );
    assert_eq!(view.grants.len(), 1);
    assert_eq!(view.grants[0].id, grant.id);
    assert!(view.grants[0].closed_at.is_some(), "{:?}", view.grants[0]);
    let actions: Vec<&str> = view.audit.iter().map(|a| a.action.as_str()).collect();
    assert!(actions.contains(&"enrol"), "{actions:?}");
    assert!(actions.contains(&"grant"), "{actions:?}");
    assert!(
        view.audit
            .iter()
            .all(|a| a.device_id.as_deref() == Some(device.id().as_str())),
        "{:?}",
        view.audit
    );
    assert!(view.audit.windows(2).all(|w| w[0].seq < w[1].seq));

    // Another user's device is not in it, an unknown code is 404, a
    // malformed one 400, and only administrators may ask.
    let other = TestDevice::new(env.client(&env.issuer.token("bob")), "bob");
    assert_eq!(other.enrol().await.status(), 201);
    let r = env.admin().get(&api::paths::admin_support(&code)).await;
    let found: Vec<api::DeviceSupport> = r.json().await.unwrap();
    assert_eq!(found.len(), 1, "bob's device matched alice's code");
    let r = env
        .admin()
        .get(&api::paths::admin_support("zzzz zzzz"))
        .await;
    expect_problem(r, ProblemType::DeviceUnknown).await;
    let r = env.admin().get(&api::paths::admin_support("a'b")).await;
    expect_problem(r, ProblemType::MalformedRequest).await;
    let r = env
        .client(&env.issuer.token("alice"))
        .get(&api::paths::admin_support(&code))
        .await;
    assert_eq!(r.status(), 401);

    // The same from the database, as helpdesk runs it on the broker host.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sallyport-broker"))
        .arg("--config")
        .arg(env.config_path())
        // `--`: a support code may start with `-` (base64url), which clap
        // would otherwise take for an option.
        .args(["admin", "device", "--"])
        .args(spoken.split(' '))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains(&device.id()), "{text}");
    assert!(text.contains("NOT compliant — firewall"), "{text}");
    assert!(
        text.contains(&format!("{} echo closed", grant.id)),
        "{text}"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sallyport-broker"))
        .arg("--config")
        .arg(env.config_path())
        .args(["admin", "device", "zzzzzzzz"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no device has the support code"));
}
