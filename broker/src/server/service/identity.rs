//! Who is calling: the user behind an access token (issuer signature,
//! audience, expiry on the broker's clock), whether that user's sign-in is
//! still honoured (no session revocation since it), and whether it shows
//! what `[oidc]` requires (MFA, recency; see [`crate::server::mfa`]). Every
//! user call starts here, so a refusal is audited once, in one place.
//!
//! A session revocation is measured against `auth_time`, the sign-in, not
//! `iat`: a refresh issues a new token (new `iat`) from the same sign-in,
//! and must not undo the revocation. Only a new sign-in does, unless the
//! revocation holds until an administrator clears it.

use super::{ApiError, Broker};
use crate::api::ProblemType;
use crate::server::token::{self, AccessClaims};

impl Broker {
    /// Validates the `Authorization` header's Bearer access token and the
    /// standing of its sign-in.
    pub async fn authenticate(
        &self,
        authorization: Option<&str>,
    ) -> Result<AccessClaims, ApiError> {
        let claims = match self.validate_bearer(authorization).await {
            Ok(claims) => claims,
            Err(err) => {
                self.deny("authenticate", None, None, &err);
                return Err(err);
            }
        };
        if let Err(err) = self.session_standing(&claims) {
            self.deny("authenticate", Some(&claims.sub), None, &err);
            return Err(err);
        }
        Ok(claims)
    }

    async fn validate_bearer(&self, authorization: Option<&str>) -> Result<AccessClaims, ApiError> {
        let token = authorization
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::new(
                    ProblemType::TokenMissing,
                    "send Authorization: Bearer <access token>",
                )
            })?;
        self.jwks
            .validate(token, &self.rules, self.now())
            .await
            .map_err(|e: token::TokenError| ApiError::new(e.problem(), e.to_string()))
    }

    /// Whether `claims`, already validated, are still honoured now: no
    /// session revocation covers their sign-in and the sign-in meets the
    /// MFA and recency requirements. Checked on every call and again while
    /// an event stream is open.
    pub(crate) fn session_standing(&self, claims: &AccessClaims) -> Result<(), ApiError> {
        if let Some(revocation) = self.store.user_revocation(&claims.sub)? {
            let refused = if revocation.until_cleared {
                Some("your access was revoked by an administrator until they clear it; contact IT")
            } else {
                match claims.auth_time {
                    None => Some(
                        "your sessions were revoked by an administrator and this token does not say when you signed in (no auth_time); sign in again",
                    ),
                    Some(at) if at <= revocation.revoked_at => Some(
                        "your sessions were revoked by an administrator after this sign-in; sign in again",
                    ),
                    Some(_) => None,
                }
            };
            if let Some(detail) = refused {
                return Err(ApiError::new(ProblemType::SessionRevoked, detail));
            }
        }
        self.settings
            .auth
            .check(claims, self.now(), self.settings.skew)
            .map_err(|e| ApiError::new(ProblemType::InsufficientUserAuthentication, e.to_string()))
    }

    /// The RFC 9470 `WWW-Authenticate` challenge sent with an
    /// `insufficient-user-authentication` refusal whose detail is `detail`.
    pub fn step_up_challenge(&self, detail: &str) -> String {
        self.settings.auth.challenge(detail)
    }
}
