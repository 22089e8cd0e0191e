//! What the audit log adds to a tool call: the same `tools/call echo` round trip as the
//! relay row, through a Lodge with `[audit] path` set (one JSON line per call, written
//! by its own thread), against two Lodges without it (the second an A/A check),
//! interleaved round by round. Metrics are on in all three: they have no switch.

use super::{Counts, Ctx};
use crate::http::McpHttp;
use crate::lodge::LodgeServer;
use crate::mcp;
use crate::report::Row;
use anyhow::Context;
use lodge_testkit::server::{Launch, OnDrop};
use std::time::{Duration, Instant};

const TEXT: &str = "hi";

pub async fn run(ctx: &Ctx, counts: Counts) -> anyhow::Result<Vec<Row>> {
    let lodges = [
        start_lodge(ctx, false)?,
        start_lodge(ctx, true)?,
        start_lodge(ctx, false)?,
    ];
    let mut clients = Vec::new();
    for lodge in &lodges {
        let client = McpHttp::new(lodge.url())?;
        let session = client.open_session().await?;
        clients.push((client, session));
    }
    let mut took: [Vec<Duration>; 3] = Default::default();
    let mut id = 0u64;
    for round in 0..counts.warmup + counts.iterations {
        for k in 0..clients.len() {
            let which = (round + k) % clients.len();
            let (client, session) = &clients[which];
            id += 1;
            let start = Instant::now();
            let mut reply = client
                .post(Some(session), mcp::echo(id, TEXT))
                .await
                .with_context(|| format!("round {round}, Lodge {which}"))?;
            let response = reply.response_to(id).await?;
            let elapsed = start.elapsed();
            reply.finish().await?;
            mcp::check_echo(&response, TEXT)?;
            if round >= counts.warmup {
                took[which].push(elapsed);
            }
        }
    }
    for (client, session) in &clients {
        client.delete(session).await?;
    }
    const OFF: &str = "same call, Lodge without [audit]";
    Ok(vec![
        Row::new(
            "audit: same call with [audit] path set (a line per call)",
            &took[1],
            Some((OFF, &took[0])),
        )?,
        Row::new(
            "A/A: same call, a second Lodge without [audit]",
            &took[2],
            Some((OFF, &took[0])),
        )?,
    ])
}

/// A Lodge hosting the demo, writing an audit log in its own directory if `audited`.
fn start_lodge(ctx: &Ctx, audited: bool) -> anyhow::Result<LodgeServer> {
    let dir = tempfile::tempdir().context("cannot make a temp dir")?;
    let toml = match audited {
        true => "[audit]\npath = \"audit.jsonl\"\n",
        false => "",
    };
    Launch::in_dir(&ctx.lodge_bin, dir, toml)
        .args(["--demo"])
        .log("warn")
        .on_drop(OnDrop::Stop)
        .start()
}
