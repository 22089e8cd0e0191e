//! The `lodge` command: `serve`, `check`, `sessions`, `cluster`, `doctor`, the bundled demo server, and `connect`, which
//! dispatches to the `lodge-connect` crate.
//!
//! It owns the command line, the config file (parsed and checked without side effects;
//! backends are built when serving) and the wiring of runtime, front and signals. It must
//! not hold logic a library user of `lodge-runtime` / `lodge-http` would need.
#![forbid(unsafe_code)]

mod check;
mod cluster;
mod coordinator;
mod limits;
#[cfg(feature = "otlp")]
mod otlp;
mod serve;
mod sessions;

use clap::{Parser, Subcommand};
use lodge::config;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "lodge",
    version,
    about = "A self-hosted runtime for stateful MCP servers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Host MCP servers over Streamable HTTP, one sandboxed server process per client session.
    Serve(config::ServeArgs),
    /// Connect to an MCP server and use it from the terminal: call tools, answer
    /// elicitation and sampling, watch progress. One-shot with --call or --list.
    ///
    /// EXIT CODES: 0 ok · 1 the tool reported an error (isError) · 2 usage (bad flags,
    /// arguments or --answers file, unknown tool) · 3 connection failed · 4 the server
    /// answered with a JSON-RPC error · 5 the session ended on the server (HTTP 404) ·
    /// 130 interrupted (Ctrl-C cancels the running call first)
    Connect(lodge_connect::ConnectArgs),
    /// Check a config as `lodge serve` would load it (and does at startup): start one
    /// session of each server, list its tools, and say how it is hosted (legacy session,
    /// bridged, passed through) and why, or why it failed, with its stderr and a hint.
    ///
    /// EXIT CODES: 0 every server passed · 1 one or more failed (or the config is wrong) · 2 usage
    Check(check::CheckArgs),
    /// See and stop sessions through the admin API: list (with filters), show ID, stop ID.
    ///
    /// EXIT CODES: 0 ok · 1 the admin API refused or failed (unknown session, bad token,
    /// unreachable) · 2 usage
    Sessions(sessions::SessionsArgs),
    /// Drain a node through its admin API: it takes no new sessions (`/readyz` answers
    /// 503), serves its live ones until they end or --deadline passes, then stops.
    ///
    /// EXIT CODES: 0 draining · 1 the admin API refused or failed · 2 usage
    Drain(sessions::DrainArgs),
    /// Cluster mode's tools: `keygen` writes the key file every node shares.
    Cluster(cluster::ClusterArgs),
    /// Report which isolation features this host supports, and which sandbox backend
    /// `lodge serve` will pick, and why.
    Doctor,
    /// The sandbox helper Lodge starts for each `namespaces` session (internal).
    #[command(name = "sandbox-helper", hide = true)]
    SandboxHelper {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
    /// Run the bundled demo MCP server on stdio (what `serve --demo` hosts).
    #[command(name = "demo-server", hide = true)]
    DemoServer,
}

fn main() -> ExitCode {
    // A sandbox's init, re-executed by the sandbox helper with the argv `init`.
    lodge_sandbox::helper::run_init_if_asked();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Connect(args) => return lodge_connect::run(args),
        Command::Check(args) => check::run(args),
        Command::Sessions(args) => sessions::run(args),
        Command::Drain(args) => sessions::drain(args),
        Command::Cluster(args) => cluster::run(args),
        Command::Doctor => doctor(),
        Command::SandboxHelper { args } => lodge_sandbox::run_helper(args),
        Command::DemoServer => run_demo_server(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lodge: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn doctor() -> anyhow::Result<()> {
    let host = lodge_sandbox::Host::probe(config::sandbox_helper()?);
    println!("{}", host.report());
    Ok(())
}

fn run_demo_server() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime
        .block_on(demo_server::serve_stdio())
        .map_err(|e| anyhow::anyhow!("demo server failed: {e}"))
}
