//! Each backend's `descriptors_per_session` against the descriptors its live sandboxes
//! really hold in this process (`/proc/self/fd`). One test in its own binary: no other
//! test opens descriptors while it counts.
//!
//! The `namespaces` half needs what the backend needs (root, namespaces); without it that
//! half is skipped with a message, except under `CI=true`.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use lodge_sandbox::{
    Backend, HelperCommand, Host, Limits, NamespacesBackend, NamespacesOptions, Network,
    ProcessBackend, Sandbox, SandboxId, SandboxSpec,
};

/// Sandboxes started per case: a per-sandbox miscount shows as a multiple of this.
const SANDBOXES: u64 = 3;

fn open_descriptors() -> u64 {
    // The directory's own descriptor is counted too: a constant, gone from differences.
    std::fs::read_dir("/proc/self/fd").unwrap().count() as u64
}

fn spec(root: &Path, reached_over_tcp: bool) -> SandboxSpec {
    SandboxSpec {
        sandbox_id: SandboxId::mint(),
        command: vec!["cat".into()],
        env: BTreeMap::new(),
        scratch_root: root.into(),
        stderr_cap: 1024,
        stderr_file: None,
        limits: Limits::default(),
        reached_over_tcp,
        kept: None,
    }
}

/// Starts `SANDBOXES` sandboxes and checks that they hold exactly what `backend` says,
/// and that all of it is closed once they are terminated.
async fn check(backend: &dyn Backend, label: &str, reached_over_tcp: bool, root: &Path) {
    let before = open_descriptors();
    let sandboxes: Vec<Sandbox> = (0..SANDBOXES)
        .map(|_| backend.spawn(&spec(root, reached_over_tcp)).unwrap())
        .collect();
    let held = open_descriptors() - before;
    let per_session = backend.descriptors_per_session(reached_over_tcp);
    assert_eq!(
        held,
        SANDBOXES * per_session,
        "{label}, reached over TCP: {reached_over_tcp}: {SANDBOXES} sandboxes hold {held} descriptors, \
         descriptors_per_session says {per_session} each"
    );
    for sandbox in sandboxes {
        drop(sandbox.io);
        tokio::time::timeout(
            Duration::from_secs(60),
            sandbox.process.terminate(Duration::from_secs(5)),
        )
        .await
        .unwrap();
    }
    assert_eq!(
        open_descriptors(),
        before,
        "{label}: all closed after terminate"
    );
}

fn namespaces_host() -> Option<Arc<Host>> {
    let helper = HelperCommand::new(
        env!("CARGO_BIN_EXE_lodge-sandbox-helper"),
        Vec::<String>::new(),
    );
    let host = Arc::new(Host::probe(helper));
    match host.namespaces_supported() {
        Ok(()) => Some(host),
        Err(why) if std::env::var_os("CI").is_none() => {
            eprintln!("skipping the namespaces backend: it cannot run here: {why}");
            None
        }
        Err(why) => panic!("the namespaces backend must work in CI: {why}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backends_hold_the_descriptors_they_report() {
    let tmp = tempfile::tempdir().unwrap();
    let host = namespaces_host();
    // The runtime opens a few descriptors of its own at the first child (the signal
    // driver): let that happen before counting.
    let warm_up = ProcessBackend.spawn(&spec(tmp.path(), false)).unwrap();

    assert_eq!(ProcessBackend.descriptors_per_session(false), 4);
    assert_eq!(ProcessBackend.descriptors_per_session(true), 4);
    for tcp in [false, true] {
        check(&ProcessBackend, "process", tcp, tmp.path()).await;
    }

    if let Some(host) = host {
        let isolated = NamespacesBackend::new(host.clone(), NamespacesOptions::default()).unwrap();
        let host_network = NamespacesBackend::new(
            host,
            NamespacesOptions {
                network: Network::Host,
                ..NamespacesOptions::default()
            },
        )
        .unwrap();
        // The uid lock is the fifth.
        assert_eq!(isolated.descriptors_per_session(false), 5);
        assert_eq!(isolated.descriptors_per_session(true), 6);
        assert_eq!(host_network.descriptors_per_session(false), 5);
        assert_eq!(host_network.descriptors_per_session(true), 5);
        for tcp in [false, true] {
            check(&isolated, "namespaces, network none", tcp, tmp.path()).await;
            check(&host_network, "namespaces, network host", tcp, tmp.path()).await;
        }
    }
    warm_up.process.terminate(Duration::from_secs(5)).await;
}
