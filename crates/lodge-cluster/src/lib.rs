//! Lodge's cluster mode. Today: the session token every node can read (who owns a
//! session, for whom it was made) and the cluster key file it is sealed with.

mod keys;
mod node;
mod token;

pub use keys::{generate_key_file, rotate_key_file};
pub use node::{NodeId, NodeIdError};
pub use token::{Forged, SessionToken, TokenCodec, principal_digest};
