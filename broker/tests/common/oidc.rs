//! Sign-ins at the real test IdP (`support::idp`) the way a headless agent
//! does them: the device authorization grant (the test plays the user in a
//! browser) and the refresh-token grant. Returns the raw tokens.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use serde_json::Value;
use support::idp;

/// What the token endpoint answered.
#[derive(Debug, Clone)]
pub struct Tokens {
    pub access: String,
    pub id: Option<String>,
    pub refresh: Option<String>,
}

impl Tokens {
    fn from_reply(reply: &Value) -> Option<Tokens> {
        Some(Tokens {
            access: reply["access_token"].as_str()?.to_owned(),
            id: reply["id_token"].as_str().map(str::to_owned),
            refresh: reply["refresh_token"].as_str().map(str::to_owned),
        })
    }
}

async fn discovery(http: &reqwest::Client, issuer: &str) -> Value {
    http.get(format!("{issuer}/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// A new sign-in through the device grant (password, plus TOTP when the
/// provider asks): a fresh browser, so a new `auth_time`.
pub async fn device_grant(issuer: &str) -> Tokens {
    let http = reqwest::Client::new();
    let discovery = discovery(&http, issuer).await;
    let device_ep = discovery["device_authorization_endpoint"].as_str().unwrap();
    let token_ep = discovery["token_endpoint"].as_str().unwrap().to_owned();
    let auth: Value = http
        .post(device_ep)
        .form(&[("client_id", idp::CLIENT_ID), ("scope", "openid")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let complete = auth["verification_uri_complete"]
        .as_str()
        .unwrap()
        .to_owned();
    let device_code = auth["device_code"].as_str().unwrap().to_owned();
    let user = tokio::spawn(async move { idp::complete_device_login(&complete).await });
    for _ in 0..60 {
        let r: Value = http
            .post(&token_ep)
            .form(&[
                ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                ("device_code", &device_code),
                ("client_id", idp::CLIENT_ID),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if let Some(tokens) = Tokens::from_reply(&r) {
            user.await.unwrap();
            return tokens;
        }
        let err = r["error"].as_str().unwrap_or_default();
        assert!(
            matches!(err, "authorization_pending" | "slow_down"),
            "token endpoint: {r}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("no access token after 30 s");
}

/// The refresh-token grant: a new access token (new `iat`) from the same
/// sign-in.
pub async fn refresh(issuer: &str, refresh_token: &str) -> Tokens {
    let http = reqwest::Client::new();
    let discovery = discovery(&http, issuer).await;
    let token_ep = discovery["token_endpoint"].as_str().unwrap();
    let r: Value = http
        .post(token_ep)
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", idp::CLIENT_ID),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    Tokens::from_reply(&r).unwrap_or_else(|| panic!("refresh refused: {r}"))
}

/// One claim of a JWT (unverified: for the test's own look).
pub fn claim(token: &str, name: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(&B64URL.decode(payload).unwrap()).unwrap();
    claims[name].clone()
}

/// The JOSE header of a JWT.
pub fn header(token: &str) -> Value {
    let header = token.split('.').next().unwrap();
    serde_json::from_slice(&B64URL.decode(header).unwrap()).unwrap()
}
