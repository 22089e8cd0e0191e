//! The fixed texts, payloads and schemas the conformance scenarios ask for. Every value here
//! is part of the server's contract (the crate docs list them) and is asserted exactly by
//! Lodge's own tests (`crates/lodge/tests/integration/conformance_exact.rs`).

use serde_json::{Value, json};

/// A 1x1 PNG (one red pixel), base64.
pub const PNG_BASE64: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC";
/// A WAV file (8 kHz, mono, 16-bit, eight samples of silence), base64.
pub const WAV_BASE64: &str =
    "UklGRjQAAABXQVZFZm10IBAAAAABAAEAQB8AAIA+AAACABAAZGF0YRAAAAAAAAAAAAAAAAAAAAAAAAAA";

pub const SIMPLE_TEXT: &str = "This is a simple text response for testing.";
pub const EMBEDDED_RESOURCE_URI: &str = "test://embedded-resource";
pub const EMBEDDED_RESOURCE_TEXT: &str = "This is an embedded resource content.";
pub const MIXED_INTRO: &str = "Multiple content types test:";
pub const MIXED_RESOURCE_URI: &str = "test://mixed-content-resource";
pub const MIXED_RESOURCE_JSON: &str = r#"{"test":"data","value":123}"#;
pub const LOG_MESSAGES: [&str; 3] = [
    "Tool execution started",
    "Tool processing data",
    "Tool execution completed",
];
pub const LOGGER: &str = "conformance-server";
pub const LOGGING_DONE: &str = "Tool with logging executed successfully";
pub const PROGRESS_DONE: &str = "Progress test completed";
pub const ERROR_TEXT: &str = "This tool intentionally returns an error for testing";
pub const RECONNECTION_DONE: &str = "Reconnection test completed successfully. If you received this, the client properly reconnected after stream closure.";

pub const STATIC_TEXT_URI: &str = "test://static-text";
pub const STATIC_TEXT: &str = "This is the content of the static text resource.";
pub const STATIC_BINARY_URI: &str = "test://static-binary";
pub const WATCHED_URI: &str = "test://watched-resource";
pub const WATCHED_TEXT: &str = "Watched resource content";
pub const TEMPLATE_URI: &str = "test://template/{id}/data";

pub const SIMPLE_PROMPT_TEXT: &str = "This is a simple prompt for testing.";
pub const PROMPT_RESOURCE_TEXT: &str = "Embedded resource content for testing.";
pub const PROMPT_RESOURCE_FOLLOWUP: &str = "Please process the embedded resource above.";
pub const PROMPT_IMAGE_FOLLOWUP: &str = "Please analyze the image above.";

/// Values `completion/complete` offers for `test_prompt_with_arguments` / `arg1`, filtered
/// by prefix.
pub const ARG1_COMPLETIONS: [&str; 3] = ["paris", "park", "party"];

/// The tool that checks JSON Schema 2020-12 keywords survive (SEP-1613, SEP-2106).
pub const JSON_SCHEMA_TOOL: &str = "json_schema_2020_12_tool";

fn empty_schema() -> Value {
    json!({"type": "object", "properties": {}})
}

fn string_arg_schema(name: &str, description: &str) -> Value {
    json!({
        "type": "object",
        "properties": {name: {"type": "string", "description": description}},
        "required": [name]
    })
}

pub fn json_schema_2020_12() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "$defs": {
            "address": {
                "$anchor": "addressDef",
                "type": "object",
                "properties": {"street": {"type": "string"}, "city": {"type": "string"}}
            }
        },
        "properties": {
            "name": {"type": "string"},
            "address": {"$ref": "#/$defs/address"},
            "contactMethod": {"type": "string", "enum": ["phone", "email"]},
            "phone": {"type": "string"},
            "email": {"type": "string"}
        },
        "allOf": [{"anyOf": [{"required": ["phone"]}, {"required": ["email"]}]}],
        "if": {"properties": {"contactMethod": {"const": "phone"}}, "required": ["contactMethod"]},
        "then": {"required": ["phone"]},
        "else": {"required": ["email"]},
        "additionalProperties": false
    })
}

/// `tools/list`, in this order (deterministic, SEP 2026-07-28 SHOULD). `dynamic` adds
/// `test_dynamic_tool` (toggled by `test_trigger_tool_change`).
pub fn tools(dynamic: bool) -> Value {
    let mut tools = vec![
        (
            "test_simple_text",
            "Returns simple text content",
            empty_schema(),
        ),
        ("test_image_content", "Returns a PNG image", empty_schema()),
        (
            "test_audio_content",
            "Returns a WAV audio clip",
            empty_schema(),
        ),
        (
            "test_embedded_resource",
            "Returns an embedded text resource",
            empty_schema(),
        ),
        (
            "test_multiple_content_types",
            "Returns text, an image and a resource",
            empty_schema(),
        ),
        (
            "test_tool_with_logging",
            "Sends three info log messages 50 ms apart",
            empty_schema(),
        ),
        (
            "test_tool_with_progress",
            "Reports progress 0, 50 and 100 of 100",
            empty_schema(),
        ),
        (
            "test_error_handling",
            "Always returns a tool error (isError: true)",
            empty_schema(),
        ),
        (
            "test_sampling",
            "Asks the client's model (sampling/createMessage, maxTokens 100)",
            string_arg_schema("prompt", "The prompt to send to the LLM"),
        ),
        (
            "test_elicitation",
            "Asks the user for a username and an email (form elicitation)",
            string_arg_schema("message", "The message to show the user"),
        ),
        (
            "test_elicitation_sep1034_defaults",
            "Elicitation with defaults on every primitive type (SEP-1034)",
            empty_schema(),
        ),
        (
            "test_elicitation_sep1330_enums",
            "Elicitation with the five enum schema forms (SEP-1330)",
            empty_schema(),
        ),
        (
            JSON_SCHEMA_TOOL,
            "Tool with JSON Schema 2020-12 features",
            json_schema_2020_12(),
        ),
        (
            "test_reconnection",
            "Waits briefly, then answers (SSE polling test, SEP-1699)",
            empty_schema(),
        ),
        (
            "test_missing_capability",
            "Needs the client's sampling capability",
            empty_schema(),
        ),
        (
            "test_input_required_result_elicitation",
            "MRTR: asks for a name",
            empty_schema(),
        ),
        (
            "test_input_required_result_sampling",
            "MRTR: asks the model a question",
            empty_schema(),
        ),
        (
            "test_input_required_result_list_roots",
            "MRTR: asks for the client's roots",
            empty_schema(),
        ),
        (
            "test_input_required_result_request_state",
            "MRTR: round-trips a signed requestState",
            empty_schema(),
        ),
        (
            "test_input_required_result_multiple_inputs",
            "MRTR: elicitation, sampling and roots at once",
            empty_schema(),
        ),
        (
            "test_input_required_result_multi_round",
            "MRTR: two rounds with evolving requestState",
            empty_schema(),
        ),
        (
            "test_input_required_result_tampered_state",
            "MRTR: rejects a modified requestState",
            empty_schema(),
        ),
        (
            "test_input_required_result_capabilities",
            "MRTR: asks only with declared client capabilities",
            empty_schema(),
        ),
        (
            "test_streaming_elicitation",
            "Asks for confirmation (an input request, never an independent request on the stream)",
            empty_schema(),
        ),
        (
            "test_logging_tool",
            "Logs three messages, only at the level the request asked for",
            empty_schema(),
        ),
        (
            "test_trigger_tool_change",
            "Toggles test_dynamic_tool and announces tools/list_changed",
            empty_schema(),
        ),
        (
            "test_trigger_prompt_change",
            "Toggles test_dynamic_prompt and announces prompts/list_changed",
            empty_schema(),
        ),
    ];
    tools.push((
        "test_custom_header",
        "Echoes `region`, mirrored in the Mcp-Param-Region header (SEP-2243)",
        json!({"type": "object",
            "properties": {"region": {"type": "string", "description": "A region name",
                "x-mcp-header": "Region"}},
            "required": ["region"]}),
    ));
    if dynamic {
        tools.push((
            "test_dynamic_tool",
            "Present only after test_trigger_tool_change",
            empty_schema(),
        ));
    }
    Value::Array(
        tools
            .into_iter()
            .map(|(name, description, schema)| {
                json!({"name": name, "description": description, "inputSchema": schema})
            })
            .collect(),
    )
}

pub fn prompts(dynamic: bool) -> Value {
    let mut prompts = vec![
        json!({"name": "test_simple_prompt", "description": "A prompt without arguments"}),
        json!({"name": "test_prompt_with_arguments", "description": "A prompt with two arguments",
        "arguments": [
            {"name": "arg1", "description": "First test argument", "required": true},
            {"name": "arg2", "description": "Second test argument", "required": true}
        ]}),
        json!({"name": "test_prompt_with_embedded_resource", "description": "A prompt embedding a resource",
            "arguments": [{"name": "resourceUri", "description": "URI of the resource to embed", "required": true}]}),
        json!({"name": "test_prompt_with_image", "description": "A prompt with an image"}),
        json!({"name": "test_input_required_result_prompt", "description": "MRTR: asks for context before answering"}),
    ];
    if dynamic {
        prompts.push(json!({"name": "test_dynamic_prompt", "description": "Present only after test_trigger_prompt_change"}));
    }
    Value::Array(prompts)
}

pub fn resources() -> Value {
    json!([
        {"uri": STATIC_TEXT_URI, "name": "static-text", "description": "A static text resource", "mimeType": "text/plain"},
        {"uri": STATIC_BINARY_URI, "name": "static-binary", "description": "A static PNG image", "mimeType": "image/png"},
        {"uri": WATCHED_URI, "name": "watched-resource", "description": "Subscribable; updates every 3 s while subscribed", "mimeType": "text/plain"}
    ])
}

pub fn resource_templates() -> Value {
    json!([{"uriTemplate": TEMPLATE_URI, "name": "template-data",
        "description": "JSON data for an id", "mimeType": "application/json"}])
}

/// `resources/read` contents for `uri`, or `None` when there is no such resource.
pub fn read_resource(uri: &str) -> Option<Value> {
    let contents = match uri {
        STATIC_TEXT_URI => json!({"uri": uri, "mimeType": "text/plain", "text": STATIC_TEXT}),
        STATIC_BINARY_URI => json!({"uri": uri, "mimeType": "image/png", "blob": PNG_BASE64}),
        WATCHED_URI => json!({"uri": uri, "mimeType": "text/plain", "text": WATCHED_TEXT}),
        _ => {
            let id = uri
                .strip_prefix("test://template/")?
                .strip_suffix("/data")
                .filter(|id| !id.is_empty() && !id.contains('/'))?;
            let text =
                json!({"id": id, "templateTest": true, "data": format!("Data for ID: {id}")});
            json!({"uri": uri, "mimeType": "application/json", "text": text.to_string()})
        }
    };
    Some(json!({"contents": [contents]}))
}

pub fn elicitation_schema_user() -> Value {
    json!({
        "type": "object",
        "properties": {
            "username": {"type": "string", "description": "User's response"},
            "email": {"type": "string", "description": "User's email address"}
        },
        "required": ["username", "email"]
    })
}

pub const SEP1034_MESSAGE: &str = "Please review and update the form fields with defaults";

pub fn sep1034_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "name": {"type": "string", "description": "User name", "default": "John Doe"},
            "age": {"type": "integer", "description": "User age", "default": 30},
            "score": {"type": "number", "description": "User score", "default": 95.5},
            "status": {"type": "string", "description": "User status",
                "enum": ["active", "inactive", "pending"], "default": "active"},
            "verified": {"type": "boolean", "description": "Verification status", "default": true}
        }
    })
}

pub const SEP1330_MESSAGE: &str = "Please choose from the enum fields";

pub fn sep1330_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "untitledSingle": {"type": "string", "description": "Untitled single-select",
                "enum": ["option1", "option2", "option3"]},
            "titledSingle": {"type": "string", "description": "Titled single-select",
                "oneOf": [
                    {"const": "value1", "title": "First Option"},
                    {"const": "value2", "title": "Second Option"},
                    {"const": "value3", "title": "Third Option"}
                ]},
            "legacyEnum": {"type": "string", "description": "Legacy titled enum",
                "enum": ["opt1", "opt2", "opt3"],
                "enumNames": ["Option One", "Option Two", "Option Three"]},
            "untitledMulti": {"type": "array", "description": "Untitled multi-select",
                "items": {"type": "string", "enum": ["option1", "option2", "option3"]}},
            "titledMulti": {"type": "array", "description": "Titled multi-select",
                "items": {"anyOf": [
                    {"const": "value1", "title": "First Choice"},
                    {"const": "value2", "title": "Second Choice"},
                    {"const": "value3", "title": "Third Choice"}
                ]}}
        }
    })
}

/// `Elicitation completed: action=…, content={…}` (content keys sorted, compact JSON).
pub fn elicitation_summary(prefix: &str, answer: &Value) -> String {
    let action = answer["action"].as_str().unwrap_or("unknown");
    let content = answer.get("content").cloned().unwrap_or_else(|| json!({}));
    format!("{prefix}: action={action}, content={content}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_reads_substitute_the_id() {
        let read = read_resource("test://template/123/data").expect("template matches");
        assert_eq!(
            read["contents"][0]["text"],
            r#"{"data":"Data for ID: 123","id":"123","templateTest":true}"#
        );
        assert!(read_resource("test://template//data").is_none());
        assert!(read_resource("test://template/1/2/data").is_none());
        assert!(read_resource("test://nope").is_none());
    }

    #[test]
    fn tool_names_are_unique() {
        let tools = tools(true);
        let mut names: Vec<&str> = tools
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t["name"].as_str())
            .collect();
        let count = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), count);
    }
}
