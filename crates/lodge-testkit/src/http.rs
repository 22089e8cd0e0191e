//! A raw Streamable HTTP client: exact control of what is sent (headers, bodies already
//! serialized) and of when an answer counts as read, over one `reqwest::Client` whose
//! connections are reused. Errors are returned, not panicked on, so the bench can report
//! them; [`crate::raw`] wraps this for tests.

use crate::sse::EventReader;
use anyhow::{Context, bail};
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap};
use reqwest::{RequestBuilder, StatusCode};
use serde_json::Value;

/// The legacy (stateful) protocol version the client speaks.
pub const PROTOCOL_VERSION: &str = "2025-11-25";
/// The stateless era: no `initialize`, every request carries its version and the
/// client's capabilities in `_meta`, and mirrors its method (and name) in headers.
pub const MODERN_VERSION: &str = "2026-07-28";
/// Lodge's own header naming the runtime session (sandbox) a 2026-07-28 request runs in.
pub const LODGE_SESSION_ID: &str = "lodge-session-id";
pub const MCP_SESSION_ID: &str = "mcp-session-id";

/// What the client's `Accept` offers for the answer to a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accept {
    /// `application/json, text/event-stream`, as the spec asks.
    Both,
    /// `application/json` only: Lodge answers with the bare JSON response.
    Json,
}

impl Accept {
    fn header(self) -> &'static str {
        match self {
            Accept::Both => "application/json, text/event-stream",
            Accept::Json => "application/json",
        }
    }
}

/// reqwest is built without a default TLS crypto provider when it is built together with
/// `lodge connect` (features unify), and then refuses to build a client, though these
/// clients speak only plain HTTP. Installs ring once; later calls are no-ops.
pub fn install_tls_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// A POST of a JSON-RPC message, accepting `accept`.
fn json_post(client: &reqwest::Client, url: &str, accept: Accept) -> RequestBuilder {
    client
        .post(url)
        .header(CONTENT_TYPE, "application/json")
        .header(ACCEPT, accept.header())
}

/// A legacy-era POST of `body`; `session` adds the headers every request after
/// `initialize` carries (`Mcp-Session-Id`, `MCP-Protocol-Version`).
pub fn legacy_post(
    client: &reqwest::Client,
    url: &str,
    accept: Accept,
    session: Option<&str>,
    body: String,
) -> RequestBuilder {
    let mut request = json_post(client, url, accept).body(body);
    if let Some(id) = session {
        request = request
            .header(MCP_SESSION_ID, id)
            .header("mcp-protocol-version", PROTOCOL_VERSION);
    }
    request
}

/// A 2026-07-28 POST of `body` with the headers the spec asks for: `MCP-Protocol-Version`,
/// `Mcp-Method`, and `Mcp-Name` when the request names a tool (or resource). `session`
/// adds `Lodge-Session-Id`, so the request runs in that runtime session, not a new one.
pub fn modern_post(
    client: &reqwest::Client,
    url: &str,
    session: Option<&str>,
    method: &str,
    name: Option<&str>,
    body: String,
) -> RequestBuilder {
    let mut request = json_post(client, url, Accept::Both)
        .header("mcp-protocol-version", MODERN_VERSION)
        .header("mcp-method", method);
    if let Some(name) = name {
        request = request.header("mcp-name", name);
    }
    if let Some(id) = session {
        request = request.header(LODGE_SESSION_ID, id);
    }
    request.body(body)
}

#[derive(Clone)]
pub struct McpHttp {
    client: reqwest::Client,
    url: String,
}

impl McpHttp {
    pub fn new(url: String) -> anyhow::Result<Self> {
        Self::with_bearer(url, None)
    }

    /// A client that sends `Authorization: Bearer TOKEN` on every request.
    pub fn with_bearer(url: String, token: Option<&str>) -> anyhow::Result<Self> {
        install_tls_provider();
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(token) = token {
            let value = format!("Bearer {token}")
                .parse()
                .context("the token is not a header value")?;
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        // No proxy, no TLS, keep-alive and TCP_NODELAY (reqwest's defaults).
        let client = reqwest::Client::builder()
            .no_proxy()
            .default_headers(headers)
            .build()
            .context("cannot build the HTTP client")?;
        Ok(McpHttp { client, url })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// A new legacy session, set up as a client would: `initialize` (its answer read and
    /// checked), then `notifications/initialized`. Returns its id.
    pub async fn open_session(&self) -> anyhow::Result<String> {
        let mut reply = self.post(None, crate::messages::initialize(0)).await?;
        let response = reply.response_to(0).await?;
        let session = reply
            .session_id()
            .context("initialize answered without an Mcp-Session-Id")?;
        reply.finish().await?;
        crate::messages::check_initialized(&response)?;
        self.notify(&session, crate::messages::initialized())
            .await?;
        Ok(session)
    }

    /// POSTs one JSON-RPC message (already serialized, so a clock around this measures only
    /// the exchange); fails unless the status is a success.
    pub async fn post(&self, session: Option<&str>, body: String) -> anyhow::Result<Reply> {
        self.post_accepting(Accept::Both, session, body).await
    }

    pub async fn post_accepting(
        &self,
        accept: Accept,
        session: Option<&str>,
        body: String,
    ) -> anyhow::Result<Reply> {
        let request = legacy_post(&self.client, &self.url, accept, session, body);
        Reply::successful(request).await
    }

    /// POSTs and reads the whole answer, whatever its status; returns the status.
    pub async fn post_status(
        &self,
        session: Option<&str>,
        body: String,
    ) -> anyhow::Result<StatusCode> {
        let mut response = legacy_post(&self.client, &self.url, Accept::Both, session, body)
            .send()
            .await
            .context("POST failed")?;
        while response
            .chunk()
            .await
            .context("reading the body")?
            .is_some()
        {}
        Ok(response.status())
    }

    /// POSTs a 2026-07-28 request (see [`modern_post`]).
    pub async fn post_modern(
        &self,
        session: Option<&str>,
        method: &str,
        name: Option<&str>,
        body: String,
    ) -> anyhow::Result<Reply> {
        let request = modern_post(&self.client, &self.url, session, method, name, body);
        Reply::successful(request).await
    }

    /// POSTs a notification, or a response to a server request, and checks it was
    /// accepted (202).
    pub async fn notify(&self, session: &str, body: String) -> anyhow::Result<()> {
        let reply = self.post(Some(session), body).await?;
        let status = reply.status();
        reply.finish().await?;
        if status != StatusCode::ACCEPTED {
            bail!("notification answered {status}, expected 202");
        }
        Ok(())
    }

    /// Ends a session (DELETE); Lodge answers once the session's sandbox is gone.
    pub async fn delete(&self, session: &str) -> anyhow::Result<()> {
        self.delete_by(MCP_SESSION_ID, session, Some(PROTOCOL_VERSION))
            .await
    }

    /// Ends a runtime session a 2026-07-28 client used (DELETE with `Lodge-Session-Id`).
    pub async fn delete_modern(&self, session: &str) -> anyhow::Result<()> {
        self.delete_by(LODGE_SESSION_ID, session, None).await
    }

    async fn delete_by(
        &self,
        header: &str,
        session: &str,
        version: Option<&str>,
    ) -> anyhow::Result<()> {
        let mut request = self.client.delete(&self.url).header(header, session);
        if let Some(version) = version {
            request = request.header("mcp-protocol-version", version);
        }
        let response = request.send().await.context("DELETE failed")?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if !status.is_success() {
            bail!("DELETE answered {status}: {text}");
        }
        Ok(())
    }
}

/// The answer to a POST, read as it arrives: an SSE stream, or one JSON body.
pub struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Body,
}

enum Body {
    Events(EventReader),
    Whole(reqwest::Response),
}

impl Reply {
    /// Sends `request`; fails (with the body) unless the status is a success.
    async fn successful(request: RequestBuilder) -> anyhow::Result<Reply> {
        let response = request.send().await.context("POST failed")?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            bail!("POST answered {status}: {text}");
        }
        let headers = response.headers().clone();
        let is_sse = headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        let body = if is_sse {
            Body::Events(EventReader::new(response))
        } else {
            Body::Whole(response)
        };
        Ok(Reply {
            status,
            headers,
            body,
        })
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }

    pub fn session_id(&self) -> Option<String> {
        self.header(MCP_SESSION_ID)
    }

    /// The runtime session a 2026-07-28 request ran in (`Lodge-Session-Id`).
    pub fn lodge_session_id(&self) -> Option<String> {
        self.header(LODGE_SESSION_ID)
    }

    /// Reads until the JSON-RPC response to request `id` arrives, and returns it.
    /// Events before it (priming events, notifications) are skipped.
    pub async fn response_to(&mut self, id: u64) -> anyhow::Result<Value> {
        if let Body::Whole(response) = &mut self.body {
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await? {
                body.extend_from_slice(&chunk);
            }
            return serde_json::from_slice(&body).context("the JSON answer is not JSON");
        }
        loop {
            let message = self
                .next_message()
                .await
                .with_context(|| format!("waiting for the response to request {id}"))?;
            if crate::messages::is_response_to(&message, id) {
                return Ok(message);
            }
        }
    }

    /// Reads the next JSON-RPC message on the SSE stream (priming events skipped):
    /// what a legacy server sends the client while a call is in flight.
    pub async fn next_message(&mut self) -> anyhow::Result<Value> {
        let Body::Events(events) = &mut self.body else {
            bail!("the answer is not an SSE stream");
        };
        loop {
            match events.next().await {
                Some(Ok(event)) if event.data.is_empty() => continue,
                Some(Ok(event)) => {
                    return event
                        .try_json()
                        .with_context(|| format!("SSE data is not JSON: {}", event.data));
                }
                Some(Err(e)) => bail!("reading the SSE body: {e}"),
                None => bail!("the SSE stream ended"),
            }
        }
    }

    /// The next server request on the stream (notifications skipped): what a legacy
    /// server asks the client (elicitation, sampling) in the middle of a call.
    pub async fn next_request(&mut self) -> anyhow::Result<Value> {
        loop {
            if let Some(request) = crate::messages::server_request(self.next_message().await?)? {
                return Ok(request);
            }
        }
    }

    /// Reads the rest of the body, so the connection goes back to the pool.
    pub async fn finish(self) -> anyhow::Result<()> {
        match self.body {
            Body::Events(mut events) => {
                while let Some(event) = events.next().await {
                    event.context("reading the rest of the body")?;
                }
            }
            Body::Whole(mut response) => {
                while response
                    .chunk()
                    .await
                    .context("reading the rest of the body")?
                    .is_some()
                {}
            }
        }
        Ok(())
    }
}
