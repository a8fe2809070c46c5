//! `GET /v1/gateway/sync`: a separate gateway's peer set, as newline-
//! delimited JSON ([`GatewaySync`], one per line). The first line is the
//! full set; then each change, and a `ping` when nothing else was sent for
//! [`PING_EVERY`], so the gateway can tell a quiet broker from a dead link.
//! The stream ends when it falls behind the hub (the gateway reconnects and
//! starts again from a full set, rather than miss a removal).
//!
//! Why not SSE, like the agents' events: a gateway needs nothing SSE adds
//! (event names, ids, retry hints), and one JSON value per line needs no
//! parser beyond splitting on newlines.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::{BroadcastStream, IntervalStream};

use super::service::{ApiError, Broker};
use crate::api::GatewaySync;

/// How often a quiet stream says it is alive.
pub const PING_EVERY: Duration = Duration::from_secs(10);

/// The media type of the stream.
pub const NDJSON: &str = "application/x-ndjson";

/// What the stream is made of.
enum Input {
    /// A change from the hub (`None`: the stream fell behind).
    Change(Option<super::events::GatewayChange>),
    /// Time for a ping.
    Ping,
}

/// One line of the stream.
fn line(sync: &GatewaySync) -> Result<String, Infallible> {
    let mut text = serde_json::to_string(sync).unwrap_or_default();
    text.push('\n');
    Ok(text)
}

/// The handler.
pub async fn sync(
    broker: axum::extract::State<Arc<Broker>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let id = broker.authorize_gateway(auth)?;
    let (snapshot, changes) = broker.gateway_sync(&id)?;
    let pings = IntervalStream::new(tokio::time::interval_at(
        tokio::time::Instant::now() + PING_EVERY,
        PING_EVERY,
    ))
    .map(|_| Input::Ping);
    let changes = BroadcastStream::new(changes)
        .map(|change| Input::Change(change.ok()))
        .merge(pings)
        .map_while(move |input| match input {
            // Lagged: end (see the module documentation).
            Input::Change(None) => None,
            Input::Change(Some(change)) => Some(change.is_for(&id).then_some(change.sync)),
            Input::Ping => Some(Some(GatewaySync::Ping)),
        });
    let body = tokio_stream::once(Some(snapshot))
        .chain(changes)
        .filter_map(|sync| sync.as_ref().map(line));
    let mut response = Body::from_stream(body).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(NDJSON));
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}
