//! Where the device key lives. Every backend holds one P-256 key that
//! signs ES256 and never leaves it: a TPM 2.0, the Windows Platform Crypto
//! Provider, the Secure Enclave, or, as the reported fallback, a software
//! key in a root-only file. Callers see only [`KeyBackend`], and the
//! attestation says which backend answered ([`KeyAssurance`]), so policy
//! can require hardware.

mod encoding;
pub mod signer;
pub mod software;

use broker::api::KeyAttestation;
use posture::attestation::PublicJwk;

pub use signer::BackendSigner;

/// How well the device key is protected; carried in every EAT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyAssurance {
    /// A TPM 2.0 holds it (non-exportable).
    Tpm,
    /// Windows' Microsoft Platform Crypto Provider (a TPM behind CNG).
    PlatformCryptoProvider,
    /// Apple's Secure Enclave.
    SecureEnclave,
    /// A software key in a file only the service's account can read.
    Software,
}

impl KeyAssurance {
    /// The claim value (`tpm`, `platform-crypto-provider`,
    /// `secure-enclave`, `software`).
    pub fn as_str(self) -> &'static str {
        match self {
            KeyAssurance::Tpm => "tpm",
            KeyAssurance::PlatformCryptoProvider => "platform-crypto-provider",
            KeyAssurance::SecureEnclave => "secure-enclave",
            KeyAssurance::Software => "software",
        }
    }

    /// Whether the key is bound to hardware.
    pub fn is_hardware(self) -> bool {
        !matches!(self, KeyAssurance::Software)
    }
}

/// Why a key operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The backend is not available here (no TPM, no permission, ...).
    #[error("the {backend} key store is unavailable: {reason}")]
    Unavailable {
        /// Which backend.
        backend: &'static str,
        /// Why.
        reason: String,
    },
    /// The key that was there is gone (TPM cleared or replaced, file
    /// deleted): a new key must be made and enrolled again.
    #[error("the device key is gone: {0}")]
    Gone(String),
    /// The stored key may not be used: another account could read it, it
    /// is owned by another account, or it is not a key.
    #[error("refusing the device key file {path}: {reason}")]
    Insecure {
        /// The file.
        path: String,
        /// Why, and what to do.
        reason: String,
    },
    /// Signing or key creation failed.
    #[error("the device key could not sign: {0}")]
    Sign(String),
}

/// One device key.
pub trait KeyBackend: Send + Sync + std::fmt::Debug {
    /// The public half, as enrolled (its thumbprint is the device id).
    fn public_jwk(&self) -> &PublicJwk;
    /// An ES256 signature of `message` (SHA-256 inside), JOSE form `r || s`.
    fn sign_es256(&self, message: &[u8]) -> Result<[u8; 64], KeyError>;
    /// Which kind of store holds the key.
    fn assurance(&self) -> KeyAssurance;
    /// Whether the key is still there: [`KeyError::Gone`] when it was
    /// deleted or the TPM was cleared, so the service makes a new one
    /// (recovery) instead of signing with a key nobody can use again.
    /// Backends that cannot lose their key keep the default.
    fn check(&self) -> Result<(), KeyError> {
        Ok(())
    }
    /// Evidence that this key lives in hardware, for the broker's
    /// `hardware` enrolment mode (`tpm2-certify` for a TPM key); `None`
    /// for a key that has none to give (the software key), so the agent
    /// enrols it without and the broker's mode decides.
    fn key_attestation(&self) -> Result<Option<KeyAttestation>, KeyError> {
        Ok(None)
    }

    /// TPM2_ActivateCredential of a broker's challenge (`credential_blob`,
    /// `encrypted_secret`, raw bytes): the secret only the TPM holding both
    /// the EK and the attestation key can recover. Backends without
    /// evidence have nothing to activate.
    fn activate_credential(
        &self,
        credential_blob: &[u8],
        encrypted_secret: &[u8],
    ) -> Result<Vec<u8>, KeyError> {
        let _ = (credential_blob, encrypted_secret);
        Err(KeyError::Unavailable {
            backend: self.assurance().as_str(),
            reason: "this key store has no attestation key to activate a credential with"
                .to_owned(),
        })
    }
}

/// The TPM 2.0 backend (feature `tpm`: tss-esapi links Debian's
/// libtss2-dev, which the `sallyport` binary must not need).
#[cfg(all(feature = "tpm", target_os = "linux"))]
pub mod tpm;

/// The Windows backend: CNG NCrypt, the Platform Crypto Provider (a TPM
/// behind CNG) in production.
#[cfg(windows)]
pub mod ncrypt;

/// The macOS backend: a Secure Enclave key in the data protection keychain
/// (see the module for which process may hold it).
#[cfg(target_os = "macos")]
pub mod secure_enclave;
