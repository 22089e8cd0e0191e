//! Registry servers nobody on this project wrote, hosted in the `namespaces` sandbox and
//! driven by real clients in both eras, with exact values of real tool results.
//!
//! Servers (pinned; installed by scripts/setup-python.sh and scripts/setup-node-packages.sh):
//! a PyPI `mcp` SDK server (tests/fixtures/python/server.py) and a FastMCP 4 server
//! (tests/fixtures/python/fastmcp_server.py), both with a tool that reports progress,
//! elicits and samples, and per-session state; `mcp-server-time`; `mcp-server-git`;
//! npm `server-filesystem`, `server-memory`, and `server-everything` over stdio and over
//! Streamable HTTP inside the sandbox. Clients: see [`clients`]. Every server is run from
//! the Python SDK client and rmcp in both eras; the two servers that elicit and sample from
//! every client, `lodge connect` one-shot with `--protocol auto` and `modern` included.
//!
//! The servers' `protocol` is the default, `auto`. One Lodge per test (per server), its
//! clients run side by side. Skipped where the host cannot run the namespaces sandbox,
//! except under CI=true (see `namespaces_supported`); a missing package is a failure.
#![allow(clippy::unwrap_used)]

mod clients;

use crate::common::{Lodge, repo_root, start_namespaces_in, venv_python};
use clients::{ALL, Answers, Called, Client, EVERY_SERVER, Outcome};
use serde_json::{Value, json};
use std::process::Command;

/// The npm packages of scripts/setup-node-packages.sh (run once per test process).
pub struct NodePackages {
    pub node: String,
    pub sdk: String,
    pub everything: String,
    pub filesystem: String,
    pub memory: String,
}

pub fn node_packages() -> &'static NodePackages {
    static PACKAGES: std::sync::OnceLock<NodePackages> = std::sync::OnceLock::new();
    PACKAGES.get_or_init(|| {
        let get = crate::common::node_package_paths();
        NodePackages {
            node: get("NODE"),
            sdk: get("SDK"),
            everything: get("EVERYTHING"),
            filesystem: get("FILESYSTEM"),
            memory: get("MEMORY"),
        }
    })
}

/// The Python modules the registry servers need in the fixture venv.
const PYTHON_MODULES: [&str; 4] = ["mcp", "fastmcp", "mcp_server_time", "mcp_server_git"];

/// Panics, naming what is missing and how to install it, unless `python` imports every
/// module of [`PYTHON_MODULES`]: a venv without a package fails the suite, never skips it.
fn require_python_modules(python: &str) {
    let imports = format!("import {}", PYTHON_MODULES.join(", "));
    let out = Command::new(python)
        .args(["-c", &imports])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    assert!(
        out.status.success(),
        "the registry servers' Python packages are missing from {python} ({imports} failed: {}); \
         run scripts/setup-python.sh (pins in tests/fixtures/python/requirements.txt)",
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// The servers of this suite, as `[[server]]` entries.
#[derive(Clone, Copy)]
enum Server {
    PythonSdk,
    FastMcp,
    Time,
    Git,
    Filesystem,
    Memory,
    EverythingStdio,
    EverythingHttp,
}

impl Server {
    fn name(self) -> &'static str {
        match self {
            Server::PythonSdk => "mcp-sdk",
            Server::FastMcp => "fastmcp",
            Server::Time => "time",
            Server::Git => "git",
            Server::Filesystem => "filesystem",
            Server::Memory => "memory",
            Server::EverythingStdio => "everything",
            Server::EverythingHttp => "everything-http",
        }
    }

    fn toml(self) -> String {
        let fixture = |file: &str| {
            repo_root()
                .join("tests/fixtures/python")
                .join(file)
                .canonicalize()
                .unwrap()
                .display()
                .to_string()
        };
        let python = || {
            let python = venv_python();
            require_python_modules(python);
            python
        };
        let command = match self {
            Server::PythonSdk => format!("[{:?}, {:?}]", python(), fixture("server.py")),
            Server::FastMcp => format!("[{:?}, {:?}]", python(), fixture("fastmcp_server.py")),
            // The sandbox has no /etc/localtime; name the zone rather than rely on it.
            Server::Time => format!(
                "[{:?}, \"-m\", \"mcp_server_time\", \"--local-timezone\", \"UTC\"]",
                python()
            ),
            // mcp-server-git has no tool that creates a repository: the wrapper makes one
            // in the scratch directory, then runs the server on it.
            Server::Git => format!("[{:?}, {:?}]", python(), fixture("git_server.py")),
            // The allowed directory is the session's scratch directory.
            Server::Filesystem => {
                let n = node_packages();
                format!("[{:?}, {:?}, \"/session\"]", n.node, n.filesystem)
            }
            Server::Memory => {
                let n = node_packages();
                format!("[{:?}, {:?}]", n.node, n.memory)
            }
            Server::EverythingStdio => {
                let n = node_packages();
                format!("[{:?}, {:?}, \"stdio\"]", n.node, n.everything)
            }
            Server::EverythingHttp => {
                let n = node_packages();
                format!("[{:?}, {:?}, \"streamableHttp\"]", n.node, n.everything)
            }
        };
        let extra = match self {
            // GitPython needs an identity to commit; HOME (/session) has no .gitconfig.
            Server::Git => concat!(
                "env = { GIT_AUTHOR_NAME = \"Lodge Test\", GIT_AUTHOR_EMAIL = \"test@lodge.invalid\", ",
                "GIT_COMMITTER_NAME = \"Lodge Test\", GIT_COMMITTER_EMAIL = \"test@lodge.invalid\" }\n"
            ),
            // Its default file sits beside its code, in the read-only install directory.
            Server::Memory => "env = { MEMORY_FILE_PATH = \"/session/memory.jsonl\" }\n",
            // AgentCore's contract: Streamable HTTP on port 8000 in the sandbox.
            Server::EverythingHttp => {
                "env = { PORT = \"8000\" }\ntransport = \"http\"\nport = 8000\npath = \"/mcp\"\n"
            }
            _ => "",
        };
        // Bounded like the other sandbox tests; enough for Node and FastMCP's imports.
        format!(
            "[[server]]\nname = {:?}\ncommand = {command}\n{extra}[server.sandbox]\nmemory = \"512MiB\"\npids = 256\n",
            self.name()
        )
    }
}

/// Starts Lodge hosting `server` in the namespaces sandbox; `None` where the host cannot.
fn host(server: Server) -> Option<(Lodge, String)> {
    let config = server.toml();
    let lodge = start_namespaces_in(tempfile::tempdir().unwrap(), &config)?;
    let url = format!("{}/mcp/{}", lodge.base, server.name());
    Some((lodge, url))
}

/// Runs `calls` from each of `clients` at once (each in its own session) and asserts that
/// every one saw `want`.
async fn each_sees(
    clients: &[Client],
    url: &str,
    calls: &[(&str, Value)],
    answers: Option<&Answers>,
    want: &Outcome,
) {
    let mut runs = tokio::task::JoinSet::new();
    for &client in clients {
        let (url, calls, answers) = (url.to_string(), owned(calls), answers.cloned());
        runs.spawn(async move {
            let calls: Vec<(&str, Value)> =
                calls.iter().map(|(t, a)| (t.as_str(), a.clone())).collect();
            (client, client.run(&url, &calls, answers.as_ref()).await)
        });
    }
    while let Some(done) = runs.join_next().await {
        let (client, got) = done.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        assert_eq!(&got, want, "{client:?} against {url}");
    }
}

fn owned(calls: &[(&str, Value)]) -> Vec<(String, Value)> {
    calls
        .iter()
        .map(|(t, a)| (t.to_string(), a.clone()))
        .collect()
}

/// `lodge connect` one-shot of `tool` with `--protocol auto` and `modern`, each expected to
/// see `want` (a single call).
async fn connect_sees(url: &str, tool: &str, answers: &Answers, want: &Outcome) {
    for protocol in ["auto", "modern"] {
        let mut got = clients::connect(url, protocol, tool, json!({}), Some(answers)).await;
        // rmcp hands each notification to its own task, so an update can reach lodge
        // connect after a later one, which it then drops (progress only goes up): what it
        // shows is the expected progress in order, some early steps perhaps left out,
        // ending with the last.
        for (got, want) in got.calls.iter_mut().zip(&want.calls) {
            let mut expected = want.progress.iter();
            assert!(
                got.progress.iter().all(|p| expected.any(|w| w == p))
                    && got.progress.last() == want.progress.last(),
                "lodge connect --protocol {protocol} against {url}: progress {:?}, expected {:?}",
                got.progress,
                want.progress
            );
            got.progress.clone_from(&want.progress);
        }
        assert_eq!(
            &got, want,
            "lodge connect --protocol {protocol} against {url}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// The servers that elicit, sample and report progress: every client.

#[tokio::test]
async fn the_python_sdk_server_elicits_samples_and_keeps_state_from_every_client() {
    let Some((_lodge, url)) = host(Server::PythonSdk) else {
        return;
    };
    let answers = Answers {
        form: json!({"guests": 4, "time": "19:30"}),
        sampled: "See you at 19:30.".into(),
    };
    let booked = Called::text("Booked for 4 at 19:30. See you at 19:30.").with_progress(&[
        (1.0, 3.0, "checking availability"),
        (2.0, 3.0, "asking the guest"),
        (3.0, 3.0, "confirming"),
    ]);
    let asked = |calls: Vec<Called>| Outcome {
        calls,
        elicitations: vec!["How many guests, and when?".into()],
        samplings: vec!["Write a one-line confirmation for 4 guests at 19:30.".into()],
    };
    // tally's total lives in the server process: one per session, kept across its calls.
    let calls = [
        ("book_table", json!({})),
        ("tally", json!({"add": 5})),
        ("tally", json!({"add": 2})),
    ];
    let want = asked(vec![booked.clone(), Called::text("5"), Called::text("7")]);
    each_sees(&ALL, &url, &calls, Some(&answers), &want).await;
    connect_sees(&url, "book_table", &answers, &asked(vec![booked])).await;
}

#[tokio::test]
async fn the_fastmcp_server_elicits_samples_and_keeps_state_from_every_client() {
    let Some((_lodge, url)) = host(Server::FastMcp) else {
        return;
    };
    let answers = Answers {
        form: json!({"size": "large", "shots": 2}),
        sampled: "The Double.".into(),
    };
    let served = Called::text("large coffee, 2 shots: The Double.").with_progress(&[
        (1.0, 3.0, "taking the order"),
        (2.0, 3.0, "asking the barista"),
        (3.0, 3.0, "served"),
    ]);
    let asked = |calls: Vec<Called>| Outcome {
        calls,
        elicitations: vec!["Which coffee?".into()],
        samplings: vec!["Name a large coffee with 2 shots.".into()],
    };
    // count keeps its total in FastMCP's session state (ctx.set_state), which lives as long
    // as a legacy-era session with the server: kept across calls for every client.
    let calls = [
        ("order_coffee", json!({})),
        ("count", json!({"add": 5})),
        ("count", json!({"add": 2})),
    ];
    let want = asked(vec![served.clone(), Called::text("5"), Called::text("7")]);
    each_sees(&ALL, &url, &calls, Some(&answers), &want).await;
    connect_sees(&url, "order_coffee", &answers, &asked(vec![served])).await;
}

// ---------------------------------------------------------------------------------------
// The other registry servers: the Python SDK client and rmcp in both eras.

/// Today's date in UTC, e.g. "2026-12-03".
fn utc_date() -> String {
    humantime::format_rfc3339(std::time::SystemTime::now()).to_string()[..10].to_string()
}

#[tokio::test]
async fn mcp_server_time_converts_a_time_for_every_client() {
    let Some((_lodge, url)) = host(Server::Time) else {
        return;
    };
    // Tokyo has no daylight saving time: 09:30 UTC is 18:30 there, all year.
    let calls = [(
        "convert_time",
        json!({"source_timezone": "UTC", "time": "09:30", "target_timezone": "Asia/Tokyo"}),
    )];
    // The server's own key order (serde_json would sort the keys).
    let want = |date: &str| {
        let day = weekday(date);
        let side = |zone: &str, time: &str| {
            format!(
                "{{\n    \"timezone\": \"{zone}\",\n    \"datetime\": \"{date}T{time}\",\n    \"day_of_week\": \"{day}\",\n    \"is_dst\": false\n  }}"
            )
        };
        let converted = format!(
            "{{\n  \"source\": {},\n  \"target\": {},\n  \"time_difference\": \"+9.0h\"\n}}",
            side("UTC", "09:30:00+00:00"),
            side("Asia/Tokyo", "18:30:00+09:00")
        );
        Outcome {
            calls: vec![Called::text(converted)],
            ..Outcome::default()
        }
    };
    let before = utc_date();
    for client in EVERY_SERVER {
        let got = client.run(&url, &calls, None).await;
        // The server converts on today's date; a run across midnight may see either day.
        let after = utc_date();
        assert!(
            got == want(&before) || got == want(&after),
            "{client:?}: {got:#?}\nwant: {:#?}",
            want(&after)
        );
    }
}

/// The day of the week of an ISO date, as Python's `%A` names it.
fn weekday(date: &str) -> &'static str {
    let days = humantime::parse_rfc3339(&format!("{date}T00:00:00Z"))
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 86_400;
    // 1970-01-01 was a Thursday.
    [
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
        "Monday",
        "Tuesday",
        "Wednesday",
    ][(days % 7) as usize]
}

#[tokio::test]
async fn mcp_server_git_commits_in_the_sessions_own_repository_for_every_client() {
    let Some((_lodge, url)) = host(Server::Git) else {
        return;
    };
    let repo = json!({"repo_path": "/session/repo"});
    let with = |extra: Value| {
        let mut args = repo.clone();
        args.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        args
    };
    let calls = [
        ("git_status", repo.clone()),
        ("git_add", with(json!({"files": ["notes.txt"]}))),
        ("git_commit", with(json!({"message": "Add notes"}))),
        ("git_log", with(json!({"max_count": 1}))),
        ("git_status", repo.clone()),
    ];
    let untracked = "Repository status:\nOn branch main\n\nNo commits yet\n\nUntracked files:\n  (use \"git add <file>...\" to include in what will be committed)\n\tnotes.txt\n\nnothing added to commit but untracked files present (use \"git add\" to track)";
    for client in EVERY_SERVER {
        let mut got = client.run(&url, &calls, None).await;
        // The commit's hash and date differ per run: the log names the hash the commit
        // reported, and a date; both are checked, then masked for the exact comparison.
        let hash = got.calls[2]
            .text
            .strip_prefix("Changes committed successfully with hash ")
            .unwrap_or_else(|| panic!("{client:?}: {got:#?}"))
            .to_string();
        assert!(
            hash.len() == 40 && hash.bytes().all(|b| b.is_ascii_hexdigit()),
            "{hash}"
        );
        got.calls[2].text = got.calls[2].text.replace(&hash, "HASH");
        let log = got.calls[3].text.replace(&hash, "HASH");
        let date_line = log
            .lines()
            .find(|l| l.starts_with("Date: "))
            .unwrap_or_default()
            .to_string();
        assert!(
            date_line.starts_with(&format!("Date: {}", utc_date())),
            "{log}"
        );
        got.calls[3].text = log.replace(&date_line, "Date: DATE");
        let want = Outcome {
            calls: vec![
                Called::text(untracked),
                Called::text("Files staged successfully"),
                Called::text("Changes committed successfully with hash HASH"),
                Called::text(
                    "Commit history:\nCommit: HASH\nAuthor: Lodge Test\nDate: DATE\nMessage: Add notes\n",
                ),
                Called::text(
                    "Repository status:\nOn branch main\nnothing to commit, working tree clean",
                ),
            ],
            ..Outcome::default()
        };
        assert_eq!(got, want, "{client:?}");
    }
}

#[tokio::test]
async fn server_filesystem_writes_then_reads_in_its_allowed_directory_for_every_client() {
    let Some((_lodge, url)) = host(Server::Filesystem) else {
        return;
    };
    let calls = [
        ("list_allowed_directories", json!({})),
        ("create_directory", json!({"path": "/session/notes"})),
        (
            "write_file",
            json!({"path": "/session/notes/hello.txt", "content": "hello from lodge\n"}),
        ),
        (
            "read_text_file",
            json!({"path": "/session/notes/hello.txt"}),
        ),
        ("read_text_file", json!({"path": "/etc/hostname"})),
    ];
    let denied = Called {
        text: "Access denied - path outside allowed directories: /etc/hostname not in /session"
            .into(),
        is_error: true,
        progress: Vec::new(),
    };
    let want = Outcome {
        calls: vec![
            Called::text("Allowed directories:\n/session"),
            Called::text("Successfully created directory /session/notes"),
            Called::text("Successfully wrote to /session/notes/hello.txt"),
            Called::text("hello from lodge\n"),
            denied,
        ],
        ..Outcome::default()
    };
    each_sees(&EVERY_SERVER, &url, &calls, None, &want).await;
}

#[tokio::test]
async fn server_memory_keeps_its_graph_within_a_session_and_not_across_sessions() {
    let Some((_lodge, url)) = host(Server::Memory) else {
        return;
    };
    let ada =
        json!({"name": "Ada", "entityType": "person", "observations": ["wrote the first program"]});
    // The server's own key order and indentation (serde_json would sort the keys).
    let ada_text = |indent: &str| {
        format!(
            "{{\n{indent}  \"name\": \"Ada\",\n{indent}  \"entityType\": \"person\",\n{indent}  \"observations\": [\n{indent}    \"wrote the first program\"\n{indent}  ]\n{indent}}}"
        )
    };
    let graph = |entities: &str| {
        Called::text(format!(
            "{{\n  \"entities\": {entities},\n  \"relations\": []\n}}"
        ))
    };
    let first = [
        ("create_entities", json!({"entities": [ada]})),
        ("read_graph", json!({})),
    ];
    let want_first = Outcome {
        calls: vec![
            Called::text(format!("[\n  {}\n]", ada_text("  "))),
            graph(&format!("[\n    {}\n  ]", ada_text("    "))),
        ],
        ..Outcome::default()
    };
    let want_second = Outcome {
        calls: vec![graph("[]")],
        ..Outcome::default()
    };
    // Each client's two sessions one after the other; the clients side by side.
    let mut runs = tokio::task::JoinSet::new();
    for client in EVERY_SERVER {
        let (url, first) = (url.clone(), first.clone());
        runs.spawn(async move {
            let got = client.run(&url, &first, None).await;
            // A second session of the same client: a fresh server with an empty graph.
            let second = client.run(&url, &[("read_graph", json!({}))], None).await;
            (client, got, second)
        });
    }
    while let Some(done) = runs.join_next().await {
        let (client, got, second) =
            done.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        assert_eq!(got, want_first, "{client:?}");
        assert_eq!(
            second, want_second,
            "{client:?}: the second session sees the first's graph"
        );
    }
}

async fn everything_answers(server: Server) {
    let Some((_lodge, url)) = host(server) else {
        return;
    };
    let calls = [
        ("echo", json!({"message": "from the sandbox"})),
        ("get-sum", json!({"a": 2, "b": 40})),
    ];
    let want = Outcome {
        calls: vec![
            Called::text("Echo: from the sandbox"),
            Called::text("The sum of 2 and 40 is 42."),
        ],
        ..Outcome::default()
    };
    each_sees(&EVERY_SERVER, &url, &calls, None, &want).await;
}

#[tokio::test]
async fn server_everything_over_stdio_answers_every_client() {
    everything_answers(Server::EverythingStdio).await;
}

#[tokio::test]
async fn server_everything_over_streamable_http_on_port_8000_answers_every_client() {
    everything_answers(Server::EverythingHttp).await;
}

/// The suite fails, saying what to run, when the venv lacks a registry package.
#[test]
fn a_python_without_the_registry_packages_fails_the_suite_saying_what_to_run() {
    let bare = tempfile::tempdir().unwrap();
    let venv = bare.path().join("venv");
    let made = Command::new("python3")
        .args(["-m", "venv", "--without-pip"])
        .arg(&venv)
        .status()
        .unwrap();
    assert!(made.success());
    let python = venv.join("bin/python").display().to_string();
    let failed = std::panic::catch_unwind(|| require_python_modules(&python)).unwrap_err();
    let message = failed.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        message.contains("the registry servers' Python packages are missing from")
            && message.contains("No module named 'mcp'")
            && message.contains("run scripts/setup-python.sh"),
        "{message}"
    );
    require_python_modules(venv_python());
}
