//! Sampling requests (`sampling/createMessage`): shown to the user, approved (unless
//! `--approve-sampling`), then answered by the chosen provider.
// Sampling and logging are SEP-2577-deprecated in rmcp; legacy servers still use both.
#![allow(deprecated)]

mod anthropic;
mod fixed;
mod human;
mod openai;
mod wire;

use super::ConnectArgs;
use super::ui::Ui;
use clap::ValueEnum;
use inquire::Confirm;
use rmcp::ErrorData;
use rmcp::model::{CreateMessageRequestParams, CreateMessageResult, ErrorCode};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ProviderKind {
    /// An OpenAI-compatible chat-completions endpoint.
    Openai,
    /// The Anthropic Messages API.
    Anthropic,
    /// You type the reply.
    Human,
    /// Always --sampling-text.
    Fixed,
}

enum Provider {
    OpenAi(openai::OpenAi),
    Anthropic(anthropic::Anthropic),
    Human,
    Fixed(String),
}

pub struct Sampler {
    provider: Provider,
    ui: Arc<Ui>,
    approve: bool,
    http: reqwest::Client,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl Sampler {
    /// The sampler the flags ask for; `None` when sampling is off (no flag and no terminal).
    pub fn from_args(args: &ConnectArgs, ui: Arc<Ui>) -> Result<Option<Sampler>, String> {
        let kind = match (args.sampling, &args.sampling_text) {
            (Some(kind), _) => kind,
            (None, Some(_)) => ProviderKind::Fixed,
            (None, None) if ui.interactive() => ProviderKind::Human,
            (None, None) => return Ok(None),
        };
        if args.sampling_text.is_some() && kind != ProviderKind::Fixed {
            return Err("--sampling-text goes with --sampling fixed".into());
        }
        let model = |var: &str, default: &str| {
            args.sampling_model
                .clone()
                .or_else(|| env(var))
                .unwrap_or_else(|| default.to_owned())
        };
        let provider = match kind {
            ProviderKind::Openai => {
                let base = args.sampling_url.clone().or_else(|| env("OPENAI_BASE_URL"));
                Provider::OpenAi(openai::OpenAi::new(
                    base.as_deref().unwrap_or(openai::DEFAULT_BASE),
                    model("OPENAI_MODEL", openai::DEFAULT_MODEL),
                    args.sampling_key.clone().or_else(|| env("OPENAI_API_KEY")),
                ))
            }
            ProviderKind::Anthropic => {
                let base = args
                    .sampling_url
                    .clone()
                    .or_else(|| env("ANTHROPIC_BASE_URL"));
                let key = args
                    .sampling_key
                    .clone()
                    .or_else(|| env("ANTHROPIC_API_KEY"))
                    .ok_or("--sampling anthropic needs ANTHROPIC_API_KEY (or --sampling-key)")?;
                Provider::Anthropic(anthropic::Anthropic::new(
                    base.as_deref().unwrap_or(anthropic::DEFAULT_BASE),
                    model("ANTHROPIC_MODEL", anthropic::DEFAULT_MODEL),
                    key,
                ))
            }
            ProviderKind::Human => Provider::Human,
            ProviderKind::Fixed => Provider::Fixed(
                args.sampling_text
                    .clone()
                    .ok_or("--sampling fixed needs --sampling-text TEXT")?,
            ),
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(300))
            .build()
            .map_err(|e| format!("HTTP client for sampling: {e}"))?;
        Ok(Some(Sampler {
            provider,
            ui,
            approve: args.approve_sampling,
            http,
        }))
    }

    /// Whether the provider can take `tools` (SEP-1577); declared to the server.
    pub fn supports_tools(&self) -> bool {
        matches!(self.provider, Provider::OpenAi(_) | Provider::Anthropic(_))
    }

    fn describe(&self) -> String {
        match &self.provider {
            Provider::OpenAi(p) => format!("{} (model {})", p.url, p.model),
            Provider::Anthropic(p) => format!("{} (model {})", p.url, p.model),
            Provider::Human => "you".into(),
            Provider::Fixed(_) => "the fixed reply (--sampling-text)".into(),
        }
    }

    pub async fn handle(
        &self,
        params: CreateMessageRequestParams,
    ) -> Result<CreateMessageResult, ErrorData> {
        let request = serde_json::to_value(&params)
            .map_err(|e| ErrorData::internal_error(format!("sampling request: {e}"), None))?;
        self.ui.note(wire::describe_request(&request));
        if !matches!(self.provider, Provider::Human) && !self.approve {
            self.approval().await?;
        }
        let reply = match &self.provider {
            Provider::OpenAi(p) => p.complete(&self.http, &request).await,
            Provider::Anthropic(p) => p.complete(&self.http, &request).await,
            Provider::Human => human::complete(&self.ui).await,
            Provider::Fixed(text) => Ok(fixed::complete(text)),
        };
        let reply = reply.map_err(|e| {
            self.ui.note(format!("sampling failed: {e}"));
            ErrorData::internal_error(format!("sampling failed: {e}"), None)
        })?;
        self.ui.note(wire::describe_result(&reply));
        serde_json::from_value::<CreateMessageResult>(reply.clone()).map_err(|e| {
            let message = format!("the provider's reply does not fit MCP ({e}): {reply}");
            self.ui.note(&message);
            ErrorData::internal_error(message, None)
        })
    }

    async fn approval(&self) -> Result<(), ErrorData> {
        if !self.ui.interactive() {
            self.ui.note(
                "refused the sampling request: no terminal to approve it on (pass --approve-sampling)",
            );
            return Err(rejected());
        }
        let question = format!("Send this to {}?", self.describe());
        let answer = self
            .ui
            .prompt(move || Confirm::new(&question).with_default(true).prompt())
            .await;
        match answer {
            Some(Ok(true)) => Ok(()),
            _ => {
                self.ui.note("refused the sampling request");
                Err(rejected())
            }
        }
    }
}

/// The spec's "user rejected" error (code -1).
fn rejected() -> ErrorData {
    ErrorData::new(
        ErrorCode(-1),
        "User rejected sampling request",
        None::<Value>,
    )
}
