//! The node's HTTP face. For now: `GET /api/trace/{handle}`, the trace answer of design
//! section 2 (the REST API, HTTPS and device registration come with the HTTP issue).

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use suyuan_codec::handle::Handle;
use suyuan_codec::message::rc;
use suyuan_registry::{Direction, Registry, RegistryError, TraceQuery};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Caps on what one trace request may ask for.
pub const MAX_DEPTH: u32 = 64;
pub const MAX_LIMIT: usize = 100_000;

#[derive(Clone)]
struct HttpState {
    registry: Arc<Registry>,
}

/// Serves HTTP until `shutdown` turns true.
pub async fn serve_http(
    listener: TcpListener,
    registry: Arc<Registry>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/api/trace/{*handle}", get(trace))
        .with_state(HttpState { registry });
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|s| *s).await;
        })
        .await
}

fn error(status: StatusCode, code: u32, handle: &str, message: String) -> Response {
    let body = json!({"responseCode": code, "handle": handle, "message": message});
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// Parses the query of a trace request (`direction`, `depth`, `limit`, `rel` repeatable,
/// `from`, `to`) into a query for `root`.
pub fn parse_trace_query(root: &str, raw: Option<&str>) -> Result<TraceQuery, String> {
    let mut direction = Direction::Up;
    let mut depth = TraceQuery::DEFAULT_DEPTH;
    let mut limit = TraceQuery::DEFAULT_LIMIT;
    let mut rels = Vec::new();
    let (mut from, mut to) = (None, None);
    for (k, v) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "direction" => {
                direction = match v.as_ref() {
                    "up" => Direction::Up,
                    "down" => Direction::Down,
                    other => return Err(format!("direction must be up or down, not {other:?}")),
                }
            }
            "depth" => {
                depth = v
                    .parse()
                    .ok()
                    .filter(|d| *d <= MAX_DEPTH)
                    .ok_or(format!("depth must be 0..={MAX_DEPTH}"))?
            }
            "limit" => {
                limit = v
                    .parse()
                    .ok()
                    .filter(|l| (1..=MAX_LIMIT).contains(l))
                    .ok_or(format!("limit must be 1..={MAX_LIMIT}"))?
            }
            "rel" => rels.push(v.into_owned()),
            "from" => from = Some(v.into_owned()),
            "to" => to = Some(v.into_owned()),
            other => return Err(format!("unknown parameter {other:?}")),
        }
    }
    let mut q = TraceQuery::new(root, direction)
        .with_window(from.as_deref(), to.as_deref())
        .map_err(|e| e.to_string())?;
    q.depth = depth;
    q.limit = limit;
    q.rels = rels;
    Ok(q)
}

async fn trace(
    State(s): State<HttpState>,
    Path(input): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let registry = s.registry.clone();
    let result = tokio::task::spawn_blocking(move || -> Result<Response, RegistryError> {
        // A handle is a handle; anything else (an OID, Ecode, GS1 Digital Link path) is looked
        // up in the alias index.
        let root = if Handle::parse(&input).is_ok() {
            input.clone()
        } else {
            match registry.alias(&input)? {
                Some(h) => h,
                None => {
                    return Ok(error(
                        StatusCode::NOT_FOUND,
                        rc::HANDLE_NOT_FOUND,
                        &input,
                        format!("{input}: no handle, and no identifier bound to one"),
                    ));
                }
            }
        };
        let q = match parse_trace_query(&root, raw.as_deref()) {
            Ok(q) => q,
            Err(m) => return Ok(error(StatusCode::BAD_REQUEST, rc::INVALID_VALUE, &input, m)),
        };
        // Anonymous callers see public values only.
        let t = registry.trace(&q, &|v| v.permissions.public_read())?;
        let body = serde_json::to_string(&t).unwrap_or_default();
        Ok((
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response())
    })
    .await;
    match result {
        Ok(Ok(r)) => r,
        Ok(Err(RegistryError::Refused { code, message })) if code == rc::HANDLE_NOT_FOUND => {
            error(StatusCode::NOT_FOUND, code, "", message)
        }
        Ok(Err(e)) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            rc::ERROR,
            "",
            e.to_string(),
        ),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            rc::ERROR,
            "",
            e.to_string(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters() {
        let q = parse_trace_query("88.888.1/r", Some("direction=down&depth=3&limit=9&rel=mrv.reports&rel=prov.used&from=2025-03&to=2025-04")).unwrap();
        assert_eq!(q.direction, Direction::Down);
        assert_eq!((q.depth, q.limit), (3, 9));
        assert_eq!(q.rels, vec!["mrv.reports", "prov.used"]);
        assert!(q.window.is_some());
        let d = parse_trace_query("x/y", None).unwrap();
        assert_eq!((d.direction, d.depth, d.limit), (Direction::Up, 16, 10_000));
        for bad in [
            "direction=left",
            "depth=999",
            "limit=0",
            "from=yesterday",
            "colour=red",
        ] {
            assert!(parse_trace_query("x/y", Some(bad)).is_err(), "{bad}");
        }
    }
}
