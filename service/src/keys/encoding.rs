//! The encodings hardware backends hand back, turned into ours: a public
//! point into the [`PublicJwk`] (`keys::ncrypt`'s CNG blob coordinates,
//! `keys::secure_enclave`'s SEC1 point) and an X9.62 DER ECDSA signature
//! into JOSE's `r || s` (the Secure Enclave's). Pure, and built on every
//! OS so its tests run on every CI machine, not only on the OS whose
//! backend uses it (the Mac backend never runs here).
// Only macOS uses all of it (Windows the coordinates, Linux none outside
// the tests).
#![cfg_attr(not(target_os = "macos"), allow(dead_code))]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use posture::attestation::PublicJwk;

/// The JWK of a P-256 point given as its 32-byte big-endian coordinates;
/// refuses other lengths and points not on the curve.
pub(crate) fn jwk_of_xy(x: &[u8], y: &[u8]) -> Result<PublicJwk, String> {
    if x.len() != 32 || y.len() != 32 {
        return Err(format!(
            "coordinates of {} and {} bytes, expected 32",
            x.len(),
            y.len()
        ));
    }
    let jwk = PublicJwk {
        kty: "EC".to_owned(),
        crv: "P-256".to_owned(),
        x: B64URL.encode(x),
        y: B64URL.encode(y),
    };
    jwk.to_sec1().map_err(|e| e.to_string())?;
    Ok(jwk)
}

/// The JWK of an uncompressed SEC1 point, `04 || x || y`.
pub(crate) fn jwk_of_sec1(point: &[u8]) -> Result<PublicJwk, String> {
    match point {
        [4, xy @ ..] if xy.len() == 64 => {
            let (x, y) = xy.split_at(32);
            jwk_of_xy(x, y)
        }
        _ => Err(format!(
            "a public key of {} bytes that is not an uncompressed P-256 point",
            point.len()
        )),
    }
}

/// X9.62 DER `SEQUENCE { r, s }` to JOSE's `r || s`, in low-S form so that
/// every verifier accepts it (`(r, n - s)` is the same signature).
pub(crate) fn jose_of_der(der: &[u8]) -> Result<[u8; 64], String> {
    let sig = p256::ecdsa::Signature::from_der(der).map_err(|e| e.to_string())?;
    let sig = sig.normalize_s().unwrap_or(sig);
    Ok(sig.to_bytes().into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::{Signer as _, Verifier as _};

    #[test]
    fn der_signatures_become_jose_and_verify() {
        let sk = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
        for message in [&b"hello"[..], b"", &[7; 300]] {
            let sig: p256::ecdsa::Signature = sk.sign(message);
            let jose = jose_of_der(sig.to_der().as_bytes()).unwrap();
            let parsed = p256::ecdsa::Signature::from_slice(&jose).unwrap();
            assert!(parsed.normalize_s().is_none(), "low S");
            sk.verifying_key().verify(message, &parsed).unwrap();
        }
        assert!(jose_of_der(b"\x30\x00").is_err());
        assert!(jose_of_der(&[0u8; 64]).is_err(), "r||s is not DER");
    }

    #[test]
    fn a_high_s_signature_is_turned_low() {
        let sk = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
        let sig: p256::ecdsa::Signature = sk.sign(b"m");
        // (r, n - s) is the other valid form of the same signature.
        let high = p256::ecdsa::Signature::from_scalars(sig.r(), -*sig.s()).unwrap();
        let high = if high.normalize_s().is_some() {
            high
        } else {
            sig
        };
        let jose = jose_of_der(high.to_der().as_bytes()).unwrap();
        let parsed = p256::ecdsa::Signature::from_slice(&jose).unwrap();
        assert!(parsed.normalize_s().is_none());
        sk.verifying_key().verify(b"m", &parsed).unwrap();
    }

    #[test]
    fn sec1_points_become_the_jwk_and_others_are_refused() {
        let sk = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
        let point = sk.verifying_key().to_encoded_point(false);
        let jwk = jwk_of_sec1(point.as_bytes()).unwrap();
        assert_eq!(&jwk.to_sec1().unwrap()[..], point.as_bytes());
        assert!(jwk_of_sec1(&point.as_bytes()[1..]).is_err());
        assert!(jwk_of_sec1(sk.verifying_key().to_encoded_point(true).as_bytes()).is_err());
        let mut off_curve = point.as_bytes().to_vec();
        off_curve[64] ^= 1;
        assert!(jwk_of_sec1(&off_curve).is_err());
        assert!(jwk_of_xy(&[1; 31], &[1; 32]).is_err());
    }
}
