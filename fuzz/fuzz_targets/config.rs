//! Arbitrary text as a `lodge.toml`, parsed and checked as `lodge serve --config` does:
//! it never panics, and what it accepts has at least one server, each with a command.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;
use std::sync::OnceLock;

/// Files a config names by a relative path resolve here: an empty directory.
fn beside() -> &'static Path {
    static DIR: OnceLock<std::path::PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("lodge-fuzz-config-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(settings) = lodge::config::Settings::from_text(text, beside()) {
        assert!(
            !settings.servers.is_empty(),
            "accepted a config with nothing to serve"
        );
        for server in &settings.servers {
            assert!(
                !server.command.is_empty(),
                "accepted a server without a command"
            );
        }
    }
});
