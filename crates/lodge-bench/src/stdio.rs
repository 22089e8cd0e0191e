//! The baseline: the demo server reached directly on its stdio, newline-delimited
//! JSON-RPC, the way Lodge itself talks to it.

use anyhow::{Context, bail};
use lodge_testkit::messages::is_response_to;
use serde_json::Value;
use std::ffi::OsStr;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// Starts `program args` in `cwd`, stdin and stdout piped, stderr discarded (Lodge keeps
/// servers' stderr out of the protocol too), killed if dropped.
pub fn spawn_piped<S: AsRef<OsStr>>(
    program: impl AsRef<OsStr>,
    args: &[S],
    cwd: &Path,
) -> anyhow::Result<(Child, ChildStdin, ChildStdout)> {
    let program = program.as_ref();
    let mut child = Command::new(program)
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| {
            let args: Vec<_> = args.iter().map(|a| a.as_ref().to_string_lossy()).collect();
            format!(
                "cannot start {} {}",
                program.to_string_lossy(),
                args.join(" ")
            )
        })?;
    let stdin = child.stdin.take().context("stdin not piped")?;
    let stdout = child.stdout.take().context("stdout not piped")?;
    Ok((child, stdin, stdout))
}

pub struct StdioServer {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    line: String,
    out: Vec<u8>,
}

impl StdioServer {
    /// Starts `lodge demo-server` in `cwd`. Its stderr is discarded.
    pub fn spawn(lodge: &Path, cwd: &Path) -> anyhow::Result<Self> {
        let (child, stdin, stdout) = spawn_piped(lodge, &["demo-server"], cwd)?;
        Ok(StdioServer {
            child,
            stdin: Some(stdin),
            stdout: BufReader::new(stdout),
            line: String::new(),
            out: Vec::new(),
        })
    }

    /// Writes one message and its newline in a single write.
    pub async fn send(&mut self, message: &str) -> anyhow::Result<()> {
        self.out.clear();
        self.out.extend_from_slice(message.as_bytes());
        self.out.push(b'\n');
        let stdin = self.stdin.as_mut().context("stdin already closed")?;
        stdin
            .write_all(&self.out)
            .await
            .context("writing to the server")?;
        stdin.flush().await.context("writing to the server")?;
        Ok(())
    }

    /// Reads lines until the response to request `id`; other messages are skipped.
    pub async fn response_to(&mut self, id: u64) -> anyhow::Result<Value> {
        loop {
            let message = self
                .next_message()
                .await
                .with_context(|| format!("waiting for the response to request {id}"))?;
            if is_response_to(&message, id) {
                return Ok(message);
            }
        }
    }

    /// Reads the next message the server writes (blank lines skipped).
    pub async fn next_message(&mut self) -> anyhow::Result<Value> {
        loop {
            self.line.clear();
            let n = self
                .stdout
                .read_line(&mut self.line)
                .await
                .context("reading from the server")?;
            if n == 0 {
                bail!("the server closed its stdout");
            }
            let text = self.line.trim();
            if text.is_empty() {
                continue;
            }
            return serde_json::from_str(text)
                .with_context(|| format!("the server wrote a line that is not JSON: {text}"));
        }
    }

    /// Closes stdin (an MCP stdio server's cue to exit) and waits for the exit.
    pub async fn close(mut self) -> anyhow::Result<ExitStatus> {
        drop(self.stdin.take());
        self.child
            .wait()
            .await
            .context("waiting for the server to exit")
    }
}
