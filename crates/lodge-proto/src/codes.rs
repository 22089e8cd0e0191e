//! JSON-RPC error codes Lodge emits. -32000..-32019 are ours (JSON-RPC leaves
//! -32000..-32099 to implementations; MCP 2026-07-28 claims -32020 and up).

pub const PARSE_ERROR: i64 = -32700;
pub const INVALID_REQUEST: i64 = -32600;
pub const METHOD_NOT_FOUND: i64 = -32601;
pub const INVALID_PARAMS: i64 = -32602;
pub const INTERNAL_ERROR: i64 = -32603;

/// The session ended (or its server exited) while this request was pending.
pub const SESSION_ENDED: i64 = -32000;
/// The `Mcp-Session-Id` names no live session. The same code the reference servers use.
pub const SESSION_NOT_FOUND: i64 = -32001;
/// Lodge cannot take this request now (session limit, draining, server not reading).
pub const UNAVAILABLE: i64 = -32002;
/// The MCP server could not be started.
pub const SERVER_START_FAILED: i64 = -32003;
/// The MCP server did not answer the request in time (`[session] request_timeout`).
pub const REQUEST_TIMED_OUT: i64 = -32004;
/// No valid access token (HTTP 401; `WWW-Authenticate` says how to get one).
pub const UNAUTHORIZED: i64 = -32005;
/// A valid token that may not do this (HTTP 403: missing scope, client not allowed).
pub const FORBIDDEN: i64 = -32006;
/// A per-principal quota is used up (HTTP 429 with `Retry-After`).
pub const QUOTA_EXCEEDED: i64 = -32007;

/// 2026-07-28: mirrored HTTP headers missing or not matching the body.
pub const HEADER_MISMATCH: i64 = -32020;
/// 2026-07-28: the request needs a client capability it did not declare.
pub const MISSING_CLIENT_CAPABILITY: i64 = -32021;
/// 2026-07-28: the protocol version is not supported (`data.supported`).
pub const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;
