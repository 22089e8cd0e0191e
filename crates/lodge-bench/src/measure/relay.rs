//! Relay overhead: sequential `tools/call echo {"text":"hi"}` round trips in one
//! session, through Lodge (HTTP POST, response read from the SSE stream; and again
//! as a JSON-only client) against the same server reached directly over stdio
//! (write a line, read a line).
//!
//! For reference, the HTTP floor: the same POST naming a session that does not exist,
//! which Lodge's front answers (404) without involving a session or server. What the
//! relay adds beyond it is the session actor, the pipes and the server's own time.

use super::{Counts, Ctx};
use crate::http::Accept;
use crate::mcp;
use crate::report::Row;
use crate::stdio::StdioServer;
use anyhow::{Context, bail};
use std::time::{Duration, Instant};

const TEXT: &str = "hi";
const VARIANTS: [&str; 4] = ["Lodge, SSE", "Lodge, JSON", "direct", "HTTP floor"];

pub async fn run(ctx: &Ctx, counts: Counts) -> anyhow::Result<Vec<Row>> {
    // Through Lodge: one session, set up as a client would.
    let mut reply = ctx.http.post(None, mcp::initialize(0)).await?;
    mcp::check_initialized(&reply.response_to(0).await?)?;
    let session = reply
        .session_id()
        .context("initialize answered without an Mcp-Session-Id")?;
    reply.finish().await?;
    ctx.http.notify(&session, mcp::initialized()).await?;

    // Directly: one process, same two messages.
    let mut server = StdioServer::spawn(&ctx.lodge_bin, ctx.scratch.path())?;
    server.send(&mcp::initialize(0)).await?;
    mcp::check_initialized(&server.response_to(0).await?)?;
    server.send(&mcp::initialized()).await?;

    let mut sse = Vec::with_capacity(counts.iterations);
    let mut json = Vec::with_capacity(counts.iterations);
    let mut direct = Vec::with_capacity(counts.iterations);
    let mut floor = Vec::with_capacity(counts.iterations);
    let no_session = "0".repeat(32);
    let mut next_id = 1u64;
    for round in 0..counts.warmup + counts.iterations {
        // Rotate which variant goes first in a round (the cyclic order stays the same).
        let mut took = [Duration::ZERO; 4];
        for k in 0..4 {
            let which = (round + k) % 4;
            let id = next_id;
            next_id += 1;
            let call = mcp::echo(id, TEXT);
            let what = || format!("round {round}, {}", VARIANTS[which]);
            took[which] = match which {
                0 => via_lodge(ctx, &session, Accept::Both, call, id).await,
                1 => via_lodge(ctx, &session, Accept::Json, call, id).await,
                2 => direct_call(&mut server, &call, id).await,
                _ => http_floor(ctx, &no_session, call).await,
            }
            .with_context(what)?;
        }
        if round >= counts.warmup {
            sse.push(took[0]);
            json.push(took[1]);
            direct.push(took[2]);
            floor.push(took[3]);
        }
    }
    ctx.http.delete(&session).await?;
    server.close().await?;
    const DIRECT: &str = "direct: same call on stdio";
    Ok(vec![
        Row::new(
            "relay: tools/call echo via Lodge, SSE answer",
            &sse,
            Some((DIRECT, &direct)),
        )?,
        Row::new(
            "relay: tools/call echo via Lodge, JSON answer",
            &json,
            Some((DIRECT, &direct)),
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
