//! What the `namespaces` backend is configured with: per server ([`NamespacesOptions`]:
//! network, rootfs, extra binds, hidden paths) and per process ([`HelperCommand`]: how
//! to start the sandbox helper). Plain data with parsing for config files and flags; no
//! I/O, so the configuration layer can build and validate them anywhere.

use std::ffi::OsString;
use std::fmt;
use std::io;
use std::path::PathBuf;
use std::str::FromStr;

/// How to start the sandbox helper: a program and the arguments that make it run
/// [`run_helper`](crate::run_helper) (Lodge: its own binary and `sandbox-helper`).
#[derive(Clone, Debug)]
pub struct HelperCommand {
    /// The executable.
    pub program: PathBuf,
    /// Arguments before the helper's own (`run` / `probe`).
    pub args: Vec<OsString>,
}

impl HelperCommand {
    /// `program args…`.
    pub fn new<I, A>(program: impl Into<PathBuf>, args: I) -> Self
    where
        I: IntoIterator<Item = A>,
        A: Into<OsString>,
    {
        HelperCommand {
            program: program.into(),
            args: args.into_iter().map(Into::into).collect(),
        }
    }

    /// The running executable with `args` (for binaries that dispatch to
    /// [`run_helper`](crate::run_helper) themselves).
    pub fn current_exe<I, A>(args: I) -> io::Result<Self>
    where
        I: IntoIterator<Item = A>,
        A: Into<OsString>,
    {
        Ok(Self::new(std::env::current_exe()?, args))
    }
}

/// Network access of a sandbox.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Network {
    /// Its own network namespace with only loopback (the default).
    #[default]
    None,
    /// The host's network.
    Host,
}

impl FromStr for Network {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(Network::None),
            "host" => Ok(Network::Host),
            other => Err(format!("unknown network {other:?}; expected none or host")),
        }
    }
}

/// An extra bind mount: host `src` at `dst` inside the sandbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindMount {
    /// Host path.
    pub src: PathBuf,
    /// Path inside the sandbox.
    pub dst: PathBuf,
    /// Read-write (default read-only).
    pub writable: bool,
}

impl FromStr for BindMount {
    type Err = String;
    /// `SRC`, `SRC:DST`, `SRC:ro`, `SRC:DST:rw`… (DST defaults to SRC; mode to `ro`).
    fn from_str(s: &str) -> Result<Self, String> {
        let mut parts: Vec<&str> = s.split(':').collect();
        let writable = match parts.last() {
            Some(&"rw") if parts.len() > 1 => {
                parts.pop();
                true
            }
            Some(&"ro") if parts.len() > 1 => {
                parts.pop();
                false
            }
            _ => false,
        };
        let (src, dst) = match parts.as_slice() {
            [src] => (*src, *src),
            [src, dst] => (*src, *dst),
            _ => return Err(format!("bind {s:?}: expected SRC[:DST][:ro|rw]")),
        };
        if !src.starts_with('/') || !dst.starts_with('/') {
            return Err(format!("bind {s:?}: paths must be absolute"));
        }
        Ok(BindMount {
            src: src.into(),
            dst: dst.into(),
            writable,
        })
    }
}

impl fmt::Display for BindMount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = if self.writable { "rw" } else { "ro" };
        write!(f, "{}:{}:{mode}", self.src.display(), self.dst.display())
    }
}

/// Per-server settings of the `namespaces` backend.
#[derive(Clone, Debug, Default)]
pub struct NamespacesOptions {
    /// Loopback only (default) or the host's network.
    pub network: Network,
    /// Use this directory (e.g. an unpacked container image) as the root instead of the
    /// host's system directories.
    pub rootfs: Option<PathBuf>,
    /// Extra bind mounts.
    pub binds: Vec<BindMount>,
    /// Host paths that must never be readable inside even if a bind covers them (Lodge's
    /// config file, keys).
    pub hide: Vec<PathBuf>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn binds_parse_with_defaults_and_print_back() {
        let b: BindMount = "/data".parse().unwrap();
        assert_eq!(
            b,
            BindMount {
                src: "/data".into(),
                dst: "/data".into(),
                writable: false
            }
        );
        let b: BindMount = "/srv/out:/out:rw".parse().unwrap();
        assert_eq!((b.dst.to_str(), b.writable), (Some("/out"), true));
        assert_eq!(b.to_string(), "/srv/out:/out:rw");
        assert_eq!(
            "/m:ro".parse::<BindMount>().unwrap().to_string(),
            "/m:/m:ro"
        );
        assert_eq!(
            "rel:/x".parse::<BindMount>().unwrap_err(),
            "bind \"rel:/x\": paths must be absolute"
        );
        assert_eq!(
            "/a:/b:/c".parse::<BindMount>().unwrap_err(),
            "bind \"/a:/b:/c\": expected SRC[:DST][:ro|rw]"
        );
    }

    #[test]
    fn networks_parse() {
        assert_eq!("none".parse(), Ok(Network::None));
        assert_eq!("host".parse(), Ok(Network::Host));
        assert_eq!(
            "bridge".parse::<Network>(),
            Err("unknown network \"bridge\"; expected none or host".to_owned())
        );
    }
}
