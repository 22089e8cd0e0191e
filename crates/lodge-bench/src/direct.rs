//! Cold-start baselines for any stdio server, not only the demo: the server is spawned
//! from an argv (the demo is `lodge demo-server`, the Python fixture `python server.py`),
//! one `initialize` is exchanged, then stdin is closed and the exit awaited.
//! Newline-delimited JSON-RPC, as Lodge itself speaks to the server.

use anyhow::{Context, bail};
use lodge_testkit::messages::is_response_to;
use serde_json::Value;
use std::path::Path;
use std::process::ExitStatus;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout};

pub struct DirectServer {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl DirectServer {
    /// Starts `argv` in `cwd`; its stderr is discarded (Lodge keeps servers' stderr out
    /// of the protocol too).
    pub fn spawn(argv: &[String], cwd: &Path) -> anyhow::Result<Self> {
        let (program, args) = argv.split_first().context("empty server command")?;
        let (child, stdin, stdout) = crate::stdio::spawn_piped(program, args, cwd)?;
        Ok(DirectServer {
            child,
            stdin: Some(stdin),
            stdout: BufReader::new(stdout),
        })
    }

    /// Writes `message` and its newline in one write, then reads lines until the
    /// response to request `id` (anything else the server writes first is skipped).
    pub async fn request(&mut self, message: &str, id: u64) -> anyhow::Result<Value> {
        let mut out = Vec::with_capacity(message.len() + 1);
        out.extend_from_slice(message.as_bytes());
        out.push(b'\n');
        let stdin = self.stdin.as_mut().context("stdin already closed")?;
        stdin
            .write_all(&out)
            .await
            .context("writing to the server")?;
        stdin.flush().await.context("writing to the server")?;
        let mut line = String::new();
        loop {
            line.clear();
            let n = self
                .stdout
                .read_line(&mut line)
                .await
                .context("reading from the server")?;
            if n == 0 {
                bail!("the server closed its stdout before answering request {id}");
            }
            let text = line.trim();
            if text.is_empty() {
                continue;
            }
            let message: Value = serde_json::from_str(text)
                .with_context(|| format!("the server wrote a line that is not JSON: {text}"))?;
            if is_response_to(&message, id) {
                return Ok(message);
            }
        }
    }

    /// Closes stdin (a stdio MCP server's cue to exit) and waits for the exit.
    pub async fn close(mut self) -> anyhow::Result<ExitStatus> {
        drop(self.stdin.take());
        self.child
            .wait()
            .await
            .context("waiting for the server to exit")
    }
}
