//! Server stderr (and an HTTP-transport server's stdout, [`log_server_stdout`]): read on
//! a task, logged line by line up to a byte cap (control characters escaped), the last
//! few lines kept for error messages. The reader never stops reading, so the server never
//! blocks on a full pipe. Backend-agnostic: it takes any `AsyncRead`.
//!
//! A flood must cost Lodge little: reads grow from 1 KiB (what an idle session holds) to
//! 64 KiB while output keeps coming; blank lines are counted against the cap but neither
//! logged nor kept; the tail is updated once per read, not per line; and once the cap is
//! spent a read costs one backward scan for the last few lines and at most
//! [`TAIL_LINES`] small allocations, whatever it holds.
//!
//! Why drain rather than stop reading once the cap is spent: a server blocked on a full
//! stderr pipe stalls wherever it writes (mid-response, holding its own locks), so a
//! merely chatty server would hang its session for good. Draining costs Lodge about a
//! copy per byte, which the server paid to write and which its CPU quota bounds.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::task::JoinHandle;

use crate::SandboxId;

/// Lines kept for [`StderrCapture::tail`].
pub(crate) const TAIL_LINES: usize = 10;
/// Longer lines are cut here (the rest of the line is read and dropped).
const MAX_LINE: usize = 8 * 1024;
/// Tail lines are cut here: they end up in error messages.
const MAX_TAIL_LINE: usize = 512;
const TRUNCATED: &str = " [truncated]";
/// The read buffer while stderr is quiet (every idle session holds one)…
const MIN_READ: usize = 1024;
/// …and while it floods.
const MAX_READ: usize = 64 * 1024;

type Tail = Arc<Mutex<VecDeque<String>>>;

/// The task reading a server's stderr, and the tail it keeps.
#[derive(Debug)]
pub(crate) struct StderrCapture {
    tail: Tail,
    task: Option<JoinHandle<()>>,
}

impl StderrCapture {
    /// Start reading `stderr` on a new task. Must be called within a Tokio runtime.
    /// With `file`, the output is also written there as it is, up to its size.
    pub(crate) fn spawn<R>(
        stderr: R,
        sandbox: SandboxId,
        cap: usize,
        file: Option<crate::StderrFile>,
    ) -> Self
    where
        R: AsyncRead + Unpin + Send + 'static,
    {
        let tail = Tail::default();
        let shared = Arc::clone(&tail);
        let task = tokio::spawn(async move {
            let file = match file {
                Some(file) => CopyFile::create(file).await,
                None => None,
            };
            read_output(stderr, Origin::Stderr(sandbox), cap, shared, file).await;
        });
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

/// Where logged output comes from: the target and field of its log lines.
#[derive(Clone)]
enum Origin {
    Stderr(SandboxId),
    /// An HTTP-transport server's stdout, which carries no messages: only logged.
    Stdout(Arc<str>),
}

/// Logs an HTTP-transport server's stdout (target `lodge::server_stdout`, field
/// `session`) the way stderr is logged: lines cut at 8 KiB, at most `cap` bytes logged,
/// control characters escaped, floods drained cheaply. Returns at end of file. A server
/// printing one 100 MiB line costs Lodge 8 KiB of memory, not 100 MiB.
pub async fn log_server_stdout<R>(stdout: R, session: Arc<str>, cap: usize)
where
    R: AsyncRead + Unpin,
{
    read_output(stdout, Origin::Stdout(session), cap, Tail::default(), None).await;
}

/// A file that receives a copy of a server's output, up to its size.
struct CopyFile {
    file: tokio::fs::File,
    path: std::path::PathBuf,
    room: u64,
}

impl CopyFile {
    /// Made with mode 0600 (stderr may hold what the server knows); `None`, with a
    /// warning, if it cannot be: the server runs on, logged as usual.
    async fn create(spec: crate::StderrFile) -> Option<CopyFile> {
        let opened = tokio::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&spec.path)
            .await;
        match opened {
            Ok(file) => Some(CopyFile {
                file,
                path: spec.path,
                room: spec.max_bytes,
            }),
            Err(error) => {
                tracing::warn!(path = %spec.path.display(), %error, "cannot create the stderr file; stderr is only logged");
                None
            }
        }
    }

    /// Writes what fits; says so once the file is full. `false` once it takes no more.
    async fn write(&mut self, bytes: &[u8]) -> bool {
        use tokio::io::AsyncWriteExt;
        let fits = bytes
            .len()
            .min(usize::try_from(self.room).unwrap_or(usize::MAX));
        // Flushed at once: a reader aborted later loses nothing already read.
        let ok =
            self.file.write_all(&bytes[..fits]).await.is_ok() && self.file.flush().await.is_ok();
        self.room -= fits as u64;
        if ok && fits < bytes.len() {
            let note = b"\n[lodge: this file reached its stderr_file_bytes limit; the rest was not written]\n";
            let _ = self.file.write_all(note).await;
            let _ = self.file.flush().await;
            return false;
        }
        if !ok {
            tracing::warn!(path = %self.path.display(), "writing the stderr file failed (disk full?); stderr is only logged from here on");
        }
        ok
    }
}

async fn read_output<R: AsyncRead + Unpin>(
    mut input: R,
    origin: Origin,
    cap: usize,
    tail: Tail,
    mut file: Option<CopyFile>,
) {
    let mut buf = vec![0u8; MIN_READ];
    let mut lines = Lines {
        origin,
        budget: LogBudget::new(cap),
        pending: Vec::new(),
        truncated: false,
        fresh: Vec::new(),
    };
    loop {
        let n = match input.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(error) => {
                tracing::debug!(%error, "reading server output failed");
                break;
            }
        };
        if let Some(copy) = &mut file
            && !copy.write(&buf[..n]).await
        {
            file = None;
        }
        lines.chunk(&buf[..n]);
        lines.publish(&tail);
        // Grow while reads come back full; back to small once output slows down.
        if n == buf.len() && buf.len() < MAX_READ {
            buf.resize((buf.len() * 4).min(MAX_READ), 0);
        } else if n < MIN_READ && buf.len() > MIN_READ {
            buf = vec![0u8; MIN_READ];
        }
    }
    lines.end();
    lines.publish(&tail);
}

/// Splits stderr into lines and disposes of each.
struct Lines {
    origin: Origin,
    budget: LogBudget,
    /// The line read so far (at most [`MAX_LINE`] bytes), and whether more was dropped.
    pending: Vec<u8>,
    truncated: bool,
    /// Tail lines found in the current read, not yet published.
    fresh: Vec<String>,
}

impl Lines {
    fn chunk(&mut self, mut chunk: &[u8]) {
        while !self.budget.exhausted {
            let Some(i) = chunk.iter().position(|&b| b == b'\n') else {
                self.push(chunk);
                return;
            };
            self.push(&chunk[..i]);
            self.finish(true);
            chunk = &chunk[i + 1..];
        }
        self.drain(chunk);
    }

    /// After the cap: only the lines that can still reach the tail are looked at.
    fn drain(&mut self, chunk: &[u8]) {
        let Some(last) = chunk.iter().rposition(|&b| b == b'\n') else {
            self.push(chunk);
            return;
        };
        // Start after the (TAIL_LINES + 1)th newline from the end, if there is one.
        let mut start = 0;
        let mut seen = 1;
        for (i, &b) in chunk[..last].iter().enumerate().rev() {
            if b == b'\n' {
                seen += 1;
                if seen > TAIL_LINES {
                    start = i + 1;
                    break;
                }
            }
        }
        if start > 0 {
            // The pending line ended in the skipped part.
            self.pending.clear();
            self.truncated = false;
        }
        for line in chunk[start..last].split(|&b| b == b'\n') {
            self.push(line);
            self.finish(false);
        }
        self.push(&chunk[last + 1..]);
    }

    fn push(&mut self, piece: &[u8]) {
        let room = MAX_LINE - self.pending.len();
        if piece.len() > room {
            self.truncated = true;
        }
        self.pending
            .extend_from_slice(&piece[..piece.len().min(room)]);
    }

    /// The pending line is complete: log it (if `log` and the cap allows) and keep it for
    /// the tail. Blank lines cost their newline of the cap and nothing else.
    fn finish(&mut self, log: bool) {
        let raw = self.pending.strip_suffix(b"\r").unwrap_or(&self.pending);
        if raw.is_empty() && !self.truncated {
            self.pending.clear();
            if log {
                self.log("");
            }
            return;
        }
        let mut text = escape(raw);
        if self.truncated {
            text.push_str(TRUNCATED);
        }
        self.pending.clear();
        self.truncated = false;
        if log {
            self.log(&text);
        }
        if self.fresh.len() == TAIL_LINES {
            self.fresh.remove(0);
        }
        self.fresh.push(cut(text, MAX_TAIL_LINE));
    }

    fn log(&mut self, text: &str) {
        match self.budget.admit(text) {
            Admit::Log if text.is_empty() => {}
            Admit::Log => self.origin.line(text),
            Admit::LogPrefixThenWarn(n) => {
                if n > 0 {
                    self.origin.line(&text[..n]);
                }
                self.origin.cap_reached(self.budget.cap);
            }
            Admit::Discard => {}
        }
    }

    /// End of file: a last line without a newline still counts.
    fn end(&mut self) {
        if !self.pending.is_empty() {
            let log = !self.budget.exhausted;
            self.finish(log);
        }
    }

    /// Moves this read's tail lines to the shared tail: one lock per read.
    fn publish(&mut self, tail: &Tail) {
        if self.fresh.is_empty() {
            return;
        }
        let mut tail = lock(tail);
        for line in self.fresh.drain(..) {
            if tail.len() == TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(line);
        }
    }
}

impl Origin {
    fn line(&self, text: &str) {
        match self {
            Origin::Stderr(sandbox) => {
                tracing::info!(target: "lodge::server_stderr", %sandbox, "{text}");
            }
            Origin::Stdout(session) => {
                tracing::info!(target: "lodge::server_stdout", %session, "{text}");
            }
        }
    }

    fn cap_reached(&self, cap: usize) {
        match self {
            Origin::Stderr(sandbox) => tracing::warn!(
                target: "lodge::server_stderr",
                %sandbox,
                cap,
                "stderr cap reached; further output discarded"
            ),
            Origin::Stdout(session) => tracing::warn!(
                target: "lodge::server_stdout",
                %session,
                cap,
                "stdout log cap reached; further output discarded"
            ),
        }
    }
}

/// A line as text fit for a log: invalid UTF-8 becomes U+FFFD, and control characters
/// (a `\r` that rewrites the log line, terminal escapes, C1 controls) and bidirectional
/// overrides are shown escaped (`\r`, `\x1b`, `\u{202e}`), so a server cannot forge or
/// hide log lines. Tabs stay.
pub(crate) fn escape(raw: &[u8]) -> String {
    let lossy = String::from_utf8_lossy(raw);
    if !lossy.chars().any(needs_escape) {
        return lossy.into_owned();
    }
    let mut out = String::with_capacity(lossy.len() + 8);
    for c in lossy.chars() {
        match c {
            '\r' => out.push_str("\\r"),
            '\n' => out.push_str("\\n"),
            c if needs_escape(c) && (c as u32) < 0x80 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

fn needs_escape(c: char) -> bool {
    (c.is_control() && c != '\t')
        || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{2028}' | '\u{2029}')
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

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escape(b"plain text\tok"), "plain text\tok");
        assert_eq!(escape(b"over\rwrite"), "over\\rwrite");
        assert_eq!(escape(b"\x1b[31mred\x1b[0m"), "\\x1b[31mred\\x1b[0m");
        assert_eq!(escape(b"a\x00b\x7fc\x08"), "a\\x00b\\x7fc\\x08");
        assert_eq!(escape("c1 \u{9b}".as_bytes()), "c1 \\u{9b}");
        assert_eq!(
            escape("\u{202e}gnp.exe \u{2028}".as_bytes()),
            "\\u{202e}gnp.exe \\u{2028}"
        );
        assert_eq!(escape(b"bad \xff"), "bad \u{fffd}");
    }

    #[tokio::test]
    async fn the_tail_shows_control_characters_escaped() {
        let input = b"fake\rINFO lodge: all good\x1b[2K\n".to_vec();
        let mut cap =
            StderrCapture::spawn(std::io::Cursor::new(input), SandboxId::mint(), 1000, None);
        cap.drain(Duration::from_secs(30)).await;
        assert_eq!(cap.tail(), ["fake\\rINFO lodge: all good\\x1b[2K"]);
    }

    #[tokio::test]
    async fn a_stderr_file_gets_the_output_as_it_is_up_to_its_size() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.log");
        let input = b"first line\nsecond \x1b[31mred\x1b[0m\n".repeat(3);
        let file = crate::StderrFile {
            path: path.clone(),
            max_bytes: 40,
        };
        let mut cap = StderrCapture::spawn(
            std::io::Cursor::new(input.clone()),
            SandboxId::mint(),
            1000,
            Some(file),
        );
        cap.drain(Duration::from_secs(5)).await;
        let written = std::fs::read(&path).unwrap();
        assert!(
            written.starts_with(&input[..40]),
            "as written, escapes and all"
        );
        let note = String::from_utf8_lossy(&written[40..]).into_owned();
        assert!(
            note.contains("reached its stderr_file_bytes limit"),
            "{note}"
        );
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(cap.tail().len(), 6, "logged and kept as usual");
    }

    /// A repeated pattern (whole patterns only, about `total` bytes), copied from a block.
    struct Flood {
        block: Vec<u8>,
        at: usize,
        left: usize,
    }

    impl Flood {
        fn new(pattern: &[u8], total: usize) -> Self {
            let block = pattern.repeat(MAX_READ / pattern.len());
            Flood {
                block,
                at: 0,
                left: total - total % pattern.len(),
            }
        }
    }

    impl AsyncRead for Flood {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            let this = &mut *self;
            let n = buf
                .remaining()
                .min(this.left)
                .min(this.block.len() - this.at);
            buf.put_slice(&this.block[this.at..this.at + n]);
            this.at = (this.at + n) % this.block.len();
            this.left -= n;
            std::task::Poll::Ready(Ok(()))
        }
    }

    fn cpu_seconds() -> f64 {
        let usage =
            nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_THREAD).unwrap();
        let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
        t(usage.user_time()) + t(usage.system_time())
    }

    /// Reads 200 MiB of `pattern` through the reader on this thread (a log cap of 1 MiB);
    /// returns the CPU seconds it took and the tail.
    async fn flood_cost(pattern: &[u8]) -> (f64, Vec<String>) {
        let tail = Tail::default();
        let start = cpu_seconds();
        let flood = Flood::new(pattern, 200 << 20);
        read_output(
            flood,
            Origin::Stderr(SandboxId::mint()),
            1 << 20,
            Arc::clone(&tail),
            None,
        )
        .await;
        let spent = cpu_seconds() - start;
        let tail = lock(&tail).iter().cloned().collect();
        (spent, tail)
    }

    /// Blank lines and short lines past the cap cost Lodge next to nothing: under 1 CPU
    /// second for 200 MiB, even in a debug build (the old reader, 1 KiB reads and an
    /// allocation and a lock per line, took tens of seconds). Measured on this thread
    /// only (`RUSAGE_THREAD`, current-thread runtime), so other tests do not count.
    #[tokio::test(flavor = "current_thread")]
    async fn a_200_mib_flood_costs_under_a_cpu_second() {
        let (blank, tail) = flood_cost(b"\n").await;
        assert!(tail.is_empty(), "{tail:?}");
        let (short, tail) = flood_cost(b"spam\r\n").await;
        assert_eq!(tail, vec!["spam".to_owned(); TAIL_LINES]);
        eprintln!("CPU seconds for 200 MiB: blank lines {blank:.3}, short lines {short:.3}");
        assert!(blank < 1.0, "blank-line flood: {blank:.3} CPU s");
        assert!(short < 1.0, "short-line flood: {short:.3} CPU s");
    }

    #[tokio::test]
    async fn keeps_tail_and_survives_long_lines_and_bad_utf8() {
        let mut input = Vec::new();
        for i in 0..25 {
            input.extend_from_slice(format!("line {i}\r\n").as_bytes());
        }
        input.extend_from_slice(&vec![b'x'; MAX_LINE * 3]);
        input.extend_from_slice(b"\nbad \xff utf8\nno newline at end");
        let mut cap =
            StderrCapture::spawn(std::io::Cursor::new(input), SandboxId::mint(), 100, None);
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
