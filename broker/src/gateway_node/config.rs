//! The gateway's configuration file (TOML):
//!
//! ```toml
//! listen = "0.0.0.0:51820"
//! private_key_file = "/var/lib/sallyport-gateway/gateway.key"
//! brokers = ["https://broker-a.example.com", "https://broker-b.example.com"]
//! token_file = "/etc/sallyport-gateway/token"
//! # ca_certificate = "/etc/sallyport-gateway/broker-ca.pem"
//! # disconnected_grace_seconds = 30
//! # workers = 4   # default: one per core
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// The file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// UDP address agents' tunnels reach.
    pub listen: SocketAddr,
    /// The WireGuard private key (base64, 0600; `sallyport-gateway keygen`).
    pub private_key_file: PathBuf,
    /// Broker base URLs, tried in turn: `https://` (plain `http://` only on
    /// loopback).
    pub brokers: Vec<String>,
    /// The sync credential (its SHA-256 is in the broker's `[[gateways]]`).
    pub token_file: PathBuf,
    /// A PEM CA certificate to trust for the brokers, besides the system's
    /// (webpki) roots.
    #[serde(default)]
    pub ca_certificate: Option<PathBuf>,
    /// How long peers are kept while no broker can be reached.
    #[serde(default = "default_grace")]
    pub disconnected_grace_seconds: u64,
    /// Gateway workers, each a thread with its share of the peers on one
    /// UDP port (`tunnel::Gateway::start_with_workers`; Linux, elsewhere
    /// one). Default: one per core the process may use.
    #[serde(default)]
    pub workers: Option<usize>,
}

/// Most workers a configuration may ask for.
const MAX_WORKERS: usize = 256;

fn default_grace() -> u64 {
    30
}

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum NodeConfigError {
    /// Unreadable file.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Not the expected TOML.
    #[error("{0}")]
    Syntax(String),
    /// A rule is broken.
    #[error("{0}")]
    Invalid(String),
}

impl NodeConfig {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<Self, NodeConfigError> {
        let text = read(path)?;
        Self::parse(&text)
    }

    /// Parses and checks TOML text.
    pub fn parse(text: &str) -> Result<Self, NodeConfigError> {
        let config: NodeConfig =
            toml::from_str(text).map_err(|e| NodeConfigError::Syntax(e.to_string()))?;
        if config.brokers.is_empty() {
            return Err(NodeConfigError::Invalid(
                "brokers: name at least one".into(),
            ));
        }
        for url in &config.brokers {
            if !crate::api::https_or_loopback(url) {
                return Err(NodeConfigError::Invalid(format!(
                    "brokers: {url:?} must be https:// (plain http only on loopback)"
                )));
            }
        }
        if !(1..=3600).contains(&config.disconnected_grace_seconds) {
            return Err(NodeConfigError::Invalid(
                "disconnected_grace_seconds must be 1..=3600".into(),
            ));
        }
        if config
            .workers
            .is_some_and(|w| !(1..=MAX_WORKERS).contains(&w))
        {
            return Err(NodeConfigError::Invalid(format!(
                "workers must be 1..={MAX_WORKERS}"
            )));
        }
        Ok(config)
    }

    /// How many gateway workers to run: as configured, else one per core.
    pub fn workers(&self) -> usize {
        self.workers.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        })
    }

    /// The grace period.
    pub fn grace(&self) -> Duration {
        Duration::from_secs(self.disconnected_grace_seconds)
    }

    /// The credential, trimmed.
    pub fn token(&self) -> Result<String, NodeConfigError> {
        let token = read(&self.token_file)?.trim().to_owned();
        if token.is_empty() {
            return Err(NodeConfigError::Invalid(format!(
                "{} is empty",
                self.token_file.display()
            )));
        }
        Ok(token)
    }

    /// The WireGuard private key.
    pub fn private_key(&self) -> Result<tunnel::PrivateKey, NodeConfigError> {
        tunnel::PrivateKey::from_base64(read(&self.private_key_file)?.trim()).map_err(|e| {
            NodeConfigError::Invalid(format!("{}: {e}", self.private_key_file.display()))
        })
    }
}

fn read(path: &Path) -> Result<String, NodeConfigError> {
    std::fs::read_to_string(path).map_err(|source| NodeConfigError::Read {
        path: path.display().to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str =
        "listen = \"127.0.0.1:51820\"\nprivate_key_file = \"/k\"\ntoken_file = \"/t\"\n";

    #[test]
    fn brokers_must_be_tls_unless_loopback() {
        let ok = NodeConfig::parse(&format!(
            "{BASE}brokers = [\"https://b.example.com\", \"http://127.0.0.1:8443\"]"
        ))
        .unwrap();
        assert_eq!(ok.grace(), Duration::from_secs(30));
        let plain = NodeConfig::parse(&format!("{BASE}brokers = [\"http://b.example.com\"]"));
        assert!(plain.unwrap_err().to_string().contains("https"));
        let none = NodeConfig::parse(&format!("{BASE}brokers = []"));
        assert!(none.unwrap_err().to_string().contains("at least one"));
        let unknown = NodeConfig::parse(&format!("{BASE}brokers = [\"https://b\"]\nextra = 1"));
        assert!(matches!(unknown, Err(NodeConfigError::Syntax(_))));
    }

    #[test]
    fn workers_default_to_the_cores_and_must_be_sensible() {
        let brokers = "brokers = [\"https://b.example.com\"]\n";
        let default = NodeConfig::parse(&format!("{BASE}{brokers}")).unwrap();
        let cores = std::thread::available_parallelism().unwrap().get();
        assert_eq!(default.workers(), cores);
        let two = NodeConfig::parse(&format!("{BASE}{brokers}workers = 2")).unwrap();
        assert_eq!(two.workers(), 2);
        for bad in ["workers = 0", "workers = 100000"] {
            let e = NodeConfig::parse(&format!("{BASE}{brokers}{bad}")).unwrap_err();
            assert!(e.to_string().contains("workers must be"), "{bad}: {e}");
        }
    }
}
