//! Lodge's cluster mode. Today: the session token every node can read (who owns a
//! session, for whom it was made), the cluster key file it is sealed with, and the
//! hop header and routing decision forwarding between nodes will use.

mod hop;
mod keys;
mod node;
mod token;

pub use hop::{HOP_HEADER, Hop, HopError, HopSigner, MAX_SKEW, Route, route};
pub use keys::{generate_key_file, rotate_key_file};
pub use node::{NodeId, NodeIdError};
pub use token::{Forged, SessionToken, TokenCodec, principal_digest};
