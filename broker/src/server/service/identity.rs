//! Who is calling: the user behind an access token (issuer signature,
//! audience, expiry on the broker's clock, not revoked since issue). Every
//! user call starts here, so a refusal is audited once, in one place.

use super::{ApiError, Broker};
use crate::api::ProblemType;
use crate::server::token::{self, AccessClaims};

impl Broker {
    /// Validates the `Authorization` header's Bearer access token.
    pub async fn authenticate(
        &self,
        authorization: Option<&str>,
    ) -> Result<AccessClaims, ApiError> {
        let result = self.authenticate_inner(authorization).await;
        if let Err(err) = &result {
            self.deny("authenticate", None, None, err);
        }
        result
    }

    async fn authenticate_inner(
        &self,
        authorization: Option<&str>,
    ) -> Result<AccessClaims, ApiError> {
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
        let claims = self
            .jwks
            .validate(token, &self.rules, self.now())
            .await
            .map_err(|e: token::TokenError| ApiError::new(e.problem(), e.to_string()))?;
        if let Some(revoked_at) = self.store.user_revoked_at(&claims.sub)?
            && claims.iat <= revoked_at
        {
            return Err(ApiError::new(
                ProblemType::SessionRevoked,
                "this session was revoked by an administrator; sign in again",
            ));
        }
        Ok(claims)
    }
}
