//! The clients of the registry suite, each driven the same way: a list of tool calls made in
//! one session, every form elicitation accepted with one answer, every sampling request
//! answered with one text. Each returns an [`Outcome`], so a test asserts one expected value
//! for every client.
#![allow(deprecated)] // rmcp marks sampling deprecated (SEP-2577)

use crate::common::{LODGE, repo_root, venv_python};
use rmcp::model::{
    CallToolRequestParams, ClientCapabilities, ClientConfig, CreateMessageRequestParams,
    CreateMessageResult, ElicitRequestParams, ElicitResult, ElicitationAction, Implementation,
    ProgressNotificationParam, ProtocolVersion, SamplingMessage,
};
use rmcp::service::{NotificationContext, RequestContext};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ClientHandler, ClientLifecycleMode, ClientServiceExt, ErrorData, RoleClient};
use serde_json::{Value, json};
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long one client run may take (a server's start in its sandbox included).
const DEADLINE: Duration = Duration::from_secs(90);

/// One progress notification: (progress, total, message).
pub type Progress = (f64, Option<f64>, Option<String>);

/// One tool call's result, as every client reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Called {
    /// The result's text contents, joined.
    pub text: String,
    pub is_error: bool,
    /// The progress notifications of this call, in arrival order.
    pub progress: Vec<Progress>,
}

impl Called {
    pub fn text(text: impl Into<String>) -> Called {
        Called {
            text: text.into(),
            is_error: false,
            progress: Vec::new(),
        }
    }

    pub fn with_progress(mut self, steps: &[(f64, f64, &str)]) -> Called {
        self.progress = steps
            .iter()
            .map(|&(p, t, m)| (p, Some(t), Some(m.to_string())))
            .collect();
        self
    }
}

/// What a client saw over one session.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Outcome {
    pub calls: Vec<Called>,
    /// The message of each form elicitation, in order.
    pub elicitations: Vec<String>,
    /// The first message's text of each sampling request, in order.
    pub samplings: Vec<String>,
}

/// The answers a client gives: form content for elicitations, text for sampling. A client
/// without answers declares neither capability.
#[derive(Debug, Clone)]
pub struct Answers {
    pub form: Value,
    pub sampled: String,
}

/// The clients that hold a session across several calls.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Client {
    /// The official Python SDK (PyPI `mcp`), legacy era.
    Python,
    /// The official TypeScript SDK (npm `@modelcontextprotocol/sdk` 1.x), legacy era.
    TypeScript,
    /// rmcp's client, `initialize` handshake (2025-11-25).
    RmcpLegacy,
    /// rmcp's client, `server/discover` and 2026-07-28, keeping one sandbox with
    /// `Lodge-Session-Id` (taken from a first `server/discover`).
    RmcpModern,
}

pub const ALL: [Client; 4] = [
    Client::Python,
    Client::TypeScript,
    Client::RmcpLegacy,
    Client::RmcpModern,
];

/// The clients every server is proven with.
pub const EVERY_SERVER: [Client; 3] = [Client::Python, Client::RmcpLegacy, Client::RmcpModern];

impl Client {
    /// Makes `calls` in one session against the MCP endpoint `url`.
    pub async fn run(
        self,
        url: &str,
        calls: &[(&str, Value)],
        answers: Option<&Answers>,
    ) -> Outcome {
        let run = async {
            match self {
                Client::Python => python(url, calls, answers).await,
                Client::TypeScript => typescript(url, calls, answers).await,
                Client::RmcpLegacy => rmcp_client(url, calls, answers, false).await,
                Client::RmcpModern => rmcp_client(url, calls, answers, true).await,
            }
        };
        tokio::time::timeout(DEADLINE, run)
            .await
            .unwrap_or_else(|_| panic!("{self:?} did not finish in {DEADLINE:?} against {url}"))
    }
}

fn calls_json(calls: &[(&str, Value)]) -> String {
    Value::Array(calls.iter().map(|(t, a)| json!([t, a])).collect()).to_string()
}

async fn output(mut command: tokio::process::Command, what: &str) -> Output {
    command.kill_on_drop(true);
    let out = command
        .output()
        .await
        .unwrap_or_else(|e| panic!("running the {what}: {e}"));
    assert!(
        out.status.success(),
        "the {what} failed ({}): {}\nstdout: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    out
}

/// Parses the JSON the Python and TypeScript fixture clients print (see their headers).
fn parse_fixture_output(out: &Output, what: &str, want_version: &str) -> Outcome {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let got: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "the {what} printed no JSON ({e}): {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(got["protocolVersion"], want_version, "{what}: {got}");
    let strings = |key: &str| -> Vec<String> {
        got[key]
            .as_array()
            .unwrap_or_else(|| panic!("{what}: no {key} in {got}"))
            .iter()
            .map(|v| v.as_str().unwrap_or_default().to_string())
            .collect()
    };
    let calls = got["calls"]
        .as_array()
        .unwrap_or_else(|| panic!("{what}: no calls in {got}"))
        .iter()
        .map(|c| Called {
            text: c["text"].as_str().unwrap_or_default().to_string(),
            is_error: c["isError"].as_bool().unwrap_or(true),
            progress: c["progress"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| {
                    (
                        p[0].as_f64().unwrap_or(f64::NAN),
                        p[1].as_f64(),
                        p[2].as_str().map(str::to_string),
                    )
                })
                .collect(),
        })
        .collect();
    Outcome {
        calls,
        elicitations: strings("elicitations"),
        samplings: strings("samplings"),
    }
}

async fn python(url: &str, calls: &[(&str, Value)], answers: Option<&Answers>) -> Outcome {
    let mut command = tokio::process::Command::new(venv_python());
    command
        .arg(repo_root().join("tests/fixtures/python/registry_client.py"))
        .args([url, &calls_json(calls)]);
    if let Some(a) = answers {
        command.args([a.form.to_string(), a.sampled.clone()]);
    }
    let what = "Python SDK client (tests/fixtures/python/registry_client.py)";
    parse_fixture_output(&output(command, what).await, what, "2025-11-25")
}

async fn typescript(url: &str, calls: &[(&str, Value)], answers: Option<&Answers>) -> Outcome {
    let node = super::node_packages();
    let mut command = tokio::process::Command::new(&node.node);
    command
        .arg(repo_root().join("tests/fixtures/node/call_tools.mjs"))
        .args([node.sdk.as_str(), url, &calls_json(calls)]);
    if let Some(a) = answers {
        command.args([a.form.to_string(), a.sampled.clone()]);
    }
    let what = "TypeScript SDK client (tests/fixtures/node/call_tools.mjs)";
    parse_fixture_output(&output(command, what).await, what, "2025-11-25")
}

/// rmcp's client handler: answers as told and records what it was asked.
#[derive(Clone)]
struct Handler {
    version: ProtocolVersion,
    answers: Option<Answers>,
    seen: Arc<Mutex<Seen>>,
}

#[derive(Default)]
struct Seen {
    elicitations: Vec<String>,
    samplings: Vec<String>,
    progress: Vec<Progress>,
}

impl ClientHandler for Handler {
    fn get_info(&self) -> ClientConfig {
        let caps = if self.answers.is_some() {
            ClientCapabilities::builder()
                .enable_elicitation()
                .enable_sampling()
                .build()
        } else {
            ClientCapabilities::default()
        };
        ClientConfig::new(caps, Implementation::new("lodge-registry-rmcp-client", "0"))
            .with_protocol_version(self.version.clone())
    }

    async fn create_elicitation(
        &self,
        request: ElicitRequestParams,
        _: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        let Some(answers) = &self.answers else {
            return Err(ErrorData::invalid_request("no elicitation declared", None));
        };
        if let ElicitRequestParams::FormElicitationParams { message, .. } = request {
            self.seen.lock().unwrap().elicitations.push(message);
        }
        Ok(ElicitResult::new(ElicitationAction::Accept).with_content(answers.form.clone()))
    }

    async fn create_message(
        &self,
        params: CreateMessageRequestParams,
        _: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, ErrorData> {
        let Some(answers) = &self.answers else {
            return Err(ErrorData::invalid_request("no sampling declared", None));
        };
        let prompt =
            serde_json::to_value(&params).unwrap_or_default()["messages"][0]["content"]["text"]
                .as_str()
                .unwrap_or_default()
                .to_string();
        self.seen.lock().unwrap().samplings.push(prompt);
        Ok(CreateMessageResult::new(
            SamplingMessage::assistant_text(answers.sampled.clone()),
            "rmcp-test-model".into(),
        ))
    }

    async fn on_progress(&self, p: ProgressNotificationParam, _: NotificationContext<RoleClient>) {
        self.seen
            .lock()
            .unwrap()
            .progress
            .push((p.progress, p.total, p.message));
    }
}

/// A first `server/discover` without `Lodge-Session-Id` opens a runtime session; its id,
/// sent back on every later request, keeps the 2026-07-28 client in that one sandbox.
async fn runtime_session(url: &str) -> String {
    let meta = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {}});
    let body =
        json!({"jsonrpc": "2.0", "id": 0, "method": "server/discover", "params": {"_meta": meta}});
    let reply = crate::common::Raw::send(lodge_testkit::http::modern_post(
        &reqwest::Client::new(),
        url,
        None,
        "server/discover",
        None,
        body.to_string(),
    ))
    .await;
    assert_eq!(reply.status, 200, "server/discover: {}", reply.body);
    reply
        .headers
        .get("lodge-session-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| {
            panic!(
                "server/discover returned no Lodge-Session-Id: {:?}",
                reply.headers
            )
        })
        .to_string()
}

async fn rmcp_client(
    url: &str,
    calls: &[(&str, Value)],
    answers: Option<&Answers>,
    modern: bool,
) -> Outcome {
    let handler = Handler {
        version: if modern {
            ProtocolVersion::V_2026_07_28
        } else {
            ProtocolVersion::V_2025_11_25
        },
        answers: answers.cloned(),
        seen: Arc::default(),
    };
    let client = if modern {
        let session = runtime_session(url).await;
        let headers = [(
            reqwest::header::HeaderName::from_static("lodge-session-id"),
            reqwest::header::HeaderValue::from_str(&session).unwrap(),
        )]
        .into_iter()
        .collect();
        let config = StreamableHttpClientTransportConfig::with_uri(url).custom_headers(headers);
        let lifecycle = ClientLifecycleMode::Discover {
            preferred_versions: vec![ProtocolVersion::V_2026_07_28],
        };
        handler
            .clone()
            .serve_with_lifecycle(
                StreamableHttpClientTransport::from_config(config),
                lifecycle,
            )
            .await
    } else {
        rmcp::ServiceExt::serve(
            handler.clone(),
            StreamableHttpClientTransport::from_uri(url),
        )
        .await
    }
    .unwrap_or_else(|e| panic!("rmcp client (modern: {modern}) could not connect to {url}: {e}"));
    let mut out = Outcome::default();
    for (tool, args) in calls {
        let params = CallToolRequestParams::new(tool.to_string())
            .with_arguments(args.as_object().cloned().unwrap_or_default());
        let result = client
            .call_tool(params)
            .await
            .unwrap_or_else(|e| panic!("rmcp (modern: {modern}) {tool}: {e}"));
        settle(&handler.seen).await;
        let text = result
            .content
            .iter()
            .filter_map(|c| c.as_text())
            .map(|t| t.text.as_str())
            .collect();
        out.calls.push(Called {
            text,
            is_error: result.is_error.unwrap_or(false),
            progress: std::mem::take(&mut handler.seen.lock().unwrap().progress),
        });
    }
    client.cancel().await.ok();
    let seen = handler.seen.lock().unwrap();
    out.elicitations = seen.elicitations.clone();
    out.samplings = seen.samplings.clone();
    out
}

/// rmcp hands notifications to the handler on their own tasks, so a call's progress can be
/// handled just after its result: wait until none has come for 300 ms (the suite runs
/// beside builds on a loaded machine; one 100 ms window once let a notification slip to the
/// next call).
async fn settle(seen: &Mutex<Seen>) {
    let mut last = seen.lock().unwrap().progress.len();
    let mut quiet = 0;
    while quiet < 3 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = seen.lock().unwrap().progress.len();
        quiet = if now == last { quiet + 1 } else { 0 };
        last = now;
    }
}

/// `lodge connect URL --call TOOL` one-shot with `--protocol PROTOCOL`: form answers from an
/// `--answers` file, sampling by `--sampling-text`. Its result is stdout's JSON; progress,
/// the forms it answered and the sampling prompts come from its stderr lines.
pub async fn connect(
    url: &str,
    protocol: &str,
    tool: &str,
    args: Value,
    answers: Option<&Answers>,
) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let mut command = tokio::process::Command::new(LODGE);
    command.args(["connect", url, "--protocol", protocol, "--call", tool]);
    command.args(["--args".to_string(), args.to_string()]);
    for var in ["OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_API_KEY"] {
        command.env_remove(var);
    }
    if let Some(a) = answers {
        let file = dir.path().join("answers.json");
        std::fs::write(&file, a.form.to_string()).unwrap();
        command.arg("--answers").arg(&file);
        command.args(["--sampling-text", &a.sampled, "--approve-sampling"]);
    }
    let what = format!("lodge connect --protocol {protocol} --call {tool}");
    let out = tokio::time::timeout(DEADLINE, command.kill_on_drop(true).output())
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish in {DEADLINE:?}"))
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let result: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{what}: stdout is not JSON ({e}): {}\nstderr: {stderr}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    let is_error = result["isError"].as_bool().unwrap_or(false);
    // Exit status 1 is "the tool reported an error": a result all the same.
    let want_status = if is_error { 1 } else { 0 };
    assert_eq!(
        out.status.code(),
        Some(want_status),
        "{what}: {result}\nstderr: {stderr}"
    );
    let text = result["content"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["text"].as_str())
        .collect();
    let progress = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("progress "))
        .map(|rest| {
            let (numbers, message) = rest.split_once(' ').unwrap_or((rest, ""));
            let (p, total) = numbers.split_once('/').unwrap_or((numbers, ""));
            (
                p.parse().unwrap_or(f64::NAN),
                total.parse().ok(),
                Some(message.to_string()).filter(|m| !m.is_empty()),
            )
        })
        .collect();
    let elicitations = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("answered the form \""))
        .filter_map(|l| l.strip_suffix("\" from --answers"))
        .map(str::to_string)
        .collect();
    let samplings = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("  user: "))
        .map(str::to_string)
        .collect();
    Outcome {
        calls: vec![Called {
            text,
            is_error,
            progress,
        }],
        elicitations,
        samplings,
    }
}
