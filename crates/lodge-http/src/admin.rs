//! The admin listener: health, readiness, and the session list with a stop button.
//! Bind it to loopback or a private network: it has no authentication of its own yet.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use lodge_runtime::{EndReason, Lookup, Runtime, SessionHandle};
use std::sync::Arc;

pub fn admin_router(runtime: Arc<Runtime>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/admin/sessions", get(list))
        .route("/admin/sessions/{id}", get(show).delete(stop))
        .with_state(runtime)
}

async fn readyz(State(runtime): State<Arc<Runtime>>) -> Response {
    if runtime.is_draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response()
    } else {
        "ready\n".into_response()
    }
}

fn describe(session: &SessionHandle) -> serde_json::Value {
    serde_json::json!({
        "id": session.id(),
        "server": session.server(),
        "age_seconds": session.created().elapsed().as_secs(),
        "in_flight": session.in_flight(),
        "protocol_version": session.protocol_version(),
    })
}

fn json(value: serde_json::Value) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

async fn list(State(runtime): State<Arc<Runtime>>) -> Response {
    let mut sessions: Vec<_> = runtime.sessions();
    sessions.sort_by_key(|s| s.created());
    json(serde_json::json!({ "sessions": sessions.iter().map(describe).collect::<Vec<_>>() }))
}

fn not_found(id: &str, lookup: Lookup) -> Response {
    let message = match lookup {
        Lookup::Ended(reason) => format!("session {id} ended: {reason}"),
        _ => format!("no session {id}"),
    };
    (
        StatusCode::NOT_FOUND,
        json(serde_json::json!({ "error": message })),
    )
        .into_response()
}

async fn show(State(runtime): State<Arc<Runtime>>, Path(id): Path<String>) -> Response {
    match runtime.lookup(&id) {
        Lookup::Live(session) => json(describe(&session)),
        other => not_found(&id, other),
    }
}

async fn stop(State(runtime): State<Arc<Runtime>>, Path(id): Path<String>) -> Response {
    match runtime.lookup(&id) {
        Lookup::Live(session) => {
            session.stop(EndReason::Stopped).await;
            StatusCode::NO_CONTENT.into_response()
        }
        other => not_found(&id, other),
    }
}
