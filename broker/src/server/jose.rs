//! The broker's JOSE, on the workspace's one JOSE crate (`jsonwebtoken`):
//! its header and JWK models and its `JwtVerifier` trait, with the raw
//! signature checks done by ring ([`RingVerifier`]), which verifies ES256
//! several times faster than the pure-Rust backend (`benches/attest.rs`
//! needs two per attestation: the EAT and the DPoP proof).
//!
//! The rules stay visible here (RFC 8725): the algorithm comes from our
//! allowlist and must match the key type; `none` and every HMAC algorithm
//! are refused before any key is looked at; `crit` is refused (we
//! understand no extension).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use jsonwebtoken::crypto::JwtVerifier;
use jsonwebtoken::signature;
use jsonwebtoken::{DecodingKey, DecodingKeyKind};
use ring::signature::{self as ring_sig, UnparsedPublicKey};
use serde::Deserialize;

pub use jsonwebtoken::jwk::Jwk;
pub use jsonwebtoken::{Algorithm, Header};

/// Why a compact JWS could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoseError {
    /// Not three base64url segments, or a segment is not JSON.
    #[error("not a compact JWS: {0}")]
    Malformed(String),
    /// The `alg` is not on the allowlist (e.g. `none`, `HS256`).
    #[error("algorithm {0:?} is not accepted")]
    Algorithm(String),
    /// The key cannot be used with the algorithm, or is malformed.
    #[error("unusable key: {0}")]
    Key(String),
    /// The signature does not verify.
    #[error("signature does not verify")]
    Signature,
}

/// The signature algorithms the broker accepts (RFC 8725 §3.1: an explicit
/// list; never `none`, never HMAC with a public key's bytes as the secret).
pub const ALLOWED: &[Algorithm] = &[
    Algorithm::ES256,
    Algorithm::RS256,
    Algorithm::PS256,
    Algorithm::EdDSA,
];

/// A compact JWS split into its parts; nothing verified yet.
#[derive(Debug, Clone)]
pub struct CompactJws<'a> {
    /// `header.payload`, the bytes the signature covers.
    pub signing_input: &'a str,
    /// The protected header, as the JOSE crate reads it.
    pub header: Header,
    /// Decoded payload bytes.
    pub payload: Vec<u8>,
    /// Decoded signature bytes.
    pub signature: Vec<u8>,
}

/// Splits and decodes `token`; the header's `alg` must be on [`ALLOWED`].
/// Does not verify the signature.
pub fn parse(token: &str) -> Result<CompactJws<'_>, JoseError> {
    let token = token.trim();
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JoseError::Malformed(
            "expected three dot-separated parts".into(),
        ));
    };
    // The header is the crate's; `alg` first on its own so `none` and HMAC
    // are refused as algorithms, not reported as unreadable headers.
    #[derive(Deserialize)]
    struct Alg {
        alg: String,
    }
    let header_json = B64URL
        .decode(h)
        .map_err(|_| JoseError::Malformed("header is not base64url".into()))?;
    let alg: Alg = serde_json::from_slice(&header_json)
        .map_err(|e| JoseError::Malformed(format!("header is not a JOSE header: {e}")))?;
    let header = jsonwebtoken::decode_header(token).map_err(|e| match alg.alg.as_str() {
        "ES256" | "RS256" | "PS256" | "EdDSA" => {
            JoseError::Malformed(format!("header is not a JOSE header: {e}"))
        }
        other => JoseError::Algorithm(other.to_owned()),
    })?;
    if !ALLOWED.contains(&header.alg) {
        return Err(JoseError::Algorithm(alg.alg));
    }
    if header.crit.is_some() {
        return Err(JoseError::Malformed(
            "critical header extensions are not supported".into(),
        ));
    }
    let decode = |what: &str, part: &str| {
        B64URL
            .decode(part)
            .map_err(|_| JoseError::Malformed(format!("{what} is not base64url")))
    };
    let payload = decode("payload", p)?;
    let signature = decode("signature", s)?;
    Ok(CompactJws {
        signing_input: &token[..h.len() + 1 + p.len()],
        header,
        payload,
        signature,
    })
}

/// The crate's `JwtVerifier` over ring, for the algorithms on [`ALLOWED`].
#[derive(Debug, Clone)]
pub struct RingVerifier {
    alg: Algorithm,
    key: RingKey,
}

#[derive(Debug, Clone)]
enum RingKey {
    /// SEC1 point (P-256) or raw Ed25519 key.
    Bytes(Vec<u8>),
    /// RSA modulus and exponent, big-endian.
    Rsa { n: Vec<u8>, e: Vec<u8> },
}

impl RingVerifier {
    /// A verifier of `alg` signatures with `key`. The key type must fit the
    /// algorithm: an RSA key never verifies an ES256 token.
    pub fn new(alg: Algorithm, key: &DecodingKey) -> Result<Self, JoseError> {
        use jsonwebtoken::AlgorithmFamily as F;
        let fits = matches!(
            (alg, key.family()),
            (Algorithm::ES256, F::Ec)
                | (Algorithm::RS256 | Algorithm::PS256, F::Rsa)
                | (Algorithm::EdDSA, F::Ed)
        );
        if !fits || !ALLOWED.contains(&alg) {
            return Err(JoseError::Key(format!(
                "the key type does not match algorithm {alg:?}"
            )));
        }
        let key = match key.kind() {
            DecodingKeyKind::SecretOrDer(bytes) => RingKey::Bytes(bytes.clone()),
            DecodingKeyKind::RsaModulusExponent { n, e } => RingKey::Rsa {
                n: n.clone(),
                e: e.clone(),
            },
        };
        Ok(Self { alg, key })
    }

    /// An ES256 verifier for a SEC1 uncompressed P-256 point (an enrolled
    /// device key).
    pub fn es256(sec1: &[u8]) -> Self {
        Self {
            alg: Algorithm::ES256,
            key: RingKey::Bytes(sec1.to_vec()),
        }
    }

    /// A verifier for `jwk` under `alg`, if `jwk` is a signing key of a
    /// fitting type (`use` absent or `sig`, `alg` absent or the same).
    pub fn from_jwk(alg: Algorithm, jwk: &Jwk) -> Result<Self, JoseError> {
        use jsonwebtoken::jwk::{KeyAlgorithm, PublicKeyUse};
        if jwk
            .common
            .public_key_use
            .as_ref()
            .is_some_and(|u| *u != PublicKeyUse::Signature)
        {
            return Err(JoseError::Key("not a signing key (use != sig)".into()));
        }
        if let Some(key_alg) = jwk.common.key_algorithm {
            let same = matches!(
                (key_alg, alg),
                (KeyAlgorithm::ES256, Algorithm::ES256)
                    | (KeyAlgorithm::RS256, Algorithm::RS256)
                    | (KeyAlgorithm::PS256, Algorithm::PS256)
                    | (KeyAlgorithm::EdDSA, Algorithm::EdDSA)
            );
            if !same {
                return Err(JoseError::Key(format!("the key is for {key_alg:?}")));
            }
        }
        if let jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(ec) = &jwk.algorithm
            && ec.curve != jsonwebtoken::jwk::EllipticCurve::P256
        {
            return Err(JoseError::Key(format!("curve {:?} is not P-256", ec.curve)));
        }
        let key = DecodingKey::from_jwk(jwk).map_err(|e| JoseError::Key(e.to_string()))?;
        Self::new(alg, &key)
    }

    /// Verifies `jws`'s signature; its `alg` must be this verifier's.
    pub fn verify_jws(&self, jws: &CompactJws<'_>) -> Result<(), JoseError> {
        if jws.header.alg != self.alg {
            return Err(JoseError::Key(format!(
                "the token is {:?}, the key verifies {:?}",
                jws.header.alg, self.alg
            )));
        }
        signature::Verifier::verify(self, jws.signing_input.as_bytes(), &jws.signature)
            .map_err(|_| JoseError::Signature)
    }
}

impl signature::Verifier<Vec<u8>> for RingVerifier {
    fn verify(&self, message: &[u8], sig: &Vec<u8>) -> Result<(), signature::Error> {
        let result = match (&self.key, self.alg) {
            (RingKey::Bytes(point), Algorithm::ES256) => {
                UnparsedPublicKey::new(&ring_sig::ECDSA_P256_SHA256_FIXED, point)
                    .verify(message, sig)
            }
            (RingKey::Bytes(key), Algorithm::EdDSA) => {
                UnparsedPublicKey::new(&ring_sig::ED25519, key).verify(message, sig)
            }
            (RingKey::Rsa { n, e }, Algorithm::RS256) => ring_sig::RsaPublicKeyComponents { n, e }
                .verify(&ring_sig::RSA_PKCS1_2048_8192_SHA256, message, sig),
            (RingKey::Rsa { n, e }, Algorithm::PS256) => ring_sig::RsaPublicKeyComponents { n, e }
                .verify(&ring_sig::RSA_PSS_2048_8192_SHA256, message, sig),
            _ => return Err(signature::Error::new()),
        };
        result.map_err(|_| signature::Error::new())
    }
}

impl JwtVerifier for RingVerifier {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

/// A JWK Set as an issuer publishes it. Keys the JOSE crate cannot read
/// (encryption keys of unknown types, ...) are skipped rather than making
/// the whole set unusable.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JwkSet {
    /// The readable keys.
    pub keys: Vec<Jwk>,
}

impl<'de> Deserialize<'de> for JwkSet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Raw {
            keys: Vec<serde_json::Value>,
        }
        let raw = Raw::deserialize(d)?;
        Ok(JwkSet {
            keys: raw
                .keys
                .into_iter()
                .filter_map(|k| serde_json::from_value(k).ok())
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use posture::attestation::DeviceKey;

    fn es256_token(key: &DeviceKey, header: &str, payload: &str) -> String {
        key.sign_compact(header.as_bytes(), payload.as_bytes())
    }

    fn p256(key: &DeviceKey) -> RingVerifier {
        RingVerifier::es256(&key.public_jwk().to_sec1().unwrap())
    }

    #[test]
    fn verifies_es256_from_the_device_key() {
        let key = DeviceKey::generate();
        let token = es256_token(&key, r#"{"alg":"ES256"}"#, r#"{"a":1}"#);
        let jws = parse(&token).unwrap();
        assert_eq!(jws.payload, br#"{"a":1}"#);
        p256(&key).verify_jws(&jws).unwrap();
        let other = DeviceKey::generate();
        assert_eq!(p256(&other).verify_jws(&jws), Err(JoseError::Signature));
    }

    #[test]
    fn refuses_none_hmac_and_mismatched_key_types() {
        let key = DeviceKey::generate();
        for alg in ["none", "HS256", "HS512", "ES384", "", "XY999"] {
            let t = es256_token(&key, &format!(r#"{{"alg":"{alg}"}}"#), "{}");
            assert!(
                matches!(parse(&t), Err(JoseError::Algorithm(_))),
                "{alg}: {:?}",
                parse(&t)
            );
        }
        let rsa = DecodingKey::from_rsa_raw_components(&[1; 256], &[1, 0, 1]);
        assert!(matches!(
            RingVerifier::new(Algorithm::ES256, &rsa),
            Err(JoseError::Key(_))
        ));
        // An RS256 token never verifies with an ES256 verifier, whatever the bytes.
        let t = es256_token(&key, r#"{"alg":"RS256"}"#, "{}");
        assert!(matches!(
            p256(&key).verify_jws(&parse(&t).unwrap()),
            Err(JoseError::Key(_))
        ));
    }

    #[test]
    fn rejects_malformed_compact_forms() {
        for bad in ["", "a.b", "a.b.c.d", "!!.e30.AA", "e30.!!.AA"] {
            assert!(matches!(parse(bad), Err(JoseError::Malformed(_))), "{bad}");
        }
        // crit is refused: we understand no extension.
        let key = DeviceKey::generate();
        let t = es256_token(&key, r#"{"alg":"ES256","crit":["x"]}"#, "{}");
        assert!(matches!(parse(&t), Err(JoseError::Malformed(_))));
    }

    #[test]
    fn jwk_to_verifier() {
        let key = DeviceKey::generate();
        let token = es256_token(&key, r#"{"alg":"ES256"}"#, "{}");
        let jws = parse(&token).unwrap();
        let jwk: Jwk = serde_json::from_value(serde_json::json!({
            "kty": "EC", "crv": "P-256", "x": key.public_jwk().x, "y": key.public_jwk().y,
            "kid": "k1", "use": "sig"
        }))
        .unwrap();
        RingVerifier::from_jwk(Algorithm::ES256, &jwk)
            .unwrap()
            .verify_jws(&jws)
            .unwrap();
        let mut enc = jwk.clone();
        enc.common.public_key_use = Some(jsonwebtoken::jwk::PublicKeyUse::Encryption);
        assert!(RingVerifier::from_jwk(Algorithm::ES256, &enc).is_err());
        assert!(RingVerifier::from_jwk(Algorithm::RS256, &jwk).is_err());
    }

    #[test]
    fn jwks_skips_unreadable_keys() {
        let set: JwkSet = serde_json::from_value(serde_json::json!({"keys": [
            {"kty": "weird", "kid": "k9"},
            {"kty": "EC", "crv": "P-256", "kid": "k1",
             "x": "0APQYyATMPMpV_Y7byih76YfOVaq2OyTvyP55bjF7JU",
             "y": "c3UbNypP_CKuUgW4GQQdBgTFL7Yn8_RtqEPg6-0pDKg"}
        ]}))
        .unwrap();
        assert_eq!(set.keys.len(), 1);
    }
}
