#![allow(clippy::unwrap_used)]
//! `lodge connect` in one-shot mode (`--call`, `--list`) against a real `lodge serve`
//! hosting the demo server: JSON on stdout, exit codes, `--answers`, and sampling served by
//! an OpenAI-compatible endpoint this test runs (it stands in for an external LLM service).

use crate::common::{LODGE, Lodge};
use axum::http::HeaderMap;
use serde_json::{Value, json};
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const ITINERARY: &str = "Day 1: tiles. Day 2: trams. Day 3: custard tarts.";

/// Runs `lodge connect ARGS` with no terminal, and a deadline.
async fn connect(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = tokio::process::Command::new(LODGE);
    command.arg("connect").args(args).kill_on_drop(true);
    for var in [
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "OPENAI_MODEL",
        "ANTHROPIC_API_KEY",
    ] {
        command.env_remove(var);
    }
    command.envs(env.iter().copied());
    tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .expect("lodge connect did not finish in 60s")
        .unwrap()
}

fn stdout_json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn answers_file(dir: &tempfile::TempDir, name: &str, content: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, content).unwrap();
    path.to_string_lossy().into_owned()
}

/// What the fake chat-completions endpoint received.
#[derive(Default, Clone)]
struct Received {
    requests: Arc<Mutex<Vec<(String, String, Value)>>>,
}

/// A chat-completions endpoint on 127.0.0.1 that answers every request with `reply`.
async fn fake_openai(reply: &'static str) -> (String, Received) {
    let received = Received::default();
    let seen = received.clone();
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let seen = seen.clone();
            async move {
                let auth = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                let request: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                seen.requests
                    .lock()
                    .unwrap()
                    .push(("/v1/chat/completions".into(), auth, request));
                let response = json!({
                    "id": "chatcmpl-1", "object": "chat.completion", "model": "fake-model-1",
                    "choices": [{"index": 0, "finish_reason": "stop",
                        "message": {"role": "assistant", "content": reply}}]
                });
                ([("content-type", "application/json")], response.to_string())
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

async fn plan_trip_with_openai_sampling(protocol: &str) {
    let lodge = Lodge::demo("");
    let (openai_url, received) = fake_openai(ITINERARY).await;
    let dir = tempfile::tempdir().unwrap();
    let answers = answers_file(
        &dir,
        "answers.json",
        r#"{"destination": "Lisbon", "days": 3, "flights": false}"#,
    );
    let out = connect(
        &[
            &lodge.url(),
            "--protocol",
            protocol,
            "--call",
            "plan_trip",
            "--answers",
            &answers,
            "--sampling",
            "openai",
            "--sampling-url",
            &openai_url,
            "--sampling-model",
            "test-model",
            "--approve-sampling",
        ],
        &[("OPENAI_API_KEY", "sk-test")],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let result = stdout_json(&out);
    assert_eq!(
        result["content"][0]["text"],
        format!("Trip to Lisbon: 3 days, comfort, flights no.\n\n{ITINERARY}"),
        "{result}"
    );
    assert_eq!(result["isError"], false);

    let requests = received.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 1, "one sampling request: {requests:?}");
    let (_, auth, request) = &requests[0];
    assert_eq!(auth, "Bearer sk-test");
    assert_eq!(
        request,
        &json!({
            "model": "test-model",
            "max_tokens": 400,
            "messages": [
                {"role": "system", "content": "You are a travel planner."},
                {"role": "user", "content": "Write a 3-day comfort itinerary for Lisbon."}
            ]
        })
    );
    let err = stderr(&out);
    assert!(
        err.contains("answered the form \"Where and how do you want to travel?\" from --answers"),
        "{err}"
    );
    assert!(err.contains("model reply (fake-model-1, endTurn)"), "{err}");
}

#[tokio::test]
async fn plan_trip_one_shot_with_answers_and_openai_sampling_legacy_era() {
    plan_trip_with_openai_sampling("legacy").await;
}

#[tokio::test]
async fn plan_trip_one_shot_with_answers_and_openai_sampling_modern_era() {
    plan_trip_with_openai_sampling("modern").await;
}

/// The issue-12 regression: a tool of a dual-era SDK server (PyPI `mcp`) that
/// elicits, samples and reports progress, called from `lodge connect` in each era.
/// With `--protocol auto` the client speaks 2026-07-28; before Lodge initialized such
/// servers first, the call failed with "this transport context has no back-channel".
async fn book_table_on_the_python_sdk_server(protocol: &str) {
    let lodge = Lodge::start(&crate::common::python_sdk_server_toml("py"));
    let dir = tempfile::tempdir().unwrap();
    let answers = answers_file(&dir, "answers.json", r#"{"guests": 4, "time": "19:30"}"#);
    let out = connect(
        &[
            &format!("{}/mcp/py", lodge.base),
            "--protocol",
            protocol,
            "--call",
            "book_table",
            "--answers",
            &answers,
            "--sampling-text",
            "See you soon!",
            "--approve-sampling",
        ],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    assert_eq!(
        stdout_json(&out)["content"][0]["text"],
        "Booked for 4 at 19:30. See you soon!"
    );
    // rmcp hands each notification to its own task, so an update can reach lodge connect
    // after a later one, which it then drops (progress only goes up): the lines shown are
    // in order and end with the last step.
    let err = stderr(&out);
    let steps = [
        "progress 1/3 checking availability",
        "progress 2/3 asking the guest",
        "progress 3/3 confirming",
    ];
    let shown: Vec<&str> = err.lines().filter(|l| l.starts_with("progress ")).collect();
    let mut expected = steps.iter();
    assert!(
        shown.iter().all(|l| expected.any(|s| s == l)) && shown.last() == steps.last(),
        "progress lines {shown:?} in: {err}"
    );
}

#[tokio::test]
async fn a_dual_era_sdk_tool_elicits_samples_and_reports_progress_from_a_2026_client() {
    book_table_on_the_python_sdk_server("auto").await;
}

#[tokio::test]
async fn a_dual_era_sdk_tool_elicits_samples_and_reports_progress_from_a_forced_2026_client() {
    book_table_on_the_python_sdk_server("modern").await;
}

#[tokio::test]
async fn a_dual_era_sdk_tool_elicits_samples_and_reports_progress_from_a_legacy_client() {
    book_table_on_the_python_sdk_server("legacy").await;
}

#[tokio::test]
async fn toml_answers_and_fixed_sampling_and_progress_lines() {
    let lodge = Lodge::demo("");
    let dir = tempfile::tempdir().unwrap();
    let answers = answers_file(
        &dir,
        "answers.toml",
        "destination = \"Porto\"\ndays = 2\nbudget = \"luxury\"\n",
    );
    let out = connect(
        &[
            &lodge.url(),
            "--protocol",
            "legacy",
            "--call",
            "plan_trip",
            "--answers",
            &answers,
            "--sampling-text",
            "Port wine.",
            "--approve-sampling",
        ],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    assert_eq!(
        stdout_json(&out)["content"][0]["text"],
        "Trip to Porto: 2 days, luxury, flights yes.\n\nPort wine."
    );
    // Without a terminal, progress is printed as lines, and logs by level.
    let err = stderr(&out);
    for line in [
        "progress 1/4 asking for trip details",
        "progress 2/4 asking the model for an itinerary",
        "progress 3/4 saving the plan",
        "progress 4/4 done",
        "[info] plan_trip: saved the 2-day plan for Porto to trip-plan.md",
    ] {
        assert!(err.contains(line), "missing {line:?} in: {err}");
    }
}

#[tokio::test]
async fn a_form_without_an_answer_or_default_for_a_required_field_is_declined() {
    let lodge = Lodge::demo("");
    let dir = tempfile::tempdir().unwrap();
    let answers = answers_file(&dir, "answers.json", r#"{"destination": "Oslo"}"#);
    let out = connect(
        &[
            &lodge.url(),
            "--call",
            "plan_trip",
            "--answers",
            &answers,
            "--sampling-text",
            "x",
            "--approve-sampling",
        ],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    assert_eq!(
        stdout_json(&out)["content"][0]["text"],
        "Trip planning stopped: the user chose to decline."
    );
    assert!(
        stderr(&out).contains("required field days has no answer and no default"),
        "{}",
        stderr(&out)
    );

    // No --answers and no terminal: declined at once, never a hang.
    let out = connect(
        &[&lodge.url(), "--call", "plan_trip", "--sampling-text", "x"],
        &[],
    )
    .await;
    assert_eq!(
        stdout_json(&out)["content"][0]["text"],
        "Trip planning stopped: the user chose to decline."
    );
    assert!(
        stderr(&out).contains("no terminal to ask on (pass --answers FILE)"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn sampling_without_approval_and_without_a_terminal_is_refused() {
    let lodge = Lodge::demo("");
    let dir = tempfile::tempdir().unwrap();
    let answers = answers_file(&dir, "a.json", r#"{"destination": "Rome", "days": 1}"#);
    let out = connect(
        &[
            &lodge.url(),
            "--protocol",
            "legacy",
            "--call",
            "plan_trip",
            "--answers",
            &answers,
            "--sampling-text",
            "never sent",
        ],
        &[],
    )
    .await;
    let err = stderr(&out);
    assert!(
        err.contains("refused the sampling request: no terminal to approve it on"),
        "{err}"
    );
    // The demo server turns the client's refusal into a tool error.
    assert_eq!(out.status.code(), Some(1), "{err}");
    let result = stdout_json(&out);
    assert_eq!(result["isError"], true);
    assert!(
        result["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("User rejected sampling request"),
        "{result}"
    );
}

#[tokio::test]
async fn exit_codes() {
    let lodge = Lodge::demo("");
    let url = lodge.url();

    // 0, and the result as JSON.
    let out = connect(&[&url, "--call", "echo", "--args", r#"{"text":"hi"}"#], &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout_json(&out)["content"][0]["text"], "hi");

    // 1: the tool reported an error (the result is still printed).
    let out = connect(
        &[
            &url,
            "--call",
            "notes",
            "--args",
            r#"{"action":"read","name":"missing.txt"}"#,
        ],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(stdout_json(&out)["isError"], true);

    // 2: arguments that do not match the input schema are not sent.
    let out = connect(
        &[&url, "--call", "counter", "--args", r#"{"action":"jump"}"#],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("do not match counter's input schema"),
        "{}",
        stderr(&out)
    );
    assert!(out.stdout.is_empty());

    // 2: not JSON, not an object, unknown tool.
    for args in [
        &["--call", "echo", "--args", "{"][..],
        &["--call", "echo", "--args", "[1]"][..],
        &["--call", "nope"][..],
    ] {
        let mut all = vec![url.as_str()];
        all.extend_from_slice(args);
        let out = connect(&all, &[]).await;
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
    }

    // 3: nothing listens there.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let out = connect(&[&format!("http://{closed}/mcp"), "--list"], &[]).await;
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("cannot connect"), "{}", stderr(&out));
}

#[tokio::test]
async fn list_prints_the_server_and_its_tools() {
    let lodge = Lodge::demo("");
    for protocol in ["legacy", "modern", "auto"] {
        let out = connect(&[&lodge.url(), "--protocol", protocol, "--list"], &[]).await;
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let list = stdout_json(&out);
        assert_eq!(list["server"]["serverInfo"]["name"], "lodge-demo");
        let expected_version = if protocol == "legacy" {
            "2025-11-25"
        } else {
            "2026-07-28"
        };
        assert_eq!(list["server"]["protocolVersion"], expected_version);
        let mut names: Vec<&str> = list["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "counter",
                "echo",
                "notes",
                "plan_trip",
                "session_info",
                "slow"
            ]
        );
    }
}

/// A TCP proxy to `upstream` that, once, cuts the connection whose response carries
/// `marker` (as a network failure would). Records what clients sent.
async fn cutting_proxy(
    upstream: std::net::SocketAddr,
    marker: &'static str,
) -> (
    String,
    Arc<Mutex<String>>,
    Arc<std::sync::atomic::AtomicBool>,
) {
    use std::sync::atomic::{AtomicBool, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let sent = Arc::new(Mutex::new(String::new()));
    let cut = Arc::new(AtomicBool::new(false));
    let (sent2, cut2) = (sent.clone(), cut.clone());
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let (sent, cut) = (sent2.clone(), cut2.clone());
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                    return;
                };
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let up = async {
                    let mut buf = vec![0u8; 16384];
                    while let Ok(n) = cr.read(&mut buf).await {
                        if n == 0 || sw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                        sent.lock()
                            .unwrap()
                            .push_str(&String::from_utf8_lossy(&buf[..n]));
                    }
                };
                let down = async {
                    let mut buf = vec![0u8; 16384];
                    while let Ok(n) = sr.read(&mut buf).await {
                        if n == 0 || cw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                        let text = String::from_utf8_lossy(&buf[..n]);
                        if text.contains(marker) && !cut.swap(true, Ordering::SeqCst) {
                            break; // drop both directions: the connection is gone
                        }
                    }
                };
                tokio::select! { () = up => {}, () = down => {} }
            });
        }
    });
    (format!("http://{addr}/mcp"), sent, cut)
}

#[tokio::test]
async fn a_dropped_stream_is_resumed_with_last_event_id() {
    let lodge = Lodge::demo("");
    let upstream: std::net::SocketAddr = lodge.base.trim_start_matches("http://").parse().unwrap();
    let (url, sent, cut) = cutting_proxy(upstream, "step 2 of 4").await;
    let out = connect(
        &[
            &url,
            "--protocol",
            "legacy",
            "--call",
            "slow",
            "--args",
            r#"{"seconds":2,"steps":4}"#,
        ],
        &[],
    )
    .await;
    assert!(
        cut.load(std::sync::atomic::Ordering::SeqCst),
        "the proxy never cut"
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout_json(&out)["content"][0]["text"], "finished 4 steps");
    let sent = sent.lock().unwrap().to_ascii_lowercase();
    assert!(
        sent.contains("get /mcp") && sent.contains("last-event-id:"),
        "no resume request: {sent}"
    );
    // Nothing was lost or repeated across the cut: each step's progress exactly once.
    let err = stderr(&out);
    for step in 1..=4 {
        let line = format!("progress {step}/4 step {step} of 4");
        assert_eq!(err.matches(&line).count(), 1, "{line:?} in: {err}");
    }
}
