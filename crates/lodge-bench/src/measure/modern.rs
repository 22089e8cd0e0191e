//! The 2026-07-28 era through Lodge, against the legacy era through the same Lodge,
//! interleaved in the same run. The demo server speaks the legacy era only, so every
//! 2026-07-28 request goes through Lodge's bridge (it initialized the server itself
//! when the runtime session started).
//!
//! - **echo**: a stateless `tools/call echo {"text":"hi"}`, with the headers
//!   (`MCP-Protocol-Version: 2026-07-28`, `Mcp-Method`, `Mcp-Name`) and `_meta`
//!   (version, client capabilities) the era requires, run in one runtime session by
//!   naming it with `Lodge-Session-Id`. Lodge answers it with one JSON body (the
//!   response comes first). Baselines: the same call in a legacy session
//!   (`Mcp-Session-Id`), answered with SSE (as the relay measurement's SSE row) and
//!   as JSON (the like-for-like framing).
//! - **plan_trip**: the demo's tool that elicits a form, then asks for sampling. In
//!   2026-07-28 that is three requests through the MRTR bridge: the call, answered
//!   `input_required` (elicitation); the retry with the form and `requestState`,
//!   answered `input_required` (sampling); the retry with the sampled message,
//!   answered with the result. Baseline: the legacy flow, one POST whose SSE stream
//!   carries the elicitation, the sampling request and the result, while the client
//!   POSTs its two answers (202 each). Also measured: the legacy flow directly on the
//!   server's stdio, to show the server's own share.
//!
//! The clock runs from the first request's send until the result is read; building
//! each answer from the question it answers is inside the clock, as for any client.

use super::{Counts, Ctx};
use crate::http::{Accept, Reply};
use crate::mcp;
use crate::report::Row;
use crate::stdio::StdioServer;
use anyhow::{Context, bail};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const TEXT: &str = "hi";
const ELICIT: &str = "elicitation/create";
const SAMPLE: &str = "sampling/createMessage";

pub async fn run(ctx: &Ctx, counts: Counts) -> anyhow::Result<Vec<Row>> {
    let mut ids = 0u64;
    let mut next_id = || {
        ids += 1;
        ids
    };

    // Legacy: one session, set up as a client would.
    let legacy = ctx.http.open_session().await?;

    // 2026-07-28: the first request starts a runtime session; later ones name it.
    let id = next_id();
    let call = mcp::modern(id, "tools/call", mcp::echo_params(TEXT));
    let mut reply = ctx
        .http
        .post_modern(None, "tools/call", Some("echo"), call)
        .await?;
    let response = reply.response_to(id).await?;
    let modern = reply
        .lodge_session_id()
        .context("a 2026-07-28 request answered without a Lodge-Session-Id")?;
    reply.finish().await?;
    mcp::check_echo(&response, TEXT)?;

    // Directly: one process, for plan_trip's server-side share.
    let mut server = StdioServer::spawn(&ctx.lodge_bin, ctx.scratch.path())?;
    server.send(&mcp::initialize(0)).await?;
    mcp::check_initialized(&server.response_to(0).await?)?;
    server.send(&mcp::initialized()).await?;

    // echo: 2026-07-28 vs legacy (SSE and JSON answers), rotating which goes first.
    let (mut echo_modern, mut echo_sse, mut echo_json) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..counts.warmup + counts.iterations {
        let mut took = [Duration::ZERO; 3];
        for k in 0..3 {
            let which = (round + k) % 3;
            let id = next_id();
            took[which] = match which {
                0 => modern_echo(ctx, &modern, id).await,
                1 => legacy_echo(ctx, &legacy, Accept::Both, id).await,
                _ => legacy_echo(ctx, &legacy, Accept::Json, id).await,
            }
            .with_context(|| {
                let variant = ["2026-07-28", "legacy, SSE", "legacy, JSON"][which];
                format!("echo round {round}, {variant}")
            })?;
        }
        if round >= counts.warmup {
            echo_modern.push(took[0]);
            echo_sse.push(took[1]);
            echo_json.push(took[2]);
        }
    }

    // plan_trip: MRTR vs legacy vs direct, rotating which goes first.
    let (mut trip_mrtr, mut trip_legacy, mut trip_direct) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..counts.warmup + counts.iterations {
        let mut took = [Duration::ZERO; 3];
        for k in 0..3 {
            let which = (round + k) % 3;
            took[which] = match which {
                0 => mrtr_trip(ctx, &modern, &mut next_id).await,
                1 => legacy_trip(ctx, &legacy, next_id()).await,
                _ => direct_trip(&mut server, next_id()).await,
            }
            .with_context(|| {
                format!(
                    "plan_trip round {round}, {}",
                    ["MRTR", "legacy", "direct"][which]
                )
            })?;
        }
        if round >= counts.warmup {
            trip_mrtr.push(took[0]);
            trip_legacy.push(took[1]);
            trip_direct.push(took[2]);
        }
    }

    ctx.http.delete(&legacy).await?;
    ctx.http.delete_modern(&modern).await?;
    server.close().await?;
    const MODERN_ECHO: &str =
        "2026-07-28: tools/call echo via Lodge (Lodge-Session-Id, JSON answer)";
    Ok(vec![
        Row::new(
            MODERN_ECHO,
            &echo_modern,
            Some((
                "legacy: same call via Lodge (Mcp-Session-Id), SSE answer",
                &echo_sse,
            )),
        )?,
        Row::new(
            MODERN_ECHO,
            &echo_modern,
            Some((
                "legacy: same call via Lodge (Mcp-Session-Id), JSON answer",
                &echo_json,
            )),
        )?,
        Row::new(
            "2026-07-28: plan_trip via Lodge's MRTR bridge (3 requests, 2 input rounds)",
            &trip_mrtr,
            Some((
                "legacy: plan_trip via Lodge (1 SSE call + 2 answer POSTs)",
                &trip_legacy,
            )),
        )?,
        Row::new(
            "legacy: plan_trip via Lodge (1 SSE call + 2 answer POSTs)",
            &trip_legacy,
            Some(("direct: same flow on stdio", &trip_direct)),
        )?,
    ])
}

async fn modern_echo(ctx: &Ctx, session: &str, id: u64) -> anyhow::Result<Duration> {
    let call = mcp::modern(id, "tools/call", mcp::echo_params(TEXT));
    let start = Instant::now();
    let mut reply = ctx
        .http
        .post_modern(Some(session), "tools/call", Some("echo"), call)
        .await?;
    let response = reply.response_to(id).await?;
    let took = start.elapsed();
    check_same_session(&reply, session)?;
    reply.finish().await?;
    mcp::check_echo(&response, TEXT)?;
    Ok(took)
}

async fn legacy_echo(
    ctx: &Ctx,
    session: &str,
    accept: Accept,
    id: u64,
) -> anyhow::Result<Duration> {
    let call = mcp::echo(id, TEXT);
    let start = Instant::now();
    let mut reply = ctx.http.post_accepting(accept, Some(session), call).await?;
    let response = reply.response_to(id).await?;
    let took = start.elapsed();
    reply.finish().await?;
    mcp::check_echo(&response, TEXT)?;
    Ok(took)
}

fn check_same_session(reply: &Reply, session: &str) -> anyhow::Result<()> {
    let got = reply.lodge_session_id();
    if got.as_deref() != Some(session) {
        bail!("the request ran in runtime session {got:?}, not {session}");
    }
    Ok(())
}

/// The three requests of `plan_trip` over the MRTR bridge.
async fn mrtr_trip(
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
    let answers = json!({ key: mcp::trip_form() });
    let retry = mcp::modern(id, "tools/call", trip_params(Some((state, answers))));
    let second = modern_round(ctx, session, id, retry).await?;
    let (key, state) = input_required(&second, SAMPLE)?;

    let id = next_id();
    let answers = json!({ key: mcp::itinerary() });
    let retry = mcp::modern(id, "tools/call", trip_params(Some((state, answers))));
    let done = modern_round(ctx, session, id, retry).await?;
    let took = start.elapsed();
    if done.pointer("/result/resultType") != Some(&json!("complete")) {
        bail!("the third round did not complete the call: {done}");
    }
    mcp::check_trip(&done)?;
    Ok(took)
}

/// `plan_trip`'s params; a retry adds `requestState` and `inputResponses`.
pub(super) fn trip_params(retry: Option<(Value, Value)>) -> Value {
    let mut params = json!({"name": "plan_trip", "arguments": {}});
    if let Some((state, answers)) = retry {
        params["requestState"] = state;
        params["inputResponses"] = answers;
    }
    params
}

/// One 2026-07-28 `plan_trip` request (or retry) in `session`; its response.
pub(super) async fn modern_round(
    ctx: &Ctx,
    session: &str,
    id: u64,
    call: String,
) -> anyhow::Result<Value> {
    let mut reply = ctx
        .http
        .post_modern(Some(session), "tools/call", Some("plan_trip"), call)
        .await?;
    let response = reply.response_to(id).await?;
    reply.finish().await?;
    Ok(response)
}

/// From an `input_required` result asking exactly one `method`: (its key, `requestState`).
pub(super) fn input_required(response: &Value, method: &str) -> anyhow::Result<(String, Value)> {
    let result = &response["result"];
    let asks = result["inputRequests"].as_object();
    match asks.map(|a| a.iter().collect::<Vec<_>>()).as_deref() {
        Some([(key, ask)])
            if result["resultType"] == "input_required" && ask["method"] == method =>
        {
            let state = result["requestState"].clone();
            if !state.is_string() {
                bail!("input_required without a requestState: {response}");
            }
            Ok(((*key).clone(), state))
        }
        _ => bail!("expected input_required asking {method}: {response}"),
    }
}

/// The legacy flow through Lodge: the call's SSE stream carries the server's
/// requests; the answers go in POSTs of their own.
async fn legacy_trip(ctx: &Ctx, session: &str, id: u64) -> anyhow::Result<Duration> {
    let call = mcp::plan_trip(id);
    let start = Instant::now();
    let mut reply = ctx.http.post(Some(session), call).await?;
    let ask = reply.next_request().await?;
    mcp::check_request(&ask, ELICIT)?;
    ctx.http
        .notify(session, mcp::answer(&ask, mcp::trip_form()))
        .await?;
    let ask = reply.next_request().await?;
    mcp::check_request(&ask, SAMPLE)?;
    ctx.http
        .notify(session, mcp::answer(&ask, mcp::itinerary()))
        .await?;
    let response = reply.response_to(id).await?;
    let took = start.elapsed();
    reply.finish().await?;
    mcp::check_trip(&response)?;
    Ok(took)
}

/// The same flow on the server's stdio.
async fn direct_trip(server: &mut StdioServer, id: u64) -> anyhow::Result<Duration> {
    let call = mcp::plan_trip(id);
    let start = Instant::now();
    server.send(&call).await?;
    let ask = next_stdio_request(server).await?;
    mcp::check_request(&ask, ELICIT)?;
    server.send(&mcp::answer(&ask, mcp::trip_form())).await?;
    let ask = next_stdio_request(server).await?;
    mcp::check_request(&ask, SAMPLE)?;
    server.send(&mcp::answer(&ask, mcp::itinerary())).await?;
    let response = server.response_to(id).await?;
    let took = start.elapsed();
    mcp::check_trip(&response)?;
    Ok(took)
}

async fn next_stdio_request(server: &mut StdioServer) -> anyhow::Result<Value> {
    loop {
        if let Some(request) = mcp::server_request(server.next_message().await?)? {
            return Ok(request);
        }
    }
}
