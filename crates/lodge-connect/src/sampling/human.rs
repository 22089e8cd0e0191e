//! `--sampling human`: you are the model; type the reply.

use super::wire;
use crate::ui::Ui;
use inquire::Text;
use serde_json::Value;

pub async fn complete(ui: &Ui) -> Result<Value, String> {
    if !ui.interactive() {
        return Err("the human sampling provider needs a terminal".into());
    }
    let reply = ui
        .prompt(|| {
            Text::new("Reply as the model:")
                .with_help_message("sent back to the server as the model's answer; Esc to refuse")
                .prompt()
        })
        .await;
    match reply {
        Some(Ok(text)) => Ok(wire::text_result("human", &text)),
        _ => Err("the user refused to answer the sampling request".into()),
    }
}
