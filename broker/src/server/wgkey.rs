//! WireGuard public keys a grant may name. A low-order (non-contributory)
//! X25519 point makes every Diffie-Hellman with it all zeros, whatever the
//! other side's secret: a handshake "keyed" with it has no secret from the
//! client, so a grant must never be installed for one (RFC 7748 §6.1).
//!
//! The test is the definition, not a list: X25519 of a fresh random scalar
//! with the key is all zeros exactly for the low-order points and their
//! non-canonical encodings (`ring` refuses the all-zero result).

use ring::agreement::{self, EphemeralPrivateKey, UnparsedPublicKey, X25519};
use ring::rand::SecureRandom;

/// Why a key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WgKeyError {
    /// A point of small order: no shared secret can come from it.
    #[error(
        "the WireGuard public key is a low-order X25519 point (no shared secret can come from it); generate a real key pair"
    )]
    LowOrder,
    /// No randomness for the test scalar.
    #[error("no randomness available to check the WireGuard key")]
    NoRandomness,
}

/// Refuses `key` (32 bytes) when it is a low-order point.
pub fn check_contributory(key: &[u8; 32], rng: &dyn SecureRandom) -> Result<(), WgKeyError> {
    let scalar =
        EphemeralPrivateKey::generate(&X25519, rng).map_err(|_| WgKeyError::NoRandomness)?;
    agreement::agree_ephemeral(scalar, &UnparsedPublicKey::new(&X25519, key), |_| ())
        .map_err(|_| WgKeyError::LowOrder)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;

    fn hex32(text: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).unwrap();
        }
        out
    }

    /// The small-order points of Curve25519 (0, 1, the two of order 8,
    /// p-1 of order 2) and the non-canonical encodings of 0 and 1 (p, p+1),
    /// plus each with the ignored top bit set (the list libsodium refuses).
    const LOW_ORDER: &[&str] = &[
        "0000000000000000000000000000000000000000000000000000000000000000",
        "0100000000000000000000000000000000000000000000000000000000000000",
        "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
        "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "0000000000000000000000000000000000000000000000000000000000000080",
        "0100000000000000000000000000000000000000000000000000000000000080",
        "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b880",
        "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f11d7",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
    ];

    #[test]
    fn low_order_points_are_refused() {
        let rng = SystemRandom::new();
        for hex in LOW_ORDER {
            assert_eq!(
                check_contributory(&hex32(hex), &rng),
                Err(WgKeyError::LowOrder),
                "{hex}"
            );
        }
    }

    #[test]
    fn real_keys_pass() {
        let rng = SystemRandom::new();
        for _ in 0..32 {
            let key = tunnel::PrivateKey::generate().public_key();
            assert_eq!(check_contributory(key.as_bytes(), &rng), Ok(()));
        }
        // The base point (9) is a real public key too.
        let mut nine = [0u8; 32];
        nine[0] = 9;
        assert_eq!(check_contributory(&nine, &rng), Ok(()));
    }
}
