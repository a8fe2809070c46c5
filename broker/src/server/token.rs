//! Access-token validation: the same rules the agent applies to its tokens
//! (docs/ARCHITECTURE.md flow 1, RFC 8725, RFC 9068): signature with the issuer's JWKS
//! under an algorithm allowlist, `typ` `at+jwt` when set, `iss` exact, `aud`
//! contains ours, `exp`/`nbf` with bounded skew. An ID token is refused by
//! name ([`TokenError::NotAccessToken`]): its `aud` is the agent's client
//! id, which the configuration keeps apart from the broker's audience.
//! [`validate`] is pure; [`JwksCache`] fetches keys (discovery → `jwks_uri`,
//! https only, no redirects followed), uses them for at most the configured
//! TTL on the broker's clock, and refetches once when a `kid` is unknown, so
//! issuer key rotation works without a restart, a key the issuer withdraws
//! stops working within the TTL, and an unknown key fails closed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::sync::Mutex;

use super::clock::Clock;
use super::jose::{self, JwkSet, RingVerifier};
use crate::api::ProblemType;

/// Why an access token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Structure, algorithm or signature.
    #[error("{0}")]
    Invalid(String),
    /// No key in the issuer's JWKS has the token's `kid`.
    #[error("no issuer key has kid {0:?}")]
    UnknownKid(String),
    /// `exp` passed or `nbf` not reached.
    #[error("{0}")]
    Expired(String),
    /// `iss` or `aud` is not ours.
    #[error("{0}")]
    Audience(String),
    /// An ID token (or another JWT that is not an access token) presented
    /// where an access token is required.
    #[error("{0}")]
    NotAccessToken(String),
    /// The issuer's keys could not be fetched.
    #[error("cannot fetch the issuer's keys: {0}")]
    Unavailable(String),
}

impl TokenError {
    /// The problem type the API answers with.
    pub fn problem(&self) -> ProblemType {
        match self {
            TokenError::Invalid(_) | TokenError::UnknownKid(_) => ProblemType::TokenInvalid,
            TokenError::Expired(_) => ProblemType::TokenExpired,
            TokenError::Audience(_) => ProblemType::TokenWrongAudience,
            TokenError::NotAccessToken(_) => ProblemType::TokenNotAccessToken,
            TokenError::Unavailable(_) => ProblemType::IssuerUnavailable,
        }
    }
}

/// What a token must satisfy.
#[derive(Debug, Clone)]
pub struct Rules {
    /// Exact issuer.
    pub issuer: String,
    /// Audience that must be among `aud`.
    pub audience: String,
    /// The agent's client id: the `aud` of its ID tokens, never ours.
    pub client_id: String,
    /// Allowed clock skew, seconds (kept small: 60 s).
    pub skew: i64,
    /// The claim that lists the user's groups (`[access] groups_claim`).
    pub groups_claim: String,
}

/// The claims the broker uses from a valid token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessClaims {
    /// The user.
    pub sub: String,
    /// Issued at (Unix seconds); 0 when absent.
    pub iat: i64,
    /// Expiry (Unix seconds): the session bound for grants.
    pub exp: i64,
    /// When the user signed in (Unix seconds), if the token says: what a
    /// session revocation and the MFA age limit are measured against. A
    /// refresh keeps it; only a new sign-in moves it.
    pub auth_time: Option<i64>,
    /// Authentication context class, if the token says.
    pub acr: Option<String>,
    /// Authentication methods (RFC 8176); empty when absent.
    pub amr: Vec<String>,
    /// The `email` claim, when the token carries one as a string.
    pub email: Option<String>,
    /// The groups claim: a list of strings (other entries ignored) or one
    /// string; empty when absent. Only the access policy reads it.
    pub groups: Vec<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct RawClaims {
    iss: Option<String>,
    sub: Option<String>,
    aud: Option<Audience>,
    exp: Option<i64>,
    nbf: Option<i64>,
    iat: Option<i64>,
    auth_time: Option<i64>,
    acr: Option<String>,
    amr: Option<Vec<String>>,
    /// Everything else (email, the groups claim), read leniently: a claim
    /// of an unexpected type is ignored, not a reason to refuse the token.
    #[serde(flatten)]
    other: serde_json::Map<String, serde_json::Value>,
}

/// The groups in `value`: a list of strings, or one string.
fn groups_of(value: Option<&serde_json::Value>) -> Vec<String> {
    match value {
        Some(serde_json::Value::String(one)) => vec![one.clone()],
        Some(serde_json::Value::Array(many)) => many
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .take(1000)
            .collect(),
        _ => Vec::new(),
    }
}

/// Validates `token` against `jwks` and `rules` at `now` (Unix seconds).
pub fn validate(
    token: &str,
    jwks: &JwkSet,
    rules: &Rules,
    now: i64,
) -> Result<AccessClaims, TokenError> {
    let jws = jose::parse(token).map_err(|e| TokenError::Invalid(e.to_string()))?;
    // RFC 9068 §4: an access token says `at+jwt` when it says anything.
    // A plain `JWT` is what ID tokens (and our own EATs' cousins) carry, so
    // it is refused rather than guessed at; a token without `typ` is judged
    // by its audience below.
    if let Some(typ) = jws.header.typ.as_deref() {
        let lower = typ.to_ascii_lowercase();
        if !matches!(lower.as_str(), "at+jwt" | "application/at+jwt") {
            return Err(TokenError::NotAccessToken(format!(
                "typ {typ:?} is not an access token (RFC 9068 access tokens carry typ at+jwt); send the access token, not the ID token"
            )));
        }
    }
    let kid = jws.header.kid.clone().unwrap_or_default();
    let candidates: Vec<_> = jwks
        .keys
        .iter()
        .filter(|k| k.common.key_id.as_deref().unwrap_or_default() == kid)
        .collect();
    if candidates.is_empty() {
        return Err(TokenError::UnknownKid(kid));
    }
    let verified = candidates.iter().any(|jwk| {
        RingVerifier::from_jwk(jws.header.alg, jwk).is_ok_and(|v| v.verify_jws(&jws).is_ok())
    });
    if !verified {
        return Err(TokenError::Invalid(
            "signature does not verify with the issuer's key".into(),
        ));
    }
    let claims: RawClaims = serde_json::from_slice(&jws.payload)
        .map_err(|e| TokenError::Invalid(format!("claims: {e}")))?;
    if claims.iss.as_deref() != Some(rules.issuer.as_str()) {
        return Err(TokenError::Audience(format!(
            "issuer {:?} is not {:?}",
            claims.iss.unwrap_or_default(),
            rules.issuer
        )));
    }
    let audiences = match claims.aud {
        Some(Audience::One(a)) => vec![a],
        Some(Audience::Many(a)) => a,
        None => vec![],
    };
    if !audiences.iter().any(|a| a == &rules.audience) {
        if audiences.iter().any(|a| a == &rules.client_id) {
            return Err(TokenError::NotAccessToken(format!(
                "this is an ID token (aud {:?} is the agent's client id); send the access token for {:?}",
                rules.client_id, rules.audience
            )));
        }
        return Err(TokenError::Audience(format!(
            "audience {audiences:?} does not contain {:?}",
            rules.audience
        )));
    }
    let exp = claims
        .exp
        .ok_or_else(|| TokenError::Invalid("the token has no exp".into()))?;
    // Saturating: the times are the issuer's numbers, any i64.
    if exp.saturating_add(rules.skew) <= now {
        return Err(TokenError::Expired(format!(
            "expired {} s ago",
            now.saturating_sub(exp)
        )));
    }
    if let Some(nbf) = claims.nbf
        && nbf.saturating_sub(rules.skew) > now
    {
        return Err(TokenError::Expired(format!(
            "not valid for another {} s",
            nbf.saturating_sub(now)
        )));
    }
    let sub = claims
        .sub
        .filter(|s| !s.is_empty())
        .ok_or_else(|| TokenError::Invalid("the token has no sub".into()))?;
    Ok(AccessClaims {
        sub,
        iat: claims.iat.unwrap_or(0),
        exp,
        auth_time: claims.auth_time,
        acr: claims.acr,
        amr: claims.amr.unwrap_or_default(),
        email: claims
            .other
            .get("email")
            .and_then(|v| v.as_str())
            .map(str::to_owned),
        groups: groups_of(claims.other.get(&rules.groups_claim)),
    })
}

/// Fetched JWKS, used for at most its TTL on the broker's clock (then
/// fetched again before the next validation), and refreshed on unknown
/// `kid` at most once per [`JwksCache::MIN_REFETCH`] (so a flood of bogus
/// kids cannot hammer the IdP). When a due refetch fails, validation fails
/// (`issuer-unavailable`) rather than trusting keys the issuer may have
/// withdrawn.
#[derive(Debug, Clone)]
pub struct JwksCache {
    inner: Arc<Mutex<Cached>>,
    http: reqwest::Client,
    issuer: String,
    ttl: i64,
    clock: Arc<dyn Clock>,
}

#[derive(Debug, Default)]
struct Cached {
    jwks: Arc<JwkSet>,
    /// Monotonic time of the last fetch: paces unknown-kid refetches.
    fetched_at: Option<Instant>,
    /// Broker-clock time of the last fetch: decides the TTL.
    fetched_unix: i64,
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

impl JwksCache {
    /// Least time between two fetches triggered by unknown kids. Measured
    /// on the monotonic clock, not the broker's [`super::clock::Clock`]: it
    /// paces requests to the IdP and decides nothing about a token, and a
    /// wall-clock jump backwards must not stall key rotation.
    pub const MIN_REFETCH: Duration = Duration::from_secs(10);

    /// A cache for `issuer` whose keys are used for `ttl` on `clock`;
    /// nothing is fetched until first use. `http` must not follow
    /// redirects (a 3xx answer is refused here either way).
    pub fn new(issuer: &str, http: reqwest::Client, ttl: Duration, clock: Arc<dyn Clock>) -> Self {
        Self {
            inner: Arc::default(),
            http,
            issuer: issuer.trim_end_matches('/').to_owned(),
            ttl: i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX),
            clock,
        }
    }

    /// GETs `url` as JSON: a redirect is an error (the issuer's documents
    /// are fetched from where configuration and discovery say, never from
    /// wherever a response points), as is any other non-2xx answer.
    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        what: &str,
        url: &str,
    ) -> Result<T, TokenError> {
        let unavailable = |e: reqwest::Error| TokenError::Unavailable(format!("{what}: {e}"));
        let response = self.http.get(url).send().await.map_err(unavailable)?;
        let status = response.status();
        if status.is_redirection() {
            return Err(TokenError::Unavailable(format!(
                "{what} {url} answered {status} (a redirect); redirects are not followed"
            )));
        }
        response
            .error_for_status()
            .map_err(unavailable)?
            .json()
            .await
            .map_err(unavailable)
    }

    async fn fetch(&self) -> Result<JwkSet, TokenError> {
        let url = format!("{}/.well-known/openid-configuration", self.issuer);
        let discovery: Discovery = self.get_json("discovery", &url).await?;
        // OIDC Discovery §4.3: the document must name the issuer we asked.
        if discovery.issuer.trim_end_matches('/') != self.issuer {
            return Err(TokenError::Unavailable(format!(
                "discovery names issuer {:?}, expected {:?}",
                discovery.issuer, self.issuer
            )));
        }
        // The keys decide every token: fetch them only over TLS (or from
        // a loopback issuer in tests), as the issuer itself must be.
        if !crate::api::https_or_loopback(&discovery.jwks_uri) {
            return Err(TokenError::Unavailable(format!(
                "discovery names jwks_uri {:?}, which is not https",
                discovery.jwks_uri
            )));
        }
        self.get_json("jwks", &discovery.jwks_uri).await
    }

    async fn current(&self, refresh: bool) -> Result<Arc<JwkSet>, TokenError> {
        let mut cached = self.inner.lock().await;
        let now = self.clock.now();
        let stale = match cached.fetched_at {
            None => true,
            // Past the TTL, or the clock went backwards: fetch again.
            Some(_) if now.saturating_sub(cached.fetched_unix) >= self.ttl => true,
            Some(_) if now < cached.fetched_unix => true,
            Some(at) => refresh && at.elapsed() >= Self::MIN_REFETCH,
        };
        if stale {
            let jwks = self.fetch().await?;
            cached.jwks = Arc::new(jwks);
            cached.fetched_at = Some(Instant::now());
            cached.fetched_unix = now;
        }
        Ok(cached.jwks.clone())
    }

    /// Validates `token`, refetching the JWKS once if its `kid` is unknown.
    pub async fn validate(
        &self,
        token: &str,
        rules: &Rules,
        now: i64,
    ) -> Result<AccessClaims, TokenError> {
        let jwks = self.current(false).await?;
        match validate(token, &jwks, rules, now) {
            Err(TokenError::UnknownKid(_)) => {
                let jwks = self.current(true).await?;
                validate(token, &jwks, rules, now)
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use posture::attestation::DeviceKey;

    const NOW: i64 = 1_800_000_000;

    fn jwks(key: &DeviceKey, kid: &str) -> JwkSet {
        serde_json::from_value(serde_json::json!({"keys": [{
            "kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256", "use": "sig",
            "x": key.public_jwk().x, "y": key.public_jwk().y,
        }]}))
        .unwrap()
    }

    fn rules() -> Rules {
        Rules {
            issuer: "https://idp.test".into(),
            audience: "sallyport-broker".into(),
            client_id: "sallyport-desktop".into(),
            skew: 60,
            groups_claim: "groups".into(),
        }
    }

    fn token(key: &DeviceKey, kid: &str, claims: serde_json::Value) -> String {
        let header = format!(r#"{{"alg":"ES256","typ":"at+jwt","kid":"{kid}"}}"#);
        key.sign_compact(header.as_bytes(), claims.to_string().as_bytes())
    }

    fn good() -> serde_json::Value {
        serde_json::json!({"iss": "https://idp.test", "sub": "alice", "aud": ["x", "sallyport-broker"],
            "iat": NOW - 10, "exp": NOW + 300})
    }

    #[test]
    fn accepts_a_valid_token() {
        let key = DeviceKey::generate();
        let c = validate(&token(&key, "k1", good()), &jwks(&key, "k1"), &rules(), NOW).unwrap();
        assert_eq!(
            c,
            AccessClaims {
                sub: "alice".into(),
                iat: NOW - 10,
                exp: NOW + 300,
                auth_time: None,
                acr: None,
                amr: vec![],
                email: None,
                groups: vec![],
            }
        );
        let mut claims = good();
        claims["auth_time"] = (NOW - 100).into();
        claims["acr"] = "urn:x:mfa".into();
        claims["amr"] = serde_json::json!(["pwd", "otp"]);
        claims["email"] = "alice@example.com".into();
        claims["groups"] = serde_json::json!(["finance", 7, "eng"]);
        let c = validate(
            &token(&key, "k1", claims.clone()),
            &jwks(&key, "k1"),
            &rules(),
            NOW,
        )
        .unwrap();
        assert_eq!(c.email.as_deref(), Some("alice@example.com"));
        assert_eq!(c.groups, vec!["finance".to_owned(), "eng".to_owned()]);
        // Another claim name, a single string, or an odd type.
        let mut roles = rules();
        roles.groups_claim = "roles".into();
        claims["roles"] = "admins".into();
        claims["email"] = 5.into();
        let r = validate(
            &token(&key, "k1", claims.clone()),
            &jwks(&key, "k1"),
            &roles,
            NOW,
        )
        .unwrap();
        assert_eq!(r.groups, vec!["admins".to_owned()]);
        assert_eq!(r.email, None, "a non-string email is ignored, not fatal");
        let c = validate(&token(&key, "k1", claims), &jwks(&key, "k1"), &rules(), NOW).unwrap();
        assert_eq!(c.auth_time, Some(NOW - 100));
        assert_eq!(c.acr.as_deref(), Some("urn:x:mfa"));
        assert_eq!(c.amr, vec!["pwd".to_owned(), "otp".to_owned()]);
    }

    #[test]
    fn an_id_token_is_not_an_access_token() {
        let key = DeviceKey::generate();
        let set = jwks(&key, "k1");
        let signed = |typ: Option<&str>, aud: &str| {
            let header = match typ {
                Some(t) => format!(r#"{{"alg":"ES256","typ":"{t}","kid":"k1"}}"#),
                None => r#"{"alg":"ES256","kid":"k1"}"#.to_owned(),
            };
            let mut c = good();
            c["aud"] = aud.into();
            key.sign_compact(header.as_bytes(), c.to_string().as_bytes())
        };
        // typ JWT (what ID tokens carry) is refused even with our audience.
        for typ in ["JWT", "jwt", "id+jwt"] {
            assert!(matches!(
                validate(&signed(Some(typ), "sallyport-broker"), &set, &rules(), NOW),
                Err(TokenError::NotAccessToken(_))
            ));
        }
        for typ in ["at+jwt", "AT+JWT", "application/at+jwt"] {
            assert!(validate(&signed(Some(typ), "sallyport-broker"), &set, &rules(), NOW).is_ok());
        }
        // No typ: an ID token is told apart by its audience, the client id.
        assert!(validate(&signed(None, "sallyport-broker"), &set, &rules(), NOW).is_ok());
        let e = validate(&signed(None, "sallyport-desktop"), &set, &rules(), NOW).unwrap_err();
        assert!(matches!(e, TokenError::NotAccessToken(_)), "{e:?}");
        assert_eq!(e.problem(), ProblemType::TokenNotAccessToken);
        assert!(matches!(
            validate(&signed(None, "someone-else"), &set, &rules(), NOW),
            Err(TokenError::Audience(_))
        ));
    }

    #[test]
    fn refusals() {
        let key = DeviceKey::generate();
        let set = jwks(&key, "k1");
        let with = |f: &dyn Fn(&mut serde_json::Value)| {
            let mut c = good();
            f(&mut c);
            validate(&token(&key, "k1", c), &set, &rules(), NOW)
        };
        assert!(matches!(
            with(&|c| c["aud"] = "other".into()),
            Err(TokenError::Audience(_))
        ));
        assert!(matches!(
            with(&|c| c["iss"] = "https://evil".into()),
            Err(TokenError::Audience(_))
        ));
        assert!(matches!(
            with(&|c| c["exp"] = (NOW - 61).into()),
            Err(TokenError::Expired(_))
        ));
        assert!(
            with(&|c| c["exp"] = (NOW - 30).into()).is_ok(),
            "within skew"
        );
        assert!(matches!(
            with(&|c| c["nbf"] = (NOW + 120).into()),
            Err(TokenError::Expired(_))
        ));
        // `exp + skew`, `now - exp` and `nbf - skew` overflowed at the
        // ends of i64 (builds with overflow checks panicked).
        assert!(matches!(
            with(&|c| c["exp"] = i64::MIN.into()),
            Err(TokenError::Expired(_))
        ));
        assert!(with(&|c| c["exp"] = i64::MAX.into()).is_ok());
        assert!(matches!(
            with(&|c| c["nbf"] = i64::MAX.into()),
            Err(TokenError::Expired(_))
        ));
        assert!(with(&|c| c["nbf"] = i64::MIN.into()).is_ok());
        assert!(matches!(
            with(&|c| {
                c.as_object_mut().unwrap().remove("exp");
            }),
            Err(TokenError::Invalid(_))
        ));
        assert!(matches!(
            with(&|c| {
                c.as_object_mut().unwrap().remove("sub");
            }),
            Err(TokenError::Invalid(_))
        ));
        // Forged: signed by another key under the issuer's kid.
        let forged = token(&DeviceKey::generate(), "k1", good());
        assert!(matches!(
            validate(&forged, &set, &rules(), NOW),
            Err(TokenError::Invalid(_))
        ));
        // Unknown kid: the cache refetches.
        assert!(matches!(
            validate(&token(&key, "k2", good()), &set, &rules(), NOW),
            Err(TokenError::UnknownKid(_))
        ));
        // alg none / HS256 never reach a key.
        for alg in ["none", "HS256"] {
            let h = format!(r#"{{"alg":"{alg}","kid":"k1"}}"#);
            let t = key.sign_compact(h.as_bytes(), good().to_string().as_bytes());
            assert!(matches!(
                validate(&t, &set, &rules(), NOW),
                Err(TokenError::Invalid(_))
            ));
        }
        // Our own EATs are not access tokens.
        let h = r#"{"alg":"ES256","typ":"eat+jwt","kid":"k1"}"#;
        let t = key.sign_compact(h.as_bytes(), good().to_string().as_bytes());
        assert!(matches!(
            validate(&t, &set, &rules(), NOW),
            Err(TokenError::NotAccessToken(_))
        ));
    }
}
