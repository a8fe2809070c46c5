//! The reference broker and its WireGuard gateway, embedded in the demo's
//! process, and the demo playing their administrator: it writes the
//! broker's configuration and policy file, and changes the policy the way
//! an administrator does (edit the file, call the admin reload).
//!
//! Everything lives in one temporary folder (database, policy) that is
//! deleted after the broker stopped; the admin token is random per run and
//! only its digest is written down.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use broker::server::BrokerHandle;

use crate::fetch::http;
use crate::issuer::{DEMO_ACR, DEMO_CLIENT_ID};
use crate::run::{APP_ID, AUDIENCE, DemoError, random_token, start_error};

/// The running broker and what administering it takes.
#[derive(Debug)]
pub(crate) struct EmbeddedBroker {
    handle: BrokerHandle,
    admin_token: String,
    policy_path: PathBuf,
    /// Database and policy file; dropped (deleted) after the broker stops.
    dir: tempfile::TempDir,
}

impl EmbeddedBroker {
    /// Starts the broker trusting `issuer`, with `app` as its one
    /// application and `policy` (Rego) as its policy.
    pub(crate) async fn start(
        issuer: &str,
        app: SocketAddr,
        policy: &str,
    ) -> Result<Self, DemoError> {
        let dir = tempfile::Builder::new()
            .prefix("sallyport-demo-")
            .tempdir()
            .map_err(|e| start_error("the broker (temporary folder)", e))?;
        let policy_path = dir.path().join("demo-policy.rego");
        std::fs::write(&policy_path, policy)
            .map_err(|e| start_error("the broker (policy file)", e))?;
        let admin_token = random_token();
        let handle = start_broker(
            issuer,
            &dir.path().join("broker.sqlite"),
            &policy_path,
            app,
            &admin_token,
        )
        .await?;
        Ok(EmbeddedBroker {
            handle,
            admin_token,
            policy_path,
            dir,
        })
    }

    /// The API's base URL.
    pub(crate) fn base_url(&self) -> String {
        self.handle.base_url()
    }

    /// The gateway's UDP address, for the narration.
    pub(crate) fn gateway_addr(&self) -> Option<SocketAddr> {
        self.handle.gateway_addr()
    }

    /// How many WireGuard peers (open grants) the gateway holds now.
    pub(crate) fn gateway_peers(&self) -> usize {
        self.handle.gateway_status().map_or(0, |s| s.peers.len())
    }

    /// Writes the policy file and has the broker reload it (admin call), the
    /// way an administrator changes policy; the broker tells every agent.
    pub(crate) async fn set_policy(&self, rego: &str) -> Result<(), DemoError> {
        std::fs::write(&self.policy_path, rego)
            .map_err(|e| DemoError::Broken(format!("policy file: {e}")))?;
        let reply = http()
            .post(format!(
                "{}{}",
                self.base_url(),
                broker::api::paths::ADMIN_POLICY_RELOAD
            ))
            .bearer_auth(&self.admin_token)
            .json(&serde_json::json!({}))
            .send()
            .await
            .map_err(|e| DemoError::Broken(format!("policy reload: {e}")))?;
        if !reply.status().is_success() {
            return Err(DemoError::Broken(format!(
                "the broker refused the new policy ({})",
                reply.status()
            )));
        }
        Ok(())
    }

    /// Stops the API and the gateway (every peer removed), then deletes
    /// the temporary folder.
    pub(crate) async fn shutdown(self) {
        self.handle.shutdown().await;
        drop(self.dir);
    }
}

/// Starts the broker; the gateway's UDP port is picked free first (the
/// gateway advertises its listen address, so it cannot be port 0), and a
/// port taken in between is retried.
async fn start_broker(
    issuer: &str,
    db: &Path,
    policy: &Path,
    app: SocketAddr,
    admin_token: &str,
) -> Result<BrokerHandle, DemoError> {
    let mut last = String::new();
    for _ in 0..3 {
        let gateway = std::net::UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .map_err(|e| start_error("the gateway", e))?;
        let text = broker_config(issuer, db, policy, app, gateway, admin_token);
        let settings =
            broker::server::Config::parse(&text).map_err(|e| start_error("the broker", e))?;
        match broker::server::start(settings).await {
            Ok(handle) => return Ok(handle),
            Err(e) => last = e.to_string(),
        }
    }
    Err(start_error("the broker", last))
}

/// The broker's configuration (TOML): loopback only, the demo issuer, a
/// short verdict lifetime so re-attestation shows, one application.
fn broker_config(
    issuer: &str,
    db: &Path,
    policy: &Path,
    app: SocketAddr,
    gateway: SocketAddr,
    admin_token: &str,
) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, admin_token.as_bytes());
    let toml_path = |p: &Path| p.display().to_string().replace('\\', "\\\\");
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
database = "{db}"
admin_token_sha256 = "{admin}"

[oidc]
issuer = "{issuer}"
audience = "{AUDIENCE}"
client_id = "{DEMO_CLIENT_ID}"
required_acr = ["{DEMO_ACR}"]

[attestation]
verdict_ttl_seconds = 120
policy = "{policy}"

# The demo's one device is let in at once; a real deployment keeps the
# default, "approval".
[enrolment]
mode = "open"

[gateway]
listen = "{gateway}"
client_network = "100.64.0.0/24"
max_grant_seconds = 600

[[apps]]
id = "{APP_ID}"
name = "Sallyport demo application"
targets = ["{app}/tcp"]
"#,
        db = toml_path(db),
        policy = toml_path(policy),
        admin = broker::server::config::to_hex(digest.as_ref()),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_broker_config_is_valid_and_names_the_app() {
        let dir = std::env::temp_dir();
        let text = broker_config(
            "http://127.0.0.1:9000",
            &dir.join("b.sqlite"),
            &dir.join("p.rego"),
            SocketAddr::from(([127, 0, 0, 1], 8080)),
            SocketAddr::from(([127, 0, 0, 1], 51820)),
            "token",
        );
        let settings = broker::server::Config::parse(&text).unwrap();
        assert_eq!(settings.apps.len(), 1);
        assert_eq!(settings.apps[0].0.id, APP_ID);
        assert_eq!(settings.gateway_endpoint, "127.0.0.1:51820");
        assert_eq!(
            settings.raw.enrolment.mode,
            broker::server::config::EnrolmentMode::Open,
            "the demo's device must not wait for an approval nobody gives"
        );
        assert!(!text.contains("\"token\""), "only the token's digest");
    }
}
