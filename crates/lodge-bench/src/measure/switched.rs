//! What one config switch adds to a tool call: the same `tools/call echo` round trip as
//! the relay row, through a Lodge with the switch on, against two Lodges without it (the
//! second an A/A check), interleaved round by round. Metrics are on in all three: they
//! have no switch.

use super::{Counts, Ctx};
use crate::http::McpHttp;
use crate::lodge::LodgeServer;
use crate::mcp;
use crate::report::Row;
use anyhow::Context;
use lodge_testkit::server::{Launch, OnDrop};
use std::io::{BufRead, BufReader, Read, Write};
use std::time::{Duration, Instant};

const TEXT: &str = "hi";

/// A switch measured: on, and its row's words.
#[derive(Clone, Copy)]
pub enum Switch {
    /// `[audit] path`: a JSON line per call, written by its own thread.
    Audit,
    /// `[otlp] endpoint`: each request's span exported (batched, on its own thread) to
    /// a collector that takes every batch and answers 200.
    Otlp,
}

impl Switch {
    fn words(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Switch::Audit => (
                "audit: same call with [audit] path set (a line per call)",
                "A/A: same call, a second Lodge without [audit]",
                "same call, Lodge without [audit]",
            ),
            Switch::Otlp => (
                "otlp: same call with [otlp] endpoint set (its spans exported)",
                "A/A: same call, a second Lodge without [otlp]",
                "same call, Lodge without [otlp]",
            ),
        }
    }

    /// The config that turns it on.
    fn toml(self) -> anyhow::Result<String> {
        Ok(match self {
            Switch::Audit => "[audit]\npath = \"audit.jsonl\"\n".into(),
            Switch::Otlp => format!("[otlp]\nendpoint = \"{}\"\n", sink()?),
        })
    }
}

pub async fn run(ctx: &Ctx, counts: Counts, switch: Switch) -> anyhow::Result<Vec<Row>> {
    let on = switch.toml()?;
    let lodges = [
        start_lodge(ctx, "")?,
        start_lodge(ctx, &on)?,
        start_lodge(ctx, "")?,
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
    let (with, again, off) = switch.words();
    Ok(vec![
        Row::new(with, &took[1], Some((off, &took[0])))?,
        Row::new(again, &took[2], Some((off, &took[0])))?,
    ])
}

/// A Lodge hosting the demo with `toml` as its config, in a directory of its own.
fn start_lodge(ctx: &Ctx, toml: &str) -> anyhow::Result<LodgeServer> {
    let dir = tempfile::tempdir().context("cannot make a temp dir")?;
    Launch::in_dir(&ctx.lodge_bin, dir, toml)
        .args(["--demo"])
        .log("warn")
        .on_drop(OnDrop::Stop)
        .start()
}

/// An OTLP/HTTP endpoint that reads each POST and answers 200 (what a collector's
/// receiver does before its pipeline); its base URL. Its threads are its own, so it
/// answers while the bench blocks on stopping a Lodge (which flushes its spans), and
/// live as long as the process.
fn sink() -> anyhow::Result<String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let url = format!("http://{}", listener.local_addr()?);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || answer_posts(stream));
        }
    });
    Ok(url)
}

fn answer_posts(stream: std::net::TcpStream) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    loop {
        let (mut length, mut line) = (None, String::new());
        loop {
            line.clear();
            if reader.read_line(&mut line)? <= 2 {
                break;
            }
            if let Some(n) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = n.trim().parse::<u64>().ok();
            }
        }
        let Some(length) = length else {
            return Ok(());
        };
        std::io::copy(&mut (&mut reader).take(length), &mut std::io::sink())?;
        writer.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")?;
    }
}
