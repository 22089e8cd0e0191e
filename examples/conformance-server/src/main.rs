//! `conformance-server [--stdio]` serves MCP on stdin/stdout (how Lodge hosts it);
//! `conformance-server --http 127.0.0.1:PORT` serves Streamable HTTP at `/mcp` (to run the
//! conformance suite against the server directly). With `--http`, the first line on stdout
//! is `conformance-server listening on http://ADDR/mcp` (ADDR is the bound address, useful
//! with port 0). See the library docs for what it exposes.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use conformance_server::ConformanceServer;
use rmcp::ServiceExt;
use rmcp::transport::{
    StreamableHttpServerConfig, StreamableHttpService,
    streamable_http_server::session::local::LocalSessionManager,
};

#[derive(Parser)]
#[command(about = "MCP server exposing what the official conformance suite requires")]
struct Args {
    /// Serve MCP over stdin/stdout (the default).
    #[arg(long, conflicts_with = "http")]
    stdio: bool,
    /// Serve Streamable HTTP on this address, at path /mcp.
    #[arg(long, value_name = "ADDR")]
    http: Option<SocketAddr>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let server = match ConformanceServer::new() {
        Ok(server) => server,
        Err(error) => {
            eprintln!("conformance-server: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = match args.http {
        Some(addr) => serve_http(server, addr).await,
        None => serve_stdio(server).await,
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("conformance-server: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn serve_stdio(server: ConformanceServer) -> Result<(), BoxError> {
    let running = server.serve(rmcp::transport::stdio()).await?;
    running.waiting().await?;
    Ok(())
}

async fn serve_http(server: ConformanceServer, addr: SocketAddr) -> Result<(), BoxError> {
    let config = StreamableHttpServerConfig::default()
        // Sessions (and SSE priming/resumption) for legacy clients; 2026-07-28 requests
        // are served statelessly either way.
        .with_legacy_session_mode(true)
        .with_sse_retry(Some(Duration::from_secs(1)))
        .with_allowed_hosts(["localhost", "127.0.0.1", "::1", "[::1]"])
        .with_allowed_origins([
            "http://localhost:*",
            "http://127.0.0.1:*",
            "http://[::1]:*",
            "https://localhost:*",
            "https://127.0.0.1:*",
        ]);
    let service = StreamableHttpService::new(
        move || Ok(server.new_session()),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let app = axum::Router::new().route_service("/mcp", service);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!(
        "conformance-server listening on http://{}/mcp",
        listener.local_addr()?
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
