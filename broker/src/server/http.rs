//! The HTTP surface: axum routes, thin handlers, and the extractors that
//! turn every malformed request into a problem document (and an audit entry)
//! instead of axum's plain-text rejections.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::{BroadcastStream, IntervalStream};

use super::events::Routed;

use super::service::{ApiError, Broker, DeviceCaller, DpopRequest, Enroller};
use crate::api::{
    self, AttestationRequest, DeviceStatus, EnrolRequest, GrantRequest, MAX_BODY_BYTES,
    PROBLEM_CONTENT_TYPE, ProblemType, RevocationClearRequest, RevocationRequest, paths,
};

type State = axum::extract::State<Arc<Broker>>;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self.problem).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(PROBLEM_CONTENT_TYPE),
        );
        if self.problem.kind() == Some(ProblemType::BodyTooLarge) {
            // The rest of the body was not read: the connection cannot carry
            // another request, so say so instead of letting a client reuse it.
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if matches!(
            self.problem.kind(),
            Some(ProblemType::InvalidDpopProof | ProblemType::DpopReplay)
        ) {
            // RFC 9449 §7.1: the DPoP scheme's challenge, with its error code.
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"DPoP error="invalid_dpop_proof", algs="ES256""#),
            );
        } else if status == StatusCode::UNAUTHORIZED
            && self.problem.kind() != Some(ProblemType::AdminUnauthorized)
            && self.problem.type_uri.contains("token")
        {
            // RFC 6750 §3: tell the client how to authenticate.
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"Bearer error="invalid_token""#),
            );
        }
        response
    }
}

/// A refusal of the caller, with the RFC 9470 §3 challenge when the
/// sign-in falls short (no second factor, too old): it says what a new one
/// must show (`acr_values`, `max_age`), so the agent can ask the IdP for
/// exactly that. The scheme follows the request's (`DPoP` for DPoP-bound
/// calls, RFC 9449 §7.1).
fn refuse_caller(broker: &Broker, parts: &Parts, err: ApiError) -> Response {
    let dpop = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .is_some_and(|(scheme, _)| scheme.eq_ignore_ascii_case("DPoP"));
    let challenge = (err.problem.kind() == Some(ProblemType::InsufficientUserAuthentication))
        .then(|| broker.step_up_challenge(&err.problem.detail))
        .map(|c| match c.strip_prefix("Bearer ") {
            Some(params) if dpop => format!("DPoP {params}"),
            _ => c,
        })
        .and_then(|c| HeaderValue::from_str(&c).ok());
    let mut response = err.into_response();
    if let Some(challenge) = challenge {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, challenge);
    }
    response
}

/// What a DPoP check reads from a request's head.
fn dpop_request(parts: &Parts) -> DpopRequest<'_> {
    let mut proofs = parts.headers.get_all(posture::dpop::DPOP_HEADER).iter();
    let proof = match (proofs.next(), proofs.next()) {
        (None, _) => Ok(None),
        (Some(one), None) => Ok(Some(one.to_str().unwrap_or(""))),
        (Some(_), Some(_)) => Err(()),
    };
    DpopRequest {
        authorization: parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok()),
        proof,
        method: parts.method.as_str(),
        path: parts.uri.path(),
    }
}

/// A user calling from one of its enrolled devices: `Authorization: DPoP`
/// and a proof signed by the device key.
#[derive(Debug, Clone)]
pub struct FromDevice(pub DeviceCaller);

impl FromRequestParts<Arc<Broker>> for FromDevice {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, broker: &Arc<Broker>) -> Result<Self, Response> {
        match broker.authenticate_device(dpop_request(parts)).await {
            Ok(mut caller) => {
                let peer = parts
                    .extensions
                    .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                    .map(|c| c.0.ip());
                let forwarded = parts
                    .headers
                    .get("x-forwarded-for")
                    .and_then(|v| v.to_str().ok());
                caller.source = broker.source_of(peer, forwarded);
                Ok(FromDevice(caller))
            }
            Err(err) => Err(refuse_caller(broker, parts, err)),
        }
    }
}

/// A user enrolling a key, with a DPoP proof signed by that key.
#[derive(Debug, Clone)]
pub struct Enrolling(pub Enroller);

impl FromRequestParts<Arc<Broker>> for Enrolling {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, broker: &Arc<Broker>) -> Result<Self, Response> {
        match broker.authenticate_enrolment(dpop_request(parts)).await {
            Ok(enroller) => Ok(Enrolling(enroller)),
            Err(err) => Err(refuse_caller(broker, parts, err)),
        }
    }
}

/// An administrator, authenticated by their admin token: their name.
#[derive(Debug, Clone)]
pub struct Admin(pub String);

impl FromRequestParts<Arc<Broker>> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, broker: &Arc<Broker>) -> Result<Self, ApiError> {
        let auth = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        broker.authorize_admin(auth).map(Admin)
    }
}

/// A JSON body of at most [`MAX_BODY_BYTES`], with problem-type rejections.
#[derive(Debug)]
pub struct Body<T>(pub T);

impl<T: DeserializeOwned> FromRequest<Arc<Broker>> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, broker: &Arc<Broker>) -> Result<Self, ApiError> {
        let path = req.uri().path().to_owned();
        let result = read_json(req).await;
        if let Err(err) = &result {
            let mut err = err.clone();
            err.problem.detail = format!("{} {path}: {}", "request", err.problem.detail);
            broker.deny("request", None, None, &err);
        }
        result.map(Body)
    }
}

async fn read_json<T: DeserializeOwned>(req: Request) -> Result<T, ApiError> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = content_type.split(';').next().unwrap_or("").trim();
    if !mime.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::new(
            ProblemType::UnsupportedMediaType,
            format!("content type {content_type:?}; send application/json"),
        ));
    }
    let too_large = || {
        ApiError::new(
            ProblemType::BodyTooLarge,
            format!("the body exceeds {MAX_BODY_BYTES} bytes"),
        )
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES) {
        return Err(too_large());
    }
    // The limit also holds for chunked bodies without a Content-Length.
    let bytes = axum::body::to_bytes(req.into_body(), MAX_BODY_BYTES)
        .await
        .map_err(|_| too_large())?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::new(ProblemType::MalformedRequest, e.to_string()))
}

/// The router over a broker.
pub fn router(broker: Arc<Broker>) -> Router {
    let limit = broker.clone();
    Router::new()
        .route(paths::CONFIG, get(get_config))
        .route(paths::DEVICES, post(enrol))
        .route(paths::CHALLENGE, post(challenge))
        .route(paths::ATTESTATIONS, post(attest))
        .route(paths::POLICY, get(get_policy))
        .route(paths::GRANTS, post(open_grant))
        .route("/v1/grants/{id}", delete(close_grant))
        .route(paths::EVENTS, get(events))
        .route(paths::APPS, get(apps))
        .route(paths::GATEWAY_SYNC, get(super::gateway_sync::sync))
        .route(paths::ADMIN_REVOCATIONS, post(revoke))
        .route(paths::ADMIN_AUDIT, get(audit))
        .route(paths::ADMIN_POLICY_RELOAD, post(reload_policy))
        .route(paths::ADMIN_GATEWAY_PEERS, get(gateway_peers))
        .route(paths::ADMIN_DEVICES, get(admin_devices))
        .route(paths::ADMIN_DEVICE_APPROVE, post(approve_device))
        .route(paths::ADMIN_SUPPORT, get(admin_support))
        .route(paths::ADMIN_REVOCATIONS_CLEAR, post(clear_revocation))
        .fallback(not_found)
        .layer(axum::middleware::from_fn(
            move |req: Request, next: axum::middleware::Next| {
                let broker = limit.clone();
                async move {
                    // Header names, values and their separators, as sent.
                    let bytes: usize = req
                        .headers()
                        .iter()
                        .map(|(name, value)| name.as_str().len() + value.len() + 4)
                        .sum();
                    match broker.check_header_size(bytes) {
                        Ok(()) => next.run(req).await,
                        Err(e) => e.into_response(),
                    }
                }
            },
        ))
        .with_state(broker)
}

async fn not_found(req: Request) -> ApiError {
    ApiError::new(
        ProblemType::NotFound,
        format!("{} {} is not a broker call", req.method(), req.uri().path()),
    )
}

async fn get_config(broker: State) -> Json<api::BrokerConfig> {
    Json(broker.config())
}

async fn get_policy(broker: State) -> Json<api::PolicyDocument> {
    Json(broker.policy_document())
}

async fn enrol(
    broker: State,
    Enrolling(caller): Enrolling,
    Body(req): Body<EnrolRequest>,
) -> Result<(StatusCode, Json<api::Device>), ApiError> {
    let (created, device) = broker.enrol(&caller, &req)?;
    // 202: recorded, but not usable until an administrator approves it.
    let status = match (device.status, created) {
        (DeviceStatus::Pending, _) => StatusCode::ACCEPTED,
        (_, true) => StatusCode::CREATED,
        (_, false) => StatusCode::OK,
    };
    Ok((status, Json(device)))
}

async fn challenge(
    broker: State,
    FromDevice(caller): FromDevice,
) -> Result<Json<api::Challenge>, ApiError> {
    Ok(Json(broker.challenge(&caller.user)?))
}

async fn attest(
    broker: State,
    FromDevice(caller): FromDevice,
    Body(req): Body<AttestationRequest>,
) -> Result<Json<api::Verdict>, ApiError> {
    Ok(Json(broker.attest(&caller, &req).await?))
}

async fn open_grant(
    broker: State,
    FromDevice(caller): FromDevice,
    Body(req): Body<GrantRequest>,
) -> Result<(StatusCode, Json<api::Grant>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(broker.open_grant(&caller, &req).await?),
    ))
}

async fn close_grant(
    broker: State,
    FromDevice(caller): FromDevice,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    broker.close_grant(&caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
struct EventsQuery {
    device_id: String,
}

/// How often an open event stream checks, on the broker's clock, whether the
/// token it was opened with has expired (or its sign-in grown too old).
const STREAM_CHECK: Duration = Duration::from_secs(1);
/// Keep-alive comments on an idle stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Every this many checks (one keep-alive interval) the stream also re-reads
/// the store (revocations, the device): a safety net under the event hub,
/// which ends streams at once when an admin revokes.
const STORE_CHECK_EVERY: u32 = 15;

/// What drives an event stream: an event from the hub, or a check tick.
enum StreamInput {
    Event(Result<Routed, BroadcastStreamRecvError>),
    Tick,
}

async fn apps(
    broker: State,
    FromDevice(caller): FromDevice,
    query: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<Json<api::AppsDocument>, ApiError> {
    let Query(query) = query.map_err(|e| {
        ApiError::new(
            ProblemType::MalformedRequest,
            format!("GET /v1/apps?device_id=<id>: {e}"),
        )
    })?;
    Ok(Json(broker.apps_document(&caller, &query.device_id)?))
}

async fn events(
    broker: State,
    FromDevice(caller): FromDevice,
    query: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Query(query) = query.map_err(|e| {
        ApiError::new(
            ProblemType::MalformedRequest,
            format!("GET /v1/events?device_id=<id>: {e}"),
        )
    })?;
    // One place among the user's streams, given back when the stream ends.
    let slot = broker.acquire_stream(&caller.user.sub)?;
    let rx = broker.subscribe(&caller, &query.device_id)?;
    let user = caller.user;
    let broker = broker.0.clone();
    let device_id = query.device_id;
    let deadline = broker.stream_deadline(&user);
    let ticks = IntervalStream::new(tokio::time::interval_at(
        tokio::time::Instant::now() + STREAM_CHECK,
        STREAM_CHECK,
    ))
    .map(|_| StreamInput::Tick);
    let (mut ending, mut checks) = (false, 0u32);
    // The stream ends (the agent reconnects with a fresh token and re-reads
    // its state) when: the token it was opened with expires, the user's
    // sessions or the device are revoked (after delivering that event), or
    // it lags behind the hub (rather than silently missing a revocation).
    let stream = BroadcastStream::new(rx)
        .map(StreamInput::Event)
        .merge(ticks)
        .map_while(move |input| {
            let _held = &slot;
            if ending {
                return None;
            }
            match input {
                StreamInput::Event(Err(_lagged)) => None,
                StreamInput::Event(Ok(routed)) => {
                    if !routed.is_for(&user.sub, &device_id) {
                        return Some(None);
                    }
                    ending = routed.ends_stream;
                    let data = serde_json::to_string(&routed.event).unwrap_or_default();
                    Some(Some(
                        SseEvent::default().event(routed.event.name()).data(data),
                    ))
                }
                StreamInput::Tick => {
                    checks = checks.wrapping_add(1);
                    let due = broker.clock_now() >= deadline;
                    if (due || checks % STORE_CHECK_EVERY == 0)
                        && broker.stream_standing(&user, &device_id).is_err()
                    {
                        return None;
                    }
                    Some(None)
                }
            }
        })
        .filter_map(|event| event.map(Ok::<_, Infallible>));
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}

async fn revoke(
    broker: State,
    Admin(admin): Admin,
    Body(req): Body<RevocationRequest>,
) -> Result<Json<api::RevocationResult>, ApiError> {
    Ok(Json(broker.revoke(&req, &admin).await?))
}

#[derive(Debug, Deserialize)]
struct AuditQuery {
    #[serde(default = "default_limit")]
    limit: u32,
    /// The cursor: entries after this `seq`, oldest first.
    #[serde(default)]
    after: Option<i64>,
}

fn default_limit() -> u32 {
    100
}

async fn audit(
    broker: State,
    _: Admin,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Json<Vec<api::AuditEntry>>, ApiError> {
    let Query(query) = query.map_err(|e| {
        ApiError::new(
            ProblemType::MalformedRequest,
            format!("GET /v1/admin/audit?after=<seq>&limit=<n>: {e}"),
        )
    })?;
    Ok(Json(match query.after {
        Some(after) => broker.audit_since(after, query.limit)?,
        None => broker.audit_recent(query.limit)?,
    }))
}

async fn reload_policy(
    broker: State,
    Admin(admin): Admin,
) -> Result<Json<api::PolicyDocument>, ApiError> {
    Ok(Json(broker.reload_policy(&admin).await?))
}

#[derive(Debug, Deserialize)]
struct DevicesQuery {
    #[serde(default)]
    state: Option<DeviceStatus>,
}

async fn admin_support(
    broker: State,
    _: Admin,
    Path(code): Path<String>,
) -> Result<Json<Vec<api::DeviceSupport>>, ApiError> {
    Ok(Json(broker.device_support(&code)?))
}

async fn admin_devices(
    broker: State,
    _: Admin,
    query: Result<Query<DevicesQuery>, QueryRejection>,
) -> Result<Json<Vec<api::AdminDevice>>, ApiError> {
    let Query(query) = query.map_err(|e| {
        ApiError::new(
            ProblemType::MalformedRequest,
            format!("GET /v1/admin/devices?state=pending|active|revoked: {e}"),
        )
    })?;
    Ok(Json(broker.admin_devices(query.state)?))
}

async fn approve_device(
    broker: State,
    Admin(admin): Admin,
    Path(id): Path<String>,
) -> Result<Json<api::AdminDevice>, ApiError> {
    Ok(Json(broker.approve_device(&id, &admin)?))
}

async fn clear_revocation(
    broker: State,
    Admin(admin): Admin,
    Body(req): Body<RevocationClearRequest>,
) -> Result<Json<api::RevocationClearResult>, ApiError> {
    Ok(Json(broker.clear_revocation(&req, &admin)?))
}

async fn gateway_peers(broker: State, _: Admin) -> Json<Vec<api::GatewayPeer>> {
    Json(broker.gateway_peers())
}
