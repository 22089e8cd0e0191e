//! The audit log (`[audit]`): one JSON line per tool call, elicitation and sampling
//! request, written by a thread of its own so a slow disk never holds a session up. The
//! session only queues a small owned [`Line`]; the writer serializes it and writes all
//! that is queued at once.
//! Rotated by size; a line that cannot be queued or written is counted and reported
//! in Lodge's log, never dropped silently.

use lodge_proto::Message;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, SystemTime};

/// Lines waiting for the writer; past this a line is dropped (and counted).
const QUEUE: usize = 4096;
/// The writer stops taking queued lines into one write past this many bytes.
const BATCH_BYTES: usize = 64 << 10;

/// `[audit]`.
#[derive(Clone, Debug)]
pub struct AuditConfig {
    pub path: PathBuf,
    /// Elicitation answers and sampling texts too.
    pub include_content: bool,
    /// A file past this size is rotated (`PATH.1`, `PATH.2`, …).
    pub max_file_bytes: u64,
    /// Rotated files kept besides the current one.
    pub keep_files: u32,
}

/// The audit log's queue and its counts of lost lines.
#[derive(Debug)]
pub struct Audit {
    queue: SyncSender<Line>,
    include_content: bool,
    /// Lines dropped because the writer was behind, and lines it could not write.
    dropped: AtomicU64,
    failed: Arc<AtomicU64>,
}

impl Audit {
    /// Opens (appends to) the log and starts its writer thread.
    pub fn start(config: &AuditConfig) -> std::io::Result<Arc<Audit>> {
        if let Some(dir) = config.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir)?;
        }
        let file = open(&config.path)?;
        let (queue, lines) = sync_channel(QUEUE);
        let failed = Arc::new(AtomicU64::new(0));
        let writer = Writer {
            size: file.metadata().map(|m| m.len()).unwrap_or(0),
            file,
            config: config.clone(),
            failed: failed.clone(),
        };
        std::thread::Builder::new()
            .name("lodge-audit".into())
            .spawn(move || writer.run(lines))?;
        Ok(Arc::new(Audit {
            queue,
            include_content: config.include_content,
            dropped: AtomicU64::new(0),
            failed,
        }))
    }

    /// Lines lost so far: (not queued because the writer was behind, not written).
    pub fn lost(&self) -> (u64, u64) {
        (
            self.dropped.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }

    fn write(&self, line: Line) {
        match self.queue.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if n == 1 || n.is_power_of_two() {
                    tracing::error!(dropped = n, "audit log writer is behind: lines dropped");
                }
            }
        }
    }
}

/// What a session's audit lines say about where they come from.
#[derive(Clone)]
pub(crate) struct AuditTap {
    pub audit: Arc<Audit>,
    pub session: Arc<str>,
    pub server: Arc<str>,
    /// `None` without authentication.
    pub principal: Option<Arc<str>>,
}

/// One line of the log, as queued; the writer turns it into JSON.
#[derive(Serialize)]
struct Line {
    #[serde(serialize_with = "rfc3339")]
    time: SystemTime,
    session: Arc<str>,
    principal: Option<Arc<str>>,
    server: Arc<str>,
    kind: &'static str,
    name: Box<str>,
    outcome: &'static str,
    duration_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<Value>,
}

fn rfc3339<S: serde::Serializer>(time: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_rfc3339_millis(*time))
}

/// Only what a tool call's line needs of its request and response: serde skips the
/// rest (arguments, content) without building it.
#[derive(Deserialize)]
struct Call<'a> {
    #[serde(borrow)]
    params: CallParams<'a>,
}

#[derive(Deserialize)]
struct CallParams<'a> {
    #[serde(borrow)]
    name: std::borrow::Cow<'a, str>,
}

#[derive(Deserialize)]
struct Answer {
    result: Option<AnswerFlags>,
}

#[derive(Deserialize)]
struct AnswerFlags {
    #[serde(rename = "isError", default)]
    is_error: bool,
}

impl AuditTap {
    fn line(&self, kind: &'static str, name: &str, outcome: &'static str, took: Duration) -> Line {
        Line {
            time: SystemTime::now(),
            session: self.session.clone(),
            principal: self.principal.clone(),
            server: self.server.clone(),
            kind,
            name: name.into(),
            outcome,
            duration_ms: u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
            content: None,
        }
    }

    /// A `tools/call` (its request's bytes) answered with `response` and its JSON-RPC
    /// error code if it is an error (`None`: the session ended before the answer).
    pub fn tool_call(
        &self,
        request: &[u8],
        response: Option<(&[u8], Option<i64>)>,
        took: Duration,
    ) {
        let call = serde_json::from_slice::<Call>(request).ok();
        let name = call.as_ref().map_or("", |c| &*c.params.name);
        let outcome = match response {
            None => "ended",
            Some((_, Some(_))) => "error",
            Some((bytes, None)) => match serde_json::from_slice::<Answer>(bytes) {
                Ok(Answer {
                    result: Some(AnswerFlags { is_error: true }),
                }) => "tool_error",
                _ => "ok",
            },
        };
        self.audit
            .write(self.line("tool_call", name, outcome, took));
    }

    /// A server's elicitation or sampling request (`method`) answered with `answer`,
    /// counted as `outcome`.
    pub fn server_request(
        &self,
        method: &str,
        outcome: &'static str,
        answer: &Message,
        took: Duration,
    ) {
        self.server_answer(method, outcome, took, || {
            let mut answer = serde_json::from_slice::<Value>(&answer.bytes).ok()?;
            Some(answer["result"].take())
        });
    }

    /// The same for a 2026-07-28 server's input request (`method`), answered in a
    /// retry's `inputResponses` with `result` (the answer without a JSON-RPC envelope).
    pub fn input_answered(
        &self,
        method: &str,
        outcome: &'static str,
        result: &Value,
        took: Duration,
    ) {
        self.server_answer(method, outcome, took, || Some(result.clone()));
    }

    /// `result` is read only with `include_content`.
    fn server_answer(
        &self,
        method: &str,
        outcome: &'static str,
        took: Duration,
        result: impl FnOnce() -> Option<Value>,
    ) {
        let kind = match method {
            "elicitation/create" => "elicitation",
            "sampling/createMessage" => "sampling",
            _ => return,
        };
        let mut line = self.line(kind, method, outcome, took);
        if self.audit.include_content
            && let Some(result) = result()
        {
            line.content = Some(match kind {
                "elicitation" => result["content"].clone(),
                _ => result["content"]["text"].clone(),
            });
        }
        self.audit.write(line);
    }
}

fn open(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

struct Writer {
    file: File,
    size: u64,
    config: AuditConfig,
    failed: Arc<AtomicU64>,
}

impl Writer {
    fn run(mut self, lines: Receiver<Line>) {
        let mut batch = Vec::with_capacity(BATCH_BYTES);
        // Waits for a line, then takes every other one already queued: one write for
        // all of them.
        while let Ok(first) = lines.recv() {
            let mut next = Some(first);
            while let Some(line) = next.take() {
                let start = batch.len();
                if serde_json::to_writer(&mut batch, &line).is_err() {
                    batch.truncate(start);
                    self.lost(1, "cannot be serialized".into());
                } else {
                    batch.push(b'\n');
                    // What the file would hold before and after this line.
                    let before = self.size + start as u64;
                    if before > 0 && self.size + batch.len() as u64 > self.config.max_file_bytes {
                        // It does not fit: what came before goes to the current file,
                        // it starts the next one.
                        let line = batch.split_off(start);
                        self.flush(&mut batch);
                        if let Err(e) = self.rotate() {
                            self.lost(1, e.to_string());
                            continue;
                        }
                        batch = line;
                    }
                }
                if batch.len() < BATCH_BYTES {
                    next = lines.try_recv().ok();
                }
            }
            self.flush(&mut batch);
        }
    }

    /// Appends the lines in `batch` to the current file, emptying it.
    fn flush(&mut self, batch: &mut Vec<u8>) {
        if batch.is_empty() {
            return;
        }
        match self.file.write_all(batch) {
            Ok(()) => self.size += batch.len() as u64,
            Err(e) => {
                let n = batch.iter().filter(|b| **b == b'\n').count() as u64;
                self.lost(n, e.to_string());
            }
        }
        batch.clear();
    }

    fn lost(&self, lines: u64, why: String) {
        let before = self.failed.fetch_add(lines, Ordering::Relaxed);
        let n = before + lines;
        // Said on the first loss, then each time the count passes a power of two.
        if before == 0 || n.ilog2() > before.ilog2() {
            tracing::error!(path = %self.config.path.display(), error = %why, lost = n, "audit log lines not written");
        }
    }

    /// PATH becomes PATH.1, PATH.1 PATH.2, … the oldest past `keep_files` goes.
    fn rotate(&mut self) -> std::io::Result<()> {
        let path = &self.config.path;
        let numbered = |n: u32| PathBuf::from(format!("{}.{n}", path.display()));
        let keep = self.config.keep_files;
        if keep == 0 {
            fs::remove_file(path)?;
        } else {
            let _ = fs::remove_file(numbered(keep));
            for n in (1..keep).rev() {
                let _ = fs::rename(numbered(n), numbered(n + 1));
            }
            fs::rename(path, numbered(1))?;
        }
        self.file = open(path)?;
        self.size = 0;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tap(dir: &Path, max_file_bytes: u64, keep_files: u32) -> (AuditTap, PathBuf) {
        let path = dir.join("audit").join("lodge.jsonl");
        let audit = Audit::start(&AuditConfig {
            path: path.clone(),
            include_content: false,
            max_file_bytes,
            keep_files,
        })
        .unwrap();
        let tap = AuditTap {
            audit,
            session: "s1".into(),
            server: "demo".into(),
            principal: Some("alice".into()),
        };
        (tap, path)
    }

    fn read_lines(path: &Path) -> Vec<Value> {
        fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn wait_for(path: &Path, n: usize) {
        for _ in 0..200 {
            if read_lines(path).len() >= n {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn a_tool_call_line_says_who_what_and_how_it_went() {
        let dir = tempfile::tempdir().unwrap();
        let (tap, path) = tap(dir.path(), 1 << 20, 2);
        let request =
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"counter"}}"#;
        tap.tool_call(
            request,
            Some((br#"{"jsonrpc":"2.0","id":1,"result":{"content":[]}}"#, None)),
            Duration::from_millis(12),
        );
        tap.tool_call(
            request,
            Some((
                br#"{"jsonrpc":"2.0","id":1,"result":{"isError":true}}"#,
                None,
            )),
            Duration::ZERO,
        );
        tap.tool_call(
            request,
            Some((
                br#"{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"x"}}"#,
                Some(-32602),
            )),
            Duration::ZERO,
        );
        tap.tool_call(request, None, Duration::ZERO);
        wait_for(&path, 4);
        let lines = read_lines(&path);
        let outcomes: Vec<&str> = lines
            .iter()
            .map(|l| l["outcome"].as_str().unwrap())
            .collect();
        assert_eq!(outcomes, ["ok", "tool_error", "error", "ended"]);
        let first = &lines[0];
        assert_eq!(
            (
                &first["session"],
                &first["principal"],
                &first["server"],
                &first["kind"],
                &first["name"],
                &first["duration_ms"]
            ),
            (
                &json!("s1"),
                &json!("alice"),
                &json!("demo"),
                &json!("tool_call"),
                &json!("counter"),
                &json!(12)
            )
        );
        assert!(humantime::parse_rfc3339(first["time"].as_str().unwrap()).is_ok());
    }

    #[test]
    fn an_input_answer_is_a_line_of_its_kind_without_content_unless_asked() {
        let dir = tempfile::tempdir().unwrap();
        let (tap, path) = tap(dir.path(), 1 << 20, 2);
        let answer = json!({"action": "accept", "content": {"name": "Ada"}});
        tap.input_answered(
            "elicitation/create",
            "accept",
            &answer,
            Duration::from_millis(5),
        );
        tap.input_answered(
            "roots/list",
            "accept",
            &json!({"roots": []}),
            Duration::ZERO,
        );
        tap.input_answered(
            "sampling/createMessage",
            "error",
            &Value::Null,
            Duration::ZERO,
        );
        wait_for(&path, 2);
        let lines = read_lines(&path);
        let got: Vec<(&str, &str)> = lines
            .iter()
            .map(|l| (l["kind"].as_str().unwrap(), l["outcome"].as_str().unwrap()))
            .collect();
        assert_eq!(got, [("elicitation", "accept"), ("sampling", "error")]);
        assert_eq!(lines[0]["duration_ms"], 5);
        assert!(lines[0].get("content").is_none(), "include_content is off");
    }

    #[test]
    fn files_rotate_by_size_and_keep_only_so_many() {
        let dir = tempfile::tempdir().unwrap();
        let (tap, path) = tap(dir.path(), 400, 2);
        for n in 0..40 {
            let request = format!(r#"{{"params":{{"name":"t{n}"}}}}"#);
            tap.tool_call(request.as_bytes(), None, Duration::ZERO);
        }
        let rotated = |n: u32| PathBuf::from(format!("{}.{n}", path.display()));
        // The writer is done once the live file ends with the last line (lines are
        // written in order); before that a file may be mid-write or mid-rename.
        let last_name = || {
            let text = fs::read_to_string(&path).unwrap_or_default();
            let line = text.lines().last().unwrap_or_default().to_owned();
            serde_json::from_str::<Value>(&line).ok()?["name"]
                .as_str()
                .map(str::to_owned)
        };
        for _ in 0..500 {
            if last_name().as_deref() == Some("t39") {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(last_name().as_deref(), Some("t39"));
        assert!(rotated(1).exists() && rotated(2).exists());
        assert!(!rotated(3).exists(), "only keep_files rotated files");
        for p in [path.clone(), rotated(1), rotated(2)] {
            assert!(fs::metadata(&p).unwrap().len() <= 400, "{}", p.display());
        }
        assert_eq!(tap.audit.lost(), (0, 0));
    }

    #[test]
    fn lines_past_a_full_queue_are_counted_not_waited_for() {
        // A writer that never reads: the queue fills, and the session goes on.
        let (queue, _stalled) = sync_channel(QUEUE);
        let audit = Arc::new(Audit {
            queue,
            include_content: false,
            dropped: AtomicU64::new(0),
            failed: Arc::new(AtomicU64::new(0)),
        });
        let tap = AuditTap {
            audit,
            session: "s1".into(),
            server: "demo".into(),
            principal: None,
        };
        for _ in 0..QUEUE + 7 {
            tap.tool_call(br#"{}"#, None, Duration::ZERO);
        }
        assert_eq!(tap.audit.lost(), (7, 0));
    }

    #[test]
    fn a_line_that_cannot_be_written_is_counted() {
        let dir = tempfile::tempdir().unwrap();
        let (tap, path) = tap(dir.path(), 10, 1);
        // Rotation needs to rename into a directory that is no longer there.
        fs::remove_dir_all(path.parent().unwrap()).unwrap();
        tap.tool_call(br#"{}"#, None, Duration::ZERO);
        tap.tool_call(br#"{}"#, None, Duration::ZERO);
        for _ in 0..200 {
            if tap.audit.lost().1 > 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(tap.audit.lost().1 > 0, "{:?}", tap.audit.lost());
    }
}
