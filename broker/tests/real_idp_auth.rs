//! The broker's own MFA, revocation and token-kind rules against the real
//! OpenID provider in `tests/idp/` (`oidc-provider`; its access tokens carry
//! the sign-in's `auth_time`, `acr` and `amr`, RFC 9068 §2.2.1): a
//! password-only sign-in is challenged (RFC 9470), an MFA sign-in passes
//! until it is older than `max_auth_age_seconds`, a revocation survives a
//! refresh and is lifted by a new sign-in (unless it holds until cleared),
//! and an ID token is not an access token. Sign-ins use the device grant.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use broker::api::{self, ProblemType};
use broker::server::ManualClock;
use common::oidc::{self, claim, header};
use common::*;
use serde_json::json;
use support::broker::BrokerConfig;
use support::idp;

/// The acr the provider gives a password + TOTP sign-in.
const IDP_ACR_MFA: &str = "urn:sallyport:acr:mfa";

fn broker_config(
    issuer: &str,
    dir: &std::path::Path,
    change: impl FnOnce(&mut broker::server::Config),
) -> BrokerConfig {
    BrokerConfig::new(issuer, &db_path(dir)).with(change)
}

/// The device every call in these tests is made from: user calls are
/// DPoP-bound, so a token alone opens nothing. One key per process is
/// enough, as each test starts its own broker over its own database.
fn device_key() -> &'static posture::attestation::DeviceKey {
    static KEY: std::sync::OnceLock<posture::attestation::DeviceKey> = std::sync::OnceLock::new();
    KEY.get_or_init(posture::attestation::DeviceKey::generate)
}

fn api(broker: &broker::server::BrokerHandle, token: &str) -> Client {
    Client {
        http: reqwest::Client::new(),
        base: broker.base_url(),
        token: token.to_owned(),
        key: Some(device_key().clone()),
        clock: None,
    }
}

/// Any authenticated call, as the agent makes it: the device key enrolled
/// (again; enrolment is idempotent for its user), then a nonce asked for.
/// A refusal of the token is the enrolment's reply.
async fn call(broker: &broker::server::BrokerHandle, token: &str) -> reqwest::Response {
    let client = api(broker, token);
    let enrolled = client
        .post(
            api::paths::DEVICES,
            &api::EnrolRequest {
                public_jwk: device_key().public_jwk().clone(),
                name: Some("test-host".into()),
                key_attestation: None,
                activation_secret: None,
            },
        )
        .await;
    if !enrolled.status().is_success() {
        return enrolled;
    }
    client.post(api::paths::CHALLENGE, &json!({})).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_only_sign_in_is_refused_with_a_step_up_challenge() {
    let Some(provider) = idp::Idp::start(&idp::Options {
        mfa: false,
        ..idp::Options::default()
    }) else {
        return;
    };
    let tokens = oidc::device_grant(&provider.issuer).await;
    assert_eq!(claim(&tokens.access, "amr"), json!(["pwd"]));
    let dir = tempfile::tempdir().unwrap();
    let broker = broker_config(&provider.issuer, dir.path(), |c| {
        c.oidc.required_acr = vec![IDP_ACR_MFA.to_owned()];
        c.oidc.max_auth_age_seconds = Some(3600);
    })
    .start()
    .await;
    let r = call(&broker, &tokens.access).await;
    assert_eq!(r.status(), 401);
    let challenge = bearer_challenge(&r);
    assert_eq!(challenge["error"], "insufficient_user_authentication");
    assert_eq!(challenge["acr_values"], IDP_ACR_MFA);
    assert_eq!(challenge["max_age"], "3600");
    assert!(
        challenge["error_description"].contains("pwd"),
        "{challenge:?}"
    );
    expect_problem(r, ProblemType::InsufficientUserAuthentication).await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mfa_sign_in_passes_until_it_is_older_than_max_auth_age() {
    let Some(provider) = idp::Idp::start(&idp::Options::default()) else {
        return;
    };
    let tokens = oidc::device_grant(&provider.issuer).await;
    assert_eq!(claim(&tokens.access, "amr"), json!(["pwd", "otp"]));
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::starting_now());
    let config = broker_config(&provider.issuer, dir.path(), |c| {
        c.oidc.required_acr = vec![IDP_ACR_MFA.to_owned()];
        c.oidc.max_auth_age_seconds = Some(60);
    });
    let broker = start_broker_with_clock(&config, clock.clone()).await;
    assert_eq!(call(&broker, &tokens.access).await.status(), 200);
    // Two minutes on (the access token lives five): the sign-in is too old.
    clock.advance(Duration::from_secs(120));
    let r = call(&broker, &tokens.access).await;
    let challenge = bearer_challenge(&r);
    assert_eq!(challenge["error"], "insufficient_user_authentication");
    assert_eq!(challenge["max_age"], "60");
    let p = expect_problem(r, ProblemType::InsufficientUserAuthentication).await;
    assert!(p.detail.contains("60 s"), "{}", p.detail);
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_token_is_not_accepted_as_an_access_token() {
    let Some(provider) = idp::Idp::start(&idp::Options::default()) else {
        return;
    };
    let tokens = oidc::device_grant(&provider.issuer).await;
    let id_token = tokens.id.expect("the device grant returns an ID token");
    assert_eq!(claim(&id_token, "aud"), idp::CLIENT_ID);
    let dir = tempfile::tempdir().unwrap();
    let broker = broker_config(&provider.issuer, dir.path(), |_| {})
        .start()
        .await;
    assert_eq!(call(&broker, &tokens.access).await.status(), 200);
    let r = call(&broker, &id_token).await;
    let p = expect_problem(r, ProblemType::TokenNotAccessToken).await;
    assert!(
        p.detail.contains("ID token"),
        "{}: {:?}",
        p.detail,
        header(&id_token)
    );
    broker.shutdown().await;
}

/// Sleeps until the wall clock's second is past `unix`, so a sign-in that
/// follows has a later `auth_time`.
async fn after_second(unix: i64) {
    while unix_now() <= unix {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_survives_a_refresh_and_is_lifted_by_a_new_sign_in_unless_until_cleared() {
    let Some(provider) = idp::Idp::start(&idp::Options::default()) else {
        return;
    };
    let first = oidc::device_grant(&provider.issuer).await;
    let sub = claim(&first.access, "sub").as_str().unwrap().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let broker = broker_config(&provider.issuer, dir.path(), |_| {})
        .start()
        .await;
    let admin = Client {
        key: None,
        ..api(&broker, ADMIN_TOKEN)
    };
    assert_eq!(call(&broker, &first.access).await.status(), 200);

    let revoke = |until_cleared| api::RevocationRequest {
        user: Some(sub.clone()),
        reason: "account compromised".into(),
        until_cleared,
        ..Default::default()
    };
    let r = admin
        .post(api::paths::ADMIN_REVOCATIONS, &revoke(false))
        .await;
    assert_eq!(r.status(), 200);
    let revoked_at = unix_now();
    expect_problem(
        call(&broker, &first.access).await,
        ProblemType::SessionRevoked,
    )
    .await;

    // A routine refresh: a new token (new iat) from the same sign-in.
    after_second(revoked_at).await;
    let refreshed = oidc::refresh(&provider.issuer, first.refresh.as_deref().unwrap()).await;
    assert!(claim(&refreshed.access, "iat").as_i64() > claim(&first.access, "iat").as_i64());
    assert_eq!(
        claim(&refreshed.access, "auth_time"),
        claim(&first.access, "auth_time")
    );
    expect_problem(
        call(&broker, &refreshed.access).await,
        ProblemType::SessionRevoked,
    )
    .await;

    // A new sign-in (new auth_time) is accepted.
    let second = oidc::device_grant(&provider.issuer).await;
    assert!(claim(&second.access, "auth_time").as_i64().unwrap() > revoked_at);
    assert_eq!(call(&broker, &second.access).await.status(), 200);

    // Until cleared: the current sign-in and a new one are refused.
    let r = admin
        .post(api::paths::ADMIN_REVOCATIONS, &revoke(true))
        .await;
    assert_eq!(r.status(), 200);
    let blocked_at = unix_now();
    expect_problem(
        call(&broker, &second.access).await,
        ProblemType::SessionRevoked,
    )
    .await;
    after_second(blocked_at).await;
    let third = oidc::device_grant(&provider.issuer).await;
    expect_problem(
        call(&broker, &third.access).await,
        ProblemType::SessionRevoked,
    )
    .await;

    // Cleared: a sign-in after the clear is accepted.
    let clear = api::RevocationClearRequest {
        user: Some(sub.clone()),
        reason: "cleared by the test".into(),
        ..Default::default()
    };
    after_second(claim(&third.access, "auth_time").as_i64().unwrap()).await;
    let r = admin
        .post(api::paths::ADMIN_REVOCATIONS_CLEAR, &clear)
        .await;
    assert_eq!(r.status(), 200);
    let cleared_at = unix_now();
    expect_problem(
        call(&broker, &third.access).await,
        ProblemType::SessionRevoked,
    )
    .await;
    after_second(cleared_at).await;
    let fourth = oidc::device_grant(&provider.issuer).await;
    assert_eq!(call(&broker, &fourth.access).await.status(), 200);
    broker.shutdown().await;
}
