//! Faults under load: clients that lose their connection at random points of SSE
//! streams and resume with `Last-Event-ID`, many times over, in sessions side by side.
#![allow(clippy::unwrap_used)]

use crate::common::{Lodge, Raw, SseEvent, read_events_until};
use serde_json::json;

/// A small deterministic generator (xorshift64): the same disconnect points every run.
struct Points(u64);

impl Points {
    /// 1..=max
    fn next(&mut self, max: u64) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % max + 1) as usize
    }
}

const STEPS: usize = 100;

/// One `slow` call of [`STEPS`] progress events, its connection dropped after a random
/// 1–4 events again and again and resumed from the last id seen, until the result
/// arrives. Returns every event seen and how many times the connection was dropped.
async fn call_through_disconnects(
    raw: &Raw,
    id: u64,
    points: &mut Points,
) -> (Vec<SseEvent>, usize) {
    let call = json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{
        "name":"slow","arguments":{"seconds":1.0,"steps":STEPS},"_meta":{"progressToken":id}}});
    let mut response = raw.post_builder(&call).send().await.unwrap();
    let (mut seen, mut drops) = (Vec::new(), 0);
    loop {
        assert_eq!(response.status(), 200);
        let mut budget = points.next(4);
        let events = read_events_until(response, |e| {
            budget -= 1;
            e.data.contains("\"result\"") || budget == 0
        })
        .await;
        let finished = events.iter().any(|e| e.data.contains("\"result\""));
        if let Some(last) = events.iter().rev().find_map(|e| e.id.clone()) {
            seen.extend(events);
            if finished {
                return (seen, drops);
            }
            drops += 1;
            response = raw.get_builder(Some(&last)).send().await.unwrap();
        } else {
            panic!("a stream ended without an event id after {seen:?}");
        }
    }
}

/// Every progress event exactly once and in order, one result, no event id twice.
fn assert_exactly_once(id: u64, events: &[SseEvent]) {
    let messages: Vec<_> = events.iter().filter(|e| !e.data.is_empty()).collect();
    let progress: Vec<f64> = messages
        .iter()
        .filter(|e| e.data.contains("notifications/progress"))
        .map(|e| e.json()["params"]["progress"].as_f64().unwrap())
        .collect();
    let expected: Vec<f64> = (1..=STEPS).map(|step| step as f64).collect();
    assert_eq!(progress, expected, "call {id}");
    let results: Vec<_> = messages
        .iter()
        .filter(|e| e.data.contains("\"result\""))
        .collect();
    assert_eq!(results.len(), 1, "call {id}: one result");
    assert_eq!(results[0].json()["id"], id);
    let mut ids: Vec<_> = events.iter().filter_map(|e| e.id.clone()).collect();
    let n = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n, "call {id}: no event id twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_forced_disconnects_lose_and_duplicate_nothing() {
    let lodge = Lodge::demo("");
    let mut tasks = Vec::new();
    for session in 0..4u64 {
        let mut raw = Raw::new(lodge.url());
        tasks.push(tokio::spawn(async move {
            raw.initialize().await;
            let mut points = Points(0x9E37_79B9_7F4A_7C15 ^ (session + 1));
            let mut drops = 0;
            let mut id = 1;
            while drops < 250 {
                let (events, dropped) = call_through_disconnects(&raw, id, &mut points).await;
                assert_exactly_once(id, &events);
                drops += dropped;
                id += 1;
            }
            drops
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await.unwrap();
    }
    assert!(total >= 1000, "{total} disconnects");
    eprintln!("{total} forced disconnects, every event delivered exactly once");
}
