//! The core's routing rules, completion and idle accounting, exactly.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::session::Event;
use std::time::Duration;

fn id(text: &str) -> Id {
    Id::from_json_text(text)
}

fn b(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

fn reply(text: &str) -> Reply {
    Reply {
        bytes: b(text),
        error_code: None,
        source: crate::ErrorSource::Server,
    }
}

/// The events waiting on a stream, as `seq=data` (priming events skipped), and
/// whether the stream has ended.
fn events(rx: &mut EventStream) -> (Vec<String>, bool) {
    let mut out = vec![];
    loop {
        match rx.try_recv() {
            Ok(Event { data, .. }) if data.is_empty() => {}
            Ok(e) => out.push(format!(
                "{}{}",
                String::from_utf8_lossy(&e.data),
                if e.is_response { "!" } else { "" }
            )),
            Err(tokio::sync::mpsc::error::TryRecvError::Empty) => return (out, false),
            Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => return (out, true),
        }
    }
}

fn core() -> Core<()> {
    Core::new(
        8,
        Duration::from_secs(60),
        Budget::unlimited(),
        Instant::now(),
    )
}

/// Opens an SSE stream with one call `call`, whose progress token is `token`.
fn call(c: &mut Core<()>, call: &str, token: Option<&str>) -> (u32, EventStream) {
    let (stream, rx) = c.open(true, 1);
    c.insert(id(call), Pending::new(stream, token.map(id), ()));
    (stream, rx)
}

#[test]
fn minted_ids_are_lodge_owned_and_unique() {
    let mut c = core();
    let (a, b2) = (c.mint_id(), c.mint_id());
    assert_eq!(a.as_json_text(), "\"lodge:1\"");
    assert_eq!(b2.as_json_text(), "\"lodge:2\"");
    assert!(a.is_lodge_owned() && b2.is_lodge_owned());
}

#[test]
fn rule_1_a_response_ends_its_stream() {
    let mut c = core();
    let (_, mut rx) = call(&mut c, "1", None);
    assert!(c.complete(&id("1"), Some(reply("r1"))).is_some());
    assert_eq!(events(&mut rx), (vec!["r1!".to_string()], true));
    assert!(!c.contains(&id("1")));
    assert!(
        c.complete(&id("1"), Some(reply("again"))).is_none(),
        "a second response finds no call"
    );
}

#[test]
fn rule_2_progress_follows_its_token_until_the_call_completes() {
    let mut c = core();
    let (a, _ra) = call(&mut c, "1", Some("\"t1\""));
    let (b2, _rb) = call(&mut c, "2", Some("7"));
    assert_eq!(c.on_progress(&id("\"t1\"")), Some(a));
    assert_eq!(c.on_progress(&id("7")), Some(b2));
    assert_eq!(c.on_progress(&id("\"7\"")), None, "7 and \"7\" differ");
    c.complete(&id("1"), None);
    assert_eq!(c.on_progress(&id("\"t1\"")), None);
    assert_eq!(c.on_progress(&id("7")), Some(b2));
}

#[test]
fn rule_3_cancellation_goes_to_the_named_call_or_server_request() {
    let mut c = core();
    let (_, mut ra) = call(&mut c, "1", None);
    let (_, mut rb) = call(&mut c, "2", None);
    c.route_cancelled(Some(&id("1")), b("cancel-1"));
    assert_eq!(events(&mut ra).0, vec!["cancel-1"]);
    // A server request relayed to the newest call (rule 4) ...
    c.route_server_initiated(b("ask"), Some(id("\"s1\"")));
    assert_eq!(events(&mut rb).0, vec!["ask"]);
    // ... and the server's cancellation of it follows it there, once.
    c.route_cancelled(Some(&id("\"s1\"")), b("cancel-s1"));
    assert_eq!(events(&mut rb).0, vec!["cancel-s1"]);
    c.route_cancelled(Some(&id("\"s1\"")), b("again"));
    assert_eq!(events(&mut rb).0, Vec::<String>::new());
    assert_eq!(c.held(), 1, "an unroutable cancellation is held (rule 5)");
}

#[test]
fn rule_4_only_call_then_get_stream_then_newest() {
    let mut c = core();
    let (_, mut ra) = call(&mut c, "1", None);
    c.route_server_initiated(b("m1"), None);
    assert_eq!(events(&mut ra).0, vec!["m1"], "the only call in flight");
    let (_, mut rb) = call(&mut c, "2", None);
    c.route_server_initiated(b("m2"), None);
    assert_eq!(
        events(&mut rb).0,
        vec!["m2"],
        "the newest, without a GET stream"
    );
    let mut get = c.listen(None).unwrap();
    c.route_server_initiated(b("m3"), None);
    assert_eq!(
        events(&mut get).0,
        vec!["m3"],
        "the GET stream when several"
    );
    assert_eq!(events(&mut ra).0, Vec::<String>::new());
}

#[test]
fn rule_4_a_json_only_stream_never_gets_server_requests() {
    let mut c = core();
    let (stream, mut rx) = c.open(false, 1);
    c.insert(id("1"), Pending::new(stream, None, ()));
    c.route_server_initiated(b("ask"), Some(id("\"s\"")));
    assert_eq!(events(&mut rx).0, Vec::<String>::new());
    assert_eq!(c.held(), 1);
}

#[test]
fn rule_5_other_notifications_go_to_the_get_stream_or_wait() {
    let mut c = core();
    let (_, mut ra) = call(&mut c, "1", None);
    c.route_other(b("list_changed"));
    assert_eq!(
        events(&mut ra).0,
        Vec::<String>::new(),
        "never a call's stream"
    );
    assert_eq!(c.held(), 1);
    let mut get = c.listen(None).unwrap();
    assert_eq!(events(&mut get).0, vec!["list_changed"], "released on GET");
    assert_eq!(c.held(), 0);
    c.route_other(b("updated"));
    assert_eq!(events(&mut get).0, vec!["updated"]);
}

#[test]
fn held_server_requests_go_to_the_next_sse_call_but_notifications_wait() {
    let mut c = core();
    c.route_server_initiated(b("ask"), Some(id("\"s\"")));
    c.route_other(b("changed"));
    assert_eq!(c.held(), 2);
    let (_, mut rx) = call(&mut c, "1", None);
    assert_eq!(events(&mut rx).0, vec!["ask"]);
    assert_eq!(c.held(), 1, "the notification waits for a GET stream");
    // The released request routes its cancellation to the same stream.
    c.route_cancelled(Some(&id("\"s\"")), b("cancel"));
    assert_eq!(events(&mut rx).0, vec!["cancel"]);
}

#[test]
fn held_messages_are_bounded_oldest_first() {
    let mut c: Core<()> = Core::new(
        2,
        Duration::from_secs(60),
        Budget::unlimited(),
        Instant::now(),
    );
    for m in ["a", "b", "c"] {
        c.route_other(b(m));
    }
    assert_eq!(c.held(), 2);
    let mut get = c.listen(None).unwrap();
    assert_eq!(events(&mut get).0, vec!["b", "c"]);
}

#[test]
fn an_answered_server_request_no_longer_routes_cancellations() {
    let mut c = core();
    let (_, mut rx) = call(&mut c, "1", None);
    c.route_server_initiated(b("ask"), Some(id("5")));
    c.answered(&id("5"));
    c.route_cancelled(Some(&id("5")), b("late"));
    assert_eq!(events(&mut rx).0, vec!["ask"]);
    assert_eq!(c.held(), 1);
}

#[test]
fn several_calls_on_one_stream_end_it_with_the_last_response() {
    let mut c = core();
    let (stream, mut rx) = c.open(true, 2);
    c.insert(id("1"), Pending::new(stream, None, ()));
    c.insert(id("2"), Pending::new(stream, None, ()));
    c.complete(&id("2"), Some(reply("r2")));
    assert_eq!(events(&mut rx), (vec!["r2!".to_string()], false));
    c.complete(&id("1"), Some(reply("r1")));
    assert_eq!(events(&mut rx), (vec!["r1!".to_string()], true));
}

#[test]
fn a_moved_call_answers_on_its_new_stream_and_progress_follows() {
    let mut c = core();
    let (_, mut old) = call(&mut c, "1", Some("\"p\""));
    let (fresh, mut new) = c.open(false, 1);
    c.move_to_stream(&id("1"), fresh);
    assert_eq!(c.on_progress(&id("\"p\"")), Some(fresh));
    c.rekey(&id("1"), id("\"lodge:9\""));
    assert!(!c.contains(&id("1")));
    c.complete(&id("\"lodge:9\""), Some(reply("done")));
    assert_eq!(events(&mut new), (vec!["done!".to_string()], true));
    assert_eq!(
        events(&mut old),
        (vec![], false),
        "the old stream is untouched"
    );
    assert_eq!(c.on_progress(&id("\"p\"")), None);
}

#[test]
fn answer_now_is_a_finished_stream_with_one_response() {
    let mut c = core();
    let (_, mut rx) = c.answer_now(reply("{}"));
    assert_eq!(events(&mut rx), (vec!["{}!".to_string()], true));
    assert_eq!(c.in_flight(), 0);
}

#[test]
fn drain_returns_every_call_and_leaves_the_session_idle() {
    let mut c = core();
    call(&mut c, "1", Some("\"p\""));
    call(&mut c, "2", None);
    let mut drained: Vec<_> = c
        .drain()
        .into_iter()
        .map(|(id, _)| id.to_string())
        .collect();
    drained.sort();
    assert_eq!(drained, vec!["1", "2"]);
    assert_eq!(c.in_flight(), 0);
    assert!(c.idle_since().is_some());
    assert_eq!(c.on_progress(&id("\"p\"")), None);
}

#[test]
fn resuming_an_unknown_stream_is_an_error() {
    let mut c = core();
    let err = c
        .listen(Some(crate::session::EventId { stream: 9, seq: 0 }))
        .unwrap_err();
    assert!(matches!(err, SessionError::UnknownEvent(e) if e == "9-0"));
}

#[tokio::test(start_paused = true)]
async fn idle_counts_only_while_nothing_busy_is_in_flight() {
    let start = Instant::now();
    let mut c = core();
    assert_eq!(c.idle_since(), Some(start));
    tokio::time::advance(Duration::from_secs(5)).await;
    let (stream, _rx) = c.open(true, 1);
    c.insert(id("1"), Pending::new(stream, None, ()));
    assert_eq!((c.in_flight(), c.idle_since()), (1, None));
    tokio::time::advance(Duration::from_secs(60)).await;
    assert_eq!(c.idle_since(), None, "a long call is busy, not idle");
    c.complete(&id("1"), None);
    assert_eq!(c.idle_since(), Some(start + Duration::from_secs(65)));
}

#[tokio::test(start_paused = true)]
async fn a_call_that_is_not_busy_does_not_stop_the_idle_clock() {
    let start = Instant::now();
    let mut c = core();
    let (stream, _rx) = c.open(false, 1);
    let mut listen = Pending::new(stream, None, ());
    listen.busy = false;
    c.insert(id("1"), listen);
    assert_eq!((c.in_flight(), c.idle_since()), (0, Some(start)));
}

#[tokio::test(start_paused = true)]
async fn a_client_message_while_idle_restarts_the_idle_clock_but_not_while_busy() {
    let mut c = core();
    tokio::time::advance(Duration::from_secs(30)).await;
    c.touch();
    assert_eq!(c.idle_since(), Some(Instant::now()));
    let (stream, _rx) = c.open(true, 1);
    c.insert(id("1"), Pending::new(stream, None, ()));
    c.touch();
    assert_eq!(c.idle_since(), None);
}

#[tokio::test(start_paused = true)]
async fn completing_one_of_two_calls_keeps_the_session_busy() {
    let mut c = core();
    call(&mut c, "1", None);
    call(&mut c, "2", None);
    c.complete(&id("1"), None);
    assert_eq!((c.in_flight(), c.idle_since()), (1, None));
    c.complete(&id("2"), None);
    assert_eq!((c.in_flight(), c.idle_since()), (0, Some(Instant::now())));
}

#[tokio::test(start_paused = true)]
async fn a_call_runs_out_of_time_unless_the_server_reports_progress() {
    let start = Instant::now();
    let mut c = core();
    call(&mut c, "1", Some("\"p\""));
    assert_eq!(
        c.next_call_deadline(),
        Some(start + Duration::from_secs(60))
    );
    tokio::time::advance(Duration::from_secs(50)).await;
    assert!(c.on_progress(&id("\"p\"")).is_some());
    assert_eq!(c.overdue(start + Duration::from_secs(60)), Vec::<Id>::new());
    assert_eq!(
        c.next_call_deadline(),
        Some(start + Duration::from_secs(110))
    );
    assert_eq!(c.overdue(start + Duration::from_secs(110)), vec![id("1")]);
}

#[tokio::test(start_paused = true)]
async fn no_call_runs_out_while_the_server_waits_on_the_client() {
    let start = Instant::now();
    let mut c = core();
    call(&mut c, "1", None);
    c.route_server_initiated(b("elicit"), Some(id("\"e\"")));
    assert_eq!(c.next_call_deadline(), None);
    assert!(c.overdue(start + Duration::from_secs(3600)).is_empty());
    c.answered(&id("\"e\""));
    assert_eq!(
        c.next_call_deadline(),
        Some(start + Duration::from_secs(60))
    );
    c.stop_waiting(&id("1"));
    assert_eq!(c.next_call_deadline(), None, "a call waiting on its client");
    c.wait_again(&id("1"));
    assert_eq!(
        c.next_call_deadline(),
        Some(start + Duration::from_secs(60))
    );
}

/// A core whose session may keep `per_session` bytes, in a Lodge that allows `total`.
fn budgeted(per_session: usize, total: usize) -> (Core<()>, crate::session::BudgetLimits) {
    let limits = crate::session::BudgetLimits::new(per_session, total);
    let core = Core::new(
        8,
        Duration::from_secs(60),
        Budget::new(limits.clone()),
        Instant::now(),
    );
    (core, limits)
}

#[test]
fn held_messages_count_against_the_budget_until_delivered() {
    let (mut c, limits) = budgeted(10, 1000);
    c.route_other(b("12345"));
    c.route_other(b("67890"));
    assert_eq!((c.streams.budget().used(), limits.total_used()), (10, 10));
    assert_eq!(c.over_budget(), None);
    c.route_other(b("x"));
    assert_eq!(
        c.over_budget(),
        Some(OverBudget::Session(10)),
        "nobody reads them: the session must end"
    );
    // Read by a client, they no longer count.
    let mut get = c.listen(None).unwrap();
    assert_eq!(events(&mut get).0, vec!["12345", "67890", "x"]);
    drop(get);
    assert_eq!(
        c.streams.budget().used(),
        11,
        "the replay log still keeps them"
    );
}

#[test]
fn over_budget_finished_streams_replay_logs_go_first() {
    let (mut c, _) = budgeted(10, 1000);
    let (done, rx) = call(&mut c, "1", None);
    c.complete(&id("1"), Some(reply("12345678")));
    drop(rx); // read or not, the call is over
    let (_, mut live) = call(&mut c, "2", None);
    c.route_server_initiated(b("abcdef"), None);
    assert_eq!(c.over_budget(), None, "the finished stream's log made room");
    assert_eq!(c.streams.budget().used(), 6);
    assert!(
        c.streams.attach(done, Some(0)).is_none(),
        "it can no longer be resumed"
    );
    assert_eq!(events(&mut live).0, vec!["abcdef"]);
}

#[test]
fn a_client_that_never_reads_its_stream_cannot_grow_the_session_past_its_budget() {
    let (mut c, _) = budgeted(100, 1000);
    let (_, _unread) = call(&mut c, "1", None);
    for _ in 0..10 {
        c.route_server_initiated(b("0123456789"), None);
    }
    assert_eq!(c.over_budget(), None, "exactly the budget");
    c.route_server_initiated(b("!"), None);
    assert_eq!(c.over_budget(), Some(OverBudget::Session(100)));
}
