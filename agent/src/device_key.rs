//! Who signs for this device: the device service (`sallyportd`, which holds
//! the key as root or in a TPM; the agent only asks it), or, where no
//! service is configured (the tests, a developer's machine), a P-256 key in
//! the user's keyring next to the tokens (docs/ARCHITECTURE.md flow 2).
//!
//! [`DeviceHolder`] is an enum, not the `DeviceSigner` trait object the
//! keyring key implements, because the service never signs bytes the agent
//! chooses: it is asked for a whole EAT or DPoP proof and builds the claims
//! itself. So the two holders differ in what they are asked, not only in
//! how they sign, and the asking is async (a socket round trip).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use broker::api::KeyAttestation;
use posture::attestation::{
    AttestationError, DeviceKey, EatClaims, MAX_EAT_LIFETIME_SECS, PublicJwk, SecretBytes,
};
use posture::report::Report;
use service::client::{ClientError, DeviceService};

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

/// Who signs this device's tokens (see the module docs).
#[derive(Debug, Clone)]
pub enum DeviceHolder {
    /// A software key in the user's keyring, signing in this process.
    Keyring(DeviceKey),
    /// The device service, whose key was `jwk` when the agent enrolled it.
    Service {
        /// How to reach it.
        link: DeviceService,
        /// The public key enrolled.
        jwk: PublicJwk,
    },
}

impl DeviceHolder {
    /// The device service's current key, asked of it.
    pub async fn from_service(link: DeviceService) -> Result<Self, String> {
        let info = link.device_info().await.map_err(|e| e.to_string())?;
        if info.key_replaced_at.is_some() {
            tracing::warn!(device_id = %info.device_id, "the device service made a new device key; this device must be approved again");
        }
        Ok(DeviceHolder::Service {
            link,
            jwk: info.public_jwk,
        })
    }

    /// The evidence to enrol the key with (`EnrolRequest.key_attestation`):
    /// the device service's TPM evidence for the enrolled key, `None` for a
    /// keyring key or a service whose key has none (software). A service
    /// that cannot make evidence (a TPM without an EK certificate) is
    /// logged and the key enrolled without: the broker's mode decides, and
    /// its refusal says what is missing.
    pub async fn key_attestation(&self) -> Result<Option<KeyAttestation>, String> {
        let DeviceHolder::Service { link, jwk } = self else {
            return Ok(None);
        };
        match link.key_attestation().await {
            Ok(answer) => {
                same_key(jwk, &answer.device_id)?;
                if let Some(note) = &answer.note {
                    tracing::debug!(%note, "no key attestation from the device service");
                }
                Ok(answer.evidence)
            }
            Err(ClientError::Refused { code, message }) => {
                tracing::warn!(?code, %message, "the device service made no key attestation; enrolling without");
                Ok(None)
            }
            Err(e) => Err(e.to_string()),
        }
    }

    /// The answer to the broker's credential-activation challenge
    /// (`key-activation-required`): the device service's TPM activates it.
    /// A keyring key has no TPM, so it cannot answer.
    pub async fn activate_credential(
        &self,
        challenge: &broker::api::KeyActivation,
    ) -> Result<String, String> {
        let DeviceHolder::Service { link, .. } = self else {
            return Err(
                "the broker asks for a TPM credential activation, and this key is not in a TPM"
                    .to_owned(),
            );
        };
        link.activate_credential(challenge).await.map_err(|e| {
            format!("the device's TPM could not activate the broker's credential: {e}")
        })
    }

    /// The public key to enrol.
    pub fn public_jwk(&self) -> &PublicJwk {
        match self {
            DeviceHolder::Keyring(key) => key.public_jwk(),
            DeviceHolder::Service { jwk, .. } => jwk,
        }
    }

    /// A DPoP proof for `method` on `url` with `access_token`, bound to
    /// `wg_pub` for a grant. The service is sent only the token's hash.
    pub async fn dpop_proof(
        &self,
        method: &str,
        url: &str,
        access_token: &str,
        wg_pub: Option<&str>,
    ) -> Result<String, String> {
        match self {
            DeviceHolder::Keyring(key) => posture::dpop::proof(
                key,
                method,
                url,
                access_token,
                time::OffsetDateTime::now_utc().unix_timestamp(),
                wg_pub,
            )
            .map_err(|e| e.to_string()),
            DeviceHolder::Service { link, jwk } => {
                let ath = posture::dpop::access_token_hash(access_token);
                let signed = link
                    .sign_dpop(method, url, &ath, wg_pub)
                    .await
                    .map_err(|e| e.to_string())?;
                same_key(jwk, &signed.device_id)?;
                Ok(signed.token)
            }
        }
    }

    /// An EAT over the broker's `nonce` for `subject` and `audience`: the
    /// keyring key signs `report` (this process's measurement); the device
    /// service signs its own measurement and adds who asked.
    pub async fn eat(
        &self,
        nonce: &str,
        audience: &str,
        subject: &str,
        report: &Report,
    ) -> Result<String, String> {
        match self {
            DeviceHolder::Keyring(key) => {
                let claims = EatClaims::new(
                    key,
                    nonce,
                    audience,
                    subject,
                    report.clone(),
                    time::OffsetDateTime::now_utc().unix_timestamp(),
                    MAX_EAT_LIFETIME_SECS.min(120),
                );
                key.sign_eat(&claims).map_err(|e| e.to_string())
            }
            DeviceHolder::Service { link, jwk } => {
                let signed = link
                    .attest(nonce, subject, audience)
                    .await
                    .map_err(|e| e.to_string())?;
                same_key(jwk, &signed.device_id)?;
                Ok(signed.token)
            }
        }
    }
}

/// A token from the service must come from the key the agent enrolled; a
/// different one means the service replaced a lost key, which the broker
/// does not know yet: restart the agent (it enrols the new key, which waits
/// for approval).
fn same_key(jwk: &PublicJwk, device_id: &str) -> Result<(), String> {
    if jwk.thumbprint() == device_id {
        Ok(())
    } else {
        Err(format!(
            "the device service replaced the device key (now {device_id}); this device must be enrolled and approved again"
        ))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;
    use std::time::Duration;

    use service::server::{Backend, Service, ServiceConfig, TpmConfig};

    use super::*;

    fn software_service(dir: &std::path::Path) -> DeviceService {
        let service = Service::open(ServiceConfig {
            backend: Backend::Software,
            key_path: dir.join("device-key.p8"),
            tpm: TpmConfig::default(),
            collect: posture::collect::Options::default(),
            posture_max_age: Duration::from_secs(30),
        })
        .unwrap();
        DeviceService::in_process(Arc::new(service))
    }

    #[tokio::test]
    async fn a_software_key_enrols_without_evidence() {
        let dir = tempfile::tempdir().unwrap();
        let holder = DeviceHolder::from_service(software_service(dir.path()))
            .await
            .unwrap();
        assert_eq!(holder.key_attestation().await.unwrap(), None);
        let keyring = DeviceHolder::Keyring(DeviceKey::generate());
        assert_eq!(keyring.key_attestation().await.unwrap(), None);
    }

    #[tokio::test]
    async fn evidence_about_another_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        // The agent enrolled one key; the service now answers for another
        // (it replaced a lost key).
        let holder = DeviceHolder::Service {
            link: software_service(dir.path()),
            jwk: DeviceKey::generate().public_jwk().clone(),
        };
        let err = holder.key_attestation().await.unwrap_err();
        assert!(err.contains("replaced the device key"), "{err}");
    }
}
