//! Verification of a device's EAT (flow 4): pure functions over the token, the
//! enrolled key, the expectations and `now`. The nonce store's answer comes
//! in as a value ([`NonceAnswer`]) so the whole decision is testable without
//! a database.
//!
//! Order matters: the header and signature are checked before any claim is
//! trusted, and the nonce is consumed by the caller only after
//! [`verify_claims`] succeeded, so a forged token cannot burn a nonce.

use posture::attestation::{EAT_PROFILE, EAT_TYP, EatClaims};

use super::jose::{self, Algorithm, JoseError, RingVerifier};
use crate::api::ProblemType;

/// Why an attestation was refused. Each maps to its own problem type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EatError {
    /// Not a Sallyport EAT (structure, header, claims).
    #[error("{0}")]
    Malformed(String),
    /// No enrolled device has the `kid`.
    #[error("no device is enrolled with key id {0}")]
    UnknownDevice(String),
    /// The device was revoked.
    #[error("device {0} was revoked")]
    DeviceRevoked(String),
    /// The signature does not verify with the enrolled key.
    #[error("the signature does not verify with the key enrolled as {0}")]
    Signature(String),
    /// `exp` is past (beyond the allowed skew) or the lifetime is too long.
    #[error("{0}")]
    Expired(String),
    /// `iat` is in the future beyond the allowed skew.
    #[error("issued {0} s in the future")]
    NotYetValid(i64),
    /// `aud` is not this broker.
    #[error("audience {0:?} is not this broker")]
    Audience(String),
    /// `ueid` does not belong to the signing key.
    #[error("ueid {0:?} is not the ueid of the key that signed")]
    Ueid(String),
    /// `sub` is not the device's user, or the caller is another user.
    #[error("{0}")]
    Subject(String),
    /// The nonce was used before.
    #[error("nonce was already used")]
    NonceReplayed,
    /// The nonce is older than its lifetime.
    #[error("nonce expired")]
    NonceExpired,
    /// The nonce was never issued to this user.
    #[error("nonce was not issued to this user")]
    NonceUnknown,
}

impl EatError {
    /// The problem type the API answers with.
    pub fn problem(&self) -> ProblemType {
        match self {
            EatError::Malformed(_) => ProblemType::EatMalformed,
            EatError::UnknownDevice(_) => ProblemType::DeviceUnknown,
            EatError::DeviceRevoked(_) => ProblemType::DeviceRevoked,
            EatError::Signature(_) => ProblemType::EatSignatureInvalid,
            EatError::Expired(_) => ProblemType::EatExpired,
            EatError::NotYetValid(_) => ProblemType::EatNotYetValid,
            EatError::Audience(_) => ProblemType::EatWrongAudience,
            EatError::Ueid(_) => ProblemType::EatUeidMismatch,
            EatError::Subject(_) => ProblemType::EatSubjectMismatch,
            EatError::NonceReplayed => ProblemType::NonceReplayed,
            EatError::NonceExpired => ProblemType::NonceExpired,
            EatError::NonceUnknown => ProblemType::NonceUnknown,
        }
    }
}

/// An enrolled device key as the store holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrolledKey {
    /// Thumbprint (= `kid`).
    pub device_id: String,
    /// The user it is bound to.
    pub user: String,
    /// SEC1 uncompressed point.
    pub sec1: Vec<u8>,
    /// Expected `ueid`.
    pub ueid: String,
    /// Revoked by an admin.
    pub revoked: bool,
}

/// What the broker expects of every EAT.
#[derive(Debug, Clone)]
pub struct Expectations<'a> {
    /// This broker's identifier (`aud`).
    pub audience: &'a str,
    /// The user of the access token presenting the EAT.
    pub caller: &'a str,
    /// Unix seconds.
    pub now: i64,
    /// Allowed clock skew, seconds.
    pub skew: i64,
    /// Longest accepted `exp - iat`, seconds.
    pub max_lifetime: i64,
}

/// A parsed EAT whose header passed; signature not yet checked.
#[derive(Debug, Clone)]
pub struct UnverifiedEat<'a> {
    /// The key id = device id.
    pub kid: String,
    jws: jose::CompactJws<'a>,
}

/// Step 1: split the token and check the header (`alg`, `typ`, `kid`).
pub fn parse(token: &str) -> Result<UnverifiedEat<'_>, EatError> {
    let jws = jose::parse(token).map_err(|e| EatError::Malformed(e.to_string()))?;
    if jws.header.alg != Algorithm::ES256 {
        return Err(EatError::Malformed(format!(
            "alg {:?}: device attestations are ES256",
            jws.header.alg
        )));
    }
    if jws.header.typ.as_deref() != Some(EAT_TYP) {
        return Err(EatError::Malformed(format!(
            "typ {:?}: expected {EAT_TYP:?}",
            jws.header.typ
        )));
    }
    let kid = jws
        .header
        .kid
        .clone()
        .ok_or_else(|| EatError::Malformed("the header has no kid".into()))?;
    Ok(UnverifiedEat { kid, jws })
}

/// Step 2: signature with the enrolled key, then every claim. Returns the
/// claims; the caller then consumes the nonce ([`check_nonce`]).
pub fn verify_claims(
    eat: &UnverifiedEat<'_>,
    key: &EnrolledKey,
    expect: &Expectations<'_>,
) -> Result<EatClaims, EatError> {
    if key.revoked {
        return Err(EatError::DeviceRevoked(key.device_id.clone()));
    }
    RingVerifier::es256(&key.sec1)
        .verify_jws(&eat.jws)
        .map_err(|e| match e {
            JoseError::Signature => EatError::Signature(key.device_id.clone()),
            other => EatError::Malformed(other.to_string()),
        })?;
    let claims: EatClaims = serde_json::from_slice(&eat.jws.payload)
        .map_err(|e| EatError::Malformed(format!("claims: {e}")))?;
    if claims.eat_profile != EAT_PROFILE {
        return Err(EatError::Malformed(format!(
            "eat_profile {:?} is not {EAT_PROFILE}",
            claims.eat_profile
        )));
    }
    // RFC 9711 §4.1: a nonce carries at least 64 bits.
    if claims.eat_nonce.len() < 11 {
        return Err(EatError::Malformed(
            "eat_nonce is shorter than 64 bits".into(),
        ));
    }
    if claims.aud != expect.audience {
        return Err(EatError::Audience(claims.aud));
    }
    // Saturating: `iat` and `exp` are whatever the signer wrote, and an
    // `i64::MIN` must be refused, not overflow.
    if claims.iat > expect.now.saturating_add(expect.skew) {
        return Err(EatError::NotYetValid(claims.iat.saturating_sub(expect.now)));
    }
    let lifetime = claims.exp.saturating_sub(claims.iat);
    if lifetime <= 0 || lifetime > expect.max_lifetime {
        return Err(EatError::Expired(format!(
            "lifetime {lifetime} s is outside 1..={} s",
            expect.max_lifetime
        )));
    }
    if claims.exp.saturating_add(expect.skew) <= expect.now {
        return Err(EatError::Expired(format!(
            "expired {} s ago",
            expect.now.saturating_sub(claims.exp)
        )));
    }
    if claims.ueid != key.ueid {
        return Err(EatError::Ueid(claims.ueid));
    }
    if key.user != expect.caller {
        return Err(EatError::Subject(format!(
            "device {} is enrolled for another user than the caller",
            key.device_id
        )));
    }
    if claims.sub != key.user {
        return Err(EatError::Subject(format!(
            "sub {:?} is not the device's user",
            claims.sub
        )));
    }
    Ok(claims)
}

/// What the nonce store said when asked to consume a nonce for a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceAnswer {
    /// Issued to this user, unexpired, now consumed.
    Consumed,
    /// Issued and already consumed.
    AlreadyUsed,
    /// Issued but expired.
    Expired,
    /// Never issued (or to someone else).
    Unknown,
}

/// Step 3: turn the store's answer into a decision.
pub fn check_nonce(answer: NonceAnswer) -> Result<(), EatError> {
    match answer {
        NonceAnswer::Consumed => Ok(()),
        NonceAnswer::AlreadyUsed => Err(EatError::NonceReplayed),
        NonceAnswer::Expired => Err(EatError::NonceExpired),
        NonceAnswer::Unknown => Err(EatError::NonceUnknown),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use posture::Report;
    use posture::attestation::DeviceKey;

    const NOW: i64 = 1_800_000_000;

    fn report() -> Report {
        Report {
            collected_at: time::OffsetDateTime::UNIX_EPOCH,
            platform: posture::Platform::Linux,
            agent_version: "0.1.0".into(),
            duration_ms: 1,
            checks: vec![],
        }
    }

    fn enrolled(key: &DeviceKey, user: &str) -> EnrolledKey {
        EnrolledKey {
            device_id: key.kid(),
            user: user.into(),
            sec1: key.public_jwk().to_sec1().unwrap().to_vec(),
            ueid: key.ueid(),
            revoked: false,
        }
    }

    fn expect() -> Expectations<'static> {
        Expectations {
            audience: "sallyport-broker",
            caller: "alice",
            now: NOW,
            skew: 30,
            max_lifetime: 300,
        }
    }

    fn claims(key: &DeviceKey) -> EatClaims {
        EatClaims::new(
            key,
            "AAAAAAAAAAAAAAAA",
            "sallyport-broker",
            "alice",
            report(),
            NOW - 5,
            120,
        )
    }

    fn run(token: &str, key: &EnrolledKey, e: &Expectations<'_>) -> Result<EatClaims, EatError> {
        let eat = parse(token)?;
        assert_eq!(eat.kid, key.device_id);
        verify_claims(&eat, key, e)
    }

    #[test]
    fn accepts_a_good_token() {
        let key = DeviceKey::generate();
        let c = claims(&key);
        let token = key.sign_eat(&c).unwrap();
        assert_eq!(run(&token, &enrolled(&key, "alice"), &expect()).unwrap(), c);
    }

    #[test]
    fn each_bad_claim_has_its_own_error() {
        let key = DeviceKey::generate();
        let k = enrolled(&key, "alice");
        let mut c = claims(&key);
        c.aud = "other".into();
        assert!(matches!(
            run(&key.sign_eat(&c).unwrap(), &k, &expect()),
            Err(EatError::Audience(_))
        ));

        let mut c = claims(&key);
        c.iat = NOW - 400;
        c.exp = NOW - 200;
        assert!(matches!(
            run(&key.sign_eat(&c).unwrap(), &k, &expect()),
            Err(EatError::Expired(_))
        ));

        let mut c = claims(&key);
        c.iat = NOW + 120;
        c.exp = NOW + 200;
        assert!(matches!(
            run(&key.sign_eat(&c).unwrap(), &k, &expect()),
            Err(EatError::NotYetValid(_))
        ));

        let mut c = claims(&key);
        c.ueid = DeviceKey::generate().ueid();
        assert!(matches!(
            run(&key.sign_eat(&c).unwrap(), &k, &expect()),
            Err(EatError::Ueid(_))
        ));

        let mut c = claims(&key);
        c.sub = "mallory".into();
        assert!(matches!(
            run(&key.sign_eat(&c).unwrap(), &k, &expect()),
            Err(EatError::Subject(_))
        ));

        // Key enrolled by bob, presented by alice.
        let bobs = enrolled(&key, "bob");
        let c = claims(&key);
        assert!(matches!(
            run(&key.sign_eat(&c).unwrap(), &bobs, &expect()),
            Err(EatError::Subject(_))
        ));

        let mut revoked = k.clone();
        revoked.revoked = true;
        assert!(matches!(
            run(&key.sign_eat(&claims(&key)).unwrap(), &revoked, &expect()),
            Err(EatError::DeviceRevoked(_))
        ));
    }

    #[test]
    fn lifetime_longer_than_allowed_is_refused_even_if_signed() {
        let key = DeviceKey::generate();
        let mut c = claims(&key);
        c.exp = c.iat + 3600;
        // sign_eat refuses this, so sign the raw claims.
        let header = format!(r#"{{"alg":"ES256","typ":"eat+jwt","kid":"{}"}}"#, key.kid());
        let token = key.sign_compact(header.as_bytes(), &serde_json::to_vec(&c).unwrap());
        assert!(matches!(
            run(&token, &enrolled(&key, "alice"), &expect()),
            Err(EatError::Expired(_))
        ));
    }

    #[test]
    fn tampered_payload_and_foreign_key_fail_the_signature() {
        let key = DeviceKey::generate();
        let token = key.sign_eat(&claims(&key)).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        let mut c = claims(&key);
        c.posture.agent_version = "9.9.9".into();
        use base64::Engine as _;
        let forged_payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(&c).unwrap());
        let tampered = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
        assert!(matches!(
            run(&tampered, &enrolled(&key, "alice"), &expect()),
            Err(EatError::Signature(_))
        ));

        // Signed by another key under this device's kid.
        let other = DeviceKey::generate();
        let header = format!(r#"{{"alg":"ES256","typ":"eat+jwt","kid":"{}"}}"#, key.kid());
        let foreign = other.sign_compact(
            header.as_bytes(),
            &serde_json::to_vec(&claims(&key)).unwrap(),
        );
        assert!(matches!(
            run(&foreign, &enrolled(&key, "alice"), &expect()),
            Err(EatError::Signature(_))
        ));
    }

    #[test]
    fn header_rules() {
        let key = DeviceKey::generate();
        let body = serde_json::to_vec(&claims(&key)).unwrap();
        for header in [
            r#"{"alg":"none","typ":"eat+jwt","kid":"k"}"#,
            r#"{"alg":"HS256","typ":"eat+jwt","kid":"k"}"#,
            r#"{"alg":"ES256","typ":"JWT","kid":"k"}"#,
            r#"{"alg":"ES256","typ":"eat+jwt"}"#,
        ] {
            let t = key.sign_compact(header.as_bytes(), &body);
            assert!(matches!(parse(&t), Err(EatError::Malformed(_))), "{header}");
        }
    }

    #[test]
    fn nonce_answers() {
        assert_eq!(check_nonce(NonceAnswer::Consumed), Ok(()));
        assert_eq!(
            check_nonce(NonceAnswer::AlreadyUsed),
            Err(EatError::NonceReplayed)
        );
        assert_eq!(
            check_nonce(NonceAnswer::Expired),
            Err(EatError::NonceExpired)
        );
        assert_eq!(
            check_nonce(NonceAnswer::Unknown),
            Err(EatError::NonceUnknown)
        );
        assert_eq!(
            EatError::NonceReplayed.problem(),
            ProblemType::NonceReplayed
        );
    }

    /// Times at the ends of i64 are refused, not overflowed (`exp - iat`
    /// panicked with `iat` = i64::MIN in a build with overflow checks).
    #[test]
    fn extreme_times_are_refused_without_overflow() {
        let key = DeviceKey::generate();
        let k = enrolled(&key, "alice");
        for (iat, exp) in [
            (i64::MIN, NOW + 60),
            (NOW, i64::MAX),
            (i64::MIN, i64::MAX),
            (i64::MIN, i64::MIN),
            (i64::MAX, i64::MAX),
        ] {
            let mut c = claims(&key);
            c.iat = iat;
            c.exp = exp;
            // Signed as is: `sign_eat` refuses such a lifetime, a forger
            // would not.
            let header = format!(
                r#"{{"alg":"ES256","typ":"{EAT_TYP}","kid":"{}"}}"#,
                key.kid()
            );
            let token = key.sign_compact(header.as_bytes(), &serde_json::to_vec(&c).unwrap());
            let got = run(&token, &k, &expect());
            assert!(
                matches!(got, Err(EatError::Expired(_) | EatError::NotYetValid(_))),
                "iat {iat} exp {exp}: {got:?}"
            );
        }
        let e = Expectations {
            now: i64::MAX,
            skew: i64::MAX,
            ..expect()
        };
        assert!(run(&key.sign_eat(&claims(&key)).unwrap(), &k, &e).is_err());
    }
}
