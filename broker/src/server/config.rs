//! The broker's one TOML configuration file, and its validation (pure: no
//! file or socket is touched here; [`Config::parse`] takes the text).
//!
//! ```toml
//! [server]
//! listen = "0.0.0.0:8443"
//! tls_cert = "/etc/sallyport/broker.crt"   # PEM chain; required unless listen is loopback
//! tls_key = "/etc/sallyport/broker.key"    # PEM PKCS#8 / RSA / SEC1 key
//! database = "/var/lib/sallyport/broker.db"
//! admin_token_sha256 = "<hex of SHA-256 of the admin bearer token>"
//!
//! [oidc]
//! issuer = "https://idp.example.com"
//! audience = "sallyport-broker"       # access tokens' aud; also every EAT's aud
//! client_id = "sallyport"             # advertised to agents
//! required_acr = "mfa"                # optional
//!
//! [attestation]
//! verdict_ttl_seconds = 900           # default 900
//! policy = "/etc/sallyport/policy.rego" # optional; default: the built-in policy
//!
//! [enrolment]
//! mode = "approval"                   # "open" | "approval" (default) | "hardware"
//! max_devices_per_user = 5            # default 5
//!
//! [gateway]
//! listen = "0.0.0.0:51820"
//! endpoint = "203.0.113.10:51820"     # what agents are told to connect to
//! client_network = "100.64.0.0/16"    # tunnel addresses handed out
//! max_grant_seconds = 3600
//!
//! [[apps]]
//! id = "wiki"
//! name = "Internal wiki"
//! targets = ["10.0.0.5:443/tcp"]
//! ```

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Not valid TOML or a field has the wrong type.
    #[error("invalid configuration: {0}")]
    Syntax(String),
    /// A value is out of range or inconsistent; the message names it.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// The whole file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// HTTP side.
    pub server: ServerSection,
    /// The identity provider.
    pub oidc: OidcSection,
    /// Verdicts and policy.
    #[serde(default)]
    pub attestation: AttestationSection,
    /// How a new device key becomes usable.
    #[serde(default)]
    pub enrolment: EnrolmentSection,
    /// WireGuard gateway.
    pub gateway: GatewaySection,
    /// The application catalogue.
    #[serde(default)]
    pub apps: Vec<AppSection>,
}

/// `[server]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// PEM certificate chain.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key.
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// SQLite database file (created if missing).
    pub database: PathBuf,
    /// SHA-256 (hex) of the admin bearer token; admin calls are refused without one.
    #[serde(default)]
    pub admin_token_sha256: Option<String>,
}

/// `[oidc]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OidcSection {
    /// Issuer URL, compared exactly with `iss`.
    pub issuer: String,
    /// Audience access tokens must carry; the broker's identifier (EAT `aud`).
    pub audience: String,
    /// The agent's client id (advertised in `/v1/config`).
    pub client_id: String,
    /// `acr_values` agents request.
    #[serde(default)]
    pub required_acr: Option<String>,
    /// Clock skew allowed on token and EAT times, seconds.
    #[serde(default = "default_skew")]
    pub clock_skew_seconds: u32,
}

fn default_skew() -> u32 {
    60
}

/// `[attestation]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AttestationSection {
    /// How long a verdict is good for.
    #[serde(default = "default_verdict_ttl")]
    pub verdict_ttl_seconds: u64,
    /// Rego policy file; the built-in default when absent.
    #[serde(default)]
    pub policy: Option<PathBuf>,
}

impl Default for AttestationSection {
    fn default() -> Self {
        Self {
            verdict_ttl_seconds: default_verdict_ttl(),
            policy: None,
        }
    }
}

fn default_verdict_ttl() -> u64 {
    900
}

/// How a newly enrolled device key becomes usable. The default is
/// [`EnrolmentMode::Approval`]: a valid sign-in alone must not be enough to
/// register a machine, since anyone with a user's password and second
/// factor could otherwise enrol their own laptop.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EnrolmentMode {
    /// A new device is active at once (demos and tests).
    Open,
    /// A new device stays pending until an administrator approves it.
    #[default]
    Approval,
    /// The enrolment must carry a TPM key attestation. Verifying it comes
    /// with the device service; until then every enrolment of a new key is
    /// refused, never waved through.
    Hardware,
}

/// `[enrolment]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EnrolmentSection {
    /// `open`, `approval` (default) or `hardware`.
    #[serde(default)]
    pub mode: EnrolmentMode,
    /// How many devices (pending or active; revoked ones do not count) one
    /// user may have.
    #[serde(default = "default_max_devices")]
    pub max_devices_per_user: u32,
}

impl Default for EnrolmentSection {
    fn default() -> Self {
        Self {
            mode: EnrolmentMode::default(),
            max_devices_per_user: default_max_devices(),
        }
    }
}

fn default_max_devices() -> u32 {
    5
}

/// `[gateway]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GatewaySection {
    /// UDP listen address.
    pub listen: SocketAddr,
    /// Advertised endpoint (`host:port`); defaults to `listen` when that is
    /// not a wildcard address.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// IPv4 network tunnel addresses are taken from (`100.64.0.0/16`).
    #[serde(default = "default_network")]
    pub client_network: String,
    /// Longest grant, seconds.
    #[serde(default = "default_max_grant")]
    pub max_grant_seconds: u64,
}

fn default_network() -> String {
    "100.64.0.0/16".to_owned()
}

fn default_max_grant() -> u64 {
    3600
}

/// One `[[apps]]` entry.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AppSection {
    /// Stable id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// `ip:port/tcp|udp`.
    pub targets: Vec<String>,
}

/// The configuration after validation: everything parsed into its real type.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The file as read.
    pub raw: Config,
    /// Verdict lifetime.
    pub verdict_ttl: Duration,
    /// Longest grant.
    pub max_grant: Duration,
    /// Skew in seconds.
    pub skew: i64,
    /// The advertised gateway endpoint.
    pub gateway_endpoint: String,
    /// Client network.
    pub network: Ipv4Net,
    /// Apps with parsed targets.
    pub apps: Vec<(AppSection, Vec<tunnel::Target>)>,
    /// Decoded admin token digest.
    pub admin_token_sha256: Option<[u8; 32]>,
}

/// An IPv4 network `a.b.c.d/len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Net {
    /// Network address.
    pub addr: Ipv4Addr,
    /// Prefix length.
    pub prefix: u8,
}

impl Ipv4Net {
    /// Parses `a.b.c.d/len` (8..=30, host bits zero).
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let bad = |why: &str| ConfigError::Invalid(format!("client_network {text:?}: {why}"));
        let (addr, len) = text
            .split_once('/')
            .ok_or_else(|| bad("expected a.b.c.d/len"))?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| bad("not an IPv4 address"))?;
        let prefix: u8 = len.parse().map_err(|_| bad("prefix is not a number"))?;
        if !(8..=30).contains(&prefix) {
            return Err(bad("prefix must be 8..=30"));
        }
        let mask = u32::MAX << (32 - prefix);
        if u32::from(addr) & !mask != 0 {
            return Err(bad("host bits are set"));
        }
        Ok(Self { addr, prefix })
    }

    /// Number of addresses (including network and broadcast).
    pub fn size(&self) -> u32 {
        1u32 << (32 - self.prefix)
    }
}

impl Config {
    /// Parses and validates the TOML text.
    pub fn parse(text: &str) -> Result<Settings, ConfigError> {
        let raw: Config = toml::from_str(text).map_err(|e| ConfigError::Syntax(e.to_string()))?;
        raw.validate()
    }

    /// Checks every rule and returns typed settings.
    pub fn validate(self) -> Result<Settings, ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        match (&self.server.tls_cert, &self.server.tls_key) {
            (None, None) if !self.server.listen.ip().is_loopback() => {
                return invalid(format!(
                    "server.listen {} is not loopback: set tls_cert and tls_key (plain http is only allowed on 127.0.0.1 / ::1)",
                    self.server.listen
                ));
            }
            (Some(_), None) | (None, Some(_)) => {
                return invalid("set both server.tls_cert and server.tls_key, or neither".into());
            }
            _ => {}
        }
        let issuer = &self.oidc.issuer;
        if !crate::api::https_or_loopback(issuer) {
            return invalid(format!(
                "oidc.issuer {issuer:?} must be https (http only on loopback)"
            ));
        }
        if self.oidc.audience.is_empty() || self.oidc.client_id.is_empty() {
            return invalid("oidc.audience and oidc.client_id must not be empty".into());
        }
        if self.oidc.clock_skew_seconds > 300 {
            return invalid("oidc.clock_skew_seconds must be at most 300".into());
        }
        if !(30..=86_400).contains(&self.attestation.verdict_ttl_seconds) {
            return invalid("attestation.verdict_ttl_seconds must be 30..=86400".into());
        }
        if !(1..=10_000).contains(&self.enrolment.max_devices_per_user) {
            return invalid("enrolment.max_devices_per_user must be 1..=10000".into());
        }
        if !(1..=86_400).contains(&self.gateway.max_grant_seconds) {
            return invalid("gateway.max_grant_seconds must be 1..=86400".into());
        }
        let network = Ipv4Net::parse(&self.gateway.client_network)?;
        let gateway_endpoint = match &self.gateway.endpoint {
            Some(e) if !e.is_empty() => e.clone(),
            _ if self.gateway.listen.ip().is_unspecified() => {
                return invalid(
                    "gateway.endpoint is required when gateway.listen is a wildcard address".into(),
                );
            }
            _ => self.gateway.listen.to_string(),
        };
        let mut ids = HashSet::new();
        let mut apps = Vec::new();
        for app in &self.apps {
            if app.id.is_empty()
                || !app
                    .id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return invalid(format!("app id {:?} must be [A-Za-z0-9_-]+", app.id));
            }
            if !ids.insert(app.id.clone()) {
                return invalid(format!("app id {:?} is listed twice", app.id));
            }
            if app.targets.is_empty() {
                return invalid(format!("app {:?} has no targets", app.id));
            }
            let targets = app
                .targets
                .iter()
                .map(|t| {
                    t.parse::<tunnel::Target>()
                        .map_err(|e| ConfigError::Invalid(format!("app {:?}: {e}", app.id)))
                })
                .collect::<Result<Vec<_>, _>>()?;
            apps.push((app.clone(), targets));
        }
        let admin_token_sha256 = match &self.server.admin_token_sha256 {
            None => None,
            Some(hex) => Some(decode_hex32(hex).ok_or_else(|| {
                ConfigError::Invalid(
                    "server.admin_token_sha256 must be 64 hex digits (sha256sum of the token)"
                        .into(),
                )
            })?),
        };
        Ok(Settings {
            verdict_ttl: Duration::from_secs(self.attestation.verdict_ttl_seconds),
            max_grant: Duration::from_secs(self.gateway.max_grant_seconds),
            skew: i64::from(self.oidc.clock_skew_seconds),
            gateway_endpoint,
            network,
            apps,
            admin_token_sha256,
            raw: self,
        })
    }
}

/// Decodes 64 hex digits.
pub fn decode_hex32(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, chunk) in hex.as_bytes().chunks(2).enumerate() {
        let s = std::str::from_utf8(chunk).ok()?;
        out[i] = u8::from_str_radix(s, 16).ok()?;
    }
    Some(out)
}

/// Lower-case hex.
pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[server]
listen = "127.0.0.1:8080"
database = "/tmp/x.db"

[oidc]
issuer = "https://idp.example.com"
audience = "sallyport-broker"
client_id = "sallyport"

[gateway]
listen = "127.0.0.1:51820"

[[apps]]
id = "wiki"
name = "Wiki"
targets = ["10.0.0.5:443/tcp", "10.0.0.6:53/udp"]
"#;

    #[test]
    fn parses_with_defaults() {
        let s = Config::parse(GOOD).unwrap();
        assert_eq!(s.verdict_ttl, Duration::from_secs(900));
        assert_eq!(s.gateway_endpoint, "127.0.0.1:51820");
        assert_eq!(
            s.network,
            Ipv4Net {
                addr: Ipv4Addr::new(100, 64, 0, 0),
                prefix: 16
            }
        );
        assert_eq!(s.apps[0].1.len(), 2);
        assert_eq!(s.skew, 60);
        // A broker nobody configured for it does not let devices in unseen.
        assert_eq!(s.raw.enrolment.mode, EnrolmentMode::Approval);
        assert_eq!(s.raw.enrolment.max_devices_per_user, 5);
    }

    #[test]
    fn enrolment_modes() {
        let section = |body: &str| Config::parse(&format!("{GOOD}\n[enrolment]\n{body}\n"));
        let s = section("mode = \"open\"\nmax_devices_per_user = 2").unwrap();
        assert_eq!(s.raw.enrolment.mode, EnrolmentMode::Open);
        assert_eq!(s.raw.enrolment.max_devices_per_user, 2);
        assert_eq!(
            section("mode = \"hardware\"").unwrap().raw.enrolment.mode,
            EnrolmentMode::Hardware
        );
        assert!(section("mode = \"trusting\"").is_err());
        assert!(section("max_devices_per_user = 0").is_err());
        assert!(section("bogus = 1").is_err());
    }

    fn with(from: &str, to: &str) -> Result<Settings, ConfigError> {
        assert!(GOOD.contains(from), "{from}");
        Config::parse(&GOOD.replace(from, to))
    }

    #[test]
    fn plain_http_only_on_loopback() {
        let e = with("listen = \"127.0.0.1:8080\"", "listen = \"0.0.0.0:8080\"").unwrap_err();
        assert!(e.to_string().contains("tls_cert"), "{e}");
        assert!(
            with(
                "listen = \"127.0.0.1:8080\"",
                "listen = \"0.0.0.0:8080\"\ntls_cert = \"c\"\ntls_key = \"k\""
            )
            .is_ok()
        );
        assert!(with("listen = \"127.0.0.1:8080\"", "listen = \"[::1]:8080\"").is_ok());
        assert!(
            with(
                "listen = \"127.0.0.1:8080\"",
                "listen = \"127.0.0.1:8080\"\ntls_cert = \"c\""
            )
            .is_err()
        );
        assert!(with("https://idp.example.com", "http://idp.example.com").is_err());
        assert!(with("https://idp.example.com", "http://127.0.0.1:9000").is_ok());
    }

    #[test]
    fn rejects_bad_values() {
        assert!(with("10.0.0.5:443/tcp", "wiki.internal:443/tcp").is_err());
        assert!(with("id = \"wiki\"", "id = \"wi ki\"").is_err());
        assert!(with("listen = \"127.0.0.1:51820\"", "listen = \"0.0.0.0:51820\"").is_err());
        assert!(
            with(
                "listen = \"127.0.0.1:51820\"",
                "listen = \"127.0.0.1:51820\"\nclient_network = \"100.64.0.1/16\""
            )
            .is_err()
        );
        assert!(
            with(
                "listen = \"127.0.0.1:51820\"",
                "listen = \"127.0.0.1:51820\"\nmax_grant_seconds = 0"
            )
            .is_err()
        );
        assert!(
            with(
                "client_id = \"sallyport\"",
                "client_id = \"sallyport\"\nbogus = 1"
            )
            .is_err()
        );
        assert!(
            with(
                "database = \"/tmp/x.db\"",
                "database = \"/tmp/x.db\"\nadmin_token_sha256 = \"abc\""
            )
            .is_err()
        );
        let dup = format!(
            "{GOOD}\n[[apps]]\nid = \"wiki\"\nname = \"x\"\ntargets = [\"10.0.0.1:1/tcp\"]\n"
        );
        assert!(Config::parse(&dup).is_err());
        assert!(Config::parse("not toml [").is_err());
    }

    #[test]
    fn hex() {
        let d = [0xabu8; 32];
        assert_eq!(decode_hex32(&to_hex(&d)), Some(d));
        assert_eq!(decode_hex32("zz"), None);
    }
}
