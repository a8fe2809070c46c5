//! Signed posture attestations: the device key and the Entity Attestation
//! Token (RFC 9711) the agent submits to the broker (flow 4 in docs/ARCHITECTURE.md).
//!
//! The agent is the RATS *attester* (RFC 9334, background-check model): it
//! signs what it measured with a per-device P-256 key, over a nonce the broker
//! chose, and the broker verifies. Verification lives in the broker; this
//! module only produces tokens, so the agent carries no verifier code.
//!
//! Wire form: a compact JWS (`header.payload.signature`, base64url without
//! padding) with header `{"alg":"ES256","typ":"eat+jwt","kid":<thumbprint>}`.
//! `kid` is the RFC 7638 SHA-256 thumbprint of the device's public JWK, which
//! is also the broker's device id.
//!
//! ## UEID
//! The `ueid` is derived from the device key, not from a machine id:
//! `0x01 (RAND type, RFC 9711 §4.2.1) || SHA-256 thumbprint` (33 bytes),
//! base64url. A machine id would follow the hardware across re-enrolments and
//! owners (a privacy leak, and it is readable by any local process); the key
//! digest is unique per enrolment, cannot be claimed without the private key,
//! and lets the broker recompute the expected value from the enrolled key.
//!
//! ## Signing goes through [`DeviceSigner`]
//! Every token the device signs (the EAT here, the DPoP proofs of
//! [`crate::dpop`]) is built by [`sign_jws`]: the JOSE crate
//! (`jsonwebtoken`) supplies the header model and the algorithm, this module
//! lays out the signing input, and the key holder only signs bytes. So the
//! software key below can be swapped for a TPM- or enclave-held one that
//! implements the same trait, without touching the token formats.
//!
//! Pure Rust crypto only (`p256`), so this compiles for every desktop target.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use jsonwebtoken::crypto::JwtSigner;
use jsonwebtoken::signature;
use jsonwebtoken::{Algorithm, Header};
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

use crate::report::Report;

/// The JOSE `typ` of an EAT in JWT form (RFC 9711 / RFC 9782).
pub const EAT_TYP: &str = "eat+jwt";
/// The only signature algorithm a device key uses.
pub const EAT_ALG: &str = "ES256";
/// `eat_profile`: names the Sallyport profile of EAT (which claims, which
/// key, how the posture claim is shaped), so a verifier can refuse others.
pub const EAT_PROFILE: &str = "https://sallyport.dev/eat/posture/v1";
/// The UEID type byte for a random (here: key-digest) identifier.
pub const UEID_TYPE_RAND: u8 = 0x01;
/// The longest lifetime (`exp - iat`) the broker accepts, in seconds.
pub const MAX_EAT_LIFETIME_SECS: i64 = 300;

/// Why a key could not be loaded or a token not produced.
#[derive(Debug, thiserror::Error)]
pub enum AttestationError {
    /// The stored private key is not a P-256 PKCS#8 document.
    #[error("the stored device key is not a valid P-256 PKCS#8 key; enrol this device again ({0})")]
    KeyFormat(String),
    /// A public JWK is not an uncompressed P-256 point.
    #[error("the public key is not a P-256 JWK with x and y: {0}")]
    Jwk(String),
    /// Claims could not be serialised (should not happen for valid reports).
    #[error("cannot serialise the attestation claims: {0}")]
    Encode(String),
    /// `exp` must follow `iat` by at most five minutes.
    #[error("attestation lifetime of {0} s is outside 1..=300 s")]
    Lifetime(i64),
    /// The header names another algorithm than the signer's.
    #[error("the header says {header:?} but the device key signs {signer:?}")]
    Algorithm {
        /// The header's `alg`.
        header: Algorithm,
        /// The signer's.
        signer: Algorithm,
    },
    /// The key holder refused or failed to sign.
    #[error("the device key could not sign: {0}")]
    Sign(String),
}

/// The holder of a device key, as every signing caller sees it: the public
/// JWK it enrols and proves possession of, and `JwtSigner` (from the JOSE
/// crate) for the signature itself. A trait object, because the key moves
/// into a TPM next; implementations must sign with [`Algorithm::ES256`] in
/// JOSE form (64-byte `r || s`).
pub trait DeviceSigner: JwtSigner + Send + Sync + fmt::Debug {
    /// The public half, as enrolled (its thumbprint is the device id).
    fn public_jwk(&self) -> &PublicJwk;
}

/// Signs `claims` under `header` as a compact JWS (RFC 7515 §7.1):
/// `base64url(header) . base64url(claims)`, signed by `signer`. The header's
/// `alg` must be the signer's, so a token never claims an algorithm its
/// signature does not have.
pub fn sign_jws<T: Serialize + ?Sized>(
    header: &Header,
    claims: &T,
    signer: &dyn DeviceSigner,
) -> Result<String, AttestationError> {
    if header.alg != signer.algorithm() {
        return Err(AttestationError::Algorithm {
            header: header.alg,
            signer: signer.algorithm(),
        });
    }
    let header = serde_json::to_vec(header).map_err(|e| AttestationError::Encode(e.to_string()))?;
    let claims = serde_json::to_vec(claims).map_err(|e| AttestationError::Encode(e.to_string()))?;
    sign_raw(&header, &claims, signer)
}

/// [`sign_jws`] over header and payload bytes as given, with no check of
/// either: for tests that need tokens a correct agent never produces
/// (tampered, wrong `typ`, `alg: none`, ...).
pub fn sign_raw(
    header: &[u8],
    payload: &[u8],
    signer: &dyn DeviceSigner,
) -> Result<String, AttestationError> {
    let signing_input = format!("{}.{}", B64URL.encode(header), B64URL.encode(payload));
    let signature = signer
        .try_sign(signing_input.as_bytes())
        .map_err(|e| AttestationError::Sign(e.to_string()))?;
    Ok(format!("{signing_input}.{}", B64URL.encode(signature)))
}

/// Bytes that must not be shown: a private key in PKCS#8 DER form. Zeroized on
/// drop; `Debug` prints `<redacted>` so it cannot leak through logs or a
/// diagnostics bundle.
#[derive(Clone)]
pub struct SecretBytes(Zeroizing<Vec<u8>>);

impl SecretBytes {
    /// Wraps bytes (e.g. as read back from the OS keyring).
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// The bytes, for handing to the keyring. Keep the borrow short.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretBytes(<redacted>)")
    }
}

/// A P-256 public key as a JWK (RFC 7517/7518), the form enrolled with the
/// broker. Only the members RFC 7638 hashes are kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicJwk {
    /// Always `EC`.
    pub kty: String,
    /// Always `P-256`.
    pub crv: String,
    /// X coordinate, 32 bytes base64url.
    pub x: String,
    /// Y coordinate, 32 bytes base64url.
    pub y: String,
}

impl PublicJwk {
    fn from_key(key: &VerifyingKey) -> Self {
        let point = key.to_encoded_point(false);
        // An uncompressed point always has both coordinates.
        let x = point.x().map(|x| B64URL.encode(x)).unwrap_or_default();
        let y = point.y().map(|y| B64URL.encode(y)).unwrap_or_default();
        PublicJwk {
            kty: "EC".to_owned(),
            crv: "P-256".to_owned(),
            x,
            y,
        }
    }

    /// The SEC1 uncompressed point `04 || x || y`, after checking that this is
    /// a P-256 key whose point is on the curve. Verifiers take this form.
    pub fn to_sec1(&self) -> Result<[u8; 65], AttestationError> {
        if self.kty != "EC" || self.crv != "P-256" {
            return Err(AttestationError::Jwk(format!(
                "kty {:?} crv {:?}, expected EC P-256",
                self.kty, self.crv
            )));
        }
        let coord = |name: &str, text: &str| -> Result<Vec<u8>, AttestationError> {
            let bytes = B64URL
                .decode(text)
                .map_err(|_| AttestationError::Jwk(format!("{name} is not base64url")))?;
            if bytes.len() != 32 {
                return Err(AttestationError::Jwk(format!(
                    "{name} is {} bytes, expected 32",
                    bytes.len()
                )));
            }
            Ok(bytes)
        };
        let mut out = [0u8; 65];
        out[0] = 0x04;
        out[1..33].copy_from_slice(&coord("x", &self.x)?);
        out[33..].copy_from_slice(&coord("y", &self.y)?);
        // Reject points off the curve (invalid-curve attacks) at enrolment.
        VerifyingKey::from_sec1_bytes(&out)
            .map_err(|_| AttestationError::Jwk("the point is not on P-256".to_owned()))?;
        Ok(out)
    }

    /// RFC 7638 thumbprint: SHA-256 over the required members in
    /// lexicographic order with no whitespace, base64url. Used as `kid` and
    /// as the broker's device id.
    pub fn thumbprint(&self) -> String {
        B64URL.encode(self.thumbprint_bytes())
    }

    fn thumbprint_bytes(&self) -> [u8; 32] {
        // The members are base64url / fixed ASCII, so no JSON escaping applies;
        // serde_json still builds it to be safe against odd input.
        let canonical = format!(
            r#"{{"crv":{},"kty":{},"x":{},"y":{}}}"#,
            json_str(&self.crv),
            json_str(&self.kty),
            json_str(&self.x),
            json_str(&self.y)
        );
        Sha256::digest(canonical.as_bytes()).into()
    }

    /// The UEID of the device holding this key (see the module docs).
    pub fn ueid(&self) -> String {
        let mut bytes = Vec::with_capacity(33);
        bytes.push(UEID_TYPE_RAND);
        bytes.extend_from_slice(&self.thumbprint_bytes());
        B64URL.encode(bytes)
    }
}

fn json_str(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

/// The device key: P-256, ES256. Software-backed for now; the agent keeps the
/// PKCS#8 bytes in the OS keyring. `Debug` never shows the private half.
#[derive(Clone)]
pub struct DeviceKey {
    signing: SigningKey,
    jwk: PublicJwk,
}

impl fmt::Debug for DeviceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceKey")
            .field("kid", &self.jwk.thumbprint())
            .finish_non_exhaustive()
    }
}

impl DeviceKey {
    /// A fresh key from the OS CSPRNG.
    pub fn generate() -> Self {
        Self::from_signing(SigningKey::random(&mut rand_core::OsRng))
    }

    fn from_signing(signing: SigningKey) -> Self {
        let jwk = PublicJwk::from_key(signing.verifying_key());
        Self { signing, jwk }
    }

    /// Loads a key saved with [`DeviceKey::to_pkcs8_der`].
    pub fn from_pkcs8_der(der: &SecretBytes) -> Result<Self, AttestationError> {
        let signing = SigningKey::from_pkcs8_der(der.expose())
            .map_err(|err| AttestationError::KeyFormat(err.to_string()))?;
        Ok(Self::from_signing(signing))
    }

    /// The private key as PKCS#8 DER, for the keyring.
    pub fn to_pkcs8_der(&self) -> Result<SecretBytes, AttestationError> {
        let doc = self
            .signing
            .to_pkcs8_der()
            .map_err(|err| AttestationError::KeyFormat(err.to_string()))?;
        Ok(SecretBytes::new(doc.as_bytes().to_vec()))
    }

    /// The public key to enrol.
    pub fn public_jwk(&self) -> &PublicJwk {
        &self.jwk
    }

    /// RFC 7638 thumbprint: the `kid` and the broker's device id.
    pub fn kid(&self) -> String {
        self.jwk.thumbprint()
    }

    /// This device's UEID (key-derived, see the module docs).
    pub fn ueid(&self) -> String {
        self.jwk.ueid()
    }

    /// Signs `claims` as an EAT in JWT form ([`sign_eat`] with this key).
    pub fn sign_eat(&self, claims: &EatClaims) -> Result<String, AttestationError> {
        sign_eat(self, claims)
    }

    /// Signs arbitrary header and payload bytes as a compact JWS. Exposed for
    /// tests that need tokens a correct agent would never produce (tampered,
    /// wrong `typ`, ...); the agent uses [`sign_eat`].
    pub fn sign_compact(&self, header: &[u8], payload: &[u8]) -> String {
        let signing_input = format!("{}.{}", B64URL.encode(header), B64URL.encode(payload));
        format!(
            "{signing_input}.{}",
            B64URL.encode(self.es256(signing_input.as_bytes()))
        )
    }

    /// ES256 in JOSE form: the fixed 64-byte `r || s` (RFC 7518 §3.4).
    fn es256(&self, message: &[u8]) -> [u8; 64] {
        let signature: Signature = self.signing.sign(message);
        signature.to_bytes().into()
    }
}

impl signature::Signer<Vec<u8>> for DeviceKey {
    fn try_sign(&self, message: &[u8]) -> Result<Vec<u8>, signature::Error> {
        Ok(self.es256(message).to_vec())
    }
}

impl JwtSigner for DeviceKey {
    fn algorithm(&self) -> Algorithm {
        Algorithm::ES256
    }
}

impl DeviceSigner for DeviceKey {
    fn public_jwk(&self) -> &PublicJwk {
        &self.jwk
    }
}

/// Signs `claims` as an EAT in JWT form with the device key held by
/// `signer`. Refuses a lifetime outside 1..=300 s (the broker would reject
/// it anyway), so a clock mistake is caught where it is made.
pub fn sign_eat(signer: &dyn DeviceSigner, claims: &EatClaims) -> Result<String, AttestationError> {
    let lifetime = claims.exp.saturating_sub(claims.iat);
    if !(1..=MAX_EAT_LIFETIME_SECS).contains(&lifetime) {
        return Err(AttestationError::Lifetime(lifetime));
    }
    let mut header = Header::new(Algorithm::ES256);
    header.typ = Some(EAT_TYP.to_owned());
    header.kid = Some(signer.public_jwk().thumbprint());
    sign_jws(&header, claims, signer)
}

/// The protected header of an EAT.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EatHeader {
    /// `ES256`.
    pub alg: String,
    /// `eat+jwt`.
    pub typ: String,
    /// RFC 7638 thumbprint of the signing key.
    pub kid: String,
}

/// The claims of a Sallyport EAT. Times are NumericDate (seconds since the
/// epoch) as JWT requires.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EatClaims {
    /// The broker's nonce from `/v1/attestations/challenge` (RFC 9711 §4.1).
    pub eat_nonce: String,
    /// The device's UEID (key-derived).
    pub ueid: String,
    /// Issued at.
    pub iat: i64,
    /// Expires at, at most five minutes after `iat`.
    pub exp: i64,
    /// The broker's identifier (its OAuth audience).
    pub aud: String,
    /// The attesting software.
    pub swname: String,
    /// Its version.
    pub swversion: String,
    /// The signed-in user's `sub`, binding the measurement to the session.
    pub sub: String,
    /// Names the Sallyport EAT profile ([`EAT_PROFILE`]).
    pub eat_profile: String,
    /// The posture report: what was measured (custom claim).
    pub posture: Report,
    /// Which store holds the key that signed (`tpm`, `software`, ...), as
    /// the device service reports it (custom claim). Absent in tokens the
    /// agent signs with its own keyring key, so older tokens still parse.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_assurance: Option<String>,
    /// The local account that asked the device service for this EAT: its
    /// uid as the kernel reported it (`SO_PEERCRED`), never as the caller
    /// claimed (custom claim; absent when the agent signs itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_uid: Option<u32>,
    /// That account's name, when the service could resolve it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_user: Option<String>,
}

impl EatClaims {
    /// Claims for `report`, issued at `now` (Unix seconds) for `lifetime_secs`.
    pub fn new(
        key: &DeviceKey,
        nonce: &str,
        audience: &str,
        subject: &str,
        report: Report,
        now: i64,
        lifetime_secs: i64,
    ) -> Self {
        Self::for_jwk(
            key.public_jwk(),
            nonce,
            audience,
            subject,
            report,
            now,
            lifetime_secs,
        )
    }

    /// [`EatClaims::new`] for the holder of `jwk` (a key this process
    /// cannot see, such as the device service's), with no device-service
    /// claims; the service adds them.
    pub fn for_jwk(
        jwk: &PublicJwk,
        nonce: &str,
        audience: &str,
        subject: &str,
        report: Report,
        now: i64,
        lifetime_secs: i64,
    ) -> Self {
        EatClaims {
            eat_nonce: nonce.to_owned(),
            ueid: jwk.ueid(),
            iat: now,
            exp: now + lifetime_secs,
            aud: audience.to_owned(),
            swname: "sallyport".to_owned(),
            swversion: report.agent_version.clone(),
            sub: subject.to_owned(),
            eat_profile: EAT_PROFILE.to_owned(),
            posture: report,
            key_assurance: None,
            local_uid: None,
            local_user: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Platform;
    use p256::ecdsa::signature::Verifier as _;

    fn report() -> Report {
        Report {
            collected_at: time::OffsetDateTime::UNIX_EPOCH,
            platform: Platform::Linux,
            agent_version: "0.1.0".to_owned(),
            duration_ms: 12,
            checks: Vec::new(),
        }
    }

    #[test]
    fn thumbprint_matches_rfc7638_example_construction() {
        // RFC 7638 §3.1 builds the hash input from the required members in
        // lexicographic order; check our canonical form on a known key.
        let jwk = PublicJwk {
            kty: "EC".into(),
            crv: "P-256".into(),
            x: "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU".into(),
            y: "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0".into(),
        };
        let canonical = r#"{"crv":"P-256","kty":"EC","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}"#;
        let expected = B64URL.encode(Sha256::digest(canonical.as_bytes()));
        assert_eq!(jwk.thumbprint(), expected);
        assert_eq!(jwk.thumbprint().len(), 43);
        assert!(jwk.to_sec1().is_ok());
    }

    #[test]
    fn pkcs8_round_trip_keeps_the_identity_and_debug_redacts() {
        let key = DeviceKey::generate();
        let der = key.to_pkcs8_der().unwrap();
        assert_eq!(format!("{der:?}"), "SecretBytes(<redacted>)");
        let back = DeviceKey::from_pkcs8_der(&der).unwrap();
        assert_eq!(back.kid(), key.kid());
        assert!(!format!("{key:?}").contains(&B64URL.encode(der.expose())));
        assert!(DeviceKey::from_pkcs8_der(&SecretBytes::new(vec![1, 2, 3])).is_err());
    }

    #[test]
    fn ueid_is_rand_type_plus_thumbprint() {
        let key = DeviceKey::generate();
        let ueid = B64URL.decode(key.ueid()).unwrap();
        assert_eq!(ueid.len(), 33);
        assert_eq!(ueid[0], UEID_TYPE_RAND);
        assert_eq!(B64URL.encode(&ueid[1..]), key.kid());
    }

    #[test]
    fn signed_eat_has_the_profile_header_and_verifies() {
        let key = DeviceKey::generate();
        let claims = EatClaims::new(
            &key,
            "bm9uY2U",
            "sallyport-broker",
            "alice",
            report(),
            1000,
            120,
        );
        let token = key.sign_eat(&claims).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: EatHeader = serde_json::from_slice(&B64URL.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header.typ, EAT_TYP);
        assert_eq!(header.alg, "ES256");
        assert_eq!(header.kid, key.kid());
        let back: EatClaims = serde_json::from_slice(&B64URL.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(back, claims);
        let sig = Signature::from_slice(&B64URL.decode(parts[2]).unwrap()).unwrap();
        let vk = VerifyingKey::from_sec1_bytes(&key.public_jwk().to_sec1().unwrap()).unwrap();
        vk.verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &sig)
            .unwrap();
    }

    #[test]
    fn refuses_lifetimes_over_five_minutes_or_negative() {
        let key = DeviceKey::generate();
        for lifetime in [0, -5, 301] {
            let claims = EatClaims::new(&key, "n", "aud", "sub", report(), 1000, lifetime);
            assert!(matches!(
                key.sign_eat(&claims),
                Err(AttestationError::Lifetime(_))
            ));
        }
    }

    #[test]
    fn jwk_checks_reject_other_curves_and_off_curve_points() {
        let mut jwk = DeviceKey::generate().public_jwk().clone();
        jwk.crv = "P-384".into();
        assert!(jwk.to_sec1().is_err());
        let mut jwk = DeviceKey::generate().public_jwk().clone();
        jwk.y = B64URL.encode([7u8; 32]);
        assert!(jwk.to_sec1().is_err());
        let mut jwk = DeviceKey::generate().public_jwk().clone();
        jwk.x = "short".into();
        assert!(jwk.to_sec1().is_err());
    }
}
