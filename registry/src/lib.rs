//! suyuan-registry: the store of identifier records and of the provenance graph their links form.
//!
//! It knows nothing of networks: records, prefixes, templates, the link index, the change log and
//! the trace engine live here behind a `Store` trait (see ARCHITECTURE.md). Filled in by the
//! registry issue; until then this crate only fixes its place in the dependency graph.
