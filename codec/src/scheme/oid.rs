//! Object identifiers (ITU-T X.660, ISO/IEC 9834-1) in dot notation (`1.2.156.3000.1.1`) or as
//! a URN (`urn:oid:1.2.156.3000.1.1`, RFC 3061), with China's rules for registered OIDs
//! (GB/T 26231-2017 as the national OID guidance states them: the whole OID at most 100
//! bytes, no arc with a leading zero). The normal form, the alias key, is the dot notation.

use super::SchemeError;

/// The longest OID taken, in bytes of its dot notation.
pub const MAX_LEN: usize = 100;

fn bad(what: impl Into<String>) -> SchemeError {
    SchemeError::Oid(what.into())
}

/// An OID in its normal form.
pub fn parse(input: &str) -> Result<String, SchemeError> {
    let s = input.trim();
    let dotted = s
        .strip_prefix("urn:oid:")
        .or_else(|| s.strip_prefix("URN:OID:"))
        .unwrap_or(s);
    if dotted.len() > MAX_LEN {
        return Err(bad(format!(
            "an OID is at most {MAX_LEN} bytes (this one has {})",
            dotted.len()
        )));
    }
    let arcs: Vec<&str> = dotted.split('.').collect();
    if arcs.len() < 2 {
        return Err(bad(format!("{dotted:?}: an OID has at least two arcs")));
    }
    for (i, a) in arcs.iter().enumerate() {
        if a.is_empty() || !a.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad(format!(
                "{dotted:?}: arc {} ({a:?}) is not a decimal number",
                i + 1
            )));
        }
        if a.len() > 1 && a.starts_with('0') {
            return Err(bad(format!(
                "{dotted:?}: arc {} ({a}) has a leading zero",
                i + 1
            )));
        }
    }
    let first: u8 = match arcs[0] {
        "0" => 0,
        "1" => 1,
        "2" => 2,
        other => {
            return Err(bad(format!(
                "{dotted:?}: the first arc is 0, 1 or 2, not {other}"
            )));
        }
    };
    if first < 2 && arcs[1].parse::<u64>().map_or(true, |a| a > 39) {
        return Err(bad(format!(
            "{dotted:?}: under arc {first} the second arc is 0 to 39, not {}",
            arcs[1]
        )));
    }
    Ok(dotted.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oids_and_their_rules() {
        assert_eq!(
            parse("urn:oid:1.2.156.3000.1.1").unwrap(),
            "1.2.156.3000.1.1"
        );
        assert_eq!(parse(" 2.16.156.326 ").unwrap(), "2.16.156.326");
        assert_eq!(parse("2.999.1").unwrap(), "2.999.1");
        for (input, says) in [
            ("1.2.0156", "leading zero"),
            ("3.1", "first arc"),
            ("1.40.1", "second arc is 0 to 39"),
            ("1", "at least two arcs"),
            ("1..2", "not a decimal number"),
            ("1.2.x", "not a decimal number"),
        ] {
            let e = parse(input).unwrap_err().to_string();
            assert!(e.contains(says), "{input}: {e}");
        }
        let long = format!("1.2.{}", "1.".repeat(60));
        assert!(
            parse(long.trim_end_matches('.'))
                .unwrap_err()
                .to_string()
                .contains("100 bytes")
        );
    }
}
