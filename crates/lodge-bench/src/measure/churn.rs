//! Session churn: sessions created and ended per second, by K workers each looping
//! one whole session after another, for a fixed time slice.
//!
//! Through Lodge, a session is: `initialize` with no session (`Accept` both, SSE
//! answer read), `notifications/initialized` (202), `DELETE` (Lodge answers once the
//! sandbox is gone). Measured on the bench's main Lodge (its default sandbox backend)
//! and, if that is not already `process`, on a second Lodge with the `process` backend.
//! Directly: spawn `lodge demo-server`, the same two messages on its stdio, close its
//! stdin, wait for it to exit.
//!
//! Variants alternate slice by slice (the first rotates from round to round). The
//! workers share one pooled HTTP client on the load runtime, on the same CPUs as Lodge
//! and the servers. A failed session is counted and the worker goes on; every figure
//! comes with the error count, which should be 0.

use super::load::{Slice, Tally, on_load_runtime, run_slice};
use super::{Counts, Ctx};
use crate::http::McpHttp;
use crate::lodge::Options;
use crate::mcp;
use crate::report::{Row, Target};
use crate::stdio::StdioServer;
use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Each variant runs for this long per round.
const SLICE: Duration = Duration::from_millis(500);
const WORKERS: [usize; 2] = [1, 8];

/// Where sessions are made: a Lodge (its MCP URL), or directly.
#[derive(Clone)]
enum Via {
    Lodge(McpHttp),
    Direct(Arc<(PathBuf, PathBuf)>),
}

pub async fn run(ctx: &Ctx, counts: Counts) -> anyhow::Result<Vec<Row>> {
    let main_backend = ctx.lodge.backend().unwrap_or_else(|| "unknown".to_string());
    let mut lodges = vec![(main_backend.clone(), ctx.lodge.url())];
    // Kept alive until the measurement ends; stopped (SIGTERM) on drop.
    let _process_lodge = if main_backend == "process" {
        None
    } else {
        let lodge = crate::lodge::start(
            &ctx.lodge_bin,
            &Options {
                backend: Some("process".to_string()),
                ..Options::default()
            },
        )?;
        eprintln!(
            "lodge-bench: churn: Lodge with the process backend (pid {}) at {}",
            lodge.pid(),
            lodge.base
        );
        lodges.push(("process".to_string(), lodge.url()));
        Some(lodge)
    };
    let direct = Arc::new((ctx.lodge_bin.clone(), ctx.scratch.path().to_path_buf()));
    let names: Vec<String> = lodges.iter().map(|(b, _)| b.clone()).collect();
    let slices = on_load_runtime(move || measure(lodges, direct, counts)).await?;

    const DIRECT: &str = "direct: spawn `lodge demo-server`, initialize + initialized on stdio, close stdin, wait for exit";
    let mut rows = Vec::new();
    for (w, &workers) in WORKERS.iter().enumerate() {
        let direct = &slices[w][names.len()];
        let direct_name = format!("{DIRECT}, {workers} worker{}", plural(workers));
        for (b, backend) in names.iter().enumerate() {
            let lodge = &slices[w][b];
            rows.push(
                Row::figure(
                    &format!(
                        "churn, {workers} worker{}: sessions created + ended via Lodge ({backend}): initialize (SSE) + initialized + DELETE",
                        plural(workers)
                    ),
                    Some(lodge.rate().round()),
                    "sessions/s",
                )
                .baseline(&direct_name, direct.rate().round())
                .row(),
            );
        }
    }
    for (b, backend) in names.iter().enumerate() {
        rows.push(errors(
            &format!("via Lodge ({backend})"),
            slices.iter().map(|per_variant| &per_variant[b]),
        ));
    }
    rows.push(errors(
        "direct",
        slices.iter().map(|per_variant| &per_variant[names.len()]),
    ));
    Ok(rows)
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// The failed sessions of one variant over every worker count, with the first
/// failure's message.
fn errors<'a>(what: &str, slices: impl Iterator<Item = &'a Slice>) -> Row {
    let (mut count, mut first, mut sessions) = (0, None, 0);
    for s in slices {
        count += s.errors;
        sessions += s.done;
        first = first.or(s.first_error.clone());
    }
    let mut metric = format!("churn errors {what}, all worker counts ({sessions} sessions)");
    if let Some(first) = first {
        metric.push_str(&format!("; first: {first}"));
    }
    Row::figure(&metric, Some(count as f64), "errors")
        .target(Target::AtMost(0.0))
        .row()
}

/// Per worker count: one slice total per variant (the Lodges in order, then direct).
async fn measure(
    lodges: Vec<(String, String)>,
    direct: Arc<(PathBuf, PathBuf)>,
    counts: Counts,
) -> anyhow::Result<Vec<Vec<Slice>>> {
    let mut variants = Vec::new();
    for (_, url) in &lodges {
        // A client of its own: a reqwest::Client belongs to the runtime that made it.
        variants.push(Via::Lodge(McpHttp::new(url.clone())?));
    }
    variants.push(Via::Direct(direct));
    let mut totals: Vec<Vec<Slice>> = WORKERS
        .iter()
        .map(|_| variants.iter().map(|_| Slice::default()).collect())
        .collect();
    for round in 0..counts.warmup + counts.iterations {
        for (w, &workers) in WORKERS.iter().enumerate() {
            for k in 0..variants.len() {
                let v = (round + k) % variants.len();
                let tasks = vec![variants[v].clone(); workers];
                let slice = run_slice(tasks, SLICE, worker)
                    .await
                    .with_context(|| format!("round {round}, {workers} workers, variant {v}"))?;
                if let Some(e) = &slice.first_error {
                    eprintln!(
                        "lodge-bench: churn: {} failed sessions, first: {e}",
                        slice.errors
                    );
                }
                if round >= counts.warmup {
                    totals[w][v].add(slice);
                }
            }
        }
    }
    Ok(totals)
}

async fn worker(via: Via, deadline: Instant) -> anyhow::Result<Tally> {
    let mut tally = Tally::default();
    while Instant::now() < deadline {
        let result = match &via {
            Via::Lodge(http) => through_lodge(http).await,
            Via::Direct(paths) => directly(&paths.0, &paths.1).await,
        };
        match result {
            Ok(()) => tally.done += 1,
            Err(e) => tally.error(e)?,
        }
    }
    Ok(tally)
}

async fn through_lodge(http: &McpHttp) -> anyhow::Result<()> {
    let session = http.open_session().await?;
    http.delete(&session).await
}

async fn directly(lodge_bin: &Path, cwd: &Path) -> anyhow::Result<()> {
    let mut server = StdioServer::spawn(lodge_bin, cwd)?;
    server.send(&mcp::initialize(0)).await?;
    mcp::check_initialized(&server.response_to(0).await?)?;
    server.send(&mcp::initialized()).await?;
    let status = server.close().await?;
    if !status.success() {
        bail!("the server exited with {status}");
    }
    Ok(())
}
