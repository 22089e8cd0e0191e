//! The admin API against a real Lodge with live sessions of both eras: what each
//! session reports, the list's filters, one session's stderr and protocol events,
//! and an operator stopping a session.

#![allow(clippy::unwrap_used)]

use crate::common::{LODGE, Lodge, Raw, demo_server_toml, process_alive, read_events_until};
use serde_json::{Value, json};
use std::time::{Duration, SystemTime};

/// The demo server, saying something on stderr first.
fn chatty_demo_toml() -> String {
    let bin_dir = std::path::Path::new(LODGE).parent().unwrap().display();
    format!(
        "[[server]]\nname = \"chatty\"\ncommand = [\"sh\", \"-c\", \"echo 'chatty: warming up' >&2; exec {LODGE} demo-server\"]\n\
         [server.sandbox]\nbinds = [\"{bin_dir}:ro\"]\n"
    )
}

async fn get(url: &str) -> (u16, Value) {
    let reply = Raw::send(reqwest::Client::new().get(url)).await;
    let body =
        serde_json::from_str(&reply.body).unwrap_or_else(|e| panic!("{url}: {e}: {}", reply.body));
    (reply.status, body)
}

async fn listed(admin: &str, query: &str) -> Vec<Value> {
    let (status, body) = get(&format!("{admin}/admin/sessions{query}")).await;
    assert_eq!(status, 200, "{query}: {body}");
    body["sessions"].as_array().unwrap().clone()
}

fn ids(sessions: &[Value]) -> Vec<&str> {
    sessions.iter().map(|s| s["id"].as_str().unwrap()).collect()
}

fn time(value: &Value) -> SystemTime {
    humantime::parse_rfc3339(value.as_str().unwrap()).unwrap()
}

#[tokio::test]
async fn the_session_list_says_what_each_session_does_and_filters_it() {
    let config = format!("{}{}", chatty_demo_toml(), demo_server_toml());
    let (lodge, admin) = Lodge::with_admin(&config).await;
    let base = lodge.base.clone();

    // A legacy session whose server waits on its user (plan_trip's elicitation)...
    let mut asking = Raw::new(format!("{base}/mcp/chatty"));
    asking.initialize().await;
    let trip = asking.post_builder(
        &json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"plan_trip"}}),
    );
    let trip = trip.send().await.unwrap();
    let _asked = read_events_until(trip, |e| e.data.contains("elicitation/create")).await;
    // ... an idle one of another server, and a 2026-07-28 runtime session.
    let mut idle = Raw::new(format!("{base}/mcp/demo"));
    idle.initialize().await;
    let modern = Raw::new(format!("{base}/mcp/demo"));
    let reply = modern
        .modern_call(1, "counter", json!({"action": "increment"}))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);

    let all = listed(&admin, "").await;
    assert_eq!(all.len(), 3, "{all:#?}");
    let asking_id = asking.session.clone().unwrap();
    let idle_id = idle.session.clone().unwrap();
    let find = |id: &str| all.iter().find(|s| s["id"] == id).unwrap().clone();
    let waiting = find(&asking_id);
    let (created, active) = (
        time(&waiting["created_at"]),
        time(&waiting["last_activity_at"]),
    );
    assert!(created <= active, "{waiting}");
    assert!(time(&waiting["lifetime_deadline"]) > active, "{waiting}");
    assert_eq!(
        (
            &waiting["server"],
            &waiting["era"],
            &waiting["state"],
            &waiting["waiting_on"],
            &waiting["in_flight"],
            &waiting["idle_deadline"],
            &waiting["principal"],
        ),
        (
            &json!("chatty"),
            &json!("legacy"),
            &json!("waiting"),
            &json!("user"),
            &json!(1),
            &Value::Null,
            &Value::Null
        ),
        "{waiting:#}"
    );
    let pid = u32::try_from(waiting["pid"].as_u64().unwrap()).unwrap();
    assert!(process_alive(pid));
    // The shell exec'd the demo server: its resident memory is megabytes.
    assert!(
        waiting["memory_bytes"].as_u64().unwrap() > 1 << 20,
        "{waiting}"
    );
    assert!(waiting["cpu_seconds"].as_f64().unwrap() >= 0.0, "{waiting}");

    let resting = find(&idle_id);
    assert_eq!(
        (
            &resting["state"],
            &resting["waiting_on"],
            &resting["in_flight"]
        ),
        (&json!("idle"), &Value::Null, &json!(0))
    );
    assert!(
        time(&resting["idle_deadline"]) > SystemTime::now(),
        "{resting}"
    );

    // Filters, alone and together.
    let modern_id = ids(&listed(&admin, "?era=modern").await)[0].to_string();
    assert!(![&asking_id, &idle_id].contains(&&modern_id));
    assert_eq!(ids(&listed(&admin, "?state=waiting").await), [&asking_id]);
    assert_eq!(ids(&listed(&admin, "?server=chatty").await), [&asking_id]);
    assert_eq!(
        ids(&listed(&admin, "?server=demo&era=legacy").await),
        [&idle_id]
    );
    assert!(listed(&admin, "?principal=nobody").await.is_empty());
    for (query, says) in [
        ("?state=sleeping", "state must be one of"),
        ("?era=future", "era must be legacy or modern"),
        ("?colour=red", "unknown field"),
    ] {
        let (status, body) = get(&format!("{admin}/admin/sessions{query}")).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains(says),
            "{query}: {body}"
        );
    }

    // One session: its server's stderr and what crossed it, without payloads.
    let (status, detail) = get(&format!("{admin}/admin/sessions/{asking_id}")).await;
    assert_eq!(status, 200, "{detail}");
    assert_eq!(detail["stderr"], json!(["chatty: warming up"]));
    let events = detail["events"].as_array().unwrap();
    let seen: Vec<(&str, &str, &str)> = events
        .iter()
        .map(|e| {
            (
                e["direction"].as_str().unwrap(),
                e["kind"].as_str().unwrap(),
                e["method"].as_str().unwrap_or("-"),
            )
        })
        .collect();
    for expected in [
        ("from_client", "request", "initialize"),
        ("from_server", "response", "initialize"),
        ("from_client", "notification", "notifications/initialized"),
        ("from_client", "request", "tools/call"),
        ("from_server", "request", "elicitation/create"),
    ] {
        assert!(seen.contains(&expected), "{expected:?} not in {seen:?}");
    }
    let answered = events
        .iter()
        .find(|e| e["kind"] == "response" && e["method"] == "initialize")
        .unwrap();
    assert_eq!(answered["status"], "ok");
    assert!(
        !detail.to_string().contains("protocolVersion"),
        "no payloads"
    );
    assert!(
        events
            .iter()
            .all(|e| e.get("payload").is_none() && e.get("payload_truncated").is_none()),
        "{events:?}"
    );

    let (status, body) = get(&format!("{admin}/admin/sessions/no-such-session")).await;
    assert_eq!(status, 404, "{body}");
}

#[tokio::test]
async fn an_operator_stops_a_session_its_sandbox_ends_and_its_client_learns_why() {
    // With `[admin] event_payloads`, its events show what crossed it, too.
    let config = format!("{}\n[admin]\nevent_payloads = true\n", demo_server_toml());
    let (lodge, admin) = Lodge::with_admin(&config).await;
    let mut client = Raw::new(lodge.url());
    client.initialize().await;
    let id = client.session.clone().unwrap();
    let (_, detail) = get(&format!("{admin}/admin/sessions/{id}")).await;
    let pid = u32::try_from(detail["pid"].as_u64().unwrap()).unwrap();
    let events = detail["events"].as_array().unwrap();
    let initialized = events
        .iter()
        .find(|e| e["kind"] == "response" && e["method"] == "initialize")
        .unwrap_or_else(|| panic!("{events:?}"));
    let payload: Value = serde_json::from_str(initialized["payload"].as_str().unwrap()).unwrap();
    assert!(
        payload["result"]["protocolVersion"].is_string(),
        "{payload}"
    );
    assert_eq!(initialized["payload_truncated"], false);
    assert!(
        events.iter().all(|e| e["payload"].is_string()),
        "{events:?}"
    );

    let http = reqwest::Client::new();
    let url = format!("{admin}/admin/sessions/{id}");
    let stopped = Raw::send(http.delete(&url)).await;
    assert_eq!(stopped.status, 204, "{}", stopped.body);
    crate::common::eventually(
        Duration::from_secs(10),
        "the stopped session's server to exit",
        async || !process_alive(pid),
    )
    .await;
    let reply = client
        .post(json!({"jsonrpc":"2.0","id":2,"method":"tools/list"}))
        .await;
    assert_eq!(reply.status, 404, "{}", reply.body);
    assert!(
        reply.body.contains("stopped by an operator"),
        "{}",
        reply.body
    );
    assert!(listed(&admin, "").await.is_empty());
    let again = Raw::send(http.delete(&url)).await;
    assert_eq!(again.status, 404);
    assert!(
        again.body.contains("stopped by an operator"),
        "{}",
        again.body
    );
}

#[tokio::test]
async fn the_admin_api_describes_itself_in_openapi() {
    let (_lodge, admin) = Lodge::with_admin(&demo_server_toml()).await;
    let (status, doc) = get(&format!("{admin}/admin/openapi.json")).await;
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let session = &doc["components"]["schemas"]["Session"]["properties"];
    for field in [
        "id",
        "server",
        "era",
        "principal",
        "state",
        "created_at",
        "last_activity_at",
        "in_flight",
        "waiting_on",
        "idle_deadline",
        "lifetime_deadline",
        "pid",
        "memory_bytes",
        "cpu_seconds",
    ] {
        assert!(session[field].is_object(), "{field} undocumented");
    }
    assert!(doc["paths"]["/admin/sessions/{id}"]["delete"].is_object());
    assert!(doc["paths"]["/metrics"]["get"].is_object());
}

/// Runs `lodge sessions ARGS` against `admin`; its exit code, stdout and stderr.
async fn lodge_sessions(admin: &str, args: &[&str]) -> (i32, String, String) {
    let output = tokio::process::Command::new(LODGE)
        .arg("sessions")
        .args(args)
        .args(["--admin", admin])
        .env_remove("LODGE_ADMIN_TOKEN")
        .env_remove("LODGE_ADMIN_URL")
        .output()
        .await
        .unwrap();
    (
        output.status.code().unwrap(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn lodge_sessions_lists_shows_and_stops_a_live_session() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("admin.token");
    std::fs::write(&token_file, "s3cret-admin-token-0123456789\n").unwrap();
    let config = format!(
        "[admin]\ntoken_file = {token_file:?}\n{}",
        demo_server_toml()
    );
    let (lodge, admin) = Lodge::with_admin(&config).await;
    let mut client = Raw::new(lodge.url());
    client.initialize().await;
    let id = client.session.clone().unwrap();
    let token = token_file.to_str().unwrap();

    let (code, _, err) = lodge_sessions(&admin, &["list"]).await;
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("--token-file"),
        "says how to give a token: {err}"
    );

    let (code, out, err) = lodge_sessions(&admin, &["list", "--token-file", token]).await;
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("ID ") && lines[0].contains("STATE"),
        "{out}"
    );
    assert!(
        lines[1].starts_with(&id) && lines[1].contains(" idle "),
        "{out}"
    );

    let secret = "s3cret-admin-token-0123456789";
    let (code, out, err) = lodge_sessions(
        &admin,
        &["list", "--era", "modern", "--json", "--token", secret],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let listed: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(listed, json!({"sessions": []}));

    let (code, out, err) = lodge_sessions(&admin, &["show", &id, "--token", secret]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("state:            idle"), "{out}");
    let answered = ["from", "server", "response", "initialize", "ok"];
    assert!(
        out.lines()
            .any(|l| l.split_whitespace().skip(1).eq(answered)),
        "{out}"
    );

    let (code, out, err) = lodge_sessions(&admin, &["stop", &id, "--token", secret]).await;
    assert_eq!(
        (code, out.trim()),
        (0, format!("stopped session {id}").as_str()),
        "{err}"
    );
    let reply = client
        .post(json!({"jsonrpc":"2.0","id":2,"method":"tools/list"}))
        .await;
    assert_eq!(reply.status, 404, "{}", reply.body);

    let (code, _, err) = lodge_sessions(&admin, &["stop", &id, "--token", secret]).await;
    assert_eq!(code, 1);
    assert!(err.contains("stopped by an operator"), "{err}");
    let (code, _, err) =
        lodge_sessions(&admin, &["list", "--state", "asleep", "--token", secret]).await;
    assert_eq!(code, 1);
    assert!(err.contains("state must be one of"), "{err}");
}

#[tokio::test]
async fn a_sessions_stderr_also_goes_to_a_file_of_its_own() {
    let config = format!("{}[session]\nstderr_dir = \"stderr\"\n", chatty_demo_toml());
    let (lodge, _admin) = Lodge::with_admin(&config).await;
    let mut client = Raw::new(lodge.url());
    client.initialize().await;
    let dir = lodge.config_dir().join("stderr");
    crate::common::eventually(
        Duration::from_secs(10),
        "the session's stderr file to hold its first line",
        async || {
            let files: Vec<_> = std::fs::read_dir(&dir)
                .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
                .unwrap_or_default();
            files.len() == 1
                && files[0]
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("chatty-")
                && std::fs::read_to_string(&files[0]).unwrap() == "chatty: warming up\n"
        },
    )
    .await;
}
