//! ID token validation, OIDC Core 3.1.3.7 (and 3.1.3.8 for `at_hash`).
//!
//! Pure: takes the compact JWT, the issuer's keys, what this login expects
//! and the current time, and returns the checked claims or one specific
//! [`TokenError`]. No sockets, no clock. The driver (`client.rs`) handles
//! [`TokenError::UnknownKey`] by refetching the JWKS once (OIDC Core 10.1.1)
//! and calling again; a second `UnknownKey` is final (fail closed).
//!
//! Signature checks use `jsonwebtoken`'s primitive `crypto::verify` only;
//! the header, the algorithm policy and every claim are checked here, so each
//! rule has its own error and its own test.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::{Deserialize, Serialize};

use crate::secrets::ct_eq;

/// Algorithms an ID token may be signed with by default: asymmetric only
/// (RFC 8725). `none` and HMAC are refused with their own errors.
pub const DEFAULT_ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// Why an ID token was refused. Each rule has its own variant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a JWT, or a part does not decode.
    #[error("the identity provider sent a malformed ID token ({0})")]
    Malformed(String),
    /// `alg: none`.
    #[error("the ID token is unsigned (alg \"none\"); refusing it")]
    Unsigned,
    /// HS256 and friends: the "secret" of a public client is its public id.
    #[error(
        "the ID token is signed with the shared-secret algorithm {0}, which a public client cannot trust; refusing it"
    )]
    SymmetricAlgorithm(String),
    /// An asymmetric algorithm outside the allowlist.
    #[error("the ID token is signed with {0}, which is not on the allowed algorithm list")]
    AlgorithmNotAllowed(String),
    /// No key with this `kid` (after one JWKS refetch, when from the driver).
    #[error(
        "the ID token was signed with key {kid:?}, which the identity provider does not publish"
    )]
    UnknownKey {
        /// The token's `kid` (or "(none)").
        kid: String,
    },
    /// The key exists but does not fit the algorithm.
    #[error("the identity provider's key {kid:?} cannot verify {alg} signatures")]
    KeyMismatch {
        /// The key id.
        kid: String,
        /// The token's algorithm.
        alg: String,
    },
    /// Signature does not verify.
    #[error("the ID token's signature is invalid (tampered, or not from the identity provider)")]
    BadSignature,
    /// `iss` differs from the discovered issuer.
    #[error("the ID token comes from issuer {found:?}, expected exactly {expected:?}")]
    WrongIssuer {
        /// The configured issuer.
        expected: String,
        /// What the token says.
        found: String,
    },
    /// `aud` lacks our client id.
    #[error("the ID token is not meant for this app (audience {found:?} lacks {client_id:?})")]
    WrongAudience {
        /// Our client id.
        client_id: String,
        /// The token's audiences.
        found: Vec<String>,
    },
    /// `aud` names other parties we do not trust.
    #[error("the ID token is also meant for untrusted audiences {0:?}")]
    UntrustedAudience(Vec<String>),
    /// `azp` present and not our client id.
    #[error("the ID token was issued to another client (azp {found:?})")]
    WrongAuthorizedParty {
        /// The token's `azp`.
        found: String,
    },
    /// Past `exp` (+ skew).
    #[error(
        "the ID token expired at {exp} (now {now}); check this computer's clock if this repeats"
    )]
    Expired {
        /// `exp`, Unix seconds.
        exp: i64,
        /// The time we checked at.
        now: i64,
    },
    /// `iat` in the future beyond the skew.
    #[error(
        "the ID token claims to be issued in the future ({iat}, now {now}); check this computer's clock"
    )]
    IssuedInFuture {
        /// `iat`.
        iat: i64,
        /// Now.
        now: i64,
    },
    /// `iat` too long ago for a token we just received.
    #[error("the ID token was issued too long ago ({iat}, now {now}); it may be replayed")]
    IssuedTooLongAgo {
        /// `iat`.
        iat: i64,
        /// Now.
        now: i64,
    },
    /// `nonce` absent though we sent one.
    #[error(
        "the ID token has no nonce, but this sign-in sent one; refusing a possibly replayed token"
    )]
    MissingNonce,
    /// `nonce` differs.
    #[error("the ID token's nonce does not match this sign-in; refusing a possibly replayed token")]
    NonceMismatch,
    /// `at_hash` differs from the access token we got with it.
    #[error(
        "the ID token's at_hash does not match the access token; the tokens were mixed or swapped"
    )]
    AccessTokenHashMismatch,
    /// A required claim is missing.
    #[error("the ID token lacks the required claim {0:?}")]
    MissingClaim(&'static str),
}

/// What a token must match.
#[derive(Debug, Clone)]
pub struct Expectations<'a> {
    /// The discovered issuer, compared exactly.
    pub issuer: &'a str,
    /// Our client id.
    pub client_id: &'a str,
    /// Audiences trusted besides our client id (usually none).
    pub extra_audiences: &'a [String],
    /// The nonce this login sent; `None` for refresh responses where the
    /// IdP may omit it (then a present nonce is not checked).
    pub nonce: Option<&'a str>,
    /// The access token that came with it, for `at_hash`.
    pub access_token: Option<&'a str>,
    /// Allowed asymmetric algorithms.
    pub algorithms: &'a [Algorithm],
    /// Allowed clock difference, seconds.
    pub skew: i64,
    /// Oldest acceptable `iat`, seconds before now.
    pub max_iat_age: i64,
    /// Now, Unix seconds.
    pub now: i64,
}

/// The JWT header fields we read.
#[derive(Debug, Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
}

/// `aud` is a string or an array.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum Audience {
    /// One audience.
    One(String),
    /// Several.
    Many(Vec<String>),
}

impl Audience {
    fn to_vec(&self) -> Vec<String> {
        match self {
            Audience::One(a) => vec![a.clone()],
            Audience::Many(list) => list.clone(),
        }
    }
}

/// Validated ID token claims (nothing secret: no token in here).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct IdTokenClaims {
    /// Issuer.
    pub iss: String,
    /// Subject.
    pub sub: String,
    /// Audience(s).
    pub aud: Audience,
    /// Expiry, Unix seconds.
    pub exp: i64,
    /// Issued at, Unix seconds.
    pub iat: i64,
    /// When the user last authenticated.
    #[serde(default)]
    pub auth_time: Option<i64>,
    /// Nonce.
    #[serde(default)]
    pub nonce: Option<String>,
    /// Authorized party.
    #[serde(default)]
    pub azp: Option<String>,
    /// Access token hash.
    #[serde(default)]
    pub at_hash: Option<String>,
    /// Authentication methods (RFC 8176).
    #[serde(default)]
    pub amr: Option<Vec<String>>,
    /// Authentication context class.
    #[serde(default)]
    pub acr: Option<String>,
    /// Session id at the IdP.
    #[serde(default)]
    pub sid: Option<String>,
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
    /// Email.
    #[serde(default)]
    pub email: Option<String>,
    /// Login name.
    #[serde(default)]
    pub preferred_username: Option<String>,
}

impl IdTokenClaims {
    /// The best name to show for the user.
    pub fn display_user(&self) -> String {
        self.email
            .clone()
            .or_else(|| self.preferred_username.clone())
            .or_else(|| self.name.clone())
            .unwrap_or_else(|| self.sub.clone())
    }
}

fn decode_part(part: &str, what: &str) -> Result<Vec<u8>, TokenError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| TokenError::Malformed(format!("{what} is not base64url")))
}

/// Maps a header `alg` to an allowed algorithm, refusing `none` and HMAC
/// with their own errors.
pub fn check_algorithm(alg: &str, allowed: &[Algorithm]) -> Result<Algorithm, TokenError> {
    if alg.eq_ignore_ascii_case("none") {
        return Err(TokenError::Unsigned);
    }
    if alg.starts_with("HS") {
        return Err(TokenError::SymmetricAlgorithm(alg.to_owned()));
    }
    let parsed = match alg {
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "EdDSA" => Algorithm::EdDSA,
        other => return Err(TokenError::AlgorithmNotAllowed(other.to_owned())),
    };
    if allowed.contains(&parsed) {
        Ok(parsed)
    } else {
        Err(TokenError::AlgorithmNotAllowed(alg.to_owned()))
    }
}

/// Whether `jwk` can verify `alg` signatures (type, curve, `alg`, `use`).
fn key_fits(jwk: &Jwk, alg: Algorithm) -> bool {
    if matches!(jwk.common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature) {
        return false;
    }
    if let Some(key_alg) = jwk.common.key_algorithm {
        let same = matches!(
            (key_alg, alg),
            (KeyAlgorithm::RS256, Algorithm::RS256)
                | (KeyAlgorithm::RS384, Algorithm::RS384)
                | (KeyAlgorithm::RS512, Algorithm::RS512)
                | (KeyAlgorithm::PS256, Algorithm::PS256)
                | (KeyAlgorithm::PS384, Algorithm::PS384)
                | (KeyAlgorithm::PS512, Algorithm::PS512)
                | (KeyAlgorithm::ES256, Algorithm::ES256)
                | (KeyAlgorithm::ES384, Algorithm::ES384)
                | (KeyAlgorithm::EdDSA, Algorithm::EdDSA)
        );
        if !same {
            return false;
        }
    }
    use jsonwebtoken::jwk::EllipticCurve as C;
    match (&jwk.algorithm, alg) {
        (
            AlgorithmParameters::RSA(_),
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512,
        ) => true,
        (AlgorithmParameters::EllipticCurve(ec), Algorithm::ES256) => ec.curve == C::P256,
        (AlgorithmParameters::EllipticCurve(ec), Algorithm::ES384) => ec.curve == C::P384,
        (AlgorithmParameters::OctetKeyPair(okp), Algorithm::EdDSA) => okp.curve == C::Ed25519,
        _ => false,
    }
}

/// The `kid` a token names, without verifying anything (for logs and the
/// refetch decision).
pub fn token_kid(token: &str) -> Option<String> {
    let header = token.split('.').next()?;
    let bytes = URL_SAFE_NO_PAD.decode(header).ok()?;
    serde_json::from_slice::<Header>(&bytes).ok()?.kid
}

/// Checks the signature of `token` against `keys` and returns its claims
/// (unchecked). Split out so access-token and other JWT checks can reuse it.
pub fn verify_signature(
    token: &str,
    keys: &[Jwk],
    algorithms: &[Algorithm],
) -> Result<serde_json::Value, TokenError> {
    let mut parts = token.split('.');
    let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed(
            "not three dot-separated parts".to_owned(),
        ));
    };
    let header: Header = serde_json::from_slice(&decode_part(header_b64, "header")?)
        .map_err(|_| TokenError::Malformed("header is not JSON with an alg".to_owned()))?;
    let alg = check_algorithm(&header.alg, algorithms)?;
    if signature_b64.is_empty() {
        return Err(TokenError::BadSignature);
    }
    let candidates: Vec<&Jwk> = match &header.kid {
        Some(kid) => keys
            .iter()
            .filter(|k| k.common.key_id.as_deref() == Some(kid.as_str()))
            .collect(),
        // No kid: acceptable only when exactly one key fits (OIDC Core 10.1).
        None => {
            let fitting: Vec<&Jwk> = keys.iter().filter(|k| key_fits(k, alg)).collect();
            if fitting.len() == 1 {
                fitting
            } else {
                Vec::new()
            }
        }
    };
    let kid_text = header.kid.clone().unwrap_or_else(|| "(none)".to_owned());
    if candidates.is_empty() {
        return Err(TokenError::UnknownKey { kid: kid_text });
    }
    let Some(jwk) = candidates.into_iter().find(|k| key_fits(k, alg)) else {
        return Err(TokenError::KeyMismatch {
            kid: kid_text,
            alg: header.alg,
        });
    };
    let key = DecodingKey::from_jwk(jwk).map_err(|_| TokenError::KeyMismatch {
        kid: kid_text.clone(),
        alg: header.alg.clone(),
    })?;
    let message = format!("{header_b64}.{payload_b64}");
    match jsonwebtoken::crypto::verify(signature_b64, message.as_bytes(), &key, alg) {
        Ok(true) => {}
        _ => return Err(TokenError::BadSignature),
    }
    serde_json::from_slice(&decode_part(payload_b64, "payload")?)
        .map_err(|_| TokenError::Malformed("payload is not JSON".to_owned()))
}

/// `at_hash` for `access_token` under `alg` (OIDC Core 3.1.3.6).
pub fn access_token_hash(access_token: &str, alg: Algorithm) -> String {
    use ring::digest;
    let algorithm = match alg {
        Algorithm::RS384 | Algorithm::PS384 | Algorithm::ES384 => &digest::SHA384,
        Algorithm::RS512 | Algorithm::PS512 | Algorithm::EdDSA => &digest::SHA512,
        _ => &digest::SHA256,
    };
    let hash = digest::digest(algorithm, access_token.as_bytes());
    let bytes = hash.as_ref();
    URL_SAFE_NO_PAD.encode(&bytes[..bytes.len() / 2])
}

/// Validates an ID token completely; see the module docs.
pub fn validate_id_token(
    token: &str,
    keys: &[Jwk],
    expect: &Expectations<'_>,
) -> Result<IdTokenClaims, TokenError> {
    let payload = verify_signature(token, keys, expect.algorithms)?;
    for claim in ["iss", "sub", "aud", "exp", "iat"] {
        if payload.get(claim).is_none() {
            return Err(TokenError::MissingClaim(claim));
        }
    }
    let claims: IdTokenClaims = serde_json::from_value(payload)
        .map_err(|err| TokenError::Malformed(format!("claims have the wrong types: {err}")))?;

    if claims.iss != expect.issuer {
        return Err(TokenError::WrongIssuer {
            expected: expect.issuer.to_owned(),
            found: claims.iss,
        });
    }
    let audiences = claims.aud.to_vec();
    if !audiences.iter().any(|a| a == expect.client_id) {
        return Err(TokenError::WrongAudience {
            client_id: expect.client_id.to_owned(),
            found: audiences,
        });
    }
    let untrusted: Vec<String> = audiences
        .iter()
        .filter(|a| *a != expect.client_id && !expect.extra_audiences.contains(a))
        .cloned()
        .collect();
    if !untrusted.is_empty() {
        return Err(TokenError::UntrustedAudience(untrusted));
    }
    if let Some(azp) = &claims.azp
        && azp != expect.client_id
    {
        return Err(TokenError::WrongAuthorizedParty { found: azp.clone() });
    }
    if expect.now > claims.exp.saturating_add(expect.skew) {
        return Err(TokenError::Expired {
            exp: claims.exp,
            now: expect.now,
        });
    }
    if claims.iat > expect.now.saturating_add(expect.skew) {
        return Err(TokenError::IssuedInFuture {
            iat: claims.iat,
            now: expect.now,
        });
    }
    if claims.iat < expect.now.saturating_sub(expect.max_iat_age) {
        return Err(TokenError::IssuedTooLongAgo {
            iat: claims.iat,
            now: expect.now,
        });
    }
    if let Some(expected_nonce) = expect.nonce {
        match &claims.nonce {
            None => return Err(TokenError::MissingNonce),
            Some(found) if !ct_eq(found, expected_nonce) => return Err(TokenError::NonceMismatch),
            Some(_) => {}
        }
    }
    if let (Some(at_hash), Some(access_token)) = (&claims.at_hash, expect.access_token) {
        // The algorithm was checked by verify_signature; re-read it for the hash size.
        let alg = token
            .split('.')
            .next()
            .and_then(|h| URL_SAFE_NO_PAD.decode(h).ok())
            .and_then(|h| serde_json::from_slice::<Header>(&h).ok())
            .and_then(|h| check_algorithm(&h.alg, expect.algorithms).ok())
            .ok_or_else(|| TokenError::Malformed("header".to_owned()))?;
        if !ct_eq(&access_token_hash(access_token, alg), at_hash) {
            return Err(TokenError::AccessTokenHashMismatch);
        }
    }
    Ok(claims)
}

/// Parses a JWKS document, skipping keys this library cannot use (for
/// encryption, or of unknown types) instead of refusing the whole set.
pub fn parse_jwks(body: &[u8]) -> Result<Vec<Jwk>, String> {
    #[derive(Deserialize)]
    struct Raw {
        keys: Vec<serde_json::Value>,
    }
    let raw: Raw = serde_json::from_slice(body).map_err(|_| "not a JWKS document".to_owned())?;
    Ok(raw
        .keys
        .into_iter()
        .filter_map(|k| serde_json::from_value::<Jwk>(k).ok())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header as JwtHeader};
    use serde_json::json;

    // A P-256 test key generated for these unit tests only.
    const EC_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgAc/VNS9l2uHb2Wc3
t0SYxAzzn6iYrklHs4GNu72ek+ehRANCAATQA9BjIBMw8ylX9jtvKKHvph85VqrY
7JO/I/nluMXslXN1GzcqT/wirlIFuBkEHQYExS+2J/P0bahD4OvtKQyo
-----END PRIVATE KEY-----";

    fn ec_jwk(kid: &str) -> Jwk {
        serde_json::from_value(json!({
            "kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
            "x": "0APQYyATMPMpV_Y7byih76YfOVaq2OyTvyP55bjF7JU",
            "y": "c3UbNypP_CKuUgW4GQQdBgTFL7Yn8_RtqEPg6-0pDKg"
        }))
        .unwrap()
    }

    const NOW: i64 = 1_700_000_000;

    fn claims() -> serde_json::Value {
        json!({
            "iss": "https://idp.example", "sub": "alice", "aud": "client-1",
            "exp": NOW + 300, "iat": NOW - 5, "nonce": "n-1", "auth_time": NOW - 10,
            "amr": ["pwd", "otp"], "azp": "client-1"
        })
    }

    fn sign(claims: &serde_json::Value, kid: Option<&str>) -> String {
        let mut header = JwtHeader::new(Algorithm::ES256);
        header.kid = kid.map(str::to_owned);
        let key = EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap();
        jsonwebtoken::encode(&header, claims, &key).unwrap()
    }

    fn expect() -> Expectations<'static> {
        Expectations {
            issuer: "https://idp.example",
            client_id: "client-1",
            extra_audiences: &[],
            nonce: Some("n-1"),
            access_token: None,
            algorithms: DEFAULT_ALGORITHMS,
            skew: 60,
            max_iat_age: 600,
            now: NOW,
        }
    }

    fn check(claims: &serde_json::Value) -> Result<IdTokenClaims, TokenError> {
        validate_id_token(&sign(claims, Some("k1")), &[ec_jwk("k1")], &expect())
    }

    fn with(key: &str, value: serde_json::Value) -> serde_json::Value {
        let mut c = claims();
        c[key] = value;
        c
    }

    #[test]
    fn valid_token_passes() {
        let claims = check(&claims()).unwrap();
        assert_eq!(claims.sub, "alice");
        assert_eq!(claims.amr.unwrap(), vec!["pwd", "otp"]);
    }

    #[test]
    fn each_claim_rule_has_its_error() {
        assert!(matches!(
            check(&with("iss", json!("https://evil"))),
            Err(TokenError::WrongIssuer { .. })
        ));
        assert!(matches!(
            check(&with("iss", json!("https://idp.example/"))),
            Err(TokenError::WrongIssuer { .. })
        ));
        assert!(matches!(
            check(&with("aud", json!("other"))),
            Err(TokenError::WrongAudience { .. })
        ));
        assert!(matches!(
            check(&with("aud", json!(["client-1", "other"]))),
            Err(TokenError::UntrustedAudience(_))
        ));
        assert!(matches!(
            check(&with("azp", json!("other"))),
            Err(TokenError::WrongAuthorizedParty { .. })
        ));
        assert!(matches!(
            check(&with("exp", json!(NOW - 61))),
            Err(TokenError::Expired { .. })
        ));
        assert!(check(&with("exp", json!(NOW - 30))).is_ok(), "within skew");
        assert!(matches!(
            check(&with("iat", json!(NOW + 120))),
            Err(TokenError::IssuedInFuture { .. })
        ));
        assert!(matches!(
            check(&with("iat", json!(NOW - 3600))),
            Err(TokenError::IssuedTooLongAgo { .. })
        ));
        assert!(matches!(
            check(&with("nonce", json!("n-2"))),
            Err(TokenError::NonceMismatch)
        ));
        let mut no_nonce = claims();
        no_nonce.as_object_mut().unwrap().remove("nonce");
        assert!(matches!(check(&no_nonce), Err(TokenError::MissingNonce)));
        let mut no_sub = claims();
        no_sub.as_object_mut().unwrap().remove("sub");
        assert!(matches!(
            check(&no_sub),
            Err(TokenError::MissingClaim("sub"))
        ));
    }

    #[test]
    fn at_hash_checked_when_present() {
        let token = sign(
            &with(
                "at_hash",
                json!(access_token_hash("at-1", Algorithm::ES256)),
            ),
            Some("k1"),
        );
        let keys = [ec_jwk("k1")];
        let mut e = expect();
        e.access_token = Some("at-1");
        assert!(validate_id_token(&token, &keys, &e).is_ok());
        e.access_token = Some("at-2");
        assert_eq!(
            validate_id_token(&token, &keys, &e),
            Err(TokenError::AccessTokenHashMismatch)
        );
    }

    #[test]
    fn algorithm_policy() {
        assert_eq!(
            check_algorithm("none", DEFAULT_ALGORITHMS),
            Err(TokenError::Unsigned)
        );
        assert_eq!(
            check_algorithm("NONE", DEFAULT_ALGORITHMS),
            Err(TokenError::Unsigned)
        );
        assert_eq!(
            check_algorithm("HS256", DEFAULT_ALGORITHMS),
            Err(TokenError::SymmetricAlgorithm("HS256".to_owned()))
        );
        assert!(matches!(
            check_algorithm("RS256", &[Algorithm::ES256]),
            Err(TokenError::AlgorithmNotAllowed(_))
        ));
        assert!(matches!(
            check_algorithm("XY999", DEFAULT_ALGORITHMS),
            Err(TokenError::AlgorithmNotAllowed(_))
        ));
    }

    #[test]
    fn unsigned_and_hmac_tokens_refused() {
        let payload = URL_SAFE_NO_PAD.encode(claims().to_string());
        let none = format!("{}.{payload}.", URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#));
        assert_eq!(
            validate_id_token(&none, &[ec_jwk("k1")], &expect()),
            Err(TokenError::Unsigned)
        );
        let hs = jsonwebtoken::encode(
            &JwtHeader::new(Algorithm::HS256),
            &claims(),
            &EncodingKey::from_secret(b"client-1"),
        )
        .unwrap();
        assert_eq!(
            validate_id_token(&hs, &[ec_jwk("k1")], &expect()),
            Err(TokenError::SymmetricAlgorithm("HS256".to_owned()))
        );
    }

    #[test]
    fn key_selection() {
        let token = sign(&claims(), Some("k2"));
        assert_eq!(
            validate_id_token(&token, &[ec_jwk("k1")], &expect()),
            Err(TokenError::UnknownKey {
                kid: "k2".to_owned()
            })
        );
        // No kid and a single fitting key: used.
        let token = sign(&claims(), None);
        assert!(validate_id_token(&token, &[ec_jwk("k1")], &expect()).is_ok());
        // No kid and two keys: ambiguous, refused.
        assert!(matches!(
            validate_id_token(&token, &[ec_jwk("k1"), ec_jwk("k2")], &expect()),
            Err(TokenError::UnknownKey { .. })
        ));
    }

    #[test]
    fn tampering_detected() {
        let token = sign(&claims(), Some("k1"));
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        parts[1] = URL_SAFE_NO_PAD.encode(with("sub", json!("mallory")).to_string());
        let forged = parts.join(".");
        assert_eq!(
            validate_id_token(&forged, &[ec_jwk("k1")], &expect()),
            Err(TokenError::BadSignature)
        );
        assert!(matches!(
            validate_id_token("a.b", &[ec_jwk("k1")], &expect()),
            Err(TokenError::Malformed(_))
        ));
        assert!(matches!(
            validate_id_token("!!!.b.c", &[ec_jwk("k1")], &expect()),
            Err(TokenError::Malformed(_))
        ));
    }

    #[test]
    fn jwks_parsing_skips_unusable_keys() {
        let body = json!({"keys": [
            {"kty": "EC", "crv": "P-256", "kid": "k1", "use": "sig", "alg": "ES256",
             "x": "0APQYyATMPMpV_Y7byih76YfOVaq2OyTvyP55bjF7JU",
             "y": "c3UbNypP_CKuUgW4GQQdBgTFL7Yn8_RtqEPg6-0pDKg"},
            {"kty": "weird", "kid": "k9"}
        ]});
        let keys = parse_jwks(body.to_string().as_bytes()).unwrap();
        assert_eq!(keys.len(), 1);
        assert!(parse_jwks(b"<html>").is_err());
    }

    #[test]
    fn token_kid_reads_header() {
        assert_eq!(
            token_kid(&sign(&claims(), Some("k7"))).as_deref(),
            Some("k7")
        );
        assert_eq!(token_kid("garbage"), None);
    }
}
