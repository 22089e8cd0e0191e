//! `POST|GET|DELETE /mcp` and `/mcp/{server}`: the Streamable HTTP transport,
//! legacy (stateful) era, as the 2025-11-25 transport spec says.

use crate::errors::{CountedError, FrontError, HttpError};
use crate::forward::Destination;
use crate::guard::FrontConfig;
use crate::sse;
use crate::unanswered::Unanswered;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::StreamExt;
use lodge_proto::headers::{LAST_EVENT_ID, LODGE_SESSION_ID, MCP_PROTOCOL_VERSION, MCP_SESSION_ID};
use lodge_proto::{Message, parse_batch, version};
use lodge_runtime::metrics::{Method as RpcMethod, ServerMetrics};
use lodge_runtime::{
    EventId, EventStream, Lookup, Principal, Runtime, Server, SessionError, SessionHandle,
};
use std::sync::Arc;

struct App {
    runtime: Arc<Runtime>,
    front: FrontConfig,
    /// The node-to-node listener of cluster mode: only requests other nodes forward.
    internal: bool,
}

/// The MCP endpoint for every server the runtime hosts: each at `/mcp/{name}`,
/// the first also at `/mcp`.
pub fn router(runtime: Arc<Runtime>, front: FrontConfig) -> Router {
    endpoint(App {
        runtime,
        front,
        internal: false,
    })
}

/// The same endpoint for other nodes of the cluster ([`FrontConfig::cluster`]): every
/// request must carry a valid hop header, and is served here, never forwarded again.
pub fn internal_router(runtime: Arc<Runtime>, front: FrontConfig) -> Router {
    endpoint(App {
        runtime,
        front,
        internal: true,
    })
}

fn endpoint(app: App) -> Router {
    let app = Arc::new(app);
    let mut router = Router::new()
        .route("/mcp", any(default_server))
        .route("/mcp/{server}", any(named_server));
    if app.front.auth.is_some() {
        // RFC 9728: at the root, and suffixed with each endpoint's path.
        router = router
            .route(METADATA, axum::routing::get(default_metadata))
            .route(
                &format!("{METADATA}/mcp"),
                axum::routing::get(default_metadata),
            )
            .route(
                &format!("{METADATA}/mcp/{{server}}"),
                axum::routing::get(named_metadata),
            );
    }
    router.with_state(app)
}

const METADATA: &str = "/.well-known/oauth-protected-resource";

async fn default_metadata(State(app): State<Arc<App>>) -> Response {
    metadata(&app, None)
}

async fn named_metadata(State(app): State<Arc<App>>, Path(name): Path<String>) -> Response {
    metadata(&app, Some(&name))
}

fn metadata(app: &App, server: Option<&str>) -> Response {
    let Some(auth) = &app.front.auth else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if server.is_some_and(|name| app.runtime.server(name).is_none()) {
        return StatusCode::NOT_FOUND.into_response();
    }
    (
        [(header::CONTENT_TYPE, "application/json")],
        auth.metadata(server).to_string(),
    )
        .into_response()
}

async fn default_server(
    State(app): State<Arc<App>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let server = app.runtime.servers().first().cloned();
    let meter = match &server {
        Some(server) => server.meter().clone(),
        None => app.runtime.metrics().server("").clone(),
    };
    let http_method = method.clone();
    let response = handle(&app, server, None, method, uri, headers, body)
        .await
        .unwrap_or_else(IntoResponse::into_response);
    count(&meter, &http_method, &response);
    response
}

/// Counts an answered request to the MCP endpoint, and the error it answered with.
fn count(meter: &ServerMetrics, method: &Method, response: &Response) {
    meter.http_request(method.as_str(), response.status().as_u16());
    if let Some(e) = response.extensions().get::<CountedError>() {
        meter.rpc_error(e.method, e.code, e.source);
    }
}

async fn named_server(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let server = app.runtime.server(&name).cloned();
    // A name no server has counts as `unknown`.
    let meter = app.runtime.metrics().server(&name).clone();
    let http_method = method.clone();
    let response = handle(&app, server, Some(&name), method, uri, headers, body)
        .await
        .unwrap_or_else(IntoResponse::into_response);
    count(&meter, &http_method, &response);
    response
}

/// One HTTP request, in a span that carries its server, session, JSON-RPC method and
/// principal as they become known (each log line of the request names them).
async fn handle(
    app: &App,
    server: Option<Arc<Server>>,
    path_name: Option<&str>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, HttpError> {
    use tracing::field::Empty;
    let span = tracing::info_span!(
        "request",
        http = %method,
        server = Empty,
        session = Empty,
        method = Empty,
        principal = Empty,
    );
    if let Some(server) = &server {
        span.record("server", server.spec.name.as_str());
    }
    if let Some(client) = traceparent(&headers) {
        lodge_runtime::trace::adopt(&span, client);
    }
    if let Some(id) = headers
        .get(MCP_SESSION_ID)
        .or_else(|| headers.get(LODGE_SESSION_ID))
        .and_then(|v| v.to_str().ok())
    {
        span.record("session", id);
    }
    tracing::Instrument::instrument(
        handle_in_span(app, server, path_name, method, uri, headers, body),
        span,
    )
    .await
}

async fn handle_in_span(
    app: &App,
    server: Option<Arc<Server>>,
    path_name: Option<&str>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, HttpError> {
    app.front.check(&headers)?;
    if let Some(name) =
        crate::guard::repeated_header(&headers, &[MCP_SESSION_ID, LODGE_SESSION_ID, LAST_EVENT_ID])
    {
        return Err(FrontError::RepeatedHeader(name).into());
    }
    // A session another node owns is served there: before credentials, which the
    // owner checks as it would for a client of its own.
    let body = match &app.front.cluster {
        Some(cluster) => {
            let read = async |body| read_body(app, &headers, body).await;
            let internal = app.internal;
            match cluster
                .route(&app.runtime, &method, &headers, body, internal, read)
                .await?
            {
                (Destination::Here, body) => body,
                (Destination::There(owner, signed), body) => {
                    return Ok(cluster
                        .forward(owner, &signed, method, &uri, headers, body)
                        .await?);
                }
            }
        }
        None => body,
    };
    // Who is asking comes first: nothing, not even which servers exist, is told to
    // a request without a valid token.
    let who = authenticate(app, path_name, &headers).await?;
    if !who.is_anonymous() {
        tracing::Span::current().record("principal", who.subject());
    }
    let Some(server) = server else {
        let names: Vec<_> = app
            .runtime
            .servers()
            .iter()
            .map(|s| s.spec.name.clone())
            .collect();
        return Err(FrontError::UnknownServer(names).into());
    };
    match method {
        Method::POST => post(app, &server, &who, &headers, body).await,
        Method::GET => get(app, &server, &who, &headers).await,
        Method::DELETE => delete(app, &server, &who, &headers).await,
        _ => Err(FrontError::MethodNotAllowed(method).into()),
    }
}

/// The principal a request comes from: anonymous without `[auth]`.
async fn authenticate(
    app: &App,
    path_name: Option<&str>,
    headers: &HeaderMap,
) -> Result<Principal, FrontError> {
    let Some(auth) = &app.front.auth else {
        return Ok(Principal::anonymous());
    };
    auth.authenticate(headers, path_name)
        .await
        .map_err(|refusal| {
            let path = path_name.map_or("/mcp".to_string(), |n| format!("/mcp/{n}"));
            let challenge = auth.challenge(&refusal, &path);
            FrontError::Auth { refusal, challenge }
        })
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

/// Whether the body is declared as JSON.
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            // The media type itself, not a prefix: `application/json-seq` is not JSON-RPC.
            let media = v.split(';').next().unwrap_or("").trim();
            media.eq_ignore_ascii_case("application/json")
        })
}

/// The event a GET resumes after, if it names one.
fn last_event_id(headers: &HeaderMap) -> Result<Option<EventId>, FrontError> {
    headers
        .get(LAST_EVENT_ID)
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(|v| v.parse::<EventId>().ok())
                .ok_or(FrontError::InvalidLastEventId)
        })
        .transpose()
}

/// Runs every pure header parser of the front on `headers`, for the fuzz target.
pub(crate) fn parse_headers(headers: &HeaderMap) {
    let _ = FrontConfig::default().check(headers);
    let _ =
        crate::guard::repeated_header(headers, &[MCP_SESSION_ID, LODGE_SESSION_ID, LAST_EVENT_ID]);
    let _ = accepts(headers);
    let _ = is_json(headers);
    let _ = check_protocol_version(headers);
    let _ = session_id(headers);
    let _ = last_event_id(headers);
}

fn check_protocol_version(headers: &HeaderMap) -> Result<(), FrontError> {
    let Some(value) = headers.get(MCP_PROTOCOL_VERSION) else {
        return Ok(()); // the spec says to assume 2025-03-26
    };
    let value = value.to_str().unwrap_or("");
    if version::is_legacy(value) {
        return Ok(());
    }
    Err(FrontError::UnsupportedProtocolVersion(value.to_string()))
}

fn session_id(headers: &HeaderMap) -> Result<Option<&str>, FrontError> {
    headers
        .get(MCP_SESSION_ID)
        .map(|v| v.to_str().map_err(|_| FrontError::InvalidSessionId))
        .transpose()
}

/// The client's W3C `traceparent`, if it sent one (the session checks it).
pub(crate) fn traceparent(headers: &HeaderMap) -> Option<&str> {
    headers.get("traceparent").and_then(|v| v.to_str().ok())
}

/// The live session the request names, or the error the spec prescribes. Another
/// principal's session is unknown, exactly as a made-up id.
fn resolve(
    app: &App,
    server: &Server,
    who: &Principal,
    headers: &HeaderMap,
) -> Result<SessionHandle, FrontError> {
    let Some(id) = session_id(headers)? else {
        return Err(FrontError::MissingSessionId);
    };
    match app.runtime.lookup_as(id, who) {
        Lookup::Live(session) if session.server() == server.spec.name => {
            Ok(session.traced(traceparent(headers)))
        }
        Lookup::Ended(reason) => Err(FrontError::SessionEnded(reason)),
        Lookup::Live(_) | Lookup::Unknown => Err(FrontError::UnknownSession),
    }
}

/// A session error, told with why the session ended if it did.
fn session_failed(app: &App, session: &SessionHandle, e: SessionError) -> HttpError {
    FrontError::from_session(e, app.runtime.lookup(session.id())).into()
}

/// Bytes of an oversized body read and discarded before answering 413, so the
/// client finishes sending and sees the answer instead of a reset connection.
const DRAIN_LIMIT: usize = 16 << 20;

async fn read_body(app: &App, headers: &HeaderMap, body: Body) -> Result<Bytes, FrontError> {
    let deadline = app.front.body_read_timeout;
    // One deadline for the whole body: a stalled body and one dripping a byte at a
    // time are both cut off, however slowly each byte comes.
    tokio::time::timeout(deadline, read_body_within(app, headers, body))
        .await
        .unwrap_or(Err(FrontError::BodyTimeout { limit: deadline }))
}

async fn read_body_within(app: &App, headers: &HeaderMap, body: Body) -> Result<Bytes, FrontError> {
    let limit = app.front.max_body_bytes;
    let too_large = || FrontError::BodyTooLarge { limit };
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
        let chunk = chunk.map_err(|e| FrontError::BodyUnreadable(e.to_string()))?;
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

/// One message; a refusal answers the request's id where it can be read (JSON-RPC
/// wants `null` only where the id itself is what could not be read).
fn parse(bytes: Bytes) -> Result<Message, HttpError> {
    Message::parse(bytes.clone()).map_err(|e| {
        let id = match e {
            lodge_proto::ParseError::Invalid(_) => lodge_proto::readable_id(&bytes),
            lodge_proto::ParseError::Json(_) => None,
        };
        FrontError::Parse(e).with_id(id.as_ref())
    })
}

async fn post(
    app: &App,
    server: &Arc<Server>,
    who: &Principal,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, HttpError> {
    let accept = accepts(headers);
    if !accept.json && !accept.sse {
        return Err(FrontError::PostNotAcceptable.into());
    }
    if !is_json(headers) {
        return Err(FrontError::UnsupportedMediaType.into());
    }
    let body = read_body(app, headers, body).await?;
    if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        check_protocol_version(headers)?;
        return post_batch(app, server, who, headers, &body, accept.sse).await;
    }
    let message = parse(body)?;
    if let Some(method) = message.method() {
        tracing::Span::current().record("method", method);
    }
    let rpc_method = RpcMethod::of_opt(message.method());
    post_message(app, server, who, headers, message, accept)
        .await
        .map_err(|e| e.with_method(rpc_method))
}

/// One JSON-RPC message POSTed (not a batch).
async fn post_message(
    app: &App,
    server: &Arc<Server>,
    who: &Principal,
    headers: &HeaderMap,
    message: Message,
    accept: Accepts,
) -> Result<Response, HttpError> {
    // One endpoint, two eras: initialize or an Mcp-Session-Id means a legacy session;
    // a request naming 2026-07-28 in its _meta or headers is served statelessly.
    let header_version = headers
        .get(MCP_PROTOCOL_VERSION)
        .and_then(|v| v.to_str().ok());
    let modern = lodge_proto::modern::is_modern_request(&message, header_version);
    if message.is_request() {
        server
            .meter()
            .rpc_request(modern, RpcMethod::of_opt(message.method()));
    }
    // An initialize that names 2026-07-28 is a modern request for a removed method.
    let is_initialize = message.method() == Some("initialize") && message.is_request() && !modern;
    if !is_initialize && !headers.contains_key(MCP_SESSION_ID) && modern {
        return crate::modern::post(&app.runtime, server, who, headers, message, accept.sse).await;
    }
    if is_initialize {
        let session = app
            .runtime
            .create_session(server, who)
            .await
            .map_err(|e| HttpError::from(e).with_id(message.request_id()))?
            .traced(traceparent(headers));
        // From here until the client has the initialize result, its going away (or a
        // failure) ends the session: nobody else can use it.
        let mut unanswered = Unanswered::new(session.clone());
        let id = message.request_id().cloned();
        let events = session
            .requests(vec![message], accept.sse)
            .await
            .map_err(|e| session_failed(app, &session, e).with_id(id.as_ref()))?;
        if accept.sse {
            return Ok(sse::response_answering(events, session.id(), unanswered).await);
        }
        let response = respond(events, false, Some(session.id()), false).await;
        if response.status() == StatusCode::OK {
            unanswered.answered();
        }
        return Ok(response);
    }
    check_protocol_version(headers).map_err(|e| e.with_id(message.request_id()))?;
    let session =
        resolve(app, server, who, headers).map_err(|e| e.with_id(message.request_id()))?;
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
    who: &Principal,
    headers: &HeaderMap,
    body: &Bytes,
    sse: bool,
) -> Result<Response, HttpError> {
    // Not JSON is -32700 whoever sends it: read the batch before the session.
    let items = parse_batch(body)?;
    let session = resolve(app, server, who, headers).map_err(|e| match e {
        FrontError::MissingSessionId => FrontError::BatchWithoutSession,
        e => e,
    })?;
    let version = session
        .protocol_version()
        .unwrap_or(version::ASSUMED_WITHOUT_HEADER);
    if !version::allows_batches(version) {
        return Err(FrontError::BatchNotAllowed(version.to_string()).into());
    }
    let messages = items
        .into_iter()
        .map(|item| Message::parse(item).map_err(FrontError::Parse))
        .collect::<Result<Vec<_>, _>>()?;
    let (requests, others): (Vec<_>, Vec<_>) = messages.into_iter().partition(Message::is_request);
    for request in &requests {
        server
            .meter()
            .rpc_request(false, RpcMethod::of_opt(request.method()));
    }
    if requests.iter().any(|m| m.method() == Some("initialize")) {
        return Err(FrontError::BatchWithInitialize.into());
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

async fn get(
    app: &App,
    server: &Server,
    who: &Principal,
    headers: &HeaderMap,
) -> Result<Response, HttpError> {
    if !accepts(headers).sse {
        return Err(FrontError::GetNotAcceptable.into());
    }
    check_protocol_version(headers)?;
    let session = resolve(app, server, who, headers)?;
    let last_event_id = last_event_id(headers)?;
    let events = session
        .listen(last_event_id)
        .await
        .map_err(|e| session_failed(app, &session, e))?;
    Ok(sse::response(events, None).await)
}

/// Ends a legacy session (`Mcp-Session-Id`) or a 2026-07-28 runtime session
/// (`Lodge-Session-Id`): the explicit stop.
async fn delete(
    app: &App,
    server: &Server,
    who: &Principal,
    headers: &HeaderMap,
) -> Result<Response, HttpError> {
    let runtime_session = headers.get(LODGE_SESSION_ID).and_then(|v| v.to_str().ok());
    let session = match runtime_session {
        Some(id) if !headers.contains_key(MCP_SESSION_ID) => match app.runtime.lookup_as(id, who) {
            Lookup::Live(session) if session.server() == server.spec.name => session,
            other => return Err(FrontError::runtime_session_missing(other).into()),
        },
        _ => resolve(app, server, who, headers)?,
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
