//! One test per sign-in rule, each with its own error and no session.
//!
//! ID tokens are checked by the agent's real driver against the real test
//! IdP's discovery document and JWKS endpoint. The real IdP only issues
//! correct tokens, so the wrong ones are forged here: signed with the IdP's
//! own RS256 key (tests/idp/keys/idp-rs256.pem, which the IdP publishes) so
//! that exactly one rule is broken per token, or with a key the IdP does
//! not publish (keys/attacker-rs256.pem) for the unknown-kid case.
//! Callback rules are exercised on the real loopback listener.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use support::idp;

use std::io::{Read as _, Write as _};
use std::time::Duration;

use agent::identity::loopback::Listener;
use agent::identity::mfa::MfaError;
use agent::identity::validate::TokenError;
use agent::identity::{IdentityClient, IdentityConfig, IdentityError};
use agent::secrets::Secret;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use url::Url;

const NONCE: &str = "nonce-of-this-login";

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

struct Fixture {
    _idp: idp::Idp,
    issuer: String,
    client: IdentityClient,
}

async fn fixture(max_auth_age: Option<u64>) -> Option<Fixture> {
    let idp = idp::Idp::start(&idp::Options::default())?;
    let mut config = IdentityConfig::new(Url::parse(&idp.issuer).unwrap(), idp::CLIENT_ID);
    config.max_auth_age = max_auth_age.map(Duration::from_secs);
    let client = IdentityClient::discover(config).await.unwrap();
    Some(Fixture {
        issuer: idp.issuer.clone(),
        _idp: idp,
        client,
    })
}

impl Fixture {
    /// Claims of a token that passes every rule.
    fn good_claims(&self) -> Value {
        json!({
            "iss": self.issuer, "sub": "alice", "aud": idp::CLIENT_ID,
            "exp": now() + 300, "iat": now() - 1, "auth_time": now() - 5,
            "nonce": NONCE, "amr": ["pwd", "otp"], "azp": idp::CLIENT_ID,
        })
    }

    fn with(&self, key: &str, value: Value) -> Value {
        let mut claims = self.good_claims();
        if value.is_null() {
            claims.as_object_mut().unwrap().remove(key);
        } else {
            claims[key] = value;
        }
        claims
    }

    /// Validation + MFA policy, exactly as a login applies them.
    async fn check(&self, token: String) -> Result<(), IdentityError> {
        self.client
            .check_login_token(&Secret::new(token), Some(NONCE), None)
            .await
            .map(|_| ())
    }
}

/// Signs with the IdP's own published key (kid idp-rs256).
fn sign_idp(claims: &Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(idp::SIGNING_KID.to_owned());
    let key = EncodingKey::from_rsa_pem(&idp::key_pem("idp-rs256.pem")).unwrap();
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

#[tokio::test]
async fn a_correct_token_is_accepted() {
    let Some(f) = fixture(None).await else { return };
    f.check(sign_idp(&f.good_claims())).await.unwrap();
}

#[tokio::test]
async fn wrong_iss() {
    let Some(f) = fixture(None).await else { return };
    let err = f
        .check(sign_idp(&f.with("iss", json!("http://127.0.0.1:1"))))
        .await;
    assert!(
        matches!(
            err,
            Err(IdentityError::Token(TokenError::WrongIssuer { .. }))
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn wrong_aud() {
    let Some(f) = fixture(None).await else { return };
    let err = f
        .check(sign_idp(&f.with("aud", json!("another-client"))))
        .await;
    assert!(
        matches!(
            err,
            Err(IdentityError::Token(TokenError::WrongAudience { .. }))
        ),
        "{err:?}"
    );
    let err = f
        .check(sign_idp(
            &f.with("aud", json!([idp::CLIENT_ID, "untrusted"])),
        ))
        .await;
    assert!(
        matches!(
            err,
            Err(IdentityError::Token(TokenError::UntrustedAudience(_)))
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn wrong_azp() {
    let Some(f) = fixture(None).await else { return };
    let err = f
        .check(sign_idp(&f.with("azp", json!("another-client"))))
        .await;
    assert!(
        matches!(
            err,
            Err(IdentityError::Token(
                TokenError::WrongAuthorizedParty { .. }
            ))
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn expired() {
    let Some(f) = fixture(None).await else { return };
    let err = f.check(sign_idp(&f.with("exp", json!(now() - 3600)))).await;
    assert!(
        matches!(err, Err(IdentityError::Token(TokenError::Expired { .. }))),
        "{err:?}"
    );
}

#[tokio::test]
async fn future_iat() {
    let Some(f) = fixture(None).await else { return };
    let err = f.check(sign_idp(&f.with("iat", json!(now() + 3600)))).await;
    assert!(
        matches!(
            err,
            Err(IdentityError::Token(TokenError::IssuedInFuture { .. }))
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn wrong_nonce() {
    let Some(f) = fixture(None).await else { return };
    let err = f
        .check(sign_idp(&f.with("nonce", json!("nonce-of-another-login"))))
        .await;
    assert!(
        matches!(err, Err(IdentityError::Token(TokenError::NonceMismatch))),
        "{err:?}"
    );
    let err = f.check(sign_idp(&f.with("nonce", Value::Null))).await;
    assert!(
        matches!(err, Err(IdentityError::Token(TokenError::MissingNonce))),
        "{err:?}"
    );
}

#[tokio::test]
async fn alg_none() {
    let Some(f) = fixture(None).await else { return };
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","kid":"idp-rs256"}"#);
    let payload = URL_SAFE_NO_PAD.encode(f.good_claims().to_string());
    let err = f.check(format!("{header}.{payload}.")).await;
    assert!(
        matches!(err, Err(IdentityError::Token(TokenError::Unsigned))),
        "{err:?}"
    );
    assert!(err.unwrap_err().to_string().contains("unsigned"));
}

#[tokio::test]
async fn hs256_signed_with_the_client_id() {
    let Some(f) = fixture(None).await else { return };
    // The classic confusion attack: HMAC keyed with public information.
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &f.good_claims(),
        &EncodingKey::from_secret(idp::CLIENT_ID.as_bytes()),
    )
    .unwrap();
    let err = f.check(token).await;
    assert!(
        matches!(err, Err(IdentityError::Token(TokenError::SymmetricAlgorithm(ref a))) if a == "HS256"),
        "{err:?}"
    );
}

#[tokio::test]
async fn unknown_kid_after_refetch() {
    let Some(f) = fixture(None).await else { return };
    // Signed with a key the IdP never published.
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("rotated-in-by-attacker".to_owned());
    let key = EncodingKey::from_rsa_pem(&idp::key_pem("attacker-rs256.pem")).unwrap();
    let token = jsonwebtoken::encode(&header, &f.good_claims(), &key).unwrap();
    let before = f.client.jwks_fetches();
    let err = f.check(token).await;
    assert!(
        matches!(
            err,
            Err(IdentityError::Token(TokenError::UnknownKey { .. }))
        ),
        "{err:?}"
    );
    assert_eq!(
        f.client.jwks_fetches(),
        before + 1,
        "exactly one JWKS refetch"
    );
    // A known kid needs no refetch.
    f.check(sign_idp(&f.good_claims())).await.unwrap();
    assert_eq!(f.client.jwks_fetches(), before + 1);
}

#[tokio::test]
async fn attacker_key_under_the_idps_kid() {
    let Some(f) = fixture(None).await else { return };
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(idp::SIGNING_KID.to_owned());
    let key = EncodingKey::from_rsa_pem(&idp::key_pem("attacker-rs256.pem")).unwrap();
    let token = jsonwebtoken::encode(&header, &f.good_claims(), &key).unwrap();
    let err = f.check(token).await;
    assert!(
        matches!(err, Err(IdentityError::Token(TokenError::BadSignature))),
        "{err:?}"
    );
}

#[tokio::test]
async fn tampered_signature() {
    let Some(f) = fixture(None).await else { return };
    let token = sign_idp(&f.good_claims());
    let (signed, signature) = token.rsplit_once('.').unwrap();
    let mut bytes = URL_SAFE_NO_PAD.decode(signature).unwrap();
    bytes[10] ^= 0x01;
    let err = f
        .check(format!("{signed}.{}", URL_SAFE_NO_PAD.encode(bytes)))
        .await;
    assert!(
        matches!(err, Err(IdentityError::Token(TokenError::BadSignature))),
        "{err:?}"
    );
    // Or the payload changed under a valid signature.
    let (header, rest) = token.split_once('.').unwrap();
    let (_, signature) = rest.split_once('.').unwrap();
    let evil = URL_SAFE_NO_PAD.encode(f.with("sub", json!("mallory")).to_string());
    let err = f.check(format!("{header}.{evil}.{signature}")).await;
    assert!(
        matches!(err, Err(IdentityError::Token(TokenError::BadSignature))),
        "{err:?}"
    );
}

#[tokio::test]
async fn missing_amr() {
    let Some(f) = fixture(None).await else { return };
    let err = f.check(sign_idp(&f.with("amr", Value::Null))).await;
    assert!(
        matches!(err, Err(IdentityError::Mfa(MfaError::MfaMissing { .. }))),
        "{err:?}"
    );
    let err = f.check(sign_idp(&f.with("amr", json!(["pwd"])))).await;
    let message = err.unwrap_err().to_string();
    assert!(
        message.contains("multi-factor authentication is required"),
        "{message}"
    );
}

#[tokio::test]
async fn stale_auth_time() {
    let Some(f) = fixture(Some(3600)).await else {
        return;
    };
    f.check(sign_idp(&f.good_claims())).await.unwrap();
    let err = f
        .check(sign_idp(&f.with("auth_time", json!(now() - 7200))))
        .await;
    assert!(
        matches!(err, Err(IdentityError::Mfa(MfaError::AuthTooOld { .. }))),
        "{err:?}"
    );
    let err = f.check(sign_idp(&f.with("auth_time", Value::Null))).await;
    assert!(
        matches!(err, Err(IdentityError::Mfa(MfaError::AuthTimeMissing))),
        "{err:?}"
    );
}

// ---- the loopback callback --------------------------------------------

const ISSUER: &str = "http://127.0.0.1:9";

/// Sends one raw GET to the listener and returns the response text.
fn get(port: u16, target: &str) -> std::io::Result<String> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response)
}

async fn listen(
    timeout: Duration,
) -> (u16, tokio::task::JoinHandle<Result<Secret, IdentityError>>) {
    let listener = Listener::bind().await.unwrap();
    let port = listener.port();
    let task = tokio::spawn(async move {
        listener
            .wait(
                "/callback",
                &Secret::new("state-B".into()),
                ISSUER,
                false,
                timeout,
            )
            .await
    });
    (port, task)
}

async fn blocking_get(port: u16, target: &'static str) -> std::io::Result<String> {
    tokio::task::spawn_blocking(move || get(port, target))
        .await
        .unwrap()
}

#[tokio::test]
async fn a_wrong_state_is_refused_and_the_sign_in_goes_on() {
    // A callback carrying another login's state (replayed, or sent by any
    // local process or web page to abort the sign-in) gets the error page,
    // and the listener keeps waiting: the real callback still completes.
    let (port, task) = listen(Duration::from_secs(30)).await;
    for forged in [
        "/callback?code=stolen&state=state-A",
        "/callback?error=access_denied&state=state-A",
        "/callback?code=x",
        "/callback?code=x&state=state-B&state=state-B",
    ] {
        let response = blocking_get(port, forged).await.unwrap();
        assert!(response.starts_with("HTTP/1.1 400"), "{forged}: {response}");
        assert!(!task.is_finished(), "{forged} ended the sign-in");
    }
    let response = blocking_get(port, "/callback?code=the-real-one&state=state-B")
        .await
        .unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let code = task.await.unwrap().unwrap();
    assert_eq!(code.expose(), "the-real-one");
}

#[tokio::test]
async fn callback_on_a_wrong_path() {
    let (port, task) = listen(Duration::from_secs(2)).await;
    let response = blocking_get(port, "/callbackx?code=c&state=state-B")
        .await
        .unwrap();
    assert!(response.starts_with("HTTP/1.1 404"), "{response}");
    let response = blocking_get(port, "/favicon.ico").await.unwrap();
    assert!(response.starts_with("HTTP/1.1 404"), "{response}");
    // Neither completed the login: it times out without a code.
    let err = task.await.unwrap().unwrap_err();
    assert!(
        matches!(err, IdentityError::LoginTimedOut { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_second_callback_after_the_first() {
    let (port, task) = listen(Duration::from_secs(30)).await;
    let response = blocking_get(port, "/callback?code=the-code&state=state-B")
        .await
        .unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("return to the app"), "{response}");
    let code = task.await.unwrap().unwrap();
    assert_eq!(code.expose(), "the-code");
    // The listener is gone: the second callback cannot even connect.
    let second = blocking_get(port, "/callback?code=the-code&state=state-B").await;
    assert!(second.is_err(), "second callback answered: {second:?}");
}

#[tokio::test]
async fn listener_binds_loopback_only() {
    let listener = Listener::bind().await.unwrap();
    let uri = listener.redirect_uri("/callback").unwrap();
    assert_eq!(uri.host_str(), Some("127.0.0.1"));
    assert_eq!(uri.path(), "/callback");
}
