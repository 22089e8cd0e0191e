//! An HTTP-transport server (the AgentCore container contract: it listens on port 8000
//! inside its sandbox) reached through Lodge: each session's server in its own network
//! namespace, so every one of them can use port 8000.
#![allow(clippy::unwrap_used)]
#![allow(deprecated)] // rmcp marks sampling/logging deprecated (SEP-2577)

use crate::common::{eventually, start_namespaces_in};
use rmcp::model::{
    CallToolRequestParams, ClientCapabilities, ClientConfig, ElicitRequestParams, ElicitResult,
    ElicitationAction, Implementation, ProgressNotificationParam, ProtocolVersion,
};
use rmcp::service::{NotificationContext, RequestContext};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{ClientHandler, ErrorData, RoleClient, ServiceExt};
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone, Default)]
struct Client {
    elicited: Arc<Mutex<Vec<String>>>,
    progress: Arc<Mutex<Vec<f64>>>,
}

impl ClientHandler for Client {
    fn get_info(&self) -> ClientConfig {
        let caps = ClientCapabilities::builder().enable_elicitation().build();
        ClientConfig::new(caps, Implementation::new("http-upstream-test", "0"))
            .with_protocol_version(ProtocolVersion::V_2025_11_25)
    }

    async fn create_elicitation(
        &self,
        request: ElicitRequestParams,
        _: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        if let ElicitRequestParams::FormElicitationParams { message, .. } = request {
            self.elicited.lock().unwrap().push(message);
        }
        Ok(ElicitResult::new(ElicitationAction::Decline))
    }

    async fn on_progress(&self, p: ProgressNotificationParam, _: NotificationContext<RoleClient>) {
        self.progress.lock().unwrap().push(p.progress);
    }
}

#[tokio::test]
async fn an_http_transport_server_elicits_and_reports_progress_through_lodge() {
    let (node, everything) = crate::common::node_everything();
    let config = format!(
        "[[server]]\nname = \"everything\"\ncommand = [{node:?}, {everything:?}, \"streamableHttp\"]\nenv = {{ PORT = \"8000\" }}\ntransport = \"http\"\nport = 8000\npath = \"/mcp\"\n"
    );
    crate::common::install_tls_provider();
    let Some(lodge) = start_namespaces_in(tempfile::tempdir().unwrap(), &config) else {
        return;
    };
    // Two sessions at once: two servers, both on port 8000, each in its own namespace.
    let a = Client::default();
    let b = Client::default();
    let ca = a
        .clone()
        .serve(StreamableHttpClientTransport::from_uri(lodge.url()))
        .await
        .unwrap();
    let cb = b
        .clone()
        .serve(StreamableHttpClientTransport::from_uri(lodge.url()))
        .await
        .unwrap();
    for client in [&ca, &cb] {
        let echo = client
            .call_tool(
                CallToolRequestParams::new("echo")
                    .with_arguments(json!({"message": "hi"}).as_object().unwrap().clone()),
            )
            .await
            .unwrap();
        assert_eq!(echo.content[0].as_text().unwrap().text, "Echo: hi");
    }
    let declined = ca
        .call_tool(CallToolRequestParams::new("trigger-elicitation-request"))
        .await
        .unwrap();
    let text: Vec<_> = declined
        .content
        .iter()
        .filter_map(|c| c.as_text())
        .map(|t| t.text.clone())
        .collect();
    assert!(
        text[0].contains("User declined to provide the requested information"),
        "{text:?}"
    );
    assert_eq!(a.elicited.lock().unwrap().len(), 1);
    let long = cb
        .call_tool(
            CallToolRequestParams::new("trigger-long-running-operation").with_arguments(
                json!({"duration": 1, "steps": 3})
                    .as_object()
                    .unwrap()
                    .clone(),
            ),
        )
        .await
        .unwrap();
    assert!(
        long.content[0]
            .as_text()
            .unwrap()
            .text
            .contains("completed"),
        "{long:?}"
    );
    eventually(
        Duration::from_secs(5),
        "three progress notifications",
        async || b.progress.lock().unwrap().len() == 3,
    )
    .await;
    assert_eq!(*b.progress.lock().unwrap(), vec![1.0, 2.0, 3.0]);
    ca.cancel().await.unwrap();
    cb.cancel().await.unwrap();
}
