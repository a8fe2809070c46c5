//! The gate: a tunnel is up only while the session is valid, the latest
//! verdict is compliant and fresh, the device's latest local posture shows no
//! violation, the tunnel's grant is unexpired, and the broker's access policy
//! has not refused the app since that grant (docs/ARCHITECTURE.md flow 8).
//!
//! [`Supervisor`] is a sans-IO state machine. The driver feeds it [`Event`]s
//! with the current wall-clock time and carries out the [`Command`]s it
//! returns; it never sleeps, reads a clock or touches a socket itself, so
//! every rule below is tested with injected time (see
//! `agent/tests/supervisor_model.rs` for the model-based property test).
//!
//! # Contract
//!
//! - **Safety.** After every call to [`Supervisor::handle`], every app in
//!   [`Supervisor::tunnels_up`] satisfies all the conditions above *at the
//!   `now` of that call*. When a condition stops holding, the `StopTunnel`
//!   for it is in the commands returned by that same call.
//! - **Deadlines.** Conditions also lapse with time (session, verdict and
//!   grant expiry, a policy time window's end, which is a grant's expiry). [`Supervisor::next_deadline`] is never later than the
//!   earliest such lapse of an up tunnel, so a driver that calls
//!   `handle(now, Event::Timer)` at that deadline keeps the safety rule true
//!   between events too.
//! - **Liveness.** The apps the user asked for (`Connect`) stay wanted
//!   through failures. Whenever all conditions hold again, the supervisor
//!   asks for whatever is missing (posture, attestation, grant) and starts
//!   their tunnels without the user asking again. Only `Disconnect` and an
//!   explicit user sign-out forget them. The exceptions are the broker's
//!   own refusals, which wait for a change that may alter the answer: a
//!   revoked grant for a new compliant verdict, an access refusal for the
//!   changes listed under "Access policy" below.
//! - **One request at a time.** At most one attestation, one session refresh
//!   and one grant request per app are in flight; failures back off
//!   exponentially (1 s doubling to 60 s).
//! - **Broker unreachable.** Losing the broker does not by itself close a
//!   tunnel: it stays up until its verdict or grant expires (the gateway
//!   enforces the same expiry independently).
//!
//! # Access policy (per application)
//!
//! The broker's access policy (`sallyport.access`) decides per app, per
//! user, in context; the supervisor follows its answers without guessing
//! at them.
//!
//! - **Time windows.** A [`Grant`] with an [`end`](Grant::end) expires at
//!   the end of a policy time window. It is *not* renewed: a new grant would
//!   end at the same instant, so asking would only loop. At its expiry the
//!   tunnel stops with [`Blocked::WindowClosed`] (the broker's reason), and
//!   the next request waits until `reopens_at` (without one, the usual
//!   backoff). The app comes back by itself when the window opens, if the
//!   user still wants it.
//! - **Denials.** [`Event::AccessRefused`] with [`Refusal::Denied`] stops the
//!   app's tunnel (fail closed: the broker said no), marks the app
//!   [`Blocked::AccessDenied`], and tells the user once. No new request
//!   follows until one of: `opens_at` (no earlier than the backoff, so a
//!   skewed clock cannot make a loop), a new sign-in, a verdict that says
//!   something new (compliance or violations changed: one comes with every
//!   posture run, and the same one again changes nothing), a policy
//!   change, or the user's `Connect`. The broker counts denied
//!   grants as a sign of unusual behaviour, so retrying blindly would hurt
//!   the user.
//! - **Step-up.** [`Refusal::StepUp`] marks only that app
//!   ([`Blocked::StepUpRequired`]): the session stays valid and the other
//!   apps' tunnels stay up. [`Supervisor::app_step_up`] says what the next
//!   sign-in must show; a new sign-in (another [`SignIn`]), a policy change
//!   or the user's `Connect` clears it and the grant is asked for again. A
//!   new verdict does not: it cannot change how the user signed in.
//!
//! # Call contract
//!
//! - **Who calls.** The runtime ([`crate::runtime`]) owns the one
//!   supervisor. It calls [`Supervisor::handle`]`(now, event)` for every
//!   event (task results, broker messages, control requests, tunnels that
//!   closed by themselves) and `handle(now, Event::Timer)` when
//!   [`Supervisor::next_deadline`] is reached. It sleeps towards that
//!   deadline but re-reads the clock at least once a second (its
//!   housekeeping tick), so a deadline a clock change brought forward is
//!   acted on within about a second.
//! - **`now` is the wall clock** (UTC), read by the driver for each call;
//!   the supervisor never reads a clock. Wall clock, not monotonic time,
//!   because what it is compared with is wall-clock: the broker's verdict
//!   and grant expiries and the IdP's token expiry.
//! - **The clock jumps forward** (NTP step, a wrong clock corrected, a
//!   suspend the driver slept through): every condition the new `now` has
//!   passed lapses in that one call, so the `StopTunnel` for each expired
//!   session, verdict or grant is among its commands — tunnels close, fail
//!   closed — before it asks for what is missing (refresh, posture,
//!   attestation, a new grant). Only a new grant from the broker reopens one.
//! - **The clock jumps backward:** deadlines are absolute instants, so they
//!   arrive later by the size of the jump, and a session, verdict or grant
//!   is taken as valid that much longer here. Nothing that lapsed comes back:
//!   an expired grant was dropped, so no tunnel reopens without a new grant,
//!   which the broker issues by its own clock. What bounds the rest: a
//!   tunnel turns its grant's lifetime into a monotonic deadline when it
//!   starts and closes itself there, as the gateway does on its own clock
//!   (the runtime reports it as `TunnelClosed`); the broker checks token
//!   expiry and verdict validity by its own clock on every call; and the
//!   triggers' [`Watcher`](crate::triggers::Watcher) sees the step and
//!   posture is measured again at once, restarting its schedule from the
//!   new time.

use std::collections::BTreeMap;

pub use broker::api::{AccessReason, StepUp};
use posture::policy::Violation;
use time::{Duration, OffsetDateTime};

/// Wall-clock time, as the broker's expiries are wall-clock too.
pub type Time = OffsetDateTime;

/// Identifier of a protected application in the broker's catalogue.
pub type AppId = String;

/// Which sign-in a session comes from. A refresh keeps it; a new sign-in
/// (a step-up included) changes it, which is what clears an app's step-up
/// or denial: the supervisor cannot tell a refresh from a sign-in by the
/// session's expiry alone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SignIn {
    /// The ID token's `auth_time`, when the IdP gave one.
    pub auth_time: Option<Time>,
    /// How the user authenticated (`amr`/`acr`): a step-up within the same
    /// second still shows another method.
    pub method: String,
}

/// The identity layer's view of the sign-in session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Session {
    /// Nobody is signed in.
    SignedOut,
    /// Signed in with MFA; usable until `until` (token or max auth age).
    Valid {
        /// When the session stops being usable without a refresh.
        until: Time,
        /// Which sign-in it comes from.
        sign_in: SignIn,
    },
    /// Signed in, but a fresh (MFA) login is required.
    NeedsReauth {
        /// Why, for the user.
        reason: String,
    },
}

/// The broker's answer to an attestation.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// True when the policy found no violation.
    pub compliant: bool,
    /// The violations, with message and remediation.
    pub violations: Vec<Violation>,
    /// After this instant the verdict no longer opens anything.
    pub valid_until: Time,
}

/// A tunnel grant issued by the broker for one application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The broker's grant id (for `DELETE /v1/grants/{id}`).
    pub id: String,
    /// The gateway drops the peer at this instant.
    pub expires_at: Time,
    /// Set when `expires_at` is the end of the access policy's time window:
    /// the grant is not renewed, and its app reopens at `reopens_at`.
    pub end: Option<GrantEnd>,
}

/// Why a grant ends when it does, when a policy time window decides it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantEnd {
    /// The broker's words for the user.
    pub reason: String,
    /// When the window opens again, if the policy says.
    pub reopens_at: Option<Time>,
}

/// The access policy's refusal of one app's grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Not for this user, device or context now (`access-denied`).
    Denied {
        /// Why, and what the user can do.
        reasons: Vec<AccessReason>,
        /// When a time window opens again, if that is the reason.
        opens_at: Option<Time>,
    },
    /// The app needs a fresh or stronger sign-in (`access-step-up-required`).
    StepUp {
        /// Why, and what the user can do.
        reasons: Vec<AccessReason>,
        /// What the next sign-in must show.
        step_up: StepUp,
    },
}

impl Refusal {
    /// Why the app may not be up, as [`Blocked`].
    pub fn blocked(&self) -> Blocked {
        match self {
            Refusal::Denied { reasons, opens_at } => Blocked::AccessDenied {
                reasons: reasons.clone(),
                opens_at: *opens_at,
            },
            Refusal::StepUp { reasons, step_up } => Blocked::StepUpRequired {
                reasons: reasons.clone(),
                step_up: step_up.clone(),
            },
        }
    }
}

/// What the broker's event stream can say (CAEP-style).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerEvent {
    /// A grant was revoked (by an admin or because its device was).
    GrantRevoked {
        /// The revoked grant.
        grant_id: String,
        /// The broker's reason.
        reason: String,
    },
    /// The user's session was revoked at the broker.
    SessionRevoked {
        /// The broker's reason.
        reason: String,
    },
    /// The broker re-evaluated this device.
    ComplianceChanged {
        /// The new state.
        compliant: bool,
        /// The broker's reason.
        reason: String,
    },
    /// The policy changed: posture must be re-attested against it.
    PolicyChanged,
    /// The access policy changed (only it): every refusal and every wait
    /// for a closed window may have a new answer, so wanted apps are asked
    /// for again; posture need not be measured again.
    AccessPolicyChanged,
}

/// Something that happened, fed to [`Supervisor::handle`].
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Nothing happened but time passed (a deadline was reached).
    Timer,
    /// The session changed (sign-in, refresh, expiry, revocation).
    SessionChanged(Session),
    /// A session refresh failed; the session stays as it was until it lapses.
    RefreshFailed {
        /// Why, for the user.
        reason: String,
    },
    /// The user signed out: tunnels close and are forgotten.
    UserSignedOut,
    /// A posture report was collected and evaluated locally with the same
    /// policy the broker uses; `violations` is that evaluation.
    PostureCollected {
        /// Local violations (empty: compliant).
        violations: Vec<Violation>,
    },
    /// Something that may change posture happened (wake, network change, a
    /// watched file): collect now instead of waiting for the schedule.
    EnvironmentChanged,
    /// The device key became usable at the broker (enrolled, or approved by
    /// an administrator after waiting): measure and attest now. Attempts
    /// made before could only fail, so the backoff they earned is dropped;
    /// otherwise a device approved after an hour's wait would sit out the
    /// longest backoff first.
    DeviceEnrolled,
    /// The broker answered an attestation.
    Verdict(Verdict),
    /// The attestation could not be done (broker unreachable, refused).
    AttestFailed {
        /// Why.
        reason: String,
    },
    /// The broker issued a grant for an app.
    GrantIssued {
        /// The app.
        app: AppId,
        /// The grant.
        grant: Grant,
    },
    /// The broker's access policy refused the app's grant
    /// (`access-denied`, `access-step-up-required`).
    AccessRefused {
        /// The app.
        app: AppId,
        /// The policy's answer.
        refusal: Refusal,
    },
    /// The broker refused a grant or could not be reached.
    GrantFailed {
        /// The app.
        app: AppId,
        /// Why, for the user.
        reason: String,
    },
    /// A message from the broker's event stream.
    Broker(BrokerEvent),
    /// A tunnel closed by itself (handshake timeout, gateway gone).
    TunnelClosed {
        /// The app.
        app: AppId,
        /// Why.
        reason: String,
    },
    /// The user wants this app reachable.
    Connect(AppId),
    /// The user no longer wants this app.
    Disconnect(AppId),
}

/// Something the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Collect a posture report and evaluate it locally.
    CollectPosture,
    /// Attest the latest posture report to the broker.
    Attest,
    /// Refresh the session with the refresh token.
    RefreshSession,
    /// Ask the broker for a grant for this app (fresh WireGuard key).
    RequestGrant {
        /// The app.
        app: AppId,
    },
    /// Tell the broker this grant is no longer used.
    ReleaseGrant {
        /// The app.
        app: AppId,
        /// The grant.
        grant_id: String,
    },
    /// Bring up (or replace) the app's tunnel with this grant.
    StartTunnel {
        /// The app.
        app: AppId,
        /// The grant to use.
        grant_id: String,
    },
    /// Tear the app's tunnel down now, resetting its connections.
    StopTunnel {
        /// The app.
        app: AppId,
        /// Why, for the user and the diagnostics.
        reason: Blocked,
    },
    /// Tell the user something.
    Notify(Notice),
}

/// A message for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// One line.
    pub title: String,
    /// What happened and what to do.
    pub body: String,
}

/// Why a tunnel may not be up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Blocked {
    /// Nobody is signed in.
    SignedOut,
    /// The session lapsed or needs a fresh MFA login.
    Session(String),
    /// The device's latest local posture evaluation failed.
    Posture(Vec<Violation>),
    /// This device's posture has not been measured yet.
    PostureNotCollected,
    /// No verdict yet (or it was withdrawn).
    NoVerdict,
    /// The broker found the device non-compliant.
    NonCompliant(Vec<Violation>),
    /// The broker's verdict expired without a new one.
    VerdictExpired,
    /// The broker said the device is non-compliant (event stream).
    ComplianceRevoked(String),
    /// The app's grant expired.
    GrantExpired,
    /// The broker revoked the app's grant.
    GrantRevoked(String),
    /// The user disconnected the app or signed out.
    UserRequest,
    /// The tunnel itself failed.
    TunnelFailed(String),
    /// The access policy's time window ended the app's grant.
    WindowClosed {
        /// The broker's reason, for the user.
        reason: String,
        /// When the window opens again, if the policy says.
        reopens_at: Option<Time>,
    },
    /// The access policy refuses the app now.
    AccessDenied {
        /// Why, and what the user can do.
        reasons: Vec<AccessReason>,
        /// When a time window opens again, if that is the reason.
        opens_at: Option<Time>,
    },
    /// The app needs a fresh or stronger sign-in first.
    StepUpRequired {
        /// Why, and what the user can do.
        reasons: Vec<AccessReason>,
        /// What the next sign-in must show.
        step_up: StepUp,
    },
}

impl Blocked {
    /// A sentence for the user: what is wrong and, for posture, what to do.
    pub fn explain(&self) -> String {
        match self {
            Blocked::SignedOut => "You are signed out. Sign in to reconnect.".to_owned(),
            Blocked::Session(reason) => format!("Your session needs attention: {reason}"),
            Blocked::Posture(v) | Blocked::NonCompliant(v) => explain_violations(v),
            Blocked::PostureNotCollected => "This device's health is being checked.".to_owned(),
            Blocked::NoVerdict => "This device has not been verified yet.".to_owned(),
            Blocked::VerdictExpired => {
                "This device's verification expired and could not be renewed.".to_owned()
            }
            Blocked::ComplianceRevoked(reason) => {
                format!("The access broker marked this device non-compliant: {reason}")
            }
            Blocked::GrantExpired => "Access to the application expired.".to_owned(),
            Blocked::GrantRevoked(reason) => format!("Access was revoked: {reason}"),
            Blocked::UserRequest => "Disconnected.".to_owned(),
            Blocked::TunnelFailed(reason) => format!("The connection failed: {reason}"),
            Blocked::WindowClosed { reason, .. } if !reason.trim().is_empty() => reason.clone(),
            Blocked::WindowClosed { .. } => {
                "Access to the application ended with its time window.".to_owned()
            }
            Blocked::AccessDenied { reasons, .. } => explain_reasons(
                reasons,
                "The access policy does not allow this application now.",
            ),
            Blocked::StepUpRequired { reasons, .. } => format!(
                "{}This application needs a fresh or stronger sign-in: sign in again.",
                match reasons.first() {
                    Some(first) => format!("{} ", as_sentence(&first.message)),
                    None => String::new(),
                }
            ),
        }
    }
}

/// The access policy's reasons as one line: the first with what to do,
/// then how many more.
fn explain_reasons(reasons: &[AccessReason], fallback: &str) -> String {
    match reasons {
        [] => fallback.to_owned(),
        [first, rest @ ..] => {
            let more = match rest.len() {
                0 => String::new(),
                n => format!(" (and {n} more reason{})", if n == 1 { "" } else { "s" }),
            };
            let fix = first.remediation.trim();
            if fix.is_empty() {
                format!("{}{more}", as_sentence(&first.message))
            } else {
                format!("{} {}{more}", as_sentence(&first.message), as_sentence(fix))
            }
        }
    }
}

fn explain_violations(violations: &[Violation]) -> String {
    match violations {
        [] => "This device does not meet the security policy.".to_owned(),
        [first, rest @ ..] => {
            let more = match rest.len() {
                0 => String::new(),
                n => format!(" (and {n} more problem{})", if n == 1 { "" } else { "s" }),
            };
            format!(
                "{}: {} To fix: {}{more}",
                first.check,
                as_sentence(&first.message),
                first.remediation
            )
        }
    }
}

/// `text` ending with a full stop (policy messages are often bare phrases,
/// and "… not encrypted To fix: …" reads as one run-on sentence).
pub fn as_sentence(text: &str) -> String {
    let text = text.trim_end();
    if text.ends_with(['.', '!', '?']) {
        text.to_owned()
    } else {
        format!("{text}.")
    }
}

/// Tunables; the defaults are what the agent ships with.
#[derive(Debug, Clone, PartialEq)]
pub struct Timing {
    /// Posture is collected this often (DESIGN: default 60 s).
    pub posture_interval: Duration,
    /// Re-attest this long before the verdict expires.
    pub reattest_margin: Duration,
    /// Refresh the session this long before it lapses.
    pub refresh_margin: Duration,
    /// Ask for a new grant this long before the current one expires.
    pub grant_renew_margin: Duration,
    /// First retry delay after a failure (doubles up to `max_backoff`).
    pub min_backoff: Duration,
    /// Longest retry delay.
    pub max_backoff: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            posture_interval: Duration::seconds(60),
            reattest_margin: Duration::seconds(60),
            refresh_margin: Duration::seconds(60),
            grant_renew_margin: Duration::seconds(30),
            min_backoff: Duration::seconds(1),
            max_backoff: Duration::seconds(60),
        }
    }
}

/// Retry state of one kind of request.
#[derive(Debug, Clone, Default, PartialEq)]
struct Retry {
    in_flight: bool,
    failures: u32,
    not_before: Option<Time>,
}

impl Retry {
    fn ready(&self, now: Time) -> bool {
        !self.in_flight && self.not_before.is_none_or(|t| now >= t)
    }

    fn start(&mut self) {
        self.in_flight = true;
        self.not_before = None;
    }

    fn succeeded(&mut self) {
        *self = Retry::default();
    }

    fn failed(&mut self, now: Time, timing: &Timing) {
        self.in_flight = false;
        let exponent = self.failures.min(16);
        self.failures = self.failures.saturating_add(1);
        let delay = timing
            .min_backoff
            .saturating_mul(1_i32 << exponent)
            .min(timing.max_backoff);
        self.not_before = Some(now + delay);
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
struct App {
    wanted: bool,
    grant: Option<Grant>,
    /// The grant id the running tunnel uses, when one is up.
    tunnel: Option<String>,
    request: Retry,
    /// Set, with the broker's reason, when the broker revoked this app's
    /// grant: no new request until a new compliant verdict arrives (asking
    /// again would be refused), and the user is told why meanwhile.
    revoked: Option<String>,
    /// The access policy's refusal: no request until one of the changes the
    /// module docs list, so a refused app is not asked for in a loop.
    refused: Option<Refused>,
    /// The grant's time window closed: the broker's reason and when it
    /// reopens (the request waits for it in `request.not_before`).
    window_closed: Option<(String, Option<Time>)>,
    /// The refusal the user was last told about: told once, not at every
    /// re-ask that brings the same answer.
    notified: Option<Refusal>,
}

/// An app's refusal by the access policy, while it stands.
#[derive(Debug, Clone, PartialEq)]
struct Refused {
    refusal: Refusal,
    /// When it was received (the latest step-up is the one to sign in for).
    at: Time,
    /// When to ask again by itself (`opens_at`, never before the backoff).
    retry_at: Option<Time>,
}

impl App {
    /// Forget a refusal because something changed that may change the
    /// answer: ask again at once.
    fn clear_refusal(&mut self) {
        if self.refused.take().is_some() && !self.request.in_flight {
            self.request.not_before = None;
        }
    }
}

/// The gate state machine. See the module docs for its contract.
#[derive(Debug, Clone)]
pub struct Supervisor {
    timing: Timing,
    session: Session,
    verdict: Option<Verdict>,
    /// Set by a `ComplianceChanged { compliant: false }` broker event; cleared
    /// by the next verdict.
    compliance_revoked: Option<String>,
    /// `None` until the first local evaluation.
    local_violations: Option<Vec<Violation>>,
    apps: BTreeMap<AppId, App>,
    next_posture: Option<Time>,
    posture_in_flight: bool,
    /// Attestation of the latest report is wanted (new report, new policy).
    attest_wanted: bool,
    attest: Retry,
    refresh: Retry,
    /// The sign-in of the latest valid session (kept while it needs
    /// re-authentication, so coming back with the same one is no new
    /// sign-in; forgotten at sign-out).
    sign_in: Option<SignIn>,
    /// The `now` of the latest event: deadlines at or before it were
    /// already acted upon (or are waiting on another condition, which has a
    /// deadline or an event of its own), so they are not reported again.
    last_now: Option<Time>,
}

impl Supervisor {
    /// A supervisor with nobody signed in; posture is collected at the first event.
    pub fn new(timing: Timing) -> Self {
        Supervisor {
            timing,
            session: Session::SignedOut,
            verdict: None,
            compliance_revoked: None,
            local_violations: None,
            apps: BTreeMap::new(),
            next_posture: None,
            posture_in_flight: false,
            attest_wanted: false,
            attest: Retry::default(),
            refresh: Retry::default(),
            sign_in: None,
            last_now: None,
        }
    }

    /// Apply one event at `now` and return what to do, in order.
    pub fn handle(&mut self, now: Time, event: Event) -> Vec<Command> {
        let mut out = Vec::new();
        self.last_now = Some(now);
        self.apply(now, event, &mut out);
        self.reconcile(now, &mut out);
        out
    }

    /// The apps whose tunnel is up, with the grant each uses.
    pub fn tunnels_up(&self) -> impl Iterator<Item = (&AppId, &str)> {
        self.apps
            .iter()
            .filter_map(|(id, app)| app.tunnel.as_deref().map(|g| (id, g)))
    }

    /// The apps the user wants connected.
    pub fn wanted(&self) -> impl Iterator<Item = &AppId> {
        self.apps
            .iter()
            .filter(|(_, app)| app.wanted)
            .map(|(id, _)| id)
    }

    /// The current session as the supervisor sees it.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The latest verdict, if any.
    pub fn verdict(&self) -> Option<&Verdict> {
        self.verdict.as_ref()
    }

    /// Why tunnels may not be up at `now` (`None`: the device-wide
    /// conditions hold; each app still needs its grant).
    pub fn blocked(&self, now: Time) -> Option<Blocked> {
        match &self.session {
            Session::SignedOut => return Some(Blocked::SignedOut),
            Session::NeedsReauth { reason } => return Some(Blocked::Session(reason.clone())),
            Session::Valid { until, .. } if now >= *until => {
                // In the identity layer's words for an expired session:
                // they tell the user what to do.
                return Some(Blocked::Session(
                    crate::identity::session::ReauthReason::Expired.to_string(),
                ));
            }
            Session::Valid { .. } => {}
        }
        match &self.local_violations {
            None => return Some(Blocked::PostureNotCollected),
            Some(violations) if !violations.is_empty() => {
                return Some(Blocked::Posture(violations.clone()));
            }
            Some(_) => {}
        }
        if let Some(reason) = &self.compliance_revoked {
            return Some(Blocked::ComplianceRevoked(reason.clone()));
        }
        match &self.verdict {
            None => Some(Blocked::NoVerdict),
            Some(v) if !v.compliant => Some(Blocked::NonCompliant(v.violations.clone())),
            Some(v) if now >= v.valid_until => Some(Blocked::VerdictExpired),
            Some(_) => None,
        }
    }

    /// Why `app` may not be up at `now`: the device-wide reason, else its
    /// grant revoked by the broker (until a new compliant verdict), else the
    /// access policy's refusal or the time window that closed it.
    pub fn app_blocked(&self, app: &str, now: Time) -> Option<Blocked> {
        self.blocked(now).or_else(|| {
            let entry = self.apps.get(app)?;
            if let Some(reason) = &entry.revoked {
                return Some(Blocked::GrantRevoked(reason.clone()));
            }
            if let Some(refused) = &entry.refused {
                return Some(refused.refusal.blocked());
            }
            entry
                .window_closed
                .as_ref()
                .filter(|_| entry.grant.is_none())
                .map(|(reason, reopens_at)| Blocked::WindowClosed {
                    reason: reason.clone(),
                    reopens_at: *reopens_at,
                })
        })
    }

    /// The grant `app` holds, if any (its `end` says when a time window
    /// closes it).
    pub fn grant(&self, app: &str) -> Option<&Grant> {
        self.apps.get(app).and_then(|a| a.grant.as_ref())
    }

    /// What the next sign-in must show for the apps the user wants that
    /// wait on a step-up: the latest such app's `acr_values`, and the
    /// smallest `max_age` among them (a more recent sign-in satisfies every
    /// larger one). `None` when no wanted app waits on one.
    pub fn app_step_up(&self) -> Option<StepUp> {
        let waiting =
            self.apps
                .values()
                .filter(|a| a.wanted)
                .filter_map(|a| match a.refused.as_ref() {
                    Some(Refused {
                        refusal: Refusal::StepUp { step_up, .. },
                        at,
                        ..
                    }) => Some((*at, step_up)),
                    _ => None,
                });
        let mut latest: Option<(Time, StepUp)> = None;
        let mut max_age: Option<u64> = None;
        for (at, step_up) in waiting {
            max_age = match (max_age, step_up.max_age) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            if latest.as_ref().is_none_or(|(t, _)| at >= *t) {
                latest = Some((at, step_up.clone()));
            }
        }
        latest.map(|(_, step_up)| StepUp {
            acr_values: step_up.acr_values,
            max_age,
        })
    }

    /// When the driver must call `handle(Event::Timer, ..)` next, if ever.
    /// Always later than the `now` of the latest event.
    pub fn next_deadline(&self) -> Option<Time> {
        let mut deadlines: Vec<Time> = Vec::new();
        if !self.posture_in_flight {
            deadlines.extend(self.next_posture);
        }
        if let Session::Valid { until, .. } = &self.session {
            deadlines.push(*until);
            if !self.refresh.in_flight {
                deadlines.push(*until - self.timing.refresh_margin);
            }
            deadlines.extend(self.refresh.not_before);
        }
        if let Some(v) = &self.verdict {
            deadlines.push(v.valid_until);
            if !self.attest.in_flight {
                deadlines.push(v.valid_until - self.timing.reattest_margin);
            }
        }
        deadlines.extend(self.attest.not_before);
        for app in self.apps.values() {
            if let Some(grant) = &app.grant {
                deadlines.push(grant.expires_at);
                // A window-bounded grant is not renewed (see the module docs).
                if app.wanted && !app.request.in_flight && grant.end.is_none() {
                    deadlines.push(grant.expires_at - self.timing.grant_renew_margin);
                }
            }
            deadlines.extend(app.request.not_before);
            deadlines.extend(app.refused.as_ref().and_then(|r| r.retry_at));
            deadlines.extend(app.window_closed.as_ref().and_then(|(_, at)| *at));
        }
        deadlines
            .into_iter()
            .filter(|d| self.last_now.is_none_or(|last| *d > last))
            .min()
    }

    fn app(&mut self, id: &AppId) -> &mut App {
        self.apps.entry(id.clone()).or_default()
    }

    fn apply(&mut self, now: Time, event: Event, out: &mut Vec<Command>) {
        match event {
            Event::Timer => {}
            Event::SessionChanged(session) => {
                if let Session::Valid { sign_in, .. } = &session {
                    self.refresh.succeeded();
                    if !matches!(self.session, Session::Valid { .. }) {
                        // Signed in (again): measure and attest right away.
                        self.next_posture = Some(now);
                        self.attest_wanted = true;
                    }
                    if self.sign_in.as_ref() != Some(sign_in) {
                        // A new sign-in may be what an app's step-up or
                        // denial waited for; the user is told afresh.
                        self.sign_in = Some(sign_in.clone());
                        for app in self.apps.values_mut() {
                            app.clear_refusal();
                            app.notified = None;
                        }
                    }
                }
                self.session = session;
            }
            Event::RefreshFailed { reason } => {
                self.refresh.failed(now, &self.timing);
                tracing::debug!(%reason, "session refresh failed");
            }
            Event::UserSignedOut => {
                for (id, app) in &mut self.apps {
                    // Stop before releasing: the gateway drops the peer on release.
                    if app.tunnel.take().is_some() {
                        stop(out, id, Blocked::SignedOut);
                    }
                    if let Some(grant) = app.grant.take() {
                        out.push(Command::ReleaseGrant {
                            app: id.clone(),
                            grant_id: grant.id,
                        });
                    }
                    app.wanted = false;
                    app.refused = None;
                    app.notified = None;
                    app.window_closed = None;
                    app.request = Retry::default();
                }
                self.session = Session::SignedOut;
                self.sign_in = None;
                self.verdict = None;
                self.compliance_revoked = None;
                self.attest = Retry::default();
                self.refresh = Retry::default();
            }
            Event::PostureCollected { violations } => {
                self.posture_in_flight = false;
                // A request made while collecting (sign-in, wake) still
                // stands: it asked for a measurement after that moment.
                let scheduled = now + self.timing.posture_interval;
                self.next_posture = Some(self.next_posture.map_or(scheduled, |t| t.min(scheduled)));
                self.local_violations = Some(violations);
                self.attest_wanted = true;
            }
            Event::EnvironmentChanged => {
                self.next_posture = Some(now);
            }
            Event::DeviceEnrolled => {
                self.next_posture = Some(now);
                self.attest_wanted = true;
                if !self.attest.in_flight {
                    self.attest = Retry::default();
                }
            }
            Event::Verdict(verdict) => {
                self.attest.succeeded();
                self.compliance_revoked = None;
                // Verdicts come with every attestation (each posture run):
                // only one that says something else may change a denial.
                let changed = self.verdict.as_ref().is_none_or(|v| {
                    v.compliant != verdict.compliant || v.violations != verdict.violations
                });
                for app in self.apps.values_mut() {
                    if verdict.compliant {
                        app.revoked = None;
                    }
                    // The device's state is part of the access input, but
                    // not how the user signed in: a step-up stays.
                    if changed
                        && app
                            .refused
                            .as_ref()
                            .is_some_and(|r| matches!(r.refusal, Refusal::Denied { .. }))
                    {
                        app.clear_refusal();
                    }
                }
                self.verdict = Some(verdict);
            }
            Event::AttestFailed { reason } => {
                self.attest.failed(now, &self.timing);
                tracing::debug!(%reason, "attestation failed");
            }
            Event::GrantIssued { app, grant } => {
                let entry = self.app(&app);
                entry.request.succeeded();
                entry.refused = None;
                entry.notified = None;
                entry.window_closed = None;
                let replaced = entry.grant.replace(grant);
                if let Some(old) = replaced
                    && entry.tunnel.as_deref() != Some(old.id.as_str())
                {
                    out.push(Command::ReleaseGrant {
                        app,
                        grant_id: old.id,
                    });
                }
            }
            Event::AccessRefused { app, refusal } => {
                let timing = self.timing.clone();
                let entry = self.app(&app);
                entry.request.failed(now, &timing);
                // Ask again by itself only when the window opens, and never
                // sooner than the backoff: with a clock behind the broker's,
                // `opens_at` may already have passed here.
                let retry_at = match &refusal {
                    Refusal::Denied {
                        opens_at: Some(at), ..
                    } => Some(entry.request.not_before.map_or(*at, |b| b.max(*at))),
                    _ => None,
                };
                entry.request.not_before = retry_at;
                entry.window_closed = None;
                // The broker said no: fail closed for this app now, even
                // if an older grant has time left.
                if entry.tunnel.take().is_some() {
                    stop(out, &app, refusal.blocked());
                }
                if let Some(grant) = entry.grant.take() {
                    out.push(Command::ReleaseGrant {
                        app: app.clone(),
                        grant_id: grant.id,
                    });
                }
                if entry.wanted && entry.notified.as_ref() != Some(&refusal) {
                    out.push(Command::Notify(Notice {
                        title: format!("Cannot open {app}"),
                        body: refusal.blocked().explain(),
                    }));
                    entry.notified = Some(refusal.clone());
                }
                entry.refused = Some(Refused {
                    refusal,
                    at: now,
                    retry_at,
                });
            }
            Event::GrantFailed { app, reason } => {
                let timing = self.timing.clone();
                let entry = self.app(&app);
                entry.request.failed(now, &timing);
                if entry.wanted {
                    out.push(Command::Notify(Notice {
                        title: format!("Cannot open {app}"),
                        body: reason,
                    }));
                }
            }
            Event::Broker(BrokerEvent::GrantRevoked { grant_id, reason }) => {
                for (id, app) in &mut self.apps {
                    if app.grant.as_ref().is_some_and(|g| g.id == grant_id) {
                        app.grant = None;
                        app.revoked = Some(reason.clone());
                        if app.tunnel.take().is_some() {
                            stop(out, id, Blocked::GrantRevoked(reason.clone()));
                        }
                    }
                }
            }
            Event::Broker(BrokerEvent::SessionRevoked { reason }) => {
                self.session = Session::NeedsReauth {
                    reason: format!("the access broker revoked the session: {reason}"),
                };
            }
            Event::Broker(BrokerEvent::ComplianceChanged { compliant, reason }) => {
                if compliant {
                    self.attest_wanted = true;
                } else {
                    // The broker closed every grant of a device that stopped
                    // complying (and said so per grant, which this must not
                    // depend on: an event can be missed while the stream
                    // reconnects). A grant is never reused after this; the
                    // next one is asked for when compliance is back.
                    for (id, app) in &mut self.apps {
                        if app.grant.take().is_some() && app.tunnel.take().is_some() {
                            stop(out, id, Blocked::ComplianceRevoked(reason.clone()));
                        }
                    }
                    self.compliance_revoked = Some(reason);
                }
            }
            Event::Broker(BrokerEvent::PolicyChanged) => {
                self.next_posture = Some(now);
                self.attest_wanted = true;
                // The access policy may have changed too.
                for app in self.apps.values_mut() {
                    app.clear_refusal();
                }
            }
            Event::Broker(BrokerEvent::AccessPolicyChanged) => {
                for app in self.apps.values_mut() {
                    app.clear_refusal();
                    // A window that closed may open sooner under the new
                    // rules: ask now rather than at the old reopening time.
                    // A live window-bounded grant stays as it is (the broker
                    // judged it again and closes it if the new rules refuse).
                    let ended = app.grant.as_ref().is_none_or(|g| now >= g.expires_at);
                    if ended && app.window_closed.take().is_some() {
                        app.request.not_before = None;
                    }
                }
            }
            Event::TunnelClosed { app, reason } => {
                let timing = self.timing.clone();
                let entry = self.app(&app);
                if entry.tunnel.take().is_some() {
                    // Start over with a fresh grant (and key), after a pause
                    // so a dead gateway is not hammered.
                    if let Some(grant) = entry.grant.take() {
                        out.push(Command::ReleaseGrant {
                            app: app.clone(),
                            grant_id: grant.id,
                        });
                    }
                    entry.request.failed(now, &timing);
                    out.push(Command::Notify(Notice {
                        title: format!("{app} disconnected"),
                        body: Blocked::TunnelFailed(reason).explain(),
                    }));
                }
            }
            Event::Connect(app) => {
                // The user asks again: ask the broker again, even inside a
                // refusal or a closed window, and tell them its answer.
                let entry = self.app(&app);
                entry.wanted = true;
                entry.request.not_before = None;
                entry.refused = None;
                entry.notified = None;
                entry.window_closed = None;
            }
            Event::Disconnect(app) => {
                let entry = self.app(&app);
                entry.wanted = false;
                if entry.tunnel.take().is_some() {
                    stop(out, &app, Blocked::UserRequest);
                }
                if let Some(grant) = entry.grant.take() {
                    out.push(Command::ReleaseGrant {
                        app,
                        grant_id: grant.id,
                    });
                }
            }
        }
    }

    /// Bring the world in line with the rules: stop what must stop first,
    /// then ask for what is missing.
    fn reconcile(&mut self, now: Time, out: &mut Vec<Command>) {
        let blocked = self.blocked(now);

        // 1. Safety: stop every tunnel whose conditions do not hold.
        for (id, app) in &mut self.apps {
            let grant_valid = app.grant.as_ref().is_some_and(|g| now < g.expires_at);
            let mut window_end = None;
            if !grant_valid && let Some(end) = app.grant.take().and_then(|g| g.end) {
                // The policy's window closed: wait for it to reopen (else
                // back off as after a failure) instead of asking at once.
                if !app.request.in_flight {
                    match end.reopens_at {
                        Some(at) => app.request.not_before = Some(at),
                        None => app.request.failed(now, &self.timing),
                    }
                }
                app.window_closed = Some((end.reason.clone(), end.reopens_at));
                window_end = Some(Blocked::WindowClosed {
                    reason: end.reason,
                    reopens_at: end.reopens_at,
                });
            }
            // What waited on time alone is over.
            if app
                .refused
                .as_ref()
                .and_then(|r| r.retry_at)
                .is_some_and(|at| now >= at)
            {
                app.refused = None;
            }
            if app
                .window_closed
                .as_ref()
                .and_then(|(_, at)| *at)
                .is_some_and(|at| now >= at)
            {
                app.window_closed = None;
            }
            if app.tunnel.is_none() {
                continue;
            }
            let reason = match (&blocked, grant_valid) {
                (Some(reason), _) => reason.clone(),
                (None, false) => window_end.unwrap_or(Blocked::GrantExpired),
                (None, true) => continue,
            };
            app.tunnel = None;
            out.push(Command::Notify(Notice {
                title: format!("{id} disconnected"),
                body: reason.explain(),
            }));
            stop(out, id, reason);
        }

        // 2. Keep the inputs fresh.
        if !self.posture_in_flight && self.next_posture.is_none_or(|t| now >= t) {
            self.posture_in_flight = true;
            self.next_posture = None;
            out.push(Command::CollectPosture);
        }
        let signed_in = matches!(&self.session, Session::Valid { until, .. } if now < *until);
        if let Session::Valid { until, .. } = &self.session
            && now >= *until - self.timing.refresh_margin
            && self.refresh.ready(now)
        {
            self.refresh.start();
            out.push(Command::RefreshSession);
        }
        let verdict_due = self
            .verdict
            .as_ref()
            .is_none_or(|v| now >= v.valid_until - self.timing.reattest_margin);
        if signed_in
            && (self.attest_wanted || verdict_due)
            && self.local_violations.is_some()
            && self.attest.ready(now)
        {
            self.attest_wanted = false;
            self.attest.start();
            out.push(Command::Attest);
        }

        // 3. Liveness: bring up what the user wants, as far as allowed.
        if blocked.is_some() {
            return;
        }
        for (id, app) in &mut self.apps {
            if !app.wanted || app.revoked.is_some() || app.refused.is_some() {
                continue;
            }
            // A window-bounded grant is never renewed: the new one would end
            // at the same instant.
            let renew_due = app.grant.as_ref().is_none_or(|g| {
                g.end.is_none() && now >= g.expires_at - self.timing.grant_renew_margin
            });
            if renew_due && app.request.ready(now) {
                app.request.start();
                out.push(Command::RequestGrant { app: id.clone() });
            }
            if let Some(grant) = &app.grant
                && app.tunnel.as_deref() != Some(grant.id.as_str())
            {
                let replaced = app.tunnel.replace(grant.id.clone());
                out.push(Command::StartTunnel {
                    app: id.clone(),
                    grant_id: grant.id.clone(),
                });
                // The new tunnel replaces the old one; only then let go of
                // the old grant, so a renewal has no gap.
                if let Some(old) = replaced {
                    out.push(Command::ReleaseGrant {
                        app: id.clone(),
                        grant_id: old,
                    });
                }
            }
        }
    }
}

fn stop(out: &mut Vec<Command>, app: &AppId, reason: Blocked) {
    out.push(Command::StopTunnel {
        app: app.clone(),
        reason,
    });
}

#[cfg(test)]
mod tests;
