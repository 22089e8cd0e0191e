//! How much a sandbox adds to starting a server: spawn `cat` (or `--` COMMAND, an MCP stdio
//! server), write an MCP `initialize` request, wait for the first line back (the echo, or
//! the server's answer), terminate; N times per backend; p50/p99 of spawn-to-answer. Not the official benchmark (that is `lodge-bench`), a quick look:
//!
//!     cargo run --release -p lodge-sandbox --example spawn_cost -- [N] [-- COMMAND...]
//!
//! Needs the helper binary built next to it (`cargo build --release -p lodge-sandbox`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use lodge_sandbox::{
    Backend, HelperCommand, Host, Limits, NamespacesBackend, NamespacesOptions, ProcessBackend,
    Sandbox, SandboxId, SandboxSpec,
};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (opts, command) = match args.iter().position(|a| a == "--") {
        Some(i) => (args[..i].to_vec(), args[i + 1..].to_vec()),
        None => (args.clone(), vec!["cat".to_owned()]),
    };
    let n: usize = opts.first().map(|s| s.parse()).transpose()?.unwrap_or(200);
    let exe = std::env::current_exe()?;
    let helper = exe
        .parent()
        .and_then(|examples| examples.parent())
        .map(|dir| dir.join("lodge-sandbox-helper"))
        .ok_or("no helper path")?;
    let host = Arc::new(Host::probe(HelperCommand::new(
        helper,
        Vec::<String>::new(),
    )));
    let ns = NamespacesBackend::new(host.clone(), NamespacesOptions::default())?;
    ns.prepare(&command)?;
    let ns_host_net = NamespacesBackend::new(
        host,
        NamespacesOptions {
            network: lodge_sandbox::Network::Host,
            ..Default::default()
        },
    )?;
    ns_host_net.prepare(&command)?;
    let scratch = tempfile::tempdir()?;
    let limits = Limits {
        memory: Some(512 << 20),
        cpus: Some(1.0),
        pids: Some(256),
        ..Limits::default()
    };
    let runs: [(&str, &dyn Backend, Limits); 4] = [
        ("process", &ProcessBackend, Limits::default()),
        ("namespaces", &ns, Limits::default()),
        (
            "namespaces, network = host",
            &ns_host_net,
            Limits::default(),
        ),
        ("namespaces + memory/cpus/pids", &ns, limits),
    ];
    println!(
        "{n} sessions each of {command:?} (spawn to the first line back; 10% warm-up dropped)"
    );
    for (label, backend, limits) in runs {
        let mut times = Vec::with_capacity(n);
        let mut spawn_times: Vec<Duration> = Vec::new();
        for i in 0..n + n / 10 {
            let spec = SandboxSpec {
                sandbox_id: SandboxId::mint(),
                command: command.clone(),
                env: Default::default(),
                scratch_root: scratch.path().into(),
                stderr_cap: 1 << 16,
                stderr_file: None,
                limits: limits.clone(),
                reached_over_tcp: false,
                kept: None,
            };
            let started = Instant::now();
            let Sandbox { io, process } = backend.spawn(&spec)?;
            let spawned = started.elapsed();
            let (mut stdin, mut stdout) = (io.stdin, BufReader::new(io.stdout));
            stdin.write_all(INITIALIZE).await?;
            let mut line = String::new();
            stdout.read_line(&mut line).await?;
            if i >= n / 10 {
                times.push(started.elapsed());
                spawn_times.push(spawned);
            }
            drop(stdin);
            process.terminate(Duration::from_secs(5)).await;
        }
        times.sort();
        spawn_times.sort();
        let p = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
        println!(
            "{label:<32} p50 {:>7.2} ms   p99 {:>7.2} ms   (Backend::spawn itself: p50 {:.2} ms)",
            ms(p(0.5)),
            ms(p(0.99)),
            ms(spawn_times[spawn_times.len() / 2])
        );
    }
    Ok(())
}

/// An MCP `initialize` request: `cat` echoes it, an MCP server answers it.
const INITIALIZE: &[u8] = b"{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"initialize\",\"params\":{\"protocolVersion\":\"2025-11-25\",\"capabilities\":{},\"clientInfo\":{\"name\":\"spawn-cost\",\"version\":\"1\"}}}\n";

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
