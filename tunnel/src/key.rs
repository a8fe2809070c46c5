//! WireGuard keys.
//!
//! The private key lives in [`PrivateKey`], a wrapper around x25519-dalek's
//! `StaticSecret` (which zeroizes its bytes on drop). Its `Debug` never shows
//! the key, so a key cannot leak through a `tracing` field or a diagnostics
//! bundle by accident. Keys are exchanged with the broker and with `wg(8)`
//! in the usual WireGuard text form: standard base64 of the 32 raw bytes.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use x25519_dalek::StaticSecret;
use zeroize::Zeroizing;

/// Why a key in text form could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The text is not standard base64.
    #[error("key is not valid base64 (expected the 44-character form `wg genkey` prints)")]
    Base64,
    /// The text decoded, but not to 32 bytes.
    #[error("key decodes to {0} bytes, a WireGuard key is exactly 32 bytes")]
    Length(usize),
}

fn decode_32(text: &str) -> Result<Zeroizing<[u8; 32]>, KeyError> {
    let decoded = Zeroizing::new(
        BASE64
            .decode(text.trim().as_bytes())
            .map_err(|_| KeyError::Base64)?,
    );
    let mut out = Zeroizing::new([0u8; 32]);
    if decoded.len() != out.len() {
        return Err(KeyError::Length(decoded.len()));
    }
    out.copy_from_slice(&decoded);
    Ok(out)
}

/// A WireGuard (X25519) private key. Generated per tunnel, zeroized on drop,
/// redacted in `Debug`.
#[derive(Clone)]
pub struct PrivateKey(StaticSecret);

impl PrivateKey {
    /// A fresh key from the operating system's CSPRNG. Sallyport makes one per
    /// application tunnel, so a leaked key exposes one grant only.
    pub fn generate() -> Self {
        Self(StaticSecret::random())
    }

    /// Parse the base64 form (as printed by `wg genkey`).
    pub fn from_base64(text: &str) -> Result<Self, KeyError> {
        let bytes = decode_32(text)?;
        Ok(Self(StaticSecret::from(*bytes)))
    }

    /// The base64 form, for handing the key to another WireGuard
    /// implementation (tests configure `wg(8)` this way). Zeroized on drop.
    pub fn to_base64(&self) -> Zeroizing<String> {
        let bytes = Zeroizing::new(self.0.to_bytes());
        Zeroizing::new(BASE64.encode(bytes.as_slice()))
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(x25519_dalek::PublicKey::from(&self.0).to_bytes())
    }

    /// A copy of the secret for boringtun, which takes ownership of one.
    pub(crate) fn secret(&self) -> StaticSecret {
        self.0.clone()
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PrivateKey(<redacted>)")
    }
}

/// A WireGuard public key. Displayed (and parsed) as base64.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey([u8; 32]);

impl PublicKey {
    /// Parse the base64 form (as printed by `wg pubkey`).
    pub fn from_base64(text: &str) -> Result<Self, KeyError> {
        Ok(Self(*decode_32(text)?))
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub(crate) fn to_dalek(self) -> x25519_dalek::PublicKey {
        x25519_dalek::PublicKey::from(self.0)
    }
}

impl From<[u8; 32]> for PublicKey {
    fn from(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
}

impl std::str::FromStr for PublicKey {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_base64(s)
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&BASE64.encode(self.0))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_private_key() {
        let key = PrivateKey::generate();
        let shown = format!("{key:?}");
        assert_eq!(shown, "PrivateKey(<redacted>)");
        assert!(!shown.contains(key.to_base64().as_str()));
    }

    #[test]
    fn base64_round_trip_matches_wg_format() {
        // Expected value computed with `wg pubkey` from wireguard-tools.
        let private =
            PrivateKey::from_base64("YNqHbfBQKaGvzefSSn5Su1ZXvP8AdsdC1y5+CnvCNnM=").unwrap();
        assert_eq!(
            private.public_key().to_string(),
            "rBRpRvLrF0OZ9LZakXHnQLkDlFmkL+G5vvcM6vunPAg="
        );
        assert_eq!(
            PrivateKey::from_base64(&private.to_base64())
                .unwrap()
                .public_key(),
            private.public_key()
        );
    }

    #[test]
    fn rejects_bad_text() {
        assert!(matches!(
            PublicKey::from_base64("not base64!"),
            Err(KeyError::Base64)
        ));
        assert!(matches!(
            PublicKey::from_base64("AAAA"),
            Err(KeyError::Length(3))
        ));
    }
}
