//! Devices: enrolment of a device key for a user (`POST /v1/devices`), the
//! device's event stream (`GET /v1/events`), the two calls that name a
//! device before it has any verdict, and the administrator's side of
//! enrolment (the device list and approval).
//!
//! How a new key becomes usable is the enrolment mode
//! ([`EnrolmentMode`]): at once (`open`), after an administrator's approval
//! (`approval`, the default), or at once with a verified TPM key
//! attestation (`hardware`, see [`keyattest`]). Every mode also holds the
//! per-user quota and refuses a user whose revocation has not been cleared.

use tokio::sync::broadcast;

use super::{ApiError, Broker, datetime};
use super::{DeviceCaller, Enroller};
use crate::api::{
    self as api, AdminDevice, Device, DeviceStatus, EnrolRequest, Event, Problem, ProblemType,
};
use crate::server::config::EnrolmentMode;
use crate::server::eat::EnrolledKey;
use crate::server::events::Routed;
use crate::server::keyattest;
use crate::server::store::{DeviceRow, Enrolment, NewDeviceRules};
use crate::server::token::AccessClaims;

fn device_view(row: &DeviceRow) -> Device {
    Device {
        device_id: row.key.device_id.clone(),
        ueid: row.key.ueid.clone(),
        user: row.key.user.clone(),
        enrolled_at: datetime(row.enrolled_at),
        status: row.status(),
    }
}

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
            let section = &self.settings.raw.enrolment;
            // A key enrolled before is not judged again (the agent enrols at
            // every start); only a new key must meet the mode.
            if section.mode == EnrolmentMode::Hardware && self.store.device(&device_id)?.is_none() {
                let Some(evidence) = &req.key_attestation else {
                    return Err(ApiError::new(
                        ProblemType::KeyAttestationRequired,
                        "this broker enrols only keys attested by the device's TPM; the request carries no key attestation",
                    ));
                };
                keyattest::verify(evidence, &req.public_jwk, &self.tpm_cas, self.now()).map_err(|e| {
                    ApiError::new(
                        ProblemType::KeyAttestationUnverifiable,
                        format!("the key attestation does not verify, so the key was not enrolled: {e}"),
                    )
                })?;
                self.activate(evidence, &device_id, req.activation_secret.as_deref())?;
            }
            let rules = NewDeviceRules {
                pending: section.mode == EnrolmentMode::Approval,
                max_devices_per_user: section.max_devices_per_user,
            };
            let jwk = serde_json::to_string(&req.public_jwk).unwrap_or_default();
            let name = req.name.as_deref().map(truncate_label);
            let (created, row) = match self.store.enrol(&key, &jwk, name, self.now(), rules)? {
                Enrolment::Created(row) => (true, row),
                Enrolment::Existing(row) => (false, row),
                Enrolment::Conflict => {
                    return Err(ApiError::new(
                        ProblemType::DeviceKeyConflict,
                        "this key is already enrolled for another user",
                    ));
                }
                Enrolment::UserRevoked => {
                    return Err(ApiError::new(
                        ProblemType::UserRevoked,
                        "this user was revoked by an administrator; no new device can be enrolled until the revocation is cleared",
                    ));
                }
                Enrolment::QuotaExceeded(held) => {
                    return Err(ApiError::new(
                        ProblemType::DeviceQuotaExceeded,
                        format!(
                            "this user already has {held} device(s), the most allowed; ask an administrator to revoke one that is no longer used"
                        ),
                    ));
                }
            };
            if row.key.revoked {
                return Err(ApiError::new(
                    ProblemType::DeviceRevoked,
                    "this device key was revoked; an administrator must clear the revocation before it can be enrolled again",
                ));
            }
            let device = device_view(&row);
            let why = match (created, row.pending) {
                (true, true) => "enrolled; pending an administrator's approval",
                (true, false) => "enrolled",
                (false, true) => "already enrolled; still pending approval",
                (false, false) => "already enrolled",
            };
            Ok(((created, device), why.to_owned()))
        })();
        self.audited("enrol", Some(&user.sub), Some(&device_id), result)
    }

    /// The credential-activation round of a `hardware` enrolment (see
    /// [`keyattest::Activations`]): without a secret, the challenge for the
    /// TPM as a `key-activation-required` problem; with one, whether it is
    /// the challenge's.
    fn activate(
        &self,
        evidence: &crate::api::KeyAttestation,
        device_id: &str,
        secret: Option<&str>,
    ) -> Result<(), ApiError> {
        let unverifiable = |e: keyattest::KeyAttestError| {
            ApiError::new(ProblemType::KeyAttestationUnverifiable, e.to_string())
        };
        let (ek, ak_name) = keyattest::activation_inputs(evidence).map_err(unverifiable)?;
        match secret {
            None => {
                let challenge = self
                    .activations
                    .challenge(&ek, &ak_name, device_id, self.now())
                    .map_err(|e| {
                        ApiError::new(
                            ProblemType::KeyAttestationUnverifiable,
                            format!("no credential can be made for this EK: {e}"),
                        )
                    })?;
                Err(ApiError {
                    problem: Box::new(Problem {
                        key_activation: Some(challenge),
                        ..Problem::new(
                            ProblemType::KeyActivationRequired,
                            "the key attestation verifies; the TPM must now activate the credential in key_activation, and the enrolment be sent again with its activation_secret",
                        )
                    }),
                    device_id: Some(device_id.to_owned()),
                })
            }
            Some(secret)
                if self
                    .activations
                    .check(device_id, &ak_name, secret, self.now()) =>
            {
                Ok(())
            }
            Some(_) => Err(ApiError::new(
                ProblemType::KeyActivationFailed,
                "the activation secret is not the challenge's: the attestation key is not in the TPM the EK certificate names, or the challenge expired (enrol again)",
            )),
        }
    }

    /// `GET /v1/events`: a subscription for the caller's device. A pending
    /// device may subscribe: its approval arrives this way.
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

    pub(super) fn stream_standing_inner(
        &self,
        user: &AccessClaims,
        device_id: &str,
    ) -> Result<(), ApiError> {
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

    /// `GET /v1/admin/devices`: every device, or those in `status`.
    pub fn admin_devices(
        &self,
        status: Option<DeviceStatus>,
    ) -> Result<Vec<AdminDevice>, ApiError> {
        Ok(self
            .store
            .devices(status)?
            .iter()
            .map(DeviceRow::admin_view)
            .collect())
    }

    /// `GET /v1/admin/support/{code}`: the broker's side of every device
    /// whose id starts with the support code (normally one), for helpdesk:
    /// enrolment, verdicts, grants and the audit rows naming it.
    pub fn device_support(&self, code: &str) -> Result<Vec<api::DeviceSupport>, ApiError> {
        let prefix = api::support_code_prefix(code).ok_or_else(|| {
            ApiError::new(
                ProblemType::MalformedRequest,
                "a support code is 4 to 64 letters, digits, - or _ (spaces and case are ignored)",
            )
        })?;
        let found = self.store.device_support(&prefix)?;
        if found.is_empty() {
            return Err(ApiError::new(
                ProblemType::DeviceUnknown,
                format!("no device has the support code {code:?}"),
            ));
        }
        Ok(found)
    }

    /// `POST /v1/admin/devices/{id}/approve`: a pending device becomes
    /// active (approving an active one again is a no-op); its agent is told
    /// on its event stream.
    pub fn approve_device(&self, device_id: &str, admin: &str) -> Result<AdminDevice, ApiError> {
        let result = (|| {
            let before = self
                .store
                .device(device_id)?
                .ok_or_else(|| ApiError::new(ProblemType::DeviceUnknown, "no such device"))?;
            if before.key.revoked {
                return Err(ApiError::new(
                    ProblemType::DeviceRevoked,
                    "the device was revoked; clear the revocation and let it enrol again",
                ));
            }
            let row = self
                .store
                .approve_device(device_id, self.now())?
                .ok_or_else(|| ApiError::new(ProblemType::DeviceUnknown, "no such device"))?;
            let why = if before.pending {
                self.hub.publish(
                    Some(&row.key.user),
                    Some(device_id),
                    Event::DeviceApproved {
                        device_id: device_id.to_owned(),
                    },
                );
                format!("device of {} approved", row.key.user)
            } else {
                "device was already active".to_owned()
            };
            Ok((row.admin_view(), why))
        })();
        let user = result.as_ref().ok().map(|d| d.0.user.clone());
        let by = crate::server::store::AuditDecision {
            admin: Some(admin.to_owned()),
            ..Default::default()
        };
        self.audited_decision(
            "approve",
            user.as_deref(),
            Some(device_id),
            Some(&by),
            result,
        )
    }
}

/// The agent's label, at most 200 bytes, cut on a character boundary (a
/// byte slice in the middle of a multi-byte character would panic).
fn truncate_label(name: &str) -> &str {
    let mut end = name.len().min(200);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_long_label_is_cut_on_a_character_boundary() {
        let name = "é".repeat(150);
        let cut = super::truncate_label(&name);
        assert_eq!(cut.len(), 200);
        assert_eq!(super::truncate_label("laptop"), "laptop");
    }
}
