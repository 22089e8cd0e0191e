//! HTTP header names of the MCP Streamable HTTP transport (lower case, as `http` wants).

pub const MCP_SESSION_ID: &str = "mcp-session-id";
pub const MCP_PROTOCOL_VERSION: &str = "mcp-protocol-version";
pub const LAST_EVENT_ID: &str = "last-event-id";
/// 2026-07-28 (SEP-2243): mirrors of the body's method and name.
pub const MCP_METHOD: &str = "mcp-method";
pub const MCP_NAME: &str = "mcp-name";
/// Lodge's own: names the runtime session (sandbox) a 2026-07-28 request runs in.
pub const LODGE_SESSION_ID: &str = "lodge-session-id";
/// Lodge's own, to an HTTP-transport server: the authenticated user of the session
/// and its token's issuer (the token itself never reaches a server).
pub const LODGE_PRINCIPAL: &str = "lodge-principal";
pub const LODGE_PRINCIPAL_ISSUER: &str = "lodge-principal-issuer";
