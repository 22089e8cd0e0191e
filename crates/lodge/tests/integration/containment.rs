//! Containment: a hostile MCP server (tests/fixtures/hostile/server.py, Python SDK) tries
//! each escape through a real `lodge serve` on the `namespaces` backend, and each test
//! asserts how the attempt was blocked. The server runs from a directory that also holds
//! Lodge's config and scratch root, the worst case for what a bind could expose.
//!
//! Skipped (with a message) on hosts that cannot run the sandbox, except under CI=true.
#![allow(clippy::unwrap_used)]

use crate::common::{Lodge, Raw, dirs, new_scratch_dir, scratch_holding, start_namespaces_in};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::Duration;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/fixtures/hostile/server.py"
);

struct Hostile {
    lodge: Lodge,
    /// Holds the server script, `lodge.toml` and the scratch root.
    dir: PathBuf,
}

/// Lodge hosting the hostile server with `sandbox` (TOML lines for `[server.sandbox]`).
fn hostile(sandbox: &str) -> Option<Hostile> {
    let dir = tempfile::tempdir().unwrap();
    let server = dir.path().join("server.py");
    std::fs::copy(FIXTURE, &server).unwrap();
    std::fs::write(dir.path().join("secret.key"), "do not read").unwrap();
    let path = dir.path().to_path_buf();
    let config = format!(
        "[[server]]\nname = \"hostile\"\ncommand = [{:?}, {server:?}]\n[server.sandbox]\n{sandbox}\n",
        crate::common::python()
    );
    let lodge = start_namespaces_in(dir, &config)?;
    Some(Hostile { lodge, dir: path })
}

impl Hostile {
    async fn session(&self) -> Raw {
        let mut raw = Raw::new(self.lodge.url());
        raw.initialize().await;
        raw
    }

    /// Before an attempt: a session of the same server to run alongside, and Lodge's
    /// memory and CPU time.
    async fn watch(&self) -> Watch {
        let bystander = self.session().await;
        Watch {
            bystander,
            rss_kib: crate::common::rss_kib(self.lodge.pid()),
            cpu: lodge_cpu(self.lodge.pid()),
        }
    }

    /// After an attempt: the session alongside never noticed, and Lodge itself grew by
    /// less than 16 MiB and spent less than a CPU second on it (a server's floods and
    /// bombs cost their own cgroup, not Lodge).
    async fn assert_contained(&self, watch: Watch) {
        assert_eq!(
            result(&watch.bystander, 90, "whoami", json!({})).await,
            "ok"
        );
        let pid = self.lodge.pid();
        let grown = crate::common::rss_kib(pid).saturating_sub(watch.rss_kib);
        assert!(grown < 16 * 1024, "Lodge grew by {grown} KiB");
        let spent = lodge_cpu(pid).saturating_sub(watch.cpu);
        assert!(
            spent < Duration::from_secs(1),
            "Lodge spent {spent:?} of CPU during the attempt"
        );
    }
}

/// What [`Hostile::assert_contained`] compares against.
struct Watch {
    bystander: Raw,
    rss_kib: u64,
    cpu: Duration,
}

/// A process's user + system CPU time (`/proc/PID/stat`, in USER_HZ ticks: 100 on Linux).
fn lodge_cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    // After the command: state is field 3, utime 14 and stime 15 (1-based).
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

/// Calls `tool` and parses the JSON report it returns.
async fn attempt(raw: &Raw, id: u64, tool: &str, args: Value) -> Value {
    let text = raw.call_text(id, tool, args).await;
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{tool}: not JSON ({e}): {text}"))
}

async fn result(raw: &Raw, id: u64, tool: &str, args: Value) -> String {
    attempt(raw, id, tool, args).await["result"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn the_server_runs_unprivileged_and_hardened() {
    let Some(h) = hostile("") else { return };
    let watch = h.watch().await;
    let raw = h.session().await;
    let me = attempt(&raw, 1, "whoami", json!({})).await;
    assert_eq!(me["uid"], 1000, "{me}");
    assert_eq!(me["gid"], 1000);
    assert_eq!(me["cwd"], "/session");
    assert_eq!(me["hostname"], "lodge");
    let status = &me["status"];
    assert_eq!(status["CapEff"], "0000000000000000");
    assert_eq!(status["CapPrm"], "0000000000000000");
    assert_eq!(status["CapBnd"], "0000000000000000");
    assert_eq!(status["NoNewPrivs"], "1");
    assert_eq!(status["Seccomp"], "2");
    // uid 1000 inside is one unprivileged host uid outside, never root.
    let host_pid: u32 = me["sandbox_pid"].as_str().unwrap().parse().unwrap();
    let children =
        std::fs::read_to_string(format!("/proc/{host_pid}/task/{host_pid}/children")).unwrap();
    let init: u32 = children.split_whitespace().next().unwrap().parse().unwrap();
    let server = std::fs::read_to_string(format!("/proc/{init}/task/{init}/children")).unwrap();
    let server: u32 = server.split_whitespace().next().unwrap().parse().unwrap();
    let uid_line = std::fs::read_to_string(format!("/proc/{server}/status"))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .unwrap()
        .to_owned();
    assert!(
        !uid_line.split_whitespace().skip(1).any(|u| u == "0"),
        "{uid_line}"
    );
    h.assert_contained(watch).await;
}

#[tokio::test]
async fn writes_outside_session_and_tmp_are_refused() {
    let Some(h) = hostile("") else { return };
    let watch = h.watch().await;
    let raw = h.session().await;
    let dir = h.dir.display().to_string();
    let cases = [
        ("/usr/bin/evil", "EROFS"),
        ("/etc/passwd", "EROFS"),
        ("/evil", "EROFS"),
        // The script's directory is visible, read-only.
        (&format!("{dir}/evil"), "EROFS"),
        // procfs is writable as a mount; Landlock still refuses.
        ("/proc/self/comm", "EACCES"),
        ("/session/notes.txt", "ok"),
        ("/tmp/notes.txt", "ok"),
    ];
    for (i, (path, want)) in cases.iter().enumerate() {
        let got = result(&raw, i as u64 + 1, "write_file", json!({"path": path})).await;
        assert_eq!(&got, want, "writing {path}");
    }
    // /session is the session's scratch dir on the host; /tmp is the sandbox's own.
    let scratch = scratch_holding(&h.lodge.scratch_root(), "notes.txt");
    assert_eq!(
        std::fs::read_to_string(scratch.join("notes.txt")).unwrap(),
        "hostile was here\n"
    );
    assert!(!std::path::Path::new(&format!("{dir}/evil")).exists());
    h.assert_contained(watch).await;
}

#[tokio::test]
async fn host_secrets_and_lodge_config_are_unreadable() {
    let Some(h) = hostile("") else { return };
    let watch = h.watch().await;
    let raw = h.session().await;
    let dir = h.dir.display().to_string();
    let read = async |id, path: &str| result(&raw, id, "read_file", json!({"path": path})).await;
    assert_eq!(read(1, "/etc/shadow").await, "ENOENT");
    assert_eq!(read(2, "/etc/gshadow").await, "ENOENT");
    assert_eq!(read(3, "/root/.bash_history").await, "ENOENT");
    assert_eq!(read(4, "/root/.cargo/credentials.toml").await, "ENOENT");
    assert_eq!(read(5, "/var/log/syslog").await, "ENOENT");
    // Beside the server script: the script is visible, Lodge's config is masked, and the
    // scratch root of every session is an empty mask.
    assert_eq!(read(6, &format!("{dir}/server.py")).await, "ok");
    assert_eq!(read(7, &format!("{dir}/lodge.toml")).await, "EACCES");
    let scratch = attempt(
        &raw,
        8,
        "list_dir",
        json!({"path": format!("{dir}/scratch")}),
    )
    .await;
    assert_eq!(scratch["result"], "ok");
    assert_eq!(scratch["entries"], json!([]), "{scratch}");
    // /root holds only the path down to the interpreter's install prefix.
    let root = attempt(&raw, 9, "list_dir", json!({"path": "/root"})).await;
    if root["result"] == "ok" {
        let python = std::fs::canonicalize(crate::common::python()).unwrap();
        for entry in root["entries"].as_array().unwrap() {
            let entry = entry.as_str().unwrap();
            assert!(
                python.starts_with(format!("/root/{entry}"))
                    || std::path::Path::new(&crate::common::python())
                        .starts_with(format!("/root/{entry}")),
                "/root/{entry} is visible but holds no install dir of the server"
            );
        }
    } else {
        assert_eq!(root["result"], "ENOENT");
    }
    for path in ["/home", "/var", "/boot", "/mnt"] {
        let got = result(&raw, 10, "list_dir", json!({"path": path})).await;
        assert_eq!(got, "ENOENT", "{path}");
    }
    h.assert_contained(watch).await;
}

#[tokio::test]
async fn sessions_cannot_reach_each_other() {
    let Some(h) = hostile("") else { return };
    let watch = h.watch().await;
    let a = h.session().await;
    let b = h.session().await;
    assert_eq!(
        result(&a, 1, "write_file", json!({"path": "/session/secret"})).await,
        "ok"
    );
    let a_me = attempt(&a, 2, "whoami", json!({})).await;
    let a_pid: i64 = a_me["sandbox_pid"].as_str().unwrap().parse().unwrap();
    let a_scratch = scratch_holding(&h.lodge.scratch_root(), "secret");
    assert!(a_scratch.join("secret").exists());

    // B cannot read A's files through their host path (the scratch root is masked)…
    let path = a_scratch.join("secret").display().to_string();
    assert_eq!(
        result(&b, 1, "read_file", json!({"path": path})).await,
        "ENOENT"
    );
    // …and sees only its own processes: its init (1) and itself.
    let procs = attempt(&b, 2, "processes", json!({})).await;
    let pids: Vec<&String> = procs["processes"].as_object().unwrap().keys().collect();
    assert_eq!(pids, ["1", "2"], "{procs}");
    // A's sandbox pid means nothing in B's pid namespace.
    let got = result(&b, 3, "signal_pid", json!({"pid": a_pid, "sig": 9})).await;
    assert_eq!(got, "ESRCH");
    // B's init is not B's to kill either.
    assert_eq!(
        result(&b, 4, "signal_pid", json!({"pid": 1, "sig": 9})).await,
        "EPERM"
    );
    // A is untouched.
    assert_eq!(
        result(&a, 3, "read_file", json!({"path": "/session/secret"})).await,
        "ok"
    );
    h.assert_contained(watch).await;
}

#[tokio::test]
async fn the_network_is_loopback_only() {
    let Some(h) = hostile("") else { return };
    let watch = h.watch().await;
    let raw = h.session().await;
    let ifaces = attempt(&raw, 1, "interfaces", json!({})).await;
    assert_eq!(ifaces["interfaces"], json!(["lo"]));
    // Lodge itself listens on the host's loopback: not this loopback.
    let port: u16 = h.lodge.base.rsplit(':').next().unwrap().parse().unwrap();
    let got = result(
        &raw,
        2,
        "tcp_connect",
        json!({"host": "127.0.0.1", "port": port}),
    )
    .await;
    assert_eq!(got, "ECONNREFUSED");
    // No route anywhere else (a UDP connect only looks the route up; nothing is sent).
    assert_eq!(
        result(&raw, 3, "udp_route", json!({"host": "192.0.2.1"})).await,
        "ENETUNREACH"
    );
    // No DNS.
    let dns = attempt(&raw, 4, "resolve", json!({"name": "example.com"})).await;
    assert_eq!(dns["result"], "gaierror", "{dns}");
    h.assert_contained(watch).await;
}

#[tokio::test]
async fn mount_ptrace_modules_and_privileges_are_denied() {
    let Some(h) = hostile("") else { return };
    let watch = h.watch().await;
    let raw = h.session().await;
    assert_eq!(result(&raw, 1, "mount_tmpfs", json!({})).await, "EPERM");
    assert_eq!(
        result(&raw, 2, "ptrace_attach", json!({"pid": 1})).await,
        "EPERM"
    );
    let modules = attempt(&raw, 3, "load_module", json!({})).await;
    assert_eq!(modules["result"], "blocked", "{modules}");
    for call in ["finit_module", "init_module", "delete_module"] {
        assert_eq!(modules["calls"][call], "EPERM", "{call}: {modules}");
    }
    let privs = attempt(&raw, 4, "raise_privileges", json!({})).await;
    assert_eq!(privs["result"], "blocked", "{privs}");
    let calls = &privs["calls"];
    // uid/gid 0 do not even exist in the server's user namespace.
    assert_eq!(calls["setuid(0)"], "EINVAL");
    assert_eq!(calls["setgid(0)"], "EINVAL");
    assert_eq!(calls["ambient CAP_SYS_ADMIN"], "EPERM");
    assert_eq!(calls["unshare(CLONE_NEWUSER)"], "EPERM");
    assert_eq!(calls["/usr mounted nosuid"], "True");
    assert_eq!(calls["no_new_privs"], "1");
    assert_eq!(calls["euid"], "1000");
    for (i, name) in [
        "unshare",
        "setns",
        "pivot_root",
        "chroot",
        "bpf",
        "keyctl",
        "kexec_load",
        "perf_event_open",
        "reboot",
        "process_vm_readv",
    ]
    .iter()
    .enumerate()
    {
        let got = result(&raw, 10 + i as u64, "syscall", json!({"name": name})).await;
        assert_eq!(got, "EPERM", "{name}");
    }
    for name in ["clone3", "io_uring_setup"] {
        assert_eq!(
            result(&raw, 30, "syscall", json!({"name": name})).await,
            "ENOSYS"
        );
    }
    h.assert_contained(watch).await;
}

#[tokio::test]
async fn a_fork_bomb_is_held_by_the_pids_limit() {
    let Some(h) = hostile("pids = 48") else {
        return;
    };
    let watch = h.watch().await;
    let raw = h.session().await;
    let bomb = attempt(&raw, 1, "fork_bomb", json!({})).await;
    assert_eq!(bomb["result"], "EAGAIN", "{bomb}");
    assert!(bomb["forked"].as_u64().unwrap() < 48, "{bomb}");
    // The session survives its own bomb.
    assert_eq!(result(&raw, 2, "whoami", json!({})).await, "ok");
    h.assert_contained(watch).await;
}

#[tokio::test]
async fn a_memory_bomb_is_killed_and_the_session_ends_cleanly() {
    let Some(h) = hostile("memory = \"256MiB\"") else {
        return;
    };
    let watch = h.watch().await;
    let before = dirs(&h.lodge.scratch_root());
    let raw = h.session().await;
    let sandbox = new_scratch_dir(&h.lodge.scratch_root(), &before);
    let reply = raw.call(1, "memory_bomb", json!({})).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let error = reply.events().last().unwrap().json();
    assert_eq!(error["id"], 1);
    assert_eq!(error["error"]["code"], -32000, "{error}");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("the MCP server was killed: out of memory (limit 256MiB)"),
        "{message}"
    );
    // Later requests: 404 saying why.
    let later = raw.call(2, "whoami", json!({})).await;
    assert_eq!(later.status, 404);
    assert!(later.body.contains("out of memory"), "{}", later.body);
    // Another session of the same server never noticed.
    h.assert_contained(watch).await;
    crate::common::eventually(
        Duration::from_secs(20),
        "the scratch dir to go",
        async || !sandbox.exists(),
    )
    .await;
}

#[tokio::test]
async fn a_cpu_hog_is_held_to_its_quota() {
    let Some(h) = hostile("cpus = 0.25") else {
        return;
    };
    let watch = h.watch().await;
    let raw = h.session().await;
    let hog = attempt(&raw, 1, "cpu_hog", json!({"seconds": 2.0})).await;
    let ratio = hog["ratio"].as_f64().unwrap();
    // Unlimited, a busy loop takes a whole CPU; the box may be loaded, so only the upper
    // bound means anything.
    assert!(ratio < 0.4, "cpus = 0.25 held the hog to {ratio}");
    h.assert_contained(watch).await;
}

async fn read_text(raw: &Raw, id: u64, path: &str) -> String {
    let report = attempt(raw, id, "read_text", json!({ "path": path })).await;
    assert_eq!(report["result"], "ok", "{path}: {report}");
    report["data"].as_str().unwrap().to_owned()
}

/// What the sandbox shows of the host (issue 13, findings 10 and 4): its pid 1's command
/// line is `init`, never Lodge's host path or `sandbox-helper`; neither it nor the mount
/// table names the client's session id (the scratch directory is named by the random
/// sandbox id); the server's open-file limit is its own, not Lodge's raised one.
#[tokio::test]
async fn the_sandbox_shows_nothing_of_the_host_or_the_session() {
    let Some(h) = hostile("") else { return };
    let watch = h.watch().await;
    let raw = h.session().await;
    let session = raw.session.clone().unwrap();
    let cmdline = read_text(&raw, 1, "/proc/1/cmdline").await;
    assert_eq!(cmdline, "init\0");
    let comm = read_text(&raw, 2, "/proc/1/comm").await;
    assert_eq!(comm, "init\n");
    let mountinfo = read_text(&raw, 3, "/proc/self/mountinfo").await;
    for shown in [&cmdline, &comm, &mountinfo] {
        assert!(!shown.contains(&session), "the session id shows: {shown}");
        assert!(
            !shown.contains(crate::common::LODGE),
            "Lodge's path shows: {shown}"
        );
        assert!(!shown.contains("sandbox-helper"), "{shown}");
    }
    let limits = read_text(&raw, 4, "/proc/self/limits").await;
    let open_files = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    assert_eq!(
        open_files
            .split_whitespace()
            .skip(3)
            .take(2)
            .collect::<Vec<_>>(),
        ["1024", "1024"],
        "{limits}"
    );
    h.assert_contained(watch).await;
}

/// Dotfiles and Unix sockets beside the server's script (issue 13, findings 9 and 8):
/// the script directory is bound so the server finds its own files, but its `.env`, its
/// `.git` and a host service's socket (even one nested below, and even one anybody may
/// connect to) are masked.
#[tokio::test]
async fn dotfiles_and_sockets_beside_the_script_are_masked() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    std::fs::copy(FIXTURE, path.join("server.py")).unwrap();
    std::fs::write(path.join(".env"), "API_KEY=do-not-read").unwrap();
    std::fs::create_dir_all(path.join(".git")).unwrap();
    std::fs::write(path.join(".git/config"), "[remote]").unwrap();
    std::fs::create_dir_all(path.join("run/deeper")).unwrap();
    std::fs::write(path.join("data.txt"), "the server's own data").unwrap();
    let socket = path.join("agent.sock");
    let nested = path.join("run/deeper/service.sock");
    let _listeners = [&socket, &nested].map(|p| {
        let l = std::os::unix::net::UnixListener::bind(p).unwrap();
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o777)).unwrap();
        l
    });
    let config = format!(
        "[[server]]\nname = \"hostile\"\ncommand = [{:?}, {:?}]\n",
        crate::common::python(),
        path.join("server.py")
    );
    let Some(lodge) = start_namespaces_in(dir, &config) else {
        return;
    };
    let h = Hostile { lodge, dir: path };
    let watch = h.watch().await;
    let raw = h.session().await;
    let at = |name: &str| h.dir.join(name).display().to_string();
    let read = async |id, p: String| result(&raw, id, "read_file", json!({ "path": p })).await;
    assert_eq!(read(1, at("server.py")).await, "ok");
    assert_eq!(read(2, at("data.txt")).await, "ok");
    assert_eq!(read(3, at(".env")).await, "EACCES");
    assert_eq!(read(4, at(".git/config")).await, "ENOENT");
    for (id, sock) in [(5, at("agent.sock")), (6, at("run/deeper/service.sock"))] {
        let got = result(&raw, id, "unix_connect", json!({ "path": sock })).await;
        assert_ne!(got, "connected", "{sock}");
    }
    h.assert_contained(watch).await;
}

/// Mount points beneath `dir`, from this process's mountinfo.
fn mounts_beneath(dir: &std::path::Path) -> Vec<PathBuf> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(PathBuf::from))
        .filter(|p| p.starts_with(dir))
        .collect()
}

/// A size- and inode-limited `/session` (issue 13, finding 2): writing past `disk` and
/// creating past `inodes` fail with the session's own ENOSPC; the host sees the files but
/// its disk never does (the scratch dir is the session's own tmpfs); the session goes on,
/// and so do a session alongside and Lodge.
#[tokio::test]
async fn a_full_session_disk_is_the_sessions_own_enospc() {
    let Some(h) = hostile("memory = \"256MiB\"\ndisk = \"32MiB\"\ninodes = 2000") else {
        return;
    };
    let watch = h.watch().await;
    let before = dirs(&h.lodge.scratch_root());
    let raw = h.session().await;
    let scratch = new_scratch_dir(&h.lodge.scratch_root(), &before);

    let fill = attempt(&raw, 1, "fill_disk", json!({"limit_mib": 256})).await;
    assert_eq!(fill["result"], "ENOSPC", "{fill}");
    let written = fill["written"].as_u64().unwrap();
    assert!((28 << 20..=32 << 20).contains(&written), "{fill}");
    // The host sees the file, on the session's own file system, not the scratch root's.
    assert_eq!(
        std::fs::metadata(scratch.join("fill")).unwrap().len(),
        written
    );
    assert!(mounts_beneath(&h.lodge.scratch_root()).contains(&scratch));

    let flood = attempt(&raw, 2, "inode_flood", json!({})).await;
    assert_eq!(flood["result"], "ENOSPC", "{flood}");
    assert!(flood["created"].as_u64().unwrap() < 2000, "{flood}");

    // Its own failure, and a recoverable one: after removing the file it writes again.
    let removed = attempt(&raw, 3, "remove_file", json!({"path": "/session/fill"})).await;
    assert_eq!(removed["result"], "ok", "{removed}");
    let again = attempt(&raw, 4, "fill_disk", json!({"limit_mib": 4})).await;
    assert_eq!(again["result"], "none", "{again}");
    h.assert_contained(watch).await;

    // Ending the session unmounts its tmpfs and removes the dir.
    let del = Raw::send(
        raw.http
            .delete(h.lodge.url())
            .header("mcp-session-id", raw.session.clone().unwrap()),
    )
    .await;
    assert_eq!(del.status, 204);
    assert!(!scratch.exists());
    assert!(!mounts_beneath(&h.lodge.scratch_root()).contains(&scratch));
}

/// No scratch mount outlives its Lodge (issue 13, finding 2): a Lodge that drains
/// (SIGTERM) unmounts its sessions' tmpfs; one killed with SIGKILL leaves them, and the
/// next Lodge to start on the host unmounts them, never those of a Lodge still running.
#[tokio::test]
async fn scratch_mounts_do_not_outlive_their_lodge() {
    let Some(mut killed) = hostile("") else {
        return;
    };
    let Some(mut running) = hostile("") else {
        return;
    };
    let _a = killed.session().await;
    let _b = running.session().await;
    let killed_root = killed.lodge.scratch_root();
    let running_root = running.lodge.scratch_root();
    assert_eq!(mounts_beneath(&killed_root).len(), 1);
    assert_eq!(mounts_beneath(&running_root).len(), 1);

    let status = std::process::Command::new("kill")
        .args(["-KILL", &killed.lodge.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    crate::common::eventually(Duration::from_secs(10), "Lodge to die", async || {
        !crate::common::process_alive(killed.lodge.pid())
    })
    .await;
    assert_eq!(
        mounts_beneath(&killed_root).len(),
        1,
        "left by the killed Lodge"
    );

    let Some(next) = hostile("") else { return };
    assert_eq!(mounts_beneath(&killed_root), Vec::<PathBuf>::new());
    assert_eq!(
        mounts_beneath(&running_root).len(),
        1,
        "a live Lodge's stays"
    );
    drop(next);

    running.lodge.terminate();
    assert_eq!(mounts_beneath(&running_root), Vec::<PathBuf>::new());
    // (`killed` is reaped on drop.)
    let _ = &mut killed;
}

/// Socket buffers count against the memory limit (issue 13, finding 3): a session that
/// fills TCP, UDP and AF_UNIX buffers nobody reads holds less than its memory limit in
/// them (v1: `memory.kmem.tcp.limit_in_bytes`, a quarter of it; v2: inside
/// `memory.max`), gets EAGAIN rather than more, and goes on; a session alongside and
/// Lodge's own front are unaffected.
#[tokio::test]
async fn socket_buffers_are_held_inside_the_memory_limit() {
    let Some(h) = hostile("memory = \"256MiB\"\nopen_files = 4096") else {
        return;
    };
    let watch = h.watch().await;
    let raw = h.session().await;
    let hoard = attempt(
        &raw,
        1,
        "socket_hoard",
        json!({"pairs": 300, "unix_pairs": 0, "target_mib": 1024}),
    )
    .await;
    assert_eq!(hoard["result"], "ok", "{hoard}");
    let held = hoard["tcp"].as_u64().unwrap() + hoard["udp"].as_u64().unwrap();
    assert!(
        held < 256 << 20,
        "held {} MiB in socket buffers: {hoard}",
        held >> 20
    );
    assert_eq!(result(&raw, 2, "whoami", json!({})).await, "ok");
    h.assert_contained(watch).await;
}
