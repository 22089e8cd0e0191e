//! Session cold start with a warm pool: a second Lodge, hosting the same demo server
//! with `warm_pool = 2`, so a new session takes a sandbox started ahead of demand and
//! only the `initialize` exchange remains. Clock as in the cold-start measurement:
//! `initialize` sent with no session (`Accept` both, so an SSE answer) until its
//! result is read.
//!
//! Baselines, interleaved: the same `initialize` sent to the main Lodge, which has no
//! pool (what the pool saves), and `initialize` on a server spawned directly ahead of
//! time (what a pool could at best get down to). Spawning directly and initializing
//! is measured too, for the cold-start comparison.
//!
//! Between rounds the bench pauses ([`SETTLE`], untimed), so the pool has refilled and
//! the servers started ahead have finished starting, as they would between sessions
//! that do not arrive back to back. A burst of new sessions larger than the pool is
//! not measured here.

use super::{Counts, Ctx};
use crate::http::McpHttp;
use crate::lodge::LodgeServer;
use crate::mcp;
use crate::report::Row;
use crate::stdio::StdioServer;
use anyhow::Context;
use std::time::{Duration, Instant};

const INIT_ID: u64 = 0;
/// Sandboxes the pooled Lodge keeps started.
pub const POOL: usize = 2;
/// Untimed pause after each round.
const SETTLE: Duration = Duration::from_millis(20);
const VARIANTS: [&str; 4] = [
    "Lodge, warm pool",
    "Lodge, no pool",
    "direct spawn",
    "direct, spawned ahead",
];

pub async fn run(ctx: &Ctx, counts: Counts) -> anyhow::Result<Vec<Row>> {
    let lodge = LodgeServer::start_pooled(&ctx.lodge_bin, POOL)?;
    eprintln!(
        "lodge-bench: Lodge with warm_pool = {POOL} (pid {}) at {}",
        lodge.pid(),
        lodge.base_url
    );
    let http = McpHttp::new(lodge.mcp_url())?;
    let init = mcp::initialize(INIT_ID);
    let (mut pooled, mut unpooled, mut direct, mut ahead) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut spawned_ahead = Some(StdioServer::spawn(&ctx.lodge_bin, ctx.scratch.path())?);
    tokio::time::sleep(SETTLE).await;
    for round in 0..counts.warmup + counts.iterations {
        let mut took = [Duration::ZERO; 4];
        for k in 0..4 {
            let which = (round + k) % 4;
            took[which] = match which {
                0 => through_lodge(&http, &init).await,
                1 => through_lodge(&ctx.http, &init).await,
                2 => spawn_and_initialize(ctx, &init).await,
                _ => initialize_ahead(spawned_ahead.take(), &init).await,
            }
            .with_context(|| format!("round {round}, {}", VARIANTS[which]))?;
        }
        if round >= counts.warmup {
            pooled.push(took[0]);
            unpooled.push(took[1]);
            direct.push(took[2]);
            ahead.push(took[3]);
        }
        spawned_ahead = Some(StdioServer::spawn(&ctx.lodge_bin, ctx.scratch.path())?);
        tokio::time::sleep(SETTLE).await;
    }
    if let Some(server) = spawned_ahead {
        server.close().await?;
    }
    drop(lodge);
    const ROW: &str = "cold start, warm pool: initialize via Lodge, SSE answer";
    Ok(vec![
        Row::new(
            ROW,
            &pooled,
            Some(("same, Lodge without a pool", &unpooled)),
        )?,
        Row::new(
            ROW,
            &pooled,
            Some(("direct: initialize on a server spawned ahead", &ahead)),
        )?,
        Row::new(
            "cold start, no pool (same rounds): initialize via Lodge, SSE answer",
            &unpooled,
            Some(("direct: spawn + initialize on stdio", &direct)),
        )?,
    ])
}

async fn through_lodge(http: &McpHttp, init: &str) -> anyhow::Result<Duration> {
    let body = init.to_string();
    let start = Instant::now();
    let mut reply = http.post(None, body).await?;
    let response = reply.response_to(INIT_ID).await?;
    let took = start.elapsed();
    let session = reply
        .session_id()
        .context("initialize answered without an Mcp-Session-Id")?;
    reply.finish().await?;
    mcp::check_initialized(&response)?;
    http.delete(&session).await?;
    Ok(took)
}

async fn spawn_and_initialize(ctx: &Ctx, init: &str) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let mut server = StdioServer::spawn(&ctx.lodge_bin, ctx.scratch.path())?;
    server.send(init).await?;
    let response = server.response_to(INIT_ID).await?;
    let took = start.elapsed();
    mcp::check_initialized(&response)?;
    server.close().await?;
    Ok(took)
}

async fn initialize_ahead(server: Option<StdioServer>, init: &str) -> anyhow::Result<Duration> {
    let mut server = server.context("no server was spawned ahead")?;
    let start = Instant::now();
    server.send(init).await?;
    let response = server.response_to(INIT_ID).await?;
    let took = start.elapsed();
    mcp::check_initialized(&response)?;
    server.close().await?;
    Ok(took)
}
