//! MCP sampling messages on the wire (`sampling/createMessage` params and result), read and
//! built as JSON so each provider maps them in one place.

use serde_json::{Value, json};

/// A message's content as a list (the wire allows one block or an array).
pub fn blocks(content: &Value) -> Vec<&Value> {
    match content {
        Value::Array(items) => items.iter().collect(),
        Value::Null => Vec::new(),
        single => vec![single],
    }
}

/// The text of a tool result's content blocks (non-text blocks as JSON).
pub fn result_text(tool_result: &Value) -> String {
    let parts: Vec<String> = blocks(&tool_result["content"])
        .into_iter()
        .map(|b| match b["text"].as_str() {
            Some(text) if b["type"] == "text" => text.to_owned(),
            _ => b.to_string(),
        })
        .collect();
    let mut text = parts.join("\n");
    if text.is_empty()
        && let Some(structured) = tool_result.get("structuredContent")
    {
        text = structured.to_string();
    }
    text
}

/// A `CreateMessageResult` on the wire.
pub fn result(model: &str, content: Vec<Value>, stop_reason: &str) -> Value {
    let content = match content.len() {
        0 => json!({"type": "text", "text": ""}),
        1 => content.into_iter().next().unwrap_or(Value::Null),
        _ => Value::Array(content),
    };
    json!({"role": "assistant", "content": content, "model": model, "stopReason": stop_reason})
}

/// A text reply as a `CreateMessageResult`.
pub fn text_result(model: &str, text: &str) -> Value {
    result(
        model,
        vec![json!({"type": "text", "text": text})],
        "endTurn",
    )
}

/// A short, human-readable view of a request, for the approval prompt.
pub fn describe_request(request: &Value) -> String {
    let mut lines = vec![format!(
        "The server asks for a model reply (sampling, up to {} tokens):",
        request["maxTokens"]
    )];
    if let Some(system) = request["systemPrompt"].as_str() {
        lines.push(format!("  system: {system}"));
    }
    for message in request["messages"].as_array().into_iter().flatten() {
        let role = message["role"].as_str().unwrap_or("?");
        for block in blocks(&message["content"]) {
            lines.push(format!("  {role}: {}", describe_block(block)));
        }
    }
    let tools: Vec<&str> = request["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["name"].as_str())
        .collect();
    if !tools.is_empty() {
        lines.push(format!("  tools offered: {}", tools.join(", ")));
    }
    lines.join("\n")
}

/// A short view of a result, shown once the provider answered.
pub fn describe_result(result: &Value) -> String {
    let body: Vec<String> = blocks(&result["content"])
        .into_iter()
        .map(describe_block)
        .collect();
    format!(
        "model reply ({}, {}):\n  {}",
        result["model"].as_str().unwrap_or("?"),
        result["stopReason"].as_str().unwrap_or("?"),
        body.join("\n  ")
    )
}

fn describe_block(block: &Value) -> String {
    match block["type"].as_str() {
        Some("text") => block["text"].as_str().unwrap_or("").to_owned(),
        Some("tool_use") => format!("[calls tool {} with {}]", block["name"], block["input"]),
        Some("tool_result") => {
            format!("[result of {}: {}]", block["toolUseId"], result_text(block))
        }
        Some(other) => format!("[{other} {}]", block["mimeType"].as_str().unwrap_or("")),
        None => block.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_and_multiple_content() {
        assert_eq!(blocks(&json!({"type":"text","text":"a"})).len(), 1);
        assert_eq!(blocks(&json!([{"type":"text"},{"type":"text"}])).len(), 2);
        let r = result("m", vec![json!({"type":"text","text":"hi"})], "endTurn");
        assert_eq!(r["content"]["text"], "hi");
        let tr =
            json!({"type":"tool_result","toolUseId":"1","content":[{"type":"text","text":"22C"}]});
        assert_eq!(result_text(&tr), "22C");
        let shown = describe_request(&json!({"maxTokens":400,"systemPrompt":"S",
            "messages":[{"role":"user","content":{"type":"text","text":"Hi"}}],
            "tools":[{"name":"weather"}]}));
        assert_eq!(
            shown,
            "The server asks for a model reply (sampling, up to 400 tokens):\n  system: S\n  user: Hi\n  tools offered: weather"
        );
    }
}
