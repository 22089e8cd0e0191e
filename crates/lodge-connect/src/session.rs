//! Connecting: the rmcp client handler (elicitation, sampling, progress, logs) and the
//! transport (headers, protocol era, the 404 watch).
// Sampling and logging are SEP-2577-deprecated in rmcp; legacy servers still use both.
#![allow(deprecated)]

use super::ConnectArgs;
use super::auth::{self, OAuthOptions};
use super::elicit::{Answers, Elicitor};
use super::exit;
use super::http::{self, LODGE_SESSION_ID, SessionWatch, WatchedClient};
use super::progress::{CountProgress, Progress};
use super::sampling::Sampler;
use super::tool_order::ToolOrders;
use super::ui::Ui;
use clap::ValueEnum;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use rmcp::model::{
    ClientCapabilities, ClientConfig, CreateMessageRequestParams, CreateMessageResult,
    CustomNotification, ElicitRequestParams, ElicitResult, Implementation,
    LoggingMessageNotificationParam, ProgressNotificationParam, ProtocolVersion,
};
use rmcp::service::ClientInitializeError;
use rmcp::service::{NotificationContext, RequestContext, RunningService};
use rmcp::transport::streamable_http_client::{
    StreamableHttpClient, StreamableHttpClientTransportConfig,
};
use rmcp::transport::{AuthClient, StreamableHttpClientTransport};
use rmcp::{ClientHandler, ClientLifecycleMode, ClientServiceExt, ErrorData, RoleClient};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// `--protocol`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Protocol {
    /// initialize handshake and a session (2024-11-05 … 2025-11-25).
    Legacy,
    /// 2026-07-28: stateless, server/discover, input_required rounds.
    Modern,
    /// Try server/discover; fall back to initialize when the server is legacy.
    Auto,
}

/// `--log-level`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    Debug,
    Info,
    Notice,
    Warning,
    Error,
    Critical,
    Alert,
    Emergency,
}

/// Everything needed to (re)connect.
pub struct Setup {
    pub url: String,
    pub headers: HeaderMap,
    pub protocol: Protocol,
    pub legacy_version: ProtocolVersion,
    pub log_level: Option<LogLevel>,
    pub handler: Handler,
    /// `--oauth*`: sign in when the server asks.
    pub oauth: Option<OAuthOptions>,
    /// The OAuth client (tokens) once signed in; kept across reconnections, each of which
    /// puts a [`WatchedClient`] of its own under it.
    authorized: tokio::sync::Mutex<Option<AuthClient<WatchedClient>>>,
    /// The order of each tool's properties, from the raw `tools/list` answers.
    tool_orders: Arc<ToolOrders>,
}

/// How many times one run signs in again (expired tokens, scope step-up) before giving up.
pub const MAX_AUTHORIZATIONS: usize = 3;

enum Failure {
    /// The server wants authorization; its `WWW-Authenticate` challenge, when it sent one.
    Auth(Option<String>),
    Other(u8, String),
}

/// A live client and what the transport has seen of its session.
pub struct Connection {
    pub client: RunningService<RoleClient, Handler>,
    pub watch: Arc<SessionWatch>,
    /// The Lodge runtime session kept across 2026-07-28 requests, if any.
    lodge_session: Option<String>,
    web: reqwest::Client,
}

impl Setup {
    pub fn from_args(args: &ConnectArgs, ui: Arc<Ui>) -> Result<Setup, String> {
        if !args.url.starts_with("http://") && !args.url.starts_with("https://") {
            return Err(format!(
                "{}: the URL must start with http:// or https://",
                args.url
            ));
        }
        let mut headers = HeaderMap::new();
        for header in &args.headers {
            let (name, value) = header
                .split_once(':')
                .ok_or_else(|| format!("--header {header:?}: expected 'Name: value'"))?;
            let name = HeaderName::try_from(name.trim())
                .map_err(|e| format!("--header {header:?}: {e}"))?;
            let value = HeaderValue::try_from(value.trim())
                .map_err(|e| format!("--header {header:?}: {e}"))?;
            headers.append(name, value);
        }
        let legacy_version = match &args.protocol_version {
            Some(v) => serde_json::from_value(json!(v))
                .map_err(|e| format!("--protocol-version {v}: {e}"))?,
            None => ProtocolVersion::V_2025_11_25,
        };
        let answers = args.answers.as_deref().map(Answers::load).transpose()?;
        let progress = Arc::new(Progress::new(ui.clone()));
        let sampler = Sampler::from_args(args, ui.clone())?;
        let handler = Handler(Arc::new(Parts {
            elicitor: Elicitor::new(ui.clone(), progress.clone(), answers),
            ui,
            progress,
            sampler,
            version: match args.protocol {
                Protocol::Modern => ProtocolVersion::V_2026_07_28,
                _ => legacy_version.clone(),
            },
        }));
        let oauth = (args.oauth || args.oauth_headless).then(|| OAuthOptions {
            headless: args.oauth_headless,
            client_id: args.oauth_client_id.clone(),
            client_secret: args.oauth_client_secret.clone(),
            client_metadata_url: args.oauth_client_metadata_url.clone(),
            scopes: args.oauth_scopes.clone(),
        });
        Ok(Setup {
            url: args.url.clone(),
            headers,
            protocol: args.protocol,
            legacy_version,
            log_level: args.log_level,
            handler,
            oauth,
            authorized: tokio::sync::Mutex::new(None),
            tool_orders: Arc::default(),
        })
    }

    pub fn ui(&self) -> &Arc<Ui> {
        &self.handler.0.ui
    }

    /// The order in which `tool`'s server lists its properties, once a `tools/list` answer
    /// named the tool.
    pub fn tool_order(&self, tool: &str) -> Option<Vec<String>> {
        self.tool_orders.of(tool)
    }

    /// Connects (handshake or discovery, depending on `--protocol`), signing in first when
    /// the server asks for authorization and `--oauth` allows it.
    pub async fn connect(&self) -> Result<Connection, (u8, String)> {
        let mut authorizations = 0;
        loop {
            match self.connect_once().await {
                Ok(connection) => return Ok(connection),
                Err(Failure::Auth(challenge))
                    if self.oauth.is_some() && authorizations < MAX_AUTHORIZATIONS =>
                {
                    authorizations += 1;
                    self.authorize(challenge.as_deref())
                        .await
                        .map_err(|e| (exit::CONNECTION, e))?;
                }
                Err(Failure::Auth(_)) => {
                    return Err((
                        exit::CONNECTION,
                        format!(
                            "{} requires authorization: pass --oauth to sign in, or -H 'Authorization: Bearer TOKEN'",
                            self.url
                        ),
                    ));
                }
                Err(Failure::Other(code, message)) => return Err((code, message)),
            }
        }
    }

    /// Signs in (again), e.g. after a 403 asking for more scopes.
    pub async fn authorize(&self, challenge: Option<&str>) -> Result<(), String> {
        let Some(options) = &self.oauth else {
            return Err("the server requires authorization: pass --oauth".into());
        };
        // A challenge that names scopes (a 403 asking for more, or a 401 saying which) gets
        // them, on top of those already granted: step-up must not lose what was there.
        let mut options = options.clone();
        if let Some(wanted) = challenge.and_then(auth::challenge_scopes) {
            if let Some(current) = self.authorized.lock().await.as_ref() {
                let granted = current.auth_manager.lock().await.get_current_scopes().await;
                for scope in granted {
                    if !options.scopes.contains(&scope) {
                        options.scopes.push(scope);
                    }
                }
            }
            for scope in wanted {
                if !options.scopes.contains(&scope) {
                    options.scopes.push(scope);
                }
            }
        }
        let manager = auth::authorize(&self.url, challenge, &options, self.ui()).await?;
        // `connect_once` puts each connection's own watched client under the tokens; this
        // one is only what rmcp's constructor needs until then.
        let placeholder = WatchedClient::new(
            reqwest::Client::new(),
            Arc::default(),
            self.tool_orders.clone(),
        );
        *self.authorized.lock().await = Some(AuthClient::new(placeholder, manager));
        Ok(())
    }

    async fn connect_once(&self) -> Result<Connection, Failure> {
        let watch = Arc::new(SessionWatch::default());
        let web = reqwest::Client::builder()
            .build()
            .map_err(|e| Failure::Other(exit::CONNECTION, format!("HTTP client: {e}")))?;
        let mut custom: HashMap<HeaderName, HeaderValue> = self
            .headers
            .iter()
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect();
        // Stateless requests would each get a fresh sandbox from Lodge; keep one for the
        // whole run, so the server's state lives as long as this client (as in a session).
        let lodge_session = match self.protocol {
            Protocol::Legacy => None,
            _ => {
                let info = self.handler.get_info();
                let caps = serde_json::to_value(&info.capabilities).unwrap_or_default();
                let client = serde_json::to_value(&info.client_info).unwrap_or_default();
                http::lodge_session(&web, &self.url, &self.headers, caps, client).await
            }
        };
        if let Some(id) = &lodge_session
            && let Ok(value) = HeaderValue::try_from(id.as_str())
        {
            custom.insert(HeaderName::from_static(LODGE_SESSION_ID), value);
        }
        let config = StreamableHttpClientTransportConfig::with_uri(self.url.as_str())
            .custom_headers(custom)
            // A new session loses the server's state: never start one behind the user's back.
            .reinit_on_expired_session(false);
        let lifecycle = match self.protocol {
            Protocol::Legacy => ClientLifecycleMode::Initialize,
            Protocol::Modern => ClientLifecycleMode::Discover {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            },
            Protocol::Auto => ClientLifecycleMode::Auto {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
                legacy_version: Some(self.legacy_version.clone()),
            },
        };
        let authorized = self.authorized.lock().await.clone();
        let orders = self.tool_orders.clone();
        // The watch goes under the OAuth client, so its own reads of `tools/list` carry the
        // same bearer token as every other request.
        let served = match authorized {
            Some(mut auth) => {
                auth.http_client = WatchedClient::new(web.clone(), watch.clone(), orders);
                self.serve(auth, config, lifecycle).await
            }
            None => {
                let watched = WatchedClient::new(web.clone(), watch.clone(), orders);
                self.serve(watched, config, lifecycle).await
            }
        };
        let client = served.map_err(|e| {
            if e.is_authorization_required() || e.auth_challenge().is_some() {
                return Failure::Auth(e.auth_challenge().map(str::to_owned));
            }
            Failure::Other(
                exit::CONNECTION,
                format!("cannot connect to {}: {}", self.url, exit::chain(&e)),
            )
        })?;
        if let Some(level) = self.log_level {
            set_log_level(&client, level, self.ui()).await;
        }
        let modern = client
            .peer_info()
            .is_some_and(|info| info.protocol_version >= ProtocolVersion::V_2026_07_28);
        Ok(Connection {
            client,
            watch,
            lodge_session: lodge_session.filter(|_| modern),
            web,
        })
    }

    async fn serve<C>(
        &self,
        client: C,
        config: StreamableHttpClientTransportConfig,
        lifecycle: ClientLifecycleMode,
    ) -> Result<RunningService<RoleClient, Handler>, ClientInitializeError>
    where
        C: StreamableHttpClient<Error = reqwest::Error> + Sync,
    {
        let transport = CountProgress::new(
            StreamableHttpClientTransport::with_client(client, config),
            self.handler.0.progress.clone(),
        );
        self.handler
            .clone()
            .serve_with_lifecycle(transport, lifecycle)
            .await
    }

    /// Ends the session: DELETE for a legacy session (rmcp), and for a kept Lodge session.
    pub async fn close(&self, connection: Connection) {
        let _ = connection.client.cancel().await;
        if let Some(id) = &connection.lodge_session
            && !connection.watch.expired()
        {
            http::end_lodge_session(&connection.web, &self.url, &self.headers, id).await;
        }
    }

    /// Why the session ended, in the server's words.
    pub async fn ended_reason(&self, connection: &Connection) -> String {
        connection
            .watch
            .ended_reason(&self.url, &self.headers)
            .await
    }
}

async fn set_log_level(client: &RunningService<RoleClient, Handler>, level: LogLevel, ui: &Ui) {
    let legacy = client
        .peer_info()
        .is_some_and(|info| info.protocol_version < ProtocolVersion::V_2026_07_28);
    let logging = client
        .peer_info()
        .is_some_and(|info| info.capabilities.logging.is_some());
    if !legacy || !logging {
        return;
    }
    let Some(level) = level.to_possible_value().map(|v| v.get_name().to_owned()) else {
        return;
    };
    let params = serde_json::from_value(json!({ "level": level }));
    if let Ok(params) = params {
        let result = client.set_level(params).await;
        if let Err(e) = result {
            ui.note(format!("logging/setLevel failed: {e}"));
        }
    }
}

/// The client side of the protocol: answers the server's requests and shows its
/// notifications.
#[derive(Clone)]
pub struct Handler(Arc<Parts>);

pub struct Parts {
    ui: Arc<Ui>,
    progress: Arc<Progress>,
    elicitor: Elicitor,
    sampler: Option<Sampler>,
    version: ProtocolVersion,
}

impl Handler {
    pub fn elicitor(&self) -> &Elicitor {
        &self.0.elicitor
    }

    pub fn sampler(&self) -> Option<&Sampler> {
        self.0.sampler.as_ref()
    }

    /// A 2026-07-28 round ended in `input_required`: its last updates are shown, then its
    /// bars make way for the next round's.
    pub async fn progress_round_over(&self) {
        self.0.progress.settle(Duration::from_secs(2)).await;
        self.0.progress.clear();
    }

    /// The call these bars belong to is over; `settle` when it ended normally (its last
    /// progress notifications may still be on their way to the handler). The wait ends as
    /// soon as they are shown; the bound is for a handler that never runs.
    pub async fn progress_done(&self, settle: bool) {
        if settle {
            self.0.progress.settle(Duration::from_secs(2)).await;
        }
        self.0.progress.finish_all();
    }
}

impl ClientHandler for Handler {
    fn get_info(&self) -> ClientConfig {
        let mut caps = json!({"elicitation": {"form": {}, "url": {}}});
        if let Some(sampler) = &self.0.sampler {
            caps["sampling"] = if sampler.supports_tools() {
                json!({"tools": {}})
            } else {
                json!({})
            };
        }
        let caps: ClientCapabilities = serde_json::from_value(caps).unwrap_or_default();
        ClientConfig::new(
            caps,
            Implementation::new("lodge-connect", env!("CARGO_PKG_VERSION")),
        )
        .with_protocol_version(self.0.version.clone())
    }

    async fn create_elicitation(
        &self,
        request: ElicitRequestParams,
        _: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        Ok(self.0.elicitor.handle(request).await)
    }

    async fn create_message(
        &self,
        params: CreateMessageRequestParams,
        _: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, ErrorData> {
        match &self.0.sampler {
            Some(sampler) => sampler.handle(params).await,
            None => Err(ErrorData::method_not_found::<
                rmcp::model::CreateMessageRequestMethod,
            >()),
        }
    }

    async fn on_progress(&self, p: ProgressNotificationParam, _: NotificationContext<RoleClient>) {
        let token = serde_json::to_string(&p.progress_token).unwrap_or_default();
        self.0
            .progress
            .update(&token, p.progress, p.total, p.message.as_deref());
    }

    async fn on_logging_message(
        &self,
        p: LoggingMessageNotificationParam,
        _: NotificationContext<RoleClient>,
    ) {
        let level = serde_json::to_value(p.level).unwrap_or_default();
        let level = level.as_str().unwrap_or("log");
        let data = match &p.data {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let line = match &p.logger {
            Some(logger) => format!("[{level}] {logger}: {data}"),
            None => format!("[{level}] {data}"),
        };
        self.0.ui.note(line);
    }

    async fn on_custom_notification(
        &self,
        n: CustomNotification,
        _: NotificationContext<RoleClient>,
    ) {
        if n.method == "notifications/elicitation/complete" {
            let params = n.params.unwrap_or_default();
            if let Some(id) = params["elicitationId"].as_str() {
                self.0.elicitor.completed(id);
            }
        }
    }
}
