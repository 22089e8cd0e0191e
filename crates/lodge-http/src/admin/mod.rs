//! The admin listener: health and readiness (open, for load balancers and probes),
//! the API's OpenAPI document (open: it holds no data), the session API and
//! Prometheus `/metrics` (behind [`AdminAccess`]), and the web console (`console.rs`).

mod cluster;
mod console;
mod sessions;

pub use cluster::ClusterAdmin;
pub use sessions::session_rows;

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

/// What the admin listener serves besides the runtime: who may use it, the rest of
/// the cluster (cluster mode), and the drain switch `POST /admin/drain` flips.
#[derive(Clone, Default)]
pub struct AdminConfig {
    pub access: AdminAccess,
    pub cluster: Option<Arc<dyn ClusterAdmin>>,
    pub drain: crate::Drain,
    /// The deadline of a `POST /admin/drain` that names none.
    pub drain_deadline: Option<std::time::Duration>,
}

/// The admin handlers' state; most need only the runtime.
#[derive(Clone)]
pub(crate) struct AdminState {
    runtime: Arc<Runtime>,
    cluster: Option<Arc<dyn ClusterAdmin>>,
    drain: crate::Drain,
    drain_deadline: std::time::Duration,
}

impl axum::extract::FromRef<AdminState> for Arc<Runtime> {
    fn from_ref(state: &AdminState) -> Self {
        state.runtime.clone()
    }
}

pub fn admin_router(runtime: Arc<Runtime>, config: AdminConfig) -> Router {
    let access = Arc::new(config.access);
    let state = AdminState {
        runtime: runtime.clone(),
        cluster: config.cluster,
        drain: config.drain,
        drain_deadline: config.drain_deadline.unwrap_or(DEFAULT_DRAIN_DEADLINE),
    };
    let api = Router::new()
        .route("/admin/sessions", get(sessions::list))
        .route("/admin/drain", axum::routing::post(drain))
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
        .with_state(state)
}

/// A drain without a deadline of its own serves live sessions this long.
const DEFAULT_DRAIN_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30 * 60);

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DrainRequest {
    #[serde(default, with = "humantime_serde")]
    deadline: Option<std::time::Duration>,
}

/// `POST /admin/drain {"deadline": "30m"}`: no new sessions here from now on; live
/// ones are served until they end or the deadline passes; then Lodge stops.
async fn drain(State(state): State<AdminState>, body: axum::body::Bytes) -> Response {
    let request: DrainRequest = match body.iter().all(u8::is_ascii_whitespace) {
        true => DrainRequest::default(),
        false => match serde_json::from_slice(&body) {
            Ok(request) => request,
            Err(e) => {
                let error = format!("the body must be {{\"deadline\": \"30m\"}} or empty: {e}");
                return (
                    StatusCode::BAD_REQUEST,
                    json(serde_json::json!({ "error": error })),
                )
                    .into_response();
            }
        },
    };
    let deadline = request.deadline.unwrap_or(state.drain_deadline);
    state.runtime.drain();
    state.drain.request(deadline);
    tracing::info!(deadline = %humantime::format_duration(deadline), "draining: no new sessions; live ones are served until they end or the deadline passes");
    let body = serde_json::json!({
        "status": "draining",
        "sessions": state.runtime.live_sessions(),
        "deadline": humantime::format_rfc3339_seconds(std::time::SystemTime::now() + deadline).to_string(),
    });
    (StatusCode::ACCEPTED, json(body)).into_response()
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

/// 503 only when this node takes no new sessions (draining); a cluster whose store
/// is unreachable still serves its sessions: 200, saying what is degraded.
async fn readyz(State(state): State<AdminState>) -> Response {
    if state.runtime.is_draining() {
        return (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response();
    }
    match state.cluster.as_ref().and_then(|c| c.degraded()) {
        Some(redis) => json(serde_json::json!({ "status": "degraded", "redis": redis })),
        None => "ready\n".into_response(),
    }
}

pub(crate) fn json(value: serde_json::Value) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}
