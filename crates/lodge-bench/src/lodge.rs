//! Finding (and if need be building) the `lodge` binary, and the `lodge serve` a
//! measurement runs against (started by `lodge-testkit`'s harness).

use anyhow::{Context, bail};
use lodge_testkit::server::{Launch, OnDrop};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

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
pub type LodgeServer = lodge_testkit::server::Lodge;

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

/// A Lodge on a free loopback port, configured by `options`.
pub fn start(lodge: &Path, options: &Options) -> anyhow::Result<LodgeServer> {
    let mut toml = String::new();
    // A server declared in the file replaces `--demo`; the demo is then `lodge demo-server`.
    let declared = options.command.is_some() || options.warm_pool.is_some();
    if declared {
        let command = options
            .command
            .clone()
            .unwrap_or_else(|| vec![lodge.display().to_string(), "demo-server".to_string()]);
        toml.push_str(&format!(
            "[[server]]\nname = \"bench\"\ncommand = {command:?}\n"
        ));
        if let Some(size) = options.warm_pool {
            toml.push_str(&format!("warm_pool = {size}\n"));
        }
    }
    let mut args: Vec<String> = Vec::new();
    if !declared {
        args.push("--demo".into());
    }
    if let Some(backend) = &options.backend {
        args.extend(["--backend".into(), backend.clone()]);
    }
    if let Some(max) = options.max_sessions {
        args.extend(["--max-sessions".into(), max.to_string()]);
    }
    if let Some(idle) = &options.idle_timeout {
        args.extend(["--idle-timeout".into(), idle.clone()]);
    }
    Launch::new(lodge, &toml)?
        .args(args)
        .log("warn")
        .on_drop(OnDrop::Stop)
        .start()
}
