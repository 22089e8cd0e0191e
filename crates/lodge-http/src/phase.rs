//! Where a connection is between requests, for the two deadlines [`crate::accept`]
//! holds it to: `header_read_timeout` while a request's head is awaited or arriving,
//! `keep_alive_timeout` while a kept-alive connection is idle. (hyper's own header
//! timeout also runs while a connection idles, so connections a client kept for its
//! next request were closed under it, and a request sent at that moment was reset.)

use axum::body::Body;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Awaiting or reading a request's head (a new connection starts here).
const HEAD: u8 = 0;
/// The head is read: the request is being served.
const SERVING: u8 = 1;
/// The response is done; waiting for the next request.
const IDLE: u8 = 2;

/// One connection's phase and since when it is in it.
pub(crate) struct Phase {
    state: AtomicU8,
    /// Milliseconds after `start` the phase began.
    since_ms: AtomicU64,
    start: Instant,
    /// Requests served so far: a late end of one response must not end the next.
    served: AtomicU64,
    /// Woken when a deadline may have moved.
    pub changed: Notify,
}

/// The deadline a connection's phase sets, and what passing it means.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Deadline {
    /// The head did not arrive in time: close the connection.
    Head(Instant),
    /// Idle too long: close it gracefully.
    Idle(Instant),
    /// A request is being served (its body has its own deadline).
    None,
}

impl Phase {
    pub fn new() -> Arc<Phase> {
        Arc::new(Phase {
            state: AtomicU8::new(HEAD),
            since_ms: AtomicU64::new(0),
            start: Instant::now(),
            served: AtomicU64::new(0),
            changed: Notify::new(),
        })
    }

    pub fn deadline(
        &self,
        header_read: std::time::Duration,
        keep_alive: std::time::Duration,
    ) -> Deadline {
        let since =
            self.start + std::time::Duration::from_millis(self.since_ms.load(Ordering::Acquire));
        match self.state.load(Ordering::Acquire) {
            HEAD => Deadline::Head(since + header_read),
            IDLE => Deadline::Idle(since + keep_alive),
            _ => Deadline::None,
        }
    }

    fn enter(&self, state: u8) {
        let now = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.since_ms.store(now, Ordering::Release);
        self.state.store(state, Ordering::Release);
        self.changed.notify_one();
    }

    /// Bytes arrived: on an idle connection, a new request's head has begun.
    fn bytes_arrived(&self) {
        if self.state.load(Ordering::Relaxed) == IDLE {
            self.enter(HEAD);
        }
    }

    /// A request's head was read; returns the request's number.
    fn serving(&self) -> u64 {
        let request = self.served.fetch_add(1, Ordering::AcqRel) + 1;
        self.enter(SERVING);
        request
    }

    fn response_done(&self, request: u64) {
        if self.state.load(Ordering::Acquire) == SERVING
            && self.served.load(Ordering::Acquire) == request
        {
            self.enter(IDLE);
        }
    }
}

/// The connection's socket, telling its [`Phase`] when bytes arrive.
pub(crate) struct Watched {
    pub tcp: TcpStream,
    pub phase: Arc<Phase>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.tcp).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.phase.bytes_arrived();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

/// The app as hyper calls it on one connection: a request whose head was read is
/// being served until its response body ends (or is dropped).
pub(crate) struct Marked {
    pub app: hyper_util::service::TowerToHyperService<axum::Router>,
    pub phase: Arc<Phase>,
}

type Serving = Pin<Box<dyn Future<Output = Result<hyper::Response<Body>, Infallible>> + Send>>;

impl hyper::service::Service<hyper::Request<Incoming>> for Marked {
    type Response = hyper::Response<Body>;
    type Error = Infallible;
    type Future = Serving;

    fn call(&self, request: hyper::Request<Incoming>) -> Serving {
        let number = self.phase.serving();
        let phase = self.phase.clone();
        let response = self.app.call(request);
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|body| {
                Body::new(UntilDone {
                    body,
                    phase,
                    number,
                })
            }))
        })
    }
}

/// A response body that tells the connection's [`Phase`] when it is over.
struct UntilDone {
    body: Body,
    phase: Arc<Phase>,
    /// Which request of the connection this answers.
    number: u64,
}

impl HttpBody for UntilDone {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) {
            self.phase.response_done(self.number);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for UntilDone {
    fn drop(&mut self) {
        self.phase.response_done(self.number);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const HEADER: Duration = Duration::from_secs(10);
    const KEEP: Duration = Duration::from_secs(120);

    #[tokio::test(start_paused = true)]
    async fn a_connection_is_held_to_the_header_deadline_only_while_a_head_is_due() {
        let phase = Phase::new();
        let start = Instant::now();
        assert_eq!(phase.deadline(HEADER, KEEP), Deadline::Head(start + HEADER));
        let first = phase.serving();
        assert_eq!(phase.deadline(HEADER, KEEP), Deadline::None);
        tokio::time::advance(Duration::from_secs(30)).await;
        phase.response_done(first);
        let idle = Instant::now();
        assert_eq!(phase.deadline(HEADER, KEEP), Deadline::Idle(idle + KEEP));
        tokio::time::advance(Duration::from_secs(60)).await;
        phase.bytes_arrived();
        let head = Instant::now();
        assert_eq!(phase.deadline(HEADER, KEEP), Deadline::Head(head + HEADER));
        // More bytes of the same head do not move its deadline.
        tokio::time::advance(Duration::from_secs(5)).await;
        phase.bytes_arrived();
        assert_eq!(phase.deadline(HEADER, KEEP), Deadline::Head(head + HEADER));
        // The first response's body dropped late does not end the second request.
        let _second = phase.serving();
        phase.response_done(first);
        assert_eq!(phase.deadline(HEADER, KEEP), Deadline::None);
    }
}
