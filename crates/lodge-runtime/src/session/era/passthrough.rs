//! 2026-07-28 client, 2026-07-28 server: requests pass through under an id Lodge
//! mints (several clients share one runtime session, so their ids could collide
//! upstream); responses and subscription notifications get the client's id back.

use super::{CallState, Ctx, answer_outside_call};
use crate::error::SessionError;
use crate::session::core::{Pending, Reply};
use crate::session::{EventStream, ModernCall};
use bytes::Bytes;
use lodge_proto::modern::SUBSCRIPTION_ID_KEY;
use lodge_proto::{Id, Kind, Message, replace_id, set_meta_field};
use serde_json::Value;

/// A call passed through: the id its client knows it by.
pub(crate) struct Call {
    client_id: Id,
    /// A `subscriptions/listen` stream: open until the client closes it, not activity.
    listen: bool,
}

impl Call {
    pub fn client_id(&self) -> &Id {
        &self.client_id
    }
}

/// Marker for the adapter: passthrough keeps no state beyond its calls.
pub(crate) struct Passthrough;

pub(super) fn call(
    ctx: &mut Ctx<'_>,
    call: ModernCall,
) -> Result<(u32, EventStream), SessionError> {
    let Kind::Request {
        id: client_id,
        method,
        progress_token,
    } = &call.message.kind
    else {
        return Err(SessionError::Internal(
            "a 2026-07-28 call without an id".into(),
        ));
    };
    let upstream_id = ctx.core.mint_id();
    let bytes = replace_id(&call.message.bytes, &upstream_id)
        .ok_or_else(|| SessionError::Internal("a validated request has no id".into()))?;
    ctx.out.send(vec![bytes])?;
    let (stream, rx) = ctx.core.open(false, 1);
    let listen = &**method == "subscriptions/listen";
    let state = CallState::Passthrough(Call {
        client_id: client_id.clone(),
        listen,
    });
    let mut pending = Pending::new(stream, progress_token.clone(), state)
        .of_method(method)
        .with_request(&call.message.bytes);
    pending.busy = !listen;
    ctx.core.insert(upstream_id, pending);
    Ok((stream, rx))
}

pub(super) fn on_server_message(ctx: &mut Ctx<'_>, message: Message) {
    match &message.kind {
        Kind::Response { id } => {
            let Some(pending) = ctx.core.get(id) else {
                tracing::debug!(session = %ctx.env.session, %id, "response to no pending call dropped");
                return;
            };
            let CallState::Passthrough(call) = &pending.state else {
                tracing::debug!(session = %ctx.env.session, %id, "response to no pending call dropped");
                return;
            };
            if may_ask(pending.method.as_str()) {
                for (key, method) in input_requests(&message.bytes) {
                    ctx.out.server_asks(&key, &method);
                }
            }
            let bytes = replace_id(&message.bytes, &call.client_id)
                .unwrap_or_else(|| message.bytes.clone());
            ctx.core.complete(id, Some(Reply::relayed(bytes, &message)));
        }
        Kind::Notification {
            subscription_id: Some(subscription),
            ..
        } => route_subscription(ctx, subscription, &message.bytes),
        Kind::Request { id, method, .. } => answer_outside_call(ctx, id, method, None),
        Kind::Notification {
            method,
            progress_token,
            cancelled_id,
            ..
        } => match &**method {
            "notifications/progress" => {
                if let Some(stream) = progress_token
                    .as_ref()
                    .and_then(|t| ctx.core.on_progress(t))
                {
                    ctx.core.streams.emit(stream, message.bytes, false);
                }
            }
            "notifications/cancelled" => ctx
                .core
                .route_cancelled(cancelled_id.as_ref(), message.bytes),
            "notifications/message" => {
                // The server cannot say which call a log belongs to: the newest one.
                let newest = ctx
                    .core
                    .calls()
                    .filter(|(_, p)| matches!(&p.state, CallState::Passthrough(c) if !c.listen))
                    .map(|(_, p)| p.stream)
                    .max();
                if let Some(stream) = newest {
                    ctx.core.streams.emit(stream, message.bytes, false);
                }
            }
            _ => {
                tracing::debug!(session = %ctx.env.session, %method, "notification outside any subscription dropped")
            }
        },
    }
}

/// Whether a call of `method` may end in an `input_required` result (SEP-2322).
fn may_ask(method: &str) -> bool {
    matches!(method, "tools/call" | "prompts/get" | "resources/read")
}

/// The input requests (key, method) of a 2026-07-28 server's response, if it is an
/// `input_required` result.
///
/// Passthrough relays results unparsed, and this adapter only ever serves 2026-07-28
/// servers, so a legacy server's messages never come here (its questions are
/// requests, seen by `Activity::record`). For a modern server the cost is one
/// vectorised byte search of a call's response for `input_required`; only a response
/// containing it (an MRTR round, or a result that merely mentions the word) is
/// parsed, and then only as far as `resultType` and each request's `method`.
fn input_requests(bytes: &[u8]) -> Vec<(String, String)> {
    #[derive(serde::Deserialize)]
    struct Response {
        result: Option<InputRequired>,
    }
    #[derive(serde::Deserialize)]
    struct InputRequired {
        #[serde(rename = "resultType")]
        result_type: Option<String>,
        #[serde(rename = "inputRequests", default)]
        input_requests: std::collections::BTreeMap<String, Request>,
    }
    #[derive(serde::Deserialize)]
    struct Request {
        method: String,
    }
    if memchr::memmem::find(bytes, b"input_required").is_none() {
        return Vec::new();
    }
    match serde_json::from_slice::<Response>(bytes) {
        Ok(Response {
            result: Some(result),
        }) if result.result_type.as_deref() == Some("input_required") => result
            .input_requests
            .into_iter()
            .map(|(key, request)| (key, request.method))
            .collect(),
        _ => Vec::new(),
    }
}

/// A notification the server tagged with a `subscriptions/listen` request's id.
fn route_subscription(ctx: &mut Ctx<'_>, subscription: &Id, bytes: &[u8]) {
    let Some(pending) = ctx.core.get(subscription) else {
        tracing::debug!(session = %ctx.env.session, "notification for a closed subscription dropped");
        return;
    };
    let CallState::Passthrough(call) = &pending.state else {
        return;
    };
    let Ok(mut message) = serde_json::from_slice::<Value>(bytes) else {
        return;
    };
    set_meta_field(
        &mut message,
        SUBSCRIPTION_ID_KEY,
        super::id_value(&call.client_id),
    );
    let stream = pending.stream;
    ctx.core
        .streams
        .emit(stream, Bytes::from(message.to_string()), false);
}
