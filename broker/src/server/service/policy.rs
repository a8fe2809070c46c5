//! The policy in force: compiled once at load, swapped whole on reload, and
//! served to agents as `GET /v1/policy` so they can evaluate locally what
//! the broker will decide.

use std::sync::{Arc, PoisonError};

use posture::policy::Policy;

use super::{Broker, StartError};
use crate::api::PolicyDocument;
use crate::server::config::{Settings, to_hex};

/// The policy in force.
#[derive(Debug)]
pub struct LoadedPolicy {
    /// Compiled to regorus' bytecode VM once, at load.
    pub policy: Policy,
    /// SHA-256 hex of the source.
    pub digest: String,
    /// File name.
    pub name: String,
    /// Source.
    pub source: String,
}

impl LoadedPolicy {
    /// Compiles `source`.
    pub fn new(name: &str, source: String) -> Result<Self, posture::policy::PolicyError> {
        Ok(Self {
            policy: Policy::from_source(name, &source)?,
            digest: to_hex(ring::digest::digest(&ring::digest::SHA256, source.as_bytes()).as_ref()),
            name: name.to_owned(),
            source,
        })
    }

    /// From the configured file, or the built-in default.
    pub fn load(settings: &Settings) -> Result<Self, StartError> {
        match &settings.raw.attestation.policy {
            None => Ok(Self::new(
                "default.rego",
                posture::policy::DEFAULT_POLICY.to_owned(),
            )?),
            Some(path) => {
                let source = std::fs::read_to_string(path).map_err(|e| {
                    StartError::Policy(format!("cannot read {}: {e}", path.display()))
                })?;
                Ok(Self::new(&path.display().to_string(), source)?)
            }
        }
    }
}

impl Broker {
    pub(super) fn policy(&self) -> Arc<LoadedPolicy> {
        self.policy
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// `GET /v1/policy`.
    pub fn policy_document(&self) -> PolicyDocument {
        let p = self.policy();
        PolicyDocument {
            digest: p.digest.clone(),
            name: p.name.clone(),
            rego: p.source.clone(),
        }
    }
}
