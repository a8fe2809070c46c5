//! The access policy in the broker: building its input from the caller,
//! the device, the application and the store's behavioural signals;
//! judging a grant (the verdict's floor, then `sallyport.access`); `GET
//! /v1/apps`; and judging open grants again when something they were
//! decided on changes (a new verdict, a reloaded access policy).

use std::net::IpAddr;

use super::{ApiError, Broker, DeviceCaller, datetime};
use crate::api::{
    AccessDecision, AccessReason, App, AppAccess, AppsDocument, ProblemType, Violation,
};
use crate::server::access::input::{
    AccessInput, AppFacts, Context, DeviceState, SignInFacts, Signals, UserFacts, digest,
    local_time,
};
use crate::server::access::{Judgement, context, judge};
use crate::server::config::AppSection;
use crate::server::grants::{Refusal, decide};
use crate::server::store::{AuditDecision, DeviceRow, GrantRow, VerdictRow};

/// One grant request, judged: what to answer and what to audit.
#[derive(Debug, Clone)]
pub(super) struct Assessment {
    /// The floor's refusal (verdict, session) or the access policy's judgement.
    pub outcome: Result<Judgement, Refusal>,
    /// The input as JSON (stored with an allowed grant).
    pub input: serde_json::Value,
    /// What the audit row records.
    pub record: AuditDecision,
    /// The network key.
    pub network: String,
    /// Whether an allowed grant teaches the broker this network: the
    /// sign-in shows a second factor within `known_network_mfa_seconds`.
    pub learns_network: bool,
}

impl Assessment {
    /// The decision as the user sees it (also for a floor refusal).
    pub fn decision(&self) -> AccessDecision {
        match &self.outcome {
            Ok(j) => j.decision.clone(),
            Err(r) => floor_decision(r),
        }
    }
}

/// A refusal by the verdict's floor, as an access decision: the violations
/// become reasons with their remediations.
fn floor_decision(r: &Refusal) -> AccessDecision {
    let reasons = if r.violations.is_empty() {
        vec![AccessReason {
            message: r.detail.clone(),
            remediation: String::new(),
        }]
    } else {
        r.violations
            .iter()
            .map(|v: &Violation| AccessReason {
                message: format!("{}: {}", v.check, v.message),
                remediation: v.remediation.clone(),
            })
            .collect()
    };
    AccessDecision {
        allow: false,
        reasons,
        step_up: None,
        closes_at: None,
        opens_at: None,
    }
}

impl Broker {
    /// The caller's address behind the configured trusted proxies.
    pub fn source_of(&self, peer: Option<IpAddr>, forwarded_for: Option<&str>) -> Option<IpAddr> {
        context::source_ip(peer, forwarded_for, &self.settings.trusted_proxies)
    }

    /// Judges `app` for `caller` on `device` now: the verdict's floor
    /// ([`decide`]), then the access policy over the full input.
    pub(super) fn assess(
        &self,
        caller: &DeviceCaller,
        device: &DeviceRow,
        verdict: Option<&VerdictRow>,
        app: &AppSection,
        now: i64,
    ) -> Result<Assessment, ApiError> {
        let user = &caller.user;
        let policy = self.policy();
        let access = &policy.access;
        let source = caller.source;
        let named = context::named_networks(source, &self.settings.networks);
        let network = context::network_key(source, &named);
        let window = i64::try_from(self.settings.raw.access.denials_window_seconds).unwrap_or(600);
        let recent_denials = self.store.denied_grants_since(&user.sub, now - window)?;
        let new_device_secs =
            i64::try_from(self.settings.raw.access.new_device_seconds).unwrap_or(86_400);
        let signals = Signals {
            new_network: !self.store.knows_network(&user.sub, &network)?,
            new_device: now - device.enrolled_at < new_device_secs,
            recent_denials,
            denial_burst: recent_denials >= self.settings.raw.access.denials_threshold,
        };
        let facts: serde_json::Value = verdict
            .and_then(|v| serde_json::from_str(&v.facts).ok())
            .unwrap_or_default();
        let checks = facts
            .get("checks")
            .and_then(|c| serde_json::from_value(c.clone()).ok())
            .unwrap_or_default();
        let mfa = self.settings.auth.check_factor(user);
        let learn_within =
            i64::try_from(self.settings.raw.access.known_network_mfa_seconds).unwrap_or(300);
        let learns_network = mfa
            && user
                .auth_time
                .is_some_and(|t| now.saturating_sub(t) <= learn_within);
        let input = AccessInput {
            user: UserFacts {
                sub: user.sub.clone(),
                email: user.email.clone(),
                groups: user.groups.clone(),
            },
            device: DeviceState {
                id: device.key.device_id.clone(),
                compliant: verdict.is_some_and(|v| v.verdict.compliant),
                violations: verdict
                    .map(|v| {
                        v.verdict
                            .violations
                            .iter()
                            .map(|x| x.check.clone())
                            .collect()
                    })
                    .unwrap_or_default(),
                key_assurance: facts
                    .get("key_assurance")
                    .and_then(|v| v.as_str())
                    .map(str::to_owned),
                platform: facts
                    .get("platform")
                    .and_then(|v| v.as_str())
                    .map(str::to_owned),
                checks,
                enrolled_at: device.enrolled_at,
            },
            app: AppFacts {
                id: app.id.clone(),
                name: app.name.clone(),
                labels: app.labels.clone(),
                owners: app.owners.clone(),
            },
            sign_in: SignInFacts {
                amr: user.amr.clone(),
                acr: user.acr.clone(),
                auth_time: user.auth_time,
                mfa,
                mfa_age_seconds: user.auth_time.map(|t| now.saturating_sub(t).max(0)),
                mfa_acr_values: self.settings.raw.oidc.required_acr.clone(),
            },
            context: Context {
                time: local_time(now, &self.settings.time_zone),
                source_ip: source.map(|ip| ip.to_string()),
                networks: named,
                signals,
            },
        }
        .to_json();
        let input_digest = digest(&input);
        let max = i64::try_from(self.settings.max_grant.as_secs()).unwrap_or(3600);
        let floor = decide(
            verdict.map(|v| &v.verdict),
            &policy.digest,
            user.exp,
            max,
            now,
        );
        let outcome = match floor {
            Err(refusal) => Err(refusal),
            Ok(floor_expiry) => {
                let out = access.evaluate(&input).map_err(|e| {
                    ApiError::new(ProblemType::PolicyError, e.to_string())
                        .device(&device.key.device_id)
                })?;
                Ok(judge(
                    &out,
                    &app.name,
                    &self.settings.time_zone,
                    floor_expiry,
                    now,
                ))
            }
        };
        let reasons = match &outcome {
            Ok(j) => j
                .decision
                .reasons
                .iter()
                .map(|r| r.message.clone())
                .chain(j.ends.iter().map(|e| e.reason.clone()))
                .collect(),
            Err(r) => floor_decision(r)
                .reasons
                .into_iter()
                .map(|r| r.message)
                .collect(),
        };
        Ok(Assessment {
            outcome,
            record: AuditDecision {
                app: Some(app.id.clone()),
                source_ip: source.map(|ip| ip.to_string()),
                reasons,
                input_digest: Some(input_digest),
                policy_digest: Some(policy.digest.clone()),
                access_policy_digest: Some(access.digest.clone()),
                admin: None,
            },
            input,
            network,
            learns_network,
        })
    }

    /// `GET /v1/apps`: every application with its decision for this caller
    /// now. Nothing is opened, remembered or audited: it is a preview.
    pub fn apps_document(
        &self,
        caller: &DeviceCaller,
        device_id: &str,
    ) -> Result<AppsDocument, ApiError> {
        let now = self.now();
        self.session_standing(&caller.user)?;
        if device_id != caller.device_id {
            return Err(ApiError::new(
                ProblemType::InvalidDpopProof,
                "the DPoP proof was made by another device than the one named",
            ));
        }
        let device = self.store.device(device_id)?.ok_or_else(|| {
            ApiError::new(ProblemType::DeviceUnknown, "this device is not enrolled")
        })?;
        let verdict = self
            .store
            .latest_verdict(device_id)?
            .filter(|v| v.user == caller.user.sub);
        let mut apps = Vec::new();
        for (app, _) in &self.settings.apps {
            let access = if device.key.revoked {
                refused("This device was revoked.", "Ask IT to enrol it again.")
            } else if device.pending {
                refused(
                    "This device is waiting for IT's approval.",
                    "Nothing to do: it opens once IT approves the device.",
                )
            } else {
                self.assess(caller, &device, verdict.as_ref(), app, now)?
                    .decision()
            };
            apps.push(AppAccess {
                app: App {
                    id: app.id.clone(),
                    name: app.name.clone(),
                    targets: app.targets.clone(),
                    labels: app.labels.clone(),
                },
                access,
            });
        }
        Ok(AppsDocument {
            evaluated_at: datetime(now),
            apps,
        })
    }

    /// After a new verdict: judges the device's open grants again with the
    /// caller's current token and context, and closes those the access
    /// policy no longer allows (the time window's end is enforced by the
    /// grant's expiry already). Called under the enforcement lock.
    pub(super) async fn reassess_device_grants(
        &self,
        caller: &DeviceCaller,
        device: &DeviceRow,
        now: i64,
    ) -> Result<(), ApiError> {
        let open = self.store.open_grants_of_device(&device.key.device_id)?;
        if open.is_empty() {
            return Ok(());
        }
        let verdict = self.store.latest_verdict(&device.key.device_id)?;
        let mut ended = Vec::new();
        for row in open {
            let Some((app, _)) = self.settings.apps.iter().find(|(a, _)| a.id == row.app) else {
                ended.push((row, "the application left the catalogue".to_owned()));
                continue;
            };
            let a = self.assess(caller, device, verdict.as_ref(), app, now)?;
            if let Some(why) = no_longer_allowed(&a) {
                ended.push((row, why));
            }
        }
        for (row, why) in ended {
            self.close_grants(vec![row], &why, now).await?;
        }
        Ok(())
    }

    /// After the access policy changed: judges every open grant again on
    /// the input it was allowed on (with the clock moved to now), and
    /// closes those the new policy refuses.
    pub(super) async fn reassess_all_grants(&self, now: i64) -> Result<usize, ApiError> {
        let policy = self.policy();
        let access = &policy.access;
        let mut ended: Vec<(GrantRow, String)> = Vec::new();
        for row in self.store.open_grants()? {
            let Some(mut input) = row
                .access_input
                .as_deref()
                .and_then(|t| serde_json::from_str::<serde_json::Value>(t).ok())
            else {
                ended.push((row, "the access policy changed".to_owned()));
                continue;
            };
            if let Some(time) = input.pointer_mut("/context/time") {
                *time = serde_json::to_value(local_time(now, &self.settings.time_zone))
                    .unwrap_or_default();
            }
            let name = self
                .settings
                .apps
                .iter()
                .find(|(a, _)| a.id == row.app)
                .map(|(a, _)| a.name.clone())
                .unwrap_or_else(|| row.app.clone());
            let verdict = match access.evaluate(&input) {
                Ok(out) => judge(&out, &name, &self.settings.time_zone, row.expires_at, now),
                Err(e) => {
                    ended.push((row, format!("the access policy failed: {e}")));
                    continue;
                }
            };
            if let Some(refusal) = verdict.refusal {
                let why = verdict
                    .decision
                    .reasons
                    .first()
                    .map(|r| r.message.clone())
                    .unwrap_or_else(|| refusal.title().to_owned());
                ended.push((row, format!("the access policy changed: {why}")));
            }
        }
        let n = ended.len();
        for (row, why) in ended {
            self.close_grants(vec![row], &why, now).await?;
        }
        Ok(n)
    }
}

/// Why an open grant must close under a new assessment, if it must.
fn no_longer_allowed(a: &Assessment) -> Option<String> {
    match &a.outcome {
        // The floor refusing is the verdict's business (closed elsewhere
        // when non-compliant); only a policy refusal ends it here.
        Err(_) => None,
        Ok(j) if j.refusal.is_some() => Some(
            j.decision
                .reasons
                .first()
                .map(|r| r.message.clone())
                .unwrap_or_else(|| "the access policy no longer allows it".to_owned()),
        ),
        Ok(_) => None,
    }
}

fn refused(message: &str, remediation: &str) -> AccessDecision {
    AccessDecision {
        allow: false,
        reasons: vec![AccessReason {
            message: message.to_owned(),
            remediation: remediation.to_owned(),
        }],
        step_up: None,
        closes_at: None,
        opens_at: None,
    }
}
