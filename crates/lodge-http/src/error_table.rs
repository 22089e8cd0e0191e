//! The one table that turns a failure into its answer: HTTP status, JSON-RPC error
//! code, extra headers, and the label error metrics and logs count it under. No other
//! place in the front picks a status and code for an error.

use crate::auth::AuthRefusal;
use crate::errors::FrontError;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use lodge_proto::ParseError;
use lodge_proto::codes;
use lodge_proto::modern::ModernError;
use lodge_runtime::{ErrorSource, QuotaExceeded, Refused, RuntimeError, SessionError};

/// What an error is counted as: whose fault, and a short reason that stays the same
/// from release to release (a metric label value, so never a message).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ErrorLabel {
    pub source: ErrorSource,
    pub reason: &'static str,
}

/// How the front answers an error.
#[derive(Debug)]
pub(crate) struct Answer {
    pub status: StatusCode,
    pub code: i64,
    /// Headers the answer must carry (`Allow` on a 405; later `WWW-Authenticate`).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub label: ErrorLabel,
}

/// The methods `/mcp` answers, for `Allow`.
const ALLOWED_METHODS: &str = "GET, POST, DELETE";

impl FrontError {
    // One line per failure, so the table reads as a table.
    #[rustfmt::skip]
    pub(crate) fn answer(&self) -> Answer {
        use ErrorSource::{Auth, Client, Lodge};
        use StatusCode as S;
        let (status, code, source, reason) = match self {
            FrontError::HostNotAllowed(_) => (S::FORBIDDEN, codes::INVALID_REQUEST, Client, "host_not_allowed"),
            FrontError::OriginNotAllowed(_) => (S::FORBIDDEN, codes::INVALID_REQUEST, Client, "origin_not_allowed"),
            FrontError::UnknownServer(_) => (S::NOT_FOUND, codes::INVALID_REQUEST, Client, "unknown_server"),
            FrontError::MethodNotAllowed(_) => (S::METHOD_NOT_ALLOWED, codes::INVALID_REQUEST, Client, "method_not_allowed"),
            FrontError::PostNotAcceptable | FrontError::GetNotAcceptable => (S::NOT_ACCEPTABLE, codes::INVALID_REQUEST, Client, "not_acceptable"),
            FrontError::UnsupportedMediaType => (S::UNSUPPORTED_MEDIA_TYPE, codes::INVALID_REQUEST, Client, "unsupported_media_type"),
            FrontError::UnsupportedProtocolVersion(_) => (S::BAD_REQUEST, codes::INVALID_REQUEST, Client, "unsupported_protocol_version"),
            FrontError::InvalidSessionId => (S::BAD_REQUEST, codes::INVALID_REQUEST, Client, "invalid_session_id"),
            FrontError::MissingSessionId => (S::BAD_REQUEST, codes::INVALID_REQUEST, Client, "missing_session_id"),
            FrontError::RepeatedHeader(_) => (S::BAD_REQUEST, codes::INVALID_REQUEST, Client, "repeated_header"),
            FrontError::InvalidLastEventId => (S::BAD_REQUEST, codes::INVALID_REQUEST, Client, "invalid_last_event_id"),
            FrontError::BodyTooLarge { .. } => (S::PAYLOAD_TOO_LARGE, codes::INVALID_REQUEST, Client, "body_too_large"),
            FrontError::BodyTimeout { .. } => (S::REQUEST_TIMEOUT, codes::INVALID_REQUEST, Client, "body_timeout"),
            FrontError::BodyUnreadable(_) => (S::BAD_REQUEST, codes::INVALID_REQUEST, Client, "body_unreadable"),
            FrontError::Parse(ParseError::Json(_)) => (S::BAD_REQUEST, codes::PARSE_ERROR, Client, "parse_error"),
            FrontError::Parse(ParseError::Invalid(_)) => (S::BAD_REQUEST, codes::INVALID_REQUEST, Client, "invalid_message"),
            FrontError::BatchWithoutSession => (S::BAD_REQUEST, codes::INVALID_REQUEST, Client, "batch_without_session"),
            FrontError::BatchNotAllowed(_) => (S::BAD_REQUEST, codes::INVALID_REQUEST, Client, "batch_not_allowed"),
            FrontError::BatchWithInitialize => (S::BAD_REQUEST, codes::INVALID_REQUEST, Client, "batch_with_initialize"),
            FrontError::UnknownSession | FrontError::UnknownRuntimeSession => (S::NOT_FOUND, codes::SESSION_NOT_FOUND, Client, "unknown_session"),
            FrontError::SessionEnded(_) | FrontError::RuntimeSessionEnded(_) => (S::NOT_FOUND, codes::SESSION_NOT_FOUND, Client, "session_ended"),
            FrontError::LegacySessionAsRuntime => (S::BAD_REQUEST, codes::INVALID_REQUEST, Client, "legacy_session_as_runtime"),
            FrontError::Modern(ModernError::Meta(_)) => (S::BAD_REQUEST, codes::INVALID_PARAMS, Client, "invalid_meta"),
            FrontError::Modern(ModernError::UnsupportedVersion(_)) => (S::BAD_REQUEST, codes::UNSUPPORTED_PROTOCOL_VERSION, Client, "unsupported_protocol_version"),
            FrontError::Modern(ModernError::HeaderMismatch(_)) => (S::BAD_REQUEST, codes::HEADER_MISMATCH, Client, "header_mismatch"),
            FrontError::Modern(ModernError::Removed(_)) => (S::NOT_FOUND, codes::METHOD_NOT_FOUND, Client, "removed_method"),
            FrontError::BadRequestState(_) => (S::BAD_REQUEST, codes::INVALID_PARAMS, Client, "bad_request_state"),
            FrontError::NodeGone(_) => (S::NOT_FOUND, codes::SESSION_NOT_FOUND, Lodge, "node_gone"),
            FrontError::ForwardLoop { .. } => (S::LOOP_DETECTED, codes::INTERNAL_ERROR, Lodge, "forward_loop"),
            FrontError::HopRefused(_) => (S::FORBIDDEN, codes::FORBIDDEN, Client, "hop_refused"),
            FrontError::OwnerFailed { .. } => (S::BAD_GATEWAY, codes::INTERNAL_ERROR, Lodge, "owner_failed"),
            FrontError::Auth { refusal, .. } => match refusal {
                AuthRefusal::Missing => (S::UNAUTHORIZED, codes::UNAUTHORIZED, Auth, "token_missing"),
                AuthRefusal::Invalid(_) => (S::UNAUTHORIZED, codes::UNAUTHORIZED, Auth, "token_invalid"),
                AuthRefusal::InsufficientScope(_) => (S::FORBIDDEN, codes::FORBIDDEN, Auth, "insufficient_scope"),
                AuthRefusal::ClientNotAllowed(_) => (S::FORBIDDEN, codes::FORBIDDEN, Auth, "client_not_allowed"),
                AuthRefusal::Unavailable(_) => (S::SERVICE_UNAVAILABLE, codes::UNAVAILABLE, Lodge, "issuer_unavailable"),
            },
            FrontError::Runtime(e) => {
                let (status, code, reason) = match e {
                    RuntimeError::AtCapacity(_) => (S::SERVICE_UNAVAILABLE, codes::UNAVAILABLE, "at_capacity"),
                    RuntimeError::ShuttingDown => (S::SERVICE_UNAVAILABLE, codes::UNAVAILABLE, "shutting_down"),
                    RuntimeError::HostExhausted(_) => (S::SERVICE_UNAVAILABLE, codes::UNAVAILABLE, "host_exhausted"),
                    RuntimeError::Spawn(_) => (S::BAD_GATEWAY, codes::SERVER_START_FAILED, "server_start_failed"),
                    RuntimeError::Prepare(_) => (S::BAD_GATEWAY, codes::SERVER_START_FAILED, "server_prepare_failed"),
                    RuntimeError::Quota(QuotaExceeded::Sessions { .. }) => (S::TOO_MANY_REQUESTS, codes::QUOTA_EXCEEDED, "quota_max_sessions"),
                    RuntimeError::Quota(QuotaExceeded::Rate { .. }) => (S::TOO_MANY_REQUESTS, codes::QUOTA_EXCEEDED, "quota_sessions_per_minute"),
                    RuntimeError::Cluster(Refused::OverQuota(_)) => (S::TOO_MANY_REQUESTS, codes::QUOTA_EXCEEDED, "cluster_quota"),
                    RuntimeError::Cluster(Refused::Unavailable(_)) => (S::SERVICE_UNAVAILABLE, codes::UNAVAILABLE, "cluster_quota_unavailable"),
                };
                (status, code, e.source(), reason)
            }
            FrontError::Session(e) => {
                let (status, code, reason) = match e {
                    SessionError::Gone => (S::NOT_FOUND, codes::SESSION_NOT_FOUND, "session_ended"),
                    SessionError::DuplicateRequestId(_) => (S::BAD_REQUEST, codes::INVALID_REQUEST, "duplicate_request_id"),
                    SessionError::UnknownEvent(_) => (S::BAD_REQUEST, codes::INVALID_REQUEST, "unknown_event"),
                    SessionError::WrongEra(_) => (S::BAD_REQUEST, codes::INVALID_REQUEST, "wrong_era"),
                    SessionError::StaleState(_) => (S::BAD_REQUEST, codes::INVALID_PARAMS, "stale_request_state"),
                    SessionError::ServerBusy => (S::SERVICE_UNAVAILABLE, codes::UNAVAILABLE, "server_busy"),
                    SessionError::ShuttingDown => (S::SERVICE_UNAVAILABLE, codes::UNAVAILABLE, "shutting_down"),
                    SessionError::Upstream(_) => (S::BAD_GATEWAY, codes::SERVER_START_FAILED, "server_refused"),
                    SessionError::Internal(_) => (S::INTERNAL_SERVER_ERROR, codes::INTERNAL_ERROR, "internal"),
                };
                (status, code, e.source(), reason)
            }
        };
        let headers = match self {
            FrontError::MethodNotAllowed(_) => vec![(header::ALLOW, HeaderValue::from_static(ALLOWED_METHODS))],
            // The rest of the body may still come: the connection cannot carry another request.
            FrontError::BodyTimeout { .. } => vec![(header::CONNECTION, HeaderValue::from_static("close"))],
            FrontError::Runtime(RuntimeError::Quota(q)) => vec![(header::RETRY_AFTER, HeaderValue::from(q.retry_after_secs()))],
            FrontError::Auth { challenge: Some(c), .. } => HeaderValue::from_str(c).map(|v| vec![(header::WWW_AUTHENTICATE, v)]).unwrap_or_default(),
            _ => Vec::new(),
        };
        Answer {
            status,
            code,
            headers,
            label: ErrorLabel { source, reason },
        }
    }
}

/// HTTP status for a JSON-RPC error the server (or Lodge) answered a modern request
/// with: the runtime read its code when it classified the response.
pub(crate) fn relayed_status(code: Option<i64>) -> StatusCode {
    match code {
        Some(codes::METHOD_NOT_FOUND) => StatusCode::NOT_FOUND,
        Some(
            codes::INVALID_PARAMS
            | codes::HEADER_MISMATCH
            | codes::MISSING_CLIENT_CAPABILITY
            | codes::UNSUPPORTED_PROTOCOL_VERSION,
        ) => StatusCode::BAD_REQUEST,
        _ => StatusCode::OK,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use lodge_proto::Id;
    use lodge_runtime::{EndReason, StateError};
    use lodge_sandbox::SandboxError;
    use std::time::Duration;

    fn auth(refusal: AuthRefusal) -> FrontError {
        let challenge = (!matches!(refusal, AuthRefusal::Unavailable(_))).then(|| {
            r#"Bearer resource_metadata="http://l/.well-known/oauth-protected-resource""#
                .to_string()
        });
        FrontError::Auth { refusal, challenge }
    }

    /// Every failure with the exact status, code, source and reason it must get.
    #[rustfmt::skip]
    fn table() -> Vec<(FrontError, u16, i64, ErrorSource, &'static str)> {
        use ErrorSource::{Auth, Client, Lodge, Server};
        let ended = || EndReason::Deleted;
        vec![
            (
                FrontError::HostNotAllowed("evil.example".into()),
                403,
                -32600,
                Client,
                "host_not_allowed",
            ),
            (
                FrontError::OriginNotAllowed("https://evil.example".into()),
                403,
                -32600,
                Client,
                "origin_not_allowed",
            ),
            (
                FrontError::UnknownServer(vec!["a".into()]),
                404,
                -32600,
                Client,
                "unknown_server",
            ),
            (
                FrontError::MethodNotAllowed(axum::http::Method::PUT),
                405,
                -32600,
                Client,
                "method_not_allowed",
            ),
            (
                FrontError::PostNotAcceptable,
                406,
                -32600,
                Client,
                "not_acceptable",
            ),
            (
                FrontError::GetNotAcceptable,
                406,
                -32600,
                Client,
                "not_acceptable",
            ),
            (
                FrontError::UnsupportedMediaType,
                415,
                -32600,
                Client,
                "unsupported_media_type",
            ),
            (
                FrontError::UnsupportedProtocolVersion("1999-01-01".into()),
                400,
                -32600,
                Client,
                "unsupported_protocol_version",
            ),
            (
                FrontError::InvalidSessionId,
                400,
                -32600,
                Client,
                "invalid_session_id",
            ),
            (
                FrontError::MissingSessionId,
                400,
                -32600,
                Client,
                "missing_session_id",
            ),
            (
                FrontError::RepeatedHeader("Mcp-Session-Id"),
                400,
                -32600,
                Client,
                "repeated_header",
            ),
            (
                FrontError::InvalidLastEventId,
                400,
                -32600,
                Client,
                "invalid_last_event_id",
            ),
            (
                FrontError::BodyTooLarge { limit: 10 },
                413,
                -32600,
                Client,
                "body_too_large",
            ),
            (
                FrontError::BodyTimeout {
                    limit: std::time::Duration::from_secs(1),
                },
                408,
                -32600,
                Client,
                "body_timeout",
            ),
            (
                FrontError::BodyUnreadable("reset".into()),
                400,
                -32600,
                Client,
                "body_unreadable",
            ),
            (
                FrontError::Parse(ParseError::Json("eof".into())),
                400,
                -32700,
                Client,
                "parse_error",
            ),
            (
                FrontError::Parse(ParseError::Invalid("an empty batch".into())),
                400,
                -32600,
                Client,
                "invalid_message",
            ),
            (
                FrontError::BatchWithoutSession,
                400,
                -32600,
                Client,
                "batch_without_session",
            ),
            (
                FrontError::BatchNotAllowed("2025-06-18".into()),
                400,
                -32600,
                Client,
                "batch_not_allowed",
            ),
            (
                FrontError::BatchWithInitialize,
                400,
                -32600,
                Client,
                "batch_with_initialize",
            ),
            (
                FrontError::UnknownSession,
                404,
                -32001,
                Client,
                "unknown_session",
            ),
            (
                FrontError::SessionEnded(ended()),
                404,
                -32001,
                Client,
                "session_ended",
            ),
            (
                FrontError::UnknownRuntimeSession,
                404,
                -32001,
                Client,
                "unknown_session",
            ),
            (
                FrontError::RuntimeSessionEnded(ended()),
                404,
                -32001,
                Client,
                "session_ended",
            ),
            (
                FrontError::LegacySessionAsRuntime,
                400,
                -32600,
                Client,
                "legacy_session_as_runtime",
            ),
            (
                FrontError::Modern(ModernError::Meta("missing".into())),
                400,
                -32602,
                Client,
                "invalid_meta",
            ),
            (
                FrontError::Modern(ModernError::UnsupportedVersion("2099-01-01".into())),
                400,
                -32022,
                Client,
                "unsupported_protocol_version",
            ),
            (
                FrontError::Modern(ModernError::HeaderMismatch("Mcp-Method".into())),
                400,
                -32020,
                Client,
                "header_mismatch",
            ),
            (
                FrontError::Modern(ModernError::Removed("ping".into())),
                404,
                -32601,
                Client,
                "removed_method",
            ),
            (
                FrontError::BadRequestState(StateError::Tampered),
                400,
                -32602,
                Client,
                "bad_request_state",
            ),
            (
                FrontError::Runtime(RuntimeError::AtCapacity(5)),
                503,
                -32002,
                Lodge,
                "at_capacity",
            ),
            (
                FrontError::Runtime(RuntimeError::ShuttingDown),
                503,
                -32002,
                Lodge,
                "shutting_down",
            ),
            (
                FrontError::Runtime(RuntimeError::HostExhausted(SandboxError::EmptyCommand)),
                503,
                -32002,
                Lodge,
                "host_exhausted",
            ),
            (
                FrontError::Runtime(RuntimeError::Spawn(SandboxError::EmptyCommand)),
                502,
                -32003,
                Server,
                "server_start_failed",
            ),
            (
                FrontError::Runtime(RuntimeError::Prepare("refused".into())),
                502,
                -32003,
                Server,
                "server_prepare_failed",
            ),
            (
                FrontError::Runtime(RuntimeError::Quota(QuotaExceeded::Sessions {
                    limit: 2,
                    retry_after: Duration::from_secs(60),
                })),
                429,
                -32007,
                Client,
                "quota_max_sessions",
            ),
            (
                FrontError::Runtime(RuntimeError::Quota(QuotaExceeded::Rate {
                    limit: 5,
                    retry_after: Duration::from_millis(1500),
                })),
                429,
                -32007,
                Client,
                "quota_sessions_per_minute",
            ),
            (auth(AuthRefusal::Missing), 401, -32005, Auth, "token_missing"),
            (auth(AuthRefusal::Invalid("expired".into())), 401, -32005, Auth, "token_invalid"),
            (auth(AuthRefusal::InsufficientScope("mcp".into())), 403, -32006, Auth, "insufficient_scope"),
            (auth(AuthRefusal::ClientNotAllowed("app".into())), 403, -32006, Auth, "client_not_allowed"),
            (auth(AuthRefusal::Unavailable("down".into())), 503, -32002, Lodge, "issuer_unavailable"),
            (
                FrontError::Session(SessionError::Gone),
                404,
                -32001,
                Client,
                "session_ended",
            ),
            (
                FrontError::Session(SessionError::DuplicateRequestId(Id::from_json_text("7"))),
                400,
                -32600,
                Client,
                "duplicate_request_id",
            ),
            (
                FrontError::Session(SessionError::UnknownEvent("9-9".into())),
                400,
                -32600,
                Client,
                "unknown_event",
            ),
            (
                FrontError::Session(SessionError::StaleState("used".into())),
                400,
                -32602,
                Client,
                "stale_request_state",
            ),
            (
                FrontError::Session(SessionError::ServerBusy),
                503,
                -32002,
                Server,
                "server_busy",
            ),
            (
                FrontError::Session(SessionError::ShuttingDown),
                503,
                -32002,
                Lodge,
                "shutting_down",
            ),
            (
                FrontError::Session(SessionError::Upstream("refused initialize".into())),
                502,
                -32003,
                Server,
                "server_refused",
            ),
            (
                FrontError::Session(SessionError::Internal("lost a call".into())),
                500,
                -32603,
                Lodge,
                "internal",
            ),
        ]
    }

    #[rustfmt::skip]
    #[test]
    fn relayed_errors_keep_the_status_their_code_calls_for() {
        assert_eq!(relayed_status(None), StatusCode::OK);
        assert_eq!(relayed_status(Some(codes::METHOD_NOT_FOUND)), StatusCode::NOT_FOUND);
        for code in [
            codes::INVALID_PARAMS,
            codes::HEADER_MISMATCH,
            codes::MISSING_CLIENT_CAPABILITY,
            codes::UNSUPPORTED_PROTOCOL_VERSION,
        ] {
            assert_eq!(relayed_status(Some(code)), StatusCode::BAD_REQUEST);
        }
        assert_eq!(
            relayed_status(Some(codes::INTERNAL_ERROR)),
            StatusCode::OK,
            "a tool's own failure is a JSON-RPC error inside a 200"
        );
    }

    #[test]
    fn every_failure_gets_its_status_code_and_label() {
        for (error, status, code, source, reason) in table() {
            let answer = error.answer();
            assert_eq!(
                (answer.status.as_u16(), answer.code, answer.label),
                (status, code, ErrorLabel { source, reason }),
                "{error:?}"
            );
        }
    }

    #[test]
    fn only_405_408_401_403_and_429_carry_headers() {
        for (error, ..) in table() {
            let headers = error.answer().headers;
            if let FrontError::Auth { challenge, .. } = &error {
                let expected: Vec<_> = challenge
                    .iter()
                    .map(|c| (header::WWW_AUTHENTICATE, HeaderValue::from_str(c).unwrap()))
                    .collect();
                assert_eq!(headers, expected, "{error:?}");
            } else if let FrontError::Runtime(RuntimeError::Quota(q)) = &error {
                // Whole seconds rounded up (1.5 s is 2), never 0 (that would say "now").
                let secs = if matches!(q, QuotaExceeded::Rate { .. }) {
                    2
                } else {
                    60
                };
                assert_eq!(q.retry_after_secs(), secs);
                assert_eq!(
                    headers,
                    vec![(header::RETRY_AFTER, HeaderValue::from(secs))]
                );
            } else if matches!(error, FrontError::MethodNotAllowed(_)) {
                assert_eq!(
                    headers,
                    vec![(header::ALLOW, HeaderValue::from_static("GET, POST, DELETE"))]
                );
            } else if matches!(error, FrontError::BodyTimeout { .. }) {
                assert_eq!(
                    headers,
                    vec![(header::CONNECTION, HeaderValue::from_static("close"))]
                );
            } else {
                assert!(headers.is_empty(), "{error:?}: {headers:?}");
            }
        }
    }

    #[tokio::test]
    async fn a_response_has_the_status_headers_label_and_a_json_rpc_body_with_the_id() {
        use axum::response::IntoResponse;
        let error =
            crate::errors::HttpError::from(FrontError::MethodNotAllowed(axum::http::Method::PUT))
                .with_id(Some(&Id::from_json_text("\"a\"")));
        let response = error.into_response();
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(response.headers()[header::ALLOW], "GET, POST, DELETE");
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
        assert_eq!(
            response.extensions().get::<ErrorLabel>(),
            Some(&ErrorLabel {
                source: ErrorSource::Client,
                reason: "method_not_allowed"
            })
        );
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .expect("the body is in memory");
        let body: serde_json::Value = serde_json::from_slice(&body).expect("a JSON body");
        assert_eq!(
            body,
            serde_json::json!({
                "jsonrpc": "2.0",
                "id": "a",
                "error": {
                    "code": -32600,
                    "message": "PUT is not supported; use POST, GET or DELETE",
                },
            })
        );
    }

    #[test]
    fn modern_errors_keep_their_data() {
        let error = FrontError::Modern(ModernError::UnsupportedVersion("2099-01-01".into()));
        let data = error.data().expect("unsupported version has data");
        assert_eq!(data["requested"], "2099-01-01");
    }
}
