//! The web console at `/console`: a live session table, one session's page, and an
//! overview chart of the last hour (`GET /admin/history`, sampled here from the
//! [`Runtime`]). The HTML, JavaScript and CSS are embedded in the binary; the pages hold
//! no data, so they are served without auth: every number comes from the authenticated
//! JSON API, which the page calls with the token the operator typed in (kept in
//! `sessionStorage`).

use super::json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get};
use lodge_runtime::Runtime;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How often the sampler looks at the runtime.
const SAMPLE_EVERY: Duration = Duration::from_secs(10);
/// How many one-minute buckets the history keeps.
pub(crate) const HISTORY_MINUTES: usize = 60;

/// What the pages may do: only what this listener serves, no inline script or style,
/// no framing.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The console's pages and assets (open; see the module doc).
pub(super) fn routes() -> Router<super::AdminState> {
    Router::new()
        .route(
            "/console",
            get(|| asset(HTML, include_str!("console/index.html"))),
        )
        .route(
            "/console/",
            get(|| asset(HTML, include_str!("console/index.html"))),
        )
        .route(
            "/console/sessions/{id}",
            get(|| asset(HTML, include_str!("console/session.html"))),
        )
        .route(
            "/console/assets/common.js",
            get(|| asset(JS, include_str!("console/common.js"))),
        )
        .route(
            "/console/assets/index.js",
            get(|| asset(JS, include_str!("console/index.js"))),
        )
        .route(
            "/console/assets/session.js",
            get(|| asset(JS, include_str!("console/session.js"))),
        )
        .route(
            "/console/assets/console.css",
            get(|| asset(CSS, include_str!("console/console.css"))),
        )
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

async fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_TYPE, content_type),
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-cache"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// One minute of the history: the most sessions live at a sample, how many sessions
/// started, how many JSON-RPC requests clients sent, and the most calls in flight at a
/// sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub(crate) struct Minute {
    /// Unix time of the minute's start.
    pub start: u64,
    pub live_sessions: usize,
    pub sessions_started: usize,
    pub requests: u64,
    pub in_flight: usize,
}

/// What one look at the runtime saw.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Sample {
    pub live: usize,
    /// Sessions new since the last sample.
    pub started: usize,
    /// JSON-RPC requests since Lodge started (the minute gets the difference).
    pub requests_total: u64,
    pub in_flight: usize,
}

/// The last [`HISTORY_MINUTES`] minutes, oldest first.
#[derive(Debug, Default)]
pub(crate) struct History {
    minutes: VecDeque<Minute>,
    /// The request count of the last sample: `None` before the first.
    requests_seen: Option<u64>,
}

impl History {
    /// Adds `sample`, taken at `now` (Unix seconds).
    pub fn record(&mut self, now: u64, sample: Sample) {
        let start = now - now % 60;
        let requests = sample
            .requests_total
            .saturating_sub(self.requests_seen.unwrap_or(sample.requests_total));
        self.requests_seen = Some(sample.requests_total);
        match self.minutes.back_mut() {
            // The same minute, or a clock that stepped back (kept in order by folding
            // into the last minute).
            Some(last) if last.start >= start => {
                last.live_sessions = last.live_sessions.max(sample.live);
                last.sessions_started += sample.started;
                last.requests += requests;
                last.in_flight = last.in_flight.max(sample.in_flight);
            }
            _ => self.minutes.push_back(Minute {
                start,
                live_sessions: sample.live,
                sessions_started: sample.started,
                requests,
                in_flight: sample.in_flight,
            }),
        }
        // Minutes more than an hour old go, however few samples there were.
        while self
            .minutes
            .front()
            .is_some_and(|m| m.start + (HISTORY_MINUTES as u64) * 60 <= start)
            || self.minutes.len() > HISTORY_MINUTES
        {
            self.minutes.pop_front();
        }
    }

    pub fn minutes(&self) -> impl Iterator<Item = &Minute> {
        self.minutes.iter()
    }
}

fn unix(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// `GET /admin/history`, with a sampler started for it: it looks at `runtime` every
/// [`SAMPLE_EVERY`] until the runtime is dropped (outside a tokio runtime nothing samples).
/// A request also folds what it sees now into the current minute, so the chart's last
/// point is never older than the page.
pub(super) fn history(runtime: &Arc<Runtime>) -> MethodRouter<super::AdminState> {
    let history = Arc::new(Mutex::new(History::default()));
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        handle.spawn(sample(Arc::downgrade(runtime), Arc::downgrade(&history)));
    }
    get(move |State(runtime): State<Arc<Runtime>>| async move {
        let now = look(&runtime, 0);
        let mut history = history.lock().unwrap_or_else(|p| p.into_inner());
        history.record(unix(SystemTime::now()), now);
        let minutes: Vec<_> = history.minutes().copied().collect();
        json(serde_json::json!({
            "sample_seconds": SAMPLE_EVERY.as_secs(),
            "minutes": minutes,
        }))
    })
}

/// How many sessions are live, how many calls they have in flight and how many requests
/// clients have sent; `started` of the sessions are new.
fn look(runtime: &Runtime, started: usize) -> Sample {
    let sessions = runtime.sessions();
    Sample {
        live: sessions.len(),
        started,
        requests_total: runtime.metrics().rpc_requests_total(),
        in_flight: sessions.iter().map(|s| s.in_flight()).sum(),
    }
}

async fn sample(runtime: Weak<Runtime>, history: Weak<Mutex<History>>) {
    let mut since = SystemTime::now();
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    loop {
        tick.tick().await;
        let (Some(runtime), Some(history)) = (runtime.upgrade(), history.upgrade()) else {
            return;
        };
        let now = SystemTime::now();
        let started = runtime
            .sessions()
            .iter()
            .filter(|s| s.created_at() > since && s.created_at() <= now)
            .count();
        let sample = look(&runtime, started);
        history
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .record(unix(now), sample);
        since = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(live: usize, started: usize, in_flight: usize) -> Sample {
        Sample {
            live,
            started,
            in_flight,
            requests_total: 0,
        }
    }

    #[test]
    fn samples_of_one_minute_fold_into_one_bucket() {
        let mut h = History::default();
        h.record(600, sample(2, 1, 0));
        h.record(610, sample(5, 2, 3));
        h.record(650, sample(1, 0, 1));
        let all: Vec<_> = h.minutes().copied().collect();
        assert_eq!(
            all,
            [Minute {
                start: 600,
                live_sessions: 5,
                sessions_started: 3,
                requests: 0,
                in_flight: 3
            }]
        );
        h.record(660, sample(1, 0, 0));
        assert_eq!(h.minutes().count(), 2);
    }

    #[test]
    fn each_minute_counts_the_requests_since_the_sample_before() {
        let mut h = History::default();
        let total = |requests_total| Sample {
            requests_total,
            ..Sample::default()
        };
        // What came before the first sample is not this minute's.
        h.record(600, total(40));
        h.record(610, total(45));
        h.record(650, total(47));
        h.record(660, total(50));
        h.record(670, total(50));
        let requests: Vec<_> = h.minutes().map(|m| m.requests).collect();
        assert_eq!(requests, [7, 3]);
    }

    #[test]
    fn the_history_keeps_one_hour_at_most() {
        let mut h = History::default();
        for minute in 0..200u64 {
            h.record(minute * 60 + 5, sample(minute as usize, 1, 0));
        }
        assert_eq!(h.minutes().count(), HISTORY_MINUTES);
        let starts: Vec<_> = h.minutes().map(|m| m.start).collect();
        assert_eq!((starts[0], starts[59]), (140 * 60, 199 * 60));
    }

    #[test]
    fn minutes_older_than_an_hour_go_even_after_a_gap() {
        let mut h = History::default();
        h.record(0, sample(1, 1, 0));
        h.record(60, sample(1, 0, 0));
        h.record(59 * 60, sample(1, 0, 0));
        assert_eq!(h.minutes().count(), 3);
        // An hour after the first: it goes, the second stays.
        h.record(60 * 60, sample(1, 0, 0));
        let starts: Vec<_> = h.minutes().map(|m| m.start).collect();
        assert_eq!(starts, [60, 59 * 60, 60 * 60]);
        // A long quiet spell: only the new minute is left.
        h.record(10 * 60 * 60, sample(0, 0, 0));
        assert_eq!(h.minutes().count(), 1);
    }

    #[test]
    fn a_clock_stepping_back_does_not_disorder_the_history() {
        let mut h = History::default();
        h.record(600, sample(1, 1, 0));
        h.record(500, sample(2, 1, 0));
        let all: Vec<_> = h.minutes().copied().collect();
        assert_eq!(all.len(), 1);
        assert_eq!((all[0].live_sessions, all[0].sessions_started), (2, 2));
    }
}
