//! Load generation shared by the throughput, churn and memory measurements: many
//! client tasks at once, on a runtime of their own.
//!
//! The rest of the bench runs on a current-thread runtime, which suits one request at
//! a time but would make a single core the ceiling of any load it generates. Here the
//! clients get a multi-thread runtime with one worker per CPU. They still share those
//! CPUs with Lodge and the servers being measured, and so does every baseline
//! (including rmcp's HTTP server, which runs in this process on a runtime of its own).

use anyhow::Context;
use std::future::Future;
use std::time::{Duration, Instant};

/// Runs `work` to completion on a fresh multi-thread runtime (one worker per CPU),
/// driven from the blocking pool so the caller's runtime keeps going meanwhile.
pub async fn on_load_runtime<T, F, Fut>(work: F) -> anyhow::Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = anyhow::Result<T>>,
{
    tokio::task::spawn_blocking(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("cannot start the load runtime")?;
        runtime.block_on(work())
    })
    .await
    .context("the load runtime panicked")?
}

/// What `tasks` client loops achieved in one time slice.
#[derive(Debug, Default)]
pub struct Slice {
    /// Operations completed (calls, sessions).
    pub done: u64,
    /// From the start until the last task finished its last operation (each task
    /// finishes the operation it is in when the slice ends).
    pub elapsed: Duration,
    /// Latency of each operation, if the loop records it.
    pub latencies: Vec<Duration>,
    /// Failed operations, and the first failure's message.
    pub errors: u64,
    pub first_error: Option<String>,
}

impl Slice {
    pub fn add(&mut self, other: Slice) {
        self.done += other.done;
        self.elapsed += other.elapsed;
        self.latencies.extend(other.latencies);
        self.errors += other.errors;
        self.first_error = self.first_error.take().or(other.first_error);
    }

    /// Operations per second over all slices added up.
    pub fn rate(&self) -> f64 {
        self.done as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// One task's tally, returned to [`run_slice`].
#[derive(Default)]
pub struct Tally {
    pub done: u64,
    pub latencies: Vec<Duration>,
    pub errors: u64,
    pub first_error: Option<String>,
}

impl Tally {
    /// Counts a failure, keeping the first message. Fails once the failures are so many
    /// that going on would only measure how fast errors come back.
    pub fn error(&mut self, e: anyhow::Error) -> anyhow::Result<()> {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(format!("{e:#}"));
        }
        if self.errors > MAX_ERRORS {
            anyhow::bail!("{} failures, the first: {e:#}", self.errors);
        }
        Ok(())
    }
}

/// Failures one task tolerates in a slice before the measurement stops.
const MAX_ERRORS: u64 = 100;

/// Spawns one task per item of `tasks` (on the current runtime, which should be the
/// load runtime), each running `one` in a loop on its item until `length` has passed;
/// returns what they did together.
pub async fn run_slice<S, F, Fut>(tasks: Vec<S>, length: Duration, one: F) -> anyhow::Result<Slice>
where
    S: Send + 'static,
    F: Fn(S, Instant) -> Fut,
    Fut: Future<Output = anyhow::Result<Tally>> + Send + 'static,
{
    let start = Instant::now();
    let deadline = start + length;
    let handles: Vec<_> = tasks
        .into_iter()
        .map(|task| tokio::spawn(one(task, deadline)))
        .collect();
    let mut slice = Slice::default();
    for handle in handles {
        let tally = handle.await.context("a client task panicked")??;
        slice.done += tally.done;
        slice.latencies.extend(tally.latencies);
        slice.errors += tally.errors;
        slice.first_error = slice.first_error.take().or(tally.first_error);
    }
    slice.elapsed = start.elapsed();
    Ok(slice)
}
