//! How the caller signed in, decided by the broker (pure). The agent checks
//! MFA on its ID token too (`agent::identity::mfa`), but that check runs on
//! the user's machine: an altered agent, or an access token taken from one,
//! skips it. So the broker checks the access token's own `acr`, `amr` and
//! `auth_time` (RFC 9068 §2.2.1) on every call, and when they fall short it
//! answers with an RFC 9470 step-up challenge ([`AuthRequirement::challenge`])
//! instead of a bare refusal, so the agent knows how to sign in again.

use super::token::AccessClaims;

/// What every caller's sign-in must show (from `[oidc]`, see
/// [`super::config`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthRequirement {
    /// A second factor is required.
    pub require_mfa: bool,
    /// `acr` values that show one (any).
    pub acr: Vec<String>,
    /// `amr` values that show one (any).
    pub amr: Vec<String>,
    /// Oldest acceptable `auth_time`, seconds before now.
    pub max_age: Option<i64>,
}

/// Why a sign-in falls short. The messages go to the user (problem
/// `detail`) and the audit log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Shortfall {
    /// Neither `acr` nor `amr` shows a second factor.
    #[error(
        "multi-factor sign-in required: the access token shows {shown}; sign in again with a second factor"
    )]
    NoSecondFactor {
        /// What the token showed.
        shown: String,
    },
    /// `auth_time` is older than the limit.
    #[error("the sign-in was {age} s ago, more than the allowed {max} s; sign in again")]
    TooOld {
        /// Seconds since `auth_time`.
        age: i64,
        /// The limit.
        max: i64,
    },
    /// A limit is set but the token does not say when the user signed in.
    #[error(
        "the access token has no auth_time, so a recent sign-in cannot be confirmed; sign in again"
    )]
    AuthTimeMissing,
    /// `auth_time` lies beyond the allowed skew in the future.
    #[error("the access token's auth_time lies {0} s in the future")]
    AuthTimeInFuture(i64),
}

impl AuthRequirement {
    /// Whether `claims` meet the requirement at `now` (Unix seconds), with
    /// `skew` seconds of clock difference allowed on `auth_time`.
    pub fn check(&self, claims: &AccessClaims, now: i64, skew: i64) -> Result<(), Shortfall> {
        if self.require_mfa {
            let by_acr = claims
                .acr
                .as_ref()
                .is_some_and(|acr| self.acr.contains(acr));
            let by_amr = claims.amr.iter().any(|v| self.amr.contains(v));
            if !by_acr && !by_amr {
                let shown = match (&claims.acr, claims.amr.is_empty()) {
                    (None, true) => "no acr and no amr".to_owned(),
                    (acr, _) => format!(
                        "acr {} and amr [{}]",
                        acr.as_deref().unwrap_or("(none)"),
                        claims.amr.join(", ")
                    ),
                };
                return Err(Shortfall::NoSecondFactor { shown });
            }
        }
        if let Some(max) = self.max_age {
            let auth_time = claims.auth_time.ok_or(Shortfall::AuthTimeMissing)?;
            let age = now.saturating_sub(auth_time);
            if age < -skew {
                return Err(Shortfall::AuthTimeInFuture(-age));
            }
            if age > max {
                return Err(Shortfall::TooOld { age, max });
            }
        }
        Ok(())
    }

    /// Whether `claims` show a second factor by this requirement's `acr` /
    /// `amr` lists (whether or not MFA is required): the access policy's
    /// `input.sign_in.mfa`.
    pub fn check_factor(&self, claims: &AccessClaims) -> bool {
        claims
            .acr
            .as_ref()
            .is_some_and(|acr| self.acr.contains(acr))
            || claims.amr.iter().any(|v| self.amr.contains(v))
    }

    /// The last second (Unix) at which `claims` still meet the recency
    /// limit, if one is set: an open event stream ends after it.
    pub fn valid_until(&self, claims: &AccessClaims) -> Option<i64> {
        let max = self.max_age?;
        Some(claims.auth_time.unwrap_or(i64::MIN).saturating_add(max))
    }

    /// The RFC 9470 `WWW-Authenticate` value for a shortfall described by
    /// `description`: `acr_values` (space-separated) when acr values are
    /// configured, `max_age` when a limit is. Quotes, backslashes and
    /// non-printable characters in the description are replaced, so the
    /// value is always a valid header.
    pub fn challenge(&self, description: &str) -> String {
        let clean = |s: &str| -> String {
            s.chars()
                .map(|c| match c {
                    '"' => '\'',
                    '\\' => '/',
                    c if c == ' ' || c.is_ascii_graphic() => c,
                    _ => '?',
                })
                .collect()
        };
        let mut value = format!(
            r#"Bearer error="insufficient_user_authentication", error_description="{}""#,
            clean(description)
        );
        if self.require_mfa && !self.acr.is_empty() {
            value.push_str(&format!(r#", acr_values="{}""#, clean(&self.acr.join(" "))));
        }
        if let Some(max) = self.max_age {
            value.push_str(&format!(", max_age={max}"));
        }
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn claims(acr: Option<&str>, amr: &[&str], auth_time: Option<i64>) -> AccessClaims {
        AccessClaims {
            sub: "alice".into(),
            iat: NOW,
            exp: NOW + 300,
            auth_time,
            acr: acr.map(str::to_owned),
            amr: amr.iter().map(|s| (*s).to_owned()).collect(),
            email: None,
            groups: Vec::new(),
        }
    }

    fn req(max_age: Option<i64>) -> AuthRequirement {
        AuthRequirement {
            require_mfa: true,
            acr: vec!["urn:x:mfa".into()],
            amr: vec!["otp".into(), "hwk".into()],
            max_age,
        }
    }

    #[test]
    fn a_second_factor_by_acr_or_amr() {
        let r = req(None);
        assert!(
            r.check(&claims(None, &["pwd", "otp"], None), NOW, 60)
                .is_ok()
        );
        assert!(
            r.check(&claims(Some("urn:x:mfa"), &[], None), NOW, 60)
                .is_ok()
        );
        assert!(matches!(
            r.check(&claims(Some("urn:x:pwd"), &["pwd"], None), NOW, 60),
            Err(Shortfall::NoSecondFactor { .. })
        ));
        assert!(matches!(
            r.check(&claims(None, &[], None), NOW, 60),
            Err(Shortfall::NoSecondFactor { .. })
        ));
        let off = AuthRequirement {
            require_mfa: false,
            ..req(None)
        };
        assert!(off.check(&claims(None, &["pwd"], None), NOW, 60).is_ok());
    }

    #[test]
    fn recency() {
        let r = req(Some(3600));
        let at = |t| claims(None, &["otp"], t);
        assert!(r.check(&at(Some(NOW - 3600)), NOW, 60).is_ok());
        assert_eq!(
            r.check(&at(Some(NOW - 3601)), NOW, 60),
            Err(Shortfall::TooOld {
                age: 3601,
                max: 3600
            })
        );
        assert_eq!(r.check(&at(None), NOW, 60), Err(Shortfall::AuthTimeMissing));
        assert!(r.check(&at(Some(NOW + 30)), NOW, 60).is_ok(), "within skew");
        assert_eq!(
            r.check(&at(Some(NOW + 61)), NOW, 60),
            Err(Shortfall::AuthTimeInFuture(61))
        );
        assert_eq!(r.valid_until(&at(Some(NOW))), Some(NOW + 3600));
        assert_eq!(req(None).valid_until(&at(Some(NOW))), None);
        // Without a limit auth_time is not needed.
        assert!(req(None).check(&at(None), NOW, 60).is_ok());
    }

    #[test]
    fn rfc9470_challenge() {
        let c = req(Some(600)).challenge("too \"old\"\n");
        assert_eq!(
            c,
            r#"Bearer error="insufficient_user_authentication", error_description="too 'old'?", acr_values="urn:x:mfa", max_age=600"#
        );
        let amr_only = AuthRequirement {
            acr: vec![],
            ..req(None)
        };
        assert_eq!(
            amr_only.challenge("x"),
            r#"Bearer error="insufficient_user_authentication", error_description="x""#
        );
    }
}
