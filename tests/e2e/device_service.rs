//! End to end through the privilege split: a real `sallyportd` process
//! holds the device key; the agent (in-process runtime) enrols the
//! service's key, asks it for every EAT and DPoP proof, and traffic flows
//! through the tunnel once IT approves the device. The broker's audit
//! shows which store held the key and which local account asked.
//!
//! Then the forgeries a user (or malware running as the user) can try
//! without the service's key, all refused by the broker:
//! - its own P-256 key, enrolled for the same user, signing an all-pass
//!   EAT that claims a TPM: pending approval (`approval` mode), refused
//!   without a key attestation (`hardware` mode);
//! - an EAT that names the service's device but is signed by its own key,
//!   submitted with a DPoP proof it got from the service (any local user
//!   may ask for proofs): the signature does not verify.
//!
//! And with the key in a TPM (a software TPM, swtpm, with its own EK CA):
//! `sallyportd --backend tpm` gives the agent the key's `tpm2-certify`
//! evidence, the agent enrols with it, a broker in `hardware` mode verifies
//! it against the TPM's EK CA and activates the device without an
//! administrator, and traffic flows. After a TPM clear the service makes a
//! new key, and the agent enrols it, with the new key's evidence.

// Test scaffolding: a setup failure must abort loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use agent::broker_client::{BrokerClient, BrokerError, DeviceAuth};
use agent::device_key::DeviceHolder;
use agent::identity::store::{MemoryStore, SecretStore};
use agent::identity::{Identity, IdentityConfig};
use agent::runtime::RuntimeOptions;
use agent::supervisor::Timing;
use base64::Engine as _;
use broker::api::{self, DeviceStatus, ProblemType};
use broker::server::config::EnrolmentMode;
use posture::CheckId;
use posture::attestation::{DeviceKey, EAT_TYP, EatClaims};
use support::agent::{AgentHandle, login};
use support::broker::{BrokerConfig, LENIENT};
use support::echo::tcp_echo;
use support::service::Sallyportd;
use support::tpm::Swtpm;
use support::{free_port, idp};

const APP: &str = "echo";

async fn identity(idp: &idp::Idp) -> Arc<Identity> {
    let mut config = IdentityConfig::new(idp.issuer.parse().unwrap(), idp::CLIENT_ID);
    config.resource = Some(idp::BROKER_RESOURCE.to_owned());
    let store: Arc<dyn SecretStore> = Arc::new(MemoryStore::new());
    let identity = Arc::new(Identity::new(config, store));
    login(&identity).await;
    identity
}

/// The `sub` of an access token (a JWT from the test IdP).
fn subject(token: &str) -> String {
    let payload = token.split('.').nth(1).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    claims["sub"].as_str().unwrap().to_owned()
}

fn problem(result: Result<impl std::fmt::Debug, BrokerError>) -> ProblemType {
    match result {
        Err(e) => e
            .problem()
            .unwrap_or_else(|| panic!("refused without a problem type: {e}")),
        Ok(ok) => panic!("the broker accepted a forgery: {ok:?}"),
    }
}

/// An all-pass EAT claiming a TPM, signed by a key the user made.
fn forged_eat(key: &DeviceKey, kid_of: &str, nonce: &str, sub: &str, audience: &str) -> String {
    let report = posture::report::Report {
        collected_at: time::OffsetDateTime::now_utc(),
        platform: posture::report::Platform::current(),
        agent_version: "0.1.0".into(),
        duration_ms: 1,
        checks: vec![posture::check::Check::pass(CheckId::OsVersion, "all good")],
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut claims = EatClaims::new(key, nonce, audience, sub, report, now, 120);
    claims.key_assurance = Some("tpm".into());
    claims.local_uid = Some(0);
    let header = serde_json::json!({"alg": "ES256", "typ": EAT_TYP, "kid": kid_of});
    key.sign_compact(
        &serde_json::to_vec(&header).unwrap(),
        &serde_json::to_vec(&claims).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_attests_through_sallyportd_and_forgeries_are_refused() {
    let Some(idp) = idp::Idp::start(&idp::Options {
        access_ttl: 600,
        ..idp::Options::default()
    }) else {
        return; // node or its packages are missing on this laptop (a failure in CI)
    };
    let dir = tempfile::tempdir().unwrap();
    let daemon = Sallyportd::start(&dir.path().join("service"), "os_version");
    let echo = tcp_echo().await;
    let policy = dir.path().join("policy.rego");
    std::fs::write(&policy, LENIENT).unwrap();
    let broker = BrokerConfig::new(&idp.issuer, &dir.path().join("broker.sqlite"))
        .enrolment(EnrolmentMode::Approval)
        .policy(&policy)
        .http_port(free_port())
        .udp_port(free_port())
        .verdict_ttl(60)
        .app(APP, "Echo service", echo)
        .start()
        .await;

    let identity = identity(&idp).await;
    let store: Arc<dyn SecretStore> = Arc::new(MemoryStore::new());
    let options = RuntimeOptions {
        timing: Timing {
            posture_interval: time::Duration::seconds(3),
            ..Timing::default()
        },
        collect: posture::collect::Options {
            only: vec![CheckId::OsVersion],
            cache: posture::cache::Cache::disabled(),
            ..posture::collect::Options::default()
        },
        auto_connect: vec![APP.to_owned()],
    };
    let agent = AgentHandle::start_with_service(
        identity.clone(),
        store.clone(),
        &broker.base_url(),
        options,
        daemon.link(),
    );
    let service_device = daemon.link().device_info().await.unwrap();
    assert!(
        store.get(agent::device_key::ACCOUNT).unwrap().is_none(),
        "with the service, the agent keeps no key of its own"
    );

    // The service's key is enrolled, pending; IT approves it.
    let http = reqwest::Client::new();
    let mut pending = Vec::new();
    for _ in 0..100 {
        pending = http
            .get(format!(
                "{}{}?state=pending",
                broker.base_url(),
                api::paths::ADMIN_DEVICES
            ))
            .bearer_auth(support::broker::ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
            .json::<Vec<api::AdminDevice>>()
            .await
            .unwrap();
        if !pending.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(pending.len(), 1, "{pending:#?}");
    assert_eq!(pending[0].device_id, service_device.device_id);
    support::broker::admin(
        &http,
        &broker.base_url(),
        &api::paths::admin_device_approve(&service_device.device_id),
        &serde_json::json!({}),
    )
    .await
    .unwrap();
    agent
        .until_traffic_flows(APP, Duration::from_secs(30), "through sallyportd's key")
        .await;
    // The service's updater, as the agent's status shows it: no feed is
    // configured for it here, so updates are off.
    let status = agent
        .until_status(Duration::from_secs(15), "the updater's status", |s| {
            s.update.is_some()
        })
        .await;
    let update = status.update.unwrap();
    assert_eq!(update.phase, agent::device_service::updater::Phase::Off);
    assert_eq!(update.running, env!("CARGO_PKG_VERSION"));

    // The broker's audit: the EAT came from the software key, asked by us.
    let audit: Vec<api::AuditEntry> = http
        .get(format!("{}{}", broker.base_url(), api::paths::ADMIN_AUDIT))
        .bearer_auth(support::broker::ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let uid = nix::unistd::geteuid().as_raw();
    let attested = audit
        .iter()
        .find(|e| e.action == "attest" && e.outcome == "allow")
        .unwrap_or_else(|| panic!("no allowed attestation in {audit:#?}"));
    assert_eq!(
        attested.device_id.as_deref(),
        Some(service_device.device_id.as_str())
    );
    assert!(
        attested.reason.contains("key_assurance software")
            && attested.reason.contains(&format!("local_uid {uid}")),
        "{attested:?}"
    );

    // Forgery 1: the user's own key, enrolled for the same user.
    let client = BrokerClient::new(&broker.base_url(), Duration::from_secs(5)).unwrap();
    let token = identity.access_token().await.unwrap();
    let sub = subject(token.expose());
    let own = DeviceKey::generate();
    let own_holder = DeviceHolder::Keyring(own.clone());
    let own_auth = DeviceAuth {
        token: &token,
        key: &own_holder,
    };
    let enrolled = client
        .enrol(
            own_auth,
            &api::EnrolRequest {
                public_jwk: own.public_jwk().clone(),
                name: Some("forger".into()),
                key_attestation: None,
                activation_secret: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        enrolled.status,
        DeviceStatus::Pending,
        "approval mode holds it"
    );
    let forged = forged_eat(
        &own,
        &own.kid(),
        "AAAAAAAAAAAAAAAAAAAAAA",
        &sub,
        idp::BROKER_AUDIENCE,
    );
    assert_eq!(
        problem(client.attest(own_auth, forged).await),
        ProblemType::DevicePendingApproval
    );

    // Forgery 2: the service's device id on an EAT signed by another key,
    // with a genuine DPoP proof the service signs for any local caller.
    let service_holder = DeviceHolder::from_service(daemon.link()).await.unwrap();
    let service_auth = DeviceAuth {
        token: &token,
        key: &service_holder,
    };
    let nonce = client.challenge(service_auth).await.unwrap().nonce;
    let forged = forged_eat(
        &own,
        &service_device.device_id,
        &nonce,
        &sub,
        idp::BROKER_AUDIENCE,
    );
    assert_eq!(
        problem(client.attest(service_auth, forged).await),
        ProblemType::EatSignatureInvalid
    );

    agent.stop().await;
    broker.shutdown().await;

    // Forgery 3: a broker in `hardware` mode refuses a key without a TPM
    // key attestation outright.
    let broker = BrokerConfig::new(&idp.issuer, &dir.path().join("hardware.sqlite"))
        .enrolment(EnrolmentMode::Hardware)
        .tpm_ca_certificates(&[test_ca(dir.path())])
        .policy(&policy)
        .http_port(free_port())
        .udp_port(free_port())
        .start()
        .await;
    let client = BrokerClient::new(&broker.base_url(), Duration::from_secs(5)).unwrap();
    let own_auth = DeviceAuth {
        token: &token,
        key: &own_holder,
    };
    assert_eq!(
        problem(
            client
                .enrol(
                    own_auth,
                    &api::EnrolRequest {
                        public_jwk: own.public_jwk().clone(),
                        name: Some("forger".into()),
                        key_attestation: None,
                        activation_secret: None,
                    },
                )
                .await
        ),
        ProblemType::KeyAttestationRequired
    );
    broker.shutdown().await;
}

/// A CA certificate (PEM) for `tpm_ca_certificates`, which `hardware` mode
/// requires, made with the openssl CLI; no EK certificate chains to it.
fn test_ca(dir: &std::path::Path) -> std::path::PathBuf {
    let (key, cert) = (dir.join("tpm-ca.key"), dir.join("tpm-ca.pem"));
    let status = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec"])
        .args(["-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"])
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

/// The broker's audit entries.
async fn audit(http: &reqwest::Client, broker: &str) -> Vec<api::AuditEntry> {
    http.get(format!("{broker}{}", api::paths::ADMIN_AUDIT))
        .bearer_auth(support::broker::ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tpm_key_enrols_in_hardware_mode_with_its_evidence_and_the_tunnel_opens() {
    let Some(idp) = idp::Idp::start(&idp::Options {
        access_ttl: 600,
        ..idp::Options::default()
    }) else {
        return; // node or its packages are missing on this laptop (a failure in CI)
    };
    let Some(tpm) = Swtpm::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let service_dir = dir.path().join("service");
    let Some(daemon) = Sallyportd::start_tpm(&service_dir, "os_version", &tpm.tcti()) else {
        return; // libtss2-dev is missing on this laptop (a failure in CI)
    };
    let echo = tcp_echo().await;
    let policy = dir.path().join("policy.rego");
    std::fs::write(&policy, LENIENT).unwrap();
    let broker = BrokerConfig::new(&idp.issuer, &dir.path().join("broker.sqlite"))
        .enrolment(EnrolmentMode::Hardware)
        .tpm_ca_certificates(&[tpm.issuer_ca()])
        .policy(&policy)
        .http_port(free_port())
        .udp_port(free_port())
        .verdict_ttl(60)
        .app(APP, "Echo service", echo)
        .start()
        .await;
    let options = || RuntimeOptions {
        timing: Timing {
            posture_interval: time::Duration::seconds(3),
            ..Timing::default()
        },
        collect: posture::collect::Options {
            only: vec![CheckId::OsVersion],
            cache: posture::cache::Cache::disabled(),
            ..posture::collect::Options::default()
        },
        auto_connect: vec![APP.to_owned()],
    };
    let identity = identity(&idp).await;
    let store: Arc<dyn SecretStore> = Arc::new(MemoryStore::new());
    let http = reqwest::Client::new();

    let first = daemon.link().device_info().await.unwrap();
    assert_eq!(first.key_assurance, "tpm");
    let agent = AgentHandle::start_with_service(
        identity.clone(),
        store.clone(),
        &broker.base_url(),
        options(),
        daemon.link(),
    );
    // No administrator approves anything: the TPM's evidence does.
    agent
        .until_traffic_flows(APP, Duration::from_secs(30), "through the TPM-held key")
        .await;
    let entries = audit(&http, &broker.base_url()).await;
    let enrolled = entries
        .iter()
        .find(|e| e.action == "enrol" && e.outcome == "allow")
        .unwrap_or_else(|| panic!("no enrolment in {entries:#?}"));
    assert_eq!(
        enrolled.device_id.as_deref(),
        Some(first.device_id.as_str())
    );
    let attested = entries
        .iter()
        .find(|e| e.action == "attest" && e.outcome == "allow")
        .unwrap_or_else(|| panic!("no allowed attestation in {entries:#?}"));
    assert_eq!(
        attested.device_id.as_deref(),
        Some(first.device_id.as_str())
    );
    assert!(
        attested.reason.contains("key_assurance tpm"),
        "{attested:?}"
    );
    agent.stop().await;

    // The TPM is cleared (while the service is down: swtpm serves one
    // client at a time). The service makes a new key; the agent enrols it
    // with the new key's evidence, and the tunnel opens again.
    daemon.stop();
    tpm.clear();
    let daemon = Sallyportd::start_tpm(&service_dir, "os_version", &tpm.tcti()).unwrap();
    let second = daemon.link().device_info().await.unwrap();
    assert_ne!(
        second.device_id, first.device_id,
        "a new key after the clear"
    );
    let agent = AgentHandle::start_with_service(
        identity.clone(),
        store.clone(),
        &broker.base_url(),
        options(),
        daemon.link(),
    );
    agent
        .until_traffic_flows(APP, Duration::from_secs(30), "through the new TPM key")
        .await;
    let devices: Vec<api::AdminDevice> = http
        .get(format!(
            "{}{}",
            broker.base_url(),
            api::paths::ADMIN_DEVICES
        ))
        .bearer_auth(support::broker::ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let new = devices
        .iter()
        .find(|d| d.device_id == second.device_id)
        .unwrap_or_else(|| panic!("the new key is not enrolled: {devices:#?}"));
    assert_eq!(new.status, DeviceStatus::Active);
    assert!(new.approved_at.is_none(), "no administrator was involved");
    agent.stop().await;
    broker.shutdown().await;
}
