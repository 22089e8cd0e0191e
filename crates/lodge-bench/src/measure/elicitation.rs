//! Elicitation round trip: a `tools/call` that asks the client one question (a form)
//! and completes once it is answered. The demo's `plan_trip` opens with exactly that
//! (the trip form); answered `decline`, it returns at once ("Trip planning stopped:
//! the user chose to decline.") without sampling, so the call is one elicitation
//! round trip and nothing else. The clock runs from sending the call until its result
//! is read; the answer is built inside the clock from the request it answers, as any
//! client would.
//!
//! - **via Lodge, legacy session**: POST the call (`Mcp-Session-Id`); the elicitation
//!   request arrives on the call's SSE stream; POST the answer (202); the result
//!   arrives on the call's stream.
//! - **via Lodge, 2026-07-28 (MRTR bridge)**: the call, answered `input_required`
//!   with the form; the retry carrying `requestState` and the answer, answered with
//!   the result. Two requests, in one runtime session (`Lodge-Session-Id`).
//! - baseline **direct on stdio**: the same legacy flow on a `lodge demo-server`'s
//!   stdio (call, read the request, write the answer, read the result).
//! - baseline **rmcp Streamable HTTP in-process**: the legacy flow, with the same
//!   HTTP client and bytes as through Lodge, against the demo's handler served by
//!   rmcp in this process ([`crate::rmcp_http`]).
//!
//! Every variant runs once per round, the first one rotating.

use super::modern::{input_required, modern_round, trip_params};
use super::{Counts, Ctx};
use crate::http::McpHttp;
use crate::mcp;
use crate::report::Row;
use crate::rmcp_http::RmcpHttp;
use crate::stdio::StdioServer;
use anyhow::{Context, bail};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const ELICIT: &str = "elicitation/create";
const DECLINED: &str = "Trip planning stopped: the user chose to decline.";
const VARIANTS: [&str; 4] = [
    "Lodge, legacy",
    "Lodge, 2026-07-28",
    "direct, stdio",
    "rmcp HTTP server, in-process",
];

pub async fn run(ctx: &Ctx, counts: Counts) -> anyhow::Result<Vec<Row>> {
    let mut ids = 0u64;
    let mut next_id = || {
        ids += 1;
        ids
    };

    let legacy = ctx.http.open_session().await?;
    let rmcp_server = RmcpHttp::start()?;
    let rmcp_http = McpHttp::new(rmcp_server.url.clone())?;
    let rmcp_session = rmcp_http.open_session().await?;

    // 2026-07-28: the first request starts a runtime session; later ones name it.
    let id = next_id();
    let call = mcp::modern(id, "tools/call", mcp::echo_params("hi"));
    let mut reply = ctx
        .http
        .post_modern(None, "tools/call", Some("echo"), call)
        .await?;
    mcp::check_echo(&reply.response_to(id).await?, "hi")?;
    let modern = reply
        .lodge_session_id()
        .context("a 2026-07-28 request answered without a Lodge-Session-Id")?;
    reply.finish().await?;

    let mut server = StdioServer::spawn(&ctx.lodge_bin, ctx.scratch.path())?;
    server.send(&mcp::initialize(0)).await?;
    mcp::check_initialized(&server.response_to(0).await?)?;
    server.send(&mcp::initialized()).await?;

    let mut samples: [Vec<Duration>; 4] = Default::default();
    for round in 0..counts.warmup + counts.iterations {
        for k in 0..VARIANTS.len() {
            let which = (round + k) % VARIANTS.len();
            let took = match which {
                0 => over_http(&ctx.http, &legacy, next_id()).await,
                1 => over_mrtr(ctx, &modern, &mut next_id).await,
                2 => over_stdio(&mut server, next_id()).await,
                _ => over_http(&rmcp_http, &rmcp_session, next_id()).await,
            }
            .with_context(|| format!("round {round}, {}", VARIANTS[which]))?;
            if round >= counts.warmup {
                samples[which].push(took);
            }
        }
    }

    ctx.http.delete(&legacy).await?;
    ctx.http.delete_modern(&modern).await?;
    rmcp_http.delete(&rmcp_session).await?;
    drop(rmcp_http);
    drop(rmcp_server);
    server.close().await?;

    const LEGACY: &str =
        "elicitation: plan_trip, form declined, via Lodge (legacy: 1 SSE call + 1 answer POST)";
    const DIRECT: &str = "direct: same flow on stdio";
    let [legacy, mrtr, direct, rmcp] = samples;
    Ok(vec![
        Row::new(LEGACY, &legacy, Some((DIRECT, &direct)))?,
        Row::new(
            "elicitation: plan_trip, form declined, via Lodge's MRTR bridge (2026-07-28: 2 requests)",
            &mrtr,
            Some((DIRECT, &direct)),
        )?,
        Row::new(
            LEGACY,
            &legacy,
            Some((
                "direct: rmcp Streamable HTTP server in-process, same requests",
                &rmcp,
            )),
        )?,
    ])
}

fn decline() -> Value {
    json!({"action": "decline"})
}

/// The legacy flow over Streamable HTTP: the call's SSE stream carries the request,
/// the answer goes in a POST of its own.
async fn over_http(http: &McpHttp, session: &str, id: u64) -> anyhow::Result<Duration> {
    let call = mcp::plan_trip(id);
    let start = Instant::now();
    let mut reply = http.post(Some(session), call).await?;
    let ask = reply.next_request().await?;
    mcp::check_request(&ask, ELICIT)?;
    http.notify(session, mcp::answer(&ask, decline())).await?;
    let response = reply.response_to(id).await?;
    let took = start.elapsed();
    reply.finish().await?;
    check_declined(&response)?;
    Ok(took)
}

/// The same flow over MRTR: call, `input_required`, retry with the answer.
async fn over_mrtr(
    ctx: &Ctx,
    session: &str,
    next_id: &mut impl FnMut() -> u64,
) -> anyhow::Result<Duration> {
    let id = next_id();
    let call = mcp::modern(id, "tools/call", trip_params(None));
    let start = Instant::now();
    let first = modern_round(ctx, session, id, call).await?;
    let (key, state) = input_required(&first, ELICIT)?;
    let id = next_id();
    let retry = mcp::modern(
        id,
        "tools/call",
        trip_params(Some((state, json!({ key: decline() })))),
    );
    let done = modern_round(ctx, session, id, retry).await?;
    let took = start.elapsed();
    if done.pointer("/result/resultType") != Some(&json!("complete")) {
        bail!("the retry did not complete the call: {done}");
    }
    check_declined(&done)?;
    Ok(took)
}

/// The same flow on the server's stdio.
async fn over_stdio(server: &mut StdioServer, id: u64) -> anyhow::Result<Duration> {
    let call = mcp::plan_trip(id);
    let start = Instant::now();
    server.send(&call).await?;
    let ask = loop {
        let message = server.next_message().await?;
        if message.get("method").is_some() && message.get("id").is_some() {
            break message;
        }
        if message.get("method").is_none() {
            bail!("the call ended before the server asked anything: {message}");
        }
    };
    mcp::check_request(&ask, ELICIT)?;
    server.send(&mcp::answer(&ask, decline())).await?;
    let response = server.response_to(id).await?;
    let took = start.elapsed();
    check_declined(&response)?;
    Ok(took)
}

/// Checks the call ended as a declined form ends it.
fn check_declined(response: &Value) -> anyhow::Result<()> {
    let text = response.pointer("/result/content/0/text");
    if text.and_then(Value::as_str) != Some(DECLINED)
        || response.pointer("/result/isError") == Some(&json!(true))
    {
        bail!("expected {DECLINED:?}: {response}");
    }
    Ok(())
}
