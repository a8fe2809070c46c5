//! The MFA decision: does a validated ID token show a second factor, and is
//! that authentication recent enough?
//!
//! Pure. Requesting `acr_values` is only a wish — an IdP may ignore it — so
//! the returned token is what counts (standards checklist: "always check the
//! returned token").

use super::validate::IdTokenClaims;

/// RFC 8176 `amr` values accepted as a second factor unless configured
/// otherwise.
pub const DEFAULT_MFA_AMR: &[&str] = &["mfa", "otp", "hwk", "swk", "sc", "fpt", "face"];

/// What counts as MFA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MfaPolicy {
    /// `amr` values that show a second factor.
    pub amr: Vec<String>,
    /// `acr` values that show a second factor (IdP-specific URIs).
    pub acr: Vec<String>,
    /// Oldest acceptable `auth_time`, seconds before now; `None`: no limit.
    pub max_auth_age: Option<i64>,
}

impl Default for MfaPolicy {
    fn default() -> Self {
        Self {
            amr: DEFAULT_MFA_AMR.iter().map(|s| (*s).to_owned()).collect(),
            acr: Vec::new(),
            max_auth_age: None,
        }
    }
}

/// Why a login does not meet the MFA policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MfaError {
    /// No second factor in `amr`/`acr`.
    #[error(
        "multi-factor authentication is required: the identity provider reported only {shown} for this sign-in. Sign in again and complete the second step (authenticator code, security key, ...); if you were not asked for one, ask IT to enable MFA for your account"
    )]
    MfaMissing {
        /// What the token showed, for the message.
        shown: String,
    },
    /// `auth_time` older than allowed.
    #[error(
        "your last multi-factor sign-in was {age_seconds} s ago, more than the allowed {max_seconds} s; sign in again with MFA"
    )]
    AuthTooOld {
        /// Age of the authentication.
        age_seconds: i64,
        /// The limit.
        max_seconds: i64,
    },
    /// `max_age` in force but no `auth_time` in the token.
    #[error(
        "the identity provider did not say when you signed in (no auth_time), so a recent MFA sign-in cannot be confirmed"
    )]
    AuthTimeMissing,
}

/// The second factor a login used, for `whoami`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MfaEvidence {
    /// e.g. "amr otp" or "acr urn:...".
    pub method: String,
}

/// Decides whether `claims` satisfy `policy` at `now` (Unix seconds).
pub fn check_mfa(
    claims: &IdTokenClaims,
    policy: &MfaPolicy,
    now: i64,
) -> Result<MfaEvidence, MfaError> {
    let amr = claims.amr.as_deref().unwrap_or_default();
    let by_amr = amr.iter().find(|value| policy.amr.contains(value));
    let by_acr = claims
        .acr
        .as_ref()
        .filter(|value| policy.acr.contains(value));
    let evidence = match (by_amr, by_acr) {
        (Some(value), _) => MfaEvidence {
            method: format!("amr {value}"),
        },
        (None, Some(value)) => MfaEvidence {
            method: format!("acr {value}"),
        },
        (None, None) => {
            let shown = match (amr.is_empty(), &claims.acr) {
                (true, None) => "no authentication methods (no amr, no acr)".to_owned(),
                (false, None) => format!("amr {amr:?}"),
                (true, Some(acr)) => format!("acr {acr:?}"),
                (false, Some(acr)) => format!("amr {amr:?}, acr {acr:?}"),
            };
            return Err(MfaError::MfaMissing { shown });
        }
    };
    check_auth_age(claims.auth_time, policy.max_auth_age, now)?;
    Ok(evidence)
}

/// Whether an authentication at `auth_time` is still recent enough.
pub fn check_auth_age(
    auth_time: Option<i64>,
    max_auth_age: Option<i64>,
    now: i64,
) -> Result<(), MfaError> {
    let Some(max) = max_auth_age else {
        return Ok(());
    };
    let Some(auth_time) = auth_time else {
        return Err(MfaError::AuthTimeMissing);
    };
    let age = now.saturating_sub(auth_time);
    if age > max {
        return Err(MfaError::AuthTooOld {
            age_seconds: age,
            max_seconds: max,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::validate::Audience;
    use super::*;

    fn claims(amr: Option<&[&str]>, acr: Option<&str>, auth_time: Option<i64>) -> IdTokenClaims {
        IdTokenClaims {
            iss: "i".into(),
            sub: "s".into(),
            aud: Audience::One("c".into()),
            exp: 0,
            iat: 0,
            auth_time,
            nonce: None,
            azp: None,
            at_hash: None,
            amr: amr.map(|a| a.iter().map(|s| (*s).to_owned()).collect()),
            acr: acr.map(str::to_owned),
            sid: None,
            name: None,
            email: None,
            preferred_username: None,
        }
    }

    #[test]
    fn second_factor_in_amr() {
        let ok = check_mfa(
            &claims(Some(&["pwd", "otp"]), None, Some(90)),
            &MfaPolicy::default(),
            100,
        );
        assert_eq!(ok.unwrap().method, "amr otp");
        for value in DEFAULT_MFA_AMR {
            assert!(
                check_mfa(
                    &claims(Some(&[value]), None, None),
                    &MfaPolicy::default(),
                    0
                )
                .is_ok()
            );
        }
    }

    #[test]
    fn password_only_refused_with_clear_message() {
        let err = check_mfa(
            &claims(Some(&["pwd"]), None, None),
            &MfaPolicy::default(),
            0,
        )
        .unwrap_err();
        assert!(matches!(err, MfaError::MfaMissing { .. }));
        assert!(
            err.to_string()
                .contains("multi-factor authentication is required")
        );
        let err = check_mfa(&claims(None, None, None), &MfaPolicy::default(), 0).unwrap_err();
        assert!(err.to_string().contains("no amr"), "{err}");
    }

    #[test]
    fn acr_accepted_when_configured() {
        let policy = MfaPolicy {
            acr: vec!["urn:mfa".into()],
            ..MfaPolicy::default()
        };
        assert_eq!(
            check_mfa(&claims(Some(&["pwd"]), Some("urn:mfa"), None), &policy, 0)
                .unwrap()
                .method,
            "acr urn:mfa"
        );
        assert!(
            check_mfa(
                &claims(Some(&["pwd"]), Some("urn:mfa"), None),
                &MfaPolicy::default(),
                0
            )
            .is_err()
        );
    }

    #[test]
    fn stale_auth_time() {
        let policy = MfaPolicy {
            max_auth_age: Some(3600),
            ..MfaPolicy::default()
        };
        let now = 10_000;
        assert!(
            check_mfa(
                &claims(Some(&["otp"]), None, Some(now - 3600)),
                &policy,
                now
            )
            .is_ok()
        );
        assert_eq!(
            check_mfa(
                &claims(Some(&["otp"]), None, Some(now - 3601)),
                &policy,
                now
            ),
            Err(MfaError::AuthTooOld {
                age_seconds: 3601,
                max_seconds: 3600
            })
        );
        assert_eq!(
            check_mfa(&claims(Some(&["otp"]), None, None), &policy, now),
            Err(MfaError::AuthTimeMissing)
        );
    }
}
