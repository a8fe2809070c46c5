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
use tokio_stream::wrappers::BroadcastStream;

use super::service::{ApiError, Broker};
use super::token::AccessClaims;
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
        if status == StatusCode::UNAUTHORIZED
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

/// The caller, authenticated by its Bearer access token.
#[derive(Debug, Clone)]
pub struct Caller(pub AccessClaims);

impl FromRequestParts<Arc<Broker>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, broker: &Arc<Broker>) -> Result<Self, ApiError> {
        let auth = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        broker.authenticate(auth).await.map(Caller)
    }
}

/// An administrator, authenticated by the admin token.
#[derive(Debug, Clone, Copy)]
pub struct Admin;

impl FromRequestParts<Arc<Broker>> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, broker: &Arc<Broker>) -> Result<Self, ApiError> {
        let auth = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        broker.authorize_admin(auth).map(|()| Admin)
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
    Router::new()
        .route(paths::CONFIG, get(get_config))
        .route(paths::DEVICES, post(enrol))
        .route(paths::CHALLENGE, post(challenge))
        .route(paths::ATTESTATIONS, post(attest))
        .route(paths::POLICY, get(get_policy))
        .route(paths::GRANTS, post(open_grant))
        .route("/v1/grants/{id}", delete(close_grant))
        .route(paths::EVENTS, get(events))
        .route(paths::ADMIN_REVOCATIONS, post(revoke))
        .route(paths::ADMIN_AUDIT, get(audit))
        .route(paths::ADMIN_POLICY_RELOAD, post(reload_policy))
        .route(paths::ADMIN_GATEWAY_PEERS, get(gateway_peers))
        .route(paths::ADMIN_DEVICES, get(admin_devices))
        .route(paths::ADMIN_DEVICE_APPROVE, post(approve_device))
        .route(paths::ADMIN_REVOCATIONS_CLEAR, post(clear_revocation))
        .fallback(not_found)
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
    Caller(user): Caller,
    Body(req): Body<EnrolRequest>,
) -> Result<(StatusCode, Json<api::Device>), ApiError> {
    let (created, device) = broker.enrol(&user, &req)?;
    // 202: recorded, but not usable until an administrator approves it.
    let status = match (device.status, created) {
        (DeviceStatus::Pending, _) => StatusCode::ACCEPTED,
        (_, true) => StatusCode::CREATED,
        (_, false) => StatusCode::OK,
    };
    Ok((status, Json(device)))
}

async fn challenge(broker: State, Caller(user): Caller) -> Result<Json<api::Challenge>, ApiError> {
    Ok(Json(broker.challenge(&user)?))
}

async fn attest(
    broker: State,
    Caller(user): Caller,
    Body(req): Body<AttestationRequest>,
) -> Result<Json<api::Verdict>, ApiError> {
    Ok(Json(broker.attest(&user, &req).await?))
}

async fn open_grant(
    broker: State,
    Caller(user): Caller,
    Body(req): Body<GrantRequest>,
) -> Result<(StatusCode, Json<api::Grant>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(broker.open_grant(&user, &req).await?),
    ))
}

async fn close_grant(
    broker: State,
    Caller(user): Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    broker.close_grant(&user, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
struct EventsQuery {
    device_id: String,
}

async fn events(
    broker: State,
    Caller(user): Caller,
    query: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Query(query) = query.map_err(|e| {
        ApiError::new(
            ProblemType::MalformedRequest,
            format!("GET /v1/events?device_id=<id>: {e}"),
        )
    })?;
    let rx = broker.subscribe(&user, &query.device_id)?;
    let (sub, device_id) = (user.sub, query.device_id);
    // A lagging subscriber's stream ends (the agent reconnects and re-reads
    // its state) rather than silently missing a revocation.
    let stream = BroadcastStream::new(rx)
        .take_while(Result::is_ok)
        .filter_map(move |item| {
            let routed = item.ok()?;
            routed.is_for(&sub, &device_id).then(|| {
                let data = serde_json::to_string(&routed.event).unwrap_or_default();
                Ok::<_, Infallible>(SseEvent::default().event(routed.event.name()).data(data))
            })
        });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

async fn revoke(
    broker: State,
    _: Admin,
    Body(req): Body<RevocationRequest>,
) -> Result<Json<api::RevocationResult>, ApiError> {
    Ok(Json(broker.revoke(&req).await?))
}

#[derive(Debug, Deserialize)]
struct AuditQuery {
    #[serde(default = "default_limit")]
    limit: u32,
}

fn default_limit() -> u32 {
    100
}

async fn audit(
    broker: State,
    _: Admin,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Json<Vec<api::AuditEntry>>, ApiError> {
    let limit = query.map(|Query(q)| q.limit).unwrap_or(100);
    Ok(Json(broker.audit_recent(limit)?))
}

async fn reload_policy(broker: State, _: Admin) -> Result<Json<api::PolicyDocument>, ApiError> {
    Ok(Json(broker.reload_policy().await?))
}

#[derive(Debug, Deserialize)]
struct DevicesQuery {
    #[serde(default)]
    state: Option<DeviceStatus>,
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
    _: Admin,
    Path(id): Path<String>,
) -> Result<Json<api::AdminDevice>, ApiError> {
    Ok(Json(broker.approve_device(&id)?))
}

async fn clear_revocation(
    broker: State,
    _: Admin,
    Body(req): Body<RevocationClearRequest>,
) -> Result<Json<api::RevocationClearResult>, ApiError> {
    Ok(Json(broker.clear_revocation(&req)?))
}

async fn gateway_peers(broker: State, _: Admin) -> Json<Vec<api::GatewayPeer>> {
    Json(broker.gateway_peers())
}
