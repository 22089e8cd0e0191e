//! One tool call: drives 2026-07-28 `input_required` rounds through the handler, finishes the
//! progress bars, and cancels on Ctrl-C (legacy: `notifications/cancelled`; modern: the
//! request's stream is closed, which is what cancels there).

use super::session::{Connection, Handler};
use rmcp::ServiceError;
use rmcp::model::{
    CallToolRequest, CallToolRequestParams, CallToolResult, ClientRequest, InputRequest,
    InputRequiredResult, ServerResult,
};
use rmcp::service::PeerRequestOptions;
use serde_json::Value;
use std::collections::BTreeMap;

/// More rounds than this means the server is looping.
const MAX_ROUNDS: usize = 10;

pub enum Outcome {
    Done(CallToolResult),
    Interrupted,
    Failed(ServiceError),
}

/// Calls `params.name`; Ctrl-C cancels the call.
pub async fn call_tool(connection: &Connection, params: CallToolRequestParams) -> Outcome {
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let outcome = run(connection, params, &mut ctrl_c).await;
    let settle = matches!(outcome, Outcome::Done(_));
    connection.client.service().progress_done(settle).await;
    outcome
}

async fn run(
    connection: &Connection,
    mut params: CallToolRequestParams,
    ctrl_c: &mut (impl Future<Output = std::io::Result<()>> + Unpin),
) -> Outcome {
    let peer = &connection.client;
    let handler = connection.client.service();
    for _round in 0..MAX_ROUNDS {
        let request = ClientRequest::CallToolRequest(CallToolRequest::new(params.clone()));
        let mut handle = match peer
            .send_cancellable_request(request, PeerRequestOptions::no_options())
            .await
        {
            Ok(handle) => handle,
            Err(e) => return Outcome::Failed(e),
        };
        let response = tokio::select! {
            response = &mut handle.rx => response.unwrap_or(Err(ServiceError::TransportClosed)),
            _ = &mut *ctrl_c => {
                let _ = handle.cancel(Some("cancelled by the user (Ctrl-C)".into())).await;
                return Outcome::Interrupted;
            }
        };
        match response {
            Ok(ServerResult::CallToolResult(result)) => return Outcome::Done(result),
            Ok(ServerResult::InputRequiredResult(input)) => {
                handler.progress_round_over().await;
                let (responses, state) = tokio::select! {
                    answered = answer(handler, input) => answered,
                    _ = &mut *ctrl_c => return Outcome::Interrupted,
                };
                params.input_responses = (!responses.is_empty()).then_some(responses);
                params.request_state = state;
            }
            Ok(_) => return Outcome::Failed(ServiceError::UnexpectedResponse),
            Err(e) => return Outcome::Failed(e),
        }
    }
    Outcome::Failed(ServiceError::InputRequiredRoundsExceeded {
        max_rounds: MAX_ROUNDS,
    })
}

/// Answers each input request of an `input_required` result with the same code that answers
/// server-to-client requests in the legacy era.
async fn answer(
    handler: &Handler,
    input: InputRequiredResult,
) -> (BTreeMap<String, Value>, Option<String>) {
    let mut responses = BTreeMap::new();
    for (key, request) in input.input_requests.unwrap_or_default() {
        let response = match request {
            InputRequest::Elicitation(r) => {
                serde_json::to_value(handler.elicitor().handle(r.params).await)
            }
            InputRequest::CreateMessage(r) => match handler.sampler() {
                Some(sampler) => match sampler.handle(r.params).await {
                    Ok(result) => serde_json::to_value(result),
                    // An MRTR response cannot carry an error: leave it out, and the server
                    // asks again or fails the call.
                    Err(_) => continue,
                },
                None => continue,
            },
            InputRequest::ListRoots(_) => Ok(serde_json::json!({"roots": []})),
            _ => continue,
        };
        if let Ok(value) = response {
            responses.insert(key, value);
        }
    }
    (responses, input.request_state)
}
