//! Finding (and if need be building) the `lodge` binary, and running `lodge serve`.

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `lodge` binary to measure: `explicit`, or the one built next to this bench
/// (same target directory, same profile). Under `cargo run` (or when that binary is
/// missing) `cargo build -p lodge` is run first with this bench's profile, so the
/// numbers are never those of a stale build.
///
/// Returns the path, and a warning for the report when the build failed and an
/// older binary is measured instead.
pub fn locate(explicit: Option<PathBuf>, build: bool) -> anyhow::Result<(PathBuf, Option<String>)> {
    if let Some(path) = explicit {
        if !path.exists() {
            bail!("--lodge {}: no such file", path.display());
        }
        return Ok((path, None));
    }
    let mut warning = None;
    let exe = std::env::current_exe().context("cannot find this executable")?;
    let dir = exe.parent().context("this executable has no directory")?;
    let candidate = dir.join(format!("lodge{}", std::env::consts::EXE_SUFFIX));
    let under_cargo = std::env::var_os("CARGO").is_some();
    if build && (under_cargo || !candidate.exists()) {
        let profile = dir
            .file_name()
            .and_then(|n| n.to_str())
            .map_or("dev", |n| if n == "debug" { "dev" } else { n });
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.toml");
        eprintln!("lodge-bench: cargo build -p lodge --profile {profile}");
        let status = Command::new(&cargo)
            .args(["build", "--quiet", "-p", "lodge", "--profile", profile])
            .arg("--manifest-path")
            .arg(&manifest)
            .stdout(Stdio::null())
            .status();
        match status {
            Ok(s) if s.success() => {}
            Ok(s) if candidate.exists() => {
                let w = format!("building lodge failed ({s}); the existing binary was measured");
                eprintln!("lodge-bench: {w}");
                warning = Some(w);
            }
            Ok(s) => {
                bail!("building lodge failed ({s}); run `cargo build -p lodge --profile {profile}`")
            }
            Err(e) if candidate.exists() => {
                let w = format!("cannot run cargo ({e}); the existing binary was measured");
                eprintln!("lodge-bench: {w}");
                warning = Some(w);
            }
            Err(e) => bail!("cannot run cargo to build lodge: {e}"),
        }
    }
    if !candidate.exists() {
        bail!(
            "{} not found: build it with `cargo build --release -p lodge -p lodge-bench`, or pass --lodge PATH",
            candidate.display()
        );
    }
    Ok((candidate, warning))
}

/// A running `lodge serve`, stopped (SIGTERM, then SIGKILL) on drop.
pub struct LodgeServer {
    child: Child,
    pub base_url: String,
    /// What Lodge printed on startup.
    pub banner: Vec<String>,
    _dir: tempfile::TempDir,
}

/// How to start a Lodge for a measurement. The default is `lodge serve --demo` with
/// Lodge's default sandbox backend and session settings.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// `--backend` (`process` | `namespaces`); `None`: Lodge picks (namespaces where it works).
    pub backend: Option<String>,
    /// The server to host, as argv; `None`: the bundled demo server.
    pub command: Option<Vec<String>>,
    /// `warm_pool` for the server: sandboxes started ahead of demand.
    pub warm_pool: Option<usize>,
    /// `--max-sessions`.
    pub max_sessions: Option<usize>,
    /// `--idle-timeout`, humantime (`1h`).
    pub idle_timeout: Option<String>,
}

impl LodgeServer {
    /// A Lodge on a free loopback port, configured by `options`.
    pub fn start(lodge: &Path, options: &Options) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir().context("cannot create a temp dir")?;
        let config = dir.path().join("lodge.toml");
        let scratch = dir.path().join("scratch");
        let mut toml = format!(
            "[session]\nscratch_root = {:?}\n",
            scratch.display().to_string()
        );
        // A server declared in the file replaces `--demo`; the demo is then `lodge demo-server`.
        if options.command.is_some() || options.warm_pool.is_some() {
            let command = options
                .command
                .clone()
                .unwrap_or_else(|| vec![lodge.display().to_string(), "demo-server".to_string()]);
            toml.push_str(&format!(
                "\n[[server]]\nname = \"bench\"\ncommand = {command:?}\n"
            ));
            if let Some(size) = options.warm_pool {
                toml.push_str(&format!("warm_pool = {size}\n"));
            }
        }
        std::fs::write(&config, toml)?;
        let mut command = Command::new(lodge);
        command.arg("serve");
        if options.command.is_none() && options.warm_pool.is_none() {
            command.arg("--demo");
        }
        if let Some(backend) = &options.backend {
            command.args(["--backend", backend]);
        }
        if let Some(max) = options.max_sessions {
            command.args(["--max-sessions", &max.to_string()]);
        }
        if let Some(idle) = &options.idle_timeout {
            command.args(["--idle-timeout", idle]);
        }
        let mut child = command
            .args(["--listen", "127.0.0.1:0", "--config"])
            .arg(&config)
            .env("LODGE_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("cannot start {} serve", lodge.display()))?;
        let stdout = child.stdout.take().context("stdout not piped")?;
        let mut lines = BufReader::new(stdout).lines();
        let first = match lines.next() {
            Some(line) => line?,
            None => {
                let status = child.wait()?;
                bail!("lodge serve exited ({status}) before announcing its address");
            }
        };
        let base_url = first
            .split("listening on ")
            .nth(1)
            .with_context(|| format!("unexpected banner: {first}"))?
            .trim()
            .to_string();
        // The rest of the banner follows at once; keep reading stdout so Lodge never blocks.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut banner = vec![first];
        while let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            banner.push(line);
            if banner.iter().any(|l| l.contains("sessions:")) {
                break;
            }
        }
        Ok(LodgeServer {
            child,
            base_url,
            banner,
            _dir: dir,
        })
    }

    pub fn mcp_url(&self) -> String {
        format!("{}/mcp", self.base_url)
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

    /// How Lodge ended, if it has (to explain a failed measurement).
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then up to 10 s for Lodge to drain and exit, then SIGKILL.
    pub fn stop(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_)) | Err(_)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for LodgeServer {
    fn drop(&mut self) {
        self.stop();
    }
}
