//! The Streamable HTTP link to a server that listens inside its sandbox (the
//! AgentCore container contract: port 8000, path `/mcp`). Lodge connects from inside
//! the sandbox's network namespace, so sessions never clash on ports.
//!
//! To the session actor it looks like the stdio link: bytes go in, classified messages
//! come out. The server's own `Mcp-Session-Id` stays here; the client only ever sees
//! the id Lodge gave it.
//!
//! Every read from the server is capped at the stdio transport's line bound
//! (`max_message_bytes`): a JSON response body, an error body, and each SSE event (the
//! bytes read since the last event). A server that sends more gets its stream dropped
//! and the request answered with an error; Lodge never buffers more than the cap (plus
//! one frame) for it.

use crate::upstream::{FromServer, Outgoing};
use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::client::conn::http1;
use hyper::{Method, Request, Response, StatusCode, body::Incoming, header};
use hyper_util::rt::TokioIo;
use lodge_proto::headers::{
    LODGE_PRINCIPAL, LODGE_PRINCIPAL_ISSUER, MCP_PROTOCOL_VERSION, MCP_SESSION_ID,
};
use lodge_proto::{Message, codes, error_body};
use lodge_sandbox::TcpConnector;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep};

/// How long a server may take to start listening.
const LISTEN_WAIT: Duration = Duration::from_secs(15);

struct Link {
    session: Arc<str>,
    /// The most bytes one message (response body or SSE event) may have.
    max_message: usize,
    connector: TcpConnector,
    port: u16,
    path: String,
    to_actor: mpsc::Sender<FromServer>,
    /// The server's `Mcp-Session-Id` and negotiated version, once `initialize` is done.
    server_session: Mutex<Option<(String, String)>>,
    /// The session's user, told to the server on every request (never the token).
    principal: crate::Principal,
}

/// Where a session's HTTP server listens inside its sandbox, and for whom it works.
pub(crate) struct HttpTarget {
    pub port: u16,
    pub path: String,
    pub principal: crate::Principal,
}

/// Relays queued messages to the server, one POST each, until the queue closes.
pub(crate) async fn http_link(
    session: Arc<str>,
    connector: TcpConnector,
    HttpTarget {
        port,
        path,
        principal,
    }: HttpTarget,
    max_message: usize,
    mut queue: mpsc::Receiver<Outgoing>,
    to_actor: mpsc::Sender<FromServer>,
) {
    let link = Arc::new(Link {
        session,
        max_message,
        connector,
        port,
        path,
        to_actor,
        server_session: Mutex::new(None),
        principal,
    });
    while let Some(Outgoing { bytes, trace }) = queue.recv().await {
        tokio::spawn(link.clone().post(bytes, trace));
    }
}

impl Link {
    fn session_headers(&self) -> Option<(String, String)> {
        self.server_session
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    async fn send(&self, request: Request<Full<Bytes>>) -> io::Result<Response<Incoming>> {
        let deadline = Instant::now() + LISTEN_WAIT;
        let stream = loop {
            match self.connector.connect(self.port).await {
                Ok(stream) => break stream,
                // The server may still be starting: wait for it to listen.
                Err(e)
                    if e.kind() == io::ErrorKind::ConnectionRefused
                        && Instant::now() < deadline =>
                {
                    sleep(Duration::from_millis(20)).await;
                }
                Err(e) => return Err(e),
            }
        };
        let _ = stream.set_nodelay(true);
        let (mut sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(io::Error::other)?;
        tokio::spawn(connection);
        sender.send_request(request).await.map_err(io::Error::other)
    }

    fn request(&self, method: Method, body: Bytes, trace: Option<&str>) -> Request<Full<Bytes>> {
        let mut builder = Request::builder()
            .method(method)
            .uri(&self.path)
            .header(header::HOST, format!("127.0.0.1:{}", self.port))
            .header(header::ACCEPT, "application/json, text/event-stream")
            .header(header::CONTENT_TYPE, "application/json");
        if !self.principal.is_anonymous() {
            // The front admits only printable principals, so these always parse.
            let value = |v: &str| header::HeaderValue::from_str(v).ok();
            if let (Some(subject), Some(issuer)) = (
                value(self.principal.subject()),
                value(self.principal.issuer()),
            ) {
                builder = builder
                    .header(LODGE_PRINCIPAL, subject)
                    .header(LODGE_PRINCIPAL_ISSUER, issuer);
            }
        }
        // Valid W3C traceparents only (`crate::trace`), so always a valid header.
        if let Some(trace) = trace.and_then(|t| header::HeaderValue::from_str(t).ok()) {
            builder = builder.header("traceparent", trace);
        }
        if let Some((id, version)) = self.session_headers() {
            builder = builder
                .header(MCP_SESSION_ID, id)
                .header(MCP_PROTOCOL_VERSION, version);
        }
        builder.body(Full::new(body)).unwrap_or_default()
    }

    async fn deliver(&self, bytes: Bytes) -> bool {
        match Message::parse(bytes) {
            Ok(message) => self
                .to_actor
                .send(FromServer::Message(message))
                .await
                .is_ok(),
            Err(e) => {
                tracing::warn!(session = %self.session, error = %e, "server sent something that is not JSON-RPC; skipped");
                true
            }
        }
    }

    /// Reads a response body: one JSON message, or an SSE stream of them. `id`: the
    /// request it answers, told if the server sends more than a message may hold.
    async fn relay_body(&self, response: Response<Incoming>, id: Option<&lodge_proto::Id>) {
        let is_sse = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if is_sse {
            // Bytes read since the last event; reset as each event comes out.
            // (`usize::MAX` once over the cap.)
            let pending = Arc::new(AtomicUsize::new(0));
            let max = self.max_message;
            let counted = Arc::clone(&pending);
            let data = response.into_body().into_data_stream().map(move |chunk| {
                let chunk = chunk.map_err(io::Error::other)?;
                let total = counted.fetch_add(chunk.len(), Ordering::Relaxed) + chunk.len();
                if total > max {
                    counted.store(usize::MAX, Ordering::Relaxed);
                    return Err(io::Error::other(too_large(max)));
                }
                Ok(chunk)
            });
            let mut events = sse_stream::SseStream::from_bytes_stream(data);
            while let Some(event) = events.next().await {
                let Ok(event) = event else {
                    if pending.load(Ordering::Relaxed) == usize::MAX {
                        self.too_large(id).await;
                    }
                    return;
                };
                pending.store(0, Ordering::Relaxed);
                let Some(data) = event.data.filter(|d| !d.is_empty()) else {
                    continue;
                };
                if !self.deliver(Bytes::from(data)).await {
                    return;
                }
            }
        } else {
            match self.read_body(response).await {
                Ok(body) if !body.iter().all(u8::is_ascii_whitespace) => {
                    self.deliver(body).await;
                }
                Ok(_) => {}
                Err(BodyError::TooLarge) => self.too_large(id).await,
                Err(BodyError::Failed) => {}
            }
        }
    }

    /// A whole (non-SSE) body, at most `max_message` bytes.
    async fn read_body(&self, response: Response<Incoming>) -> Result<Bytes, BodyError> {
        match Limited::new(response.into_body(), self.max_message)
            .collect()
            .await
        {
            Ok(body) => Ok(body.to_bytes()),
            Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(BodyError::TooLarge),
            Err(_) => Err(BodyError::Failed),
        }
    }

    /// The server sent more than a message may hold: say so, and answer the request.
    async fn too_large(&self, id: Option<&lodge_proto::Id>) {
        let why = format!("the MCP server sent {}", too_large(self.max_message));
        tracing::warn!(session = %self.session, "{why}; dropped");
        if let Some(error) = id.and_then(|id| error_message(id, &why)) {
            let _ = self.to_actor.send(error).await;
        }
    }

    async fn post(self: Arc<Self>, bytes: Bytes, trace: Option<Arc<str>>) {
        let message = Message::parse(bytes.clone()).ok();
        let id = message.as_ref().and_then(Message::request_id).cloned();
        let initialize = message.as_ref().and_then(Message::method) == Some("initialize");
        let response = match self
            .send(self.request(Method::POST, bytes, trace.as_deref()))
            .await
        {
            Ok(response) => response,
            Err(e) => {
                let why = format!("the MCP server's HTTP endpoint failed: {e}");
                if let Some(error) = id.and_then(|id| error_message(&id, &why)) {
                    let _ = self.to_actor.send(error).await;
                }
                return;
            }
        };
        if initialize
            && let Some(server_id) = response
                .headers()
                .get(MCP_SESSION_ID)
                .and_then(|v| v.to_str().ok())
        {
            // The version header follows the body's negotiation; the newest legacy one
            // is what Lodge's clients speak on this path.
            let version = lodge_proto::version::LEGACY[lodge_proto::version::LEGACY.len() - 1];
            *self
                .server_session
                .lock()
                .unwrap_or_else(|p| p.into_inner()) =
                Some((server_id.to_string(), version.to_string()));
            tokio::spawn(self.clone().listen());
        }
        let status = response.status();
        if status == StatusCode::ACCEPTED {
            return;
        }
        if !status.is_success() && id.is_some() {
            let body = match self.read_body(response).await {
                Ok(body) => body,
                Err(BodyError::TooLarge) => return self.too_large(id.as_ref()).await,
                Err(BodyError::Failed) => Bytes::new(),
            };
            // The server's own JSON-RPC error, if it sent one; else say what happened.
            if Message::parse(body.clone()).is_err() {
                let why = format!("the MCP server answered HTTP {status}");
                if let Some(error) = id.and_then(|id| error_message(&id, &why)) {
                    let _ = self.to_actor.send(error).await;
                }
            } else {
                self.deliver(body).await;
            }
            return;
        }
        self.relay_body(response, id.as_ref()).await;
    }

    /// The server's standalone stream (GET): messages that belong to no request.
    async fn listen(self: Arc<Self>) {
        while !self.to_actor.is_closed() {
            let request = self.request(Method::GET, Bytes::new(), None);
            match self.send(request).await {
                Ok(response) if response.status().is_success() => {
                    self.relay_body(response, None).await
                }
                // No standalone stream (405) or no server: nothing to listen to.
                _ => return,
            }
            sleep(Duration::from_millis(100)).await;
        }
    }
}

enum BodyError {
    TooLarge,
    Failed,
}

fn too_large(max: usize) -> String {
    format!("a message larger than {max} bytes")
}

fn error_message(id: &lodge_proto::Id, why: &str) -> Option<FromServer> {
    let bytes = error_body(Some(id), codes::INTERNAL_ERROR, why);
    Message::parse(bytes).ok().map(FromServer::Message)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A server that answers every request with `head` and then `body_len` bytes of
    /// `fill` (as much as Lodge reads before it hangs up).
    async fn flooding_server(head: String, fill: u8, body_len: usize) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let head = head.clone();
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match conn.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    if conn.write_all(head.as_bytes()).await.is_err() {
                        return;
                    }
                    let block = vec![fill; 1 << 16];
                    let mut left = body_len;
                    while left > 0 {
                        let n = left.min(block.len());
                        if conn.write_all(&block[..n]).await.is_err() {
                            return; // Lodge stopped reading: the point
                        }
                        left -= n;
                    }
                });
            }
        });
        port
    }

    /// Sends one `tools/call` (id 7) through a link capped at 1 MiB; returns what the
    /// actor got.
    async fn call_through(port: u16) -> String {
        call_traced(port, None).await
    }

    async fn call_traced(port: u16, trace: Option<&str>) -> String {
        let (to_server, queue) = mpsc::channel(4);
        let (to_actor, mut from_server) = mpsc::channel(4);
        tokio::spawn(http_link(
            "s".into(),
            TcpConnector::host(),
            HttpTarget {
                port,
                path: "/mcp".into(),
                principal: crate::Principal::anonymous(),
            },
            1 << 20,
            queue,
            to_actor,
        ));
        to_server
            .send(Outgoing {
                bytes: Bytes::from_static(
                    br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{}}"#,
                ),
                trace: trace.map(Arc::from),
            })
            .await
            .unwrap();
        let got = tokio::time::timeout(Duration::from_secs(60), from_server.recv())
            .await
            .expect("an answer within a minute")
            .unwrap();
        match got {
            FromServer::Message(m) => String::from_utf8_lossy(&m.bytes).into_owned(),
            FromServer::Closed(why) => format!("closed {why:?}"),
        }
    }

    /// The request Lodge sends carries the trace it continues, and only then.
    #[tokio::test]
    async fn a_call_carries_its_trace_to_the_server() {
        for trace in [
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-1111111111111111-01"),
            None,
        ] {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            let (head_tx, head_rx) = tokio::sync::oneshot::channel();
            tokio::spawn(async move {
                let (mut tcp, _) = listener.accept().await.unwrap();
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = tcp.read(&mut buf).await.unwrap();
                    head.extend_from_slice(&buf[..n]);
                }
                let body = r#"{"jsonrpc":"2.0","id":7,"result":{}}"#;
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                tcp.write_all(reply.as_bytes()).await.unwrap();
                let _ = head_tx.send(String::from_utf8_lossy(&head).to_lowercase());
            });
            let got = call_traced(port, trace).await;
            assert!(got.contains(r#""result""#), "{got}");
            let head = head_rx.await.unwrap();
            match trace {
                Some(trace) => assert!(
                    head.contains(&format!("traceparent: {trace}\r\n")),
                    "{head}"
                ),
                None => assert!(!head.contains("traceparent"), "{head}"),
            }
        }
    }

    /// A 100 MiB JSON response is cut off at the cap and the call answered with an error
    /// (uncapped, Lodge buffered all of it, could not parse it and never answered).
    #[tokio::test]
    async fn a_100_mib_response_is_refused() {
        let len = 100 << 20;
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{}",
            len + 41,
            r#"{"jsonrpc":"2.0","id":7,"result":{"x":""#
        );
        let port = flooding_server(head, b' ', len).await;
        let got = call_through(port).await;
        assert!(
            got.contains("larger than 1048576 bytes"),
            "{}",
            &got[..got.len().min(200)]
        );
        assert!(got.contains(r#""id":7"#), "{got}");
    }

    /// One 100 MiB SSE event is cut off at the cap and the call answered with an error.
    #[tokio::test]
    async fn a_100_mib_sse_event_is_refused() {
        let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\ndata: ".to_owned();
        let port = flooding_server(head, b'a', 100 << 20).await;
        let got = call_through(port).await;
        assert!(
            got.contains("larger than 1048576 bytes"),
            "{}",
            &got[..got.len().min(200)]
        );
        assert!(got.contains(r#""id":7"#), "{got}");
    }
}
