//! Interactive mode: show what the server offers, then a prompt loop to call tools (arguments
//! asked field by field and checked against the input schema), read resources and get
//! prompts. A call runs until it finishes or Ctrl-C cancels it.

use super::call::{self, Outcome};
use super::session::{Connection, Setup};
use super::toolargs::{self, Check};
use super::{exit, render};
use inquire::{Confirm, Text};
use rmcp::ServiceError;
use rmcp::model::CallToolRequestParams;
use serde_json::{Value, json};

const HELP: &str = "commands: call TOOL [JSON] (or just TOOL [JSON]) · tools · resources · \
prompts · read URI · prompt NAME [JSON] · help · quit (or Esc)";

enum Step {
    Continue,
    Quit,
    SessionEnded,
    /// The server wants (more) authorization; its challenge.
    Authorize(String),
}

pub async fn run(setup: Setup) -> u8 {
    let ui = setup.ui().clone();
    let mut connection = match setup.connect().await {
        Ok(c) => c,
        Err((code, message)) => {
            eprintln!("lodge connect: {message}");
            return code;
        }
    };
    greet(&setup, &connection).await;
    loop {
        let line = ui.prompt(|| Text::new("lodge>").prompt()).await;
        let Some(Ok(line)) = line else {
            break;
        };
        match command(&setup, &connection, line.trim()).await {
            Step::Continue => {}
            Step::Quit => break,
            Step::Authorize(challenge) => {
                ui.note("The server asks for more authorization; signing in again.");
                if let Err(e) = setup.authorize(Some(&challenge)).await {
                    ui.note(e);
                    continue;
                }
                match setup.connect().await {
                    Ok(fresh) => {
                        let old = std::mem::replace(&mut connection, fresh);
                        setup.close(old).await;
                        ui.note("Signed in again: run the command again.");
                    }
                    Err((code, message)) => {
                        eprintln!("lodge connect: {message}");
                        return code;
                    }
                }
            }
            Step::SessionEnded => {
                let reason = setup.ended_reason(&connection).await;
                ui.note(format!("The session ended: {reason}"));
                let again = ui
                    .prompt(|| {
                        Confirm::new("Start a new session?")
                            .with_default(true)
                            .prompt()
                    })
                    .await;
                if !matches!(again, Some(Ok(true))) {
                    break;
                }
                match setup.connect().await {
                    Ok(fresh) => {
                        let old = std::mem::replace(&mut connection, fresh);
                        setup.close(old).await;
                        greet(&setup, &connection).await;
                    }
                    Err((code, message)) => {
                        eprintln!("lodge connect: {message}");
                        return code;
                    }
                }
            }
        }
    }
    setup.close(connection).await;
    exit::OK
}

async fn greet(setup: &Setup, connection: &Connection) {
    let ui = setup.ui();
    let client = &connection.client;
    let info = client.peer_info();
    if let Some(info) = &info {
        let server = info
            .server_info
            .as_ref()
            .map(|s| format!("{} {}", s.name, s.version))
            .unwrap_or_else(|| "the server".into());
        ui.note(format!(
            "Connected to {server} at {} (protocol {})",
            setup.url, info.protocol_version
        ));
        if let Some(instructions) = &info.instructions {
            ui.note(format!("  {}", instructions.replace('\n', "\n  ")));
        }
    }
    let caps = info.map(|i| i.capabilities.clone()).unwrap_or_default();
    match client.list_all_tools().await {
        Ok(tools) => ui.note(format!("tools:\n{}", render::tools(&tools))),
        Err(e) => ui.note(format!("listing tools failed: {e}")),
    }
    if caps.resources.is_some()
        && let Ok(resources) = client.list_all_resources().await
        && !resources.is_empty()
    {
        ui.note(format!("resources:\n{}", render::items(&resources, "uri")));
    }
    if caps.prompts.is_some()
        && let Ok(prompts) = client.list_all_prompts().await
        && !prompts.is_empty()
    {
        ui.note(format!("prompts:\n{}", render::items(&prompts, "name")));
    }
    ui.note(HELP);
}

async fn command(setup: &Setup, connection: &Connection, line: &str) -> Step {
    let ui = setup.ui();
    let client = &connection.client;
    let (word, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
    let rest = rest.trim();
    let result: Result<(), ServiceError> = match word {
        "" => Ok(()),
        "help" | "?" => {
            ui.note(HELP);
            Ok(())
        }
        "quit" | "exit" | "q" => return Step::Quit,
        "tools" => client
            .list_all_tools()
            .await
            .map(|t| ui.note(render::tools(&t))),
        "resources" => client.list_all_resources().await.map(|r| {
            ui.note(render::items(&r, "uri"));
        }),
        "prompts" => client.list_all_prompts().await.map(|p| {
            ui.note(render::items(&p, "name"));
        }),
        "read" => read(setup, connection, rest).await,
        "prompt" => get_prompt(setup, connection, rest).await,
        "call" => {
            let (name, args) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
            return call(setup, connection, name, args.trim()).await;
        }
        name => return call(setup, connection, name, rest).await,
    };
    match result {
        Ok(()) => Step::Continue,
        Err(e) => report(setup, connection, &e),
    }
}

fn report(setup: &Setup, connection: &Connection, e: &ServiceError) -> Step {
    if connection.watch.expired() {
        return Step::SessionEnded;
    }
    if setup.oauth.is_some()
        && let Some(challenge) = e.auth_challenge()
    {
        return Step::Authorize(challenge.to_owned());
    }
    setup.ui().note(format!("error: {}", exit::chain(e)));
    Step::Continue
}

async fn call(setup: &Setup, connection: &Connection, name: &str, args: &str) -> Step {
    let ui = setup.ui();
    let tools = match connection.client.list_all_tools().await {
        Ok(t) => t,
        Err(e) => return report(setup, connection, &e),
    };
    let Some(tool) = tools.into_iter().find(|t| t.name == name) else {
        ui.note(format!("no tool or command {name:?}; {HELP}"));
        return Step::Continue;
    };
    let has_properties = tool
        .input_schema
        .get("properties")
        .is_some_and(|p| p.as_object().is_some_and(|o| !o.is_empty()));
    let arguments = if args.is_empty() && has_properties {
        let asked = tool.clone();
        let order = setup.tool_order(name);
        match ui
            .prompt(move || toolargs::ask(&asked, order.as_deref()))
            .await
        {
            Some(Ok(arguments)) => arguments,
            _ => {
                ui.note("call abandoned");
                return Step::Continue;
            }
        }
    } else {
        match toolargs::parse(args) {
            Ok(a) => a,
            Err(e) => {
                ui.note(e);
                return Step::Continue;
            }
        }
    };
    match toolargs::check(&tool, &arguments) {
        Check::Valid => {}
        Check::Unchecked(why) => ui.note(format!("(arguments not checked: {why})")),
        Check::Invalid(errors) => {
            ui.note(format!(
                "not sent: the arguments do not match {name}'s input schema:\n  {}",
                errors.join("\n  ")
            ));
            return Step::Continue;
        }
    }
    let params = CallToolRequestParams::new(name.to_owned()).with_arguments(arguments);
    match call::call_tool(connection, params).await {
        Outcome::Done(result) => {
            ui.note(render::tool_result(&result));
            Step::Continue
        }
        Outcome::Interrupted => {
            ui.note(format!("cancelled the call to {name}"));
            Step::Continue
        }
        Outcome::Failed(e) => report(setup, connection, &e),
    }
}

async fn read(setup: &Setup, connection: &Connection, uri: &str) -> Result<(), ServiceError> {
    let params = serde_json::from_value(json!({ "uri": uri })).map_err(|e| {
        ServiceError::McpError(rmcp::ErrorData::invalid_params(e.to_string(), None))
    })?;
    let result = connection.client.read_resource(params).await?;
    let result = serde_json::to_value(&result).unwrap_or_default();
    for content in result["contents"].as_array().into_iter().flatten() {
        let text = match content["text"].as_str() {
            Some(text) => text.to_owned(),
            None => format!("[binary {}]", content["mimeType"].as_str().unwrap_or("")),
        };
        setup.ui().note(format!(
            "{}:\n{text}",
            content["uri"].as_str().unwrap_or(uri)
        ));
    }
    Ok(())
}

async fn get_prompt(
    setup: &Setup,
    connection: &Connection,
    rest: &str,
) -> Result<(), ServiceError> {
    let (name, args) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    let arguments = match toolargs::parse(args) {
        Ok(a) => Value::Object(a),
        Err(e) => {
            setup.ui().note(e);
            return Ok(());
        }
    };
    let params =
        serde_json::from_value(json!({ "name": name, "arguments": arguments })).map_err(|e| {
            ServiceError::McpError(rmcp::ErrorData::invalid_params(e.to_string(), None))
        })?;
    let result = connection.client.get_prompt(params).await?;
    let result = serde_json::to_value(&result).unwrap_or_default();
    for message in result["messages"].as_array().into_iter().flatten() {
        let role = message["role"].as_str().unwrap_or("?");
        setup.ui().note(format!(
            "{role}: {}",
            render::content_block(&message["content"])
        ));
    }
    Ok(())
}
