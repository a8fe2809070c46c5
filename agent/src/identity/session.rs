//! The session as the supervisor sees it, as a sans-IO state machine:
//! events and the current time in, state and commands out.
//!
//! It never holds tokens, only facts about them (expiry, who, which MFA), so
//! it can be logged, shown and put in diagnostics freely.
//!
//! # Call contract
//!
//! The same shape as the [`Supervisor`](crate::supervisor::Supervisor)'s:
//! the driver calls [`Session::handle`]`(now, event)` for every event, and
//! `handle(now, Event::Tick)` when [`Session::next_deadline`] is reached;
//! [`Session::state`]`(now)` answers between events. `now` is wall-clock
//! time read by the driver (the supervisor's [`Time`]), never by the machine,
//! because what it is compared with is wall-clock too: the IdP's `exp` and
//! `auth_time`. The facts it keeps ([`SessionInfo`], [`SessionState`]) stay
//! Unix seconds (`i64`): they are what the keyring stores and the CLI shows.
//!
//! Who calls it today: [`Identity`](super::Identity) builds a machine from
//! the stored facts for each question (`whoami`, `state`, `access_token`)
//! and feeds `SignedIn` at the current time, so nothing sleeps on
//! `next_deadline` yet; the running agent re-reads `Identity::state` every
//! few seconds, and the supervisor carries the session's `until` as a
//! deadline of its own (its contract says when that fires). A driver that
//! keeps one machine alive calls `handle(now, Event::Tick)` at
//! `next_deadline()`, which is always later than the latest `now`.
//!
//! Wall-clock jumps:
//! - **Forward.** Whatever the new `now` has passed takes effect in that
//!   call: a token past `exp`, or a last MFA older than the maximum, makes
//!   the state `NeedsReauth` at once (never `Valid`), and the `Tick` returns
//!   `Refresh` (token expired, refresh token held) or `PromptLogin` (MFA too
//!   old, or nothing to refresh with). The supervisor, fed that state, closes
//!   the tunnels: the session fails closed.
//! - **Backward.** Deadlines are absolute, so they arrive later by the size
//!   of the jump and the session looks valid that much longer. A machine
//!   never undoes what it concluded: once it asked for a new sign-in (MFA
//!   too old, expired without a refresh token, refresh rejected, step-up)
//!   it stays `NeedsReauth` until `SignedIn`, whatever `now` says next. What
//!   bounds the rest: the broker checks the access token's `exp` against its
//!   own clock on every call, and the IdP judges the refresh token by its
//!   own, so a clock set back on this device keeps nothing usable longer
//!   than they allow (a machine rebuilt from the stored facts, as
//!   `Identity` does, only trusts the token as long as the broker does).

use serde::{Deserialize, Serialize};

pub use crate::supervisor::Time;

/// Facts about a signed-in session (no secrets).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// The issuer signed in at.
    pub issuer: String,
    /// The user's `sub`.
    pub subject: String,
    /// What to show for the user (email, login name, ...).
    pub user: String,
    /// The second factor used, e.g. "amr otp".
    pub mfa_method: String,
    /// When the user last authenticated (Unix seconds).
    pub auth_time: Option<i64>,
    /// When the access token expires (Unix seconds).
    pub expires_at: i64,
    /// Whether a refresh token is held.
    pub can_refresh: bool,
}

/// Why the user must sign in again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ReauthReason {
    /// The last MFA is older than the configured maximum.
    #[error("your last multi-factor sign-in is older than {max_seconds} s; sign in again")]
    MfaTooOld {
        /// The limit.
        max_seconds: i64,
    },
    /// The access token expired and cannot be refreshed.
    #[error("the session expired; sign in again")]
    Expired,
    /// The IdP refused the refresh token (revoked, rotated elsewhere, expired).
    #[error("the identity provider ended the session ({message}); sign in again")]
    RefreshRejected {
        /// The IdP's words.
        message: String,
    },
    /// The access broker refused the sign-in itself: an administrator
    /// revoked the user's sessions. Refreshing keeps the same sign-in, so
    /// only a new one can help.
    #[error("an administrator ended your session ({message}); sign in again")]
    Revoked {
        /// The broker's words.
        message: String,
    },
    /// A resource demanded stronger or fresher authentication (RFC 9470).
    #[error("an application requires a stronger or more recent sign-in; sign in again")]
    StepUp {
        /// Requested `acr_values`.
        acr_values: Vec<String>,
        /// Requested `max_age`.
        max_age: Option<u64>,
    },
}

/// What the supervisor sees.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum SessionState {
    /// No session.
    SignedOut,
    /// Valid until `until` (Unix seconds), possibly extended by refresh.
    Valid {
        /// The access token's expiry or, when a maximum MFA age is set, the
        /// second the last MFA becomes too old, whichever comes first.
        until: i64,
        /// Who.
        user: String,
    },
    /// Tokens held but unusable until the user signs in again.
    NeedsReauth {
        /// Why.
        reason: ReauthReason,
    },
}

/// Inputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A login completed and its tokens are stored.
    SignedIn(SessionInfo),
    /// A refresh completed.
    Refreshed(SessionInfo),
    /// A refresh failed; `permanent` when the IdP rejected the grant.
    RefreshFailed {
        /// `invalid_grant` and the like, as opposed to network trouble.
        permanent: bool,
        /// What happened.
        message: String,
    },
    /// The broker answered with an RFC 9470 challenge.
    StepUpRequired {
        /// Requested `acr_values`.
        acr_values: Vec<String>,
        /// Requested `max_age`.
        max_age: Option<u64>,
    },
    /// The user logged out.
    SignedOut,
    /// Time passed.
    Tick,
}

/// Outputs for the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Use the refresh token now.
    Refresh,
    /// Delete stored tokens.
    DeleteTokens,
    /// Ask the user to sign in (browser login), with these parameters.
    PromptLogin(ReauthReason),
}

/// Seconds to wait after a transient refresh failure.
pub const RETRY_AFTER: i64 = 30;

/// The state machine.
#[derive(Debug, Clone)]
pub struct Session {
    info: Option<SessionInfo>,
    reauth: Option<ReauthReason>,
    refreshing: bool,
    retry_at: Option<i64>,
    /// Refresh this many seconds before expiry.
    refresh_margin: i64,
    /// Oldest acceptable auth_time, seconds.
    max_auth_age: Option<i64>,
    /// The `now` of the latest event (Unix seconds): deadlines at or before
    /// it were acted upon or wait on something else, so
    /// [`Session::next_deadline`] does not report them again (a driver would
    /// spin on them).
    last_now: Option<i64>,
}

impl Session {
    /// A signed-out session with the given policy.
    pub fn new(refresh_margin: i64, max_auth_age: Option<i64>) -> Self {
        Self {
            info: None,
            reauth: None,
            refreshing: false,
            retry_at: None,
            refresh_margin,
            max_auth_age,
            last_now: None,
        }
    }

    /// The facts of the current session, if any.
    pub fn info(&self) -> Option<&SessionInfo> {
        self.info.as_ref()
    }

    /// The state at `now` (wall clock; see the module's call contract).
    pub fn state(&self, now: Time) -> SessionState {
        let now = now.unix_timestamp();
        let Some(info) = &self.info else {
            return SessionState::SignedOut;
        };
        if let Some(reason) = &self.reauth {
            return SessionState::NeedsReauth {
                reason: reason.clone(),
            };
        }
        if let Some(reason) = self.auth_too_old(info, now) {
            return SessionState::NeedsReauth { reason };
        }
        if now >= info.expires_at {
            // Expired but refreshable: not valid for gating until refreshed.
            return SessionState::NeedsReauth {
                reason: ReauthReason::Expired,
            };
        }
        SessionState::Valid {
            until: self.valid_until(info),
            user: info.user.clone(),
        }
    }

    /// The first second at which this session stops being valid without
    /// news: the access token's expiry, or the moment the last MFA becomes
    /// too old when a maximum is set, whichever comes first. Why both: the
    /// supervisor closes tunnels exactly at `until`; reporting only the token
    /// expiry would leave them open past the MFA limit until someone polled.
    fn valid_until(&self, info: &SessionInfo) -> i64 {
        match (self.max_auth_age, info.auth_time) {
            (Some(max), Some(at)) => info
                .expires_at
                .min(at.saturating_add(max).saturating_add(1)),
            _ => info.expires_at,
        }
    }

    /// When the driver must call `handle(now, Event::Tick)` next, if ever:
    /// the session lapsing (token expiry or MFA age), or the refresh (or its
    /// retry) falling due. Always later than the `now` of the latest event;
    /// `None` when signed out or waiting for a new sign-in.
    pub fn next_deadline(&self) -> Option<Time> {
        let info = self.info.as_ref()?;
        if self.reauth.is_some() {
            return None;
        }
        let mut deadlines = vec![self.valid_until(info)];
        if info.can_refresh && !self.refreshing {
            deadlines.push(
                self.retry_at
                    .unwrap_or(info.expires_at.saturating_sub(self.refresh_margin)),
            );
        }
        deadlines
            .into_iter()
            .filter(|d| self.last_now.is_none_or(|last| *d > last))
            .min()
            .map(time_of)
    }

    fn auth_too_old(&self, info: &SessionInfo, now: i64) -> Option<ReauthReason> {
        let max = self.max_auth_age?;
        match info.auth_time {
            // Saturating: auth_time is the IdP's number, any i64.
            Some(at) if now.saturating_sub(at) <= max => None,
            _ => Some(ReauthReason::MfaTooOld { max_seconds: max }),
        }
    }

    /// Feeds an event at `now` (wall clock; see the module's call contract)
    /// and returns what to do.
    pub fn handle(&mut self, now: Time, event: Event) -> Vec<Command> {
        let now = now.unix_timestamp();
        self.last_now = Some(now);
        match event {
            Event::SignedIn(info) => {
                self.info = Some(info);
                self.reauth = None;
                self.refreshing = false;
                self.retry_at = None;
                self.tick(now)
            }
            Event::Refreshed(info) => {
                self.info = Some(info);
                self.refreshing = false;
                self.retry_at = None;
                self.tick(now)
            }
            Event::RefreshFailed { permanent, message } => {
                self.refreshing = false;
                if permanent {
                    let reason = ReauthReason::RefreshRejected { message };
                    self.reauth = Some(reason.clone());
                    vec![Command::DeleteTokens, Command::PromptLogin(reason)]
                } else {
                    self.retry_at = Some(now + RETRY_AFTER);
                    self.tick(now)
                }
            }
            Event::StepUpRequired {
                acr_values,
                max_age,
            } => {
                if self.info.is_none() {
                    return Vec::new();
                }
                let reason = ReauthReason::StepUp {
                    acr_values,
                    max_age,
                };
                self.reauth = Some(reason.clone());
                vec![Command::PromptLogin(reason)]
            }
            Event::SignedOut => {
                let had = self.info.take().is_some();
                self.reauth = None;
                self.refreshing = false;
                self.retry_at = None;
                if had {
                    vec![Command::DeleteTokens]
                } else {
                    Vec::new()
                }
            }
            Event::Tick => self.tick(now),
        }
    }

    fn tick(&mut self, now: i64) -> Vec<Command> {
        let Some(info) = &self.info else {
            return Vec::new();
        };
        if self.reauth.is_some() {
            return Vec::new();
        }
        if let Some(reason) = self.auth_too_old(info, now) {
            self.reauth = Some(reason.clone());
            return vec![Command::PromptLogin(reason)];
        }
        let due = now >= info.expires_at - self.refresh_margin;
        let retry_ok = self.retry_at.is_none_or(|at| now >= at);
        if due && info.can_refresh && !self.refreshing && retry_ok {
            self.refreshing = true;
            return vec![Command::Refresh];
        }
        if now >= info.expires_at && !info.can_refresh {
            self.reauth = Some(ReauthReason::Expired);
            return vec![Command::PromptLogin(ReauthReason::Expired)];
        }
        Vec::new()
    }
}

/// Unix seconds as a [`Time`]; seconds beyond what `Time` can hold (an IdP
/// may say anything in `exp`) become its first or last instant, which keeps
/// the order of deadlines.
fn time_of(unix: i64) -> Time {
    Time::from_unix_timestamp(unix).unwrap_or(if unix < 0 {
        time::PrimitiveDateTime::MIN.assume_utc()
    } else {
        time::PrimitiveDateTime::MAX.assume_utc()
    })
}

/// An RFC 9470 step-up challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepUpChallenge {
    /// Requested `acr_values` (space-separated in the header).
    pub acr_values: Vec<String>,
    /// Requested `max_age`, seconds.
    pub max_age: Option<u64>,
}

/// Parses a `WWW-Authenticate` header value; `Some` only for an
/// `insufficient_user_authentication` challenge in the Bearer scheme, or
/// the DPoP scheme a DPoP-bound call is answered in (RFC 9449 §7.1).
pub fn parse_step_up(header: &str) -> Option<StepUpChallenge> {
    let rest = header.trim_start();
    let (scheme, params) = rest.split_once(' ').unwrap_or((rest, ""));
    if !scheme.eq_ignore_ascii_case("bearer") && !scheme.eq_ignore_ascii_case("dpop") {
        return None;
    }
    let mut error = None;
    let mut acr_values = Vec::new();
    let mut max_age = None;
    let mut chars = params.chars().peekable();
    loop {
        while matches!(chars.peek(), Some(c) if c.is_whitespace() || *c == ',') {
            chars.next();
        }
        let key: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=' && *c != ','))
            .collect::<String>()
            .trim()
            .to_ascii_lowercase();
        if key.is_empty() {
            break;
        }
        if chars.next_if_eq(&'=').is_none() {
            continue;
        }
        let value: String = if chars.next_if_eq(&'"').is_some() {
            let mut value = String::new();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
            value
        } else {
            std::iter::from_fn(|| chars.next_if(|c| *c != ','))
                .collect::<String>()
                .trim()
                .to_owned()
        };
        match key.as_str() {
            "error" => error = Some(value),
            "acr_values" => acr_values = value.split_whitespace().map(str::to_owned).collect(),
            "max_age" => max_age = value.parse().ok(),
            _ => {}
        }
    }
    (error.as_deref() == Some("insufficient_user_authentication")).then_some(StepUpChallenge {
        acr_values,
        max_age,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unix second `unix` as the machine's time.
    fn at(unix: i64) -> Time {
        Time::from_unix_timestamp(unix).unwrap()
    }

    fn info(expires_at: i64, auth_time: i64, can_refresh: bool) -> SessionInfo {
        SessionInfo {
            issuer: "https://idp".into(),
            subject: "alice".into(),
            user: "alice@example.com".into(),
            mfa_method: "amr otp".into(),
            auth_time: Some(auth_time),
            expires_at,
            can_refresh,
        }
    }

    #[test]
    fn signed_out_by_default() {
        let s = Session::new(60, None);
        assert_eq!(s.state(at(0)), SessionState::SignedOut);
        assert_eq!(s.next_deadline(), None);
    }

    #[test]
    fn refreshes_before_expiry_once() {
        let mut s = Session::new(60, None);
        assert!(
            s.handle(at(0), Event::SignedIn(info(1000, 0, true)))
                .is_empty()
        );
        assert_eq!(
            s.state(at(10)),
            SessionState::Valid {
                until: 1000,
                user: "alice@example.com".into()
            }
        );
        assert_eq!(s.next_deadline(), Some(at(940)));
        assert!(s.handle(at(939), Event::Tick).is_empty());
        assert_eq!(s.handle(at(940), Event::Tick), vec![Command::Refresh]);
        assert!(
            s.handle(at(941), Event::Tick).is_empty(),
            "no second refresh in flight"
        );
        assert!(
            s.handle(at(950), Event::Refreshed(info(2000, 0, true)))
                .is_empty()
        );
        assert_eq!(
            s.state(at(950)),
            SessionState::Valid {
                until: 2000,
                user: "alice@example.com".into()
            }
        );
    }

    #[test]
    fn transient_refresh_failure_retries_later() {
        let mut s = Session::new(60, None);
        s.handle(at(0), Event::SignedIn(info(1000, 0, true)));
        assert_eq!(s.handle(at(950), Event::Tick), vec![Command::Refresh]);
        let cmds = s.handle(
            at(951),
            Event::RefreshFailed {
                permanent: false,
                message: "down".into(),
            },
        );
        assert!(cmds.is_empty());
        assert_eq!(s.next_deadline(), Some(at(951 + RETRY_AFTER)));
        assert!(s.handle(at(960), Event::Tick).is_empty());
        assert_eq!(
            s.handle(at(951 + RETRY_AFTER), Event::Tick),
            vec![Command::Refresh]
        );
        assert!(matches!(
            s.state(at(1000)),
            SessionState::NeedsReauth {
                reason: ReauthReason::Expired
            }
        ));
    }

    #[test]
    fn permanent_refresh_failure_needs_login() {
        let mut s = Session::new(60, None);
        s.handle(at(0), Event::SignedIn(info(1000, 0, true)));
        s.handle(at(950), Event::Tick);
        let cmds = s.handle(
            at(951),
            Event::RefreshFailed {
                permanent: true,
                message: "invalid_grant".into(),
            },
        );
        assert_eq!(cmds[0], Command::DeleteTokens);
        assert!(matches!(
            s.state(at(951)),
            SessionState::NeedsReauth {
                reason: ReauthReason::RefreshRejected { .. }
            }
        ));
    }

    #[test]
    fn expiry_without_refresh_token() {
        let mut s = Session::new(60, None);
        s.handle(at(0), Event::SignedIn(info(1000, 0, false)));
        assert!(s.handle(at(999), Event::Tick).is_empty());
        assert_eq!(
            s.handle(at(1000), Event::Tick),
            vec![Command::PromptLogin(ReauthReason::Expired)]
        );
    }

    #[test]
    fn stale_mfa_forces_login_even_with_refresh() {
        let mut s = Session::new(60, Some(3600));
        s.handle(at(0), Event::SignedIn(info(100_000, 0, true)));
        assert_eq!(s.next_deadline(), Some(at(3601)));
        assert!(s.handle(at(3600), Event::Tick).is_empty());
        assert_eq!(
            s.handle(at(3601), Event::Tick),
            vec![Command::PromptLogin(ReauthReason::MfaTooOld {
                max_seconds: 3600
            })]
        );
        assert!(matches!(
            s.state(at(3601)),
            SessionState::NeedsReauth { .. }
        ));
        // A fresh login clears it.
        s.handle(at(3700), Event::SignedIn(info(100_000, 3700, true)));
        assert!(matches!(s.state(at(3700)), SessionState::Valid { .. }));
    }

    /// An `auth_time` at the far end of i64 (the IdP's number) is too old,
    /// not an overflow.
    #[test]
    fn auth_time_at_i64_min_is_too_old_not_an_overflow() {
        let mut s = Session::new(60, Some(3600));
        let cmds = s.handle(at(10), Event::SignedIn(info(100_000, i64::MIN, true)));
        assert_eq!(
            cmds,
            vec![Command::PromptLogin(ReauthReason::MfaTooOld {
                max_seconds: 3600
            })]
        );
    }

    #[test]
    fn valid_until_is_the_earlier_of_token_expiry_and_mfa_age() {
        let user = || "alice@example.com".to_string();
        // MFA limit first: the session ends when the MFA gets too old, even
        // though the token (and a refresh) would last longer.
        let mut s = Session::new(60, Some(3600));
        s.handle(at(10), Event::SignedIn(info(100_000, 10, true)));
        assert_eq!(
            s.state(at(20)),
            SessionState::Valid {
                until: 3611,
                user: user()
            }
        );
        assert!(matches!(
            s.state(at(3611)),
            SessionState::NeedsReauth { .. }
        ));
        // Token expiry first.
        let mut s = Session::new(60, Some(3600));
        s.handle(at(10), Event::SignedIn(info(500, 10, true)));
        assert_eq!(
            s.state(at(20)),
            SessionState::Valid {
                until: 500,
                user: user()
            }
        );
        // No limit configured, or no auth_time: the token expiry.
        let mut s = Session::new(60, None);
        s.handle(at(10), Event::SignedIn(info(100_000, 10, true)));
        assert_eq!(
            s.state(at(20)),
            SessionState::Valid {
                until: 100_000,
                user: user()
            }
        );
    }

    #[test]
    fn step_up_and_logout() {
        let mut s = Session::new(60, None);
        assert!(
            s.handle(
                at(0),
                Event::StepUpRequired {
                    acr_values: vec![],
                    max_age: None
                },
            )
            .is_empty()
        );
        s.handle(at(0), Event::SignedIn(info(1000, 0, true)));
        let cmds = s.handle(
            at(5),
            Event::StepUpRequired {
                acr_values: vec!["urn:mfa".into()],
                max_age: Some(0),
            },
        );
        assert!(
            matches!(&cmds[0], Command::PromptLogin(ReauthReason::StepUp { acr_values, max_age: Some(0) }) if acr_values == &["urn:mfa"])
        );
        assert_eq!(
            s.handle(at(6), Event::SignedOut),
            vec![Command::DeleteTokens]
        );
        assert_eq!(s.state(at(6)), SessionState::SignedOut);
    }

    #[test]
    fn a_forward_jump_ends_the_session_in_that_call() {
        // Token valid to 1000, MFA good for an hour after 0: the clock jumps
        // from 10 to 10 000, past both.
        let mut s = Session::new(60, Some(3600));
        s.handle(at(10), Event::SignedIn(info(1000, 0, true)));
        assert!(matches!(s.state(at(10)), SessionState::Valid { .. }));
        assert_eq!(
            s.handle(at(10_000), Event::Tick),
            vec![Command::PromptLogin(ReauthReason::MfaTooOld {
                max_seconds: 3600
            })]
        );
        assert!(matches!(
            s.state(at(10_000)),
            SessionState::NeedsReauth { .. }
        ));
        // Without an MFA limit: refreshed at once, and not valid meanwhile.
        let mut s = Session::new(60, None);
        s.handle(at(10), Event::SignedIn(info(1000, 0, true)));
        assert_eq!(s.handle(at(10_000), Event::Tick), vec![Command::Refresh]);
        assert_eq!(
            s.state(at(10_000)),
            SessionState::NeedsReauth {
                reason: ReauthReason::Expired
            }
        );
        // Nothing to refresh with: a new sign-in.
        let mut s = Session::new(60, None);
        s.handle(at(10), Event::SignedIn(info(1000, 0, false)));
        assert_eq!(
            s.handle(at(10_000), Event::Tick),
            vec![Command::PromptLogin(ReauthReason::Expired)]
        );
        assert_eq!(s.next_deadline(), None);
    }

    #[test]
    fn a_backward_jump_delays_deadlines_but_undoes_nothing() {
        // Deadlines are absolute: a jump back leaves them where they were
        // (they arrive later by the jump), and nothing is due meanwhile.
        let mut s = Session::new(60, None);
        s.handle(at(100), Event::SignedIn(info(1000, 0, true)));
        assert_eq!(s.next_deadline(), Some(at(940)));
        assert!(s.handle(at(-5000), Event::Tick).is_empty());
        assert_eq!(s.next_deadline(), Some(at(940)));
        // A sign-in the machine asked for stays asked for: the clock going
        // back to before the MFA limit does not make the session valid.
        let mut s = Session::new(60, Some(3600));
        s.handle(at(10), Event::SignedIn(info(100_000, 0, true)));
        assert!(!s.handle(at(3601), Event::Tick).is_empty());
        assert!(s.handle(at(100), Event::Tick).is_empty(), "no refresh");
        assert!(matches!(
            s.state(at(100)),
            SessionState::NeedsReauth {
                reason: ReauthReason::MfaTooOld { .. }
            }
        ));
        assert_eq!(s.next_deadline(), None);
    }

    #[test]
    fn deadlines_already_passed_are_not_reported_again() {
        // In the refresh window without a refresh token nothing can be
        // done before expiry: the next deadline is the expiry, not the
        // (past) refresh point a driver would spin on.
        let mut s = Session::new(60, None);
        s.handle(at(950), Event::SignedIn(info(1000, 0, false)));
        assert_eq!(s.next_deadline(), Some(at(1000)));
        // A refresh in flight: only the expiry is left to wake for.
        let mut s = Session::new(60, None);
        s.handle(at(0), Event::SignedIn(info(1000, 0, true)));
        assert_eq!(s.handle(at(940), Event::Tick), vec![Command::Refresh]);
        assert_eq!(s.next_deadline(), Some(at(1000)));
        // Expired while a retry waits: the expiry has passed, the retry is next.
        s.handle(
            at(995),
            Event::RefreshFailed {
                permanent: false,
                message: "down".into(),
            },
        );
        assert!(s.handle(at(1000), Event::Tick).is_empty());
        assert_eq!(s.next_deadline(), Some(at(995 + RETRY_AFTER)));
    }

    #[test]
    fn step_up_header_parsing() {
        let c = parse_step_up(r#"Bearer error="insufficient_user_authentication", error_description="A different authentication level is required", acr_values="urn:a urn:b", max_age=5"#).unwrap();
        assert_eq!(c.acr_values, vec!["urn:a", "urn:b"]);
        assert_eq!(c.max_age, Some(5));
        let c = parse_step_up(r#"Bearer error="insufficient_user_authentication", max_age="0""#)
            .unwrap();
        assert_eq!(c.max_age, Some(0));
        let c =
            parse_step_up(r#"DPoP error="insufficient_user_authentication", acr_values="urn:a""#)
                .unwrap();
        assert_eq!(c.acr_values, vec!["urn:a".to_owned()]);
        assert!(parse_step_up(r#"Bearer error="invalid_token""#).is_none());
        assert!(parse_step_up(r#"Basic realm="x""#).is_none());
        assert!(parse_step_up("").is_none());
    }

    #[test]
    fn state_serializes_for_the_supervisor() {
        let json = serde_json::to_string(&SessionState::NeedsReauth {
            reason: ReauthReason::Expired,
        })
        .unwrap();
        assert_eq!(
            json,
            r#"{"state":"needs_reauth","reason":{"kind":"expired"}}"#
        );
    }
}
