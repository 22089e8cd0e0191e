//! `--sampling anthropic`: the Anthropic Messages API. Tools in sampling map to `tools`,
//! `tool_use` and `tool_result` blocks and back.

use super::openai::clip;
use super::wire::{self, blocks};
use serde_json::{Map, Value, json};

pub const DEFAULT_BASE: &str = "https://api.anthropic.com";
pub const DEFAULT_MODEL: &str = "claude-sonnet-4-5";
const API_VERSION: &str = "2023-06-01";

pub struct Anthropic {
    /// The full …/v1/messages URL.
    pub url: String,
    pub model: String,
    pub key: String,
}

impl Anthropic {
    /// `base` is a base URL or the full …/messages URL.
    pub fn new(base: &str, model: String, key: String) -> Anthropic {
        let base = base.trim_end_matches('/');
        let url = if base.ends_with("/messages") {
            base.to_owned()
        } else if base.ends_with("/v1") {
            format!("{base}/messages")
        } else {
            format!("{base}/v1/messages")
        };
        Anthropic { url, model, key }
    }

    pub async fn complete(&self, http: &reqwest::Client, request: &Value) -> Result<Value, String> {
        let response = http
            .post(&self.url)
            .header("x-api-key", &self.key)
            .header("anthropic-version", API_VERSION)
            .json(&self.body(request))
            .send()
            .await
            .map_err(|e| format!("{}: {e}", self.url))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| format!("{}: {e}", self.url))?;
        if !status.is_success() {
            return Err(format!("{} answered {status}: {}", self.url, clip(&text)));
        }
        let body: Value = serde_json::from_str(&text)
            .map_err(|e| format!("{} answered with bad JSON ({e}): {}", self.url, clip(&text)))?;
        self.result(&body)
    }

    /// The Messages API request for an MCP sampling request.
    pub fn body(&self, request: &Value) -> Value {
        let messages: Vec<Value> = request["messages"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| {
                let role = if m["role"] == "assistant" {
                    "assistant"
                } else {
                    "user"
                };
                let content: Vec<Value> = blocks(&m["content"]).into_iter().map(block).collect();
                json!({"role": role, "content": content})
            })
            .collect();
        let mut body = Map::new();
        body.insert("model".into(), json!(self.model));
        body.insert("max_tokens".into(), request["maxTokens"].clone());
        if let Some(system) = request["systemPrompt"].as_str() {
            body.insert("system".into(), json!(system));
        }
        body.insert("messages".into(), Value::Array(messages));
        if let Some(t) = request.get("temperature").filter(|t| t.is_number()) {
            body.insert("temperature".into(), t.clone());
        }
        if let Some(stop) = request.get("stopSequences").filter(|s| s.is_array()) {
            body.insert("stop_sequences".into(), stop.clone());
        }
        if let Some(tools) = request["tools"].as_array().filter(|t| !t.is_empty()) {
            let tools = tools
                .iter()
                .map(|t| {
                    let mut tool = json!({"name": t["name"], "input_schema": t["inputSchema"]});
                    if let Some(d) = t["description"].as_str() {
                        tool["description"] = json!(d);
                    }
                    tool
                })
                .collect();
            body.insert("tools".into(), Value::Array(tools));
            let choice = match request["toolChoice"]["mode"].as_str() {
                Some("required") => Some("any"),
                Some("none") => Some("none"),
                Some("auto") => Some("auto"),
                _ => None,
            };
            if let Some(choice) = choice {
                body.insert("tool_choice".into(), json!({"type": choice}));
            }
        }
        Value::Object(body)
    }

    /// The MCP sampling result for a Messages API response.
    pub fn result(&self, response: &Value) -> Result<Value, String> {
        let blocks = response["content"].as_array().ok_or_else(|| {
            format!(
                "no content in the response: {}",
                clip(&response.to_string())
            )
        })?;
        let content = blocks
            .iter()
            .filter_map(|b| match b["type"].as_str() {
                Some("text") => Some(json!({"type": "text", "text": b["text"]})),
                Some("tool_use") => Some(
                    json!({"type": "tool_use", "id": b["id"], "name": b["name"], "input": b["input"]}),
                ),
                _ => None,
            })
            .collect();
        let stop = match response["stop_reason"].as_str() {
            Some("max_tokens") => "maxTokens",
            Some("stop_sequence") => "stopSequence",
            Some("tool_use") => "toolUse",
            Some("end_turn") | None => "endTurn",
            Some(other) => other,
        };
        let model = response["model"].as_str().unwrap_or(&self.model);
        Ok(wire::result(model, content, stop))
    }
}

fn block(b: &Value) -> Value {
    match b["type"].as_str() {
        Some("image") => json!({"type": "image", "source": {"type": "base64",
            "media_type": b["mimeType"], "data": b["data"]}}),
        Some("tool_use") => {
            json!({"type": "tool_use", "id": b["id"], "name": b["name"], "input": b["input"]})
        }
        Some("tool_result") => {
            let mut out = json!({"type": "tool_result", "tool_use_id": b["toolUseId"],
                "content": [{"type": "text", "text": wire::result_text(b)}]});
            if b["isError"] == true {
                out["is_error"] = json!(true);
            }
            out
        }
        Some("text") => json!({"type": "text", "text": b["text"]}),
        Some(other) => json!({"type": "text", "text": format!("[{other} content omitted]")}),
        None => json!({"type": "text", "text": b.to_string()}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider() -> Anthropic {
        Anthropic::new("http://127.0.0.1:1", "c".into(), "k".into())
    }

    #[test]
    fn url_forms() {
        assert_eq!(provider().url, "http://127.0.0.1:1/v1/messages");
        assert_eq!(
            Anthropic::new("http://h/v1/", "c".into(), "k".into()).url,
            "http://h/v1/messages"
        );
    }

    #[test]
    fn maps_a_tool_conversation_both_ways() {
        let request = json!({
            "systemPrompt": "S", "maxTokens": 50,
            "messages": [
                {"role": "user", "content": {"type": "text", "text": "Weather in Paris?"}},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "c1", "name": "weather", "input": {"city": "Paris"}}]},
                {"role": "user", "content": [{"type": "tool_result", "toolUseId": "c1", "isError": true, "content": [{"type": "text", "text": "down"}]}]}
            ],
            "tools": [{"name": "weather", "inputSchema": {"type": "object"}}],
            "toolChoice": {"mode": "required"}
        });
        assert_eq!(
            provider().body(&request),
            json!({"model": "c", "max_tokens": 50, "system": "S",
                "messages": [
                    {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]},
                    {"role": "assistant", "content": [{"type": "tool_use", "id": "c1", "name": "weather", "input": {"city": "Paris"}}]},
                    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "c1", "is_error": true,
                        "content": [{"type": "text", "text": "down"}]}]}
                ],
                "tools": [{"name": "weather", "input_schema": {"type": "object"}}],
                "tool_choice": {"type": "any"}})
        );
        let response = json!({"model": "c-1", "stop_reason": "tool_use", "content": [
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "t1", "name": "weather", "input": {"city": "Rome"}}]});
        assert_eq!(
            provider().result(&response).expect("maps"),
            json!({"role": "assistant", "model": "c-1", "stopReason": "toolUse", "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "t1", "name": "weather", "input": {"city": "Rome"}}]})
        );
    }
}
