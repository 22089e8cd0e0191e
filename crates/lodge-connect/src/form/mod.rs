//! A form read from a JSON Schema object: one [`Field`] per property, in wire order. Used for
//! elicitation forms and for asking tool arguments interactively.

pub mod prompt;

use serde_json::{Map, Value};
use std::fmt;

/// One property of the schema.
#[derive(Clone, Debug)]
pub struct Field {
    pub name: String,
    /// The property's `title`, else its name.
    pub label: String,
    pub description: Option<String>,
    pub required: bool,
    pub kind: Kind,
    pub default: Option<Value>,
    /// The property's own schema, to check one answer at a time.
    pub schema: Value,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    Text,
    Integer,
    Number,
    Boolean,
    /// One of these (`enum`, titled `oneOf`, legacy `enumNames`).
    Choice(Vec<Choice>),
    /// Any number of these (`type: array` of an enum or titled `anyOf`).
    Choices(Vec<Choice>),
    /// Anything else (objects, arrays, unions): typed as JSON.
    Json,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Choice {
    pub value: Value,
    pub label: String,
}

impl fmt::Display for Choice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value = match &self.value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        if self.label == value {
            write!(f, "{value}")
        } else {
            write!(f, "{} ({value})", self.label)
        }
    }
}

/// The fields of an object schema, in `order` when given (the wire order), else in the
/// order of `properties`.
pub fn fields(schema: &Value, order: Option<&[String]>) -> Vec<Field> {
    let empty = Map::new();
    let properties = schema["properties"].as_object().unwrap_or(&empty);
    let required: Vec<&str> = schema["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut names: Vec<&String> = match order {
        Some(order) => order
            .iter()
            .filter(|n| properties.contains_key(*n))
            .collect(),
        None => properties.keys().collect(),
    };
    for name in properties.keys() {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
        .into_iter()
        .filter_map(|name| {
            let property = properties.get(name)?;
            Some(field(name, property, required.contains(&name.as_str())))
        })
        .collect()
}

fn field(name: &str, schema: &Value, required: bool) -> Field {
    let text = |key: &str| schema[key].as_str().map(str::to_owned);
    Field {
        name: name.to_owned(),
        label: text("title").unwrap_or_else(|| name.to_owned()),
        description: text("description"),
        required,
        kind: kind(schema),
        default: schema.get("default").cloned(),
        schema: schema.clone(),
    }
}

fn kind(schema: &Value) -> Kind {
    if let Some(choices) = choices(schema) {
        return Kind::Choice(choices);
    }
    match schema["type"].as_str() {
        Some("string") => Kind::Text,
        Some("integer") => Kind::Integer,
        Some("number") => Kind::Number,
        Some("boolean") => Kind::Boolean,
        Some("array") => match choices(&schema["items"]) {
            Some(items) => Kind::Choices(items),
            None => Kind::Json,
        },
        _ => Kind::Json,
    }
}

/// `enum` (with legacy `enumNames`), or titled `oneOf`/`anyOf` of `{const, title}`.
fn choices(schema: &Value) -> Option<Vec<Choice>> {
    if let Some(values) = schema["enum"].as_array() {
        let names = schema["enumNames"].as_array();
        return Some(
            values
                .iter()
                .enumerate()
                .map(|(i, value)| Choice {
                    value: value.clone(),
                    label: names
                        .and_then(|n| n.get(i))
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                        .unwrap_or_else(|| display(value)),
                })
                .collect(),
        );
    }
    let titled = schema["oneOf"].as_array().or(schema["anyOf"].as_array())?;
    titled
        .iter()
        .map(|option| {
            let value = option.get("const")?.clone();
            let label = option["title"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| display(&value));
            Some(Choice { value, label })
        })
        .collect()
}

/// A value as a person would type it: strings without quotes.
pub fn display(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_every_elicitation_field_kind_in_wire_order() {
        let schema = json!({"type":"object","properties":{
            "name":{"type":"string","title":"Name","minLength":1},
            "age":{"type":"integer","minimum":0,"default":30},
            "score":{"type":"number"},
            "ok":{"type":"boolean","default":true},
            "color":{"type":"string","enum":["red","green"],"default":"green"},
            "size":{"type":"string","oneOf":[{"const":"s","title":"Small"},{"const":"l","title":"Large"}]},
            "legacy":{"type":"string","enum":["a","b"],"enumNames":["Alpha","Beta"]},
            "tags":{"type":"array","items":{"type":"string","enum":["x","y"]},"default":["x"]},
            "titled":{"type":"array","items":{"anyOf":[{"const":"p","title":"Pea"}]}},
            "blob":{"type":"object"}
        },"required":["name"]});
        let order: Vec<String> = [
            "name", "age", "score", "ok", "color", "size", "legacy", "tags",
        ]
        .map(String::from)
        .to_vec();
        let fields = fields(&schema, Some(&order));
        let names: Vec<_> = fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "name", "age", "score", "ok", "color", "size", "legacy", "tags", "blob", "titled"
            ]
        );
        assert_eq!(fields[0].label, "Name");
        assert!(fields[0].required && !fields[1].required);
        assert_eq!(fields[0].kind, Kind::Text);
        assert_eq!(fields[1].kind, Kind::Integer);
        assert_eq!(fields[1].default, Some(json!(30)));
        assert_eq!(fields[2].kind, Kind::Number);
        assert_eq!(fields[3].kind, Kind::Boolean);
        let Kind::Choice(size) = &fields[5].kind else {
            panic!("size is a choice")
        };
        assert_eq!(size[1].to_string(), "Large (l)");
        let Kind::Choice(legacy) = &fields[6].kind else {
            panic!("legacy is a choice")
        };
        assert_eq!(legacy[0].label, "Alpha");
        assert!(matches!(&fields[7].kind, Kind::Choices(c) if c.len() == 2));
        assert_eq!(fields[8].kind, Kind::Json);
        assert!(matches!(&fields[9].kind, Kind::Choices(c) if c[0].label == "Pea"));
    }

    #[test]
    fn without_an_order_fields_are_alphabetical_and_an_order_puts_them_as_given() {
        let schema = json!({"type":"object","properties":{
            "nights":{"type":"integer"},"destination":{"type":"string"},"budget":{"type":"number"}
        }});
        let names = |order: Option<&[String]>| -> Vec<String> {
            fields(&schema, order).into_iter().map(|f| f.name).collect()
        };
        assert_eq!(names(None), ["budget", "destination", "nights"]);
        let order = ["nights", "destination", "budget"].map(String::from);
        assert_eq!(names(Some(&order)), ["nights", "destination", "budget"]);
        // Names the schema lacks are skipped; properties the order lacks come last.
        let partial = ["gone", "destination"].map(String::from);
        assert_eq!(names(Some(&partial)), ["destination", "budget", "nights"]);
    }
}
