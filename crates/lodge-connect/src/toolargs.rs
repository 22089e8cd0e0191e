//! Tool arguments: parsed from `--args`/the prompt line, asked field by field, and checked
//! against the tool's input schema before anything is sent.

use super::form;
use super::schema::Checker;
use rmcp::model::Tool;
use serde_json::{Map, Value};

/// `{...}` JSON, or `@FILE` holding it. Empty means no arguments.
pub fn parse(text: &str) -> Result<Map<String, Value>, String> {
    let text = match text.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).map_err(|e| format!("reading {path}: {e}"))?,
        None => text.to_owned(),
    };
    if text.trim().is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_str(&text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err("tool arguments must be a JSON object".into()),
        Err(e) => Err(format!("tool arguments are not JSON: {e}")),
    }
}

pub fn schema(tool: &Tool) -> Value {
    Value::Object((*tool.input_schema).clone())
}

/// What checking arguments against the input schema found.
pub enum Check {
    Valid,
    /// The schema could not be used here (e.g. a remote `$ref`): not checked.
    Unchecked(String),
    Invalid(Vec<String>),
}

pub fn check(tool: &Tool, args: &Map<String, Value>) -> Check {
    match Checker::new(&schema(tool)) {
        Err(e) => Check::Unchecked(e),
        Ok(checker) => match checker.errors(&Value::Object(args.clone())) {
            errors if errors.is_empty() => Check::Valid,
            errors => Check::Invalid(errors),
        },
    }
}

/// Asks for each argument in `order` (the server's order of the properties; without it,
/// alphabetical). Blocking: run it through `Ui::prompt`.
pub fn ask(
    tool: &Tool,
    order: Option<&[String]>,
) -> Result<Map<String, Value>, form::prompt::Stop> {
    let fields = form::fields(&schema(tool), order);
    form::prompt::fill(&fields)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Arc;

    fn tool(schema: Value) -> Tool {
        let Value::Object(schema) = schema else {
            panic!("object")
        };
        Tool::new("t", "test", Arc::new(schema))
    }

    #[test]
    fn parses_and_checks_arguments() {
        assert_eq!(parse("").map(|m| m.len()), Ok(0));
        assert!(parse("[1]").is_err());
        assert!(parse("{").is_err());
        let t =
            tool(json!({"type":"object","properties":{"n":{"type":"integer"}},"required":["n"]}));
        assert!(matches!(
            check(&t, &parse(r#"{"n":1}"#).expect("json")),
            Check::Valid
        ));
        let Check::Invalid(errors) = check(&t, &parse(r#"{"n":"x"}"#).expect("json")) else {
            panic!("invalid")
        };
        assert_eq!(errors, vec![r#"/n: "x" is not of type "integer""#]);
        let remote =
            tool(json!({"type":"object","properties":{"a":{"$ref":"https://example.com/s.json"}}}));
        assert!(matches!(check(&remote, &Map::new()), Check::Unchecked(_)));
    }
}
