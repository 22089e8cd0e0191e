//! The HTTP client under rmcp's Streamable HTTP transport: reqwest, plus a watch that notices
//! when the server forgets the session (HTTP 404) and can ask it why, and the raw read of
//! `tools/list` answers ([`crate::listing`]).

use futures_util::stream::BoxStream;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use rmcp::model::{ClientJsonRpcMessage, JsonRpcMessage};
use rmcp::transport::streamable_http_client::{
    SseError, StreamableHttpClient, StreamableHttpError, StreamableHttpPostResponse,
    StreamableHttpResponseLimits,
};
use sse_stream::Sse;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::listing;
use crate::tool_order::ToolOrders;

/// What the client knows about the server-side session.
#[derive(Default)]
pub struct SessionWatch {
    /// The last `Mcp-Session-Id` the transport sent.
    session: Mutex<Option<Arc<str>>>,
    /// The server answered 404 for that session.
    expired: AtomicBool,
    /// Why, when the 404 said so and rmcp let us see it (2026-07-28 Lodge sessions).
    reason: Mutex<Option<String>>,
}

/// The header naming a Lodge runtime session in the 2026-07-28 era.
pub const LODGE_SESSION_ID: &str = "lodge-session-id";
/// Lodge's JSON-RPC code for an unknown or ended session.
const SESSION_GONE: i32 = -32001;

impl SessionWatch {
    pub fn expired(&self) -> bool {
        self.expired.load(Ordering::SeqCst)
    }

    fn saw(&self, session: Option<&Arc<str>>) {
        if let Some(id) = session
            && let Ok(mut slot) = self.session.lock()
        {
            *slot = Some(id.clone());
        }
    }

    fn check<T>(
        &self,
        session: Option<&Arc<str>>,
        result: &Result<T, StreamableHttpError<reqwest::Error>>,
    ) {
        let gone = match result {
            Err(StreamableHttpError::SessionExpired) => true,
            Err(StreamableHttpError::Client(e)) => {
                session.is_some() && e.status() == Some(reqwest::StatusCode::NOT_FOUND)
            }
            _ => false,
        };
        if gone {
            self.expired.store(true, Ordering::SeqCst);
        }
    }

    /// A 2026-07-28 request that named a Lodge session came back "session gone" (HTTP 404
    /// with a JSON-RPC error, which rmcp passes on as a plain error response).
    fn check_modern(&self, pinned: bool, result: &Result<StreamableHttpPostResponse, Error>) {
        if !pinned {
            return;
        }
        if let Ok(StreamableHttpPostResponse::Json(JsonRpcMessage::Error(e), _)) = result
            && e.error.code.0 == SESSION_GONE
        {
            self.expired.store(true, Ordering::SeqCst);
            if let Ok(mut reason) = self.reason.lock() {
                *reason = Some(e.error.message.to_string());
            }
        }
    }

    fn session(&self) -> Option<Arc<str>> {
        self.session.lock().ok().and_then(|s| s.clone())
    }

    /// Why the session ended, in the server's words: Lodge answers 404 with a JSON-RPC error
    /// that says why (idle timeout, lifetime, DELETE, server exit...). rmcp does not keep
    /// that body, so ask again with a ping on the dead session.
    pub async fn ended_reason(&self, url: &str, headers: &HeaderMap) -> String {
        if let Some(reason) = self.reason.lock().ok().and_then(|r| r.clone()) {
            return reason;
        }
        let generic = "the server no longer knows this session (HTTP 404)".to_string();
        let Some(id) = self.session() else {
            return generic;
        };
        let probe = reqwest::Client::new()
            .post(url)
            .headers(headers.clone())
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-session-id", id.as_ref())
            .body(r#"{"jsonrpc":"2.0","id":"lodge-connect-probe","method":"ping"}"#)
            .timeout(std::time::Duration::from_secs(5))
            .send()
            .await;
        let Ok(response) = probe else {
            return generic;
        };
        if response.status() != reqwest::StatusCode::NOT_FOUND {
            return generic;
        }
        let body = response.text().await.unwrap_or_default();
        serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
            .filter(|m| !m.is_empty())
            .unwrap_or(generic)
    }
}

/// rmcp's reqwest client with a [`SessionWatch`], and with `tools/list` answers read raw
/// for the order of each tool's properties ([`crate::listing`]). It sits under rmcp's
/// OAuth client when there is one, so it sees the bearer token every request carries.
#[derive(Clone)]
pub struct WatchedClient {
    inner: reqwest::Client,
    watch: Arc<SessionWatch>,
    orders: Arc<ToolOrders>,
}

impl WatchedClient {
    pub fn new(inner: reqwest::Client, watch: Arc<SessionWatch>, orders: Arc<ToolOrders>) -> Self {
        WatchedClient {
            inner,
            watch,
            orders,
        }
    }
}

type Headers = HashMap<HeaderName, HeaderValue>;
type Error = StreamableHttpError<reqwest::Error>;

impl StreamableHttpClient for WatchedClient {
    type Error = reqwest::Error;

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: Headers,
    ) -> Result<StreamableHttpPostResponse, Error> {
        let limits = StreamableHttpResponseLimits::default();
        self.post_message_with_response_limits(
            uri,
            message,
            session_id,
            auth_header,
            custom_headers,
            limits,
        )
        .await
    }

    async fn post_message_with_response_limits(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: Headers,
        limits: StreamableHttpResponseLimits,
    ) -> Result<StreamableHttpPostResponse, Error> {
        self.watch.saw(session_id.as_ref());
        // (HeaderName's hash is not str's: compare names, do not look one up by &str.)
        let pinned = custom_headers
            .keys()
            .any(|k| k.as_str() == LODGE_SESSION_ID);
        let listed = if listing::is_tools_list(&message) {
            let request = listing::Request {
                uri: &uri,
                message: &message,
                session_id: session_id.as_deref(),
                auth_header: auth_header.as_deref(),
                custom_headers: &custom_headers,
            };
            let limit = limits.max_json_response_size;
            listing::read_tools_list(&self.inner, &self.orders, request, limit).await
        } else {
            None
        };
        let result = match listed {
            Some(answer) => Ok(answer),
            // Not tools/list, or an answer only rmcp's client knows how to report.
            None => {
                self.inner
                    .post_message_with_response_limits(
                        uri,
                        message,
                        session_id.clone(),
                        auth_header,
                        custom_headers,
                        limits,
                    )
                    .await
            }
        };
        self.watch.check(session_id.as_ref(), &result);
        self.watch.check_modern(pinned, &result);
        result
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        auth_header: Option<String>,
        custom_headers: Headers,
    ) -> Result<(), Error> {
        self.inner
            .delete_session(uri, session_id, auth_header, custom_headers)
            .await
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: Headers,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, Error> {
        let result = self
            .inner
            .get_stream(
                uri,
                session_id.clone(),
                last_event_id,
                auth_header,
                custom_headers,
            )
            .await;
        self.watch.check(session_id.as_ref(), &result);
        result
    }

    async fn get_stream_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: Headers,
        max_sse_event_size: usize,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, Error> {
        let result = self
            .inner
            .get_stream_with_max_sse_event_size(
                uri,
                session_id.clone(),
                last_event_id,
                auth_header,
                custom_headers,
                max_sse_event_size,
            )
            .await;
        self.watch.check(session_id.as_ref(), &result);
        result
    }
}

/// Asks a Lodge server for a runtime session to keep using in the 2026-07-28 era (a
/// `server/discover` whose answer carries `Lodge-Session-Id`). `None` for other servers.
///
/// Lodge starts the session's server with the capabilities this request declares, so they
/// must be the client's real ones (`capabilities`, `client_info`: JSON as on the wire).
pub async fn lodge_session(
    http: &reqwest::Client,
    url: &str,
    headers: &HeaderMap,
    capabilities: serde_json::Value,
    client_info: serde_json::Value,
) -> Option<String> {
    let discover = serde_json::json!({"jsonrpc": "2.0", "id": "lodge-connect-discover",
        "method": "server/discover", "params": {"_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": capabilities,
            "io.modelcontextprotocol/clientInfo": client_info}}});
    let response = http
        .post(url)
        .headers(headers.clone())
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "server/discover")
        .body(discover.to_string())
        .timeout(std::time::Duration::from_secs(10))
        .send()
        .await
        .ok()?;
    if !response.status().is_success() {
        return None;
    }
    let id = response.headers().get(LODGE_SESSION_ID)?.to_str().ok()?;
    (!id.is_empty()).then(|| id.to_owned())
}

/// Ends a Lodge runtime session (DELETE with `Lodge-Session-Id`), so its sandbox goes now
/// rather than at its idle timeout.
pub async fn end_lodge_session(http: &reqwest::Client, url: &str, headers: &HeaderMap, id: &str) {
    let _ = http
        .delete(url)
        .headers(headers.clone())
        .header(LODGE_SESSION_ID, id)
        .timeout(std::time::Duration::from_secs(5))
        .send()
        .await;
}
