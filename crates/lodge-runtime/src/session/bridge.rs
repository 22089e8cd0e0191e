//! The MRTR bridge: a legacy server's requests during a 2026-07-28 call become
//! `input_required` results with a sealed `requestState`; the client's retries feed
//! the answers back to the waiting server requests, round after round.

use super::EventStream;
use super::actor::{Actor, Pending};
use super::modern::{
    AwaitingInput, BridgeState, ModernCall, STATE_PREFIX, id_value, short_method, unix_now,
};
use crate::error::SessionError;
use bytes::Bytes;
use lodge_proto::seal::digest;
use lodge_proto::{Id, codes, error_body};
use serde_json::{Map, Value, json};

impl Actor {
    /// A legacy server asks the client something during a bridged call: answer the
    /// client's current request with `input_required` instead. Returns false when
    /// the message is not Lodge's to bridge (legacy sessions).
    pub(super) fn bridge_server_request(
        &mut self,
        server_id: &Id,
        method: &str,
        bytes: &[u8],
    ) -> bool {
        if !self.shared.modern {
            return false;
        }
        if method == "ping" {
            let pong = format!(r#"{{"jsonrpc":"2.0","id":{server_id},"result":{{}}}}"#);
            let _ = self.forward(vec![Bytes::from(pong)]);
            return true;
        }
        let request: Value = serde_json::from_slice(bytes).unwrap_or(Value::Null);
        let mut params = request.get("params").cloned().unwrap_or(json!({}));
        // The server's own progress token means nothing to the client.
        if let Some(meta) = params.get_mut("_meta").and_then(Value::as_object_mut) {
            meta.remove("progressToken");
            if meta.is_empty() {
                params.as_object_mut().map(|p| p.remove("_meta"));
            }
        }
        let input = json!({"method": method, "params": params});
        let bridged = |p: &Pending| p.modern.as_ref().is_some_and(|m| m.bridge && !m.listen);
        let newest = |parked: bool| {
            self.pending
                .iter()
                .filter(|(_, p)| {
                    bridged(p) && p.modern.as_ref().is_some_and(|m| m.parked == parked)
                })
                .max_by_key(|(_, p)| p.stream)
                .map(|(id, _)| id.clone())
        };
        let Some((call, parked)) = newest(false)
            .map(|c| (c, false))
            .or_else(|| newest(true).map(|c| (c, true)))
        else {
            let refusal = error_body(
                Some(server_id),
                codes::INTERNAL_ERROR,
                "no client request is waiting for this input",
            );
            let _ = self.forward(vec![refusal]);
            return true;
        };
        let Some(modern) = self.pending.get_mut(&call).and_then(|p| p.modern.as_mut()) else {
            return true;
        };
        let capability = short_method(method);
        if modern.capabilities.get(capability).is_none() {
            let why = format!("the client did not declare the {capability} capability");
            let refusal = error_body(Some(server_id), codes::METHOD_NOT_FOUND, &why);
            let _ = self.forward(vec![refusal]);
            return true;
        }
        modern.next_key += 1;
        let awaiting = AwaitingInput {
            key: format!("{}-{}", short_method(method), modern.next_key),
            server_id: server_id.clone(),
            request: input,
        };
        if parked {
            modern.queued.push(awaiting);
        } else {
            modern.awaiting.push(awaiting);
            self.ask_client(&call);
        }
        true
    }

    /// Answers the call's current client request with `input_required` for every
    /// input it awaits, and parks the call until the client retries.
    pub(super) fn ask_client(&mut self, call: &Id) {
        let session = self.id.to_string();
        let Some(pending) = self.pending.get_mut(call) else {
            return;
        };
        let stream = pending.stream;
        let Some(modern) = pending.modern.as_mut() else {
            return;
        };
        let state = BridgeState {
            session,
            call: call.as_json_text().to_string(),
            round: modern.round,
            method: modern.method.to_string(),
            digest: modern.digest.clone(),
            principal: String::new(),
            expires: unix_now() + self.runtime.config().request_state_ttl.as_secs(),
        };
        let token = format!("{STATE_PREFIX}{}", self.runtime.sealer().seal(&state));
        let requests: Map<String, Value> = modern
            .awaiting
            .iter()
            .map(|a| (a.key.clone(), a.request.clone()))
            .collect();
        let body = json!({
            "jsonrpc": "2.0",
            "id": id_value(&modern.client_id),
            "result": {"resultType": "input_required", "inputRequests": requests, "requestState": token},
        });
        modern.parked = true;
        modern.parked_until =
            Some(tokio::time::Instant::now() + self.runtime.config().request_state_ttl);
        self.streams
            .emit(stream, Bytes::from(body.to_string()), true);
        self.streams.settle(stream);
    }

    /// The client's MRTR retry: hand its answers to the server's waiting requests and
    /// continue the call on the retry's stream.
    pub(super) fn resume_bridge(
        &mut self,
        call: ModernCall,
        state: BridgeState,
    ) -> Result<(u32, EventStream), SessionError> {
        let upstream_id = Id::from_json_text(&state.call);
        let stale = || {
            SessionError::StaleState("requestState was already used, or its call has ended".into())
        };
        let pending = self.pending.get_mut(&upstream_id).ok_or_else(stale)?;
        let modern = pending.modern.as_mut().ok_or_else(stale)?;
        if !modern.parked || modern.round != state.round {
            return Err(stale());
        }
        let method = call.message.method().unwrap_or_default();
        if method != state.method || digest(&call.request.salient_params) != state.digest {
            return Err(SessionError::StaleState(
                "requestState belongs to a different request (method or params differ)".into(),
            ));
        }
        let Some(client_id) = call.message.request_id().cloned() else {
            return Err(stale());
        };
        let answers = call.request.input_responses.unwrap_or_default();
        let mut replies = Vec::new();
        modern.awaiting.retain(|a| match answers.get(&a.key) {
            Some(answer) => {
                let reply =
                    json!({"jsonrpc": "2.0", "id": id_value(&a.server_id), "result": answer});
                replies.push(Bytes::from(reply.to_string()));
                false
            }
            None => true,
        });
        let queued = std::mem::take(&mut modern.queued);
        modern.awaiting.extend(queued);
        modern.client_id = client_id;
        modern.capabilities = call.request.client_capabilities.clone();
        modern.round += 1;
        modern.parked = false;
        modern.parked_until = None;
        let ask_again = !modern.awaiting.is_empty();
        let (stream, rx) = self.streams.open(false, 1);
        pending.stream = stream;
        // The server keeps reporting progress under the first request's token; the
        // retry's client knows its own (or asked for none).
        modern.progress_as = match &call.message.kind {
            lodge_proto::Kind::Request { progress_token, .. } => progress_token.clone(),
            _ => None,
        };
        if let Some(token) = &pending.progress_token {
            self.progress.insert(token.clone(), stream);
        }
        self.forward(replies)?;
        if ask_again {
            self.ask_client(&upstream_id);
        }
        self.update_in_flight();
        Ok((stream, rx))
    }

    /// The earliest time a parked call's `requestState` lapses.
    pub(super) fn next_park_expiry(&self) -> Option<tokio::time::Instant> {
        self.pending
            .values()
            .filter_map(|p| p.modern.as_ref().and_then(|m| m.parked_until))
            .min()
    }

    /// Abandons bridged calls whose client never came back with their `requestState`:
    /// the server's waiting requests get an error, and the call is cancelled.
    pub(super) fn expire_parked(&mut self, now: tokio::time::Instant) {
        let lapsed: Vec<Id> = self
            .pending
            .iter()
            .filter(|(_, p)| {
                p.modern
                    .as_ref()
                    .and_then(|m| m.parked_until)
                    .is_some_and(|t| t <= now)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in lapsed {
            let Some(pending) = self.pending.remove(&id) else {
                continue;
            };
            let mut messages = Vec::new();
            if let Some(modern) = &pending.modern {
                for input in modern.awaiting.iter().chain(&modern.queued) {
                    let refusal = error_body(
                        Some(&input.server_id),
                        codes::INTERNAL_ERROR,
                        "the client did not answer in time",
                    );
                    messages.push(refusal);
                }
            }
            let cancel = json!({
                "jsonrpc": "2.0",
                "method": "notifications/cancelled",
                "params": {"requestId": id_value(&id), "reason": "the client did not retry in time"},
            });
            messages.push(Bytes::from(cancel.to_string()));
            let _ = self.forward(messages);
            self.forget(&pending);
            tracing::info!(session = %self.id, call = %id, "bridged call abandoned: its requestState lapsed");
        }
        self.update_in_flight();
    }

    /// Progress for a bridged call, under the token the current client request knows;
    /// `None` if that request asked for no progress.
    pub(super) fn bridged_progress(&self, token: &Id, bytes: Bytes) -> Option<Bytes> {
        let Some(modern) = self
            .pending
            .values()
            .find(|p| p.progress_token.as_ref() == Some(token))
            .and_then(|p| p.modern.as_ref())
        else {
            return Some(bytes);
        };
        match &modern.progress_as {
            Some(current) if current == token => Some(bytes),
            Some(current) => {
                let mut message: Value = serde_json::from_slice(&bytes).ok()?;
                message["params"]["progressToken"] = id_value(current);
                Some(Bytes::from(message.to_string()))
            }
            None => None,
        }
    }
}
