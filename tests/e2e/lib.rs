//! Shared pieces of the end-to-end suite (`gate.rs`, a test target) and the
//! agent benchmarks (`tests/benches/`): the test OpenID provider, the
//! reference broker's configuration and admin calls, a TCP echo target and
//! the probe that says whether traffic flows through a tunnel.

// Test and benchmark scaffolding: a setup failure must abort loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../idp/harness.rs"]
pub mod idp;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use agent::identity::Identity;
use agent::identity::client::AuthOverrides;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The broker's admin bearer token (its SHA-256 goes into the config).
pub const ADMIN_TOKEN: &str = "e2e-admin-token";

/// Allows the device while the OS is identified (true on this machine).
pub const LENIENT: &str = r#"package sallyport.posture
import rego.v1

violations contains v if {
    input.checks.os_version.status != "pass"
    v := {"check": "os_version", "message": "The OS could not be identified.", "remediation": "Contact IT."}
}
"#;

/// Also requires disk encryption, which this VM does not have.
pub const STRICT: &str = r#"package sallyport.posture
import rego.v1

violations contains v if {
    input.checks.os_version.status != "pass"
    v := {"check": "os_version", "message": "The OS could not be identified.", "remediation": "Contact IT."}
}

violations contains v if {
    input.checks.disk_encryption.status != "pass"
    v := {"check": "disk_encryption", "message": "The system disk is not encrypted.", "remediation": "Turn on full-disk encryption."}
}
"#;

/// A TCP echo server on loopback, running on the current tokio runtime.
pub async fn tcp_echo() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// One round trip through `addr` on a fresh connection; `Err` when traffic
/// does not flow.
pub async fn echo_through(addr: &str) -> Result<(), String> {
    let attempt = async {
        let mut s = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        s.write_all(b"through the sally port")
            .await
            .map_err(|e| e.to_string())?;
        let mut got = [0u8; 22];
        s.read_exact(&mut got).await.map_err(|e| e.to_string())?;
        if &got == b"through the sally port" {
            Ok(())
        } else {
            Err("corrupted echo".to_owned())
        }
    };
    tokio::time::timeout(Duration::from_secs(3), attempt)
        .await
        .map_err(|_| "timed out".to_owned())?
}

/// A loopback port free at the time of the call.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// What goes into the reference broker's TOML configuration.
#[derive(Debug, Clone)]
pub struct BrokerSetup<'a> {
    /// The OpenID issuer (the test IdP).
    pub issuer: &'a str,
    /// The SQLite file.
    pub db: &'a Path,
    /// The Rego policy file (`POST /v1/admin/policy/reload` rereads it).
    pub policy: &'a Path,
    /// The HTTP API's loopback port.
    pub http: u16,
    /// The gateway's loopback UDP port.
    pub udp: u16,
    /// `attestation.verdict_ttl_seconds`.
    pub verdict_ttl: u64,
    /// `gateway.max_grant_seconds`.
    pub max_grant: u64,
    /// The catalogue: app id, display name, one TCP target each.
    pub apps: &'a [(&'a str, &'a str, SocketAddr)],
}

impl BrokerSetup<'_> {
    /// The configuration text, for `broker::server::Config::parse` or the
    /// `sallyport-broker --config` file.
    pub fn toml(&self) -> String {
        let digest = ring::digest::digest(&ring::digest::SHA256, ADMIN_TOKEN.as_bytes());
        let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        let mut text = format!(
            r#"
[server]
listen = "127.0.0.1:{http}"
database = "{db}"
admin_token_sha256 = "{hex}"

[oidc]
issuer = "{issuer}"
audience = "{aud}"
client_id = "{client}"

[attestation]
verdict_ttl_seconds = {verdict_ttl}
policy = "{policy}"

[gateway]
listen = "127.0.0.1:{udp}"
client_network = "100.64.0.0/24"
max_grant_seconds = {max_grant}
"#,
            http = self.http,
            udp = self.udp,
            issuer = self.issuer,
            verdict_ttl = self.verdict_ttl,
            max_grant = self.max_grant,
            db = self.db.display(),
            policy = self.policy.display(),
            aud = idp::BROKER_AUDIENCE,
            client = idp::CLIENT_ID,
        );
        for (id, name, target) in self.apps {
            text.push_str(&format!(
                "\n[[apps]]\nid = \"{id}\"\nname = \"{name}\"\ntargets = [\"{target}/tcp\"]\n"
            ));
        }
        text
    }
}

/// Signs `identity` in at the test IdP (browser flow, password + TOTP),
/// playing the user's browser.
pub async fn login(identity: &Identity) {
    let open = |url: &url::Url| {
        let url = url.to_string();
        tokio::spawn(async move {
            idp::complete_browser_login(&url).await;
        });
        Ok(())
    };
    identity
        .login_browser(&open, &AuthOverrides::default())
        .await
        .unwrap();
}

/// `POST` an admin request to the broker at `base_url`; the reply's JSON
/// body, or why it failed.
pub async fn admin(
    http: &reqwest::Client,
    base_url: &str,
    path: &str,
    body: &serde_json::Value,
) -> Result<serde_json::Value, String> {
    let reply = http
        .post(format!("{base_url}{path}"))
        .bearer_auth(ADMIN_TOKEN)
        .json(body)
        .send()
        .await
        .map_err(|e| format!("{path}: {e}"))?;
    let status = reply.status();
    let text = reply.text().await.map_err(|e| format!("{path}: {e}"))?;
    if !status.is_success() {
        return Err(format!("{path}: {status}: {text}"));
    }
    Ok(serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
}
