//! A direct stdio client for concurrent callers: one `lodge demo-server`, requests from
//! many tasks written to its stdin as they come (distinct ids), responses matched to
//! their callers by id as they are read from its stdout. This is how a client that
//! multiplexes one stdio connection works, and the best a direct client can do.

use anyhow::{Context, bail};
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Child;
use tokio::sync::{mpsc, oneshot};

type Waiting = Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>;

/// A request: its id, its line (newline included), and where its response goes.
type Request = (u64, Vec<u8>, oneshot::Sender<Value>);

pub struct Pipelined {
    child: Child,
    requests: Option<mpsc::UnboundedSender<Request>>,
}

/// A caller's handle: cheap to clone, one per task.
#[derive(Clone)]
pub struct Caller {
    requests: mpsc::UnboundedSender<Request>,
}

impl Pipelined {
    /// Starts `lodge demo-server` in `cwd` (stderr discarded), with a writer task and a
    /// reader task on the current runtime.
    pub fn spawn(lodge: &Path, cwd: &Path) -> anyhow::Result<Self> {
        let (child, mut stdin, stdout) = crate::stdio::spawn_piped(lodge, &["demo-server"], cwd)?;
        let waiting = Waiting::default();
        let (tx, mut rx) = mpsc::unbounded_channel::<Request>();

        let writer_waiting = waiting.clone();
        tokio::spawn(async move {
            while let Some((id, line, reply)) = rx.recv().await {
                // Registered before the write, so the reader always finds it.
                if let Ok(mut w) = writer_waiting.lock() {
                    w.insert(id, reply);
                }
                if stdin.write_all(&line).await.is_err() {
                    break;
                }
            }
            // Dropping stdin here closes it: the server's cue to exit.
        });
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let Ok(message) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                let Some(id) = message.get("id").and_then(Value::as_u64) else {
                    continue;
                };
                let reply = waiting.lock().ok().and_then(|mut w| w.remove(&id));
                if let Some(reply) = reply {
                    let _ = reply.send(message);
                }
            }
            // The waiting senders drop with the map: their callers see the server gone.
        });
        Ok(Pipelined {
            child,
            requests: Some(tx),
        })
    }

    /// The server's pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    pub fn caller(&self) -> anyhow::Result<Caller> {
        Ok(Caller {
            requests: self.requests.clone().context("the server is closing")?,
        })
    }

    /// Closes stdin once every caller handle is gone, and waits for the server to exit.
    pub async fn close(mut self) -> anyhow::Result<()> {
        drop(self.requests.take());
        let status = self
            .child
            .wait()
            .await
            .context("waiting for the server to exit")?;
        if !status.success() {
            bail!("the direct server exited with {status}");
        }
        Ok(())
    }
}

impl Caller {
    /// Sends `message` (request `id`) and waits for its response. A notification
    /// (no response) is sent with [`Caller::notify`].
    pub async fn call(&self, id: u64, message: &str) -> anyhow::Result<Value> {
        let (tx, rx) = oneshot::channel();
        self.requests
            .send((id, line(message), tx))
            .ok()
            .context("the server's writer has stopped")?;
        rx.await
            .ok()
            .with_context(|| format!("the server closed its stdout before answering {id}"))
    }

    pub fn notify(&self, message: &str) -> anyhow::Result<()> {
        // Never answered: its entry waits under an id no call uses, replaced by the next one.
        let (tx, _rx) = oneshot::channel();
        self.requests
            .send((u64::MAX, line(message), tx))
            .ok()
            .context("the server's writer has stopped")
    }
}

fn line(message: &str) -> Vec<u8> {
    let mut line = Vec::with_capacity(message.len() + 1);
    line.extend_from_slice(message.as_bytes());
    line.push(b'\n');
    line
}
