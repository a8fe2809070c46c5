//! A string that must never be shown: tokens, PKCE verifiers, `state`,
//! `nonce`, device codes.
//!
//! Tokens in logs and bug reports are a known vulnerability class for this
//! kind of product, so the type makes the safe thing the default: `Debug`
//! and `Display` print `<redacted>`, it is not `Serialize`, the bytes are
//! zeroed when it is dropped, and comparing two secrets is constant-time. The
//! only way to the value is [`Secret::expose`], which is easy to grep for.

use std::fmt;

use subtle::ConstantTimeEq as _;
use zeroize::{Zeroize as _, Zeroizing};

/// What `Debug` and `Display` print instead of the value.
pub const REDACTED: &str = "<redacted>";

/// A secret string; see the module docs.
#[derive(Clone)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Wraps `value`. The caller's `String` moves in, so no copy is left behind.
    pub fn new(value: String) -> Self {
        Self(Zeroizing::new(value))
    }

    /// The value, for the few places that must send it somewhere (an HTTP
    /// request, the keyring). Never log or format what this returns.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Constant-time equality, for `state` and other values an attacker
    /// could probe byte by byte. Length is not hidden (it is not secret).
    pub fn ct_eq(&self, other: &str) -> bool {
        ct_eq(self.expose(), other)
    }

    /// Whether the value is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Constant-time string comparison (the length is not treated as secret).
pub fn ct_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self::new(value)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({REDACTED})")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut value = String::deserialize(deserializer)?;
        let secret = Secret::new(std::mem::take(&mut value));
        value.zeroize();
        Ok(secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_redact() {
        let secret = Secret::new("eyJhbGciOiJSUzI1NiJ9.super-secret".to_owned());
        assert_eq!(format!("{secret:?}"), "Secret(<redacted>)");
        assert_eq!(format!("{secret}"), "<redacted>");
        assert_eq!(format!("{secret:#?}"), "Secret(<redacted>)");
        #[derive(Debug)]
        #[allow(dead_code)]
        struct Holder {
            token: Secret,
        }
        let holder = format!("{:?}", Holder { token: secret });
        assert!(!holder.contains("super-secret"), "{holder}");
    }

    #[test]
    fn expose_returns_value() {
        let secret = Secret::from("abc".to_owned());
        assert_eq!(secret.expose(), "abc");
        assert!(!secret.is_empty());
    }

    #[test]
    fn constant_time_equality() {
        let secret = Secret::new("state-123".to_owned());
        assert!(secret.ct_eq("state-123"));
        assert!(!secret.ct_eq("state-124"));
        assert!(!secret.ct_eq("state-12"));
        assert!(!secret.ct_eq(""));
        assert!(ct_eq("", ""));
    }

    #[test]
    fn deserializes_from_json_string() {
        let secret: Secret = serde_json::from_str("\"tok\"").unwrap();
        assert_eq!(secret.expose(), "tok");
    }

    #[test]
    fn panic_message_with_secret_is_redacted() {
        let secret = Secret::new("do-not-leak".to_owned());
        let result = std::panic::catch_unwind(|| {
            panic!("failed with {secret:?} and {secret}");
        });
        let payload = result.unwrap_err();
        let message = payload
            .downcast_ref::<String>()
            .cloned()
            .unwrap_or_default();
        assert!(!message.contains("do-not-leak"), "{message}");
        assert!(message.contains(REDACTED));
    }
}
