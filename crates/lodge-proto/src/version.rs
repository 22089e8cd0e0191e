//! MCP protocol revisions Lodge knows.

/// Revisions that use the `initialize` handshake and stateful sessions, oldest first.
pub const LEGACY: &[&str] = &["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];

/// What a request without `MCP-Protocol-Version` is assumed to speak (transport spec).
pub const ASSUMED_WITHOUT_HEADER: &str = "2025-03-26";

/// Stateless revisions Lodge serves.
pub const MODERN: &[&str] = &["2026-07-28"];

pub fn is_modern(version: &str) -> bool {
    MODERN.contains(&version)
}

pub fn is_legacy(version: &str) -> bool {
    LEGACY.contains(&version)
}

/// JSON-RPC batches were part of 2025-03-26 only; 2025-06-18 removed them.
/// Revision strings are dates, so they order lexically.
pub fn allows_batches(version: &str) -> bool {
    version <= "2025-03-26"
}
