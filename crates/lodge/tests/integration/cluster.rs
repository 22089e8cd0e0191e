//! Cluster mode: session ids are tokens sealed with the `[cluster] key_file` that
//! `lodge cluster keygen` writes; three real nodes and a real Redis serve one session
//! through whichever node a request reaches.
#![allow(clippy::unwrap_used)]

use crate::common::{LODGE, Lodge, Raw, demo_server_toml};
use serde_json::json;
use std::path::Path;
use std::process::Command;

fn keygen(args: &[&str]) -> std::process::Output {
    Command::new(LODGE)
        .args(["cluster", "keygen"])
        .args(args)
        .output()
        .unwrap()
}

fn current_key_id(file: &Path) -> String {
    let text = std::fs::read_to_string(file).unwrap();
    let line = text.lines().find(|l| !l.starts_with('#')).unwrap();
    line.split_whitespace().next().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_ids_are_sealed_with_the_cluster_key_and_die_with_their_node() {
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("cluster.key");
    let made = keygen(&["--out", key_file.to_str().unwrap()]);
    assert!(made.status.success(), "{made:?}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the key is Lodge's alone");
    let again = keygen(&["--out", key_file.to_str().unwrap()]);
    assert!(
        !again.status.success(),
        "an existing key file is never overwritten"
    );
    assert!(String::from_utf8_lossy(&again.stderr).contains("pass --rotate"));

    let config = format!(
        "[cluster]\nkey_file = {:?}\n{}",
        key_file.to_str().unwrap(),
        demo_server_toml()
    );
    let mut lodge = Lodge::start(&config);
    let mut raw = Raw::new(lodge.url());
    raw.initialize().await;
    let id = raw.session.clone().unwrap();
    assert!(
        id.starts_with(&format!("{}.", current_key_id(&key_file))),
        "{id}"
    );
    let echo = |raw: &Raw| {
        let raw = Raw {
            http: raw.http.clone(),
            url: raw.url.clone(),
            session: raw.session.clone(),
        };
        async move { raw.call(1, "echo", json!({"text": "hi"})).await }
    };
    assert_eq!(echo(&raw).await.status, 200);

    // A tampered id (one character changed) or plain junk is no session.
    let mid = id.len() / 2;
    let flipped = if &id[mid..=mid] == "A" { "B" } else { "A" };
    for bad in [
        format!("{}{flipped}{}", &id[..mid], &id[mid + 1..]),
        "k1.not-a-token".to_string(),
        "x".repeat(300),
    ] {
        let forged = Raw {
            session: Some(bad.clone()),
            ..Raw::new(lodge.url())
        };
        let reply = echo(&forged).await;
        assert_eq!(reply.status, 404, "{bad}: {}", reply.body);
    }
    assert_eq!(
        echo(&raw).await.status,
        200,
        "the real session is untouched"
    );

    // The same node, restarted with the same key, opens the id but does not bring the
    // session back: its sandbox is gone.
    lodge.stop();
    let lodge = Lodge::start(&config);
    let stale = Raw {
        session: Some(id),
        ..Raw::new(lodge.url())
    };
    assert_eq!(echo(&stale).await.status, 404);
    let mut fresh = Raw::new(lodge.url());
    fresh.initialize().await;
    assert_eq!(echo(&fresh).await.status, 200);

    // Rotation: a new current key, the old one kept as the previous.
    let old = current_key_id(&key_file);
    let rotated = keygen(&["--out", key_file.to_str().unwrap(), "--rotate"]);
    assert!(rotated.status.success(), "{rotated:?}");
    let text = std::fs::read_to_string(&key_file).unwrap();
    let ids: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(ids.len(), 2);
    assert_ne!(ids[0], old);
    assert_eq!(ids[1], old);
}

/// A `redis-server` of the test's own on a free port, shut down on drop; `None` (the
/// test skips) where Debian's redis-server is not installed, except under CI.
struct Redis(std::process::Child, u16);

impl Redis {
    fn start() -> Option<Redis> {
        let port = free_port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(["--bind", "127.0.0.1"])
            .stdout(std::process::Stdio::null())
            .spawn();
        match child {
            Ok(child) => Some(Redis(child, port)),
            Err(e) if std::env::var_os("CI").is_none() => {
                eprintln!("skipping: no redis-server ({e}); .ci/run installs it");
                None
            }
            Err(e) => panic!("redis-server is needed under CI: {e}"),
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.1)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A node of the cluster: its client URL and admin base URL.
struct Node {
    lodge: Lodge,
    admin: String,
    /// The node-to-node listener's MCP URL.
    internal: String,
}

fn node(id: &str, key_file: &Path, redis: &Redis) -> Node {
    let admin = format!("127.0.0.1:{}", free_port());
    let internal = format!("127.0.0.1:{}", free_port());
    let config = format!(
        "[cluster]\nnode_id = {id:?}\nkey_file = {:?}\nredis_url = {:?}\ninternal_listen = {internal:?}\n{}",
        key_file.to_str().unwrap(),
        redis.url(),
        demo_server_toml()
    );
    let lodge = Lodge::start_under(&[], &config, &["--admin-listen", &admin]);
    Node {
        lodge,
        admin: format!("http://{admin}"),
        internal: format!("http://{internal}/mcp"),
    }
}

fn on(node: &Node, session: &Option<String>) -> Raw {
    Raw {
        session: session.clone(),
        ..Raw::new(node.lodge.url())
    }
}

fn counter_text(reply: &crate::common::Reply) -> String {
    assert_eq!(reply.status, 200, "{}", reply.body);
    let data = reply
        .body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .find(|d| d.contains("\"result\""))
        .unwrap_or_else(|| panic!("no result: {}", reply.body));
    let v: serde_json::Value = serde_json::from_str(data).unwrap();
    v["result"]["content"][0]["text"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_node_serves_any_session_and_a_dead_nodes_sessions_answer_404() {
    let Some(redis) = Redis::start() else { return };
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("cluster.key");
    assert!(
        keygen(&["--out", key_file.to_str().unwrap()])
            .status
            .success()
    );
    let nodes: Vec<Node> = ["a", "b", "c"]
        .iter()
        .map(|id| node(id, &key_file, &redis))
        .collect();
    let http = reqwest::Client::new();
    // Every node has heard of every other.
    crate::common::eventually(
        std::time::Duration::from_secs(10),
        "the nodes see each other",
        async || {
            let ready = http.get(format!("{}/readyz", nodes[2].admin)).send().await;
            ready.is_ok_and(|r| r.status() == 200)
        },
    )
    .await;
    // One heartbeat (a second) after the last node started, every node has read the others.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;

    // A session made on a, used through b and c: one sandbox, its state kept.
    let mut first = Raw::new(nodes[0].lodge.url());
    first.initialize().await;
    let session = first.session.clone();
    let add = json!({"action": "increment"});
    for (n, want) in [(1, "1"), (2, "2"), (0, "3"), (1, "4")] {
        let reply = on(&nodes[n], &session)
            .call(7, "counter", add.clone())
            .await;
        assert_eq!(counter_text(&reply), want, "through node {n}");
    }

    // The admin list of any node shows the cluster's sessions, with their node.
    crate::common::eventually(
        std::time::Duration::from_secs(5),
        "node c lists a's session",
        async || {
            let list: serde_json::Value = http
                .get(format!("{}/admin/sessions", nodes[2].admin))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            list["sessions"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["id"].as_str() == session.as_deref() && s["node"] == "a")
        },
    )
    .await;

    // An admin stop on c ends a's session; the client hears why through b.
    let stop = http
        .delete(format!(
            "{}/admin/sessions/{}",
            nodes[2].admin,
            session.as_deref().unwrap()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(stop.status(), 202);
    crate::common::eventually(
        std::time::Duration::from_secs(5),
        "the stopped session answers 404",
        async || {
            let reply = on(&nodes[1], &session)
                .call(8, "counter", add.clone())
                .await;
            reply.status == 404 && reply.body.contains("stopped by an operator")
        },
    )
    .await;

    // The internal listener serves other nodes only: without a hop header, or with
    // one nobody of this cluster sealed, even a live session is refused.
    let mut live = Raw::new(nodes[0].lodge.url());
    live.initialize().await;
    let direct = Raw {
        session: live.session.clone(),
        ..Raw::new(nodes[0].internal.clone())
    };
    let refused = direct.call(9, "echo", json!({"text": "x"})).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(
        refused.body.contains("serves other Lodge nodes only"),
        "{}",
        refused.body
    );
    let forged_hop = direct
        .post_builder(&json!({"jsonrpc": "2.0", "id": 9, "method": "tools/list"}))
        .header("lodge-hop", "b 1 k1.AAAA")
        .send()
        .await
        .unwrap();
    assert_eq!(forged_hop.status(), 403);
    assert_eq!(
        on(&nodes[1], &live.session)
            .call(9, "echo", json!({"text": "x"}))
            .await
            .status,
        200
    );
    // A forged id is 404 on every node without asking its "owner".
    let forged = Some("k1.not-a-token".to_string());
    assert_eq!(
        on(&nodes[1], &forged)
            .call(9, "echo", json!({"text": "x"}))
            .await
            .status,
        404
    );

    // The owner dies: its sessions answer 404 through the others within 5 s.
    let mut second = Raw::new(nodes[0].lodge.url());
    second.initialize().await;
    let orphan = second.session.clone();
    let mut nodes = nodes;
    drop(nodes.remove(0));
    let died = std::time::Instant::now();
    let reply = on(&nodes[0], &orphan)
        .call(10, "echo", json!({"text": "x"}))
        .await;
    assert_eq!(reply.status, 404, "{}", reply.body);
    assert!(
        reply.body.contains("is gone; initialize again"),
        "{}",
        reply.body
    );
    assert!(died.elapsed() < std::time::Duration::from_secs(5));

    // Redis stops: live sessions keep working, readiness says degraded.
    let mut third = Raw::new(nodes[0].lodge.url());
    third.initialize().await;
    let live = third.session.clone();
    drop(redis);
    let reply = on(&nodes[1], &live).call(11, "counter", add.clone()).await;
    assert_eq!(counter_text(&reply), "1");
    crate::common::eventually(
        std::time::Duration::from_secs(5),
        "readyz says degraded",
        async || {
            let r = http
                .get(format!("{}/readyz", nodes[1].admin))
                .send()
                .await
                .unwrap();
            r.status() == 200 && r.text().await.unwrap().contains("\"degraded\"")
        },
    )
    .await;

    // Drain b: readyz 503, its live session still served through c.
    let drained = http
        .post(format!("{}/admin/drain", nodes[0].admin))
        .body(r#"{"deadline": "1m"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(drained.status(), 202);
    let ready = http
        .get(format!("{}/readyz", nodes[0].admin))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let reply = on(&nodes[1], &live).call(12, "counter", add.clone()).await;
    assert_eq!(counter_text(&reply), "2");
}
