//! `/admin/sessions`: which sessions exist, whose they are, what they do and use;
//! one session's last stderr lines and protocol events; stopping one.

use super::{AdminState, ClusterAdmin, json};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use lodge_cluster::NodeId;
use lodge_runtime::{EndReason, Lookup, Runtime, SessionHandle, SessionReport, SessionState};
use lodge_sandbox::Usage;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::SystemTime;

/// The list's filters; each must match when given.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct Filters {
    server: Option<String>,
    principal: Option<String>,
    era: Option<String>,
    state: Option<String>,
}

impl Filters {
    fn check(&self) -> Result<(), String> {
        if let Some(era) = &self.era
            && !["legacy", "modern"].contains(&era.as_str())
        {
            return Err(format!("era must be legacy or modern, not {era:?}"));
        }
        if let Some(state) = &self.state
            && !STATES.contains(&state.as_str())
        {
            return Err(format!(
                "state must be one of {}, not {state:?}",
                STATES.join(", ")
            ));
        }
        Ok(())
    }

    fn admits(&self, session: &Value) -> bool {
        let is = |field: &str, wanted: &Option<String>| {
            wanted
                .as_deref()
                .is_none_or(|w| session[field].as_str() == Some(w))
        };
        is("server", &self.server)
            && is("principal", &self.principal)
            && is("era", &self.era)
            && is("state", &self.state)
    }
}

const STATES: [&str; 5] = ["starting", "idle", "busy", "waiting", "ending"];

fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
}

fn era(session: &SessionHandle) -> &'static str {
    if session.is_modern() {
        "modern"
    } else {
        "legacy"
    }
}

/// A session's row, from its handle and (if its actor answered) its report.
fn row(session: &SessionHandle, report: Option<&SessionReport>, usage: Option<Usage>) -> Value {
    let owner = session.owner();
    let signed_in = !owner.is_anonymous();
    let state = report.map_or(SessionState::Ending, |r| r.state);
    json!({
        "id": session.id(),
        "server": session.server(),
        "era": era(session),
        "principal": signed_in.then(|| owner.subject()),
        "issuer": signed_in.then(|| owner.issuer()),
        "state": state,
        "created_at": rfc3339(session.created_at()),
        "last_activity_at": report.map(|r| rfc3339(r.last_activity_at)),
        "in_flight": report.map_or(session.in_flight(), |r| r.in_flight),
        "waiting_on": report.and_then(|r| r.waiting_on),
        "idle_deadline": report.and_then(|r| r.idle_deadline).map(rfc3339),
        "lifetime_deadline": report.map(|r| rfc3339(r.lifetime_deadline)),
        "pid": report.and_then(|r| r.pid),
        "memory_bytes": usage.map(|u| u.memory_bytes),
        "cpu_seconds": usage.map(|u| (u.cpu_seconds * 100.0).round() / 100.0),
        "protocol_version": session.protocol_version(),
        "hosting": session.hosting().map(|h| h.to_string()),
    })
}

/// Asks every session's actor at once, then reads their sandboxes' usage from
/// `/proc` on a blocking thread.
async fn rows(sessions: Vec<SessionHandle>) -> Vec<(Value, Option<SessionReport>)> {
    let (reports, usages) = reports_and_usage(&sessions).await;
    sessions
        .iter()
        .zip(reports)
        .enumerate()
        .map(|(n, (session, report))| {
            let usage = usages.get(n).copied().flatten();
            (row(session, report.as_ref(), usage), report)
        })
        .collect()
}

/// The memory each server's live sessions' sandboxes use now, summed per server.
pub(super) async fn memory_by_server(
    sessions: &[SessionHandle],
) -> std::collections::HashMap<String, u64> {
    let (_, usages) = reports_and_usage(sessions).await;
    let mut sums = std::collections::HashMap::new();
    for (session, usage) in sessions.iter().zip(usages) {
        let bytes = usage.map_or(0, |u| u.memory_bytes);
        *sums.entry(session.server().to_string()).or_insert(0) += bytes;
    }
    sums
}

/// Each session's report (`None` if it did not answer) and its sandbox's usage.
async fn reports_and_usage(
    sessions: &[SessionHandle],
) -> (Vec<Option<SessionReport>>, Vec<Option<Usage>>) {
    let reports = futures_util::future::join_all(sessions.iter().map(|s| async {
        tokio::time::timeout(std::time::Duration::from_secs(2), s.describe())
            .await
            .ok()
            .flatten()
    }))
    .await;
    let probes: Vec<_> = reports
        .iter()
        .map(|r| r.as_ref().and_then(|r| r.usage.clone()))
        .collect();
    let usages = tokio::task::spawn_blocking(move || {
        probes
            .iter()
            .map(|p| p.as_ref().map(|p| p.read()))
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    (reports, usages)
}

fn bad_request(message: String) -> Response {
    (StatusCode::BAD_REQUEST, json(json!({ "error": message }))).into_response()
}

/// This node's sessions as the list shows them, oldest first (what a cluster node
/// publishes to the directory).
pub async fn session_rows(runtime: &Runtime) -> Vec<Value> {
    let mut sessions = runtime.sessions();
    sessions.sort_by_key(|s| s.created());
    rows(sessions)
        .await
        .into_iter()
        .map(|(row, _)| row)
        .collect()
}

pub(super) async fn list(
    State(state): State<AdminState>,
    filters: Result<Query<Filters>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Query(filters) = match filters {
        Ok(filters) => filters,
        Err(e) => return bad_request(e.body_text()),
    };
    if let Err(e) = filters.check() {
        return bad_request(e);
    }
    let mut rows = session_rows(&state.runtime).await;
    let mut answer = json!({});
    if let Some(cluster) = &state.cluster {
        for row in &mut rows {
            row["node"] = json!(cluster.node().as_str());
        }
        // The rest of the cluster as its nodes last published it; without the
        // directory, this node's own, saying the list is partial.
        match cluster.other_sessions().await {
            Ok(others) => rows.extend(others),
            Err(e) => answer["partial"] = json!(format!("only this node's sessions: {e}")),
        }
    }
    rows.retain(|row| filters.admits(row));
    answer["sessions"] = Value::Array(rows);
    json(answer)
}

fn not_found(id: &str, lookup: Lookup) -> Response {
    let message = match lookup {
        Lookup::Ended(reason) => format!("session {id} ended: {reason}"),
        _ => format!("no session {id}"),
    };
    (StatusCode::NOT_FOUND, json(json!({ "error": message }))).into_response()
}

/// The node `id` names as its owner, when that is another node of the cluster.
fn elsewhere(state: &AdminState, id: &str) -> Option<(Arc<dyn ClusterAdmin>, NodeId)> {
    let cluster = state.cluster.as_ref()?;
    let owner = state
        .runtime
        .config()
        .session_tokens
        .as_ref()?
        .open(id)
        .ok()?
        .node;
    (owner != *cluster.node()).then(|| (cluster.clone(), owner))
}

pub(super) async fn show(State(state): State<AdminState>, Path(id): Path<String>) -> Response {
    let session = match state.runtime.lookup(&id) {
        Lookup::Live(session) => session,
        other => {
            // Another node's session: its directory row (stderr and events stay there).
            if let Some((cluster, owner)) = elsewhere(&state, &id)
                && let Ok(rows) = cluster.other_sessions().await
                && let Some(mut row) = rows.into_iter().find(|r| r["id"].as_str() == Some(&id))
            {
                row["detail"] = json!(format!(
                    "this session lives on node {owner}: its stderr and events are on that node's admin API"
                ));
                return json(row);
            }
            return not_found(&id, other);
        }
    };
    let Some((mut row, report)) = rows(vec![session]).await.pop() else {
        return not_found(&id, Lookup::Unknown);
    };
    let (stderr, skipped, events) = report.map_or((Vec::new(), 0, Vec::new()), |r| {
        (r.stderr_tail, r.stdout_lines_skipped, r.events)
    });
    row["stderr"] = json!(stderr);
    row["stdout_lines_skipped"] = json!(skipped);
    row["events"] = json!(events);
    json(row)
}

pub(super) async fn stop(State(state): State<AdminState>, Path(id): Path<String>) -> Response {
    match state.runtime.lookup(&id) {
        Lookup::Live(session) => {
            tracing::info!(session = %id, "stopped by an operator");
            session.stop(EndReason::Stopped).await;
            StatusCode::NO_CONTENT.into_response()
        }
        other => match elsewhere(&state, &id) {
            // Told over the control channel; the owner stops it and answers nobody.
            Some((cluster, owner)) => match cluster.stop(owner.clone(), id.clone()).await {
                Ok(true) => {
                    tracing::info!(session = %id, node = %owner, "asked the owner node to stop a session");
                    let body = json!({ "status": "stopping", "node": owner.as_str() });
                    (StatusCode::ACCEPTED, json(body)).into_response()
                }
                Ok(false) => {
                    let error = format!("session {id} was on node {owner}, which is gone");
                    (StatusCode::NOT_FOUND, json(json!({ "error": error }))).into_response()
                }
                Err(e) => {
                    let error = format!("cannot reach node {owner} to stop session {id}: {e}");
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        json(json!({ "error": error })),
                    )
                        .into_response()
                }
            },
            None => not_found(&id, other),
        },
    }
}
