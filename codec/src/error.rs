//! Error types of the codec layer: one for identifier syntax, one for decoding bytes.

/// Why an identifier was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandleError {
    #[error("handle is empty")]
    Empty,
    #[error("handle {0:?} has no '/' separating prefix and suffix")]
    NoSlash(String),
    #[error("handle {0:?} has an empty prefix")]
    EmptyPrefix(String),
    #[error("handle is not valid UTF-8")]
    InvalidUtf8,
    #[error("handle is {len} bytes long, more than the {max} allowed")]
    TooLong { len: usize, max: usize },
    #[error("handle {0:?} contains a control character")]
    ControlChar(String),
}

/// Why a byte string could not be decoded. Decoders return this instead of panicking, and never
/// allocate more than the input's own length allows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    #[error("truncated: {what} needs {needed} bytes, only {available} left")]
    Truncated {
        what: &'static str,
        needed: usize,
        available: usize,
    },
    #[error("{what}: length {len} exceeds the limit of {max}")]
    TooLong {
        what: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{what}: count {count} cannot fit in the {available} bytes left")]
    CountTooLarge {
        what: &'static str,
        count: usize,
        available: usize,
    },
    #[error("{what} is not valid UTF-8")]
    InvalidUtf8 { what: &'static str },
    #[error("{what}: {trailing} unexpected trailing bytes")]
    TrailingBytes { what: &'static str, trailing: usize },
    #[error("unknown opcode {0}")]
    UnknownOpCode(u32),
    #[error("invalid {what}: {why}")]
    Invalid { what: &'static str, why: String },
}

impl DecodeError {
    pub(crate) fn invalid(what: &'static str, why: impl Into<String>) -> Self {
        DecodeError::Invalid {
            what,
            why: why.into(),
        }
    }
}
