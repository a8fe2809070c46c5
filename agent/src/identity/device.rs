//! Device authorization grant polling, RFC 8628 §3.4–3.5, as a pure state
//! machine: the driver posts to the token endpoint when told and feeds the
//! outcome back; this decides how long to wait and when to give up.

use std::time::Duration;

/// Default polling interval when the IdP names none (RFC 8628 §3.2).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
/// What `slow_down` adds to the interval, from then on (§3.5).
pub const SLOW_DOWN_STEP: Duration = Duration::from_secs(5);

/// A device-flow failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    /// The user declined.
    #[error("the sign-in was declined on the verification page")]
    AccessDenied,
    /// `expires_in` passed (or the IdP said `expired_token`).
    #[error(
        "the device code expired before the sign-in was completed; run `sallyport login --no-browser` again"
    )]
    Expired,
    /// Some other OAuth error.
    #[error("the identity provider refused the device sign-in: {0}")]
    Provider(String),
}

/// One token-endpoint answer while polling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PollOutcome {
    /// `authorization_pending`.
    Pending,
    /// `slow_down`.
    SlowDown,
    /// `access_denied`.
    Denied,
    /// `expired_token`.
    ExpiredToken,
    /// Another error code.
    Error(String),
    /// Tokens arrived.
    Success,
}

/// What to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PollStep {
    /// Wait this long, then poll.
    WaitThenPoll(Duration),
    /// Done: use the tokens.
    Done,
    /// Stop with this error.
    Stop(DeviceError),
}

/// The polling state; time is seconds since the device code was issued.
#[derive(Debug, Clone)]
pub struct DevicePoller {
    interval: Duration,
    expires_in: Duration,
}

impl DevicePoller {
    /// From the device authorization response.
    pub fn new(expires_in: u64, interval: Option<u64>) -> Self {
        Self {
            interval: interval
                .filter(|i| *i > 0)
                .map(Duration::from_secs)
                .unwrap_or(DEFAULT_INTERVAL),
            expires_in: Duration::from_secs(expires_in),
        }
    }

    /// The current interval.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// The first step: wait one interval before the first poll.
    pub fn start(&self) -> PollStep {
        self.wait_or_expire(Duration::ZERO)
    }

    /// Feeds one poll's outcome at `elapsed` since issue.
    pub fn on_outcome(&mut self, outcome: PollOutcome, elapsed: Duration) -> PollStep {
        match outcome {
            PollOutcome::Success => PollStep::Done,
            PollOutcome::Pending => self.wait_or_expire(elapsed),
            PollOutcome::SlowDown => {
                self.interval += SLOW_DOWN_STEP;
                self.wait_or_expire(elapsed)
            }
            PollOutcome::Denied => PollStep::Stop(DeviceError::AccessDenied),
            PollOutcome::ExpiredToken => PollStep::Stop(DeviceError::Expired),
            PollOutcome::Error(code) => PollStep::Stop(DeviceError::Provider(code)),
        }
    }

    fn wait_or_expire(&self, elapsed: Duration) -> PollStep {
        if elapsed + self.interval > self.expires_in {
            PollStep::Stop(DeviceError::Expired)
        } else {
            PollStep::WaitThenPoll(self.interval)
        }
    }
}

/// Maps a token-endpoint error code to an outcome.
pub fn outcome_for_error(code: &str) -> PollOutcome {
    match code {
        "authorization_pending" => PollOutcome::Pending,
        "slow_down" => PollOutcome::SlowDown,
        "access_denied" => PollOutcome::Denied,
        "expired_token" => PollOutcome::ExpiredToken,
        other => PollOutcome::Error(other.chars().take(100).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn honours_interval_default_and_given() {
        assert_eq!(
            DevicePoller::new(600, None).start(),
            PollStep::WaitThenPoll(S(5))
        );
        assert_eq!(DevicePoller::new(600, Some(0)).interval(), S(5));
        assert_eq!(
            DevicePoller::new(600, Some(2)).start(),
            PollStep::WaitThenPoll(S(2))
        );
    }

    #[test]
    fn slow_down_adds_five_seconds_for_good() {
        let mut p = DevicePoller::new(600, Some(2));
        assert_eq!(
            p.on_outcome(PollOutcome::SlowDown, S(2)),
            PollStep::WaitThenPoll(S(7))
        );
        assert_eq!(
            p.on_outcome(PollOutcome::Pending, S(9)),
            PollStep::WaitThenPoll(S(7))
        );
        assert_eq!(
            p.on_outcome(PollOutcome::SlowDown, S(16)),
            PollStep::WaitThenPoll(S(12))
        );
    }

    #[test]
    fn stops_at_expires_in() {
        let mut p = DevicePoller::new(10, Some(4));
        assert_eq!(
            p.on_outcome(PollOutcome::Pending, S(4)),
            PollStep::WaitThenPoll(S(4))
        );
        assert_eq!(
            p.on_outcome(PollOutcome::Pending, S(8)),
            PollStep::Stop(DeviceError::Expired)
        );
        assert_eq!(
            DevicePoller::new(3, Some(5)).start(),
            PollStep::Stop(DeviceError::Expired)
        );
    }

    #[test]
    fn terminal_outcomes() {
        let mut p = DevicePoller::new(600, None);
        assert_eq!(p.on_outcome(PollOutcome::Success, S(5)), PollStep::Done);
        assert_eq!(
            p.on_outcome(PollOutcome::Denied, S(5)),
            PollStep::Stop(DeviceError::AccessDenied)
        );
        assert_eq!(
            p.on_outcome(PollOutcome::ExpiredToken, S(5)),
            PollStep::Stop(DeviceError::Expired)
        );
        assert_eq!(
            outcome_for_error("authorization_pending"),
            PollOutcome::Pending
        );
        assert_eq!(outcome_for_error("slow_down"), PollOutcome::SlowDown);
        assert_eq!(
            outcome_for_error("invalid_grant"),
            PollOutcome::Error("invalid_grant".into())
        );
    }
}
