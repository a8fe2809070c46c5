//! The device key (P-256, ES256) that signs posture attestations, kept in
//! the OS keyring next to the tokens (docs/ARCHITECTURE.md flow 2). A TPM or Secure
//! Enclave backend can replace this later; the broker only sees the public
//! JWK and its thumbprint.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use posture::attestation::{AttestationError, DeviceKey, SecretBytes};

use crate::identity::store::{SecretStore, StoreError};
use crate::secrets::Secret;

/// The keyring account of the device key.
pub const ACCOUNT: &str = "device-key";

/// Why the device key could not be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum DeviceKeyError {
    /// The keyring refused.
    #[error("device key: {0}")]
    Store(#[from] StoreError),
    /// What the keyring holds is not a device key (corrupted or foreign).
    #[error("the device key in the keyring is unreadable ({0}); delete it to enrol again")]
    Corrupt(String),
    /// Encoding the new key failed.
    #[error("device key: {0}")]
    Key(#[from] AttestationError),
}

/// The device key from the keyring, created and stored on first use.
pub fn load_or_create(store: &dyn SecretStore) -> Result<DeviceKey, DeviceKeyError> {
    if let Some(stored) = store.get(ACCOUNT)? {
        let der = STANDARD
            .decode(stored.expose())
            .map_err(|e| DeviceKeyError::Corrupt(e.to_string()))?;
        return DeviceKey::from_pkcs8_der(&SecretBytes::new(der))
            .map_err(|e| DeviceKeyError::Corrupt(e.to_string()));
    }
    let key = DeviceKey::generate();
    let der = key.to_pkcs8_der()?;
    store.set(ACCOUNT, &Secret::new(STANDARD.encode(der.expose())))?;
    tracing::info!(kid = %key.kid(), "created a new device key");
    Ok(key)
}
