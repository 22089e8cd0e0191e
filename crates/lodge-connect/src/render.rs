//! Text for people: tool results, and the server's tools, resources and prompts.

use serde::Serialize;
use serde_json::Value;

fn json<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or_default()
}

/// A tool result as terminal text: text blocks as they are, other blocks summarized,
/// structured content as JSON.
pub fn tool_result<T: Serialize>(result: &T) -> String {
    let result = json(result);
    let mut out = Vec::new();
    for block in result["content"].as_array().into_iter().flatten() {
        out.push(content_block(block));
    }
    if let Some(structured) = result.get("structuredContent").filter(|s| !s.is_null()) {
        out.push(serde_json::to_string_pretty(structured).unwrap_or_default());
    }
    let text = out.join("\n");
    if result["isError"] == true {
        format!("tool error: {text}")
    } else {
        text
    }
}

pub fn content_block(block: &Value) -> String {
    let mime = block["mimeType"].as_str().unwrap_or("");
    let size = |key: &str| block[key].as_str().map_or(0, |d| d.len() * 3 / 4);
    match block["type"].as_str() {
        Some("text") => block["text"].as_str().unwrap_or("").to_owned(),
        Some("image") => format!("[image {mime}, about {} bytes]", size("data")),
        Some("audio") => format!("[audio {mime}, about {} bytes]", size("data")),
        Some("resource") => {
            let r = &block["resource"];
            match r["text"].as_str() {
                Some(text) => format!("[resource {}]\n{text}", r["uri"].as_str().unwrap_or("")),
                None => format!(
                    "[resource {} {}]",
                    r["uri"].as_str().unwrap_or(""),
                    r["mimeType"].as_str().unwrap_or("")
                ),
            }
        }
        Some("resource_link") => format!(
            "[link {} {}]",
            block["uri"].as_str().unwrap_or(""),
            block["name"].as_str().unwrap_or("")
        ),
        _ => block.to_string(),
    }
}

/// One line per tool: `name {arg, arg?} — description`.
pub fn tools<T: Serialize>(tools: &[T]) -> String {
    let lines: Vec<String> = tools
        .iter()
        .map(|t| {
            let t = json(t);
            let schema = &t["inputSchema"];
            let required: Vec<&str> = schema["required"]
                .as_array()
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let args: Vec<String> = schema["properties"]
                .as_object()
                .map(|p| {
                    p.keys()
                        .map(|k| {
                            if required.contains(&k.as_str()) {
                                k.clone()
                            } else {
                                format!("{k}?")
                            }
                        })
                        .collect()
                })
                .unwrap_or_default();
            let description = first_line(t["description"].as_str().unwrap_or(""));
            format!(
                "  {} {{{}}}  {}",
                t["name"].as_str().unwrap_or("?"),
                args.join(", "),
                description
            )
        })
        .collect();
    lines.join("\n")
}

/// One line per item, `key` first (`uri` for resources, `name` for prompts).
pub fn items<T: Serialize>(items: &[T], key: &str) -> String {
    let lines: Vec<String> = items
        .iter()
        .map(|i| {
            let i = json(i);
            let detail = i["description"]
                .as_str()
                .or(i["name"].as_str())
                .unwrap_or("");
            let id = i[key].as_str().unwrap_or("?");
            if detail == id {
                format!("  {id}")
            } else {
                format!("  {id}  {}", first_line(detail))
            }
        })
        .collect();
    lines.join("\n")
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_results_and_lists() {
        let result = json!({"content":[{"type":"text","text":"hi"},
            {"type":"image","mimeType":"image/png","data":"AAAA"}],"isError":true});
        assert_eq!(
            tool_result(&result),
            "tool error: hi\n[image image/png, about 3 bytes]"
        );
        let tools_json = vec![
            json!({"name":"echo","description":"Echo it\nmore","inputSchema":
            {"type":"object","properties":{"text":{},"n":{}},"required":["text"]}}),
        ];
        assert_eq!(tools(&tools_json), "  echo {n?, text}  Echo it");
    }
}
