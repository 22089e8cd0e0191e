//! The sandbox helper: the program Lodge starts for each `namespaces` session. It builds
//! the sandbox and then runs the server in it. Three processes:
//!
//! 1. **supervisor** (the process Lodge started; host root, host pid namespace): joins the
//!    session's cgroups, unshares mount/ipc/uts/cgroup (and network) namespaces and a pid
//!    namespace for its children, builds the new root on a tmpfs, brings `lo` up, forks
//!    the init, then waits: it passes SIGTERM/SIGINT/SIGHUP/SIGQUIT/SIGUSR1/SIGUSR2 (which
//!    Lodge sends its process group) on to the init, and when the init exits it exits the
//!    same way the server did (same code, or the same signal), so Lodge sees the server's
//!    status.
//! 2. **init** (pid 1 of the new pid namespace; dies with the supervisor via
//!    `PR_SET_PDEATHSIG`, then leaves its process group): mounts a fresh `/proc`,
//!    `pivot_root`s into the new root and makes it read-only, forks the server, writes the
//!    server's uid/gid maps, then reaps zombies and forwards those signals to the server's
//!    process group. When the server exits it reports the status to the supervisor and
//!    exits, which makes the kernel kill everything left in the pid namespace.
//! 3. **server**: starts a session of its own (so each signal reaches it once, through the
//!    supervisor and the init), enters a new user namespace in which it is uid/gid 1000,
//!    mapped to an unprivileged host id, caps nested namespaces at 0, sets no_new_privs,
//!    drops every capability, applies Landlock and the seccomp filters, and execs the
//!    server in `/session`.
//!
//! Why a helper process at all: Lodge is multi-threaded (tokio), and after `fork` in a
//! multi-threaded process only async-signal-safe calls are allowed — no allocation, no
//! locks — which rules out building a root filesystem, parsing a plan or using `landlock`.
//! Lodge instead starts this helper like any child (`posix_spawn` via `std`), and the
//! helper, a fresh single-threaded process, forks freely. The helper is Lodge's own binary
//! (`lodge sandbox-helper`), or `lodge-sandbox-helper` for this crate's tests.
//!
//! Failures before the server starts are written to the server's stderr as
//! `lodge sandbox: …` and end the helper with status 125 (126: the program cannot be
//! executed, 127: it does not exist), so the session ends with a message that says why.

use std::ffi::{CString, OsString};
use std::fmt::Display;
use std::fs;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, unshare};
use nix::sys::resource::{Resource, setrlimit};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Gid, Pid, Uid, chdir, getpid, pipe2, setresgid, setresuid};

use crate::plan::{
    INNER_ID, PLAN_VAR, Plan, SANDBOX_PID_VAR, SESSION_DIR, SESSION_VAR, SessionPlan,
};
use crate::{seccomp, sys};

pub(crate) mod probe;
mod root;

/// Exit status for a failure while building the sandbox.
const SETUP_FAILED: i32 = 125;
/// Signals the init forwards to the server.
const FORWARDED: [Signal; 6] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

/// Entry point of the sandbox helper. `args` are the arguments after the ones that
/// selected the helper (`run` or `probe`).
///
/// Call it first thing in `main`, before any thread is started: it forks, which is only
/// sound in a single-threaded process (it checks, and refuses otherwise).
pub fn run_helper(args: impl IntoIterator<Item = OsString>) -> ! {
    let args: Vec<OsString> = args.into_iter().collect();
    if let Err(e) = ensure_single_threaded() {
        fail(e);
    }
    match args.first().and_then(|a| a.to_str()) {
        Some("run") => run(),
        Some("probe") => probe::probe_main(),
        other => fail(format!(
            "unknown helper mode {other:?}; this is an internal command of Lodge"
        )),
    }
}

fn ensure_single_threaded() -> Result<(), String> {
    match fs::read_dir("/proc/self/task").map(Iterator::count) {
        Ok(1) => Ok(()),
        Ok(_) => Err("the sandbox helper must run in a single-threaded process".into()),
        Err(e) => Err(format!("cannot read /proc/self/task: {e}")),
    }
}

/// Prints `lodge sandbox: what` on stderr and exits with status 125.
pub(crate) fn fail(what: impl Display) -> ! {
    fail_with(SETUP_FAILED, what)
}

fn fail_with(code: i32, what: impl Display) -> ! {
    let _ = writeln!(std::io::stderr(), "lodge sandbox: {what}");
    std::process::exit(code)
}

trait OrFail<T> {
    fn or_fail(self, what: impl FnOnce() -> String) -> T;
}

impl<T, E: Display> OrFail<T> for Result<T, E> {
    fn or_fail(self, what: impl FnOnce() -> String) -> T {
        match self {
            Ok(v) => v,
            Err(e) => fail(format!("{}: {e}", what())),
        }
    }
}

fn from_env<T: serde::de::DeserializeOwned>(var: &str) -> T {
    let text = std::env::var(var).or_fail(|| format!("reading {var}"));
    serde_json::from_str(&text).or_fail(|| format!("parsing {var}"))
}

/// Servers sometimes reopen their own stdio through `/proc/self/fd` (`/dev/stdin` in a
/// script; rmcp's stdio transport does it for non-blocking pipe I/O). Reopening checks
/// the pipe's owner, which is Lodge's uid, not the server's unprivileged host id: the
/// open fails and the server falls back to slower I/O or fails. The pipes Lodge made are
/// this session's alone, so they become the session's. Only pipes: a terminal or
/// `/dev/null` on these descriptors is a file of the host and stays as it is.
fn give_stdio_pipes_to(session: &SessionPlan) {
    use std::os::fd::AsFd;
    let (uid, gid) = (Uid::from_raw(session.uid), Gid::from_raw(session.gid));
    let (stdin, stdout, stderr) = (std::io::stdin(), std::io::stdout(), std::io::stderr());
    for fd in [stdin.as_fd(), stdout.as_fd(), stderr.as_fd()] {
        let is_pipe = nix::sys::stat::fstat(fd).is_ok_and(|st| {
            nix::sys::stat::SFlag::from_bits_truncate(st.st_mode)
                .contains(nix::sys::stat::SFlag::S_IFIFO)
                && st.st_nlink <= 1
        });
        if is_pipe {
            let _ = nix::unistd::fchown(fd, Some(uid), Some(gid));
        }
    }
}

/// Signals the supervisor and init handle synchronously (blocked, then `sigwait`ed).
fn handled_signals() -> SigSet {
    let mut set = SigSet::empty();
    set.add(Signal::SIGCHLD);
    for s in FORWARDED {
        set.add(s);
    }
    set
}

fn run() -> ! {
    let plan: Plan = from_env(PLAN_VAR);
    let session: SessionPlan = from_env(SESSION_VAR);
    sys::close_from(3);
    give_stdio_pipes_to(&session);
    // The supervisor and init are never the OOM killer's choice; the server resets this.
    let _ = fs::write("/proc/self/oom_score_adj", "-1000");
    let _ = setrlimit(Resource::RLIMIT_CORE, 0, 0);
    for procs in &session.cgroups {
        fs::write(procs, "0").or_fail(|| format!("joining cgroup {}", procs.display()));
    }
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&handled_signals()), None)
        .or_fail(|| "blocking signals".into());

    let mut flags = CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWPID;
    if plan.new_netns {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    unshare(flags).or_fail(|| "creating namespaces".into());
    if plan.new_netns {
        sys::loopback_up().or_fail(|| "bringing up the loopback interface".into());
    }
    // After joining the cgroups: the server sees its own cgroup as the root.
    if !session.cgroups.is_empty() {
        let _ = unshare(CloneFlags::CLONE_NEWCGROUP);
    }
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .or_fail(|| "making mounts private".into());
    root::build_root(&plan, &session);
    nix::unistd::sethostname(crate::plan::HOSTNAME).or_fail(|| "setting the host name".into());

    let (status_r, status_w) = pipe2(nix::fcntl::OFlag::O_CLOEXEC).or_fail(|| "pipe".into());
    let supervisor = getpid();
    match sys::fork_single_threaded().or_fail(|| "starting the sandbox init".into()) {
        ForkResult::Child => {
            drop(status_r);
            reexec_as_init(supervisor, status_w)
        }
        ForkResult::Parent { child } => {
            drop(status_w);
            supervise(child, status_r)
        }
    }
}

/// The sandbox's pid 1 must not show the host in its command line (`/proc/1/cmdline` is
/// readable by the server): a fork of this helper would show Lodge's host path and
/// `sandbox-helper run`. So the init execs this same binary again (through
/// `/proc/self/exe`, not a path) with the argv `init` alone; [`run_init_if_asked`] picks
/// it up. The status pipe stays open across the exec; the plans stay in the environment,
/// which only the init's own (host) user may read.
///
/// `execve` itself, not `std::process::Command`: that would reset the signal mask, and
/// the init relies on its signals staying blocked from the fork on (one that came in
/// between would kill it).
fn reexec_as_init(supervisor: Pid, status: OwnedFd) -> ! {
    use std::os::fd::AsRawFd;
    let fd = status.as_raw_fd();
    nix::fcntl::fcntl(
        &status,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
    )
    .or_fail(|| "keeping the status pipe across exec".into());
    let mut env: Vec<CString> = std::env::vars_os()
        .filter(|(k, _)| k != INIT_VAR)
        .filter_map(|(k, v)| {
            let mut var = k.into_vec();
            var.push(b'=');
            var.extend_from_slice(v.as_bytes());
            CString::new(var).ok()
        })
        .collect();
    env.push(
        CString::new(format!("{INIT_VAR}={fd} {supervisor}")).or_fail(|| "environment".into()),
    );
    let argv = [CString::new(INIT_ARGV0).or_fail(|| "argv".into())];
    let err = match nix::unistd::execve(c"/proc/self/exe", &argv, &env) {
        Err(e) => e,
        Ok(never) => match never {},
    };
    fail(format!("re-executing the sandbox init: {err}"))
}

/// `argv[0]` (and all of `argv`) of the sandbox's init.
const INIT_ARGV0: &str = "init";
/// Set for the re-executed init: `STATUS_FD SUPERVISOR_PID`.
const INIT_VAR: &str = "LODGE_SANDBOX_INIT";

/// If this process is a sandbox init re-executed by the helper (argv is exactly `init`
/// and the helper's variable is set), runs it and never returns; otherwise returns at
/// once. Call it first thing in `main` of every binary that runs [`run_helper`], before
/// parsing arguments or starting threads.
pub fn run_init_if_asked() {
    let mut args = std::env::args_os();
    if args.next().as_deref() != Some(std::ffi::OsStr::new(INIT_ARGV0)) || args.next().is_some() {
        return;
    }
    let Some(value) = std::env::var_os(INIT_VAR) else {
        return;
    };
    if let Err(e) = ensure_single_threaded() {
        fail(e);
    }
    // Still blocked from the helper (execve keeps the mask); blocked again in case.
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&handled_signals()), None)
        .or_fail(|| "blocking signals".into());
    let parsed = value.to_str().and_then(|v| {
        let (fd, pid) = v.split_once(' ')?;
        Some((fd.parse::<i32>().ok()?, pid.parse::<i32>().ok()?))
    });
    let Some((fd, supervisor)) = parsed else {
        fail(format!("{INIT_VAR} is malformed"));
    };
    let status = sys::adopt_fd(fd).or_fail(|| "the status pipe".into());
    let plan: Plan = from_env(PLAN_VAR);
    let session: SessionPlan = from_env(SESSION_VAR);
    let _ = nix::sys::prctl::set_name(c"init");
    init(&plan, &session, Pid::from_raw(supervisor), status)
}

/// The supervisor: waits for the init, then exits the way the server did.
fn supervise(init: Pid, status: OwnedFd) -> ! {
    // The server holds the real stdin/stdout; keep no copies that delay Lodge's EOF.
    close_stdio();
    let signals = handled_signals();
    let init_status = loop {
        match signals.wait() {
            Ok(Signal::SIGCHLD) => match waitpid(init, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => continue,
                Ok(s) => break s,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => fail(format!("waiting for the sandbox init: {e}")),
            },
            // Lodge signals this process's group, which the init has left: pass it on,
            // including one that came while the sandbox was being built, before the init
            // existed (it stayed pending here, blocked).
            Ok(signal) => {
                let _ = kill(init, signal);
            }
            Err(_) => continue,
        }
    };
    let mut buf = [0u8; 4];
    let mut file = fs::File::from(status);
    let server = match file.read_exact(&mut buf) {
        Ok(()) => Some(i32::from_le_bytes(buf)),
        Err(_) => None,
    };
    match (server, init_status) {
        (Some(code), _) if code >= 0 => std::process::exit(code),
        (Some(neg), _) => die_by(-neg),
        (None, WaitStatus::Exited(_, code)) => std::process::exit(code),
        (None, WaitStatus::Signaled(_, sig, _)) => die_by(sig as i32),
        (None, other) => fail(format!("the sandbox init ended oddly: {other:?}")),
    }
}

/// Ends this process by signal `sig` (as the server was), or with 128+sig if that signal
/// does not kill.
fn die_by(sig: i32) -> ! {
    if let Ok(signal) = Signal::try_from(sig) {
        let _ = sys::default_disposition(signal);
        let _ = kill(getpid(), signal);
        let mut set = SigSet::empty();
        set.add(signal);
        let _ = sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(&set), None);
    }
    std::process::exit(128 + sig)
}

fn close_stdio() {
    if let Ok(null) = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        let _ = nix::unistd::dup2_stdin(&null);
        let _ = nix::unistd::dup2_stdout(&null);
    }
}

/// Pid 1 of the sandbox.
fn init(plan: &Plan, session: &SessionPlan, supervisor: Pid, status: OwnedFd) -> ! {
    // If the supervisor was killed before this, Lodge has seen it exit and kills its
    // process group, which includes this process.
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
    // Then leave that group: Lodge's signals reach the supervisor, which passes them on.
    // A group signal sent to the init directly can be lost: one that arrives while the
    // supervisor forks it never reaches it, and an init drops signals it has no handler for.
    let _ = nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0));
    let root = &plan.root;
    chdir(root).or_fail(|| format!("entering {}", root.display()));
    nix::unistd::pivot_root(".", ".").or_fail(|| "pivot_root".into());
    umount2(".", MntFlags::MNT_DETACH).or_fail(|| "detaching the host's root".into());
    chdir("/").or_fail(|| "chdir /".into());
    mount(
        Some("proc"),
        "/proc",
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .or_fail(|| "mounting /proc".into());
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_BIND
            | MsFlags::MS_REMOUNT
            | MsFlags::MS_RDONLY
            | MsFlags::MS_NOSUID
            | MsFlags::MS_NODEV,
        None::<&str>,
    )
    .or_fail(|| "making the root read-only".into());

    let (go_r, go_w) = pipe2(nix::fcntl::OFlag::O_CLOEXEC).or_fail(|| "pipe".into());
    let (ready_r, ready_w) = pipe2(nix::fcntl::OFlag::O_CLOEXEC).or_fail(|| "pipe".into());
    let server = match sys::fork_single_threaded().or_fail(|| "starting the server".into()) {
        ForkResult::Child => {
            drop((go_w, ready_r, status));
            server(plan, session, supervisor, ready_w, go_r)
        }
        ForkResult::Parent { child } => child,
    };
    drop((go_r, ready_w));
    close_stdio();
    // The server has entered its user namespace: map its ids, then let it go on.
    let mut byte = [0u8; 1];
    if fs::File::from(ready_r).read_exact(&mut byte).is_ok() {
        map_ids(server, session).or_fail(|| "writing the server's uid/gid maps".into());
        let _ = fs::File::from(go_w).write_all(b"g");
    } else {
        drop(go_w);
    }
    init_loop(server, status)
}

fn map_ids(server: Pid, session: &SessionPlan) -> std::io::Result<()> {
    let proc = PathBuf::from(format!("/proc/{server}"));
    fs::write(
        proc.join("uid_map"),
        format!("{INNER_ID} {} 1\n", session.uid),
    )?;
    fs::write(proc.join("setgroups"), "deny")?;
    fs::write(
        proc.join("gid_map"),
        format!("{INNER_ID} {} 1\n", session.gid),
    )?;
    Ok(())
}

fn init_loop(server: Pid, status: OwnedFd) -> ! {
    let signals = handled_signals();
    loop {
        let Ok(sig) = signals.wait() else { continue };
        if sig != Signal::SIGCHLD {
            // To the server's process group (it leads one), else to the server.
            if kill(Pid::from_raw(-server.as_raw()), sig).is_err() {
                let _ = kill(server, sig);
            }
            continue;
        }
        loop {
            match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid == server => report(status, code),
                Ok(WaitStatus::Signaled(pid, sig, _)) if pid == server => {
                    report(status, -(sig as i32))
                }
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => continue,
            }
        }
    }
}

/// Tells the supervisor how the server ended, then exits: the kernel kills whatever is
/// left in the pid namespace.
fn report(status: OwnedFd, code: i32) -> ! {
    let _ = fs::File::from(status).write_all(&code.to_le_bytes());
    std::process::exit(0)
}

/// The server process, up to `execve`.
fn server(plan: &Plan, session: &SessionPlan, supervisor: Pid, ready: OwnedFd, go: OwnedFd) -> ! {
    let _ = nix::unistd::setsid();
    let _ = fs::write("/proc/self/oom_score_adj", "0");
    nix::unistd::setgroups(&[]).or_fail(|| "clearing supplementary groups".into());
    unshare(CloneFlags::CLONE_NEWUSER).or_fail(|| "creating the user namespace".into());
    let _ = fs::File::from(ready).write_all(b"r");
    let mut byte = [0u8; 1];
    fs::File::from(go)
        .read_exact(&mut byte)
        .or_fail(|| "waiting for the uid/gid maps".into());
    // No nested namespaces, even if a later layer is missing (best effort: the sysctls
    // are per user namespace and writable by its owner, which we still are).
    for limit in ["user", "mnt", "pid", "net", "ipc", "uts", "cgroup", "time"] {
        let _ = fs::write(format!("/proc/sys/user/max_{limit}_namespaces"), "0");
    }
    nix::sys::prctl::set_no_new_privs().or_fail(|| "setting no_new_privs".into());
    sys::drop_bounding_and_ambient().or_fail(|| "dropping capabilities".into());
    let id = Gid::from_raw(INNER_ID);
    setresgid(id, id, id).or_fail(|| "setting the group id".into());
    let id = Uid::from_raw(INNER_ID);
    setresuid(id, id, id).or_fail(|| "setting the user id".into());
    sys::clear_capabilities().or_fail(|| "dropping capabilities".into());
    chdir(SESSION_DIR).or_fail(|| format!("entering {SESSION_DIR}"));
    if plan.landlock {
        landlock(&plan.writable).or_fail(|| "applying Landlock".into());
    }
    let program =
        CString::new(plan.program.as_os_str().as_bytes()).or_fail(|| "program path".into());
    let argv: Vec<CString> = plan
        .argv
        .iter()
        .map(|a| CString::new(a.as_bytes()).or_fail(|| "argument".into()))
        .collect();
    let mut env: Vec<CString> = session
        .env
        .iter()
        .map(|v| CString::new(v.as_bytes()).or_fail(|| "environment".into()))
        .collect();
    let pid_var = format!("{SANDBOX_PID_VAR}=");
    if !session.env.iter().any(|v| v.starts_with(&pid_var)) {
        env.push(CString::new(format!("{pid_var}{supervisor}")).or_fail(|| "environment".into()));
    }
    // Lodge's own open-file limit is raised for its many sessions; the server gets its own.
    for (resource, value) in session.rlimits.clamped() {
        setrlimit(resource, value, value).or_fail(|| format!("setting {resource:?}"));
    }
    if session.rlimits.file_size.is_some() {
        sys::ignore_disposition(Signal::SIGXFSZ).or_fail(|| "ignoring SIGXFSZ".into());
    }
    let _ = sys::default_disposition(Signal::SIGPIPE);
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
    seccomp::install(&plan.seccomp).or_fail(|| "installing the seccomp filter".into());
    let err = match nix::unistd::execve(&program, &argv, &env) {
        Err(e) => e,
        Ok(never) => match never {},
    };
    let code = if err == nix::errno::Errno::ENOENT {
        127
    } else {
        126
    };
    fail_with(
        code,
        format!(
            "cannot start `{}` ({}): {}",
            plan.argv.first().map_or("", String::as_str),
            plan.program.display(),
            std::io::Error::from(err)
        ),
    )
}

/// Writes only under `/session`, `/tmp`, `/dev/shm` and read-write binds (and to the `/dev`
/// nodes); reads and executes anywhere the mount namespace shows. Best effort: on kernels with an older
/// Landlock ABI the newer rights are simply not restricted, without Landlock nothing is.
fn landlock(writable: &[PathBuf]) -> Result<(), landlock::RulesetError> {
    use landlock::{
        ABI, Access, AccessFs, Ruleset, RulesetAttr, RulesetCreatedAttr, Scope, path_beneath_rules,
    };
    let abi = ABI::V3;
    let all = AccessFs::from_all(abi);
    let read = AccessFs::from_read(abi);
    let dev = AccessFs::ReadFile | AccessFs::WriteFile | AccessFs::Truncate;
    Ruleset::default()
        .handle_access(all)?
        .scope(Scope::AbstractUnixSocket)?
        .create()?
        .add_rules(path_beneath_rules(["/"], read))?
        .add_rules(path_beneath_rules([SESSION_DIR, "/tmp", "/dev/shm"], all))?
        .add_rules(path_beneath_rules(writable, all))?
        .add_rules(path_beneath_rules(["/dev"], dev))?
        .restrict_self()?;
    Ok(())
}
