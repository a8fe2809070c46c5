//! DPoP proof verification (RFC 9449): pure functions over the proof, the
//! device key it must be signed by, the call it must describe and `now`,
//! plus the bounded replay cache ([`JtiCache`]). The service layer
//! (`service::dpop`) looks the key up and feeds the cache.
//!
//! Order matters: header, then signature with the enrolled key, then every
//! claim, and only then the `jti` goes into the cache, so a forged proof
//! can neither pass nor fill the cache.

use std::collections::{HashMap, VecDeque};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;

use posture::attestation::PublicJwk;
use posture::dpop::{DPOP_TYP, DpopClaims, access_token_hash};
use ring::digest;
use url::Url;

use super::jose::{self, Algorithm, CompactJws, RingVerifier};
use crate::api::ProblemType;

/// How far `iat` may be from the broker's clock, either way, in seconds.
/// A proof is accepted only inside this window, so its `jti` needs to be
/// remembered only as long: the cache is bounded by it.
pub const IAT_WINDOW_SECS: i64 = 60;

/// The most `jti`s the cache holds. At the broker's measured ceiling
/// (about 5,000 verified calls per second per core) a 120 s window holds
/// 600,000 per core; each entry is 24 bytes plus the map's overhead, so
/// the cap bounds the cache at a few tens of MiB. Past it, calls are
/// refused (`dpop-cache-full`) rather than the cache growing.
pub const MAX_JTI_ENTRIES: usize = 1 << 20;

/// Why a proof was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DpopError {
    /// Missing, malformed, wrongly signed or not matching the call.
    #[error("{0}")]
    Invalid(String),
    /// The `jti` was used before.
    #[error("this DPoP proof (jti) was already used")]
    Replay,
    /// The replay cache is full of live entries.
    #[error("too many DPoP proofs within the last {IAT_WINDOW_SECS} s; retry shortly")]
    CacheFull,
}

impl DpopError {
    /// The problem type the API answers with.
    pub fn problem(&self) -> ProblemType {
        match self {
            DpopError::Invalid(_) => ProblemType::InvalidDpopProof,
            DpopError::Replay => ProblemType::DpopReplay,
            DpopError::CacheFull => ProblemType::DpopCacheFull,
        }
    }
}

fn invalid(why: impl Into<String>) -> DpopError {
    DpopError::Invalid(why.into())
}

/// A proof whose header passed; its signature is not checked yet.
#[derive(Debug, Clone)]
pub struct UnverifiedProof<'a> {
    /// RFC 7638 thumbprint of the header's `jwk`: the device id it claims.
    pub thumbprint: String,
    /// The header's key (SEC1), for enrolment, where no key is enrolled yet.
    pub sec1: [u8; 65],
    jws: CompactJws<'a>,
}

/// Step 1: the header: `typ` `dpop+jwt`, `alg` ES256 (device keys are
/// P-256), and a public P-256 `jwk` (never a private one).
pub fn parse(proof: &str) -> Result<UnverifiedProof<'_>, DpopError> {
    let jws = jose::parse(proof).map_err(|e| invalid(format!("DPoP proof: {e}")))?;
    if jws.header.typ.as_deref() != Some(DPOP_TYP) {
        return Err(invalid(format!(
            "DPoP proof typ {:?}: expected {DPOP_TYP:?}",
            jws.header.typ
        )));
    }
    if jws.header.alg != Algorithm::ES256 {
        return Err(invalid("DPoP proofs by device keys are ES256"));
    }
    let jwk = jws
        .header
        .jwk
        .as_ref()
        .ok_or_else(|| invalid("the DPoP proof header has no jwk"))?;
    // RFC 9449 §4.3: the jwk must not hold a private key. The JOSE crate's
    // model drops unknown members such as `d`, so the raw header is read.
    #[derive(serde::Deserialize)]
    struct RawHeader {
        jwk: serde_json::Map<String, serde_json::Value>,
    }
    let raw: Option<RawHeader> = proof
        .split('.')
        .next()
        .and_then(|h| B64URL.decode(h).ok())
        .and_then(|h| serde_json::from_slice(&h).ok());
    if raw.is_none_or(|r| r.jwk.contains_key("d")) {
        return Err(invalid("the DPoP proof's jwk contains a private key"));
    }
    // Through JSON into the device-key form: exactly kty/crv/x/y are read.
    let value = serde_json::to_value(jwk).map_err(|e| invalid(e.to_string()))?;
    let jwk: PublicJwk = serde_json::from_value(value)
        .map_err(|e| invalid(format!("the DPoP proof's jwk is not a P-256 key: {e}")))?;
    let sec1 = jwk
        .to_sec1()
        .map_err(|e| invalid(format!("the DPoP proof's jwk: {e}")))?;
    Ok(UnverifiedProof {
        thumbprint: jwk.thumbprint(),
        sec1,
        jws,
    })
}

/// The call a proof must describe.
#[derive(Debug, Clone)]
pub struct Call<'a> {
    /// HTTP method, upper case.
    pub method: &'a str,
    /// The URL the broker is reached at for this call (its public origin
    /// and the request path), compared by scheme, host, port and path.
    pub url: &'a Url,
    /// The access token the call presents (for `ath`).
    pub access_token: &'a str,
    /// Unix seconds, on the broker's clock.
    pub now: i64,
}

/// Step 2: the signature with `key` (the enrolled device key, or for
/// enrolment the key being enrolled), then the claims against `call`.
/// Returns the claims; the caller then records the `jti` ([`JtiCache`]).
pub fn verify(
    proof: &UnverifiedProof<'_>,
    key_sec1: &[u8],
    call: &Call<'_>,
) -> Result<DpopClaims, DpopError> {
    RingVerifier::es256(key_sec1)
        .verify_jws(&proof.jws)
        .map_err(|_| invalid("the DPoP proof's signature does not verify with the device key"))?;
    let claims: DpopClaims = serde_json::from_slice(&proof.jws.payload)
        .map_err(|e| invalid(format!("DPoP proof claims: {e}")))?;
    // 96 random bits at least; bounded so one proof cannot bloat the cache.
    if !(16..=128).contains(&claims.jti.len()) {
        return Err(invalid("the DPoP proof's jti must be 16 to 128 characters"));
    }
    if claims.htm != call.method {
        return Err(invalid(format!(
            "the DPoP proof is for {} but the call is {}",
            claims.htm, call.method
        )));
    }
    if !same_target(&claims.htu, call.url) {
        return Err(invalid(format!(
            "the DPoP proof is for {:?} but the call is {}",
            claims.htu,
            call.url.as_str()
        )));
    }
    // `abs_diff`: the proof's `iat` is any i64 its maker chose (at
    // enrolment, anyone's key), and `i64::MIN - now` must not overflow.
    if claims.iat.abs_diff(call.now) > IAT_WINDOW_SECS.unsigned_abs() {
        return Err(invalid(format!(
            "the DPoP proof was made {} s from now, outside ±{IAT_WINDOW_SECS} s; check this computer's clock",
            claims.iat.saturating_sub(call.now)
        )));
    }
    if claims.ath != access_token_hash(call.access_token) {
        return Err(invalid(
            "the DPoP proof is bound to another access token (ath)",
        ));
    }
    Ok(claims)
}

/// `htu` names `url`: same scheme, host, port (defaults filled in) and
/// path; no query or fragment (RFC 9449 §4.3).
fn same_target(htu: &str, url: &Url) -> bool {
    let Ok(htu) = Url::parse(htu) else {
        return false;
    };
    htu.query().is_none()
        && htu.fragment().is_none()
        && htu.scheme() == url.scheme()
        && htu.host() == url.host()
        && htu.port_or_known_default() == url.port_or_known_default()
        && htu.path() == url.path()
}

/// The `jti`s of accepted proofs while they could still be replayed.
///
/// Keyed by a 128-bit digest of (device, `jti`) so an entry has a fixed
/// size whatever the client sent. An entry lives until `iat + window`,
/// after which [`verify`] refuses the proof on its `iat` anyway. Expired
/// entries leave in insertion order (a queue), at most
/// [`MAX_JTI_ENTRIES`] are held, and when full of live entries a new proof
/// is refused: memory stays bounded under any load.
#[derive(Debug, Clone)]
pub struct JtiCache {
    seen: HashMap<[u8; 16], i64>,
    order: VecDeque<([u8; 16], i64)>,
    capacity: usize,
}

impl Default for JtiCache {
    fn default() -> Self {
        Self::with_capacity(MAX_JTI_ENTRIES)
    }
}

impl JtiCache {
    /// A cache holding at most `capacity` entries.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            seen: HashMap::new(),
            order: VecDeque::new(),
            capacity,
        }
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Records the proof `claims` of `device` at `now`; refuses a `jti` seen
    /// before within the window.
    pub fn check_and_insert(
        &mut self,
        device: &str,
        claims: &DpopClaims,
        now: i64,
    ) -> Result<(), DpopError> {
        self.purge(now);
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(device.as_bytes());
        ctx.update(&[0]);
        ctx.update(claims.jti.as_bytes());
        let mut key = [0u8; 16];
        key.copy_from_slice(&ctx.finish().as_ref()[..16]);
        if self.seen.contains_key(&key) {
            return Err(DpopError::Replay);
        }
        if self.seen.len() >= self.capacity {
            return Err(DpopError::CacheFull);
        }
        // Kept at least until the proof's own window closes; a clock moved
        // back keeps it longer, never shorter.
        let until = claims.iat.max(now).saturating_add(IAT_WINDOW_SECS);
        self.seen.insert(key, until);
        self.order.push_back((key, until));
        Ok(())
    }

    /// Drops entries whose window has closed.
    pub fn purge(&mut self, now: i64) {
        while let Some(&(key, until)) = self.order.front() {
            if until >= now {
                // Entries are queued in arrival order and `until` grows
                // with arrival time but for the iat spread (±window); stop
                // at the first live one and catch up on the next call.
                break;
            }
            self.order.pop_front();
            if self.seen.get(&key).is_some_and(|u| *u == until) {
                self.seen.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use posture::attestation::{DeviceKey, sign_raw};
    use posture::dpop::{new_jti, proof as make_proof, sign_proof};

    const NOW: i64 = 1_800_000_000;
    const URL: &str = "https://broker.example/v1/grants";

    fn url() -> Url {
        Url::parse(URL).unwrap()
    }

    fn call<'a>(url: &'a Url, token: &'a str) -> Call<'a> {
        Call {
            method: "POST",
            url,
            access_token: token,
            now: NOW,
        }
    }

    fn claims(token: &str) -> DpopClaims {
        DpopClaims {
            jti: new_jti(),
            htm: "POST".into(),
            htu: URL.into(),
            iat: NOW,
            ath: access_token_hash(token),
            wg_pub: None,
        }
    }

    fn run(proof: &str, key: &DeviceKey, call: &Call<'_>) -> Result<DpopClaims, DpopError> {
        let p = parse(proof)?;
        assert_eq!(p.thumbprint, key.kid());
        verify(&p, &key.public_jwk().to_sec1().unwrap(), call)
    }

    #[test]
    fn accepts_a_proof_made_by_the_agent_side() {
        let key = DeviceKey::generate();
        let u = url();
        let p = make_proof(&key, "POST", URL, "at", NOW, Some("wg")).unwrap();
        let c = run(&p, &key, &call(&u, "at")).unwrap();
        assert_eq!(c.wg_pub.as_deref(), Some("wg"));
        // Default ports and host case do not matter; the path does.
        let explicit = Url::parse("https://BROKER.example:443/v1/grants").unwrap();
        assert!(run(&p, &key, &call(&explicit, "at")).is_ok());
    }

    #[test]
    fn each_mismatch_is_refused() {
        let key = DeviceKey::generate();
        let u = url();
        let with = |f: &dyn Fn(&mut DpopClaims)| {
            let mut c = claims("at");
            f(&mut c);
            run(&sign_proof(&key, &c).unwrap(), &key, &call(&u, "at"))
        };
        assert!(with(&|_| {}).is_ok());
        for (what, edit) in [
            (
                "htm",
                &(|c: &mut DpopClaims| c.htm = "GET".into()) as &dyn Fn(&mut DpopClaims),
            ),
            ("htu path", &|c| {
                c.htu = "https://broker.example/v1/grants/x".into()
            }),
            ("htu host", &|c| {
                c.htu = "https://evil.example/v1/grants".into()
            }),
            ("htu port", &|c| {
                c.htu = "https://broker.example:8443/v1/grants".into()
            }),
            ("htu scheme", &|c| {
                c.htu = "http://broker.example/v1/grants".into()
            }),
            ("htu query", &|c| c.htu = format!("{URL}?a=1")),
            ("iat past", &|c| c.iat = NOW - IAT_WINDOW_SECS - 1),
            ("iat future", &|c| c.iat = NOW + IAT_WINDOW_SECS + 1),
            // `iat - now` overflowed here, and `abs()` of i64::MIN
            // panics (builds with overflow checks).
            ("iat i64::MIN", &|c| c.iat = i64::MIN),
            ("iat i64::MAX", &|c| c.iat = i64::MAX),
            ("ath", &|c| c.ath = access_token_hash("another token")),
            ("jti short", &|c| c.jti = "abc".into()),
        ] {
            assert!(
                matches!(with(edit), Err(DpopError::Invalid(_))),
                "{what} was accepted"
            );
        }
        assert!(
            with(&|c| c.iat = NOW - IAT_WINDOW_SECS).is_ok(),
            "edge of window"
        );
    }

    #[test]
    fn header_and_signature_rules() {
        let key = DeviceKey::generate();
        let u = url();
        let body = serde_json::to_vec(&claims("at")).unwrap();
        let jwk = serde_json::to_value(key.public_jwk()).unwrap();
        for header in [
            serde_json::json!({"alg": "ES256", "typ": "JWT", "jwk": jwk}),
            serde_json::json!({"alg": "ES256", "typ": "dpop+jwt"}),
            serde_json::json!({"alg": "none", "typ": "dpop+jwt", "jwk": jwk}),
            serde_json::json!({"alg": "ES256", "typ": "dpop+jwt",
                "jwk": {"kty": "EC", "crv": "P-256", "x": jwk["x"], "y": jwk["y"], "d": jwk["x"]}}),
        ] {
            let t = sign_raw(header.to_string().as_bytes(), &body, &key).unwrap();
            assert!(
                matches!(parse(&t), Err(DpopError::Invalid(_))),
                "{header} was accepted"
            );
        }
        // Signed by another key than the one enrolled for the device.
        let other = DeviceKey::generate();
        let p = sign_proof(&other, &claims("at")).unwrap();
        let parsed = parse(&p).unwrap();
        assert!(matches!(
            verify(
                &parsed,
                &key.public_jwk().to_sec1().unwrap(),
                &call(&u, "at")
            ),
            Err(DpopError::Invalid(_))
        ));
    }

    #[test]
    fn replay_cache_refuses_repeats_expires_and_stays_bounded() {
        let mut cache = JtiCache::with_capacity(2);
        let c = claims("at");
        cache.check_and_insert("dev", &c, NOW).unwrap();
        assert_eq!(
            cache.check_and_insert("dev", &c, NOW + 1),
            Err(DpopError::Replay)
        );
        // The same jti from another device is another proof.
        cache.check_and_insert("dev2", &c, NOW).unwrap();
        // Full of live entries: refused, not grown.
        assert_eq!(
            cache.check_and_insert("dev3", &claims("at"), NOW + 2),
            Err(DpopError::CacheFull)
        );
        assert_eq!(cache.len(), 2);
        // Once the window has passed, entries leave and room returns.
        cache
            .check_and_insert("dev3", &claims("at"), NOW + IAT_WINDOW_SECS + 1)
            .unwrap();
        assert_eq!(cache.len(), 1);
    }
}
