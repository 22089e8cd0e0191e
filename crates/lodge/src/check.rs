//! `lodge check`, and the same check `lodge serve` runs at startup (`startup_check`):
//! start one session of each server in its sandbox, all at once, as a 2026-07-28
//! client's first request would (so the answer also says how each era of client is
//! served), list its tools, and report each server that cannot start, crashes or
//! answers badly with its stderr and a hint.

use anyhow::Context;
use lodge::config::{Env, ServeArgs, Settings};
use lodge_proto::Message;
use lodge_proto::modern::{CLIENT_CAPABILITIES_KEY, MirroredHeaders, PROTOCOL_VERSION_KEY};
use lodge_runtime::{
    EndReason, Hosting, HostingKind, ModernCall, Principal, Runtime, Server, SessionHandle,
};
use std::sync::Arc;
use std::time::Duration;

/// How long one server may take to start and answer, by default.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    #[command(flatten)]
    serve: ServeArgs,
    /// How long each server may take to start and answer (e.g. 5s).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "30s")]
    timeout: Duration,
}
/// Tools named in a report before "and N more".
const TOOLS_SHOWN: usize = 12;

pub fn run(args: CheckArgs) -> anyhow::Result<()> {
    let settings = Settings::load(args.serve, &Env::from_process())?;
    let servers = lodge::config::build_servers(&settings, lodge::config::probe_host)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let reports = runtime.block_on(async {
        let runtime = Runtime::new(servers, settings.session.clone());
        let reports = check_all(&runtime, args.timeout).await;
        runtime.shutdown(Duration::from_secs(5)).await;
        reports
    });
    for report in &reports {
        println!("{report}");
    }
    failed(&reports)
}

/// What the check found of one server.
pub struct Report {
    pub server: String,
    pub outcome: Result<String, Failure>,
}

/// Why a server failed, what it said on stderr, and what to try.
pub struct Failure {
    pub why: String,
    pub stderr: Vec<String>,
    pub hint: &'static str,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.outcome {
            Ok(found) => write!(f, "{}: ok: {found}", self.server),
            Err(failure) => {
                write!(f, "{}: FAILED: {}", self.server, failure.why)?;
                if !failure.stderr.is_empty() {
                    write!(f, "\n  its stderr (last lines):")?;
                    for line in &failure.stderr {
                        write!(f, "\n    {line}")?;
                    }
                }
                write!(f, "\n  hint: {}", failure.hint)
            }
        }
    }
}

/// `Ok` when every server passed, else an error naming how many did not.
pub fn failed(reports: &[Report]) -> anyhow::Result<()> {
    match reports.iter().filter(|r| r.outcome.is_err()).count() {
        0 => Ok(()),
        n => anyhow::bail!("{n} of {} server(s) failed the check", reports.len()),
    }
}

/// Checks every server of `runtime` at once; reports in config order.
pub async fn check_all(runtime: &Arc<Runtime>, timeout: Duration) -> Vec<Report> {
    let servers: Vec<Arc<Server>> = runtime.servers().to_vec();
    futures_util::future::join_all(servers.iter().map(|server| async {
        Report {
            server: server.spec.name.clone(),
            outcome: check(runtime, server, timeout).await,
        }
    }))
    .await
}

const EXITED_HINT: &str = "it exited before answering: run its command by hand to see why (a missing package, file or environment variable?), and mind that the sandbox sees only what [server.sandbox] lets in";
const SILENT_HINT: &str = "it never answered initialize or server/discover on stdout: is this command an MCP server speaking stdio (some need an argument such as `stdio`, or transport = \"http\" with its port), and does it keep its logs on stderr?";
const NOT_MCP_HINT: &str = "stdout carries only JSON-RPC messages for a stdio MCP server: is this command an MCP server (some need an argument such as `stdio`), and does it print its logs or banner to stdout instead of stderr?";
const SPAWN_HINT: &str =
    "check the command's path and that the sandbox can reach it (binds in [server.sandbox])";
const REFUSED_HINT: &str = "it started but answered something that is not a valid MCP answer: see its stderr, and whether its SDK speaks 2024-11-05 or later";

async fn check(
    runtime: &Arc<Runtime>,
    server: &Arc<Server>,
    timeout: Duration,
) -> Result<String, Failure> {
    let anonymous = Principal::anonymous();
    let probe = runtime.create_modern_session(server, Default::default(), &anonymous);
    let session = match tokio::time::timeout(timeout, probe).await {
        Ok(Ok(session)) => session,
        Ok(Err(e)) => {
            let why = e.to_string();
            let hint = match &e {
                lodge_runtime::RuntimeError::Spawn(_) => SPAWN_HINT,
                _ if why.contains("MCP server exited") || why.contains("the MCP server was") => {
                    EXITED_HINT
                }
                _ => REFUSED_HINT,
            };
            return Err(Failure {
                why,
                stderr: Vec::new(),
                hint,
            });
        }
        Err(_) => {
            // Still starting: its own session says what the server wrote meanwhile.
            let stuck = runtime
                .sessions()
                .into_iter()
                .find(|s| s.server() == server.spec.name);
            let report = match &stuck {
                Some(session) => session.describe().await,
                None => None,
            };
            let skipped = report.as_ref().map_or(0, |r| r.stdout_lines_skipped);
            if let Some(session) = stuck {
                session
                    .stop(EndReason::Discarded("its server was only being checked"))
                    .await;
            }
            let mut why = format!(
                "no answer to initialize or server/discover within {}",
                humantime::format_duration(timeout)
            );
            if skipped > 0 {
                why.push_str(&format!(
                    "; it wrote {skipped} line(s) on stdout that are not JSON-RPC"
                ));
            }
            return Err(Failure {
                why,
                stderr: report.map(|r| r.stderr_tail).unwrap_or_default(),
                hint: if skipped > 0 {
                    NOT_MCP_HINT
                } else {
                    SILENT_HINT
                },
            });
        }
    };
    let hosting = session.hosting().map_or_else(
        || "started, but its era was not decided".to_string(),
        describe,
    );
    let tools = list_tools(&session, timeout).await;
    let stderr = session
        .describe()
        .await
        .map(|r| r.stderr_tail)
        .unwrap_or_default();
    session
        .stop(EndReason::Discarded("its server was only being checked"))
        .await;
    match tools {
        Ok(tools) => Ok(format!("{hosting}\n  tools: {tools}")),
        Err(why) => Err(Failure {
            why: format!("{hosting}, but tools/list failed: {why}"),
            stderr,
            hint: REFUSED_HINT,
        }),
    }
}

/// The server's tools (first page), named.
async fn list_tools(session: &SessionHandle, timeout: Duration) -> Result<String, String> {
    let version = lodge_proto::version::MODERN[0];
    let body = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {
        "_meta": {PROTOCOL_VERSION_KEY: version, CLIENT_CAPABILITIES_KEY: {}}}});
    let message = Message::parse(body.to_string().into()).map_err(|e| e.to_string())?;
    let headers = MirroredHeaders {
        protocol_version: Some(version),
        method: Some("tools/list"),
        name: None,
    };
    let request = lodge_proto::modern::validate(&message, headers).map_err(|e| e.to_string())?;
    let mut stream = session
        .modern(ModernCall::new(message, request), None)
        .await
        .map_err(|e| e.to_string())?;
    let answer = tokio::time::timeout(timeout, async {
        while let Some(event) = stream.recv().await {
            if event.is_response {
                return Some(event.data);
            }
        }
        None
    })
    .await
    .map_err(|_| format!("no answer within {}", humantime::format_duration(timeout)))?
    .ok_or("the session ended before the answer")?;
    let answer: serde_json::Value =
        serde_json::from_slice(&answer).map_err(|e| format!("unreadable answer: {e}"))?;
    if let Some(error) = answer.get("error") {
        return Err(format!("the server answered an error: {error}"));
    }
    let result = &answer["result"];
    let names: Vec<&str> = result["tools"]
        .as_array()
        .ok_or("the answer has no tools array")?
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    Ok(tool_list(&names, result["nextCursor"].is_string()))
}

fn tool_list(names: &[&str], more_pages: bool) -> String {
    if names.is_empty() {
        return "none".into();
    }
    let mut text = names
        .iter()
        .take(TOOLS_SHOWN)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > TOOLS_SHOWN {
        text.push_str(&format!(" and {} more", names.len() - TOOLS_SHOWN));
    }
    let later = if more_pages {
        ", more on later pages"
    } else {
        ""
    };
    format!("{} ({text}){later}", names.len())
}

/// How each era of client is served, and why.
fn describe(hosting: &Hosting) -> String {
    let legacy_clients = match hosting.kind {
        HostingKind::Bridged | HostingKind::Relayed => "legacy clients relayed",
        HostingKind::Passthrough | HostingKind::SpokenFor => {
            "Lodge speaks 2026-07-28 to it for legacy clients"
        }
    };
    format!("{hosting}; {legacy_clients}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_lists_are_bounded() {
        assert_eq!(tool_list(&[], false), "none");
        assert_eq!(
            tool_list(&["a", "b"], true),
            "2 (a, b), more on later pages"
        );
        let many: Vec<String> = (0..20).map(|n| format!("t{n}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let shown = tool_list(&many, false);
        assert!(
            shown.starts_with("20 (t0, t1,") && shown.ends_with("t11 and 8 more)"),
            "{shown}"
        );
    }
}
