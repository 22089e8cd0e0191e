//! A soak: rounds of sessions opened, used and ended must leave Lodge where it was, in
//! memory and in descriptors.
//!
//! CI runs a short mode; a longer one is
//! `LODGE_SOAK_ROUNDS=200 scripts/test.sh -p lodge --test integration soak::` (RELIABILITY.md).
#![allow(clippy::unwrap_used)]

use crate::common::{Lodge, eventually, rss_kib};
use lodge_testkit::http::McpHttp;
use serde_json::json;
use std::time::Duration;

/// Lodge's resident memory (KiB) and open descriptors.
fn footprint(pid: u32) -> (u64, usize) {
    let rss = rss_kib(pid);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    (rss, fds)
}

/// 20 sessions at once, each initialized, called and ended.
async fn round(http: &McpHttp) {
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let http = McpHttp::new(http.url().to_string()).unwrap();
        tasks.push(tokio::spawn(async move {
            let session = http.open_session().await.unwrap();
            let call = json!({"jsonrpc":"2.0","id":1,"method":"tools/call",
                "params":{"name":"counter","arguments":{"action":"increment"}}});
            let mut reply = http.post(Some(&session), call.to_string()).await.unwrap();
            let response = reply.response_to(1).await.unwrap();
            assert_eq!(response["result"]["content"][0]["text"], "1");
            reply.finish().await.unwrap();
            http.delete(&session).await.unwrap();
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_that_end_leave_no_memory_or_descriptors_behind() {
    let rounds: usize = std::env::var("LODGE_SOAK_ROUNDS")
        .map(|v| v.parse().unwrap())
        .unwrap_or(6);
    let lodge = Lodge::demo("");
    let http = McpHttp::new(lodge.url()).unwrap();
    // Warm up: thread pools, allocator arenas and buffers reach their working size.
    for _ in 0..3 {
        round(&http).await;
    }
    let settled = |pid| async move {
        // Ended sessions close their last descriptors a moment after the 204.
        tokio::time::sleep(Duration::from_millis(300)).await;
        footprint(pid)
    };
    let (rss_before, fds_before) = settled(lodge.pid()).await;
    for _ in 0..rounds {
        round(&http).await;
    }
    let mut after = settled(lodge.pid()).await;
    eventually(
        Duration::from_secs(10),
        "Lodge's descriptors to return to where they were",
        async || {
            after = footprint(lodge.pid());
            after.1 <= fds_before
        },
    )
    .await;
    let grown_kib = after.0.saturating_sub(rss_before);
    eprintln!(
        "{} sessions after warm-up: RSS {rss_before} -> {} KiB, descriptors {fds_before} -> {}",
        rounds * 20,
        after.0,
        after.1
    );
    assert!(
        grown_kib < 8 * 1024,
        "Lodge grew by {grown_kib} KiB over {} sessions",
        rounds * 20
    );
}
