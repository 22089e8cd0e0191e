//! The real-binary harness: `lodge serve` on a free loopback port, with its config and
//! scratch root in a temp dir, stopped on drop. The caller names the binary (only a test
//! crate knows `CARGO_BIN_EXE_lodge`; the bench finds or builds its own).

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How to start `lodge serve`.
pub struct Launch {
    binary: PathBuf,
    dir: tempfile::TempDir,
    config: String,
    args: Vec<OsString>,
    wrapper: Vec<OsString>,
    log: String,
    on_drop: OnDrop,
    own_backends: bool,
    startup_check: bool,
}

/// What dropping the harness does to the process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnDrop {
    /// SIGKILL at once (tests: nothing to wait for).
    Kill,
    /// [`Lodge::stop`]: SIGTERM, then SIGKILL after 10 s (the bench: sandboxes end cleanly
    /// before the next measurement).
    Stop,
}

impl Launch {
    /// `binary serve --config DIR/lodge.toml --listen 127.0.0.1:0`, in a new temp dir.
    /// The config gets `scratch_root = DIR/scratch` in its `[session]` table.
    pub fn new(binary: impl Into<PathBuf>, config: &str) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir().context("cannot create a temp dir")?;
        Ok(Self::in_dir(binary, dir, config))
    }

    /// Like [`Launch::new`], in `dir`, so a test can put files beside the config.
    pub fn in_dir(binary: impl Into<PathBuf>, dir: tempfile::TempDir, config: &str) -> Self {
        let scratch = dir.path().join("scratch");
        let config = if config.contains("[session]") {
            config.replacen(
                "[session]",
                &format!("[session]\nscratch_root = {scratch:?}"),
                1,
            )
        } else {
            format!("{config}\n[session]\nscratch_root = {scratch:?}\n")
        };
        Launch {
            binary: binary.into(),
            dir,
            config,
            args: Vec::new(),
            wrapper: Vec::new(),
            log: "info,lodge_runtime=debug".into(),
            on_drop: OnDrop::Kill,
            own_backends: false,
            startup_check: false,
        }
    }

    /// More `lodge serve` arguments.
    pub fn args<I: IntoIterator<Item = S>, S: Into<OsString>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Runs `lodge` under this command (e.g. `prlimit --nofile=…`).
    pub fn wrapper<I: IntoIterator<Item = S>, S: Into<OsString>>(mut self, wrapper: I) -> Self {
        self.wrapper = wrapper.into_iter().map(Into::into).collect();
        self
    }

    /// `LODGE_LOG` (default `info,lodge_runtime=debug`).
    pub fn log(mut self, filter: &str) -> Self {
        self.log = filter.into();
        self
    }

    /// Ignores `LODGE_BACKEND`, so each server's own `[server.sandbox] backend` applies.
    pub fn own_backends(mut self) -> Self {
        self.own_backends = true;
        self
    }

    /// Runs Lodge's startup check as configured (on by default). Without this the
    /// harness turns it off (`LODGE_STARTUP_CHECK=false`): most tests host servers that
    /// are broken on purpose, and the rest need not start each server twice.
    pub fn startup_check(mut self) -> Self {
        self.startup_check = true;
        self
    }

    pub fn on_drop(mut self, on_drop: OnDrop) -> Self {
        self.on_drop = on_drop;
        self
    }

    /// Starts Lodge and waits for its banner.
    pub fn start(self) -> anyhow::Result<Lodge> {
        let path = self.dir.path().join("lodge.toml");
        std::fs::write(&path, &self.config)
            .with_context(|| format!("cannot write {}", path.display()))?;
        let mut command = match self.wrapper.split_first() {
            Some((program, rest)) => {
                let mut command = Command::new(program);
                command.args(rest).arg(&self.binary);
                command
            }
            None => Command::new(&self.binary),
        };
        command
            .args(["serve", "--config"])
            .arg(&path)
            .args(["--listen", "127.0.0.1:0"])
            .args(&self.args)
            .env("LODGE_LOG", &self.log)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if self.startup_check {
            command.env_remove("LODGE_STARTUP_CHECK");
        } else {
            command.env("LODGE_STARTUP_CHECK", "false");
        }
        // An explicit --backend must not be overridden by the environment of the run.
        if self.own_backends || self.args.iter().any(|a| a == "--backend") {
            command.env_remove("LODGE_BACKEND");
        }
        let mut child = command
            .spawn()
            .with_context(|| format!("cannot start {} serve", self.binary.display()))?;
        let stdout = child.stdout.take().context("stdout not piped")?;
        let mut lines = BufReader::new(stdout).lines();
        let first = match lines.next() {
            Some(line) => line?,
            None => {
                let status = child.wait()?;
                bail!("lodge serve exited ({status}) before announcing its address");
            }
        };
        let Some(base) = first.split("listening on ").nth(1) else {
            let _ = child.kill();
            let _ = child.wait();
            bail!("unexpected banner: {first}");
        };
        let base = base.trim().to_string();
        // The rest of the banner follows at once; keep reading stdout so Lodge never blocks.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut banner = vec![first];
        while let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            let last = line.contains("sessions:");
            banner.push(line);
            if last {
                break;
            }
        }
        Ok(Lodge {
            child,
            base,
            banner,
            dir: self.dir,
            on_drop: self.on_drop,
        })
    }
}

/// A running `lodge serve`.
pub struct Lodge {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// What Lodge printed on startup, up to its `sessions:` line.
    pub banner: Vec<String>,
    /// Holds `lodge.toml` and `scratch/`.
    pub dir: tempfile::TempDir,
    on_drop: OnDrop,
}

impl Lodge {
    pub fn url(&self) -> String {
        format!("{}/mcp", self.base)
    }

    pub fn scratch_root(&self) -> PathBuf {
        self.dir.path().join("scratch")
    }

    pub fn config_dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The sandbox backend Lodge announced (`process`, ...).
    pub fn backend(&self) -> Option<String> {
        self.banner.iter().find_map(|l| {
            l.split("sandbox backend: ")
                .nth(1)
                .and_then(|rest| rest.split([' ', '(']).next())
                .map(str::to_string)
        })
    }

    /// How Lodge ended, if it has.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    fn sigterm(&self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
    }

    /// Sends SIGTERM and waits up to `within` for Lodge to exit; `None` if it did not.
    pub fn terminate(&mut self, within: Duration) -> Option<ExitStatus> {
        self.sigterm();
        let deadline = Instant::now() + within;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => return None,
            }
        }
    }

    /// SIGTERM, then up to 10 s for Lodge to drain and exit, then SIGKILL.
    pub fn stop(&mut self) {
        if self.terminate(Duration::from_secs(10)).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Drop for Lodge {
    fn drop(&mut self) {
        match self.on_drop {
            OnDrop::Kill => {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
            OnDrop::Stop => self.stop(),
        }
        unmount_beneath(self.dir.path());
    }
}

/// Lazily unmounts every mount beneath `dir`: the scratch tmpfs mounts of sessions a
/// killed Lodge could not end (the next Lodge would unmount them too), so the temp dir
/// can be removed now.
fn unmount_beneath(dir: &Path) {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    for point in text.lines().filter_map(|l| l.split(' ').nth(4)) {
        // Temp dir paths have no characters mountinfo escapes.
        let point = Path::new(point);
        if point.starts_with(dir) && point != dir {
            let _ = nix::mount::umount2(point, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}
