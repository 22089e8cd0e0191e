//! The accept loop: Lodge runs it itself (rather than `axum::serve`) for what a
//! listener facing untrusted clients needs: a header read deadline (slowloris) apart
//! from the keep-alive idle limit (see [`crate::phase`]), a cap
//! on connections per client address, TCP_NODELAY, and a graceful stop that lets
//! streams still open finish while the runtime drains.

use crate::phase::{Deadline, Marked, Phase, Watched};
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// What every connection on one listener is held to.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConnectionLimits {
    pub header_read_timeout: Duration,
    pub keep_alive_timeout: Duration,
    pub max_per_client: usize,
}

impl ConnectionLimits {
    pub fn of(front: &crate::FrontConfig) -> Self {
        ConnectionLimits {
            header_read_timeout: front.header_read_timeout,
            keep_alive_timeout: front.keep_alive_timeout,
            max_per_client: front.max_connections_per_client,
        }
    }
}

/// Open connections per client address.
struct PerClient {
    open: Mutex<HashMap<IpAddr, usize>>,
    max: usize,
}

/// One client's claim on a connection; given back when the connection ends.
struct ClientSlot {
    table: Arc<PerClient>,
    ip: IpAddr,
}

impl PerClient {
    fn claim(self: &Arc<Self>, ip: IpAddr) -> Option<ClientSlot> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(ip).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(ClientSlot {
            table: self.clone(),
            ip,
        })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut open = self
            .table
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                // No entry outlives its address's last connection: the map stays bounded.
                open.remove(&self.ip);
            }
        }
    }
}

/// Connections refused over the per-client cap, said in the log at most every ten
/// seconds: an operator must see a legitimate client that hits it, and an attacker
/// must not flood the log.
#[derive(Default)]
struct Refusals {
    since_said: u64,
    said_at: Option<tokio::time::Instant>,
}

impl Refusals {
    fn refused(&mut self, client: IpAddr, limit: usize) {
        self.since_said += 1;
        let now = tokio::time::Instant::now();
        if self
            .said_at
            .is_some_and(|at| now.duration_since(at) < Duration::from_secs(10))
        {
            return;
        }
        tracing::warn!(
            %client,
            refused = self.since_said,
            "refused connections over max_connections_per_client ({limit}); raise it if this client is legitimate"
        );
        self.said_at = Some(now);
        self.since_said = 0;
    }
}

/// A running accept loop and the connections it started.
pub(crate) struct Accepting {
    task: tokio::task::JoinHandle<()>,
    stop: watch::Sender<bool>,
    /// Closed (recv gives `None`) once every connection task has ended.
    open: mpsc::Receiver<()>,
}

pub(crate) fn start(listener: TcpListener, app: Router, limits: ConnectionLimits) -> Accepting {
    let (stop, stopped) = watch::channel(false);
    let (open_tx, open) = mpsc::channel(1);
    let task = tokio::spawn(accept_loop(listener, app, limits, stopped, open_tx));
    Accepting { task, stop, open }
}

impl Accepting {
    /// Stops accepting (the listener is closed when this returns) and asks every
    /// connection to close once its request in flight is answered.
    pub async fn stop(&mut self) {
        let _ = self.stop.send(true);
        let _ = (&mut self.task).await;
    }

    /// Waits up to `limit` for every connection to close; whether they all did.
    pub async fn connections_closed(&mut self, limit: Duration) -> bool {
        tokio::time::timeout(limit, self.open.recv()).await.is_ok()
    }
}

async fn accept_loop(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    mut stopped: watch::Receiver<bool>,
    open: mpsc::Sender<()>,
) {
    let per_client = Arc::new(PerClient {
        open: Mutex::new(HashMap::new()),
        max: limits.max_per_client,
    });
    let mut refusals = Refusals::default();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stopped.wait_for(|stop| *stop) => return,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                accept_failed(e).await;
                continue;
            }
        };
        let Some(slot) = per_client.claim(peer.ip().to_canonical()) else {
            refusals.refused(peer.ip(), limits.max_per_client);
            continue; // dropping the stream closes it
        };
        let connection = serve_connection(tcp, app.clone(), limits, stopped.clone());
        let open = open.clone();
        tokio::spawn(async move {
            connection.await;
            drop((slot, open));
        });
    }
}

/// An accept error is the listener's (descriptors exhausted, say) or one connection's:
/// neither ends the loop; a pause keeps a persistent one from spinning a core.
async fn accept_failed(e: std::io::Error) {
    use std::io::ErrorKind as K;
    if matches!(
        e.kind(),
        K::ConnectionAborted | K::ConnectionReset | K::ConnectionRefused
    ) {
        return;
    }
    tracing::warn!(error = %e, "accepting a connection failed; retrying shortly");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

async fn serve_connection(
    tcp: TcpStream,
    app: Router,
    limits: ConnectionLimits,
    mut stopped: watch::Receiver<bool>,
) {
    // Small SSE writes must leave at once: with Nagle's algorithm on, an event written
    // right after the stream's headers waits for the client's delayed ACK (~40 ms).
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(error = %e, "cannot set TCP_NODELAY");
    }
    // Lodge holds the connection to its header and keep-alive deadlines itself
    // (`crate::phase`): hyper's header timeout would also end idle kept-alive ones.
    let phase = Phase::new();
    let io = Watched {
        tcp,
        phase: phase.clone(),
    };
    let service = Marked {
        app: TowerToHyperService::new(app),
        phase: phase.clone(),
    };
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(None);
    let connection = builder.serve_connection(TokioIo::new(io), service);
    let mut connection = std::pin::pin!(connection);
    let mut stopping = false;
    loop {
        let deadline = match phase.deadline(limits.header_read_timeout, limits.keep_alive_timeout) {
            _ if stopping => None,
            Deadline::Head(at) | Deadline::Idle(at) => Some(at),
            Deadline::None => None,
        };
        tokio::select! {
            // The connection first: bytes already here are read (and a head parsed)
            // before a deadline that passed while Lodge was busy can close it.
            biased;
            ended = connection.as_mut() => {
                if let Err(e) = ended {
                    tracing::debug!(error = %e, "connection ended");
                }
                return;
            }
            _ = stopped.wait_for(|stop| *stop), if !stopping => {
                // Closes at once if idle, else after the response in flight.
                stopping = true;
                connection.as_mut().graceful_shutdown();
            }
            () = phase.changed.notified() => {}
            () = sleep_until(deadline), if deadline.is_some() => {
                // The phase may have moved on since the deadline was read.
                match phase.deadline(limits.header_read_timeout, limits.keep_alive_timeout) {
                    Deadline::Head(at) if at <= Instant::now() => {
                        tracing::debug!("no complete request head within header_read_timeout: closing");
                        return;
                    }
                    Deadline::Idle(at) if at <= Instant::now() => {
                        stopping = true;
                        connection.as_mut().graceful_shutdown();
                    }
                    _ => {}
                }
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    if let Some(at) = deadline {
        tokio::time::sleep_until(at).await;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn per_client_slots_are_capped_and_given_back() {
        let table = Arc::new(PerClient {
            open: Mutex::new(HashMap::new()),
            max: 2,
        });
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = table.claim(a).unwrap();
        let _second = table.claim(a).unwrap();
        assert!(
            table.claim(a).is_none(),
            "a third connection from one address"
        );
        assert!(
            table.claim(b).is_some(),
            "another address has its own slots"
        );
        drop(first);
        assert!(
            table.claim(a).is_some(),
            "a closed connection's slot is free again"
        );
        drop(_second);
        assert!(
            table.open.lock().unwrap().is_empty(),
            "addresses with no connection leave no entry"
        );
    }
}
