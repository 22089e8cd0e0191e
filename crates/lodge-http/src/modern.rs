//! 2026-07-28 (stateless) requests on the same endpoint: validation, the runtime
//! session they run in (`Lodge-Session-Id`), and a JSON or SSE answer.

use crate::errors::{HttpError, from_session_error, http_error};
use crate::sse;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use lodge_proto::headers::{LODGE_SESSION_ID, MCP_METHOD, MCP_NAME, MCP_PROTOCOL_VERSION};
use lodge_proto::modern::{self, MirroredHeaders, ModernError};
use lodge_proto::{Message, codes};
use lodge_runtime::{Lookup, ModernCall, Runtime, Server, SessionHandle};
use std::sync::Arc;

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn spec_error(e: ModernError) -> HttpError {
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    let mut error = http_error(status, e.code(), e.to_string());
    error.data = e.data();
    error
}

/// HTTP status for a JSON-RPC error the server (or Lodge) answered a modern request
/// with: the runtime read its code when it classified the response.
fn status_for(code: Option<i64>) -> StatusCode {
    match code {
        Some(codes::METHOD_NOT_FOUND) => StatusCode::NOT_FOUND,
        Some(
            codes::INVALID_PARAMS
            | codes::HEADER_MISMATCH
            | codes::MISSING_CLIENT_CAPABILITY
            | codes::UNSUPPORTED_PROTOCOL_VERSION,
        ) => StatusCode::BAD_REQUEST,
        _ => StatusCode::OK,
    }
}

/// 404 for a `Lodge-Session-Id` that names no live runtime session, worded for
/// 2026-07-28 clients (there is no initialize to redo).
fn ended(reason: Lookup) -> HttpError {
    let why = match reason {
        Lookup::Ended(reason) => format!("it ended because {reason}"),
        _ => "no runtime session has that Lodge-Session-Id".to_string(),
    };
    http_error(
        StatusCode::NOT_FOUND,
        codes::SESSION_NOT_FOUND,
        format!(
            "Runtime session not found: {why}. Send the request without Lodge-Session-Id to start a new one."
        ),
    )
}

/// The runtime session a modern request runs in: the one its Lodge `requestState`
/// or `Lodge-Session-Id` names, or a new one.
async fn session_for(
    runtime: &Arc<Runtime>,
    server: &Arc<Server>,
    headers: &HeaderMap,
    call: &ModernCall,
    resume_session: Option<&str>,
) -> Result<SessionHandle, HttpError> {
    let named = resume_session.or_else(|| header(headers, LODGE_SESSION_ID));
    let Some(id) = named else {
        let capabilities = call.request.client_capabilities.clone();
        return Ok(runtime.anonymous_session(server, capabilities).await?);
    };
    match runtime.lookup(id) {
        Lookup::Live(session) if session.server() != server.spec.name => {
            Err(HttpError::unknown_session())
        }
        Lookup::Live(session) if !session.is_modern() => Err(HttpError::bad_request(
            "this session was started with initialize: send its id as Mcp-Session-Id, not Lodge-Session-Id",
        )),
        Lookup::Live(session) => {
            session.adopt();
            Ok(session)
        }
        other => Err(ended(other)),
    }
}

pub(crate) async fn post(
    runtime: &Arc<Runtime>,
    server: &Arc<Server>,
    headers: &HeaderMap,
    message: Message,
    accepts_sse: bool,
) -> Result<Response, HttpError> {
    let id = message.request_id().cloned();
    for name in [MCP_PROTOCOL_VERSION, MCP_METHOD, MCP_NAME] {
        if headers.get_all(name).iter().count() > 1 {
            let e =
                ModernError::HeaderMismatch(format!("the {name} header appears more than once"));
            return Err(spec_error(e).with_id(id.as_ref()));
        }
    }
    let mirrored = MirroredHeaders {
        protocol_version: header(headers, MCP_PROTOCOL_VERSION),
        method: header(headers, MCP_METHOD),
        name: header(headers, MCP_NAME),
    };
    let request =
        modern::validate(&message, mirrored).map_err(|e| spec_error(e).with_id(id.as_ref()))?;
    if !message.is_request() {
        // 2026-07-28 defines no client notifications over HTTP (closing a stream
        // cancels); accept and drop them as the transport allows.
        return Ok(StatusCode::ACCEPTED.into_response());
    }
    let resume = match &request.request_state {
        Some(token) => runtime.open_request_state(token).map_err(|e| {
            http_error(
                StatusCode::BAD_REQUEST,
                codes::INVALID_PARAMS,
                e.to_string(),
            )
            .with_id(id.as_ref())
        })?,
        None => None,
    };
    let call = ModernCall::new(message, request);
    let resume_session = resume.as_ref().map(|s| s.session.clone());
    let session = session_for(runtime, server, headers, &call, resume_session.as_deref())
        .await
        .map_err(|e| e.with_id(id.as_ref()))?;
    let mut events = session.modern(call, resume).await.map_err(|e| {
        let ended = match runtime.lookup(session.id()) {
            Lookup::Ended(reason) => Some(reason),
            _ => None,
        };
        from_session_error(e, ended).with_id(id.as_ref())
    })?;

    // Answer with plain JSON when the response comes first; switch to SSE as soon
    // as the server has something to say before it (progress, logs, listen events).
    let session_header = HeaderValue::from_str(session.id()).ok();
    let mut response = match events.recv().await {
        Some(first) if first.is_response => {
            let status = status_for(first.error_code);
            (
                status,
                [(header::CONTENT_TYPE, "application/json")],
                first.data,
            )
                .into_response()
        }
        Some(first) if accepts_sse => sse::modern_response(first, events),
        Some(_) => {
            let mut last = None;
            while let Some(event) = events.recv().await {
                if event.is_response {
                    last = Some(event);
                }
            }
            match last {
                Some(event) => (
                    status_for(event.error_code),
                    [(header::CONTENT_TYPE, "application/json")],
                    event.data,
                )
                    .into_response(),
                None => return Err(HttpError::unknown_session().with_id(id.as_ref())),
            }
        }
        None => {
            return Err(ended(runtime.lookup(session.id())).with_id(id.as_ref()));
        }
    };
    if let Some(value) = session_header {
        response.headers_mut().insert(LODGE_SESSION_ID, value);
    }
    Ok(response)
}
