//! Every error the front returns: the spec's status code and a JSON-RPC error body.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use lodge_proto::{Id, codes, error_body_with_data};
use lodge_runtime::{EndReason, RuntimeError, SessionError};

pub(crate) struct HttpError {
    pub status: StatusCode,
    pub code: i64,
    pub message: String,
    pub id: Option<Id>,
    pub data: Option<serde_json::Value>,
}

pub(crate) fn http_error(status: StatusCode, code: i64, message: impl Into<String>) -> HttpError {
    HttpError {
        status,
        code,
        message: message.into(),
        id: None,
        data: None,
    }
}

impl HttpError {
    pub fn with_id(mut self, id: Option<&Id>) -> Self {
        self.id = id.cloned();
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        http_error(StatusCode::BAD_REQUEST, codes::INVALID_REQUEST, message)
    }

    pub fn session_ended(reason: &EndReason) -> Self {
        http_error(
            StatusCode::NOT_FOUND,
            codes::SESSION_NOT_FOUND,
            format!(
                "Session not found: it ended because {reason}. Send a new initialize request to start a new session."
            ),
        )
    }

    pub fn unknown_session() -> Self {
        http_error(
            StatusCode::NOT_FOUND,
            codes::SESSION_NOT_FOUND,
            "Session not found: this server has no session with that Mcp-Session-Id. Send a new initialize request to start a new session.",
        )
    }
}

impl From<RuntimeError> for HttpError {
    fn from(e: RuntimeError) -> Self {
        let (status, code) = match e {
            RuntimeError::AtCapacity(_)
            | RuntimeError::ShuttingDown
            | RuntimeError::HostExhausted(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, codes::UNAVAILABLE)
            }
            RuntimeError::Spawn(_) | RuntimeError::Prepare(_) => {
                (StatusCode::BAD_GATEWAY, codes::SERVER_START_FAILED)
            }
        };
        http_error(status, code, e.to_string())
    }
}

/// Maps a session error; `Gone` needs the end reason, which the caller looks up.
pub(crate) fn from_session_error(e: SessionError, ended: Option<EndReason>) -> HttpError {
    let status = match e {
        SessionError::Gone => {
            return match ended {
                Some(reason) => HttpError::session_ended(&reason),
                None => HttpError::unknown_session(),
            };
        }
        SessionError::DuplicateRequestId(_)
        | SessionError::UnknownEvent(_)
        | SessionError::WrongEra(_) => StatusCode::BAD_REQUEST,
        SessionError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        SessionError::StaleState(_) => StatusCode::BAD_REQUEST,
        SessionError::ServerBusy | SessionError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
        SessionError::Upstream(_) => StatusCode::BAD_GATEWAY,
    };
    http_error(status, e.code(), e.to_string())
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(status = %self.status, message = %self.message, "request failed");
        } else {
            tracing::debug!(status = %self.status, message = %self.message, "request rejected");
        }
        (
            self.status,
            [(header::CONTENT_TYPE, "application/json")],
            error_body_with_data(
                self.id.as_ref(),
                self.code,
                &self.message,
                self.data.as_ref(),
            ),
        )
            .into_response()
    }
}
