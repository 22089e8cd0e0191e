//! The link from a session actor to its server: newline-delimited JSON-RPC over the
//! server's stdin and stdout, read and written by the actor itself (no task in between,
//! so a relayed message costs no thread hand-off), or, for a server spoken to over HTTP,
//! channels to the task that does the HTTP.

use crate::error::SessionError;
use bytes::{Buf, Bytes, BytesMut};
use lodge_proto::Message;
use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::process::{ChildStdin, ChildStdout};
use tokio::sync::mpsc;

/// Messages queued for a server that is slow to read before callers are told it is busy.
pub(crate) const WRITE_QUEUE: usize = 1024;
/// The stdout read buffer, held by every session while idle: big enough for most
/// messages in one read, small enough for ten thousand idle sessions.
const READ_BUFFER: usize = 4096;
/// Queued messages written with one system call, at most.
const WRITE_BATCH: usize = 32;

/// What the server said.
pub(crate) enum FromServer {
    Message(Message),
    /// stdout closed (the server exited or closed it), or it sent something we cannot carry.
    Closed(Option<String>),
}

/// How the actor reaches its server.
pub(crate) enum Link {
    Stdio(StdioLink<ChildStdout, ChildStdin>),
    /// A server spoken to over HTTP: a task does the HTTP and speaks to the actor over
    /// these channels.
    Channels {
        to_server: mpsc::Sender<Outgoing>,
        from_server: mpsc::Receiver<FromServer>,
    },
}

/// A message for a server reached over channels, with the trace it continues.
pub(crate) struct Outgoing {
    pub bytes: Bytes,
    pub trace: Option<Arc<str>>,
}

impl Link {
    /// Queues messages for the server, all or none; `trace` goes with them where the
    /// link can carry it (HTTP).
    pub(crate) fn send(
        &mut self,
        messages: Vec<Bytes>,
        trace: Option<&str>,
    ) -> Result<(), SessionError> {
        match self {
            Link::Stdio(link) => link.send(messages),
            Link::Channels { to_server, .. } => {
                let permits = to_server
                    .try_reserve_many(messages.len())
                    .map_err(|e| match e {
                        mpsc::error::TrySendError::Full(()) => SessionError::ServerBusy,
                        mpsc::error::TrySendError::Closed(()) => SessionError::Gone,
                    })?;
                let trace: Option<Arc<str>> = trace.map(Arc::from);
                for (permit, bytes) in permits.zip(messages) {
                    permit.send(Outgoing {
                        bytes,
                        trace: trace.clone(),
                    });
                }
                Ok(())
            }
        }
    }

    /// The server's next message, writing what is queued for it meanwhile. Cancel-safe:
    /// a message is either returned or still waiting for the next call.
    pub(crate) async fn next(&mut self) -> FromServer {
        match self {
            Link::Stdio(link) => link.next().await,
            Link::Channels { from_server, .. } => {
                from_server.recv().await.unwrap_or(FromServer::Closed(None))
            }
        }
    }

    /// How many lines the server wrote on stdout that were not JSON-RPC (stdio only).
    pub(crate) fn lines_skipped(&self) -> u32 {
        match self {
            Link::Stdio(link) => link.junk,
            Link::Channels { .. } => 0,
        }
    }

    /// Closes the server's stdin (or the HTTP task's queue): a polite first hint to exit.
    /// The server's output is still read until the link is dropped.
    pub(crate) fn close_input(&mut self) {
        match self {
            Link::Stdio(link) => {
                link.stdin = None;
                link.queue.clear();
            }
            Link::Channels { to_server, .. } => {
                // A closed sender: the HTTP task sees the queue end.
                let (closed, _) = mpsc::channel(1);
                *to_server = closed;
            }
        }
    }
}

/// A server's stdin and stdout, one JSON-RPC message per line.
pub(crate) struct StdioLink<R, W> {
    session: Arc<str>,
    /// `None` once closed, or once the server stopped reading (a write failed).
    stdin: Option<W>,
    /// Lines for the server, each message followed by its newline; the first may be
    /// partly written (`written` bytes of it).
    queue: VecDeque<Bytes>,
    written: usize,
    stdout: LineReader<R>,
    /// Lines that were not JSON-RPC so far (only the first few are logged).
    junk: u32,
}

/// Non-JSON-RPC lines logged per session; the rest are skipped silently.
const JUNK_LOGGED: u32 = 10;

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> StdioLink<R, W> {
    pub(crate) fn new(session: Arc<str>, stdout: R, stdin: W, max_line: usize) -> Self {
        StdioLink {
            session,
            stdin: Some(stdin),
            queue: VecDeque::new(),
            written: 0,
            stdout: LineReader::new(stdout, max_line),
            junk: 0,
        }
    }

    fn send(&mut self, messages: Vec<Bytes>) -> Result<(), SessionError> {
        if self.stdin.is_none() {
            return Err(SessionError::Gone);
        }
        if self.queue.len() / 2 + messages.len() > WRITE_QUEUE {
            return Err(SessionError::ServerBusy);
        }
        for message in messages {
            self.queue.push_back(one_line(message));
            self.queue.push_back(Bytes::from_static(b"\n"));
        }
        Ok(())
    }

    async fn next(&mut self) -> FromServer {
        loop {
            let writing = self.stdin.is_some() && !self.queue.is_empty();
            tokio::select! {
                biased;
                written = write_some(self.stdin.as_mut(), &self.queue, self.written), if writing => {
                    match written {
                        Ok(n) => self.advance(n),
                        Err(e) => {
                            // The server no longer reads its input; its output may still
                            // explain why, and its end will be reported from there.
                            tracing::debug!(session = %self.session, error = %e, "cannot write to the server's stdin");
                            self.stdin = None;
                            self.queue.clear();
                        }
                    }
                }
                line = self.stdout.next_line() => match line {
                    Ok(Some(line)) => match Message::parse(line) {
                        Ok(message) => return FromServer::Message(message),
                        Err(e) => self.skipped(&e),
                    },
                    Ok(None) => return FromServer::Closed(None),
                    Err(e) => return FromServer::Closed(Some(e.to_string())),
                },
            }
        }
    }

    fn skipped(&mut self, error: &dyn std::fmt::Display) {
        self.junk = self.junk.saturating_add(1);
        if self.junk <= JUNK_LOGGED {
            tracing::warn!(session = %self.session, %error, "server wrote a line that is not JSON-RPC; skipped");
        }
        if self.junk == JUNK_LOGGED {
            tracing::warn!(session = %self.session, "further lines that are not JSON-RPC are skipped without a log line");
        }
    }

    fn advance(&mut self, mut n: usize) {
        while n > 0 {
            let Some(front) = self.queue.front() else {
                return;
            };
            let left = front.len() - self.written;
            if n < left {
                self.written += n;
                return;
            }
            n -= left;
            self.written = 0;
            self.queue.pop_front();
        }
    }
}

/// One write of as much of the queue as the pipe takes. Cancel-safe: a single write.
async fn write_some<W: AsyncWrite + Unpin>(
    stdin: Option<&mut W>,
    queue: &VecDeque<Bytes>,
    written: usize,
) -> io::Result<usize> {
    let Some(stdin) = stdin else {
        return Err(io::ErrorKind::BrokenPipe.into());
    };
    let mut slices = [IoSlice::new(&[]); WRITE_BATCH];
    let mut count = 0;
    for (i, chunk) in queue.iter().take(WRITE_BATCH).enumerate() {
        slices[i] = IoSlice::new(if i == 0 { &chunk[written..] } else { chunk });
        count += 1;
    }
    match stdin.write_vectored(&slices[..count]).await? {
        0 => Err(io::ErrorKind::WriteZero.into()),
        n => Ok(n),
    }
}

/// The stdio transport is one message per line, but a client may send pretty-printed
/// JSON. Raw line breaks in JSON can only be whitespace between tokens (inside strings
/// they must be escaped), so turning them into spaces keeps the message identical.
fn one_line(msg: Bytes) -> Bytes {
    if !msg.iter().any(|&b| b == b'\n' || b == b'\r') {
        return msg;
    }
    msg.iter()
        .map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b })
        .collect::<Vec<u8>>()
        .into()
}

/// Lines from a server's stdout, with a cap on their length. Cancel-safe: what was read
/// stays in the buffer for the next call.
struct LineReader<R> {
    inner: R,
    buf: BytesMut,
    /// Bytes of `buf` already searched for a newline.
    searched: usize,
    max_line: usize,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    fn new(inner: R, max_line: usize) -> Self {
        LineReader {
            inner,
            buf: BytesMut::new(),
            searched: 0,
            max_line,
        }
    }

    /// The next non-blank line without its line ending, copied out of the buffer (an
    /// event kept for replay must not pin the whole read buffer); `None` at end of file.
    async fn next_line(&mut self) -> io::Result<Option<Bytes>> {
        loop {
            // Blank lines (and the whitespace before a message) are skipped in one pass,
            // not one line at a time: a server flooding newlines costs a scan, no more.
            if self.searched == 0 {
                let blank = self
                    .buf
                    .iter()
                    .position(|b| !b.is_ascii_whitespace())
                    .unwrap_or(self.buf.len());
                self.buf.advance(blank);
            }
            let line = match self.buf[self.searched..].iter().position(|&b| b == b'\n') {
                Some(i) => Some(self.searched + i + 1),
                None if self.buf.len() > self.max_line => {
                    return Err(io::Error::other(format!(
                        "the server wrote a message longer than {} bytes",
                        self.max_line
                    )));
                }
                None => None,
            };
            if let Some(end) = line {
                if end - 1 > self.max_line {
                    return Err(io::Error::other(format!(
                        "the server wrote a message longer than {} bytes",
                        self.max_line
                    )));
                }
                let text = Bytes::copy_from_slice(trim_line(&self.buf[..end]));
                self.buf.advance(end);
                self.searched = 0;
                if !text.is_empty() {
                    return Ok(Some(text));
                }
                continue;
            }
            self.searched = self.buf.len();
            if self.buf.capacity() - self.buf.len() < READ_BUFFER / 4 {
                self.buf.reserve(READ_BUFFER);
            }
            if self.inner.read_buf(&mut self.buf).await? == 0 {
                // End of file: a last line without its newline still counts.
                let text = Bytes::copy_from_slice(trim_line(&self.buf));
                self.buf.clear();
                self.searched = 0;
                return Ok((!text.is_empty()).then_some(text));
            }
        }
    }
}

/// Reads `input` to its end as a server's stdout is read (lines of at most `max_line`
/// bytes); every line, then the error that ended the read, if any. Only for the
/// `stdio_lines` fuzz target in `fuzz/`; not an API.
#[doc(hidden)]
pub async fn fuzz_read_lines<R: AsyncRead + Unpin>(
    input: R,
    max_line: usize,
) -> (Vec<Bytes>, Option<io::Error>) {
    let mut reader = LineReader::new(input, max_line);
    let mut lines = Vec::new();
    loop {
        match reader.next_line().await {
            Ok(Some(line)) => lines.push(line),
            Ok(None) => return (lines, None),
            Err(e) => return (lines, Some(e)),
        }
    }
}

fn trim_line(line: &[u8]) -> &[u8] {
    let end = line
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(0, |i| i + 1);
    &line[..end]
}

/// For a server spoken to over HTTP: its stdout is only output, logged like stderr (lines
/// cut, at most `log_cap` bytes, control characters escaped); its end still tells the
/// actor the server exited. Holding stdin keeps it open.
pub(crate) async fn drain_loop(
    session: std::sync::Arc<str>,
    stdin: impl AsyncWrite + Unpin,
    stdout: impl AsyncRead + Unpin,
    log_cap: usize,
    to_actor: mpsc::Sender<FromServer>,
) {
    let _stdin = stdin;
    lodge_sandbox::log_server_stdout(stdout, session, log_cap).await;
    let _ = to_actor.send(FromServer::Closed(None)).await;
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn text(event: FromServer) -> String {
        match event {
            FromServer::Message(m) => String::from_utf8(m.bytes.to_vec()).unwrap(),
            FromServer::Closed(why) => format!("closed {why:?}"),
        }
    }

    #[tokio::test]
    async fn reads_messages_skips_junk_and_reports_close() {
        let input: &[u8] = b"{\"jsonrpc\":\"2.0\",\"method\":\"a\"}\r\nnot json\n\n{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}";
        let mut link = StdioLink::new("s".into(), input, Vec::new(), 1024);
        let mut got = vec![];
        loop {
            let event = text(link.next().await);
            let closed = event.starts_with("closed");
            got.push(event);
            if closed {
                break;
            }
        }
        assert_eq!(
            got,
            vec![
                r#"{"jsonrpc":"2.0","method":"a"}"#,
                r#"{"jsonrpc":"2.0","id":1,"result":{}}"#,
                "closed None"
            ]
        );
    }

    /// `left` bytes of `fill`, generated without holding them.
    struct Flood {
        fill: u8,
        left: usize,
    }

    impl AsyncRead for Flood {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            let n = buf.remaining().min(self.left).min(1 << 16);
            buf.put_slice(&vec![self.fill; n]);
            self.left -= n;
            std::task::Poll::Ready(Ok(()))
        }
    }

    fn peak_rss_kib() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// An HTTP-transport server's stdout is only logged: one 100 MiB line costs Lodge a
    /// cut line, not 100 MiB (the old reader collected the whole line, then logged it).
    #[tokio::test(flavor = "current_thread")]
    async fn an_http_server_s_100_mib_stdout_line_is_not_held() {
        let before = peak_rss_kib();
        let (to_actor, mut closed) = mpsc::channel(1);
        let stdout = Flood {
            fill: b'x',
            left: 100 << 20,
        };
        drain_loop("s".into(), Vec::new(), stdout, 1 << 20, to_actor).await;
        assert!(matches!(
            closed.recv().await,
            Some(FromServer::Closed(None))
        ));
        let grown = peak_rss_kib().saturating_sub(before);
        assert!(grown < 32 << 10, "peak RSS grew by {grown} KiB");
    }

    #[tokio::test]
    async fn blank_line_floods_are_skipped_in_one_pass() {
        let mut input = vec![b'\n'; 1 << 20];
        input.extend_from_slice(b"  \r\n\t{\"jsonrpc\":\"2.0\",\"method\":\"a\"}\n\n\n");
        let mut link = StdioLink::new("s".into(), &input[..], Vec::new(), 1024);
        assert_eq!(text(link.next().await), r#"{"jsonrpc":"2.0","method":"a"}"#);
        assert_eq!(text(link.next().await), "closed None");
    }

    #[tokio::test]
    async fn oversized_lines_close_with_reason() {
        for input in [&[b'x'; 100][..], b"xxxxxxxxxxxxxxxxxxxx\n{}\n"] {
            let mut link = StdioLink::new("s".into(), input, Vec::new(), 10);
            let closed = text(link.next().await);
            assert!(closed.contains("longer than 10 bytes"), "{closed}");
        }
    }

    #[tokio::test]
    async fn writes_one_line_per_message() {
        let mut link = StdioLink::new("s".into(), &b""[..], Vec::new(), 1024);
        link.send(vec![
            Bytes::from_static(b"{}"),
            Bytes::from_static(b"{\"a\":\r\n \"x\\ny\"}"),
        ])
        .unwrap();
        // Queued output is written before the end of the server's output is reported.
        assert_eq!(text(link.next().await), "closed None");
        assert_eq!(link.stdin.unwrap(), b"{}\n{\"a\":   \"x\\ny\"}\n");
    }

    #[tokio::test]
    async fn a_slow_reader_gets_every_byte_while_the_server_is_heard() {
        // stdin takes 7 bytes at a time; the server answers once it has read everything.
        let (stdin, mut server_in) = tokio::io::duplex(7);
        let (stdout, mut server_out) = tokio::io::duplex(64);
        let mut link = StdioLink::new("s".into(), stdout, stdin, 1024);
        let messages: Vec<Bytes> = (0..20)
            .map(|i| Bytes::from(format!("{{\"jsonrpc\":\"2.0\",\"method\":\"m{i}\"}}")))
            .collect();
        let expected: Vec<u8> = messages
            .iter()
            .flat_map(|m| m.iter().copied().chain([b'\n']))
            .collect();
        link.send(messages).unwrap();
        let server = tokio::spawn(async move {
            let mut got = vec![0; expected.len()];
            server_in.read_exact(&mut got).await.unwrap();
            assert_eq!(got, expected);
            server_out
                .write_all(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n")
                .await
                .unwrap();
        });
        assert_eq!(
            text(link.next().await),
            r#"{"jsonrpc":"2.0","id":1,"result":{}}"#
        );
        server.await.unwrap();
    }

    #[tokio::test]
    async fn a_full_queue_is_busy_and_a_closed_input_is_gone() {
        let mut link = StdioLink::new("s".into(), &b""[..], Vec::new(), 1024);
        let many = vec![Bytes::from_static(b"{}"); WRITE_QUEUE + 1];
        assert!(matches!(link.send(many), Err(SessionError::ServerBusy)));
        link.stdin = None;
        assert!(matches!(
            link.send(vec![Bytes::from_static(b"{}")]),
            Err(SessionError::Gone)
        ));
    }
}
