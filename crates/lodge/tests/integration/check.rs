//! `lodge check` and the startup check of `lodge serve`, against a good server, one that
//! crashes at start and one that is not an MCP server; and the log those write.

#![allow(clippy::unwrap_used)]

use crate::common::{LODGE, demo_server_toml};
use std::process::{Command, Stdio};

const CRASHING: &str = "[[server]]\nname = \"crashy\"\ncommand = [\"sh\", \"-c\", \"echo 'Traceback: No module named mcp' >&2; exit 3\"]\n";
const NOT_MCP: &str = "[[server]]\nname = \"notmcp\"\ncommand = [\"sh\", \"-c\", \"echo 'Welcome to my web app'; sleep 60\"]\n";

/// Runs `lodge ARGS --config FILE` with `config` written to FILE; exit code, stdout, stderr.
fn lodge(args: &[&str], config: &str) -> (i32, String, String) {
    lodge_with(args, config, &[])
}

fn lodge_with(args: &[&str], config: &str, env: &[(&str, &str)]) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("lodge.toml");
    let scratch = dir.path().join("scratch");
    std::fs::write(
        &file,
        format!("{config}\n[session]\nscratch_root = {scratch:?}\n"),
    )
    .unwrap();
    let out = Command::new(LODGE)
        .args(args)
        .arg("--config")
        .arg(&file)
        .env_remove("LODGE_STARTUP_CHECK")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn lodge_check_reports_each_server_with_its_tools_or_why_it_failed() {
    let (code, out, err) = lodge(&["check"], &demo_server_toml());
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "demo: ok: legacy session; 2026-07-28 clients are bridged to it over MRTR (the server accepted initialize, version 2025-11-25); legacy clients relayed",
            "  tools: 6 (counter, echo, notes, plan_trip, session_info, slow)",
        ]
    );

    let config = format!("{}{CRASHING}{NOT_MCP}", demo_server_toml());
    let (code, out, err) = lodge(&["check", "--timeout", "3s"], &config);
    assert_eq!(code, 1, "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("demo: ok: "), "{out}");
    assert_eq!(
        lines[2..],
        [
            "crashy: FAILED: could not set up the MCP server for a 2026-07-28 client: the MCP server exited with status 3 (last stderr line: Traceback: No module named mcp)",
            "  hint: it exited before answering: run its command by hand to see why (a missing package, file or environment variable?), and mind that the sandbox sees only what [server.sandbox] lets in",
            "notmcp: FAILED: no answer to initialize or server/discover within 3s; it wrote 1 line(s) on stdout that are not JSON-RPC",
            "  hint: stdout carries only JSON-RPC messages for a stdio MCP server: is this command an MCP server (some need an argument such as `stdio`), and does it print its logs or banner to stdout instead of stderr?",
        ],
        "{out}"
    );
    assert!(err.contains("2 of 3 server(s) failed the check"), "{err}");
}

#[test]
fn lodge_serve_refuses_to_start_on_a_server_that_crashes_at_start() {
    let config = format!("{}{CRASHING}", demo_server_toml());
    let (code, out, err) = lodge(&["serve", "--listen", "127.0.0.1:0"], &config);
    assert_eq!(code, 1, "{out}{err}");
    assert!(!out.contains("listening on"), "it must not serve: {out}");
    assert!(err.contains("crashy: FAILED: could not set up"), "{err}");
    assert!(
        err.contains("refusing to start (startup_check = true; `lodge check` runs the same check)"),
        "{err}"
    );
}

#[tokio::test]
async fn lodge_serve_checks_good_servers_and_starts_or_skips_the_check_when_told() {
    // On by default: a good server passes and Lodge serves it.
    let launch = lodge_testkit::server::Launch::new(LODGE, &demo_server_toml()).unwrap();
    let lodge = launch.startup_check().start().unwrap();
    let mut raw = crate::common::Raw::new(lodge.url());
    raw.initialize().await;
    drop(lodge);
    // Off: even a server that would fail the check is only found out when used.
    let config = format!("startup_check = false\n{CRASHING}");
    let launch = lodge_testkit::server::Launch::new(LODGE, &config).unwrap();
    let lodge = launch.startup_check().start().unwrap();
    let raw = crate::common::Raw::new(lodge.url());
    let reply = raw
        .post(serde_json::json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
            "protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}))
        .await;
    assert!(
        reply.body.contains("exited with status 3"),
        "{}",
        reply.body
    );
}

#[test]
fn json_logs_carry_each_sessions_span() {
    let config = format!("log_format = \"json\"\n{CRASHING}");
    let (code, _, err) = lodge_with(
        &["serve", "--listen", "127.0.0.1:0"],
        &config,
        &[("LODGE_LOG", "info")],
    );
    assert_eq!(code, 1, "{err}");
    let lines: Vec<serde_json::Value> = err
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let ended = lines
        .iter()
        .find(|l| l["fields"]["message"] == "session ended")
        .unwrap_or_else(|| panic!("no JSON 'session ended' line in {err}"));
    assert_eq!(ended["span"]["name"], "session", "{ended}");
    assert_eq!(ended["span"]["server"], "crashy", "{ended}");
    assert_eq!(ended["level"], "INFO");
    let config = format!("log_format = \"yaml\"\n{}", demo_server_toml());
    let (code, _, err) = lodge(&["serve"], &config);
    assert_eq!(code, 1);
    assert!(
        err.contains("unknown log_format \"yaml\"; expected text or json"),
        "{err}"
    );
}
