//! Legacy client, legacy server: every message is relayed as its original bytes and
//! routed by the core's rules. The one decision left: a server that refuses the
//! legacy `initialize` because it speaks only 2026-07-28 is spoken for by
//! [`ToModern`] instead, when the server's policy allows.

use super::to_modern::LegacyClient;
use super::{Adapter, CallState, Ctx, ToModern};
use crate::error::SessionError;
use crate::session::core::{Pending, Reply};
use crate::session::{EventStream, Hosting, HostingKind, Protocol};
use lodge_proto::{Kind, Message, codes};

pub(crate) struct Relay {
    policy: Protocol,
    /// What the client's `initialize` declared, in case the server turns out to be
    /// 2026-07-28-only and Lodge must speak for the client.
    client: Option<LegacyClient>,
}

impl Relay {
    pub fn new(policy: Protocol) -> Self {
        Relay {
            policy,
            client: None,
        }
    }

    pub fn requests(
        &mut self,
        ctx: &mut Ctx<'_>,
        messages: Vec<Message>,
        sse: bool,
    ) -> Result<EventStream, SessionError> {
        if let Some(init) = messages.iter().find(|m| m.method() == Some("initialize")) {
            self.client = Some(LegacyClient::from_initialize(init));
        }
        ctx.out
            .send(messages.iter().map(|m| m.bytes.clone()).collect())?;
        let (stream, rx) = ctx.core.open(sse, messages.len());
        for message in messages {
            if let Kind::Request {
                id,
                method,
                progress_token,
            } = message.kind
            {
                let initialize = &*method == "initialize";
                let call = CallState::Relay { initialize };
                ctx.core.insert(
                    id,
                    Pending::new(stream, progress_token, call)
                        .of_method(&method)
                        .with_request(&message.bytes),
                );
            }
        }
        Ok(rx)
    }

    /// Returns the adapter that takes over when the server turns out to be modern.
    pub fn on_server_message(&mut self, ctx: &mut Ctx<'_>, message: Message) -> Option<Adapter> {
        let Kind::Response { id } = &message.kind else {
            route_legacy(ctx, message);
            return None;
        };
        let initialize = matches!(
            ctx.core.get(id).map(|p| &p.state),
            Some(CallState::Relay { initialize: true })
        );
        if initialize && self.policy != Protocol::Legacy && refuses_legacy(&message.bytes) {
            // A 2026-07-28-only server refused the legacy handshake: answer the client
            // from server/discover instead, and speak for it from now on.
            let why = "the server refused initialize as a 2026-07-28-only server";
            ctx.env
                .shared
                .decided(Hosting::new(HostingKind::SpokenFor, why));
            let mut to_modern = ToModern::new(self.client.take());
            to_modern.initialize_via_discover(ctx, id.clone());
            return Some(Adapter::ToModern(to_modern));
        }
        if initialize {
            record_protocol_version(ctx, &message.bytes);
        }
        let reply = Reply::relayed(message.bytes.clone(), &message);
        if ctx.core.complete(id, Some(reply)).is_none() {
            tracing::debug!(session = %ctx.env.session, %id, "late response to a cancelled request dropped");
        }
        None
    }
}

/// A legacy client's notification, or its answer to a server request: relayed.
pub(super) fn deliver(ctx: &mut Ctx<'_>, message: &Message) -> Result<(), SessionError> {
    ctx.out.send(vec![message.bytes.clone()])?;
    after_delivery(ctx, message);
    Ok(())
}

/// What a delivered client message changes in the core: an answer no longer routes
/// the server's cancellations; a cancellation ends the call at once (a late response
/// from the server is dropped, as the spec tells clients to ignore it).
pub(super) fn after_delivery(ctx: &mut Ctx<'_>, message: &Message) {
    match &message.kind {
        Kind::Response { id } => ctx.core.answered(id),
        Kind::Notification {
            method,
            cancelled_id: Some(id),
            ..
        } if &**method == "notifications/cancelled" => {
            ctx.core.complete(id, None);
        }
        _ => {}
    }
}

/// Everything but responses, routed for a legacy client (rules 2–5).
pub(super) fn route_legacy(ctx: &mut Ctx<'_>, message: Message) {
    match message.kind {
        Kind::Request { id, .. } => ctx.core.route_server_initiated(message.bytes, Some(id)),
        Kind::Notification {
            method,
            progress_token,
            cancelled_id,
            ..
        } => match &*method {
            "notifications/progress" => {
                match progress_token.and_then(|t| ctx.core.on_progress(&t)) {
                    Some(stream) => ctx.core.streams.emit(stream, message.bytes, false),
                    None => {
                        tracing::debug!(session = %ctx.env.session, "progress for a finished request dropped")
                    }
                }
            }
            "notifications/cancelled" => ctx
                .core
                .route_cancelled(cancelled_id.as_ref(), message.bytes),
            "notifications/message" => ctx.core.route_server_initiated(message.bytes, None),
            _ => ctx.core.route_other(message.bytes),
        },
        Kind::Response { .. } => {}
    }
}

/// Whether an `initialize` error means "I only speak 2026-07-28".
fn refuses_legacy(response: &[u8]) -> bool {
    let code = serde_json::from_slice::<serde_json::Value>(response)
        .ok()
        .and_then(|v| v.pointer("/error/code").and_then(serde_json::Value::as_i64));
    matches!(
        code,
        Some(codes::UNSUPPORTED_PROTOCOL_VERSION | codes::METHOD_NOT_FOUND)
    )
}

fn record_protocol_version(ctx: &Ctx<'_>, response: &[u8]) {
    #[derive(serde::Deserialize)]
    struct Init {
        result: InitResult,
    }
    #[derive(serde::Deserialize)]
    struct InitResult {
        #[serde(rename = "protocolVersion")]
        protocol_version: String,
    }
    if let Ok(init) = serde_json::from_slice::<Init>(response) {
        let why = format!(
            "the server accepted initialize, version {}",
            init.result.protocol_version
        );
        let shared = &ctx.env.shared;
        shared.decided(Hosting::new(HostingKind::Relayed, why));
        let _ = shared.protocol_version.set(init.result.protocol_version);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::testing::*;
    use crate::session::Protocol;

    #[tokio::test]
    async fn requests_go_upstream_as_their_bytes_and_responses_come_back_as_theirs() {
        let mut s = Session::legacy(Protocol::Auto);
        let mut rx = s
            .requests(&[r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#], true)
            .unwrap();
        assert_eq!(
            s.sent(),
            vec![r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#]
        );
        s.server(r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[]}}"#);
        assert_eq!(
            drain(&mut rx),
            (
                vec![r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[]}}!"#.to_string()],
                true
            )
        );
        assert_eq!(s.core.in_flight(), 0);
    }

    #[tokio::test]
    async fn a_duplicate_request_id_is_refused_and_nothing_is_sent() {
        let mut s = Session::legacy(Protocol::Auto);
        let _rx = s
            .requests(&[r#"{"jsonrpc":"2.0","id":1,"method":"a"}"#], true)
            .unwrap();
        s.sent();
        let err = s
            .requests(&[r#"{"jsonrpc":"2.0","id":1,"method":"b"}"#], true)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "request id 1 is already in flight in this session"
        );
        assert!(s.sent().is_empty());
    }

    #[tokio::test]
    async fn a_server_that_is_not_reading_refuses_the_call_without_tracking_it() {
        let mut s = Session::legacy(Protocol::Auto);
        s.out.busy = true;
        let err = s
            .requests(&[r#"{"jsonrpc":"2.0","id":1,"method":"a"}"#], true)
            .unwrap_err();
        assert!(matches!(err, crate::SessionError::ServerBusy));
        assert_eq!(s.core.in_flight(), 0);
        assert!(!s.core.contains(&id("1")));
    }

    #[tokio::test]
    async fn initialize_records_the_negotiated_version() {
        let mut s = Session::legacy(Protocol::Auto);
        let _rx = s.requests(&[INITIALIZE], true).unwrap();
        s.server(r#"{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-06-18","capabilities":{},"serverInfo":{"name":"s","version":"1"}}}"#);
        assert_eq!(
            s.env.shared.protocol_version.get().map(String::as_str),
            Some("2025-06-18")
        );
    }

    #[tokio::test]
    async fn a_client_cancellation_ends_the_call_and_drops_the_late_response() {
        let mut s = Session::legacy(Protocol::Auto);
        let mut rx = s
            .requests(&[r#"{"jsonrpc":"2.0","id":4,"method":"tools/call"}"#], true)
            .unwrap();
        s.deliver(
            r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":4}}"#,
        )
        .unwrap();
        assert_eq!(
            s.sent().len(),
            2,
            "the request and the cancellation went upstream"
        );
        assert_eq!(drain(&mut rx), (vec![], true));
        assert_eq!(s.core.in_flight(), 0);
        s.server(r#"{"jsonrpc":"2.0","id":4,"result":{}}"#);
        assert_eq!(s.core.in_flight(), 0);
        assert!(s.sent().is_empty(), "nothing answers a dropped response");
    }

    #[tokio::test]
    async fn a_server_request_reaches_the_call_and_the_answer_goes_back() {
        let mut s = Session::legacy(Protocol::Auto);
        let mut rx = s
            .requests(&[r#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#], true)
            .unwrap();
        s.server(r#"{"jsonrpc":"2.0","id":"e1","method":"elicitation/create","params":{}}"#);
        assert_eq!(
            drain(&mut rx).0,
            vec![r#"{"jsonrpc":"2.0","id":"e1","method":"elicitation/create","params":{}}"#]
        );
        s.sent();
        s.deliver(r#"{"jsonrpc":"2.0","id":"e1","result":{"action":"decline"}}"#)
            .unwrap();
        assert_eq!(
            s.sent(),
            vec![r#"{"jsonrpc":"2.0","id":"e1","result":{"action":"decline"}}"#]
        );
        assert_eq!(s.core.in_flight(), 1, "the call itself still waits");
    }

    #[tokio::test]
    async fn progress_goes_to_the_call_that_asked_for_it() {
        let mut s = Session::legacy(Protocol::Auto);
        let mut a = s
            .requests(&[r#"{"jsonrpc":"2.0","id":1,"method":"x","params":{"_meta":{"progressToken":"p1"}}}"#], true)
            .unwrap();
        let mut b = s
            .requests(&[r#"{"jsonrpc":"2.0","id":2,"method":"y"}"#], true)
            .unwrap();
        let progress = r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"p1","progress":1}}"#;
        s.server(progress);
        assert_eq!(drain(&mut a).0, vec![progress]);
        assert_eq!(drain(&mut b).0, Vec::<String>::new());
    }

    #[tokio::test]
    async fn legacy_commands_are_refused_by_a_2026_session_and_vice_versa() {
        let mut s = Session::legacy(Protocol::Auto);
        let err = s
            .modern(&modern_request(
                1,
                "tools/list",
                serde_json::json!({}),
                serde_json::json!({}),
            ))
            .unwrap_err();
        assert!(matches!(err, crate::SessionError::WrongEra(_)));
        let mut m = Session::modern_passthrough();
        let err = m
            .requests(&[r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#], true)
            .unwrap_err();
        assert!(matches!(err, crate::SessionError::WrongEra(_)));
        assert!(m.listen().is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_server_that_never_answers_times_the_call_out() {
        let mut s = Session::legacy(Protocol::Auto);
        let mut rx = s
            .requests(
                &[r#"{"jsonrpc":"2.0","id":"c","method":"tools/call"}"#],
                true,
            )
            .unwrap();
        s.sent();
        tokio::time::advance(std::time::Duration::from_secs(299)).await;
        s.tick();
        assert!(s.sent().is_empty(), "not yet");
        tokio::time::advance(std::time::Duration::from_secs(1)).await;
        s.tick();
        let cancel = &s.sent_json()[0];
        assert_eq!(cancel["method"], "notifications/cancelled");
        assert_eq!(cancel["params"]["requestId"], "c");
        let error = only_json(&mut rx);
        assert_eq!(error["id"], "c");
        assert_eq!(error["error"]["code"], -32004);
        assert_eq!(
            error["error"]["message"],
            "the MCP server did not answer within 5m (Lodge's request_timeout); the request was cancelled"
        );
        assert_eq!(s.core.in_flight(), 0, "the session can idle again");
    }
}
