//! Throughput: `tools/call echo {"text":"hi"}` from C concurrent callers spread over S
//! sessions, each caller looping call after call (the next call leaves once the
//! previous answer is read), for a fixed time slice. Reported as calls/s (calls
//! completed ÷ time until the last caller's last call returned) and as per-call
//! latency under that load.
//!
//! Through Lodge: S legacy sessions (2025-11-25), `Accept` both, so every answer is an
//! SSE stream, as spec clients ask. The callers share one pooled `reqwest::Client`: with
//! C calls in flight it keeps C keep-alive connections, one per caller in effect.
//!
//! Two baselines, each reached by the same C callers over S of its own sessions or
//! servers:
//!
//! - **direct stdio**: S `lodge demo-server` processes, the C callers pipelining
//!   requests with distinct ids over each server's stdin/stdout ([`Pipelined`]). The
//!   ceiling, not a like-for-like alternative: no HTTP, no per-call connection
//!   turn-around, no second hop.
//! - **rmcp Streamable HTTP, in-process**: the demo's handler served by rmcp's
//!   `StreamableHttpService` ([`crate::rmcp_http`]), S sessions opened on it exactly as
//!   on Lodge (`initialize` + `notifications/initialized`, legacy, SSE answers), the
//!   callers sending the same request bytes with a client built the same way. The like
//!   for like: the demo served over HTTP with nothing in between, so Lodge's ratio
//!   against it is what hosting the servers out of process costs under load. The rmcp
//!   server runs in the bench process on a multi-thread runtime of its own, so it
//!   competes for the same CPUs as the callers, Lodge and the demo servers (Lodge's
//!   servers sit idle while the rmcp slice runs, and the other way round).
//!
//! The three alternate slice by slice (which goes first rotates by round), so noise
//! hits all of them. All of it, Lodge, the servers, the rmcp server and the bench's
//! own callers (on a multi-thread runtime), shares the machine's CPUs: on a 2-core
//! machine the client's own work is a large part of what is measured, and the HTTP
//! client costs more per call than writing a line to a pipe.
//!
//! For reference, the HTTP floor at 64 callers: the same POST naming a session that
//! does not exist, answered 404 by Lodge's front without any session or server.

use super::load::{Slice, Tally, on_load_runtime, run_slice};
use super::pipelined::{Caller, Pipelined};
use super::{Counts, Ctx};
use crate::http::McpHttp;
use crate::mcp;
use crate::report::{Row, Target};
use crate::rmcp_http::RmcpHttp;
use anyhow::{Context, bail};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

const TEXT: &str = "hi";
/// Each variant runs for this long per round.
const SLICE: Duration = Duration::from_millis(250);
/// (callers, sessions) configurations.
const CONFIGS: [(usize, usize); 3] = [(1, 1), (64, 8), (64, 64)];
/// Callers for the HTTP floor.
const FLOOR_CALLERS: usize = 64;
/// The target, at 64 concurrent calls: Lodge ≥ 0.7 × direct. Applied against
/// both baselines, so the ceiling and the like-for-like ratio are both visible.
const TARGET: f64 = 0.7;
/// The ways the callers reach the demo server, indexed as [`Results::configs`]' slices.
const VARIANTS: [&str; 3] = ["via Lodge", "direct stdio", "rmcp HTTP server"];
const LODGE: usize = 0;
const DIRECT: usize = 1;
const RMCP: usize = 2;

pub async fn run(ctx: &Ctx, counts: Counts) -> anyhow::Result<Vec<Row>> {
    let url = ctx.lodge.url();
    let lodge_bin = ctx.lodge_bin.clone();
    let cwd = ctx.scratch.path().to_path_buf();
    let backend = ctx.lodge.backend().unwrap_or_else(|| "unknown".to_string());
    // Started out here and stopped after the load runtime is gone: stopping waits for
    // its connections to close, and the client's end of them lives on that runtime.
    let rmcp_server = RmcpHttp::start()?;
    let rmcp_url = rmcp_server.url.clone();
    let results = on_load_runtime(move || measure(url, rmcp_url, lodge_bin, cwd, counts)).await?;
    drop(rmcp_server);

    let mut rows = Vec::new();
    for (config, slices) in &results.configs {
        let (callers, sessions) = *config;
        let (lodge, direct, rmcp) = (&slices[LODGE], &slices[DIRECT], &slices[RMCP]);
        let what = format!(
            "{callers} caller{} over {sessions} session{}",
            plural(callers),
            plural(sessions)
        );
        let direct_name = format!(
            "direct: {sessions} `lodge demo-server` on stdio, {callers} caller{} pipelining",
            plural(callers)
        );
        let rmcp_name = format!(
            "direct: rmcp Streamable HTTP server in-process (own runtime, same 2 CPUs), {sessions} session{}, {callers} caller{}, same request, SSE answer",
            plural(sessions),
            plural(callers)
        );
        let throughput = format!(
            "throughput, {what}: tools/call echo via Lodge ({backend}), SSE answer; client on the same 2 CPUs"
        );
        let under_load = format!("under load, {what}: tools/call echo via Lodge, SSE answer");
        for (name, baseline) in [(&direct_name, direct), (&rmcp_name, rmcp)] {
            let mut figure = Row::figure(&throughput, Some(lodge.rate().round()), "calls/s")
                .baseline(name, baseline.rate().round());
            if callers == 64 {
                figure = figure.target(Target::RatioAtLeast(TARGET));
            }
            rows.push(figure.row());
        }
        for (name, baseline) in [(&direct_name, direct), (&rmcp_name, rmcp)] {
            rows.push(Row::new(
                &under_load,
                &lodge.latencies,
                Some((name, &baseline.latencies)),
            )?);
        }
    }
    rows.push(
        Row::figure(
            &format!(
                "throughput, HTTP floor, {FLOOR_CALLERS} callers: POST naming no session → 404 (no relay)"
            ),
            Some(results.floor.rate().round()),
            "calls/s",
        )
        .row(),
    );
    Ok(rows)
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

struct Results {
    /// Per configuration: (callers, sessions), then one slice per variant, in the
    /// order of [`VARIANTS`].
    configs: Vec<((usize, usize), [Slice; VARIANTS.len()])>,
    floor: Slice,
}

/// Where one caller's calls go: a session on an HTTP server (Lodge or rmcp's), or a
/// direct server.
#[derive(Clone)]
enum Via {
    Http(McpHttp, Arc<str>),
    Direct(Caller),
}

async fn measure(
    url: String,
    rmcp_url: String,
    lodge_bin: PathBuf,
    cwd: PathBuf,
    counts: Counts,
) -> anyhow::Result<Results> {
    // Clients of their own: a reqwest::Client belongs to the runtime that made it. Both
    // are built the same way (`McpHttp::new`), so the two HTTP variants differ only in
    // the server answering.
    let http = McpHttp::new(url)?;
    let rmcp_http = McpHttp::new(rmcp_url)?;
    let mut sessions: Vec<Vec<Arc<str>>> = Vec::new();
    let mut rmcp_sessions: Vec<Vec<Arc<str>>> = Vec::new();
    let mut servers: Vec<Vec<Pipelined>> = Vec::new();
    for (_, count) in CONFIGS {
        let mut these = Vec::with_capacity(count);
        let mut on_rmcp = Vec::with_capacity(count);
        let mut procs = Vec::with_capacity(count);
        for _ in 0..count {
            these.push(http.open_session().await?.into());
            on_rmcp.push(
                rmcp_http
                    .open_session()
                    .await
                    .context("opening a session on rmcp's HTTP server")?
                    .into(),
            );
            procs.push(open_direct(&lodge_bin, &cwd).await?);
        }
        sessions.push(these);
        rmcp_sessions.push(on_rmcp);
        servers.push(procs);
    }

    let mut configs: Vec<_> = CONFIGS
        .iter()
        .map(|c| (*c, std::array::from_fn(|_| Slice::default())))
        .collect();
    let mut floor = Slice::default();
    for round in 0..counts.warmup + counts.iterations {
        let timed = round >= counts.warmup;
        for (k, &(callers, _)) in CONFIGS.iter().enumerate() {
            // Rotate which variant goes first in a round (the cyclic order stays).
            for step in 0..VARIANTS.len() {
                let which = (round + step) % VARIANTS.len();
                let targets = match which {
                    LODGE => http_targets(&http, &sessions[k], callers),
                    RMCP => http_targets(&rmcp_http, &rmcp_sessions[k], callers),
                    _ => direct_targets(&servers[k], callers)?,
                };
                let slice = run_slice(tagged(targets), SLICE, caller_loop)
                    .await
                    .with_context(|| {
                        format!(
                            "round {round}, {callers} callers over {} sessions, {}",
                            CONFIGS[k].1, VARIANTS[which]
                        )
                    })?;
                if timed {
                    configs[k].1[which].add(slice);
                }
            }
        }
        let floor_tasks: Vec<_> = (0..FLOOR_CALLERS as u64)
            .map(|i| (i, http.clone()))
            .collect();
        let slice = run_slice(floor_tasks, SLICE, floor_loop)
            .await
            .with_context(|| format!("round {round}, HTTP floor"))?;
        if timed {
            floor.add(slice);
        }
    }

    for session in sessions.iter().flatten() {
        http.delete(session).await?;
    }
    for session in rmcp_sessions.iter().flatten() {
        rmcp_http.delete(session).await?;
    }
    for server in servers.into_iter().flatten() {
        server.close().await?;
    }
    Ok(Results { configs, floor })
}

/// Caller i uses session i mod S.
fn http_targets(http: &McpHttp, sessions: &[Arc<str>], callers: usize) -> Vec<Via> {
    (0..callers)
        .map(|i| Via::Http(http.clone(), sessions[i % sessions.len()].clone()))
        .collect()
}

/// Caller i pipelines on server i mod S.
fn direct_targets(servers: &[Pipelined], callers: usize) -> anyhow::Result<Vec<Via>> {
    (0..callers)
        .map(|i| servers[i % servers.len()].caller().map(Via::Direct))
        .collect()
}

/// Gives each caller its own id range, so ids never collide within a session or server.
fn tagged(targets: Vec<Via>) -> Vec<(u64, Via)> {
    (0..).zip(targets).collect()
}

async fn open_direct(
    lodge_bin: &std::path::Path,
    cwd: &std::path::Path,
) -> anyhow::Result<Pipelined> {
    let server = Pipelined::spawn(lodge_bin, cwd)?;
    let caller = server.caller()?;
    mcp::check_initialized(&caller.call(0, &mcp::initialize(0)).await?)?;
    caller.notify(&mcp::initialized())?;
    Ok(server)
}

/// Calls until the deadline; each call's latency from the send to its result read.
async fn caller_loop((index, target): (u64, Via), deadline: Instant) -> anyhow::Result<Tally> {
    let mut tally = Tally::default();
    // Ids 1.. per caller, offset by caller: 1_000_000_000 ids each.
    let mut id = index * 1_000_000_000;
    while Instant::now() < deadline {
        id += 1;
        let call = mcp::echo(id, TEXT);
        let start = Instant::now();
        let response = match &target {
            Via::Http(http, session) => {
                let mut reply = http.post(Some(session), call).await?;
                let response = reply.response_to(id).await?;
                let took = start.elapsed();
                reply.finish().await?;
                tally.latencies.push(took);
                response
            }
            Via::Direct(caller) => {
                let response = caller.call(id, &call).await?;
                tally.latencies.push(start.elapsed());
                response
            }
        };
        mcp::check_echo(&response, TEXT).with_context(|| format!("call {id}"))?;
        tally.done += 1;
    }
    Ok(tally)
}

async fn floor_loop((index, http): (u64, McpHttp), deadline: Instant) -> anyhow::Result<Tally> {
    let mut tally = Tally::default();
    let no_session = "0".repeat(32);
    let mut id = index * 1_000_000_000;
    while Instant::now() < deadline {
        id += 1;
        let status = http
            .post_status(Some(&no_session), mcp::echo(id, TEXT))
            .await?;
        if status != reqwest::StatusCode::NOT_FOUND {
            bail!("a POST naming no live session answered {status}, expected 404");
        }
        tally.done += 1;
    }
    Ok(tally)
}
