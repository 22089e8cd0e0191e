//! Starting one `namespaces` sandbox: the one path shared by [`NamespacesBackend::spawn`]
//! and the probe's trial sandbox ([`Host::probe`]), so "a trial sandbox ran" means the
//! path every session takes works.
//!
//! [`prepare_plan`] turns a server command into the helper's [`Plan`] (once per command).
//! [`launch`] then does the per-session work: make the scratch dir (a limited tmpfs) and
//! give it to the session's host uid, make the cgroup and write the limits, encode the [`SessionPlan`],
//! and start the sandbox helper with both plans in its environment, stdin/stdout/stderr
//! piped, in its own process group. The caller chooses how the helper process is spawned
//! (a Tokio child for sessions, a plain one for the probe, which runs before any runtime)
//! and keeps what [`launch`] hands back.
//!
//! [`NamespacesBackend::spawn`]: crate::Backend::spawn
//! [`Host::probe`]: crate::Host::probe

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use crate::cgroup::{CgroupName, SessionCgroup};
use crate::command::host_path;
use crate::host_ids::{HostIdLease, HostIds};
use crate::options::{NamespacesOptions, Network};
use crate::plan::{Entry, PLAN_VAR, Plan, SESSION_DIR, SESSION_VAR, SessionPlan};
use crate::probe::Host;
use crate::scratch::{ScratchDir, ScratchName};
use crate::{Limits, SandboxError, SandboxId};

/// `/tmp` and `/dev/shm` size when no memory limit is set (tmpfs pages are charged to the
/// session's memory cgroup, so a memory limit caps them anyway).
const DEFAULT_TMP_SIZE: u64 = 1 << 30;

/// A plan prepared for one command.
#[derive(Debug)]
pub(crate) struct PreparedPlan {
    pub json: String,
    pub path_env: String,
    pub new_netns: bool,
    /// Host directories bound in, `(canonical source, destination)`.
    pub binds: Vec<(PathBuf, PathBuf)>,
    /// Masks for the scratch roots seen so far (a script directory may contain one: other
    /// sessions' scratch dirs must not show, even as names).
    scratch_masks: Mutex<HashMap<PathBuf, Arc<Vec<Entry>>>>,
}

impl PreparedPlan {
    fn scratch_mask(&self, scratch_root: &Path) -> Arc<Vec<Entry>> {
        let mut masks = self
            .scratch_masks
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        masks
            .entry(scratch_root.to_path_buf())
            .or_insert_with(|| {
                let root = std::path::absolute(scratch_root)
                    .unwrap_or_else(|_| scratch_root.to_path_buf());
                Arc::new(crate::layout::hides(&[root], &self.binds))
            })
            .clone()
    }
}

/// Computes the plan for `command` on `host`.
pub(crate) fn prepare_plan(
    host: &Host,
    options: &NamespacesOptions,
    command: &[String],
) -> Result<PreparedPlan, SandboxError> {
    let layout = crate::layout::compute(options, command, &host_path())?;
    let plan = Plan {
        root: host.root_dir.clone(),
        entries: layout.entries,
        program: layout.program,
        argv: layout.argv,
        new_netns: options.network == Network::None,
        landlock: host.landlock,
        writable: options
            .binds
            .iter()
            .filter(|b| b.writable)
            .map(|b| b.dst.clone())
            .collect(),
        seccomp: host.seccomp.clone(),
    };
    let json = serde_json::to_string(&plan).map_err(|e| SandboxError::Config {
        message: format!("cannot encode the sandbox plan: {e}"),
    })?;
    Ok(PreparedPlan {
        json,
        path_env: layout.path,
        new_netns: plan.new_netns,
        binds: layout.binds,
        scratch_masks: Mutex::default(),
    })
}

/// One session's part of a launch.
pub(crate) struct LaunchRequest<'a> {
    /// The program as configured, for error messages.
    pub program: &'a str,
    /// Names the scratch directory and the cgroup.
    pub sandbox_id: SandboxId,
    pub scratch_root: &'a Path,
    pub env: &'a BTreeMap<String, String>,
    pub limits: &'a Limits,
    /// Files `/session` starts with and is saved to (`storage = "principal"`).
    pub kept: Option<crate::scratch::KeptFiles>,
}

/// A started sandbox helper and the per-session resources it runs in. Dropping it before
/// the helper is handed to a supervisor removes the scratch dir and the cgroup.
#[derive(Debug)]
pub(crate) struct Launched<C> {
    /// The helper process, as the caller's spawner returned it.
    pub child: C,
    pub scratch: ScratchDir,
    pub cgroup: Option<SessionCgroup>,
    /// The host uid (= gid) the server runs as, held until the sandbox is gone.
    pub host_id: HostIdLease,
}

/// Prepares the session's resources and starts the helper with `spawn`, which gets the
/// complete command (program, arguments, environment, piped stdio, own process group)
/// and may only add to it how the child is supervised.
pub(crate) fn launch<C>(
    host: &Host,
    plan: &PreparedPlan,
    mut request: LaunchRequest<'_>,
    spawn: impl FnOnce(Command) -> io::Result<C>,
) -> Result<Launched<C>, SandboxError> {
    // Before anything runs as it; held until the sandbox is gone.
    let host_id = host_ids()
        .allocate()
        .map_err(|source| SandboxError::HostIds { source })?;
    let host_ids = (host_id.uid(), host_id.uid());
    // The scratch dir, given to the session's host uid: a size- and inode-limited tmpfs
    // of its own unless `disk = "unlimited"` (`scratch` module docs).
    let mut scratch = ScratchDir::create_limited(
        request.scratch_root,
        &ScratchName::for_sandbox(&request.sandbox_id),
        request.limits.scratch_limits(),
        host_ids,
    )?;
    // Copied in before the server starts, owned by the uid it runs as; the tmpfs's own
    // limits bound the copy as they bound the server.
    scratch.keep(request.kept.take(), Some(host_ids))?;
    let cgroup = SessionCgroup::create(
        &host.cgroups,
        &CgroupName::for_sandbox(&request.sandbox_id),
        request.limits,
    )
    .map_err(|source| SandboxError::Limits { source })?;
    let session = session_plan_json(
        plan,
        scratch.path(),
        host_ids,
        request.env,
        cgroup.as_ref(),
        request.limits,
    );
    let helper = &host.helper;
    let mut cmd = Command::new(&helper.program);
    cmd.args(&helper.args)
        .arg("run")
        .env_clear()
        .env(PLAN_VAR, &plan.json)
        .env(SESSION_VAR, session)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    // On failure `scratch` and `cgroup` are dropped, which removes them.
    let child = spawn(cmd).map_err(|source| SandboxError::Spawn {
        program: request.program.to_owned(),
        source,
    })?;
    Ok(Launched {
        child,
        scratch,
        cgroup,
        host_id,
    })
}

/// The host-wide uid allocator.
fn host_ids() -> &'static HostIds {
    static IDS: OnceLock<HostIds> = OnceLock::new();
    IDS.get_or_init(HostIds::host)
}

/// The per-session JSON for the helper.
fn session_plan_json(
    plan: &PreparedPlan,
    scratch: &Path,
    (uid, gid): (u32, u32),
    env: &BTreeMap<String, String>,
    cgroup: Option<&SessionCgroup>,
    limits: &Limits,
) -> String {
    let mut vars: BTreeMap<&str, &str> = [
        ("PATH", plan.path_env.as_str()),
        ("HOME", SESSION_DIR),
        ("TMPDIR", "/tmp"),
        ("LANG", "C.UTF-8"),
        ("USER", "lodge"),
        ("LOGNAME", "lodge"),
    ]
    .into_iter()
    .collect();
    for (k, v) in env {
        vars.insert(k, v);
    }
    let session = SessionPlan {
        scratch: scratch.to_path_buf(),
        uid,
        gid,
        env: vars.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        cgroups: cgroup.map(SessionCgroup::procs_files).unwrap_or_default(),
        tmp_size: limits.memory.unwrap_or(DEFAULT_TMP_SIZE),
        rlimits: limits.rlimits(),
        extra: plan
            .scratch_mask(scratch.parent().unwrap_or(scratch))
            .as_ref()
            .clone(),
    };
    // Plain strings and numbers: encoding cannot fail.
    serde_json::to_string(&session).unwrap_or_default()
}
