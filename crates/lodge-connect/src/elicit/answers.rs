//! `--answers FILE`: a JSON or TOML object of field name → value that answers forms without a
//! terminal. Each form takes the answers for its own fields; defaults fill the rest.

use crate::form::{Field, Kind};
use serde_json::{Map, Value};
use std::path::Path;

#[derive(Debug)]
pub struct Answers(Map<String, Value>);

impl Answers {
    pub fn load(path: &Path) -> Result<Answers, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("reading --answers {}: {e}", path.display()))?;
        let toml_name = path.extension().is_some_and(|e| e == "toml");
        Self::parse(&text, toml_name).map_err(|e| format!("--answers {}: {e}", path.display()))
    }

    /// JSON, or TOML (tried first when `toml_name`, else after JSON fails).
    pub fn parse(text: &str, toml_name: bool) -> Result<Answers, String> {
        let json = || serde_json::from_str::<Value>(text).map_err(|e| format!("not JSON: {e}"));
        let toml = || {
            text.parse::<toml::Table>()
                .map(|t| toml_to_json(toml::Value::Table(t)))
                .map_err(|e| format!("not TOML: {e}"))
        };
        let value = if toml_name {
            toml()?
        } else {
            json()
                .or_else(|json_err| toml().map_err(|toml_err| format!("{json_err}; {toml_err}")))?
        };
        match value {
            Value::Object(map) => Ok(Answers(map)),
            _ => Err("must be an object of field name → value".into()),
        }
    }

    /// The form's content: the file's answers, then schema defaults. Errors name every
    /// required field that has neither, and answers of the wrong type.
    pub fn fill(&self, fields: &[Field]) -> Result<Map<String, Value>, String> {
        let mut content = Map::new();
        let mut missing = Vec::new();
        for field in fields {
            let value = match self.0.get(&field.name) {
                Some(answer) => coerce(field, answer)?,
                None => match &field.default {
                    Some(default) => default.clone(),
                    None if field.required => {
                        missing.push(field.name.as_str());
                        continue;
                    }
                    None => continue,
                },
            };
            content.insert(field.name.clone(), value);
        }
        if missing.is_empty() {
            Ok(content)
        } else {
            Err(format!(
                "required field{} {} {} no answer and no default",
                if missing.len() == 1 { "" } else { "s" },
                missing.join(", "),
                if missing.len() == 1 { "has" } else { "have" }
            ))
        }
    }
}

/// Whole numbers written as 3.0 are fine for integer fields; everything else must already
/// have the field's type (the schema check that follows says what is wrong).
fn coerce(field: &Field, answer: &Value) -> Result<Value, String> {
    if field.kind == Kind::Integer
        && let Some(f) = answer.as_f64()
        && answer.as_i64().is_none()
    {
        if f.fract() == 0.0 && f.abs() < 9.0e15 {
            return Ok(Value::from(f as i64));
        }
        return Err(format!("{}: {answer} is not a whole number", field.name));
    }
    Ok(answer.clone())
}

fn toml_to_json(value: toml::Value) -> Value {
    match value {
        toml::Value::String(s) => Value::String(s),
        toml::Value::Integer(i) => Value::from(i),
        toml::Value::Float(f) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
        toml::Value::Boolean(b) => Value::Bool(b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(a) => Value::Array(a.into_iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => {
            Value::Object(t.into_iter().map(|(k, v)| (k, toml_to_json(v))).collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::form::fields;
    use serde_json::json;

    fn trip() -> Vec<Field> {
        fields(
            &json!({"type":"object","properties":{
                "destination":{"type":"string"},
                "days":{"type":"integer"},
                "budget":{"type":"string","enum":["a","comfort"],"default":"comfort"},
                "flights":{"type":"boolean","default":true},
                "note":{"type":"string"}},
                "required":["destination","days"]}),
            None,
        )
    }

    #[test]
    fn answers_then_defaults_fill_the_form() {
        let answers = Answers::parse(r#"{"destination":"Lisbon","days":3.0,"other":1}"#, false)
            .expect("json");
        let content = answers.fill(&trip()).expect("filled");
        assert_eq!(
            Value::Object(content),
            json!({"destination":"Lisbon","days":3,"budget":"comfort","flights":true})
        );
    }

    #[test]
    fn toml_works_and_missing_required_fields_are_named() {
        let answers =
            Answers::parse("destination = \"Porto\"\nflights = false\n", true).expect("toml");
        assert_eq!(
            answers.fill(&trip()).expect_err("declined"),
            "required field days has no answer and no default"
        );
        // Without the .toml name, TOML is still accepted after JSON fails.
        assert!(Answers::parse("days = 2", false).is_ok());
        assert!(Answers::parse("[1, 2]", false).is_err());
        let none = Answers::parse("{}", false).expect("empty");
        assert_eq!(
            none.fill(&trip()).expect_err("declined"),
            "required fields days, destination have no answer and no default"
        );
    }

    #[test]
    fn a_fractional_number_is_not_an_integer() {
        let answers = Answers::parse(r#"{"destination":"X","days":2.5}"#, false).expect("json");
        assert_eq!(
            answers.fill(&trip()).expect_err("declined"),
            "days: 2.5 is not a whole number"
        );
    }
}
