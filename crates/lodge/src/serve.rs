//! `lodge serve`: bind, announce, serve, and drain on Ctrl-C / SIGTERM.

use crate::config::{Env, ServeArgs, Settings};
use anyhow::Context;
use lodge_runtime::Runtime;
use std::time::Duration;
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

/// Time left for open connections to finish after every session has ended.
const CONNECTION_CLOSE_WAIT: Duration = Duration::from_secs(2);

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let filter = EnvFilter::try_from_env("LODGE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let mut settings = Settings::load(args, &Env::from_process())?;
    let per_session = crate::limits::largest_fds_per_session(&settings.servers);
    settings.session.max_sessions = fit_open_files(settings.session.max_sessions, per_session);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(serve(settings))
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let listener = TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("cannot listen on {}", settings.listen))?;
    let addr = listener.local_addr()?;
    let runtime = Runtime::new(settings.servers.clone(), settings.session.clone());
    runtime.start_warm_pools();

    let admin = match settings.admin_listen {
        Some(admin_addr) => Some(
            TcpListener::bind(admin_addr)
                .await
                .with_context(|| format!("cannot listen on {admin_addr} (admin)"))?,
        ),
        None => None,
    };
    announce(&settings, addr);
    if let Some(admin) = admin {
        println!(
            "  admin: http://{}/admin/sessions, /healthz, /readyz",
            admin.local_addr()?
        );
        let admin_app = lodge_http::admin_router(runtime.clone());
        tokio::spawn(async move { axum::serve(no_delay(admin), admin_app).await });
    }
    let app = lodge_http::router(runtime.clone(), settings.front.clone());
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(async move {
        axum::serve(no_delay(listener), app)
            .with_graceful_shutdown(async move {
                let _ = stop_rx.changed().await;
            })
            .await
    });

    shutdown_signal().await;
    tracing::info!(
        grace = %humantime::format_duration(settings.shutdown_grace),
        "shutting down: no new sessions; waiting for calls in flight, then ending every session"
    );
    let _ = stop_tx.send(true);
    runtime.shutdown(settings.shutdown_grace).await;
    if tokio::time::timeout(CONNECTION_CLOSE_WAIT, server)
        .await
        .is_err()
    {
        tracing::warn!("some connections did not close in time; exiting anyway");
    }
    tracing::info!("stopped");
    Ok(())
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

/// Small SSE writes must leave at once: with Nagle's algorithm on, an event written
/// right after the stream's headers waits for the client's delayed ACK (~40 ms).
fn no_delay(listener: TcpListener) -> impl axum::serve::Listener<Addr = std::net::SocketAddr> {
    use axum::serve::ListenerExt;
    listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    })
}

fn announce(settings: &Settings, addr: std::net::SocketAddr) {
    println!(
        "Lodge {} listening on http://{addr}",
        env!("CARGO_PKG_VERSION")
    );
    for (i, server) in settings.servers.iter().enumerate() {
        let paths = if i == 0 {
            format!("/mcp, /mcp/{}", server.name)
        } else {
            format!("/mcp/{}", server.name)
        };
        println!(
            "  {paths} -> {} ({})",
            server.name,
            server.command.join(" ")
        );
    }
    let isolation = match settings.backend {
        "process" => {
            " (no isolation: each session gets its own process group, scratch directory and environment, but shares the host)"
        }
        "namespaces" => {
            " (isolated: own namespaces, minimal read-only root, no capabilities, seccomp, cgroup limits)"
        }
        _ => "",
    };
    println!("  sandbox backend: {}{isolation}", settings.backend);
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
