//! The credential-activation round that binds the attestation key (AK) to
//! the TPM the EK certificate names. TPM2_Certify evidence alone does not:
//! an EK certificate is public, so a forger could pair a genuine one with a
//! software "AK". The broker therefore makes a credential
//! ([`super::make_credential`]) to the certificate's EK over the AK's name;
//! only the TPM that holds both can activate it and return the secret.
//!
//! Stateless: the secret is an HMAC of the device id and the AK's name
//! under a key made at broker start, per five-minute window, so the broker
//! stores nothing between the two enrolment requests. The current and the
//! previous window are accepted (a challenge lives 5 to 10 minutes); a
//! broker restart makes outstanding challenges fail, and the agent simply
//! enrols again.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use std::sync::OnceLock;

use ring::hmac;

use super::make_credential;
use crate::api::KeyActivation;

/// How long one window of secrets lasts.
const WINDOW_SECS: i64 = 300;

/// Issues and checks activation challenges.
#[derive(Default)]
pub struct Activations {
    /// Made from the OS's random source at first use.
    key: OnceLock<Option<hmac::Key>>,
}

impl std::fmt::Debug for Activations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Activations { key: <redacted> }")
    }
}

impl Activations {
    /// Challenges under a key of their own (made at first use).
    pub fn new() -> Self {
        Self::default()
    }

    fn key(&self) -> Result<&hmac::Key, String> {
        self.key
            .get_or_init(|| {
                hmac::Key::generate(hmac::HMAC_SHA256, &ring::rand::SystemRandom::new()).ok()
            })
            .as_ref()
            .ok_or_else(|| "no randomness for the activation key".to_owned())
    }

    fn message(device_id: &str, ak_name: &[u8], window: i64) -> Vec<u8> {
        let mut message = b"sallyport-key-activation-v1\0".to_vec();
        message.extend_from_slice(device_id.as_bytes());
        message.push(0);
        message.extend_from_slice(ak_name);
        message.extend_from_slice(&window.to_be_bytes());
        message
    }

    fn window(now_unix: i64) -> i64 {
        now_unix.div_euclid(WINDOW_SECS)
    }

    /// The challenge for `device_id`, whose evidence named the AK `ak_name`
    /// and the EK certificate `ek_certificate` (DER).
    pub fn challenge(
        &self,
        ek_certificate: &[u8],
        ak_name: &[u8],
        device_id: &str,
        now_unix: i64,
    ) -> Result<KeyActivation, String> {
        let secret = hmac::sign(
            self.key()?,
            &Self::message(device_id, ak_name, Self::window(now_unix)),
        );
        let credential = make_credential(
            ek_certificate,
            ak_name,
            secret.as_ref(),
            &mut rand_core::OsRng,
        )?;
        Ok(KeyActivation {
            credential_blob: B64URL.encode(&credential.credential_blob),
            encrypted_secret: B64URL.encode(&credential.encrypted_secret),
        })
    }

    /// Whether `secret` (base64url) is what a challenge for `device_id`
    /// and `ak_name` held, in this window or the previous one.
    pub fn check(&self, device_id: &str, ak_name: &[u8], secret: &str, now_unix: i64) -> bool {
        let (Ok(key), Ok(secret)) = (self.key(), B64URL.decode(secret)) else {
            return false;
        };
        let window = Self::window(now_unix);
        [window, window - 1]
            .into_iter()
            .any(|w| hmac::verify(key, &Self::message(device_id, ak_name, w), &secret).is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The HMAC half: the secret a challenge holds, recomputed.
    fn secret_for(a: &Activations, device: &str, ak: &[u8], now: i64) -> String {
        let tag = hmac::sign(
            a.key().unwrap(),
            &Activations::message(device, ak, Activations::window(now)),
        );
        B64URL.encode(tag.as_ref())
    }

    #[test]
    fn a_secret_holds_for_its_device_ak_and_window_only() {
        let a = Activations::new();
        let now = 1_800_000_000;
        let secret = secret_for(&a, "dev", b"ak", now);
        assert!(a.check("dev", b"ak", &secret, now));
        assert!(a.check("dev", b"ak", &secret, now + WINDOW_SECS));
        assert!(!a.check("dev", b"ak", &secret, now + 3 * WINDOW_SECS));
        assert!(!a.check("other", b"ak", &secret, now));
        assert!(!a.check("dev", b"other-ak", &secret, now));
        assert!(!a.check("dev", b"ak", "not base64!", now));
        // Another broker (another key) does not accept it.
        let b = Activations::new();
        assert!(!b.check("dev", b"ak", &secret, now));
    }
}
