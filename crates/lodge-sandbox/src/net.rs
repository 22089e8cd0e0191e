//! TCP connections into a sandbox: how Lodge reaches an HTTP-transport server listening
//! on the sandbox's own loopback (the AgentCore contract: `0.0.0.0:8000`, path `/mcp`).
//!
//! A sandbox with `network = "none"` has its own network namespace, so its `127.0.0.1` is
//! not the host's. [`TcpConnector::connect`] opens the connection from a short-lived
//! thread that first joins that namespace (`setns` through a pidfd of the sandbox's
//! supervisor, so a recycled pid can never be joined) and connects to `127.0.0.1:PORT`
//! there; a socket stays in the namespace it was created in, so the stream is then used
//! from Lodge's runtime like any other. No veth pair, no addresses, no port clashes
//! between sessions. A dedicated thread is used because `setns` changes the calling
//! thread for good; the thread exits right after.
//!
//! With `network = "host"` and for the `process` backend the connection goes to the
//! host's `127.0.0.1:PORT`. Joining needs Linux 5.8 (setns on a pidfd).

use std::fs;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sched::{CloneFlags, setns};
use tokio::net::TcpStream;

/// How long to wait for a just-started sandbox to have made its network namespace.
const NAMESPACE_WAIT: Duration = Duration::from_secs(10);

/// Where a sandbox's loopback is.
#[derive(Clone, Debug)]
enum Target {
    /// The host's (process backend, `network = "host"`).
    Host,
    /// The network namespace of the process behind this pidfd.
    Namespace(Arc<OwnedFd>),
    /// A namespace of its own that Lodge kept no handle on: the server was started for
    /// stdio. Connecting to the host's loopback instead would reach the wrong service.
    Unreachable,
}

/// Opens TCP connections to `127.0.0.1:PORT` as seen from inside one sandbox. Cheap to
/// clone; usable from any task while the sandbox runs.
#[derive(Clone, Debug)]
pub struct TcpConnector {
    target: Target,
}

impl TcpConnector {
    /// Connects on the host's own loopback (a server with the host's network; tests).
    pub fn host() -> Self {
        TcpConnector {
            target: Target::Host,
        }
    }

    pub(crate) fn namespace(pidfd: Arc<OwnedFd>) -> Self {
        TcpConnector {
            target: Target::Namespace(pidfd),
        }
    }

    pub(crate) fn unreachable() -> Self {
        TcpConnector {
            target: Target::Unreachable,
        }
    }

    /// Connects to `127.0.0.1:port` inside the sandbox. Fails like a normal connect
    /// (e.g. `ConnectionRefused` while the server is not listening yet), or with an error
    /// saying the sandbox is gone.
    pub async fn connect(&self, port: u16) -> io::Result<TcpStream> {
        let pidfd = match &self.target {
            Target::Host => return TcpStream::connect((Ipv4Addr::LOCALHOST, port)).await,
            Target::Namespace(pidfd) => pidfd.clone(),
            Target::Unreachable => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "the sandbox was started without a way in over TCP (SandboxSpec::reached_over_tcp)",
                ));
            }
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("lodge-netns-connect".into())
            .spawn(move || {
                let _ = tx.send(connect_inside(&pidfd, port));
            })?;
        let stream = rx
            .await
            .map_err(|_| io::Error::other("the connecting thread died"))??;
        stream.set_nonblocking(true)?;
        TcpStream::from_std(stream)
    }
}

fn current_netns() -> io::Result<u64> {
    Ok(fs::metadata("/proc/thread-self/ns/net")?.ino())
}

/// On a throw-away thread: join the sandbox's network namespace, connect.
fn connect_inside(pidfd: &OwnedFd, port: u16) -> io::Result<std::net::TcpStream> {
    let host = current_netns()?;
    let deadline = Instant::now() + NAMESPACE_WAIT;
    loop {
        setns(pidfd, CloneFlags::CLONE_NEWNET).map_err(|e| match e {
            nix::errno::Errno::ESRCH => {
                io::Error::new(io::ErrorKind::NotConnected, "the sandbox has exited")
            }
            e => io::Error::other(format!("cannot enter the sandbox's network namespace: {e}")),
        })?;
        // Right after spawn the helper may not have unshared yet: still the host's.
        if current_netns()? != host {
            break;
        }
        if Instant::now() >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the sandbox did not set up its network namespace",
            ));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    loop {
        match std::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port)) {
            // `lo` is brought up right after the namespace is made.
            Err(e) if e.raw_os_error() == Some(libc::ENETUNREACH) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(1));
            }
            result => return result,
        }
    }
}
