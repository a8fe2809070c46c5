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
            let device = self.store.device(device_id)?.ok_or_else(|| {
                ApiError::new(ProblemType::DeviceUnknown, "this device is not enrolled")
            })?;
            if device.key.user != user.sub {
                return Err(ApiError::new(
                    ProblemType::DeviceUserMismatch,
                    "the device is enrolled for another user",
                ));
            }
            if caller.device_id != device_id {
                return Err(ApiError::new(
                    ProblemType::InvalidDpopProof,
                    "the DPoP proof was made by another device than the one named",
                ));
            }
            Ok((self.hub.subscribe(), "event stream opened".to_owned()))
        })();
        self.audited("events", Some(&user.sub), Some(device_id), result)
    }
}
