//! The little JOSE the broker needs: split a compact JWS, and verify its
//! signature with a public key under an explicit algorithm allowlist.
//!
//! Written against `ring` rather than a general JWT library so the rules are
//! visible in one place (RFC 8725): the algorithm comes from our allowlist and
//! must match the key type; `none` and every HMAC algorithm are refused before
//! any key is looked at.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use ring::signature::{self, UnparsedPublicKey};
use serde::Deserialize;

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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    /// ECDSA P-256 SHA-256 (device keys, and many IdPs).
    Es256,
    /// RSASSA-PKCS1-v1_5 SHA-256 (the IdP default almost everywhere).
    Rs256,
    /// RSASSA-PSS SHA-256.
    Ps256,
    /// Ed25519.
    EdDsa,
}

impl Alg {
    /// Parses a JOSE `alg`; anything off the allowlist is an error.
    pub fn parse(name: &str) -> Result<Alg, JoseError> {
        match name {
            "ES256" => Ok(Alg::Es256),
            "RS256" => Ok(Alg::Rs256),
            "PS256" => Ok(Alg::Ps256),
            "EdDSA" => Ok(Alg::EdDsa),
            other => Err(JoseError::Algorithm(other.to_owned())),
        }
    }
}

/// A compact JWS split into its parts; nothing verified yet.
#[derive(Debug, Clone)]
pub struct CompactJws<'a> {
    /// `header.payload`, the bytes the signature covers.
    pub signing_input: &'a str,
    /// Decoded protected header.
    pub header: Header,
    /// Decoded payload bytes.
    pub payload: Vec<u8>,
    /// Decoded signature bytes.
    pub signature: Vec<u8>,
}

/// The protected-header members the broker reads.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Header {
    /// Algorithm.
    pub alg: String,
    /// Media type of the whole token.
    #[serde(default)]
    pub typ: Option<String>,
    /// Key id.
    #[serde(default)]
    pub kid: Option<String>,
    /// Critical extensions: none are understood, so any makes the token invalid.
    #[serde(default)]
    pub crit: Option<serde_json::Value>,
}

/// Splits and decodes `token`. Does not verify anything.
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
    let decode = |what: &str, part: &str| {
        B64URL
            .decode(part)
            .map_err(|_| JoseError::Malformed(format!("{what} is not base64url")))
    };
    let header_bytes = decode("header", h)?;
    let header: Header = serde_json::from_slice(&header_bytes)
        .map_err(|e| JoseError::Malformed(format!("header is not a JOSE header: {e}")))?;
    if header.crit.is_some() {
        return Err(JoseError::Malformed(
            "critical header extensions are not supported".into(),
        ));
    }
    let payload = decode("payload", p)?;
    let signature = decode("signature", s)?;
    Ok(CompactJws {
        signing_input: &token[..h.len() + 1 + p.len()],
        header,
        payload,
        signature,
    })
}

/// A public key ready for verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicKey {
    /// P-256, SEC1 uncompressed point (65 bytes).
    P256(Vec<u8>),
    /// RSA modulus and exponent, big-endian.
    Rsa {
        /// Modulus.
        n: Vec<u8>,
        /// Public exponent.
        e: Vec<u8>,
    },
    /// Ed25519, 32 bytes.
    Ed25519(Vec<u8>),
}

/// Verifies `signature` over `signing_input` with `key` under `alg`. The key
/// type must fit the algorithm: an RSA key never verifies an ES256 token.
pub fn verify(
    alg: Alg,
    key: &PublicKey,
    signing_input: &[u8],
    signature: &[u8],
) -> Result<(), JoseError> {
    let result = match (alg, key) {
        (Alg::Es256, PublicKey::P256(point)) => {
            UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                .verify(signing_input, signature)
        }
        (Alg::Rs256, PublicKey::Rsa { n, e }) => signature::RsaPublicKeyComponents { n, e }.verify(
            &signature::RSA_PKCS1_2048_8192_SHA256,
            signing_input,
            signature,
        ),
        (Alg::Ps256, PublicKey::Rsa { n, e }) => signature::RsaPublicKeyComponents { n, e }.verify(
            &signature::RSA_PSS_2048_8192_SHA256,
            signing_input,
            signature,
        ),
        (Alg::EdDsa, PublicKey::Ed25519(k)) => {
            UnparsedPublicKey::new(&signature::ED25519, k).verify(signing_input, signature)
        }
        (alg, _) => {
            return Err(JoseError::Key(format!(
                "the key type does not match algorithm {alg:?}"
            )));
        }
    };
    result.map_err(|_| JoseError::Signature)
}

/// A JWK as published in an issuer's JWKS. Unknown members are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Jwk {
    /// `RSA`, `EC` or `OKP`.
    pub kty: String,
    /// Key id.
    #[serde(default)]
    pub kid: Option<String>,
    /// The algorithm the key is for, when the issuer says.
    #[serde(default)]
    pub alg: Option<String>,
    /// `sig` or `enc`; only `sig` keys (or unmarked ones) verify tokens.
    #[serde(default, rename = "use")]
    pub use_: Option<String>,
    /// EC / OKP curve.
    #[serde(default)]
    pub crv: Option<String>,
    /// EC x / OKP public key.
    #[serde(default)]
    pub x: Option<String>,
    /// EC y.
    #[serde(default)]
    pub y: Option<String>,
    /// RSA modulus.
    #[serde(default)]
    pub n: Option<String>,
    /// RSA exponent.
    #[serde(default)]
    pub e: Option<String>,
}

/// A JWK Set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct JwkSet {
    /// The keys.
    pub keys: Vec<Jwk>,
}

impl Jwk {
    /// The verification key, if this JWK is a usable signing key.
    pub fn public_key(&self) -> Result<PublicKey, JoseError> {
        if self.use_.as_deref().is_some_and(|u| u != "sig") {
            return Err(JoseError::Key("not a signing key (use != sig)".into()));
        }
        let field = |name: &str, v: &Option<String>| -> Result<Vec<u8>, JoseError> {
            let text = v
                .as_deref()
                .ok_or_else(|| JoseError::Key(format!("missing {name}")))?;
            B64URL
                .decode(text)
                .map_err(|_| JoseError::Key(format!("{name} is not base64url")))
        };
        match (self.kty.as_str(), self.crv.as_deref()) {
            ("EC", Some("P-256")) => {
                let (x, y) = (field("x", &self.x)?, field("y", &self.y)?);
                if x.len() != 32 || y.len() != 32 {
                    return Err(JoseError::Key("P-256 coordinates must be 32 bytes".into()));
                }
                let mut point = Vec::with_capacity(65);
                point.push(4);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                Ok(PublicKey::P256(point))
            }
            ("RSA", _) => Ok(PublicKey::Rsa {
                n: field("n", &self.n)?,
                e: field("e", &self.e)?,
            }),
            ("OKP", Some("Ed25519")) => Ok(PublicKey::Ed25519(field("x", &self.x)?)),
            (kty, crv) => Err(JoseError::Key(format!(
                "unsupported key type {kty} {}",
                crv.unwrap_or("")
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use posture::attestation::DeviceKey;

    fn es256_token(key: &DeviceKey, header: &str, payload: &str) -> String {
        key.sign_compact(header.as_bytes(), payload.as_bytes())
    }

    fn p256(key: &DeviceKey) -> PublicKey {
        PublicKey::P256(key.public_jwk().to_sec1().unwrap().to_vec())
    }

    #[test]
    fn verifies_es256_from_the_device_key() {
        let key = DeviceKey::generate();
        let token = es256_token(&key, r#"{"alg":"ES256"}"#, r#"{"a":1}"#);
        let jws = parse(&token).unwrap();
        assert_eq!(jws.payload, br#"{"a":1}"#);
        verify(
            Alg::Es256,
            &p256(&key),
            jws.signing_input.as_bytes(),
            &jws.signature,
        )
        .unwrap();
        let other = DeviceKey::generate();
        assert_eq!(
            verify(
                Alg::Es256,
                &p256(&other),
                jws.signing_input.as_bytes(),
                &jws.signature
            ),
            Err(JoseError::Signature)
        );
    }

    #[test]
    fn refuses_none_hmac_and_mismatched_key_types() {
        for alg in ["none", "HS256", "HS512", "ES384", ""] {
            assert!(
                matches!(Alg::parse(alg), Err(JoseError::Algorithm(_))),
                "{alg}"
            );
        }
        let rsa = PublicKey::Rsa {
            n: vec![1; 256],
            e: vec![1, 0, 1],
        };
        assert!(matches!(
            verify(Alg::Es256, &rsa, b"x", b"y"),
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
    fn jwk_to_key() {
        let key = DeviceKey::generate();
        let jwk: Jwk = serde_json::from_value(serde_json::json!({
            "kty": "EC", "crv": "P-256", "x": key.public_jwk().x, "y": key.public_jwk().y,
            "kid": "k1", "use": "sig"
        }))
        .unwrap();
        assert_eq!(jwk.public_key().unwrap(), p256(&key));
        let enc = Jwk {
            use_: Some("enc".into()),
            ..jwk
        };
        assert!(enc.public_key().is_err());
    }
}
