//! suyuan-federation: the Handle client side of the node — talking to other Handle servers
//! (site selection, referrals, upstream top-level nodes, prefix homing and the remote hops of a
//! trace). For now it holds the wire client that `suyuan resolve` and the tests use; federation
//! proper builds on it.
//!
//! It never contacts a server it was not given: there is no built-in root or top-level node.

pub mod client;
pub mod session;
pub mod site;
pub mod walker;

pub use client::{ClientError, Credentials, HandleClient, KeptConnection, Transport};
pub use session::{ClientSession, Exchange};
pub use site::server_for;
pub use walker::{Answer, Hops, Observer, ServedBy, WalkError, Walker, WalkerConfig};
