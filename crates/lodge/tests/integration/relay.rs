//! Real rmcp clients (Streamable HTTP, legacy era) through a real `lodge serve`,
//! against the demo server and a Python server written with the official SDK.
#![allow(clippy::unwrap_used)]
// rmcp marks sampling and logging deprecated (SEP-2577); Lodge relays both.
#![allow(deprecated)]

use crate::common::{Lodge, eventually};
use rmcp::model::{
    CallToolRequest, CallToolRequestParams, ClientCapabilities, ClientConfig, ClientRequest,
    CreateMessageRequestParams, CreateMessageResult, ElicitRequestParams, ElicitResult,
    ElicitationAction, Implementation, LoggingMessageNotificationParam, ProgressNotificationParam,
    ProtocolVersion, SamplingMessage,
};
use rmcp::service::{NotificationContext, PeerRequestOptions, RequestContext, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{ClientHandler, ErrorData, RoleClient, ServiceExt};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const ITINERARY: &str = "Day 1: tiles. Day 2: trams. Day 3: custard tarts.";

#[derive(Default)]
struct Seen {
    progress: Vec<(f64, Option<f64>, Option<String>)>,
    logs: Vec<Value>,
    elicitations: Vec<String>,
    sampling: Vec<Value>,
}

/// A client that answers form elicitation with `answer` and sampling with `sampled`.
#[derive(Clone)]
struct TestClient {
    answer: Value,
    sampled: String,
    seen: Arc<Mutex<Seen>>,
}

impl TestClient {
    fn new(answer: Value, sampled: &str) -> Self {
        TestClient {
            answer,
            sampled: sampled.into(),
            seen: Arc::default(),
        }
    }

    async fn connect(self, url: String) -> RunningService<RoleClient, TestClient> {
        let transport = StreamableHttpClientTransport::from_uri(url);
        self.serve(transport).await.unwrap()
    }

    fn progress_messages(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .progress
            .iter()
            .filter_map(|p| p.2.clone())
            .collect()
    }
}

impl ClientHandler for TestClient {
    fn get_info(&self) -> ClientConfig {
        let caps = ClientCapabilities::builder()
            .enable_elicitation()
            .enable_sampling()
            .build();
        ClientConfig::new(caps, Implementation::new("lodge-relay-test", "0"))
            .with_protocol_version(ProtocolVersion::V_2025_11_25)
    }

    async fn create_elicitation(
        &self,
        request: ElicitRequestParams,
        _: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        if let ElicitRequestParams::FormElicitationParams { message, .. } = request {
            self.seen.lock().unwrap().elicitations.push(message);
        }
        Ok(ElicitResult::new(ElicitationAction::Accept).with_content(self.answer.clone()))
    }

    async fn create_message(
        &self,
        params: CreateMessageRequestParams,
        _: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, ErrorData> {
        self.seen
            .lock()
            .unwrap()
            .sampling
            .push(serde_json::to_value(&params).unwrap());
        Ok(CreateMessageResult::new(
            SamplingMessage::assistant_text(&self.sampled),
            "test-model".into(),
        ))
    }

    async fn on_progress(&self, p: ProgressNotificationParam, _: NotificationContext<RoleClient>) {
        self.seen
            .lock()
            .unwrap()
            .progress
            .push((p.progress, p.total, p.message));
    }

    async fn on_logging_message(
        &self,
        p: LoggingMessageNotificationParam,
        _: NotificationContext<RoleClient>,
    ) {
        self.seen.lock().unwrap().logs.push(p.data);
    }
}

fn args(v: Value) -> CallToolRequestParams {
    let name = v["tool"].as_str().unwrap().to_string();
    let mut params = CallToolRequestParams::new(name);
    if let Some(a) = v.get("args") {
        params = params.with_arguments(a.as_object().unwrap().clone());
    }
    params
}

async fn call_text(client: &RunningService<RoleClient, TestClient>, tool: Value) -> String {
    let result = client.call_tool(args(tool)).await.unwrap();
    assert_ne!(result.is_error, Some(true), "tool error: {result:?}");
    result.content[0].as_text().unwrap().text.clone()
}

fn lisbon() -> TestClient {
    TestClient::new(
        json!({"destination":"Lisbon","days":3,"budget":"comfort","flights":false}),
        ITINERARY,
    )
}

#[tokio::test]
async fn plan_trip_elicits_samples_and_reports_progress_through_lodge() {
    let lodge = Lodge::demo("");
    let handler = lisbon();
    let client = handler.clone().connect(lodge.url()).await;
    let text = call_text(&client, json!({"tool":"plan_trip"})).await;
    assert_eq!(
        text,
        format!("Trip to Lisbon: 3 days, comfort, flights no.\n\n{ITINERARY}")
    );
    {
        let seen = handler.seen.lock().unwrap();
        assert_eq!(
            seen.elicitations,
            vec!["Where and how do you want to travel?"]
        );
        assert_eq!(seen.sampling.len(), 1);
        assert_eq!(
            seen.sampling[0]["messages"][0]["content"]["text"],
            "Write a 3-day comfort itinerary for Lisbon."
        );
        assert_eq!(seen.sampling[0]["maxTokens"], 400);
    }
    eventually(
        Duration::from_secs(5),
        "four progress notifications and the log",
        async || {
            let seen = handler.seen.lock().unwrap();
            seen.progress.len() == 4 && seen.logs.len() == 1
        },
    )
    .await;
    let values: Vec<_> = handler
        .seen
        .lock()
        .unwrap()
        .progress
        .iter()
        .map(|p| (p.0, p.1))
        .collect();
    assert_eq!(
        values,
        vec![
            (1.0, Some(4.0)),
            (2.0, Some(4.0)),
            (3.0, Some(4.0)),
            (4.0, Some(4.0))
        ]
    );

    assert_eq!(
        handler.progress_messages(),
        vec![
            "asking for trip details",
            "asking the model for an itinerary",
            "saving the plan",
            "done"
        ]
    );
    assert_eq!(
        handler.seen.lock().unwrap().logs[0],
        json!("saved the 3-day plan for Lisbon to trip-plan.md")
    );
    // The plan was written in this session's scratch directory, and is still there.
    assert_eq!(
        call_text(
            &client,
            json!({"tool":"notes","args":{"action":"read","name":"trip-plan.md"}})
        )
        .await,
        text
    );
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn state_persists_within_a_session_and_is_not_shared_between_sessions() {
    let lodge = Lodge::demo("");
    let a = lisbon().connect(lodge.url()).await;
    let b = lisbon().connect(lodge.url()).await;
    let inc = json!({"tool":"counter","args":{"action":"increment"}});
    assert_eq!(call_text(&a, inc.clone()).await, "1");
    assert_eq!(call_text(&a, inc.clone()).await, "2");
    assert_eq!(call_text(&b, inc.clone()).await, "1");
    assert_eq!(
        call_text(&a, json!({"tool":"counter","args":{"action":"get"}})).await,
        "2"
    );

    let write = json!({"tool":"notes","args":{"action":"write","name":"a.txt","text":"only in a"}});
    assert_eq!(call_text(&a, write).await, "saved a.txt");
    let list = json!({"tool":"notes","args":{"action":"list"}});
    assert_eq!(call_text(&a, list.clone()).await, "a.txt");
    assert_eq!(call_text(&b, list).await, "");

    let info_a: Value =
        serde_json::from_str(&call_text(&a, json!({"tool":"session_info"})).await).unwrap();
    let info_b: Value =
        serde_json::from_str(&call_text(&b, json!({"tool":"session_info"})).await).unwrap();
    // A random id per server process: different processes even when each sandbox has
    // its own pid namespace (where both servers may well be pid 2).
    assert_ne!(
        info_a["instance"], info_b["instance"],
        "sessions must run in different processes"
    );
    let info_a2: Value =
        serde_json::from_str(&call_text(&a, json!({"tool":"session_info"})).await).unwrap();
    assert_eq!(
        info_a["instance"], info_a2["instance"],
        "one process per session"
    );
    let scratch = lodge.scratch_root();
    assert_eq!(
        crate::common::dirs(&scratch).len(),
        2,
        "one scratch directory per session"
    );
    a.cancel().await.unwrap(); // rmcp sends DELETE: the session, its process and its files end
    eventually(
        Duration::from_secs(10),
        "session A's sandbox to be removed",
        async || crate::common::dirs(&scratch).len() == 1,
    )
    .await;
    assert_eq!(
        call_text(&b, json!({"tool":"counter","args":{"action":"get"}})).await,
        "1"
    );
    b.cancel().await.unwrap();
}

#[tokio::test]
async fn cancellation_reaches_the_server() {
    let lodge = Lodge::demo("");
    let client = lisbon().connect(lodge.url()).await;
    let slow = args(json!({"tool":"slow","args":{"seconds":30,"steps":30}}));
    let handle = client
        .send_cancellable_request(
            ClientRequest::CallToolRequest(CallToolRequest::new(slow)),
            PeerRequestOptions::no_options(),
        )
        .await
        .unwrap();
    let read_log = json!({"tool":"notes","args":{"action":"read","name":"slow.log"}});
    eventually(Duration::from_secs(10), "slow to start", async || {
        client
            .call_tool(args(read_log.clone()))
            .await
            .is_ok_and(|r| r.is_error != Some(true))
    })
    .await;
    handle.cancel(Some("test cancels".into())).await.unwrap();
    eventually(
        Duration::from_secs(10),
        "the server to log the cancellation",
        async || {
            let r = client.call_tool(args(read_log.clone())).await.unwrap();
            r.content[0]
                .as_text()
                .unwrap()
                .text
                .contains("cancelled at step")
        },
    )
    .await;
    let log = call_text(&client, read_log).await;
    assert!(
        log.starts_with("started 30 steps\ncancelled at step "),
        "{log}"
    );
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn a_python_sdk_server_elicits_samples_and_reports_progress_through_lodge() {
    let lodge = Lodge::start(&crate::common::python_sdk_server_toml("py"));
    let handler = TestClient::new(json!({"guests": 4, "time": "19:30"}), "See you soon!");
    let client = handler
        .clone()
        .connect(format!("{}/mcp/py", lodge.base))
        .await;
    let text = call_text(&client, json!({"tool":"book_table"})).await;
    assert_eq!(text, "Booked for 4 at 19:30. See you soon!");
    {
        let seen = handler.seen.lock().unwrap();
        assert_eq!(seen.elicitations, vec!["How many guests, and when?"]);
        assert_eq!(
            seen.sampling[0]["messages"][0]["content"]["text"],
            "Write a one-line confirmation for 4 guests at 19:30."
        );
    }
    eventually(
        Duration::from_secs(5),
        "three progress notifications",
        async || handler.seen.lock().unwrap().progress.len() == 3,
    )
    .await;
    assert_eq!(
        handler.progress_messages(),
        vec!["checking availability", "asking the guest", "confirming"]
    );
    assert_eq!(
        call_text(&client, json!({"tool":"tally","args":{"add":5}})).await,
        "5"
    );
    assert_eq!(
        call_text(&client, json!({"tool":"tally","args":{"add":3}})).await,
        "8"
    );
    client.cancel().await.unwrap();
}
