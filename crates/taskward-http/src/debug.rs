//! `/debug/tasks`: the live tasks of the process, as bounded JSON: counts per scope and
//! the oldest tasks, a page at a time.
//!
//! Read [`tasks_router`]. It is not served by default: task names carry client
//! addresses and spawn sites carry source paths, and a full list grows with the
//! connections open. Serve it only where operators alone can reach it (see
//! [`Worker::debug_tasks`](crate::Worker::debug_tasks)).

use std::collections::HashMap;

use axum::Router;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use taskward::TaskSnapshot;

/// The tasks listed per page when the query does not say.
pub const DEFAULT_PAGE: usize = 50;
/// The most tasks one page lists, whatever the query asks.
pub const MAX_PAGE: usize = 500;
/// The most scopes counted one by one; the rest are summed up in `scopes_left_out`.
pub const MAX_SCOPES: usize = 100;

/// A router serving the process's live tasks at `path` as JSON, bounded whatever the
/// number of tasks:
///
/// ```json
/// { "total": 10003,
///   "scopes": [ { "scope": "app/http", "tasks": 10000 }, … ],   // most tasks first
///   "scopes_left_out": 0,
///   "tasks": [ { "id": 7, "name": "writer", "scope": "app", "age_ms": 5120, … }, … ],
///   "offset": 0, "limit": 50, "next_offset": 50 }                // null on the last page
/// ```
///
/// `tasks` are the oldest first (the ones most likely stuck), `limit` at a time
/// (`?limit=N`, at most [`MAX_PAGE`], by default [`DEFAULT_PAGE`]), from `?offset=N`. A
/// bad query is a 400 naming the parameter.
///
/// # Examples
///
/// ```
/// use axum::Router;
/// use axum::routing::get;
///
/// // Merged into an internal router, served on a loopback-only listener.
/// let admin: Router = taskward_http::debug::tasks_router("/debug/tasks")
///     .route("/", get(|| async { "admin" }));
/// ```
pub fn tasks_router(path: &str) -> Router {
    Router::new().route(path, get(|uri: Uri| async move { listing(uri.query()) }))
}

/// The page asked for by `query`, or why it cannot be given.
fn page(query: Option<&str>) -> Result<(usize, usize), String> {
    let (mut offset, mut limit) = (0, DEFAULT_PAGE);
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let number = || {
            value
                .parse::<usize>()
                .map_err(|_| format!("{key}: expected a non-negative integer, found {value:?}"))
        };
        match key {
            "offset" => offset = number()?,
            "limit" => limit = number()?.min(MAX_PAGE),
            _ => {
                return Err(format!(
                    "unknown parameter {key:?} (expected offset, limit)"
                ));
            }
        }
    }
    Ok((offset, limit))
}

fn listing(query: Option<&str>) -> Response {
    let (offset, limit) = match page(query) {
        Ok(page) => page,
        Err(message) => return (StatusCode::BAD_REQUEST, format!("{message}\n")).into_response(),
    };
    let mut tasks = taskward::snapshot().tasks;
    let total = tasks.len();

    let mut per_scope: HashMap<&str, usize> = HashMap::new();
    for task in &tasks {
        *per_scope.entry(task.scope.as_str()).or_default() += 1;
    }
    let mut scopes: Vec<(&str, usize)> = per_scope.into_iter().collect();
    scopes.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let scopes_left_out = scopes.len().saturating_sub(MAX_SCOPES);
    scopes.truncate(MAX_SCOPES);
    let scopes: Vec<_> = scopes
        .iter()
        .map(|(scope, count)| json!({ "scope": scope, "tasks": count }))
        .collect();

    let page = oldest(&mut tasks, offset, limit);
    let end = offset.saturating_add(page.len());
    let body = json!({
        "total": total,
        "scopes": scopes,
        "scopes_left_out": scopes_left_out,
        "tasks": page,
        "offset": offset,
        "limit": limit,
        "next_offset": (end < total).then_some(end),
    });
    axum::Json(body).into_response()
}

/// Tasks `offset..offset + limit` of `tasks` ordered oldest first (ties by id), without
/// sorting all of them.
fn oldest(tasks: &mut [TaskSnapshot], offset: usize, limit: usize) -> &[TaskSnapshot] {
    let order = |a: &TaskSnapshot, b: &TaskSnapshot| b.age.cmp(&a.age).then(a.id.cmp(&b.id));
    let end = offset.saturating_add(limit).min(tasks.len());
    if offset >= end {
        return &[];
    }
    if end < tasks.len() {
        tasks.select_nth_unstable_by(end, order);
    }
    let head = &mut tasks[..end];
    head.sort_unstable_by(order);
    &head[offset..end]
}

#[cfg(test)]
mod tests {
    use super::{MAX_PAGE, page};

    // Asserts: paging is read from the query, capped, and a bad value or an unknown
    // parameter is named in the error.
    #[test]
    fn the_query_picks_a_bounded_page() {
        assert_eq!(page(None), Ok((0, 50)));
        assert_eq!(page(Some("offset=10&limit=5")), Ok((10, 5)));
        assert_eq!(page(Some("limit=100000")), Ok((0, MAX_PAGE)));
        let bad = page(Some("limit=-1")).expect_err("negative");
        assert!(bad.contains("limit") && bad.contains("-1"), "{bad}");
        let unknown = page(Some("all=1")).expect_err("unknown");
        assert!(unknown.contains("\"all\""), "{unknown}");
    }
}
