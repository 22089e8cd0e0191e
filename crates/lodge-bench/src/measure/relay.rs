//! Relay overhead: sequential `tools/call echo {"text":"hi"}` round trips in one
//! session, through Lodge (HTTP POST, response read from the SSE stream; and again
//! as a JSON-only client), against three ways of reaching the same demo server
//! without Lodge, all interleaved round by round:
//!
//! - **raw stdio**: the same request bytes written to a `lodge demo-server`'s stdin,
//!   the result line read from its stdout (the server's own time plus one pipe hop);
//! - **rmcp client over stdio**: rmcp's client (`call_tool`) talking to its own
//!   `lodge demo-server` child, as an MCP host app would without Lodge;
//! - **rmcp Streamable HTTP, in-process**: the demo's handler served by rmcp's
//!   `StreamableHttpService` in this process ([`crate::rmcp_http`]), reached with the
//!   same HTTP client and the same request bytes and headers as the Lodge row (legacy
//!   session, SSE answer): the server over HTTP with nothing in between.
//!
//! For reference, the HTTP floor: the same POST naming a session that does not exist,
//! which Lodge's front answers (404) without involving a session or server. What the
//! relay adds beyond it is the session actor, the pipes and the server's own time.

use super::{Counts, Ctx};
use crate::http::{Accept, McpHttp};
use crate::mcp;
use crate::report::Row;
use crate::rmcp_http::RmcpHttp;
use crate::stdio::StdioServer;
use anyhow::{Context, bail};
use rmcp::model::{CallToolRequestParams, JsonObject};
use rmcp::service::RunningService;
use rmcp::transport::TokioChildProcess;
use rmcp::{RoleClient, ServiceExt};
use std::time::{Duration, Instant};

const TEXT: &str = "hi";
const VARIANTS: [&str; 6] = [
    "Lodge, SSE",
    "Lodge, JSON",
    "direct",
    "HTTP floor",
    "rmcp client, stdio",
    "rmcp HTTP server, in-process",
];

type RmcpClient = RunningService<RoleClient, ()>;

pub async fn run(ctx: &Ctx, counts: Counts) -> anyhow::Result<Vec<Row>> {
    // Through Lodge: one session, set up as a client would.
    let session = ctx.http.open_session().await?;

    // Directly: one process, same two messages.
    let mut server = StdioServer::spawn(&ctx.lodge_bin, ctx.scratch.path())?;
    server.send(&mcp::initialize(0)).await?;
    mcp::check_initialized(&server.response_to(0).await?)?;
    server.send(&mcp::initialized()).await?;

    // rmcp's client, initialized by rmcp, on a child of its own.
    let rmcp_client = rmcp_stdio_client(ctx).await?;
    let mut echo_args = JsonObject::new();
    echo_args.insert("text".into(), TEXT.into());

    // rmcp's HTTP server in this process; its session set up like Lodge's above.
    let rmcp_server = RmcpHttp::start()?;
    let rmcp_http = McpHttp::new(rmcp_server.url.clone())?;
    let mut reply = rmcp_http.post(None, mcp::initialize(0)).await?;
    mcp::check_initialized(&reply.response_to(0).await?)?;
    let rmcp_session = reply
        .session_id()
        .context("rmcp's HTTP server answered initialize without an Mcp-Session-Id")?;
    reply.finish().await?;
    rmcp_http.notify(&rmcp_session, mcp::initialized()).await?;

    let mut sse = Vec::with_capacity(counts.iterations);
    let mut json = Vec::with_capacity(counts.iterations);
    let mut direct = Vec::with_capacity(counts.iterations);
    let mut floor = Vec::with_capacity(counts.iterations);
    let mut via_rmcp_client = Vec::with_capacity(counts.iterations);
    let mut via_rmcp_http = Vec::with_capacity(counts.iterations);
    let no_session = "0".repeat(32);
    let mut next_id = 1u64;
    for round in 0..counts.warmup + counts.iterations {
        // Rotate which variant goes first in a round (the cyclic order stays the same).
        let mut took = [Duration::ZERO; VARIANTS.len()];
        for k in 0..VARIANTS.len() {
            let which = (round + k) % VARIANTS.len();
            let id = next_id;
            next_id += 1;
            let call = mcp::echo(id, TEXT);
            let what = || format!("round {round}, {}", VARIANTS[which]);
            took[which] = match which {
                0 => via_lodge(ctx, &session, Accept::Both, call, id).await,
                1 => via_lodge(ctx, &session, Accept::Json, call, id).await,
                2 => direct_call(&mut server, &call, id).await,
                3 => http_floor(ctx, &no_session, call).await,
                4 => rmcp_call(&rmcp_client, echo_args.clone()).await,
                _ => http_call(&rmcp_http, &rmcp_session, call, id).await,
            }
            .with_context(what)?;
        }
        if round >= counts.warmup {
            sse.push(took[0]);
            json.push(took[1]);
            direct.push(took[2]);
            floor.push(took[3]);
            via_rmcp_client.push(took[4]);
            via_rmcp_http.push(took[5]);
        }
    }
    ctx.http.delete(&session).await?;
    server.close().await?;
    rmcp_client
        .cancel()
        .await
        .context("stopping the rmcp client")?;
    rmcp_http.delete(&rmcp_session).await?;
    drop(rmcp_http);
    drop(rmcp_server);
    const DIRECT: &str = "direct: same call on stdio";
    const SSE: &str = "relay: tools/call echo via Lodge, SSE answer";
    Ok(vec![
        Row::new(SSE, &sse, Some((DIRECT, &direct)))?,
        Row::new(
            "relay: tools/call echo via Lodge, JSON answer",
            &json,
            Some((DIRECT, &direct)),
        )?,
        Row::new(
            SSE,
            &sse,
            Some((
                "direct: rmcp client (`call_tool`) over stdio",
                &via_rmcp_client,
            )),
        )?,
        Row::new(
            SSE,
            &sse,
            Some((
                "direct: rmcp Streamable HTTP server in-process, same request, SSE answer",
                &via_rmcp_http,
            )),
        )?,
        Row::new(
            "HTTP floor: same POST, unknown session → 404 (no relay)",
            &floor,
            None,
        )?,
    ])
}

async fn via_lodge(
    ctx: &Ctx,
    session: &str,
    accept: Accept,
    call: String,
    id: u64,
) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let mut reply = ctx.http.post_accepting(accept, Some(session), call).await?;
    let response = reply.response_to(id).await?;
    let took = start.elapsed();
    reply.finish().await?;
    mcp::check_echo(&response, TEXT)?;
    Ok(took)
}

async fn direct_call(server: &mut StdioServer, call: &str, id: u64) -> anyhow::Result<Duration> {
    let start = Instant::now();
    server.send(call).await?;
    let response = server.response_to(id).await?;
    let took = start.elapsed();
    mcp::check_echo(&response, TEXT)?;
    Ok(took)
}

async fn http_floor(ctx: &Ctx, no_session: &str, call: String) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let status = ctx.http.post_status(Some(no_session), call).await?;
    let took = start.elapsed();
    if status != reqwest::StatusCode::NOT_FOUND {
        bail!("a POST naming no live session answered {status}, expected 404");
    }
    Ok(took)
}

/// rmcp's client on a `lodge demo-server` child, initialized (rmcp sends
/// `initialize` and `notifications/initialized`).
async fn rmcp_stdio_client(ctx: &Ctx) -> anyhow::Result<RmcpClient> {
    let mut command = tokio::process::Command::new(&ctx.lodge_bin);
    command.arg("demo-server").current_dir(ctx.scratch.path());
    let (transport, _) = TokioChildProcess::builder(command)
        .stderr(std::process::Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {} demo-server", ctx.lodge_bin.display()))?;
    ().serve(transport)
        .await
        .context("rmcp's client could not initialize the demo server")
}

/// The clock covers what a caller of rmcp's client waits for: rmcp serializing the
/// request, the round trip, and parsing the result into rmcp's types.
async fn rmcp_call(client: &RmcpClient, args: JsonObject) -> anyhow::Result<Duration> {
    let params = CallToolRequestParams::new("echo").with_arguments(args);
    let start = Instant::now();
    let result = client.call_tool(params).await?;
    let took = start.elapsed();
    let text = result.content.first().and_then(|c| c.as_text());
    if text.map(|t| t.text.as_str()) != Some(TEXT) || result.is_error == Some(true) {
        bail!("expected {TEXT:?}: {result:?}");
    }
    Ok(took)
}

/// The Lodge row's exchange, sent to another server.
async fn http_call(
    http: &McpHttp,
    session: &str,
    call: String,
    id: u64,
) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let mut reply = http.post(Some(session), call).await?;
    let response = reply.response_to(id).await?;
    let took = start.elapsed();
    reply.finish().await?;
    mcp::check_echo(&response, TEXT)?;
    Ok(took)
}
