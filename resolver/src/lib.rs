//! suyuan-resolver: the serving side of the node — Handle TCP/UDP, HTTP(S) (REST, the redirect
//! face, traces, the transparency log), sessions, the cache and metrics; node-to-node QUIC
//! ([`quic`]); DNS as its issue lands.
//!
//! Transports decode bytes with `suyuan-codec`, answer what cannot be decoded the way the
//! reference server does ([`frontline`]), and hand requests to a [`service::Service`]. Service
//! hygiene lives here, once for every service: connection limits, timeouts, accept backoff,
//! UDP answer budgets and graceful shutdown.

pub mod budget;
pub mod catalog;
pub mod challenge;
pub mod cors;
pub mod frontline;
pub mod http;
pub mod listen;
pub mod node;
pub mod ops;
pub mod quic;
pub mod redirect;
pub mod rest;
pub mod service;
pub mod session;
pub mod signing;
pub mod tcp;
pub mod tls;
pub mod trace;
pub mod transparency;
pub mod udp;
pub mod witness;

pub use service::{Limits, Reply, Request, Service};
