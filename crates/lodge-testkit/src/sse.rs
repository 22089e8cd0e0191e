//! Reading `text/event-stream` bodies into events, with the `sse-stream` parser the rest of
//! the workspace uses: whole bodies ([`parse`]) and bodies still arriving ([`EventReader`]).
//! Only what MCP needs is kept: `id` and the `data` lines (joined with `\n`). Comments and
//! `retry` are not events.

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{FutureExt, StreamExt};
use serde_json::Value;
use sse_stream::{Error, Sse, SseStream};
use std::convert::Infallible;

/// One event. Empty `data` is a priming event (an id to resume from, no message).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SseEvent {
    pub id: Option<String>,
    pub data: String,
}

impl SseEvent {
    /// The data as JSON.
    pub fn try_json(&self) -> Result<Value, serde_json::Error> {
        serde_json::from_str(&self.data)
    }

    /// The data as JSON; panics (a failed test) when it is not.
    pub fn json(&self) -> Value {
        self.try_json()
            .unwrap_or_else(|e| panic!("SSE data is not JSON ({e}): {}", self.data))
    }
}

impl From<Sse> for SseEvent {
    fn from(sse: Sse) -> Self {
        SseEvent {
            id: sse.id,
            data: sse.data.unwrap_or_default(),
        }
    }
}

/// Every event of a complete body.
pub fn parse(text: &str) -> Result<Vec<SseEvent>, Error> {
    let body =
        futures_util::stream::iter([Ok::<_, Infallible>(Bytes::copy_from_slice(text.as_bytes()))]);
    SseStream::from_bytes_stream(body)
        .map(|event| event.map(SseEvent::from))
        .collect::<Vec<_>>()
        // The body is already in memory: every poll is ready.
        .now_or_never()
        .unwrap_or_default()
        .into_iter()
        .collect()
}

/// The events of a response body as they arrive.
pub struct EventReader {
    events: BoxStream<'static, Result<Sse, Error>>,
}

impl EventReader {
    pub fn new(response: reqwest::Response) -> Self {
        EventReader {
            events: SseStream::from_bytes_stream(response.bytes_stream()).boxed(),
        }
    }

    /// The next event; `None` once the body has ended.
    pub async fn next(&mut self) -> Option<Result<SseEvent, Error>> {
        self.events
            .next()
            .await
            .map(|event| event.map(SseEvent::from))
    }
}

/// Reads events until `stop` says enough, then drops the connection (which is what a
/// client losing its network does). Panics (a failed test) when the stream stalls for 30 s
/// or breaks.
pub async fn read_events_until(
    response: reqwest::Response,
    mut stop: impl FnMut(&SseEvent) -> bool,
) -> Vec<SseEvent> {
    let mut reader = EventReader::new(response);
    let mut events = Vec::new();
    while let Some(event) = tokio::time::timeout(std::time::Duration::from_secs(30), reader.next())
        .await
        .unwrap_or_else(|_| panic!("stream stalled after {events:?}"))
    {
        let event = event.unwrap_or_else(|e| panic!("bad SSE after {events:?}: {e}"));
        let done = stop(&event);
        events.push(event);
        if done {
            break;
        }
    }
    events
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn event(id: Option<&str>, data: &str) -> SseEvent {
        SseEvent {
            id: id.map(str::to_owned),
            data: data.to_owned(),
        }
    }

    #[test]
    fn priming_events_messages_and_comments() {
        let body = "id: 1-0\nretry: 1000\ndata:\n\n: keep-alive\n\nid: 1-1\ndata: {\"a\":1}\n\n";
        assert_eq!(
            parse(body).unwrap(),
            [event(Some("1-0"), ""), event(Some("1-1"), "{\"a\":1}")]
        );
        assert_eq!(parse(body).unwrap()[1].json(), serde_json::json!({"a":1}));
    }

    #[test]
    fn crlf_and_multiline_data() {
        assert_eq!(
            parse(": comment\r\ndata: a\r\ndata: b\r\n\r\n").unwrap(),
            [event(None, "a\nb")]
        );
    }

    #[test]
    fn an_unfinished_event_is_not_an_event_and_a_bad_line_is_an_error() {
        assert_eq!(
            parse("id: 1\ndata: {}\n\nid: 2\ndata: {").unwrap(),
            [event(Some("1"), "{}")]
        );
        assert!(parse("nonsense\n\n").is_err());
    }
}
