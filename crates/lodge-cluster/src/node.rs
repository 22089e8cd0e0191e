//! A node's name in the cluster: unique and stable across restarts, because session
//! tokens carry it and other nodes route by it.

use std::fmt;
use std::sync::Arc;

/// The longest node id: it travels in every session token.
pub const MAX_NODE_ID: usize = 63;

#[derive(Clone, PartialEq, Eq, Hash)]
pub struct NodeId(Arc<str>);

#[derive(Debug, PartialEq, Eq)]
pub struct NodeIdError;

impl fmt::Display for NodeIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a node id is 1 to {MAX_NODE_ID} letters, digits, `.`, `-` or `_` \
             (a Kubernetes pod name such as `lodge-0` fits)"
        )
    }
}

impl std::error::Error for NodeIdError {}

impl NodeId {
    pub fn parse(id: &str) -> Result<Self, NodeIdError> {
        let valid = !id.is_empty()
            && id.len() <= MAX_NODE_ID
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
        match valid {
            true => Ok(NodeId(id.into())),
            false => Err(NodeIdError),
        }
    }

    /// The id of a Lodge that runs alone.
    pub fn single() -> Self {
        NodeId("local".into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_are_short_and_plain() {
        for good in ["a", "lodge-0", "node_1.eu", &"x".repeat(MAX_NODE_ID)] {
            assert_eq!(NodeId::parse(good).map(|n| n.to_string()), Ok(good.into()));
        }
        for bad in ["", "a b", "é", "a/b", &"x".repeat(MAX_NODE_ID + 1)] {
            assert_eq!(NodeId::parse(bad), Err(NodeIdError), "{bad:?}");
        }
    }
}
