//! Exact-value checks of the conformance server through Lodge (legacy era, rmcp client over
//! Streamable HTTP, `lodge serve` hosting examples/conformance-server over stdio).
//!
//! The official suite's checks are often shallow (any text block passes
//! `tools-call-simple-text`, any increasing numbers pass `tools-call-with-progress`); these
//! tests pin every value the conformance server promises, so a relay that mangles, drops,
//! reorders or misroutes anything fails here even when the suite passes.
#![allow(clippy::unwrap_used)]
// rmcp marks sampling, roots and logging deprecated (SEP-2577); the legacy era has them.
#![allow(deprecated)]

use crate::common::{Lodge, conformance_server_toml, eventually};
use rmcp::model::{
    CallToolRequestParams, ClientCapabilities, ClientConfig, CompleteRequestParams,
    CreateMessageRequestParams, CreateMessageResult, ElicitRequestParams, ElicitResult,
    GetPromptRequestParams, Implementation, ListRootsResult, LoggingMessageNotificationParam,
    ProgressNotificationParam, ProtocolVersion, ReadResourceRequestParams,
    ResourceUpdatedNotificationParam, SamplingMessage, SetLevelRequestParams,
    SubscribeRequestParams, UnsubscribeRequestParams,
};
use rmcp::service::{NotificationContext, RequestContext, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{ClientHandler, ErrorData, RoleClient, ServiceExt};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const SAMPLED: &str = "Paris, of course.";
const PNG: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC";
const WAV: &str =
    "UklGRjQAAABXQVZFZm10IBAAAAABAAEAQB8AAIA+AAACABAAZGF0YRAAAAAAAAAAAAAAAAAAAAAAAAAA";

#[derive(Default)]
struct Seen {
    progress: Vec<Value>,
    logs: Vec<Value>,
    elicitations: Vec<Value>,
    samplings: Vec<Value>,
    roots_asked: usize,
    updated: Vec<String>,
    tools_changed: usize,
    prompts_changed: usize,
}

/// Answers elicitation with `answers[n]` (in order; the last repeats) and sampling with
/// [`SAMPLED`]; records everything the server sent.
#[derive(Clone)]
struct Client {
    answers: Arc<Vec<Value>>,
    seen: Arc<Mutex<Seen>>,
}

impl Client {
    fn new(answers: Vec<Value>) -> Self {
        Client {
            answers: Arc::new(answers),
            seen: Arc::default(),
        }
    }

    async fn connect(self, lodge: &Lodge) -> RunningService<RoleClient, Client> {
        self.serve(StreamableHttpClientTransport::from_uri(lodge.url()))
            .await
            .unwrap()
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap()
    }
}

/// Wire JSON of an rmcp value, without the `_meta` rmcp adds to requests itself.
fn wire(value: impl serde::Serialize) -> Value {
    let mut value = serde_json::to_value(value).unwrap();
    if let Some(object) = value.as_object_mut() {
        object.remove("_meta");
    }
    value
}

impl ClientHandler for Client {
    fn get_info(&self) -> ClientConfig {
        let caps = ClientCapabilities::builder()
            .enable_elicitation()
            .enable_sampling()
            .enable_roots()
            .build();
        ClientConfig::new(caps, Implementation::new("lodge-conformance-exact", "0"))
            .with_protocol_version(ProtocolVersion::V_2025_11_25)
    }

    async fn create_elicitation(
        &self,
        request: ElicitRequestParams,
        _: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        let n = {
            let mut seen = self.seen();
            seen.elicitations.push(wire(&request));
            seen.elicitations.len() - 1
        };
        let answer = &self.answers[n.min(self.answers.len() - 1)];
        Ok(serde_json::from_value(answer.clone()).unwrap())
    }

    async fn create_message(
        &self,
        params: CreateMessageRequestParams,
        _: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, ErrorData> {
        self.seen().samplings.push(wire(&params));
        Ok(CreateMessageResult::new(
            SamplingMessage::assistant_text(SAMPLED),
            "exact-model".into(),
        ))
    }

    async fn list_roots(
        &self,
        _: RequestContext<RoleClient>,
    ) -> Result<ListRootsResult, ErrorData> {
        self.seen().roots_asked += 1;
        Ok(serde_json::from_value(
            json!({"roots": [{"uri": "file:///work", "name": "Work"}, {"uri": "file:///tmp"}]}),
        )
        .unwrap())
    }

    async fn on_progress(&self, p: ProgressNotificationParam, _: NotificationContext<RoleClient>) {
        self.seen().progress.push(wire(&p));
    }

    async fn on_logging_message(
        &self,
        p: LoggingMessageNotificationParam,
        _: NotificationContext<RoleClient>,
    ) {
        self.seen().logs.push(wire(&p));
    }

    async fn on_resource_updated(
        &self,
        p: ResourceUpdatedNotificationParam,
        _: NotificationContext<RoleClient>,
    ) {
        self.seen().updated.push(p.uri);
    }

    async fn on_tool_list_changed(&self, _: NotificationContext<RoleClient>) {
        self.seen().tools_changed += 1;
    }

    async fn on_prompt_list_changed(&self, _: NotificationContext<RoleClient>) {
        self.seen().prompts_changed += 1;
    }
}

fn accept(content: Value) -> Value {
    json!({"action": "accept", "content": content})
}

async fn start(answers: Vec<Value>) -> (Lodge, Client, RunningService<RoleClient, Client>) {
    let lodge = Lodge::start(&conformance_server_toml());
    let handler = Client::new(answers);
    let client = handler.clone().connect(&lodge).await;
    (lodge, handler, client)
}

async fn call(client: &RunningService<RoleClient, Client>, tool: &str, args: Value) -> Value {
    let mut params = CallToolRequestParams::new(tool.to_string());
    if let Value::Object(args) = args {
        params = params.with_arguments(args);
    }
    wire(client.call_tool(params).await.unwrap())
}

fn text(text: &str) -> Value {
    json!({"content": [{"type": "text", "text": text}]})
}

#[tokio::test]
async fn content_tools_return_exact_payloads_through_lodge() {
    let (_lodge, _, client) = start(vec![]).await;
    let cases = [
        (
            "test_simple_text",
            text("This is a simple text response for testing."),
        ),
        (
            "test_image_content",
            json!({"content": [{"type": "image", "data": PNG, "mimeType": "image/png"}]}),
        ),
        (
            "test_audio_content",
            json!({"content": [{"type": "audio", "data": WAV, "mimeType": "audio/wav"}]}),
        ),
        (
            "test_embedded_resource",
            json!({"content": [{"type": "resource", "resource": {"uri": "test://embedded-resource",
                "mimeType": "text/plain", "text": "This is an embedded resource content."}}]}),
        ),
        (
            "test_multiple_content_types",
            json!({"content": [
                {"type": "text", "text": "Multiple content types test:"},
                {"type": "image", "data": PNG, "mimeType": "image/png"},
                {"type": "resource", "resource": {"uri": "test://mixed-content-resource",
                    "mimeType": "application/json", "text": "{\"test\":\"data\",\"value\":123}"}}
            ]}),
        ),
        (
            "test_error_handling",
            json!({"isError": true, "content": [{"type": "text",
                "text": "This tool intentionally returns an error for testing"}]}),
        ),
    ];
    for (tool, want) in cases {
        assert_eq!(call(&client, tool, json!({})).await, want, "{tool}");
    }
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn progress_is_0_50_100_of_100_in_order_through_lodge() {
    let (_lodge, handler, client) = start(vec![]).await;
    assert_eq!(
        call(&client, "test_tool_with_progress", json!({})).await,
        text("Progress test completed")
    );
    eventually(
        Duration::from_secs(5),
        "three progress notifications",
        async || handler.seen().progress.len() >= 3,
    )
    .await;
    let progress: Vec<Value> = handler
        .seen()
        .progress
        .iter()
        .map(|p| json!([p["progress"], p["total"], p["message"]]))
        .collect();
    assert_eq!(
        progress,
        [
            json!([0.0, 100.0, "Completed step 0 of 100"]),
            json!([50.0, 100.0, "Completed step 50 of 100"]),
            json!([100.0, 100.0, "Completed step 100 of 100"]),
        ]
    );
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn logging_follows_set_level_through_lodge() {
    let (_lodge, handler, client) = start(vec![]).await;
    let level =
        |l: &str| -> SetLevelRequestParams { serde_json::from_value(json!({"level": l})).unwrap() };
    client.set_level(level("info")).await.unwrap();
    assert_eq!(
        call(&client, "test_tool_with_logging", json!({})).await,
        text("Tool with logging executed successfully")
    );
    eventually(Duration::from_secs(5), "three log messages", async || {
        handler.seen().logs.len() >= 3
    })
    .await;
    let log = |data: &str| json!({"level": "info", "logger": "conformance-server", "data": data});
    assert_eq!(
        handler.seen().logs,
        [
            log("Tool execution started"),
            log("Tool processing data"),
            log("Tool execution completed")
        ]
    );
    client.set_level(level("warning")).await.unwrap();
    call(&client, "test_tool_with_logging", json!({})).await;
    // The response came after the (suppressed) logs would have: nothing more arrived.
    assert_eq!(handler.seen().logs.len(), 3);
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn sampling_and_elicitation_requests_and_results_are_exact_through_lodge() {
    let (_lodge, handler, client) = start(vec![
        accept(json!({"username": "testuser", "email": "test@example.com"})),
        accept(json!({"name": "Jane Smith", "age": 25, "score": 88, "status": "inactive", "verified": false})),
        json!({"action": "decline"}),
    ])
    .await;
    assert_eq!(
        call(
            &client,
            "test_sampling",
            json!({"prompt": "Capital of France?"})
        )
        .await,
        text(&format!("LLM response: {SAMPLED}"))
    );
    assert_eq!(
        handler.seen().samplings,
        [
            json!({"messages": [{"role": "user", "content": {"type": "text",
            "text": "Capital of France?"}}], "maxTokens": 100})
        ]
    );

    assert_eq!(
        call(
            &client,
            "test_elicitation",
            json!({"message": "Who are you?"})
        )
        .await,
        text(
            r#"User response: action=accept, content={"email":"test@example.com","username":"testuser"}"#
        )
    );
    assert_eq!(
        call(&client, "test_elicitation_sep1034_defaults", json!({})).await,
        text(
            r#"Elicitation completed: action=accept, content={"age":25,"name":"Jane Smith","score":88,"status":"inactive","verified":false}"#
        )
    );
    assert_eq!(
        call(&client, "test_elicitation_sep1330_enums", json!({})).await,
        text("Elicitation completed: action=decline, content={}")
    );
    {
        let seen = handler.seen();
        assert_eq!(
            seen.elicitations[0],
            json!({"mode": "form", "message": "Who are you?", "requestedSchema": {
                "type": "object",
                "properties": {
                    "username": {"type": "string", "description": "User's response"},
                    "email": {"type": "string", "description": "User's email address"}
                },
                "required": ["username", "email"]}})
        );
        assert_eq!(
            seen.elicitations[1]["requestedSchema"]["properties"],
            json!({
                "name": {"type": "string", "description": "User name", "default": "John Doe"},
                "age": {"type": "integer", "description": "User age", "default": 30},
                "score": {"type": "number", "description": "User score", "default": 95.5},
                "status": {"type": "string", "description": "User status",
                    "enum": ["active", "inactive", "pending"], "default": "active"},
                "verified": {"type": "boolean", "description": "Verification status", "default": true}
            })
        );
        let enums = &seen.elicitations[2]["requestedSchema"]["properties"];
        assert_eq!(
            enums["legacyEnum"]["enumNames"],
            json!(["Option One", "Option Two", "Option Three"])
        );
        assert_eq!(
            enums["titledMulti"]["items"]["anyOf"][0],
            json!({"const": "value1", "title": "First Choice"})
        );
    }
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn multi_round_and_multiple_inputs_run_live_in_a_legacy_session_through_lodge() {
    let (_lodge, handler, client) = start(vec![
        accept(json!({"name": "Alice"})),
        accept(json!({"color": "blue"})),
        accept(json!({"name": "Bob"})),
    ])
    .await;
    assert_eq!(
        call(&client, "test_input_required_result_multi_round", json!({})).await,
        text("Completed both rounds: name=Alice, color=blue")
    );
    assert_eq!(
        call(
            &client,
            "test_input_required_result_multiple_inputs",
            json!({})
        )
        .await,
        text(&format!(
            "Got all inputs: name=Bob; greeting={SAMPLED}; Roots: file:///work (Work), file:///tmp"
        ))
    );
    {
        let seen = handler.seen();
        let messages: Vec<&Value> = seen.elicitations.iter().map(|e| &e["message"]).collect();
        assert_eq!(
            messages,
            [
                "Step 1: What is your name?",
                "Step 2: What is your favorite color?",
                "What is your name?"
            ]
        );
        assert_eq!(seen.roots_asked, 1);
        assert_eq!(
            seen.samplings,
            [
                json!({"messages": [{"role": "user", "content": {"type": "text",
                "text": "Generate a greeting"}}], "maxTokens": 50})
            ]
        );
    }
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn resources_are_exact_through_lodge() {
    let (_lodge, _, client) = start(vec![]).await;
    let listed = wire(client.list_resources(None).await.unwrap());
    let uris: Vec<&Value> = listed["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["uri"])
        .collect();
    assert_eq!(
        uris,
        [
            "test://static-text",
            "test://static-binary",
            "test://watched-resource"
        ]
    );
    let templates = wire(client.list_resource_templates(None).await.unwrap());
    assert_eq!(
        templates["resourceTemplates"],
        json!([{"uriTemplate": "test://template/{id}/data", "name": "template-data",
            "description": "JSON data for an id", "mimeType": "application/json"}])
    );
    let read = async |uri: &str| {
        wire(
            client
                .read_resource(ReadResourceRequestParams::new(uri))
                .await
                .unwrap(),
        )
    };
    assert_eq!(
        read("test://static-text").await,
        json!({"contents": [{"uri": "test://static-text", "mimeType": "text/plain",
            "text": "This is the content of the static text resource."}]})
    );
    assert_eq!(
        read("test://static-binary").await,
        json!({"contents": [{"uri": "test://static-binary", "mimeType": "image/png", "blob": PNG}]})
    );
    let template = read("test://template/123/data").await;
    let data: Value =
        serde_json::from_str(template["contents"][0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(
        data,
        json!({"id": "123", "templateTest": true, "data": "Data for ID: 123"})
    );
    assert_eq!(template["contents"][0]["mimeType"], "application/json");

    let missing = "test://nonexistent-resource-for-conformance-testing";
    let error = client
        .read_resource(ReadResourceRequestParams::new(missing))
        .await
        .unwrap_err();
    let rmcp::ServiceError::McpError(error) = error else {
        panic!("expected a JSON-RPC error, got {error:?}");
    };
    assert_eq!(error.code.0, -32002, "legacy peers keep RESOURCE_NOT_FOUND");
    assert_eq!(error.data, Some(json!({"uri": missing})));
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn prompts_and_completion_are_exact_through_lodge() {
    let (_lodge, _, client) = start(vec![]).await;
    let listed = wire(client.list_prompts(None).await.unwrap());
    let names: Vec<&Value> = listed["prompts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| &p["name"])
        .collect();
    assert_eq!(
        names,
        [
            "test_simple_prompt",
            "test_prompt_with_arguments",
            "test_prompt_with_embedded_resource",
            "test_prompt_with_image",
            "test_input_required_result_prompt"
        ]
    );
    let get = async |name: &str, args: Value| {
        let mut params = GetPromptRequestParams::new(name);
        if let Value::Object(args) = args {
            params = params.with_arguments(args);
        }
        wire(client.get_prompt(params).await.unwrap())["messages"].clone()
    };
    let user_text = |t: &str| json!({"role": "user", "content": {"type": "text", "text": t}});
    assert_eq!(
        get("test_simple_prompt", Value::Null).await,
        json!([user_text("This is a simple prompt for testing.")])
    );
    assert_eq!(
        get(
            "test_prompt_with_arguments",
            json!({"arg1": "hello", "arg2": "world"})
        )
        .await,
        json!([user_text(
            "Prompt with arguments: arg1='hello', arg2='world'"
        )])
    );
    assert_eq!(
        get(
            "test_prompt_with_embedded_resource",
            json!({"resourceUri": "test://example-resource"})
        )
        .await,
        json!([
            {"role": "user", "content": {"type": "resource", "resource": {
                "uri": "test://example-resource", "mimeType": "text/plain",
                "text": "Embedded resource content for testing."}}},
            user_text("Please process the embedded resource above.")
        ])
    );
    assert_eq!(
        get("test_prompt_with_image", Value::Null).await,
        json!([
            {"role": "user", "content": {"type": "image", "data": PNG, "mimeType": "image/png"}},
            user_text("Please analyze the image above.")
        ])
    );

    let complete = async |name: &str, arg: &str, value: &str| {
        let params: CompleteRequestParams = serde_json::from_value(json!({
            "ref": {"type": "ref/prompt", "name": name},
            "argument": {"name": arg, "value": value}
        }))
        .unwrap();
        wire(client.complete(params).await.unwrap())["completion"].clone()
    };
    assert_eq!(
        complete("test_prompt_with_arguments", "arg1", "par").await,
        json!({"values": ["paris", "park", "party"], "total": 3, "hasMore": false})
    );
    assert_eq!(
        complete("test_prompt_with_arguments", "arg1", "park").await,
        json!({"values": ["park"], "total": 1, "hasMore": false})
    );
    assert_eq!(
        complete("test_prompt_with_arguments", "arg2", "par").await,
        json!({"values": [], "total": 0, "hasMore": false})
    );
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn resource_updates_and_list_changes_reach_the_client_through_lodge() {
    let (_lodge, handler, client) = start(vec![]).await;
    let uri = "test://watched-resource";
    client
        .subscribe(SubscribeRequestParams::new(uri))
        .await
        .unwrap();
    eventually(
        Duration::from_secs(10),
        "notifications/resources/updated for the watched resource",
        async || !handler.seen().updated.is_empty(),
    )
    .await;
    assert_eq!(handler.seen().updated[0], uri);
    client
        .unsubscribe(UnsubscribeRequestParams::new(uri))
        .await
        .unwrap();

    assert_eq!(
        call(&client, "test_trigger_tool_change", json!({})).await,
        text("Tool list changed")
    );
    eventually(
        Duration::from_secs(5),
        "notifications/tools/list_changed",
        async || handler.seen().tools_changed == 1,
    )
    .await;
    let tools = wire(client.list_tools(None).await.unwrap());
    assert!(
        tools["tools"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "test_dynamic_tool"),
        "{tools}"
    );
    assert_eq!(
        call(&client, "test_trigger_prompt_change", json!({})).await,
        text("Prompt list changed")
    );
    eventually(
        Duration::from_secs(5),
        "notifications/prompts/list_changed",
        async || handler.seen().prompts_changed == 1,
    )
    .await;
    client.cancel().await.unwrap();
}
