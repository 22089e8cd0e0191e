//! The message classifier and era detection on arbitrary bytes: `Message::parse`,
//! `parse_batch`, `readable_id`, then, on what parses, the accessors the runtime
//! routes by, `modern::validate` (with no mirrored headers and with headers that agree
//! with the body) and the id rewrite every relayed request goes through.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use lodge_proto::modern::{self, MirroredHeaders};
use lodge_proto::{Id, Message, parse_batch, readable_id, replace_id};

fuzz_target!(|data: &[u8]| {
    let bytes = Bytes::copy_from_slice(data);
    if let Ok(items) = parse_batch(&bytes) {
        items.into_iter().for_each(classify);
    }
    let _ = readable_id(data);
    classify(bytes);
});

fn classify(bytes: Bytes) {
    let Ok(message) = Message::parse(bytes) else {
        return;
    };
    let _ = (message.method(), message.error_code(), message.is_request());
    let version = message.meta_protocol_version();
    let _ = modern::is_modern_request(&message, None);
    let _ = modern::is_modern_request(&message, version);
    let agreeing = MirroredHeaders {
        protocol_version: version,
        method: message.method(),
        name: None,
    };
    for headers in [MirroredHeaders::default(), agreeing] {
        if let Err(e) = modern::validate(&message, headers) {
            let _ = (e.to_string(), e.data());
        }
    }
    if let Some(id) = message.request_id() {
        let _ = (id.to_string(), id.is_lodge_owned());
        // The runtime swaps every request's id for its own before relaying it: that
        // must work on anything the parse accepted, and change nothing else it read.
        let ours = Id::from_json_text("\"lodge-fuzz-1\"");
        let swapped = replace_id(&message.bytes, &ours).expect("a parsed request has an id");
        let again = Message::parse(swapped).expect("a request with its id swapped parses");
        assert_eq!(again.request_id(), Some(&ours));
        assert_eq!(again.method(), message.method());
    }
}
