//! Lodge's integration tests: each module starts the real `lodge` binary, real MCP servers
//! and real clients. One test binary rather than one per file: each link of the whole
//! dependency tree costs time and hundreds of megabytes on disk.

mod common;

mod admin;
mod auth;
mod backends;
mod check;
mod clients;
mod cluster;
mod conformance_exact;
mod conformance_regressions;
mod connect;
mod connect_pty;
mod console;
mod containment;
mod containment_servers;
mod continuity;
mod faults;
mod front_limits;
mod http;
mod http_upstream;
mod lifecycle;
mod load;
mod malformed;
mod metrics;
mod modern;
mod otlp;
mod registry;
mod relay;
mod soak;
mod tenancy;
