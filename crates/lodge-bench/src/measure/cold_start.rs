//! Session cold start: a new session's `initialize`, sent to Lodge, until its result
//! arrives; Lodge creates the session, spawns the server in its sandbox and relays
//! the exchange. Baseline: spawning the same server directly and doing the same
//! `initialize` on its stdio (spawn included, as Lodge has to spawn too).
//!
//! Measured twice through Lodge: as the spec's clients ask (`Accept` both, answered
//! with SSE) and as a JSON-only client (answered with one JSON body).
//!
//! Also reported: teardown, i.e. `DELETE` until Lodge answers (it answers once the
//! sandbox is gone), against closing the direct server's stdin until it exits.

use super::{Counts, Ctx};
use crate::http::Accept;
use crate::mcp;
use crate::report::Row;
use crate::stdio::StdioServer;
use anyhow::Context;
use std::time::{Duration, Instant};

const INIT_ID: u64 = 0;
const VARIANTS: [&str; 3] = ["Lodge, SSE", "Lodge, JSON", "direct"];

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

pub async fn run(ctx: &Ctx, counts: Counts) -> anyhow::Result<Vec<Row>> {
    let init = mcp::initialize(INIT_ID);
    let (mut sse, mut json, mut direct) =
        (Samples::default(), Samples::default(), Samples::default());
    for round in 0..counts.warmup + counts.iterations {
        // Rotate which variant goes first in a round (the cyclic order stays the same).
        let mut taken = [None, None, None];
        for k in 0..3 {
            let which = (round + k) % 3;
            let what = || format!("round {round}, {}", VARIANTS[which]);
            taken[which] = Some(
                match which {
                    0 => through_lodge(ctx, Accept::Both, &init).await,
                    1 => through_lodge(ctx, Accept::Json, &init).await,
                    _ => directly(ctx, &init).await,
                }
                .with_context(what)?,
            );
        }
        if round >= counts.warmup {
            let [Some(s), Some(j), Some(d)] = taken else {
                unreachable!("every variant ran")
            };
            sse.push(s);
            json.push(j);
            direct.push(d);
        }
    }
    const DIRECT_START: &str = "direct: spawn + initialize on stdio";
    const DIRECT_END: &str = "direct: close stdin, wait for exit";
    Ok(vec![
        Row::new(
            "cold start: initialize via Lodge, SSE answer",
            &sse.start,
            Some((DIRECT_START, &direct.start)),
        )?,
        Row::new(
            "cold start: initialize via Lodge, JSON answer",
            &json.start,
            Some((DIRECT_START, &direct.start)),
        )?,
        Row::new(
            "teardown: DELETE via Lodge",
            &sse.end,
            Some((DIRECT_END, &direct.end)),
        )?,
    ])
}

/// (initialize round trip, DELETE round trip)
async fn through_lodge(
    ctx: &Ctx,
    accept: Accept,
    init: &str,
) -> anyhow::Result<(Duration, Duration)> {
    let body = init.to_string();
    let start = Instant::now();
    let mut reply = ctx.http.post_accepting(accept, None, body).await?;
    let response = reply.response_to(INIT_ID).await?;
    let started = start.elapsed();
    let session = reply
        .session_id()
        .context("initialize answered without an Mcp-Session-Id")?;
    reply.finish().await?;
    mcp::check_initialized(&response)?;

    let start = Instant::now();
    ctx.http.delete(&session).await?;
    Ok((started, start.elapsed()))
}

async fn directly(ctx: &Ctx, init: &str) -> anyhow::Result<(Duration, Duration)> {
    let start = Instant::now();
    let mut server = StdioServer::spawn(&ctx.lodge_bin, ctx.scratch.path())?;
    server.send(init).await?;
    let response = server.response_to(INIT_ID).await?;
    let started = start.elapsed();
    mcp::check_initialized(&response)?;

    let start = Instant::now();
    server.close().await?;
    Ok((started, start.elapsed()))
}
