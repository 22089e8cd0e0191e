//! Real third-party MCP servers inside the `namespaces` sandbox, through `lodge serve`:
//! the reference Node server from npm (`@modelcontextprotocol/server-everything`) and the
//! Python SDK fixture. Skipped where the host cannot run the sandbox, except under CI=true.
#![allow(clippy::unwrap_used)]

use crate::common::{Raw, start_namespaces_in};
use serde_json::{Value, json};

#[tokio::test]
async fn the_npm_everything_server_completes_tool_calls_in_the_sandbox() {
    if !crate::common::namespaces_supported() {
        return;
    }
    let (node, everything) = crate::common::node_everything();
    let config = format!(
        "[[server]]\nname = \"everything\"\ncommand = [{node:?}, {everything:?}, \"stdio\"]\nenv = {{ GREETING = \"hello\" }}\n[server.sandbox]\nmemory = \"512MiB\"\npids = 256\n"
    );
    let Some(lodge) = start_namespaces_in(tempfile::tempdir().unwrap(), &config) else {
        return;
    };
    let mut raw = Raw::new(lodge.url());
    let init = raw.initialize().await;
    let name = init["result"]["serverInfo"]["name"]
        .as_str()
        .unwrap_or_default();
    assert!(name.contains("everything"), "{init}");
    assert_eq!(
        raw.call_text(1, "echo", json!({"message": "from the sandbox"}))
            .await,
        "Echo: from the sandbox"
    );
    let sum = raw.call_text(2, "get-sum", json!({"a": 2, "b": 40})).await;
    assert!(sum.contains("42"), "{sum}");
    // The server's whole environment: the sandbox's, plus the configured variable.
    let env: Value = serde_json::from_str(&raw.call_text(3, "get-env", json!({})).await).unwrap();
    assert_eq!(env["HOME"], "/session");
    assert_eq!(env["GREETING"], "hello");
    for host_var in ["LODGE_TEST_PYTHON", "CARGO", "RUSTUP_HOME", "SSH_AUTH_SOCK"] {
        assert!(env.get(host_var).is_none(), "{host_var} leaked: {env}");
    }
}

#[tokio::test]
async fn the_python_sdk_server_completes_tool_calls_in_the_sandbox() {
    let server = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/python/server.py"
    );
    let config = format!(
        "[[server]]\nname = \"py\"\ncommand = [{:?}, {server:?}]\n[server.sandbox]\nmemory = \"256MiB\"\npids = 64\n",
        crate::common::python()
    );
    let Some(lodge) = start_namespaces_in(tempfile::tempdir().unwrap(), &config) else {
        return;
    };
    let mut raw = Raw::new(lodge.url());
    raw.initialize().await;
    assert_eq!(raw.call_text(1, "tally", json!({"add": 5})).await, "5");
    assert_eq!(raw.call_text(2, "tally", json!({"add": 2})).await, "7");
}

/// A server that reopens its own stdio (`/dev/stdin`, `/dev/stdout`: shell scripts do,
/// and rmcp's stdio transport reopens `/proc/self/fd/N` for non-blocking pipes) can:
/// its pipes belong to the session's user, not to Lodge's.
#[tokio::test]
async fn a_server_can_reopen_its_own_stdio_in_the_sandbox() {
    let script = r#"
import json
out = open("/dev/stdout", "w")
for line in open("/dev/stdin"):
    msg = json.loads(line)
    if msg.get("method") == "initialize":
        info = {"name": "reopened-stdio", "version": "1"}
        result = {"protocolVersion": "2025-11-25", "capabilities": {}, "serverInfo": info}
        out.write(json.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": result}) + "\n")
        out.flush()
"#;
    let config = format!(
        "[[server]]\nname = \"reopen\"\ncommand = [{:?}, \"-c\", {script:?}]\n",
        crate::common::python()
    );
    let Some(lodge) = start_namespaces_in(tempfile::tempdir().unwrap(), &config) else {
        return;
    };
    let mut raw = Raw::new(lodge.url());
    let init = raw.initialize().await;
    assert_eq!(
        init["result"]["serverInfo"]["name"], "reopened-stdio",
        "{init}"
    );
}
