//! The Python SDK server the cold-start measurement hosts besides the demo:
//! tests/fixtures/python/server.py, run by the venv `scripts/setup-python.sh` creates.
//! The bench never creates the venv itself (that installs packages from the network):
//! when it is missing, the Python rows are skipped with a note saying how to get them.

use std::path::{Path, PathBuf};

/// The repository this bench was built from, as an absolute path without `..`: Lodge
/// runs the server in a scratch directory (with `namespaces`, in a new mount
/// namespace), so every path in its command must stand on its own.
fn repo() -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    std::fs::canonicalize(&path).unwrap_or(path)
}

/// The argv of the Python fixture server, or why it cannot run here.
pub fn fixture_server() -> Result<Vec<String>, String> {
    // Where setup-python.sh puts the venv: ${LODGE_CACHE_DIR:-<repo>/.cache}/venv.
    let cache =
        std::env::var_os("LODGE_CACHE_DIR").map_or_else(|| repo().join(".cache"), PathBuf::from);
    let python = cache.join("venv/bin/python");
    let server = repo().join("tests/fixtures/python/server.py");
    if !python.exists() {
        return Err(format!(
            "no Python venv at {} (run scripts/setup-python.sh first)",
            python.display()
        ));
    }
    if !server.exists() {
        return Err(format!("{} is missing", server.display()));
    }
    // The venv's python is a symlink that must stay one: Python finds the venv (and
    // its packages) from the path it was started by.
    Ok(vec![
        python.display().to_string(),
        server.display().to_string(),
    ])
}
