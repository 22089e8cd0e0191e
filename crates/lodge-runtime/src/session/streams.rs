//! The streams of one session: numbered, each with its own event sequence and a
//! bounded replay buffer, so a client that loses a connection can resume it.

use crate::session::EventStream;
use crate::session::budget::{Budget, Charge};
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use tokio::sync::mpsc;

/// The standalone (GET) stream of a session.
pub(crate) const STANDALONE: u32 = 0;
/// Completed streams kept for replay, per session.
const COMPLETED_KEPT: usize = 16;

/// `{stream}-{seq}`: unique in the session, and it says which stream to resume.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventId {
    pub stream: u32,
    pub seq: u64,
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.stream, self.seq)
    }
}

impl FromStr for EventId {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        let (stream, seq) = s.split_once('-').ok_or(())?;
        Ok(EventId {
            stream: stream.parse().map_err(|_| ())?,
            seq: seq.parse().map_err(|_| ())?,
        })
    }
}

/// One SSE event. Empty `data` is a priming event (an id to resume from, no message).
#[derive(Clone, Debug)]
pub struct Event {
    pub id: EventId,
    pub data: Bytes,
    /// The JSON-RPC response to a client request (what a JSON-only POST returns).
    pub is_response: bool,
    /// For an error response, its JSON-RPC error code: the front picks a status by
    /// it without parsing the response again.
    pub error_code: Option<i64>,
    /// What the event's bytes count against, until its last copy is dropped (`None`
    /// for a priming event, which carries none).
    pub charge: Option<Arc<Charge>>,
}

pub(crate) struct Stream {
    sink: Option<mpsc::Sender<Event>>,
    buffer: VecDeque<Event>,
    last_seq: u64,
    /// Client requests on this stream still waiting for a response.
    pub outstanding: usize,
    /// False when the client asked for a plain JSON response.
    pub sse: bool,
}

impl Stream {
    fn new(sse: bool, outstanding: usize) -> Self {
        Stream {
            sink: None,
            buffer: VecDeque::new(),
            last_seq: 0,
            outstanding,
            sse,
        }
    }

    pub fn is_attached(&self) -> bool {
        self.sink.is_some()
    }
}

pub(crate) struct Streams {
    map: HashMap<u32, Stream>,
    next_id: u32,
    completed: VecDeque<u32>,
    buffer_cap: usize,
    budget: Budget,
}

impl Streams {
    pub fn new(buffer_cap: usize, budget: Budget) -> Self {
        let mut map = HashMap::new();
        map.insert(STANDALONE, Stream::new(true, 0));
        Streams {
            map,
            next_id: 1,
            completed: VecDeque::new(),
            buffer_cap: buffer_cap.max(1),
            budget,
        }
    }

    pub fn budget(&self) -> &Budget {
        &self.budget
    }

    fn channel(&self) -> (mpsc::Sender<Event>, EventStream) {
        // Room for a whole replay; the channel allocates lazily, so this costs nothing idle.
        mpsc::channel(self.buffer_cap + 16)
    }

    /// Opens a stream for `outstanding` client requests and returns its receiver,
    /// primed with an event id the client can resume from.
    pub fn open(&mut self, sse: bool, outstanding: usize) -> (u32, EventStream) {
        let id = self.next_id;
        self.next_id += 1;
        let (tx, rx) = self.channel();
        if sse {
            let _ = tx.try_send(priming(EventId { stream: id, seq: 0 }));
        }
        let mut stream = Stream::new(sse, outstanding);
        stream.sink = Some(tx);
        self.map.insert(id, stream);
        (id, rx)
    }

    /// Attaches a new receiver to a stream, replacing (closing) any previous one.
    /// With `after`, replays the buffered events that follow it.
    pub fn attach(&mut self, id: u32, after: Option<u64>) -> Option<EventStream> {
        let (tx, rx) = self.channel();
        let stream = self.map.get_mut(&id)?;
        match after {
            Some(seen) => {
                if stream.buffer.front().is_some_and(|e| e.id.seq > seen + 1) {
                    tracing::warn!(
                        stream = id,
                        "resume asked for events older than the replay buffer keeps"
                    );
                }
                for event in stream.buffer.iter().filter(|e| e.id.seq > seen) {
                    let _ = tx.try_send(event.clone());
                }
            }
            None => {
                // A fresh id: event ids are unique in the session, and a resume from
                // this one replays what comes after it.
                stream.last_seq += 1;
                let _ = tx.try_send(priming(EventId {
                    stream: id,
                    seq: stream.last_seq,
                }));
            }
        }
        let finished = id != STANDALONE && stream.outstanding == 0;
        // A finished stream is closed once its replay is sent: drop the sender.
        stream.sink = (!finished).then_some(tx);
        Some(rx)
    }

    /// Appends an event to a stream's log and sends it if a client is attached.
    /// A client that is gone or too slow is detached; it can resume from the log.
    pub fn emit(&mut self, id: u32, data: Bytes, is_response: bool) {
        self.push(id, data, is_response, None);
    }

    /// Emits the response to a client request; `error_code` if it is an error.
    pub fn respond(&mut self, id: u32, data: Bytes, error_code: Option<i64>) {
        self.push(id, data, true, error_code);
    }

    fn push(&mut self, id: u32, data: Bytes, is_response: bool, error_code: Option<i64>) {
        let cap = self.buffer_cap;
        let Some(stream) = self.map.get_mut(&id) else {
            return;
        };
        stream.last_seq += 1;
        let charge = Some(self.budget.charge(data.len()));
        let event = Event {
            id: EventId {
                stream: id,
                seq: stream.last_seq,
            },
            data,
            is_response,
            error_code,
            charge,
        };
        if stream.buffer.len() == cap {
            stream.buffer.pop_front();
        }
        stream.buffer.push_back(event.clone());
        if let Some(sink) = &stream.sink
            && sink.try_send(event).is_err()
        {
            tracing::debug!(
                stream = id,
                "client detached from stream; events kept for resume"
            );
            stream.sink = None;
        }
        if self.budget.over().is_some() {
            self.shed_finished();
        }
    }

    /// Over budget, finished streams' replay logs go first, oldest first: a client
    /// might still resume one, but no call is waiting on them.
    fn shed_finished(&mut self) {
        while self.budget.over().is_some()
            && let Some(old) = self.completed.pop_front()
        {
            tracing::debug!(
                stream = old,
                "over the byte budget: finished stream's replay log dropped"
            );
            self.map.remove(&old);
        }
    }

    /// Records that one request of the stream got its response; closes the stream when
    /// none is left, keeping its log a while for late resumes.
    pub fn settle(&mut self, id: u32) {
        let Some(stream) = self.map.get_mut(&id) else {
            return;
        };
        if stream.outstanding == 0 {
            return; // already closed (a parked MRTR call's round stream, say)
        }
        stream.outstanding -= 1;
        if stream.outstanding == 0 {
            stream.sink = None;
            self.completed.push_back(id);
            if self.completed.len() > COMPLETED_KEPT
                && let Some(old) = self.completed.pop_front()
            {
                self.map.remove(&old);
            }
        }
    }

    /// Where a server request or log message goes when the server could not say
    /// which client request it belongs to (DESIGN.md §2, rule 4).
    pub fn for_server_initiated(&self) -> Option<u32> {
        let (mut count, mut newest) = (0, None);
        for (id, stream) in &self.map {
            if stream.sse && stream.outstanding > 0 {
                count += 1;
                newest = newest.max(Some(*id));
            }
        }
        if count == 1 {
            return newest; // exactly one request in flight
        }
        if self.standalone_attached() {
            return Some(STANDALONE);
        }
        newest
    }

    pub fn standalone_attached(&self) -> bool {
        self.map.get(&STANDALONE).is_some_and(Stream::is_attached)
    }

    /// Drops every receiver: their SSE responses end.
    pub fn close_all(&mut self) {
        for stream in self.map.values_mut() {
            stream.sink = None;
        }
    }
}

fn priming(id: EventId) -> Event {
    Event {
        id,
        data: Bytes::new(),
        is_response: false,
        error_code: None,
        charge: None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn drain(rx: &mut EventStream) -> Vec<String> {
        let mut out = vec![];
        while let Ok(e) = rx.try_recv() {
            out.push(format!("{}={}", e.id, String::from_utf8_lossy(&e.data)));
        }
        out
    }

    #[test]
    fn event_ids_round_trip() {
        let id: EventId = "3-17".parse().unwrap();
        assert_eq!(id, EventId { stream: 3, seq: 17 });
        assert_eq!(id.to_string(), "3-17");
        assert!("3".parse::<EventId>().is_err());
        assert!("a-1".parse::<EventId>().is_err());
    }

    #[test]
    fn resume_replays_only_missed_events_and_closes_finished_stream() {
        let mut s = Streams::new(8, Budget::unlimited());
        let (id, mut rx) = s.open(true, 1);
        s.emit(id, Bytes::from_static(b"a"), false);
        drop(rx); // the connection drops
        s.emit(id, Bytes::from_static(b"b"), false);
        s.emit(id, Bytes::from_static(b"c"), true);
        s.settle(id);
        rx = s.attach(id, Some(1)).unwrap();
        assert_eq!(drain(&mut rx), vec!["1-2=b", "1-3=c"]);
        // Closed, not merely empty: a finished stream ends once its replay is sent.
        assert!(matches!(
            rx.try_recv(),
            Err(tokio::sync::mpsc::error::TryRecvError::Disconnected)
        ));
    }

    #[test]
    fn settling_a_closed_stream_again_changes_nothing() {
        let mut s = Streams::new(8, Budget::unlimited());
        let (id, _rx) = s.open(true, 1);
        s.settle(id);
        s.settle(id);
        assert_eq!(s.completed.iter().filter(|c| **c == id).count(), 1);
    }

    #[test]
    fn a_fresh_get_primes_with_an_id_never_used_before() {
        let mut s = Streams::new(8, Budget::unlimited());
        s.emit(STANDALONE, Bytes::from_static(b"a"), false);
        let mut get = s.attach(STANDALONE, None).unwrap();
        let primed = get.try_recv().unwrap();
        assert!(primed.data.is_empty());
        assert_eq!(
            primed.id,
            EventId { stream: 0, seq: 2 },
            "not 0-1, the last event's id"
        );
        s.emit(STANDALONE, Bytes::from_static(b"b"), false);
        let mut resumed = s.attach(STANDALONE, Some(primed.id.seq)).unwrap();
        assert_eq!(drain(&mut resumed), vec!["0-3=b"]);
    }

    #[test]
    fn buffer_is_bounded() {
        let mut s = Streams::new(2, Budget::unlimited());
        let (id, _rx) = s.open(true, 1);
        for b in [&b"a"[..], b"b", b"c"] {
            s.emit(id, Bytes::copy_from_slice(b), false);
        }
        let mut rx = s.attach(id, Some(0)).unwrap();
        assert_eq!(drain(&mut rx), vec!["1-2=b", "1-3=c"]);
    }

    #[test]
    fn server_initiated_routing_follows_rule_four() {
        let mut s = Streams::new(8, Budget::unlimited());
        assert_eq!(s.for_server_initiated(), None);
        let (a, _ra) = s.open(true, 1);
        assert_eq!(s.for_server_initiated(), Some(a));
        let (b, _rb) = s.open(true, 1);
        assert_eq!(
            s.for_server_initiated(),
            Some(b),
            "newest when no GET stream"
        );
        let _get = s.attach(STANDALONE, None).unwrap();
        assert_eq!(s.for_server_initiated(), Some(STANDALONE));
        let (_json, _rj) = s.open(false, 1);
        assert_eq!(s.for_server_initiated(), Some(STANDALONE));
    }
}
