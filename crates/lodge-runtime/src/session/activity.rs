//! What a session has been doing, for operators: its last protocol events (without
//! payloads unless `[admin] event_payloads` is on), when it last moved, and whether its server waits on the client's user
//! (an elicitation) or model (sampling). Pure and owned by the session's actor, so
//! recording costs no lock; the actor feeds it what crosses the session.
//!
//! A server asks its questions in one of two ways, and both are counted
//! (`lodge_server_requests_total`, `lodge_server_request_wait_seconds`), audited and
//! shown as `waiting_on` alike:
//! - a legacy server sends a JSON-RPC request ([`Activity::record`]), answered by a
//!   response that reaches it ([`Activity::answered_server`]);
//! - a 2026-07-28 server returns an `input_required` result whose `inputRequests`
//!   the era adapter that parses it reports ([`Activity::server_asks_input`]),
//!   answered by a retry carrying `inputResponses` ([`Activity::answered_inputs`]).

use crate::metrics::{Asked, Outcome, ServerMetrics};
use lodge_proto::{Id, Kind, Message};
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

/// How many protocol events a session keeps (the oldest go first).
pub const EVENTS_KEPT: usize = 50;
/// With `[admin] event_payloads`, the most bytes of a message's JSON text an event
/// keeps (cut on a char boundary): a session holds at most `EVENTS_KEPT` times this
/// (200 KiB) of payloads.
pub const PAYLOAD_BYTES: usize = 4096;
/// How many unanswered server requests are remembered; a server that asks more at
/// once is still relayed, its oldest questions are just no longer shown. (The same
/// bound again for a 2026-07-28 server's input requests.)
const WAITS_KEPT: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// From the client, to Lodge (and on to the server).
    FromClient,
    /// From the server, to Lodge (and on to the client).
    FromServer,
}

/// One message that crossed the session, with its payload only when configured.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProtocolEvent {
    #[serde(serialize_with = "rfc3339")]
    pub time: SystemTime,
    pub direction: Direction,
    /// `request`, `notification` or `response`.
    pub kind: &'static str,
    /// The method of a request or notification; for a response, of the request it
    /// answers when that crossed this session.
    pub method: Option<Box<str>>,
    /// For a response: `ok`, or `error` with its `code`.
    pub status: Option<&'static str>,
    pub code: Option<i64>,
    /// With `[admin] event_payloads`: the message's JSON text, at most
    /// [`PAYLOAD_BYTES`] of it (`payload` and `payload_truncated`; both absent when off).
    #[serde(flatten)]
    pub payload: Option<Payload>,
}

/// The start of a message's JSON text, kept in its event.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Payload {
    /// The text, cut to at most [`PAYLOAD_BYTES`] on a char boundary.
    pub payload: Box<str>,
    /// Whether the message was longer than that.
    pub payload_truncated: bool,
}

impl Payload {
    pub fn of(bytes: &[u8]) -> Payload {
        let head = &bytes[..bytes.len().min(PAYLOAD_BYTES)];
        // A cut inside a multi-byte char leaves an incomplete sequence at the end:
        // keep what precedes it. (Messages are parsed JSON, so valid UTF-8.)
        let text = match std::str::from_utf8(head) {
            Ok(text) => text,
            Err(e) => std::str::from_utf8(&head[..e.valid_up_to()]).unwrap_or_default(),
        };
        Payload {
            payload_truncated: text.len() < bytes.len(),
            payload: text.into(),
        }
    }
}

fn rfc3339<S: serde::Serializer>(time: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_rfc3339_millis(*time))
}

/// Who a server request waits on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WaitingOn {
    /// An elicitation: the client's user.
    User,
    /// Sampling: the client's model.
    Model,
}

impl WaitingOn {
    fn of(method: &str) -> Option<WaitingOn> {
        match method {
            "elicitation/create" => Some(WaitingOn::User),
            "sampling/createMessage" => Some(WaitingOn::Model),
            _ => None,
        }
    }
}

/// A 2026-07-28 server's question: one entry of an `input_required` result's
/// `inputRequests`, not yet answered by a retry.
struct Input {
    key: Box<str>,
    method: Box<str>,
    since: Instant,
}

pub(crate) struct Activity {
    events: VecDeque<ProtocolEvent>,
    /// Requests awaiting an answer, by direction and id: which method they were, and
    /// since when (server requests also say whom they wait on).
    asked: HashMap<(Direction, Id), (Box<str>, Instant)>,
    /// A 2026-07-28 server's unanswered input requests, oldest first (see
    /// [`Activity::server_asks_input`] for why by key alone).
    inputs: VecDeque<Input>,
    last_activity: SystemTime,
    /// Unanswered questions are forgotten after this long (the call timeout: nobody
    /// waits longer than that).
    forget_after: Duration,
    /// Counts how clients answer the server's questions, and how long they took.
    meter: Option<Arc<ServerMetrics>>,
    audit: Option<crate::audit::AuditTap>,
    /// `[admin] event_payloads`: events keep their message's text.
    payloads: bool,
}

impl Activity {
    pub fn new(now: SystemTime, forget_after: Duration) -> Self {
        Activity {
            events: VecDeque::with_capacity(8),
            asked: HashMap::new(),
            inputs: VecDeque::new(),
            last_activity: now,
            forget_after,
            meter: None,
            audit: None,
            payloads: false,
        }
    }

    /// Events keep (the start of) their message's JSON text.
    pub fn with_payloads(mut self, on: bool) -> Self {
        self.payloads = on;
        self
    }

    /// Writes an audit line for each elicitation and sampling request answered.
    pub fn audited(mut self, tap: crate::audit::AuditTap) -> Self {
        self.audit = Some(tap);
        self
    }

    /// Counts answers to the server's questions in `meter`.
    pub fn metered(mut self, meter: Arc<ServerMetrics>) -> Self {
        self.meter = Some(meter);
        self
    }

    /// A message crossed the session in `direction`.
    pub fn record(&mut self, direction: Direction, message: &Message, now: SystemTime) {
        self.last_activity = now;
        let (kind, method) = match &message.kind {
            Kind::Request { id, method, .. } => {
                self.ask(direction, id.clone(), method);
                ("request", Some(method.clone()))
            }
            Kind::Notification { method, .. } => ("notification", Some(method.clone())),
            Kind::Response { id } => {
                let asker = match direction {
                    Direction::FromClient => Direction::FromServer,
                    Direction::FromServer => Direction::FromClient,
                };
                let asked = self.asked.remove(&(asker, id.clone()));
                if asker == Direction::FromServer
                    && let Some((method, since)) = &asked
                {
                    self.count_answer(method, *since, message);
                }
                ("response", asked.map(|(m, _)| m))
            }
        };
        let code = message.error_code();
        let status = (kind == "response").then_some(if code.is_some() { "error" } else { "ok" });
        if self.events.len() == EVENTS_KEPT {
            self.events.pop_front();
        }
        self.events.push_back(ProtocolEvent {
            time: now,
            direction,
            kind,
            method,
            status,
            code,
            payload: self.payloads.then(|| Payload::of(&message.bytes)),
        });
    }

    fn ask(&mut self, direction: Direction, id: Id, method: &str) {
        let now = Instant::now();
        let forget_after = self.forget_after;
        self.asked
            .retain(|_, (_, since)| now.duration_since(*since) < forget_after);
        if self.asked.len() >= WAITS_KEPT
            && let Some(oldest) = self
                .asked
                .iter()
                .min_by_key(|(_, (_, since))| *since)
                .map(|(key, _)| key.clone())
        {
            self.asked.remove(&oldest);
        }
        self.asked.insert((direction, id), (method.into(), now));
    }

    /// Lodge answered a server request itself, or the client's answer reached the
    /// server by another road (a 2026-07-28 retry): it no longer waits. `answer` is
    /// the response the server gets.
    pub fn answered_server(&mut self, answer: &Message) {
        let Kind::Response { id } = &answer.kind else {
            return;
        };
        if let Some((method, since)) = self.asked.remove(&(Direction::FromServer, id.clone())) {
            self.count_answer(&method, since, answer);
        }
    }

    /// A question of the server's (`method`, asked at `since`) got `answer`.
    fn count_answer(&self, method: &str, since: Instant, answer: &Message) {
        let Some(asked) = Asked::of(method) else {
            return;
        };
        let outcome = Outcome::of(asked, answer);
        if let Some(meter) = &self.meter {
            meter.server_request(asked, outcome, since.elapsed());
        }
        if let Some(tap) = &self.audit {
            tap.server_request(method, outcome.as_str(), answer, since.elapsed());
        }
    }

    /// A 2026-07-28 server asked the client `method` under input `key` (one entry of
    /// an `input_required` result's `inputRequests`, reported by the era adapter
    /// that reads the result): it waits until a retry whose `inputResponses` has
    /// `key` goes to it ([`Activity::answered_inputs`]), or is forgotten like a legacy
    /// question.
    ///
    /// Questions are kept by input key alone, not by call: a retry is a new request
    /// (a new id; its `requestState` is the server's opaque text), so nothing on the
    /// wire says which earlier call it continues. Two concurrent calls whose server
    /// asks under the same key (the key is the server's choice, often fixed per
    /// tool) queue under it, and an answer for the key settles the oldest one: each
    /// question is counted once, and the wait measured is the oldest's (off by the
    /// calls' head start when the answers come in the other order). An answer for a
    /// key never asked here (a retry landing in another session) is not counted.
    pub fn server_asks_input(&mut self, key: &str, method: &str) {
        let now = Instant::now();
        let forget_after = self.forget_after;
        self.inputs
            .retain(|input| now.duration_since(input.since) < forget_after);
        if self.inputs.len() >= WAITS_KEPT {
            self.inputs.pop_front();
        }
        self.inputs.push_back(Input {
            key: key.into(),
            method: method.into(),
            since: now,
        });
    }

    /// Whether a 2026-07-28 server has an input request out (for outbound retries to
    /// be looked at). Questions past the call timeout are dropped here (they are
    /// oldest first), so one the client never retries stops costing outbound messages
    /// their look.
    pub fn inputs_asked(&mut self) -> bool {
        if !self.inputs.is_empty() {
            let now = Instant::now();
            while self
                .inputs
                .front()
                .is_some_and(|i| now.duration_since(i.since) >= self.forget_after)
            {
                self.inputs.pop_front();
            }
        }
        !self.inputs.is_empty()
    }

    /// A retry carrying `responses` (its `inputResponses`) went to the server: each
    /// key answers the oldest question asked under it, counted once.
    pub fn answered_inputs(&mut self, responses: &Map<String, Value>) {
        for (key, answer) in responses {
            let Some(n) = self.inputs.iter().position(|i| *i.key == **key) else {
                continue;
            };
            if let Some(input) = self.inputs.remove(n) {
                self.count_input(&input.method, input.since, answer);
            }
        }
    }

    /// An input request of the server's (`method`, asked at `since`) got `answer`.
    fn count_input(&self, method: &str, since: Instant, answer: &Value) {
        let Some(asked) = Asked::of(method) else {
            return;
        };
        let outcome = Outcome::of_answer(asked, answer);
        if let Some(meter) = &self.meter {
            meter.server_request(asked, outcome, since.elapsed());
        }
        if let Some(tap) = &self.audit {
            tap.input_answered(method, outcome.as_str(), answer, since.elapsed());
        }
    }

    /// Whether the server waits on anything now (the user first). A legacy server's
    /// request counts only while `in_call` (one of the client's calls is in flight:
    /// it asks within one); a 2026-07-28 server's input request counts without, as
    /// its call has ended with the question and the next move is the client's retry.
    pub fn waiting_on(&self, in_call: bool) -> Option<WaitingOn> {
        let now = Instant::now();
        let fresh = |since: &Instant| now.duration_since(*since) < self.forget_after;
        let requests = self
            .asked
            .iter()
            .filter(|_| in_call)
            .filter(|((direction, _), (_, since))| {
                *direction == Direction::FromServer && fresh(since)
            })
            .map(|(_, (method, _))| method);
        let inputs = self
            .inputs
            .iter()
            .filter(|input| fresh(&input.since))
            .map(|input| &input.method);
        let waits = requests.chain(inputs).filter_map(|m| WaitingOn::of(m));
        waits.min_by_key(|w| *w != WaitingOn::User)
    }

    /// Whether the server has a question out at all (for outbound answers to check).
    pub fn server_asked(&self) -> bool {
        self.asked.keys().any(|(d, _)| *d == Direction::FromServer)
    }

    pub fn last_activity(&self) -> SystemTime {
        self.last_activity
    }

    /// The kept events, oldest first.
    pub fn events(&self) -> Vec<ProtocolEvent> {
        self.events.iter().cloned().collect()
    }
}

/// The `inputResponses` of a request going to a 2026-07-28 server, if it has any.
/// Called only while such a server has a question out ([`Activity::inputs_asked`]),
/// and parsed only when the bytes name the field, so the messages of a server with
/// nothing asked (every legacy server's) are not looked at.
pub(crate) fn input_responses(bytes: &[u8]) -> Option<Map<String, Value>> {
    #[derive(serde::Deserialize)]
    struct Request {
        method: Option<serde::de::IgnoredAny>,
        params: Option<Params>,
    }
    #[derive(serde::Deserialize)]
    struct Params {
        #[serde(rename = "inputResponses")]
        input_responses: Option<Map<String, Value>>,
    }
    memchr::memmem::find(bytes, b"\"inputResponses\"")?;
    let request = serde_json::from_slice::<Request>(bytes).ok()?;
    request.method?;
    request.params?.input_responses
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn msg(text: &'static str) -> Message {
        Message::parse(Bytes::from_static(text.as_bytes())).unwrap()
    }

    fn activity() -> Activity {
        Activity::new(SystemTime::UNIX_EPOCH, Duration::from_secs(60))
    }

    #[test]
    fn responses_name_the_method_they_answer_and_their_status() {
        let mut a = activity();
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(5);
        a.record(
            Direction::FromClient,
            &msg(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}"#),
            t,
        );
        a.record(
            Direction::FromServer,
            &msg(r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"no"}}"#),
            t,
        );
        a.record(
            Direction::FromClient,
            &msg(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#),
            t,
        );
        let events = a.events();
        assert_eq!(events.len(), 3);
        assert_eq!(
            (events[1].kind, events[1].method.as_deref()),
            ("response", Some("tools/call"))
        );
        assert_eq!(
            (events[1].status, events[1].code),
            (Some("error"), Some(-32602))
        );
        assert_eq!(events[0].status, None);
        assert_eq!(events[2].kind, "notification");
        assert_eq!(a.last_activity(), t);
        let json = serde_json::to_value(&events[0]).unwrap();
        assert_eq!(json["time"], "1970-01-01T00:00:05.000Z");
        assert_eq!(json["direction"], "from_client");
    }

    #[test]
    fn events_carry_payloads_only_when_configured_and_cut_to_a_bound() {
        let text = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}"#;
        let mut off = activity();
        off.record(Direction::FromClient, &msg(text), SystemTime::UNIX_EPOCH);
        let event = &off.events()[0];
        assert_eq!(event.payload, None);
        let json = serde_json::to_value(event).unwrap();
        assert!(json.get("payload").is_none() && json.get("payload_truncated").is_none());

        let mut on = activity().with_payloads(true);
        on.record(Direction::FromClient, &msg(text), SystemTime::UNIX_EPOCH);
        let json = serde_json::to_value(&on.events()[0]).unwrap();
        assert_eq!(json["payload"], text);
        assert_eq!(json["payload_truncated"], false);
        assert_eq!(json["method"], "tools/call", "the other fields stay");

        // A long message, with a 3-byte char straddling the bound: cut before it.
        let head = r#"{"jsonrpc":"2.0","method":"notifications/message","params":{"data":""#;
        let head = format!("{head}{}", "a".repeat(PAYLOAD_BYTES - 1 - head.len()));
        let long = format!(r#"{head}€€€€"}}}}"#);
        let message = Message::parse(Bytes::from(long.clone())).unwrap();
        on.record(Direction::FromServer, &message, SystemTime::UNIX_EPOCH);
        let payload = on.events()[1].payload.clone().unwrap();
        assert!(payload.payload_truncated);
        assert_eq!(*payload.payload, head, "cut before the char, not inside it");
        assert_eq!(payload.payload.len(), PAYLOAD_BYTES - 1);
        // Exactly the bound is whole; one byte more is cut.
        let ascii = "b".repeat(PAYLOAD_BYTES);
        assert!(!Payload::of(ascii.as_bytes()).payload_truncated);
        assert!(Payload::of(format!("{ascii}c").as_bytes()).payload_truncated);
    }

    #[test]
    fn only_the_last_events_are_kept() {
        let mut a = activity();
        for _ in 0..EVENTS_KEPT + 7 {
            a.record(
                Direction::FromServer,
                &msg(r#"{"jsonrpc":"2.0","method":"notifications/progress"}"#),
                SystemTime::UNIX_EPOCH,
            );
        }
        assert_eq!(a.events().len(), EVENTS_KEPT);
    }

    #[tokio::test(start_paused = true)]
    async fn a_server_question_waits_on_the_user_or_the_model_until_answered_or_forgotten() {
        let mut a = activity();
        let now = SystemTime::UNIX_EPOCH;
        assert_eq!(a.waiting_on(true), None);
        a.record(
            Direction::FromServer,
            &msg(r#"{"jsonrpc":"2.0","id":"s1","method":"sampling/createMessage"}"#),
            now,
        );
        assert_eq!(a.waiting_on(true), Some(WaitingOn::Model));
        a.record(
            Direction::FromServer,
            &msg(r#"{"jsonrpc":"2.0","id":"e1","method":"elicitation/create"}"#),
            now,
        );
        assert_eq!(a.waiting_on(true), Some(WaitingOn::User), "the user first");
        // The client answers the elicitation.
        a.record(
            Direction::FromClient,
            &msg(r#"{"jsonrpc":"2.0","id":"e1","result":{"action":"accept"}}"#),
            now,
        );
        assert_eq!(a.waiting_on(true), Some(WaitingOn::Model));
        a.answered_server(&msg(r#"{"jsonrpc":"2.0","id":"s1","result":{}}"#));
        assert_eq!(a.waiting_on(true), None);
        assert!(!a.server_asked());

        a.record(
            Direction::FromServer,
            &msg(r#"{"jsonrpc":"2.0","id":"e2","method":"elicitation/create"}"#),
            now,
        );
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(a.waiting_on(true), None, "unanswered past the call timeout");
    }

    /// The value of `series` (name and labels, as printed) in `metrics`' text.
    fn series(metrics: &crate::metrics::Metrics, series: &str) -> f64 {
        let text = metrics.encode();
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .map_or(0.0, |v| v.parse().unwrap())
    }

    #[tokio::test(start_paused = true)]
    async fn a_modern_servers_input_requests_wait_until_a_retry_answers_them() {
        let metrics = crate::metrics::Metrics::new([("demo", "process")]);
        let mut a = activity().metered(metrics.server("demo").clone());
        a.server_asks_input("user_name", "elicitation/create");
        a.server_asks_input("capital", "sampling/createMessage");
        assert!(a.inputs_asked());
        assert!(
            !a.server_asked(),
            "no legacy question: outbound responses unread"
        );
        // The call ended with its input_required result: the server still waits.
        assert_eq!(a.waiting_on(false), Some(WaitingOn::User));
        tokio::time::advance(Duration::from_secs(3)).await;
        let retry = input_responses(
            br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"t",
            "inputResponses":{"user_name":{"action":"decline"},"unasked":{"action":"accept"}}}}"#,
        )
        .unwrap();
        a.answered_inputs(&retry);
        assert_eq!(a.waiting_on(false), Some(WaitingOn::Model));
        // Answered again (a client retrying the same answers): counted once.
        a.answered_inputs(&retry);
        tokio::time::advance(Duration::from_secs(1)).await;
        let sampled = serde_json::json!({"capital": {"role":"assistant","content":{"type":"text","text":"Paris"},"model":"m"}});
        a.answered_inputs(sampled.as_object().unwrap());
        assert_eq!(a.waiting_on(false), None);
        assert!(!a.inputs_asked());

        let demo = |name: &str, labels: &str| format!("{name}{{server=\"demo\",{labels}}}");
        let elicit = r#"method="elicitation/create""#;
        let total = "lodge_server_requests_total";
        assert_eq!(
            series(
                &metrics,
                &demo(total, &format!(r#"{elicit},outcome="decline""#))
            ),
            1.0
        );
        assert_eq!(
            series(
                &metrics,
                &demo(total, &format!(r#"{elicit},outcome="accept""#))
            ),
            0.0
        );
        let sampling = r#"method="sampling/createMessage",outcome="accept""#;
        assert_eq!(series(&metrics, &demo(total, sampling)), 1.0);
        let wait = "lodge_server_request_wait_seconds_sum";
        assert_eq!(series(&metrics, &demo(wait, elicit)), 3.0);
        let sampling_wait = r#"method="sampling/createMessage""#;
        assert_eq!(series(&metrics, &demo(wait, sampling_wait)), 4.0);
    }

    #[tokio::test(start_paused = true)]
    async fn input_requests_under_one_key_queue_and_are_forgotten_like_requests() {
        let metrics = crate::metrics::Metrics::new([("demo", "process")]);
        let mut a = activity().metered(metrics.server("demo").clone());
        // Two concurrent calls whose server asks under the same key.
        a.server_asks_input("confirm", "elicitation/create");
        tokio::time::advance(Duration::from_secs(2)).await;
        a.server_asks_input("confirm", "elicitation/create");
        let answer = serde_json::json!({"confirm": {"action": "accept"}});
        a.answered_inputs(answer.as_object().unwrap());
        assert_eq!(
            a.waiting_on(false),
            Some(WaitingOn::User),
            "one still waits"
        );
        let wait =
            r#"lodge_server_request_wait_seconds_sum{server="demo",method="elicitation/create"}"#;
        assert_eq!(series(&metrics, wait), 2.0, "the oldest took the answer");
        a.answered_inputs(answer.as_object().unwrap());
        assert_eq!(a.waiting_on(false), None);
        let accepted = r#"lodge_server_requests_total{server="demo",method="elicitation/create",outcome="accept"}"#;
        assert_eq!(series(&metrics, accepted), 2.0);

        // Unanswered past the call timeout: not waited on, then dropped.
        a.server_asks_input("confirm", "elicitation/create");
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(a.waiting_on(false), None);
        assert!(
            !a.inputs_asked(),
            "outbound messages are no longer looked at"
        );
        a.server_asks_input("confirm", "elicitation/create");
        tokio::time::advance(Duration::from_secs(61)).await;
        a.server_asks_input("other", "roots/list");
        assert_eq!(a.inputs.len(), 1);
        for n in 0..WAITS_KEPT * 2 {
            a.server_asks_input(&n.to_string(), "elicitation/create");
        }
        assert_eq!(a.inputs.len(), WAITS_KEPT);
    }

    #[test]
    fn a_legacy_servers_question_shows_only_within_a_call() {
        let mut a = activity();
        a.record(
            Direction::FromServer,
            &msg(r#"{"jsonrpc":"2.0","id":"e1","method":"elicitation/create"}"#),
            SystemTime::UNIX_EPOCH,
        );
        assert_eq!(a.waiting_on(true), Some(WaitingOn::User));
        assert_eq!(a.waiting_on(false), None);
    }

    #[test]
    fn only_requests_naming_input_responses_are_read_for_them() {
        let read = |text: &str| input_responses(text.as_bytes());
        assert!(read(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}"#).is_none());
        assert!(read(r#"{"jsonrpc":"2.0","id":1,"result":{"inputResponses":{}}}"#).is_none());
        assert!(
            read(r#"{"jsonrpc":"2.0","id":1,"method":"x","params":{"inputResponses":3}}"#)
                .is_none()
        );
        let got =
            read(r#"{"jsonrpc":"2.0","id":1,"method":"x","params":{"inputResponses":{"k":null}}}"#);
        assert_eq!(got.unwrap().len(), 1);
    }

    #[test]
    fn unanswered_questions_are_bounded() {
        let mut a = activity();
        for n in 0..WAITS_KEPT * 3 {
            let text = format!(r#"{{"jsonrpc":"2.0","id":{n},"method":"elicitation/create"}}"#);
            let message = Message::parse(Bytes::from(text)).unwrap();
            a.record(Direction::FromServer, &message, SystemTime::UNIX_EPOCH);
        }
        assert!(a.asked.len() <= WAITS_KEPT);
    }
}
