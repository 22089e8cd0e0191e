//! The admin API in cluster mode: the session list covers every node (from the
//! directory the nodes publish), a stop reaches the session's owner, and readiness
//! tells when the cluster's store is unreachable. `lodge` implements [`ClusterAdmin`]
//! over Redis.

use futures_util::future::BoxFuture;
use lodge_cluster::NodeId;
use serde_json::Value;

/// What the admin API asks of the rest of the cluster.
pub trait ClusterAdmin: Send + Sync + 'static {
    /// This node's id.
    fn node(&self) -> &NodeId;

    /// The sessions every other live node last published (rows as `GET
    /// /admin/sessions` shows them, each with its `node`).
    fn other_sessions(&self) -> BoxFuture<'_, Result<Vec<Value>, String>>;

    /// Asks `owner` to stop `session`; `Ok(false)` when no node of that id listens.
    fn stop(&self, owner: NodeId, session: String) -> BoxFuture<'_, Result<bool, String>>;

    /// `None` while the cluster's store answers; else what is wrong with it.
    fn degraded(&self) -> Option<String>;
}
