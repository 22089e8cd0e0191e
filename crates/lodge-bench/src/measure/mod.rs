//! The measurements: one module each, each reporting Lodge against a baseline
//! measured in the same run, interleaved with it so noise hits both alike.
//!
//! To add one (throughput, memory per session, churn...):
//! a module with `async fn run(ctx: &Ctx, counts: Counts) -> anyhow::Result<Vec<Row>>`,
//! a variant in [`Which`], and its counts in [`Which::counts`].

mod auth;
mod backends;
mod churn;
mod cold_start;
mod elicitation;
mod load;
mod memory;
mod modern;
mod pipelined;
mod relay;
mod switched;
mod throughput;
mod warm_pool;

use crate::http::McpHttp;
use crate::lodge::LodgeServer;
use crate::report::Row;
use std::path::PathBuf;

/// What every measurement may use: one Lodge hosting the demo server, one HTTP
/// client (connections reused), and the `lodge` binary for direct baselines.
pub struct Ctx {
    pub lodge_bin: PathBuf,
    pub lodge: LodgeServer,
    pub http: McpHttp,
    /// Working directory for directly spawned servers.
    pub scratch: tempfile::TempDir,
}

#[derive(Clone, Copy, Debug)]
pub struct Counts {
    /// Untimed rounds first (page cache, allocator, connection pool, branch predictors).
    pub warmup: usize,
    /// Timed rounds (each: one Lodge sample and one baseline sample).
    pub iterations: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Which {
    /// New session per round: initialize through Lodge vs. spawn + initialize on stdio.
    ColdStart,
    /// tools/call echo round trips in one session: through Lodge vs. direct stdio.
    Relay,
    /// 2026-07-28 via Lodge vs. legacy via Lodge: stateless echo (Lodge-Session-Id),
    /// and plan_trip over the MRTR bridge vs. the legacy elicitation + sampling flow.
    Modern,
    /// New session per round from a second Lodge with `warm_pool = 2`, vs. direct
    /// spawn + initialize and initialize on a server spawned ahead.
    WarmPool,
    /// tools/call plan_trip answered `decline` (one form elicitation, then the result):
    /// via Lodge (legacy SSE, and 2026-07-28 MRTR) vs. direct stdio and rmcp's HTTP server.
    Elicitation,
    /// Calls/s of tools/call echo, C concurrent callers over S sessions: through Lodge
    /// vs. the same callers pipelining to S direct stdio servers, in alternating slices.
    Throughput,
    /// Sessions created and ended per second by 1 and 8 workers: through Lodge vs.
    /// spawn + initialize + close on stdio. Rounds are slices of each variant.
    Churn,
    /// Lodge's own memory and host memory per idle session; `iterations` is the most
    /// sessions opened (a tenth first), `warmup` sessions are opened and ended first.
    Memory,
    /// tools/call echo round trips through a Lodge with `[auth]` (a JWT verified on
    /// every request with cached keys; an opaque token from a warm introspection cache)
    /// vs. the main Lodge with auth off.
    Auth,
    /// tools/call echo round trips through a Lodge writing an audit log vs. one without.
    Audit,
    /// tools/call echo round trips through a Lodge exporting its spans over OTLP vs.
    /// one without.
    Otlp,
}

impl Which {
    pub const ALL: [Which; 11] = [
        Which::ColdStart,
        Which::WarmPool,
        Which::Relay,
        Which::Modern,
        Which::Elicitation,
        Which::Throughput,
        Which::Churn,
        Which::Memory,
        Which::Auth,
        Which::Audit,
        Which::Otlp,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Which::ColdStart => "cold-start",
            Which::Relay => "relay",
            Which::Modern => "modern",
            Which::WarmPool => "warm-pool",
            Which::Elicitation => "elicitation",
            Which::Throughput => "throughput",
            Which::Churn => "churn",
            Which::Memory => "memory",
            Which::Auth => "auth",
            Which::Audit => "audit",
            Which::Otlp => "otlp",
        }
    }

    pub fn counts(self, quick: bool) -> Counts {
        match (self, quick) {
            (Which::ColdStart, false) => Counts {
                warmup: 5,
                iterations: 200,
            },
            (Which::ColdStart, true) => Counts {
                warmup: 2,
                iterations: 20,
            },
            (Which::Relay | Which::Auth | Which::Audit | Which::Otlp, false) => Counts {
                warmup: 50,
                iterations: 2000,
            },
            (Which::Relay | Which::Auth | Which::Audit | Which::Otlp, true) => Counts {
                warmup: 10,
                iterations: 50,
            },
            (Which::WarmPool, false) => Counts {
                warmup: 5,
                iterations: 200,
            },
            (Which::WarmPool, true) => Counts {
                warmup: 2,
                iterations: 20,
            },
            (Which::Modern, false) => Counts {
                warmup: 50,
                iterations: 1000,
            },
            (Which::Modern, true) => Counts {
                warmup: 5,
                iterations: 20,
            },
            (Which::Elicitation, false) => Counts {
                warmup: 50,
                iterations: 1000,
            },
            (Which::Elicitation, true) => Counts {
                warmup: 5,
                iterations: 20,
            },
            // Rounds of 250 ms slices (7 per round).
            (Which::Throughput, false) => Counts {
                warmup: 2,
                iterations: 16,
            },
            (Which::Throughput, true) => Counts {
                warmup: 0,
                iterations: 1,
            },
            // Rounds of 500 ms slices (4 or 6 per round).
            (Which::Churn, false) => Counts {
                warmup: 1,
                iterations: 8,
            },
            (Which::Churn, true) => Counts {
                warmup: 0,
                iterations: 1,
            },
            // Sessions: a tenth of `iterations` first, then all of them.
            (Which::Memory, false) => Counts {
                warmup: 20,
                iterations: 10_000,
            },
            (Which::Memory, true) => Counts {
                warmup: 5,
                iterations: 200,
            },
        }
    }

    pub async fn run(self, ctx: &Ctx, counts: Counts) -> anyhow::Result<Vec<Row>> {
        match self {
            Which::ColdStart => cold_start::run(ctx, counts).await,
            Which::Relay => relay::run(ctx, counts).await,
            Which::Modern => modern::run(ctx, counts).await,
            Which::WarmPool => warm_pool::run(ctx, counts).await,
            Which::Elicitation => elicitation::run(ctx, counts).await,
            Which::Throughput => throughput::run(ctx, counts).await,
            Which::Churn => churn::run(ctx, counts).await,
            Which::Memory => memory::run(ctx, counts).await,
            Which::Auth => auth::run(ctx, counts).await,
            Which::Audit => switched::run(ctx, counts, switched::Switch::Audit).await,
            Which::Otlp => switched::run(ctx, counts, switched::Switch::Otlp).await,
        }
    }
}
