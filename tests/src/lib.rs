//! suyuan-tests: cross-crate interop tests — real nodes on real sockets, real third-party clients.
//!
//! Its tests arrive with the node itself (the wire-protocol issue); the crate exists so that the
//! workspace has one agreed home for them.
