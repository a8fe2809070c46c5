//! Sign-in against a real OpenID provider (npm `oidc-provider`, started
//! from tests/idp): browser login through the loopback redirect, device
//! flow, MFA enforcement, refresh rotation, logout, step-up, and a grep of
//! the logs of a full login for the tokens.
//!
//! The test plays the user's browser with an HTTP client and a cookie jar:
//! it fills in the password and a TOTP code computed here (RFC 6238).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use support::idp;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent::identity::client::AuthOverrides;
use agent::identity::session::{SessionState, parse_step_up};
use agent::identity::store::{MemoryStore, SecretStore as _};
use agent::identity::{Identity, IdentityClient, IdentityConfig, IdentityError};
use base64::Engine as _;
use url::Url;

fn config(idp: &idp::Idp) -> IdentityConfig {
    let mut config = IdentityConfig::new(Url::parse(&idp.issuer).unwrap(), idp::CLIENT_ID);
    config.resource = Some(idp::BROKER_RESOURCE.to_owned());
    config.acr_values = vec!["urn:sallyport:acr:mfa".to_owned()];
    config.http_timeout = Duration::from_secs(10);
    config.login_timeout = Duration::from_secs(60);
    config
}

/// A browser opener that hands the URL to a task playing the user.
type Opened = Arc<Mutex<Vec<String>>>;

fn opener() -> (impl Fn(&Url) -> Result<(), String> + Sync, Opened) {
    let opened: Opened = Arc::default();
    let record = opened.clone();
    let open = move |url: &Url| {
        record.lock().unwrap().push(url.to_string());
        let url = url.to_string();
        tokio::spawn(async move {
            let page = idp::complete_browser_login(&url).await;
            let status = page.status();
            let text = page.text().await.unwrap_or_default();
            assert!(
                text.contains("return to the app"),
                "callback page ({status}): {text}"
            );
        });
        Ok(())
    };
    (open, opened)
}

fn stored_blob(store: &MemoryStore, config: &IdentityConfig) -> serde_json::Value {
    let blob = store.get(&config.store_account()).unwrap().unwrap();
    serde_json::from_str(blob.expose()).unwrap()
}

fn jwt_payload(token: &str) -> serde_json::Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn browser_login_with_mfa_then_refresh_and_logout() {
    let Some(idp) = idp::Idp::start(&idp::Options::default()) else {
        return;
    };
    let config = config(&idp);
    let store = Arc::new(MemoryStore::new());
    let identity = Identity::new(config.clone(), store.clone());
    assert_eq!(identity.state(0).unwrap(), SessionState::SignedOut);

    let (open, opened) = opener();
    let who = identity
        .login_browser(&open, &AuthOverrides::default())
        .await
        .unwrap();
    assert_eq!(who.user, "alice@example.com");
    assert_eq!(who.subject, "alice");
    assert_eq!(who.mfa_method, "amr otp");
    assert!(who.can_refresh);
    assert!(
        matches!(who.state, SessionState::Valid { .. }),
        "{:?}",
        who.state
    );

    // The authorization request: PKCE S256, nonce, acr_values, loopback redirect.
    let auth_url = Url::parse(&opened.lock().unwrap()[0]).unwrap();
    let params: std::collections::HashMap<String, String> =
        auth_url.query_pairs().into_owned().collect();
    assert_eq!(params["code_challenge_method"], "S256");
    assert_eq!(params["response_type"], "code");
    assert_eq!(params["acr_values"], "urn:sallyport:acr:mfa");
    assert!(params.contains_key("nonce") && params.contains_key("state"));
    let redirect = Url::parse(&params["redirect_uri"]).unwrap();
    assert_eq!(redirect.host_str(), Some("127.0.0.1"));
    assert_eq!(redirect.path(), "/callback");
    assert_ne!(redirect.port(), None);
    // The listener is closed after the first callback.
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", redirect.port().unwrap())).is_err(),
        "loopback listener still open after login"
    );

    // Tokens are in the store; the access token is a JWT for the broker.
    let blob = stored_blob(&store, &config);
    let access = jwt_payload(blob["access_token"].as_str().unwrap());
    assert_eq!(access["aud"], idp::BROKER_AUDIENCE);
    assert_eq!(access["sub"], "alice");
    let first_refresh = blob["refresh_token"].as_str().unwrap().to_owned();
    let old_tokens_blob = blob.clone();

    // Refresh: the IdP rotates refresh tokens of public clients.
    let who = identity.refresh().await.unwrap();
    assert_eq!(who.user, "alice@example.com");
    let blob = stored_blob(&store, &config);
    let second_refresh = blob["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(
        first_refresh, second_refresh,
        "refresh token was not rotated"
    );
    let token = identity.access_token().await.unwrap();
    assert_eq!(token.expose(), blob["access_token"].as_str().unwrap());

    // Logout: revokes, offers the IdP's end-session URL, deletes locally.
    let end_session = identity.logout().await.unwrap().unwrap();
    assert!(
        end_session
            .as_str()
            .starts_with(&format!("{}/session/end", idp.issuer))
    );
    assert!(end_session.query_pairs().any(|(k, _)| k == "id_token_hint"));
    assert!(store.is_empty(), "tokens left after logout");
    assert_eq!(identity.state(0).unwrap(), SessionState::SignedOut);
    assert!(identity.whoami().unwrap().is_none());
    assert!(matches!(
        identity.access_token().await,
        Err(IdentityError::NotSignedIn)
    ));

    // The rotated-away and the revoked refresh tokens are both dead.
    store
        .set(
            &config.store_account(),
            &agent::secrets::Secret::new(old_tokens_blob.to_string()),
        )
        .unwrap();
    let err = identity.refresh().await.unwrap_err();
    assert!(matches!(err, IdentityError::NeedsReauth(_)), "{err}");
    assert!(store.is_empty(), "rejected tokens must be deleted");
}

#[tokio::test]
async fn login_without_second_factor_is_refused() {
    let Some(idp) = idp::Idp::start(&idp::Options {
        mfa: false,
        ..idp::Options::default()
    }) else {
        return;
    };
    let store = Arc::new(MemoryStore::new());
    let identity = Identity::new(config(&idp), store.clone());
    let (open, _) = opener();
    let err = identity
        .login_browser(&open, &AuthOverrides::default())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            IdentityError::Mfa(agent::identity::mfa::MfaError::MfaMissing { .. })
        ),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains("multi-factor authentication is required"),
        "{message}"
    );
    assert!(message.contains("pwd"), "{message}");
    assert!(store.is_empty(), "a refused login stored something");
}

#[tokio::test]
async fn device_flow_login() {
    let Some(idp) = idp::Idp::start(&idp::Options::default()) else {
        return;
    };
    let store = Arc::new(MemoryStore::new());
    let identity = Identity::new(config(&idp), store.clone());
    let shown = Arc::new(Mutex::new(None));
    let record = shown.clone();
    let show = move |prompt: &agent::identity::client::DevicePrompt| {
        *record.lock().unwrap() = Some(prompt.clone());
        let uri = prompt.verification_uri_complete.clone().unwrap();
        tokio::spawn(async move {
            let page = idp::complete_device_login(&uri).await;
            let text = page.text().await.unwrap_or_default();
            assert!(text.contains("Sign-in Success"), "{text}");
        });
    };
    let who = identity.login_device(&show).await.unwrap();
    assert_eq!(who.user, "alice@example.com");
    assert_eq!(who.mfa_method, "amr otp");
    let prompt = shown.lock().unwrap().clone().unwrap();
    assert!(!prompt.user_code.is_empty());
    assert!(prompt.verification_uri.starts_with(&idp.issuer));
    assert!(prompt.expires_in > 0);
    assert!(!store.is_empty());
}

#[tokio::test]
async fn step_up_challenge_reruns_browser_login() {
    let Some(idp) = idp::Idp::start(&idp::Options::default()) else {
        return;
    };
    let store = Arc::new(MemoryStore::new());
    let identity = Identity::new(config(&idp), store.clone());
    let (open, opened) = opener();
    identity
        .login_browser(&open, &AuthOverrides::default())
        .await
        .unwrap();
    // What a broker answers when it wants a fresh MFA sign-in (RFC 9470).
    let challenge = parse_step_up(
        r#"Bearer error="insufficient_user_authentication", error_description="fresh MFA required", acr_values="urn:sallyport:acr:mfa", max_age=0"#,
    )
    .unwrap();
    let who = identity.step_up(&challenge, &open).await.unwrap();
    assert_eq!(who.mfa_method, "amr otp");
    let urls = opened.lock().unwrap().clone();
    assert_eq!(urls.len(), 2);
    let second = Url::parse(&urls[1]).unwrap();
    let params: std::collections::HashMap<String, String> =
        second.query_pairs().into_owned().collect();
    assert_eq!(params["max_age"], "0");
    assert_eq!(params["acr_values"], "urn:sallyport:acr:mfa");
    // The IdP made the user authenticate again (two logins in its log).
    let logins = idp
        .events
        .try_iter()
        .filter(|e| e["event"] == "login")
        .count();
    assert_eq!(logins, 2);
}

/// A tracing writer that keeps everything in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test(flavor = "current_thread")]
async fn logs_of_a_full_login_contain_no_tokens() {
    let Some(idp) = idp::Idp::start(&idp::Options::default()) else {
        return;
    };
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(captured.clone())
        .with_ansi(false)
        .finish();
    // Thread-local default: this current-thread runtime runs the whole
    // login (agent, HTTP client, loopback listener) on this thread.
    let _guard = tracing::subscriber::set_default(subscriber);

    let config = config(&idp);
    let store = Arc::new(MemoryStore::new());
    let identity = Identity::new(config.clone(), store.clone());
    let (open, _) = opener();
    let who = identity
        .login_browser(&open, &AuthOverrides::default())
        .await
        .unwrap();
    identity.refresh().await.unwrap();
    let blob_after_refresh = stored_blob(&store, &config);
    tracing::info!(?who, "whoami");
    let client = IdentityClient::discover(config.clone()).await.unwrap();
    tracing::debug!(?client, "client");
    identity.logout().await.unwrap();

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("sign-in validated"),
        "nothing was logged?\n{logs}"
    );
    for field in ["access_token", "refresh_token", "id_token"] {
        let token = blob_after_refresh[field].as_str().unwrap();
        assert!(token.len() > 20);
        assert!(!logs.contains(token), "{field} found in the logs");
        // Also no recognisable piece (a JWT signature part).
        if let Some(signature) = token.split('.').nth(2) {
            assert!(
                !logs.contains(signature),
                "{field} signature found in the logs"
            );
        }
    }
    assert!(!format!("{who:?}").contains("eyJ"), "WhoAmI leaks a JWT");
}
