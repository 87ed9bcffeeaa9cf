//! suyuan-federation: the Handle client side of the node — site selection, referrals, upstream
//! top-level nodes, prefix homing and the remote hops of a trace.
//!
//! Transport code for talking to other nodes lives here, never in `suyuan-codec`. Filled in by the
//! federation work; until then this crate only fixes its place in the dependency graph.
