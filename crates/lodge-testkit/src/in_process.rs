//! The in-process harness: Lodge's runtime and HTTP front on `127.0.0.1:0` in a task of
//! the caller's tokio runtime, so a test can pause and advance the clock Lodge's timers
//! run on. The hosted server is still a real child process on the `process` backend.
//!
//! A paused clock is sound only while nothing but Lodge's timers is awaited: tokio
//! advances a paused clock whenever every task is waiting, and a task waiting on a child
//! process or a socket counts as waiting, so a timer can fire before the server has
//! answered. Pause once the session is set up, let the timer fire, resume before talking
//! to the server again.

use anyhow::Context;
use lodge_http::FrontConfig;
use lodge_runtime::{Anonymous, Protocol, Runtime, ServerSpec, SessionConfig, Transport};
use lodge_sandbox::ProcessBackend;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A Lodge serving one stdio server, stopped when dropped (the task is aborted, which
/// kills the sessions' processes) or drained by [`InProcess::shutdown`].
pub struct InProcess {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    pub runtime: Arc<Runtime>,
    scratch: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl InProcess {
    /// Hosts `command` (argv) as server `name`, with `session` (its `scratch_root` is
    /// replaced by a temp dir of this harness).
    pub async fn start(
        name: &str,
        command: Vec<String>,
        mut session: SessionConfig,
    ) -> anyhow::Result<Self> {
        let scratch = tempfile::tempdir().context("cannot create a temp dir")?;
        session.scratch_root = scratch.path().join("scratch");
        let spec = ServerSpec {
            name: name.into(),
            command,
            env: Default::default(),
            limits: Default::default(),
            backend: Arc::new(ProcessBackend),
            protocol: Protocol::Auto,
            anonymous: Anonymous::Fresh,
            warm_pool: 0,
            transport: Transport::Stdio,
            quota: Default::default(),
            continuity: Default::default(),
            storage: Default::default(),
            storage_ttl: lodge_runtime::DEFAULT_STORAGE_TTL,
        };
        let runtime = Runtime::new(vec![spec], session);
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("cannot bind 127.0.0.1:0")?;
        let base = format!("http://{}", listener.local_addr()?);
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stopped.await;
        };
        let task = tokio::spawn(lodge_http::serve(
            listener,
            runtime.clone(),
            FrontConfig::default(),
            shutdown,
        ));
        Ok(InProcess {
            base,
            runtime,
            scratch,
            stop: Some(stop),
            task: Some(task),
        })
    }

    pub fn url(&self) -> String {
        format!("{}/mcp", self.base)
    }

    /// Where the sessions' scratch directories are made.
    pub fn scratch_root(&self) -> PathBuf {
        self.scratch.path().join("scratch")
    }

    /// Stops accepting, drains the runtime as `lodge serve` does on SIGTERM, and waits.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.context("the front's task failed")??;
        }
        Ok(())
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
