//! The demo's built-in issuer against the agent's real sign-in path: the
//! full OIDC validation and MFA rule must accept its logins, and a wrong
//! authenticator code must get nobody in.

// Test scaffolding: setup failures must abort loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use agent::identity::client::AuthOverrides;
use agent::identity::session::SessionState;
use agent::identity::store::MemoryStore;
use agent::identity::{Identity, IdentityConfig};
use demo::issuer::{DEMO_CLIENT_ID, DEMO_PASSWORD, DEMO_USER, DemoIssuer};

/// Plays the user's browser: fetch the form, fill it in, follow the redirect
/// to the agent's loopback callback.
async fn fill_in(url: String, code: String) {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let form = http.get(&url).send().await.unwrap().text().await.unwrap();
    let mut fields: Vec<(String, String)> = Vec::new();
    for input in form.split("<input").skip(1) {
        let attr = |name: &str| {
            input
                .split(&format!("{name}=\""))
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .map(|v| v.replace("&quot;", "\"").replace("&amp;", "&"))
        };
        if let (Some(name), Some(value)) = (attr("name"), attr("value")) {
            fields.push((name, value));
        }
    }
    fields.push(("username".into(), DEMO_USER.into()));
    fields.push(("password".into(), DEMO_PASSWORD.into()));
    fields.push(("otp".into(), code));
    let base = url.split("/authorize").next().unwrap().to_owned();
    let reply = http
        .post(format!("{base}/authorize"))
        .form(&fields)
        .send()
        .await
        .unwrap();
    if let Some(location) = reply.headers().get("location") {
        let _ = http.get(location.to_str().unwrap()).send().await;
    }
}

async fn login(issuer: &DemoIssuer, code: String) -> Result<(), String> {
    let mut config = IdentityConfig::new(issuer.issuer.parse().unwrap(), DEMO_CLIENT_ID);
    config.login_timeout = std::time::Duration::from_secs(5);
    let store = Arc::new(MemoryStore::new());
    let identity = Identity::new(config, store.clone());
    let open = move |url: &url::Url| {
        tokio::spawn(fill_in(url.to_string(), code.clone()));
        Ok(())
    };
    let result = identity
        .login_browser(&open, &AuthOverrides::default())
        .await
        .map_err(|e| e.to_string())?;
    assert_eq!(result.user, DEMO_USER);
    assert!(result.mfa_method.contains("otp"), "{}", result.mfa_method);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    assert!(matches!(
        identity.state(now).unwrap(),
        SessionState::Valid { .. }
    ));
    // The refresh path works against it too.
    identity.refresh().await.map_err(|e| e.to_string())?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_issuer_login_passes_full_validation_with_mfa() {
    let issuer = DemoIssuer::start("sallyport-broker").await.unwrap();
    login(&issuer, issuer.current_code()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_authenticator_code_gets_nobody_in() {
    let issuer = DemoIssuer::start("sallyport-broker").await.unwrap();
    let wrong = if issuer.current_code() == "000000" {
        "111111"
    } else {
        "000000"
    };
    let err = login(&issuer, wrong.to_owned()).await.unwrap_err();
    assert!(err.contains("not completed"), "{err}");
}
