//! Running the front on a listener ([`crate::accept`] holds each connection to its
//! limits), and the drain sequence when the caller's shutdown future resolves.

use crate::accept::{self, ConnectionLimits};
use crate::guard::FrontConfig;
use axum::Router;
use lodge_runtime::Runtime;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// Time open connections get to close once every session has ended (MCP listener) or
/// once shutdown began (admin listener). A client that keeps a connection open past it
/// does not hold the process.
const CONNECTION_CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Connections the kernel may hold for Lodge before it accepts them (Linux caps it at
/// `net.core.somaxconn`). Tokio's `TcpListener::bind` asks for 1,024: a thousand clients
/// connecting at once while Lodge is busy overflowed that queue, and the kernel reset
/// connections the clients already thought open.
pub const LISTEN_BACKLOG: u32 = 4096;

/// Binds `addr` for [`serve`] / [`serve_admin`], with [`LISTEN_BACKLOG`].
pub fn bind(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        std::net::SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        std::net::SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    // As std and tokio do on Unix: a restarted Lodge rebinds past TIME_WAIT.
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Serves the MCP endpoint ([`crate::router`]) on `listener` until `shutdown` resolves,
/// then: stops accepting connections, drains the runtime (no new sessions; calls in
/// flight get [`FrontConfig::shutdown_grace`] to finish; then every session ends), waits
/// up to two seconds for open connections to close, and returns.
///
/// Connections are held to the front's header read deadline and per-client cap
/// ([`FrontConfig::header_read_timeout`], [`FrontConfig::max_connections_per_client`]).
///
/// The caller builds the runtime and starts its warm pools
/// ([`Runtime::start_warm_pools`]); several listeners may share one runtime, but only
/// one of them should be given a `shutdown` that drains it.
///
/// Accept errors (descriptors exhausted, say) are logged and retried, never fatal.
pub async fn serve(
    listener: TcpListener,
    runtime: Arc<Runtime>,
    front: FrontConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let grace = front.shutdown_grace;
    let limits = ConnectionLimits::of(&front);
    let app = crate::router(runtime.clone(), front);
    let drain = async move {
        tracing::info!(
            grace = ?grace,
            "shutting down: no new sessions; waiting for calls in flight, then ending every session"
        );
        runtime.shutdown(grace).await;
    };
    serve_until(listener, app, limits, shutdown, drain).await;
    Ok(())
}

/// Serves the admin API ([`crate::admin_router`]) on `listener` until `shutdown`
/// resolves, then stops accepting and waits up to two seconds for open connections.
///
/// Give it a `shutdown` that resolves after [`serve`] returns, so `/readyz` answers
/// "draining" while the runtime drains.
pub async fn serve_admin(
    listener: TcpListener,
    runtime: Arc<Runtime>,
    admin: crate::AdminConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = ConnectionLimits::of(&FrontConfig::default());
    serve_until(
        listener,
        crate::admin_router(runtime, admin),
        limits,
        shutdown,
        async {},
    )
    .await;
    Ok(())
}

/// Serves the internal (node-to-node) listener of cluster mode
/// ([`crate::internal_router`]) until `shutdown` resolves. Other nodes hold one
/// connection per stream they forward, so the per-client cap of the public listener
/// does not apply here: each node is one client address.
///
/// Give it a `shutdown` that resolves after [`serve`] returns: sessions served through
/// other nodes stay reachable while this node drains.
pub async fn serve_internal(
    listener: TcpListener,
    runtime: Arc<Runtime>,
    front: FrontConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut limits = ConnectionLimits::of(&front);
    limits.max_per_client = usize::MAX;
    let app = crate::internal_router(runtime, front);
    serve_until(listener, app, limits, shutdown, async {}).await;
    Ok(())
}

/// Serves `app` until `shutdown`; then stops accepting, runs `drain` while open
/// connections are still served, and waits (bounded) for them to close.
async fn serve_until(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
    drain: impl Future<Output = ()>,
) {
    let mut accepting = accept::start(listener, app, limits);
    shutdown.await;
    // Stop accepting first, so no session starts while the runtime drains. Streams
    // still open keep their connections until their session ends.
    accepting.stop().await;
    drain.await;
    if !accepting.connections_closed(CONNECTION_CLOSE_WAIT).await {
        // Their tasks are left to the runtime, which ends them on exit.
        tracing::warn!("some connections did not close in time; not waiting for them");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    /// 1,500 clients connect at once and Lodge has accepted none yet: the kernel holds
    /// them all (Tokio's default queue of 1,024 would leave the rest unanswered).
    #[tokio::test]
    async fn the_listen_queue_holds_a_crowd_of_new_connections() {
        use nix::sys::resource::{Resource, getrlimit, setrlimit};
        const CROWD: u64 = 1500;
        let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        assert!(hard >= CROWD + 100, "this test needs {CROWD} descriptors");
        setrlimit(Resource::RLIMIT_NOFILE, soft.max(CROWD + 100), hard).unwrap();
        let listener = super::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let mut crowd = Vec::new();
        for i in 0..CROWD {
            let connect = tokio::net::TcpStream::connect(addr);
            let stream = tokio::time::timeout(Duration::from_secs(2), connect)
                .await
                .unwrap_or_else(|_| panic!("connection {i} was not queued"))
                .unwrap();
            crowd.push(stream);
        }
        drop(listener);
    }

    use super::*;
    use lodge_runtime::SessionConfig;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// One HTTP/1.1 exchange on a fresh connection; returns the whole response text.
    async fn exchange(addr: std::net::SocketAddr, request: &str) -> String {
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut out = String::new();
        tcp.read_to_string(&mut out).await.unwrap();
        out
    }

    async fn listener() -> (TcpListener, std::net::SocketAddr) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        (listener, addr)
    }

    #[tokio::test]
    async fn serve_answers_until_shutdown_then_drains_and_stops_listening() {
        let runtime = Runtime::new(Vec::new(), SessionConfig::default());
        let (listener, addr) = listener().await;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(serve(
            listener,
            runtime.clone(),
            FrontConfig::default(),
            async move {
                let _ = stopped.await;
            },
        ));
        // No server is hosted, so the MCP router answers 404 naming none.
        let answer = exchange(
            addr,
            "POST /mcp HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 404 "), "{answer}");
        assert!(!runtime.is_draining());

        stop.send(()).unwrap();
        let result = tokio::time::timeout(Duration::from_secs(10), served)
            .await
            .expect("serve did not return after shutdown")
            .unwrap();
        assert!(result.is_ok(), "{result:?}");
        assert!(runtime.is_draining(), "the runtime was not drained");
        assert!(
            tokio::net::TcpStream::connect(addr).await.is_err(),
            "the listener still accepts after serve returned"
        );
    }

    #[tokio::test]
    async fn serve_admin_answers_until_shutdown() {
        let runtime = Runtime::new(Vec::new(), SessionConfig::default());
        let (listener, addr) = listener().await;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(serve_admin(
            listener,
            runtime,
            Default::default(),
            async move {
                let _ = stopped.await;
            },
        ));
        let answer = exchange(
            addr,
            "GET /readyz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
        assert!(answer.ends_with("ready\n"), "{answer}");

        stop.send(()).unwrap();
        let result = tokio::time::timeout(Duration::from_secs(10), served)
            .await
            .expect("serve_admin did not return after shutdown")
            .unwrap();
        assert!(result.is_ok(), "{result:?}");
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    }
}
