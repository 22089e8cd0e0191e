//! Lodge's demo MCP server (`lodge-demo`), spoken over stdio as newline-delimited JSON-RPC.
//!
//! `plan_trip` shows a stateful, bidirectional call (progress, form elicitation, sampling, a
//! log message and a file written in the session's working directory). The other tools probe
//! what Lodge promises about sessions: in-process state (`counter`), the per-session scratch
//! directory (`notes`), cancellation and progress (`slow`), process identity (`session_info`)
//! and relay latency (`echo`). Every file the tools touch is relative to the current directory.
//! Diagnostics go to stderr only; stdout carries the protocol.

// rmcp marks sampling and logging deprecated (SEP-2577), but showing them is the demo's point.
#![allow(deprecated)]

use std::{
    borrow::Cow,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicI64, Ordering},
    },
    time::Duration,
};

use rmcp::{
    ErrorData, RoleServer, ServerHandler, ServiceExt,
    handler::server::{router::tool::ToolRouter, wrapper::Parameters},
    model::{
        Implementation, LoggingLevel, ProgressNotificationParam, ProtocolVersion,
        ServerCapabilities, ServerConfig, SetLevelRequestParams,
    },
    service::RequestContext,
    tool, tool_handler, tool_router,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// File `plan_trip` writes its plan to, in the current directory.
pub const TRIP_PLAN_FILE: &str = "trip-plan.md";
/// File `slow` appends its progress lines to, in the current directory.
pub const SLOW_LOG_FILE: &str = "slow.log";

const INSTRUCTIONS: &str = "Lodge demo server. `plan_trip` asks the user where to go \
(elicitation), asks the model for an itinerary (sampling), reports progress and saves \
trip-plan.md. `counter`, `notes`, `slow`, `session_info` and `echo` probe per-session state, \
files, cancellation, process identity and latency.";

/// Serve the demo on stdin/stdout until the client disconnects.
pub async fn serve_stdio() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let service = DemoServer::new()
        .serve(rmcp::transport::stdio_pipes())
        .await?;
    service.waiting().await?;
    Ok(())
}

/// The demo server. State lives as long as the process, i.e. one client session under Lodge.
#[derive(Clone)]
pub struct DemoServer {
    counter: Arc<AtomicI64>,
    /// Whether `info` log messages pass the level the client set (`logging/setLevel`).
    info_logs: Arc<AtomicBool>,
    tool_router: ToolRouter<Self>,
}

impl Default for DemoServer {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
enum CounterAction {
    Increment,
    Get,
    Reset,
}

#[derive(Deserialize, JsonSchema)]
struct CounterArgs {
    action: CounterAction,
    /// Amount to add on `increment` (default 1).
    by: Option<i64>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
enum NotesAction {
    Write,
    Read,
    List,
}

#[derive(Deserialize, JsonSchema)]
struct NotesArgs {
    action: NotesAction,
    /// Note (file) name, for `write` and `read`.
    name: Option<String>,
    /// Content, for `write`.
    text: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
struct SlowArgs {
    /// Total duration in seconds (default 10).
    seconds: Option<f64>,
    /// Number of steps (default 10).
    steps: Option<u32>,
}

#[derive(Deserialize, JsonSchema)]
struct EchoArgs {
    text: String,
}

#[derive(Serialize)]
struct SessionInfo {
    pid: u32,
    cwd: String,
    instance: String,
}

mod trip;

type ToolResult = Result<String, String>;

#[tool_router]
impl DemoServer {
    pub fn new() -> Self {
        Self {
            counter: Arc::default(),
            info_logs: Arc::new(AtomicBool::new(true)),
            tool_router: Self::tool_router(),
        }
    }

    /// Plan a trip: asks the user where and how to travel (form elicitation), asks the model
    /// for an itinerary (sampling), saves it to trip-plan.md and logs that (logger
    /// "plan_trip"). Progress 1..4 of 4: "asking for trip details", "asking the model for an
    /// itinerary", "saving the plan", "done". Result: "Trip to {destination}: {days} days,
    /// {budget}, flights {yes|no}.\n\n{itinerary}". If the user declines or cancels: "Trip
    /// planning stopped: the user chose to {decline|cancel}." Needs the client's elicitation
    /// and sampling capabilities (tool error otherwise).
    #[tool]
    async fn plan_trip(&self, ctx: RequestContext<RoleServer>) -> ToolResult {
        trip::plan_trip(&ctx, &self.info_logs).await
    }

    /// In-process counter: action "increment" (adds `by`, default 1), "get" or "reset" (to 0).
    /// Returns the resulting value as text, e.g. "3".
    #[tool]
    async fn counter(&self, Parameters(args): Parameters<CounterArgs>) -> String {
        let value = match args.action {
            CounterAction::Increment => {
                let by = args.by.unwrap_or(1);
                self.counter
                    .fetch_add(by, Ordering::SeqCst)
                    .wrapping_add(by)
            }
            CounterAction::Get => self.counter.load(Ordering::SeqCst),
            CounterAction::Reset => {
                self.counter.store(0, Ordering::SeqCst);
                0
            }
        };
        value.to_string()
    }

    /// Notes are files in the current directory. "write" (name, text) returns "saved {name}";
    /// "read" (name) returns the content; "list" returns file names, sorted, one per line
    /// (dot-files skipped). Names must be non-empty and must not contain '/' or '\' or start
    /// with '.'.
    #[tool]
    async fn notes(&self, Parameters(args): Parameters<NotesArgs>) -> ToolResult {
        match args.action {
            NotesAction::Write => {
                let name = note_name(args.name.as_deref())?;
                let text = args.text.ok_or("write needs `text`")?;
                tokio::fs::write(name, text)
                    .await
                    .map_err(|e| format!("writing note {name:?}: {e}"))?;
                Ok(format!("saved {name}"))
            }
            NotesAction::Read => {
                let name = note_name(args.name.as_deref())?;
                tokio::fs::read_to_string(name)
                    .await
                    .map_err(|e| format!("reading note {name:?}: {e}"))
            }
            NotesAction::List => list_files(Path::new("."))
                .await
                .map_err(|e| format!("listing notes: {e}")),
        }
    }

    /// Sleeps `seconds` (default 10) in `steps` (default 10) equal steps, sending progress
    /// "step {i} of {steps}" after each. Appends to slow.log: "started {steps} steps", then
    /// "finished {steps} steps" or, when the call is cancelled, "cancelled at step {i} of
    /// {steps}". Returns "finished {steps} steps".
    #[tool]
    async fn slow(
        &self,
        Parameters(args): Parameters<SlowArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> ToolResult {
        let steps = args.steps.unwrap_or(10);
        let seconds = args.seconds.unwrap_or(10.0);
        let pause = Duration::try_from_secs_f64(seconds / f64::from(steps.max(1)))
            .map_err(|e| format!("invalid seconds {seconds}: {e}"))?;
        append_line(SLOW_LOG_FILE, &format!("started {steps} steps")).await?;
        for i in 1..=steps {
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = ctx.ct.cancelled() => {
                    let line = format!("cancelled at step {i} of {steps}");
                    append_line(SLOW_LOG_FILE, &line).await?;
                    return Err(line);
                }
            }
            progress(&ctx, i, steps, &format!("step {i} of {steps}")).await;
        }
        let done = format!("finished {steps} steps");
        append_line(SLOW_LOG_FILE, &done).await?;
        Ok(done)
    }

    /// Returns JSON text {"pid":<process id>,"cwd":"<current directory>","instance":"<hex>"}.
    /// `instance` is random per process: unlike the pid, it differs between processes
    /// in separate pid namespaces too.
    #[tool]
    async fn session_info(&self) -> ToolResult {
        let cwd = std::env::current_dir().map_err(|e| format!("current dir: {e}"))?;
        let info = SessionInfo {
            pid: std::process::id(),
            cwd: cwd.to_string_lossy().into_owned(),
            instance: instance_id(),
        };
        serde_json::to_string(&info).map_err(|e| e.to_string())
    }

    /// Returns `text` unchanged.
    #[tool]
    async fn echo(&self, Parameters(args): Parameters<EchoArgs>) -> String {
        args.text
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for DemoServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_logging()
                .build(),
        )
        .with_server_info(Implementation::new("lodge-demo", env!("CARGO_PKG_VERSION")))
        .with_instructions(INSTRUCTIONS)
    }

    /// The demo is deliberately a legacy (stateful) server: its tools ask the client
    /// with server-initiated requests. Saying so lets Lodge bridge it for 2026-07-28
    /// clients (MRTR) instead of passing their requests straight through.
    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        Cow::Borrowed(ProtocolVersion::known_up_to(&ProtocolVersion::V_2025_11_25))
    }

    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let info = matches!(request.level, LoggingLevel::Debug | LoggingLevel::Info);
        self.info_logs.store(info, Ordering::Relaxed);
        Ok(())
    }
}

/// A random id chosen once per process.
fn instance_id() -> String {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| {
        use std::hash::{BuildHasher, Hasher};
        // RandomState is seeded from the OS's randomness once per process.
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u32(std::process::id());
        format!("{:016x}", hasher.finish())
    })
    .clone()
}

/// Report progress if the request asked for it (carried a progress token).
pub(crate) async fn progress(
    ctx: &RequestContext<RoleServer>,
    step: u32,
    total: u32,
    message: &str,
) {
    if let Some(token) = ctx.meta.get_progress_token() {
        let param = ProgressNotificationParam::new(token, f64::from(step))
            .with_total(f64::from(total))
            .with_message(message);
        let _ = ctx.peer.notify_progress(param).await;
    }
}

fn note_name(name: Option<&str>) -> Result<&str, String> {
    match name {
        Some(n) if !n.is_empty() && !n.starts_with('.') && !n.contains(['/', '\\']) => Ok(n),
        Some(n) => Err(format!(
            "invalid note name {n:?}: names must be non-empty, must not start with '.' and must not contain '/' or '\\'"
        )),
        None => Err("this action needs `name`".into()),
    }
}

async fn list_files(dir: &Path) -> std::io::Result<String> {
    let mut entries = tokio::fs::read_dir(dir).await?;
    let mut names = Vec::new();
    while let Some(entry) = entries.next_entry().await? {
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type().await?.is_file() && !name.starts_with('.') {
            names.push(name);
        }
    }
    names.sort();
    Ok(names.join("\n"))
}

async fn append_line(path: &str, line: &str) -> Result<(), String> {
    use tokio::io::AsyncWriteExt;
    let mut file = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .await
        .map_err(|e| format!("opening {path}: {e}"))?;
    file.write_all(format!("{line}\n").as_bytes())
        .await
        .map_err(|e| format!("writing {path}: {e}"))?;
    // tokio's write_all only hands the bytes to a blocking thread: flush so the line is
    // in the file before the tool answers (tests and clients read it right after).
    file.flush()
        .await
        .map_err(|e| format!("writing {path}: {e}"))
}
