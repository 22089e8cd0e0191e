//! A raw Streamable HTTP client: exact control of what is sent and of when the
//! clock stops, over one `reqwest::Client` whose connections are reused.

use crate::sse;
use anyhow::{Context, bail};
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use serde_json::Value;

pub const PROTOCOL_VERSION: &str = "2025-11-25";
/// The stateless era: no `initialize`, every request carries its version and the
/// client's capabilities in `_meta`, and mirrors its method (and name) in headers.
pub const MODERN_VERSION: &str = "2026-07-28";
/// Lodge's own header naming the runtime session (sandbox) a 2026-07-28 request runs in.
pub const LODGE_SESSION_ID: &str = "lodge-session-id";

/// What the client's `Accept` offers for the answer to a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accept {
    /// `application/json, text/event-stream`, as the spec asks; Lodge answers with SSE.
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

#[derive(Clone)]
pub struct McpHttp {
    client: reqwest::Client,
    url: String,
}

impl McpHttp {
    /// A new legacy session, set up as a client would: `initialize` (its SSE answer
    /// read and checked), then `notifications/initialized`. Returns its id.
    pub async fn open_session(&self) -> anyhow::Result<String> {
        let mut reply = self.post(None, crate::mcp::initialize(0)).await?;
        let response = reply.response_to(0).await?;
        let session = reply
            .session_id()
            .context("initialize answered without an Mcp-Session-Id")?;
        reply.finish().await?;
        crate::mcp::check_initialized(&response)?;
        self.notify(&session, crate::mcp::initialized()).await?;
        Ok(session)
    }

    pub fn new(url: String) -> anyhow::Result<Self> {
        // Built together with `lodge` (`cargo build -p lodge -p lodge-bench`), reqwest gets
        // lodge's `rustls-no-provider` feature and refuses to build a client until a
        // crypto provider is installed, though the bench speaks only plain HTTP.
        let _ = rustls::crypto::ring::default_provider().install_default();
        // No proxy, no TLS, keep-alive and TCP_NODELAY (reqwest's defaults).
        let client = reqwest::Client::builder()
            .no_proxy()
            .build()
            .context("cannot build the HTTP client")?;
        Ok(McpHttp { client, url })
    }

    /// POSTs one JSON-RPC message (already serialized, so the clock measures only the
    /// exchange). `session` adds the session headers every request after `initialize` carries.
    pub async fn post(&self, session: Option<&str>, body: String) -> anyhow::Result<Reply> {
        self.post_accepting(Accept::Both, session, body).await
    }

    pub async fn post_accepting(
        &self,
        accept: Accept,
        session: Option<&str>,
        body: String,
    ) -> anyhow::Result<Reply> {
        let response = self.send(accept, session, body).await?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            bail!("POST answered {status}: {text}");
        }
        Ok(Reply {
            response,
            parser: sse::Parser::default(),
        })
    }

    /// POSTs and reads the whole answer, whatever its status; returns the status.
    pub async fn post_status(
        &self,
        session: Option<&str>,
        body: String,
    ) -> anyhow::Result<reqwest::StatusCode> {
        let mut response = self.send(Accept::Both, session, body).await?;
        while response
            .chunk()
            .await
            .context("reading the body")?
            .is_some()
        {}
        Ok(response.status())
    }

    async fn send(
        &self,
        accept: Accept,
        session: Option<&str>,
        body: String,
    ) -> anyhow::Result<reqwest::Response> {
        let mut req = self
            .client
            .post(&self.url)
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, accept.header())
            .body(body);
        if let Some(id) = session {
            req = req
                .header("mcp-session-id", id)
                .header("mcp-protocol-version", PROTOCOL_VERSION);
        }
        req.send().await.context("POST failed")
    }

    /// POSTs a 2026-07-28 request (serialized by [`crate::mcp::modern`]) with the headers
    /// the spec asks for: `MCP-Protocol-Version`, `Mcp-Method`, and `Mcp-Name` when the
    /// request names a tool. `session` adds `Lodge-Session-Id`, so the request runs in
    /// that runtime session instead of a new one.
    pub async fn post_modern(
        &self,
        session: Option<&str>,
        method: &str,
        name: Option<&str>,
        body: String,
    ) -> anyhow::Result<Reply> {
        let mut req = self
            .client
            .post(&self.url)
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, Accept::Both.header())
            .header("mcp-protocol-version", MODERN_VERSION)
            .header("mcp-method", method)
            .body(body);
        if let Some(name) = name {
            req = req.header("mcp-name", name);
        }
        if let Some(id) = session {
            req = req.header(LODGE_SESSION_ID, id);
        }
        let response = req.send().await.context("POST failed")?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            bail!("POST answered {status}: {text}");
        }
        Ok(Reply {
            response,
            parser: sse::Parser::default(),
        })
    }

    /// POSTs a notification, or a response to a server request, and checks it was
    /// accepted (202).
    pub async fn notify(&self, session: &str, body: String) -> anyhow::Result<()> {
        let reply = self.post(Some(session), body).await?;
        let status = reply.response.status();
        reply.finish().await?;
        if status != reqwest::StatusCode::ACCEPTED {
            bail!("notification answered {status}, expected 202");
        }
        Ok(())
    }

    /// Ends a session (DELETE); Lodge answers once the session's sandbox is gone.
    pub async fn delete(&self, session: &str) -> anyhow::Result<()> {
        self.delete_by("mcp-session-id", session, Some(PROTOCOL_VERSION))
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
        let mut req = self.client.delete(&self.url).header(header, session);
        if let Some(version) = version {
            req = req.header("mcp-protocol-version", version);
        }
        let response = req.send().await.context("DELETE failed")?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if !status.is_success() {
            bail!("DELETE answered {status}: {text}");
        }
        Ok(())
    }
}

/// The answer to a POST: an SSE stream, or (for JSON-only answers) one JSON body.
pub struct Reply {
    response: reqwest::Response,
    parser: sse::Parser,
}

impl Reply {
    pub fn session_id(&self) -> Option<String> {
        self.response
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }

    /// The runtime session a 2026-07-28 request ran in (`Lodge-Session-Id`).
    pub fn lodge_session_id(&self) -> Option<String> {
        self.response
            .headers()
            .get(LODGE_SESSION_ID)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }

    fn is_sse(&self) -> bool {
        self.response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"))
    }

    /// Reads until the JSON-RPC response to request `id` arrives, and returns it.
    /// Events before it (priming events, notifications) are skipped.
    pub async fn response_to(&mut self, id: u64) -> anyhow::Result<Value> {
        if !self.is_sse() {
            let mut body = Vec::new();
            while let Some(chunk) = self.response.chunk().await? {
                body.extend_from_slice(&chunk);
            }
            return serde_json::from_slice(&body).context("the JSON answer is not JSON");
        }
        loop {
            let message = self
                .next_message()
                .await
                .with_context(|| format!("waiting for the response to request {id}"))?;
            if is_response_to(&message, id) {
                return Ok(message);
            }
        }
    }

    /// Reads the next JSON-RPC message on the SSE stream (priming events skipped):
    /// what a legacy server sends the client while a call is in flight.
    pub async fn next_message(&mut self) -> anyhow::Result<Value> {
        if !self.is_sse() {
            bail!("the answer is not an SSE stream");
        }
        loop {
            while let Some(event) = self.parser.next_event() {
                if event.data.is_empty() {
                    continue;
                }
                return serde_json::from_str(&event.data)
                    .with_context(|| format!("SSE data is not JSON: {}", event.data));
            }
            match self
                .response
                .chunk()
                .await
                .context("reading the SSE body")?
            {
                Some(chunk) => self.parser.push(&chunk),
                None => bail!("the SSE stream ended"),
            }
        }
    }

    /// The next server request on the stream (notifications skipped): what a legacy
    /// server asks the client (elicitation, sampling) in the middle of a call.
    pub async fn next_request(&mut self) -> anyhow::Result<Value> {
        loop {
            if let Some(request) = crate::mcp::server_request(self.next_message().await?)? {
                return Ok(request);
            }
        }
    }

    /// Reads the rest of the body, so the connection goes back to the pool.
    pub async fn finish(mut self) -> anyhow::Result<()> {
        while self
            .response
            .chunk()
            .await
            .context("reading the rest of the body")?
            .is_some()
        {}
        Ok(())
    }
}

/// True for a JSON-RPC response (result or error) to request `id`.
pub fn is_response_to(message: &Value, id: u64) -> bool {
    message.get("id").and_then(Value::as_u64) == Some(id)
        && (message.get("result").is_some() || message.get("error").is_some())
}
