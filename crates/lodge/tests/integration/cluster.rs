//! Cluster mode as far as it is built: session ids are tokens sealed with the
//! `[cluster] key_file` that `lodge cluster keygen` writes.
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
        "[cluster]\nnode_id = \"node-a\"\nkey_file = {:?}\n{}",
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
