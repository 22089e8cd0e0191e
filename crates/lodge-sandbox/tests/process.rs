//! The `process` backend against real processes. Every wait has a deadline; no bare sleeps.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use lodge_sandbox::{
    Backend, ExitReport, Limits, ProcessBackend, Sandbox, SandboxError, SandboxId, SandboxSpec,
};
use nix::sys::signal::kill;
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::ChildStdout;

/// Generous: the test machines are small and shared.
const DEADLINE: Duration = Duration::from_secs(60);

fn spec(root: &Path, command: &[&str]) -> SandboxSpec {
    SandboxSpec {
        sandbox_id: SandboxId::mint(),
        command: command.iter().map(|s| s.to_string()).collect(),
        env: BTreeMap::new(),
        scratch_root: root.into(),
        stderr_cap: 64 * 1024,
        stderr_file: None,
        limits: Limits::default(),
        reached_over_tcp: false,
        kept: None,
    }
}

fn sh(root: &Path, script: &str) -> SandboxSpec {
    spec(root, &["sh", "-c", script])
}

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    within(what, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

async fn read_line(stdout: &mut BufReader<ChildStdout>) -> String {
    let mut line = String::new();
    within("a line on stdout", stdout.read_line(&mut line))
        .await
        .unwrap();
    line.trim_end_matches('\n').to_owned()
}

async fn read_to_end(stdout: ChildStdout) -> String {
    let mut out = String::new();
    let mut stdout = stdout;
    within("stdout EOF", stdout.read_to_string(&mut out))
        .await
        .unwrap();
    out
}

/// Whether `pid` is a live process (zombies count as gone: nobody may reap orphans here).
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.rsplit(')').next().unwrap().trim_start().chars().next();
            !matches!(state, Some('Z' | 'X'))
        }
        Err(_) if Path::new("/proc/self").exists() => false,
        Err(_) => kill(Pid::from_raw(pid), None).is_ok(),
    }
}

/// Wait for the `ready` line, then read the grandchild pid the script wrote to `pidfile`.
async fn ready_with_grandchild(stdout: &mut BufReader<ChildStdout>, pidfile: &Path) -> i32 {
    assert_eq!(read_line(stdout).await, "ready");
    std::fs::read_to_string(pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn start(s: &SandboxSpec) -> Sandbox {
    ProcessBackend.spawn(s).unwrap()
}

#[test]
fn names() {
    assert_eq!(ProcessBackend.name(), "process");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environment_is_cleared() {
    // `std::env::set_var` needs `unsafe` (forbidden here), so re-run this very test in a
    // child process that has the host variable set.
    if std::env::var_os("LODGE_TEST_SECRET").is_none() {
        let out = within(
            "the re-run test",
            tokio::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "environment_is_cleared", "--nocapture"])
                .env("LODGE_TEST_SECRET", "hunter2")
                .output(),
        )
        .await
        .unwrap();
        assert!(
            out.status.success(),
            "re-run test failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("1 passed"));
        return;
    }

    let tmp = tempfile::tempdir().unwrap();
    let mut s = spec(tmp.path(), &["env"]);
    s.env.insert("GREETING".into(), "hi".into());
    s.env.insert("LANG".into(), "en_US.UTF-8".into());
    let Sandbox { io, mut process } = start(&s);
    let scratch = process.scratch_dir().to_path_buf();
    let out = read_to_end(io.stdout).await;
    assert!(within("exit", process.exited()).await.success());

    let vars: BTreeMap<&str, &str> = out.lines().filter_map(|l| l.split_once('=')).collect();
    let names: BTreeSet<&str> = vars.keys().copied().collect();
    assert_eq!(
        names,
        BTreeSet::from(["GREETING", "HOME", "LANG", "PATH", "TMPDIR"]),
        "{out}"
    );
    assert_eq!(vars["GREETING"], "hi");
    assert_eq!(vars["LANG"], "en_US.UTF-8", "configured vars win");
    assert_eq!(Path::new(vars["HOME"]), scratch);
    assert_eq!(Path::new(vars["TMPDIR"]), scratch);
    assert_eq!(
        std::ffi::OsStr::new(vars["PATH"]),
        std::env::var_os("PATH").unwrap()
    );
    assert!(!out.contains("hunter2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cwd_is_scratch_and_removed_after_terminate() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let s = sh(&root, "pwd -P; echo \"$LANG\"; exec cat");
    let Sandbox { io, process } = start(&s);
    let scratch = process.scratch_dir().to_path_buf();
    assert_eq!(scratch, root.join(s.sandbox_id.to_string()));
    let mode = std::fs::metadata(&scratch).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700);

    let mut stdout = BufReader::new(io.stdout);
    let cwd = read_line(&mut stdout).await;
    assert_eq!(Path::new(&cwd), scratch.canonicalize().unwrap());
    assert_eq!(read_line(&mut stdout).await, "C.UTF-8");

    let report = within("terminate", process.terminate(DEADLINE)).await;
    assert_eq!(report.signal, Some(15), "{report}");
    assert!(!scratch.exists());
    assert!(root.exists(), "only the session's dir is removed");
}

/// The `process` backend sets the rlimits too: the server does not inherit Lodge's
/// raised open-file limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_get_their_own_rlimits() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let script =
        "ulimit -Sn; ulimit -Hn; ulimit -c; awk '/Max file size/ {print $4}' /proc/self/limits";
    let Sandbox { io, mut process } = start(&sh(tmp.path(), script));
    let out = read_to_end(io.stdout).await;
    assert!(within("exit", process.exited()).await.success());
    let n = lodge_sandbox::DEFAULT_OPEN_FILES.min(hard);
    assert_eq!(out, format!("{n}\n{n}\n0\nunlimited\n"));

    let mut s = sh(tmp.path(), script);
    s.limits = Limits {
        open_files: Some(50),
        file_size: Some(1 << 20),
        ..Limits::default()
    };
    let Sandbox { io, mut process } = start(&s);
    let out = read_to_end(io.stdout).await;
    assert!(within("exit", process.exited()).await.success());
    assert_eq!(out, "50\n50\n0\n1048576\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdin_stdout_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let Sandbox { io, mut process } = start(&spec(tmp.path(), &["cat"]));
    let (mut stdin, mut stdout) = (io.stdin, BufReader::new(io.stdout));
    for msg in ["hello", "{\"jsonrpc\":\"2.0\",\"id\":1}"] {
        within("write", stdin.write_all(format!("{msg}\n").as_bytes()))
            .await
            .unwrap();
        within("flush", stdin.flush()).await.unwrap();
        assert_eq!(read_line(&mut stdout).await, msg);
    }
    drop(stdin);
    let report = within("exit", process.exited()).await;
    assert_eq!(report, ExitReport::exited(0));
    assert_eq!(report.to_string(), "exited with status 0");
    assert_eq!(process.pid(), None, "reaped");
    let scratch = process.scratch_dir().to_path_buf();
    within("terminate", process.terminate(Duration::from_secs(1))).await;
    assert!(!scratch.exists());
}

/// This process's CPU seconds so far (all threads; children not counted).
fn cpu_seconds() -> f64 {
    use nix::sys::resource::{UsageWho, getrusage};
    let usage = getrusage(UsageWho::RUSAGE_SELF).unwrap();
    let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
    t(usage.user_time()) + t(usage.system_time())
}

/// A real server flooding its stderr through a pipe (200 MiB of blank lines, then 200
/// MiB of short ones) costs Lodge well under a CPU second per flood, kernel reads
/// included (issue 13, finding 6: the old reader spent a full core on it). Prints the
/// figures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stderr_flood_costs_lodge_little_cpu() {
    let tmp = tempfile::tempdir().unwrap();
    for (label, script) in [
        (
            "blank lines",
            "head -c 209715200 /dev/zero | tr '\\0' '\\n' >&2",
        ),
        ("short lines", "yes spam | head -c 209715200 >&2"),
    ] {
        let before = cpu_seconds();
        let Sandbox {
            io: _io,
            mut process,
        } = start(&sh(tmp.path(), script));
        let report = within("exit", process.exited()).await;
        assert!(report.success(), "{report}");
        within("terminate", process.terminate(Duration::from_secs(5))).await;
        let spent = cpu_seconds() - before;
        eprintln!("200 MiB of {label} on stderr: {spent:.3} CPU s in Lodge");
        // The figure is the whole process's: only meaningful when no other test runs in
        // it (nextest's process-per-test mode).
        if std::env::var("NEXTEST_EXECUTION_MODE").as_deref() == Ok("process-per-test") {
            assert!(spent < 1.0, "{label}: {spent:.3} CPU s for 200 MiB");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stderr_tail_and_nonzero_exit() {
    let tmp = tempfile::tempdir().unwrap();
    let script = r#"i=1; while [ $i -le 25 ]; do echo "line $i" >&2; i=$((i+1)); done; exit 3"#;
    let Sandbox {
        io: _io,
        mut process,
    } = start(&sh(tmp.path(), script));
    let report = within("exit", process.exited()).await;
    assert_eq!(report, ExitReport::exited(3));
    assert_eq!(report.to_string(), "exited with status 3");
    assert_eq!(within("exited again", process.exited()).await, report);
    let expected: Vec<String> = (16..=25).map(|i| format!("line {i}")).collect();
    wait_until("the full stderr tail", || process.stderr_tail() == expected).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stderr_flood_past_the_cap_never_blocks_the_server() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = sh(
        tmp.path(),
        "yes xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx | head -n 50000 >&2; echo end >&2",
    );
    s.stderr_cap = 1024;
    let Sandbox {
        io: _io,
        mut process,
    } = start(&s);
    assert!(within("exit", process.exited()).await.success());
    wait_until("the last stderr line", || {
        process.stderr_tail().last().map(String::as_str) == Some("end")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exited_reports_a_signal_and_is_cancel_safe() {
    let tmp = tempfile::tempdir().unwrap();
    let Sandbox { io, mut process } = start(&sh(tmp.path(), "read x; kill -9 $$"));
    for _ in 0..5 {
        let r = tokio::time::timeout(Duration::from_millis(10), process.exited()).await;
        assert!(r.is_err(), "still running: {r:?}");
    }
    let mut stdin = io.stdin;
    within("write", stdin.write_all(b"go\n")).await.unwrap();
    let report = within("exit", process.exited()).await;
    assert_eq!(report, ExitReport::killed(9));
    assert_eq!(report.to_string(), "was killed by signal 9 (SIGKILL)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminate_sigkills_a_server_that_ignores_sigterm() {
    let tmp = tempfile::tempdir().unwrap();
    let script = r#"trap "" TERM; echo ready; while :; do sleep 1; done"#;
    let Sandbox { io, process } = start(&sh(tmp.path(), script));
    let scratch = process.scratch_dir().to_path_buf();
    let mut stdout = BufReader::new(io.stdout);
    assert_eq!(read_line(&mut stdout).await, "ready");

    let grace = Duration::from_millis(300);
    let started = Instant::now();
    let report = within("terminate", process.terminate(grace)).await;
    assert!(started.elapsed() >= grace, "waited out the grace");
    assert_eq!(report, ExitReport::killed(9));
    assert_eq!(report.to_string(), "was killed by signal 9 (SIGKILL)");
    assert!(!scratch.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminate_kills_grandchildren_in_the_group() {
    let tmp = tempfile::tempdir().unwrap();
    let pidfile = tmp.path().join("grandchild.pid");
    // The grandchild ignores SIGTERM; the server itself dies of it at once.
    let script = r#"(trap "" TERM; exec sleep 1000) & echo $! > "$PIDFILE"; echo ready; wait"#;
    let mut s = sh(&tmp.path().join("root"), script);
    s.env
        .insert("PIDFILE".into(), pidfile.to_str().unwrap().into());
    let Sandbox { io, process } = start(&s);
    let server = i32::try_from(process.pid().unwrap()).unwrap();
    let mut stdout = BufReader::new(io.stdout);
    let grandchild = ready_with_grandchild(&mut stdout, &pidfile).await;
    assert!(alive(grandchild));

    let report = within("terminate", process.terminate(DEADLINE)).await;
    assert_eq!(report.signal, Some(15), "{report}");
    wait_until("the grandchild to die", || !alive(grandchild)).await;
    assert!(!alive(server));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_kills_the_group_and_removes_scratch() {
    let tmp = tempfile::tempdir().unwrap();
    let pidfile = tmp.path().join("grandchild.pid");
    let script = r#"sleep 1000 & echo $! > "$PIDFILE"; echo ready; wait"#;
    let mut s = sh(&tmp.path().join("root"), script);
    s.env
        .insert("PIDFILE".into(), pidfile.to_str().unwrap().into());
    let Sandbox { io, process } = start(&s);
    let server = i32::try_from(process.pid().unwrap()).unwrap();
    let scratch = process.scratch_dir().to_path_buf();
    let mut stdout = BufReader::new(io.stdout);
    let grandchild = ready_with_grandchild(&mut stdout, &pidfile).await;

    drop(process);
    assert!(!scratch.exists(), "removed synchronously on drop");
    wait_until("the server and grandchild to die", || {
        !alive(server) && !alive(grandchild)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawn_errors_are_clear_and_leave_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");

    let err = ProcessBackend
        .spawn(&spec(&root, &["lodge-no-such-command-4f2a"]))
        .unwrap_err();
    assert!(
        matches!(&err, SandboxError::CommandNotFound { program } if program == "lodge-no-such-command-4f2a"),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "command `lodge-no-such-command-4f2a` not found on PATH"
    );

    let err = ProcessBackend.spawn(&spec(&root, &[])).unwrap_err();
    assert!(matches!(err, SandboxError::EmptyCommand), "{err:?}");

    let not_executable = tmp.path().join("not-executable");
    std::fs::write(&not_executable, "#!/bin/sh\n").unwrap();
    let program = not_executable.to_str().unwrap();
    let err = ProcessBackend.spawn(&spec(&root, &[program])).unwrap_err();
    assert!(matches!(err, SandboxError::Spawn { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains(program) && msg.contains("os error"),
        "names the program and the OS error: {msg}"
    );
    assert_eq!(
        std::fs::read_dir(&root).unwrap().count(),
        0,
        "scratch removed after a failed spawn"
    );
}

#[test]
fn spawn_outside_a_runtime_is_an_error_not_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let err = ProcessBackend
        .spawn(&spec(tmp.path(), &["cat"]))
        .unwrap_err();
    assert!(err.to_string().contains("Tokio runtime"), "{err}");
}
