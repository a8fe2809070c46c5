//! DPoP proofs (RFC 9449) by the device key: what makes a stolen access
//! token useless on another machine. Every broker call after enrolment
//! carries one, signed by the enrolled key, naming the call (`htm`, `htu`),
//! the moment (`iat`), the token it goes with (`ath`) and a fresh `jti`; a
//! grant request's proof also names the tunnel's WireGuard key (`wg_pub`), so
//! a captured proof cannot open a tunnel for another key.
//!
//! This module builds proofs (the agent) and holds the claim set both sides
//! share; the broker verifies them (`broker::server::dpop`).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, Header};
use rand_core::RngCore as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::attestation::{AttestationError, DeviceSigner, PublicJwk, sign_jws};

/// The JOSE `typ` of a DPoP proof (RFC 9449 §4.2).
pub const DPOP_TYP: &str = "dpop+jwt";
/// The HTTP header a proof travels in.
pub const DPOP_HEADER: &str = "DPoP";
/// The `Authorization` scheme of a DPoP-bound call (RFC 9449 §7.1).
pub const DPOP_SCHEME: &str = "DPoP";

/// The claims of a Sallyport DPoP proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DpopClaims {
    /// Unique per proof (128 random bits, base64url): the replay key.
    pub jti: String,
    /// The HTTP method of the call (`POST`).
    pub htm: String,
    /// The call's URL without query and fragment.
    pub htu: String,
    /// When the proof was made (Unix seconds).
    pub iat: i64,
    /// base64url SHA-256 of the access token the call carries.
    pub ath: String,
    /// `POST /v1/grants` only: the tunnel's WireGuard public key (standard
    /// base64, as in the request body), bound by the device's signature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wg_pub: Option<String>,
}

/// `ath`: base64url(SHA-256(access token)) (RFC 9449 §4.2).
pub fn access_token_hash(access_token: &str) -> String {
    B64URL.encode(Sha256::digest(access_token.as_bytes()))
}

/// `htu`: `url` without its query and fragment (RFC 9449 §4.2).
pub fn htu(url: &str) -> &str {
    let end = url.find(['?', '#']).unwrap_or(url.len());
    &url[..end]
}

/// A fresh `jti`: 128 bits from the OS CSPRNG.
pub fn new_jti() -> String {
    let mut bytes = [0u8; 16];
    rand_core::OsRng.fill_bytes(&mut bytes);
    B64URL.encode(bytes)
}

/// The public JWK as the JOSE crate's type, for the proof header.
fn header_jwk(jwk: &PublicJwk) -> Result<Jwk, AttestationError> {
    serde_json::to_value(jwk)
        .and_then(serde_json::from_value)
        .map_err(|e| AttestationError::Jwk(e.to_string()))
}

/// Signs `claims` as a DPoP proof with the key `signer` holds: header
/// `{"typ":"dpop+jwt","alg":"ES256","jwk":<public key>}`.
pub fn sign_proof(
    signer: &dyn DeviceSigner,
    claims: &DpopClaims,
) -> Result<String, AttestationError> {
    let mut header = Header::new(Algorithm::ES256);
    header.typ = Some(DPOP_TYP.to_owned());
    header.jwk = Some(header_jwk(signer.public_jwk())?);
    sign_jws(&header, claims, signer)
}

/// A proof for one call: `method` on `url` (query and fragment dropped),
/// issued at `now`, bound to `access_token` and, for a grant, to the
/// tunnel's WireGuard key.
pub fn proof(
    signer: &dyn DeviceSigner,
    method: &str,
    url: &str,
    access_token: &str,
    now: i64,
    wg_pub: Option<&str>,
) -> Result<String, AttestationError> {
    sign_proof(
        signer,
        &DpopClaims {
            jti: new_jti(),
            htm: method.to_owned(),
            htu: htu(url).to_owned(),
            iat: now,
            ath: access_token_hash(access_token),
            wg_pub: wg_pub.map(str::to_owned),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attestation::DeviceKey;

    #[test]
    fn proof_has_the_rfc9449_header_and_claims() {
        let key = DeviceKey::generate();
        let token = proof(
            &key,
            "POST",
            "https://b.example/v1/grants?x=1#f",
            "at",
            1000,
            Some("wg"),
        )
        .unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        let header: serde_json::Value =
            serde_json::from_slice(&B64URL.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header["typ"], DPOP_TYP);
        assert_eq!(header["alg"], "ES256");
        assert_eq!(header["jwk"]["x"], key.public_jwk().x.as_str());
        assert_eq!(header["jwk"]["kty"], "EC");
        let claims: DpopClaims = serde_json::from_slice(&B64URL.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(claims.htu, "https://b.example/v1/grants");
        assert_eq!(claims.htm, "POST");
        assert_eq!(claims.ath, access_token_hash("at"));
        assert_eq!(claims.wg_pub.as_deref(), Some("wg"));
        assert_eq!(B64URL.decode(&claims.jti).unwrap().len(), 16);
        let again = proof(
            &key,
            "POST",
            "https://b.example/v1/grants",
            "at",
            1000,
            None,
        )
        .unwrap();
        assert_ne!(again, token, "a fresh jti every time");
    }

    #[test]
    fn ath_is_sha256_base64url() {
        // RFC 9449 §7.1 example: the ath of "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU".
        assert_eq!(
            access_token_hash("Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"),
            "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"
        );
    }
}
