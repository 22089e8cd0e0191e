//! `tools/call`. Texts are in [`crate::fixtures`]; the MRTR tools' flows are described on
//! each function.

use std::time::Duration;

use rmcp::{
    ErrorData, RoleServer,
    model::{
        CallToolRequestParams, CallToolResponse, CallToolResult, InputResponses, LoggingLevel,
        LoggingMessageNotificationParam, ProgressNotificationParam,
    },
    service::RequestContext,
};
use serde_json::{Value, json};

use crate::input::{self, Ask, Asked};
use crate::{Change, ConformanceServer, fixtures, from_json};

const STEP: Duration = Duration::from_millis(50);

fn result(value: Value) -> Result<CallToolResponse, ErrorData> {
    let result: CallToolResult = from_json("tools/call result", value)?;
    Ok(result.into())
}

fn text(text: &str) -> Result<CallToolResponse, ErrorData> {
    result(json!({"content": [{"type": "text", "text": text}]}))
}

/// The first text of a sampling result (`content` is one block or a list of blocks).
fn sampled_text(answer: &Value) -> String {
    let content = &answer["content"];
    let block = if content.is_array() {
        &content[0]
    } else {
        content
    };
    block["text"].as_str().unwrap_or("(no text)").to_string()
}

fn name_schema() -> Value {
    json!({"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]})
}

fn arg(request: &CallToolRequestParams, name: &str) -> Result<String, ErrorData> {
    request
        .arguments
        .as_ref()
        .and_then(|a| a.get(name))
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| ErrorData::invalid_params(format!("missing string argument {name:?}"), None))
}

/// Ask, and return early with the `input_required` result when the client must answer first.
macro_rules! ask_or_return {
    ($ctx:expr, $asks:expr, $responses:expr, $state:expr) => {
        match input::ask($ctx, $asks, $responses, $state).await? {
            Asked::InputRequired(more) => return Ok(more.into()),
            Asked::Answers(answers) => answers,
        }
    };
}

pub(crate) async fn call(
    server: &ConformanceServer,
    request: CallToolRequestParams,
    ctx: RequestContext<RoleServer>,
) -> Result<CallToolResponse, ErrorData> {
    let responses = request.input_responses.as_ref();
    let name = request.name.to_string();
    match name.as_str() {
        "test_simple_text" => text(fixtures::SIMPLE_TEXT),
        "test_image_content" => result(json!({"content": [
            {"type": "image", "data": fixtures::PNG_BASE64, "mimeType": "image/png"}]})),
        "test_audio_content" => result(json!({"content": [
            {"type": "audio", "data": fixtures::WAV_BASE64, "mimeType": "audio/wav"}]})),
        "test_embedded_resource" => result(json!({"content": [{"type": "resource", "resource": {
            "uri": fixtures::EMBEDDED_RESOURCE_URI, "mimeType": "text/plain",
            "text": fixtures::EMBEDDED_RESOURCE_TEXT}}]})),
        "test_multiple_content_types" => result(json!({"content": [
            {"type": "text", "text": fixtures::MIXED_INTRO},
            {"type": "image", "data": fixtures::PNG_BASE64, "mimeType": "image/png"},
            {"type": "resource", "resource": {"uri": fixtures::MIXED_RESOURCE_URI,
                "mimeType": "application/json", "text": fixtures::MIXED_RESOURCE_JSON}}]})),
        "test_tool_with_logging" => {
            log_three(server, &ctx).await;
            text(fixtures::LOGGING_DONE)
        }
        "test_logging_tool" => {
            log_three(server, &ctx).await;
            text("Logging tool finished")
        }
        "test_tool_with_progress" => {
            let token = ctx.meta.get_progress_token();
            for (i, progress) in [0.0, 50.0, 100.0].into_iter().enumerate() {
                if i > 0 {
                    tokio::time::sleep(STEP).await;
                }
                if let Some(token) = &token {
                    let note = ProgressNotificationParam::new(token.clone(), progress)
                        .with_total(100.0)
                        .with_message(format!("Completed step {progress} of 100"));
                    let _ = ctx.peer.notify_progress(note).await;
                }
            }
            text(fixtures::PROGRESS_DONE)
        }
        "test_error_handling" => result(json!({"isError": true,
            "content": [{"type": "text", "text": fixtures::ERROR_TEXT}]})),
        "test_sampling" => {
            let prompt = arg(&request, "prompt")?;
            let asks = vec![Ask::sample("sampling", &prompt, 100)];
            let answers = ask_or_return!(&ctx, asks, responses, None);
            text(&format!(
                "LLM response: {}",
                sampled_text(&answers["sampling"])
            ))
        }
        "test_elicitation" => {
            let message = arg(&request, "message")?;
            let asks = vec![Ask::elicit(
                "user",
                &message,
                fixtures::elicitation_schema_user(),
            )];
            let answers = ask_or_return!(&ctx, asks, responses, None);
            text(&fixtures::elicitation_summary(
                "User response",
                &answers["user"],
            ))
        }
        "test_elicitation_sep1034_defaults" => {
            let asks = vec![Ask::elicit(
                "form",
                fixtures::SEP1034_MESSAGE,
                fixtures::sep1034_schema(),
            )];
            let answers = ask_or_return!(&ctx, asks, responses, None);
            text(&fixtures::elicitation_summary(
                "Elicitation completed",
                &answers["form"],
            ))
        }
        "test_elicitation_sep1330_enums" => {
            let asks = vec![Ask::elicit(
                "form",
                fixtures::SEP1330_MESSAGE,
                fixtures::sep1330_schema(),
            )];
            let answers = ask_or_return!(&ctx, asks, responses, None);
            text(&fixtures::elicitation_summary(
                "Elicitation completed",
                &answers["form"],
            ))
        }
        fixtures::JSON_SCHEMA_TOOL => {
            let args = Value::Object(request.arguments.clone().unwrap_or_default());
            text(&format!(
                "{} called with {args}",
                fixtures::JSON_SCHEMA_TOOL
            ))
        }
        "test_reconnection" => {
            // rmcp 3.11 gives a handler no way to close its own POST SSE stream, so this
            // tool cannot force the SEP-1699 disconnect; it only takes a little while.
            tokio::time::sleep(Duration::from_millis(100)).await;
            text(fixtures::RECONNECTION_DONE)
        }
        "test_missing_capability" => {
            let asks = vec![Ask::sample("hello", "Say hello.", 20)];
            let answers = ask_or_return!(&ctx, asks, responses, None);
            text(&format!(
                "This tool ran with the sampling capability: {}",
                sampled_text(&answers["hello"])
            ))
        }
        "test_input_required_result_elicitation" => {
            let asks = vec![Ask::elicit(
                "user_name",
                "What is your name?",
                name_schema(),
            )];
            let answers = ask_or_return!(&ctx, asks, responses, None);
            let answer = &answers["user_name"];
            match answer["content"]["name"].as_str() {
                Some(name) if answer["action"] == "accept" => text(&format!("Hello, {name}!")),
                _ => text(&format!(
                    "No name given: action={}.",
                    answer["action"].as_str().unwrap_or("?")
                )),
            }
        }
        "test_input_required_result_sampling" => {
            let asks = vec![Ask::sample(
                "capital_question",
                "What is the capital of France?",
                100,
            )];
            let answers = ask_or_return!(&ctx, asks, responses, None);
            text(&format!(
                "Sampling response: {}",
                sampled_text(&answers["capital_question"])
            ))
        }
        "test_input_required_result_list_roots" => {
            let answers = ask_or_return!(&ctx, vec![Ask::roots("client_roots")], responses, None);
            text(&roots_summary(&answers["client_roots"]))
        }
        "test_input_required_result_request_state"
        | "test_input_required_result_tampered_state" => {
            confirm_with_state(
                server,
                &ctx,
                &name,
                responses,
                request.request_state.as_deref(),
            )
            .await
        }
        "test_input_required_result_multiple_inputs" => {
            let state = server.shared.seal.seal(&name, &json!({"step": "all"}))?;
            let verified = match request.request_state.as_deref() {
                Some(sealed) => server.shared.seal.open(&name, sealed)? == json!({"step": "all"}),
                None => false,
            };
            let asks = vec![
                Ask::elicit("user_name", "What is your name?", name_schema()),
                Ask::sample("greeting", "Generate a greeting", 50),
                Ask::roots("client_roots"),
            ];
            // 2026-07-28: answers count only together with the state they were asked with.
            let responses = if input::is_modern(&ctx) && !verified {
                None
            } else {
                responses
            };
            let answers = ask_or_return!(&ctx, asks, responses, Some(state));
            text(&format!(
                "Got all inputs: name={}; greeting={}; {}",
                answers["user_name"]["content"]["name"]
                    .as_str()
                    .unwrap_or("(none)"),
                sampled_text(&answers["greeting"]),
                roots_summary(&answers["client_roots"])
            ))
        }
        "test_input_required_result_multi_round" => {
            multi_round(
                server,
                &ctx,
                &name,
                responses,
                request.request_state.as_deref(),
            )
            .await
        }
        "test_input_required_result_capabilities" => {
            let caps = input::client_caps(&ctx);
            let asks: Vec<Ask> = [
                Ask::elicit("user_name", "What is your name?", name_schema()),
                Ask::sample("greeting", "Generate a greeting", 50),
                Ask::roots("client_roots"),
            ]
            .into_iter()
            .filter(|a| a.kind.declared_by(&caps))
            .collect();
            if asks.is_empty() {
                return text("No declared client capability to ask with.");
            }
            let answers = ask_or_return!(&ctx, asks, responses, None);
            let keys: Vec<&str> = answers.keys().map(String::as_str).collect();
            text(&format!(
                "Declared-capability inputs answered: {}",
                keys.join(", ")
            ))
        }
        "test_streaming_elicitation" => {
            let schema = json!({"type": "object",
                "properties": {"confirmed": {"type": "boolean", "description": "Confirm?"}}});
            let asks = vec![Ask::elicit("confirm", "Please confirm to continue", schema)];
            let answers = ask_or_return!(&ctx, asks, responses, None);
            text(&fixtures::elicitation_summary(
                "Streaming elicitation completed",
                &answers["confirm"],
            ))
        }
        "test_custom_header" => text(&format!("Region: {}", arg(&request, "region")?)),
        "test_trigger_tool_change" => {
            server.trigger_change(&ctx, Change::Tools).await;
            text("Tool list changed")
        }
        "test_trigger_prompt_change" => {
            server.trigger_change(&ctx, Change::Prompts).await;
            text("Prompt list changed")
        }
        "test_dynamic_tool"
            if server
                .shared
                .dynamic_tool
                .load(std::sync::atomic::Ordering::SeqCst) =>
        {
            text("This tool appeared after test_trigger_tool_change.")
        }
        other => Err(ErrorData::invalid_params(
            format!("unknown tool: {other}"),
            None,
        )),
    }
}

/// Three info messages 50 ms apart ([`fixtures::LOG_MESSAGES`]), each only if the level
/// rules allow it.
async fn log_three(server: &ConformanceServer, ctx: &RequestContext<RoleServer>) {
    for (i, message) in fixtures::LOG_MESSAGES.into_iter().enumerate() {
        if i > 0 {
            tokio::time::sleep(STEP).await;
        }
        if server.may_log(ctx, LoggingLevel::Info) {
            let note = LoggingMessageNotificationParam::new(LoggingLevel::Info, json!(message))
                .with_logger(fixtures::LOGGER);
            let _ = ctx.peer.notify_logging_message(note).await;
        }
    }
}

/// `Roots: file:///a (A), file:///b` from a `roots/list` result.
fn roots_summary(answer: &Value) -> String {
    let roots: Vec<String> = answer["roots"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            let uri = r["uri"].as_str().unwrap_or("?");
            match r["name"].as_str() {
                Some(name) => format!("{uri} ({name})"),
                None => uri.to_string(),
            }
        })
        .collect();
    format!("Roots: {}", roots.join(", "))
}

/// `test_input_required_result_request_state` / `…_tampered_state`: one confirmation
/// (`confirm`: `{ok: boolean}`) asked together with a sealed `requestState`. On 2026-07-28 the
/// call completes only when the retry echoes that state intact (text "state-ok: …"); a
/// modified state is a -32602 error. In a legacy session the state plays no part.
async fn confirm_with_state(
    server: &ConformanceServer,
    ctx: &RequestContext<RoleServer>,
    name: &str,
    responses: Option<&InputResponses>,
    echoed: Option<&str>,
) -> Result<CallToolResponse, ErrorData> {
    let expected = json!({"step": "confirm"});
    let verified = match echoed {
        Some(sealed) => {
            if server.shared.seal.open(name, sealed)? != expected {
                return Err(ErrorData::invalid_params(
                    "requestState is for another step",
                    None,
                ));
            }
            true
        }
        None => false,
    };
    let state = server.shared.seal.seal(name, &expected)?;
    let schema =
        json!({"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]});
    let asks = vec![Ask::elicit("confirm", "Please confirm", schema)];
    let responses = if input::is_modern(ctx) && !verified {
        None
    } else {
        responses
    };
    let answers = ask_or_return!(ctx, asks, responses, Some(state));
    let ok = &answers["confirm"]["content"]["ok"];
    if name == "test_input_required_result_tampered_state" {
        text(&format!(
            "Request state verified; the call is complete. ok={ok}"
        ))
    } else {
        text(&format!(
            "state-ok: the requestState came back intact; ok={ok}"
        ))
    }
}

/// `test_input_required_result_multi_round`: round 1 asks `step1` (name), round 2 asks
/// `step2` (color) with a new sealed state carrying the name, then completes with
/// "Completed both rounds: name=…, color=…". A legacy session asks both in turn.
async fn multi_round(
    server: &ConformanceServer,
    ctx: &RequestContext<RoleServer>,
    name: &str,
    responses: Option<&InputResponses>,
    echoed: Option<&str>,
) -> Result<CallToolResponse, ErrorData> {
    let step1 = || Ask::elicit("step1", "Step 1: What is your name?", name_schema());
    let step2 = || {
        Ask::elicit(
            "step2",
            "Step 2: What is your favorite color?",
            json!({"type": "object", "properties": {"color": {"type": "string"}}, "required": ["color"]}),
        )
    };
    let done =
        |who: &str, color: &str| text(&format!("Completed both rounds: name={who}, color={color}"));
    let content = |answers: &std::collections::BTreeMap<String, Value>, key: &str, field: &str| {
        answers[key]["content"][field]
            .as_str()
            .unwrap_or("(none)")
            .to_string()
    };
    if !input::is_modern(ctx) {
        let first = ask_or_return!(ctx, vec![step1()], None, None);
        let second = ask_or_return!(ctx, vec![step2()], None, None);
        return done(
            &content(&first, "step1", "name"),
            &content(&second, "step2", "color"),
        );
    }
    let state = match echoed {
        Some(sealed) => server.shared.seal.open(name, sealed)?,
        None => json!({"round": 1}),
    };
    match state["round"].as_u64() {
        Some(1) => {
            let round1 = server.shared.seal.seal(name, &json!({"round": 1}))?;
            let answers = ask_or_return!(ctx, vec![step1()], responses, Some(round1));
            let who = content(&answers, "step1", "name");
            let round2 = server
                .shared
                .seal
                .seal(name, &json!({"round": 2, "name": who}))?;
            // Round 2 always starts with a fresh question.
            let _ = ask_or_return!(ctx, vec![step2()], None, Some(round2));
            Err(ErrorData::internal_error("round 2 asked nothing", None))
        }
        Some(2) => {
            let who = state["name"].as_str().unwrap_or("(none)").to_string();
            let round2 = server.shared.seal.seal(name, &state)?;
            let answers = ask_or_return!(ctx, vec![step2()], responses, Some(round2));
            done(&who, &content(&answers, "step2", "color"))
        }
        _ => Err(ErrorData::invalid_params(
            "requestState names no known round",
            None,
        )),
    }
}
