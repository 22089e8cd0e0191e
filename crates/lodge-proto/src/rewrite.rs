//! The few places Lodge must change a message it relays: ids (so two clients of one
//! runtime session never collide upstream) and `_meta` fields.

use crate::message::Id;
use bytes::{Bytes, BytesMut};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

#[derive(Deserialize)]
struct IdOnly<'a> {
    #[serde(borrow)]
    id: &'a RawValue,
}

/// The message with its top-level `id` replaced, every other byte untouched.
/// `None` if the message has no id.
pub fn replace_id(bytes: &Bytes, id: &Id) -> Option<Bytes> {
    let found: IdOnly<'_> = serde_json::from_slice(bytes).ok()?;
    // The raw value borrows from `bytes`, so its position is its offset in the message.
    let start = (found.id.get().as_ptr() as usize).checked_sub(bytes.as_ptr() as usize)?;
    let end = start + found.id.get().len();
    let mut out = BytesMut::with_capacity(bytes.len() + id.as_json_text().len());
    out.extend_from_slice(bytes.get(..start)?);
    out.extend_from_slice(id.as_json_text().as_bytes());
    out.extend_from_slice(bytes.get(end..)?);
    Some(out.freeze())
}

/// Sets `params._meta[key] = value` (creating `params` and `_meta` as needed).
pub fn set_meta_field(message: &mut Value, key: &str, value: Value) {
    let Some(object) = message.as_object_mut() else {
        return;
    };
    let params = object
        .entry("params")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Some(params) = params.as_object_mut() {
        let meta = params
            .entry("_meta")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(meta) = meta.as_object_mut() {
            meta.insert(key.to_string(), value);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn replaces_only_the_top_level_id() {
        let msg =
            Bytes::from_static(br#"{"jsonrpc":"2.0", "params":{"id":1}, "id" : 17 ,"method":"x"}"#);
        let out = replace_id(&msg, &Id::from_json_text("\"lodge:3\"")).unwrap();
        assert_eq!(
            &out[..],
            br#"{"jsonrpc":"2.0", "params":{"id":1}, "id" : "lodge:3" ,"method":"x"}"#
        );
        assert!(replace_id(&Bytes::from_static(b"{}"), &Id::from_json_text("1")).is_none());
    }

    #[test]
    fn sets_meta_fields() {
        let mut v = json!({"method":"x"});
        set_meta_field(&mut v, "k", json!(1));
        assert_eq!(v, json!({"method":"x","params":{"_meta":{"k":1}}}));
    }
}
