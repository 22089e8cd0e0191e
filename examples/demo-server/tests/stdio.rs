#![allow(clippy::unwrap_used)]
// rmcp marks sampling and logging deprecated (SEP-2577); the demo exercises both.
#![allow(deprecated)]
//! Drives the built `demo-server` binary over stdio with an rmcp client and checks every tool
//! contract with exact values.

use std::{
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
};

use rmcp::{
    ClientHandler, ErrorData, Peer, RoleClient, ServiceExt,
    model::{
        CallToolRequest, CallToolRequestParams, ClientCapabilities, ClientConfig, ClientRequest,
        CreateMessageRequestParams, CreateMessageResult, ElicitRequestParams, ElicitResult,
        ElicitationAction, ElicitationSchema, Implementation, LoggingLevel,
        LoggingMessageNotificationParam, ProgressNotificationParam, SamplingMessage,
    },
    service::{NotificationContext, PeerRequestOptions, RequestContext, RunningService},
    transport::TokioChildProcess,
};
use serde_json::{Value, json};
use tokio::process::Command;

const ITINERARY: &str = "Day 1: tiles. Day 2: trams. Day 3: custard tarts.";

/// What the server sent the client, in arrival order. rmcp runs each incoming notification
/// in its own spawned task, so handlers see arrival order only on a current-thread runtime
/// (the `#[tokio::test]` default).
#[derive(Default)]
struct Seen {
    progress: Vec<(f64, Option<f64>, Option<String>)>,
    logs: Vec<(LoggingLevel, Option<String>, Value)>,
    elicitation: Option<(String, ElicitationSchema)>,
    sampling: Option<CreateMessageRequestParams>,
}

/// A client that answers elicitation with `answer` (Lisbon, 3 days, comfort, no flights when
/// accepting) and sampling with [`ITINERARY`].
#[derive(Clone)]
struct TestClient {
    answer: ElicitationAction,
    seen: Arc<Mutex<Seen>>,
}

impl TestClient {
    fn new(answer: ElicitationAction) -> Self {
        Self {
            answer,
            seen: Arc::default(),
        }
    }
}

impl ClientHandler for TestClient {
    fn get_info(&self) -> ClientConfig {
        let capabilities = ClientCapabilities::builder()
            .enable_elicitation()
            .enable_sampling()
            .build();
        ClientConfig::new(capabilities, Implementation::new("demo-server-test", "0"))
    }

    async fn create_elicitation(
        &self,
        request: ElicitRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        if let ElicitRequestParams::FormElicitationParams {
            message,
            requested_schema,
            ..
        } = request
        {
            self.seen.lock().unwrap().elicitation = Some((message, requested_schema));
        }
        let result = ElicitResult::new(self.answer.clone());
        Ok(match self.answer {
            ElicitationAction::Accept => result.with_content(
                json!({ "destination": "Lisbon", "days": 3, "budget": "comfort", "flights": false }),
            ),
            _ => result,
        })
    }

    async fn create_message(
        &self,
        params: CreateMessageRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, ErrorData> {
        self.seen.lock().unwrap().sampling = Some(params);
        let message = SamplingMessage::assistant_text(ITINERARY);
        Ok(CreateMessageResult::new(message, "test-model".into()))
    }

    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        let entry = (params.progress, params.total, params.message);
        self.seen.lock().unwrap().progress.push(entry);
    }

    async fn on_logging_message(
        &self,
        params: LoggingMessageNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        let entry = (params.level, params.logger, params.data);
        self.seen.lock().unwrap().logs.push(entry);
    }
}

/// Start the server binary in `dir` and connect `handler` to it; also returns the child's pid.
async fn start<H: ClientHandler>(handler: H, dir: &Path) -> (RunningService<RoleClient, H>, u32) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_demo-server"));
    command.current_dir(dir);
    let transport = TokioChildProcess::new(command).unwrap();
    let pid = transport.id().unwrap();
    (handler.serve(transport).await.unwrap(), pid)
}

/// Call `tool` and return its text content and whether it is a tool error.
async fn call(client: &Peer<RoleClient>, tool: &'static str, args: Value) -> (String, bool) {
    let args = args.as_object().cloned().unwrap_or_default();
    let result = client
        .call_tool(CallToolRequestParams::new(tool).with_arguments(args))
        .await
        .unwrap();
    let text = result
        .content
        .iter()
        .filter_map(|c| c.as_text())
        .map(|t| t.text.as_str())
        .collect();
    (text, result.is_error == Some(true))
}

async fn ok(client: &Peer<RoleClient>, tool: &'static str, args: Value) -> String {
    let (text, is_error) = call(client, tool, args).await;
    assert!(!is_error, "{tool} failed: {text}");
    text
}

/// Poll `check` until it holds (notifications are dispatched asynchronously).
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..500 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

fn read(path: impl AsRef<Path>) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[tokio::test]
async fn plan_trip_elicits_samples_reports_progress_and_saves() {
    let dir = tempfile::tempdir().unwrap();
    let handler = TestClient::new(ElicitationAction::Accept);
    let seen = handler.seen.clone();
    let (client, _) = start(handler, dir.path()).await;

    let text = ok(&client, "plan_trip", json!({})).await;
    let expected = format!("Trip to Lisbon: 3 days, comfort, flights no.\n\n{ITINERARY}");
    assert_eq!(text, expected);
    assert_eq!(read(dir.path().join("trip-plan.md")), expected);

    eventually("4 progress notifications and a log", || {
        let seen = seen.lock().unwrap();
        seen.progress.len() >= 4 && !seen.logs.is_empty()
    })
    .await;
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    let steps = [
        "asking for trip details",
        "asking the model for an itinerary",
        "saving the plan",
        "done",
    ];
    let progress: Vec<_> = (1..=4)
        .zip(steps)
        .map(|(i, m)| (f64::from(i), Some(4.0), Some(m.to_owned())))
        .collect();
    assert_eq!(seen.progress, progress);

    let (message, schema) = seen.elicitation.clone().unwrap();
    assert_eq!(message, "Where and how do you want to travel?");
    assert_eq!(
        serde_json::to_value(schema).unwrap(),
        json!({
            "type": "object",
            "properties": {
                "destination": { "type": "string", "title": "Destination", "minLength": 1 },
                "days": { "type": "integer", "title": "Days", "minimum": 1, "maximum": 30 },
                "budget": {
                    "type": "string", "title": "Budget",
                    "enum": ["shoestring", "comfort", "luxury"], "default": "comfort"
                },
                "flights": { "type": "boolean", "title": "Include flights", "default": true }
            },
            "required": ["destination", "days"]
        })
    );

    let sampling = seen.sampling.clone().unwrap();
    assert_eq!(sampling.max_tokens, 400);
    assert_eq!(
        sampling.system_prompt.as_deref(),
        Some("You are a travel planner.")
    );
    assert_eq!(sampling.messages.len(), 1);
    let prompt = sampling.messages[0]
        .content
        .first()
        .and_then(|c| c.as_text())
        .unwrap();
    assert_eq!(prompt.text, "Write a 3-day comfort itinerary for Lisbon.");

    let (level, logger, _) = &seen.logs[0];
    assert_eq!(
        (*level, logger.as_deref()),
        (LoggingLevel::Info, Some("plan_trip"))
    );
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn plan_trip_stops_on_decline_or_cancel_and_needs_capabilities() {
    let dir = tempfile::tempdir().unwrap();
    for (answer, word) in [
        (ElicitationAction::Decline, "decline"),
        (ElicitationAction::Cancel, "cancel"),
    ] {
        let (client, _) = start(TestClient::new(answer), dir.path()).await;
        let text = ok(&client, "plan_trip", json!({})).await;
        assert_eq!(
            text,
            format!("Trip planning stopped: the user chose to {word}.")
        );
        client.cancel().await.unwrap();
    }
    assert!(!dir.path().join("trip-plan.md").exists());

    // A client that declares neither elicitation nor sampling.
    let (client, _) = start(ClientConfig::default(), dir.path()).await;
    let (text, is_error) = call(&client, "plan_trip", json!({})).await;
    assert!(is_error);
    assert_eq!(
        text,
        "plan_trip needs client capabilities the client did not declare: elicitation (form), sampling"
    );
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn counter_notes_echo_and_session_info() {
    let dir = tempfile::tempdir().unwrap();
    let (client, pid) = start(TestClient::new(ElicitationAction::Accept), dir.path()).await;

    assert_eq!(
        ok(&client, "counter", json!({ "action": "increment" })).await,
        "1"
    );
    assert_eq!(
        ok(&client, "counter", json!({ "action": "increment" })).await,
        "2"
    );
    assert_eq!(
        ok(&client, "counter", json!({ "action": "get" })).await,
        "2"
    );
    assert_eq!(
        ok(
            &client,
            "counter",
            json!({ "action": "increment", "by": 5 })
        )
        .await,
        "7"
    );
    assert_eq!(
        ok(&client, "counter", json!({ "action": "reset" })).await,
        "0"
    );

    assert_eq!(
        ok(
            &client,
            "notes",
            json!({ "action": "write", "name": "b.txt", "text": "bee" })
        )
        .await,
        "saved b.txt"
    );
    assert_eq!(
        ok(
            &client,
            "notes",
            json!({ "action": "write", "name": "a.txt", "text": "hello\nworld" })
        )
        .await,
        "saved a.txt"
    );
    assert_eq!(
        ok(
            &client,
            "notes",
            json!({ "action": "read", "name": "a.txt" })
        )
        .await,
        "hello\nworld"
    );
    std::fs::create_dir(dir.path().join("subdir")).unwrap();
    assert_eq!(
        ok(&client, "notes", json!({ "action": "list" })).await,
        "a.txt\nb.txt"
    );
    for bad in ["", "../etc", "a/b", "a\\b", ".hidden"] {
        let (text, is_error) = call(
            &client,
            "notes",
            json!({ "action": "write", "name": bad, "text": "x" }),
        )
        .await;
        assert!(
            is_error && text.starts_with("invalid note name"),
            "{bad:?} gave {text}"
        );
    }
    let (_, is_error) = call(
        &client,
        "notes",
        json!({ "action": "read", "name": "missing.txt" }),
    )
    .await;
    assert!(is_error);

    let text = "héllo \"world\"\n\t{}";
    assert_eq!(ok(&client, "echo", json!({ "text": text })).await, text);

    let info: Value = serde_json::from_str(&ok(&client, "session_info", json!({})).await).unwrap();
    assert_eq!(info["pid"], pid);
    let cwd = std::fs::canonicalize(info["cwd"].as_str().unwrap()).unwrap();
    assert_eq!(cwd, std::fs::canonicalize(dir.path()).unwrap());
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn slow_finishes_with_progress() {
    let dir = tempfile::tempdir().unwrap();
    let handler = TestClient::new(ElicitationAction::Accept);
    let seen = handler.seen.clone();
    let (client, _) = start(handler, dir.path()).await;

    let text = ok(&client, "slow", json!({ "seconds": 0.2, "steps": 4 })).await;
    assert_eq!(text, "finished 4 steps");
    assert_eq!(
        read(dir.path().join("slow.log")),
        "started 4 steps\nfinished 4 steps\n"
    );
    eventually("4 progress notifications", || {
        seen.lock().unwrap().progress.len() >= 4
    })
    .await;
    let progress: Vec<_> = (1..=4)
        .map(|i| (f64::from(i), Some(4.0), Some(format!("step {i} of 4"))))
        .collect();
    assert_eq!(seen.lock().unwrap().progress, progress);
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn slow_cancelled_logs_the_step() {
    let dir = tempfile::tempdir().unwrap();
    let (client, _) = start(TestClient::new(ElicitationAction::Accept), dir.path()).await;
    let log = dir.path().join("slow.log");

    let args = json!({ "seconds": 30, "steps": 30 })
        .as_object()
        .cloned()
        .unwrap();
    let request = CallToolRequest::new(CallToolRequestParams::new("slow").with_arguments(args));
    let handle = client
        .send_cancellable_request(
            ClientRequest::CallToolRequest(request),
            PeerRequestOptions::no_options(),
        )
        .await
        .unwrap();
    eventually("slow to start", || read(&log) == "started 30 steps\n").await;
    handle
        .cancel(Some("test cancels slow".into()))
        .await
        .unwrap();
    eventually("the cancellation line", || read(&log).lines().count() == 2).await;

    let contents = read(&log);
    let lines: Vec<&str> = contents.lines().collect();
    let step: u32 = lines[1]
        .strip_prefix("cancelled at step ")
        .and_then(|rest| rest.strip_suffix(" of 30"))
        .unwrap_or_else(|| panic!("unexpected line {:?}", lines[1]))
        .parse()
        .unwrap();
    assert!((1..=30).contains(&step));

    // The session survives the cancellation.
    assert_eq!(
        ok(&client, "echo", json!({ "text": "still here" })).await,
        "still here"
    );
    client.cancel().await.unwrap();
}
