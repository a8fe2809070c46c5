// The JSON the agent's control protocol answers with. Mirrors
// `agent::control::view` (and `posture::{Report, Check}`, `posture::policy::Violation`)
// field for field; src-tauri/tests/ui_fixtures.rs deserialises the UI test
// fixtures into the Rust types so the two cannot drift silently.

/** `agent::control::view::StepUpView`: what the next sign-in must show. */
export interface StepUpView {
  acr_values: string[];
  max_age: number | null;
}

/** `agent::control::view::IdentityView`, tagged by `state`. */
export type IdentityView =
  | { state: "signed_out" }
  | {
      state: "valid";
      user: string;
      expires_at: string;
      mfa: string;
      /** Set when an application the user wants asks for a fresher or stronger sign-in. */
      step_up?: StepUpView;
    }
  | {
      state: "needs_reauth";
      user: string | null;
      reason: string;
      /** Set when the broker asked for a stronger or more recent sign-in (RFC 9470). */
      step_up?: StepUpView;
    };

/** `posture::policy::Violation`. */
export interface Violation {
  check: string;
  message: string;
  remediation: string;
}

/** `agent::control::view::VerdictView`. */
export interface VerdictView {
  compliant: boolean;
  violations: Violation[];
  valid_until: string;
}

/** `agent::control::view::TunnelState`. */
export type TunnelState = "up" | "connecting" | "down";

/** `agent::control::view::ForwardView`. */
export interface ForwardView {
  target: string;
  local: string;
}

/** `agent::control::view::TunnelView`. */
export interface TunnelView {
  app: string;
  state: TunnelState;
  reason: string | null;
  forwards: ForwardView[];
  socks: string | null;
  /** Set when `tunnels.socks_auth` is on: the proxy's username (absent otherwise and from an older agent). */
  socks_username?: string;
  /** The password that goes with `socks_username`; only on the user's own control socket. */
  socks_password?: string;
  bytes_in: number;
  bytes_out: number;
  last_handshake: string | null;
  expires_at: string | null;
}

/** `agent::control::view::StatusView`: answer to `status`. */
export interface StatusView {
  identity: IdentityView;
  verdict: VerdictView | null;
  tunnels: TunnelView[];
  posture_collected_at: string | null;
  /** Absent from an older agent. */
  enrolment?: EnrolmentView;
  /** Set while the access broker does not answer ("access broker unreachable, retrying: …"). */
  broker_unreachable?: string;
  /** The code the user reads out to helpdesk (the device id's first 8 characters), once enrolled. */
  support_code?: string;
  /** The device service's updater (absent without a device service). */
  update?: UpdateStatus;
}

/** `service::updater::Phase`, tagged by `state`. */
export type UpdatePhase =
  | { state: "off" }
  | { state: "up_to_date" }
  | { state: "available"; version: string; required: boolean }
  | { state: "installing"; version: string }
  | { state: "updated"; from: string; to: string }
  | { state: "refused"; reason: string }
  | { state: "failed"; reason: string };

/** `service::updater::UpdateStatus`. */
export interface UpdateStatus {
  running: string;
  phase: UpdatePhase;
  last_check?: string;
}

/** `agent::timeline::Kind`. */
export type TimelineKind =
  | "session"
  | "posture"
  | "verdict"
  | "grant"
  | "access"
  | "step-up"
  | "tunnel-up"
  | "tunnel-down"
  | "revocation"
  | "enrolment"
  | "broker"
  | "notice"
  | "update";

/** `agent::timeline::Entry`: one decision, with its reason. */
export interface TimelineEntry {
  at: string;
  kind: TimelineKind;
  app?: string;
  what: string;
  reason?: string;
}

/** `agent::control::view::EnrolmentView`: where this device's key stands with the broker. */
export type EnrolmentView =
  | { state: "not_enrolled" }
  | { state: "pending_approval"; device_id: string; since: string }
  | { state: "enrolled"; device_id: string };

/** `broker::api::AccessReason`: one reason of the access policy, with what to do ("" when nothing). */
export interface AccessReason {
  message: string;
  remediation: string;
}

/** `agent::control::view::AccessSource`: who answered. */
export type AccessSource = "broker" | "agent";

/** `agent::control::view::AccessView`: can the app open now, and if not why, what to do, and when. */
export interface AccessView {
  can_open: boolean;
  reasons: AccessReason[];
  step_up: StepUpView | null;
  /** RFC 3339: when a closed time window opens again. */
  opens_at: string | null;
  /** RFC 3339: when an open time window closes. */
  closes_at: string | null;
  source: AccessSource;
}

/** `agent::control::view::AppView`: one entry of the answer to `apps`. */
export interface AppView {
  id: string;
  name: string;
  targets: string[];
  wanted: boolean;
  access: AccessView;
}

/** `agent::control::view::DeviceCodeView`: answer to `sign_in_device`. */
export interface DeviceCodeView {
  user_code: string;
  verification_uri: string;
  verification_uri_complete: string | null;
  expires_in: number;
}

/** `posture::Status`. */
export type CheckStatus = "pass" | "fail" | "unknown";

/** `posture::Unknown`: why a check could not be determined. */
export interface Unknown {
  kind: string;
  detail: string;
}

/** `posture::Check`. `remediation` and `unknown` are omitted when absent. */
export interface Check {
  id: string;
  status: CheckStatus;
  summary: string;
  observed: Record<string, unknown>;
  evidence: string[];
  remediation?: string | null;
  unknown?: Unknown | null;
}

/** `posture::Report`. */
export interface Report {
  collected_at: string;
  platform: string;
  agent_version: string;
  duration_ms: number;
  checks: Check[];
}

/** The agent's answer to `posture`: the latest report and its violations (null before the first collection). */
export interface PostureView {
  report: Report | null;
  violations: Violation[] | null;
}

/** Answer to the app's own `about` command. */
export interface AboutView {
  version: string;
  socket: string;
}
