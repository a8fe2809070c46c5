//! Enrolment modes over real HTTP: a device pending approval can neither
//! attest nor get a grant until an administrator approves it; `hardware`
//! mode refuses an enrolment without (or with unverifiable) key
//! attestation; the per-user quota; and a revoked user or device key cannot
//! enrol until an administrator clears the revocation.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use broker::api::{self, DeviceStatus, Event, ProblemType};
use broker::server::config::EnrolmentMode;
use common::*;
use serde_json::json;

/// A CA certificate (PEM) for `tpm_ca_certificates`, made with the
/// openssl CLI; no EK certificate here chains to it.
fn test_ca(dir: &std::path::Path) -> std::path::PathBuf {
    let (key, cert) = (dir.join("tpm-ca.key"), dir.join("tpm-ca.pem"));
    let status = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ])
        .args(["-subj", "/CN=test TPM CA", "-days", "1", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("the openssl CLI (Debian package `openssl`)");
    assert!(status.success());
    cert
}

fn mode(
    mode: EnrolmentMode,
) -> impl FnOnce(support::broker::BrokerConfig, &std::path::Path) -> support::broker::BrokerConfig {
    move |config, _| config.enrolment(mode)
}

async fn devices(env: &Env, query: &str) -> Vec<api::AdminDevice> {
    let r = env
        .admin()
        .get(&format!("{}{query}", api::paths::ADMIN_DEVICES))
        .await;
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

async fn approve(env: &Env, device_id: &str) -> reqwest::Response {
    env.admin()
        .post(&api::paths::admin_device_approve(device_id), &json!({}))
        .await
}

/// An access token for `sub` issued after anything the broker recorded in
/// this second (a revocation refuses tokens issued up to its second).
fn later_token(env: &Env, sub: &str) -> String {
    env.issuer.token_with(
        sub,
        json!({"iat": unix_now() + 2, "auth_time": unix_now() + 2}),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_device_can_do_nothing_until_an_administrator_approves_it() {
    let env = Env::start_with(mode(EnrolmentMode::Approval)).await;
    let alice = env.client(&env.issuer.token("alice"));
    let device = TestDevice::new(alice.clone(), "alice");

    // Recorded (202), but pending; enrolling again says the same.
    let r = device.enrol().await;
    assert_eq!(r.status(), 202);
    let enrolled: api::Device = r.json().await.unwrap();
    assert_eq!(enrolled.status, DeviceStatus::Pending);
    assert_eq!(device.enrol().await.status(), 202);

    // No verdict and no grant while pending.
    let claims = device.claims(healthy_report()).await;
    let r = device.submit(device.key.sign_eat(&claims).unwrap()).await;
    expect_problem(r, ProblemType::DevicePendingApproval).await;
    env.assert_audited(ProblemType::DevicePendingApproval, "approval")
        .await;
    let wg = tunnel::PrivateKey::generate();
    let r = device.request_grant("echo", &wg.public_key()).await;
    expect_problem(r, ProblemType::DevicePendingApproval).await;

    // The administrator sees it among the pending devices, with its label.
    let pending = devices(&env, "?state=pending").await;
    assert_eq!(pending.len(), 1, "{pending:#?}");
    assert_eq!(pending[0].device_id, device.id());
    assert_eq!(pending[0].user, "alice");
    assert_eq!(pending[0].name.as_deref(), Some("test-host"));
    assert_eq!(pending[0].approved_at, None);

    // Approval needs the admin token, and names a real device.
    let r = env
        .client("not-the-admin-token")
        .post(&api::paths::admin_device_approve(&device.id()), &json!({}))
        .await;
    expect_problem(r, ProblemType::AdminUnauthorized).await;
    expect_problem(
        approve(&env, "no-such-device").await,
        ProblemType::DeviceUnknown,
    )
    .await;

    // The pending device's stream hears the approval.
    let mut events = EventStream::open(&device.api, &device.id()).await;
    let r = approve(&env, &device.id()).await;
    assert_eq!(r.status(), 200);
    let approved: api::AdminDevice = r.json().await.unwrap();
    assert_eq!(approved.status, DeviceStatus::Active);
    assert!(approved.approved_at.is_some());
    assert_eq!(
        events.next().await,
        Event::DeviceApproved {
            device_id: device.id()
        }
    );
    assert!(devices(&env, "?state=pending").await.is_empty());
    assert_eq!(devices(&env, "?state=active").await.len(), 1);
    assert_eq!(device.enrol().await.status(), 200, "active now");

    // Now it works like any device.
    assert!(device.attest(healthy_report()).await.compliant);
    let r = device.request_grant("echo", &wg.public_key()).await;
    assert_eq!(r.status(), 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hardware_mode_refuses_an_enrolment_without_verified_key_attestation() {
    let env = Env::start_with(|config, dir| {
        config
            .enrolment(EnrolmentMode::Hardware)
            .tpm_ca_certificates(&[test_ca(dir)])
    })
    .await;
    let device = TestDevice::new(env.client(&env.issuer.token("alice")), "alice");

    let r = device.enrol().await;
    expect_problem(r, ProblemType::KeyAttestationRequired).await;
    env.assert_audited(ProblemType::KeyAttestationRequired, "no key attestation")
        .await;

    // Evidence that does not verify is refused, never accepted (evidence
    // from a real TPM: service/tests/tpm_enrolment.rs).
    let r = device
        .api
        .post(
            api::paths::DEVICES,
            &api::EnrolRequest {
                public_jwk: device.key.public_jwk().clone(),
                name: None,
                key_attestation: Some(api::KeyAttestation {
                    format: "tpm2-certify".into(),
                    certify_info: "AAAA".into(),
                    signature: "AAAA".into(),
                    key_public: "AAAA".into(),
                    ak_public: "AAAA".into(),
                    ek_certificate_chain: vec![],
                }),
                activation_secret: None,
            },
        )
        .await;
    expect_problem(r, ProblemType::KeyAttestationUnverifiable).await;

    // Nothing was enrolled.
    assert!(devices(&env, "").await.is_empty());
    // Its key is no device: every call it signs is refused.
    let r = device.api.post(api::paths::CHALLENGE, &json!({})).await;
    let p = expect_problem(r, ProblemType::InvalidDpopProof).await;
    assert!(p.detail.contains("not an enrolled device"), "{}", p.detail);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_device_over_the_users_quota_is_refused() {
    let env = Env::start_with(|config, _| {
        config
            .enrolment(EnrolmentMode::Open)
            .max_devices_per_user(2)
    })
    .await;
    let alice = env.client(&env.issuer.token("alice"));
    let first = TestDevice::new(alice.clone(), "alice");
    let second = TestDevice::new(alice.clone(), "alice");
    let third = TestDevice::new(alice.clone(), "alice");
    assert_eq!(first.enrol().await.status(), 201);
    assert_eq!(second.enrol().await.status(), 201);

    expect_problem(third.enrol().await, ProblemType::DeviceQuotaExceeded).await;
    env.assert_audited(ProblemType::DeviceQuotaExceeded, "2 device(s)")
        .await;
    // Enrolling a device already held is not a new one; another user has
    // a quota of their own.
    assert_eq!(first.enrol().await.status(), 200);
    let bob = TestDevice::new(env.client(&env.issuer.token("bob")), "bob");
    assert_eq!(bob.enrol().await.status(), 201);

    // A revoked device no longer counts.
    let r = env
        .admin()
        .post(
            api::paths::ADMIN_REVOCATIONS,
            &api::RevocationRequest {
                device_id: Some(second.id()),
                reason: "replaced".into(),
                ..Default::default()
            },
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(third.enrol().await.status(), 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_user_enrols_no_new_device_until_an_administrator_clears_it() {
    let env = Env::start_with(mode(EnrolmentMode::Open)).await;
    let old_token = env.issuer.token("alice");
    let laptop = TestDevice::new(env.client(&old_token), "alice");
    assert_eq!(laptop.enrol().await.status(), 201);

    let r = env
        .admin()
        .post(
            api::paths::ADMIN_REVOCATIONS,
            &api::RevocationRequest {
                user: Some("alice".into()),
                reason: "account compromised".into(),
                ..Default::default()
            },
        )
        .await;
    assert_eq!(r.status(), 200);

    // A sign-in after the revocation authenticates, but enrols nothing new.
    let fresh = env.client(&later_token(&env, "alice"));
    let desktop = TestDevice::new(fresh.clone(), "alice");
    expect_problem(desktop.enrol().await, ProblemType::UserRevoked).await;
    env.assert_audited(ProblemType::UserRevoked, "cleared")
        .await;

    // The administrator clears it (once: a second clear finds nothing).
    let clear = json!({"user": "alice", "reason": "password reset, new MFA"});
    let r = env
        .admin()
        .post(api::paths::ADMIN_REVOCATIONS_CLEAR, &clear)
        .await;
    assert_eq!(r.status(), 200);
    let cleared: api::RevocationClearResult = r.json().await.unwrap();
    assert!(cleared.cleared);
    let again: api::RevocationClearResult = env
        .admin()
        .post(api::paths::ADMIN_REVOCATIONS_CLEAR, &clear)
        .await
        .json()
        .await
        .unwrap();
    assert!(!again.cleared);
    expect_problem(
        env.admin()
            .post(api::paths::ADMIN_REVOCATIONS_CLEAR, &json!({"reason": "x"}))
            .await,
        ProblemType::InvalidRevocation,
    )
    .await;

    assert_eq!(desktop.enrol().await.status(), 201);
    // Clearing lets the user enrol; it does not revive the old session.
    expect_problem(laptop.enrol().await, ProblemType::SessionRevoked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_device_key_enrols_again_only_after_a_clear_and_starts_over() {
    let env = Env::start_with(mode(EnrolmentMode::Approval)).await;
    let device = TestDevice::new(env.client(&env.issuer.token("alice")), "alice");
    assert_eq!(device.enrol().await.status(), 202);
    assert_eq!(approve(&env, &device.id()).await.status(), 200);
    assert!(device.attest(healthy_report()).await.compliant);

    let r = env
        .admin()
        .post(
            api::paths::ADMIN_REVOCATIONS,
            &api::RevocationRequest {
                device_id: Some(device.id()),
                reason: "laptop reported stolen".into(),
                ..Default::default()
            },
        )
        .await;
    assert_eq!(r.status(), 200);
    expect_problem(device.enrol().await, ProblemType::DeviceRevoked).await;
    expect_problem(
        approve(&env, &device.id()).await,
        ProblemType::DeviceRevoked,
    )
    .await;
    assert_eq!(devices(&env, "?state=revoked").await.len(), 1);

    let r = env
        .admin()
        .post(
            api::paths::ADMIN_REVOCATIONS_CLEAR,
            &json!({"device_id": device.id(), "reason": "found again"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert!(
        r.json::<api::RevocationClearResult>()
            .await
            .unwrap()
            .cleared
    );

    // The key goes through the mode afresh: pending, and once approved it
    // still has no verdict (the one from before the revocation is gone).
    assert_eq!(device.enrol().await.status(), 202);
    assert_eq!(approve(&env, &device.id()).await.status(), 200);
    let wg = tunnel::PrivateKey::generate();
    let r = device.request_grant("echo", &wg.public_key()).await;
    expect_problem(r, ProblemType::VerdictMissing).await;
}
