//! Third-party MCP clients against a real `lodge serve` hosting the demo server (legacy era,
//! Streamable HTTP): the official Python SDK (PyPI `mcp`, via scripts/setup-python.sh) and
//! the MCP Inspector CLI (npm `@modelcontextprotocol/inspector`, via scripts/setup-node.sh).
#![allow(clippy::unwrap_used)]

use crate::common::{Lodge, node_tools, repo_root, venv_python};
use serde_json::{Value, json};
use std::process::{Command, Output};

const SAMPLED: &str = "Day 1: tiles. Day 2: trams. Day 3: custard tarts.";

fn stdout_json(out: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Drops the `_meta` rmcp (the demo server's SDK) puts on its own requests: a progress token
/// it numbers itself, not part of the demo's contract.
fn without_meta(mut params: Value) -> Value {
    if let Some(object) = params.as_object_mut() {
        object.remove("_meta");
    }
    params
}

#[test]
fn python_sdk_client_plan_trip_elicits_samples_and_reports_progress_through_lodge() {
    let lodge = Lodge::demo("");
    let script = repo_root().join("tests/fixtures/python/plan_trip_client.py");
    let out = Command::new(venv_python())
        .arg(&script)
        .args([&lodge.url(), SAMPLED])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut got = stdout_json(&out);
    for key in ["elicitations", "samplings"] {
        let list = got[key].as_array().unwrap().clone();
        got[key] = list.into_iter().map(without_meta).collect();
    }
    assert_eq!(
        got,
        json!({
            "protocolVersion": "2025-11-25",
            "isError": false,
            "text": format!("Trip to Lisbon: 3 days, comfort, flights no.\n\n{SAMPLED}"),
            "progress": [
                [1.0, 4.0, "asking for trip details"],
                [2.0, 4.0, "asking the model for an itinerary"],
                [3.0, 4.0, "saving the plan"],
                [4.0, 4.0, "done"]
            ],
            "elicitations": [{
                "mode": "form",
                "message": "Where and how do you want to travel?",
                "requestedSchema": {
                    "type": "object",
                    "properties": {
                        "destination": {"type": "string", "title": "Destination", "minLength": 1},
                        "days": {"type": "integer", "title": "Days", "minimum": 1, "maximum": 30},
                        "budget": {"type": "string", "title": "Budget",
                            "enum": ["shoestring", "comfort", "luxury"], "default": "comfort"},
                        "flights": {"type": "boolean", "title": "Include flights", "default": true}
                    },
                    "required": ["destination", "days"]
                }
            }],
            "samplings": [{
                "messages": [{"role": "user", "content": {"type": "text",
                    "text": "Write a 3-day comfort itinerary for Lisbon."}}],
                "systemPrompt": "You are a travel planner.",
                "maxTokens": 400
            }],
            "logs": [["info", "plan_trip", "saved the 3-day plan for Lisbon to trip-plan.md"]],
            // The counter lives in the session's server process: one session, one counter.
            "counter": ["1", "1"],
            "stray": []
        })
    );
}

/// `inspector --cli URL --transport http ARGS…` (one session per run).
fn inspector(url: &str, args: &[&str]) -> Output {
    let tools = node_tools();
    Command::new(&tools.node)
        .arg(&tools.inspector)
        .args(["--cli", url, "--transport", "http"])
        .args(args)
        .output()
        .unwrap()
}

fn assert_exit(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "inspector exit status\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn inspector_cli_lists_the_demo_tools_through_lodge() {
    let lodge = Lodge::demo("");
    let out = inspector(&lodge.url(), &["--method", "tools/list"]);
    assert_exit(&out, 0);
    let listed = stdout_json(&out);
    let tools = listed["tools"].as_array().unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
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
    let echo = tools.iter().find(|t| t["name"] == "echo").unwrap();
    assert_eq!(
        echo,
        &json!({
            "name": "echo",
            "description": "Returns `text` unchanged.",
            "inputSchema": {
                "type": "object",
                "properties": {"text": {"type": "string"}},
                "required": ["text"],
                "$schema": "https://json-schema.org/draft/2020-12/schema"
            }
        })
    );
}

#[test]
fn inspector_cli_calls_echo_and_counter_through_lodge() {
    let lodge = Lodge::demo("");
    let url = lodge.url();
    let text_result =
        |text: &str| json!({"content": [{"type": "text", "text": text}], "isError": false});

    let out = inspector(
        &url,
        &[
            "--method",
            "tools/call",
            "--tool-name",
            "echo",
            "--tool-arg",
            "text=héllo, Lodge",
        ],
    );
    assert_exit(&out, 0);
    assert_eq!(stdout_json(&out), text_result("héllo, Lodge"));

    let out = inspector(
        &url,
        &[
            "--method",
            "tools/call",
            "--tool-name",
            "counter",
            "--tool-args-json",
            r#"{"action":"increment","by":5}"#,
        ],
    );
    assert_exit(&out, 0);
    assert_eq!(stdout_json(&out), text_result("5"));

    // Every CLI run is a new session, with a new server process: the counter starts again.
    let out = inspector(
        &url,
        &[
            "--method",
            "tools/call",
            "--tool-name",
            "counter",
            "--tool-arg",
            "action=get",
        ],
    );
    assert_exit(&out, 0);
    assert_eq!(stdout_json(&out), text_result("0"));
}

#[test]
fn inspector_cli_exits_5_on_a_tool_error_through_lodge() {
    let lodge = Lodge::demo("");
    let out = inspector(
        &lodge.url(),
        &[
            "--method",
            "tools/call",
            "--tool-name",
            "notes",
            "--tool-args-json",
            r#"{"action":"read","name":"missing.txt"}"#,
        ],
    );
    assert_exit(&out, 5);
    assert_eq!(
        stdout_json(&out),
        json!({
            "content": [{"type": "text",
                "text": "reading note \"missing.txt\": No such file or directory (os error 2)"}],
            "isError": true
        })
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let error: Value = stderr
        .lines()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no JSON error line on stderr: {stderr}"));
    assert_eq!(
        error,
        json!({"error": {"code": "tool_is_error",
            "message": "Tool 'notes' returned isError:true."}})
    );
}
