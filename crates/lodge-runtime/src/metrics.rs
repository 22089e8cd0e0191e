//! Lodge's Prometheus metrics: one registry, shared by the front and the runtime.
//!
//! **(contract)** The names and labels below are what dashboards and alerts use.
//!
//! The hot path takes no lock: every server's label sets are resolved once (eagerly
//! where they are few, on first use otherwise, into `OnceLock` slots) and counting is an
//! atomic add on the kept handle. Histograms are [`AtomicHistogram`]s for the same
//! reason (prometheus-client's own takes a mutex per observation). Only the error
//! counter, whose label set includes a code a server picks, looks up its family (a
//! read lock) per error: errors are not the hot path.
//!
//! Label values are bounded: a method outside the known MCP methods is `other`, a
//! JSON-RPC error code outside the reserved range -32768..=-32000 is `other`, an HTTP
//! method other than GET, POST and DELETE is `other`.

use crate::error::{EndReason, ErrorSource};
use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// A label set: `(name, value)` pairs in a fixed order.
type Labels = Vec<(&'static str, String)>;
type HistogramFamily = Family<Labels, AtomicHistogram, fn() -> AtomicHistogram>;

/// The methods counted under their own name; anything else is `other`.
pub const METHODS: &[&str] = &[
    "initialize",
    "ping",
    "tools/list",
    "tools/call",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "prompts/list",
    "prompts/get",
    "completion/complete",
    "logging/setLevel",
    "server/discover",
    "subscriptions/listen",
    "tasks/get",
    "tasks/list",
    "tasks/result",
    "tasks/cancel",
    "elicitation/create",
    "sampling/createMessage",
    "roots/list",
    "other",
];

/// A JSON-RPC method, bucketed to [`METHODS`] (clients choose method names, so the
/// label's values must be bounded).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Method(u8);

impl Method {
    pub const OTHER: Method = Method((METHODS.len() - 1) as u8);

    pub fn of(name: &str) -> Method {
        METHODS
            .iter()
            .position(|m| *m == name)
            .map_or(Method::OTHER, |n| Method(n as u8))
    }

    pub fn of_opt(name: Option<&str>) -> Method {
        name.map_or(Method::OTHER, Method::of)
    }

    pub fn as_str(self) -> &'static str {
        METHODS[usize::from(self.0)]
    }

    fn index(self) -> usize {
        usize::from(self.0)
    }
}

/// The `reason` label of `lodge_sessions_ended_total` for each way a session ends.
pub fn end_reason_label(reason: &EndReason) -> &'static str {
    match reason {
        EndReason::Deleted => "client_delete",
        EndReason::IdleTimeout(_) => "idle_timeout",
        EndReason::MaxLifetime(_) => "max_lifetime",
        EndReason::Stopped => "admin_stop",
        EndReason::ServerExited { oom: true, .. } => "out_of_memory",
        EndReason::ServerExited { oom: false, .. } => "server_exit",
        EndReason::ShuttingDown => "shutdown",
        // None of the above fits these; each is its own value.
        EndReason::Abandoned => "abandoned",
        EndReason::Discarded(_) => "discarded",
        EndReason::OverBudget(_) => "over_budget",
        EndReason::Failed => "failed",
    }
}

/// Every value [`end_reason_label`] gives.
const END_REASONS: &[&str] = &[
    "client_delete",
    "idle_timeout",
    "max_lifetime",
    "admin_stop",
    "server_exit",
    "out_of_memory",
    "shutdown",
    "abandoned",
    "discarded",
    "over_budget",
    "failed",
];

/// The `source` label of error metrics: auth refusals count as the client's.
pub fn source_label(source: ErrorSource) -> &'static str {
    match source {
        ErrorSource::Client | ErrorSource::Auth => "client",
        ErrorSource::Server => "server",
        ErrorSource::Lodge => "lodge",
    }
}

/// The `code` label: a code in JSON-RPC's reserved range as is, any other `other`
/// (servers choose codes, so the label's values must be bounded).
pub fn code_label(code: i64) -> String {
    if (-32768..=-32000).contains(&code) {
        code.to_string()
    } else {
        "other".to_string()
    }
}

/// What a server asked of a client (elicitation, sampling, roots).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Asked {
    Elicitation,
    Sampling,
    Roots,
}

impl Asked {
    pub fn of(method: &str) -> Option<Asked> {
        match method {
            "elicitation/create" => Some(Asked::Elicitation),
            "sampling/createMessage" => Some(Asked::Sampling),
            "roots/list" => Some(Asked::Roots),
            _ => None,
        }
    }

    fn method(self) -> &'static str {
        match self {
            Asked::Elicitation => "elicitation/create",
            Asked::Sampling => "sampling/createMessage",
            Asked::Roots => "roots/list",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// An elicitation result's `action`, read without the rest of the answer.
#[derive(serde::Deserialize)]
struct Action<'a> {
    #[serde(borrow)]
    action: Option<std::borrow::Cow<'a, str>>,
}

/// How a client answered a server's request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Accept,
    Decline,
    Cancel,
    Error,
}

impl Outcome {
    const ALL: [&'static str; 4] = ["accept", "decline", "cancel", "error"];

    pub fn as_str(self) -> &'static str {
        Self::ALL[self as usize]
    }

    /// The outcome of the client's answer `message` to a request of kind `asked`: an
    /// error response is `error`; an elicitation result says its `action`; any other
    /// result is `accept`.
    pub fn of(asked: Asked, message: &lodge_proto::Message) -> Outcome {
        if message.error_code().is_some() {
            return Outcome::Error;
        }
        if asked != Asked::Elicitation {
            return Outcome::Accept;
        }
        #[derive(serde::Deserialize)]
        struct Answer<'a> {
            #[serde(borrow)]
            result: Option<Action<'a>>,
        }
        let action = serde_json::from_slice::<Answer>(&message.bytes)
            .ok()
            .and_then(|a| a.result)
            .and_then(|r| r.action);
        Outcome::of_action(action.as_deref())
    }

    /// The outcome of `answer`, one value of a 2026-07-28 retry's `inputResponses`
    /// (the result a client gives an input request, with no JSON-RPC envelope): a
    /// value that is not an object (Lodge sends `null` for a legacy client's error
    /// answer) or carries an `error` is `error`; otherwise as [`Outcome::of`].
    pub fn of_answer(asked: Asked, answer: &serde_json::Value) -> Outcome {
        let Some(answer) = answer.as_object() else {
            return Outcome::Error;
        };
        if answer.contains_key("error") {
            return Outcome::Error;
        }
        if asked != Asked::Elicitation {
            return Outcome::Accept;
        }
        Outcome::of_action(answer.get("action").and_then(serde_json::Value::as_str))
    }

    /// An elicitation result's `action`; a missing or unknown one is an error.
    fn of_action(action: Option<&str>) -> Outcome {
        match action {
            Some("decline") => Outcome::Decline,
            Some("cancel") => Outcome::Cancel,
            Some("accept") => Outcome::Accept,
            _ => Outcome::Error,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Which way relayed bytes went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Toward {
    Server,
    Client,
}

/// Bucket bounds (seconds) of the latency histograms; the last is `+Inf`.
const RPC_BUCKETS: &[f64] = &[
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    f64::INFINITY,
];
/// Bucket bounds of how long users and models take to answer a server.
const WAIT_BUCKETS: &[f64] = &[
    0.1,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
    f64::INFINITY,
];
/// Bucket bounds of a sandbox's start.
const START_BUCKETS: &[f64] = &[
    0.001,
    0.0025,
    0.005,
    0.01,
    0.02,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    f64::INFINITY,
];

/// A histogram whose observations are atomic adds (no lock).
#[derive(Clone, Debug)]
pub struct AtomicHistogram(Arc<HistogramInner>);

#[derive(Debug)]
struct HistogramInner {
    bounds: &'static [f64],
    /// One count per bound (not cumulative; the encoder sums them).
    counts: Box<[AtomicU64]>,
    /// The sum of observations, in nanoseconds.
    sum_nanos: AtomicU64,
}

impl AtomicHistogram {
    fn new(bounds: &'static [f64]) -> Self {
        AtomicHistogram(Arc::new(HistogramInner {
            bounds,
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            sum_nanos: AtomicU64::new(0),
        }))
    }

    fn rpc() -> Self {
        Self::new(RPC_BUCKETS)
    }

    fn wait() -> Self {
        Self::new(WAIT_BUCKETS)
    }

    fn start() -> Self {
        Self::new(START_BUCKETS)
    }

    pub fn observe(&self, took: Duration) {
        let secs = took.as_secs_f64();
        let inner = &self.0;
        let bucket = inner
            .bounds
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(inner.bounds.len() - 1);
        inner.counts[bucket].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        inner.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }
}

impl TypedMetric for AtomicHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for AtomicHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let inner = &self.0;
        let buckets: Vec<(f64, u64)> = inner
            .bounds
            .iter()
            .zip(inner.counts.iter())
            .map(|(b, c)| (*b, c.load(Ordering::Relaxed)))
            .collect();
        let count = buckets.iter().map(|(_, c)| c).sum();
        let sum = inner.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// The metric families, each a cheap handle onto the registry's data.
#[derive(Clone)]
struct Families {
    sessions_active: Family<Labels, Gauge>,
    sessions_started: Family<Labels, Counter>,
    sessions_ended: Family<Labels, Counter>,
    http_requests: Family<Labels, Counter>,
    rpc_requests: Family<Labels, Counter>,
    rpc_errors: Family<Labels, Counter>,
    server_requests: Family<Labels, Counter>,
    server_request_wait: HistogramFamily,
    sandbox_start: HistogramFamily,
    rpc_duration: HistogramFamily,
    relayed_bytes: Family<Labels, Counter>,
    sandbox_memory: Family<Labels, Gauge>,
    warm_pool_ready: Family<Labels, Gauge>,
    audit_lost: Family<Labels, Counter>,
}

impl Families {
    fn register(registry: &mut Registry) -> Families {
        let f = Families {
            sessions_active: Family::default(),
            sessions_started: Family::default(),
            sessions_ended: Family::default(),
            http_requests: Family::default(),
            rpc_requests: Family::default(),
            rpc_errors: Family::default(),
            server_requests: Family::default(),
            server_request_wait: Family::new_with_constructor(AtomicHistogram::wait),
            sandbox_start: Family::new_with_constructor(AtomicHistogram::start),
            rpc_duration: Family::new_with_constructor(AtomicHistogram::rpc),
            relayed_bytes: Family::default(),
            sandbox_memory: Family::default(),
            warm_pool_ready: Family::default(),
            audit_lost: Family::default(),
        };
        // Counters get their `_total` suffix from the encoder.
        let r = registry;
        r.register(
            "lodge_sessions_active",
            "Live sessions",
            f.sessions_active.clone(),
        );
        r.register(
            "lodge_sessions_started",
            "Sessions started",
            f.sessions_started.clone(),
        );
        r.register(
            "lodge_sessions_ended",
            "Sessions ended, by why",
            f.sessions_ended.clone(),
        );
        r.register(
            "lodge_http_requests",
            "HTTP requests to the MCP endpoint, by method and status code",
            f.http_requests.clone(),
        );
        r.register(
            "lodge_rpc_requests",
            "JSON-RPC requests from clients",
            f.rpc_requests.clone(),
        );
        r.register(
            "lodge_rpc_errors",
            "JSON-RPC errors answered to clients, by code and whose fault",
            f.rpc_errors.clone(),
        );
        r.register(
            "lodge_server_requests",
            "Requests servers made of clients (elicitation, sampling, roots), by how they were answered",
            f.server_requests.clone(),
        );
        r.register(
            "lodge_server_request_wait_seconds",
            "How long clients (their users and models) took to answer a server's request",
            f.server_request_wait.clone(),
        );
        r.register(
            "lodge_sandbox_start_seconds",
            "How long starting a sandbox took",
            f.sandbox_start.clone(),
        );
        r.register(
            "lodge_rpc_duration_seconds",
            "How long client requests took, from reaching the session to the answer",
            f.rpc_duration.clone(),
        );
        r.register(
            "lodge_relayed_bytes",
            "Bytes of JSON-RPC messages relayed, by direction",
            f.relayed_bytes.clone(),
        );
        r.register(
            "lodge_sandbox_memory_bytes",
            "Memory used by live sessions' sandboxes (read at scrape time)",
            f.sandbox_memory.clone(),
        );
        r.register(
            "lodge_audit_lines_lost",
            "Audit log lines lost: the writer was behind (queue_full) or could not write (write_failed)",
            f.audit_lost.clone(),
        );
        r.register(
            "lodge_warm_pool_ready",
            "Started sandboxes waiting in the warm pool",
            f.warm_pool_ready.clone(),
        );
        f
    }
}

fn labels<const N: usize>(pairs: [(&'static str, &str); N]) -> Labels {
    pairs.into_iter().map(|(k, v)| (k, v.to_string())).collect()
}

fn era(modern: bool) -> &'static str {
    if modern { "modern" } else { "legacy" }
}

/// The HTTP methods counted under their own name; anything else is `other`.
const HTTP_METHODS: [&str; 4] = ["GET", "POST", "DELETE", "other"];
const STATUS_SLOTS: usize = 500; // 100..=599

/// One hosted server's metrics, with its label sets resolved (the hot path's handles).
pub struct ServerMetrics {
    name: String,
    families: Families,
    backend: &'static str,
    active: [Gauge; 2],
    started: [Counter; 2],
    ended: Box<[OnceLock<Counter>]>,
    http: Box<[OnceLock<Counter>]>,
    rpc_requests: [Box<[OnceLock<Counter>]>; 2],
    rpc_duration: Box<[OnceLock<AtomicHistogram>]>,
    relayed: [Counter; 2],
    server_requests: [[OnceLock<Counter>; 4]; 3],
    wait: [OnceLock<AtomicHistogram>; 3],
    sandbox_start: OnceLock<AtomicHistogram>,
}

fn slots<T>(n: usize) -> Box<[OnceLock<T>]> {
    (0..n).map(|_| OnceLock::new()).collect()
}

impl ServerMetrics {
    /// A hosted server's metrics; `hosted: false` for the stand-in of paths that name
    /// none, which has no sessions (so no series of them).
    fn new(name: &str, backend: &'static str, families: &Families, hosted: bool) -> Self {
        let f = families;
        let by_era = |family: &Family<Labels, Counter>, modern: bool| match hosted {
            true => family.get_or_create_owned(&labels([("server", name), ("era", era(modern))])),
            false => Counter::default(),
        };
        let gauge = |modern: bool| match hosted {
            true => f
                .sessions_active
                .get_or_create_owned(&labels([("server", name), ("era", era(modern))])),
            false => Gauge::default(),
        };
        let relayed = |direction: &str| match hosted {
            true => f
                .relayed_bytes
                .get_or_create_owned(&labels([("server", name), ("direction", direction)])),
            false => Counter::default(),
        };
        ServerMetrics {
            name: name.to_string(),
            families: f.clone(),
            backend,
            active: [gauge(false), gauge(true)],
            started: [
                by_era(&f.sessions_started, false),
                by_era(&f.sessions_started, true),
            ],
            ended: slots(END_REASONS.len()),
            http: slots(HTTP_METHODS.len() * STATUS_SLOTS),
            rpc_requests: [slots(METHODS.len()), slots(METHODS.len())],
            rpc_duration: slots(METHODS.len()),
            relayed: [relayed("to_server"), relayed("to_client")],
            server_requests: Default::default(),
            wait: Default::default(),
            sandbox_start: OnceLock::new(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn session_started(&self, modern: bool) {
        self.started[usize::from(modern)].inc();
        self.active[usize::from(modern)].inc();
    }

    pub fn session_ended(&self, modern: bool, reason: &EndReason) {
        self.active[usize::from(modern)].dec();
        let label = end_reason_label(reason);
        let slot = END_REASONS.iter().position(|r| *r == label).unwrap_or(0);
        self.ended[slot]
            .get_or_init(|| {
                self.families
                    .sessions_ended
                    .get_or_create_owned(&labels([("server", &self.name), ("reason", label)]))
            })
            .inc();
    }

    /// An HTTP request to this server's endpoint was answered with `status`.
    pub fn http_request(&self, method: &str, status: u16) {
        let m = HTTP_METHODS
            .iter()
            .position(|h| *h == method)
            .unwrap_or(HTTP_METHODS.len() - 1);
        let status = status.clamp(100, 599);
        let slot = m * STATUS_SLOTS + usize::from(status - 100);
        self.http[slot]
            .get_or_init(|| {
                self.families.http_requests.get_or_create_owned(&labels([
                    ("server", &self.name),
                    ("method", HTTP_METHODS[m]),
                    ("status", &status.to_string()),
                ]))
            })
            .inc();
    }

    /// A client sent a JSON-RPC request.
    pub fn rpc_request(&self, modern: bool, method: Method) {
        self.rpc_requests[usize::from(modern)][method.index()]
            .get_or_init(|| {
                self.families.rpc_requests.get_or_create_owned(&labels([
                    ("server", &self.name),
                    ("era", era(modern)),
                    ("method", method.as_str()),
                ]))
            })
            .inc();
    }

    /// A client was answered with a JSON-RPC error (in a 200 or not).
    pub fn rpc_error(&self, method: Method, code: i64, source: ErrorSource) {
        self.families
            .rpc_errors
            .get_or_create(&labels([
                ("server", &self.name),
                ("method", method.as_str()),
                ("code", &code_label(code)),
                ("source", source_label(source)),
            ]))
            .inc();
    }

    /// A client's request was answered `took` after it reached its session.
    pub fn rpc_duration(&self, method: Method, took: Duration) {
        self.rpc_duration[method.index()]
            .get_or_init(|| {
                self.families.rpc_duration.get_or_create_owned(&labels([
                    ("server", &self.name),
                    ("method", method.as_str()),
                ]))
            })
            .observe(took);
    }

    /// A client answered the server's request of kind `asked` after `waited`.
    pub fn server_request(&self, asked: Asked, outcome: Outcome, waited: Duration) {
        self.server_requests[asked.index()][outcome.index()]
            .get_or_init(|| {
                self.families.server_requests.get_or_create_owned(&labels([
                    ("server", &self.name),
                    ("method", asked.method()),
                    ("outcome", Outcome::ALL[outcome.index()]),
                ]))
            })
            .inc();
        self.wait[asked.index()]
            .get_or_init(|| {
                self.families
                    .server_request_wait
                    .get_or_create_owned(&labels([
                        ("server", &self.name),
                        ("method", asked.method()),
                    ]))
            })
            .observe(waited);
    }

    pub fn relayed(&self, toward: Toward, bytes: usize) {
        let n = match toward {
            Toward::Server => 0,
            Toward::Client => 1,
        };
        self.relayed[n].inc_by(bytes as u64);
    }

    pub fn sandbox_started(&self, took: Duration) {
        self.sandbox_start
            .get_or_init(|| {
                self.families.sandbox_start.get_or_create_owned(&labels([
                    ("server", &self.name),
                    ("backend", self.backend),
                ]))
            })
            .observe(took);
    }
}

/// Lodge's metrics: the registry and each hosted server's resolved handles.
pub struct Metrics {
    registry: Registry,
    families: Families,
    servers: HashMap<String, Arc<ServerMetrics>>,
    /// For requests to a path that names no hosted server (`server="unknown"`).
    unknown: Arc<ServerMetrics>,
    scraping: std::sync::Mutex<()>,
}

impl Metrics {
    /// Metrics for the servers named, each with its sandbox backend's name.
    pub fn new<'a>(servers: impl IntoIterator<Item = (&'a str, &'static str)>) -> Self {
        let mut registry = Registry::default();
        let families = Families::register(&mut registry);
        let servers = servers
            .into_iter()
            .map(|(name, backend)| {
                (
                    name.to_string(),
                    Arc::new(ServerMetrics::new(name, backend, &families, true)),
                )
            })
            .collect();
        let unknown = Arc::new(ServerMetrics::new("unknown", "none", &families, false));
        Metrics {
            registry,
            families,
            servers,
            unknown,
            scraping: std::sync::Mutex::new(()),
        }
    }

    /// JSON-RPC requests clients have sent since Lodge started, all servers and eras
    /// together (the console's chart).
    pub fn rpc_requests_total(&self) -> u64 {
        self.servers
            .values()
            .flat_map(|server| server.rpc_requests.iter().flatten())
            .filter_map(OnceLock::get)
            .map(Counter::get)
            .sum()
    }

    /// The metrics of server `name`, or of `unknown` for a name no server has.
    pub fn server(&self, name: &str) -> &Arc<ServerMetrics> {
        self.servers.get(name).unwrap_or(&self.unknown)
    }

    /// The metrics read at scrape time, for server `name`.
    pub fn set_scraped(&self, name: &str, memory_bytes: u64, warm_pool_ready: usize) {
        let server = labels([("server", name)]);
        self.families
            .sandbox_memory
            .get_or_create(&server)
            .set(i64::try_from(memory_bytes).unwrap_or(i64::MAX));
        self.families
            .warm_pool_ready
            .get_or_create(&server)
            .set(i64::try_from(warm_pool_ready).unwrap_or(i64::MAX));
    }

    /// The audit log's lost lines so far (read at scrape time; scrapes take turns so
    /// each loss is counted once).
    pub fn set_audit_lost(&self, (queue_full, write_failed): (u64, u64)) {
        let _turn = self
            .scraping
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (why, lost) in [("queue_full", queue_full), ("write_failed", write_failed)] {
            let counter = self
                .families
                .audit_lost
                .get_or_create(&labels([("reason", why)]));
            let seen = counter.get();
            if lost > seen {
                counter.inc_by(lost - seen);
            }
        }
    }

    /// Everything, in the Prometheus text format (version 0.0.4).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }

    /// The `Content-Type` of [`Metrics::encode`]'s output.
    pub const CONTENT_TYPE: &'static str =
        prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn methods_are_bucketed_to_the_known_ones() {
        assert_eq!(Method::of("tools/call").as_str(), "tools/call");
        assert_eq!(Method::of("initialize").as_str(), "initialize");
        assert_eq!(Method::of("tools/call2").as_str(), "other");
        assert_eq!(Method::of("").as_str(), "other");
        assert_eq!(Method::of_opt(None), Method::OTHER);
        for name in METHODS {
            assert_eq!(Method::of(name).as_str(), *name);
        }
    }

    #[test]
    fn every_end_reason_has_its_label() {
        use crate::session::OverBudget;
        let d = Duration::from_secs(1);
        let exited = |oom| EndReason::ServerExited {
            how: "exited".into(),
            last_stderr: None,
            oom,
        };
        let cases = [
            (EndReason::Deleted, "client_delete"),
            (EndReason::IdleTimeout(d), "idle_timeout"),
            (EndReason::MaxLifetime(d), "max_lifetime"),
            (EndReason::Stopped, "admin_stop"),
            (exited(false), "server_exit"),
            (exited(true), "out_of_memory"),
            (EndReason::ShuttingDown, "shutdown"),
            (EndReason::Abandoned, "abandoned"),
            (EndReason::Discarded("check"), "discarded"),
            (EndReason::OverBudget(OverBudget::Session(1)), "over_budget"),
            (EndReason::Failed, "failed"),
        ];
        for (reason, label) in cases {
            assert_eq!(end_reason_label(&reason), label, "{reason:?}");
            assert!(END_REASONS.contains(&label));
        }
    }

    #[test]
    fn codes_and_sources_are_bounded() {
        assert_eq!(code_label(-32602), "-32602");
        assert_eq!(code_label(-32000), "-32000");
        assert_eq!(code_label(-32768), "-32768");
        assert_eq!(code_label(-31999), "other");
        assert_eq!(code_label(42), "other");
        assert_eq!(source_label(ErrorSource::Auth), "client");
        assert_eq!(source_label(ErrorSource::Server), "server");
        assert_eq!(source_label(ErrorSource::Lodge), "lodge");
    }

    fn msg(text: &'static str) -> lodge_proto::Message {
        lodge_proto::Message::parse(Bytes::from_static(text.as_bytes())).unwrap()
    }

    #[test]
    fn answers_to_servers_have_outcomes() {
        let accept = msg(r#"{"jsonrpc":"2.0","id":1,"result":{"action":"accept","content":{}}}"#);
        let decline = msg(r#"{"jsonrpc":"2.0","id":1,"result":{"action":"decline"}}"#);
        let cancel = msg(r#"{"jsonrpc":"2.0","id":1,"result":{"action":"cancel"}}"#);
        let error = msg(r#"{"jsonrpc":"2.0","id":1,"error":{"code":-1,"message":"no"}}"#);
        let sampled = msg(r#"{"jsonrpc":"2.0","id":1,"result":{"role":"assistant"}}"#);
        assert_eq!(Outcome::of(Asked::Elicitation, &accept), Outcome::Accept);
        assert_eq!(Outcome::of(Asked::Elicitation, &decline), Outcome::Decline);
        assert_eq!(Outcome::of(Asked::Elicitation, &cancel), Outcome::Cancel);
        assert_eq!(Outcome::of(Asked::Elicitation, &error), Outcome::Error);
        assert_eq!(Outcome::of(Asked::Elicitation, &sampled), Outcome::Error);
        assert_eq!(Outcome::of(Asked::Sampling, &sampled), Outcome::Accept);
        assert_eq!(Outcome::of(Asked::Roots, &error), Outcome::Error);
        assert_eq!(Asked::of("roots/list"), Some(Asked::Roots));
        assert_eq!(Asked::of("ping"), None);
    }

    #[test]
    fn input_responses_of_a_retry_have_outcomes() {
        use serde_json::json;
        let e = Asked::Elicitation;
        let of = Outcome::of_answer;
        assert_eq!(
            of(e, &json!({"action":"accept","content":{}})),
            Outcome::Accept
        );
        assert_eq!(of(e, &json!({"action":"decline"})), Outcome::Decline);
        assert_eq!(of(e, &json!({"action":"cancel"})), Outcome::Cancel);
        assert_eq!(of(e, &json!({"role":"assistant"})), Outcome::Error);
        assert_eq!(of(e, &serde_json::Value::Null), Outcome::Error);
        let sampled = json!({"role":"assistant","content":{"type":"text","text":"x"}});
        assert_eq!(of(Asked::Sampling, &sampled), Outcome::Accept);
        assert_eq!(of(Asked::Roots, &json!({"roots":[]})), Outcome::Accept);
        assert_eq!(
            of(Asked::Roots, &json!({"error":{"code":-1}})),
            Outcome::Error
        );
        assert_eq!(of(Asked::Sampling, &json!("text")), Outcome::Error);
    }

    /// Metrics with a series of every family.
    fn every_family() -> Metrics {
        let metrics = Metrics::new([("demo", "process")]);
        let demo = metrics.server("demo");
        demo.session_started(false);
        demo.session_ended(false, &EndReason::Deleted);
        demo.http_request("POST", 200);
        demo.http_request("PATCH", 405);
        demo.rpc_request(true, Method::of("tools/call"));
        demo.rpc_error(Method::of("tools/call"), -32602, ErrorSource::Server);
        demo.rpc_duration(Method::of("tools/call"), Duration::from_millis(3));
        demo.server_request(Asked::Elicitation, Outcome::Decline, Duration::from_secs(2));
        demo.relayed(Toward::Client, 10);
        demo.sandbox_started(Duration::from_millis(12));
        metrics.set_scraped("demo", 1024, 2);
        metrics.server("nope").http_request("GET", 404);
        metrics
    }

    #[test]
    fn the_text_has_the_contracted_names_and_labels() {
        let text = every_family().encode();
        assert!(
            !text.contains(r#"lodge_sessions_active{server="unknown""#),
            "{text}"
        );
        for line in [
            r#"lodge_sessions_active{server="demo",era="legacy"} 0"#,
            r#"lodge_sessions_active{server="demo",era="modern"} 0"#,
            r#"lodge_sessions_started_total{server="demo",era="legacy"} 1"#,
            r#"lodge_sessions_ended_total{server="demo",reason="client_delete"} 1"#,
            r#"lodge_http_requests_total{server="demo",method="POST",status="200"} 1"#,
            r#"lodge_http_requests_total{server="demo",method="other",status="405"} 1"#,
            r#"lodge_http_requests_total{server="unknown",method="GET",status="404"} 1"#,
            r#"lodge_rpc_requests_total{server="demo",era="modern",method="tools/call"} 1"#,
            r#"lodge_rpc_errors_total{server="demo",method="tools/call",code="-32602",source="server"} 1"#,
            r#"lodge_rpc_duration_seconds_bucket{server="demo",method="tools/call",le="0.005"} 1"#,
            r#"lodge_rpc_duration_seconds_count{server="demo",method="tools/call"} 1"#,
            r#"lodge_server_requests_total{server="demo",method="elicitation/create",outcome="decline"} 1"#,
            r#"lodge_server_request_wait_seconds_count{server="demo",method="elicitation/create"} 1"#,
            r#"lodge_server_request_wait_seconds_sum{server="demo",method="elicitation/create"} 2.0"#,
            r#"lodge_relayed_bytes_total{server="demo",direction="to_client"} 10"#,
            r#"lodge_relayed_bytes_total{server="demo",direction="to_server"} 0"#,
            r#"lodge_sandbox_start_seconds_count{server="demo",backend="process"} 1"#,
            r#"lodge_sandbox_memory_bytes{server="demo"} 1024"#,
            r#"lodge_warm_pool_ready{server="demo"} 2"#,
            "# TYPE lodge_rpc_duration_seconds histogram",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
    }

    #[test]
    fn the_grafana_dashboard_uses_only_metrics_lodge_has() {
        let text = every_family().encode();
        let mut known = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                known.insert(name.to_string());
                if kind == "histogram" {
                    for suffix in ["_bucket", "_sum", "_count"] {
                        known.insert(format!("{name}{suffix}"));
                    }
                }
            }
        }
        let dashboard = include_str!("../../../deploy/grafana/lodge.json");
        let _: serde_json::Value = serde_json::from_str(dashboard).unwrap();
        let mut used = 0;
        for (at, _) in dashboard.match_indices("lodge_") {
            let name: String = dashboard[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            assert!(known.contains(&name), "the dashboard uses {name}");
            used += 1;
        }
        assert!(used > 10);
    }
}
