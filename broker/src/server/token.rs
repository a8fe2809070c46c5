//! Access-token validation: the same rules the agent applies to its tokens
//! (docs/ARCHITECTURE.md flow 1, RFC 8725, RFC 9068): signature with the issuer's JWKS
//! under an algorithm allowlist, `iss` exact, `aud` contains ours, `exp`/`nbf`
//! with bounded skew. [`validate`] is pure; [`JwksCache`] fetches keys
//! (discovery → `jwks_uri`) and refetches once when a `kid` is unknown, so
//! issuer key rotation works without a restart and an unknown key fails
//! closed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::sync::Mutex;

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
    /// Allowed clock skew, seconds (kept small: 60 s).
    pub skew: i64,
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
}

/// Validates `token` against `jwks` and `rules` at `now` (Unix seconds).
pub fn validate(
    token: &str,
    jwks: &JwkSet,
    rules: &Rules,
    now: i64,
) -> Result<AccessClaims, TokenError> {
    let jws = jose::parse(token).map_err(|e| TokenError::Invalid(e.to_string()))?;
    // RFC 9068 `at+jwt`, or a plain `JWT` as many IdPs issue; never an ID
    // token shape we do not expect (e.g. our own `eat+jwt`).
    if let Some(typ) = jws.header.typ.as_deref() {
        let typ = typ.to_ascii_lowercase();
        if !matches!(typ.as_str(), "jwt" | "at+jwt" | "application/at+jwt") {
            return Err(TokenError::Invalid(format!(
                "typ {typ:?} is not an access token"
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
        return Err(TokenError::Audience(format!(
            "audience {audiences:?} does not contain {:?}",
            rules.audience
        )));
    }
    let exp = claims
        .exp
        .ok_or_else(|| TokenError::Invalid("the token has no exp".into()))?;
    if exp + rules.skew <= now {
        return Err(TokenError::Expired(format!("expired {} s ago", now - exp)));
    }
    if let Some(nbf) = claims.nbf
        && nbf - rules.skew > now
    {
        return Err(TokenError::Expired(format!(
            "not valid for another {} s",
            nbf - now
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
    })
}

/// Fetched JWKS, refreshed on unknown `kid` at most once per
/// [`JwksCache::MIN_REFETCH`] (so a flood of bogus kids cannot hammer the IdP).
#[derive(Debug, Clone)]
pub struct JwksCache {
    inner: Arc<Mutex<Cached>>,
    http: reqwest::Client,
    issuer: String,
}

#[derive(Debug, Default)]
struct Cached {
    jwks: Arc<JwkSet>,
    fetched_at: Option<Instant>,
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

    /// A cache for `issuer`; nothing is fetched until first use.
    pub fn new(issuer: &str, http: reqwest::Client) -> Self {
        Self {
            inner: Arc::default(),
            http,
            issuer: issuer.trim_end_matches('/').to_owned(),
        }
    }

    async fn fetch(&self) -> Result<JwkSet, TokenError> {
        let unavailable = |e: reqwest::Error| TokenError::Unavailable(e.to_string());
        let url = format!("{}/.well-known/openid-configuration", self.issuer);
        let discovery: Discovery = self
            .http
            .get(&url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(unavailable)?
            .json()
            .await
            .map_err(unavailable)?;
        // OIDC Discovery §4.3: the document must name the issuer we asked.
        if discovery.issuer.trim_end_matches('/') != self.issuer {
            return Err(TokenError::Unavailable(format!(
                "discovery names issuer {:?}, expected {:?}",
                discovery.issuer, self.issuer
            )));
        }
        self.http
            .get(&discovery.jwks_uri)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(unavailable)?
            .json()
            .await
            .map_err(unavailable)
    }

    async fn current(&self, refresh: bool) -> Result<Arc<JwkSet>, TokenError> {
        let mut cached = self.inner.lock().await;
        let stale = match cached.fetched_at {
            None => true,
            Some(at) => refresh && at.elapsed() >= Self::MIN_REFETCH,
        };
        if stale {
            let jwks = self.fetch().await?;
            cached.jwks = Arc::new(jwks);
            cached.fetched_at = Some(Instant::now());
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
            skew: 60,
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
                exp: NOW + 300
            }
        );
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
            Err(TokenError::Invalid(_))
        ));
    }
}
