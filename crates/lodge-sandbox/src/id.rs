//! [`SandboxId`]: the name of one sandbox, minted here and nowhere else.
//!
//! It is not a session id. The runtime maps its sessions to sandboxes; a session's public
//! id is the runtime's to mint and may change shape (a sealed token in cluster mode)
//! without touching sandboxes, and one sandbox may outlive or serve more than one session
//! (warm pools, principal continuity). The names a sandbox leaves on the host (its scratch
//! directory, its cgroups) are derived from its id by their own functions
//! (`scratch::ScratchName`, `cgroup::CgroupName`), so each can change alone.

use std::fmt;

/// The id of one sandbox: 128 random bits, shown as 32 lowercase hex digits (in logs, as
/// the `sandbox` field). Always usable as a single path component.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SandboxId([u8; 16]);

impl SandboxId {
    /// A fresh id from the OS-seeded CSPRNG: two sandboxes, even of different Lodge
    /// processes on one host (which share the cgroup tree), never get the same one.
    pub fn mint() -> Self {
        SandboxId(rand::random())
    }

    /// Its 128 bits (a session token carries them).
    pub fn bytes(&self) -> [u8; 16] {
        self.0
    }

    /// The 32 lowercase hex digits.
    pub(crate) fn hex(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for SandboxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for SandboxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SandboxId({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_as_32_lowercase_hex_digits() {
        let id = SandboxId([0xab; 16]);
        assert_eq!(id.to_string(), "ab".repeat(16));
        assert_eq!(format!("{id:?}"), format!("SandboxId({})", "ab".repeat(16)));
        let id = SandboxId([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 255]);
        assert_eq!(id.hex(), "000102030405060708090a0b0c0d0eff");
    }

    #[test]
    fn minted_ids_differ() {
        let ids: std::collections::HashSet<SandboxId> =
            (0..1000).map(|_| SandboxId::mint()).collect();
        assert_eq!(ids.len(), 1000);
    }
}
