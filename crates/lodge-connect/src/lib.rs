//! `lodge connect URL`: a terminal MCP client for Lodge and any Streamable HTTP server.
//!
//! This crate owns the whole client: its command-line arguments ([`ConnectArgs`]), the
//! session with the server (both protocol eras, OAuth), prompts for tool arguments and
//! elicitation forms, sampling providers, progress bars, and the exit codes. The `lodge`
//! binary only parses the `connect` subcommand into [`ConnectArgs`] and calls [`run`].
//!
//! It must not be linked into the server's code paths: nothing in `lodge serve`, the
//! runtime or the HTTP front may depend on it, so the server's dependency tree does not
//! carry a terminal client's (prompts, an HTTP client, TLS, JSON Schema validation).
//!
//! Interactive by default (a prompt loop over the server's tools, resources and prompts);
//! one-shot with `--call TOOL --args JSON` or `--list`, which print JSON on stdout and
//! report the outcome in the exit code (the table is in `exit.rs`). Elicitation, sampling, progress, logs
//! and cancellation are handled the same way in both modes.
#![forbid(unsafe_code)]

mod auth;
mod call;
mod elicit;
mod exit;
mod form;
mod http;
mod listing;
mod oneshot;
mod progress;
mod render;
mod repl;
mod sampling;
mod schema;
mod session;
mod tool_order;
mod toolargs;
mod ui;

use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// Command-line arguments of `lodge connect`.
#[derive(Args, Debug)]
pub struct ConnectArgs {
    /// The MCP endpoint, e.g. http://127.0.0.1:8787/mcp
    pub url: String,

    /// Call this tool once, print the result as JSON on stdout and exit (see EXIT CODES).
    #[arg(long, value_name = "TOOL")]
    pub call: Option<String>,

    /// Arguments for --call: a JSON object, or @FILE to read it from a file.
    #[arg(long, value_name = "JSON", requires = "call")]
    pub args: Option<String>,

    /// Print the server's tools, resources and prompts as JSON on stdout and exit.
    #[arg(long, conflicts_with = "call")]
    pub list: bool,

    /// Send --call arguments even when they do not match the tool's input schema.
    #[arg(long)]
    pub no_validate: bool,

    /// Answer form elicitations from this JSON or TOML object (field name -> value) instead
    /// of prompting. Schema defaults fill fields the file does not name; a form whose
    /// required field has neither is declined.
    #[arg(long, value_name = "FILE")]
    pub answers: Option<PathBuf>,

    /// Who answers sampling requests: openai (any OpenAI-compatible chat-completions
    /// endpoint), anthropic (Messages API), human (you type the reply) or fixed
    /// (--sampling-text). Default: human on a terminal, otherwise none (sampling is then
    /// not offered to the server).
    #[arg(long, value_enum, value_name = "PROVIDER")]
    pub sampling: Option<sampling::ProviderKind>,

    /// The reply of the `fixed` provider (implies --sampling fixed).
    #[arg(long, value_name = "TEXT")]
    pub sampling_text: Option<String>,

    /// Base URL of the sampling provider [env: OPENAI_BASE_URL / ANTHROPIC_BASE_URL].
    #[arg(long, value_name = "URL")]
    pub sampling_url: Option<String>,

    /// Model name sent to the sampling provider [env: OPENAI_MODEL / ANTHROPIC_MODEL].
    #[arg(long, value_name = "MODEL")]
    pub sampling_model: Option<String>,

    /// API key of the sampling provider; prefer the environment, which other users of this
    /// machine cannot read from the process list [env: OPENAI_API_KEY / ANTHROPIC_API_KEY].
    #[arg(long, value_name = "KEY")]
    pub sampling_key: Option<String>,

    /// Answer sampling requests without asking first (each request is still shown).
    #[arg(long)]
    pub approve_sampling: bool,

    /// Extra HTTP header on every request, e.g. -H 'Authorization: Bearer TOKEN'. Repeatable.
    #[arg(long = "header", short = 'H', value_name = "NAME: VALUE")]
    pub headers: Vec<String>,

    /// Protocol era: legacy (initialize handshake, a session), modern (2026-07-28,
    /// stateless, server/discover) or auto (try modern, fall back to legacy).
    #[arg(long, value_enum, default_value_t = session::Protocol::Auto)]
    pub protocol: session::Protocol,

    /// Protocol version offered by the legacy handshake (default 2025-11-25).
    #[arg(long, value_name = "VERSION")]
    pub protocol_version: Option<String>,

    /// Sign in with OAuth when the server asks for authorization (401/403 with
    /// WWW-Authenticate): the authorization page opens in a browser (or its URL is printed)
    /// and a listener on 127.0.0.1 receives the redirect. The token lives for this run.
    #[arg(long)]
    pub oauth: bool,

    /// Like --oauth, without a browser: fetch the authorization URL and take the code from
    /// its redirect. Only for authorization servers that approve without a person (tests, CI).
    #[arg(long)]
    pub oauth_headless: bool,

    /// OAuth client id registered with the authorization server (else: the client metadata
    /// document, or dynamic client registration).
    #[arg(long, value_name = "ID")]
    pub oauth_client_id: Option<String>,

    /// Secret of --oauth-client-id, for a confidential client.
    #[arg(long, value_name = "SECRET", requires = "oauth_client_id")]
    pub oauth_client_secret: Option<String>,

    /// HTTPS URL of your client ID metadata document, used as the client id where the
    /// authorization server supports that.
    #[arg(long, value_name = "URL")]
    pub oauth_client_metadata_url: Option<String>,

    /// OAuth scopes to ask for (default: what the server's challenge or metadata name).
    #[arg(long = "oauth-scope", value_name = "SCOPE")]
    pub oauth_scopes: Vec<String>,

    /// Ask the server to send log messages at this level and above (legacy era).
    #[arg(long, value_enum, value_name = "LEVEL")]
    pub log_level: Option<session::LogLevel>,
}

/// Runs `lodge connect` and returns its exit code.
pub fn run(args: ConnectArgs) -> ExitCode {
    // reqwest is built without a default TLS provider; ring is ours. An error only means
    // a provider is already installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("lodge connect: cannot start the async runtime: {e}");
            return ExitCode::from(exit::CONNECTION);
        }
    };
    let code = runtime.block_on(run_async(args));
    // Blocking prompt threads must not keep the process alive after the answer is known.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    ExitCode::from(code)
}

async fn run_async(args: ConnectArgs) -> u8 {
    let one_shot = args.call.is_some() || args.list;
    let ui = Arc::new(ui::Ui::new());
    let setup = match session::Setup::from_args(&args, ui.clone()) {
        Ok(setup) => setup,
        Err(e) => {
            eprintln!("lodge connect: {e}");
            return exit::USAGE;
        }
    };
    if one_shot {
        oneshot::run(&args, setup).await
    } else if !ui.interactive() {
        eprintln!(
            "lodge connect: interactive mode needs a terminal; use --call TOOL --args JSON or --list in scripts"
        );
        exit::USAGE
    } else {
        repl::run(setup).await
    }
}
