//! The `process` backend: no isolation. The server runs as Lodge's user in its own
//! process group, with its scratch dir as cwd and a cleared environment.

use std::io;
use std::process::Stdio;
use std::sync::Once;

use tokio::process::Command;

use crate::command::{host_path, resolve_program, validate_env};
use crate::scratch::{ScratchDir, ScratchName};
use crate::stderr::StderrCapture;
use crate::{Backend, Sandbox, SandboxError, SandboxIo, SandboxProcess, SandboxSpec, descriptors};

/// Runs the server as a plain child process: own process group, own scratch dir, cleared
/// environment (`PATH` copied from Lodge, `HOME` and `TMPDIR` = scratch dir,
/// `LANG=C.UTF-8`, then the configured variables). No isolation, no cgroup limits, and
/// the scratch dir is a plain directory (`disk` and `inodes` are not enforced: an
/// explicit setting is warned about once); the rlimits (open files, file size, no core
/// dumps) are set.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcessBackend;

static LIMITS_IGNORED: Once = Once::new();
static DISK_IGNORED: Once = Once::new();

impl Backend for ProcessBackend {
    fn name(&self) -> &'static str {
        "process"
    }

    /// The stdin, stdout and stderr pipes and the process handle (a pidfd): 4, however
    /// the server is reached (over TCP it is the host's loopback: no handle to keep).
    fn descriptors_per_session(&self, _reached_over_tcp: bool) -> u64 {
        descriptors::BASE
    }

    fn spawn(&self, spec: &SandboxSpec) -> Result<Sandbox, SandboxError> {
        let (program, args) = spec
            .command
            .split_first()
            .ok_or(SandboxError::EmptyCommand)?;
        let spawn_err = |source| SandboxError::Spawn {
            program: program.clone(),
            source,
        };
        validate_env(&spec.env)?;
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(spawn_err(io::Error::other(
                "sandboxes must be started from within a Tokio runtime",
            )));
        }
        if !spec.limits.is_empty() {
            LIMITS_IGNORED.call_once(|| {
                tracing::warn!(
                    limits = ?spec.limits,
                    "the `process` backend does not enforce cgroup limits (memory, cpus, pids); ignoring them"
                );
            });
        }

        if matches!(spec.limits.disk, crate::Disk::Limited(_)) || spec.limits.inodes.is_some() {
            DISK_IGNORED.call_once(|| {
                tracing::warn!(
                    "the `process` backend does not limit the scratch dir (disk, inodes): it is a plain directory"
                );
            });
        }
        let search_path = host_path();
        let resolved = resolve_program(program, &search_path)?;
        let mut scratch = ScratchDir::create(
            &spec.scratch_root,
            &ScratchName::for_sandbox(&spec.sandbox_id),
        )?;
        // Lodge's own user runs the server here: the files need no other owner.
        scratch.keep(spec.kept_files(), None)?;

        let mut cmd = Command::new(&resolved);
        cmd.arg0(program)
            .args(args)
            .env_clear()
            .env("PATH", &search_path)
            .env("HOME", scratch.path())
            .env("TMPDIR", scratch.path())
            .env("LANG", "C.UTF-8")
            .envs(&spec.env)
            .current_dir(scratch.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let rlimits = spec.limits.rlimits();
        crate::sys::rlimits_before_exec(&mut cmd, rlimits.clamped(), rlimits.file_size.is_some());
        // On failure `scratch` is dropped, which removes it.
        let mut child = cmd.spawn().map_err(spawn_err)?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(spawn_err(io::Error::other(
                "a standard stream was not piped",
            )));
        };
        let stderr = StderrCapture::spawn(
            stderr,
            spec.sandbox_id,
            spec.stderr_cap,
            spec.stderr_file.clone(),
        );
        tracing::debug!(
            sandbox = %spec.sandbox_id,
            pid = child.id(),
            program = %resolved.display(),
            "server started (process backend)"
        );
        let process = SandboxProcess::new(spec.sandbox_id, child, scratch, stderr);
        Ok(Sandbox {
            io: SandboxIo { stdin, stdout },
            process,
        })
    }
}
