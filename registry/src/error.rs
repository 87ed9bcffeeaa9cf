//! The registry's errors. Refusals carry the Handle response code a server answers with, and a
//! message that names the cause.

use suyuan_codec::message::rc;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// A request refused for what it asks (the handle exists, a template is violated, ...).
    #[error("{message} (RC {code})")]
    Refused { code: u32, message: String },
    /// The storage layer failed; nothing was acknowledged.
    #[error("storage error: {0}")]
    Storage(String),
    /// Another process holds the store.
    #[error("the store at {0} is in use by another process (is `suyuan serve` running?)")]
    Locked(String),
    /// The store was written by a newer Suyuan.
    #[error(
        "the store has schema version {found}, newer than this binary's {supported}: upgrade suyuan"
    )]
    SchemaTooNew { found: u32, supported: u32 },
    /// Stored bytes that do not decode: the store is damaged.
    #[error("corrupt store entry: {0}")]
    Corrupt(String),
    /// The writer thread is gone (the registry was closed).
    #[error("the registry is closed")]
    Closed,
}

impl RegistryError {
    pub fn refused(code: u32, message: impl Into<String>) -> Self {
        RegistryError::Refused {
            code,
            message: message.into(),
        }
    }

    /// The Handle response code for this error (RC 2 for failures that are not refusals).
    pub fn response_code(&self) -> u32 {
        match self {
            RegistryError::Refused { code, .. } => *code,
            _ => rc::ERROR,
        }
    }
}
