//! The cluster's live nodes as this node last saw them: where each is reached and
//! whether it is draining. Filled from the membership heartbeats (I/O elsewhere);
//! read on every forwarded request, so it is a map behind a lock, never a network call.

use std::collections::HashMap;
use std::sync::RwLock;

use crate::node::NodeId;

/// One live node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub node: NodeId,
    /// `host:port` of its internal (node-to-node) listener.
    pub advertise: String,
    /// It takes no new sessions, but serves its live ones.
    pub draining: bool,
}

/// A heartbeat's value that is not `v1 ADVERTISE 0|1`.
#[derive(Debug, PartialEq, Eq)]
pub struct BadRecord;

/// Longest `host:port` accepted from a heartbeat (a DNS name is at most 253).
const MAX_ADVERTISE: usize = 261;

impl Member {
    /// The heartbeat value other nodes parse with [`Member::parse`].
    pub fn record(&self) -> String {
        format!("v1 {} {}", self.advertise, u8::from(self.draining))
    }

    pub fn parse(node: NodeId, record: &str) -> Result<Member, BadRecord> {
        let mut fields = record.split(' ');
        let (Some("v1"), Some(advertise), Some(draining), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(BadRecord);
        };
        let draining = match draining {
            "0" => false,
            "1" => true,
            _ => return Err(BadRecord),
        };
        if advertise.is_empty()
            || advertise.len() > MAX_ADVERTISE
            || !advertise.contains(':')
            || advertise.bytes().any(|b| b.is_ascii_control() || b == b'/')
        {
            return Err(BadRecord);
        }
        Ok(Member {
            node,
            advertise: advertise.to_string(),
            draining,
        })
    }
}

/// The live nodes, replaced whole on each membership refresh.
#[derive(Debug, Default)]
pub struct Members {
    live: RwLock<HashMap<NodeId, Member>>,
}

impl Members {
    pub fn replace(&self, members: impl IntoIterator<Item = Member>) {
        let map = members.into_iter().map(|m| (m.node.clone(), m)).collect();
        *self.live.write().unwrap_or_else(|p| p.into_inner()) = map;
    }

    pub fn get(&self, node: &NodeId) -> Option<Member> {
        self.read().get(node).cloned()
    }

    /// Every live node, by id.
    pub fn all(&self) -> Vec<Member> {
        let mut all: Vec<_> = self.read().values().cloned().collect();
        all.sort_by(|a, b| a.node.as_str().cmp(b.node.as_str()));
        all
    }

    /// A node other than `except` that takes new sessions, spreading picks by `spin`
    /// (any number that changes between calls).
    pub fn taking_sessions(&self, except: &NodeId, spin: usize) -> Option<Member> {
        let open: Vec<_> = self
            .all()
            .into_iter()
            .filter(|m| !m.draining && m.node != *except)
            .collect();
        match open.len() {
            0 => None,
            n => open.into_iter().nth(spin % n),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<NodeId, Member>> {
        self.live.read().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn node(id: &str) -> NodeId {
        NodeId::parse(id).unwrap()
    }

    #[test]
    fn a_record_round_trips_and_junk_is_refused() {
        let m = Member {
            node: node("a"),
            advertise: "10.0.0.1:8790".into(),
            draining: true,
        };
        assert_eq!(Member::parse(node("a"), &m.record()), Ok(m));
        for junk in [
            "",
            "v1",
            "v1 10.0.0.1:8790",
            "v2 10.0.0.1:8790 0",
            "v1 10.0.0.1:8790 2",
            "v1 10.0.0.1:8790 0 extra",
            "v1 nohost 0",
            "v1 a:1/path 0",
            &format!("v1 {}:1 0", "h".repeat(300)),
        ] {
            assert_eq!(Member::parse(node("a"), junk), Err(BadRecord), "{junk:?}");
        }
    }

    #[test]
    fn new_sessions_go_to_open_nodes_other_than_this_one() {
        let members = Members::default();
        let m = |id: &str, draining| Member {
            node: node(id),
            advertise: format!("{id}:1"),
            draining,
        };
        members.replace([m("a", false), m("b", true), m("c", false), m("d", false)]);
        let picks: Vec<_> = (0..4)
            .map(|spin| members.taking_sessions(&node("a"), spin).unwrap().node)
            .collect();
        assert_eq!(picks, [node("c"), node("d"), node("c"), node("d")]);
        members.replace([m("a", false), m("b", true)]);
        assert_eq!(members.taking_sessions(&node("a"), 0), None);
        assert_eq!(members.get(&node("b")).unwrap().advertise, "b:1");
        assert_eq!(members.get(&node("z")), None);
    }
}
