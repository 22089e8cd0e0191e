//! `lodge serve`: load the config, build each server's sandbox backend, bind,
//! announce, and hand over to lodge-http's `serve`, which drains on Ctrl-C / SIGTERM.

use anyhow::Context;
use lodge::config::{Env, LogFormat, OtlpConfig, ServeArgs, Settings};
use lodge_runtime::{Protocol, Runtime, ServerSpec};
use tracing_subscriber::EnvFilter;

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let mut settings = Settings::load(args, &Env::from_process())?;
    let exporter = init_logging(settings.log_format, settings.otlp.as_ref())?;
    if let Some(audit) = &settings.audit {
        let started = lodge_runtime::Audit::start(audit)
            .with_context(|| format!("cannot open the audit log {}", audit.path.display()))?;
        settings.session.audit = Some(started);
    }
    if let Some(dir) = &settings.session.stderr_dir {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create session.stderr_dir {}", dir.display()))?;
    }
    // Scratch tmpfs mounts a killed Lodge left behind (a running Lodge's are kept).
    lodge_sandbox::unmount_stale();
    // Before the async runtime starts its threads: the host probe may fork and move
    // Lodge into a cgroup.
    let servers = lodge::config::build_servers(&settings, lodge::config::probe_host)?;
    let per_session = crate::limits::largest_fds_per_session(&servers);
    settings.session.max_sessions = fit_open_files(settings.session.max_sessions, per_session);
    let served = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(serve(settings, servers));
    if let Some(exporter) = exporter {
        exporter.shutdown();
    }
    served
}

/// The log on stderr: `LODGE_LOG` filters it (default `info`), `log_format` shapes it.
/// With `[otlp]`, spans are also exported; the returned exporter flushes on shutdown.
fn init_logging(format: LogFormat, otlp: Option<&OtlpConfig>) -> anyhow::Result<Option<Exporter>> {
    use tracing_subscriber::Layer;
    use tracing_subscriber::prelude::*;
    let filter = EnvFilter::try_from_env("LODGE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let log = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let log = match format {
        LogFormat::Text => log
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .boxed(),
        LogFormat::Json => log
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .boxed(),
    };
    let (exporter, spans) = match otlp {
        Some(config) => {
            let (exporter, spans) = Exporter::start(config)?;
            (Some(exporter), Some(spans))
        }
        None => (None, None),
    };
    tracing_subscriber::registry()
        .with(log.with_filter(filter))
        .with(spans)
        .init();
    Ok(exporter)
}

#[cfg(feature = "otlp")]
use crate::otlp::Exporter;

/// Stands in for the exporter in a binary built without the `otlp` feature.
#[cfg(not(feature = "otlp"))]
struct Exporter;

#[cfg(not(feature = "otlp"))]
impl Exporter {
    fn start(_: &OtlpConfig) -> anyhow::Result<(Exporter, tracing_subscriber::layer::Identity)> {
        anyhow::bail!(
            "[otlp] endpoint is set, but this lodge was built without the `otlp` feature (cargo build --features otlp)"
        )
    }

    fn shutdown(self) {}
}

async fn serve(mut settings: Settings, servers: Vec<ServerSpec>) -> anyhow::Result<()> {
    let listener = lodge_http::bind(settings.listen)
        .with_context(|| format!("cannot listen on {}", settings.listen))?;
    let addr = listener.local_addr()?;
    let coordinator = match &settings.cluster {
        Some(cluster) => Some(crate::coordinator::Coordinator::new(cluster)?),
        None => None,
    };
    let internal = match &settings.cluster {
        Some(cluster) => Some(lodge_http::bind(cluster.internal_listen).with_context(|| {
            format!(
                "cannot listen on {} ([cluster] internal_listen)",
                cluster.internal_listen
            )
        })?),
        None => None,
    };
    if let (Some(cluster), Some(coordinator), Some(tokens)) = (
        &settings.cluster,
        &coordinator,
        &settings.session.session_tokens,
    ) {
        settings.session.admission = Some(coordinator.clone());
        let hop = lodge_cluster::HopSigner::new(cluster.keys.clone(), cluster.node.clone());
        settings.front.cluster = Some(std::sync::Arc::new(lodge_http::Cluster::new(
            tokens.clone(),
            hop,
            coordinator.members().clone(),
        )));
    }
    let settings = settings.bound(addr);
    let access = lodge_http::AdminAccess {
        token: settings.admin.token.clone(),
        oauth: settings
            .admin
            .scope
            .clone()
            .and_then(|scope| settings.front.auth.clone().map(|auth| (auth, scope))),
    };
    let admin = match settings.admin_listen {
        Some(admin_addr) if access.is_open() && !admin_addr.ip().is_loopback() => {
            anyhow::bail!(
                "the admin listener {admin_addr} would let anyone who reaches it stop sessions: set [admin] token_file (or [admin] scope with [auth]), or listen on loopback"
            )
        }
        Some(admin_addr) => Some(
            lodge_http::bind(admin_addr)
                .with_context(|| format!("cannot listen on {admin_addr} (admin)"))?,
        ),
        None => None,
    };
    let specs: Vec<ServerSpec> = servers.clone();
    let runtime = Runtime::new(servers, settings.session.clone());
    if settings.startup_check {
        startup_check(&runtime).await?;
    }
    announce(&settings, &specs, addr);
    if let Some(coordinator) = &coordinator {
        coordinator.start(&runtime).await;
    }
    runtime.start_warm_pools();
    runtime.start_storage_sweeps();

    // The admin and internal listeners outlive the MCP one: /readyz says "draining"
    // while sessions end, and other nodes still reach this node's sessions.
    let (mcp_done, _) = tokio::sync::watch::channel(());
    let after_mcp = |done: &tokio::sync::watch::Sender<()>| {
        let mut done = done.subscribe();
        async move {
            let _ = done.changed().await;
        }
    };
    let drain = lodge_http::Drain::default();
    let drain_deadline = settings.cluster.as_ref().map(|c| c.drain_deadline);
    let admin = match admin {
        Some(admin) => {
            println!(
                "  admin: http://{}/admin/sessions, /healthz, /readyz ({})",
                admin.local_addr()?,
                match access.is_open() {
                    true => "no authentication: loopback only",
                    false => "bearer token required",
                }
            );
            let config = lodge_http::AdminConfig {
                access,
                cluster: coordinator
                    .clone()
                    .map(|c| c as std::sync::Arc<dyn lodge_http::ClusterAdmin>),
                drain: drain.clone(),
                drain_deadline,
            };
            Some(tokio::spawn(lodge_http::serve_admin(
                admin,
                runtime.clone(),
                config,
                after_mcp(&mcp_done),
            )))
        }
        None => None,
    };
    let internal = match internal {
        Some(internal) => {
            println!(
                "  cluster: node {} (other nodes forward to {}), Redis {}",
                runtime
                    .config()
                    .session_tokens
                    .as_ref()
                    .map_or("?".to_string(), |t| t.node().to_string()),
                internal.local_addr()?,
                settings
                    .cluster
                    .as_ref()
                    .map_or("", |c| c.redis_url.as_str()),
            );
            Some(tokio::spawn(lodge_http::serve_internal(
                internal,
                runtime.clone(),
                settings.front.clone(),
                after_mcp(&mcp_done),
            )))
        }
        None => None,
    };
    let stop = stop_or_drain(runtime.clone(), drain, drain_deadline);
    lodge_http::serve(listener, runtime, settings.front, stop)
        .await
        .context("the MCP listener failed")?;
    let _ = mcp_done.send(());
    for (task, what) in [(admin, "admin"), (internal, "internal")] {
        if let Some(task) = task {
            task.await
                .with_context(|| format!("the {what} listener task failed"))?
                .with_context(|| format!("the {what} listener failed"))?;
        }
    }
    tracing::info!("stopped");
    Ok(())
}

/// Resolves when Lodge should stop serving: on Ctrl-C or SIGTERM, or, when a drain
/// is asked for (`POST /admin/drain`, or SIGTERM on a cluster node, whose
/// `drain_deadline` is given), once the node's live sessions have ended or the
/// deadline has passed. A second signal during a drain cuts it short.
async fn stop_or_drain(
    runtime: std::sync::Arc<Runtime>,
    drain: lodge_http::Drain,
    cluster_deadline: Option<std::time::Duration>,
) {
    let deadline = tokio::select! {
        () = shutdown_signal() => match cluster_deadline {
            Some(deadline) => deadline,
            None => return,
        },
        deadline = drain.requested() => deadline,
    };
    runtime.drain();
    tracing::info!(
        sessions = runtime.live_sessions(),
        deadline = %humantime::format_duration(deadline),
        "draining: no new sessions here; live ones are served until they end or the deadline passes"
    );
    let until = tokio::time::Instant::now() + deadline;
    tokio::select! {
        ended = runtime.sessions_ended(until) => match ended {
            true => tracing::info!("drained: every session has ended"),
            false => tracing::info!(sessions = runtime.live_sessions(), "the drain deadline passed; ending the sessions left"),
        },
        () = shutdown_signal() => tracing::info!("a second signal: ending the sessions left now"),
    }
}

/// Starts each server once before serving: a broken server stops Lodge now, with its
/// report, rather than on a user's first call.
async fn startup_check(runtime: &std::sync::Arc<Runtime>) -> anyhow::Result<()> {
    let reports = crate::check::check_all(runtime, crate::check::PROBE_TIMEOUT).await;
    for report in &reports {
        match &report.outcome {
            Ok(_) => tracing::info!("startup check: {report}"),
            Err(_) => eprintln!("{report}"),
        }
    }
    crate::check::failed(&reports).map_err(|e| {
        e.context("refusing to start (startup_check = true; `lodge check` runs the same check)")
    })
}

/// Raises the open-file limit for `max_sessions` sessions of `per_session` descriptors;
/// returns how many sessions Lodge will accept, saying so when the limit allows fewer.
fn fit_open_files(max_sessions: usize, per_session: u64) -> usize {
    match crate::limits::fit_open_files(max_sessions, per_session) {
        Ok(budget) if budget.sessions < max_sessions as u64 => {
            let fit = usize::try_from(budget.sessions)
                .unwrap_or(max_sessions)
                .max(1);
            tracing::warn!(
                "the open-file limit ({}) fits {fit} sessions at {per_session} descriptors each: \
                 Lodge accepts at most {fit}, not max_sessions = {max_sessions}; raise the hard limit \
                 (`ulimit -Hn`, or LimitNOFILE= under systemd) to allow more",
                budget.limit,
            );
            fit
        }
        Ok(budget) => {
            tracing::debug!(limit = budget.limit, "open-file limit");
            max_sessions
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read or raise the open-file limit");
            max_sessions
        }
    }
}

fn announce(settings: &Settings, servers: &[ServerSpec], addr: std::net::SocketAddr) {
    println!(
        "Lodge {} listening on http://{addr}",
        env!("CARGO_PKG_VERSION")
    );
    for (i, server) in servers.iter().enumerate() {
        let paths = if i == 0 {
            format!("/mcp, /mcp/{}", server.name)
        } else {
            format!("/mcp/{}", server.name)
        };
        println!(
            "  {paths} -> {} ({}), sandbox backend: {}",
            server.name,
            server.command.join(" "),
            server.backend.name()
        );
        println!("    protocol: {}", era_rule(server.protocol));
    }
    match &settings.auth {
        Some(auth) => println!(
            "  auth: OAuth, tokens from {} for {} (metadata: /.well-known/oauth-protected-resource)",
            auth.issuers.join(", "),
            auth.resource
        ),
        None => println!("  auth: none (anyone who reaches this port can use any session)"),
    }
    let mut backends: Vec<_> = servers.iter().map(|s| s.backend.name()).collect();
    backends.sort_unstable();
    backends.dedup();
    for backend in backends {
        let isolation = match backend {
            "process" => {
                "no isolation: each session gets its own process group, scratch directory and environment, but shares the host"
            }
            "namespaces" => {
                "isolated: own namespaces, minimal read-only root, no capabilities, seccomp, cgroup limits"
            }
            _ => continue,
        };
        println!("  {backend}: {isolation}");
    }
    println!(
        "  sessions: idle timeout {}, max lifetime {}, at most {}",
        humantime::format_duration(settings.session.idle_timeout),
        humantime::format_duration(settings.session.max_lifetime),
        settings.session.max_sessions
    );
    if !addr.ip().is_loopback() && settings.front.allowed_hosts.is_empty() {
        println!(
            "  note: only loopback Host headers are accepted; set allowed_hosts in the config to reach Lodge by name"
        );
    }
}

/// How a server is hosted under its `protocol` setting; `lodge check` says which way
/// each server actually answers.
fn era_rule(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::Auto => {
            "auto: a legacy session if the server accepts initialize (2026-07-28 clients bridged over MRTR), passed through only if it speaks 2026-07-28 alone (`lodge check` says which)"
        }
        Protocol::Legacy => "legacy: always a legacy session; 2026-07-28 clients bridged over MRTR",
        Protocol::Modern => {
            "modern: 2026-07-28 requests passed through; Lodge speaks 2026-07-28 for legacy clients"
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(
            tokio::signal::unix::SignalKind::terminate(),
        ) {
            Ok(term) => term,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops Lodge");
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
