//! `lodge sessions list|show|stop`: the admin API's sessions, for people (tables) and
//! scripts (`--json`).

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::Value;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

/// What `lodge serve --admin-listen` serves by convention (README).
const DEFAULT_ADMIN: &str = "http://127.0.0.1:8788";
/// How long one admin request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Args, Debug)]
pub struct SessionsArgs {
    #[command(subcommand)]
    verb: Verb,
    #[command(flatten)]
    target: AdminArgs,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
}

/// Which admin API, and its credentials.
#[derive(Args, Debug)]
pub struct AdminArgs {
    /// The admin listener's base URL [env: LODGE_ADMIN_URL] [default: http://127.0.0.1:8788].
    #[arg(long, global = true, value_name = "URL")]
    admin: Option<String>,
    /// The admin bearer token [env: LODGE_ADMIN_TOKEN].
    #[arg(
        long,
        global = true,
        value_name = "TOKEN",
        conflicts_with = "token_file"
    )]
    token: Option<String>,
    /// A file holding the admin bearer token (as `[admin] token_file`).
    #[arg(long, global = true, value_name = "FILE")]
    token_file: Option<PathBuf>,
}

/// `lodge drain`: the node takes no new sessions and stops once its live ones have
/// ended or the deadline has passed.
#[derive(Args, Debug)]
pub struct DrainArgs {
    #[command(flatten)]
    target: AdminArgs,
    /// How long live sessions are still served (e.g. 30m, 2h) [default: the node's
    /// [cluster] drain_deadline, or 30m].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    deadline: Option<Duration>,
}

pub fn drain(args: DrainArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let admin = Admin::new(&args.target)?;
        let mut request = admin.http.post(admin.url("/admin/drain")?);
        if let Some(deadline) = args.deadline {
            let deadline = humantime::format_duration(deadline).to_string();
            request = request.json(&serde_json::json!({ "deadline": deadline }));
        }
        let body = admin.send(request).await?;
        println!(
            "draining {}: no new sessions there; its {} live sessions are served until they end or {}, then it stops",
            admin.base,
            body["sessions"].as_u64().unwrap_or(0),
            body["deadline"].as_str().unwrap_or("the deadline"),
        );
        Ok(())
    })
}

#[derive(Subcommand, Debug)]
enum Verb {
    /// List live sessions, oldest first.
    List {
        /// Only this server's sessions.
        #[arg(long)]
        server: Option<String>,
        /// Only this principal's (the token subject).
        #[arg(long)]
        principal: Option<String>,
        /// Only this era's: legacy | modern.
        #[arg(long)]
        era: Option<String>,
        /// Only sessions in this state: starting | idle | busy | waiting | ending.
        #[arg(long)]
        state: Option<String>,
    },
    /// Show one session: its usage, its server's last stderr lines, its last protocol events.
    Show { id: String },
    /// Stop a session now; its client then gets 404 "stopped by an operator".
    Stop { id: String },
}

pub fn run(args: SessionsArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(run_async(args))
}

async fn run_async(args: SessionsArgs) -> anyhow::Result<()> {
    let admin = Admin::new(&args.target)?;
    match &args.verb {
        Verb::List {
            server,
            principal,
            era,
            state,
        } => {
            let mut url = admin.url("/admin/sessions")?;
            for (key, value) in [
                ("server", server),
                ("principal", principal),
                ("era", era),
                ("state", state),
            ] {
                if let Some(value) = value {
                    url.query_pairs_mut().append_pair(key, value);
                }
            }
            let body = admin.send(admin.http.get(url)).await?;
            if args.json {
                println!("{body:#}");
            } else {
                print!("{}", table(&body, SystemTime::now()));
            }
        }
        Verb::Show { id } => {
            let url = admin.url(&format!("/admin/sessions/{}", encode(id)))?;
            let body = admin.send(admin.http.get(url)).await?;
            if args.json {
                println!("{body:#}");
            } else {
                print!("{}", detail(&body, SystemTime::now()));
            }
        }
        Verb::Stop { id } => {
            let url = admin.url(&format!("/admin/sessions/{}", encode(id)))?;
            admin.send(admin.http.delete(url)).await?;
            if args.json {
                println!("{}", serde_json::json!({ "stopped": id }));
            } else {
                println!("stopped session {id}");
            }
        }
    }
    Ok(())
}

/// A path segment with everything but unreserved characters percent-encoded.
fn encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

struct Admin {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Admin {
    fn new(args: &AdminArgs) -> anyhow::Result<Self> {
        let base = args
            .admin
            .clone()
            .or_else(|| std::env::var("LODGE_ADMIN_URL").ok())
            .unwrap_or_else(|| DEFAULT_ADMIN.into());
        let token = match (&args.token, &args.token_file) {
            (Some(token), _) => Some(token.clone()),
            (None, Some(file)) => Some(
                std::fs::read_to_string(file)
                    .with_context(|| format!("cannot read --token-file {}", file.display()))?
                    .trim()
                    .to_string(),
            ),
            (None, None) => std::env::var("LODGE_ADMIN_TOKEN").ok(),
        };
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .context("cannot build an HTTP client")?;
        Ok(Admin {
            base: base.trim_end_matches('/').to_string(),
            token,
            http,
        })
    }

    fn url(&self, path: &str) -> anyhow::Result<reqwest::Url> {
        let text = format!("{}{path}", self.base);
        reqwest::Url::parse(&text).with_context(|| {
            format!(
                "--admin {:?} is not a URL (e.g. {DEFAULT_ADMIN})",
                self.base
            )
        })
    }

    /// Sends a request; the JSON body of a success (`null` for 204), else an error
    /// that says what went wrong and what to do.
    async fn send(&self, mut request: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.map_err(|e| {
            anyhow::anyhow!(
                "cannot reach the admin API at {}: {} (is `lodge serve` running with --admin-listen?)",
                self.base,
                error_chain(&e)
            )
        })?;
        let status = response.status();
        let text = response
            .text()
            .await
            .context("the admin API's answer was cut off")?;
        let body: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        if status.is_success() {
            return Ok(body);
        }
        let said = body["error"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| body.to_string());
        match status.as_u16() {
            401 => bail!(
                "the admin API refused: {said} (give its token with --token, --token-file or LODGE_ADMIN_TOKEN)"
            ),
            _ => bail!("{said} (HTTP {status})"),
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

/// How long ago an RFC 3339 time was, briefly ("3m12s"); "-" if absent.
fn ago(value: &Value, now: SystemTime) -> String {
    since(value, now).map_or("-".into(), brief)
}

fn since(value: &Value, now: SystemTime) -> Option<Duration> {
    let at = humantime::parse_rfc3339(value.as_str()?).ok()?;
    Some(now.duration_since(at).unwrap_or_default())
}

fn until(value: &Value, now: SystemTime) -> String {
    value
        .as_str()
        .and_then(|t| humantime::parse_rfc3339(t).ok())
        .map_or("-".into(), |at| {
            brief(at.duration_since(now).unwrap_or_default())
        })
}

/// A duration to the second, at most two units.
fn brief(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

fn mib(value: &Value) -> String {
    value
        .as_u64()
        .map_or("-".into(), |b| format!("{:.1}", b as f64 / 1_048_576.0))
}

fn text(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Left-aligned columns, two spaces apart.
fn columns(rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..rows.first().map_or(0, Vec::len))
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

fn table(body: &Value, now: SystemTime) -> String {
    let sessions = body["sessions"].as_array().cloned().unwrap_or_default();
    if sessions.is_empty() {
        return "no sessions\n".into();
    }
    let mut rows = vec![
        [
            "ID",
            "SERVER",
            "ERA",
            "PRINCIPAL",
            "STATE",
            "CALLS",
            "AGE",
            "IDLE",
            "MEM(MiB)",
            "CPU(s)",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for s in &sessions {
        let state = match s["waiting_on"].as_str() {
            Some(on) => format!("{} on {on}", text(&s["state"])),
            None => text(&s["state"]),
        };
        rows.push(vec![
            text(&s["id"]),
            text(&s["server"]),
            text(&s["era"]),
            text(&s["principal"]),
            state,
            text(&s["in_flight"]),
            ago(&s["created_at"], now),
            ago(&s["last_activity_at"], now),
            mib(&s["memory_bytes"]),
            text(&s["cpu_seconds"]),
        ]);
    }
    columns(&rows)
}

fn detail(s: &Value, now: SystemTime) -> String {
    let mut out = String::new();
    let fields = [
        ("id", text(&s["id"])),
        ("server", text(&s["server"])),
        ("era", text(&s["era"])),
        ("protocol", text(&s["protocol_version"])),
        ("hosting", text(&s["hosting"])),
        ("principal", text(&s["principal"])),
        ("issuer", text(&s["issuer"])),
        ("state", text(&s["state"])),
        ("waiting on", text(&s["waiting_on"])),
        ("calls in flight", text(&s["in_flight"])),
        (
            "created",
            format!(
                "{} ({} ago)",
                text(&s["created_at"]),
                ago(&s["created_at"], now)
            ),
        ),
        (
            "last activity",
            format!("{} ago", ago(&s["last_activity_at"], now)),
        ),
        ("idle timeout in", until(&s["idle_deadline"], now)),
        ("lifetime ends in", until(&s["lifetime_deadline"], now)),
        ("pid", text(&s["pid"])),
        ("memory", format!("{} MiB", mib(&s["memory_bytes"]))),
        ("cpu", format!("{} s", text(&s["cpu_seconds"]))),
    ];
    for (name, value) in fields {
        out.push_str(&format!("{:<17} {value}\n", format!("{name}:")));
    }
    out.push_str("\nserver stderr (last lines):\n");
    match s["stderr"].as_array() {
        Some(lines) if !lines.is_empty() => {
            for line in lines {
                out.push_str(&format!("  {}\n", text(line)));
            }
        }
        _ => out.push_str("  (none)\n"),
    }
    out.push_str("\nprotocol events (last, oldest first):\n");
    let events = s["events"].as_array().cloned().unwrap_or_default();
    if events.is_empty() {
        out.push_str("  (none)\n");
        return out;
    }
    let mut rows = vec![
        ["  TIME", "DIRECTION", "KIND", "METHOD", "STATUS"]
            .map(String::from)
            .to_vec(),
    ];
    for e in &events {
        let status = match (e["status"].as_str(), e["code"].as_i64()) {
            (Some(status), Some(code)) => format!("{status} {code}"),
            (Some(status), None) => status.to_string(),
            _ => "-".into(),
        };
        rows.push(vec![
            format!("  {}", text(&e["time"])),
            text(&e["direction"]).replace('_', " "),
            text(&e["kind"]),
            text(&e["method"]),
            status,
        ]);
    }
    out.push_str(&columns(&rows));
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn the_table_lines_up_and_says_what_waits_on_whom() {
        let body = json!({"sessions": [
            {"id": "abc", "server": "demo", "era": "legacy", "principal": null,
             "state": "waiting", "waiting_on": "user", "in_flight": 1,
             "created_at": "1970-01-01T00:00:00Z", "last_activity_at": "1970-01-01T00:01:30Z",
             "memory_bytes": 3_145_728, "cpu_seconds": 0.25},
            {"id": "a-longer-id", "server": "notes", "era": "modern", "principal": "alice",
             "state": "idle", "waiting_on": null, "in_flight": 0,
             "created_at": "1970-01-01T00:01:00Z", "last_activity_at": null,
             "memory_bytes": null, "cpu_seconds": null},
        ]});
        let shown = table(&body, at(3700));
        let lines: Vec<&str> = shown.lines().collect();
        assert_eq!(lines.len(), 3, "{shown}");
        assert!(lines[0].starts_with("ID           SERVER  ERA"), "{shown}");
        assert!(
            lines[1].contains("waiting on user") && lines[1].contains("1h01m"),
            "{shown}"
        );
        assert!(
            lines[1].contains("3.0") && lines[1].contains("0.25"),
            "{shown}"
        );
        assert!(
            lines[2].contains("alice") && lines[2].contains("idle"),
            "{shown}"
        );
        assert_eq!(table(&json!({"sessions": []}), at(0)), "no sessions\n");
    }

    #[test]
    fn durations_are_brief() {
        assert_eq!(brief(Duration::from_secs(59)), "59s");
        assert_eq!(brief(Duration::from_secs(192)), "3m12s");
        assert_eq!(brief(Duration::from_secs(7322)), "2h02m");
        assert_eq!(until(&json!("1970-01-01T00:10:00Z"), at(0)), "10m00s");
        assert_eq!(until(&Value::Null, at(0)), "-");
    }

    #[test]
    fn ids_are_encoded_into_one_path_segment() {
        assert_eq!(encode("ab-12_x.~"), "ab-12_x.~");
        assert_eq!(encode("../x y"), "..%2Fx%20y");
    }
}
