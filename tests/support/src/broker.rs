//! The reference broker as the tests run it: a typed builder for its
//! configuration (instead of hand-written TOML in each suite), its admin
//! calls, and the two policies tests switch between.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use broker::server::config::{
    AppSection, AttestationSection, Config, DEFAULT_MFA_AMR, EnrolmentMode, EnrolmentSection,
    GatewaySection, OidcSection, ServerSection, Settings,
};

use crate::idp;

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

/// The `server.database_url` a test broker whose state would be the SQLite
/// file `database` gets: `None` on SQLite (the default), the shared
/// cluster's database for that path when the suites run on PostgreSQL
/// (`SALLYPORT_TEST_DATABASE=postgres`, see [`crate::postgres`]).
pub fn database_url_for(database: &Path) -> Option<String> {
    #[cfg(unix)]
    if crate::postgres::selected() {
        return Some(crate::postgres::database_for(database));
    }
    let _ = database;
    None
}

/// A broker configuration for tests, built field by field. Starts from
/// what every test wants: HTTP and the gateway on loopback ephemeral ports,
/// the test IdP's audience and client id, the [`ADMIN_TOKEN`], a /24 client
/// network, no apps, and enrolment mode `open` (set explicitly: the broker's
/// default, `approval`, would leave every test's device pending).
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    config: Config,
}

impl BrokerConfig {
    /// Trusting `issuer`, keeping state in the SQLite file `database`, or
    /// (with `SALLYPORT_TEST_DATABASE=postgres`) in the shared PostgreSQL
    /// cluster's database for that path ([`database_url_for`]).
    pub fn new(issuer: &str, database: &Path) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA256, ADMIN_TOKEN.as_bytes());
        let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        let loopback: SocketAddr = ([127, 0, 0, 1], 0).into();
        Self {
            config: Config {
                server: ServerSection {
                    listen: loopback,
                    tls_cert: None,
                    tls_key: None,
                    database: database.to_owned(),
                    database_url: database_url_for(database),
                    database_ca: None,
                    admin_token_sha256: Some(hex),
                    admins: Vec::new(),
                    public_url: None,
                },
                oidc: OidcSection {
                    issuer: issuer.to_owned(),
                    audience: idp::BROKER_AUDIENCE.to_owned(),
                    client_id: idp::CLIENT_ID.to_owned(),
                    // Production defaults: MFA required (the test IdP's
                    // access tokens carry amr/acr/auth_time), no age limit.
                    required_acr: Vec::new(),
                    required_amr: DEFAULT_MFA_AMR.iter().map(|s| (*s).to_owned()).collect(),
                    require_mfa: true,
                    max_auth_age_seconds: None,
                    jwks_ttl_seconds: 300,
                    clock_skew_seconds: 60,
                },
                attestation: AttestationSection::default(),
                enrolment: EnrolmentSection {
                    mode: EnrolmentMode::Open,
                    ..EnrolmentSection::default()
                },
                gateway: GatewaySection {
                    listen: loopback,
                    endpoint: None,
                    client_network: "100.64.0.0/24".to_owned(),
                    max_grant_seconds: 3600,
                },
                access: Default::default(),
                audit: Default::default(),
                limits: Default::default(),
                apps: Vec::new(),
                gateways: Vec::new(),
            },
        }
    }

    /// The HTTP API on `127.0.0.1:port` (0: any free port).
    pub fn http_port(mut self, port: u16) -> Self {
        self.config.server.listen.set_port(port);
        self
    }

    /// The gateway on UDP `127.0.0.1:port` (0: any free port).
    pub fn udp_port(mut self, port: u16) -> Self {
        self.config.gateway.listen.set_port(port);
        self
    }

    /// The audience access tokens (and EATs) must carry.
    pub fn audience(mut self, audience: &str) -> Self {
        self.config.oidc.audience = audience.to_owned();
        self
    }

    /// `attestation.verdict_ttl_seconds`.
    pub fn verdict_ttl(mut self, seconds: u64) -> Self {
        self.config.attestation.verdict_ttl_seconds = seconds;
        self
    }

    /// The Rego policy file (`POST /v1/admin/policy/reload` rereads it).
    pub fn policy(mut self, path: &Path) -> Self {
        self.config.attestation.policy = Some(path.to_owned());
        self
    }

    /// `enrolment.mode`.
    pub fn enrolment(mut self, mode: EnrolmentMode) -> Self {
        self.config.enrolment.mode = mode;
        self
    }

    /// `enrolment.tpm_ca_certificates` (PEM files; `hardware` mode needs one).
    pub fn tpm_ca_certificates(mut self, pems: &[PathBuf]) -> Self {
        self.config.enrolment.tpm_ca_certificates = pems.to_vec();
        self
    }

    /// `enrolment.max_devices_per_user`.
    pub fn max_devices_per_user(mut self, devices: u32) -> Self {
        self.config.enrolment.max_devices_per_user = devices;
        self
    }

    /// `gateway.max_grant_seconds`.
    pub fn max_grant(mut self, seconds: u64) -> Self {
        self.config.gateway.max_grant_seconds = seconds;
        self
    }

    /// `gateway.client_network`.
    pub fn client_network(mut self, cidr: &str) -> Self {
        self.config.gateway.client_network = cidr.to_owned();
        self
    }

    /// One application with one TCP target.
    pub fn app(mut self, id: &str, name: &str, target: SocketAddr) -> Self {
        self.config.apps.push(AppSection {
            id: id.to_owned(),
            name: name.to_owned(),
            targets: vec![format!("{target}/tcp")],
            labels: Default::default(),
            owners: Vec::new(),
            gateways: Vec::new(),
        });
        self
    }

    /// One more label on the application added last (`sensitivity`, `high`).
    pub fn label(mut self, key: &str, value: &str) -> Self {
        if let Some(app) = self.config.apps.last_mut() {
            app.labels.insert(key.to_owned(), value.to_owned());
        }
        self
    }

    /// Any other field, for the test that needs it.
    pub fn with(mut self, change: impl FnOnce(&mut Config)) -> Self {
        change(&mut self.config);
        self
    }

    /// The configuration as built.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Validated, as `broker::server::start` takes it.
    pub fn settings(&self) -> Settings {
        self.config.clone().validate().unwrap()
    }

    /// The TOML file text, for `sallyport-broker --config`.
    pub fn toml(&self) -> String {
        toml::to_string(&self.config).unwrap()
    }

    /// Starts the reference broker (and its embedded gateway) in-process.
    pub async fn start(&self) -> broker::server::BrokerHandle {
        broker::server::start(self.settings()).await.unwrap()
    }
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
