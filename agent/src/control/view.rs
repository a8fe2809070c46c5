//! What the agent shows its front ends (CLI `status --json`, the tray app):
//! states and reports, never tokens or keys. The one secret here is a
//! tunnel's SOCKS5 password: the control socket is the signed-in user's
//! own, and that user has to type it into the application. These are the `data` of a
//! [`super::Reply::Ok`]; the UI's TypeScript types (`ui/src/types.ts`)
//! mirror them field for field.

use serde::{Deserialize, Serialize};

/// Answer to [`super::Request::Status`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusView {
    /// Who is signed in.
    pub identity: IdentityView,
    /// The latest verdict, if any.
    pub verdict: Option<VerdictView>,
    /// One entry per app the user wants or has open.
    pub tunnels: Vec<TunnelView>,
    /// When posture was last collected (RFC 3339).
    pub posture_collected_at: Option<String>,
    /// This device's enrolment with the broker (absent from an older
    /// agent: not known to be enrolled).
    #[serde(default)]
    pub enrolment: EnrolmentView,
    /// Set while the access broker does not answer: [`BROKER_UNREACHABLE`]
    /// and the error. The agent keeps running and retries with backoff.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker_unreachable: Option<String>,
    /// The code the user reads out to helpdesk ([`support_code`]), once
    /// the device is enrolled (approved or not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub support_code: Option<String>,
    /// The device service's updater (absent without a device service).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update: Option<service::updater::UpdateStatus>,
}

pub use broker::api::support_code;

/// What the user is told while the broker does not answer.
pub const BROKER_UNREACHABLE: &str = "access broker unreachable, retrying";

/// What the user is told while the broker holds a new device for approval.
pub const AWAITING_APPROVAL: &str = "Waiting for IT to approve this device.";
/// The same, as a phrase inside a line ("Device    waiting for IT …").
pub const AWAITING_APPROVAL_PHRASE: &str = "waiting for IT to approve this device";

/// Where this device's key stands with the broker.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum EnrolmentView {
    /// Not enrolled (yet): signed out, the broker unreachable, or refused.
    #[default]
    NotEnrolled,
    /// Enrolled, but an administrator has not approved it: nothing opens
    /// until then. The agent keeps asking and resumes by itself.
    PendingApproval {
        /// The device id (the key's thumbprint), for the helpdesk.
        device_id: String,
        /// When the agent first heard it is pending (RFC 3339).
        since: String,
    },
    /// Enrolled and usable.
    Enrolled {
        /// The device id.
        device_id: String,
    },
}

/// The sign-in state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum IdentityView {
    /// Nobody is signed in.
    SignedOut,
    /// Signed in.
    Valid {
        /// The user's name or email.
        user: String,
        /// When the session ends without a refresh (RFC 3339).
        expires_at: String,
        /// The second factor the IdP reported (`otp`, `hwk`, ...).
        mfa: String,
        /// Set when an application the user wants asks for a fresher or
        /// stronger sign-in (its access policy's step-up). The session stays
        /// valid for every other application; `sallyport login` and the
        /// tray's sign-in ask the identity provider for this.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        step_up: Option<StepUpView>,
    },
    /// A fresh MFA login is needed.
    NeedsReauth {
        /// Who was signed in, if known.
        user: Option<String>,
        /// Why.
        reason: String,
        /// What the new sign-in must show, when the broker asked for a
        /// stronger or more recent one (RFC 9470): `sallyport login` and
        /// the tray pass it to the identity provider.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        step_up: Option<StepUpView>,
    },
}

/// An RFC 9470 step-up request, as the status shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepUpView {
    /// `acr_values` to ask the identity provider for.
    pub acr_values: Vec<String>,
    /// `max_age` (seconds) to ask for.
    pub max_age: Option<u64>,
}

impl From<&broker::api::StepUp> for StepUpView {
    fn from(step_up: &broker::api::StepUp) -> Self {
        StepUpView {
            acr_values: step_up.acr_values.clone(),
            max_age: step_up.max_age,
        }
    }
}

/// The broker's verdict on this device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerdictView {
    /// True when no check failed the policy.
    pub compliant: bool,
    /// What failed, with what to do.
    pub violations: Vec<posture::policy::Violation>,
    /// RFC 3339.
    pub valid_until: String,
}

/// One application's tunnel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunnelView {
    /// The app id.
    pub app: String,
    /// `up`, `connecting` or `down`.
    pub state: TunnelState,
    /// Why it is not up, for the user.
    pub reason: Option<String>,
    /// Local forwards: which target is reachable at which local address.
    pub forwards: Vec<ForwardView>,
    /// The app's SOCKS5 proxy address, when up.
    pub socks: Option<String>,
    /// The username the SOCKS5 proxy requires, when `tunnels.socks_auth`
    /// is on (absent otherwise, and from an older agent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socks_username: Option<String>,
    /// The password that goes with `socks_username`. Shown only over the
    /// user's own control socket; the diagnostics bundle redacts it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socks_password: Option<String>,
    /// Bytes received through the tunnel.
    pub bytes_in: u64,
    /// Bytes sent through the tunnel.
    pub bytes_out: u64,
    /// Last WireGuard handshake (RFC 3339).
    pub last_handshake: Option<String>,
    /// When the grant ends (RFC 3339).
    pub expires_at: Option<String>,
}

/// A tunnel's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TunnelState {
    /// Traffic flows.
    Up,
    /// Waiting for a grant or a handshake.
    Connecting,
    /// Wanted but blocked (see `reason`).
    Down,
}

/// One local forward.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwardView {
    /// `10.0.0.5:443/tcp`.
    pub target: String,
    /// `127.0.0.1:40123`.
    pub local: String,
}

/// One entry of the catalogue (answer to [`super::Request::Apps`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppView {
    /// Its id.
    pub id: String,
    /// Its display name.
    pub name: String,
    /// Its targets, `ip:port/proto`.
    pub targets: Vec<String>,
    /// True when the user asked for it.
    pub wanted: bool,
    /// Whether it can open now, and if not why and what to do.
    pub access: AccessView,
}

/// Whether an application can open now, and if not why, what to do, and
/// when (the access policy's answer, or what the agent knows).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessView {
    /// True when a grant would be issued now (as far as `source` knows).
    pub can_open: bool,
    /// Why not (or, when it can, why access ends when it does), each with
    /// what the user can do (`remediation` may be empty).
    pub reasons: Vec<broker::api::AccessReason>,
    /// When it needs a fresher or stronger sign-in: what it must show.
    pub step_up: Option<StepUpView>,
    /// When a closed time window opens again (RFC 3339).
    pub opens_at: Option<String>,
    /// When an open time window closes; no grant outlives it (RFC 3339).
    pub closes_at: Option<String>,
    /// Where this answer comes from.
    pub source: AccessSource,
}

/// Who answered [`AccessView`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessSource {
    /// The broker, asked just now (`GET /v1/apps`).
    Broker,
    /// The agent's own knowledge: the broker's latest answers to its grant
    /// requests and the device's state (not signed in or not enrolled, or
    /// the broker did not answer in time).
    Agent,
}

/// A device-code sign-in in progress (RFC 8628), shown to the user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceCodeView {
    /// The code to type.
    pub user_code: String,
    /// Where to type it.
    pub verification_uri: String,
    /// The same, with the code filled in, when the IdP offers it.
    pub verification_uri_complete: Option<String>,
    /// Seconds until the code expires.
    pub expires_in: u64,
}
