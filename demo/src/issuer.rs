//! **DEMO ONLY — never a real identity provider.** A minimal OpenID issuer
//! on loopback for `sallyport demo`, so the whole product can be shown on a
//! machine with nothing else installed.
//!
//! It does just what the agent's real sign-in path needs, and nothing more:
//! discovery, a JWKS with one ES256 key made at start, the authorization
//! endpoint with a login form that asks for a password *and* a TOTP code
//! (so the MFA rule is exercised for real), the token endpoint with PKCE
//! S256 and rotating refresh tokens, and JWT access tokens for the broker.
//! Everything lives in memory; one user; listens on 127.0.0.1 only.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Form, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use posture::attestation::DeviceKey;
use ring::rand::{SecureRandom, SystemRandom};
use serde::Deserialize;
use serde_json::json;

/// The demo user.
pub const DEMO_USER: &str = "demo@sallyport.example";
/// Its password (printed by the demo; this issuer is loopback-only).
pub const DEMO_PASSWORD: &str = "demo-password";
/// The public client id the demo agent uses.
pub const DEMO_CLIENT_ID: &str = "sallyport-demo";
/// The `acr` the demo issuer puts in MFA logins.
pub const DEMO_ACR: &str = "urn:sallyport:demo:mfa";

const TOKEN_TTL: i64 = 600;

/// A running demo issuer.
#[derive(Debug)]
pub struct DemoIssuer {
    /// `http://127.0.0.1:<port>`.
    pub issuer: String,
    /// The TOTP secret (base32) the demo "types" codes from.
    pub totp_secret: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for DemoIssuer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Why the demo issuer could not start.
#[derive(Debug, thiserror::Error)]
#[error("demo identity provider: {0}")]
pub struct IssuerError(String);

struct Pending {
    redirect_uri: String,
    nonce: Option<String>,
    challenge: String,
    auth_time: i64,
}

struct Inner {
    issuer: String,
    audience: String,
    key: DeviceKey,
    totp_key: Vec<u8>,
    codes: Mutex<HashMap<String, Pending>>,
    refresh: Mutex<HashMap<String, i64>>,
    rng: SystemRandom,
}

type Shared = Arc<Inner>;

fn random_token(rng: &SystemRandom) -> String {
    let mut bytes = [0u8; 32];
    // SystemRandom only fails if the OS has no entropy source at all.
    let _ = rng.fill(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// RFC 6238 TOTP (SHA-1, 6 digits, 30 s) for `unix`.
pub fn totp(key: &[u8], unix: i64) -> String {
    let counter = u64::try_from(unix / 30).unwrap_or(0).to_be_bytes();
    let tag = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, key),
        &counter,
    );
    let mac = tag.as_ref();
    let offset = usize::from(mac[19] & 0x0f);
    let code = (u32::from(mac[offset] & 0x7f) << 24)
        | (u32::from(mac[offset + 1]) << 16)
        | (u32::from(mac[offset + 2]) << 8)
        | u32::from(mac[offset + 3]);
    format!("{:06}", code % 1_000_000)
}

/// RFC 4648 base32 without padding (how authenticator apps show secrets).
fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::new();
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

impl DemoIssuer {
    /// Starts on 127.0.0.1 (ephemeral port), issuing access tokens for `audience`.
    pub async fn start(audience: &str) -> Result<Self, IssuerError> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| IssuerError(e.to_string()))?;
        let addr: SocketAddr = listener
            .local_addr()
            .map_err(|e| IssuerError(e.to_string()))?;
        let issuer = format!("http://{addr}");
        let rng = SystemRandom::new();
        let mut totp_key = vec![0u8; 20];
        rng.fill(&mut totp_key)
            .map_err(|_| IssuerError("no entropy".to_owned()))?;
        let totp_secret = base32(&totp_key);
        let inner = Arc::new(Inner {
            issuer: issuer.clone(),
            audience: audience.to_owned(),
            key: DeviceKey::generate(),
            totp_key,
            codes: Mutex::new(HashMap::new()),
            refresh: Mutex::new(HashMap::new()),
            rng,
        });
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .route("/authorize", get(login_form).post(login_submit))
            .route("/token", post(token))
            .with_state(inner);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(DemoIssuer {
            issuer,
            totp_secret,
            task,
        })
    }

    /// The TOTP code an authenticator app would show now.
    pub fn current_code(&self) -> String {
        let key = base32_decode(&self.totp_secret);
        totp(&key, now())
    }
}

fn base32_decode(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut buffer, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        let value = match c {
            b'A'..=b'Z' => c - b'A',
            b'2'..=b'7' => c - b'2' + 26,
            _ => continue,
        };
        buffer = (buffer << 5) | u32::from(value);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push(((buffer >> bits) & 0xff) as u8);
        }
    }
    out
}

async fn discovery(State(s): State<Shared>) -> impl IntoResponse {
    axum::Json(json!({
        "issuer": s.issuer,
        "authorization_endpoint": format!("{}/authorize", s.issuer),
        "token_endpoint": format!("{}/token", s.issuer),
        "jwks_uri": format!("{}/jwks", s.issuer),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "code_challenge_methods_supported": ["S256"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "token_endpoint_auth_methods_supported": ["none"],
    }))
}

async fn jwks(State(s): State<Shared>) -> impl IntoResponse {
    let mut jwk = serde_json::to_value(s.key.public_jwk()).unwrap_or_default();
    if let Some(map) = jwk.as_object_mut() {
        map.insert("kid".into(), json!(s.key.kid()));
        map.insert("alg".into(), json!("ES256"));
        map.insert("use".into(), json!("sig"));
    }
    axum::Json(json!({ "keys": [jwk] }))
}

#[derive(Debug, Deserialize)]
struct AuthorizeQuery {
    client_id: String,
    redirect_uri: String,
    state: Option<String>,
    nonce: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn redirect_allowed(uri: &str) -> bool {
    uri.starts_with("http://127.0.0.1:") && uri.contains("/callback")
}

async fn login_form(Query(q): Query<AuthorizeQuery>) -> Response {
    if q.client_id != DEMO_CLIENT_ID || !redirect_allowed(&q.redirect_uri) {
        return (StatusCode::BAD_REQUEST, "unknown client or redirect").into_response();
    }
    if q.code_challenge_method.as_deref() != Some("S256") || q.code_challenge.is_none() {
        return (StatusCode::BAD_REQUEST, "PKCE S256 is required").into_response();
    }
    let hidden = |name: &str, value: &str| {
        format!(
            "<input type=\"hidden\" name=\"{name}\" value=\"{}\">",
            escape(value)
        )
    };
    Html(format!(
        "<!doctype html><title>Sallyport demo sign-in (DEMO ONLY)</title>\
         <h1>Sallyport demo identity provider — demo only</h1>\
         <form method=\"post\" action=\"/authorize\">{}{}{}{}{}\
         <label>Email <input name=\"username\"></label>\
         <label>Password <input name=\"password\" type=\"password\"></label>\
         <label>Authenticator code <input name=\"otp\"></label>\
         <button>Sign in</button></form>",
        hidden("client_id", &q.client_id),
        hidden("redirect_uri", &q.redirect_uri),
        hidden("state", q.state.as_deref().unwrap_or("")),
        hidden("nonce", q.nonce.as_deref().unwrap_or("")),
        hidden("code_challenge", q.code_challenge.as_deref().unwrap_or("")),
    ))
    .into_response()
}

#[derive(Debug, Deserialize)]
struct LoginForm {
    client_id: String,
    redirect_uri: String,
    state: String,
    nonce: String,
    code_challenge: String,
    username: String,
    password: String,
    otp: String,
}

async fn login_submit(State(s): State<Shared>, Form(f): Form<LoginForm>) -> Response {
    if f.client_id != DEMO_CLIENT_ID || !redirect_allowed(&f.redirect_uri) {
        return (StatusCode::BAD_REQUEST, "unknown client or redirect").into_response();
    }
    let t = now();
    let code_ok = [t - 30, t, t + 30]
        .iter()
        .any(|at| agent::secrets::ct_eq(&totp(&s.totp_key, *at), f.otp.trim()));
    if f.username != DEMO_USER || !agent::secrets::ct_eq(&f.password, DEMO_PASSWORD) || !code_ok {
        return (
            StatusCode::UNAUTHORIZED,
            Html("Wrong email, password or authenticator code."),
        )
            .into_response();
    }
    let code = random_token(&s.rng);
    if let Ok(mut codes) = s.codes.lock() {
        codes.insert(
            code.clone(),
            Pending {
                redirect_uri: f.redirect_uri.clone(),
                nonce: Some(f.nonce).filter(|n| !n.is_empty()),
                challenge: f.code_challenge,
                auth_time: t,
            },
        );
    }
    let mut target = f.redirect_uri;
    target.push_str(if target.contains('?') { "&" } else { "?" });
    target.push_str(&format!(
        "code={code}&state={}&iss={}",
        url::form_urlencoded::byte_serialize(f.state.as_bytes()).collect::<String>(),
        url::form_urlencoded::byte_serialize(s.issuer.as_bytes()).collect::<String>()
    ));
    Redirect::to(&target).into_response()
}

#[derive(Debug, Deserialize)]
struct TokenForm {
    grant_type: String,
    code: Option<String>,
    redirect_uri: Option<String>,
    code_verifier: Option<String>,
    refresh_token: Option<String>,
}

fn token_error(error: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({ "error": error })),
    )
        .into_response()
}

async fn token(State(s): State<Shared>, Form(f): Form<TokenForm>) -> Response {
    match f.grant_type.as_str() {
        "authorization_code" => {
            let pending = f
                .code
                .as_deref()
                .and_then(|code| s.codes.lock().ok()?.remove(code));
            let Some(pending) = pending else {
                return token_error("invalid_grant");
            };
            let verifier = f.code_verifier.unwrap_or_default();
            let digest = ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes());
            if URL_SAFE_NO_PAD.encode(digest) != pending.challenge
                || f.redirect_uri.as_deref() != Some(pending.redirect_uri.as_str())
            {
                return token_error("invalid_grant");
            }
            issue(&s, pending.nonce, pending.auth_time)
        }
        "refresh_token" => {
            let auth_time = f
                .refresh_token
                .as_deref()
                .and_then(|token| s.refresh.lock().ok()?.remove(token));
            match auth_time {
                Some(auth_time) => issue(&s, None, auth_time),
                None => token_error("invalid_grant"),
            }
        }
        _ => token_error("unsupported_grant_type"),
    }
}

fn sign(s: &Inner, claims: &serde_json::Value, typ: &str) -> String {
    let header = json!({ "alg": "ES256", "typ": typ, "kid": s.key.kid() });
    s.key
        .sign_compact(header.to_string().as_bytes(), claims.to_string().as_bytes())
}

fn issue(s: &Inner, nonce: Option<String>, auth_time: i64) -> Response {
    let t = now();
    let access = sign(
        s,
        &json!({
            "iss": s.issuer, "sub": DEMO_USER, "aud": s.audience,
            "client_id": DEMO_CLIENT_ID, "iat": t, "exp": t + TOKEN_TTL,
            "scope": "openid profile email offline_access",
            // RFC 9068 §2.2.1: the sign-in behind the token, so the broker
            // enforces MFA and session revocation itself, as in production.
            "auth_time": auth_time, "amr": ["pwd", "otp"], "acr": DEMO_ACR,
        }),
        "at+jwt",
    );
    let mut id_claims = json!({
        "iss": s.issuer, "sub": DEMO_USER, "aud": DEMO_CLIENT_ID, "azp": DEMO_CLIENT_ID,
        "iat": t, "exp": t + TOKEN_TTL, "auth_time": auth_time,
        "amr": ["pwd", "otp"], "acr": DEMO_ACR, "email": DEMO_USER,
    });
    if let (Some(nonce), Some(map)) = (nonce, id_claims.as_object_mut()) {
        map.insert("nonce".into(), json!(nonce));
    }
    let id_token = sign(s, &id_claims, "JWT");
    let refresh = random_token(&s.rng);
    if let Ok(mut tokens) = s.refresh.lock() {
        tokens.insert(refresh.clone(), auth_time);
    }
    axum::Json(json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": TOKEN_TTL,
        "id_token": id_token,
        "refresh_token": refresh,
        "scope": "openid profile email offline_access",
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totp_matches_rfc6238_vector() {
        // RFC 6238 appendix B, SHA-1, T = 59 s: 94287082 -> last 6 digits.
        assert_eq!(totp(b"12345678901234567890", 59), "287082");
        assert_eq!(totp(b"12345678901234567890", 1_111_111_109), "081804");
    }

    #[test]
    fn base32_round_trips() {
        let bytes = b"sallyport demo key!!";
        assert_eq!(base32_decode(&base32(bytes)), bytes);
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI");
    }
}
