//! `conformance-server`: an rmcp server exposing what the official MCP conformance suite
//! (`@modelcontextprotocol/conformance`, requirement sets `2025-11-25` and `2026-07-28`)
//! asks of a server under test, in both protocol eras on one endpoint:
//!
//! - **legacy** (`initialize`, sessions): elicitation, sampling and roots are requests the
//!   server sends while a tool runs; logs follow `logging/setLevel`; `resources/subscribe`
//!   starts `notifications/resources/updated` for `test://watched-resource` every 3 s;
//! - **2026-07-28** (stateless): the same tools ask by MRTR (`resultType: "input_required"`,
//!   HMAC-sealed `requestState`), logs only when the request's `_meta` names a `logLevel`,
//!   `server/discover`, and `subscriptions/listen` for list changes.
//!
//! Exact contracts (texts, payloads, schemas) live in [`fixtures`]; the tools are listed by
//! `tools/list` with their descriptions. It serves stdio (how Lodge hosts it) or Streamable
//! HTTP (`--http ADDR`, path `/mcp`), see `main.rs`.

// Sampling, roots and logging are deprecated by SEP-2577; the legacy scenarios test them.
#![allow(deprecated)]

pub mod fixtures;
pub mod input;
mod tools;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::{
    ErrorData, RoleServer, ServerHandler,
    model::{
        CallToolRequestParams, CallToolResponse, CompleteRequestParams, CompleteResult,
        GetPromptRequestParams, GetPromptResponse, GetPromptResult, Implementation,
        ListPromptsResult, ListResourceTemplatesResult, ListResourcesResult, ListToolsResult,
        LoggingLevel, PaginatedRequestParams, ReadResourceRequestParams, ReadResourceResponse,
        ReadResourceResult, ResourceUpdatedNotificationParam, ServerCapabilities, ServerConfig,
        SetLevelRequestParams, SubscribeRequestParams, SubscriptionFilter,
        UnsubscribeRequestParams,
    },
    service::{Peer, RequestContext, SubscriptionContext},
};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::input::{Ask, Asked, StateSeal};

pub const SERVER_NAME: &str = "lodge-conformance-server";
/// How often `test://watched-resource` "changes" while subscribed (legacy era).
pub const WATCH_INTERVAL: Duration = Duration::from_secs(3);

const INSTRUCTIONS: &str = "Conformance test server for Lodge: every tool, resource and \
prompt the official MCP conformance suite asks of a server, in both protocol eras.";

/// A list whose membership changed, for `subscriptions/listen` streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Change {
    Tools,
    Prompts,
}

/// State shared by every session of one process (and by stateless requests).
struct Shared {
    seal: StateSeal,
    dynamic_tool: AtomicBool,
    dynamic_prompt: AtomicBool,
    changes: broadcast::Sender<Change>,
}

/// State of one legacy session (one `initialize`).
#[derive(Default)]
struct Session {
    /// `logging/setLevel`; until set, every level is sent.
    log_level: Mutex<Option<LoggingLevel>>,
    subscriptions: Mutex<HashSet<String>>,
    /// Whether the task announcing `test://watched-resource` updates is running.
    watching: AtomicBool,
}

/// The server. Clone it per connection with [`ConformanceServer::new_session`].
#[derive(Clone)]
pub struct ConformanceServer {
    shared: Arc<Shared>,
    session: Arc<Session>,
}

impl ConformanceServer {
    /// A server with fresh shared state. Fails only when `CONFORMANCE_SERVER_STATE_KEY` is set
    /// to an unusable key.
    pub fn new() -> Result<Self, String> {
        let (changes, _) = broadcast::channel(64);
        Ok(ConformanceServer {
            shared: Arc::new(Shared {
                seal: StateSeal::from_env()?,
                dynamic_tool: AtomicBool::new(false),
                dynamic_prompt: AtomicBool::new(false),
                changes,
            }),
            session: Arc::default(),
        })
    }

    /// The same shared state, fresh per-session state (log level, subscriptions).
    pub fn new_session(&self) -> Self {
        ConformanceServer {
            shared: self.shared.clone(),
            session: Arc::default(),
        }
    }

    /// Whether a log message at `level` may be sent for this request: in 2026-07-28 only
    /// when the request's `_meta` asked for logs at that level or below; in a legacy session
    /// per `logging/setLevel` (everything until it is set).
    fn may_log(&self, ctx: &RequestContext<RoleServer>, level: LoggingLevel) -> bool {
        let threshold = if input::is_modern(ctx) {
            match ctx.meta.log_level() {
                Some(threshold) => threshold,
                None => return false,
            }
        } else {
            match *self
                .session
                .log_level
                .lock()
                .unwrap_or_else(|e| e.into_inner())
            {
                Some(threshold) => threshold,
                None => return true,
            }
        };
        rank(level) >= rank(threshold)
    }

    /// Toggles `test_dynamic_tool` / `test_dynamic_prompt` and announces the change: to the
    /// legacy session's client, and to every open `subscriptions/listen` stream.
    async fn trigger_change(&self, ctx: &RequestContext<RoleServer>, change: Change) {
        let flag = match change {
            Change::Tools => &self.shared.dynamic_tool,
            Change::Prompts => &self.shared.dynamic_prompt,
        };
        flag.fetch_xor(true, Ordering::SeqCst);
        if !input::is_modern(ctx) {
            let _ = match change {
                Change::Tools => ctx.peer.notify_tool_list_changed().await,
                Change::Prompts => ctx.peer.notify_prompt_list_changed().await,
            };
        }
        // No listener is not an error.
        let _ = self.shared.changes.send(change);
    }

    /// Starts (once per session) the task that announces `test://watched-resource` updates
    /// every [`WATCH_INTERVAL`] while it is subscribed.
    fn watch(&self, peer: Peer<RoleServer>) {
        if self.session.watching.swap(true, Ordering::SeqCst) {
            return;
        }
        let session = self.session.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(WATCH_INTERVAL).await;
                let subscribed = session
                    .subscriptions
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .contains(fixtures::WATCHED_URI);
                if !subscribed {
                    break;
                }
                let update = ResourceUpdatedNotificationParam::new(fixtures::WATCHED_URI);
                if peer.notify_resource_updated(update).await.is_err() {
                    break;
                }
            }
            session.watching.store(false, Ordering::SeqCst);
        });
    }
}

/// Severity order of logging levels.
fn rank(level: LoggingLevel) -> u8 {
    match level {
        LoggingLevel::Debug => 0,
        LoggingLevel::Info => 1,
        LoggingLevel::Notice => 2,
        LoggingLevel::Warning => 3,
        LoggingLevel::Error => 4,
        LoggingLevel::Critical => 5,
        LoggingLevel::Alert => 6,
        LoggingLevel::Emergency => 7,
    }
}

/// Builds an rmcp result type from its wire JSON, marked `resultType: "complete"` (required
/// by 2026-07-28; rmcp strips it again for legacy peers).
fn from_json<T: DeserializeOwned>(what: &str, mut value: Value) -> Result<T, ErrorData> {
    if let Some(object) = value.as_object_mut() {
        object
            .entry("resultType")
            .or_insert_with(|| Value::from("complete"));
    }
    serde_json::from_value(value)
        .map_err(|e| ErrorData::internal_error(format!("building {what}: {e}"), None))
}

impl ServerHandler for ConformanceServer {
    fn get_info(&self) -> ServerConfig {
        let capabilities = ServerCapabilities::builder()
            .enable_tools()
            .enable_tool_list_changed()
            .enable_prompts()
            .enable_prompts_list_changed()
            .enable_resources()
            .enable_resources_list_changed()
            .enable_resources_subscribe()
            .enable_logging()
            .enable_completions()
            .build();
        ServerConfig::new(capabilities)
            .with_server_info(Implementation::new(SERVER_NAME, env!("CARGO_PKG_VERSION")))
            .with_instructions(INSTRUCTIONS)
    }

    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        _: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        *self
            .session
            .log_level
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(request.level);
        Ok(())
    }

    async fn list_tools(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let dynamic = self.shared.dynamic_tool.load(Ordering::SeqCst);
        from_json("tools/list", json!({"tools": fixtures::tools(dynamic)}))
    }

    /// Lets rmcp check `Mcp-Param-*` headers against the tool's `x-mcp-header` properties
    /// (SEP-2243) before the call runs.
    fn get_tool(&self, name: &str) -> Option<rmcp::model::Tool> {
        let dynamic = self.shared.dynamic_tool.load(Ordering::SeqCst);
        let tools = fixtures::tools(dynamic);
        let tool = tools.as_array()?.iter().find(|t| t["name"] == name)?;
        serde_json::from_value(tool.clone()).ok()
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        tools::call(self, request, ctx).await
    }

    async fn list_prompts(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        let dynamic = self.shared.dynamic_prompt.load(Ordering::SeqCst);
        from_json(
            "prompts/list",
            json!({"prompts": fixtures::prompts(dynamic)}),
        )
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        let arg = |name: &str| -> Result<String, ErrorData> {
            request
                .arguments
                .as_ref()
                .and_then(|a| a.get(name))
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| {
                    ErrorData::invalid_params(format!("missing argument {name:?}"), None)
                })
        };
        let user_text =
            |text: &str| json!({"role": "user", "content": {"type": "text", "text": text}});
        let messages = match request.name.as_str() {
            "test_simple_prompt" => json!([user_text(fixtures::SIMPLE_PROMPT_TEXT)]),
            "test_prompt_with_arguments" => {
                let (arg1, arg2) = (arg("arg1")?, arg("arg2")?);
                json!([user_text(&format!(
                    "Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"
                ))])
            }
            "test_prompt_with_embedded_resource" => json!([
                {"role": "user", "content": {"type": "resource", "resource": {
                    "uri": arg("resourceUri")?, "mimeType": "text/plain",
                    "text": fixtures::PROMPT_RESOURCE_TEXT}}},
                user_text(fixtures::PROMPT_RESOURCE_FOLLOWUP)
            ]),
            "test_prompt_with_image" => json!([
                {"role": "user", "content": {"type": "image", "data": fixtures::PNG_BASE64,
                    "mimeType": "image/png"}},
                user_text(fixtures::PROMPT_IMAGE_FOLLOWUP)
            ]),
            "test_input_required_result_prompt" => {
                let ask = Ask::elicit(
                    "user_context",
                    "What context should the prompt use?",
                    json!({"type": "object", "properties": {"context": {"type": "string"}},
                        "required": ["context"]}),
                );
                let answers =
                    match input::ask(&ctx, vec![ask], request.input_responses.as_ref(), None)
                        .await?
                    {
                        Asked::InputRequired(more) => return Ok(more.into()),
                        Asked::Answers(answers) => answers,
                    };
                let context = answers["user_context"]["content"]["context"]
                    .as_str()
                    .unwrap_or("(none)")
                    .to_string();
                json!([user_text(&format!("Use this context: {context}"))])
            }
            "test_dynamic_prompt" if self.shared.dynamic_prompt.load(Ordering::SeqCst) => {
                json!([user_text(
                    "This prompt appeared after test_trigger_prompt_change."
                )])
            }
            other => {
                return Err(ErrorData::invalid_params(
                    format!("unknown prompt: {other}"),
                    None,
                ));
            }
        };
        let result: GetPromptResult = from_json("prompts/get", json!({"messages": messages}))?;
        Ok(result.into())
    }

    async fn list_resources(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        from_json(
            "resources/list",
            json!({"resources": fixtures::resources()}),
        )
    }

    async fn list_resource_templates(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        from_json(
            "resources/templates/list",
            json!({"resourceTemplates": fixtures::resource_templates()}),
        )
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        match fixtures::read_resource(&request.uri) {
            Some(contents) => {
                let result: ReadResourceResult = from_json("resources/read", contents)?;
                Ok(result.into())
            }
            // rmcp turns -32002 into -32602 for 2026-07-28 peers (SEP-2164).
            None => Err(ErrorData::resource_not_found(
                "Resource not found",
                Some(json!({"uri": request.uri})),
            )),
        }
    }

    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let watched = request.uri == fixtures::WATCHED_URI;
        self.session
            .subscriptions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(request.uri);
        if watched {
            self.watch(ctx.peer.clone());
        }
        Ok(())
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        _: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.session
            .subscriptions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&request.uri);
        Ok(())
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        _: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, ErrorData> {
        let wire = serde_json::to_value(&request)
            .map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
        let is_arg1 = wire["ref"]["type"] == "ref/prompt"
            && wire["ref"]["name"] == "test_prompt_with_arguments"
            && wire["argument"]["name"] == "arg1";
        let prefix = wire["argument"]["value"].as_str().unwrap_or("");
        let values: Vec<&str> = if is_arg1 {
            fixtures::ARG1_COMPLETIONS
                .into_iter()
                .filter(|v| v.starts_with(prefix))
                .collect()
        } else {
            Vec::new()
        };
        from_json(
            "completion/complete",
            json!({"completion": {"values": values, "total": values.len(), "hasMore": false}}),
        )
    }

    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        // rmcp narrows this to what get_info advertises.
        Some(requested.clone())
    }

    async fn listen(&self, ctx: SubscriptionContext) -> Result<(), ErrorData> {
        let mut changes = self.shared.changes.subscribe();
        loop {
            tokio::select! {
                () = ctx.cancelled() => return Ok(()),
                change = changes.recv() => {
                    // The sink drops what the client did not ask for.
                    let _ = match change {
                        Ok(Change::Tools) => ctx.sink().notify_tool_list_changed().await,
                        Ok(Change::Prompts) => ctx.sink().notify_prompt_list_changed().await,
                        Err(broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(broadcast::error::RecvError::Closed) => return Ok(()),
                    };
                }
            }
        }
    }
}
