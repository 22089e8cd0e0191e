//! `lodge cluster`: what running several nodes needs from the command line. Today the
//! cluster key file (`keygen`), the same on every node.

use anyhow::{Context, bail};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct ClusterArgs {
    #[command(subcommand)]
    command: ClusterCommand,
}

#[derive(clap::Subcommand)]
enum ClusterCommand {
    /// Write a cluster key file: one key per line (`KEY_ID BASE64_OF_32_BYTES`), the
    /// first the current key, a second the previous one. Without --out it goes to
    /// stdout.
    Keygen {
        /// The file to write (mode 0600). An existing file is refused unless --rotate.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Put a new current key into the existing --out file, keeping its current key
        /// as the previous one (which then still opens the session ids it sealed).
        #[arg(long, requires = "out")]
        rotate: bool,
    },
}

pub fn run(args: ClusterArgs) -> anyhow::Result<()> {
    match args.command {
        ClusterCommand::Keygen { out: None, .. } => {
            print!("{}", lodge_cluster::generate_key_file());
            Ok(())
        }
        ClusterCommand::Keygen {
            out: Some(path),
            rotate,
        } => {
            let text = match rotate {
                true => {
                    let existing = std::fs::read_to_string(&path)
                        .with_context(|| format!("cannot read {}", path.display()))?;
                    lodge_cluster::rotate_key_file(&existing)
                        .with_context(|| format!("invalid key file {}", path.display()))?
                }
                false if path.exists() => bail!(
                    "{} exists: pass --rotate to add a new current key to it, or choose another path",
                    path.display()
                ),
                false => lodge_cluster::generate_key_file(),
            };
            write_private(&path, &text)?;
            eprintln!(
                "lodge: wrote {}; copy it to every node's [cluster] key_file",
                path.display()
            );
            Ok(())
        }
    }
}

/// Writes beside `path` (mode 0600) and renames over it, so a reader never sees half a
/// key file.
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    let name = path
        .file_name()
        .with_context(|| format!("{} names no file", path.display()))?;
    let temp = path.with_file_name(format!(".{}.new", name.to_string_lossy()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp)
        .with_context(|| format!("cannot create {}", temp.display()))?;
    let written = file
        .write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .and_then(|()| std::fs::rename(&temp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written.with_context(|| format!("cannot write {}", path.display()))
}
