//! Server stderr: read line by line on a task, logged up to a byte cap, the last few lines
//! kept for error messages. The reader never stops reading, so the server never blocks on
//! a full stderr pipe. Backend-agnostic: it takes any `AsyncRead`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::task::JoinHandle;

use crate::SandboxId;

/// Lines kept for [`StderrCapture::tail`].
pub(crate) const TAIL_LINES: usize = 10;
/// Longer lines are cut here (the rest of the line is read and dropped).
const MAX_LINE: usize = 8 * 1024;
/// Tail lines are cut here: they end up in error messages.
const MAX_TAIL_LINE: usize = 512;
const TRUNCATED: &str = " [truncated]";

type Tail = Arc<Mutex<VecDeque<String>>>;

/// The task reading a server's stderr, and the tail it keeps.
#[derive(Debug)]
pub(crate) struct StderrCapture {
    tail: Tail,
    task: Option<JoinHandle<()>>,
}

impl StderrCapture {
    /// Start reading `stderr` on a new task. Must be called within a Tokio runtime.
    pub(crate) fn spawn<R>(stderr: R, sandbox: SandboxId, cap: usize) -> Self
    where
        R: AsyncRead + Unpin + Send + 'static,
    {
        let tail = Tail::default();
        let task = tokio::spawn(read_stderr(stderr, sandbox, cap, Arc::clone(&tail)));
        StderrCapture {
            tail,
            task: Some(task),
        }
    }

    /// The last (up to [`TAIL_LINES`]) lines read so far, oldest first.
    pub(crate) fn tail(&self) -> Vec<String> {
        lock(&self.tail).iter().cloned().collect()
    }

    /// Wait up to `timeout` for the reader to hit end of file (so the tail is complete).
    /// Returns at once once the reader has finished. Cancel-safe.
    pub(crate) async fn drain(&mut self, timeout: Duration) {
        if let Some(task) = &mut self.task
            && tokio::time::timeout(timeout, task).await.is_ok()
        {
            self.task = None;
        }
    }

    /// Stop the reader (e.g. an escaped grandchild still holds the pipe open).
    pub(crate) fn abort(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl Drop for StderrCapture {
    fn drop(&mut self) {
        self.abort();
    }
}

fn lock(tail: &Tail) -> std::sync::MutexGuard<'_, VecDeque<String>> {
    tail.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn read_stderr<R: AsyncRead + Unpin>(stderr: R, sandbox: SandboxId, cap: usize, tail: Tail) {
    // Small: every idle session holds it, and stderr is rarely busy (`line` grows as needed).
    let mut reader = BufReader::with_capacity(1024, stderr);
    let mut budget = LogBudget::new(cap);
    let mut line = Vec::new();
    let mut truncated = false;
    loop {
        let buf = match reader.fill_buf().await {
            Ok(buf) => buf,
            Err(error) => {
                tracing::debug!(%sandbox, %error, "reading server stderr failed");
                break;
            }
        };
        if buf.is_empty() {
            if !line.is_empty() {
                emit(&line, truncated, sandbox, &mut budget, &tail);
            }
            break;
        }
        let (chunk, consumed, complete) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..i], i + 1, true),
            None => (buf, buf.len(), false),
        };
        let room = MAX_LINE - line.len();
        if chunk.len() > room {
            truncated = true;
        }
        line.extend_from_slice(&chunk[..chunk.len().min(room)]);
        reader.consume(consumed);
        if complete {
            emit(&line, truncated, sandbox, &mut budget, &tail);
            line.clear();
            truncated = false;
        }
    }
}

fn emit(raw: &[u8], truncated: bool, sandbox: SandboxId, budget: &mut LogBudget, tail: &Tail) {
    let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
    let mut text = String::from_utf8_lossy(raw).into_owned();
    if truncated {
        text.push_str(TRUNCATED);
    }
    match budget.admit(&text) {
        Admit::Log => {
            tracing::info!(target: "lodge::server_stderr", %sandbox, "{text}");
        }
        Admit::LogPrefixThenWarn(n) => {
            if n > 0 {
                let prefix = &text[..n];
                tracing::info!(target: "lodge::server_stderr", %sandbox, "{prefix}");
            }
            tracing::warn!(
                target: "lodge::server_stderr",
                %sandbox,
                cap = budget.cap,
                "stderr cap reached; further output discarded"
            );
        }
        Admit::Discard => {}
    }
    let mut tail = lock(tail);
    if tail.len() == TAIL_LINES {
        tail.pop_front();
    }
    tail.push_back(cut(text, MAX_TAIL_LINE));
}

/// Cut `s` to at most `max` bytes (on a char boundary), marking the cut.
fn cut(mut s: String, max: usize) -> String {
    if s.len() > max {
        s.truncate(floor_char_boundary(&s, max));
        s.push_str(TRUNCATED);
    }
    s
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    if i >= s.len() {
        return s.len();
    }
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// How many stderr bytes may still be logged. Each line costs its length plus one (the
/// newline), so even empty lines use up the budget.
#[derive(Debug)]
struct LogBudget {
    cap: usize,
    remaining: usize,
    exhausted: bool,
}

#[derive(Debug, PartialEq, Eq)]
enum Admit {
    /// Log the whole line.
    Log,
    /// Log the first `n` bytes (if any), then the one-time "cap reached" warning.
    LogPrefixThenWarn(usize),
    /// The cap was reached earlier: drop the line.
    Discard,
}

impl LogBudget {
    fn new(cap: usize) -> Self {
        LogBudget {
            cap,
            remaining: cap,
            exhausted: false,
        }
    }

    fn admit(&mut self, line: &str) -> Admit {
        if self.exhausted {
            return Admit::Discard;
        }
        let cost = line.len() + 1;
        if cost <= self.remaining {
            self.remaining -= cost;
            return Admit::Log;
        }
        self.exhausted = true;
        let n = floor_char_boundary(line, self.remaining);
        self.remaining = 0;
        Admit::LogPrefixThenWarn(n)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn budget() {
        let mut b = LogBudget::new(10);
        assert_eq!(b.admit("abcd"), Admit::Log); // 5
        assert_eq!(b.admit(""), Admit::Log); // 6
        assert_eq!(b.admit("abcdef"), Admit::LogPrefixThenWarn(4));
        assert_eq!(b.admit("a"), Admit::Discard);
        let mut b = LogBudget::new(0);
        assert_eq!(b.admit("abc"), Admit::LogPrefixThenWarn(0));
        assert_eq!(b.admit(""), Admit::Discard);
        let mut b = LogBudget::new(2);
        assert_eq!(b.admit("éa"), Admit::LogPrefixThenWarn(2));
        let mut b = LogBudget::new(1);
        assert_eq!(b.admit("é"), Admit::LogPrefixThenWarn(0));
    }

    #[test]
    fn cut_on_char_boundary() {
        assert_eq!(cut("abc".into(), 5), "abc");
        assert_eq!(cut("aéb".into(), 2), format!("a{TRUNCATED}"));
    }

    #[tokio::test]
    async fn keeps_tail_and_survives_long_lines_and_bad_utf8() {
        let mut input = Vec::new();
        for i in 0..25 {
            input.extend_from_slice(format!("line {i}\r\n").as_bytes());
        }
        input.extend_from_slice(&vec![b'x'; MAX_LINE * 3]);
        input.extend_from_slice(b"\nbad \xff utf8\nno newline at end");
        let mut cap = StderrCapture::spawn(std::io::Cursor::new(input), SandboxId::mint(), 100);
        cap.drain(Duration::from_secs(30)).await;
        assert!(cap.task.is_none(), "reader finished");
        let tail = cap.tail();
        assert_eq!(tail.len(), TAIL_LINES);
        assert_eq!(tail[0], "line 18");
        assert_eq!(tail[6], "line 24");
        assert!(tail[7].starts_with("xxx") && tail[7].ends_with(TRUNCATED));
        assert!(tail[7].len() <= MAX_TAIL_LINE + TRUNCATED.len());
        assert_eq!(tail[8], "bad \u{fffd} utf8");
        assert_eq!(tail[9], "no newline at end");
    }
}
