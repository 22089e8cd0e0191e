//! `--sampling fixed --sampling-text TEXT`: every request gets TEXT (demos, scripts, tests).

use super::wire;
use serde_json::Value;

pub fn complete(text: &str) -> Value {
    wire::text_result("lodge-fixed", text)
}
