//! URL-mode elicitation: show the URL, open it in a browser when there is one (and the user
//! agrees), then wait for the server's `notifications/elicitation/complete`.

use crate::progress::Progress;
use crate::ui::{Ui, open_in_browser};
use inquire::Select;
use rmcp::model::{ElicitResult, ElicitationAction};
use std::sync::Arc;

const OPEN: &str = "Open it (accept)";
const DECLINE: &str = "Decline";
const CANCEL: &str = "Cancel";

pub async fn ask(
    ui: &Ui,
    progress: &Arc<Progress>,
    message: &str,
    url: &str,
    id: &str,
) -> ElicitResult {
    ui.note(format!(
        "The server asks you to visit a URL: {message}\n  {url}"
    ));
    if !url.starts_with("https://") && !url.starts_with("http://") {
        ui.note("declined: only http and https URLs are opened");
        return ElicitResult::new(ElicitationAction::Decline);
    }
    if !ui.interactive() {
        ui.note("(no terminal to ask on: accepted; open the URL yourself)");
        wait(progress, id, url);
        return ElicitResult::new(ElicitationAction::Accept);
    }
    let choice = ui
        .prompt(|| Select::new("Open this URL?", vec![OPEN, DECLINE, CANCEL]).prompt())
        .await;
    match choice {
        Some(Ok(OPEN)) => {
            if !open_in_browser(url) {
                ui.note("no browser here: open the URL yourself");
            }
            wait(progress, id, url);
            ElicitResult::new(ElicitationAction::Accept)
        }
        Some(Ok(DECLINE)) => ElicitResult::new(ElicitationAction::Decline),
        _ => ElicitResult::new(ElicitationAction::Cancel),
    }
}

fn wait(progress: &Progress, id: &str, url: &str) {
    if !id.is_empty() {
        progress.waiting(&wait_key(id), format!("waiting for you to finish at {url}"));
    }
}

/// The progress key of the wait for elicitation `id`.
pub fn wait_key(id: &str) -> String {
    format!("elicitation:{id}")
}
