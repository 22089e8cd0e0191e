//! What /proc tells about memory: a process's resident set, its descendants, their
//! proportional share of memory, and the host's available memory. Sizes in KiB, as
//! the kernel reports them.

use anyhow::Context;
use std::collections::HashMap;

/// `VmRSS` and `RssAnon` of one process, from /proc/PID/status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rss {
    pub rss_kib: u64,
    pub anon_kib: u64,
}

pub fn rss(pid: u32) -> anyhow::Result<Rss> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    Ok(Rss {
        rss_kib: kib_field(&status, "VmRSS:").with_context(|| format!("{path}: no VmRSS"))?,
        anon_kib: kib_field(&status, "RssAnon:").with_context(|| format!("{path}: no RssAnon"))?,
    })
}

/// The host's `MemAvailable`, from /proc/meminfo.
pub fn mem_available_kib() -> anyhow::Result<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").context("reading /proc/meminfo")?;
    kib_field(&info, "MemAvailable:").context("/proc/meminfo: no MemAvailable")
}

/// The `Pss` of a process (its private pages plus its share of pages it shares),
/// from /proc/PID/smaps_rollup; `None` if it has exited meanwhile.
pub fn pss_kib(pid: u32) -> Option<u64> {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    kib_field(&rollup, "Pss:")
}

/// A process, named by its pid and its start time (clock ticks after boot), so a
/// pid the kernel has reused is not taken for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Proc {
    pub pid: u32,
    pub start: u64,
}

impl Proc {
    /// True while that very process exists (a zombie counts as gone).
    pub fn alive(self) -> bool {
        stat(self.pid).is_some_and(|s| s.start == self.start && s.state != 'Z')
    }
}

/// Every live descendant of `root` (children, their children...), found through the
/// parent pid of every process in /proc.
pub fn descendants(root: u32) -> anyhow::Result<Vec<Proc>> {
    let mut children: HashMap<u32, Vec<Proc>> = HashMap::new();
    for entry in std::fs::read_dir("/proc").context("listing /proc")? {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        // A process may exit between the listing and the read: skip it.
        if let Some(s) = stat(pid)
            && s.state != 'Z'
        {
            children.entry(s.ppid).or_default().push(Proc {
                pid,
                start: s.start,
            });
        }
    }
    let mut found = Vec::new();
    let mut queue = vec![root];
    while let Some(pid) = queue.pop() {
        for child in children.remove(&pid).unwrap_or_default() {
            queue.push(child.pid);
            found.push(child);
        }
    }
    Ok(found)
}

struct Stat {
    state: char,
    ppid: u32,
    start: u64,
}

/// Fields of /proc/PID/stat. The command name (field 2) is in parentheses and may hold
/// spaces or parentheses itself, so fields are counted after its last `)`.
fn stat(pid: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state (3), ppid (4), ... starttime (22).
    Some(Stat {
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        start: fields.get(19)?.parse().ok()?,
    })
}

/// The number on a `Name:   1234 kB` line.
fn kib_field(text: &str, name: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(name))?;
    let mut words = line[name.len()..].split_whitespace();
    let value = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") | None => Some(value),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_after_a_name_with_parentheses() {
        let line = "4242 (a (weird) name) S 17 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10 18446744073709551615";
        let s = parse_stat(line);
        assert!(s.is_some());
        if let Some(s) = s {
            assert_eq!((s.state, s.ppid, s.start), ('S', 17, 987654));
        }
    }

    #[test]
    fn kib_fields() {
        let status = "Name:\tlodge\nVmRSS:\t   12345 kB\nRssAnon:\t    678 kB\n";
        assert_eq!(kib_field(status, "VmRSS:"), Some(12345));
        assert_eq!(kib_field(status, "RssAnon:"), Some(678));
        assert_eq!(kib_field(status, "Pss:"), None);
    }

    #[test]
    fn this_process_is_readable() -> anyhow::Result<()> {
        let me = rss(std::process::id())?;
        assert!(me.rss_kib > 0);
        assert!(pss_kib(std::process::id()).is_some_and(|p| p > 0));
        Ok(())
    }
}
