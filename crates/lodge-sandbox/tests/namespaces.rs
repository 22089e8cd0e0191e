//! The `namespaces` backend against real processes and the real kernel: every isolation
//! property, the limits, out-of-memory reporting and `connect_tcp`. Every wait has a
//! deadline; no bare sleeps.
//!
//! These tests need what the backend needs (root, namespaces; see `lodge doctor`). On a
//! host without it they are skipped with a message, except under `CI=true`, where the
//! backend must work.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::future::Future;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use lodge_sandbox::{
    Backend, BindMount, HOST_ID_BASE, HOST_ID_COUNT, HelperCommand, Host, Limits, LimitsError,
    NamespacesBackend, NamespacesOptions, Network, Sandbox, SandboxError, SandboxId, SandboxSpec,
};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

const DEADLINE: Duration = Duration::from_secs(60);

fn host() -> Option<Arc<Host>> {
    static HOST: OnceLock<Arc<Host>> = OnceLock::new();
    let host = HOST.get_or_init(|| {
        let helper = HelperCommand::new(
            env!("CARGO_BIN_EXE_lodge-sandbox-helper"),
            Vec::<String>::new(),
        );
        Arc::new(Host::probe(helper))
    });
    match host.namespaces_supported() {
        Ok(()) => Some(host.clone()),
        Err(why) if std::env::var_os("CI").is_none() => {
            eprintln!("skipping: the namespaces backend cannot run here: {why}");
            None
        }
        Err(why) => panic!(
            "the namespaces backend must work in CI: {why}\n{}",
            host.report()
        ),
    }
}

fn backend(options: NamespacesOptions) -> Option<NamespacesBackend> {
    Some(NamespacesBackend::new(host()?, options).unwrap())
}

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

fn sh(script: &str) -> [&str; 3] {
    ["sh", "-c", script]
}

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Runs `command` to completion: (stdout, exit report, stderr tail).
async fn run(
    backend: &NamespacesBackend,
    s: &SandboxSpec,
) -> (String, lodge_sandbox::ExitReport, Vec<String>) {
    let Sandbox { io, mut process } = backend.spawn(s).unwrap();
    drop(io.stdin);
    let mut out = String::new();
    let mut stdout = io.stdout;
    within("stdout EOF", stdout.read_to_string(&mut out))
        .await
        .unwrap();
    let report = within("exit", process.exited()).await;
    let tail = process.stderr_tail();
    within("terminate", process.terminate(Duration::from_secs(5))).await;
    (out, report, tail)
}

async fn run_sh(script: &str) -> Option<(String, lodge_sandbox::ExitReport)> {
    let b = backend(NamespacesOptions::default())?;
    let tmp = tempfile::tempdir().unwrap();
    let (out, report, tail) = run(&b, &spec(tmp.path(), &sh(script))).await;
    assert!(
        report.success(),
        "{report}; stdout:\n{out}\nstderr: {tail:?}"
    );
    Some((out, report))
}

/// `python3 -c CODE` in a sandbox; returns stdout (the script must exit 0).
async fn python(code: &str, limits: Limits) -> Option<(String, lodge_sandbox::ExitReport)> {
    let b = backend(NamespacesOptions::default())?;
    let tmp = tempfile::tempdir().unwrap();
    let mut s = spec(tmp.path(), &["python3", "-c", code]);
    s.limits = limits;
    let (out, report, tail) = run(&b, &s).await;
    assert!(
        report.success() || report.oom,
        "{report}; stdout:\n{out}\nstderr: {tail:?}"
    );
    Some((out, report))
}

fn lines(out: &str) -> BTreeMap<String, String> {
    out.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// The server's host pid: the supervisor's grandchild.
fn server_host_pid(supervisor: u32) -> Option<u32> {
    let children = |pid: u32| -> Vec<u32> {
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    };
    let init = *children(supervisor).first()?;
    children(init).first().copied()
}

/// Exists and is not a zombie (nobody may reap orphans promptly here).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|s| {
        !s.lines()
            .any(|l| l.starts_with("State:") && (l.contains('Z') || l.contains('X')))
    })
}

fn status_field(pid: u32, field: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!("{field}:"))
                .map(|v| v.trim().to_owned())
        })
        .unwrap()
}

const PY_ERRNO: &str = r#"
import ctypes, errno, os, socket, sys
libc = ctypes.CDLL(None, use_errno=True)
def sys_errno(nr, *args):
    r = libc.syscall(nr, *[ctypes.c_long(a) for a in args])
    return "ok" if r >= 0 else errno.errorcode[ctypes.get_errno()]
"#;

#[test]
fn probe_reports_every_feature() {
    let Some(host) = host() else { return };
    let report = host.report().to_string();
    for feature in [
        "user namespaces",
        "pid namespaces",
        "mount namespaces",
        "network namespaces",
        "ipc namespaces",
        "uts namespaces",
        "cgroup namespaces",
        "no_new_privs",
        "seccomp filters",
        "landlock",
        "memory",
        "cpu",
        "pids",
        "trial sandbox: ran `true`",
        "lodge serve will use: namespaces",
    ] {
        assert!(
            report.contains(feature),
            "{feature} missing from:\n{report}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_is_an_unprivileged_user_without_capabilities() {
    let Some(b) = backend(NamespacesOptions::default()) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let script = "id -u; id -g; grep -E '^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs|Seccomp):' /proc/self/status; cat /proc/self/uid_map; echo ready; read x";
    let Sandbox { io, process } = b.spawn(&spec(tmp.path(), &sh(script))).unwrap();
    let mut stdout = BufReader::new(io.stdout);
    let mut out = String::new();
    loop {
        let mut line = String::new();
        within("a line", stdout.read_line(&mut line)).await.unwrap();
        assert!(!line.is_empty(), "EOF before ready: {out}");
        if line == "ready\n" {
            break;
        }
        out.push_str(&line);
    }
    let mut l = out.lines();
    assert_eq!(l.next(), Some("1000"), "uid inside: {out}");
    assert_eq!(l.next(), Some("1000"), "gid inside: {out}");
    for cap in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert!(
            out.contains(&format!("{cap}:\t0000000000000000")),
            "{cap}: {out}"
        );
    }
    assert!(out.contains("NoNewPrivs:\t1"), "{out}");
    assert!(out.contains("Seccomp:\t2"), "seccomp filter mode: {out}");
    let map: Vec<u32> = out
        .lines()
        .last()
        .unwrap()
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    assert_eq!(map[0], 1000);
    assert!(
        (HOST_ID_BASE..HOST_ID_BASE + HOST_ID_COUNT).contains(&map[1]) && map[2] == 1,
        "one unprivileged host uid: {map:?}"
    );
    // From the host: the server runs as that uid, not as root.
    let server = server_host_pid(process.pid().unwrap()).unwrap();
    let uids = status_field(server, "Uid");
    assert!(
        uids.split_whitespace().all(|u| u == map[1].to_string()),
        "host view: {uids}"
    );
    let scratch = process.scratch_dir().to_path_buf();
    let owner = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&scratch).unwrap());
    assert_eq!(
        owner, map[1],
        "the scratch dir belongs to the server's host uid"
    );
    drop(io.stdin);
    within("terminate", process.terminate(DEADLINE)).await;
    assert!(!scratch.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_root_is_minimal_and_read_only() {
    let script = r#"
for p in /root /home /var /etc/shadow /etc/gshadow /boot /mnt /opt /srv /sys /run; do
  if [ -e "$p" ]; then echo "visible $p"; fi
done
echo "top=$(cd / && echo *)"
echo "etc=$(cd /etc && echo *)"
grep -c . /etc/passwd
grep '^lodge:' /etc/passwd
for p in /usr/x /etc/x /x /bin/x; do
  if (echo > "$p") 2>/dev/null; then echo "wrote $p"; fi
done
echo data > /session/f && echo "session=$(cat /session/f)"
echo data > /tmp/f && echo "tmp=$(cat /tmp/f)"
echo "cwd=$(pwd)"
echo "mounts=$(grep -c . /proc/self/mounts)"
"#;
    let Some((out, _)) = run_sh(script).await else {
        return;
    };
    assert!(!out.contains("visible"), "{out}");
    assert!(!out.contains("wrote"), "{out}");
    let v = lines(&out);
    let top: Vec<&str> = v["top"].split(' ').collect();
    for want in ["usr", "bin", "etc", "proc", "dev", "tmp", "session"] {
        assert!(top.contains(&want), "{want} in {top:?}");
    }
    for never in ["root", "home", "var", "boot"] {
        assert!(!top.contains(&never), "{never} in {top:?}");
    }
    assert!(!v["etc"].contains("shadow"), "{}", v["etc"]);
    assert!(v["etc"].contains("passwd") && v["etc"].contains("ld.so.cache"));
    assert!(out.contains("lodge:x:1000:1000:"), "{out}");
    assert_eq!(v["session"], "data");
    assert_eq!(v["tmp"], "data");
    assert_eq!(v["cwd"], "/session");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_are_confined_and_reported_precisely() {
    let code = format!(
        "{PY_ERRNO}\n{}",
        r#"
def write(path):
    try:
        with open(path, "w") as f:
            f.write("x")
        return "ok"
    except OSError as e:
        return errno.errorcode[e.errno]
print("usr=" + write("/usr/lodge-test"))
print("etc=" + write("/etc/passwd"))
print("root=" + write("/new-file"))
# procfs is mounted read-write, but Landlock allows writes only under /session, /tmp, /dev/shm
print("proc=" + write("/proc/self/comm"))
print("session=" + write("/session/ok"))
print("tmp=" + write("/tmp/ok"))
print("shm=" + write("/dev/shm/ok"))
print("null=" + write("/dev/null"))
"#
    );
    let Some((out, _)) = python(&code, Limits::default()).await else {
        return;
    };
    let v = lines(&out);
    assert_eq!(v["usr"], "EROFS");
    assert_eq!(v["etc"], "EROFS");
    assert_eq!(v["root"], "EROFS");
    assert_eq!(v["proc"], "EACCES", "Landlock: {out}");
    assert_eq!(v["session"], "ok");
    assert_eq!(v["tmp"], "ok");
    assert_eq!(v["shm"], "ok");
    assert_eq!(v["null"], "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_network_and_host_name_are_private() {
    let Some(b) = backend(NamespacesOptions::default()) else {
        return;
    };
    // A host listener on loopback that the sandbox must not reach.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let code = format!(
        "{PY_ERRNO}\n{}",
        r#"
import signal
print("pids=" + ",".join(sorted(p for p in os.listdir("/proc") if p.isdigit())))
print("me=%d" % os.getpid())
print("init=" + open("/proc/1/cmdline", "rb").read().split(b"\0")[0].decode(errors="replace").rsplit("/", 1)[-1])
try:
    os.kill(1, signal.SIGKILL); print("kill1=ok")
except OSError as e:
    print("kill1=" + errno.errorcode[e.errno])
print("ifaces=" + ",".join(l.split(":")[0].strip() for l in open("/proc/net/dev").readlines()[2:]))
s = socket.socket()
try:
    s.connect(("127.0.0.1", PORT)); print("hostport=ok")
except OSError as e:
    print("hostport=" + errno.errorcode[e.errno])
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:
    u.connect(("192.0.2.1", 53)); print("route=ok")  # UDP connect sends nothing
except OSError as e:
    print("route=" + errno.errorcode[e.errno])
try:
    socket.getaddrinfo("example.com", 443); print("dns=ok")
except socket.gaierror as e:
    print("dns=failed")
print("hostname=" + socket.gethostname())
"#
        .replace("PORT", &port.to_string())
    );
    let tmp = tempfile::tempdir().unwrap();
    let (out, report, tail) = run(&b, &spec(tmp.path(), &["python3", "-c", &code])).await;
    assert!(report.success(), "{report} {tail:?}\n{out}");
    let v = lines(&out);
    assert_eq!(v["pids"], "1,2", "only init and the server: {out}");
    assert_eq!(v["me"], "2");
    assert_eq!(v["kill1"], "EPERM", "the init is not the server's to kill");
    assert_eq!(v["ifaces"], "lo", "{out}");
    assert_eq!(
        v["hostport"], "ECONNREFUSED",
        "the host's loopback is not reachable"
    );
    assert_eq!(v["route"], "ENETUNREACH");
    assert_eq!(v["dns"], "failed");
    assert_eq!(v["hostname"], "lodge");
    assert!(
        listener.accept().is_err(),
        "nothing connected to the host listener"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_host_shares_the_host_network() {
    let options = NamespacesOptions {
        network: Network::Host,
        ..Default::default()
    };
    let Some(b) = backend(options) else { return };
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let code = format!(
        "import socket; s = socket.create_connection(('127.0.0.1', {port})); s.sendall(b'hi'); print('sent')"
    );
    let tmp = tempfile::tempdir().unwrap();
    let (out, report, tail) = run(&b, &spec(tmp.path(), &["python3", "-c", &code])).await;
    assert!(report.success(), "{report} {tail:?}");
    assert_eq!(out.trim(), "sent");
    let (mut conn, _) = listener.accept().unwrap();
    let mut buf = [0u8; 2];
    conn.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"hi");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seccomp_filter_denies_escape_syscalls() {
    let code = format!(
        "{PY_ERRNO}\n{}",
        r#"
NR = dict(mount=165, umount2=166, pivot_root=155, unshare=272, setns=308, ptrace=101,
          init_module=175, finit_module=313, delete_module=176, kexec_load=246, bpf=321,
          keyctl=250, add_key=248, perf_event_open=298, userfaultfd=323, reboot=169,
          swapon=167, syslog=103, open_by_handle_at=304, clone3=435, io_uring_setup=425)
for name, nr in NR.items():
    print(name + "=" + sys_errno(nr, 0, 0, 0, 0, 0))
# clone with a namespace flag (CLONE_NEWUSER | SIGCHLD)
print("clone_newuser=" + sys_errno(56, 0x10000000 | 17, 0, 0, 0, 0))
print("setuid0=" + sys_errno(105, 0))
# x32 ABI numbers never reach the kernel's x32 table
print("x32=" + sys_errno(0x40000000 | 39))
print("getpid=" + sys_errno(39))
"#
    );
    if std::env::consts::ARCH != "x86_64" {
        eprintln!("skipping: syscall numbers are for x86_64");
        return;
    }
    let Some((out, _)) = python(&code, Limits::default()).await else {
        return;
    };
    let v = lines(&out);
    // uid 0 is not even mapped in the server's user namespace.
    assert_eq!(v["setuid0"], "EINVAL", "{out}");
    for name in [
        "mount",
        "umount2",
        "pivot_root",
        "unshare",
        "setns",
        "ptrace",
        "init_module",
        "finit_module",
        "delete_module",
        "kexec_load",
        "bpf",
        "keyctl",
        "add_key",
        "perf_event_open",
        "userfaultfd",
        "reboot",
        "swapon",
        "syslog",
        "open_by_handle_at",
        "clone_newuser",
    ] {
        assert_eq!(v[name], "EPERM", "{name}: {out}");
    }
    for name in ["clone3", "io_uring_setup", "x32"] {
        assert_eq!(v[name], "ENOSYS", "{name}: {out}");
    }
    assert_eq!(v["getpid"], "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environment_is_the_sandbox_s_own() {
    let Some(b) = backend(NamespacesOptions::default()) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let mut s = spec(tmp.path(), &["env"]);
    s.env.insert("GREETING".into(), "hi".into());
    s.env.insert("LANG".into(), "en_US.UTF-8".into());
    let (out, report, _) = run(&b, &s).await;
    assert!(report.success());
    let v = lines(&out);
    let names: Vec<&str> = v.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "GREETING",
            "HOME",
            "LANG",
            "LODGE_SANDBOX_PID",
            "LOGNAME",
            "PATH",
            "TMPDIR",
            "USER"
        ],
        "{out}"
    );
    assert_eq!(v["HOME"], "/session");
    assert_eq!(v["TMPDIR"], "/tmp");
    assert_eq!(v["LANG"], "en_US.UTF-8", "configured vars win");
    assert!(v["PATH"].contains("/usr/bin"), "{}", v["PATH"]);
    assert!(
        !v["PATH"].contains("/root"),
        "PATH lists only what exists inside: {}",
        v["PATH"]
    );
    assert!(v["LODGE_SANDBOX_PID"].parse::<u32>().unwrap() > 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_cannot_see_each_other() {
    let Some(b) = backend(NamespacesOptions::default()) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let a = b
        .spawn(&spec(
            tmp.path(),
            &sh("echo secret > /session/secret; echo ready; read x"),
        ))
        .unwrap();
    let mut a_out = BufReader::new(a.io.stdout);
    let mut line = String::new();
    within("a ready", a_out.read_line(&mut line)).await.unwrap();
    assert_eq!(line, "ready\n");
    let a_scratch = a.process.scratch_dir().to_path_buf();
    assert!(a_scratch.join("secret").exists());
    let script = format!(
        "ls {a} 2>&1; cat {a}/secret 2>&1; ls /session; echo procs=$(cd /proc && echo [0-9]*)",
        a = a_scratch.display()
    );
    let (out, report, _) = run(&b, &spec(tmp.path(), &sh(&script))).await;
    assert!(report.success(), "{report}");
    assert_eq!(
        out.matches("No such file or directory").count(),
        2,
        "A's scratch dir does not exist for B: {out}"
    );
    assert!(
        !out.lines().any(|l| l == "secret"),
        "B sees nothing of A: {out}"
    );
    assert!(
        out.contains("procs=1 2 "),
        "B sees only its own processes: {out}"
    );
    drop(a.io.stdin);
    within("terminate a", a.process.terminate(DEADLINE)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_signals_and_stderr_come_through() {
    let Some(b) = backend(NamespacesOptions::default()) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let script = r#"i=1; while [ $i -le 12 ]; do echo "line $i" >&2; i=$((i+1)); done; exit 3"#;
    let (_, report, tail) = run(&b, &spec(tmp.path(), &sh(script))).await;
    assert_eq!(report, lodge_sandbox::ExitReport::exited(3));
    assert_eq!(report.to_string(), "exited with status 3");
    assert_eq!(tail.last().map(String::as_str), Some("line 12"));
    let (_, report, _) = run(&b, &spec(tmp.path(), &sh("kill -9 $$"))).await;
    assert_eq!(report, lodge_sandbox::ExitReport::killed(9));
    assert_eq!(report.to_string(), "was killed by signal 9 (SIGKILL)");
}

/// The sandbox's pid 1 says nothing about the host: its command line is `init` (not the
/// helper's host path and `run`), its name `init`; the server's mount table shows no
/// host path for `/session`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_init_shows_nothing_of_the_host() {
    let Some(b) = backend(NamespacesOptions::default()) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let s = spec(
        tmp.path(),
        &sh("tr '\\0' '|' < /proc/1/cmdline; echo; cat /proc/1/comm; cat /proc/self/mountinfo"),
    );
    let (out, report, tail) = run(&b, &s).await;
    assert!(report.success(), "{report} {tail:?}");
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("init|"), "{out}");
    assert_eq!(lines.next(), Some("init"), "{out}");
    let helper = env!("CARGO_BIN_EXE_lodge-sandbox-helper");
    assert!(!out.contains(helper), "{out}");
    assert!(!out.contains("sandbox-helper"), "{out}");
    // `/session` is a tmpfs of its own: its mount names no host path at all.
    let session = out
        .lines()
        .find(|l| l.split_whitespace().nth(4) == Some("/session"))
        .unwrap_or_else(|| panic!("no /session mount: {out}"));
    assert_eq!(session.split_whitespace().nth(3), Some("/"), "{session}");
    assert!(session.contains(" - tmpfs "), "{session}");
    let scratch = tmp.path().display().to_string();
    assert!(
        !out.contains(&scratch),
        "the host scratch path shows: {out}"
    );
}

/// The limits in the server's `/proc/self/limits`, by name: (soft, hard).
fn proc_limits(out: &str) -> BTreeMap<String, (String, String)> {
    out.lines()
        .skip(1)
        .filter_map(|l| {
            let name = l.get(..26)?.trim().to_owned();
            let mut rest = l.get(26..)?.split_whitespace();
            Some((name, (rest.next()?.to_owned(), rest.next()?.to_owned())))
        })
        .collect()
}

/// Servers never inherit Lodge's raised open-file limit: they get `open_files` (default
/// 1024, soft = hard), no core dumps, and `file_size` if set (past it a write fails with
/// EFBIG instead of killing the server).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_get_their_own_rlimits() {
    let Some(b) = backend(NamespacesOptions::default()) else {
        return;
    };
    // As Lodge does at startup: raise this process's soft limit to its hard limit.
    let (_, hard) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, hard, hard).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (out, report, tail) = run(&b, &spec(tmp.path(), &["cat", "/proc/self/limits"])).await;
    assert!(report.success(), "{report} {tail:?}");
    let limits = proc_limits(&out);
    let expected = lodge_sandbox::DEFAULT_OPEN_FILES.min(hard).to_string();
    assert_eq!(
        limits["Max open files"],
        (expected.clone(), expected),
        "{out}"
    );
    assert_eq!(limits["Max core file size"], ("0".into(), "0".into()));
    assert_eq!(limits["Max file size"].0, "unlimited");

    let mut s = spec(
        tmp.path(),
        &sh("grep -E 'open files|file size' /proc/self/limits; \
             head -c 5000 /dev/zero > big; echo status=$?; wc -c < big"),
    );
    s.limits = Limits {
        open_files: Some(64),
        file_size: Some(4096),
        ..Limits::default()
    };
    let (out, report, tail) = run(&b, &s).await;
    assert!(report.success(), "{report} {tail:?}");
    let limits = proc_limits(&format!("header\n{out}"));
    assert_eq!(
        limits["Max open files"],
        ("64".into(), "64".into()),
        "{out}"
    );
    assert_eq!(
        limits["Max file size"],
        ("4096".into(), "4096".into()),
        "{out}"
    );
    assert!(
        out.contains("status=1"),
        "the write past 4096 bytes failed: {out}"
    );
    assert!(out.trim_end().ends_with("4096"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdin_stdout_round_trip() {
    let Some(b) = backend(NamespacesOptions::default()) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let Sandbox { io, mut process } = b.spawn(&spec(tmp.path(), &["cat"])).unwrap();
    let (mut stdin, mut stdout) = (io.stdin, BufReader::new(io.stdout));
    for msg in ["hello", "{\"jsonrpc\":\"2.0\",\"id\":1}"] {
        stdin
            .write_all(format!("{msg}\n").as_bytes())
            .await
            .unwrap();
        stdin.flush().await.unwrap();
        let mut line = String::new();
        within("echo", stdout.read_line(&mut line)).await.unwrap();
        assert_eq!(line.trim_end(), msg);
    }
    drop(stdin);
    assert!(within("exit", process.exited()).await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminate_forwards_sigterm_once_then_kills_everything() {
    let Some(b) = backend(NamespacesOptions::default()) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    // SIGTERM reaches the server exactly once (through the init), then it exits 0.
    let script = r#"n=0; trap 'n=$((n+1)); echo "term $n"; sleep 0.3; exit 0' TERM; echo ready; while :; do sleep 0.05; done"#;
    let Sandbox { io, process } = b.spawn(&spec(tmp.path(), &sh(script))).unwrap();
    let mut stdout = BufReader::new(io.stdout);
    let mut line = String::new();
    within("ready", stdout.read_line(&mut line)).await.unwrap();
    let report = within("terminate", process.terminate(DEADLINE)).await;
    assert_eq!(report, lodge_sandbox::ExitReport::exited(0), "{report}");
    let mut rest = String::new();
    within("EOF", stdout.read_to_string(&mut rest))
        .await
        .unwrap();
    assert_eq!(rest, "term 1\n");

    // A server that ignores SIGTERM, with a grandchild in its own session: SIGKILL after
    // the grace takes the whole sandbox down.
    let script = r#"trap '' TERM; setsid sh -c 'trap "" TERM; sleep 1000' & echo ready; while :; do sleep 1; done"#;
    let Sandbox { io, process } = b.spawn(&spec(tmp.path(), &sh(script))).unwrap();
    let supervisor = process.pid().unwrap();
    let mut stdout = BufReader::new(io.stdout);
    let mut line = String::new();
    within("ready", stdout.read_line(&mut line)).await.unwrap();
    let init =
        std::fs::read_to_string(format!("/proc/{supervisor}/task/{supervisor}/children")).unwrap();
    let init: u32 = init.split_whitespace().next().unwrap().parse().unwrap();
    let started = Instant::now();
    let report = within("terminate", process.terminate(Duration::from_millis(300))).await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(report.signal, Some(9), "{report}");
    assert!(!alive(init), "the init is gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_kills_the_sandbox_and_removes_scratch() {
    let Some(b) = backend(NamespacesOptions::default()) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let mut s = spec(tmp.path(), &sh("echo ready; sleep 1000"));
    s.limits.pids = Some(16);
    let Sandbox { io, process } = b.spawn(&s).unwrap();
    let supervisor = process.pid().unwrap();
    let mut stdout = BufReader::new(io.stdout);
    let mut line = String::new();
    within("ready", stdout.read_line(&mut line)).await.unwrap();
    let server = server_host_pid(supervisor).unwrap();
    let scratch = process.scratch_dir().to_path_buf();
    drop(process);
    assert!(!scratch.exists());
    within("the server to die", async {
        while alive(server) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pids_limit_stops_a_fork_bomb() {
    let code = r#"
import errno, os, time
n = 0
err = "none"
kids = []
while n < 10000:
    try:
        pid = os.fork()
    except OSError as e:
        err = errno.errorcode[e.errno]
        break
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    kids.append(pid)
    n += 1
print("forked=%d" % n)
print("error=" + err)
"#;
    let limits = Limits {
        pids: Some(20),
        ..Limits::default()
    };
    let Some((out, _)) = python(code, limits).await else {
        return;
    };
    let v = lines(&out);
    assert_eq!(v["error"], "EAGAIN", "{out}");
    let forked: u32 = v["forked"].parse().unwrap();
    assert!(forked < 20, "held by pids = 20: {out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_memory_is_reported() {
    let code = "a = []\nwhile True:\n    a.append(bytearray(4 << 20))\n";
    let limits = Limits {
        memory: Some(64 << 20),
        ..Limits::default()
    };
    let Some((_, report)) = python(code, limits).await else {
        return;
    };
    assert!(report.oom, "{report:?}");
    assert_eq!(report.signal, Some(9));
    assert_eq!(
        report.to_string(),
        "was killed: out of memory (limit 64MiB)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_quota_holds_a_busy_loop() {
    let code = r#"
import os, time
start, cpu0 = time.monotonic(), time.process_time()
while time.monotonic() - start < 2.0:
    pass
print("ratio=%.3f" % ((time.process_time() - cpu0) / (time.monotonic() - start)))
"#;
    let limits = Limits {
        cpus: Some(0.25),
        ..Limits::default()
    };
    let Some((out, _)) = python(code, limits).await else {
        return;
    };
    let ratio: f64 = lines(&out)["ratio"].parse().unwrap();
    // A busy loop uses a whole CPU unless held; the box may be loaded, so only an upper
    // bound is meaningful (CFS grants at most one period of slack).
    assert!(ratio < 0.40, "cpus = 0.25 held the loop to {ratio}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_tcp_reaches_a_server_inside_and_ports_never_clash() {
    let Some(b) = backend(NamespacesOptions::default()) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let mut sandboxes = Vec::new();
    for id in ["http-a", "http-b"] {
        let script = format!(
            "echo {id} > /session/index.html; exec python3 -m http.server 8000 --bind 0.0.0.0"
        );
        let spec = SandboxSpec {
            reached_over_tcp: true,
            ..spec(tmp.path(), &sh(&script))
        };
        sandboxes.push(b.spawn(&spec).unwrap());
    }
    for (sandbox, id) in sandboxes.iter().zip(["http-a", "http-b"]) {
        // The server takes a moment to listen: retry refused connections.
        let mut stream = within("a connection", async {
            loop {
                match sandbox.process.connect_tcp(8000).await {
                    Ok(s) => break s,
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                        tokio::time::sleep(Duration::from_millis(20)).await
                    }
                    Err(e) => panic!("connect_tcp: {e}"),
                }
            }
        })
        .await;
        stream
            .write_all(b"GET /index.html HTTP/1.0\r\n\r\n")
            .await
            .unwrap();
        let mut resp = String::new();
        within("the response", stream.read_to_string(&mut resp))
            .await
            .unwrap();
        assert!(resp.starts_with("HTTP/1.0 200"), "{resp}");
        assert!(
            resp.ends_with(&format!("{id}\n")),
            "each sandbox has its own port 8000: {resp}"
        );
    }
    // Nothing listens on the host's port 8000 because of them.
    let connector = sandboxes[0].process.tcp_connector();
    for sandbox in sandboxes {
        within("terminate", sandbox.process.terminate(DEADLINE)).await;
    }
    let err = connector.connect(8000).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::NotConnected, "{err}");
}

/// A stop asked for while the helper is still building the sandbox (the init not forked
/// yet) is honoured at once, not after the grace period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_setup_stops_the_sandbox_without_waiting_out_the_grace() {
    let Some(b) = backend(NamespacesOptions::default()) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let grace = Duration::from_secs(20);
    // Setup takes a few milliseconds: stop at different points of it.
    for i in 0..40u64 {
        let sandbox = b.spawn(&spec(tmp.path(), &["cat"])).unwrap();
        std::thread::sleep(Duration::from_micros(150 * i));
        let start = Instant::now();
        within("terminate", sandbox.process.terminate(grace)).await;
        assert!(
            start.elapsed() < grace / 2,
            "stopped {} µs after spawn: SIGTERM was not honoured (took {:?})",
            150 * i,
            start.elapsed()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stdio_sandbox_is_never_reached_over_the_hosts_loopback() {
    let Some(b) = backend(NamespacesOptions::default()) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    // Something on the host's loopback that a wrong connect would reach.
    let host = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = host.local_addr().unwrap().port();
    let sandbox = b.spawn(&spec(tmp.path(), &["cat"])).unwrap();
    let err = sandbox.process.connect_tcp(port).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::Unsupported, "{err}");
    within("terminate", sandbox.process.terminate(DEADLINE)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extra_binds_and_hidden_paths() {
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("in.txt"), "input").unwrap();
    std::fs::write(data.path().join("lodge.toml"), "secret = 1").unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    // The server writes as its own unprivileged uid: the directory must let it.
    std::fs::set_permissions(
        out_dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let options = NamespacesOptions {
        binds: vec![
            format!("{}:/data", data.path().display()).parse().unwrap(),
            BindMount {
                src: out_dir.path().into(),
                dst: "/out".into(),
                writable: true,
            },
        ],
        hide: vec![data.path().join("lodge.toml")],
        ..Default::default()
    };
    let Some(b) = backend(options) else { return };
    let tmp = tempfile::tempdir().unwrap();
    let script = "cat /data/in.txt; echo; (echo x > /data/new) 2>&1 | grep -o 'Read-only' ; cat /data/lodge.toml 2>&1 | grep -o 'Permission denied'; echo result > /out/r; echo done";
    let (out, report, tail) = run(&b, &spec(tmp.path(), &sh(script))).await;
    assert!(report.success(), "{report} {tail:?}");
    assert_eq!(out, "input\nRead-only\nPermission denied\ndone\n");
    assert_eq!(
        std::fs::read_to_string(out_dir.path().join("r")).unwrap(),
        "result\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_s_directory_is_visible_but_not_its_home() {
    let Some(b) = backend(NamespacesOptions::default()) else {
        return;
    };
    let project = tempfile::tempdir().unwrap();
    let script = project.path().join("server.sh");
    std::fs::write(&script, "echo \"$(cat \"$(dirname \"$0\")/data.txt\")\"\n").unwrap();
    std::fs::write(project.path().join("data.txt"), "beside the script").unwrap();
    // Through `..`: the path is used as given.
    let weird = project.path().join("sub/../server.sh");
    std::fs::create_dir(project.path().join("sub")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (out, report, tail) = run(&b, &spec(tmp.path(), &["sh", weird.to_str().unwrap()])).await;
    assert!(report.success(), "{report} {tail:?}");
    assert_eq!(out, "beside the script\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rootfs_directory_replaces_the_host_system() {
    let Some(b0) = backend(NamespacesOptions::default()) else {
        return;
    };
    drop(b0);
    // A tiny "image": the host's sh and the libraries it loads.
    let rootfs = tempfile::tempdir().unwrap();
    let host_sh = std::fs::canonicalize("/bin/sh").unwrap();
    let ldd = std::process::Command::new("ldd")
        .arg(&host_sh)
        .output()
        .unwrap();
    let mut files = vec![host_sh.clone()];
    for l in String::from_utf8_lossy(&ldd.stdout).lines() {
        if let Some(p) = l.split_whitespace().find(|w| w.starts_with('/')) {
            files.push(PathBuf::from(p));
        }
    }
    for f in &files {
        let dst = rootfs.path().join(f.strip_prefix("/").unwrap());
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        std::fs::copy(f, &dst).unwrap();
    }
    let bin = rootfs.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    if !bin.join("sh").exists() {
        std::fs::copy(&host_sh, bin.join("sh")).unwrap();
    }
    std::fs::create_dir_all(rootfs.path().join("etc")).unwrap();
    std::fs::write(rootfs.path().join("etc/image"), "from the image").unwrap();
    let options = NamespacesOptions {
        rootfs: Some(rootfs.path().into()),
        ..Default::default()
    };
    let b = backend(options).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (out, report, tail) = run(
        &b,
        &spec(tmp.path(), &sh("read l < /etc/image; echo \"$l\"; echo /*")),
    )
    .await;
    assert!(report.success(), "{report} {tail:?}");
    let mut l = out.lines();
    assert_eq!(l.next(), Some("from the image"));
    let top = l.next().unwrap();
    assert!(top.contains("/session") && !top.contains("/root"), "{top}");
    assert!(!top.contains("/home"), "{top}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawn_errors_are_clear_and_leave_nothing_behind() {
    let Some(b) = backend(NamespacesOptions::default()) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let err = b
        .spawn(&spec(&root, &["lodge-no-such-command-4f2a"]))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "command `lodge-no-such-command-4f2a` not found on PATH"
    );
    let not_executable = tmp.path().join("not-executable");
    std::fs::write(&not_executable, "#!/bin/sh\n").unwrap();
    let err = b
        .spawn(&spec(&root, &[not_executable.to_str().unwrap()]))
        .unwrap_err();
    assert!(matches!(err, SandboxError::Spawn { .. }), "{err:?}");
    assert!(err.to_string().contains("os error 13"), "{err}");
    let empty = |root: &Path| std::fs::read_dir(root).map_or(true, |d| d.count() == 0);
    assert!(empty(&root), "no scratch dir left behind");
    // A limit the host cannot enforce is refused up front, not ignored.
    let err = b.spawn(&{
        let mut s = spec(&root, &["true"]);
        s.limits.cpus = Some(-1.0);
        s
    });
    assert!(
        matches!(
            &err,
            Err(e @ SandboxError::Limits {
                source: LimitsError::InvalidCpus(_)
            }) if !e.is_host_exhausted()
        ),
        "{err:?}"
    );
    assert!(empty(&root), "no scratch dir left behind");
}

/// Not a benchmark (the lead's `lodge-bench` makes the official numbers): a quick look at
/// what a sandbox adds to a spawn. Run with `--ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn spawn_cost() {
    let Some(b) = backend(NamespacesOptions::default()) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let measure = async |backend: &dyn Backend, label: &str, limits: Limits| {
        let mut times = Vec::new();
        for _ in 0..120 {
            let mut s = spec(tmp.path(), &["cat"]);
            s.limits = limits.clone();
            let started = Instant::now();
            let Sandbox { io, process } = backend.spawn(&s).unwrap();
            let (mut stdin, mut stdout) = (io.stdin, BufReader::new(io.stdout));
            stdin.write_all(b"x\n").await.unwrap();
            let mut line = String::new();
            stdout.read_line(&mut line).await.unwrap();
            times.push(started.elapsed());
            drop(stdin);
            process.terminate(Duration::from_secs(5)).await;
        }
        times.sort();
        let times = &times[20..]; // warm-up
        let p = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
        eprintln!("{label:<28} p50 {:>8.2?}  p99 {:>8.2?}", p(0.5), p(0.99));
    };
    measure(&lodge_sandbox::ProcessBackend, "process", Limits::default()).await;
    measure(&b, "namespaces", Limits::default()).await;
    let limits = Limits {
        memory: Some(256 << 20),
        cpus: Some(1.0),
        pids: Some(64),
        ..Limits::default()
    };
    measure(&b, "namespaces + 3 limits", limits).await;
}

#[test]
fn bind_syntax() {
    let b: BindMount = "/a".parse().unwrap();
    assert_eq!(
        (b.src.as_path(), b.dst.as_path(), b.writable),
        (Path::new("/a"), Path::new("/a"), false)
    );
    let b: BindMount = "/a:/b:rw".parse().unwrap();
    assert_eq!((b.dst.as_path(), b.writable), (Path::new("/b"), true));
    let b: BindMount = "/a:ro".parse().unwrap();
    assert_eq!((b.dst.as_path(), b.writable), (Path::new("/a"), false));
    assert!("a:/b".parse::<BindMount>().is_err());
    assert!("/a:/b:/c:rw".parse::<BindMount>().is_err());
    assert_eq!("none".parse::<Network>(), Ok(Network::None));
    assert!("bridge".parse::<Network>().is_err());
}

/// `storage = "principal"`: what one sandbox leaves in `/session` is there in the next
/// one with the same kept directory, writable by its (other) uid; a sandbox without it
/// starts empty; and what is kept is bounded by `/session`'s size.
#[tokio::test]
async fn kept_files_outlive_their_sandbox_and_stay_within_session_limits() {
    let Some(b) = backend(NamespacesOptions::default()) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let kept = tmp.path().join("kept/alice");
    let with_kept = |script: &str, kept: Option<&Path>| SandboxSpec {
        kept: kept.map(Path::to_path_buf),
        limits: Limits {
            disk: lodge_sandbox::Disk::Limited(1 << 20),
            ..Limits::default()
        },
        ..spec(tmp.path(), &sh(script))
    };
    let first = with_kept(
        "mkdir -p /session/notes && echo one > /session/notes/a && ln -s /etc/passwd /session/l",
        Some(&kept),
    );
    let (out, report, tail) = run(&b, &first).await;
    assert!(report.success(), "{report} {out} {tail:?}");
    assert_eq!(std::fs::read(kept.join("notes/a")).unwrap(), b"one\n");
    assert!(std::fs::symlink_metadata(kept.join("l")).is_err());

    let second = with_kept(
        "cat /session/notes/a && echo two >> /session/notes/a && ls /session",
        Some(&kept),
    );
    let (out, report, tail) = run(&b, &second).await;
    assert!(report.success(), "{report} {out} {tail:?}");
    assert_eq!(out, "one\nnotes\n");
    assert_eq!(std::fs::read(kept.join("notes/a")).unwrap(), b"one\ntwo\n");

    let other = with_kept("ls /session", None);
    let (out, report, _) = run(&b, &other).await;
    assert!(report.success(), "{report}");
    assert_eq!(out, "");

    // The tmpfs stops a write past 1 MiB; the files kept are what fit.
    let big = with_kept(
        "dd if=/dev/zero of=/session/big bs=64k count=64 2>/dev/null; echo done",
        Some(&kept),
    );
    let (out, _, _) = run(&b, &big).await;
    assert_eq!(out, "done\n");
    let size = std::fs::metadata(kept.join("big")).unwrap().len();
    assert!(size <= 1 << 20, "kept {size} bytes");
    // Kept files larger than a smaller `/session` do not start a sandbox at all.
    let small = SandboxSpec {
        limits: Limits {
            disk: lodge_sandbox::Disk::Limited(64 << 10),
            ..Limits::default()
        },
        ..with_kept("true", Some(&kept))
    };
    let err = b.spawn(&small).unwrap_err();
    assert!(matches!(err, SandboxError::Scratch { .. }), "{err}");
}
