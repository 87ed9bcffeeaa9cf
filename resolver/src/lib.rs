//! suyuan-resolver: the serving side of the node — Handle TCP/UDP, HTTP(S) REST, QUIC and DNS,
//! sessions, the cache and metrics.
//!
//! Filled in by the wire-protocol node issue; until then this crate only fixes its place in the
//! dependency graph.
