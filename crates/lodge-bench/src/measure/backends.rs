//! One Lodge per sandbox backend, for measurements that compare them (cold start,
//! warm pool). A backend Lodge cannot use on this host (namespaces needs user
//! namespaces, seccomp...) becomes a note in the report, not a failed bench.

use crate::http::McpHttp;
use crate::lodge::{LodgeServer, Options};
use crate::report::Row;
use std::path::Path;
use std::process::Command;

pub const BACKENDS: [&str; 2] = ["process", "namespaces"];

/// A Lodge started with one sandbox backend.
pub struct Hosted {
    pub backend: &'static str,
    pub http: McpHttp,
    pub lodge: LodgeServer,
}

/// A Lodge per backend in [`BACKENDS`], each configured by `options` (its `backend`
/// replaced). A backend that cannot run here gets a note in `rows` instead.
pub fn start_each(
    lodge_bin: &Path,
    options: &Options,
    rows: &mut Vec<Row>,
) -> anyhow::Result<Vec<Hosted>> {
    let mut hosted = Vec::new();
    for backend in BACKENDS {
        let options = Options {
            backend: Some(backend.into()),
            ..options.clone()
        };
        match crate::lodge::start(lodge_bin, &options) {
            Ok(lodge) if lodge.backend().as_deref() == Some(backend) => {
                hosted.push(Hosted {
                    backend,
                    http: McpHttp::new(lodge.url())?,
                    lodge,
                });
            }
            Ok(lodge) => rows.push(note(&format!(
                "{backend} unavailable: Lodge announced backend {:?} instead",
                lodge.backend()
            ))),
            Err(e) => {
                let why = doctor_verdict(lodge_bin).unwrap_or_else(|| format!("{e:#}"));
                eprintln!("lodge-bench: {backend} unavailable: {why}");
                rows.push(note(&format!("{backend} unavailable: {why}")));
            }
        }
    }
    Ok(hosted)
}

/// A line in the report for what could not be measured, and why.
pub fn note(text: &str) -> Row {
    Row::figure(text, None, "").row()
}

/// Why Lodge cannot use the namespaces backend, in `lodge doctor`'s words (its
/// `lodge serve will use: ...` line): `lodge serve` said it on stderr, which the
/// bench passes through rather than captures.
fn doctor_verdict(lodge_bin: &Path) -> Option<String> {
    let out = Command::new(lodge_bin).arg("doctor").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("lodge serve will use: "))
        .map(str::to_string)
}
