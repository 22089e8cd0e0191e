//! 2026-07-28 (stateless) requests on the same endpoint: validation, the runtime
//! session they run in (`Lodge-Session-Id`), and a JSON or SSE answer.

use crate::errors::{FrontError, HttpError};
use crate::sse;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use lodge_proto::Message;
use lodge_proto::headers::{LODGE_SESSION_ID, MCP_METHOD, MCP_NAME, MCP_PROTOCOL_VERSION};
use lodge_proto::modern::{self, MirroredHeaders, ModernError};
use lodge_runtime::{Lookup, ModernCall, Principal, Runtime, Server, SessionError, SessionHandle};
use std::sync::Arc;

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The runtime session a modern request runs in: the one its Lodge `requestState`
/// or `Lodge-Session-Id` names (if its principal owns it), or the principal's default.
async fn session_for(
    runtime: &Arc<Runtime>,
    server: &Arc<Server>,
    headers: &HeaderMap,
    call: &ModernCall,
    resume_session: Option<&str>,
) -> Result<SessionHandle, HttpError> {
    let named = resume_session
        .or_else(|| header(headers, LODGE_SESSION_ID))
        .filter(|_| !server.continues());
    let Some(id) = named else {
        let capabilities = call.request.client_capabilities.clone();
        let session = runtime
            .anonymous_session(server, capabilities, &call.principal)
            .await?;
        return Ok(session);
    };
    match runtime.lookup_as(id, &call.principal) {
        Lookup::Live(session) if session.server() != server.spec.name => {
            Err(FrontError::UnknownRuntimeSession.into())
        }
        Lookup::Live(session) if !session.is_modern() => {
            Err(FrontError::LegacySessionAsRuntime.into())
        }
        Lookup::Live(session) => {
            session.adopt();
            Ok(session)
        }
        other => Err(FrontError::runtime_session_missing(other).into()),
    }
}

/// A call's stream closed without its response: the session ended under it, or, if
/// the session lives on, Lodge lost the call (a bug, not the client's doing).
fn no_response(runtime: &Runtime, session: &SessionHandle) -> HttpError {
    match runtime.lookup(session.id()) {
        Lookup::Live(_) => FrontError::Session(SessionError::Internal(
            "the call's stream closed without a response while its session is live".into(),
        ))
        .into(),
        other => FrontError::runtime_session_missing(other).into(),
    }
}

pub(crate) async fn post(
    runtime: &Arc<Runtime>,
    server: &Arc<Server>,
    who: &Principal,
    headers: &HeaderMap,
    message: Message,
    accepts_sse: bool,
) -> Result<Response, HttpError> {
    let id = message.request_id().cloned();
    if let Some(name) =
        crate::guard::repeated_header(headers, &[MCP_PROTOCOL_VERSION, MCP_METHOD, MCP_NAME])
    {
        let e = ModernError::HeaderMismatch(format!("the {name} header appears more than once"));
        return Err(FrontError::Modern(e).with_id(id.as_ref()));
    }
    let mirrored = MirroredHeaders {
        protocol_version: header(headers, MCP_PROTOCOL_VERSION),
        method: header(headers, MCP_METHOD),
        name: header(headers, MCP_NAME),
    };
    let request = modern::validate(&message, mirrored)
        .map_err(|e| FrontError::Modern(e).with_id(id.as_ref()))?;
    if !message.is_request() {
        // 2026-07-28 defines no client notifications over HTTP (closing a stream
        // cancels); accept and drop them as the transport allows.
        return Ok(StatusCode::ACCEPTED.into_response());
    }
    let resume = match &request.request_state {
        Some(token) => runtime
            .open_request_state(token)
            .map_err(|e| FrontError::BadRequestState(e).with_id(id.as_ref()))?,
        None => None,
    };
    // A state continues its call only in the session it came from, for its own
    // principal: a retry sent elsewhere must not touch the waiting call.
    if let Some(state) = &resume
        && !state.issued_to(header(headers, LODGE_SESSION_ID), who)
    {
        let e = FrontError::BadRequestState(lodge_runtime::StateError::Misdirected);
        return Err(e.with_id(id.as_ref()));
    }
    let mut call = ModernCall::new(message, request);
    call.principal = who.clone();
    let resume_session = resume.as_ref().map(|s| s.session.clone());
    let session = session_for(runtime, server, headers, &call, resume_session.as_deref())
        .await
        .map_err(|e| e.with_id(id.as_ref()))?
        .traced(crate::mcp::traceparent(headers));
    let mut events = session.modern(call, resume).await.map_err(|e| {
        FrontError::from_runtime_session(e, runtime.lookup(session.id())).with_id(id.as_ref())
    })?;

    // Answer with plain JSON when the response comes first; switch to SSE as soon
    // as the server has something to say before it (progress, logs, listen events).
    let session_header = HeaderValue::from_str(session.id()).ok();
    let mut response = match events.recv().await {
        Some(first) if first.is_response => {
            let status = crate::error_table::relayed_status(first.error_code);
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
                    crate::error_table::relayed_status(event.error_code),
                    [(header::CONTENT_TYPE, "application/json")],
                    event.data,
                )
                    .into_response(),
                None => return Err(no_response(runtime, &session).with_id(id.as_ref())),
            }
        }
        None => return Err(no_response(runtime, &session).with_id(id.as_ref())),
    };
    if let Some(value) = session_header {
        response.headers_mut().insert(LODGE_SESSION_ID, value);
    }
    Ok(response)
}
