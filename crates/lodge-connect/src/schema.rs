//! JSON Schema checks (the `jsonschema` crate) for tool arguments and elicitation answers.

use serde_json::Value;

/// A compiled schema. Formats (`email`, `uri`, `date`, `date-time`...) are checked too.
pub struct Checker(jsonschema::Validator);

impl Checker {
    /// Compiles `schema`. Fails for schemas jsonschema cannot use offline (remote `$ref`s,
    /// unknown drafts): callers then skip validation and say so.
    pub fn new(schema: &Value) -> Result<Checker, String> {
        jsonschema::options()
            .should_validate_formats(true)
            .build(schema)
            .map(Checker)
            .map_err(|e| e.to_string())
    }

    /// One line per problem, e.g. `/days: 40 is greater than the maximum of 30`.
    pub fn errors(&self, value: &Value) -> Vec<String> {
        self.0
            .iter_errors(value)
            .map(|e| {
                let path = e.instance_path().to_string();
                if path.is_empty() {
                    e.to_string()
                } else {
                    format!("{path}: {e}")
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reports_each_problem_with_its_path() {
        let schema = json!({"type":"object","properties":{
            "days":{"type":"integer","minimum":1,"maximum":30},
            "email":{"type":"string","format":"email"}},
            "required":["days"]});
        let checker = Checker::new(&schema).expect("schema compiles");
        assert!(checker.errors(&json!({"days": 3})).is_empty());
        let errors = checker.errors(&json!({"days": 40, "email": "nope"}));
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors.iter().any(|e| e.starts_with("/days: 40")),
            "{errors:?}"
        );
        assert!(
            errors.iter().any(|e| e.starts_with("/email: ")),
            "{errors:?}"
        );
        assert_eq!(checker.errors(&json!({})).len(), 1);
    }
}
