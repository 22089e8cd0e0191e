//! `continuity = "principal"` for legacy clients: each client's `initialize` makes a
//! light session of its own (its own `Mcp-Session-Id`, no sandbox) that is a view over
//! the principal's one runtime session of the server.
//!
//! Why this shape: Lodge already speaks both directions. A view is an ordinary session
//! actor whose adapter is the one for a legacy client of a 2026-07-28 server
//! (`era::to_modern`: it answers `initialize` from `server/discover`, with the version
//! negotiated for that client, and turns `input_required` into requests pushed to that
//! client); its "server" is [`serve`] below, which hands each request to the principal's
//! runtime session as a 2026-07-28 call. That session initialized the real server once
//! (`era::bridge`, for a legacy server) and checks per call what the calling client
//! declared: a server's elicitation during a call from a client that did not declare it
//! gets an error answer there, and never reaches that client. Call ids stay each view's
//! own (the runtime session keys calls by its own upstream ids), a view's DELETE ends
//! only the view, and the sandbox's idle timeout counts every view's calls.

use crate::Runtime;
use crate::session::{CallStream, ModernCall, SessionHandle};
use crate::upstream::{FromServer, Outgoing};
use lodge_proto::modern::{self, MirroredHeaders, PROTOCOL_VERSION_KEY};
use lodge_proto::{Id, Kind, Message, codes, error_body};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// Capabilities the runtime session declares to a legacy server on behalf of all its
/// views: what any client may use; each call is then held to its own client's.
pub(crate) fn shared_capabilities() -> Value {
    serde_json::json!({"elicitation": {}, "sampling": {}})
}

/// Serves one view: reads what its adapter sends "upstream" (`from_view`), runs each
/// request in `shared` as `principal`, and sends back what `shared` answers. Ends when
/// the view closes its side (dropping every open call, which cancels it) or when
/// `shared` ends (the view then ends too, and its client starts over).
pub(crate) async fn serve(
    runtime: Arc<Runtime>,
    shared: SessionHandle,
    principal: crate::Principal,
    mut from_view: mpsc::Receiver<Outgoing>,
    to_view: mpsc::Sender<FromServer>,
) {
    // Each open call's forwarder, by the view's id for it (to cancel).
    let mut calls: JoinSet<()> = JoinSet::new();
    let mut by_id: HashMap<Id, tokio::task::AbortHandle> = HashMap::new();
    loop {
        let Outgoing { bytes, trace } = tokio::select! {
            outgoing = from_view.recv() => match outgoing {
                Some(outgoing) => outgoing,
                None => return, // the view ended: dropping `calls` cancels them
            },
            Some(_) = calls.join_next(), if !calls.is_empty() => continue,
            // The sandbox's idle timeout or lifetime ended the session: the view ends
            // with it, so its client hears 404 and starts over.
            () = shared.ended() => {
                let why = "the principal's runtime session ended".to_string();
                let _ = to_view.send(FromServer::Closed(Some(why))).await;
                return;
            }
        };
        let Ok(message) = Message::parse(bytes) else {
            continue; // the adapter sends only what it parsed or built
        };
        match &message.kind {
            Kind::Request { id, .. } => {
                let id = id.clone();
                // The call continues the view's client's trace, one hop further.
                let shared = shared.clone().traced(trace.as_deref());
                match call(&runtime, &shared, &principal, message, &to_view).await {
                    Ok(Some(stream)) => {
                        let handle = calls.spawn(forward(stream, to_view.clone()));
                        by_id.insert(id, handle);
                    }
                    Ok(None) => {}
                    Err(Ended) => {
                        let why = "the principal's runtime session ended".to_string();
                        let _ = to_view.send(FromServer::Closed(Some(why))).await;
                        return;
                    }
                }
            }
            Kind::Notification {
                cancelled_id: Some(cancelled),
                ..
            } => {
                if let Some(handle) = by_id.remove(cancelled) {
                    handle.abort(); // drops the call's stream: that cancels it
                }
            }
            // 2026-07-28 has no other client notifications; responses never come here
            // (the adapter answers the server's requests itself, by MRTR).
            _ => {}
        }
        by_id.retain(|_, handle| !handle.is_finished());
    }
}

/// The principal's runtime session is gone.
struct Ended;

/// Starts one request in `shared`. An error the session gives is answered to the view
/// as the request's error response (`Ok(None)`).
async fn call(
    runtime: &Runtime,
    shared: &SessionHandle,
    principal: &crate::Principal,
    message: Message,
    to_view: &mpsc::Sender<FromServer>,
) -> Result<Option<CallStream>, Ended> {
    let id = message.request_id().cloned();
    let fail = async |code, why: String| {
        if let Ok(reply) = Message::parse(error_body(id.as_ref(), code, &why)) {
            let _ = to_view.send(FromServer::Message(reply)).await;
        }
        Ok(None)
    };
    let params: Value = serde_json::from_slice::<Value>(&message.bytes)
        .ok()
        .and_then(|v| v.get("params").cloned())
        .unwrap_or_default();
    let text = |v: &Value| v.as_str().map(str::to_owned);
    let version = params["_meta"].get(PROTOCOL_VERSION_KEY).and_then(text);
    let name = params.get("name").or(params.get("uri")).and_then(text);
    let mirrored = MirroredHeaders {
        protocol_version: version.as_deref(),
        method: message.method(),
        name: name.as_deref(),
    };
    let request = match modern::validate(&message, mirrored) {
        Ok(request) => request,
        Err(e) => return fail(codes::INVALID_PARAMS, e.to_string()).await,
    };
    let resume = match request
        .request_state
        .as_deref()
        .map(|t| runtime.open_request_state(t))
    {
        Some(Ok(state)) => state,
        Some(Err(e)) => return fail(codes::INVALID_PARAMS, e.to_string()).await,
        None => None,
    };
    let mut call = ModernCall::new(message, request);
    call.principal = principal.clone();
    match shared.modern(call, resume).await {
        Ok(stream) => Ok(Some(stream)),
        Err(crate::SessionError::Gone) => Err(Ended),
        Err(e) => fail(codes::INTERNAL_ERROR, e.to_string()).await,
    }
}

/// Sends a call's events to the view as the server's messages, until its response.
async fn forward(mut stream: CallStream, to_view: mpsc::Sender<FromServer>) {
    while let Some(event) = stream.recv().await {
        let last = event.is_response;
        if let Ok(message) = Message::parse(event.data.clone())
            && to_view.send(FromServer::Message(message)).await.is_err()
        {
            return;
        }
        if last {
            return;
        }
    }
}
