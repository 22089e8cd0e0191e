//! Asking a person for each field of a [`Field`] list, with the right kind of prompt:
//! text (length and format checks), numbers with bounds, yes/no, single and multiple
//! choice. Defaults are pre-filled. Blocking (inquire): run it through `Ui::prompt`.

use super::{Choice, Field, Kind, display};
use crate::schema::Checker;
use inquire::validator::Validation;
use inquire::{Confirm, InquireError, MultiSelect, Select, Text};
use serde_json::{Map, Number, Value};
use std::fmt;
use std::sync::Arc;

/// Why a form was not filled in.
#[derive(Debug)]
pub enum Stop {
    /// Esc or Ctrl-C.
    Cancelled,
    /// The terminal failed.
    Failed(String),
}

fn stop(e: InquireError) -> Stop {
    match e {
        InquireError::OperationCanceled | InquireError::OperationInterrupted => Stop::Cancelled,
        other => Stop::Failed(other.to_string()),
    }
}

/// Asks every field in turn. Optional fields left empty are left out.
pub fn fill(fields: &[Field]) -> Result<Map<String, Value>, Stop> {
    let mut values = Map::new();
    for field in fields {
        if let Some(value) = ask(field)? {
            values.insert(field.name.clone(), value);
        }
    }
    Ok(values)
}

/// Asks one field; `None` means an optional field left empty.
pub fn ask(field: &Field) -> Result<Option<Value>, Stop> {
    let checker = Checker::new(&field.schema).ok().map(Arc::new);
    let help = help(field);
    let label = if field.required {
        field.label.clone()
    } else {
        format!("{} (optional)", field.label)
    };
    match &field.kind {
        Kind::Boolean => {
            let mut prompt = Confirm::new(&label);
            if !help.is_empty() {
                prompt = prompt.with_help_message(&help);
            }
            if let Some(default) = field.default.as_ref().and_then(Value::as_bool) {
                prompt = prompt.with_default(default);
            }
            prompt.prompt().map(|b| Some(Value::Bool(b))).map_err(stop)
        }
        Kind::Choice(_) => {
            let options = offered(field);
            let cursor = field
                .default
                .as_ref()
                .and_then(|d| options.iter().position(|o| o.value() == Some(d)))
                .unwrap_or(0);
            let mut prompt = Select::new(&label, options).with_starting_cursor(cursor);
            if !help.is_empty() {
                prompt = prompt.with_help_message(&help);
            }
            Ok(prompt.prompt().map_err(stop)?.into_value())
        }
        Kind::Choices(choices) => {
            let defaults: Vec<usize> = match &field.default {
                Some(Value::Array(d)) => choices
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| d.contains(&c.value))
                    .map(|(i, _)| i)
                    .collect(),
                _ => Vec::new(),
            };
            let check = checker.clone();
            let picked = MultiSelect::new(&label, choices.clone())
                .with_default(&defaults)
                .with_help_message(&help)
                .with_validator(
                    move |picked: &[inquire::list_option::ListOption<&Choice>]| {
                        let value =
                            Value::Array(picked.iter().map(|o| o.value.value.clone()).collect());
                        Ok(match verdict(check.as_deref(), &value) {
                            Ok(()) => Validation::Valid,
                            Err(e) => Validation::Invalid(e.into()),
                        })
                    },
                )
                .prompt()
                .map_err(stop)?;
            if picked.is_empty() && !field.required {
                return Ok(None);
            }
            Ok(Some(Value::Array(
                picked.into_iter().map(|c| c.value).collect(),
            )))
        }
        Kind::Text | Kind::Integer | Kind::Number | Kind::Json => {
            let initial = field.default.as_ref().map(display).unwrap_or_default();
            let (f, check) = (field.clone(), checker.clone());
            let mut prompt = Text::new(&label).with_initial_value(&initial);
            if !help.is_empty() {
                prompt = prompt.with_help_message(&help);
            }
            let input = prompt
                .with_validator(move |input: &str| {
                    Ok(match parse(&f, input, check.as_deref()) {
                        Ok(_) => Validation::Valid,
                        Err(e) => Validation::Invalid(e.into()),
                    })
                })
                .prompt()
                .map_err(stop)?;
            parse(field, &input, checker.as_deref()).map_err(Stop::Failed)
        }
    }
}

/// One line of a single-choice prompt: a value of the schema, or leaving the field out.
#[derive(Clone, Debug, PartialEq)]
enum Offered {
    Value(Choice),
    LeaveEmpty,
}

impl Offered {
    fn value(&self) -> Option<&Value> {
        match self {
            Offered::Value(choice) => Some(&choice.value),
            Offered::LeaveEmpty => None,
        }
    }

    fn into_value(self) -> Option<Value> {
        match self {
            Offered::Value(choice) => Some(choice.value),
            Offered::LeaveEmpty => None,
        }
    }
}

impl fmt::Display for Offered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Offered::Value(choice) => choice.fmt(f),
            Offered::LeaveEmpty => f.write_str("(leave empty)"),
        }
    }
}

/// The lines of a single-choice prompt. An optional field ends with "(leave empty)", and a
/// `null` its schema allows (`Option<Enum>` comes out as `"enum": [..., null]`) is not
/// offered next to it: leaving the field out is how a form says "none".
fn offered(field: &Field) -> Vec<Offered> {
    let Kind::Choice(choices) = &field.kind else {
        return Vec::new();
    };
    let mut options: Vec<Offered> = choices
        .iter()
        .filter(|c| field.required || !c.value.is_null())
        .cloned()
        .map(Offered::Value)
        .collect();
    if !field.required {
        options.push(Offered::LeaveEmpty);
    }
    options
}

fn verdict(checker: Option<&Checker>, value: &Value) -> Result<(), String> {
    match checker.map(|c| c.errors(value)).unwrap_or_default() {
        errors if errors.is_empty() => Ok(()),
        errors => Err(errors.join("; ")),
    }
}

/// Typed text → the field's value; `None` for an optional field left empty.
pub fn parse(
    field: &Field,
    input: &str,
    checker: Option<&Checker>,
) -> Result<Option<Value>, String> {
    if input.is_empty() {
        if !field.required {
            return Ok(None);
        }
        if field.kind != Kind::Text {
            return Err("this field is required".into());
        }
    }
    let value = match field.kind {
        Kind::Integer => input
            .trim()
            .parse::<i64>()
            .map(Value::from)
            .map_err(|_| "enter a whole number".to_string())?,
        Kind::Number => input
            .trim()
            .parse::<f64>()
            .ok()
            .and_then(Number::from_f64)
            .map(Value::Number)
            .ok_or_else(|| "enter a number".to_string())?,
        Kind::Json => serde_json::from_str(input).map_err(|e| format!("not JSON: {e}"))?,
        _ => Value::String(input.to_owned()),
    };
    verdict(checker, &value).map(|()| Some(value))
}

/// The description plus the constraints a person should know before typing.
fn help(field: &Field) -> String {
    let s = &field.schema;
    let mut parts: Vec<String> = field.description.iter().cloned().collect();
    let bound = |k: &str| s.get(k).filter(|v| v.is_number()).map(display);
    match (bound("minimum"), bound("maximum")) {
        (Some(lo), Some(hi)) => parts.push(format!("{lo} to {hi}")),
        (Some(lo), None) => parts.push(format!("at least {lo}")),
        (None, Some(hi)) => parts.push(format!("at most {hi}")),
        (None, None) => {}
    }
    match (bound("minLength"), bound("maxLength")) {
        (Some(lo), Some(hi)) => parts.push(format!("{lo} to {hi} characters")),
        (Some(lo), None) if lo != "0" => parts.push(format!("at least {lo} characters")),
        (None, Some(hi)) => parts.push(format!("at most {hi} characters")),
        _ => {}
    }
    if let Some(format) = s["format"].as_str() {
        parts.push(format!("format: {format}"));
    }
    if let Some(pattern) = s["pattern"].as_str() {
        parts.push(format!("pattern: {pattern}"));
    }
    match field.kind {
        Kind::Choices(_) => parts.push("space to toggle, enter to confirm".into()),
        Kind::Json => parts.push("JSON".into()),
        _ => {}
    }
    if !field.required && !matches!(field.kind, Kind::Boolean | Kind::Choice(_)) {
        parts.push("leave empty to skip".into());
    }
    parts.join(" · ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::form::fields;
    use serde_json::json;

    fn field(schema: Value, required: bool) -> Field {
        let schema = json!({"type":"object","properties":{"f": schema},
            "required": if required { json!(["f"]) } else { json!([]) }});
        fields(&schema, None).remove(0)
    }

    #[test]
    fn parses_typed_text_by_kind_and_checks_the_schema() {
        let days = field(json!({"type":"integer","minimum":1,"maximum":30}), true);
        let checker = Checker::new(&days.schema).ok();
        let c = checker.as_ref();
        assert_eq!(parse(&days, "3", c), Ok(Some(json!(3))));
        assert_eq!(parse(&days, "x", c), Err("enter a whole number".into()));
        assert!(parse(&days, "40", c).is_err_and(|e| e.contains("maximum")));
        assert_eq!(parse(&days, "", c), Err("this field is required".into()));

        let note = field(json!({"type":"string","maxLength":3}), false);
        let checker = Checker::new(&note.schema).ok();
        assert_eq!(parse(&note, "", checker.as_ref()), Ok(None));
        assert!(parse(&note, "toolong", checker.as_ref()).is_err());

        let email = field(json!({"type":"string","format":"email"}), true);
        let checker = Checker::new(&email.schema).ok();
        assert!(parse(&email, "nope", checker.as_ref()).is_err());
        assert_eq!(
            parse(&email, "a@example.com", checker.as_ref()),
            Ok(Some(json!("a@example.com")))
        );

        let ratio = field(json!({"type":"number","minimum":0}), true);
        assert_eq!(parse(&ratio, "0.5", None), Ok(Some(json!(0.5))));
    }

    fn shown(field: &Field) -> Vec<String> {
        offered(field).iter().map(ToString::to_string).collect()
    }

    #[test]
    fn an_optional_choice_offers_leaving_it_empty_and_never_null() {
        // What schemars writes for an `Option<Airline>`.
        let optional = field(
            json!({"type":["string","null"],"enum":["kl","af",null],"default":"af"}),
            false,
        );
        assert_eq!(shown(&optional), ["kl", "af", "(leave empty)"]);
        assert_eq!(offered(&optional).last().and_then(Offered::value), None);
        assert_eq!(
            offered(&optional)
                .into_iter()
                .map(Offered::into_value)
                .collect::<Vec<_>>(),
            [Some(json!("kl")), Some(json!("af")), None]
        );

        let titled = field(
            json!({"type":"string","oneOf":[{"const":"s","title":"Small"},{"const":"l","title":"Large"}]}),
            false,
        );
        assert_eq!(shown(&titled), ["Small (s)", "Large (l)", "(leave empty)"]);

        // Required: null is a value like any other, and there is no way to leave it out.
        let required = field(json!({"enum":["kl",null]}), true);
        assert_eq!(shown(&required), ["kl", "null"]);
        assert_eq!(
            offered(&required)
                .into_iter()
                .map(Offered::into_value)
                .collect::<Vec<_>>(),
            [Some(json!("kl")), Some(Value::Null)]
        );
    }

    #[test]
    fn help_shows_constraints() {
        let f = field(
            json!({"type":"integer","description":"How long","minimum":1,"maximum":30}),
            false,
        );
        assert_eq!(help(&f), "How long · 1 to 30 · leave empty to skip");
    }
}
