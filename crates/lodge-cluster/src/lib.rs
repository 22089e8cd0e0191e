//! Lodge's cluster mode, its pure parts: the session token every node can read (who
//! owns a session, for whom it was made), the cluster key file it is sealed with, the
//! hop header and routing decision of forwarding, and the live members as last seen.
//! The I/O (forwarding over HTTP, Redis) is at the edges: lodge-http and lodge.

mod hop;
mod keys;
mod members;
mod node;
mod token;

pub use hop::{HOP_HEADER, Hop, HopError, HopSigner, MAX_SKEW, Route, route};
pub use keys::{generate_key_file, rotate_key_file};
pub use members::{BadRecord, Member, Members};
pub use node::{NodeId, NodeIdError};
pub use token::{Forged, SessionToken, TokenCodec, principal_digest};
