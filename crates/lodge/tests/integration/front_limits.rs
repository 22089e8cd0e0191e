//! Slow and abandoning clients at the front (issue 13, A and C): header and body read
//! deadlines, the per-client connection cap, and initialize requests dropped while
//! their sandbox starts. A healthy session alongside must keep working throughout.
#![allow(clippy::unwrap_used)]

use crate::common::{LODGE, Lodge, Raw};
use serde_json::json;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

fn addr(lodge: &Lodge) -> SocketAddr {
    let url = lodge.url();
    let hostport = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    hostport.parse().unwrap()
}

/// A connection from 127.0.0.2: another loopback address, so the per-client cap this
/// "attacker" meets is not the one the healthy client (127.0.0.1) is counted under.
async fn connect_from_other_address(to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    socket.connect(to).await.unwrap()
}

/// Reads until the peer closes; returns what came and when the close was seen.
/// Panics if the connection is still open after `limit`.
async fn read_until_closed(tcp: &mut TcpStream, limit: Duration) -> (String, Duration) {
    let start = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let read = tokio::time::timeout_at((start + limit).into(), tcp.read(&mut buf)).await;
        match read {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => panic!(
                "the connection is still open after {limit:?}; got {:?}",
                String::from_utf8_lossy(&out)
            ),
        }
    }
    (String::from_utf8_lossy(&out).into_owned(), start.elapsed())
}

fn limits_lodge(extra: &str) -> Lodge {
    Lodge::start(&format!(
        "header_read_timeout = \"1s\"\nbody_read_timeout = \"1s\"\n{extra}\n{}",
        crate::common::demo_server_toml()
    ))
}

async fn healthy(lodge: &Lodge) -> Raw {
    let mut raw = Raw::new(lodge.url());
    raw.initialize().await;
    raw
}

async fn still_healthy(raw: &Raw, id: u64) {
    assert_eq!(raw.call_text(id, "echo", json!({"text":"ok"})).await, "ok");
}

#[tokio::test]
async fn headers_that_never_end_are_cut_off_at_the_header_deadline() {
    let lodge = limits_lodge("");
    let raw = healthy(&lodge).await;
    let mut slow = connect_from_other_address(addr(&lodge)).await;
    slow.write_all(b"POST /mcp HTTP/1.1\r\nHost: localhost\r\nContent-Type: app")
        .await
        .unwrap();
    still_healthy(&raw, 1).await;
    let (_, after) = read_until_closed(&mut slow, Duration::from_secs(5)).await;
    assert!(
        after >= Duration::from_millis(800),
        "closed too soon: {after:?}"
    );
    // So is a new connection that sends nothing.
    let mut idle = connect_from_other_address(addr(&lodge)).await;
    read_until_closed(&mut idle, Duration::from_secs(5)).await;
    still_healthy(&raw, 2).await;
}

/// A kept-alive connection waiting for its client's next request is not held to the
/// header deadline (closing it then races the client's reuse and loses that request),
/// only to `keep_alive_timeout`; the next request's head has the header deadline again.
#[tokio::test]
async fn kept_alive_connections_idle_past_the_header_deadline_and_close_at_keep_alive() {
    let lodge = limits_lodge("keep_alive_timeout = \"3s\"");
    // Any complete exchange will do: a path Lodge does not serve is a quick 404.
    let health = b"GET /nothing-here HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let mut tcp = TcpStream::connect(addr(&lodge)).await.unwrap();
    let mut buf = [0u8; 4096];
    for round in 0..2 {
        tcp.write_all(health).await.unwrap();
        let n = tcp.read(&mut buf).await.unwrap();
        let reply = String::from_utf8_lossy(&buf[..n]);
        assert!(reply.starts_with("HTTP/1.1 404"), "round {round}: {reply}");
        // Idle for twice the header deadline: still open.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let (_, after) = read_until_closed(&mut tcp, Duration::from_secs(5)).await;
    assert!(
        after >= Duration::from_millis(500),
        "closed before keep_alive_timeout: {after:?}"
    );
    // On a kept-alive connection, a head that never ends is cut at the header deadline.
    let mut tcp = TcpStream::connect(addr(&lodge)).await.unwrap();
    tcp.write_all(health).await.unwrap();
    let n = tcp.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 404"));
    tcp.write_all(b"GET /nothing-here HTTP/1.1\r\nHost: local")
        .await
        .unwrap();
    let (_, after) = read_until_closed(&mut tcp, Duration::from_secs(2)).await;
    assert!(
        after >= Duration::from_millis(800),
        "closed too soon: {after:?}"
    );
}

#[tokio::test]
async fn a_stalled_chunked_body_and_a_dripping_body_get_408_and_are_closed() {
    let lodge = limits_lodge("");
    let raw = healthy(&lodge).await;
    let session = raw.session.clone().unwrap();
    let head = |framing: &str| {
        format!(
            "POST /mcp HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
             Accept: application/json, text/event-stream\r\nMcp-Session-Id: {session}\r\n{framing}\r\n\r\n"
        )
    };

    let mut stalled = connect_from_other_address(addr(&lodge)).await;
    stalled
        .write_all(head("Transfer-Encoding: chunked").as_bytes())
        .await
        .unwrap();
    stalled
        .write_all(b"10\r\n{\"jsonrpc\":\"2.0\"")
        .await
        .unwrap();

    let mut dripping = connect_from_other_address(addr(&lodge)).await;
    dripping
        .write_all(head("Content-Length: 100").as_bytes())
        .await
        .unwrap();
    let drip = tokio::spawn(async move {
        for _ in 0..100 {
            if dripping.write_all(b" ").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        dripping
    });

    still_healthy(&raw, 1).await;
    let (answer, after) = read_until_closed(&mut stalled, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    assert!(answer.contains("-32600"), "{answer}");
    assert!(after < Duration::from_secs(3), "{after:?}");

    let mut dripping = tokio::time::timeout(Duration::from_secs(30), drip)
        .await
        .unwrap()
        .unwrap();
    let (answer, _) = read_until_closed(&mut dripping, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    still_healthy(&raw, 2).await;
}

#[tokio::test]
async fn one_address_cannot_hold_more_than_its_connection_cap() {
    // Long deadlines, so only the cap can close these idle connections.
    let lodge = Lodge::start(&format!(
        "header_read_timeout = \"60s\"\nmax_connections_per_client = 3\n{}",
        crate::common::demo_server_toml()
    ));
    let raw = healthy(&lodge).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect_from_other_address(addr(&lodge)).await);
    }
    // Let the accept loop count them before the one over the cap arrives.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut over = connect_from_other_address(addr(&lodge)).await;
    let (answer, _) = read_until_closed(&mut over, Duration::from_secs(3)).await;
    assert_eq!(
        answer, "",
        "the connection over the cap is closed unanswered"
    );
    still_healthy(&raw, 1).await;

    // A closed connection gives its slot back.
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut again = connect_from_other_address(addr(&lodge)).await;
    again
        .write_all(b"GET /mcp HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let (answer, _) = read_until_closed(&mut again, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 "), "{answer:?}");
    still_healthy(&raw, 2).await;
}

#[tokio::test]
async fn initializes_abandoned_while_the_sandbox_starts_leak_no_session_slot() {
    // A server that takes a second to start, so each client gives up mid-start.
    // (The sandbox binds a command's own binary; `lodge` is reached through `sh` here,
    // so its directory is bound explicitly.)
    let bin_dir = std::path::Path::new(LODGE)
        .parent()
        .unwrap()
        .display()
        .to_string();
    let slow_demo = format!(
        "[[server]]\nname = \"slow\"\ncommand = [\"sh\", \"-c\", \"sleep 1; exec {LODGE} demo-server\"]\n\
         [server.sandbox]\nbinds = [\"{bin_dir}:ro\"]\n"
    );
    let mut lodge = Lodge::start(&format!("{slow_demo}\n[session]\nmax_sessions = 3\n"));
    let to = addr(&lodge);
    let body = json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
        "protocolVersion":"2025-11-25","capabilities":{},
        "clientInfo":{"name":"abandoner","version":"1"}}})
    .to_string();
    let request = format!(
        "POST /mcp HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    for _ in 0..3 {
        let mut abandons = Vec::new();
        for _ in 0..3 {
            let mut tcp = TcpStream::connect(to).await.unwrap();
            tcp.write_all(request.as_bytes()).await.unwrap();
            abandons.push(tcp);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        drop(abandons); // every one of them mid-start
    }
    // Every slot comes back: a new session starts (within the slow start, and the
    // abandoned sandboxes' clean-up).
    let mut raw = Raw::new(lodge.url());
    crate::common::eventually(Duration::from_secs(20), "a new session", async || {
        let reply = raw
            .post(
                json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
                "protocolVersion":"2025-11-25","capabilities":{},
                "clientInfo":{"name":"late","version":"1"}}}),
            )
            .await;
        reply.status == 200
    })
    .await;
    raw.session = None;
    raw.initialize().await;
    assert_eq!(raw.call_text(1, "echo", json!({"text":"in"})).await, "in");

    let start = Instant::now();
    let status = lodge.terminate();
    assert!(status.success(), "{status:?}");
    assert!(
        start.elapsed() < Duration::from_secs(15),
        "SIGTERM took {:?}",
        start.elapsed()
    );
}
