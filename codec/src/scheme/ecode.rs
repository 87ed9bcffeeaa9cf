//! Ecodes (GB/T 31866, the national product identification code): a version digit `V`, a
//! number-system identifier `NSI` (编码体系标识) and the master data `MD` (主码).
//!
//! What is implemented, and from which text (the standard itself is not public; see
//! docs/identifiers.md):
//! - **V1**: `1`, then 4 digits of NSI, then 1 to 20 digits of MD (at most 25 digits), as the
//!   public summaries of GB/T 31866-2015 and GB/T 38662-2020 give it. Normal form: the digits.
//! - **V0** is reserved by GB/T 31866-2023 for GS1 compatibility; no public text gives its
//!   layout, so it is refused with a message saying to bind the GS1 key (`id.gs1`) instead.
//! - Any other version is refused as unknown.

use super::SchemeError;

fn bad(what: impl Into<String>) -> SchemeError {
    SchemeError::Ecode(what.into())
}

/// An Ecode in its normal form.
pub fn parse(input: &str) -> Result<String, SchemeError> {
    let s = input.trim();
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad(format!("{s:?}: an Ecode is digits only")));
    }
    match s.as_bytes()[0] {
        b'1' => {
            if !(6..=25).contains(&s.len()) {
                return Err(bad(format!(
                    "{s}: a V1 Ecode is 1, 4 digits of number system and 1 to 20 of master data (6 to 25 digits; this has {})",
                    s.len()
                )));
            }
            Ok(s.to_string())
        }
        b'0' => Err(bad(format!(
            "{s}: V0 Ecodes (GS1-compatible) are not read here, since no public text gives their layout; bind the GS1 key with id.gs1"
        ))),
        v => Err(bad(format!(
            "{s}: Ecode version {} is not one this node reads (V1)",
            char::from(v)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_is_read_and_other_versions_refused() {
        assert_eq!(parse(" 100011234567890 ").unwrap(), "100011234567890");
        for (input, says) in [
            ("10001", "6 to 25 digits"),
            ("10001123456789012345678901", "6 to 25 digits"),
            ("0690123456789", "V0"),
            ("2000112345", "version 2"),
            ("1000A", "digits only"),
        ] {
            let e = parse(input).unwrap_err().to_string();
            assert!(e.contains(says), "{input}: {e}");
        }
    }
}
