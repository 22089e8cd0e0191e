//! `lodge-bench`: starts its own Lodge (hosting the bundled demo server) and measures
//! it against baselines taken in the same run, because the machines here are shared
//! and noisy: absolute numbers drift, ratios much less.
//!
//! `cargo run --release -p lodge-bench -- [--quick] [--iterations N] [--only relay]`
//!
//! Prints a Markdown table on stdout; progress and Lodge's own warnings go to stderr.

mod direct;
mod lodge;
mod mcp;
mod measure;
mod procfs;
mod python;
mod report;
mod rmcp_http;
mod stats;
mod stdio;

use anyhow::Context;
// The raw Streamable HTTP client is the test kit's, shared with the integration tests.
use clap::Parser;
use lodge_testkit::http;
use measure::{Ctx, Which};
use std::path::PathBuf;
use std::time::Instant;

#[derive(Parser, Debug)]
#[command(
    name = "lodge-bench",
    about = "Measure Lodge's cold start, relay, throughput, churn and memory against same-run baselines"
)]
struct Cli {
    /// Small counts, for CI: a few seconds in a debug build.
    #[arg(long)]
    quick: bool,
    /// Timed rounds for every selected measurement [default: cold-start 200 (Python
    /// server: a tenth), warm-pool 200, relay 2000, modern 1000, elicitation 1000,
    /// throughput 16 and churn 8 time slices; memory: 10000 sessions (a tenth first);
    /// with --quick 20, 20, 50, 20, 20, 1, 1 and 200].
    #[arg(long, value_name = "N")]
    iterations: Option<usize>,
    /// Untimed warm-up rounds first [default: cold-start 5, warm-pool 5, relay 50,
    /// modern 50, elicitation 50, throughput 2, churn 1, memory 20 sessions; with
    /// --quick 2, 2, 10, 5, 5, 0, 0 and 5].
    #[arg(long, value_name = "N")]
    warmup: Option<usize>,
    /// Sandbox backend of the main Lodge (relay, modern, elicitation, throughput)
    /// [default: Lodge's own default, namespaces where it works]. Cold start, warm pool,
    /// churn and memory start Lodges of their own for each backend they report.
    #[arg(long, value_name = "process|namespaces")]
    backend: Option<String>,
    /// Run only these measurements (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Which>,
    /// The `lodge` binary to measure [default: the one next to this executable,
    /// built first if running under cargo or missing].
    #[arg(long, value_name = "PATH")]
    lodge: Option<PathBuf>,
    /// Do not run `cargo build -p lodge` before measuring.
    #[arg(long)]
    no_build: bool,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let selected: Vec<Which> = if cli.only.is_empty() {
        Which::ALL.to_vec()
    } else {
        Which::ALL
            .into_iter()
            .filter(|w| cli.only.contains(w))
            .collect()
    };
    let (lodge_bin, build_warning) = lodge::locate(cli.lodge.clone(), !cli.no_build)?;
    let server = lodge::start(
        &lodge_bin,
        &lodge::Options {
            backend: cli.backend.clone(),
            ..lodge::Options::default()
        },
    )?;
    eprintln!(
        "lodge-bench: Lodge (pid {}) at {}",
        server.pid(),
        server.base
    );
    let mut ctx = Ctx {
        http: http::McpHttp::new(server.url())?,
        lodge: server,
        lodge_bin,
        scratch: tempfile::tempdir().context("cannot create a temp dir")?,
    };

    let mut rows = Vec::new();
    let mut plan = Vec::new();
    for which in selected {
        let mut counts = which.counts(cli.quick);
        counts.iterations = cli.iterations.unwrap_or(counts.iterations);
        counts.warmup = cli.warmup.unwrap_or(counts.warmup);
        eprintln!(
            "lodge-bench: {}: {} warm-up + {} timed rounds",
            which.name(),
            counts.warmup,
            counts.iterations
        );
        let start = Instant::now();
        let result = which.run(&ctx, counts).await;
        let lodge_state = match ctx.lodge.exit_status() {
            Some(status) => format!("Lodge has exited ({status})"),
            None => "Lodge is still running".to_string(),
        };
        rows.extend(result.with_context(|| format!("measuring {} ({lodge_state})", which.name()))?);
        eprintln!(
            "lodge-bench: {} done in {:.1} s",
            which.name(),
            start.elapsed().as_secs_f64()
        );
        plan.push(format!(
            "{} {} (+{} warm-up)",
            which.name(),
            counts.iterations,
            counts.warmup
        ));
    }

    println!("## lodge-bench");
    println!();
    println!(
        "- command: `{}`",
        std::env::args().collect::<Vec<_>>().join(" ")
    );
    println!(
        "- build: {}; lodge: `{}` (`lodge serve --demo`, sandbox backend: {})",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        ctx.lodge_bin.display(),
        ctx.lodge.backend().as_deref().unwrap_or("unknown")
    );
    if let Some(warning) = build_warning {
        println!("- **warning**: {warning}");
    }
    println!("- machine: {}", machine());
    println!(
        "- rounds: {}; Lodge and baseline samples interleaved",
        plan.join(", ")
    );
    println!();
    print!("{}", report::table(&rows));
    Ok(())
}

/// CPUs, CPU model and kernel, as far as /proc tells.
fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|k| format!("Linux {}", k.trim()))
        .unwrap_or_else(|_| std::env::consts::OS.into());
    format!("{cpus} CPUs ({model}), {kernel}")
}
