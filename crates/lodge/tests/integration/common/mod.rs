//! What the integration tests share beyond `lodge-testkit`: the `lodge` binary this test
//! crate was built with (only it knows `CARGO_BIN_EXE_lodge`), and the third-party tools,
//! fixtures and sandbox checks some tests need.
#![allow(dead_code, clippy::unwrap_used)]

pub use lodge_testkit::eventually;
pub use lodge_testkit::http::install_tls_provider;
pub use lodge_testkit::raw::{Raw, Reply};
pub use lodge_testkit::sse::{SseEvent, read_events_until};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

pub mod idp;

pub const LODGE: &str = env!("CARGO_BIN_EXE_lodge");

/// A running `lodge serve` of this build, killed on drop.
pub struct Lodge(lodge_testkit::server::Lodge);

impl std::ops::Deref for Lodge {
    type Target = lodge_testkit::server::Lodge;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Lodge {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
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
        let launch = lodge_testkit::server::Launch::new(LODGE, config).unwrap();
        Self::launch(launch.args(args).wrapper(wrapper))
    }

    /// Starts Lodge with `config` and without `LODGE_BACKEND`, so that each server's
    /// own `[server.sandbox] backend` applies.
    pub fn start_with_own_backends(config: &str) -> Lodge {
        let launch = lodge_testkit::server::Launch::new(LODGE, config).unwrap();
        Self::launch(launch.own_backends())
    }

    fn launch(launch: lodge_testkit::server::Launch) -> Lodge {
        install_tls_provider();
        Lodge(launch.start().unwrap_or_else(|e| panic!("{e:#}")))
    }

    /// Starts Lodge with `config` and an admin listener on a free loopback port;
    /// returns the admin base URL once it answers.
    pub async fn with_admin(config: &str) -> (Lodge, String) {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let admin = format!("127.0.0.1:{port}");
        let lodge = Self::start_under(&[], config, &["--admin-listen", &admin]);
        let admin = format!("http://{admin}");
        let http = reqwest::Client::new();
        eventually(
            Duration::from_secs(10),
            "the admin listener answers",
            async || http.get(format!("{admin}/healthz")).send().await.is_ok(),
        )
        .await;
        (lodge, admin)
    }

    pub fn demo(session_toml: &str) -> Lodge {
        Self::start(&format!(
            "{}\n[session]\n{session_toml}\n",
            demo_server_toml()
        ))
    }

    /// Sends SIGTERM and waits for Lodge to exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        self.0
            .terminate(Duration::from_secs(20))
            .expect("lodge did not exit after SIGTERM")
    }
}

/// A process's resident memory, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS for pid {pid}"))
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

/// Every event of a whole SSE body; panics on one that is not SSE.
pub fn parse_sse(text: &str) -> Vec<SseEvent> {
    lodge_testkit::sse::parse(text).unwrap_or_else(|e| panic!("not SSE ({e}): {text}"))
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

/// `[[server]]` entry named `name` hosting the PyPI `mcp` SDK fixture
/// (tests/fixtures/python/server.py).
pub fn python_sdk_server_toml(name: &str) -> String {
    let server = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/python/server.py"
    );
    format!(
        "[[server]]\nname = {name:?}\ncommand = [{:?}, {server:?}]\n",
        python()
    )
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
    let launch = lodge_testkit::server::Launch::in_dir(LODGE, dir, config);
    Some(Lodge::launch(launch.args(["--backend", "namespaces"])))
}

/// The pinned npm packages: `scripts/setup-node-packages.sh` (run once per test process)
/// installs them; the returned lookup gives a `KEY=` line of its output (`NODE`,
/// `EVERYTHING`, `FILESYSTEM`, `MEMORY`, `SDK`), and panics naming a key it did not print.
pub fn node_package_paths() -> impl Fn(&str) -> String {
    static OUT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let out = OUT.get_or_init(|| run_setup_script("setup-node-packages.sh", &[]));
    move |key: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("setup-node-packages.sh printed no {key}=: {out}"))
            .to_string()
    }
}

/// `@modelcontextprotocol/server-everything` from npm: (node binary, its dist/index.js).
pub fn node_everything() -> &'static (String, String) {
    static PATHS: std::sync::OnceLock<(String, String)> = std::sync::OnceLock::new();
    PATHS.get_or_init(|| {
        let get = node_package_paths();
        (get("NODE"), get("EVERYTHING"))
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
