//! Header parsing: `Last-Event-ID` into an `EventId` (which must print back as what it
//! parsed), the front's Accept, Content-Type, Host, Origin, session-id and
//! protocol-version parsers on arbitrary header values, and the 2026-07-28 header
//! value decoding and version checks.
#![no_main]

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use lodge_proto::{headers, modern, version};
use lodge_runtime::EventId;

/// The headers the front reads; each input line is one of them in turn.
const NAMES: &[&str] = &[
    "accept",
    "content-type",
    headers::MCP_SESSION_ID,
    headers::MCP_PROTOCOL_VERSION,
    headers::LAST_EVENT_ID,
    "host",
    "origin",
    headers::LODGE_SESSION_ID,
    headers::MCP_METHOD,
    headers::MCP_NAME,
];

fuzz_target!(|data: &[u8]| {
    let mut map = HeaderMap::new();
    for (i, value) in data.split(|&b| b == b'\n').enumerate() {
        if let Ok(value) = HeaderValue::from_bytes(value) {
            map.append(HeaderName::from_static(NAMES[i % NAMES.len()]), value);
        }
    }
    lodge_http::fuzz_header_parsers(&map);

    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(id) = text.parse::<EventId>() {
        let again: EventId = id.to_string().parse().expect("an event id reparses");
        assert_eq!((again.stream, again.seq), (id.stream, id.seq));
    }
    let _ = modern::decode_header_value(text);
    let _ = (version::is_modern(text), version::is_legacy(text));
    let _ = version::allows_batches(text);
});
