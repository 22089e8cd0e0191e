//! The `lodge` command: `serve`, `doctor`, and the bundled demo server.
#![forbid(unsafe_code)]

mod config;
mod serve;

use clap::{Parser, Subcommand};
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
    /// Report which sandbox backends this host supports.
    Doctor,
    /// Run the bundled demo MCP server on stdio (what `serve --demo` hosts).
    #[command(name = "demo-server", hide = true)]
    DemoServer,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Doctor => {
            doctor();
            Ok(())
        }
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

fn doctor() {
    println!("sandbox backends available on this host:");
    for backend in lodge_sandbox::available_backends() {
        println!("  {backend}");
    }
    println!("lodge serve will use: process (the namespaces backend is not built yet)");
}

fn run_demo_server() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime
        .block_on(demo_server::serve_stdio())
        .map_err(|e| anyhow::anyhow!("demo server failed: {e}"))
}
