//! A cluster node's link to the others through Redis: its heartbeat (membership), the
//! session directory behind the admin list, the counts behind cluster-wide quotas, and
//! the control channel an admin stop on another node reaches it by.
//!
//! Redis is never on a message's path: forwarding reads the members this node last
//! heard ([`Members`]). With Redis down, sessions keep working, the admin list shows
//! this node's own, new sessions that a cluster limit applies to are refused (their
//! count cannot be checked), and `/readyz` says the node is degraded.
//!
//! Keys (all expire, so a dead node's vanish on their own):
//! - `lodge:node:ID`: `v1 ADVERTISE DRAINING`, for [`HEARTBEAT_TTL`];
//! - `lodge:sessions:ID`: hash, session id → its admin-list row (JSON);
//! - `lodge:load:ID`: hash, `all` and `q:SERVER:PRINCIPAL_DIGEST` → live sessions;
//! - channel `lodge:control:ID`: `stop SESSION_ID`.

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use lodge_cluster::{Member, Members, NodeId};
use lodge_runtime::{Admission, Admitting, EndReason, Lookup, Principal, Refused, Runtime};
use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

/// How often this node says it is alive and reads who else is.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// A node not heard from for this long is gone: its sessions answer 404.
const HEARTBEAT_TTL: Duration = Duration::from_secs(3);
/// The directory and the counts outlive a missed heartbeat or two.
const DIRECTORY_TTL: Duration = Duration::from_secs(6);
/// Every Redis command's deadline (connecting, or waiting for an answer): a Redis
/// that hangs is taken for down, and nothing waits on it longer.
const REDIS_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest directory row accepted from another node.
const MAX_ROW_BYTES: usize = 64 << 10;

const RESERVE: &str = r#"
local all, mine = 0, 0
for _, key in ipairs(KEYS) do
  all = all + tonumber(redis.call('HGET', key, 'all') or '0')
  mine = mine + tonumber(redis.call('HGET', key, ARGV[1]) or '0')
end
local principal_limit, cluster_limit = tonumber(ARGV[2]), tonumber(ARGV[3])
if cluster_limit > 0 and all >= cluster_limit then return {0, all} end
if principal_limit > 0 and mine >= principal_limit then return {1, mine} end
redis.call('HINCRBY', KEYS[1], 'all', 1)
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return {2, 0}
"#;

pub struct Coordinator {
    node: NodeId,
    advertise: String,
    redis_url: String,
    client: redis::Client,
    members: Arc<Members>,
    /// Cluster-wide live sessions allowed (0: no limit).
    max_sessions: u32,
    /// Set once the runtime exists (it holds this coordinator as its admission).
    runtime: OnceLock<Weak<Runtime>>,
    connection: Mutex<Option<MultiplexedConnection>>,
    /// Why Redis is taken for down, while it is.
    degraded: Mutex<Option<String>>,
    reserve: redis::Script,
}

impl std::fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coordinator")
            .field("node", &self.node)
            .field("redis", &self.redis_url)
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn node_key(node: &NodeId) -> String {
    format!("lodge:node:{node}")
}
fn sessions_key(node: &NodeId) -> String {
    format!("lodge:sessions:{node}")
}
fn load_key(node: &NodeId) -> String {
    format!("lodge:load:{node}")
}
fn control_channel(node: &NodeId) -> String {
    format!("lodge:control:{node}")
}

/// The load field counting `principal`'s sessions of `server`.
fn quota_field(server: &str, principal: &Principal) -> String {
    let digest = lodge_cluster::principal_digest(&principal.key());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("q:{server}:{hex}")
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Coordinator {
    pub fn new(settings: &lodge::config::ClusterSettings) -> anyhow::Result<Arc<Self>> {
        let client = redis::Client::open(settings.redis_url.as_str())
            .map_err(|e| anyhow::anyhow!("[cluster] redis_url {:?}: {e}", settings.redis_url))?;
        Ok(Arc::new(Coordinator {
            node: settings.node.clone(),
            advertise: settings.advertise.clone(),
            redis_url: settings.redis_url.clone(),
            client,
            members: Arc::new(Members::default()),
            max_sessions: settings.max_sessions.unwrap_or(0),
            runtime: OnceLock::new(),
            connection: Mutex::new(None),
            degraded: Mutex::new(Some("not connected yet".into())),
            reserve: redis::Script::new(RESERVE),
        }))
    }

    pub fn members(&self) -> &Arc<Members> {
        &self.members
    }

    /// Starts the heartbeat and the control channel's listener, which run until the
    /// runtime is dropped, and tries one heartbeat now so the first requests find
    /// the other nodes.
    pub async fn start(self: &Arc<Self>, runtime: &Arc<Runtime>) {
        let _ = self.runtime.set(Arc::downgrade(runtime));
        self.beat().await;
        tokio::spawn(heartbeat(Arc::downgrade(self)));
        tokio::spawn(control(Arc::downgrade(self)));
    }

    fn runtime(&self) -> Option<Arc<Runtime>> {
        self.runtime.get().and_then(Weak::upgrade)
    }

    async fn connection(&self) -> Result<MultiplexedConnection, String> {
        if let Some(connection) = lock(&self.connection).clone() {
            return Ok(connection);
        }
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT));
        let connection = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| e.to_string())?;
        *lock(&self.connection) = Some(connection.clone());
        Ok(connection)
    }

    /// Notes how the last exchange with Redis went, logging changes only.
    fn record<T>(&self, outcome: Result<T, String>) -> Result<T, String> {
        let mut degraded = lock(&self.degraded);
        match &outcome {
            Ok(_) if degraded.is_some() => {
                tracing::info!(redis = %self.redis_url, "connected to the cluster's Redis");
                *degraded = None;
            }
            Err(e) => {
                if degraded.is_none() {
                    tracing::warn!(redis = %self.redis_url, error = %e, "the cluster's Redis is unreachable: sessions keep working; new sessions under cluster limits are refused until it is back");
                }
                *lock(&self.connection) = None;
                *degraded = Some(format!("{} is unreachable: {e}", self.redis_url));
            }
            Ok(_) => {}
        }
        outcome
    }

    /// One heartbeat: this node's record, directory and counts, then who else lives.
    async fn beat(&self) {
        let Some(runtime) = self.runtime() else {
            return;
        };
        let outcome = self.publish(&runtime).await;
        if let Ok(members) = self.record(outcome) {
            self.members.replace(members);
        }
    }

    async fn publish(&self, runtime: &Runtime) -> Result<Vec<Member>, String> {
        let me = Member {
            node: self.node.clone(),
            advertise: self.advertise.clone(),
            draining: runtime.is_draining(),
        };
        let mut rows = lodge_http::session_rows(runtime).await;
        let mut load: HashMap<String, i64> = HashMap::new();
        for session in runtime.sessions() {
            *load
                .entry(quota_field(session.server(), session.owner()))
                .or_default() += 1;
        }
        load.insert("all".into(), runtime.live_sessions() as i64);
        let mut connection = self.connection().await?;
        let mut pipe = redis::pipe();
        pipe.atomic()
            .set_options(
                node_key(&self.node),
                me.record(),
                redis::SetOptions::default()
                    .with_expiration(redis::SetExpiry::PX(millis(HEARTBEAT_TTL))),
            )
            .ignore()
            .del(sessions_key(&self.node))
            .ignore();
        let entries: Vec<(String, String)> = rows
            .iter_mut()
            .filter_map(|row| {
                row["node"] = Value::from(self.node.as_str());
                Some((row["id"].as_str()?.to_string(), row.to_string()))
            })
            .collect();
        if !entries.is_empty() {
            pipe.hset_multiple(sessions_key(&self.node), &entries)
                .ignore()
                .pexpire(sessions_key(&self.node), millis(DIRECTORY_TTL) as i64)
                .ignore();
        }
        let counts: Vec<(String, i64)> = load.into_iter().collect();
        pipe.del(load_key(&self.node))
            .ignore()
            .hset_multiple(load_key(&self.node), &counts)
            .ignore()
            .pexpire(load_key(&self.node), millis(DIRECTORY_TTL) as i64)
            .ignore();
        let () = pipe
            .query_async(&mut connection)
            .await
            .map_err(|e| e.to_string())?;
        let keys: Vec<String> = {
            let mut scan = connection
                .scan_match::<_, String>("lodge:node:*")
                .await
                .map_err(|e| e.to_string())?;
            let mut keys = Vec::new();
            while let Some(key) = scan.next_item().await {
                keys.push(key.map_err(|e| e.to_string())?);
            }
            keys
        };
        if keys.is_empty() {
            return Ok(vec![me]);
        }
        let records: Vec<Option<String>> =
            connection.mget(&keys).await.map_err(|e| e.to_string())?;
        let members = keys
            .iter()
            .zip(records)
            .filter_map(|(key, record)| {
                let node = NodeId::parse(key.strip_prefix("lodge:node:")?).ok()?;
                Member::parse(node, &record?).ok()
            })
            .collect();
        Ok(members)
    }

    /// What to tell a client whose new session cannot be checked against the limits.
    fn unavailable(&self, e: &str) -> Refused {
        Refused::Unavailable(format!(
            "Lodge cannot check the cluster's session limits now (Redis: {e}); existing sessions are not affected; try again shortly"
        ))
    }
}

async fn heartbeat(coordinator: Weak<Coordinator>) {
    let mut every = tokio::time::interval(HEARTBEAT);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let Some(coordinator) = coordinator.upgrade() else {
            return;
        };
        if coordinator.runtime().is_none() {
            return;
        }
        coordinator.beat().await;
    }
}

/// Listens on this node's control channel, reconnecting while Redis is away.
async fn control(coordinator: Weak<Coordinator>) {
    loop {
        let Some(strong) = coordinator.upgrade() else {
            return;
        };
        let channel = control_channel(&strong.node);
        let subscribed = async {
            let mut pubsub = strong.client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        let pubsub = tokio::time::timeout(REDIS_TIMEOUT * 2, subscribed).await;
        drop(strong);
        if let Ok(Ok(pubsub)) = pubsub {
            let mut messages = pubsub.into_on_message();
            while let Some(message) = messages.next().await {
                let Some(coordinator) = coordinator.upgrade() else {
                    return;
                };
                let Ok(text) = message.get_payload::<String>() else {
                    continue;
                };
                if let (Some(id), Some(runtime)) =
                    (text.strip_prefix("stop "), coordinator.runtime())
                    && let Lookup::Live(session) = runtime.lookup(id)
                {
                    tracing::info!(session = %id, "stopped by an operator (through another node)");
                    tokio::spawn(async move { session.stop(EndReason::Stopped).await });
                }
            }
        }
        tokio::time::sleep(HEARTBEAT).await;
    }
}

impl Admission for Coordinator {
    fn admit<'a>(
        &'a self,
        server: &'a str,
        principal: &'a Principal,
        principal_limit: u32,
    ) -> Admitting<'a> {
        Box::pin(async move {
            if principal_limit == 0 && self.max_sessions == 0 {
                return Ok(());
            }
            let mut connection = self.connection().await.map_err(|e| self.unavailable(&e))?;
            let mut keys = vec![load_key(&self.node)];
            keys.extend(
                self.members
                    .all()
                    .iter()
                    .filter(|m| m.node != self.node)
                    .map(|m| load_key(&m.node)),
            );
            let mut invocation = self.reserve.prepare_invoke();
            for key in &keys {
                invocation.key(key);
            }
            invocation
                .arg(quota_field(server, principal))
                .arg(principal_limit)
                .arg(self.max_sessions)
                .arg(millis(DIRECTORY_TTL));
            let answer: Result<(u8, u64), String> = invocation
                .invoke_async(&mut connection)
                .await
                .map_err(|e| e.to_string());
            match self.record(answer).map_err(|e| self.unavailable(&e))? {
                (0, live) => Err(Refused::OverQuota(format!(
                    "the cluster is at its limit of {} live sessions ({live} live); try again later",
                    self.max_sessions
                ))),
                (1, live) => Err(Refused::OverQuota(format!(
                    "you already have {live} live sessions of this server across the cluster (quota max_sessions = {principal_limit}); end one or try again later"
                ))),
                _ => Ok(()),
            }
        })
    }

    fn release(&self, server: &str, principal: &Principal) {
        // Without a connection, the next heartbeat writes the counts afresh.
        let Some(mut connection) = lock(&self.connection).clone() else {
            return;
        };
        let (key, field) = (load_key(&self.node), quota_field(server, principal));
        tokio::spawn(async move {
            let mut pipe = redis::pipe();
            pipe.hincr(&key, "all", -1)
                .ignore()
                .hincr(&key, field, -1)
                .ignore();
            let _: Result<(), _> = pipe.query_async(&mut connection).await;
        });
    }
}

impl lodge_http::ClusterAdmin for Coordinator {
    fn node(&self) -> &NodeId {
        &self.node
    }

    fn other_sessions(&self) -> BoxFuture<'_, Result<Vec<Value>, String>> {
        Box::pin(async move {
            let mut connection = self.connection().await?;
            let mut rows = Vec::new();
            for member in self.members.all() {
                if member.node == self.node {
                    continue;
                }
                let texts: Vec<String> = connection
                    .hvals(sessions_key(&member.node))
                    .await
                    .map_err(|e| e.to_string())?;
                rows.extend(
                    texts
                        .iter()
                        .filter(|t| t.len() <= MAX_ROW_BYTES)
                        .filter_map(|t| serde_json::from_str::<Value>(t).ok()),
                );
            }
            rows.sort_by(|a, b| a["created_at"].as_str().cmp(&b["created_at"].as_str()));
            Ok(rows)
        })
    }

    fn stop(&self, owner: NodeId, session: String) -> BoxFuture<'_, Result<bool, String>> {
        Box::pin(async move {
            let mut connection = self.connection().await?;
            let heard: u64 = connection
                .publish(control_channel(&owner), format!("stop {session}"))
                .await
                .map_err(|e| e.to_string())?;
            Ok(heard > 0)
        })
    }

    fn degraded(&self) -> Option<String> {
        lock(&self.degraded).clone()
    }
}
