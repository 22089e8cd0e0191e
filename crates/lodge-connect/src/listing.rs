//! Reading a `tools/list` answer raw: [`crate::http::WatchedClient`] sends that request
//! itself, so the JSON text of the answer can be read for the order of each tool's
//! properties ([`ToolOrders`]) before rmcp parses it into maps that forget that order.
//!
//! The request carries what rmcp's own client would send: the bearer token, the session,
//! the custom headers, the same `Accept`. Only a 200 answer in JSON or SSE is read here;
//! anything else (401, 404, 5xx, another content type, a network error) is sent again
//! through rmcp's client, which reports it the way it reports any other request's failure.
//! Sending `tools/list` twice is sound: it changes nothing on the server.

use crate::tool_order::ToolOrders;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderName, HeaderValue};
use rmcp::model::{ClientJsonRpcMessage, ClientRequest, JsonRpcMessage, ServerJsonRpcMessage};
use rmcp::transport::streamable_http_client::{SseError, StreamableHttpPostResponse};
use sse_stream::{Sse, SseStream};
use std::collections::HashMap;
use std::sync::Arc;

const SESSION_HEADER: &str = "mcp-session-id";

/// What rmcp asked its HTTP client to send.
pub struct Request<'a> {
    pub uri: &'a str,
    pub message: &'a ClientJsonRpcMessage,
    pub session_id: Option<&'a str>,
    pub auth_header: Option<&'a str>,
    pub custom_headers: &'a HashMap<HeaderName, HeaderValue>,
}

pub fn is_tools_list(message: &ClientJsonRpcMessage) -> bool {
    matches!(message, JsonRpcMessage::Request(r) if matches!(r.request, ClientRequest::ListToolsRequest(_)))
}

/// Sends a `tools/list` request and reads a 200 JSON or SSE answer of at most `limit`
/// bytes; `None` for any other outcome, which the caller sends again through rmcp.
pub async fn read_tools_list(
    http: &reqwest::Client,
    orders: &Arc<ToolOrders>,
    request: Request<'_>,
    limit: usize,
) -> Option<StreamableHttpPostResponse> {
    let mut post = http
        .post(request.uri)
        .header(ACCEPT, "text/event-stream, application/json");
    if let Some(token) = request.auth_header {
        post = post.bearer_auth(token);
    }
    for (name, value) in request.custom_headers {
        post = post.header(name, value);
    }
    if let Some(id) = request.session_id {
        post = post.header(SESSION_HEADER, id);
    }
    let response = post.json(request.message).send().await.ok()?;
    if response.status() != reqwest::StatusCode::OK {
        return None;
    }
    let session = response
        .headers()
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    if content_type.starts_with("application/json") {
        let body = bounded_body(response, limit).await?;
        let parsed: ServerJsonRpcMessage = serde_json::from_slice(&body).ok()?;
        orders.record(&body);
        Some(StreamableHttpPostResponse::Json(parsed, session))
    } else if content_type.starts_with("text/event-stream") {
        let events = read_events(response, orders.clone(), limit);
        Some(StreamableHttpPostResponse::Sse(events, session))
    } else {
        None
    }
}

/// The answer's events, each message's data read for property orders on the way by.
/// The whole stream is held to `limit` bytes: one `tools/list` answer is one message.
fn read_events(
    response: reqwest::Response,
    orders: Arc<ToolOrders>,
    limit: usize,
) -> BoxStream<'static, Result<Sse, SseError>> {
    let mut seen = 0usize;
    let bytes = response.bytes_stream().map(move |chunk| {
        let chunk = chunk.map_err(BodyError::Http)?;
        seen = seen.saturating_add(chunk.len());
        if seen > limit {
            return Err(BodyError::TooLarge(limit));
        }
        Ok(chunk)
    });
    SseStream::from_bytes_stream(bytes)
        .map(move |event| {
            if let Ok(Sse {
                data: Some(data), ..
            }) = &event
            {
                orders.record(data.as_bytes());
            }
            event
        })
        .boxed()
}

/// The whole body, or `None` past `limit` bytes or on a read error.
async fn bounded_body(response: reqwest::Response, limit: usize) -> Option<Vec<u8>> {
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return None;
    }
    let mut body = Vec::new();
    let mut chunks = response.bytes_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.ok()?;
        if body.len() + chunk.len() > limit {
            return None;
        }
        body.extend_from_slice(&chunk);
    }
    Some(body)
}

/// Why an SSE answer to `tools/list` stopped.
#[derive(Debug)]
enum BodyError {
    Http(reqwest::Error),
    TooLarge(usize),
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyError::Http(e) => write!(f, "{e}"),
            BodyError::TooLarge(limit) => write!(f, "the tools/list answer exceeds {limit} bytes"),
        }
    }
}

impl std::error::Error for BodyError {}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::http::{SessionWatch, WatchedClient};
    use rmcp::model::{ListToolsRequest, NumberOrString, ServerResult};
    use rmcp::transport::streamable_http_client::StreamableHttpClient;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio::sync::mpsc;

    const TOOLS: &str = r#"{"jsonrpc":"2.0","id":7,"result":{"tools":[{"name":"plan_trip","inputSchema":{"type":"object","properties":{"nights":{"type":"integer"},"destination":{"type":"string"}}}}]}}"#;

    /// Answers each connection with the next of `responses` (whole HTTP responses) and
    /// reports each request's head.
    async fn server(responses: Vec<String>) -> (String, mpsc::UnboundedReceiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/mcp", listener.local_addr().unwrap());
        let (heads, seen) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            for response in responses {
                let (mut socket, _) = listener.accept().await.unwrap();
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                let head = loop {
                    let n = socket.read(&mut buf).await.unwrap();
                    request.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&request).to_string();
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let length = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length: "))
                            .map_or(0, |n| n.parse::<usize>().unwrap());
                        if body.len() >= length {
                            break head.to_lowercase();
                        }
                    }
                };
                heads.send(head).unwrap();
                socket.write_all(response.as_bytes()).await.unwrap();
                socket.shutdown().await.unwrap();
            }
        });
        (url, seen)
    }

    fn http(status: &str, content_type: &str, body: &str) -> String {
        format!(
            "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nmcp-session-id: s-1\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
    }

    fn list_tools() -> ClientJsonRpcMessage {
        ClientJsonRpcMessage::request(
            ClientRequest::ListToolsRequest(ListToolsRequest::default()),
            NumberOrString::Number(7),
        )
    }

    async fn post(client: &WatchedClient, url: &str) -> StreamableHttpPostResponse {
        let custom = HashMap::from([(
            HeaderName::from_static("x-extra"),
            HeaderValue::from_static("yes"),
        )]);
        client
            .post_message(
                url.into(),
                list_tools(),
                Some("s-1".into()),
                Some("tok".into()),
                custom,
            )
            .await
            .unwrap()
    }

    fn client() -> (WatchedClient, Arc<ToolOrders>) {
        // As `run` does: reqwest is built without a default TLS provider.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let orders = Arc::new(ToolOrders::default());
        (
            WatchedClient::new(
                reqwest::Client::new(),
                Arc::new(SessionWatch::default()),
                orders.clone(),
            ),
            orders,
        )
    }

    fn is_tool_list(message: ServerJsonRpcMessage) -> bool {
        matches!(message, JsonRpcMessage::Response(r) if matches!(r.result, ServerResult::ListToolsResult(_)))
    }

    #[tokio::test]
    async fn a_json_answer_is_read_for_the_order_and_passed_on() {
        let (url, mut heads) = server(vec![http("200 OK", "application/json", TOOLS)]).await;
        let (client, orders) = client();
        let StreamableHttpPostResponse::Json(message, session) = post(&client, &url).await else {
            panic!("a JSON answer")
        };
        assert!(is_tool_list(message));
        assert_eq!(session.as_deref(), Some("s-1"));
        assert_eq!(
            orders.of("plan_trip"),
            Some(vec!["nights".to_string(), "destination".to_string()])
        );
        let head = heads.recv().await.unwrap();
        for line in [
            "authorization: bearer tok",
            "mcp-session-id: s-1",
            "x-extra: yes",
            "accept: text/event-stream, application/json",
        ] {
            assert!(head.contains(line), "{line} missing from {head}");
        }
    }

    #[tokio::test]
    async fn an_sse_answer_is_read_as_it_streams_by() {
        let events = format!(": keep\n\nid: 1\ndata: {TOOLS}\n\n");
        let (url, _heads) = server(vec![http("200 OK", "text/event-stream", &events)]).await;
        let (client, orders) = client();
        let StreamableHttpPostResponse::Sse(stream, session) = post(&client, &url).await else {
            panic!("an SSE answer")
        };
        assert_eq!(session.as_deref(), Some("s-1"));
        assert_eq!(orders.of("plan_trip"), None);
        let events: Vec<Sse> = stream.map(|e| e.unwrap()).collect().await;
        assert_eq!(
            events
                .iter()
                .filter_map(|e| e.data.as_deref())
                .collect::<Vec<_>>(),
            [TOOLS]
        );
        assert_eq!(
            orders.of("plan_trip"),
            Some(vec!["nights".to_string(), "destination".to_string()])
        );
    }

    #[tokio::test]
    async fn anything_else_is_sent_again_through_rmcp() {
        let (url, mut heads) = server(vec![
            http("503 Service Unavailable", "text/plain", "busy"),
            http("200 OK", "application/json", TOOLS),
        ])
        .await;
        let (client, _orders) = client();
        let StreamableHttpPostResponse::Json(message, _) = post(&client, &url).await else {
            panic!("rmcp's JSON answer")
        };
        assert!(is_tool_list(message));
        assert!(heads.recv().await.is_some());
        assert!(heads.recv().await.is_some(), "no second request");
    }

    #[tokio::test]
    async fn other_requests_go_straight_to_rmcp() {
        let (url, mut heads) = server(vec![http("202 Accepted", "text/plain", "")]).await;
        let (client, orders) = client();
        let ping = ClientJsonRpcMessage::notification(
            rmcp::model::ClientNotification::InitializedNotification(Default::default()),
        );
        let answer = client
            .post_message(url.as_str().into(), ping, None, None, HashMap::new())
            .await
            .unwrap();
        assert!(matches!(answer, StreamableHttpPostResponse::Accepted));
        assert!(heads.recv().await.is_some());
        assert!(orders.of("plan_trip").is_none());
    }
}
