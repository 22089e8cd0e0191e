//! Sandbox backends, per server. Loading the config only records which backend each
//! server asked for ([`BackendKind`], after `--backend` / `LODGE_BACKEND`); building the
//! backends, which probes the host, is a separate step `lodge serve` runs when it starts
//! serving ([`build_servers`]).

use super::{ServerConfig, Settings};
use anyhow::{Context, bail};
use lodge_runtime::ServerSpec;
use lodge_sandbox::{Backend, HelperCommand, Host, NamespacesBackend, ProcessBackend};
use std::str::FromStr;
use std::sync::Arc;

/// A sandbox backend a server can be given by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendKind {
    /// Its own process group, scratch directory and environment; no isolation.
    Process,
    /// Linux namespaces, a minimal read-only root, seccomp, Landlock, cgroup limits.
    Namespaces,
}

impl FromStr for BackendKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "process" => Ok(BackendKind::Process),
            "namespaces" => Ok(BackendKind::Namespaces),
            other => Err(format!(
                "unknown sandbox backend {other:?}; expected process or namespaces"
            )),
        }
    }
}

/// `--backend` / `LODGE_BACKEND` (for every server), else the server's own
/// `[server.sandbox] backend`, else `None`: the host's default.
pub(super) fn resolve(
    every_server: Option<BackendKind>,
    this_server: Option<BackendKind>,
) -> Option<BackendKind> {
    every_server.or(this_server)
}

/// How to run the sandbox helper: this binary's hidden `sandbox-helper` command.
pub fn sandbox_helper() -> anyhow::Result<HelperCommand> {
    HelperCommand::current_exe(["sandbox-helper"]).context("cannot find the lodge executable")
}

/// Probes the host for the `namespaces` backend. It takes tens of milliseconds and may
/// move Lodge into a cgroup leaf, so it runs once, before any thread is started.
pub fn probe_host() -> anyhow::Result<Host> {
    Ok(Host::probe(sandbox_helper()?))
}

/// Builds every server's sandbox backend: the step after [`Settings::load`] that looks
/// at the host. `probe` runs at most once, and only if some server may use
/// `namespaces`. A server with no backend named gets `namespaces` where the host can
/// run it, else `process`, said on stderr (never silently); a server that names
/// `namespaces` on a host that cannot run it is an error naming what is missing.
pub fn build_servers(
    settings: &Settings,
    probe: impl FnOnce() -> anyhow::Result<Host>,
) -> anyhow::Result<Vec<ServerSpec>> {
    let needs_host = settings
        .servers
        .iter()
        .any(|s| s.backend != Some(BackendKind::Process));
    let host = if needs_host {
        Some(Arc::new(probe()?))
    } else {
        None
    };
    let unsupported = host.as_ref().and_then(|h| h.namespaces_supported().err());
    let mut fell_back = Vec::new();
    let mut specs = Vec::with_capacity(settings.servers.len());
    for server in &settings.servers {
        let backend: Arc<dyn Backend> = match (server.backend, &host, &unsupported) {
            (Some(BackendKind::Process), ..) => process(server)?,
            (_, Some(host), None) => namespaces(server, host, settings)?,
            (Some(BackendKind::Namespaces), _, why) => bail!(
                "server {:?}: the namespaces sandbox backend cannot run on this host: {}\n(`lodge doctor` shows the details; --backend process runs servers without isolation)",
                server.name,
                why.as_deref().unwrap_or("it was not probed")
            ),
            (None, ..) => {
                fell_back.push(server.name.as_str());
                process(server)?
            }
        };
        specs.push(server.spec(backend));
    }
    if let (false, Some(why)) = (fell_back.is_empty(), &unsupported) {
        eprintln!(
            "lodge: {} on the process sandbox backend (no isolation): the namespaces backend cannot run here: {why}. Run `lodge doctor` for details.",
            match fell_back.as_slice() {
                [one] => format!("server {one:?} runs"),
                many => format!("servers {} run", many.join(", ")),
            }
        );
    }
    Ok(specs)
}

fn process(server: &ServerConfig) -> anyhow::Result<Arc<dyn Backend>> {
    if server.sandbox.rootfs.is_some() || !server.sandbox.binds.is_empty() {
        bail!(
            "server {:?}: sandbox.rootfs and sandbox.binds need the namespaces backend",
            server.name
        );
    }
    Ok(Arc::new(ProcessBackend))
}

fn namespaces(
    server: &ServerConfig,
    host: &Arc<Host>,
    settings: &Settings,
) -> anyhow::Result<Arc<dyn Backend>> {
    let mut options = server.sandbox.clone();
    options.hide = settings.config_file.iter().cloned().collect();
    let context = || format!("server {:?}", server.name);
    let backend = NamespacesBackend::new(host.clone(), options).with_context(context)?;
    backend.check_limits(&server.limits).with_context(context)?;
    // Compute the sandbox layout now; a command that cannot start (a typo) is reported
    // when a session starts, as with every backend.
    if let Err(e) = backend.prepare(&server.command) {
        tracing::warn!(server = %server.name, error = %e, command = ?server.command, "this server will not start");
    }
    Ok(Arc::new(backend))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::{Env, ServeArgs};
    use std::io::Write;

    fn load(config: &str) -> (Settings, tempfile::NamedTempFile) {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(config.as_bytes()).unwrap();
        let args = ServeArgs {
            config: Some(f.path().into()),
            ..ServeArgs::default()
        };
        (Settings::load(args, &Env(Default::default())).unwrap(), f)
    }

    fn server(name: &str, backend: Option<&str>) -> String {
        let backend = backend.map_or(String::new(), |b| {
            format!("[server.sandbox]\nbackend = {b:?}\n")
        });
        format!("[[server]]\nname = {name:?}\ncommand = [\"cat\"]\n{backend}")
    }

    /// A host where the namespaces backend cannot run, as an unprivileged one.
    fn no_namespaces() -> anyhow::Result<Host> {
        Ok(Host::unavailable(
            HelperCommand::new("lodge", ["sandbox-helper"]),
            "no user namespaces",
        ))
    }

    fn names(specs: &[ServerSpec]) -> Vec<(&str, &'static str)> {
        specs
            .iter()
            .map(|s| (s.name.as_str(), s.backend.name()))
            .collect()
    }

    #[test]
    fn process_servers_never_probe_the_host() {
        let (settings, _f) = load(&format!(
            "{}{}",
            server("a", Some("process")),
            server("b", Some("process"))
        ));
        let specs = build_servers(&settings, || panic!("probed the host")).unwrap();
        assert_eq!(names(&specs), [("a", "process"), ("b", "process")]);
    }

    #[test]
    fn without_namespaces_an_unnamed_backend_falls_back_and_a_named_one_fails() {
        let (settings, _f) = load(&format!(
            "{}{}",
            server("plain", Some("process")),
            server("unsaid", None)
        ));
        let mut probes = 0;
        let specs = build_servers(&settings, || {
            probes += 1;
            no_namespaces()
        })
        .unwrap();
        assert_eq!(probes, 1);
        assert_eq!(names(&specs), [("plain", "process"), ("unsaid", "process")]);

        let (settings, _f) = load(&format!(
            "{}{}",
            server("plain", Some("process")),
            server("boxed", Some("namespaces"))
        ));
        let err = build_servers(&settings, no_namespaces).err().unwrap();
        assert_eq!(
            format!("{err:#}"),
            "server \"boxed\": the namespaces sandbox backend cannot run on this host: no user namespaces\n(`lodge doctor` shows the details; --backend process runs servers without isolation)"
        );
    }

    #[test]
    fn a_probe_that_fails_stops_the_start() {
        let (settings, _f) = load(&server("unsaid", None));
        let err = build_servers(&settings, || {
            anyhow::bail!("cannot find the lodge executable")
        })
        .err()
        .unwrap();
        assert_eq!(err.to_string(), "cannot find the lodge executable");
    }
}
