//! What a session has been doing, for operators: its last protocol events (no
//! payloads), when it last moved, and whether its server waits on the client's user
//! (an elicitation) or model (sampling). Pure and owned by the session's actor, so
//! recording costs no lock; the actor feeds it what crosses the session.

use crate::metrics::{Asked, Outcome, ServerMetrics};
use lodge_proto::{Id, Kind, Message};
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

/// How many protocol events a session keeps (the oldest go first).
pub const EVENTS_KEPT: usize = 50;
/// How many unanswered server requests are remembered; a server that asks more at
/// once is still relayed, its oldest questions are just no longer shown.
const WAITS_KEPT: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// From the client, to Lodge (and on to the server).
    FromClient,
    /// From the server, to Lodge (and on to the client).
    FromServer,
}

/// One message that crossed the session, without its payload.
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

pub(crate) struct Activity {
    events: VecDeque<ProtocolEvent>,
    /// Requests awaiting an answer, by direction and id: which method they were, and
    /// since when (server requests also say whom they wait on).
    asked: HashMap<(Direction, Id), (Box<str>, Instant)>,
    last_activity: SystemTime,
    /// Unanswered questions are forgotten after this long (the call timeout: nobody
    /// waits longer than that).
    forget_after: Duration,
    /// Counts how clients answer the server's questions, and how long they took.
    meter: Option<Arc<ServerMetrics>>,
    audit: Option<crate::audit::AuditTap>,
}

impl Activity {
    pub fn new(now: SystemTime, forget_after: Duration) -> Self {
        Activity {
            events: VecDeque::with_capacity(8),
            asked: HashMap::new(),
            last_activity: now,
            forget_after,
            meter: None,
            audit: None,
        }
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

    /// Whether the server waits on anything now (the user first).
    pub fn waiting_on(&self) -> Option<WaitingOn> {
        let now = Instant::now();
        let waits = self
            .asked
            .iter()
            .filter(|((direction, _), (_, since))| {
                *direction == Direction::FromServer
                    && now.duration_since(*since) < self.forget_after
            })
            .filter_map(|(_, (method, _))| WaitingOn::of(method));
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
        assert_eq!(a.waiting_on(), None);
        a.record(
            Direction::FromServer,
            &msg(r#"{"jsonrpc":"2.0","id":"s1","method":"sampling/createMessage"}"#),
            now,
        );
        assert_eq!(a.waiting_on(), Some(WaitingOn::Model));
        a.record(
            Direction::FromServer,
            &msg(r#"{"jsonrpc":"2.0","id":"e1","method":"elicitation/create"}"#),
            now,
        );
        assert_eq!(a.waiting_on(), Some(WaitingOn::User), "the user first");
        // The client answers the elicitation.
        a.record(
            Direction::FromClient,
            &msg(r#"{"jsonrpc":"2.0","id":"e1","result":{"action":"accept"}}"#),
            now,
        );
        assert_eq!(a.waiting_on(), Some(WaitingOn::Model));
        a.answered_server(&msg(r#"{"jsonrpc":"2.0","id":"s1","result":{}}"#));
        assert_eq!(a.waiting_on(), None);
        assert!(!a.server_asked());

        a.record(
            Direction::FromServer,
            &msg(r#"{"jsonrpc":"2.0","id":"e2","method":"elicitation/create"}"#),
            now,
        );
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(a.waiting_on(), None, "unanswered past the call timeout");
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
