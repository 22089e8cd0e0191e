//! One-shot mode: `--call TOOL --args JSON` or `--list`. JSON on stdout, messages on stderr,
//! the outcome in the exit code.

use super::call::{self, Outcome};
use super::session::{Connection, MAX_AUTHORIZATIONS, Setup};
use super::toolargs::{self, Check};
use super::{ConnectArgs, exit};
use rmcp::ServiceError;
use rmcp::model::CallToolRequestParams;
use serde_json::{Value, json};

/// What a one-shot step came to.
enum Step {
    Exit(u8),
    /// The server wants (more) authorization: its challenge.
    Authorize(Option<String>),
}

pub async fn run(args: &ConnectArgs, setup: Setup) -> u8 {
    let mut authorizations = 0;
    loop {
        let connection = match setup.connect().await {
            Ok(c) => c,
            Err((code, message)) => {
                eprintln!("lodge connect: {message}");
                return code;
            }
        };
        let step = match &args.call {
            Some(tool) => call(args, tool, &setup, &connection).await,
            None => list(&setup, &connection).await,
        };
        // Ends the session so the server's sandbox goes away now.
        setup.close(connection).await;
        match step {
            Step::Exit(code) => return code,
            Step::Authorize(challenge) => {
                authorizations += 1;
                if authorizations > MAX_AUTHORIZATIONS {
                    eprintln!(
                        "lodge connect: still not authorized after {MAX_AUTHORIZATIONS} sign-ins; giving up"
                    );
                    return exit::CONNECTION;
                }
                eprintln!(
                    "lodge connect: the server asks for more authorization; signing in again"
                );
                if let Err(e) = setup.authorize(challenge.as_deref()).await {
                    eprintln!("lodge connect: {e}");
                    return exit::CONNECTION;
                }
            }
        }
    }
}

async fn call(args: &ConnectArgs, name: &str, setup: &Setup, connection: &Connection) -> Step {
    let arguments = match toolargs::parse(args.args.as_deref().unwrap_or("")) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("lodge connect: --args: {e}");
            return Step::Exit(exit::USAGE);
        }
    };
    // Listing first also teaches rmcp the tools' x-mcp-header parameters (2026-07-28).
    let tools = match connection.client.list_all_tools().await {
        Ok(tools) => tools,
        Err(e) => return failed(setup, connection, "listing tools", &e).await,
    };
    match tools.iter().find(|t| t.name == name) {
        None if !args.no_validate => {
            let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
            eprintln!(
                "lodge connect: the server has no tool {name:?} (it has: {})",
                names.join(", ")
            );
            return Step::Exit(exit::USAGE);
        }
        Some(tool) if !args.no_validate => match toolargs::check(tool, &arguments) {
            Check::Valid => {}
            Check::Unchecked(why) => {
                eprintln!(
                    "lodge connect: arguments not checked (cannot use the input schema: {why})"
                )
            }
            Check::Invalid(errors) => {
                eprintln!("lodge connect: the arguments do not match {name}'s input schema:");
                for e in errors {
                    eprintln!("  {e}");
                }
                return Step::Exit(exit::USAGE);
            }
        },
        _ => {}
    }
    let mut params = CallToolRequestParams::new(name.to_owned());
    if !arguments.is_empty() || args.args.is_some() {
        params = params.with_arguments(arguments);
    }
    match call::call_tool(connection, params).await {
        Outcome::Done(result) => {
            println!("{}", pretty(&result));
            if result.is_error == Some(true) {
                Step::Exit(exit::TOOL_ERROR)
            } else {
                Step::Exit(exit::OK)
            }
        }
        Outcome::Interrupted => {
            eprintln!("lodge connect: cancelled the call to {name}");
            Step::Exit(exit::INTERRUPTED)
        }
        Outcome::Failed(e) => failed(setup, connection, &format!("calling {name}"), &e).await,
    }
}

async fn list(setup: &Setup, connection: &Connection) -> Step {
    let client = &connection.client;
    let info = client.peer_info();
    let caps = info
        .as_ref()
        .map(|i| i.capabilities.clone())
        .unwrap_or_default();
    let mut out = json!({});
    if let Some(info) = &info {
        out["server"] = json!({
            "protocolVersion": info.protocol_version,
            "serverInfo": info.server_info,
            "capabilities": info.capabilities,
            "instructions": info.instructions,
        });
    }
    match client.list_all_tools().await {
        Ok(tools) => out["tools"] = json!(tools),
        Err(e) => return failed(setup, connection, "listing tools", &e).await,
    }
    if caps.resources.is_some() {
        match client.list_all_resources().await {
            Ok(r) => out["resources"] = json!(r),
            Err(e) => return failed(setup, connection, "listing resources", &e).await,
        }
        match client.list_all_resource_templates().await {
            Ok(r) => out["resourceTemplates"] = json!(r),
            Err(e) => return failed(setup, connection, "listing resource templates", &e).await,
        }
    }
    if caps.prompts.is_some() {
        match client.list_all_prompts().await {
            Ok(p) => out["prompts"] = json!(p),
            Err(e) => return failed(setup, connection, "listing prompts", &e).await,
        }
    }
    println!("{}", pretty(&out));
    Step::Exit(exit::OK)
}

/// Says what failed (and, for an ended session, why) and picks the exit code.
async fn failed(setup: &Setup, connection: &Connection, what: &str, e: &ServiceError) -> Step {
    if connection.watch.expired() {
        let reason = setup.ended_reason(connection).await;
        eprintln!("lodge connect: the session ended: {reason}");
        return Step::Exit(exit::SESSION_ENDED);
    }
    if setup.oauth.is_some()
        && let Some(challenge) = e.auth_challenge()
    {
        return Step::Authorize(Some(challenge.to_owned()));
    }
    eprintln!("lodge connect: {what} failed: {}", exit::chain(e));
    Step::Exit(exit::for_service_error(e, false))
}

fn pretty<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .and_then(|v: Value| serde_json::to_string_pretty(&v))
        .unwrap_or_else(|e| format!("{{\"error\": \"cannot print the result: {e}\"}}"))
}
