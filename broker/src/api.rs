//! The broker's v1 wire types, shared by the agent (client) and the reference
//! server so the two cannot drift. `API.md` in this crate documents each call
//! with an example.
//!
//! Conventions: JSON bodies, times as RFC 3339 strings, device ids as RFC 7638
//! JWK thumbprints, WireGuard keys as standard base64 (as `wg` prints them),
//! targets as `ip:port/tcp|udp`. Every error is an RFC 9457 problem document
//! ([`Problem`]) whose `type` is one of the stable [`ProblemType`] URIs.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

pub use posture::attestation::PublicJwk;
pub use posture::policy::Violation;

/// Path prefix of this API version.
pub const PREFIX: &str = "/v1";

/// Paths of the v1 calls.
pub mod paths {
    /// `GET`: [`super::BrokerConfig`].
    pub const CONFIG: &str = "/v1/config";
    /// `POST` [`super::EnrolRequest`] → [`super::Device`].
    pub const DEVICES: &str = "/v1/devices";
    /// `POST` → [`super::Challenge`].
    pub const CHALLENGE: &str = "/v1/attestations/challenge";
    /// `POST` [`super::AttestationRequest`] → [`super::Verdict`].
    pub const ATTESTATIONS: &str = "/v1/attestations";
    /// `GET` → [`super::PolicyDocument`].
    pub const POLICY: &str = "/v1/policy";
    /// `POST` [`super::GrantRequest`] → [`super::Grant`]; `DELETE /v1/grants/{id}`.
    pub const GRANTS: &str = "/v1/grants";
    /// `GET ?device_id=` → `text/event-stream` of [`super::Event`].
    pub const EVENTS: &str = "/v1/events";
    /// `GET ?device_id=` → [`super::AppsDocument`]: the catalogue with the
    /// access policy's answer for this user, device and context, now
    /// (DPoP-bound like a grant request; nothing is opened or audited).
    pub const APPS: &str = "/v1/apps";
    /// `POST` [`super::RevocationRequest`] → [`super::RevocationResult`]
    /// (admin token); [`ADMIN_REVOCATIONS_CLEAR`] lifts one.
    pub const ADMIN_REVOCATIONS: &str = "/v1/admin/revocations";
    /// `GET ?after=SEQ&limit=N` → `Vec<`[`super::AuditEntry`]`>`, oldest
    /// first, every entry with `seq > after` (admin token): a SIEM pulls
    /// with the last `seq` it saw as its cursor. Without `after`, the
    /// latest `limit` entries.
    pub const ADMIN_AUDIT: &str = "/v1/admin/audit";
    /// `POST` → [`super::PolicyDocument`]: re-read the policy file (admin token).
    pub const ADMIN_POLICY_RELOAD: &str = "/v1/admin/policy/reload";
    /// `GET` → `Vec<`[`super::GatewayPeer`]`>`: the peers the gateway holds now (admin token).
    pub const ADMIN_GATEWAY_PEERS: &str = "/v1/admin/gateway/peers";
    /// `GET ?state=pending|active|revoked` → `Vec<`[`super::AdminDevice`]`>` (admin token).
    pub const ADMIN_DEVICES: &str = "/v1/admin/devices";
    /// `POST` (no body) → [`super::AdminDevice`]: approve a pending device (admin
    /// token). `{id}` is the device id.
    pub const ADMIN_DEVICE_APPROVE: &str = "/v1/admin/devices/{id}/approve";
    /// `POST` [`super::RevocationClearRequest`] → [`super::RevocationClearResult`]:
    /// lift a user's or a device's revocation so it may enrol again (admin token).
    pub const ADMIN_REVOCATIONS_CLEAR: &str = "/v1/admin/revocations/clear";
    /// `GET` → `Vec<`[`super::DeviceSupport`]`>`: the broker's side of a
    /// device for helpdesk, by support code (the device id's first
    /// characters, case and spaces ignored; admin token).
    pub const ADMIN_SUPPORT: &str = "/v1/admin/support/{code}";
    /// `GET` → `application/x-ndjson` of [`super::GatewaySync`], one per
    /// line: a separate gateway's peers (its bearer credential, one per
    /// `[[gateways]]` entry). First the full set, then each change.
    pub const GATEWAY_SYNC: &str = "/v1/gateway/sync";

    /// [`ADMIN_SUPPORT`] for one code.
    pub fn admin_support(code: &str) -> String {
        // Form encoding writes a space as `+` (a literal `+` as `%2B`); a
        // path segment needs `%20`.
        let segment: String = url::form_urlencoded::byte_serialize(code.as_bytes()).collect();
        ADMIN_SUPPORT.replace("{code}", &segment.replace('+', "%20"))
    }

    /// [`ADMIN_DEVICE_APPROVE`] for one device.
    pub fn admin_device_approve(device_id: &str) -> String {
        let segment: String = url::form_urlencoded::byte_serialize(device_id.as_bytes()).collect();
        ADMIN_DEVICE_APPROVE.replace("{id}", &segment)
    }
}

/// Media type of problem documents (RFC 9457).
pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

/// Largest request body the broker reads, in bytes. An EAT with a full
/// posture report is a few KiB; 64 KiB leaves room and bounds memory.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// `GET /v1/config`: what an agent needs to sign in and to show the catalogue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerConfig {
    /// OIDC issuer the agent signs in with.
    pub issuer: String,
    /// The agent's OIDC client id.
    pub client_id: String,
    /// The audience access tokens must carry; also the `aud` of every EAT.
    pub audience: String,
    /// `acr_values` to request (space-separated), when the organisation
    /// requires one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required_acr: Option<String>,
    /// SHA-256 (hex) of the Rego policy verdicts are made with.
    pub policy_digest: String,
    /// How long a verdict stays valid, in seconds.
    pub verdict_ttl_seconds: u64,
    /// The applications a grant can be asked for.
    pub apps: Vec<App>,
}

/// One protected application.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct App {
    /// Stable id used in grant requests (`wiki`).
    pub id: String,
    /// Display name.
    pub name: String,
    /// What its tunnel reaches: `ip:port/tcp|udp`.
    pub targets: Vec<String>,
    /// The administrator's labels (`sensitivity = "high"`), as the access
    /// policy sees them in `input.app.labels`.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub labels: std::collections::BTreeMap<String, String>,
}

/// One reason the access policy (`sallyport.access`) gives, for the user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessReason {
    /// What stands in the way (or why access ends when it does).
    pub message: String,
    /// What the user can do about it; empty when nothing.
    #[serde(default)]
    pub remediation: String,
}

/// An RFC 9470-style step-up the access policy asks for: sign in again
/// showing one of `acr_values`, no longer than `max_age` seconds ago.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepUp {
    /// `acr_values` to ask the identity provider for (may be empty).
    #[serde(default)]
    pub acr_values: Vec<String>,
    /// `max_age` (seconds) to ask for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<u64>,
}

/// The broker's answer to "may this user, on this device, open this
/// application now, from here?": the device verdict and the access policy
/// together.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessDecision {
    /// May a grant be issued now?
    pub allow: bool,
    /// Why not (or, when allowed, why access ends when it does).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<AccessReason>,
    /// When refused for want of a fresh or stronger sign-in: what it must show.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_up: Option<StepUp>,
    /// When allowed inside a time window: the window's end, which no grant outlives.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub closes_at: Option<OffsetDateTime>,
    /// When refused (or closing) for a time window: when it opens again.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub opens_at: Option<OffsetDateTime>,
}

/// One application with the access decision for the caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppAccess {
    /// The catalogue entry.
    #[serde(flatten)]
    pub app: App,
    /// Whether it can open now, and if not why and what to do.
    pub access: AccessDecision,
}

/// `GET /v1/apps`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppsDocument {
    /// When the broker decided.
    #[serde(with = "time::serde::rfc3339")]
    pub evaluated_at: OffsetDateTime,
    /// Every application in the catalogue.
    pub apps: Vec<AppAccess>,
}

/// `POST /v1/devices`: enrol this device's public key for the signed-in user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrolRequest {
    /// The device's P-256 public key.
    pub public_jwk: PublicJwk,
    /// A label for admins (host name); not trusted for anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Evidence that the key lives in the device's TPM. Required when the
    /// broker's enrolment mode is `hardware`; not examined in the other modes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_attestation: Option<KeyAttestation>,
    /// The secret the device's TPM recovered from the broker's
    /// [`KeyActivation`] challenge (TPM2_ActivateCredential), base64url:
    /// proof that the attestation key lives in the TPM the EK certificate
    /// names. `hardware` mode asks for it with a `key-activation-required`
    /// problem.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activation_secret: Option<String>,
}

/// The broker's credential-activation challenge (TPM2_MakeCredential to the
/// EK in the enrolment's certificate, over the AK's name): only the TPM
/// holding both recovers the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyActivation {
    /// `TPM2B_ID_OBJECT` contents (`outerHMAC || encIdentity`), base64url.
    pub credential_blob: String,
    /// `TPM2B_ENCRYPTED_SECRET` contents (the seed, RSA-OAEP to the EK),
    /// base64url.
    pub encrypted_secret: String,
}

/// The one key-attestation format: `tpm2-certify`.
pub const KEY_ATTESTATION_TPM2_CERTIFY: &str = "tpm2-certify";

/// Evidence that the device key lives in a TPM (format `tpm2-certify`):
/// a TPM2_Certify of the device key by an attestation key (AK) of the TPM,
/// with the TPM's EK certificate. The broker's `hardware` enrolment mode
/// requires it and checks every part (see API.md, "Key attestation").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyAttestation {
    /// The evidence format; `tpm2-certify` is the only one defined.
    pub format: String,
    /// The `TPMS_ATTEST` structure TPM2_Certify produced over the device
    /// key, base64url. Its `extraData` is SHA-256 of
    /// `"sallyport-key-attestation-v1\0" || device_id`.
    pub certify_info: String,
    /// The AK's ECDSA P-256 SHA-256 signature over `certify_info`, JOSE
    /// form `r || s` (64 bytes), base64url.
    pub signature: String,
    /// The device key's `TPMT_PUBLIC`, base64url: its name is what the TPM
    /// certified, and its point must be the enrolled JWK's.
    #[serde(default)]
    pub key_public: String,
    /// The AK's `TPMT_PUBLIC`, base64url (a restricted P-256 signing key).
    #[serde(default)]
    pub ak_public: String,
    /// The TPM's EK certificate then any intermediate CA certificates, DER
    /// in standard base64; it must chain to a CA in the broker's
    /// `[enrolment] tpm_ca_certificates`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ek_certificate_chain: Vec<String>,
}

/// Where a device stands with the broker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeviceStatus {
    /// May attest and get grants. (Also what a broker without enrolment
    /// modes means by leaving the field out: its devices are active at once.)
    #[default]
    Active,
    /// Enrolled, waiting for an administrator's approval: no attestation,
    /// no grant until then.
    Pending,
    /// Revoked by an administrator.
    Revoked,
}

/// An enrolled device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    /// RFC 7638 thumbprint of its key; the EAT `kid`.
    pub device_id: String,
    /// The UEID its EATs must carry.
    pub ueid: String,
    /// The user (`sub`) it is bound to.
    pub user: String,
    /// When it was enrolled.
    #[serde(with = "time::serde::rfc3339")]
    pub enrolled_at: OffsetDateTime,
    /// `active`, or `pending` until an administrator approves it.
    #[serde(default)]
    pub status: DeviceStatus,
}

/// A device as the administrator sees it (`GET /v1/admin/devices`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminDevice {
    /// RFC 7638 thumbprint of its key.
    pub device_id: String,
    /// The user it is bound to.
    pub user: String,
    /// The label the agent sent (host name); not trusted for anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Pending, active or revoked.
    pub status: DeviceStatus,
    /// When it was enrolled.
    #[serde(with = "time::serde::rfc3339")]
    pub enrolled_at: OffsetDateTime,
    /// When an administrator approved it (approval mode only).
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub approved_at: Option<OffsetDateTime>,
}

/// How many characters of the device id a support code carries.
pub const SUPPORT_CODE_LEN: usize = 8;

/// The support code of a device: the first [`SUPPORT_CODE_LEN`]
/// characters of its id (the key's thumbprint, base64url) in two groups of
/// four, `"Xy3k 9QpA"`. The user's app shows it; helpdesk types it into
/// `sallyport-broker admin device CODE`, which ignores case and spaces,
/// so it survives being read out over the phone. Eight characters of a
/// thumbprint leave about 2^41 codes even without case: two devices of one
/// company sharing one is unlikely, and the broker lists both if they do.
/// Pure.
pub fn support_code(device_id: &str) -> String {
    let prefix: String = device_id.chars().take(SUPPORT_CODE_LEN).collect();
    let split = prefix
        .char_indices()
        .nth(SUPPORT_CODE_LEN / 2)
        .map_or(prefix.len(), |(i, _)| i);
    let (a, b) = prefix.split_at(split);
    if b.is_empty() {
        a.to_owned()
    } else {
        format!("{a} {b}")
    }
}

/// A support code as typed (spaces anywhere, any case) back to the
/// device-id prefix it stands for; `None` unless 4 to 64 base64url
/// characters. Pure.
pub fn support_code_prefix(code: &str) -> Option<String> {
    let prefix: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    let valid = (4..=64).contains(&prefix.len())
        && prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    valid.then_some(prefix)
}

/// The broker's side of one device, for helpdesk (`GET
/// /v1/admin/support/{code}`, `sallyport-broker admin device CODE`): its
/// enrolment, its verdicts with their violations, its grants, and the
/// audit rows that name it, newest last.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceSupport {
    /// The device as the device list shows it.
    pub device: AdminDevice,
    /// Its support code (`Xy3k 9QpA`), as the user's app shows it.
    pub support_code: String,
    /// When and why it was revoked, if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked: Option<String>,
    /// Its latest verdicts (at most 50), oldest first.
    pub verdicts: Vec<VerdictRecord>,
    /// Its latest grants, open or closed (at most 100), oldest first.
    pub grants: Vec<GrantRecord>,
    /// The latest audit rows naming it (at most 200), oldest first.
    pub audit: Vec<AuditEntry>,
}

/// One stored verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerdictRecord {
    /// When the broker evaluated the attestation.
    #[serde(with = "time::serde::rfc3339")]
    pub evaluated_at: OffsetDateTime,
    /// Whether it passed the policy.
    pub compliant: bool,
    /// What failed.
    pub violations: Vec<Violation>,
    /// Until when it counted.
    #[serde(with = "time::serde::rfc3339")]
    pub valid_until: OffsetDateTime,
    /// The policy it was evaluated under.
    pub policy_digest: String,
}

/// One grant, open or closed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantRecord {
    /// The grant id.
    pub id: String,
    /// The application.
    pub app: String,
    /// When it was issued.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When it was to expire.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    /// When it closed (absent: still open).
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub closed_at: Option<OffsetDateTime>,
    /// Why it closed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub close_reason: Option<String>,
}

/// `POST /v1/attestations/challenge`: a single-use nonce.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Challenge {
    /// 256 random bits, base64url; goes into `eat_nonce`.
    pub nonce: String,
    /// After this the nonce is refused (60 s after issue).
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

/// `POST /v1/attestations`: the signed EAT.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttestationRequest {
    /// The EAT as a compact JWS (`typ: eat+jwt`).
    pub eat: String,
}

/// The broker's decision on one attestation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// The device the verdict is for.
    pub device_id: String,
    /// True when the policy found no violation.
    pub compliant: bool,
    /// What is wrong, with remediations; empty when compliant.
    pub violations: Vec<Violation>,
    /// When the policy was evaluated.
    #[serde(with = "time::serde::rfc3339")]
    pub evaluated_at: OffsetDateTime,
    /// Grants need a verdict younger than this; attest again before.
    #[serde(with = "time::serde::rfc3339")]
    pub valid_until: OffsetDateTime,
    /// The policy this verdict was made with.
    pub policy_digest: String,
}

/// `GET /v1/policy`: the Rego the verdicts use, so the agent can show the
/// same answer offline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyDocument {
    /// SHA-256 (hex) of `rego`.
    pub digest: String,
    /// The policy's file name.
    pub name: String,
    /// The policy source.
    pub rego: String,
}

/// `POST /v1/grants`: open one application's tunnel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantRequest {
    /// The application id from the catalogue.
    pub app: String,
    /// The enrolled device asking (its latest verdict must be compliant).
    pub device_id: String,
    /// The tunnel's fresh WireGuard public key (base64), one per app.
    pub wireguard_public_key: String,
}

/// The gateway a granted tunnel connects to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayInfo {
    /// UDP `host:port`.
    pub endpoint: String,
    /// The gateway's WireGuard public key (base64).
    pub public_key: String,
    /// Which separate gateway (`[[gateways]] id`); absent for the broker's
    /// own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// A peer as a separate gateway installs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncPeer {
    /// The client tunnel's WireGuard public key (base64).
    pub public_key: String,
    /// Its tunnel address.
    pub client_address: String,
    /// `ip:port/tcp|udp` it may reach.
    pub targets: Vec<String>,
    /// When the gateway drops it on its own (Unix seconds).
    pub expires_at: i64,
}

/// One line of [`paths::GATEWAY_SYNC`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum GatewaySync {
    /// Every peer the gateway must hold now; it drops any other.
    Snapshot {
        /// The peers.
        peers: Vec<SyncPeer>,
    },
    /// A grant opened.
    Add {
        /// Its peer.
        peer: SyncPeer,
    },
    /// A grant ended (a key the gateway does not hold is no error).
    Remove {
        /// The peer's WireGuard public key (base64).
        public_key: String,
    },
    /// Sent when nothing else was for a while, so a gateway can tell a
    /// quiet broker from a dead connection.
    Ping,
}

/// An open grant: everything the agent needs to bring the tunnel up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// Id for `DELETE /v1/grants/{id}` and in events.
    pub id: String,
    /// The application.
    pub app: String,
    /// Where to connect.
    pub gateway: GatewayInfo,
    /// The client's address inside the tunnel.
    pub client_address: String,
    /// What the tunnel may reach (the gateway refuses everything else).
    pub targets: Vec<String>,
    /// The gateway drops the peer at this time: no later than the verdict's
    /// `valid_until` nor the access token's expiry.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    /// Set when `expires_at` is the end of the access policy's time window:
    /// a new grant asked for before then would end at the same instant, so
    /// the agent does not renew it; it closes the tunnel with `reason` at
    /// `expires_at` and asks again at `reopens_at`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ends: Option<GrantEnd>,
}

/// Why a grant ends when it does, when a time window decides it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantEnd {
    /// For the user ("Git server is available 07:00–20:00; it opens again at 07:00").
    pub reason: String,
    /// When the window opens again, if the policy says.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub reopens_at: Option<OffsetDateTime>,
}

/// One event on `GET /v1/events`. The SSE `event:` field carries
/// [`Event::name`]; `data:` carries this JSON. The revocation events follow
/// OpenID CAEP 1.0 naming ([`Event::caep_type`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Event {
    /// A grant was closed by the broker (revocation, compliance loss, expiry).
    /// The gateway has already removed the peer.
    GrantRevoked {
        /// The grant.
        grant_id: String,
        /// The device it belonged to.
        device_id: String,
        /// Why.
        reason: String,
    },
    /// The user's sessions were revoked: tokens from sign-ins before now are
    /// refused (and, if the revocation holds until cleared, every token).
    SessionRevoked {
        /// The user (`sub`).
        user: String,
        /// Why.
        reason: String,
    },
    /// The device's compliance changed (attestation result or admin action).
    DeviceComplianceChange {
        /// The device.
        device_id: String,
        /// `compliant` | `not-compliant`.
        previous_status: ComplianceStatus,
        /// `compliant` | `not-compliant`.
        current_status: ComplianceStatus,
        /// Why.
        reason: String,
    },
    /// The policy changed: attest again to get a verdict under it.
    PolicyChanged {
        /// SHA-256 (hex) of the new policy.
        digest: String,
    },
    /// An administrator approved this pending device: it may attest now.
    DeviceApproved {
        /// The device.
        device_id: String,
    },
    /// The access policy (`sallyport.access`) changed: the broker has
    /// judged the open grants again; refused or waiting applications may
    /// ask again (no new attestation is needed).
    AccessPolicyChanged {
        /// SHA-256 (hex) of the new access policy.
        digest: String,
    },
}

impl Event {
    /// The SSE `event:` name.
    pub fn name(&self) -> &'static str {
        match self {
            Event::GrantRevoked { .. } => "grant-revoked",
            Event::SessionRevoked { .. } => "session-revoked",
            Event::DeviceComplianceChange { .. } => "device-compliance-change",
            Event::PolicyChanged { .. } => "policy-changed",
            Event::DeviceApproved { .. } => "device-approved",
            Event::AccessPolicyChanged { .. } => "access-policy-changed",
        }
    }

    /// The CAEP event type URI, for the events CAEP defines.
    pub fn caep_type(&self) -> Option<&'static str> {
        match self {
            Event::SessionRevoked { .. } => {
                Some("https://schemas.openid.net/secevent/caep/event-type/session-revoked")
            }
            Event::DeviceComplianceChange { .. } => {
                Some("https://schemas.openid.net/secevent/caep/event-type/device-compliance-change")
            }
            Event::GrantRevoked { .. }
            | Event::PolicyChanged { .. }
            | Event::DeviceApproved { .. }
            | Event::AccessPolicyChanged { .. } => None,
        }
    }
}

/// CAEP compliance status values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ComplianceStatus {
    /// Meets the policy.
    Compliant,
    /// Does not (or is revoked).
    NotCompliant,
}

/// `POST /v1/admin/revocations`: revoke a device, a user, or one grant.
/// Exactly one of the three must be set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationRequest {
    /// A device id: its grants close and it can no longer attest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// A user `sub`: every grant closes and tokens whose sign-in
    /// (`auth_time`) is not after now are refused, refreshed ones included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// One grant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_id: Option<String>,
    /// With `user` only: refuse every token of the user, even from a new
    /// sign-in, until an administrator clears the revocation
    /// (`POST /v1/admin/revocations/clear`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub until_cleared: bool,
    /// Recorded in the audit log and sent in the events.
    pub reason: String,
}

/// What a revocation did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationResult {
    /// Grants closed (their peers are gone from the gateway).
    pub grants_closed: Vec<String>,
}

/// `POST /v1/admin/revocations/clear`: lift a revocation so that enrolment
/// is possible again. Exactly one of the two must be set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationClearRequest {
    /// A revoked device: it is forgotten (with its verdicts), so its key may
    /// be enrolled again and goes through the enrolment mode afresh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// A revoked user: may enrol new devices again, and a revocation
    /// `until_cleared` is lifted for sign-ins from now on. Tokens from
    /// sign-ins before the revocation (before the clear, for an
    /// until-cleared one) stay refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Recorded in the audit log.
    #[serde(default)]
    pub reason: String,
}

/// What clearing a revocation did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationClearResult {
    /// False when there was no revocation in force to clear.
    pub cleared: bool,
}

/// One peer the gateway currently terminates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayPeer {
    /// The client tunnel's WireGuard key (base64).
    pub public_key: String,
    /// Its tunnel address.
    pub client_address: String,
    /// Seconds until the gateway drops it on its own.
    pub expires_in_seconds: u64,
    /// Inner bytes received from it.
    pub bytes_in: u64,
    /// Inner bytes sent to it.
    pub bytes_out: u64,
}

/// One audit-log entry: every decision with its reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AuditEntry {
    /// Monotonic sequence number.
    pub seq: i64,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// What was decided about (`enrol`, `attest`, `grant`, `revoke`, ...).
    pub action: String,
    /// `allow` or `deny`.
    pub outcome: String,
    /// The user, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The device, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// The problem type of a denial.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// Why, for a person.
    pub reason: String,
    /// The application, for grant decisions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// The caller's address as the broker saw it, for calls from a device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ip: Option<String>,
    /// The access policy's reasons (grant decisions), each for the user.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
    /// SHA-256 (hex) of the access policy's input document (canonical
    /// JSON), for grant decisions: what the decision was made on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_digest: Option<String>,
    /// SHA-256 (hex) of the posture policy in force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_digest: Option<String>,
    /// SHA-256 (hex) of the access policy in force (grant decisions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_policy_digest: Option<String>,
    /// The administrator who acted (admin calls): the name of the
    /// `[[server.admins]]` credential used, `admin` for the shared token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<String>,
    /// The audit chain's hash at this row: SHA-256 over the previous row's
    /// hash and this row (`sallyport-broker audit verify`). A SIEM that
    /// keeps them can tell a rewritten or truncated log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
}

impl Default for AuditEntry {
    /// An empty entry at the epoch: a base for `..Default::default()`.
    fn default() -> Self {
        AuditEntry {
            seq: 0,
            at: OffsetDateTime::UNIX_EPOCH,
            action: String::new(),
            outcome: String::new(),
            user: None,
            device_id: None,
            problem: None,
            reason: String::new(),
            app: None,
            source_ip: None,
            reasons: Vec::new(),
            input_digest: None,
            policy_digest: None,
            access_policy_digest: None,
            admin: None,
            hash: None,
        }
    }
}

/// An RFC 9457 problem document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// A stable URI from [`ProblemType`]; match on this, never on `detail`.
    #[serde(rename = "type")]
    pub type_uri: String,
    /// Short summary of the type.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What happened this time, for a person.
    pub detail: String,
    /// Extension: the policy violations behind a non-compliant refusal.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub violations: Vec<Violation>,
    /// Extension (`key-activation-required`): the challenge to activate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_activation: Option<KeyActivation>,
    /// Extension (`access-denied`, `access-step-up-required`): the access
    /// policy's decision, with its reasons, step-up and reopening time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<AccessDecision>,
}

impl Problem {
    /// A problem of `kind` with `detail`.
    pub fn new(kind: ProblemType, detail: impl Into<String>) -> Self {
        Problem {
            type_uri: kind.uri(),
            title: kind.title().to_owned(),
            status: kind.status(),
            detail: detail.into(),
            violations: Vec::new(),
            key_activation: None,
            access: None,
        }
    }

    /// The known type, if `type` is one of ours.
    pub fn kind(&self) -> Option<ProblemType> {
        ProblemType::from_uri(&self.type_uri)
    }
}

/// Base of every problem type URI.
pub const PROBLEM_BASE: &str = "https://sallyport.dev/problems/";

macro_rules! problem_types {
    ($( $(#[$doc:meta])* $variant:ident = ($slug:literal, $status:literal, $title:literal), )*) => {
        /// Every problem type the broker answers with. The URIs are stable: an
        /// agent branches on them.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ProblemType {
            $( $(#[$doc])* $variant, )*
        }

        impl ProblemType {
            /// Every type, for docs and tests.
            pub const ALL: &'static [ProblemType] = &[$(ProblemType::$variant,)*];

            /// The last path segment of the URI.
            pub fn slug(self) -> &'static str {
                match self { $(ProblemType::$variant => $slug,)* }
            }

            /// The HTTP status it is sent with.
            pub fn status(self) -> u16 {
                match self { $(ProblemType::$variant => $status,)* }
            }

            /// Its fixed title.
            pub fn title(self) -> &'static str {
                match self { $(ProblemType::$variant => $title,)* }
            }
        }
    };
}

problem_types! {
    /// The body is not valid JSON or lacks a required field.
    MalformedRequest = ("malformed-request", 400, "The request body is not valid JSON for this call"),
    /// The body is larger than [`MAX_BODY_BYTES`].
    BodyTooLarge = ("body-too-large", 413, "The request body is too large"),
    /// Not `Content-Type: application/json`.
    UnsupportedMediaType = ("unsupported-media-type", 415, "The request body must be application/json"),
    /// No such route.
    NotFound = ("not-found", 404, "No such resource"),
    /// No `Authorization: Bearer` access token.
    TokenMissing = ("token-missing", 401, "An access token is required"),
    /// The token is malformed, uses a refused algorithm, or its signature does not verify.
    TokenInvalid = ("token-invalid", 401, "The access token is not valid"),
    /// The token has expired (or is not yet valid).
    TokenExpired = ("token-expired", 401, "The access token has expired"),
    /// The token is for another audience or issuer.
    TokenWrongAudience = ("token-wrong-audience", 401, "The access token is not for this broker"),
    /// The user's sessions were revoked after this token's sign-in (or until an admin clears it).
    SessionRevoked = ("session-revoked", 401, "The session was revoked; sign in again"),
    /// An ID token (or another non-access JWT) was sent where an access token is required.
    TokenNotAccessToken = ("token-not-access-token", 401, "An access token is required, not an ID token"),
    /// The sign-in shows no second factor, or is older than the broker allows (RFC 9470).
    InsufficientUserAuthentication = ("insufficient-user-authentication", 401, "A multi-factor or more recent sign-in is required"),
    /// The identity provider could not be reached to fetch its keys.
    IssuerUnavailable = ("issuer-unavailable", 503, "The identity provider's keys could not be fetched"),
    /// The enrolment JWK is not a P-256 public key.
    InvalidDeviceKey = ("invalid-device-key", 400, "The device key is not a P-256 public JWK"),
    /// This key is already enrolled for another user.
    DeviceKeyConflict = ("device-key-conflict", 409, "This device key is enrolled for another user"),
    /// The device id / `kid` is not enrolled.
    DeviceUnknown = ("device-unknown", 404, "The device is not enrolled"),
    /// The device belongs to another user than the token's.
    DeviceUserMismatch = ("device-user-mismatch", 403, "The device is enrolled for another user"),
    /// The device was revoked by an administrator.
    DeviceRevoked = ("device-revoked", 403, "The device was revoked; enrol it again"),
    /// The device is enrolled but an administrator has not approved it yet.
    DevicePendingApproval = ("device-pending-approval", 403, "The device is waiting for an administrator's approval"),
    /// Enrolment mode `hardware`: the request carries no key attestation.
    KeyAttestationRequired = ("key-attestation-required", 403, "Enrolment requires a hardware key attestation"),
    /// The key attestation does not verify (bad evidence, a key that is not
    /// a non-exportable TPM key, an EK certificate from an untrusted CA).
    KeyAttestationUnverifiable = ("key-attestation-unverifiable", 403, "The key attestation cannot be verified"),
    /// Enrolment mode `hardware`: the evidence verified; the device's TPM
    /// must now activate the credential in `key_activation` and the
    /// enrolment be sent again with its `activation_secret`.
    KeyActivationRequired = ("key-activation-required", 403, "The TPM must activate the broker's credential"),
    /// The `activation_secret` is not the one the broker's challenge holds
    /// (another TPM answered, or the challenge expired).
    KeyActivationFailed = ("key-activation-failed", 403, "The TPM's credential activation does not match"),
    /// The user already has `max_devices_per_user` devices enrolled.
    DeviceQuotaExceeded = ("device-quota-exceeded", 429, "The user has enrolled the maximum number of devices"),
    /// A per-user limit of `[limits]` was reached (open grants, outstanding
    /// nonces, event streams); `detail` names it. Close something or wait.
    QuotaExceeded = ("quota-exceeded", 429, "A per-user limit was reached"),
    /// The request's headers are larger than `[limits] max_header_bytes`.
    HeadersTooLarge = ("headers-too-large", 431, "The request headers are too large"),
    /// The user was revoked and no administrator has cleared it: no new device.
    UserRevoked = ("user-revoked", 403, "The user was revoked; an administrator must clear it before enrolling a device"),
    /// The EAT is not a compact JWS with the Sallyport header and claims.
    EatMalformed = ("eat-malformed", 400, "The attestation token is malformed"),
    /// The EAT's signature does not verify with the enrolled key its `kid` names.
    EatSignatureInvalid = ("eat-signature-invalid", 401, "The attestation signature does not verify"),
    /// The EAT's `exp` has passed, or its lifetime exceeds five minutes.
    EatExpired = ("eat-expired", 401, "The attestation token has expired or lives too long"),
    /// The EAT's `iat` lies in the future.
    EatNotYetValid = ("eat-not-yet-valid", 401, "The attestation token is not yet valid"),
    /// The EAT's `aud` is not this broker.
    EatWrongAudience = ("eat-wrong-audience", 401, "The attestation token is for another audience"),
    /// The EAT's `ueid` is not the one of the key that signed it.
    EatUeidMismatch = ("eat-ueid-mismatch", 401, "The attestation names another device than the key that signed it"),
    /// The EAT's `sub` is not the user of the device and token.
    EatSubjectMismatch = ("eat-subject-mismatch", 403, "The attestation names another user"),
    /// The nonce was already used.
    NonceReplayed = ("nonce-replayed", 401, "The attestation nonce was already used"),
    /// The nonce is older than 60 s.
    NonceExpired = ("nonce-expired", 401, "The attestation nonce has expired"),
    /// The nonce was never issued (or was issued to another user).
    NonceUnknown = ("nonce-unknown", 401, "The attestation nonce was not issued by this broker"),
    /// The application id is not in the catalogue.
    UnknownApp = ("unknown-app", 404, "No such application"),
    /// The WireGuard public key is not 32 bytes of base64.
    InvalidWireguardKey = ("invalid-wireguard-key", 400, "The WireGuard public key is not valid"),
    /// The device has no verdict yet.
    VerdictMissing = ("verdict-missing", 403, "The device has not attested yet"),
    /// The device's latest verdict is past its validity.
    VerdictExpired = ("verdict-expired", 403, "The device's verdict has expired; attest again"),
    /// The device's latest verdict was made under a policy no longer in force.
    VerdictStalePolicy = ("verdict-stale-policy", 403, "The device's verdict was made under an earlier policy; attest again"),
    /// The device's latest verdict is non-compliant; `violations` says why.
    DeviceNotCompliant = ("device-not-compliant", 403, "The device does not meet the policy"),
    /// The access policy (`sallyport.access`) refuses this application for
    /// this user, device or context now; `access` says why, what to do, and
    /// when a time window opens again.
    AccessDenied = ("access-denied", 403, "The access policy does not allow this application now"),
    /// The access policy asks for a fresh or stronger sign-in before this
    /// application opens (`access.step_up`: `acr_values`, `max_age`). 403,
    /// not 401: the session stays good for every other application.
    AccessStepUpRequired = ("access-step-up-required", 403, "This application needs a fresh or stronger sign-in"),
    /// This WireGuard key already has an open grant.
    WireguardKeyInUse = ("wireguard-key-in-use", 409, "This WireGuard key already has an open grant"),
    /// No such grant (or not this user's).
    GrantNotFound = ("grant-not-found", 404, "No such grant"),
    /// Every client address is in use.
    AddressPoolExhausted = ("address-pool-exhausted", 503, "No tunnel address is free"),
    /// The DPoP proof is missing, malformed, not signed by the caller's
    /// enrolled device key, or does not match the call (method, URL, time,
    /// access token, WireGuard key).
    InvalidDpopProof = ("invalid-dpop-proof", 401, "The DPoP proof is not valid for this call"),
    /// The DPoP proof's `jti` was seen before: a replayed proof.
    DpopReplay = ("dpop-replay", 401, "The DPoP proof was already used"),
    /// The broker holds as many recent DPoP proofs as it may; retry shortly.
    DpopCacheFull = ("dpop-cache-full", 503, "Too many DPoP proofs in flight; retry shortly"),
    /// Missing or wrong admin token.
    AdminUnauthorized = ("admin-unauthorized", 401, "An admin token is required"),
    /// `GET /v1/gateway/sync` without the credential of a configured gateway.
    GatewayUnauthorized = ("gateway-unauthorized", 401, "A gateway credential is required"),
    /// An admin request that names nothing or too much.
    InvalidRevocation = ("invalid-revocation", 400, "Name exactly one of device_id, user, grant_id"),
    /// The policy could not be loaded or evaluated.
    PolicyError = ("policy-error", 500, "The posture policy failed"),
    /// Anything else on the broker's side (storage, gateway).
    Internal = ("internal", 500, "Internal broker error"),
}

impl ProblemType {
    /// The full, stable type URI.
    pub fn uri(self) -> String {
        format!("{PROBLEM_BASE}{}", self.slug())
    }

    /// The type named by `uri`, if it is one of ours.
    pub fn from_uri(uri: &str) -> Option<ProblemType> {
        let slug = uri.strip_prefix(PROBLEM_BASE)?;
        ProblemType::ALL.iter().copied().find(|t| t.slug() == slug)
    }
}

impl std::fmt::Display for ProblemType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.slug())
    }
}

/// Whether a broker or issuer URL may be used: `https`, or plain `http`
/// only to a loopback host (127.0.0.0/8, `::1`, `localhost`). Agent and
/// broker apply the same rule through this one function.
///
/// The host is parsed, never prefix-matched: `http://127.0.0.1.evil.example`
/// and `http://127.0.0.1@evil.example` name other hosts and are refused.
pub fn https_or_loopback(url: &str) -> bool {
    let Ok(url) = url::Url::parse(url) else {
        return false;
    };
    match (url.scheme(), url.host()) {
        ("https", Some(_)) => true,
        ("http", Some(url::Host::Ipv4(ip))) => ip.is_loopback(),
        ("http", Some(url::Host::Ipv6(ip))) => ip.is_loopback(),
        ("http", Some(url::Host::Domain(name))) => name.eq_ignore_ascii_case("localhost"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_support_code_reads_back_to_its_prefix() {
        use super::{support_code, support_code_prefix};
        let id = "Xy3k9QpA_rest-of-the-thumbprint";
        assert_eq!(support_code(id), "Xy3k 9QpA");
        assert_eq!(support_code("abc"), "abc");
        assert_eq!(
            support_code_prefix(" xy3k 9qpa ").as_deref(),
            Some("xy3k9qpa")
        );
        assert_eq!(
            support_code_prefix("Xy3k 9QpA").as_deref(),
            Some("Xy3k9QpA")
        );
        assert_eq!(support_code_prefix("ab"), None);
        assert_eq!(support_code_prefix("ab'; drop"), None);
        assert_eq!(support_code_prefix(&"a".repeat(65)), None);
    }

    #[test]
    fn https_or_loopback_parses_the_host() {
        for ok in [
            "https://broker.example.com",
            "https://10.0.0.1:8443/x",
            "http://127.0.0.1:8080",
            "http://127.1.2.3/",
            "http://[::1]:9000",
            "http://localhost:3000/cb",
            "http://LOCALHOST",
        ] {
            assert!(super::https_or_loopback(ok), "{ok} should be allowed");
        }
        for refused in [
            "http://127.0.0.1.evil.example",
            "http://127.0.0.1@evil.example",
            "http://localhost.evil.example:80",
            "http://[::1].evil",
            "http://10.0.0.1",
            "http://broker.example.com",
            "ftp://127.0.0.1",
            "https://",
            "not a url",
            "",
        ] {
            assert!(
                !super::https_or_loopback(refused),
                "{refused} should be refused"
            );
        }
    }

    use super::*;
    use std::collections::HashSet;

    #[test]
    fn problem_types_are_unique_and_round_trip() {
        let slugs: HashSet<_> = ProblemType::ALL.iter().map(|t| t.slug()).collect();
        assert_eq!(slugs.len(), ProblemType::ALL.len());
        for t in ProblemType::ALL {
            assert_eq!(ProblemType::from_uri(&t.uri()), Some(*t));
            assert!((400..600).contains(&t.status()));
        }
        assert_eq!(
            ProblemType::NonceReplayed.uri(),
            "https://sallyport.dev/problems/nonce-replayed"
        );
        assert_eq!(ProblemType::from_uri("about:blank"), None);
    }

    #[test]
    fn problem_serialises_per_rfc9457() {
        let p = Problem::new(ProblemType::UnknownApp, "no app \"x\"");
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["type"], "https://sallyport.dev/problems/unknown-app");
        assert_eq!(v["status"], 404);
        assert!(v.get("violations").is_none());
        let back: Problem = serde_json::from_value(v).unwrap();
        assert_eq!(back.kind(), Some(ProblemType::UnknownApp));
    }

    #[test]
    fn events_are_tagged_with_their_sse_name() {
        let e = Event::DeviceComplianceChange {
            device_id: "d".into(),
            previous_status: ComplianceStatus::Compliant,
            current_status: ComplianceStatus::NotCompliant,
            reason: "r".into(),
        };
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["type"], e.name());
        assert_eq!(v["current_status"], "not-compliant");
        assert!(e.caep_type().unwrap().ends_with("device-compliance-change"));
        let back: Event = serde_json::from_value(v).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn grant_times_are_rfc3339() {
        let g = Grant {
            id: "g".into(),
            app: "wiki".into(),
            gateway: GatewayInfo {
                endpoint: "192.0.2.1:51820".into(),
                public_key: "k".into(),
                id: None,
            },
            client_address: "100.64.0.2".into(),
            targets: vec!["10.0.0.5:443/tcp".into()],
            expires_at: OffsetDateTime::UNIX_EPOCH,
            ends: None,
        };
        let v = serde_json::to_value(&g).unwrap();
        assert_eq!(v["expires_at"], "1970-01-01T00:00:00Z");
    }
}
