//! `--sampling openai`: any OpenAI-compatible chat-completions endpoint (OpenAI, llama.cpp,
//! vLLM, Ollama...). Tools in sampling map to `tools`/`tool_calls` and back.

use super::wire::{self, blocks};
use serde_json::{Map, Value, json};

pub const DEFAULT_BASE: &str = "https://api.openai.com/v1";
pub const DEFAULT_MODEL: &str = "gpt-4o-mini";

pub struct OpenAi {
    /// The full chat-completions URL.
    pub url: String,
    pub model: String,
    pub key: Option<String>,
}

impl OpenAi {
    /// `base` is a base URL (…/v1) or the full …/chat/completions URL.
    pub fn new(base: &str, model: String, key: Option<String>) -> OpenAi {
        let base = base.trim_end_matches('/');
        let url = if base.ends_with("/chat/completions") {
            base.to_owned()
        } else {
            format!("{base}/chat/completions")
        };
        OpenAi { url, model, key }
    }

    pub async fn complete(&self, http: &reqwest::Client, request: &Value) -> Result<Value, String> {
        let mut post = http.post(&self.url).json(&self.body(request));
        if let Some(key) = &self.key {
            post = post.bearer_auth(key);
        }
        let response = post
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

    /// The chat-completions request for an MCP sampling request.
    pub fn body(&self, request: &Value) -> Value {
        let mut messages = Vec::new();
        if let Some(system) = request["systemPrompt"].as_str() {
            messages.push(json!({"role": "system", "content": system}));
        }
        for message in request["messages"].as_array().into_iter().flatten() {
            if message["role"] == "assistant" {
                messages.push(assistant(message));
            } else {
                messages.extend(user(message));
            }
        }
        let mut body = Map::new();
        body.insert("model".into(), json!(self.model));
        body.insert("messages".into(), Value::Array(messages));
        body.insert("max_tokens".into(), request["maxTokens"].clone());
        if let Some(t) = request.get("temperature").filter(|t| t.is_number()) {
            body.insert("temperature".into(), t.clone());
        }
        if let Some(stop) = request.get("stopSequences").filter(|s| s.is_array()) {
            body.insert("stop".into(), stop.clone());
        }
        if let Some(tools) = request["tools"].as_array().filter(|t| !t.is_empty()) {
            let tools = tools
                .iter()
                .map(|t| {
                    let mut function = json!({"name": t["name"], "parameters": t["inputSchema"]});
                    if let Some(d) = t["description"].as_str() {
                        function["description"] = json!(d);
                    }
                    json!({"type": "function", "function": function})
                })
                .collect();
            body.insert("tools".into(), Value::Array(tools));
            if let Some(mode) = request["toolChoice"]["mode"].as_str() {
                body.insert("tool_choice".into(), json!(mode));
            }
        }
        Value::Object(body)
    }

    /// The MCP sampling result for a chat-completions response.
    pub fn result(&self, response: &Value) -> Result<Value, String> {
        let choice = response["choices"].get(0).ok_or_else(|| {
            format!(
                "no choices in the response: {}",
                clip(&response.to_string())
            )
        })?;
        let message = &choice["message"];
        let mut content = Vec::new();
        if let Some(text) = message["content"].as_str().filter(|t| !t.is_empty()) {
            content.push(json!({"type": "text", "text": text}));
        }
        for call in message["tool_calls"].as_array().into_iter().flatten() {
            let arguments = call["function"]["arguments"].as_str().unwrap_or("{}");
            let input: Value = serde_json::from_str(arguments)
                .map_err(|e| format!("tool call arguments are not JSON ({e}): {arguments}"))?;
            content.push(json!({"type": "tool_use", "id": call["id"],
                "name": call["function"]["name"], "input": input}));
        }
        let stop = match choice["finish_reason"].as_str() {
            Some("length") => "maxTokens",
            Some("tool_calls") => "toolUse",
            Some("stop") | None => "endTurn",
            Some(other) => other,
        };
        let model = response["model"].as_str().unwrap_or(&self.model);
        Ok(wire::result(model, content, stop))
    }
}

fn user(message: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    let mut parts = Vec::new();
    for block in blocks(&message["content"]) {
        match block["type"].as_str() {
            Some("tool_result") => out.push(json!({"role": "tool",
                "tool_call_id": block["toolUseId"], "content": wire::result_text(block)})),
            Some("image") => parts.push(json!({"type": "image_url", "image_url": {"url":
                format!("data:{};base64,{}", block["mimeType"].as_str().unwrap_or("image/png"),
                    block["data"].as_str().unwrap_or(""))}})),
            Some("audio") => parts.push(json!({"type": "input_audio", "input_audio": {
                "data": block["data"], "format": audio_format(block["mimeType"].as_str())}})),
            _ => parts.push(json!({"type": "text", "text": block["text"].as_str().unwrap_or("")})),
        }
    }
    if parts.iter().all(|p| p["type"] == "text") && !parts.is_empty() {
        let text: Vec<&str> = parts.iter().filter_map(|p| p["text"].as_str()).collect();
        out.push(json!({"role": "user", "content": text.join("\n")}));
    } else if !parts.is_empty() {
        out.push(json!({"role": "user", "content": parts}));
    }
    out
}

fn assistant(message: &Value) -> Value {
    let mut text = Vec::new();
    let mut calls = Vec::new();
    for block in blocks(&message["content"]) {
        match block["type"].as_str() {
            Some("tool_use") => calls.push(json!({"id": block["id"], "type": "function",
                "function": {"name": block["name"], "arguments": block["input"].to_string()}})),
            _ => text.push(block["text"].as_str().unwrap_or("").to_owned()),
        }
    }
    let mut out = json!({"role": "assistant", "content": if text.is_empty() { Value::Null } else { json!(text.join("\n")) }});
    if !calls.is_empty() {
        out["tool_calls"] = Value::Array(calls);
    }
    out
}

fn audio_format(mime: Option<&str>) -> &'static str {
    match mime {
        Some(m) if m.contains("mp3") || m.contains("mpeg") => "mp3",
        _ => "wav",
    }
}

/// At most 500 characters of a body, for error messages.
pub fn clip(text: &str) -> String {
    match text.char_indices().nth(500) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider() -> OpenAi {
        OpenAi::new("http://127.0.0.1:1/v1/", "m".into(), None)
    }

    #[test]
    fn url_accepts_a_base_or_the_full_endpoint() {
        assert_eq!(provider().url, "http://127.0.0.1:1/v1/chat/completions");
        let full = OpenAi::new("http://h/x/chat/completions", "m".into(), None);
        assert_eq!(full.url, "http://h/x/chat/completions");
    }

    #[test]
    fn maps_a_tool_conversation_both_ways() {
        let request = json!({
            "systemPrompt": "S", "maxTokens": 50, "temperature": 0.2, "stopSequences": ["END"],
            "messages": [
                {"role": "user", "content": {"type": "text", "text": "Weather in Paris?"}},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "c1", "name": "weather", "input": {"city": "Paris"}}]},
                {"role": "user", "content": [{"type": "tool_result", "toolUseId": "c1", "content": [{"type": "text", "text": "22C"}]}]}
            ],
            "tools": [{"name": "weather", "description": "Get weather", "inputSchema": {"type": "object"}}],
            "toolChoice": {"mode": "auto"}
        });
        let body = provider().body(&request);
        assert_eq!(
            body,
            json!({"model": "m", "max_tokens": 50, "temperature": 0.2, "stop": ["END"],
                "messages": [
                    {"role": "system", "content": "S"},
                    {"role": "user", "content": "Weather in Paris?"},
                    {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function",
                        "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}}]},
                    {"role": "tool", "tool_call_id": "c1", "content": "22C"}
                ],
                "tools": [{"type": "function", "function": {"name": "weather",
                    "description": "Get weather", "parameters": {"type": "object"}}}],
                "tool_choice": "auto"})
        );
        let response = json!({"model": "m-1", "choices": [{"finish_reason": "tool_calls", "message": {
            "content": null, "tool_calls": [{"id": "c2", "type": "function",
                "function": {"name": "weather", "arguments": "{\"city\":\"Rome\"}"}}]}}]});
        assert_eq!(
            provider().result(&response).expect("maps"),
            json!({"role": "assistant", "model": "m-1", "stopReason": "toolUse",
                "content": {"type": "tool_use", "id": "c2", "name": "weather", "input": {"city": "Rome"}}})
        );
        let text = json!({"choices": [{"finish_reason": "length", "message": {"content": "Hi"}}]});
        assert_eq!(
            provider().result(&text).expect("maps"),
            json!({"role": "assistant", "model": "m", "stopReason": "maxTokens",
                "content": {"type": "text", "text": "Hi"}})
        );
        assert!(provider().result(&json!({"error": "x"})).is_err());
    }
}
