//! Session lifecycle: idle timeout (never for busy sessions), max lifetime, server
//! crashes, the session limit, and a draining shutdown with no orphan processes.
//!
//! The timer tests run Lodge in-process and skip ahead on a paused clock; the rest start
//! the real binary.
#![allow(clippy::unwrap_used)]

use crate::common::{LODGE, Lodge, Raw, dirs, eventually, new_scratch_dir, scratch_holding};
use lodge_runtime::SessionConfig;
use lodge_testkit::in_process::InProcess;
use serde_json::json;
use std::time::Duration;

fn message(reply: &crate::common::Reply) -> String {
    reply.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Starts a session; returns its scratch directory, which exists exactly as long as its
/// sandbox (the session's is the one that appears with it: these tests have no warm pool).
async fn start_session(scratch_root: &std::path::Path, raw: &mut Raw) -> std::path::PathBuf {
    let before = dirs(scratch_root);
    raw.initialize().await;
    new_scratch_dir(scratch_root, &before)
}

/// Lodge in this test's runtime, hosting the demo server on the `process` backend, so the
/// test can pause the clock its timers run on.
async fn in_process(session: SessionConfig) -> InProcess {
    let demo = vec![LODGE.to_string(), "demo-server".to_string()];
    InProcess::start("demo", demo, session).await.unwrap()
}

/// Lets Lodge's timers run `by` ahead on a paused clock, without waiting that long.
///
/// Sound only when nothing but those timers is awaited: a paused clock also jumps while a
/// task waits on a child process or a socket, so the setup before and the checks after run
/// on the real clock.
async fn skip_ahead(by: Duration) {
    tokio::time::pause();
    tokio::time::sleep(by).await;
    tokio::time::resume();
}

#[tokio::test]
async fn idle_sessions_expire_but_a_busy_one_is_never_reaped() {
    let lodge = in_process(SessionConfig {
        idle_timeout: Duration::from_secs(1),
        ..SessionConfig::default()
    })
    .await;
    let mut idle = Raw::new(lodge.url());
    let idle_sandbox = start_session(&lodge.scratch_root(), &mut idle).await;
    assert!(idle_sandbox.is_dir());
    let mut busy = Raw::new(lodge.url());
    let busy_sandbox = start_session(&lodge.scratch_root(), &mut busy).await;
    // A call that stays in flight for three idle timeouts.
    let long = busy.post_builder(&json!({"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"slow","arguments":{"seconds":3,"steps":3}}}));
    let long = tokio::spawn(Raw::send(long));
    busy.wait_for_slow_to_start(6).await;

    // Every request is answered and the busy call is in flight, so the idle session's
    // timer is the only one due: skip three idle timeouts ahead, with the call still
    // running on the real clock.
    skip_ahead(Duration::from_millis(3300)).await;
    // Watch the process, not the endpoint: a request would count as activity.
    eventually(
        Duration::from_secs(10),
        "the idle session's server to end",
        async || !idle_sandbox.exists(),
    )
    .await;
    let reply = idle.call(3, "echo", json!({"text":"x"})).await;
    assert!(
        message(&reply).contains("it was idle for 1s (the idle timeout)"),
        "{}",
        message(&reply)
    );

    let long = long.await.unwrap();
    let result = long.events().last().unwrap().json();
    assert_eq!(result["result"]["content"][0]["text"], "finished 3 steps");
    // Still alive right after its call, and it expires once idle itself.
    assert!(busy_sandbox.is_dir());
    skip_ahead(Duration::from_millis(1100)).await;
    eventually(
        Duration::from_secs(10),
        "the formerly busy session to expire",
        async || !busy_sandbox.exists(),
    )
    .await;
    assert_eq!(busy.call(7, "echo", json!({"text":"x"})).await.status, 404);
}

#[tokio::test]
async fn sessions_end_at_max_lifetime_even_when_active() {
    let lodge = in_process(SessionConfig {
        max_lifetime: Duration::from_millis(1500),
        ..SessionConfig::default()
    })
    .await;
    let mut raw = Raw::new(lodge.url());
    let sandbox = start_session(&lodge.scratch_root(), &mut raw).await;
    // A call in flight across the end of the lifetime: being busy does not extend it.
    let slow = raw.post_builder(&json!({"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"slow","arguments":{"seconds":3,"steps":3}}}));
    let _slow = tokio::spawn(Raw::send(slow));
    raw.wait_for_slow_to_start(6).await;
    skip_ahead(Duration::from_millis(1600)).await;
    let mut id = 10;
    eventually(
        Duration::from_secs(10),
        "the session to reach its lifetime",
        async || {
            id += 1;
            raw.call(id, "echo", json!({"text":"x"})).await.status == 404
        },
    )
    .await;
    let reply = raw.call(100, "echo", json!({"text":"x"})).await;
    assert!(
        message(&reply).contains("maximum lifetime of 1500ms"),
        "{}",
        message(&reply)
    );
    // The id answers 404 as soon as the session ends; the sandbox goes right after.
    eventually(
        Duration::from_secs(10),
        "the sandbox to be removed",
        async || !sandbox.exists(),
    )
    .await;
}

/// A stdio server that answers initialize, then dies on its first tool call.
const CRASHING_SERVER: &str = r#"
read line
printf '%s\n' '{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-11-25","capabilities":{"tools":{}},"serverInfo":{"name":"crashy","version":"1"}}}'
read line
read line
echo "fatal: out of cheese" >&2
exit 3
"#;

#[tokio::test]
async fn a_crashing_server_fails_pending_calls_at_once_and_ends_the_session() {
    let lodge = Lodge::start(&format!(
        "[[server]]\nname = \"crashy\"\ncommand = [\"sh\", \"-c\", {CRASHING_SERVER:?}]\n"
    ));
    let mut raw = Raw::new(lodge.url());
    raw.initialize().await;
    let started = std::time::Instant::now();
    let reply = raw.call(1, "anything", json!({})).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the error must come promptly"
    );
    assert_eq!(reply.status, 200);
    let error = reply.events().last().unwrap().json();
    assert_eq!(error["id"], 1);
    assert_eq!(error["error"]["code"], -32000);
    let text = error["error"]["message"].as_str().unwrap();
    assert!(
        text.contains("the MCP server exited with status 3"),
        "{text}"
    );
    assert!(text.contains("fatal: out of cheese"), "{text}");

    let later = raw.call(2, "anything", json!({})).await;
    assert_eq!(later.status, 404);
    assert!(message(&later).contains("exited with status 3"));
}

/// A stdio server that answers initialize, then reads everything and answers nothing,
/// keeping what it was sent in `received.jsonl` (in its scratch directory). The shell
/// stays, holding stdout open: a server that closes it has ended.
const SILENT_SERVER: &str = r#"
read line
printf '%s\n' '{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-11-25","capabilities":{"tools":{}},"serverInfo":{"name":"silent","version":"1"}}}'
cat > received.jsonl
"#;

#[tokio::test]
async fn a_call_the_server_never_answers_times_out_and_is_cancelled_upstream() {
    let lodge = Lodge::start(&format!(
        "[[server]]\nname = \"silent\"\ncommand = [\"sh\", \"-c\", {SILENT_SERVER:?}]\n\
         [session]\nrequest_timeout = \"1s\"\n"
    ));
    let mut raw = Raw::new(lodge.url());
    raw.initialize().await;
    let reply = raw.call(7, "anything", json!({})).await;
    assert_eq!(reply.status, 200);
    let error = reply.events().last().unwrap().json();
    assert_eq!(error["id"], 7, "{error}");
    assert_eq!(error["error"]["code"], -32004, "{error}");
    let text = error["error"]["message"].as_str().unwrap();
    assert!(text.contains("did not answer within 1s"), "{text}");
    // The server is told to stop working on it, and the session lives on.
    let sandbox = scratch_holding(&lodge.scratch_root(), "received.jsonl");
    eventually(
        Duration::from_secs(5),
        "the server to receive notifications/cancelled",
        async || {
            crate::common::read_file(&sandbox.join("received.jsonl"))
                .lines()
                .any(|l| {
                    let m: serde_json::Value = serde_json::from_str(l).unwrap_or_default();
                    m["method"] == "notifications/cancelled" && m["params"]["requestId"] == 7
                })
        },
    )
    .await;
    let again = raw.call(8, "anything", json!({})).await;
    assert_eq!(
        again.events().last().unwrap().json()["error"]["code"],
        -32004
    );
}

/// A stdio server that answers initialize, then meets the first call with forty
/// 100 kB notifications for the GET stream (which nobody opened), and no answer.
const FLOODING_SERVER: &str = r#"
read line
printf '%s\n' '{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-11-25","capabilities":{"resources":{"subscribe":true}},"serverInfo":{"name":"flood","version":"1"}}}'
read line
read line
pad=$(head -c 100000 /dev/zero | tr '\0' a)
i=0
while [ $i -lt 40 ]; do
  printf '{"jsonrpc":"2.0","method":"notifications/resources/updated","params":{"uri":"%s"}}\n' "$pad"
  i=$((i+1))
done
cat > /dev/null
"#;

#[tokio::test]
async fn unread_server_messages_past_the_byte_budget_end_the_session_saying_why() {
    let lodge = Lodge::start(&format!(
        "[[server]]\nname = \"flood\"\ncommand = [\"sh\", \"-c\", {FLOODING_SERVER:?}]\n\
         [session]\nmax_buffered_bytes = \"1MiB\"\n"
    ));
    let mut raw = Raw::new(lodge.url());
    raw.initialize().await;
    let reply = raw.call(1, "anything", json!({})).await;
    let error = reply.events().last().unwrap().json();
    assert_eq!(error["id"], 1, "{error}");
    let text = error["error"]["message"].as_str().unwrap();
    assert!(
        text.contains("more than 1 MiB of server messages no client read"),
        "{text}"
    );
    let later = raw.call(2, "anything", json!({})).await;
    assert_eq!(later.status, 404);
    assert!(
        message(&later).contains("max_buffered_bytes"),
        "{}",
        message(&later)
    );
}

#[tokio::test]
async fn past_lodge_s_total_byte_budget_the_heavy_session_ends_and_a_light_one_lives_on() {
    let lodge = Lodge::start(&format!(
        "{}[[server]]\nname = \"flood\"\ncommand = [\"sh\", \"-c\", {FLOODING_SERVER:?}]\n\
         [session]\nmax_buffered_bytes = \"64MiB\"\nmax_buffered_bytes_total = \"1MiB\"\n",
        crate::common::demo_server_toml()
    ));
    let mut light = Raw::new(format!("{}/mcp/demo", lodge.base));
    light.initialize().await;
    let mut heavy = Raw::new(format!("{}/mcp/flood", lodge.base));
    heavy.initialize().await;
    let reply = heavy.call(1, "anything", json!({})).await;
    let text = reply.events().last().unwrap().json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(text.contains("max_buffered_bytes_total"), "{text}");
    assert_eq!(
        light.call_text(1, "echo", json!({"text":"fine"})).await,
        "fine"
    );
}

#[tokio::test]
async fn a_server_that_cannot_start_gets_a_clear_error() {
    let lodge = Lodge::start("[[server]]\nname = \"typo\"\ncommand = [\"no-such-mcp-server\"]\n");
    let reply = Raw::new(lodge.url())
        .post(json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}))
        .await;
    assert_eq!(reply.status, 502);
    assert_eq!(reply.json()["id"], 0);
    assert!(
        message(&reply).contains("`no-such-mcp-server` not found"),
        "{}",
        message(&reply)
    );
}

#[tokio::test]
async fn max_sessions_is_enforced_with_503_and_frees_up_on_end() {
    let lodge = Lodge::demo("max_sessions = 1");
    let mut first = Raw::new(lodge.url());
    first.initialize().await;
    let mut second = Raw::new(lodge.url());
    let init = json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}});
    let reply = second.post(init.clone()).await;
    assert_eq!(reply.status, 503);
    assert!(
        message(&reply).contains("limit of 1 live sessions"),
        "{}",
        message(&reply)
    );
    // The first session is unharmed.
    assert_eq!(first.call_text(1, "echo", json!({"text":"ok"})).await, "ok");
    let del = Raw::send(
        first
            .http
            .delete(lodge.url())
            .header("mcp-session-id", first.session.clone().unwrap()),
    )
    .await;
    assert_eq!(del.status, 204);
    second.initialize().await;
}

/// Under an open-file limit it cannot raise, Lodge accepts only the sessions that fit
/// (five descriptors each with the process backend: its sandbox's four and the client's
/// connection, after a reserve of 1024) and
/// refuses the next one as "at its limit", before any spawn runs out of descriptors.
#[tokio::test]
async fn a_low_open_file_limit_caps_sessions_with_a_clear_503() {
    let lodge = Lodge::start_under(
        &["prlimit", "--nofile=1034:1034", "--"],
        &crate::common::demo_server_toml(),
        &["--backend", "process"],
    );
    let mut first = Raw::new(lodge.url());
    first.initialize().await;
    Raw::new(lodge.url()).initialize().await;
    let init = json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}});
    let reply = Raw::new(lodge.url()).post(init).await;
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert!(
        message(&reply).contains("limit of 2 live sessions"),
        "{}",
        message(&reply)
    );
    assert_eq!(first.call_text(1, "echo", json!({"text":"ok"})).await, "ok");
}

/// Out of file descriptors, Lodge refuses the new session with 503 and a reason, and
/// the sessions it already has go on working.
#[tokio::test]
async fn running_out_of_descriptors_refuses_new_sessions_and_harms_no_other() {
    let lodge = Lodge::demo("");
    let mut first = Raw::new(lodge.url());
    first.initialize().await;
    let open = std::fs::read_dir(format!("/proc/{}/fd", lodge.pid()))
        .unwrap()
        .count()
        + 1; // the connection of the client below
    // Room for a few more descriptors, never for the three pipes of many more sessions.
    let limit = open + 8;
    let status = std::process::Command::new("prlimit")
        .arg(format!("--pid={}", lodge.pid()))
        .arg(format!("--nofile={limit}:{limit}"))
        .status()
        .unwrap();
    assert!(status.success(), "prlimit failed");
    let init = json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}});
    // One client, so one connection: the new sessions' pipes are what runs out.
    let others = Raw::new(lodge.url());
    let mut refused = None;
    for _ in 0..10 {
        let reply = others.post(init.clone()).await;
        if reply.status != 200 {
            refused = Some(reply);
            break;
        }
    }
    let reply = refused.expect("Lodge kept starting sessions past its open-file limit");
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert!(
        message(&reply).contains("out of resources"),
        "{}",
        message(&reply)
    );
    assert_eq!(first.call_text(1, "echo", json!({"text":"ok"})).await, "ok");
}

#[tokio::test]
async fn sigterm_lets_calls_finish_then_ends_every_sandbox() {
    let mut lodge = Lodge::demo("");
    let mut a = Raw::new(lodge.url());
    a.initialize().await;
    let mut b = Raw::new(lodge.url());
    b.initialize().await;
    let scratch = lodge.scratch_root();
    assert_eq!(std::fs::read_dir(&scratch).unwrap().count(), 2);

    let call = a.post_builder(&json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"slow","arguments":{"seconds":1.5,"steps":3}}}));
    let call = tokio::spawn(Raw::send(call));
    a.wait_for_slow_to_start(3).await;
    let status = tokio::task::spawn_blocking(move || {
        let status = lodge.terminate();
        (status, lodge)
    });
    let reply = call.await.unwrap();
    let result = reply.events().last().unwrap().json();
    assert_eq!(
        result["result"]["content"][0]["text"], "finished 3 steps",
        "the in-flight call finished"
    );
    let (status, _lodge) = status.await.unwrap();
    assert!(status.success(), "lodge exits cleanly: {status:?}");
    assert_eq!(
        std::fs::read_dir(&scratch).unwrap().count(),
        0,
        "scratch directories removed"
    );
}

#[tokio::test]
async fn a_warm_pool_hands_out_prestarted_sandboxes_once_and_refills() {
    let mut lodge = Lodge::start(&format!(
        "{}warm_pool = 2\n",
        crate::common::demo_server_toml()
    ));
    let scratch = lodge.scratch_root();
    eventually(Duration::from_secs(10), "the pool to fill", async || {
        dirs(&scratch).len() == 2
    })
    .await;
    let pooled = dirs(&scratch);
    let mut raw = Raw::new(lodge.url());
    raw.initialize().await;
    assert_eq!(
        raw.call_text(
            1,
            "notes",
            json!({"action":"write","name":"mine","text":"x"})
        )
        .await,
        "saved mine"
    );
    let mine = scratch_holding(&scratch, "mine");
    assert!(
        pooled.iter().any(|d| scratch.join(d) == mine),
        "the session took a pre-started sandbox: {mine:?} not in {pooled:?}"
    );
    eventually(Duration::from_secs(10), "the pool to refill", async || {
        dirs(&scratch).len() == 3
    })
    .await;
    let mut other = Raw::new(lodge.url());
    other.initialize().await;
    assert_ne!(other.session, raw.session, "a pooled sandbox is used once");
    let status = tokio::task::spawn_blocking(move || {
        let status = lodge.terminate();
        (status, lodge)
    });
    let (status, _lodge) = status.await.unwrap();
    assert!(status.success());
    assert!(
        dirs(&scratch).is_empty(),
        "pooled sandboxes are removed at shutdown: {:?}",
        dirs(&scratch)
    );
}
