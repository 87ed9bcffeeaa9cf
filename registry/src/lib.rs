//! suyuan-registry: the store of identifier records and of the provenance graph their links
//! form. It knows nothing of networks.
//!
//! - [`kv`]: the ordered key-value layer and its backends (redb by default, sled behind the
//!   `sled` feature).
//! - [`store`]: the [`Registry`]: records, prefixes, the one write path (group commits, the
//!   change log, the reverse link index, the alias index), reads and paging.
//! - [`template`]: data templates and their validation.
//! - [`links`]: the provenance vocabulary; which values are links and aliases.
//! - [`trace`]: the trace engine, up (to sources) and down (to what a source fed).
//! - [`model`]: what is stored and its byte layouts.
//!
//! Time is passed in by callers; the registry has no clock.

pub mod error;
pub mod kv;
pub mod links;
pub mod model;
pub mod store;
pub mod template;
pub mod trace;

pub use error::RegistryError;
pub use model::{Change, ChangeOp, Identity, PrefixEntry, Record, Tombstone};
pub use store::{Applied, CreateMode, Mutation, Registry, Ticket, Write, select_values};
pub use trace::{Direction, Trace, TraceQuery};
