//! Test harness: a real `lodge serve` process on a free port, and a small raw
//! Streamable HTTP client for checks that need exact control of the wire.
#![allow(dead_code, clippy::unwrap_used)]

use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::time::Instant;
use tokio_stream::StreamExt;

pub const LODGE: &str = env!("CARGO_BIN_EXE_lodge");

/// reqwest is built without a default TLS crypto provider (the `lodge` binary picks
/// one); test clients need it installed once per process too.
pub fn install_tls_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// A running `lodge serve`, killed on drop.
pub struct Lodge {
    child: Child,
    pub base: String,
    pub dir: tempfile::TempDir,
    /// What `lodge serve` printed at startup, up to its `sessions:` line.
    pub banner: Vec<String>,
}

/// `[[server]]` entry hosting the bundled demo server.
pub fn demo_server_toml() -> String {
    format!("[[server]]\nname = \"demo\"\ncommand = [{LODGE:?}, \"demo-server\"]\n")
}

impl Lodge {
    /// Starts Lodge with `config` (TOML; a scratch root in a temp dir is added).
    pub fn start(config: &str) -> Lodge {
        Self::start_under(&[], config, &[])
    }

    /// Starts Lodge with `config` and extra `args`, its command prefixed by `wrapper`
    /// (e.g. `prlimit --nofile=…`).
    pub fn start_under(wrapper: &[&str], config: &str, args: &[&str]) -> Lodge {
        let dir = tempfile::tempdir().unwrap();
        let scratch = dir.path().join("scratch");
        let config = if config.contains("[session]") {
            config.replacen(
                "[session]",
                &format!("[session]\nscratch_root = {scratch:?}"),
                1,
            )
        } else {
            format!("{config}\n[session]\nscratch_root = {scratch:?}\n")
        };
        Self::launch(dir, &config, args, wrapper)
    }

    /// Starts Lodge with `config` and without `LODGE_BACKEND`, so that each server's
    /// own `[server.sandbox] backend` applies.
    pub fn start_with_own_backends(config: &str) -> Lodge {
        let dir = tempfile::tempdir().unwrap();
        let scratch = dir.path().join("scratch");
        let config = format!("{config}\n[session]\nscratch_root = {scratch:?}\n");
        Self::launch_with(dir, &config, &[], &[], true)
    }

    /// Writes `config` into `dir` and starts `lodge serve` on it, on a free port.
    fn launch(dir: tempfile::TempDir, config: &str, args: &[&str], wrapper: &[&str]) -> Lodge {
        Self::launch_with(dir, config, args, wrapper, args.contains(&"--backend"))
    }

    /// [`Lodge::launch`]; `clear_backend_env` removes `LODGE_BACKEND`, which would
    /// override `--backend` and every server's own backend.
    fn launch_with(
        dir: tempfile::TempDir,
        config: &str,
        args: &[&str],
        wrapper: &[&str],
        clear_backend_env: bool,
    ) -> Lodge {
        install_tls_provider();
        let path = dir.path().join("lodge.toml");
        std::fs::write(&path, config).unwrap();
        let mut command = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut command = Command::new(program);
                command.args(rest).arg(LODGE);
                command
            }
            None => Command::new(LODGE),
        };
        command
            .args(["serve", "--config"])
            .arg(&path)
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env("LODGE_LOG", "info,lodge_runtime=debug")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if clear_backend_env {
            command.env_remove("LODGE_BACKEND");
        }
        let mut child = command.spawn().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().expect("lodge printed nothing").unwrap();
        let base = first
            .split("listening on ")
            .nth(1)
            .unwrap_or_else(|| panic!("unexpected banner: {first}"))
            .to_string();
        let mut banner = vec![first];
        for line in lines.by_ref().map_while(Result::ok) {
            let last = line.starts_with("  sessions:");
            banner.push(line);
            if last {
                break;
            }
        }
        // Drain the rest of stdout in the background so Lodge never blocks on it.
        std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});
        Lodge {
            child,
            base,
            dir,
            banner,
        }
    }

    pub fn demo(session_toml: &str) -> Lodge {
        Self::start(&format!(
            "{}\n[session]\n{session_toml}\n",
            demo_server_toml()
        ))
    }

    pub fn url(&self) -> String {
        format!("{}/mcp", self.base)
    }

    pub fn scratch_root(&self) -> PathBuf {
        self.dir.path().join("scratch")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits for Lodge to exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "lodge did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Lodge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn process_alive(pid: u32) -> bool {
    // /proc/PID exists for zombies too; a zombie's state is Z.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

/// Polls `check` until it returns true or `timeout` passes.
pub async fn eventually(timeout: Duration, what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// One SSE event as the raw client saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    pub id: Option<String>,
    pub data: String,
}

impl SseEvent {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap()
    }
}

/// A raw Streamable HTTP client for one session.
pub struct Raw {
    pub http: reqwest::Client,
    pub url: String,
    pub session: Option<String>,
}

pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
    pub fn events(&self) -> Vec<SseEvent> {
        parse_sse(&self.body)
    }
}

pub fn parse_sse(text: &str) -> Vec<SseEvent> {
    text.split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| {
            let mut ev = SseEvent {
                id: None,
                data: String::new(),
            };
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    ev.id = Some(v.trim().to_string());
                } else if let Some(v) = line.strip_prefix("data:") {
                    ev.data.push_str(v.trim_start());
                }
            }
            ev
        })
        .collect()
}

impl Raw {
    pub fn new(url: String) -> Raw {
        install_tls_provider();
        Raw {
            http: reqwest::Client::new(),
            url,
            session: None,
        }
    }

    pub fn post_builder(&self, body: &Value) -> reqwest::RequestBuilder {
        let mut req = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(body.to_string());
        if let Some(s) = &self.session {
            req = req
                .header("mcp-session-id", s)
                .header("mcp-protocol-version", "2025-11-25");
        }
        req
    }

    pub async fn send(req: reqwest::RequestBuilder) -> Reply {
        let resp = req.send().await.unwrap();
        Reply {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            body: resp.text().await.unwrap(),
        }
    }

    pub async fn post(&self, body: Value) -> Reply {
        Self::send(self.post_builder(&body)).await
    }

    /// initialize + notifications/initialized; remembers the session id.
    pub async fn initialize(&mut self) -> Value {
        let reply = self
            .post(
                json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
                "protocolVersion":"2025-11-25","capabilities":{"elicitation":{},"sampling":{}},
                "clientInfo":{"name":"raw-test","version":"1"}}}),
            )
            .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        let id = reply.headers["mcp-session-id"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            id.len() >= 32 && id.bytes().all(|b| (0x21..=0x7e).contains(&b)),
            "session id {id:?}"
        );
        self.session = Some(id);
        let result = reply.events().last().unwrap().json();
        let ack = self
            .post(json!({"jsonrpc":"2.0","method":"notifications/initialized"}))
            .await;
        assert_eq!(ack.status, 202);
        result
    }

    pub async fn call(&self, id: u64, tool: &str, args: Value) -> Reply {
        self.post(json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":tool,"arguments":args}}))
            .await
    }

    /// The text of a tools/call result carried by the last event of an SSE reply.
    pub async fn call_text(&self, id: u64, tool: &str, args: Value) -> String {
        let reply = self.call(id, tool, args).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        let result = reply.events().last().unwrap().json();
        result["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or_else(|| panic!("no text: {result}"))
            .to_string()
    }

    /// Waits until the demo's `slow` tool has started in this session (it writes
    /// slow.log first), asking with request id `id`.
    pub async fn wait_for_slow_to_start(&self, id: u64) {
        eventually(Duration::from_secs(10), "slow to start", async || {
            let reply = self
                .call(id, "notes", json!({"action":"read","name":"slow.log"}))
                .await;
            reply
                .events()
                .last()
                .is_some_and(|e| e.json()["result"]["isError"] == false)
        })
        .await;
    }

    pub fn get_builder(&self, last_event_id: Option<&str>) -> reqwest::RequestBuilder {
        let mut req = self
            .http
            .get(&self.url)
            .header("accept", "text/event-stream");
        if let Some(s) = &self.session {
            req = req.header("mcp-session-id", s);
        }
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id);
        }
        req
    }
}

/// Reads SSE events from a streaming response until `stop` says enough, then drops
/// the connection (which is what a client losing its network does).
pub async fn read_events_until(
    resp: reqwest::Response,
    mut stop: impl FnMut(&SseEvent) -> bool,
) -> Vec<SseEvent> {
    let mut stream = resp.bytes_stream();
    let mut buf = String::new();
    let mut events = Vec::new();
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(30), stream.next())
        .await
        .expect("stream stalled")
    {
        buf.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            for ev in parse_sse(&block) {
                let done = stop(&ev);
                events.push(ev);
                if done {
                    return events;
                }
            }
        }
    }
    events
}

pub fn read_file(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The Python with the pinned MCP SDK: `LODGE_TEST_PYTHON`, or set up on demand.
pub fn python() -> String {
    if let Ok(p) = std::env::var("LODGE_TEST_PYTHON") {
        return p;
    }
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let out = std::process::Command::new(format!("{root}/scripts/setup-python.sh"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "setup-python.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .trim()
        .to_string()
}

// ---------------------------------------------------------------------------------------
// Helpers for the third-party client and conformance tests (clients.rs, conformance_*.rs).

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs a setup script once per test process and returns its stdout.
fn run_setup_script(script: &str, args: &[&str]) -> String {
    let out = Command::new(repo_root().join("scripts").join(script))
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("running scripts/{script}: {e}"));
    assert!(out.status.success(), "scripts/{script} failed");
    String::from_utf8(out.stdout).unwrap()
}

/// Node 22 and the pinned npm tools: `LODGE_TEST_NODE` / `LODGE_TEST_INSPECTOR` when set,
/// else whatever `scripts/setup-node.sh` installs (once per test process).
pub struct NodeTools {
    pub node: String,
    pub inspector: String,
}

pub fn node_tools() -> &'static NodeTools {
    static TOOLS: std::sync::OnceLock<NodeTools> = std::sync::OnceLock::new();
    TOOLS.get_or_init(|| {
        if let (Ok(node), Ok(inspector)) = (
            std::env::var("LODGE_TEST_NODE"),
            std::env::var("LODGE_TEST_INSPECTOR"),
        ) {
            return NodeTools { node, inspector };
        }
        let out = run_setup_script("setup-node.sh", &[]);
        let get = |key: &str| {
            out.lines()
                .find_map(|l| l.strip_prefix(key))
                .unwrap_or_else(|| panic!("setup-node.sh printed no {key}: {out}"))
                .to_string()
        };
        NodeTools {
            node: get("NODE="),
            inspector: get("INSPECTOR="),
        }
    })
}

/// The Python of the fixture venv: `LODGE_TEST_PYTHON`, else `scripts/setup-python.sh`.
pub fn venv_python() -> &'static str {
    static PYTHON: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PYTHON.get_or_init(|| {
        std::env::var("LODGE_TEST_PYTHON").unwrap_or_else(|_| {
            run_setup_script("setup-python.sh", &[])
                .lines()
                .last()
                .unwrap()
                .trim()
                .to_string()
        })
    })
}

/// `[[server]]` entry hosting the conformance server (stdio).
pub fn conformance_server_toml() -> String {
    format!(
        "[[server]]\nname = \"conformance\"\ncommand = [{:?}]\n",
        conformance_server()
    )
}

/// The conformance server binary (built on first use: it is not a dependency of `lodge`).
pub fn conformance_server() -> String {
    static BUILT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let status = Command::new(env!("CARGO"))
                .args(["build", "--quiet", "-p", "conformance-server"])
                .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
                .status()
                .unwrap();
            assert!(status.success(), "cargo build -p conformance-server failed");
            let dir = Path::new(LODGE).parent().unwrap();
            dir.join("conformance-server").display().to_string()
        })
        .clone()
}

// ---------------------------------------------------------------------------------------
// Helpers for the sandbox containment tests (containment*.rs).

/// Whether this host runs the `namespaces` sandbox (`lodge doctor` says so). Under
/// `CI=true` it must: a host that cannot is a failure there, not a skip.
pub fn namespaces_supported() -> bool {
    static SUPPORTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SUPPORTED.get_or_init(|| {
        let out = Command::new(LODGE).arg("doctor").output().unwrap();
        let report = String::from_utf8_lossy(&out.stdout).into_owned();
        let ok = report.contains("lodge serve will use: namespaces");
        if !ok {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must run the namespaces sandbox:\n{report}"
            );
            eprintln!("skipping: this host cannot run the namespaces sandbox:\n{report}");
        }
        ok
    })
}

/// Starts Lodge on the `namespaces` backend whatever `LODGE_BACKEND` says, with its
/// config (plus a scratch root) written into `dir`, so a test can put files beside it.
/// `None` where the host cannot run the backend (see [`namespaces_supported`]).
pub fn start_namespaces_in(dir: tempfile::TempDir, config: &str) -> Option<Lodge> {
    if !namespaces_supported() {
        return None;
    }
    let scratch = dir.path().join("scratch");
    let config = format!("{config}\n[session]\nscratch_root = {scratch:?}\n");
    Some(Lodge::launch(
        dir,
        &config,
        &["--backend", "namespaces"],
        &[],
    ))
}

/// `@modelcontextprotocol/server-everything` from npm: (node binary, its dist/index.js),
/// installed on first use by `scripts/setup-node-everything.sh`.
pub fn node_everything() -> &'static (String, String) {
    static PATHS: std::sync::OnceLock<(String, String)> = std::sync::OnceLock::new();
    PATHS.get_or_init(|| {
        let out = run_setup_script("setup-node-everything.sh", &[]);
        let get = |key: &str| {
            out.lines()
                .find_map(|l| l.strip_prefix(key))
                .unwrap_or_else(|| panic!("setup-node-everything.sh printed no {key}: {out}"))
                .to_string()
        };
        (get("NODE="), get("EVERYTHING="))
    })
}

/// The names in a directory, sorted (empty if it does not exist).
pub fn dirs(path: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(path)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The one scratch directory under `root` that is not in `before` (names from [`dirs`]):
/// the sandbox a session just started in. Sandboxes are named by their own ids, not by
/// session ids, so a test finds a session's directory by when it appeared.
pub fn new_scratch_dir(root: &Path, before: &[String]) -> PathBuf {
    let new: Vec<String> = dirs(root)
        .into_iter()
        .filter(|d| !before.contains(d))
        .collect();
    assert_eq!(new.len(), 1, "exactly one new scratch directory: {new:?}");
    root.join(&new[0])
}

/// The one scratch directory under `root` that holds `file` (written by its server).
pub fn scratch_holding(root: &Path, file: &str) -> PathBuf {
    let found: Vec<PathBuf> = dirs(root)
        .into_iter()
        .map(|d| root.join(d))
        .filter(|d| d.join(file).exists())
        .collect();
    assert_eq!(
        found.len(),
        1,
        "exactly one scratch directory holds {file}: {found:?}"
    );
    found[0].clone()
}
