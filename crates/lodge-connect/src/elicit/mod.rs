//! Elicitation requests: forms are answered from `--answers` or by prompting, URLs are shown
//! (and opened). Never hangs without a terminal: such a form is declined, with the reason on
//! stderr.

mod answers;
mod url;

pub use answers::Answers;
pub use url::wait_key;

use super::form::{self, prompt::Stop};
use super::progress::Progress;
use super::schema::Checker;
use super::ui::Ui;
use inquire::Select;
use rmcp::model::{ElicitRequestParams, ElicitResult, ElicitationAction, ElicitationSchema};
use serde_json::Value;
use std::sync::Arc;

pub struct Elicitor {
    ui: Arc<Ui>,
    progress: Arc<Progress>,
    answers: Option<Answers>,
}

const FILL: &str = "Fill in the form";
const DECLINE: &str = "Decline";
const CANCEL: &str = "Cancel";

impl Elicitor {
    pub fn new(ui: Arc<Ui>, progress: Arc<Progress>, answers: Option<Answers>) -> Elicitor {
        Elicitor {
            ui,
            progress,
            answers,
        }
    }

    pub async fn handle(&self, request: ElicitRequestParams) -> ElicitResult {
        match request {
            ElicitRequestParams::FormElicitationParams {
                message,
                requested_schema,
                ..
            } => self.form(&message, &requested_schema).await,
            ElicitRequestParams::UrlElicitationParams {
                message,
                url,
                elicitation_id,
                ..
            } => url::ask(&self.ui, &self.progress, &message, &url, &elicitation_id).await,
            _ => {
                self.ui.note("declined an elicitation of an unknown mode");
                decline()
            }
        }
    }

    async fn form(&self, message: &str, schema: &ElicitationSchema) -> ElicitResult {
        let schema_json = match serde_json::to_value(schema) {
            Ok(v) => v,
            Err(e) => {
                self.ui
                    .note(format!("declined the form \"{message}\": bad schema: {e}"));
                return decline();
            }
        };
        let fields = form::fields(&schema_json, schema.property_order.as_deref());
        if let Some(answers) = &self.answers {
            let filled = answers
                .fill(&fields)
                .and_then(|content| checked(&schema_json, content.into()));
            return match filled {
                Ok(content) => {
                    self.ui
                        .note(format!("answered the form \"{message}\" from --answers"));
                    ElicitResult::new(ElicitationAction::Accept).with_content(content)
                }
                Err(e) => {
                    self.ui
                        .note(format!("declined the form \"{message}\": {e}"));
                    decline()
                }
            };
        }
        if !self.ui.interactive() {
            self.ui.note(format!(
                "declined the form \"{message}\": no terminal to ask on (pass --answers FILE)"
            ));
            return decline();
        }
        self.ui.note(format!("\nThe server asks: {message}"));
        let answer = self
            .ui
            .prompt(
                move || -> Result<Option<serde_json::Map<String, Value>>, Stop> {
                    let choice = Select::new("Your answer:", vec![FILL, DECLINE, CANCEL])
                        .prompt()
                        .map_err(|_| Stop::Cancelled)?;
                    match choice {
                        FILL => form::prompt::fill(&fields).map(Some),
                        DECLINE => Ok(None),
                        _ => Err(Stop::Cancelled),
                    }
                },
            )
            .await;
        match answer {
            Some(Ok(Some(content))) => match checked(&schema_json, content.into()) {
                Ok(content) => ElicitResult::new(ElicitationAction::Accept).with_content(content),
                Err(e) => {
                    self.ui
                        .note(format!("declined: the answers do not fit the form: {e}"));
                    decline()
                }
            },
            Some(Ok(None)) => decline(),
            Some(Err(Stop::Failed(e))) => {
                self.ui
                    .note(format!("cancelled the form: the terminal failed: {e}"));
                cancel()
            }
            Some(Err(Stop::Cancelled)) | None => cancel(),
        }
    }

    /// The server says a URL elicitation is done.
    pub fn completed(&self, id: &str) {
        self.progress.finish(
            &wait_key(id),
            Some(format!("the server says elicitation {id} is complete")),
        );
    }
}

/// `content` if it satisfies the whole requested schema.
fn checked(schema: &Value, content: Value) -> Result<Value, String> {
    match Checker::new(schema) {
        Ok(checker) => match checker.errors(&content) {
            errors if errors.is_empty() => Ok(content),
            errors => Err(errors.join("; ")),
        },
        // The schema came through rmcp's typed model, so this does not happen; if it did,
        // the server still validates what it gets.
        Err(_) => Ok(content),
    }
}

fn decline() -> ElicitResult {
    ElicitResult::new(ElicitationAction::Decline)
}

fn cancel() -> ElicitResult {
    ElicitResult::new(ElicitationAction::Cancel)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmcp::model::{InputRequest, ServerJsonRpcMessage, ServerRequest, ServerResult};

    const SCHEMA: &str = r#"{"type":"object","properties":{
        "destination":{"type":"string"},
        "nights":{"type":"integer"},
        "airline":{"type":"string","enum":["x","y"]}},"required":["destination"]}"#;

    fn names(schema: &ElicitationSchema) -> Vec<String> {
        let json = serde_json::to_value(schema).expect("schema serializes");
        form::fields(&json, schema.property_order.as_deref())
            .into_iter()
            .map(|f| f.name)
            .collect()
    }

    fn form_schema(params: ElicitRequestParams) -> ElicitationSchema {
        match params {
            ElicitRequestParams::FormElicitationParams {
                requested_schema, ..
            } => requested_schema,
            other => panic!("not a form: {other:?}"),
        }
    }

    /// rmcp keeps the wire order of a form's properties (`property_order`) in both eras, as
    /// long as the message is parsed from its text, which is how the transport parses it.
    #[test]
    fn forms_are_asked_in_the_order_the_server_wrote_them_in_both_eras() {
        let expected = ["destination", "nights", "airline"].map(String::from);

        let legacy = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"elicitation/create","params":{{"mode":"form","message":"m","requestedSchema":{SCHEMA}}}}}"#
        );
        let message: ServerJsonRpcMessage = serde_json::from_str(&legacy).expect("parses");
        let rmcp::model::JsonRpcMessage::Request(request) = message else {
            panic!("a request")
        };
        let ServerRequest::ElicitRequest(request) = request.request else {
            panic!("an elicitation request, got {:?}", request.request)
        };
        assert_eq!(names(&form_schema(request.params)), expected);

        let modern = format!(
            r#"{{"jsonrpc":"2.0","id":2,"result":{{"resultType":"input_required","inputRequests":{{"trip":{{"method":"elicitation/create","params":{{"mode":"form","message":"m","requestedSchema":{SCHEMA}}}}}}}}}}}"#
        );
        let message: ServerJsonRpcMessage = serde_json::from_str(&modern).expect("parses");
        let rmcp::model::JsonRpcMessage::Response(response) = message else {
            panic!("a response")
        };
        let ServerResult::InputRequiredResult(input) = response.result else {
            panic!("input_required, got {:?}", response.result)
        };
        let requests = input.input_requests.expect("input requests");
        let Some(InputRequest::Elicitation(request)) = requests.get("trip").cloned() else {
            panic!("an elicitation")
        };
        assert_eq!(names(&form_schema(request.params)), expected);
    }
}
