//! How the operations fail: [`ApiError`], the problem document a call
//! answers with plus whom it concerned (for the audit log), and
//! [`StartError`], why the broker could not come up. Kept apart so every
//! operation module shares one error vocabulary, and so the mapping from
//! lower layers (storage, policy) to problem types sits in one place.

use crate::api::{Problem, ProblemType};
use crate::server::store::StoreError;

/// A refusal: the problem document the API answers with, plus what the audit
/// log needs to know about whom it concerned.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The reply (boxed: errors travel through every `Result` here).
    pub problem: Box<Problem>,
    /// The device it concerned, when known.
    pub device_id: Option<String>,
}

impl ApiError {
    /// A problem of `kind`.
    pub fn new(kind: ProblemType, detail: impl Into<String>) -> Self {
        Self {
            problem: Box::new(Problem::new(kind, detail)),
            device_id: None,
        }
    }

    pub(super) fn device(mut self, device_id: &str) -> Self {
        self.device_id = Some(device_id.to_owned());
        self
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "storage failure");
        ApiError::new(
            ProblemType::Internal,
            "the broker's database failed; try again",
        )
    }
}

/// Why the broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Storage.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Policy.
    #[error("policy: {0}")]
    Policy(String),
    /// The TPM CA certificates (`enrolment.tpm_ca_certificates`).
    #[error("enrolment.tpm_ca_certificates: {0}")]
    TpmCa(String),
    /// Gateway.
    #[error(transparent)]
    Gateway(#[from] tunnel::GatewayError),
    /// Listening socket or TLS.
    #[error("{0}")]
    Listen(String),
}

impl From<posture::policy::PolicyError> for StartError {
    fn from(e: posture::policy::PolicyError) -> Self {
        StartError::Policy(e.to_string())
    }
}
