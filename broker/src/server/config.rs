//! The broker's one TOML configuration file, and its validation (pure: no
//! file or socket is touched here; [`Config::parse`] takes the text).
//!
//! ```toml
//! [server]
//! listen = "0.0.0.0:8443"
//! tls_cert = "/etc/sallyport/broker.crt"   # PEM chain; required unless listen is loopback
//! tls_key = "/etc/sallyport/broker.key"    # PEM PKCS#8 / RSA / SEC1 key
//! database = "/var/lib/sallyport/broker.db"
//! # database_url = "host=/run/postgresql dbname=sallyport"  # PostgreSQL instead of the SQLite file
//! admins = [{ name = "alice@example.com", token_sha256 = "<hex of SHA-256 of her token>" }]
//! # admin_token_sha256 = "<hex>"      # one shared token, logged as "admin": prefer `admins`
//! public_url = "https://broker.example.com"  # optional; what agents call (DPoP htu)
//!
//! [oidc]
//! issuer = "https://idp.example.com"
//! audience = "sallyport-broker"       # access tokens' aud; also every EAT's aud; never the client_id
//! client_id = "sallyport"             # advertised to agents
//! require_mfa = true                  # default true: every call needs a multi-factor sign-in
//! required_amr = ["mfa", "otp", "hwk", "swk", "sc", "fpt", "face"]  # default; any one shows MFA
//! required_acr = ["urn:example:acr:mfa"]  # optional; any one shows MFA; advertised as acr_values
//! max_auth_age_seconds = 43200        # optional (default: no limit): oldest auth_time accepted
//! jwks_ttl_seconds = 300              # default 300: issuer keys are refetched after this
//! clock_skew_seconds = 60             # default 60
//!
//! [attestation]
//! verdict_ttl_seconds = 900           # default 900
//! policy = "/etc/sallyport/policy.rego" # optional; default: the built-in policy
//!
//! [enrolment]
//! mode = "approval"                   # "open" | "approval" (default) | "hardware"
//! max_devices_per_user = 5            # default 5
//! tpm_ca_certificates = ["/etc/sallyport/tpm-ca.pem"]  # hardware mode: CAs of TPM EK certificates (PEM)
//!
//! [gateway]
//! listen = "0.0.0.0:51820"
//! endpoint = "203.0.113.10:51820"     # what agents are told to connect to
//! client_network = "100.64.0.0/16"    # tunnel addresses handed out
//! max_grant_seconds = 3600
//!
//! [access]
//! policy = "/etc/sallyport/access.rego" # optional; default: the built-in `sallyport.access`
//! time_zone = "Europe/Paris"          # default "UTC": the policy's clock (IANA name)
//! groups_claim = "groups"             # default "groups": the access token claim with the user's groups
//! trusted_proxies = ["10.0.0.2/32"]   # optional: peers whose X-Forwarded-For is believed
//! new_device_seconds = 86400          # default 1 day: a device enrolled since is "new"
//! denials_window_seconds = 600        # default 10 min: the window denied grants are counted in
//! denials_threshold = 5               # default 5: that many denials in the window is unusual
//! known_network_mfa_seconds = 300     # default 300: a network is learned from a grant this soon after MFA
//!
//! [access.networks]                   # named networks, as the policy sees them
//! office = ["192.0.2.0/24", "2001:db8:1::/48"]
//!
//! [audit]
//! jsonl = "/var/log/sallyport/decisions.jsonl"   # optional: every audit row as a JSON line
//! syslog = "udp://127.0.0.1:514"      # optional: the same as RFC 5424 messages (udp://host:port or unix:/dev/log)
//!
//! [limits]                            # per user; a limit reached answers 429 quota-exceeded
//! max_open_grants_per_user = 32
//! max_outstanding_nonces_per_user = 16
//! max_event_streams_per_user = 8
//! max_header_bytes = 16384            # a larger request head answers 431
//! max_tunnel_connections_per_peer = 256  # in-tunnel TCP connections per app tunnel, at the gateway
//! max_udp_flows_per_peer = 64         # UDP flows per app tunnel (each an OS socket at the gateway)
//!
//! [[apps]]
//! id = "wiki"
//! name = "Internal wiki"
//! targets = ["10.0.0.5:443/tcp"]
//! labels = { sensitivity = "high" }   # optional; the policy reads input.app.labels
//! owners = ["it@example.com"]         # optional; input.app.owners
//! ```
//!
//! # What the `[oidc]` section makes the broker enforce
//!
//! The broker decides on the access token alone, never on what the agent
//! says it checked: an agent that skips its own MFA check, or a token
//! stolen from one, must still be refused here. So every authenticated call
//! checks, besides signature, `iss`, `aud` and expiry (see
//! [`super::token`]):
//!
//! * **MFA** (`require_mfa`, default on): the token's `acr` is one of
//!   `required_acr`, or one of its `amr` values is in `required_amr`
//!   (RFC 8176; default: the agent's list). The IdP must put `acr`/`amr`
//!   into access tokens (RFC 9068 §2.2.1); one that does not gets every
//!   call refused, which is the point: turning `require_mfa` off is a
//!   decision someone writes down, never a silent default.
//! * **Recency** (`max_auth_age_seconds`, default none): `auth_time` no
//!   older than this; a token without `auth_time` is refused while a limit
//!   is set.
//!
//! A token that fails either is answered `401` with the problem type
//! `insufficient-user-authentication` and an RFC 9470 challenge
//! (`WWW-Authenticate: Bearer error="insufficient_user_authentication"`,
//! with `acr_values` and `max_age` as configured) that tells the agent how
//! to sign in again.
//!
//! `audience` must differ from `client_id`: the IdP's ID tokens carry the
//! client id as `aud`, and an audience equal to it would let an ID token
//! pass where an access token is required.

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::mfa::AuthRequirement;

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
    /// Per-application access in context.
    #[serde(default)]
    pub access: AccessSection,
    /// Where audit rows go besides the database.
    #[serde(default)]
    pub audit: AuditSection,
    /// Per-user and per-request limits.
    #[serde(default)]
    pub limits: LimitsSection,
    /// The application catalogue.
    #[serde(default)]
    pub apps: Vec<AppSection>,
    /// Separate gateways (`sallyport-gateway`) apps may be served by.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gateways: Vec<super::remote_gateways::GatewayEntry>,
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
    /// SQLite database file (created if missing). With `database_url` the
    /// file is not used, and this path only places the gateway's key
    /// (`gateway.key` beside it).
    pub database: PathBuf,
    /// PostgreSQL connection string (`host=/run/postgresql dbname=sallyport
    /// user=sallyport`, or `postgresql://user@host/db`): keep the state
    /// there instead of the SQLite file, so several broker replicas can
    /// share it. Unset (the default): SQLite.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    /// PEM CA certificate(s) to trust, besides the webpki roots, for a
    /// PostgreSQL server that is not on this host (always reached over
    /// TLS; a Unix socket or loopback address may go in the clear).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_ca: Option<PathBuf>,
    /// SHA-256 (hex) of a shared admin bearer token, named `admin` in the
    /// audit log. Prefer `admins`: one credential per administrator, so the
    /// log says who acted.
    #[serde(default)]
    pub admin_token_sha256: Option<String>,
    /// One bearer token per administrator: `{ name, token_sha256 }`. Admin
    /// calls are refused when neither this nor `admin_token_sha256` is set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub admins: Vec<AdminCredential>,
    /// The origin agents reach the API at (`https://broker.example.com`),
    /// when it is not the listen address (a DNS name, a proxy, a wildcard
    /// listen): DPoP proofs name the URL they were made for, and the broker
    /// compares it with this origin plus the request path. Default: the
    /// listen address, with `https` when TLS is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
}

/// One administrator's credential (`[[server.admins]]`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AdminCredential {
    /// Who this is, as the audit log names them (`alice@example.com`).
    pub name: String,
    /// SHA-256 (hex) of their bearer token (`printf %s TOKEN | sha256sum`).
    pub token_sha256: String,
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
    /// `acr` values that show a multi-factor sign-in (any one suffices);
    /// also advertised to agents as the `acr_values` to request. A single
    /// string is accepted for configurations written before this was a list.
    #[serde(default, deserialize_with = "one_or_many")]
    pub required_acr: Vec<String>,
    /// RFC 8176 `amr` values that show a multi-factor sign-in (any one
    /// suffices). Default: [`DEFAULT_MFA_AMR`], the agent's list.
    #[serde(default = "default_mfa_amr")]
    pub required_amr: Vec<String>,
    /// Refuse every call whose token shows no second factor (by
    /// `required_acr` or `required_amr`). Default `true`: production
    /// requires MFA, and switching it off must be written down.
    #[serde(default = "default_true")]
    pub require_mfa: bool,
    /// Oldest acceptable sign-in (`auth_time`), seconds before now; a token
    /// without `auth_time` is refused while this is set. Default: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_auth_age_seconds: Option<u64>,
    /// How long the issuer's fetched keys are used before they are fetched
    /// again, seconds: a key the IdP withdraws stops working within this.
    #[serde(default = "default_jwks_ttl")]
    pub jwks_ttl_seconds: u64,
    /// Clock skew allowed on token and EAT times, seconds.
    #[serde(default = "default_skew")]
    pub clock_skew_seconds: u32,
}

/// RFC 8176 `amr` values that show a second factor, unless configured
/// otherwise: the same list the agent uses (`agent::identity::mfa`), so the
/// agent and the broker agree on what a multi-factor sign-in is.
pub const DEFAULT_MFA_AMR: &[&str] = &["mfa", "otp", "hwk", "swk", "sc", "fpt", "face"];

fn default_mfa_amr() -> Vec<String> {
    DEFAULT_MFA_AMR.iter().map(|s| (*s).to_owned()).collect()
}

fn default_true() -> bool {
    true
}

fn default_jwks_ttl() -> u64 {
    300
}

fn default_skew() -> u32 {
    60
}

/// `"a"` or `["a", "b"]` as a list.
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
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
    /// The enrolment must carry a TPM key attestation (`tpm2-certify`)
    /// whose EK certificate chains to one of `tpm_ca_certificates`; a key
    /// so attested is active at once (the TPM's evidence stands in for an
    /// administrator's approval), anything else is refused.
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
    /// PEM files of the CAs TPM EK certificates must chain to (TPM
    /// manufacturers' roots or intermediates); required in `hardware` mode.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tpm_ca_certificates: Vec<PathBuf>,
}

impl Default for EnrolmentSection {
    fn default() -> Self {
        Self {
            mode: EnrolmentMode::default(),
            max_devices_per_user: default_max_devices(),
            tpm_ca_certificates: Vec::new(),
        }
    }
}

fn default_max_devices() -> u32 {
    5
}

/// `[access]`: the `sallyport.access` policy and what it is given.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AccessSection {
    /// Rego file with `package sallyport.access`; the built-in default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<PathBuf>,
    /// IANA time zone of `input.context.time` and of time windows.
    #[serde(default = "default_time_zone")]
    pub time_zone: String,
    /// The access-token claim holding the user's groups (a list, or one string).
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    /// Named networks: name → CIDR list. A caller's source address inside
    /// one is `input.context.networks` (every name that holds it).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub networks: std::collections::BTreeMap<String, Vec<String>>,
    /// Reverse proxies whose `X-Forwarded-For` names the real caller; from
    /// anyone else the header is ignored (a client could write any address).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trusted_proxies: Vec<String>,
    /// A device enrolled less than this long ago is new (`signals.new_device`).
    #[serde(default = "default_new_device")]
    pub new_device_seconds: u64,
    /// Denied grants are counted over this window (`signals.recent_denials`).
    #[serde(default = "default_denials_window")]
    pub denials_window_seconds: u64,
    /// This many denials in the window sets `signals.denial_burst`.
    #[serde(default = "default_denials_threshold")]
    pub denials_threshold: u32,
    /// A network becomes known for a user (`signals.new_network` false)
    /// when a grant is allowed from it within this many seconds of a
    /// multi-factor sign-in. Not on any allowed grant: a stolen session
    /// could otherwise open an ordinary app first and so make the network
    /// "known" to the sensitive one.
    #[serde(default = "default_known_network_mfa")]
    pub known_network_mfa_seconds: u64,
}

impl Default for AccessSection {
    fn default() -> Self {
        Self {
            policy: None,
            time_zone: default_time_zone(),
            groups_claim: default_groups_claim(),
            networks: Default::default(),
            trusted_proxies: Vec::new(),
            new_device_seconds: default_new_device(),
            denials_window_seconds: default_denials_window(),
            denials_threshold: default_denials_threshold(),
            known_network_mfa_seconds: default_known_network_mfa(),
        }
    }
}

fn default_time_zone() -> String {
    "UTC".to_owned()
}

fn default_groups_claim() -> String {
    "groups".to_owned()
}

fn default_new_device() -> u64 {
    86_400
}

fn default_denials_window() -> u64 {
    600
}

fn default_denials_threshold() -> u32 {
    5
}

fn default_known_network_mfa() -> u64 {
    300
}

/// `[limits]`: what one user (or one request) may hold at once. A limit
/// reached answers `429 quota-exceeded` (headers: `431`), audited once a
/// minute per user and limit, so one user cannot drain a shared pool (tunnel
/// addresses, file descriptors) or the database, nor flood the audit log.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    /// Open grants (tunnels) one user may hold across their devices.
    #[serde(default = "default_open_grants")]
    pub max_open_grants_per_user: u32,
    /// Unused, unexpired attestation nonces one user may hold.
    #[serde(default = "default_nonces")]
    pub max_outstanding_nonces_per_user: u32,
    /// Event streams (`GET /v1/events`) one user may keep open.
    #[serde(default = "default_streams")]
    pub max_event_streams_per_user: u32,
    /// Largest request head (all header names and values), bytes.
    #[serde(default = "default_header_bytes")]
    pub max_header_bytes: usize,
    /// In-tunnel TCP connections one gateway peer (one app's tunnel) may
    /// hold at once; beyond it new ones are refused (and counted).
    #[serde(default = "default_tunnel_connections")]
    pub max_tunnel_connections_per_peer: usize,
    /// UDP flows (each an OS socket at the gateway) one peer may hold.
    #[serde(default = "default_udp_flows")]
    pub max_udp_flows_per_peer: usize,
}

fn default_tunnel_connections() -> usize {
    256
}

fn default_udp_flows() -> usize {
    64
}

impl Default for LimitsSection {
    fn default() -> Self {
        Self {
            max_open_grants_per_user: default_open_grants(),
            max_outstanding_nonces_per_user: default_nonces(),
            max_event_streams_per_user: default_streams(),
            max_header_bytes: default_header_bytes(),
            max_tunnel_connections_per_peer: default_tunnel_connections(),
            max_udp_flows_per_peer: default_udp_flows(),
        }
    }
}

fn default_open_grants() -> u32 {
    32
}

fn default_nonces() -> u32 {
    16
}

fn default_streams() -> u32 {
    8
}

fn default_header_bytes() -> usize {
    16 * 1024
}

/// `[audit]`: copies of every audit row for a SIEM.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSection {
    /// Append each row as one JSON line to this file (created 0600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jsonl: Option<PathBuf>,
    /// Send each row as an RFC 5424 message: `udp://host:port` or `unix:/dev/log`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub syslog: Option<String>,
}

/// Where RFC 5424 messages go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyslogTarget {
    /// A syslog server over UDP.
    Udp(SocketAddr),
    /// The local syslog daemon's datagram socket.
    Unix(PathBuf),
}

impl SyslogTarget {
    /// Parses `udp://host:port` or `unix:/path`.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let bad = || {
            ConfigError::Invalid(format!(
                "audit.syslog {text:?}: expected udp://ip:port or unix:/path"
            ))
        };
        if let Some(addr) = text.strip_prefix("udp://") {
            return addr.parse().map(SyslogTarget::Udp).map_err(|_| bad());
        }
        match text.strip_prefix("unix:") {
            Some(path) if path.starts_with('/') => Ok(SyslogTarget::Unix(PathBuf::from(path))),
            _ => Err(bad()),
        }
    }
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
    /// Free-form labels the access policy reads as `input.app.labels`
    /// (`sensitivity = "high"`); also shown to agents.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub labels: std::collections::BTreeMap<String, String>,
    /// Who owns the application (emails or group names), for the policy
    /// (`input.app.owners`) and for the people reading a denial.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub owners: Vec<String>,
    /// The separate gateways (`[[gateways]] id`) that serve it; a grant
    /// goes to the one with the fewest open grants. Empty (the default):
    /// the broker's embedded gateway.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gateways: Vec<String>,
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
    /// Every administrator: name and token digest (the shared
    /// `admin_token_sha256`, if set, as `admin`).
    pub admins: Vec<(String, [u8; 32])>,
    /// What every caller's sign-in must show (MFA, recency).
    pub auth: AuthRequirement,
    /// How long fetched issuer keys are used.
    pub jwks_ttl: Duration,
    /// The access policy's time zone.
    pub time_zone: jiff::tz::TimeZone,
    /// Named networks, parsed.
    pub networks: Vec<(String, Vec<ipnet::IpNet>)>,
    /// Trusted reverse proxies, parsed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Where RFC 5424 copies go, if anywhere.
    pub syslog: Option<SyslogTarget>,
    /// The separate gateways, validated.
    pub remote_gateways: Vec<super::remote_gateways::RemoteGateway>,
}

impl Settings {
    /// Where the state is kept: PostgreSQL when `server.database_url` is
    /// set, else the SQLite file `server.database`.
    pub fn database(&self) -> super::store::Database {
        match &self.raw.server.database_url {
            Some(url) => super::store::Database::Postgres(url.clone()),
            None => super::store::Database::Sqlite(self.raw.server.database.clone()),
        }
    }
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
        if let Some(url) = &self.server.database_url {
            match url.parse::<tokio_postgres::Config>() {
                Err(e) => {
                    return invalid(format!(
                        "server.database_url is not a PostgreSQL connection string: {e}"
                    ));
                }
                Ok(parsed) => {
                    if let Err(e) = super::store::postgres::tls::check(&parsed) {
                        return invalid(format!("server.database_url: {e}"));
                    }
                }
            }
        }
        if let Some(public) = &self.server.public_url {
            let ok = url::Url::parse(public).is_ok_and(|u| {
                matches!(u.scheme(), "http" | "https")
                    && u.host().is_some()
                    && u.path() == "/"
                    && u.query().is_none()
                    && u.fragment().is_none()
            });
            if !ok || !crate::api::https_or_loopback(public) {
                return invalid(format!(
                    "server.public_url {public:?} must be an origin like https://broker.example.com (http only on loopback), without a path"
                ));
            }
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
        if self.oidc.audience == self.oidc.client_id {
            return invalid(format!(
                "oidc.audience must differ from oidc.client_id ({:?}): ID tokens carry the client id as aud, so an equal audience would accept them as access tokens",
                self.oidc.client_id
            ));
        }
        let oidc = &self.oidc;
        if oidc
            .required_acr
            .iter()
            .chain(&oidc.required_amr)
            .any(|v| v.trim().is_empty())
        {
            return invalid(
                "oidc.required_acr and oidc.required_amr must not hold empty values".into(),
            );
        }
        if oidc.require_mfa && oidc.required_acr.is_empty() && oidc.required_amr.is_empty() {
            return invalid(
                "oidc.require_mfa is on but oidc.required_acr and oidc.required_amr are both empty: list what shows MFA, or set require_mfa = false".into(),
            );
        }
        if let Some(age) = oidc.max_auth_age_seconds
            && !(60..=31 * 86_400).contains(&age)
        {
            return invalid("oidc.max_auth_age_seconds must be 60..=2678400 (31 days)".into());
        }
        if !(10..=86_400).contains(&oidc.jwks_ttl_seconds) {
            return invalid("oidc.jwks_ttl_seconds must be 10..=86400".into());
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
        if self.enrolment.mode == EnrolmentMode::Hardware
            && self.enrolment.tpm_ca_certificates.is_empty()
        {
            return invalid(
                "enrolment.mode \"hardware\" needs enrolment.tpm_ca_certificates (the CAs of the TPMs' EK certificates)"
                    .into(),
            );
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
        let access = &self.access;
        let time_zone = jiff::tz::TimeZone::get(&access.time_zone).map_err(|e| {
            ConfigError::Invalid(format!(
                "access.time_zone {:?} is not an IANA time zone: {e}",
                access.time_zone
            ))
        })?;
        if access.groups_claim.trim().is_empty() {
            return invalid("access.groups_claim must not be empty".into());
        }
        let cidrs = |what: &str, list: &[String]| {
            list.iter()
                .map(|c| {
                    c.parse::<ipnet::IpNet>()
                        .map(|n| n.trunc())
                        .map_err(|_| ConfigError::Invalid(format!("{what}: {c:?} is not a CIDR")))
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let mut networks = Vec::new();
        for (name, list) in &access.networks {
            if name.is_empty() || list.is_empty() {
                return invalid(format!(
                    "access.networks.{name}: a named network needs a name and at least one CIDR"
                ));
            }
            networks.push((
                name.clone(),
                cidrs(&format!("access.networks.{name}"), list)?,
            ));
        }
        let trusted_proxies = cidrs("access.trusted_proxies", &access.trusted_proxies)?;
        if !(60..=365 * 86_400).contains(&access.new_device_seconds) {
            return invalid("access.new_device_seconds must be 60..=31536000".into());
        }
        if !(10..=86_400).contains(&access.denials_window_seconds) {
            return invalid("access.denials_window_seconds must be 10..=86400".into());
        }
        if !(30..=86_400).contains(&access.known_network_mfa_seconds) {
            return invalid("access.known_network_mfa_seconds must be 30..=86400".into());
        }
        if !(1..=10_000).contains(&access.denials_threshold) {
            return invalid("access.denials_threshold must be 1..=10000".into());
        }
        let limits = &self.limits;
        if !(1..=10_000).contains(&limits.max_open_grants_per_user)
            || !(1..=10_000).contains(&limits.max_outstanding_nonces_per_user)
            || !(1..=10_000).contains(&limits.max_event_streams_per_user)
        {
            return invalid("limits: every per-user limit must be 1..=10000".into());
        }
        if !(1..=65_536).contains(&limits.max_tunnel_connections_per_peer)
            || !(1..=65_536).contains(&limits.max_udp_flows_per_peer)
        {
            return invalid(
                "limits.max_tunnel_connections_per_peer and max_udp_flows_per_peer must be 1..=65536"
                    .into(),
            );
        }
        if !(1024..=1024 * 1024).contains(&limits.max_header_bytes) {
            return invalid("limits.max_header_bytes must be 1024..=1048576".into());
        }
        let syslog = self
            .audit
            .syslog
            .as_deref()
            .map(SyslogTarget::parse)
            .transpose()?;
        for app in &self.apps {
            if app
                .labels
                .iter()
                .any(|(k, v)| k.is_empty() || k.len() > 64 || v.len() > 256)
            {
                return invalid(format!(
                    "app {:?}: label keys are 1..=64 bytes, values at most 256",
                    app.id
                ));
            }
        }
        let mut admins = Vec::new();
        if let Some(hex) = &self.server.admin_token_sha256 {
            let digest = decode_hex32(hex).ok_or_else(|| {
                ConfigError::Invalid(
                    "server.admin_token_sha256 must be 64 hex digits (sha256sum of the token)"
                        .into(),
                )
            })?;
            admins.push(("admin".to_owned(), digest));
        }
        for admin in &self.server.admins {
            let name_ok = !admin.name.is_empty()
                && admin.name.len() <= 128
                && admin
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._@+-".contains(c));
            if !name_ok {
                return invalid(format!(
                    "server.admins: name {:?} must be 1..=128 of [A-Za-z0-9._@+-]",
                    admin.name
                ));
            }
            if admins.iter().any(|(n, _)| *n == admin.name) {
                return invalid(format!("server.admins: {:?} is listed twice", admin.name));
            }
            let digest = decode_hex32(&admin.token_sha256).ok_or_else(|| {
                ConfigError::Invalid(format!(
                    "server.admins {:?}: token_sha256 must be 64 hex digits",
                    admin.name
                ))
            })?;
            if admins.iter().any(|(_, d)| *d == digest) {
                return invalid(format!(
                    "server.admins {:?}: the same token as another administrator; give each their own",
                    admin.name
                ));
            }
            admins.push((admin.name.clone(), digest));
        }
        let remote_gateways = super::remote_gateways::validate(
            &self.gateways,
            self.apps
                .iter()
                .map(|a| (a.id.as_str(), a.gateways.as_slice())),
        )
        .map_err(ConfigError::Invalid)?;
        let auth = AuthRequirement {
            require_mfa: self.oidc.require_mfa,
            acr: self.oidc.required_acr.clone(),
            amr: self.oidc.required_amr.clone(),
            max_age: self
                .oidc
                .max_auth_age_seconds
                .map(|s| i64::try_from(s).unwrap_or(i64::MAX)),
        };
        Ok(Settings {
            auth,
            jwks_ttl: Duration::from_secs(self.oidc.jwks_ttl_seconds),
            verdict_ttl: Duration::from_secs(self.attestation.verdict_ttl_seconds),
            max_grant: Duration::from_secs(self.gateway.max_grant_seconds),
            skew: i64::from(self.oidc.clock_skew_seconds),
            gateway_endpoint,
            network,
            apps,
            admins,
            time_zone,
            networks,
            trusted_proxies,
            syslog,
            remote_gateways,
            raw: self,
        })
    }
}

/// Which of `credentials` (SHA-256 digest, value) bearer `token` is.
/// Every digest is compared, in constant time each, so the time taken does
/// not say which one nearly matched (admins, separate gateways).
pub fn find_credential<'a, T>(
    token: &str,
    credentials: impl IntoIterator<Item = (&'a [u8; 32], T)>,
) -> Option<T> {
    let got = ring::digest::digest(&ring::digest::SHA256, token.trim().as_bytes());
    let mut found = None;
    for (expected, value) in credentials {
        let diff = got
            .as_ref()
            .iter()
            .zip(expected.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if diff == 0 {
            found = Some(value);
        }
    }
    found
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
    fn the_database_is_sqlite_unless_a_postgres_url_is_set() {
        let s = Config::parse(GOOD).unwrap();
        assert_eq!(
            s.database(),
            crate::server::store::Database::Sqlite("/tmp/x.db".into())
        );
        let with_url = |url: &str| {
            GOOD.replace(
                "database = \"/tmp/x.db\"",
                &format!("database = \"/tmp/x.db\"\ndatabase_url = {url:?}"),
            )
        };
        for url in [
            "host=/run/postgresql dbname=sallyport",
            "postgresql://sallyport@db.example.com/sallyport",
        ] {
            assert_eq!(
                Config::parse(&with_url(url)).unwrap().database(),
                crate::server::store::Database::Postgres(url.to_owned())
            );
        }
        let e = Config::parse(&with_url("host=/run/postgresql dbname")).unwrap_err();
        assert!(e.to_string().contains("database_url"), "{e}");
    }

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
        assert!(s.auth.require_mfa, "MFA is required unless switched off");
        assert_eq!(s.auth.amr, default_mfa_amr());
        assert!(s.auth.acr.is_empty());
        assert_eq!(s.auth.max_age, None);
        assert_eq!(s.jwks_ttl, Duration::from_secs(300));
        // A broker nobody configured for it does not let devices in unseen.
        assert_eq!(s.raw.enrolment.mode, EnrolmentMode::Approval);
        assert_eq!(s.raw.enrolment.max_devices_per_user, 5);
    }

    #[test]
    fn oidc_rules() {
        // An ID token's aud is the client id: equal values would accept it.
        let e = with(
            "audience = \"sallyport-broker\"",
            "audience = \"sallyport\"",
        )
        .unwrap_err();
        assert!(e.to_string().contains("client_id"), "{e}");
        // acr: one string (older files) or a list.
        let s = with(
            "client_id = \"sallyport\"",
            "client_id = \"sallyport\"\nrequired_acr = \"urn:x:mfa\"",
        )
        .unwrap();
        assert_eq!(s.auth.acr, vec!["urn:x:mfa".to_owned()]);
        let s = with(
            "client_id = \"sallyport\"",
            "client_id = \"sallyport\"\nrequired_acr = [\"a\", \"b\"]\nmax_auth_age_seconds = 3600\njwks_ttl_seconds = 60",
        )
        .unwrap();
        assert_eq!(s.auth.acr, vec!["a".to_owned(), "b".to_owned()]);
        assert_eq!(s.auth.max_age, Some(3600));
        assert_eq!(s.jwks_ttl, Duration::from_secs(60));
        // MFA on with nothing that could show it.
        assert!(
            with(
                "client_id = \"sallyport\"",
                "client_id = \"sallyport\"\nrequired_amr = []"
            )
            .is_err()
        );
        let off = with(
            "client_id = \"sallyport\"",
            "client_id = \"sallyport\"\nrequired_amr = []\nrequire_mfa = false",
        )
        .unwrap();
        assert!(!off.auth.require_mfa);
        assert!(
            with(
                "client_id = \"sallyport\"",
                "client_id = \"sallyport\"\nrequired_amr = [\"\"]"
            )
            .is_err()
        );
        assert!(
            with(
                "client_id = \"sallyport\"",
                "client_id = \"sallyport\"\nmax_auth_age_seconds = 5"
            )
            .is_err()
        );
        assert!(
            with(
                "client_id = \"sallyport\"",
                "client_id = \"sallyport\"\njwks_ttl_seconds = 0"
            )
            .is_err()
        );
    }

    #[test]
    fn enrolment_modes() {
        let section = |body: &str| Config::parse(&format!("{GOOD}\n[enrolment]\n{body}\n"));
        let s = section("mode = \"open\"\nmax_devices_per_user = 2").unwrap();
        assert_eq!(s.raw.enrolment.mode, EnrolmentMode::Open);
        assert_eq!(s.raw.enrolment.max_devices_per_user, 2);
        let hardware =
            section("mode = \"hardware\"\ntpm_ca_certificates = [\"/etc/tpm-ca.pem\"]").unwrap();
        assert_eq!(hardware.raw.enrolment.mode, EnrolmentMode::Hardware);
        assert_eq!(hardware.raw.enrolment.tpm_ca_certificates.len(), 1);
        // Hardware mode without a CA could never enrol anyone: refused at start.
        assert!(section("mode = \"hardware\"").is_err());
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
    fn one_credential_per_administrator() {
        let admins = |body: &str| {
            with(
                "database = \"/tmp/x.db\"",
                &format!("database = \"/tmp/x.db\"\n{body}"),
            )
        };
        let a = "a".repeat(64);
        let b = "b".repeat(64);
        let s = admins(&format!(
            "admin_token_sha256 = \"{a}\"\nadmins = [{{ name = \"alice@example.com\", token_sha256 = \"{b}\" }}]"
        ))
        .unwrap();
        assert_eq!(s.admins.len(), 2);
        assert_eq!(s.admins[0].0, "admin", "the shared token is named admin");
        assert_eq!(s.admins[1].0, "alice@example.com");
        // The same token twice, or the same name twice: refused.
        assert!(admins(&format!(
            "admins = [{{ name = \"a\", token_sha256 = \"{b}\" }}, {{ name = \"b\", token_sha256 = \"{b}\" }}]"
        ))
        .is_err());
        assert!(admins(&format!(
            "admins = [{{ name = \"a\", token_sha256 = \"{a}\" }}, {{ name = \"a\", token_sha256 = \"{b}\" }}]"
        ))
        .is_err());
        assert!(
            admins(&format!(
                "admins = [{{ name = \"a b\", token_sha256 = \"{a}\" }}]"
            ))
            .is_err()
        );
        assert!(admins("admins = [{ name = \"a\", token_sha256 = \"xyz\" }]").is_err());
    }

    #[test]
    fn limits_have_safe_defaults_and_ranges() {
        let s = Config::parse(GOOD).unwrap();
        let l = &s.raw.limits;
        assert_eq!(
            (
                l.max_open_grants_per_user,
                l.max_outstanding_nonces_per_user,
                l.max_event_streams_per_user,
                l.max_header_bytes,
                l.max_tunnel_connections_per_peer,
                l.max_udp_flows_per_peer
            ),
            (32, 16, 8, 16 * 1024, 256, 64)
        );
        let bad = |body: &str| Config::parse(&format!("{GOOD}\n[limits]\n{body}\n")).is_err();
        assert!(bad("max_open_grants_per_user = 0"));
        assert!(bad("max_udp_flows_per_peer = 0"));
        assert!(bad("max_header_bytes = 10"));
        assert!(!bad("max_udp_flows_per_peer = 8"));
    }

    #[test]
    fn the_shipped_example_parses() {
        let s = Config::parse(include_str!("../../broker.example.toml")).unwrap();
        assert_eq!(s.time_zone.iana_name(), Some("Europe/Paris"));
        assert_eq!(s.apps[0].0.labels["sensitivity"], "high");
    }

    #[test]
    fn access_and_audit_sections() {
        let s = Config::parse(&format!(
            "{GOOD}\n[access]\ntime_zone = \"Europe/Paris\"\ntrusted_proxies = [\"10.1.2.3/32\"]\n[access.networks]\noffice = [\"192.0.2.0/24\", \"2001:db8::/32\"]\n[audit]\njsonl = \"/tmp/a.jsonl\"\nsyslog = \"udp://127.0.0.1:514\"\n"
        ))
        .unwrap();
        assert_eq!(s.networks[0].0, "office");
        assert_eq!(s.networks[0].1.len(), 2);
        assert_eq!(s.trusted_proxies.len(), 1);
        assert_eq!(
            s.syslog,
            Some(SyslogTarget::Udp("127.0.0.1:514".parse().unwrap()))
        );
        assert_eq!(s.time_zone.iana_name(), Some("Europe/Paris"));
        let defaults = Config::parse(GOOD).unwrap();
        assert_eq!(defaults.time_zone.iana_name(), Some("UTC"));
        assert_eq!(defaults.raw.access.groups_claim, "groups");
        let bad = |section: &str| Config::parse(&format!("{GOOD}\n{section}\n")).is_err();
        assert!(bad("[access]\ntime_zone = \"Mars/Olympus\""));
        assert!(bad("[access.networks]\noffice = [\"192.0.2.0/33\"]"));
        assert!(bad("[access.networks]\noffice = []"));
        assert!(bad("[access]\ndenials_threshold = 0"));
        assert!(bad("[audit]\nsyslog = \"tcp://1.2.3.4:1\""));
        assert!(bad("[audit]\nsyslog = \"unix:relative\""));
        assert_eq!(
            SyslogTarget::parse("unix:/dev/log").unwrap(),
            SyslogTarget::Unix("/dev/log".into())
        );
    }

    #[test]
    fn hex() {
        let d = [0xabu8; 32];
        assert_eq!(decode_hex32(&to_hex(&d)), Some(d));
        assert_eq!(decode_hex32("zz"), None);
    }
}
