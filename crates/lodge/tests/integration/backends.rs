//! Each `[[server]]` runs in the sandbox backend it names, and `--backend` overrides
//! them all. Where a session runs shows in the demo server's `session_info`: under
//! `process` its working directory is its scratch directory on the host, under
//! `namespaces` it is `/session`.
//!
//! Skipped (with a message) on hosts that cannot run the namespaces sandbox, except
//! under CI=true.
#![allow(clippy::unwrap_used)]

use crate::common::{LODGE, Lodge, Raw, namespaces_supported};
use serde_json::{Value, json};

/// Two demo servers: `plain` on `process`, `boxed` on `namespaces`.
fn mixed() -> String {
    let server = |name: &str, backend: &str| {
        format!(
            "[[server]]\nname = {name:?}\ncommand = [{LODGE:?}, \"demo-server\"]\n[server.sandbox]\nbackend = {backend:?}\n"
        )
    };
    format!(
        "{}{}",
        server("plain", "process"),
        server("boxed", "namespaces")
    )
}

/// The working directory of a new session of `server`.
async fn session_cwd(lodge: &Lodge, server: &str) -> String {
    let mut raw = Raw::new(format!("{}/mcp/{server}", lodge.base));
    raw.initialize().await;
    let info: Value =
        serde_json::from_str(&raw.call_text(1, "session_info", json!({})).await).unwrap();
    info["cwd"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn each_server_runs_in_the_backend_it_names() {
    if !namespaces_supported() {
        return;
    }
    let lodge = Lodge::start_with_own_backends(&mixed());
    let scratch = lodge.scratch_root();
    let plain = session_cwd(&lodge, "plain").await;
    assert!(
        std::path::Path::new(&plain).starts_with(&scratch),
        "plain runs on the host, in its scratch directory: {plain}"
    );
    assert_eq!(session_cwd(&lodge, "boxed").await, "/session");
    let said = |line: &str| lodge.banner.iter().any(|l| l.ends_with(line));
    assert!(
        said("sandbox backend: process") && said("sandbox backend: namespaces"),
        "the banner names each server's backend: {:#?}",
        lodge.banner
    );
    assert!(
        lodge
            .banner
            .iter()
            .any(|l| l.starts_with("  /mcp, /mcp/plain -> plain (") && l.ends_with(": process")),
        "{:#?}",
        lodge.banner
    );
}

#[tokio::test]
async fn the_backend_flag_overrides_every_server() {
    if !namespaces_supported() {
        return;
    }
    let lodge = Lodge::start_under(&[], &mixed(), &["--backend", "process"]);
    let scratch = lodge.scratch_root();
    for server in ["plain", "boxed"] {
        let cwd = session_cwd(&lodge, server).await;
        assert!(
            std::path::Path::new(&cwd).starts_with(&scratch),
            "{server} runs on the host under --backend process: {cwd}"
        );
    }
}
