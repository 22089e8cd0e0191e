//! Session cold start with a warm pool: per sandbox backend (`process`, `namespaces`),
//! a Lodge hosting the demo server with `warm_pool = 2`, so a new session takes a
//! sandbox started ahead of demand and only the `initialize` exchange remains. Clock
//! as in the cold-start measurement: `initialize` sent with no session (`Accept`
//! both, so an SSE answer) until its result is read.
//!
//! Baselines, interleaved: the same `initialize` sent to a Lodge with the same backend
//! and no pool (what the pool saves), and `initialize` on a server spawned directly
//! ahead of time (what a pool could at best get down to). Spawning directly and
//! initializing is measured too, for the cold-start comparison.
//!
//! Between rounds the bench pauses ([`SETTLE`], untimed), so the pools have refilled
//! and the servers started ahead have finished starting, as they would between
//! sessions that do not arrive back to back. A burst of new sessions larger than the
//! pool is not measured here.

use super::backends::{self, Hosted};
use super::{Counts, Ctx};
use crate::http::McpHttp;
use crate::lodge::Options;
use crate::mcp;
use crate::report::{Row, Target};
use crate::stats::Summary;
use crate::stdio::StdioServer;
use anyhow::Context;
use std::time::{Duration, Instant};

const INIT_ID: u64 = 0;
/// Sandboxes the pooled Lodges keep started.
pub const POOL: usize = 2;
/// Untimed pause after each round.
const SETTLE: Duration = Duration::from_millis(20);
/// The target for a cold start with a warm pool, namespaces backend, p50.
const TARGET_MS: f64 = 2.0;

#[derive(Clone, Copy)]
enum Variant {
    Pooled(usize),
    Unpooled(usize),
    DirectSpawn,
    DirectAhead,
}

pub async fn run(ctx: &Ctx, counts: Counts) -> anyhow::Result<Vec<Row>> {
    let mut notes = Vec::new();
    let pooled = backends::start_each(
        &ctx.lodge_bin,
        &Options {
            warm_pool: Some(POOL),
            ..Options::default()
        },
        &mut notes,
    )?;
    // Unavailable backends were noted once, above.
    let unpooled = backends::start_each(&ctx.lodge_bin, &Options::default(), &mut Vec::new())?;
    for lodge in &pooled {
        eprintln!(
            "lodge-bench: Lodge with warm_pool = {POOL}, {} backend (pid {}) at {}",
            lodge.backend,
            lodge.lodge.pid(),
            lodge.lodge.base
        );
    }
    // Pair each pooled Lodge with the unpooled one of its backend.
    let pairs: Vec<(&Hosted, &Hosted)> = pooled
        .iter()
        .filter_map(|p| {
            let u = unpooled.iter().find(|u| u.backend == p.backend)?;
            Some((p, u))
        })
        .collect();
    let mut variants = Vec::new();
    for i in 0..pairs.len() {
        variants.push(Variant::Pooled(i));
        variants.push(Variant::Unpooled(i));
    }
    variants.push(Variant::DirectSpawn);
    variants.push(Variant::DirectAhead);

    let init = mcp::initialize(INIT_ID);
    let mut samples: Vec<Vec<Duration>> = variants.iter().map(|_| Vec::new()).collect();
    let mut spawned_ahead = Some(StdioServer::spawn(&ctx.lodge_bin, ctx.scratch.path())?);
    tokio::time::sleep(SETTLE).await;
    for round in 0..counts.warmup + counts.iterations {
        // Rotate which variant goes first in a round (the cyclic order stays the same).
        for k in 0..variants.len() {
            let which = (round + k) % variants.len();
            let (took, what) = match variants[which] {
                Variant::Pooled(i) => (
                    through_lodge(&pairs[i].0.http, &init).await,
                    format!("Lodge, warm pool, {}", pairs[i].0.backend),
                ),
                Variant::Unpooled(i) => (
                    through_lodge(&pairs[i].1.http, &init).await,
                    format!("Lodge, no pool, {}", pairs[i].1.backend),
                ),
                Variant::DirectSpawn => (
                    spawn_and_initialize(ctx, &init).await,
                    "direct spawn".to_string(),
                ),
                Variant::DirectAhead => (
                    initialize_ahead(spawned_ahead.take(), &init).await,
                    "direct, spawned ahead".to_string(),
                ),
            };
            let took = took.with_context(|| format!("round {round}, {what}"))?;
            if round >= counts.warmup {
                samples[which].push(took);
            }
        }
        spawned_ahead = Some(StdioServer::spawn(&ctx.lodge_bin, ctx.scratch.path())?);
        tokio::time::sleep(SETTLE).await;
    }
    if let Some(server) = spawned_ahead {
        server.close().await?;
    }
    let backends: Vec<&str> = pairs.iter().map(|(p, _)| p.backend).collect();
    drop(pairs);
    drop(pooled);
    drop(unpooled);

    // Samples are in `variants` order: per backend pooled then unpooled, then direct.
    let n = backends.len();
    let (direct, ahead) = (&samples[2 * n], &samples[2 * n + 1]);
    let mut rows = notes;
    let mut namespaces_p50 = None;
    let mut no_pool_rows = Vec::new();
    for (i, backend) in backends.iter().enumerate() {
        let (pooled, unpooled) = (&samples[2 * i], &samples[2 * i + 1]);
        let row = format!("cold start, warm pool, {backend}: initialize via Lodge, SSE answer");
        rows.push(Row::new(
            &row,
            pooled,
            Some((&format!("same, {backend}, Lodge without a pool"), unpooled)),
        )?);
        rows.push(Row::new(
            &row,
            pooled,
            Some(("direct: initialize on a server spawned ahead", ahead)),
        )?);
        no_pool_rows.push(Row::new(
            &format!(
                "cold start, no pool, {backend} (same rounds): initialize via Lodge, SSE answer"
            ),
            unpooled,
            Some(("direct: spawn + initialize on stdio", direct)),
        )?);
        if *backend == "namespaces" {
            namespaces_p50 = Summary::of(pooled).map(|s| s.p50);
        }
    }
    rows.extend(no_pool_rows);
    rows.push(
        Row::figure(
            "issue target: cold start p50 with a warm pool, namespaces backend, demo server",
            namespaces_p50.map(|p50| p50.as_secs_f64() * 1e3),
            "ms",
        )
        .target(Target::AtMost(TARGET_MS))
        .row(),
    );
    Ok(rows)
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
