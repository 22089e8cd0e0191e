//! The admin listener: health and readiness (open, for load balancers and probes),
//! the API's OpenAPI document (open: it holds no data), the session API and
//! Prometheus `/metrics` (behind [`AdminAccess`]), and the web console (`console.rs`).

mod console;
mod sessions;

use crate::auth::{Auth, bearer_token};
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use lodge_runtime::Runtime;
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// Who may use the admin API: the holder of the `[admin] token_file` token, or of an
/// `[auth]` token with the admin scope. With neither, anyone who reaches the listener
/// (which `lodge serve` then binds only to loopback).
#[derive(Clone, Debug, Default)]
pub struct AdminAccess {
    pub token: Option<String>,
    pub oauth: Option<(Arc<Auth>, String)>,
}

impl AdminAccess {
    pub fn is_open(&self) -> bool {
        self.token.is_none() && self.oauth.is_none()
    }

    async fn admits(&self, headers: &HeaderMap) -> Result<(), String> {
        if self.is_open() {
            return Ok(());
        }
        let presented = bearer_token(headers)
            .map_err(|e| e.to_string())?
            .ok_or("the admin API needs Authorization: Bearer TOKEN")?;
        if let Some(token) = &self.token
            && same_secret(presented, token)
        {
            return Ok(());
        }
        if let Some((auth, scope)) = &self.oauth {
            let audience = [auth.config().resource.clone()];
            return match auth
                .validate(presented, &audience, std::slice::from_ref(scope))
                .await
            {
                Ok(_) => Ok(()),
                Err(e) => Err(e.to_string()),
            };
        }
        Err("the admin token is not valid".into())
    }
}

/// Compares secrets in time that does not depend on where they differ.
fn same_secret(a: &str, b: &str) -> bool {
    let (a, b) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

async fn guard(State(access): State<Arc<AdminAccess>>, request: Request, next: Next) -> Response {
    match access.admits(request.headers()).await {
        Ok(()) => next.run(request).await,
        Err(why) => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, r#"Bearer realm="lodge-admin""#)],
            json(serde_json::json!({ "error": why })),
        )
            .into_response(),
    }
}

pub fn admin_router(runtime: Arc<Runtime>, access: AdminAccess) -> Router {
    let access = Arc::new(access);
    let api = Router::new()
        .route("/admin/sessions", get(sessions::list))
        .route("/admin/history", console::history(&runtime))
        .route(
            "/admin/sessions/{id}",
            get(sessions::show).delete(sessions::stop),
        )
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state(access, guard));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/admin/openapi.json", get(openapi))
        .merge(api)
        .merge(console::routes())
        .with_state(runtime)
}

/// Prometheus metrics (text format 0.0.4). The gauges of sandbox memory and warm
/// pools are read now, the rest is counted as it happens.
async fn metrics(State(runtime): State<Arc<Runtime>>) -> Response {
    let memory = sessions::memory_by_server(&runtime.sessions()).await;
    let metrics = runtime.metrics();
    for server in runtime.servers() {
        let name = &server.spec.name;
        let bytes = memory.get(name).copied().unwrap_or(0);
        metrics.set_scraped(name, bytes, server.warm_pool_ready());
    }
    if let Some(audit) = &runtime.config().audit {
        metrics.set_audit_lost(audit.lost());
    }
    (
        [(header::CONTENT_TYPE, lodge_runtime::Metrics::CONTENT_TYPE)],
        metrics.encode(),
    )
        .into_response()
}

/// The admin API, described for tools (hand-written: it is small and stable).
async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("openapi.json"),
    )
        .into_response()
}

async fn readyz(State(runtime): State<Arc<Runtime>>) -> Response {
    if runtime.is_draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response()
    } else {
        "ready\n".into_response()
    }
}

pub(crate) fn json(value: serde_json::Value) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}
