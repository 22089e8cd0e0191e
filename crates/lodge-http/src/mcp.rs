//! `POST|GET|DELETE /mcp` and `/mcp/{server}`: the Streamable HTTP transport,
//! legacy (stateful) era, as the 2025-11-25 transport spec says.

use crate::errors::{HttpError, from_session_error, http_error};
use crate::guard::FrontConfig;
use crate::sse;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::StreamExt;
use lodge_proto::headers::{LAST_EVENT_ID, LODGE_SESSION_ID, MCP_PROTOCOL_VERSION, MCP_SESSION_ID};
use lodge_proto::{Message, ParseError, codes, parse_batch, version};
use lodge_runtime::{EventId, EventStream, Lookup, Runtime, Server, SessionError, SessionHandle};
use std::sync::Arc;

struct App {
    runtime: Arc<Runtime>,
    front: FrontConfig,
}

/// The MCP endpoint for every server the runtime hosts: each at `/mcp/{name}`,
/// the first also at `/mcp`.
pub fn router(runtime: Arc<Runtime>, front: FrontConfig) -> Router {
    let app = Arc::new(App { runtime, front });
    Router::new()
        .route("/mcp", any(default_server))
        .route("/mcp/{server}", any(named_server))
        .with_state(app)
}

async fn default_server(
    State(app): State<Arc<App>>,
    method: Method,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let server = app.runtime.servers().first().cloned();
    handle(&app, server, method, headers, body)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn named_server(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    method: Method,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let server = app.runtime.server(&name).cloned();
    handle(&app, server, method, headers, body)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn handle(
    app: &App,
    server: Option<Arc<Server>>,
    method: Method,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, HttpError> {
    app.front.check(&headers)?;
    let Some(server) = server else {
        let names: Vec<_> = app
            .runtime
            .servers()
            .iter()
            .map(|s| s.spec.name.as_str())
            .collect();
        return Err(http_error(
            StatusCode::NOT_FOUND,
            codes::INVALID_REQUEST,
            format!(
                "No such MCP server here. This Lodge serves: {}",
                names.join(", ")
            ),
        ));
    };
    match method {
        Method::POST => post(app, &server, &headers, body).await,
        Method::GET => get(app, &server, &headers).await,
        Method::DELETE => delete(app, &server, &headers).await,
        _ => {
            let mut response = http_error(
                StatusCode::METHOD_NOT_ALLOWED,
                codes::INVALID_REQUEST,
                format!("{method} is not supported; use POST, GET or DELETE"),
            )
            .into_response();
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, POST, DELETE"));
            Ok(response)
        }
    }
}

/// What the client's `Accept` allows for a response to a request.
struct Accepts {
    json: bool,
    sse: bool,
}

fn accepts(headers: &HeaderMap) -> Accepts {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return Accepts {
            json: true,
            sse: true,
        };
    };
    let has = |t: &str| {
        accept.split(',').any(|part| {
            let media = part.split(';').next().unwrap_or("").trim();
            media.eq_ignore_ascii_case(t) || media == "*/*"
        })
    };
    Accepts {
        json: has("application/json"),
        sse: has("text/event-stream"),
    }
}

fn check_protocol_version(headers: &HeaderMap) -> Result<(), HttpError> {
    let Some(value) = headers.get(MCP_PROTOCOL_VERSION) else {
        return Ok(()); // the spec says to assume 2025-03-26
    };
    let value = value.to_str().unwrap_or("");
    if version::is_legacy(value) {
        return Ok(());
    }
    Err(HttpError::bad_request(format!(
        "Unsupported MCP-Protocol-Version {value:?}; this endpoint supports {}",
        version::LEGACY.join(", ")
    )))
}

fn session_id(headers: &HeaderMap) -> Result<Option<&str>, HttpError> {
    headers
        .get(MCP_SESSION_ID)
        .map(|v| {
            v.to_str()
                .map_err(|_| HttpError::bad_request("Mcp-Session-Id must be visible ASCII"))
        })
        .transpose()
}

/// The live session the request names, or the error the spec prescribes.
fn resolve(app: &App, server: &Server, headers: &HeaderMap) -> Result<SessionHandle, HttpError> {
    let Some(id) = session_id(headers)? else {
        return Err(HttpError::bad_request(
            "Missing Mcp-Session-Id header: send an initialize request first, then send its Mcp-Session-Id on every request",
        ));
    };
    match app.runtime.lookup(id) {
        Lookup::Live(session) if session.server() == server.spec.name => Ok(session),
        Lookup::Ended(reason) => Err(HttpError::session_ended(&reason)),
        Lookup::Live(_) | Lookup::Unknown => Err(HttpError::unknown_session()),
    }
}

/// Maps a session error, looking up why the session ended if it did.
fn session_failed(app: &App, session: &SessionHandle, e: SessionError) -> HttpError {
    let ended = match (&e, app.runtime.lookup(session.id())) {
        (SessionError::Gone, Lookup::Ended(reason)) => Some(reason),
        _ => None,
    };
    from_session_error(e, ended)
}

/// Bytes of an oversized body read and discarded before answering 413, so the
/// client finishes sending and sees the answer instead of a reset connection.
const DRAIN_LIMIT: usize = 16 << 20;

async fn read_body(app: &App, headers: &HeaderMap, body: Body) -> Result<Bytes, HttpError> {
    let limit = app.front.max_body_bytes;
    let too_large = || {
        http_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            codes::INVALID_REQUEST,
            format!("Request body is larger than the {limit}-byte limit"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > DRAIN_LIMIT) {
        return Err(too_large());
    }
    let mut data = body.into_data_stream();
    let mut kept = BytesMut::with_capacity(declared.unwrap_or(0).min(limit));
    let mut total = 0usize;
    while let Some(chunk) = data.next().await {
        let chunk = chunk
            .map_err(|e| HttpError::bad_request(format!("Could not read the request body: {e}")))?;
        total += chunk.len();
        if total <= limit {
            kept.extend_from_slice(&chunk);
        } else if total > DRAIN_LIMIT {
            break;
        }
    }
    if total > limit {
        return Err(too_large());
    }
    Ok(kept.freeze())
}

fn parse(bytes: Bytes) -> Result<Message, HttpError> {
    Message::parse(bytes).map_err(|e| {
        let code = match e {
            ParseError::Json(_) => codes::PARSE_ERROR,
            ParseError::Invalid(_) => codes::INVALID_REQUEST,
        };
        http_error(StatusCode::BAD_REQUEST, code, e.to_string())
    })
}

async fn post(
    app: &App,
    server: &Arc<Server>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, HttpError> {
    let accept = accepts(headers);
    if !accept.json && !accept.sse {
        return Err(http_error(
            StatusCode::NOT_ACCEPTABLE,
            codes::INVALID_REQUEST,
            "Accept must include application/json and text/event-stream",
        ));
    }
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/json")
        });
    if !is_json {
        return Err(http_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            codes::INVALID_REQUEST,
            "Content-Type must be application/json",
        ));
    }
    let body = read_body(app, headers, body).await?;
    if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        check_protocol_version(headers)?;
        return post_batch(app, server, headers, &body, accept.sse).await;
    }
    let message = parse(body)?;
    // One endpoint, two eras: initialize or an Mcp-Session-Id means a legacy session;
    // a request naming 2026-07-28 in its _meta or headers is served statelessly.
    let header_version = headers
        .get(MCP_PROTOCOL_VERSION)
        .and_then(|v| v.to_str().ok());
    let modern = lodge_proto::modern::is_modern_request(&message, header_version);
    // An initialize that names 2026-07-28 is a modern request for a removed method.
    let is_initialize = message.method() == Some("initialize") && message.is_request() && !modern;
    if !is_initialize && !headers.contains_key(MCP_SESSION_ID) && modern {
        return crate::modern::post(&app.runtime, server, headers, message, accept.sse).await;
    }
    if is_initialize {
        let session = app
            .runtime
            .create_session(server)
            .await
            .map_err(|e| HttpError::from(e).with_id(message.request_id()))?;
        let id = message.request_id().cloned();
        let events = session
            .requests(vec![message], accept.sse)
            .await
            .map_err(|e| session_failed(app, &session, e).with_id(id.as_ref()))?;
        return Ok(respond(events, accept.sse, Some(session.id()), false).await);
    }
    check_protocol_version(headers).map_err(|e| e.with_id(message.request_id()))?;
    let session = resolve(app, server, headers).map_err(|e| e.with_id(message.request_id()))?;
    if message.is_request() {
        let id = message.request_id().cloned();
        let events = session
            .requests(vec![message], accept.sse)
            .await
            .map_err(|e| session_failed(app, &session, e).with_id(id.as_ref()))?;
        Ok(respond(events, accept.sse, None, false).await)
    } else {
        session
            .deliver(message)
            .await
            .map_err(|e| session_failed(app, &session, e))?;
        Ok(StatusCode::ACCEPTED.into_response())
    }
}

/// A JSON-RPC batch: allowed only in sessions that negotiated 2025-03-26 or older.
async fn post_batch(
    app: &App,
    server: &Server,
    headers: &HeaderMap,
    body: &Bytes,
    sse: bool,
) -> Result<Response, HttpError> {
    let session = resolve(app, server, headers).map_err(|e| match e.status {
        StatusCode::BAD_REQUEST => HttpError::bad_request(
            "JSON-RPC batches are not accepted here: initialize must be sent on its own",
        ),
        _ => e,
    })?;
    let version = session
        .protocol_version()
        .unwrap_or(version::ASSUMED_WITHOUT_HEADER);
    if !version::allows_batches(version) {
        return Err(HttpError::bad_request(format!(
            "JSON-RPC batches are not supported in protocol version {version} (removed in 2025-06-18); send one message per POST"
        )));
    }
    let messages = parse_batch(body)
        .map_err(|e| http_error(StatusCode::BAD_REQUEST, codes::PARSE_ERROR, e.to_string()))?
        .into_iter()
        .map(parse)
        .collect::<Result<Vec<_>, _>>()?;
    let (requests, others): (Vec<_>, Vec<_>) = messages.into_iter().partition(Message::is_request);
    if requests.iter().any(|m| m.method() == Some("initialize")) {
        return Err(HttpError::bad_request(
            "initialize must not be part of a JSON-RPC batch",
        ));
    }
    for message in others {
        session
            .deliver(message)
            .await
            .map_err(|e| session_failed(app, &session, e))?;
    }
    if requests.is_empty() {
        return Ok(StatusCode::ACCEPTED.into_response());
    }
    let events = session
        .requests(requests, sse)
        .await
        .map_err(|e| session_failed(app, &session, e))?;
    Ok(respond(events, sse, None, true).await)
}

/// Answers a POSTed request: as an SSE stream, or, for JSON-only clients, with the
/// response body once the server has answered.
async fn respond(
    mut events: EventStream,
    sse: bool,
    new_session: Option<&str>,
    batch: bool,
) -> Response {
    if sse {
        return sse::response(events, new_session).await;
    }
    let mut responses = Vec::new();
    while let Some(event) = events.recv().await {
        if event.is_response {
            responses.push(event.data);
        }
    }
    let body = match (batch, responses.len()) {
        (_, 0) => return StatusCode::ACCEPTED.into_response(),
        (false, _) => responses.swap_remove(0),
        (true, _) => {
            let mut out = BytesMut::new();
            out.put_u8(b'[');
            for (i, r) in responses.iter().enumerate() {
                if i > 0 {
                    out.put_u8(b',');
                }
                out.put_slice(r);
            }
            out.put_u8(b']');
            out.freeze()
        }
    };
    let mut response = ([(header::CONTENT_TYPE, "application/json")], body).into_response();
    if let Some(id) = new_session.and_then(|id| HeaderValue::from_str(id).ok()) {
        response.headers_mut().insert(MCP_SESSION_ID, id);
    }
    response
}

async fn get(app: &App, server: &Server, headers: &HeaderMap) -> Result<Response, HttpError> {
    if !accepts(headers).sse {
        return Err(http_error(
            StatusCode::NOT_ACCEPTABLE,
            codes::INVALID_REQUEST,
            "GET opens an event stream: Accept must include text/event-stream",
        ));
    }
    check_protocol_version(headers)?;
    let session = resolve(app, server, headers)?;
    let last_event_id = match headers.get(LAST_EVENT_ID) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|v| v.parse::<EventId>().ok())
                .ok_or_else(|| {
                    HttpError::bad_request("Last-Event-ID is not an event id this server issued")
                })?,
        ),
    };
    let events = session
        .listen(last_event_id)
        .await
        .map_err(|e| session_failed(app, &session, e))?;
    Ok(sse::response(events, None).await)
}

/// Ends a legacy session (`Mcp-Session-Id`) or a 2026-07-28 runtime session
/// (`Lodge-Session-Id`): the explicit stop.
async fn delete(app: &App, server: &Server, headers: &HeaderMap) -> Result<Response, HttpError> {
    let runtime_session = headers.get(LODGE_SESSION_ID).and_then(|v| v.to_str().ok());
    let session = match runtime_session {
        Some(id) if !headers.contains_key(MCP_SESSION_ID) => match app.runtime.lookup(id) {
            Lookup::Live(session) if session.server() == server.spec.name => session,
            Lookup::Ended(reason) => return Err(HttpError::session_ended(&reason)),
            _ => return Err(HttpError::unknown_session()),
        },
        _ => resolve(app, server, headers)?,
    };
    session.stop(lodge_runtime::EndReason::Deleted).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_accept(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::ACCEPT,
            HeaderValue::from_str(v).unwrap_or(HeaderValue::from_static("")),
        );
        h
    }

    #[test]
    fn accept_parsing() {
        let a = accepts(&with_accept("application/json, text/event-stream"));
        assert!(a.json && a.sse);
        let a = accepts(&with_accept("application/json;q=0.9"));
        assert!(a.json && !a.sse);
        let a = accepts(&with_accept("text/html"));
        assert!(!a.json && !a.sse);
        let a = accepts(&HeaderMap::new());
        assert!(a.json && a.sse);
    }
}
