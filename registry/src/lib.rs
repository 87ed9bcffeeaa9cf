//! suyuan-registry: the store of identifier records and of the provenance graph their links
//! form. It knows nothing of networks.
//!
//! - [`kv`]: the ordered key-value layer and its backends (redb by default, sled behind the
//!   `sled` feature).
//! - [`store`]: the [`Store`] trait (the registry's operations as a backend does them) and the
//!   [`Registry`] every surface holds.
//! - [`rules`]: the one write path's rules, written once above every backend (create modes,
//!   value checks, templates, aliases, tombstones, the change).
//! - [`embedded`]: the store over the ordered key-value layer (group commits).
//! - [`sign`]: signed values on write (`HS_SIGNATURE` made in the write that stores the record).
//! - [`template`]: data templates and their validation.
//! - [`links`]: the provenance vocabulary; which values are links and aliases.
//! - [`trace`]: the trace engine, up (to sources) and down (to what a source fed).
//! - [`check`]: the derivation check (红绿码), formulas validated on write and recomputed
//!   on every trace.
//! - [`model`]: what is stored and its byte layouts.
//!
//! Time is passed in by callers; the registry has no clock.

pub mod check;
pub mod embedded;
pub mod error;
pub mod handlesql;
pub mod kv;
pub mod links;
pub mod log;
pub mod model;
pub mod postgres;
pub mod proof;
pub mod rules;
pub mod sign;
pub mod store;
pub mod template;
pub mod trace;

pub use error::RegistryError;
pub use model::{Change, ChangeOp, Identity, PrefixEntry, Record, Tombstone};
pub use rules::{Applied, CreateMode, Mutation, Write};
pub use store::{Committed, Registry, Store, Ticket, select_values};
pub use trace::{Direction, Trace, TraceQuery};
