//! The raw client as tests use it: one legacy session's state, answers read whole, and a
//! panic (a failed test) wherever something is not as expected. Requests are built by
//! [`crate::http`], so tests and the bench send the same headers.

use crate::http::{Accept, install_tls_provider, legacy_post};
use crate::sse::{SseEvent, parse};
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

/// A raw Streamable HTTP client for one session.
pub struct Raw {
    pub http: reqwest::Client,
    pub url: String,
    pub session: Option<String>,
}

/// A whole answer.
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    pub fn events(&self) -> Vec<SseEvent> {
        parse(&self.body).unwrap_or_else(|e| panic!("not SSE ({e}): {}", self.body))
    }
}

impl Raw {
    pub fn new(url: String) -> Raw {
        install_tls_provider();
        Raw {
            http: reqwest::Client::new(),
            url,
            session: None,
        }
    }

    /// A client whose every request carries `Authorization: Bearer token`.
    pub fn signed_in(url: String, token: &str) -> Raw {
        let mut raw = Raw::new(url);
        let mut headers = reqwest::header::HeaderMap::new();
        if let Ok(value) = format!("Bearer {token}").parse() {
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        raw.http = reqwest::Client::builder()
            .default_headers(headers)
            .build()
            .unwrap_or_default();
        raw
    }

    pub fn post_builder(&self, body: &Value) -> reqwest::RequestBuilder {
        legacy_post(
            &self.http,
            &self.url,
            Accept::Both,
            self.session.as_deref(),
            body.to_string(),
        )
    }

    pub async fn send(request: reqwest::RequestBuilder) -> Reply {
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("request failed: {e}"));
        Reply {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            body: response
                .text()
                .await
                .unwrap_or_else(|e| panic!("reading the body failed: {e}")),
        }
    }

    pub async fn post(&self, body: Value) -> Reply {
        Self::send(self.post_builder(&body)).await
    }

    /// initialize + notifications/initialized; remembers the session id.
    pub async fn initialize(&mut self) -> Value {
        let reply = self
            .post(
                json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
                "protocolVersion":"2025-11-25","capabilities":{"elicitation":{},"sampling":{}},
                "clientInfo":{"name":"raw-test","version":"1"}}}),
            )
            .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        let id = reply.headers["mcp-session-id"]
            .to_str()
            .unwrap_or_else(|e| panic!("session id is not text: {e}"))
            .to_string();
        assert!(
            id.len() >= 32 && id.bytes().all(|b| (0x21..=0x7e).contains(&b)),
            "session id {id:?}"
        );
        self.session = Some(id);
        let result = reply
            .events()
            .last()
            .unwrap_or_else(|| panic!("no events: {}", reply.body))
            .json();
        let ack = self
            .post(json!({"jsonrpc":"2.0","method":"notifications/initialized"}))
            .await;
        assert_eq!(ack.status, 202);
        result
    }

    pub async fn call(&self, id: u64, tool: &str, args: Value) -> Reply {
        self.post(json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":tool,"arguments":args}}))
            .await
    }

    /// A 2026-07-28 `tools/call` naming no session, with no client capabilities.
    pub async fn modern_call(&self, id: u64, tool: &str, args: Value) -> Reply {
        let body = json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{
            "name":tool,"arguments":args,
            "_meta":{"io.modelcontextprotocol/protocolVersion":crate::http::MODERN_VERSION,
                "io.modelcontextprotocol/clientCapabilities":{}}}});
        let request = crate::http::modern_post(
            &self.http,
            &self.url,
            None,
            "tools/call",
            Some(tool),
            body.to_string(),
        );
        Self::send(request).await
    }

    /// The text of a tools/call result carried by the last event of an SSE reply.
    pub async fn call_text(&self, id: u64, tool: &str, args: Value) -> String {
        let reply = self.call(id, tool, args).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        let result = reply
            .events()
            .last()
            .unwrap_or_else(|| panic!("no events: {}", reply.body))
            .json();
        result["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or_else(|| panic!("no text: {result}"))
            .to_string()
    }

    /// Waits until the demo's `slow` tool has started in this session (it writes
    /// slow.log first), asking with request id `id`.
    pub async fn wait_for_slow_to_start(&self, id: u64) {
        crate::eventually(
            std::time::Duration::from_secs(10),
            "slow to start",
            async || {
                let reply = self
                    .call(id, "notes", json!({"action":"read","name":"slow.log"}))
                    .await;
                reply
                    .events()
                    .last()
                    .is_some_and(|e| e.json()["result"]["isError"] == false)
            },
        )
        .await;
    }

    pub fn get_builder(&self, last_event_id: Option<&str>) -> reqwest::RequestBuilder {
        let mut request = self
            .http
            .get(&self.url)
            .header("accept", "text/event-stream");
        if let Some(s) = &self.session {
            request = request.header("mcp-session-id", s);
        }
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        request
    }
}
