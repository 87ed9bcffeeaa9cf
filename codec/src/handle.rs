//! Handle identifiers: `prefix/suffix`, split at the first slash, with the `0.NA/` prefix
//! handles, derived-prefix parents and the ASCII case folding the reference server uses for
//! storage keys (`case_sensitive = no`).

use std::fmt;

use crate::error::HandleError;

/// The naming-authority prefix under which prefix handles live (`0.NA/P` describes prefix `P`).
pub const NA_PREFIX: &str = "0.NA";

/// Longest handle we accept, in bytes. The wire allows far more, but nothing legitimate comes
/// near this and a cap keeps keys and logs bounded.
pub const MAX_HANDLE_LEN: usize = 4096;

/// A syntactically valid handle, kept as it was spelled.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Handle {
    text: String,
    slash: usize,
}

impl Handle {
    /// Parses `prefix/suffix`. The suffix may be empty (as in `P/` for minting) and may contain
    /// further slashes; the prefix may not be empty. Control characters are refused: they are
    /// never part of a legitimate identifier and would poison logs and keys.
    pub fn parse(text: &str) -> Result<Self, HandleError> {
        if text.is_empty() {
            return Err(HandleError::Empty);
        }
        if text.len() > MAX_HANDLE_LEN {
            return Err(HandleError::TooLong {
                len: text.len(),
                max: MAX_HANDLE_LEN,
            });
        }
        if text.chars().any(char::is_control) {
            return Err(HandleError::ControlChar(text.to_string()));
        }
        let slash = text
            .find('/')
            .ok_or_else(|| HandleError::NoSlash(text.to_string()))?;
        if slash == 0 {
            return Err(HandleError::EmptyPrefix(text.to_string()));
        }
        Ok(Handle {
            text: text.to_string(),
            slash,
        })
    }

    /// Parses raw wire bytes, which must be UTF-8.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, HandleError> {
        let s = std::str::from_utf8(bytes).map_err(|_| HandleError::InvalidUtf8)?;
        Self::parse(s)
    }

    /// Parses what a Handle client may send where a handle is expected: a slash-less `P`
    /// means the prefix handle `0.NA/P`, as `Util.getZeroNAHandle` does.
    pub fn parse_lenient(text: &str) -> Result<Self, HandleError> {
        if !text.is_empty() && !text.contains('/') {
            return Self::parse(&format!("{NA_PREFIX}/{text}"));
        }
        Self::parse(text)
    }

    /// The prefix handle `0.NA/P` that describes prefix `P`.
    pub fn for_prefix(prefix: &str) -> Result<Self, HandleError> {
        Self::parse(&format!("{NA_PREFIX}/{prefix}"))
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn prefix(&self) -> &str {
        &self.text[..self.slash]
    }

    pub fn suffix(&self) -> &str {
        &self.text[self.slash + 1..]
    }

    /// True for `0.NA/P` (ASCII case-insensitive on `0.NA`).
    pub fn is_prefix_handle(&self) -> bool {
        self.prefix().eq_ignore_ascii_case(NA_PREFIX)
    }

    /// For `0.NA/P`, the prefix `P` it describes.
    pub fn described_prefix(&self) -> Option<&str> {
        self.is_prefix_handle().then(|| self.suffix())
    }

    /// The storage key: the whole handle ASCII-upper-cased (no Unicode folding), as the
    /// reference server stores handles when `case_sensitive = no`.
    pub fn key(&self) -> String {
        key_of(&self.text)
    }

    /// True when both name the same handle under ASCII case folding.
    pub fn same_as(&self, other: &Handle) -> bool {
        self.text.eq_ignore_ascii_case(&other.text)
    }
}

/// ASCII-upper-case fold used for storage keys and comparisons.
pub fn key_of(s: &str) -> String {
    s.to_ascii_uppercase()
}

/// The parent of a derived prefix: `10.978.8896471` → `10.978` → `10`; `None` for a top-level
/// prefix. Mirrors `Util.getParentNAOfNAHandle`, on the prefix itself (no `0.NA/`).
pub fn parent_prefix(prefix: &str) -> Option<&str> {
    prefix
        .rfind('.')
        .map(|i| &prefix[..i])
        .filter(|p| !p.is_empty())
}

impl fmt::Display for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Handle({:?})", self.text)
    }
}

impl std::str::FromStr for Handle {
    type Err = HandleError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Handle::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_at_first_slash() {
        let h = Handle::parse("88.118.8/meter/0001").unwrap();
        assert_eq!(h.prefix(), "88.118.8");
        assert_eq!(h.suffix(), "meter/0001");
    }

    #[test]
    fn refuses_bad_syntax() {
        assert_eq!(Handle::parse(""), Err(HandleError::Empty));
        assert!(matches!(Handle::parse("abc"), Err(HandleError::NoSlash(_))));
        assert!(matches!(
            Handle::parse("/abc"),
            Err(HandleError::EmptyPrefix(_))
        ));
        assert!(matches!(
            Handle::parse("a/b\nc"),
            Err(HandleError::ControlChar(_))
        ));
        assert_eq!(
            Handle::from_bytes(&[b'a', b'/', 0xff]),
            Err(HandleError::InvalidUtf8)
        );
        let long = format!("p/{}", "x".repeat(MAX_HANDLE_LEN));
        assert!(matches!(
            Handle::parse(&long),
            Err(HandleError::TooLong { .. })
        ));
    }

    #[test]
    fn prefix_handles() {
        let h = Handle::parse_lenient("88.118.8").unwrap();
        assert_eq!(h.as_str(), "0.NA/88.118.8");
        assert!(h.is_prefix_handle());
        assert_eq!(h.described_prefix(), Some("88.118.8"));
        assert!(Handle::parse("0.na/12345").unwrap().is_prefix_handle());
        assert!(!Handle::parse("12345/x").unwrap().is_prefix_handle());
    }

    #[test]
    fn keys_fold_ascii_only() {
        let a = Handle::parse("12345/Test1").unwrap();
        let b = Handle::parse("12345/TEST1").unwrap();
        assert_eq!(a.key(), "12345/TEST1");
        assert!(a.same_as(&b));
        // Non-ASCII letters are not folded, as in the reference server.
        assert_eq!(key_of("p/ä"), "P/ä");
    }

    #[test]
    fn derived_prefix_parents() {
        assert_eq!(parent_prefix("10.978.8896471"), Some("10.978"));
        assert_eq!(parent_prefix("10.978"), Some("10"));
        assert_eq!(parent_prefix("10"), None);
        assert_eq!(parent_prefix("88.118.8"), Some("88.118"));
    }
}
