//! A relay baseline: the demo server's own handler served over Streamable HTTP by
//! rmcp's `StreamableHttpService`, inside this process. That is what serving the demo
//! over HTTP costs without Lodge (no session actor, no pipes, no second process), so
//! Lodge's figure against it is Lodge's whole price for hosting the server out of
//! process, behind one HTTP front.
//!
//! The server runs on a multi-thread Tokio runtime in a thread of its own: the bench's
//! clients run on a current-thread runtime (relay, elicitation) or on the load runtime
//! (throughput), and sharing either would serialize the clients with the server in a
//! way no real deployment does. It still shares the machine's CPUs with the clients,
//! Lodge and the demo servers, as every baseline does.

use anyhow::{Context, anyhow};
use demo_server::DemoServer;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use std::sync::Arc;
use std::thread::JoinHandle;
use tokio::sync::oneshot;

/// The running server; stopped (and its thread joined) on drop.
pub struct RmcpHttp {
    /// `http://127.0.0.1:PORT/mcp`.
    pub url: String,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl RmcpHttp {
    /// Binds 127.0.0.1:0 and serves `/mcp`: legacy sessions (rmcp's default, so the
    /// same requests as a legacy session through Lodge), loopback hosts only.
    pub fn start() -> anyhow::Result<Self> {
        let (bound_tx, bound_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("rmcp-http".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_multi_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = bound_tx.send(Err(anyhow!("cannot build its runtime: {e}")));
                        return;
                    }
                };
                runtime.block_on(serve(bound_tx, stop_rx));
            })
            .context("cannot start the rmcp HTTP server's thread")?;
        let addr = bound_rx
            .recv()
            .context("the rmcp HTTP server's thread ended before binding")?
            .context("the rmcp HTTP server did not start")?;
        Ok(RmcpHttp {
            url: format!("http://{addr}/mcp"),
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }
}

type Bound = anyhow::Result<std::net::SocketAddr>;

async fn serve(bound: std::sync::mpsc::Sender<Bound>, stop: oneshot::Receiver<()>) {
    use axum::serve::ListenerExt;
    let config = StreamableHttpServerConfig::default();
    let sessions_end = config.cancellation_token.clone();
    let service = StreamableHttpService::new(
        || Ok(DemoServer::new()),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let app = axum::Router::new().route_service("/mcp", service);
    let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
        Ok(listener) => listener,
        Err(e) => {
            let _ = bound.send(Err(anyhow!("cannot bind 127.0.0.1:0: {e}")));
            return;
        }
    };
    let _ = bound.send(listener.local_addr().context("no local address"));
    // As Lodge does on its own sockets: without TCP_NODELAY, a small SSE event written
    // right after the headers waits for the client's delayed ACK, and the baseline
    // would measure Nagle's algorithm instead of the server.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = stop.await;
            // Ends the SSE streams and sessions that would otherwise hold the shutdown.
            sessions_end.cancel();
        })
        .await;
    if let Err(e) = result {
        eprintln!("lodge-bench: the rmcp HTTP server failed: {e}");
    }
}

impl Drop for RmcpHttp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
