//! The runtime's background work: everything slow (HTTP to the broker and
//! the IdP, posture collection) runs on a spawned task and reports back
//! through the runtime's one channel as an [`Outcome`], so the event loop
//! never waits on the network and enforcement is never queued behind it.
//! What the outcomes mean is in `outcomes.rs`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use broker::api::{self, BrokerConfig, DeviceStatus, ProblemType};
use posture::policy::{Evaluation, Policy};
use posture::report::Report;
use tunnel::PrivateKey;

use super::{Runtime, now};
use crate::broker_client::{AccessRefusal, BrokerClient, BrokerError, DeviceAuth};
use crate::control::Reply;
use crate::control::view::AWAITING_APPROVAL;
use crate::identity::session::{ReauthReason, SessionState, StepUpChallenge, parse_step_up};
use crate::supervisor::{self, Event};
use crate::timeline::{Entry, Kind};

/// First delay before asking the broker again about a pending (or refused)
/// enrolment; it doubles up to [`ENROL_BACKOFF_MAX`].
pub(super) const ENROL_BACKOFF_MIN: Duration = Duration::from_secs(2);
/// Longest delay between two enrolment attempts. An approval also arrives
/// on the event stream, which cuts the wait short.
pub(super) const ENROL_BACKOFF_MAX: Duration = Duration::from_secs(30);

/// The enrolled device.
#[derive(Debug)]
pub(super) struct Device {
    pub(super) key: crate::device_key::DeviceHolder,
    pub(super) id: String,
}

/// A grant the broker issued, with the tunnel key made for it.
pub(super) struct Issued {
    pub(super) grant: api::Grant,
    pub(super) key: PrivateKey,
    pub(super) endpoint: SocketAddr,
}

/// How long the tray's `apps` may wait on the broker before the agent
/// answers with what it knows itself.
pub(super) const APPS_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a `GET /v1/apps` answer is reused when nothing happened since.
pub(super) const APPS_FRESH: Duration = Duration::from_secs(10);

/// Results of spawned work.
pub(super) enum Outcome {
    Setup(Result<(BrokerConfig, Result<Policy, String>), String>),
    Enrolled(Result<(Device, DeviceStatus), String>),
    Posture {
        report: Box<Report>,
        evaluation: Result<Evaluation, String>,
    },
    Verdict(api::Verdict),
    AttestFailed(String),
    GrantIssued(String, Box<Issued>),
    /// App, reason for the user, and the broker's problem type if it refused.
    GrantFailed(String, String, Option<ProblemType>),
    /// The access policy refused the app's grant (denied, or a step-up).
    AccessRefused(String, Box<AccessRefusal>),
    /// The broker's `GET /v1/apps` answer, to reuse for a moment.
    AppsFetched(Box<api::AppsDocument>),
    Session(SessionState),
    RefreshFailed(String),
    Broker(api::Event),
    PolicyFetched(Policy),
    /// A supervisor event raised while executing a command.
    Event(Event),
    /// Something to remember in the timeline.
    Note(Entry),
    /// The device service's updater, as it last reported.
    UpdateStatus(service::updater::UpdateStatus),
    /// The broker refused the sign-in itself (step-up, revoked session).
    SignInRefused(ReauthReason),
}

/// Whether `e` refuses the user's sign-in itself rather than this call: an
/// RFC 9470 step-up challenge, or an administrator's session revocation.
/// No retry with the same sign-in can succeed (a refresh keeps its
/// `auth_time`), so the runtime treats the session as needing a new one.
pub(super) fn sign_in_refusal(e: &BrokerError) -> Option<ReauthReason> {
    match e {
        BrokerError::StepUp(header) => {
            let challenge = parse_step_up(header).unwrap_or(StepUpChallenge {
                acr_values: Vec::new(),
                max_age: None,
            });
            Some(ReauthReason::StepUp {
                acr_values: challenge.acr_values,
                max_age: challenge.max_age,
            })
        }
        BrokerError::Refused(problem) if problem.kind() == Some(ProblemType::SessionRevoked) => {
            Some(ReauthReason::Revoked {
                message: problem.detail.clone(),
            })
        }
        _ => None,
    }
}

/// Tells the runtime when a broker call failed because of the sign-in.
fn report_refusal(tx: &tokio::sync::mpsc::UnboundedSender<Outcome>, e: &BrokerError) {
    if let Some(reason) = sign_in_refusal(e) {
        let _ = tx.send(Outcome::SignInRefused(reason));
    }
}

impl Runtime {
    /// Fetches the catalogue and the policy, after `delay` (retries).
    pub(super) fn spawn_setup(&self, delay: Duration) {
        let broker = self.broker.clone();
        let tx = self.tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let result = async {
                let config = broker.config().await.map_err(|e| e.to_string())?;
                Ok((config, fetch_policy(&broker).await))
            }
            .await;
            let _ = tx.send(Outcome::Setup(result));
        });
    }

    pub(super) fn spawn_enrol(&mut self) {
        self.spawn_enrol_after(Duration::ZERO);
    }

    /// Enrols the device key after `delay` (the agent enrols at every start
    /// and the call is idempotent, so asking again is also how a pending
    /// device learns it was approved).
    pub(super) fn spawn_enrol_after(&mut self, delay: Duration) {
        if self.enrolling || self.device.is_some() {
            return;
        }
        self.enrolling = true;
        let broker = self.broker.clone();
        let identity = self.identity.clone();
        let store = self.store.clone();
        let service = self.device_service.clone();
        let tx = self.tx.clone();
        self.enrol_task = Some(tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let result = async {
                // Asked at every enrolment: after the service replaced a
                // lost key, this enrols the new one.
                let key = match service {
                    Some(link) => crate::device_key::DeviceHolder::from_service(link).await?,
                    None => crate::device_key::DeviceHolder::Keyring(
                        crate::device_key::load_or_create(store.as_ref())
                            .map_err(|e| e.to_string())?,
                    ),
                };
                let token = identity.access_token().await.map_err(|e| e.to_string())?;
                // The service's TPM evidence, for a broker in `hardware`
                // mode (None for a software key: the broker's mode decides).
                let key_attestation = key.key_attestation().await?;
                let mut request = api::EnrolRequest {
                    public_jwk: key.public_jwk().clone(),
                    name: hostname(),
                    key_attestation,
                    activation_secret: None,
                };
                let auth = DeviceAuth {
                    token: &token,
                    key: &key,
                };
                let mut answer = broker.enrol(auth, &request).await;
                // `hardware` mode: the broker's credential-activation
                // challenge, answered by the device's TPM, then once more.
                if let Err(BrokerError::Refused(problem)) = &answer
                    && let Some(challenge) = &problem.key_activation
                {
                    request.activation_secret = Some(key.activate_credential(challenge).await?);
                    answer = broker.enrol(auth, &request).await;
                }
                let device = answer.map_err(|e| {
                    report_refusal(&tx, &e);
                    e.to_string()
                })?;
                Ok((
                    Device {
                        id: device.device_id,
                        key,
                    },
                    device.status,
                ))
            }
            .await;
            let _ = tx.send(Outcome::Enrolled(result));
        }));
    }

    /// Asks the broker again at once about a pending enrolment (its
    /// approval was announced), instead of waiting out the backoff.
    pub(super) fn enrol_now(&mut self) {
        if let Some(task) = self.enrol_task.take() {
            task.abort();
        }
        self.enrolling = false;
        self.spawn_enrol();
    }

    pub(super) fn spawn_posture(&mut self) {
        let options = self.options.collect.clone();
        let policy = self.policy.clone();
        let tx = self.tx.clone();
        let seed = self
            .seed
            .take()
            .filter(|(_, until)| now() < *until)
            .map(|(report, _)| report);
        tokio::spawn(async move {
            let report = match seed {
                Some(report) => report,
                None => posture::collect::collect(&options).await,
            };
            let evaluation = match policy {
                Some(policy) => policy.evaluate(&report).map_err(|e| e.to_string()),
                None => Policy::default_policy()
                    .and_then(|p| p.evaluate(&report))
                    .map_err(|e| e.to_string()),
            };
            let _ = tx.send(Outcome::Posture {
                report: Box::new(report),
                evaluation,
            });
        });
        // The device service's updater, on the same schedule (it checks
        // the feed on its own; this only asks what it last did).
        if let Some(link) = self.device_service.clone() {
            let tx = self.tx.clone();
            tokio::spawn(async move {
                if let Ok(status) = link.update_status().await {
                    let _ = tx.send(Outcome::UpdateStatus(status));
                }
            });
        }
    }

    pub(super) fn spawn_attest(&self) {
        let tx = self.tx.clone();
        let (Some(device), Some(report), Some(config), Some(subject)) = (
            self.device.clone(),
            self.report.clone(),
            self.config.clone(),
            self.subject.clone(),
        ) else {
            let why = if self.awaiting_approval.is_some() {
                AWAITING_APPROVAL
            } else {
                "not ready to attest yet (enrolment or broker configuration pending)"
            };
            let _ = tx.send(Outcome::AttestFailed(why.to_owned()));
            return;
        };
        let broker = self.broker.clone();
        let identity = self.identity.clone();
        tokio::spawn(async move {
            let result = async {
                let token = identity.access_token().await.map_err(|e| e.to_string())?;
                let auth = DeviceAuth {
                    token: &token,
                    key: &device.key,
                };
                let challenge = broker.challenge(auth).await.map_err(|e| {
                    report_refusal(&tx, &e);
                    e.to_string()
                })?;
                let eat = device
                    .key
                    .eat(&challenge.nonce, &config.audience, &subject, &report)
                    .await?;
                broker.attest(auth, eat).await.map_err(|e| {
                    report_refusal(&tx, &e);
                    e.to_string()
                })
            }
            .await;
            let _ = tx.send(match result {
                Ok(verdict) => Outcome::Verdict(verdict),
                Err(e) => Outcome::AttestFailed(e),
            });
        });
    }

    pub(super) fn spawn_grant(&self, app: String) {
        let tx = self.tx.clone();
        let Some(device) = self.device.clone() else {
            let _ = tx.send(Outcome::GrantFailed(
                app,
                "device not enrolled yet".to_owned(),
                None,
            ));
            return;
        };
        let broker = self.broker.clone();
        let identity = self.identity.clone();
        tokio::spawn(async move {
            let key = PrivateKey::generate();
            let result = async {
                let token = identity
                    .access_token()
                    .await
                    .map_err(|e| GrantError::Failed(e.to_string(), None))?;
                let request = api::GrantRequest {
                    app: app.clone(),
                    device_id: device.id.clone(),
                    wireguard_public_key: key.public_key().to_string(),
                };
                let auth = DeviceAuth {
                    token: &token,
                    key: &device.key,
                };
                let grant = broker
                    .open_grant(auth, &request)
                    .await
                    .map_err(|e| match e {
                        BrokerError::AccessRefused(refusal) => GrantError::Access(refusal),
                        e => {
                            report_refusal(&tx, &e);
                            GrantError::Failed(explain_broker(&e), e.problem())
                        }
                    })?;
                let endpoint = tokio::net::lookup_host(grant.gateway.endpoint.as_str())
                    .await
                    .ok()
                    .and_then(|mut addrs| addrs.next())
                    .ok_or_else(|| {
                        GrantError::Failed(
                            format!("cannot resolve the gateway {}", grant.gateway.endpoint),
                            None,
                        )
                    })?;
                Ok(Issued {
                    grant,
                    key,
                    endpoint,
                })
            }
            .await;
            let _ = tx.send(match result {
                Ok(issued) => Outcome::GrantIssued(app, Box::new(issued)),
                Err(GrantError::Failed(reason, problem)) => {
                    Outcome::GrantFailed(app, reason, problem)
                }
                Err(GrantError::Access(refusal)) => Outcome::AccessRefused(app, refusal),
            });
        });
    }

    /// Answers `apps`: the broker's access decision per app when signed in
    /// and enrolled (asked now, bounded by [`APPS_TIMEOUT`]), else, or when
    /// the broker does not answer, what the agent knows; each view says
    /// which.
    pub(super) fn answer_apps(&self, reply: tokio::sync::oneshot::Sender<Reply>) {
        let local = self.apps_view();
        let wanted: Vec<String> = self.sup.wanted().cloned().collect();
        let signed_in = matches!(self.session_seen, Some(SessionState::Valid { .. }));
        let ready = match (&self.device, signed_in) {
            (Some(device), true) => Some(device.clone()),
            _ => None,
        };
        let fresh = self
            .apps_seen
            .as_ref()
            .filter(|(_, at)| now() - *at < APPS_FRESH)
            .map(|(doc, _)| doc.clone());
        let Some(device) = ready else {
            let _ = reply.send(apps_reply(&local));
            return;
        };
        if let Some(doc) = fresh {
            let _ = reply.send(apps_reply(&views_from(&doc, &wanted)));
            return;
        }
        let broker = self.broker.clone();
        let identity = self.identity.clone();
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let asked = tokio::time::timeout(APPS_TIMEOUT, async {
                let token = identity.access_token().await.map_err(|e| e.to_string())?;
                let auth = DeviceAuth {
                    token: &token,
                    key: &device.key,
                };
                broker.apps(auth, &device.id).await.map_err(|e| {
                    report_refusal(&tx, &e);
                    e.to_string()
                })
            })
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {APPS_TIMEOUT:?}")));
            let views = match asked {
                Ok(doc) => {
                    let views = views_from(&doc, &wanted);
                    let _ = tx.send(Outcome::AppsFetched(Box::new(doc)));
                    views
                }
                Err(e) => {
                    let _ = tx.send(Outcome::Note(
                        Entry::new(
                            now(),
                            Kind::Broker,
                            "the broker's access decisions are unavailable; showing what the agent knows",
                        )
                        .reason(e),
                    ));
                    local
                }
            };
            let _ = reply.send(apps_reply(&views));
        });
    }

    pub(super) fn spawn_release(&mut self, _app: String, grant_id: String) {
        self.issued.remove(&grant_id);
        let Some(device) = self.device.clone() else {
            return;
        };
        let broker = self.broker.clone();
        let identity = self.identity.clone();
        tokio::spawn(async move {
            if let Ok(token) = identity.access_token().await {
                let auth = DeviceAuth {
                    token: &token,
                    key: &device.key,
                };
                let _ = broker.close_grant(auth, &grant_id).await;
            }
        });
    }

    pub(super) fn spawn_refresh(&self) {
        let identity = self.identity.clone();
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let outcome = match identity.refresh().await {
                Ok(who) => Outcome::Session(who.state),
                Err(e) => Outcome::RefreshFailed(e.to_string()),
            };
            let _ = tx.send(outcome);
        });
    }

    /// Fetches the broker's changed policy; the previous one stays in use
    /// when it cannot be had.
    pub(super) fn spawn_policy_fetch(&self) {
        let broker = self.broker.clone();
        let tx = self.tx.clone();
        tokio::spawn(async move {
            match fetch_policy(&broker).await {
                Ok(policy) => {
                    let _ = tx.send(Outcome::PolicyFetched(policy));
                }
                Err(e) => {
                    let _ = tx.send(Outcome::Note(
                        Entry::new(
                            now(),
                            Kind::Broker,
                            "the broker's new policy is unavailable; keeping the previous one",
                        )
                        .reason(e.to_string()),
                    ));
                }
            }
        });
    }

    /// Follows `device`'s event stream (a pending device's too: its
    /// approval is announced there).
    pub(super) fn spawn_events(&mut self, device: Arc<Device>) {
        if let Some(task) = self.events_task.take() {
            task.abort();
        }
        let broker = self.broker.clone();
        let identity = self.identity.clone();
        let tx = self.tx.clone();
        self.events_task = Some(tokio::spawn(async move {
            let mut backoff = Duration::from_secs(1);
            loop {
                let stream = match identity.access_token().await {
                    Ok(token) => broker
                        .events(
                            DeviceAuth {
                                token: &token,
                                key: &device.key,
                            },
                            &device.id,
                        )
                        .await
                        .map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                let stream = match stream {
                    Ok(stream) => Some(stream),
                    Err(e) => {
                        let note = Entry::new(
                            now(),
                            Kind::Broker,
                            format!("event stream unavailable; retrying in {backoff:?}"),
                        )
                        .reason(e);
                        if tx.send(Outcome::Note(note)).is_err() {
                            return;
                        }
                        None
                    }
                };
                if let Some(mut stream) = stream {
                    backoff = Duration::from_secs(1);
                    while let Ok(event) = stream.next().await {
                        if tx.send(Outcome::Broker(event)).is_err() {
                            return;
                        }
                    }
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }));
    }
}

fn apps_reply(views: &[crate::control::view::AppView]) -> Reply {
    Reply::Ok {
        data: serde_json::to_value(views).unwrap_or_default(),
    }
}

/// The broker's catalogue with its decisions, as the front ends see it.
fn views_from(doc: &api::AppsDocument, wanted: &[String]) -> Vec<crate::control::view::AppView> {
    doc.apps
        .iter()
        .map(|entry| crate::control::view::AppView {
            id: entry.app.id.clone(),
            name: entry.app.name.clone(),
            targets: entry.app.targets.clone(),
            wanted: wanted.contains(&entry.app.id),
            access: super::view::broker_access(&entry.access),
        })
        .collect()
}

/// Why a grant request came back without a grant.
enum GrantError {
    /// Reason for the user, and the broker's problem type if it refused.
    Failed(String, Option<ProblemType>),
    /// The access policy's decision about this app.
    Access(Box<AccessRefusal>),
}

/// The broker's policy, compiled; why not, when it cannot be had.
async fn fetch_policy(broker: &BrokerClient) -> Result<Policy, String> {
    let doc = broker.policy().await.map_err(|e| e.to_string())?;
    Policy::from_source(&doc.name, &doc.rego).map_err(|e| e.to_string())
}

fn explain_broker(e: &BrokerError) -> String {
    match e {
        BrokerError::Refused(problem) if !problem.violations.is_empty() => {
            format!(
                "{} ({})",
                problem.detail,
                supervisor::Blocked::NonCompliant(problem.violations.clone()).explain()
            )
        }
        other => other.to_string(),
    }
}

fn hostname() -> Option<String> {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
}

#[cfg(test)]
mod tests {
    use broker::api::{Problem, ProblemType};

    use super::sign_in_refusal;
    use crate::broker_client::BrokerError;
    use crate::identity::session::ReauthReason;

    #[test]
    fn a_step_up_challenge_in_either_scheme_asks_for_what_it_names() {
        for scheme in ["Bearer", "DPoP"] {
            let header = format!(
                r#"{scheme} error="insufficient_user_authentication", acr_values="urn:x:mfa", max_age=3600"#
            );
            assert_eq!(
                sign_in_refusal(&BrokerError::StepUp(header)),
                Some(ReauthReason::StepUp {
                    acr_values: vec!["urn:x:mfa".to_owned()],
                    max_age: Some(3600),
                })
            );
        }
        // An unreadable challenge still refuses the sign-in (fail closed),
        // asking for nothing in particular.
        assert_eq!(
            sign_in_refusal(&BrokerError::StepUp("garbage".to_owned())),
            Some(ReauthReason::StepUp {
                acr_values: Vec::new(),
                max_age: None,
            })
        );
    }

    #[test]
    fn only_a_session_revocation_refuses_the_sign_in_among_problems() {
        let revoked = Problem::new(ProblemType::SessionRevoked, "revoked by IT");
        assert_eq!(
            sign_in_refusal(&BrokerError::Refused(Box::new(revoked))),
            Some(ReauthReason::Revoked {
                message: "revoked by IT".to_owned()
            })
        );
        for kind in [
            ProblemType::TokenExpired,
            ProblemType::DeviceRevoked,
            ProblemType::VerdictExpired,
        ] {
            let problem = Problem::new(kind, "x");
            assert_eq!(
                sign_in_refusal(&BrokerError::Refused(Box::new(problem))),
                None
            );
        }
        assert_eq!(
            sign_in_refusal(&BrokerError::Unreachable("down".to_owned())),
            None
        );
    }
}
