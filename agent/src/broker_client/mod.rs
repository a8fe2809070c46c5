//! The agent's side of the broker API (`broker::api`, described in
//! broker/API.md): typed calls over HTTPS (plain HTTP only to loopback), every error
//! reply read as an RFC 9457 problem so the agent can branch on its stable
//! `type`, bounded reply sizes and timeouts, and the `/v1/events` stream.
//!
//! Every user call is DPoP-bound (RFC 9449): it takes a [`DeviceAuth`],
//! the access token plus the device key, and sends `Authorization: DPoP
//! <token>` with a fresh `DPoP` proof signed by the key for exactly that
//! method and URL (and, for a grant, the tunnel's WireGuard key). The
//! broker refuses a token that arrives without a proof by the device it
//! was enrolled from, so a stolen token is useless elsewhere.

pub mod sse;

use std::time::Duration;

use broker::api::{
    self, AccessDecision, AccessReason, AppsDocument, AttestationRequest, BrokerConfig, Challenge,
    Device, EnrolRequest, Event, Grant, GrantRequest, PolicyDocument, Problem, ProblemType,
    Verdict,
};
use reqwest::{Method, StatusCode, header};
use serde::Serialize;
use serde::de::DeserializeOwned;
use url::Url;

use posture::dpop::{DPOP_HEADER, DPOP_SCHEME};

use crate::device_key::DeviceHolder;

use crate::secrets::Secret;
use sse::{SseError, SseParser};

/// A reply body larger than this is refused (the catalogue and the policy
/// are the largest replies, a few KiB each).
pub const MAX_REPLY_BYTES: usize = 1024 * 1024;

/// Why a broker call failed.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The broker URL is not usable (not HTTPS and not loopback, unparsable).
    #[error("broker URL {url}: {reason}")]
    BadUrl {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// No connection (down, DNS, TLS) or it broke.
    #[error("cannot reach the access broker: {0}")]
    Unreachable(String),
    /// The broker did not answer in time.
    #[error("the access broker did not answer within {0:?}")]
    Timeout(Duration),
    /// The broker refused, with a problem document.
    #[error("the access broker refused: {} ({})", .0.detail, .0.type_uri)]
    Refused(Box<Problem>),
    /// The broker asks for a stronger sign-in (RFC 9470); the raw
    /// `WWW-Authenticate` challenge is for `identity::session::parse_step_up`.
    #[error("the access broker requires a stronger sign-in")]
    StepUp(String),
    /// The reply was not what the API defines.
    #[error("the access broker sent a malformed reply: {0}")]
    Malformed(String),
    /// The reply was larger than [`MAX_REPLY_BYTES`].
    #[error("the access broker's reply exceeds {MAX_REPLY_BYTES} bytes")]
    TooLarge,
    /// The device key could not sign the call's DPoP proof.
    #[error("the device key could not sign the request: {0}")]
    Signing(String),
    /// The access policy refused this application (`access-denied`,
    /// `access-step-up-required`): a decision about one app, not a failure
    /// of the call, so it carries the decision rather than a problem.
    #[error("the access policy refused: {}", .0.detail)]
    AccessRefused(Box<AccessRefusal>),
}

/// Which access refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessRefusalKind {
    /// `access-denied`: not for this user, device or context now.
    Denied,
    /// `access-step-up-required`: a fresh or stronger sign-in first. The
    /// session stays good for the other applications.
    StepUpRequired,
}

/// The access policy's refusal of a grant, with its decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRefusal {
    /// Denied, or a step-up asked for.
    pub kind: AccessRefusalKind,
    /// The problem's `detail`.
    pub detail: String,
    /// Why, what to do, when it opens, what a sign-in must show. Never
    /// `allow`: a broker that sends none, or an allowing one, on a refusal
    /// still refuses, with `detail` as the reason (fail closed).
    pub decision: AccessDecision,
}

impl AccessRefusal {
    /// The refusal in `problem`, when it is an access refusal.
    pub fn from_problem(problem: &Problem) -> Option<AccessRefusal> {
        let kind = match problem.kind()? {
            ProblemType::AccessDenied => AccessRefusalKind::Denied,
            ProblemType::AccessStepUpRequired => AccessRefusalKind::StepUpRequired,
            _ => return None,
        };
        let mut decision = problem.access.clone().unwrap_or(AccessDecision {
            allow: false,
            reasons: Vec::new(),
            step_up: None,
            closes_at: None,
            opens_at: None,
        });
        decision.allow = false;
        if decision.reasons.is_empty() {
            decision.reasons.push(AccessReason {
                message: problem.detail.clone(),
                remediation: String::new(),
            });
        }
        Some(AccessRefusal {
            kind,
            detail: problem.detail.clone(),
            decision,
        })
    }
}

impl BrokerError {
    /// The problem type, when the broker refused with one of ours.
    pub fn problem(&self) -> Option<ProblemType> {
        match self {
            BrokerError::Refused(p) => p.kind(),
            BrokerError::AccessRefused(r) => Some(match r.kind {
                AccessRefusalKind::Denied => ProblemType::AccessDenied,
                AccessRefusalKind::StepUpRequired => ProblemType::AccessStepUpRequired,
            }),
            _ => None,
        }
    }
}

/// The credentials of a user call: the access token, and the device key
/// that signs each call's DPoP proof (for enrolment: the key being
/// enrolled).
#[derive(Clone, Copy, Debug)]
pub struct DeviceAuth<'a> {
    /// The OIDC access token.
    pub token: &'a Secret,
    /// Who signs for the device (the device service, or the keyring key).
    pub key: &'a DeviceHolder,
}

/// A client for one broker.
#[derive(Debug, Clone)]
pub struct BrokerClient {
    base: Url,
    http: reqwest::Client,
    timeout: Duration,
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    }
}

impl BrokerClient {
    /// A client for `base` (e.g. `https://broker.example.com`). Each call
    /// may take `timeout`.
    pub fn new(base: &str, timeout: Duration) -> Result<Self, BrokerError> {
        let bad = |reason: &str| BrokerError::BadUrl {
            url: base.to_owned(),
            reason: reason.to_owned(),
        };
        let base = Url::parse(base).map_err(|e| bad(&e.to_string()))?;
        match base.scheme() {
            "https" => {}
            "http" if is_loopback(&base) => {}
            _ => return Err(bad("must use https (plain http only to loopback)")),
        }
        let mut builder = reqwest::Client::builder()
            .connect_timeout(timeout)
            .https_only(!is_loopback(&base))
            .redirect(reqwest::redirect::Policy::none());
        if is_loopback(&base) {
            // A loopback broker is on this machine: an HTTP(S)_PROXY from
            // the environment must not carry its calls elsewhere.
            builder = builder.no_proxy();
        }
        let http = builder.build().map_err(|e| bad(&e.to_string()))?;
        Ok(BrokerClient {
            base,
            http,
            timeout,
        })
    }

    /// The broker's base URL.
    pub fn base(&self) -> &Url {
        &self.base
    }

    /// Each step of reaching the broker, for the diagnostics bundle (see
    /// [`crate::connectivity`]).
    pub async fn connectivity(&self) -> crate::connectivity::Report {
        crate::connectivity::check(&self.base, &self.http).await
    }

    fn url(&self, path: &str) -> Result<Url, BrokerError> {
        self.base.join(path).map_err(|e| BrokerError::BadUrl {
            url: format!("{}{path}", self.base),
            reason: e.to_string(),
        })
    }

    async fn call<B: Serialize, R: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        auth: Option<(DeviceAuth<'_>, Option<&str>)>,
        body: Option<&B>,
    ) -> Result<R, BrokerError> {
        let bytes = self.call_raw(method, path, auth, body).await?;
        serde_json::from_slice(&bytes).map_err(|e| BrokerError::Malformed(e.to_string()))
    }

    /// A request for `method` on `url`, with the DPoP credentials when
    /// given: `wg_pub` is bound into the proof (grants only).
    async fn request(
        &self,
        method: Method,
        url: Url,
        auth: Option<(DeviceAuth<'_>, Option<&str>)>,
    ) -> Result<reqwest::RequestBuilder, BrokerError> {
        let proof = match auth {
            Some((auth, wg_pub)) => Some((
                auth.token,
                auth.key
                    .dpop_proof(method.as_str(), url.as_str(), auth.token.expose(), wg_pub)
                    .await
                    .map_err(BrokerError::Signing)?,
            )),
            None => None,
        };
        let mut request = self.http.request(method, url);
        if let Some((token, proof)) = proof {
            // Both are secrets: neither is logged (reqwest's errors carry
            // no headers, see `transport`).
            request = request
                .header(
                    header::AUTHORIZATION,
                    format!("{DPOP_SCHEME} {}", token.expose()),
                )
                .header(DPOP_HEADER, proof);
        }
        Ok(request)
    }

    async fn call_raw<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        auth: Option<(DeviceAuth<'_>, Option<&str>)>,
        body: Option<&B>,
    ) -> Result<Vec<u8>, BrokerError> {
        let mut request = self
            .request(method, self.url(path)?, auth)
            .await?
            .timeout(self.timeout)
            .header(header::ACCEPT, "application/json");
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| self.transport(e))?;
        let status = response.status();
        let challenge = response
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = read_limited(response).await.map_err(|e| match e {
            ReadError::TooLarge => BrokerError::TooLarge,
            ReadError::Transport(e) => self.transport(e),
        })?;
        if status.is_success() {
            return Ok(bytes);
        }
        if status == StatusCode::UNAUTHORIZED
            && let Some(challenge) =
                challenge.filter(|c| c.contains("insufficient_user_authentication"))
        {
            return Err(BrokerError::StepUp(challenge));
        }
        match serde_json::from_slice::<Problem>(&bytes) {
            Ok(problem) => Err(match AccessRefusal::from_problem(&problem) {
                Some(refusal) => BrokerError::AccessRefused(Box::new(refusal)),
                None => BrokerError::Refused(Box::new(problem)),
            }),
            Err(_) => Err(BrokerError::Malformed(format!(
                "HTTP {status} without a problem document"
            ))),
        }
    }

    fn transport(&self, e: reqwest::Error) -> BrokerError {
        if e.is_timeout() {
            BrokerError::Timeout(self.timeout)
        } else {
            // Without the URL's query (none here) and without headers, so
            // no token can leak into the message.
            BrokerError::Unreachable(e.without_url().to_string())
        }
    }

    /// `GET /v1/config`.
    pub async fn config(&self) -> Result<BrokerConfig, BrokerError> {
        self.call::<(), _>(Method::GET, api::paths::CONFIG, None, None)
            .await
    }

    /// `GET /v1/policy`.
    pub async fn policy(&self) -> Result<PolicyDocument, BrokerError> {
        self.call::<(), _>(Method::GET, api::paths::POLICY, None, None)
            .await
    }

    /// `POST /v1/devices`; the proof is signed by the key being enrolled.
    pub async fn enrol(
        &self,
        auth: DeviceAuth<'_>,
        request: &EnrolRequest,
    ) -> Result<Device, BrokerError> {
        self.call(
            Method::POST,
            api::paths::DEVICES,
            Some((auth, None)),
            Some(request),
        )
        .await
    }

    /// `POST /v1/attestations/challenge`.
    pub async fn challenge(&self, auth: DeviceAuth<'_>) -> Result<Challenge, BrokerError> {
        self.call::<(), _>(
            Method::POST,
            api::paths::CHALLENGE,
            Some((auth, None)),
            None,
        )
        .await
    }

    /// `POST /v1/attestations`.
    pub async fn attest(&self, auth: DeviceAuth<'_>, eat: String) -> Result<Verdict, BrokerError> {
        let body = AttestationRequest { eat };
        self.call(
            Method::POST,
            api::paths::ATTESTATIONS,
            Some((auth, None)),
            Some(&body),
        )
        .await
    }

    /// `POST /v1/grants`; the proof binds the request's WireGuard key.
    pub async fn open_grant(
        &self,
        auth: DeviceAuth<'_>,
        request: &GrantRequest,
    ) -> Result<Grant, BrokerError> {
        self.call(
            Method::POST,
            api::paths::GRANTS,
            Some((auth, Some(&request.wireguard_public_key))),
            Some(request),
        )
        .await
    }

    /// `GET /v1/apps?device_id=`: the catalogue with the access policy's
    /// answer for this user, device and context now. The same DPoP device
    /// auth as a grant request (without a WireGuard key: nothing opens).
    pub async fn apps(
        &self,
        auth: DeviceAuth<'_>,
        device_id: &str,
    ) -> Result<AppsDocument, BrokerError> {
        let path = format!("{}?device_id={}", api::paths::APPS, urlencode(device_id));
        self.call::<(), _>(Method::GET, &path, Some((auth, None)), None)
            .await
    }

    /// `DELETE /v1/grants/{id}`.
    pub async fn close_grant(
        &self,
        auth: DeviceAuth<'_>,
        grant_id: &str,
    ) -> Result<(), BrokerError> {
        let path = format!("{}/{}", api::paths::GRANTS, urlencode(grant_id));
        self.call_raw::<()>(Method::DELETE, &path, Some((auth, None)), None)
            .await
            .map(|_| ())
    }

    /// Opens `GET /v1/events` for `device_id`. Read it with
    /// [`EventStream::next`]; reconnecting is the caller's (with backoff).
    pub async fn events(
        &self,
        auth: DeviceAuth<'_>,
        device_id: &str,
    ) -> Result<EventStream, BrokerError> {
        let mut url = self.url(api::paths::EVENTS)?;
        url.query_pairs_mut().append_pair("device_id", device_id);
        let response = self
            .request(Method::GET, url, Some((auth, None)))
            .await?
            .header(header::ACCEPT, "text/event-stream")
            .send()
            .await
            .map_err(|e| self.transport(e))?;
        if !response.status().is_success() {
            let status = response.status();
            let bytes = read_limited(response).await.unwrap_or_default();
            return Err(match serde_json::from_slice::<Problem>(&bytes) {
                Ok(problem) => BrokerError::Refused(Box::new(problem)),
                Err(_) => BrokerError::Malformed(format!("HTTP {status} on the event stream")),
            });
        }
        Ok(EventStream {
            response,
            parser: SseParser::new(64 * 1024),
            pending: Vec::new(),
        })
    }
}

/// Percent-encodes a path segment (grant ids are URL-safe already; this
/// keeps a hostile id from changing the path).
fn urlencode(segment: &str) -> String {
    url::form_urlencoded::byte_serialize(segment.as_bytes()).collect()
}

enum ReadError {
    TooLarge,
    Transport(reqwest::Error),
}

async fn read_limited(mut response: reqwest::Response) -> Result<Vec<u8>, ReadError> {
    if response
        .content_length()
        .is_some_and(|len| len > MAX_REPLY_BYTES as u64)
    {
        return Err(ReadError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(ReadError::Transport)? {
        if body.len() + chunk.len() > MAX_REPLY_BYTES {
            return Err(ReadError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The broker's event stream.
#[derive(Debug)]
pub struct EventStream {
    response: reqwest::Response,
    parser: SseParser,
    pending: Vec<Event>,
}

/// Why the event stream ended.
#[derive(Debug, thiserror::Error)]
pub enum EventStreamError {
    /// The connection closed or broke: reconnect with backoff.
    #[error("the event stream closed: {0}")]
    Closed(String),
    /// The stream is not valid SSE.
    #[error(transparent)]
    Sse(#[from] SseError),
}

impl EventStream {
    /// The next event the agent understands. Unknown event types (a newer
    /// broker) and undecodable ones are skipped with a log line, so one bad
    /// event cannot blind the agent to the next revocation.
    pub async fn next(&mut self) -> Result<Event, EventStreamError> {
        loop {
            if !self.pending.is_empty() {
                return Ok(self.pending.remove(0));
            }
            let chunk = self
                .response
                .chunk()
                .await
                .map_err(|e| EventStreamError::Closed(e.without_url().to_string()))?
                .ok_or_else(|| EventStreamError::Closed("end of stream".to_owned()))?;
            for raw in self.parser.feed(&chunk)? {
                match serde_json::from_str::<Event>(&raw.data) {
                    Ok(event) => self.pending.push(event),
                    Err(e) => {
                        tracing::warn!(event = %raw.event, error = %e, "skipping an event this agent does not understand")
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use broker::api::{AccessDecision, AccessReason, Problem, ProblemType, StepUp};

    use super::{AccessRefusal, AccessRefusalKind, BrokerError};

    fn problem(kind: ProblemType, access: Option<AccessDecision>) -> Problem {
        let mut problem = Problem::new(kind, "Git server is closed now");
        problem.access = access;
        problem
    }

    #[test]
    fn access_problems_become_typed_refusals_with_their_decision() {
        let decision = AccessDecision {
            allow: false,
            reasons: vec![AccessReason {
                message: "Git server needs a sign-in within the last hour".into(),
                remediation: "Sign in again.".into(),
            }],
            step_up: Some(StepUp {
                acr_values: vec!["urn:x:mfa".into()],
                max_age: Some(3600),
            }),
            closes_at: None,
            opens_at: None,
        };
        let refusal = AccessRefusal::from_problem(&problem(
            ProblemType::AccessStepUpRequired,
            Some(decision.clone()),
        ))
        .unwrap();
        assert_eq!(refusal.kind, AccessRefusalKind::StepUpRequired);
        assert_eq!(refusal.decision, decision);
        assert_eq!(
            BrokerError::AccessRefused(Box::new(refusal)).problem(),
            Some(ProblemType::AccessStepUpRequired)
        );
        // Other problems stay problems.
        assert_eq!(
            AccessRefusal::from_problem(&problem(ProblemType::VerdictExpired, None)),
            None
        );
    }

    #[test]
    fn a_refusal_without_a_decision_or_with_allow_still_refuses_with_the_detail() {
        let allowing = AccessDecision {
            allow: true,
            reasons: vec![],
            step_up: None,
            closes_at: None,
            opens_at: None,
        };
        for access in [None, Some(allowing)] {
            let refusal =
                AccessRefusal::from_problem(&problem(ProblemType::AccessDenied, access)).unwrap();
            assert_eq!(refusal.kind, AccessRefusalKind::Denied);
            assert!(!refusal.decision.allow);
            assert_eq!(
                refusal.decision.reasons[0].message,
                "Git server is closed now"
            );
        }
    }
}
