//! One hosted server's settings: a `[[server]]` section (or `--demo`, or a command
//! after `--`) checked and resolved, without touching the host.

use super::backend::{self, BackendKind};
use super::file::{QuotaSection, ServerSection};
use anyhow::{Context, bail};
use lodge_runtime::{
    Anonymous, Continuity, DEFAULT_STORAGE_TTL, Protocol, Quota, ServerSpec, Storage, Transport,
};
use lodge_sandbox::{Backend, BindMount, Disk, Limits, NamespacesOptions, Network};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// A server as configured: everything its [`ServerSpec`] needs but the backend itself.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub name: String,
    pub command: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub limits: Limits,
    pub protocol: Protocol,
    pub anonymous: Anonymous,
    pub warm_pool: usize,
    pub transport: Transport,
    /// What one principal may start of it.
    pub quota: Quota,
    /// Whether one principal's requests share one sandbox.
    pub continuity: Continuity,
    /// Whose `/session` files these are, and how long kept ones last unused.
    pub storage: Storage,
    pub storage_ttl: Duration,
    /// The backend it runs in, after `--backend` / `LODGE_BACKEND`; `None`: the host's
    /// default (namespaces where it can run, else process).
    pub backend: Option<BackendKind>,
    /// Its `namespaces` options; `hide` is filled in when the backend is built.
    pub sandbox: NamespacesOptions,
}

impl ServerConfig {
    /// A stdio server with every setting at its default (`--demo`, `-- COMMAND`).
    pub(super) fn plain(name: &str, command: Vec<String>, backend: Option<BackendKind>) -> Self {
        ServerConfig {
            name: name.into(),
            command,
            env: BTreeMap::new(),
            limits: Limits::default(),
            protocol: Protocol::Auto,
            anonymous: Anonymous::Fresh,
            warm_pool: 0,
            transport: Transport::Stdio,
            quota: Quota::default(),
            continuity: Continuity::Session,
            storage: Storage::Session,
            storage_ttl: DEFAULT_STORAGE_TTL,
            backend,
            sandbox: NamespacesOptions::default(),
        }
    }

    /// With `[quota]` applied.
    pub(super) fn with_quota(mut self, quota: QuotaSection) -> Self {
        self.quota = super::auth::quota(quota, None);
        self
    }

    /// Checks a `[[server]]` section; relative paths in its command resolve from
    /// `config_dir`. `every_server` is `--backend` / `LODGE_BACKEND`; its own
    /// `quota` keys override `[quota]`'s.
    pub(super) fn from_section(
        section: ServerSection,
        config_dir: &Path,
        every_server: Option<BackendKind>,
        quota: QuotaSection,
    ) -> anyhow::Result<Self> {
        let name = section.name;
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            bail!(
                "server name {name:?} must be non-empty letters, digits, '-' or '_' (it becomes /mcp/{name})"
            );
        }
        if section.command.is_empty() {
            bail!("server {name:?} has an empty command");
        }
        let transport = transport(
            &name,
            section.transport.as_deref(),
            section.port,
            section.path.as_deref(),
        )?;
        let sandbox = section.sandbox;
        let memory = sandbox
            .memory
            .as_deref()
            .map(parse_bytes)
            .transpose()
            .with_context(|| format!("server {name:?}: invalid sandbox.memory"))?;
        let file_size = sandbox
            .file_size
            .as_deref()
            .map(parse_bytes)
            .transpose()
            .with_context(|| format!("server {name:?}: invalid sandbox.file_size"))?;
        if sandbox.open_files == Some(0) {
            bail!("server {name:?}: sandbox.open_files must be at least 1");
        }
        let (disk, inodes) = disk_limits(&name, sandbox.disk.as_deref(), sandbox.inodes, memory)?;
        let limits = Limits {
            memory,
            cpus: sandbox.cpus,
            pids: sandbox.pids,
            open_files: sandbox.open_files,
            file_size,
            disk,
            inodes,
        };
        let own_backend = sandbox
            .backend
            .as_deref()
            .map(str::parse::<BackendKind>)
            .transpose()
            .map_err(|e| anyhow::anyhow!("server {name:?}: sandbox.backend: {e}"))?;
        let backend = backend::resolve(every_server, own_backend);
        let network = sandbox
            .network
            .as_deref()
            .map(str::parse::<Network>)
            .transpose()
            .map_err(|e| anyhow::anyhow!("server {name:?}: sandbox.network: {e}"))?
            .unwrap_or_default();
        let binds = sandbox
            .binds
            .iter()
            .map(|b| b.parse::<BindMount>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow::anyhow!("server {name:?}: sandbox.binds: {e}"))?;
        if backend == Some(BackendKind::Process) && (sandbox.rootfs.is_some() || !binds.is_empty())
        {
            bail!("server {name:?}: sandbox.rootfs and sandbox.binds need the namespaces backend");
        }
        let storage_ttl = section.storage_ttl.unwrap_or(DEFAULT_STORAGE_TTL);
        if storage_ttl.is_zero() {
            bail!("server {name:?}: storage_ttl must be more than 0");
        }
        Ok(ServerConfig {
            command: absolutize_paths(section.command, config_dir),
            continuity: section.continuity,
            storage: section.storage,
            storage_ttl,
            env: section.env,
            limits,
            protocol: section.protocol,
            anonymous: section.anonymous,
            warm_pool: section.warm_pool,
            quota: super::auth::quota(quota, section.quota),
            transport,
            backend,
            sandbox: NamespacesOptions {
                network,
                rootfs: sandbox.rootfs,
                binds,
                hide: Vec::new(),
            },
            name,
        })
    }

    /// The runtime's spec of this server, running in `backend`.
    pub(super) fn spec(&self, backend: Arc<dyn Backend>) -> ServerSpec {
        ServerSpec {
            name: self.name.clone(),
            command: self.command.clone(),
            env: self.env.clone(),
            limits: self.limits.clone(),
            backend,
            protocol: self.protocol,
            anonymous: self.anonymous,
            warm_pool: self.warm_pool,
            transport: self.transport.clone(),
            quota: self.quota,
            continuity: self.continuity,
            storage: self.storage,
            storage_ttl: self.storage_ttl,
        }
    }
}

fn transport(
    name: &str,
    transport: Option<&str>,
    port: Option<u16>,
    path: Option<&str>,
) -> anyhow::Result<Transport> {
    match transport {
        None | Some("stdio") => {
            if port.is_some() || path.is_some() {
                bail!("server {name:?}: port and path are for transport = \"http\"");
            }
            Ok(Transport::Stdio)
        }
        Some("http") => {
            let path = path.unwrap_or("/mcp");
            if !path.starts_with('/') {
                bail!("server {name:?}: path {path:?} must start with /");
            }
            if port == Some(0) {
                bail!("server {name:?}: port must not be 0");
            }
            Ok(Transport::Http {
                port: port.unwrap_or(8000),
                path: path.to_string(),
            })
        }
        Some(other) => {
            bail!("server {name:?}: unknown transport {other:?}; expected stdio or http")
        }
    }
}

/// The server runs in its own scratch directory, so arguments naming files relative
/// to where the user started Lodge (or to the config file) are made absolute.
pub(super) fn absolutize_paths(command: Vec<String>, base: &Path) -> Vec<String> {
    command
        .into_iter()
        .enumerate()
        .map(|(i, arg)| {
            let path = Path::new(&arg);
            let looks_like_path = i > 0 || arg.contains('/');
            if looks_like_path
                && path.is_relative()
                && !arg.starts_with('-')
                && base.join(path).exists()
            {
                base.join(path).display().to_string()
            } else {
                arg
            }
        })
        .collect()
}

/// `512MiB`, `1GiB`, `800M`, `4096` → bytes.
pub(super) fn parse_bytes(text: &str) -> anyhow::Result<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .with_context(|| format!("{text:?} is not a size like 512MiB"))?;
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "K" | "KB" | "KiB" => 1 << 10,
        "M" | "MB" | "MiB" => 1 << 20,
        "G" | "GB" | "GiB" => 1 << 30,
        other => bail!("unknown size unit {other:?} in {text:?}; use KiB, MiB or GiB"),
    };
    number
        .checked_mul(factor)
        .with_context(|| format!("{text:?} is too large"))
}

/// `sandbox.disk` and `sandbox.inodes`, checked against `memory`: `/session` is a tmpfs
/// held in the session's memory, so a `disk` above `memory` would end in an
/// out-of-memory kill where the server should see ENOSPC.
fn disk_limits(
    name: &str,
    disk: Option<&str>,
    inodes: Option<u64>,
    memory: Option<u64>,
) -> anyhow::Result<(Disk, Option<u64>)> {
    let disk = match disk {
        None => Disk::Default,
        Some("unlimited") => Disk::Unlimited,
        Some(text) => Disk::Limited(
            parse_bytes(text).with_context(|| format!("server {name:?}: invalid sandbox.disk"))?,
        ),
    };
    match (disk, memory) {
        (Disk::Limited(0), _) => bail!("server {name:?}: sandbox.disk must be more than 0 bytes"),
        (Disk::Limited(bytes), Some(memory)) if bytes > memory => bail!(
            "server {name:?}: sandbox.disk ({bytes} bytes) is larger than sandbox.memory \
             ({memory} bytes); /session is held in the session's memory, so lower \
             sandbox.disk or raise sandbox.memory"
        ),
        (Disk::Unlimited, _) if inodes.is_some() => bail!(
            "server {name:?}: sandbox.inodes limits /session, which sandbox.disk = \"unlimited\" \
             leaves a plain directory; drop one of them"
        ),
        _ => {}
    }
    if inodes == Some(0) {
        bail!("server {name:?}: sandbox.inodes must be at least 1");
    }
    Ok((disk, inodes))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn disk_and_inodes_parse_with_defaults_and_fit_in_memory() {
        let limits = |disk, inodes, memory| disk_limits("s", disk, inodes, memory);
        let (disk, inodes) = limits(None, None, Some(256 << 20)).unwrap();
        let default = Limits {
            memory: Some(256 << 20),
            disk,
            inodes,
            ..Limits::default()
        };
        assert_eq!(default.scratch_limits(), Some((128 << 20, 65_536)));
        assert_eq!(
            Limits::default().scratch_limits(),
            Some((1 << 30, 65_536)),
            "no memory limit"
        );
        assert_eq!(
            limits(Some("64MiB"), Some(100), Some(256 << 20)).unwrap(),
            (Disk::Limited(64 << 20), Some(100))
        );
        assert_eq!(
            limits(Some("unlimited"), None, None).unwrap(),
            (Disk::Unlimited, None)
        );
        for (disk, inodes, memory, says) in [
            (
                Some("1GiB"),
                None,
                Some(256 << 20),
                "larger than sandbox.memory",
            ),
            (Some("0"), None, None, "more than 0 bytes"),
            (Some("unlimited"), Some(10), None, "drop one of them"),
            (None, Some(0), None, "at least 1"),
            (Some("lots"), None, None, "invalid sandbox.disk"),
        ] {
            let error = format!("{:#}", limits(disk, inodes, memory).unwrap_err());
            assert!(error.contains(says), "{error}");
        }
    }

    fn section(extra: &str) -> anyhow::Result<ServerConfig> {
        let text = format!("name = \"s\"\ncommand = [\"cat\"]\n{extra}");
        let section: ServerSection = toml::from_str(&text)?;
        ServerConfig::from_section(section, Path::new("/"), None, Default::default())
    }

    #[test]
    fn storage_and_its_ttl_parse_with_defaults() {
        let plain = section("").unwrap();
        assert_eq!(
            (plain.storage, plain.storage_ttl),
            (Storage::Session, DEFAULT_STORAGE_TTL)
        );
        assert_eq!(DEFAULT_STORAGE_TTL, Duration::from_secs(14 * 86_400));
        assert_eq!(plain.continuity, Continuity::Session);
        let kept =
            section("storage = \"principal\"\nstorage_ttl = \"2h\"\ncontinuity = \"principal\"")
                .unwrap();
        assert_eq!(kept.continuity, Continuity::Principal);
        assert_eq!(
            (kept.storage, kept.storage_ttl),
            (Storage::Principal, Duration::from_secs(7200))
        );
        for (extra, says) in [
            ("storage = \"user\"", "unknown variant"),
            ("continuity = \"user\"", "unknown variant"),
            ("storage_ttl = \"0s\"", "more than 0"),
            ("storage_ttl = \"soon\"", "storage_ttl"),
        ] {
            let error = format!("{:#}", section(extra).unwrap_err());
            assert!(error.contains(says), "{extra}: {error}");
        }
    }
}
