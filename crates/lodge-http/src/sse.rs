//! Server-sent events out of a session stream.

use crate::unanswered::Unanswered;
use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::StreamExt;
use lodge_proto::headers::MCP_SESSION_ID;
use lodge_runtime::{CallStream, Event, EventStream};
use std::convert::Infallible;
use std::fmt::Write;
use std::time::Duration;
use tokio::sync::mpsc::error::TryRecvError;

/// One event as SSE text. Message data is a single JSON line (servers write one
/// message per line and Lodge forwards it untouched), so it fits one `data:` field.
pub(crate) fn frame(event: &Event) -> Bytes {
    let mut out = BytesMut::with_capacity(event.data.len() + 32);
    let _ = writeln!(out, "id: {}", event.id);
    if event.data.is_empty() {
        // A priming event (SEP-1699): tells the client how soon to resume if cut off.
        let _ = write!(out, "retry: {}\ndata:", RETRY_MS);
    } else {
        out.put_slice(b"data: ");
        out.put_slice(&event.data);
    }
    out.put_slice(b"\n\n");
    out.freeze()
}

/// A comment line sent when a stream has been quiet this long, so proxies and load
/// balancers do not cut a long call, and a vanished client is noticed.
/// Reconnection delay advertised on priming events, in milliseconds.
const RETRY_MS: u64 = 1000;

const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// How long an SSE answer's headers and priming event may wait for the stream's first
/// message. A quick call's headers, priming event and response then leave in one write
/// (one segment, one wake-up for the client) instead of two; otherwise the headers go
/// out this much later. Any message ends the wait: a server request must not be held.
const FIRST_WRITE_WAIT: Duration = Duration::from_millis(2);

pub(crate) async fn response(events: EventStream, session_id: Option<&str>) -> Response {
    respond(events, session_id, None).await
}

/// The SSE answer to an initialize: `unanswered` goes with the stream and is settled
/// once the initialize response has been handed to the connection, so a client that
/// drops the stream before then ends the session it never got.
pub(crate) async fn response_answering(
    events: EventStream,
    session_id: &str,
    unanswered: Unanswered,
) -> Response {
    respond(events, Some(session_id), Some(unanswered)).await
}

async fn respond(
    mut events: EventStream,
    session_id: Option<&str>,
    mut unanswered: Option<Unanswered>,
) -> Response {
    let mut first = BytesMut::new();
    let mut open = true;
    let mut first_answers = false;
    let until = tokio::time::Instant::now() + FIRST_WRITE_WAIT;
    while let Ok(next) = tokio::time::timeout_at(until, events.recv()).await {
        let Some(event) = next else {
            open = false;
            break;
        };
        first.put(frame(&event));
        if !event.data.is_empty() {
            let mut answered = event.is_response;
            // A message: send it with whatever else is already there (often the end).
            loop {
                match events.try_recv() {
                    Ok(event) => {
                        answered |= event.is_response;
                        first.put(frame(&event));
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        open = false;
                        break;
                    }
                }
            }
            if answered {
                // Settled when the first write is taken, below.
                first_answers = true;
            }
            break;
        }
    }
    // The first write carries the response: settle when the connection takes it.
    let mut first_guard = if first_answers {
        unanswered.take()
    } else {
        None
    };
    let first = futures_util::stream::once(async move {
        if let Some(guard) = first_guard.as_mut() {
            guard.answered();
        }
        Ok::<_, Infallible>(first.freeze())
    });
    let rest =
        futures_util::stream::unfold(open.then_some((events, unanswered)), |state| async move {
            let (mut events, mut unanswered) = state?;
            let next = tokio::select! {
                event = events.recv() => {
                    let event = event?;
                    if event.is_response && let Some(guard) = unanswered.as_mut() {
                        guard.answered();
                    }
                    frame(&event)
                }
                () = tokio::time::sleep(KEEP_ALIVE) => Bytes::from_static(KEEP_ALIVE_COMMENT),
            };
            Some((Ok::<_, Infallible>(next), Some((events, unanswered))))
        });
    with_headers(
        Response::new(Body::from_stream(first.chain(rest))),
        session_id,
    )
}

const KEEP_ALIVE_COMMENT: &[u8] = b": keep-alive\n\n";

/// A 2026-07-28 response stream, starting with an event already received. The call
/// stream lives in the body: when the client goes away the body is dropped, and
/// with it the call, which cancels the request.
pub(crate) fn modern_response(first: Event, events: CallStream) -> Response {
    let frames =
        futures_util::stream::unfold((Some(first), events), |(first, mut events)| async move {
            if let Some(first) = first {
                return Some((Ok::<_, Infallible>(frame(&first)), (None, events)));
            }
            let next = tokio::select! {
                event = events.recv() => frame(&event?),
                () = tokio::time::sleep(KEEP_ALIVE) => Bytes::from_static(KEEP_ALIVE_COMMENT),
            };
            Some((Ok(next), (None, events)))
        });
    with_headers(Response::new(Body::from_stream(frames)), None)
}

fn with_headers(mut response: Response, session_id: Option<&str>) -> Response {
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    if let Some(id) = session_id.and_then(|id| HeaderValue::from_str(id).ok()) {
        headers.insert(MCP_SESSION_ID, id);
    }
    response
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use lodge_runtime::EventId;

    #[test]
    fn frames_messages_and_priming_events() {
        let id = EventId { stream: 2, seq: 5 };
        let msg = Event {
            id,
            data: Bytes::from_static(b"{\"a\":1}"),
            is_response: false,
            error_code: None,
            charge: None,
        };
        assert_eq!(&frame(&msg)[..], b"id: 2-5\ndata: {\"a\":1}\n\n");
        let priming = Event {
            id,
            data: Bytes::new(),
            is_response: false,
            error_code: None,
            charge: None,
        };
        assert_eq!(&frame(&priming)[..], b"id: 2-5\nretry: 1000\ndata:\n\n");
    }

    fn event(seq: u64, data: &'static [u8]) -> Event {
        Event {
            id: EventId { stream: 1, seq },
            data: Bytes::from_static(data),
            is_response: !data.is_empty(),
            error_code: None,
            charge: None,
        }
    }

    #[tokio::test]
    async fn a_quick_answer_leaves_in_one_write_with_its_priming_event() {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tx.send(event(0, b"")).await.unwrap();
        tx.send(event(1, b"{}")).await.unwrap();
        drop(tx);
        let mut frames = response(rx, None).await.into_body().into_data_stream();
        let first = frames.next().await.unwrap().unwrap();
        assert_eq!(
            &first[..],
            b"id: 1-0\nretry: 1000\ndata:\n\nid: 1-1\ndata: {}\n\n"
        );
        assert!(frames.next().await.is_none());
    }

    // Paused time: the clock moves only when every task waits for a timer, so a wait
    // for FIRST_WRITE_WAIT would show as exactly that much elapsed.
    #[tokio::test(start_paused = true)]
    async fn a_server_request_is_sent_at_once_on_an_open_stream() {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tx.send(event(0, b"")).await.unwrap();
        tx.send(event(1, b"{\"method\":\"elicitation/create\"}"))
            .await
            .unwrap();
        let started = tokio::time::Instant::now();
        let mut frames = response(rx, None).await.into_body().into_data_stream();
        let first = frames.next().await.unwrap().unwrap();
        assert_eq!(started.elapsed(), Duration::ZERO, "the request was held");
        assert_eq!(
            &first[..],
            b"id: 1-0\nretry: 1000\ndata:\n\nid: 1-1\ndata: {\"method\":\"elicitation/create\"}\n\n"
        );
        drop(tx);
        assert!(frames.next().await.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_answer_gets_its_priming_event_first() {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tx.send(event(0, b"")).await.unwrap();
        let mut frames = response(rx, None).await.into_body().into_data_stream();
        let first = frames.next().await.unwrap().unwrap();
        assert_eq!(&first[..], b"id: 1-0\nretry: 1000\ndata:\n\n");
        tx.send(event(1, b"{}")).await.unwrap();
        let next = frames.next().await.unwrap().unwrap();
        assert_eq!(&next[..], b"id: 1-1\ndata: {}\n\n");
    }
}
