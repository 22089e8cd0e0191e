//! `[otlp] endpoint`: Lodge's spans reach a collector over OTLP/HTTP (decoded here as
//! the protobuf a real collector gets), joined to the client's trace.
#![cfg(feature = "otlp")]
#![allow(clippy::unwrap_used)]

use crate::common::{Lodge, Raw, demo_server_toml, parse_sse};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

/// An OTLP/HTTP collector (tests using it run multi-threaded: it must answer while the
/// test blocks on Lodge's exit): keeps the `ExportTraceServiceRequest`s POSTed to
/// `/v1/traces` and answers each with 200.
struct Collector {
    url: String,
    received: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
}

impl Collector {
    async fn start() -> Collector {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let received = Arc::new(Mutex::new(Vec::new()));
        let kept = received.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(Self::serve(stream, kept.clone()));
            }
        });
        Collector { url, received }
    }

    async fn serve(
        stream: tokio::net::TcpStream,
        kept: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
    ) {
        let mut stream = BufReader::new(stream);
        loop {
            let (mut head, mut line) = (String::new(), String::new());
            while stream.read_line(&mut line).await.unwrap_or(0) > 2 {
                head.push_str(&line.to_ascii_lowercase());
                line.clear();
            }
            if head.is_empty() {
                return;
            }
            assert!(head.starts_with("post /v1/traces "), "{head}");
            assert!(
                head.contains("content-type: application/x-protobuf"),
                "{head}"
            );
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or_else(|| panic!("no content-length: {head}"));
            let mut body = vec![0; length];
            stream.read_exact(&mut body).await.unwrap();
            kept.lock()
                .unwrap()
                .push(ExportTraceServiceRequest::decode(body.as_slice()).unwrap());
            let answer = "HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
            stream.get_mut().write_all(answer.as_bytes()).await.unwrap();
        }
    }

    /// Every span received, with the service name of its resource.
    fn spans(&self) -> Vec<(String, Span)> {
        let received = self.received.lock().unwrap();
        let mut spans = Vec::new();
        for request in received.iter() {
            for resource in &request.resource_spans {
                let service = resource
                    .resource
                    .as_ref()
                    .and_then(|r| attribute(&r.attributes, "service.name"))
                    .unwrap_or_default();
                for scope in &resource.scope_spans {
                    for span in &scope.spans {
                        spans.push((service.clone(), span.clone()));
                    }
                }
            }
        }
        spans
    }
}

fn attribute(attributes: &[KeyValue], key: &str) -> Option<String> {
    let value = attributes.iter().find(|kv| kv.key == key)?.value.as_ref()?;
    match value.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s.clone()),
        other => Some(format!("{other:?}")),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn otlp_toml(collector: &Collector) -> String {
    format!(
        "[otlp]\nendpoint = \"{}/\"\nservice_name = \"lodge-under-test\"\n",
        collector.url
    )
}

/// A `tools/call` carrying the client's `traceparent`; returns the tool's text.
async fn traced_call(raw: &Raw, tool: &str, args: Value) -> String {
    let call = json!({"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":tool,"arguments":args}});
    let traceparent = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    let reply = Raw::send(raw.post_builder(&call).header("traceparent", traceparent)).await;
    let answer = parse_sse(&reply.body)
        .last()
        .map(|e| e.json())
        .unwrap_or_else(|| serde_json::from_str(&reply.body).unwrap());
    answer["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("{answer}"))
        .to_string()
}

/// The session's and the request's spans, with their session, server, method and
/// principal, reach the collector when Lodge stops (the queue is flushed); a request
/// that carried a `traceparent` is that client span's child.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_the_collector_joined_to_the_clients_trace() {
    let collector = Collector::start().await;
    let mut lodge = Lodge::start(&format!("{}{}", demo_server_toml(), otlp_toml(&collector)));
    let mut raw = Raw::new(lodge.url());
    raw.initialize().await;
    let session = raw.session.clone().unwrap();
    assert_eq!(traced_call(&raw, "echo", json!({"text": "hi"})).await, "hi");
    assert!(lodge.terminate().success());

    let spans = collector.spans();
    assert!(
        spans
            .iter()
            .all(|(service, _)| service == "lodge-under-test"),
        "{spans:?}"
    );
    let call = spans
        .iter()
        .map(|(_, span)| span)
        .find(|span| {
            span.name == "request"
                && attribute(&span.attributes, "method").as_deref() == Some("tools/call")
        })
        .unwrap_or_else(|| panic!("no tools/call request span in {spans:?}"));
    assert_eq!(
        attribute(&call.attributes, "session").as_deref(),
        Some(session.as_str())
    );
    assert_eq!(
        attribute(&call.attributes, "server").as_deref(),
        Some("demo")
    );
    assert_eq!(hex(&call.trace_id), CLIENT_TRACE);
    assert_eq!(hex(&call.parent_span_id), CLIENT_SPAN);
    let session_span = spans
        .iter()
        .map(|(_, span)| span)
        .find(|span| span.name == "session")
        .unwrap_or_else(|| panic!("no session span in {spans:?}"));
    assert_eq!(
        attribute(&session_span.attributes, "session").as_deref(),
        Some(session.as_str())
    );
    // A request without a traceparent starts a trace of its own.
    let initialize = spans
        .iter()
        .map(|(_, span)| span)
        .find(|span| attribute(&span.attributes, "method").as_deref() == Some("initialize"))
        .unwrap_or_else(|| panic!("no initialize span in {spans:?}"));
    assert_ne!(hex(&initialize.trace_id), CLIENT_TRACE);
    assert!(initialize.parent_span_id.is_empty());
}

/// An HTTP-transport server's requests name Lodge's exported request span as their
/// parent: client, Lodge and server make one trace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_server_is_the_child_of_lodges_exported_span() {
    let collector = Collector::start().await;
    let python = crate::common::venv_python();
    let fixture = crate::common::repo_root().join("tests/fixtures/python/whoami_http_server.py");
    let config = format!(
        "[[server]]\nname = \"whoami\"\ncommand = [{python:?}, {fixture:?}]\ntransport = \"http\"\nport = 8000\npath = \"/mcp\"\n{}",
        otlp_toml(&collector)
    );
    let Some(mut lodge) = crate::common::start_namespaces_in(tempfile::tempdir().unwrap(), &config)
    else {
        return;
    };
    let mut raw = Raw::new(lodge.url());
    raw.initialize().await;
    let seen: Value = serde_json::from_str(&traced_call(&raw, "whoami", json!({})).await).unwrap();
    let seen = seen["traceparent"].as_str().unwrap().to_string();
    assert!(lodge.terminate().success());

    let spans = collector.spans();
    let call = spans
        .iter()
        .map(|(_, span)| span)
        .find(|span| attribute(&span.attributes, "method").as_deref() == Some("tools/call"))
        .unwrap_or_else(|| panic!("no tools/call request span in {spans:?}"));
    assert_eq!(
        seen,
        format!("00-{CLIENT_TRACE}-{}-01", hex(&call.span_id)),
        "the server's parent is Lodge's request span"
    );
    assert_eq!(hex(&call.parent_span_id), CLIENT_SPAN);
}
