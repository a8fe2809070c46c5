//! Who is calling, and from which device: every user call after sign-in
//! carries `Authorization: DPoP <access token>` and a `DPoP` proof signed
//! by the device key (broker/API.md, "Authentication"). The token says who;
//! the proof says the call comes from a device enrolled for that user, now,
//! for this method and URL, with this token. A stolen token alone opens
//! nothing.

use std::sync::PoisonError;

use posture::dpop::{DPOP_SCHEME, DpopClaims};
use url::Url;

use super::{ApiError, Broker};
use crate::api::ProblemType;
use crate::server::dpop::{self, Call, DpopError};
use crate::server::token::AccessClaims;

/// The parts of a request a DPoP check reads.
#[derive(Debug, Clone, Copy)]
pub struct DpopRequest<'a> {
    /// The `Authorization` header, if exactly one was sent.
    pub authorization: Option<&'a str>,
    /// The `DPoP` header: `None` when absent, `Err` when sent twice.
    pub proof: Result<Option<&'a str>, ()>,
    /// HTTP method.
    pub method: &'a str,
    /// Request path (no query).
    pub path: &'a str,
}

/// A caller whose proof was made by one of its enrolled devices.
#[derive(Debug, Clone)]
pub struct DeviceCaller {
    /// The token's claims.
    pub user: AccessClaims,
    /// The device whose key signed the proof.
    pub device_id: String,
    /// The proof's claims (e.g. `wg_pub` for a grant).
    pub proof: DpopClaims,
    /// The caller's address (behind trusted proxies), when the transport
    /// says: the access policy's `input.context.source_ip`.
    pub source: Option<std::net::IpAddr>,
}

/// A caller enrolling a key, with the proof that it holds that key.
#[derive(Debug, Clone)]
pub struct Enroller {
    /// The token's claims.
    pub user: AccessClaims,
    /// The thumbprint of the key that signed the proof.
    pub key_thumbprint: String,
}

fn refused(e: &DpopError) -> ApiError {
    ApiError::new(e.problem(), e.to_string())
}

impl Broker {
    /// The URL the broker is reached at for `path`: the configured
    /// `public_url`, else its own listen address and scheme.
    fn call_url(&self, path: &str) -> Result<Url, ApiError> {
        let origin = self
            .origin
            .get()
            .ok_or_else(|| ApiError::new(ProblemType::Internal, "the broker is not listening"))?;
        origin
            .join(path)
            .map_err(|e| ApiError::new(ProblemType::MalformedRequest, format!("path: {e}")))
    }

    /// Validates the access token and the DPoP proof of a device call: the
    /// proof's key must be a device enrolled for the token's user.
    pub async fn authenticate_device(
        &self,
        req: DpopRequest<'_>,
    ) -> Result<DeviceCaller, ApiError> {
        let (user, token) = self.dpop_token(req.authorization).await?;
        let result = async {
            let proof = dpop_header(req.proof)?;
            let parsed = dpop::parse(proof).map_err(|e| refused(&e))?;
            let device = self.store.device(&parsed.thumbprint)?.ok_or_else(|| {
                refused(&DpopError::Invalid(
                    "the DPoP proof's key is not an enrolled device; enrol it first".into(),
                ))
            })?;
            if device.key.user != user.sub {
                return Err(refused(&DpopError::Invalid(
                    "the DPoP proof's key is enrolled for another user".into(),
                )));
            }
            let url = self.call_url(req.path)?;
            let call = Call {
                method: req.method,
                url: &url,
                access_token: token,
                now: self.now(),
            };
            let claims = dpop::verify(&parsed, &device.key.sec1, &call).map_err(|e| refused(&e))?;
            self.remember_jti(&device.key.device_id, &claims)?;
            Ok(DeviceCaller {
                user: user.clone(),
                device_id: device.key.device_id,
                proof: claims,
                source: None,
            })
        }
        .await;
        if let Err(err) = &result {
            self.deny("authenticate", Some(&user.sub), None, err);
        }
        result
    }

    /// Validates the access token and the DPoP proof of an enrolment: the
    /// proof is checked with its own key, which the handler then requires
    /// to be the key being enrolled (proof of possession).
    pub async fn authenticate_enrolment(&self, req: DpopRequest<'_>) -> Result<Enroller, ApiError> {
        let (user, token) = self.dpop_token(req.authorization).await?;
        let result = (|| {
            let proof = dpop_header(req.proof)?;
            let parsed = dpop::parse(proof).map_err(|e| refused(&e))?;
            let url = self.call_url(req.path)?;
            let call = Call {
                method: req.method,
                url: &url,
                access_token: token,
                now: self.now(),
            };
            let claims = dpop::verify(&parsed, &parsed.sec1, &call).map_err(|e| refused(&e))?;
            self.remember_jti(&parsed.thumbprint, &claims)?;
            Ok(Enroller {
                user: user.clone(),
                key_thumbprint: parsed.thumbprint.clone(),
            })
        })();
        if let Err(err) = &result {
            self.deny("authenticate", Some(&user.sub), None, err);
        }
        result
    }

    /// The access token of a DPoP call, validated. `Bearer` is refused
    /// after the token itself was judged (so an expired token still says
    /// so): every user call is DPoP-bound.
    async fn dpop_token<'a>(
        &self,
        authorization: Option<&'a str>,
    ) -> Result<(AccessClaims, &'a str), ApiError> {
        let (scheme, token) = authorization
            .and_then(|h| h.split_once(' '))
            .map(|(s, t)| (s, t.trim()))
            .unwrap_or(("", ""));
        let dpop = scheme.eq_ignore_ascii_case(DPOP_SCHEME);
        if !dpop && !scheme.eq_ignore_ascii_case("Bearer") {
            // No usable scheme: the token-missing problem, as before.
            return self.authenticate(authorization).await.map(|c| (c, ""));
        }
        let bearer = format!("Bearer {token}");
        let user = self.authenticate(Some(&bearer)).await?;
        if !dpop {
            let err = refused(&DpopError::Invalid(
                "user calls are DPoP-bound: send Authorization: DPoP <access token> and a DPoP proof"
                    .into(),
            ));
            self.deny("authenticate", Some(&user.sub), None, &err);
            return Err(err);
        }
        Ok((user, token))
    }

    fn remember_jti(&self, device: &str, claims: &DpopClaims) -> Result<(), ApiError> {
        let now = self.now();
        self.jti_cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .check_and_insert(device, claims, now)
            .map_err(|e| refused(&e))
    }

    /// Drops replay-cache entries whose window has closed (the 1 s sweep).
    pub fn sweep_dpop(&self) {
        let now = self.now();
        self.jti_cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .purge(now);
    }
}

fn dpop_header(proof: Result<Option<&str>, ()>) -> Result<&str, ApiError> {
    match proof {
        Ok(Some(p)) if !p.trim().is_empty() => Ok(p.trim()),
        Ok(_) => Err(refused(&DpopError::Invalid(
            "this call needs a DPoP proof signed by the device key (header DPoP)".into(),
        ))),
        Err(()) => Err(refused(&DpopError::Invalid(
            "send exactly one DPoP header".into(),
        ))),
    }
}
