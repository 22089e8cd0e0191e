//! The Streamable HTTP link to a server that listens inside its sandbox (the
//! AgentCore container contract: port 8000, path `/mcp`). Lodge connects from inside
//! the sandbox's network namespace, so sessions never clash on ports.
//!
//! To the session actor it looks like the stdio link: bytes go in, classified messages
//! come out. The server's own `Mcp-Session-Id` stays here; the client only ever sees
//! the id Lodge gave it.

use crate::upstream::FromServer;
use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::{Method, Request, Response, StatusCode, body::Incoming, header};
use hyper_util::rt::TokioIo;
use lodge_proto::headers::{MCP_PROTOCOL_VERSION, MCP_SESSION_ID};
use lodge_proto::{Message, codes, error_body};
use lodge_sandbox::TcpConnector;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep};

/// How long a server may take to start listening.
const LISTEN_WAIT: Duration = Duration::from_secs(15);

struct Link {
    session: Arc<str>,
    connector: TcpConnector,
    port: u16,
    path: String,
    to_actor: mpsc::Sender<FromServer>,
    /// The server's `Mcp-Session-Id` and negotiated version, once `initialize` is done.
    server_session: Mutex<Option<(String, String)>>,
}

/// Relays queued messages to the server, one POST each, until the queue closes.
pub(crate) async fn http_link(
    session: Arc<str>,
    connector: TcpConnector,
    port: u16,
    path: String,
    mut queue: mpsc::Receiver<Bytes>,
    to_actor: mpsc::Sender<FromServer>,
) {
    let link = Arc::new(Link {
        session,
        connector,
        port,
        path,
        to_actor,
        server_session: Mutex::new(None),
    });
    while let Some(message) = queue.recv().await {
        tokio::spawn(link.clone().post(message));
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

    fn request(&self, method: Method, body: Bytes) -> Request<Full<Bytes>> {
        let mut builder = Request::builder()
            .method(method)
            .uri(&self.path)
            .header(header::HOST, format!("127.0.0.1:{}", self.port))
            .header(header::ACCEPT, "application/json, text/event-stream")
            .header(header::CONTENT_TYPE, "application/json");
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

    /// Reads a response body: one JSON message, or an SSE stream of them.
    async fn relay_body(&self, response: Response<Incoming>) {
        let is_sse = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if is_sse {
            let mut events = sse_stream::SseStream::new(response.into_body());
            while let Some(Ok(event)) = events.next().await {
                let Some(data) = event.data.filter(|d| !d.is_empty()) else {
                    continue;
                };
                if !self.deliver(Bytes::from(data)).await {
                    return;
                }
            }
        } else if let Ok(body) = response.into_body().collect().await {
            let body = body.to_bytes();
            if !body.iter().all(u8::is_ascii_whitespace) {
                self.deliver(body).await;
            }
        }
    }

    async fn post(self: Arc<Self>, bytes: Bytes) {
        let message = Message::parse(bytes.clone()).ok();
        let id = message.as_ref().and_then(Message::request_id).cloned();
        let initialize = message.as_ref().and_then(Message::method) == Some("initialize");
        let response = match self.send(self.request(Method::POST, bytes)).await {
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
            let body = response
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
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
        self.relay_body(response).await;
    }

    /// The server's standalone stream (GET): messages that belong to no request.
    async fn listen(self: Arc<Self>) {
        while !self.to_actor.is_closed() {
            let request = self.request(Method::GET, Bytes::new());
            match self.send(request).await {
                Ok(response) if response.status().is_success() => self.relay_body(response).await,
                // No standalone stream (405) or no server: nothing to listen to.
                _ => return,
            }
            sleep(Duration::from_millis(100)).await;
        }
    }
}

fn error_message(id: &lodge_proto::Id, why: &str) -> Option<FromServer> {
    let bytes = error_body(Some(id), codes::INTERNAL_ERROR, why);
    Message::parse(bytes).ok().map(FromServer::Message)
}
