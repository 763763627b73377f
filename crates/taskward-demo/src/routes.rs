//! The HTTP API: items (write through the batching writer, read through the cache), the
//! upstream call, the built-in upstream, and JSON errors.
//!
//! Read [`router`].

use std::time::Duration;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use taskward_http::{Body, Client, ClientError};

use crate::cache::Cache;
use crate::db::{Db, SharedDb, off_thread};
use crate::writer::{WriteError, Writer};

/// What the handlers share.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) db: SharedDb,
    pub(crate) cache: Cache,
    pub(crate) writer: Writer,
    pub(crate) client: Client,
    /// Where `GET /upstream` goes: the configured upstream, or this worker's own
    /// `/builtin` at the address it serves (never one taken from the request); `None`
    /// when neither exists (a worker on unix sockets only, with no `--upstream`).
    pub(crate) upstream: Option<String>,
}

/// The service's routes (health endpoints are added by `taskward_http::Worker`); every
/// error, unknown routes included, is a JSON body `{"error": …}`.
pub(crate) fn router(state: AppState) -> Router {
    Router::new()
        .route("/items", get(list_items).post(create_item))
        .route("/items/{id}", get(get_item))
        .route("/stats", get(stats))
        .route("/upstream", get(upstream))
        .route("/builtin", get(builtin))
        .fallback(|| async { ApiError(StatusCode::NOT_FOUND, "no such route".into()) })
        .method_not_allowed_fallback(|| async {
            ApiError(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed here".into(),
            )
        })
        .with_state(state)
}

/// An error answer: a status and a JSON body naming what was wrong.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

fn bad_request(error: impl std::fmt::Display) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, error.to_string())
}

fn internal(error: String) -> ApiError {
    ApiError(StatusCode::INTERNAL_SERVER_ERROR, error)
}

#[derive(Deserialize)]
struct NewItem {
    name: String,
}

async fn create_item(
    State(state): State<AppState>,
    body: Result<Json<NewItem>, JsonRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let Json(item) = body.map_err(|rejection| match rejection.status() {
        // Too large, or not JSON at all: its own status; any other flaw is a 400.
        status @ (StatusCode::PAYLOAD_TOO_LARGE | StatusCode::UNSUPPORTED_MEDIA_TYPE) => {
            ApiError(status, rejection.body_text())
        }
        _ => bad_request(rejection.body_text()),
    })?;
    if item.name.is_empty() || item.name.len() > 1_000 {
        return Err(bad_request("name: expected 1 to 1000 bytes"));
    }
    // Not queued while the database is not open: the writer could not commit it, and
    // the request would wait for as long as `init_db` keeps failing.
    ready_db(&state)?;
    match state.writer.write(item.name).await {
        Ok(item) => Ok((StatusCode::CREATED, Json(json!(item)))),
        Err(WriteError::Stopped) => Err(ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting down: not stored".into(),
        )),
        Err(WriteError::Failed(error)) => Err(internal(error)),
    }
}

async fn get_item(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Path(id) = id.map_err(|rejection| bad_request(rejection.body_text()))?;
    if let Some(item) = state.cache.get(id) {
        return Ok(Json(json!(item)));
    }
    let db = ready_db(&state)?;
    let found = off_thread(move || db.get(id)).await.map_err(internal)?;
    match found {
        Some(item) => {
            state.cache.put([item.clone()]);
            Ok(Json(json!(item)))
        }
        None => Err(ApiError(StatusCode::NOT_FOUND, format!("no item {id}"))),
    }
}

#[derive(Deserialize)]
struct Limit {
    limit: Option<usize>,
}

async fn list_items(
    State(state): State<AppState>,
    query: Result<Query<Limit>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(Limit { limit }) = query.map_err(|rejection| bad_request(rejection.body_text()))?;
    let limit = limit.unwrap_or(20);
    if !(1..=1_000).contains(&limit) {
        return Err(bad_request("limit: expected 1 to 1000"));
    }
    // From the database, not the cache: each worker process has its own cache, holding
    // what it wrote and read, so only the database knows the newest items written through
    // every worker. What the list returns fills the cache for `GET /items/{id}`.
    let db = ready_db(&state)?;
    let items = off_thread(move || db.latest(limit))
        .await
        .map_err(internal)?;
    state.cache.put(items.iter().cloned());
    Ok(Json(json!({ "items": items })))
}

/// This worker's cache statistics, with its pid: each worker process has its own cache,
/// and which one answered depends on the connection.
async fn stats(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(json!({ "pid": std::process::id(), "cache": state.cache.stats() }))
}

/// Calls the upstream with the taskward client (its short timeout applies); a timeout is
/// a 504, other failures a 502.
async fn upstream(State(state): State<AppState>) -> Result<String, ApiError> {
    let url = state.upstream.clone().ok_or_else(|| {
        ApiError(
            StatusCode::BAD_GATEWAY,
            "no upstream: set --upstream (this worker serves no TCP address for /builtin)".into(),
        )
    })?;
    let call = http::Request::get(&url).body(Body::empty()).map_err(|e| {
        ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("upstream {url}: {e}"),
        )
    })?;
    let response = state
        .client
        .request(call)
        .await
        .map_err(|error| match error {
            ClientError::Timeout(after) => ApiError(
                StatusCode::GATEWAY_TIMEOUT,
                format!("upstream {url}: no answer within {after:?}"),
            ),
            other => ApiError(
                StatusCode::BAD_GATEWAY,
                format!("upstream {url}: {}", crate::error_chain(&other)),
            ),
        })?;
    let status = response.status();
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .map_err(|e| ApiError(StatusCode::BAD_GATEWAY, format!("upstream {url}: {e}")))?
        .to_bytes();
    Ok(format!(
        "upstream answered {status}: {}",
        String::from_utf8_lossy(&body)
    ))
}

#[derive(Deserialize)]
struct Delay {
    ms: Option<u64>,
}

/// The longest `/builtin?ms=` delay: enough to outlast the client's timeouts, too short
/// for a caller to hold a worker's shutdown.
const BUILTIN_MAX_MS: u64 = 2_000;

/// The built-in upstream: answers after `?ms=` milliseconds (default 5, at most
/// [`BUILTIN_MAX_MS`]).
async fn builtin(query: Result<Query<Delay>, QueryRejection>) -> Result<&'static str, ApiError> {
    let Query(Delay { ms }) = query.map_err(|rejection| bad_request(rejection.body_text()))?;
    let ms = ms.unwrap_or(5);
    if ms > BUILTIN_MAX_MS {
        return Err(bad_request(format!(
            "ms: expected at most {BUILTIN_MAX_MS}"
        )));
    }
    tokio::time::sleep(Duration::from_millis(ms)).await;
    Ok("ok")
}

fn ready_db(state: &AppState) -> Result<Db, ApiError> {
    state.db.get().ok_or_else(|| {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "starting: the database is not ready".into(),
        )
    })
}
