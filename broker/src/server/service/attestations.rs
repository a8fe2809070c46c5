//! Attestation: the challenge nonce (`POST /v1/attestations/challenge`) and
//! the EAT that answers it (`POST /v1/attestations`), verified, evaluated
//! against the policy and recorded as the device's verdict. A verdict that
//! turns non-compliant closes the device's grants here, at once.

use posture::attestation::MAX_EAT_LIFETIME_SECS;

use super::{ApiError, Broker, datetime};
use crate::api::{AttestationRequest, Challenge, ComplianceStatus, Event, ProblemType, Verdict};
use crate::server::eat::{self, Expectations};
use crate::server::store::NewAudit;
use crate::server::token::AccessClaims;

use super::DeviceCaller;

/// How long a challenge nonce is good for.
pub const NONCE_TTL_SECS: i64 = 60;

impl Broker {
    /// `POST /v1/attestations/challenge`.
    pub fn challenge(&self, user: &AccessClaims) -> Result<Challenge, ApiError> {
        let now = self.now();
        self.check_nonce_quota(&user.sub, now)?;
        let nonce = self.random_b64(32)?;
        self.store
            .issue_nonce(&nonce, &user.sub, now, now + NONCE_TTL_SECS)?;
        Ok(Challenge {
            nonce,
            expires_at: datetime(now + NONCE_TTL_SECS),
        })
    }

    /// `POST /v1/attestations` minus the audit: verify the EAT, consume the
    /// nonce (only after the signature and claims passed), evaluate, record.
    async fn attest_inner(
        &self,
        caller: &DeviceCaller,
        req: &AttestationRequest,
    ) -> Result<(Verdict, String), ApiError> {
        let user = &caller.user;
        let now = self.now();
        let parsed = eat::parse(&req.eat).map_err(|e| ApiError::new(e.problem(), e.to_string()))?;
        let device = self.store.device(&parsed.kid)?.ok_or_else(|| {
            ApiError::new(
                ProblemType::DeviceUnknown,
                format!("no device is enrolled with kid {}", parsed.kid),
            )
            .device(&parsed.kid)
        })?;
        let device_id = device.key.device_id.clone();
        let expect = Expectations {
            audience: &self.settings.raw.oidc.audience,
            caller: &user.sub,
            now,
            skew: self.settings.skew,
            max_lifetime: MAX_EAT_LIFETIME_SECS,
        };
        let claims = eat::verify_claims(&parsed, &device.key, &expect)
            .map_err(|e| ApiError::new(e.problem(), e.to_string()).device(&device_id))?;
        // One device attests for itself: the EAT's key and the proof's key
        // are the same enrolled key. Checked before the nonce is consumed.
        if device_id != caller.device_id {
            return Err(ApiError::new(
                ProblemType::InvalidDpopProof,
                "the attestation names another device than the DPoP proof's key",
            ));
        }
        // After the signature and subject checks, so only the device's own
        // user learns that it is pending; before the nonce, which stays
        // usable once the device is approved.
        if device.pending {
            return Err(ApiError::new(
                ProblemType::DevicePendingApproval,
                "this device is waiting for an administrator's approval",
            )
            .device(&device_id));
        }
        let answer = self
            .store
            .consume_nonce(&claims.eat_nonce, &user.sub, now)?;
        eat::check_nonce(answer)
            .map_err(|e| ApiError::new(e.problem(), e.to_string()).device(&device_id))?;
        let policy = self.policy();
        // What the EAT says about the key and the local account, for
        // `input.device` (an absent claim is `unreported`, never undefined).
        let facts = posture::policy::DeviceFacts::from_claims(
            claims.key_assurance.as_deref(),
            claims.local_uid,
            claims.local_user.as_deref(),
        );
        let evaluation = policy
            .policy
            .evaluate_attested(&claims.posture, &facts)
            .map_err(|e| {
                ApiError::new(ProblemType::PolicyError, e.to_string()).device(&device_id)
            })?;
        let valid_until = now + i64::try_from(self.settings.verdict_ttl.as_secs()).unwrap_or(900);
        // Recording a non-compliant verdict and closing the grants it ends
        // is one step against grant creation (see `Broker::enforcement`).
        let _enforcing = self.enforcement.lock().await;
        let previous = self.store.latest_verdict(&device_id)?;
        self.store.insert_verdict(
            &device_id,
            &user.sub,
            evaluation.compliant,
            &evaluation.violations,
            now,
            valid_until,
            &policy.digest,
            &device_facts_json(&claims.posture, &facts.key_assurance),
        )?;
        let was_compliant = previous.as_ref().map(|p| p.verdict.compliant);
        let status = |c: bool| {
            if c {
                ComplianceStatus::Compliant
            } else {
                ComplianceStatus::NotCompliant
            }
        };
        if !evaluation.compliant {
            // Enforcement: a device that stops complying loses its tunnels now,
            // not when their grants expire.
            let open = self.store.open_grants_of_device(&device_id)?;
            self.close_grants(open, "the device no longer meets the policy", now)
                .await?;
        } else {
            // The access policy may weigh what changed (posture facts, the
            // token's groups, the network): its open grants are judged again.
            self.reassess_device_grants(caller, &device, now).await?;
        }
        if let Some(prev) = was_compliant
            && prev != evaluation.compliant
        {
            self.hub.publish(
                Some(&user.sub),
                Some(&device_id),
                Event::DeviceComplianceChange {
                    device_id: device_id.clone(),
                    previous_status: status(prev),
                    current_status: status(evaluation.compliant),
                    reason: "new attestation".into(),
                },
            );
        }
        let signer = match (facts.local_uid, &facts.local_user) {
            (Some(uid), Some(name)) => format!(", local_uid {uid} ({name})"),
            (Some(uid), None) => format!(", local_uid {uid}"),
            _ => String::new(),
        };
        let about = format!("key_assurance {}{signer}", facts.key_assurance);
        let reason = if evaluation.compliant {
            format!("attestation verified ({about}); compliant")
        } else {
            let checks: Vec<&str> = evaluation
                .violations
                .iter()
                .map(|v| v.check.as_str())
                .collect();
            format!(
                "attestation verified ({about}); not compliant: {}",
                checks.join(", ")
            )
        };
        Ok((
            Verdict {
                device_id,
                compliant: evaluation.compliant,
                violations: evaluation.violations,
                evaluated_at: datetime(now),
                valid_until: datetime(valid_until),
                policy_digest: policy.digest.clone(),
            },
            reason,
        ))
    }

    /// `POST /v1/attestations`.
    pub async fn attest(
        &self,
        caller: &DeviceCaller,
        req: &AttestationRequest,
    ) -> Result<Verdict, ApiError> {
        let user = &caller.user;
        match self.attest_inner(caller, req).await {
            Ok((verdict, reason)) => {
                // Fail closed: a verdict that cannot be recorded is not
                // handed out.
                self.try_audit(NewAudit {
                    action: "attest",
                    outcome: if verdict.compliant { "allow" } else { "deny" },
                    user: Some(&user.sub),
                    device_id: Some(&verdict.device_id),
                    problem: (!verdict.compliant).then_some(ProblemType::DeviceNotCompliant.slug()),
                    reason: &reason,
                    decision: None,
                })?;
                Ok(verdict)
            }
            Err(err) => {
                self.deny("attest", Some(&user.sub), None, &err);
                Err(err)
            }
        }
    }
}

/// What the access policy sees of an attestation (`input.device`): the
/// platform, the key's assurance and each check's status, as JSON.
fn device_facts_json(report: &posture::report::Report, key_assurance: &str) -> String {
    let checks: serde_json::Map<String, serde_json::Value> = report
        .checks
        .iter()
        .map(|c| {
            (
                serde_json::to_value(c.id)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                serde_json::to_value(c.status).unwrap_or_default(),
            )
        })
        .collect();
    serde_json::json!({
        "platform": report.platform,
        "key_assurance": key_assurance,
        "checks": checks,
    })
    .to_string()
}
