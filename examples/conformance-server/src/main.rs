//! `conformance-server [--stdio] [--modern-only]` serves MCP on stdin/stdout (how Lodge
//! hosts it; `--modern-only` refuses `initialize`, as a server that speaks only
//! 2026-07-28 does);
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
    /// On stdio, speak only 2026-07-28: refuse `initialize` with -32601.
    #[arg(long, conflicts_with = "http")]
    modern_only: bool,
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
        None if args.modern_only => serve_stdio_modern_only(server).await,
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

/// rmcp serves both eras on stdio; a 2026-07-28-only server answers `initialize`
/// with -32601. This filter stands between stdio and rmcp to refuse it, and passes
/// every other line through unchanged.
async fn serve_stdio_modern_only(server: ConformanceServer) -> Result<(), BoxError> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let (mut to_rmcp, rmcp_in) = tokio::io::duplex(1 << 16);
    let (rmcp_out, from_rmcp) = tokio::io::duplex(1 << 16);
    let (refusals, mut refused) = tokio::sync::mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        let mut lines = BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            match refusal(&line) {
                Some(error) => {
                    let _ = refusals.send(error);
                }
                None => {
                    let line = format!("{line}\n");
                    if to_rmcp.write_all(line.as_bytes()).await.is_err() {
                        break;
                    }
                }
            }
        }
    });
    let output = tokio::spawn(async move {
        let mut stdout = tokio::io::stdout();
        let mut lines = BufReader::new(from_rmcp).lines();
        loop {
            let line = tokio::select! {
                line = lines.next_line() => match line {
                    Ok(Some(line)) => line,
                    _ => break,
                },
                Some(error) = refused.recv() => error,
            };
            let line = format!("{line}\n");
            if stdout.write_all(line.as_bytes()).await.is_err() || stdout.flush().await.is_err() {
                break;
            }
        }
    });
    let running = server.serve((rmcp_in, rmcp_out)).await?;
    running.waiting().await?;
    let _ = output.await;
    Ok(())
}

/// The error a 2026-07-28-only server answers an `initialize` with.
fn refusal(line: &str) -> Option<String> {
    let request: serde_json::Value = serde_json::from_str(line).ok()?;
    if request.get("method")? != "initialize" {
        return None;
    }
    let error = serde_json::json!({
        "jsonrpc": "2.0",
        "id": request.get("id")?,
        "error": {"code": -32601, "message": "initialize is not supported: this server speaks only 2026-07-28"},
    });
    Some(error.to_string())
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
