//! `storage = "principal"`: each user's `/session` files kept across sandboxes.
//!
//! A server's kept files live under the scratch root, at `kept/<server>/<digest>`, the
//! digest (SHA-256) of server, issuer and subject, each length-prefixed. A digest, not
//! the names: a subject may hold any character, and the directory must not tell who
//! uses the server to someone listing it. Under the scratch root because that is
//! already Lodge's own directory (0700) and hidden from every sandbox, as sessions'
//! scratch directories are. The copying, bounding and swapping is lodge-sandbox's
//! (`SandboxSpec::kept`); the runtime chooses the directory and sweeps old ones.

use crate::config::ServerSpec;
use crate::principal::Principal;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where a session's `/session` files live.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Storage {
    /// In the sandbox only: gone when it ends.
    #[default]
    Session,
    /// Kept per (server, principal) across sandboxes, until `storage_ttl` of disuse.
    /// The anonymous principal (no authentication) keeps nothing: as `Session`.
    Principal,
}

/// Files unused this long are removed, unless the server says otherwise.
pub const DEFAULT_STORAGE_TTL: Duration = Duration::from_secs(14 * 24 * 3600);

/// The longest between two sweeps of a server's kept files.
const SWEEP_EVERY: Duration = Duration::from_secs(3600);

/// The directory holding every kept store of `server`.
pub(crate) fn server_root(scratch_root: &Path, server: &str) -> PathBuf {
    scratch_root.join("kept").join(server)
}

/// The directory `principal`'s files of `server` are kept in, if they are kept.
pub(crate) fn kept_dir(
    scratch_root: &Path,
    spec: &ServerSpec,
    principal: &Principal,
) -> Option<PathBuf> {
    if spec.storage != Storage::Principal || principal.is_anonymous() {
        return None;
    }
    let mut digest = Sha256::new();
    for part in [spec.name.as_str(), principal.issuer(), principal.subject()] {
        digest.update((part.len() as u64).to_be_bytes());
        digest.update(part.as_bytes());
    }
    let hex: String = digest
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Some(server_root(scratch_root, &spec.name).join(hex))
}

/// How often a server's kept files are swept: often enough that nothing outlives its
/// TTL by much more than a tenth of it, at most hourly.
pub(crate) fn sweep_interval(ttl: Duration) -> Duration {
    (ttl / 10).clamp(Duration::from_secs(1), SWEEP_EVERY)
}

/// Sweeps one server's kept files (blocking).
pub(crate) fn sweep(scratch_root: &Path, spec: &ServerSpec, at_start: bool) {
    let root = server_root(scratch_root, &spec.name);
    match lodge_sandbox::sweep_kept(&root, spec.storage_ttl, at_start) {
        Ok(0) => {}
        Ok(n) => {
            tracing::info!(server = %spec.name, removed = n, "removed kept /session files unused for storage_ttl")
        }
        Err(error) => {
            tracing::warn!(server = %spec.name, %error, path = %root.display(), "cannot sweep kept /session files")
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn sweeps_come_often_enough_for_short_ttls_and_at_most_hourly() {
        assert_eq!(sweep_interval(DEFAULT_STORAGE_TTL), SWEEP_EVERY);
        assert_eq!(
            sweep_interval(Duration::from_secs(60)),
            Duration::from_secs(6)
        );
        assert_eq!(sweep_interval(Duration::ZERO), Duration::from_secs(1));
    }
}
