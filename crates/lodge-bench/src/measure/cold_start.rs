//! Session cold start: a new session's `initialize`, sent to Lodge, until its result
//! arrives; Lodge creates the session, spawns the server in its sandbox and relays
//! the exchange. Baseline: spawning the same server directly and doing the same
//! `initialize` on its stdio (spawn included, as Lodge has to spawn too).
//!
//! A matrix: each sandbox backend (`process`, `namespaces`; one Lodge each, started
//! for this measurement) x each server (the demo, `lodge demo-server`; and the Python
//! SDK fixture, tests/fixtures/python/server.py in the venv of
//! `scripts/setup-python.sh`). Per server, every backend's Lodge and the direct
//! baseline take turns sample by sample, so the backends are compared in the same
//! rounds too. The demo is also measured as a JSON-only client (answered with one
//! JSON body instead of SSE). A Python server takes ~0.6 s to start, so it gets
//! fewer rounds ([`python_counts`]).
//!
//! Also reported: teardown, i.e. `DELETE` until Lodge answers (it answers once the
//! sandbox is gone), against closing the direct server's stdin until it exits.
//!
//! A backend that cannot run here (namespaces needs user namespaces, seccomp...) and
//! a missing Python venv become notes in the report instead of failures.

use super::backends::{self, Hosted, note};
use super::{Counts, Ctx};
use crate::direct::DirectServer;
use crate::http::{Accept, McpHttp};
use crate::lodge::Options;
use crate::mcp;
use crate::python;
use crate::report::{Row, Target};
use crate::stats::Summary;
use anyhow::Context;
use std::time::{Duration, Instant};

const INIT_ID: u64 = 0;
/// The target for a cold start, namespaces backend, demo server, p50.
const TARGET_MS: f64 = 10.0;

/// Rounds for the Python server: a tenth of the demo's (200 → 20, 20 → 2), and a fifth
/// of its warm-up (5 → 1: the first start fills the page cache; --quick's 2 → 0).
fn python_counts(demo: Counts) -> Counts {
    Counts {
        warmup: demo.warmup / 5,
        iterations: (demo.iterations / 10).max(1),
    }
}

#[derive(Default)]
struct Samples {
    start: Vec<Duration>,
    end: Vec<Duration>,
}

impl Samples {
    fn push(&mut self, (start, end): (Duration, Duration)) {
        self.start.push(start);
        self.end.push(end);
    }
}

/// One way of starting a session, taking its turn in every round.
#[derive(Clone, Copy)]
enum Variant {
    /// `hosted[i]`, answered as `accept` asks.
    Lodge(usize, Accept),
    Direct,
}

pub async fn run(ctx: &Ctx, counts: Counts) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();

    let demo = vec![ctx.lodge_bin.display().to_string(), "demo-server".into()];
    let hosted = backends::start_each(&ctx.lodge_bin, &Options::default(), &mut rows)?;
    let (demo_rows, namespaces_p50) = matrix(ctx, "demo", &demo, &hosted, true, counts).await?;
    drop(hosted);
    rows.extend(demo_rows);
    // With namespaces unavailable, the target is reported as not measured.
    rows.push(
        Row::figure(
            "issue target: cold start p50, namespaces backend, demo server, SSE answer",
            namespaces_p50.map(|p50| p50.as_secs_f64() * 1e3),
            "ms",
        )
        .target(Target::AtMost(TARGET_MS))
        .row(),
    );

    match python::fixture_server() {
        Ok(argv) => {
            let options = Options {
                command: Some(argv.clone()),
                ..Options::default()
            };
            let hosted = backends::start_each(&ctx.lodge_bin, &options, &mut rows)?;
            let (python_rows, _) = matrix(
                ctx,
                "Python SDK",
                &argv,
                &hosted,
                false,
                python_counts(counts),
            )
            .await?;
            rows.extend(python_rows);
        }
        Err(why) => rows.push(note(&format!("Python SDK server rows skipped: {why}"))),
    }
    Ok(rows)
}

/// Cold start of `argv` through every Lodge in `hosted` and directly, interleaved.
/// Returns the rows, and the p50 of the namespaces backend's SSE cold start (if any).
async fn matrix(
    ctx: &Ctx,
    server: &str,
    argv: &[String],
    hosted: &[Hosted],
    with_json: bool,
    counts: Counts,
) -> anyhow::Result<(Vec<Row>, Option<Duration>)> {
    let init = mcp::initialize(INIT_ID);
    let mut variants = Vec::new();
    for i in 0..hosted.len() {
        variants.push(Variant::Lodge(i, Accept::Both));
        if with_json {
            variants.push(Variant::Lodge(i, Accept::Json));
        }
    }
    variants.push(Variant::Direct);
    let mut samples: Vec<Samples> = variants.iter().map(|_| Samples::default()).collect();
    eprintln!(
        "lodge-bench: cold start, {server}: {} warm-up + {} timed rounds",
        counts.warmup, counts.iterations
    );
    for round in 0..counts.warmup + counts.iterations {
        // Rotate which variant goes first in a round (the cyclic order stays the same).
        for k in 0..variants.len() {
            let which = (round + k) % variants.len();
            let took = match variants[which] {
                Variant::Lodge(i, accept) => through_lodge(&hosted[i].http, accept, &init)
                    .await
                    .with_context(|| format!("{server}, round {round}, {}", hosted[i].backend)),
                Variant::Direct => directly(ctx, argv, &init)
                    .await
                    .with_context(|| format!("{server}, round {round}, direct")),
            }?;
            if round >= counts.warmup {
                samples[which].push(took);
            }
        }
    }

    let direct = samples.last().context("no direct variant")?;
    let direct_start = format!("direct: spawn + initialize on stdio, {server}");
    let direct_end = format!("direct: close stdin, wait for exit, {server}");
    // Start rows first, then teardowns, so each baseline is listed once, after its rows.
    let (mut starts, mut ends) = (Vec::new(), Vec::new());
    let mut namespaces_p50 = None;
    for (variant, s) in variants.iter().zip(&samples) {
        let Variant::Lodge(i, accept) = *variant else {
            continue;
        };
        let backend = hosted[i].backend;
        let answer = match accept {
            Accept::Both => "SSE answer",
            Accept::Json => "JSON answer",
        };
        let row = Row::new(
            &format!("cold start, {backend}, {server}: initialize via Lodge, {answer}"),
            &s.start,
            Some((&direct_start, &direct.start)),
        )?;
        if accept == Accept::Both {
            if backend == "namespaces" {
                namespaces_p50 = Summary::of(&s.start).map(|s| s.p50);
            }
            ends.push(Row::new(
                &format!("teardown, {backend}, {server}: DELETE via Lodge"),
                &s.end,
                Some((&direct_end, &direct.end)),
            )?);
        }
        starts.push(row);
    }
    starts.extend(ends);
    Ok((starts, namespaces_p50))
}

/// (initialize round trip, DELETE round trip)
async fn through_lodge(
    http: &McpHttp,
    accept: Accept,
    init: &str,
) -> anyhow::Result<(Duration, Duration)> {
    let body = init.to_string();
    let start = Instant::now();
    let mut reply = http.post_accepting(accept, None, body).await?;
    let response = reply.response_to(INIT_ID).await?;
    let started = start.elapsed();
    let session = reply
        .session_id()
        .context("initialize answered without an Mcp-Session-Id")?;
    reply.finish().await?;
    mcp::check_initialized(&response)?;

    let start = Instant::now();
    http.delete(&session).await?;
    Ok((started, start.elapsed()))
}

async fn directly(ctx: &Ctx, argv: &[String], init: &str) -> anyhow::Result<(Duration, Duration)> {
    let start = Instant::now();
    let mut server = DirectServer::spawn(argv, ctx.scratch.path())?;
    let response = server.request(init, INIT_ID).await?;
    let started = start.elapsed();
    mcp::check_initialized(&response)?;

    let start = Instant::now();
    server.close().await?;
    Ok((started, start.elapsed()))
}
