//! Cluster mode: a request for a session another node owns is streamed to that node's
//! internal listener and its answer streamed back, bodies and SSE alike, over pooled,
//! kept-alive connections. The owner serves it exactly as if the client had come to
//! it (same config, same checks, same credentials); the hop header proves the request
//! came from a node of this cluster, and the loop guard stops it going further.
//!
//! Which node owns a session is read from its id (a sealed token), and where that node
//! is from the members last heard (no lookup on the way). Requests that name no
//! session stay here, except on a draining node, which sends new sessions to an open one.

use crate::errors::{FrontError, HttpError};
use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri, header};
use axum::response::Response;
use bytes::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use lodge_cluster::{HOP_HEADER, HopSigner, Member, Members, NodeId, Route, TokenCodec};
use lodge_proto::headers::{LODGE_SESSION_ID, MCP_PROTOCOL_VERSION, MCP_SESSION_ID};
use lodge_runtime::Runtime;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

/// How long a connection to another node may take: a live node on the same network
/// answers in well under it, so past it the node is taken for gone.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Kept-alive connections to each node between requests.
const IDLE_PER_NODE: usize = 64;

/// This node's part of the cluster, for the front.
pub struct Cluster {
    node: NodeId,
    tokens: TokenCodec,
    hop: HopSigner,
    members: Arc<Members>,
    client: Client<HttpConnector, Body>,
    spin: AtomicUsize,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").field("node", &self.node).finish()
    }
}

/// Where the front sends a request.
pub(crate) enum Destination {
    Here,
    /// To this node, signed for the session it names ("" for none).
    There(Member, String),
}

impl Cluster {
    pub fn new(tokens: TokenCodec, hop: HopSigner, members: Arc<Members>) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        connector.set_nodelay(true);
        connector.set_keepalive(Some(Duration::from_secs(30)));
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(IDLE_PER_NODE)
            .build(connector);
        Cluster {
            node: tokens.node().clone(),
            tokens,
            hop,
            members,
            client,
            spin: AtomicUsize::new(0),
        }
    }

    pub fn node(&self) -> &NodeId {
        &self.node
    }

    pub fn members(&self) -> &Arc<Members> {
        &self.members
    }

    /// Where a request goes, and its body back (read only for a 2026-07-28 request
    /// that names no session: its `requestState` may name one).
    ///
    /// On the internal listener (`internal`), every request must carry a hop header
    /// from a node of this cluster, and is served here or refused.
    pub(crate) async fn route(
        &self,
        runtime: &Runtime,
        method: &Method,
        headers: &HeaderMap,
        body: Body,
        internal: bool,
        read_body: impl AsyncFnOnce(Body) -> Result<Bytes, FrontError>,
    ) -> Result<(Destination, Body), HttpError> {
        let named = session_header(headers).unwrap_or("");
        let hop = match internal {
            true => {
                let header = headers
                    .get(HOP_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                let hop = self
                    .hop
                    .verify(header, method.as_str(), named, SystemTime::now())
                    .map_err(FrontError::HopRefused)?;
                Some(hop)
            }
            false => None,
        };
        if !named.is_empty() {
            return Ok((self.to_owner(named, named, hop.as_ref())?, body));
        }
        if internal || method != Method::POST {
            return Ok((Destination::Here, body));
        }
        let mut body = body;
        if is_modern(headers) {
            let bytes = read_body(body).await?;
            if let Some(session) = request_state_session(runtime, &bytes) {
                return Ok((self.to_owner(&session, "", None)?, Body::from(bytes)));
            }
            body = Body::from(bytes);
        }
        // A draining node starts no session: someone else does.
        if runtime.is_draining() {
            let spin = self.spin.fetch_add(1, Ordering::Relaxed);
            if let Some(open) = self.members.taking_sessions(&self.node, spin) {
                return Ok((Destination::There(open, String::new()), body));
            }
        }
        Ok((Destination::Here, body))
    }

    /// The owner of `session`: here, or the live node to forward to, signing the hop
    /// for `signed` (the session header the owner will see).
    fn to_owner(
        &self,
        session: &str,
        signed: &str,
        hop: Option<&lodge_cluster::Hop>,
    ) -> Result<Destination, FrontError> {
        // A text that opens as no token is no session anywhere: the runtime's lookup
        // answers it 404 here, without asking another node.
        let Ok(token) = self.tokens.open(session) else {
            return Ok(Destination::Here);
        };
        match lodge_cluster::route(&token, &self.node, hop) {
            Route::Here => Ok(Destination::Here),
            Route::Loop => Err(FrontError::ForwardLoop {
                owner: token.node.to_string(),
                here: self.node.to_string(),
            }),
            Route::Forward(owner) => match self.members.get(&owner) {
                Some(member) => Ok(Destination::There(member, signed.to_string())),
                None => Err(FrontError::NodeGone(owner.to_string())),
            },
        }
    }

    /// Sends the request on to `to` and streams its answer back.
    pub(crate) async fn forward(
        &self,
        to: Member,
        signed_session: &str,
        method: Method,
        uri: &Uri,
        mut headers: HeaderMap,
        body: Body,
    ) -> Result<Response, FrontError> {
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let target: Uri = format!("http://{}{path}", to.advertise)
            .parse()
            .map_err(|e| FrontError::OwnerFailed {
                owner: to.node.to_string(),
                why: format!(
                    "its advertised address {:?} is not usable: {e}",
                    to.advertise
                ),
            })?;
        strip_hop_by_hop(&mut headers);
        let hop = self
            .hop
            .sign(method.as_str(), signed_session, SystemTime::now());
        if let Ok(value) = HeaderValue::from_str(&hop) {
            headers.insert(HeaderName::from_static(HOP_HEADER), value);
        }
        let mut request = Request::new(body);
        *request.method_mut() = method;
        *request.uri_mut() = target;
        *request.headers_mut() = headers;
        let answer = self.client.request(request).await.map_err(|e| {
            if e.is_connect() {
                tracing::warn!(node = %to.node, error = %e, "cannot reach a session's owner node");
                FrontError::NodeGone(to.node.to_string())
            } else {
                FrontError::OwnerFailed {
                    owner: to.node.to_string(),
                    why: e.to_string(),
                }
            }
        })?;
        let (mut parts, incoming) = answer.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        Ok(Response::from_parts(parts, Body::new(incoming)))
    }
}

/// The session a request names in its headers.
fn session_header(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(MCP_SESSION_ID)
        .or_else(|| headers.get(LODGE_SESSION_ID))
        .and_then(|v| v.to_str().ok())
}

fn is_modern(headers: &HeaderMap) -> bool {
    headers
        .get(MCP_PROTOCOL_VERSION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| !lodge_proto::version::is_legacy(v))
}

/// The session a 2026-07-28 retry's Lodge `requestState` continues in, if it has one.
fn request_state_session(runtime: &Runtime, body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Peek {
        params: Option<Params>,
    }
    #[derive(serde::Deserialize)]
    struct Params {
        #[serde(rename = "requestState")]
        request_state: Option<String>,
    }
    let state = serde_json::from_slice::<Peek>(body)
        .ok()?
        .params?
        .request_state?;
    runtime.open_request_state(&state).ok()?.map(|s| s.session)
}

/// Headers that describe one connection, not the request (RFC 9110 §7.6.1), and the
/// hop header a client might have sent: never passed on.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        header::CONNECTION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        header::PROXY_AUTHORIZATION,
        header::PROXY_AUTHENTICATE,
    ] {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
    headers.remove(HOP_HEADER);
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn connection_headers_and_a_clients_hop_header_are_not_passed_on() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-private"),
        );
        h.insert("x-private", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(HOP_HEADER, HeaderValue::from_static("a 1 k.x"));
        h.insert(MCP_SESSION_ID, HeaderValue::from_static("k1.abc"));
        h.insert(header::HOST, HeaderValue::from_static("lodge.example"));
        strip_hop_by_hop(&mut h);
        let mut left: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, ["host", "mcp-session-id"]);
    }
}
