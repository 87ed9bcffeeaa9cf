//! suyuan-federation: the Handle client side of the node — talking to other Handle servers
//! (site selection, referrals, upstream top-level nodes, identities that live elsewhere and
//! the remote hops of a trace): the wire client, the transports behind one trait
//! ([`link::Link`]), and the walker through the hierarchy, which takes site sets and tries
//! their servers over each link in turn.
//!
//! It never contacts a server it was not given: there is no built-in root or top-level node.

pub mod client;
pub mod fedtls;
pub mod link;
pub mod quic;
pub mod session;
pub mod site;
pub mod walker;

pub use client::{ClientError, Credentials, HandleClient, KeptConnection, Transport};
pub use link::Link;
pub use session::{ClientSession, Exchange};
pub use site::server_for;
pub use walker::{Answer, Hops, Observer, ServedBy, WalkError, Walker, WalkerConfig};
