//! The order of each tool's input-schema `properties`, as the server wrote them.
//!
//! rmcp hands tools over with their schemas as `serde_json` maps, and without serde_json's
//! `preserve_order` feature those iterate alphabetically. That feature must stay off:
//! features unify across the workspace, and it would change the map type under the relay's
//! hot path. So the order is read here, from the raw JSON text of a `tools/list` answer
//! (see [`crate::listing`]), by a visitor that records the keys of each `properties` object
//! as they come and skips everything else.

use serde::Deserialize;
use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;

/// Property order by tool name, from the `tools/list` answers seen so far.
#[derive(Default)]
pub struct ToolOrders(Mutex<HashMap<String, Vec<String>>>);

impl ToolOrders {
    /// Reads the raw text of one JSON-RPC message; a `tools/list` result updates the order
    /// of each tool it lists, and anything else is ignored.
    pub fn record(&self, raw: &[u8]) {
        let Some(tools) = listed_orders(raw) else {
            return;
        };
        if let Ok(mut orders) = self.0.lock() {
            orders.extend(tools);
        }
    }

    /// The order of `tool`'s properties, if a `tools/list` answer named the tool.
    pub fn of(&self, tool: &str) -> Option<Vec<String>> {
        self.0.lock().ok()?.get(tool).cloned()
    }
}

/// `(tool name, property names in order)` for each tool of a `tools/list` result.
fn listed_orders(raw: &[u8]) -> Option<Vec<(String, Vec<String>)>> {
    let message: Message = serde_json::from_slice(raw).ok()?;
    let tools = message.result?.tools?;
    Some(
        tools
            .into_iter()
            .map(|tool| {
                let order = tool
                    .input_schema
                    .and_then(|s| s.properties)
                    .map(|KeysInOrder(keys)| keys)
                    .unwrap_or_default();
                (tool.name, order)
            })
            .collect(),
    )
}

#[derive(Deserialize)]
struct Message {
    result: Option<ListResult>,
}

#[derive(Deserialize)]
struct ListResult {
    tools: Option<Vec<ListedTool>>,
}

#[derive(Deserialize)]
struct ListedTool {
    name: String,
    #[serde(rename = "inputSchema")]
    input_schema: Option<InputSchema>,
}

#[derive(Deserialize)]
struct InputSchema {
    properties: Option<KeysInOrder>,
}

/// The keys of a JSON object, in the order of the text; the values are skipped unread.
struct KeysInOrder(Vec<String>);

impl<'de> Deserialize<'de> for KeysInOrder {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(KeysVisitor)
    }
}

struct KeysVisitor;

impl<'de> Visitor<'de> for KeysVisitor {
    type Value = KeysInOrder;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<KeysInOrder, A::Error> {
        let mut keys = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            map.next_value::<IgnoredAny>()?;
            // A repeated key is one property (serde_json keeps the last value) asked once.
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
        Ok(KeysInOrder(keys))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LISTED: &str = r#"{"jsonrpc":"2.0","id":3,"result":{"tools":[
        {"name":"plan_trip","inputSchema":{"type":"object","properties":{
            "destination":{"type":"string"},
            "nights":{"type":"integer","properties":{"inner":{}}},
            "budget":{"type":"number"},
            "airline":{"type":"string","enum":["x","y"]}},
            "required":["destination"]}},
        {"name":"ping","inputSchema":{"type":"object"}},
        {"name":"zeta","inputSchema":{"properties":{"z":{},"b":{},"z":{},"a":{}}}}
    ]}}"#;

    #[test]
    fn records_each_tools_properties_in_the_order_of_the_text() {
        let orders = ToolOrders::default();
        orders.record(LISTED.as_bytes());
        assert_eq!(
            orders.of("plan_trip"),
            Some(vec![
                "destination".to_string(),
                "nights".to_string(),
                "budget".to_string(),
                "airline".to_string()
            ])
        );
        assert_eq!(orders.of("ping"), Some(vec![]));
        assert_eq!(
            orders.of("zeta"),
            Some(vec!["z".to_string(), "b".to_string(), "a".to_string()])
        );
        assert_eq!(orders.of("unknown"), None);
    }

    #[test]
    fn other_messages_leave_the_orders_alone() {
        let orders = ToolOrders::default();
        orders.record(LISTED.as_bytes());
        for other in [
            r#"{"jsonrpc":"2.0","id":4,"result":{"content":[]}}"#,
            r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{}}"#,
            r#"{"jsonrpc":"2.0","id":5,"error":{"code":-32601,"message":"no"}}"#,
            "not json",
        ] {
            orders.record(other.as_bytes());
        }
        assert_eq!(orders.of("plan_trip").map(|o| o.len()), Some(4));
        // A later listing replaces what an earlier one said.
        orders.record(
            br#"{"jsonrpc":"2.0","id":6,"result":{"tools":[{"name":"plan_trip","inputSchema":{"properties":{"b":{},"a":{}}}}]}}"#,
        );
        assert_eq!(
            orders.of("plan_trip"),
            Some(vec!["b".to_string(), "a".to_string()])
        );
    }
}
