//! What this host supports, found once at startup: [`Host::probe`].
//!
//! The probe runs the sandbox helper twice: once in `probe` mode, where it tries each
//! kernel feature in a throw-away child (user, pid, mount, network, ipc, uts and cgroup
//! namespaces; no_new_privs; installing the seccomp filter; the Landlock ABI), and then,
//! if everything the backend needs works, once for real: a complete sandbox running
//! `true`, started by the same [`launch`](crate::launch) as every session, so
//! "namespaces works here" means a sandbox actually ran the way sessions' will. Cgroup controllers are
//! found by [`CgroupRoots::detect`]. The result is kept in a [`Host`], shared by every
//! `namespaces` backend of the process, and printed by `lodge doctor` ([`HostReport`]).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::cgroup::CgroupRoots;
use crate::helper::probe::{HelperFindings, NAMESPACES};
use crate::launch::{LaunchRequest, launch, prepare_plan};
use crate::options::{HelperCommand, NamespacesOptions};
use crate::seccomp::{self, Filters};
use crate::{Limits, SandboxError, SandboxId};

/// Everything the `namespaces` backend learned about the host at startup.
#[derive(Debug)]
pub struct Host {
    pub(crate) helper: HelperCommand,
    pub(crate) cgroups: CgroupRoots,
    pub(crate) seccomp: Filters,
    pub(crate) landlock: bool,
    pub(crate) root_dir: PathBuf,
    report: HostReport,
}

/// One kernel feature and whether this host has it.
#[derive(Clone, Debug)]
pub struct Feature {
    /// Short name, e.g. `user namespaces`.
    pub name: &'static str,
    /// `Ok(detail)` when available, else `Err(why not)`.
    pub status: Result<String, String>,
    /// Whether the `namespaces` backend cannot run without it.
    pub required: bool,
    /// What happens without it.
    pub without: &'static str,
}

/// The probe's findings, for `lodge doctor` and for the fallback message of `lodge serve`.
#[derive(Clone, Debug)]
pub struct HostReport {
    /// `uname -sr`.
    pub kernel: String,
    /// Lodge's effective uid.
    pub euid: u32,
    /// Each feature, in report order.
    pub features: Vec<Feature>,
    /// Cgroup controllers (`memory`, `cpu`, `pids`): where, or why not.
    pub cgroups: CgroupRoots,
    /// The end-to-end trial: how long a complete sandbox took to run `true`, or its error.
    pub trial: Option<Result<Duration, String>>,
    /// Whether the `namespaces` backend can run here, else what is missing.
    pub namespaces: Result<(), String>,
}

impl Host {
    /// Probes the host (takes tens of milliseconds: run it once, at startup, before
    /// threads are started — it may move Lodge into a cgroup leaf on cgroup v2).
    pub fn probe(helper: HelperCommand) -> Host {
        let euid = nix::unistd::geteuid().as_raw();
        let kernel = nix::sys::utsname::uname()
            .map(|u| {
                format!(
                    "{} {}",
                    u.sysname().to_string_lossy(),
                    u.release().to_string_lossy()
                )
            })
            .unwrap_or_else(|_| "unknown".into());
        let findings = run_helper_probe(&helper);
        let cgroups = if euid == 0 {
            CgroupRoots::detect()
        } else {
            CgroupRoots::none("Lodge does not run as root")
        };
        let seccomp_filters = seccomp::build();
        let mut features = Vec::new();
        for (key, name, _, required, without) in NAMESPACES {
            let status = match &findings {
                Ok(f) => match f.namespaces.get(key) {
                    Some(None) => Ok(String::new()),
                    Some(Some(e)) => Err(e.clone()),
                    None => Err("not probed".into()),
                },
                Err(e) => Err(e.clone()),
            };
            features.push(Feature {
                name,
                status,
                required,
                without,
            });
        }
        let helper_status = |get: &dyn Fn(&HelperFindings) -> Option<String>| match &findings {
            Ok(f) => get(f).map_or(Ok(String::new()), Err),
            Err(e) => Err(e.clone()),
        };
        features.push(Feature {
            name: "no_new_privs",
            status: helper_status(&|f| f.no_new_privs.clone()),
            required: true,
            without: "no sandbox: setuid programs could regain privileges",
        });
        let seccomp_status = match (&seccomp_filters, helper_status(&|f| f.seccomp.clone())) {
            (Err(e), _) => Err(e.clone()),
            (Ok(f), Ok(_)) => Ok(format!("{} filters", f.len())),
            (Ok(_), Err(e)) => Err(e),
        };
        let seccomp_ok = seccomp_status.is_ok();
        features.push(Feature {
            name: "seccomp filters",
            status: seccomp_status,
            required: false,
            without: "no system-call deny-list; the server still has no capabilities and \
                      its user namespace owns none of its other namespaces",
        });
        let landlock_status = match &findings {
            Ok(f) => match &f.landlock {
                Ok(abi) => Ok(format!("ABI {abi}")),
                Err(e) => Err(e.clone()),
            },
            Err(e) => Err(e.clone()),
        };
        let landlock = landlock_status.is_ok();
        features.push(Feature {
            name: "landlock",
            status: landlock_status,
            required: false,
            without: "writes are confined by the read-only mounts only (the server can \
                      still write where the mount namespace shows a writable path)",
        });

        let root_dir = std::env::temp_dir().join(format!(".lodge-sandbox-root-{euid}"));
        let mut missing: Vec<String> = features
            .iter()
            .filter(|f| f.required)
            .filter_map(|f| f.status.as_ref().err().map(|e| format!("{} ({e})", f.name)))
            .collect();
        if euid != 0 {
            missing.insert(
                0,
                format!(
                    "root privileges (Lodge runs as uid {euid}; the namespaces backend needs root, rootless mode is not implemented)"
                ),
            );
        }
        if let Err(e) = ensure_root_dir(&root_dir) {
            missing.push(format!("a mount point for sandbox roots ({e})"));
        }
        let mut host = Host {
            helper,
            cgroups,
            seccomp: if seccomp_ok {
                seccomp_filters.unwrap_or_default()
            } else {
                Vec::new()
            },
            landlock,
            root_dir,
            report: HostReport {
                kernel,
                euid,
                features,
                cgroups: CgroupRoots::none(""),
                trial: None,
                namespaces: Ok(()),
            },
        };
        host.report.cgroups = host.cgroups.clone();
        if missing.is_empty() {
            let trial = host.trial();
            if let Err(e) = &trial {
                missing.push(format!("a trial sandbox failed: {e}"));
            }
            host.report.trial = Some(trial);
        }
        if !missing.is_empty() {
            host.report.namespaces = Err(format!("missing: {}", missing.join("; ")));
        }
        host
    }

    /// A host on which the `namespaces` backend is unavailable for `why`, without probing.
    pub fn unavailable(helper: HelperCommand, why: &str) -> Host {
        Host {
            helper,
            cgroups: CgroupRoots::none(why),
            seccomp: Vec::new(),
            landlock: false,
            root_dir: PathBuf::new(),
            report: HostReport {
                kernel: String::new(),
                euid: nix::unistd::geteuid().as_raw(),
                features: Vec::new(),
                cgroups: CgroupRoots::none(why),
                trial: None,
                namespaces: Err(why.to_owned()),
            },
        }
    }

    /// The probe's findings.
    pub fn report(&self) -> &HostReport {
        &self.report
    }

    /// Whether the `namespaces` backend can run here, else what is missing.
    pub fn namespaces_supported(&self) -> Result<(), String> {
        self.report.namespaces.clone()
    }

    /// Whether every limit set in `limits` can be enforced here.
    pub fn check_limits(&self, limits: &Limits) -> Result<(), String> {
        self.cgroups.check(limits)
    }

    /// Runs `true` in a complete sandbox, through the same [`launch`] as every session
    /// (with a pids cgroup when the host has the controller).
    fn trial(&self) -> Result<Duration, String> {
        let started = Instant::now();
        let command = ["true".to_owned()];
        let plan = prepare_plan(self, &NamespacesOptions::default(), &command)
            .map_err(|e| e.to_string())?;
        let scratch_root =
            std::env::temp_dir().join(format!(".lodge-probe-{}", std::process::id()));
        let with_pids = Limits {
            pids: self.cgroups.get("pids").ok().map(|_| 16),
            ..Limits::default()
        };
        let env = BTreeMap::new();
        let start = |limits: &Limits| {
            let request = LaunchRequest {
                program: "true",
                sandbox_id: SandboxId::mint(),
                scratch_root: &scratch_root,
                env: &env,
                limits,
                kept: None,
            };
            launch(self, &plan, request, |mut cmd| cmd.spawn())
        };
        // A cgroup that cannot be made only stops sessions that set limits: the trial
        // then runs without one, as such a session would.
        let launched = match start(&with_pids) {
            Err(SandboxError::Limits { .. }) => start(&Limits::default()),
            other => other,
        };
        let outcome = launched.map_err(|e| e.to_string()).and_then(|launched| {
            let out = launched.child.wait_with_output();
            drop(launched.scratch);
            if let Some(mut cg) = launched.cgroup {
                cg.remove(Duration::from_secs(2));
            }
            out.map_err(|e| format!("waiting for the sandbox helper: {e}"))
        });
        let _ = std::fs::remove_dir(&scratch_root);
        let out = outcome?;
        if out.status.success() {
            Ok(started.elapsed())
        } else {
            let stderr = String::from_utf8_lossy(&out.stderr);
            Err(format!(
                "{}: {}",
                out.status,
                stderr.trim().lines().last().unwrap_or("no output")
            ))
        }
    }
}

fn ensure_root_dir(dir: &std::path::Path) -> Result<(), String> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("cannot create {}: {e}", dir.display())),
    }
    let meta = std::fs::symlink_metadata(dir).map_err(|e| e.to_string())?;
    if !meta.is_dir() || meta.uid() != nix::unistd::geteuid().as_raw() {
        return Err(format!(
            "{} is not a directory owned by Lodge's user",
            dir.display()
        ));
    }
    Ok(())
}

fn run_helper_probe(helper: &HelperCommand) -> Result<HelperFindings, String> {
    let out = Command::new(&helper.program)
        .args(&helper.args)
        .arg("probe")
        .env_clear()
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| {
            format!(
                "cannot run the sandbox helper {}: {e}",
                helper.program.display()
            )
        })?;
    if !out.status.success() {
        return Err(format!(
            "the sandbox helper failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| {
        format!(
            "the sandbox helper {} printed no probe result ({e})",
            helper.program.display()
        )
    })
}

impl HostReport {
    /// The backend `lodge serve` picks by default, and why.
    pub fn default_backend(&self) -> (&'static str, String) {
        match &self.namespaces {
            Ok(()) => (
                "namespaces",
                "every feature it needs works here (a trial sandbox ran)".to_owned(),
            ),
            Err(why) => (
                "process",
                format!("the namespaces backend is unavailable: {why}"),
            ),
        }
    }
}

impl fmt::Display for HostReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let user = if self.euid == 0 {
            "root".to_owned()
        } else {
            format!("uid {}", self.euid)
        };
        writeln!(f, "host: {}, Lodge runs as {user}", self.kernel)?;
        writeln!(f)?;
        writeln!(f, "isolation features:")?;
        for feat in &self.features {
            match &feat.status {
                Ok(detail) if detail.is_empty() => writeln!(f, "  {:<20} yes", feat.name)?,
                Ok(detail) => writeln!(f, "  {:<20} yes ({detail})", feat.name)?,
                Err(why) => {
                    let need = if feat.required {
                        "required"
                    } else {
                        "optional"
                    };
                    writeln!(f, "  {:<20} NO ({need}): {why}", feat.name)?;
                    writeln!(f, "  {:<20}   without it: {}", "", feat.without)?;
                }
            }
        }
        writeln!(f)?;
        writeln!(f, "cgroup controllers for limits (memory, cpus, pids):")?;
        for (name, status) in &self.cgroups.controllers {
            match status {
                Ok(root) => writeln!(
                    f,
                    "  {name:<20} yes (cgroup {} at {})",
                    root.version,
                    root.dir.display()
                )?,
                Err(why) => writeln!(
                    f,
                    "  {name:<20} NO: {why}\n  {:<20}   without it: servers that set this limit do not start",
                    ""
                )?,
            }
        }
        if let Some(trial) = &self.trial {
            writeln!(f)?;
            match trial {
                Ok(took) => writeln!(
                    f,
                    "trial sandbox: ran `true` in a complete sandbox in {} ms",
                    took.as_millis()
                )?,
                Err(e) => writeln!(f, "trial sandbox: FAILED: {e}")?,
            }
        }
        let (backend, why) = self.default_backend();
        writeln!(f)?;
        write!(f, "lodge serve will use: {backend} ({why})")
    }
}
