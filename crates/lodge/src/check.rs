//! `lodge check`: load the config as `lodge serve` would, start one session of each
//! server in its sandbox, and say how each is hosted and why, from what the server
//! itself answered (the same probe a 2026-07-28 client's first request runs).

use anyhow::Context;
use lodge::config::{Env, ServeArgs, Settings};
use lodge_runtime::{Hosting, HostingKind, Runtime};
use std::time::Duration;

/// How long one server may take to start and answer the probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let settings = Settings::load(args, &Env::from_process())?;
    let servers = lodge::config::build_servers(&settings, lodge::config::probe_host)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let failed = runtime.block_on(async {
        let runtime = Runtime::new(servers, settings.session.clone());
        let mut failed = 0;
        for server in runtime.servers() {
            let name = &server.spec.name;
            let anonymous = lodge_runtime::Principal::anonymous();
            let probe = runtime.create_modern_session(server, Default::default(), &anonymous);
            match tokio::time::timeout(PROBE_TIMEOUT, probe).await {
                Ok(Ok(session)) => {
                    match session.hosting() {
                        Some(hosting) => println!("{name}: {}", describe(hosting)),
                        None => println!("{name}: started, but its era was not decided"),
                    }
                    session
                        .stop(lodge_runtime::EndReason::Discarded(
                            "its server was only being checked",
                        ))
                        .await;
                }
                Ok(Err(e)) => {
                    failed += 1;
                    println!("{name}: FAILED: {e}");
                }
                Err(_) => {
                    failed += 1;
                    println!(
                        "{name}: FAILED: no answer to initialize or server/discover within {}s",
                        PROBE_TIMEOUT.as_secs()
                    );
                }
            }
        }
        runtime.shutdown(Duration::from_secs(5)).await;
        failed
    });
    match failed {
        0 => Ok(()),
        n => anyhow::bail!("{n} server(s) failed the check"),
    }
}

/// The line for one server: how each era of client is served, and why.
fn describe(hosting: &Hosting) -> String {
    let legacy_clients = match hosting.kind {
        HostingKind::Bridged | HostingKind::Relayed => "legacy clients relayed",
        HostingKind::Passthrough | HostingKind::SpokenFor => {
            "Lodge speaks 2026-07-28 to it for legacy clients"
        }
    };
    format!("{hosting}; {legacy_clients}")
}
