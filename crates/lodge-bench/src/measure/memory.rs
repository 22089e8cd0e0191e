//! Memory per idle session, and whether this host holds many at once.
//!
//! A dedicated Lodge (`process` backend first, sessions never idle out, `max_sessions`
//! to fit) is measured at rest, then after opening sessions (`initialize` +
//! `notifications/initialized`, then nothing) in steps, with a short settle before each
//! reading. Figures per step, each divided by the sessions open:
//!
//! - Lodge's own growth: `VmRSS` (and `RssAnon`) from /proc/PID/status, minus the
//!   reading at rest. The sandboxed servers are separate processes, so not included.
//! - Host memory with the demo server: the `Pss` (/proc/PID/smaps_rollup) of all of
//!   Lodge's descendants, plus Lodge's growth. Baseline: the mean `Pss` of a few
//!   `lodge demo-server` processes the bench spawns and initializes itself, read at the
//!   same moment (so they share the binary's pages as Lodge's servers do).
//! - The drop of the host's `MemAvailable`, which also counts kernel memory (page
//!   tables, kernel stacks, pipes) but also whatever else runs on the host meanwhile.
//!
//! At each step a few sessions are also replaced by new ones opened one at a time: the
//! cold start of a session on a host that already holds many, against the same sample
//! taken with none open.
//!
//! At the last step every session gets one `tools/call echo`, and errors are counted:
//! they all have to be alive. Then all are ended (DELETE), Lodge is stopped, and the
//! bench checks that no server it had started is left. Then the same with the
//! `namespaces` backend. If opening sessions fails part way (out of
//! descriptors, processes or memory), the figures are for the sessions that opened and
//! say so.

use super::load::on_load_runtime;
use super::pipelined::Pipelined;
use super::{Counts, Ctx};
use crate::http::McpHttp;
use crate::lodge::Options;
use crate::mcp;
use crate::procfs::{self, Proc};
use crate::report::{Figure, Row, Target};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Concurrent clients opening, calling and ending sessions.
const WORKERS: usize = 8;
/// Pause before each reading, so spawns and their first allocations are over: longer
/// for more sessions, within these bounds.
const SETTLE: (Duration, Duration) = (Duration::from_millis(250), Duration::from_secs(3));
/// Directly spawned demo servers whose mean `Pss` is the baseline.
const DIRECT_SAMPLE: usize = 20;
/// The issue's target for Lodge's own memory per idle session.
const TARGET_KIB: f64 = 64.0;
/// How long the servers get to exit after Lodge stopped.
const EXIT_WAIT: Duration = Duration::from_secs(10);
/// New sessions timed one at a time at each step.
const COLD_SAMPLE: usize = 15;

pub async fn run(ctx: &Ctx, counts: Counts) -> anyhow::Result<Vec<Row>> {
    let top = counts.iterations.max(1);
    let first = (top / 10).max(1);
    let mut rows = Vec::new();
    for backend in ["process", "namespaces"] {
        let steps = vec![first, top];
        let bin = ctx.lodge_bin.clone();
        let cwd = ctx.scratch.path().to_path_buf();
        let warmup = counts.warmup;
        let figures =
            on_load_runtime(move || one_backend(bin, cwd, backend, steps, warmup)).await?;
        rows.extend(figures.into_iter().map(Figure::row));
    }
    Ok(rows)
}

async fn one_backend(
    lodge_bin: PathBuf,
    cwd: PathBuf,
    backend: &'static str,
    steps: Vec<usize>,
    warmup: usize,
) -> anyhow::Result<Vec<Figure>> {
    let most = steps.iter().copied().max().unwrap_or(0);
    let options = Options {
        backend: Some(backend.to_string()),
        max_sessions: Some(most + warmup + WORKERS),
        idle_timeout: Some("1h".to_string()),
        ..Options::default()
    };
    let mut lodge = match crate::lodge::start(&lodge_bin, &options) {
        Ok(lodge) => lodge,
        Err(e) => {
            return Ok(vec![Row::figure(
                &format!("memory ({backend}): Lodge did not start: {e:#}"),
                None,
                "KiB",
            )]);
        }
    };
    eprintln!(
        "lodge-bench: memory: Lodge with the {backend} backend (pid {}) at {}",
        lodge.pid(),
        lodge.base
    );
    let http = McpHttp::new(lodge.url())?;
    let pid = lodge.pid();
    let label = format!("memory ({backend})");

    // Untimed: sessions opened and ended first, so one-time costs (threads, buffers,
    // first connections) are not charged to the sessions measured.
    let warm = open(&http, warmup, Vec::new()).await;
    if let Some(e) = warm.error {
        anyhow::bail!("{label}: warm-up session failed: {e}");
    }
    end(&http, warm.sessions).await;
    settle(0).await;
    let rest = procfs::rss(pid)?;
    let available_at_rest = procfs::mem_available_kib()?;
    let mut none_open = Vec::new();
    let empty = one_at_a_time(&http, COLD_SAMPLE, &mut none_open).await;
    end(&http, none_open).await;
    settle(0).await;

    let mut figures = Vec::new();
    let mut sessions = Vec::new();
    let mut failure = None;
    for &step in &steps {
        let before = sessions.len();
        let start = Instant::now();
        let opened = open(&http, step - before, sessions).await;
        let took = start.elapsed();
        sessions = opened.sessions;
        let n = sessions.len();
        let title = match &opened.error {
            None => format!("{label}, {n} idle sessions"),
            Some(_) => format!("{label}, {n} idle sessions (of {step} asked)"),
        };
        let mut metric = format!(
            "{label}: opening sessions {}–{step} with {WORKERS} workers (initialize SSE + initialized)",
            before + 1
        );
        if let Some(e) = &opened.error {
            eprintln!("lodge-bench: {label}: {n} sessions opened, then: {e}");
            metric.push_str(&format!(": **{n} sessions opened, then: {}**", brief(e)));
        }
        figures.push(Row::figure(
            &metric,
            Some(((n - before) as f64 / took.as_secs_f64().max(1e-9)).round()),
            "sessions/s",
        ));
        if n == 0 {
            failure = opened.error;
            break;
        }
        settle(n).await;
        figures.extend(readings(&title, pid, rest, available_at_rest, n, &lodge_bin, &cwd).await?);
        figures.push(cold_start_among(&http, &title, &mut sessions, &empty).await);
        if opened.error.is_some() {
            failure = opened.error;
            break;
        }
    }

    // All alive? One call in each.
    let n = sessions.len();
    let (calls_ok, call_errors, first_error) = echo_each(&http, &sessions).await;
    let mut metric = format!(
        "{label}, {n} concurrent sessions: one tools/call echo in each ({calls_ok} answered)"
    );
    if let Some(e) = &first_error {
        metric.push_str(&format!("; first error: {e}"));
    }
    if failure.is_some() {
        metric.push_str(" (fewer than asked: see the opening row)");
    }
    figures
        .push(Row::figure(&metric, Some(call_errors as f64), "errors").target(Target::AtMost(0.0)));

    // Cleanup, timed for the record: every session ended, then Lodge stopped.
    let servers = procfs::descendants(pid)?;
    let start = Instant::now();
    let end_errors = end(&http, sessions).await;
    let took = start.elapsed();
    figures.push(Row::figure(
        &format!("{label}: ending {n} sessions, {WORKERS} workers (DELETE), {end_errors} errors"),
        Some((n as f64 / took.as_secs_f64().max(1e-9)).round()),
        "sessions/s",
    ));
    lodge.stop();
    let left = reap(&servers).await;
    figures.push(
        Row::figure(
            &format!(
                "{label}: processes left of Lodge's {} after stopping it (killed by the bench)",
                servers.len()
            ),
            Some(left as f64),
            "processes",
        )
        .target(Target::AtMost(0.0)),
    );
    Ok(figures)
}

/// An HTTP error as one line: the JSON-RPC error's message when the body has one
/// (`503: Lodge cannot start another session now: ...`), else the error as it is.
fn brief(error: &str) -> String {
    let status = error
        .strip_prefix("POST answered ")
        .and_then(|rest| rest.split_whitespace().next());
    let message = error.find('{').and_then(|at| {
        serde_json::from_str::<serde_json::Value>(&error[at..])
            .ok()?
            .pointer("/error/message")?
            .as_str()
            .map(str::to_string)
    });
    match (status, message) {
        (Some(status), Some(message)) => format!("{status}: {message}"),
        _ => error.to_string(),
    }
}

/// Waits for the host to settle after opening `sessions`: 0.3 ms each, within [`SETTLE`].
async fn settle(sessions: usize) {
    let wait =
        Duration::from_micros(300).saturating_mul(u32::try_from(sessions).unwrap_or(u32::MAX));
    tokio::time::sleep(wait.clamp(SETTLE.0, SETTLE.1)).await;
}

/// The figures at one step, `n` sessions open.
async fn readings(
    title: &str,
    pid: u32,
    rest: procfs::Rss,
    available_at_rest: u64,
    n: usize,
    lodge_bin: &std::path::Path,
    cwd: &std::path::Path,
) -> anyhow::Result<Vec<Figure>> {
    let now = procfs::rss(pid)?;
    let available = procfs::mem_available_kib()?;
    let servers = procfs::descendants(pid)?;
    let servers_pss: u64 = servers.iter().filter_map(|p| procfs::pss_kib(p.pid)).sum();
    let direct = direct_pss(lodge_bin, cwd).await?;
    let per = |kib: f64| Some(kib / n as f64);
    let growth = now.rss_kib as f64 - rest.rss_kib as f64;
    Ok(vec![
        Row::figure(
            &format!("{title}: Lodge's own VmRSS growth per session (servers excluded)"),
            per(growth),
            "KiB",
        )
        .target(Target::AtMost(TARGET_KIB)),
        Row::figure(
            &format!("{title}: Lodge's own RssAnon growth per session"),
            per(now.anon_kib as f64 - rest.anon_kib as f64),
            "KiB",
        ),
        Row::figure(
            &format!(
                "{title}: host memory per session: Pss of Lodge's {} descendant processes + Lodge's VmRSS growth",
                servers.len()
            ),
            per(servers_pss as f64 + growth),
            "KiB",
        )
        .baseline(
            &format!("direct: one `lodge demo-server`'s Pss, mean of {DIRECT_SAMPLE} initialized"),
            direct,
        ),
        Row::figure(
            &format!("{title}: host MemAvailable drop per session (kernel memory included; so is the rest of the host)"),
            per(available_at_rest as f64 - available as f64),
            "KiB",
        ),
    ])
}

/// Replaces up to [`COLD_SAMPLE`] of `sessions` with new ones opened one at a time: the
/// p50 of their cold start (initialize + initialized), against `empty`'s, taken with no
/// session open. Replacing keeps the count, so a Lodge at its limit has room.
async fn cold_start_among(
    http: &McpHttp,
    title: &str,
    sessions: &mut Vec<String>,
    empty: &Timed,
) -> Figure {
    let replaced = sessions.split_off(sessions.len().saturating_sub(COLD_SAMPLE));
    let k = replaced.len();
    end(http, replaced).await;
    settle(0).await;
    let timed = one_at_a_time(http, k, sessions).await;
    let mut metric = format!(
        "{title}: cold start of {k} new sessions opened one at a time (initialize + initialized), p50"
    );
    if let Some(e) = &timed.error {
        metric.push_str(&format!("; **failed: {}**", brief(e)));
    }
    let figure = Row::figure(&metric, timed.p50_ms, "ms");
    match empty.p50_ms {
        Some(base) => figure.baseline("the same with no session open", base),
        None => figure,
    }
}

/// The p50 of opening sessions one at a time, or why one failed.
struct Timed {
    p50_ms: Option<f64>,
    error: Option<String>,
}

/// Opens `count` sessions one after another, appended to `sessions`, and times each.
async fn one_at_a_time(http: &McpHttp, count: usize, sessions: &mut Vec<String>) -> Timed {
    let mut took = Vec::with_capacity(count);
    for _ in 0..count {
        let start = Instant::now();
        match http.open_session().await {
            Ok(id) => {
                took.push(start.elapsed());
                sessions.push(id);
            }
            Err(e) => {
                return Timed {
                    p50_ms: None,
                    error: Some(format!("{e:#}")),
                };
            }
        }
    }
    took.sort();
    Timed {
        p50_ms: crate::stats::percentile(&took, 50.0).map(|d| d.as_secs_f64() * 1e3),
        error: None,
    }
}

/// The mean `Pss` of [`DIRECT_SAMPLE`] demo servers spawned and initialized directly.
async fn direct_pss(lodge_bin: &std::path::Path, cwd: &std::path::Path) -> anyhow::Result<f64> {
    let mut servers = Vec::new();
    for _ in 0..DIRECT_SAMPLE {
        let server = Pipelined::spawn(lodge_bin, cwd)?;
        let caller = server.caller()?;
        mcp::check_initialized(&caller.call(0, &mcp::initialize(0)).await?)?;
        caller.notify(&mcp::initialized())?;
        servers.push(server);
    }
    let pss: u64 = servers
        .iter()
        .filter_map(|s| s.pid().and_then(procfs::pss_kib))
        .sum();
    for server in servers {
        server.close().await?;
    }
    Ok(pss as f64 / DIRECT_SAMPLE as f64)
}

struct Opened {
    sessions: Vec<String>,
    /// Why opening stopped short, if it did.
    error: Option<String>,
}

/// Opens `count` more sessions with [`WORKERS`] concurrent clients, appended to
/// `sessions`. Stops at the first failure, and says what it was.
async fn open(http: &McpHttp, count: usize, sessions: Vec<String>) -> Opened {
    let next = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let opened = Arc::new(Mutex::new(sessions));
    let error = Arc::new(Mutex::new(None::<String>));
    let workers: Vec<_> = (0..WORKERS.min(count.max(1)))
        .map(|_| {
            let (http, next, stop) = (http.clone(), next.clone(), stop.clone());
            let (opened, error) = (opened.clone(), error.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) && next.fetch_add(1, Ordering::Relaxed) < count
                {
                    match http.open_session().await {
                        Ok(id) => {
                            if let Ok(mut o) = opened.lock() {
                                o.push(id);
                            }
                        }
                        Err(e) => {
                            stop.store(true, Ordering::Relaxed);
                            if let Ok(mut slot) = error.lock() {
                                slot.get_or_insert(format!("{e:#}"));
                            }
                        }
                    }
                }
            })
        })
        .collect();
    let mut panicked = None;
    for worker in workers {
        if let Err(e) = worker.await {
            panicked = Some(format!("a worker panicked: {e}"));
        }
    }
    let sessions = opened
        .lock()
        .map(|mut o| std::mem::take(&mut *o))
        .unwrap_or_default();
    let error = error.lock().ok().and_then(|mut e| e.take());
    Opened {
        sessions,
        error: error.or(panicked),
    }
}

/// Runs `each` on every session with [`WORKERS`] clients; (ok, errors, first error).
async fn for_each_session<F, Fut>(
    http: &McpHttp,
    sessions: &[String],
    each: F,
) -> (usize, usize, Option<String>)
where
    F: Fn(McpHttp, String) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let queue = Arc::new(Mutex::new(sessions.to_vec()));
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let (http, queue, each) = (http.clone(), queue.clone(), each.clone());
            tokio::spawn(async move {
                let (mut ok, mut errors, mut first) = (0, 0, None);
                // The guard is dropped inside the closure, before the call.
                while let Some(session) = queue.lock().ok().and_then(|mut q| q.pop()) {
                    match each(http.clone(), session).await {
                        Ok(()) => ok += 1,
                        Err(e) => {
                            errors += 1;
                            first.get_or_insert(format!("{e:#}"));
                        }
                    }
                }
                (ok, errors, first)
            })
        })
        .collect();
    let (mut ok, mut errors, mut first) = (0, 0, None);
    for worker in workers {
        match worker.await {
            Ok((o, e, f)) => {
                ok += o;
                errors += e;
                first = first.or(f);
            }
            Err(e) => {
                errors += 1;
                first.get_or_insert(format!("a worker panicked: {e}"));
            }
        }
    }
    (ok, errors, first)
}

async fn echo_each(http: &McpHttp, sessions: &[String]) -> (usize, usize, Option<String>) {
    for_each_session(http, sessions, |http, session| async move {
        let id = 1;
        let mut reply = http.post(Some(&session), mcp::echo(id, "alive")).await?;
        let response = reply.response_to(id).await?;
        reply.finish().await?;
        mcp::check_echo(&response, "alive")
    })
    .await
}

/// Ends every session (DELETE); returns the number of failures.
async fn end(http: &McpHttp, sessions: Vec<String>) -> usize {
    let (_, errors, first) = for_each_session(http, &sessions, |http, session| async move {
        http.delete(&session).await
    })
    .await;
    if let Some(e) = first {
        eprintln!("lodge-bench: memory: {errors} DELETEs failed, first: {e}");
    }
    errors
}

/// Waits for `servers` to be gone after Lodge stopped; SIGKILLs any still there after
/// [`EXIT_WAIT`] and returns how many that was.
async fn reap(servers: &[Proc]) -> usize {
    let deadline = Instant::now() + EXIT_WAIT;
    loop {
        let alive: Vec<Proc> = servers.iter().copied().filter(|p| p.alive()).collect();
        if alive.is_empty() {
            return 0;
        }
        if Instant::now() >= deadline {
            eprintln!(
                "lodge-bench: memory: {} of Lodge's processes outlived it; killing them",
                alive.len()
            );
            for p in &alive {
                if let Ok(pid) = i32::try_from(p.pid) {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
            }
            return alive.len();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_errors_in_brief() {
        let e = r#"POST answered 503 Service Unavailable: {"jsonrpc":"2.0","id":0,"error":{"code":-32002,"message":"out of resources"}}"#;
        assert_eq!(brief(e), "503: out of resources");
        assert_eq!(
            brief("POST failed: connection refused"),
            "POST failed: connection refused"
        );
    }
}
