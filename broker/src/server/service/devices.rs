//! Devices: enrolment of a device key for a user (`POST /v1/devices`) and
//! the device's event stream (`GET /v1/events`), the two calls that name a
//! device before it has any verdict.

use tokio::sync::broadcast;

use super::{ApiError, Broker, datetime};
use super::{DeviceCaller, Enroller};
use crate::api::{Device, EnrolRequest, ProblemType};
use crate::server::eat::EnrolledKey;
use crate::server::events::Routed;
use crate::server::store::Enrolment;
use crate::server::token::AccessClaims;

impl Broker {
    /// `POST /v1/devices`. Returns whether the device is new. The DPoP
    /// proof must be signed by the key being enrolled: whoever enrols a key
    /// holds it.
    pub fn enrol(&self, caller: &Enroller, req: &EnrolRequest) -> Result<(bool, Device), ApiError> {
        let user = &caller.user;
        let device_id = req.public_jwk.thumbprint();
        let result = (|| {
            if caller.key_thumbprint != device_id {
                return Err(ApiError::new(
                    ProblemType::InvalidDpopProof,
                    "the DPoP proof is not signed by the key being enrolled",
                ));
            }
            let sec1 = req
                .public_jwk
                .to_sec1()
                .map_err(|e| ApiError::new(ProblemType::InvalidDeviceKey, e.to_string()))?;
            let key = EnrolledKey {
                device_id: device_id.clone(),
                user: user.sub.clone(),
                sec1: sec1.to_vec(),
                ueid: req.public_jwk.ueid(),
                revoked: false,
            };
            let jwk = serde_json::to_string(&req.public_jwk).unwrap_or_default();
            let name = req.name.as_deref().map(|n| &n[..n.len().min(200)]);
            let (created, row) = match self.store.enrol(&key, &jwk, name, self.now())? {
                Enrolment::Created(row) => (true, row),
                Enrolment::Existing(row) => (false, row),
                Enrolment::Conflict => {
                    return Err(ApiError::new(
                        ProblemType::DeviceKeyConflict,
                        "this key is already enrolled for another user",
                    ));
                }
            };
            if row.key.revoked {
                return Err(ApiError::new(
                    ProblemType::DeviceRevoked,
                    "this device key was revoked; generate a new key and enrol it",
                ));
            }
            let device = Device {
                device_id: row.key.device_id.clone(),
                ueid: row.key.ueid.clone(),
                user: row.key.user.clone(),
                enrolled_at: datetime(row.enrolled_at),
            };
            let why = if created {
                "enrolled"
            } else {
                "already enrolled"
            };
            Ok(((created, device), why.to_owned()))
        })();
        self.audited("enrol", Some(&user.sub), Some(&device_id), result)
    }

    /// `GET /v1/events`: a subscription for the caller's device.
    pub fn subscribe(
        &self,
        caller: &DeviceCaller,
        device_id: &str,
    ) -> Result<broadcast::Receiver<Routed>, ApiError> {
        let user = &caller.user;
        let result = (|| {
            // Subscribe first, then check: a revocation between the two is
            // then either seen here or delivered to the stream (which it
            // ends), never lost in between.
            let rx = self.hub.subscribe();
            self.stream_standing_inner(user, device_id)?;
            if caller.device_id != device_id {
                return Err(ApiError::new(
                    ProblemType::InvalidDpopProof,
                    "the DPoP proof was made by another device than the one named",
                ));
            }
            Ok((rx, "event stream opened".to_owned()))
        })();
        self.audited("events", Some(&user.sub), Some(device_id), result)
    }

    /// Whether an event stream opened with `user`'s token for `device_id`
    /// may stay open now: the token unexpired (with the usual skew) and
    /// within the sign-in age limit, no session revocation covering its
    /// sign-in, the device enrolled for the user and not revoked. The
    /// stream asks this on its periodic check; revocations also end it at
    /// once through the event hub.
    pub fn stream_standing(&self, user: &AccessClaims, device_id: &str) -> Result<(), ApiError> {
        let result = self.stream_standing_inner(user, device_id);
        if let Err(err) = &result {
            self.deny("events-close", Some(&user.sub), Some(device_id), err);
        }
        result
    }

    fn stream_standing_inner(&self, user: &AccessClaims, device_id: &str) -> Result<(), ApiError> {
        if self.now() >= self.stream_deadline(user) {
            return Err(ApiError::new(
                ProblemType::TokenExpired,
                "the access token the event stream was opened with has expired; reconnect with a fresh one",
            ));
        }
        self.session_standing(user)?;
        let device = self.store.device(device_id)?.ok_or_else(|| {
            ApiError::new(ProblemType::DeviceUnknown, "this device is not enrolled")
        })?;
        if device.key.user != user.sub {
            return Err(ApiError::new(
                ProblemType::DeviceUserMismatch,
                "the device is enrolled for another user",
            ));
        }
        if device.key.revoked {
            return Err(ApiError::new(
                ProblemType::DeviceRevoked,
                "the device was revoked",
            ));
        }
        Ok(())
    }

    /// When (Unix seconds) an event stream opened with `user`'s token must
    /// end, without asking the store: the moment validation would refuse
    /// the token as expired (`exp` plus the skew) or its sign-in as too old,
    /// whichever is first. Cheap, so the stream checks it every second.
    pub fn stream_deadline(&self, user: &AccessClaims) -> i64 {
        let exp = user.exp.saturating_add(self.settings.skew);
        match self.settings.auth.valid_until(user) {
            Some(last) => exp.min(last.saturating_add(1)),
            None => exp,
        }
    }

    /// Unix seconds now on the broker's clock (for the event stream's check).
    pub fn clock_now(&self) -> i64 {
        self.now()
    }
}
