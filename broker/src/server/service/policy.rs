//! The policy in force: compiled once at load, swapped whole on reload, and
//! served to agents as `GET /v1/policy` so they can evaluate locally what
//! the broker will decide.

use std::sync::{Arc, PoisonError};

use posture::policy::Policy;

use super::{Broker, StartError};
use crate::api::PolicyDocument;
use crate::server::access::AccessPolicy;
use crate::server::config::{Settings, to_hex};

/// The policies in force: the posture policy (`sallyport.posture`, verdicts)
/// and the access policy (`sallyport.access`, grants), loaded and swapped
/// together so a reload never pairs one file's old version with the other's new.
#[derive(Debug)]
pub struct LoadedPolicy {
    /// The access policy.
    pub access: AccessPolicy,
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
    /// Compiles `source` (posture) next to an already compiled access policy.
    pub fn new(
        name: &str,
        source: String,
        access: AccessPolicy,
    ) -> Result<Self, posture::policy::PolicyError> {
        Ok(Self {
            access,
            policy: Policy::from_source(name, &source)?,
            digest: to_hex(ring::digest::digest(&ring::digest::SHA256, source.as_bytes()).as_ref()),
            name: name.to_owned(),
            source,
        })
    }

    /// From the configured files, or the built-in defaults.
    pub fn load(settings: &Settings) -> Result<Self, StartError> {
        let read = |path: &std::path::Path| {
            std::fs::read_to_string(path)
                .map_err(|e| StartError::Policy(format!("cannot read {}: {e}", path.display())))
        };
        let access = match &settings.raw.access.policy {
            None => AccessPolicy::default_policy(),
            Some(path) => AccessPolicy::from_source(&path.display().to_string(), &read(path)?),
        }
        .map_err(|e| StartError::Policy(e.to_string()))?;
        match &settings.raw.attestation.policy {
            None => Ok(Self::new(
                "default.rego",
                posture::policy::DEFAULT_POLICY.to_owned(),
                access,
            )?),
            Some(path) => Ok(Self::new(&path.display().to_string(), read(path)?, access)?),
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
