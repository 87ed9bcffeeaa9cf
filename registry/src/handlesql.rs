//! The row layout of the Handle.Net reference server's SQL storage, so that the reference server
//! and Suyuan can keep their handles in one database and each read what the other wrote.
//!
//! The reference keeps one row per handle value in `handles` and one row per homed prefix in
//! `nas`. How it fills them (checked against a 9.3.1 server writing through GenericBatch and
//! REST, and reading rows inserted by hand):
//!
//! - `handle`: the handle's UTF-8 bytes, ASCII letters upper-cased (only `a`-`z`; `ß` or `é`
//!   are left alone) unless the server runs with `case_sensitive` on. Lookups upper-case the
//!   same way, so a row whose key has a lower-case ASCII letter is never found.
//! - `idx`, `ttl`: the value's index and TTL as signed 32-bit integers. The reference refuses
//!   indexes that are not positive, so only 1..=2^31-1 are ever written.
//! - `type`, `data`: the type's UTF-8 bytes and the data exactly as on the wire.
//! - `ttl_type`: the wire byte read as a signed byte (0 relative, 1 absolute, 200 as -56).
//! - `timestamp`: epoch seconds, the wire's unsigned 32 bits read as signed.
//! - `refs`: the value's references as `index:handle` joined by tabs; in each handle `\`, tab,
//!   line feed and carriage return are written `\\`, `\t`, `\n`, `\r`; then, over the whole
//!   text, every UTF-16 unit below 0x20, at or above 0x7F, and `%` is written `%XXXX` (four
//!   upper-case hex digits), so the separating tab is `%0009` and a character beyond the BMP is
//!   two escapes. No references: the empty string.
//! - `admin_read`, `admin_write`, `pub_read`, `pub_write`: the permission bits.
//! - `nas.na`: `0.NA/` and the prefix, all ASCII letters upper-cased whatever `case_sensitive`.
//!
//! A NULL column reads, as in the reference, as empty bytes, no references, 0 or false: map NULL
//! so when fetching.

use suyuan_codec::message::rc;
use suyuan_codec::value::{HandleValue, Permissions, TtlType, ValueReference};

use crate::error::RegistryError;

/// One row of `handles`, column for column.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HandleRow {
    pub handle: Vec<u8>,
    pub idx: i32,
    /// The `type` column.
    pub value_type: Vec<u8>,
    pub data: Vec<u8>,
    pub ttl_type: i16,
    pub ttl: i32,
    pub timestamp: i32,
    pub refs: String,
    pub admin_read: bool,
    pub admin_write: bool,
    pub pub_read: bool,
    pub pub_write: bool,
}

/// Why a value cannot be written as a row, or a row read as a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandleSqlError {
    /// The column is a signed 32-bit integer and the reference takes only positive indexes.
    #[error("value index {0} cannot be stored: indexes must be 1 to 2147483647")]
    ValueIndex(u32),
    #[error("row index {0} is not a positive value index")]
    RowIndex(i32),
    #[error("row ttl_type {0} is not a byte")]
    TtlType(i16),
    #[error("row type is not UTF-8")]
    Type,
    #[error("row refs {refs:?}: {why}")]
    Refs { refs: String, why: &'static str },
}

impl From<HandleSqlError> for RegistryError {
    fn from(e: HandleSqlError) -> Self {
        match e {
            HandleSqlError::ValueIndex(_) => {
                RegistryError::refused(rc::INVALID_VALUE, e.to_string())
            }
            _ => RegistryError::Corrupt(e.to_string()),
        }
    }
}

/// The `handle` column for a handle: ASCII letters upper-cased unless `case_sensitive`.
pub fn handle_key(handle: &str, case_sensitive: bool) -> Vec<u8> {
    if case_sensitive {
        handle.as_bytes().to_vec()
    } else {
        handle.as_bytes().to_ascii_uppercase()
    }
}

/// The `nas` row of a prefix: `0.NA/PREFIX` upper-cased. A prefix given with a slash (already
/// `0.NA/...`) is taken as the prefix handle itself, as the reference does.
pub fn na_row(prefix: &str) -> Vec<u8> {
    let na = if prefix.contains('/') {
        prefix.to_string()
    } else {
        format!("0.NA/{prefix}")
    };
    na.into_bytes().to_ascii_uppercase()
}

impl HandleRow {
    /// The row of `value` under the `handle` column `key` (see [`handle_key`]).
    pub fn from_value(key: &[u8], value: &HandleValue) -> Result<Self, HandleSqlError> {
        let idx = i32::try_from(value.index)
            .ok()
            .filter(|i| *i > 0)
            .ok_or(HandleSqlError::ValueIndex(value.index))?;
        let p = value.permissions;
        Ok(HandleRow {
            handle: key.to_vec(),
            idx,
            value_type: value.value_type.as_bytes().to_vec(),
            data: value.data.clone(),
            ttl_type: i16::from(value.ttl_type.to_u8() as i8),
            ttl: value.ttl,
            timestamp: value.timestamp as i32,
            refs: encode_refs(&value.references),
            admin_read: p.admin_read(),
            admin_write: p.admin_write(),
            pub_read: p.public_read(),
            pub_write: p.public_write(),
        })
    }

    /// The value this row holds.
    pub fn to_value(&self) -> Result<HandleValue, HandleSqlError> {
        if self.idx <= 0 {
            return Err(HandleSqlError::RowIndex(self.idx));
        }
        let ttl_type =
            i8::try_from(self.ttl_type).map_err(|_| HandleSqlError::TtlType(self.ttl_type))?;
        let value_type =
            String::from_utf8(self.value_type.clone()).map_err(|_| HandleSqlError::Type)?;
        let mut bits = 0;
        for (set, bit) in [
            (self.admin_read, Permissions::ADMIN_READ),
            (self.admin_write, Permissions::ADMIN_WRITE),
            (self.pub_read, Permissions::PUBLIC_READ),
            (self.pub_write, Permissions::PUBLIC_WRITE),
        ] {
            if set {
                bits |= bit;
            }
        }
        Ok(HandleValue {
            index: self.idx as u32,
            timestamp: self.timestamp as u32,
            ttl_type: TtlType::from_u8(ttl_type as u8),
            ttl: self.ttl,
            permissions: Permissions(bits),
            value_type,
            data: self.data.clone(),
            references: decode_refs(&self.refs)?,
        })
    }
}

/// The `refs` text of a value's references.
pub fn encode_refs(refs: &[ValueReference]) -> String {
    let mut plain = String::new();
    for (i, r) in refs.iter().enumerate() {
        if i > 0 {
            plain.push('\t');
        }
        // The reference holds indexes in a Java int and prints them signed.
        plain.push_str(&(r.index as i32).to_string());
        plain.push(':');
        for c in r.handle.chars() {
            match c {
                '\t' => plain.push_str("\\t"),
                '\n' => plain.push_str("\\n"),
                '\r' => plain.push_str("\\r"),
                '\\' => plain.push_str("\\\\"),
                c => plain.push(c),
            }
        }
    }
    let mut out = String::with_capacity(plain.len());
    let mut units = [0u16; 2];
    for c in plain.chars() {
        if !(' '..'\u{7f}').contains(&c) || c == '%' {
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("%{u:04X}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The references of a `refs` text. Stricter than the reference, which reads a reference
/// without `:` or with a bad index as index 0 and a stray `%` as itself: such text was not
/// written by either server, so it is refused rather than guessed at.
pub fn decode_refs(refs: &str) -> Result<Vec<ValueReference>, HandleSqlError> {
    let bad = |why| HandleSqlError::Refs {
        refs: refs.to_string(),
        why,
    };
    if refs.is_empty() {
        return Ok(Vec::new());
    }
    // Undo the %XXXX escapes over UTF-16 units, as the reference's Java strings are.
    let mut units: Vec<u16> = Vec::with_capacity(refs.len());
    let mut chars = refs.chars();
    while let Some(c) = chars.next() {
        if c == '%' {
            let mut u = 0u16;
            for _ in 0..4 {
                let d = chars
                    .next()
                    .and_then(|h| h.to_digit(16))
                    .ok_or_else(|| bad("% not followed by four hex digits"))?;
                u = u << 4 | d as u16;
            }
            units.push(u);
        } else {
            let mut buf = [0u16; 2];
            units.extend_from_slice(c.encode_utf16(&mut buf));
        }
    }
    let plain =
        String::from_utf16(&units).map_err(|_| bad("an escape is half a surrogate pair"))?;
    plain
        .split('\t')
        .map(|one| {
            let (index, handle) = one
                .split_once(':')
                .ok_or_else(|| bad("a reference without ':'"))?;
            let index: i32 = index
                .parse()
                .map_err(|_| bad("a reference index that is not a 32-bit integer"))?;
            let mut h = String::with_capacity(handle.len());
            let mut cs = handle.chars();
            while let Some(c) = cs.next() {
                if c == '\\' {
                    h.push(match cs.next() {
                        Some('t') => '\t',
                        Some('n') => '\n',
                        Some('r') => '\r',
                        Some('\\') => '\\',
                        _ => return Err(bad("a backslash not followed by t, n, r or \\")),
                    });
                } else {
                    h.push(c);
                }
            }
            Ok(ValueReference {
                handle: h,
                index: index as u32,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// A `handles` row as psql prints it with `-tA -F'|'` and hex-encoded bytea columns:
    /// handle|idx|type|data|ttl_type|ttl|timestamp|refs|admin_read|admin_write|pub_read|pub_write
    fn row(line: &str) -> HandleRow {
        let f: Vec<&str> = line.split('|').collect();
        assert_eq!(f.len(), 12, "{line}");
        let b = |s: &str| s == "t";
        HandleRow {
            handle: unhex(f[0]),
            idx: f[1].parse().unwrap(),
            value_type: unhex(f[2]),
            data: unhex(f[3]),
            ttl_type: f[4].parse().unwrap(),
            ttl: f[5].parse().unwrap(),
            timestamp: f[6].parse().unwrap(),
            refs: f[7].to_string(),
            admin_read: b(f[8]),
            admin_write: b(f[9]),
            pub_read: b(f[10]),
            pub_write: b(f[11]),
        }
    }

    /// Rows the reference server (Handle.Net 9.3.1 on PostgreSQL 15) wrote, each beside the
    /// value as the same server then answered it in a resolution (wire encoding). The first
    /// two came from REST PUT of `12345/pglab-Rest-MiXed` (an absolute TTL, references whose
    /// handles hold a tab, a backslash, `%`, `é`, an emoji, a line feed, a carriage return and
    /// a `:`, a reference to index 2^31-1 with an empty handle, permissions `0101`, which the
    /// reference's REST API reads as 1101); the rest through GenericBatch CREATE of
    /// `12345/pglab-Batch-MiXed` and `12345/pglab-straße-é`.
    const REFERENCE_ROWS: &[(&str, &str)] = &[
        (
            "31323334352f50474c41422d524553542d4d49584544|1|55524c|687474703a2f2f6578616d706c652e6f72672f72657374|1|1893553445|1796163235||t|t|t|f",
            "000000016B0F46A30170DD55250E0000000355524C00000017687474703A2F2F6578616D706C652E6F72672F7265737400000000",
        ),
        (
            "31323334352f50474c41422d524553542d4d49584544|2|454d41494c|72657374406578616d706c652e6f7267|0|120|1796163235|1:12345/Other%0009300:12345/a\\tb\\\\c%0025d/%00E9%D83D%DE00\\n\\r:x%00092147483647:|t|t|f|t",
            "000000026B0F46A300000000780D00000005454D41494C0000001072657374406578616D706C652E6F7267000000030000000B31323334352F4F74686572000000010000001831323334352F6109625C6325642FC3A9F09F98800A0D3A780000012C000000007FFFFFFF",
        ),
        (
            "31323334352f50474c41422d524553542d4d49584544|3|44415441|00ff09250a|0|86400|1796163235||t|t|t|f",
            "000000036B0F46A300000151800E00000004444154410000000500FF09250A00000000",
        ),
        (
            "31323334352f50474c41422d524553542d4d49584544|100|48535f41444d494e|07f30000000b31323334352f41444d494e0000012c|0|86400|1796163235||t|t|t|f",
            "000000646B0F46A300000151800E0000000848535F41444D494E0000001507F30000000B31323334352F41444D494E0000012C00000000",
        ),
        (
            "31323334352f50474c41422d42415443482d4d49584544|2|454d41494c|70676c6162406578616d706c652e6f7267|0|60|1796163230||t|t|f|t",
            "000000026B0F469E000000003C0D00000005454D41494C0000001170676C6162406578616D706C652E6F726700000000",
        ),
        (
            "31323334352f50474c41422d42415443482d4d49584544|3|48535f564c495354|000000020000000b31323334352f41444d494e0000012c0000001731323334352f70676c61622d42617463682d4d6958656400000001|0|86400|1796163230||t|f|t|f",
            "000000036B0F469E00000151800A0000000848535F564C49535400000036000000020000000B31323334352F41444D494E0000012C0000001731323334352F70676C61622D42617463682D4D695865640000000100000000",
        ),
        (
            "31323334352f50474c41422d42415443482d4d49584544|4|44455343|c3bc6ec3af636f64652064c3a474c3a420e29c93|0|0|1796163230||f|t|t|t",
            "000000046B0F469E000000000007000000044445534300000014C3BC6EC3AF636F64652064C3A474C3A420E29C9300000000",
        ),
        (
            "31323334352f50474c41422d53545241c39f452dc3a9|100|48535f41444d494e|03330000000b31323334352f41444d494e0000012d|0|86400|1796163230||t|t|t|f",
            "000000646B0F469E00000151800E0000000848535F41444D494E0000001503330000000B31323334352F41444D494E0000012D00000000",
        ),
    ];

    #[test]
    fn reference_rows_read_as_the_values_the_reference_served() {
        for (line, wire) in REFERENCE_ROWS {
            let r = row(line);
            let v = r.to_value().unwrap();
            assert_eq!(v.encode(), unhex(wire), "{line}");
        }
    }

    #[test]
    fn values_the_reference_served_write_the_rows_it_wrote() {
        for (line, wire) in REFERENCE_ROWS {
            let r = row(line);
            let v = HandleValue::decode(&unhex(wire)).unwrap();
            assert_eq!(HandleRow::from_value(&r.handle, &v).unwrap(), r, "{line}");
        }
    }

    #[test]
    fn keys_are_upper_cased_in_ascii_only() {
        // The reference stored GenericBatch's `12345/pglab-straße-é` under these bytes, and
        // `12345/pglab-STRASSE-É` was not found.
        assert_eq!(
            handle_key("12345/pglab-straße-é", false),
            unhex("31323334352f50474c41422d53545241c39f452dc3a9")
        );
        assert_eq!(
            handle_key("12345/pglab-Rest-MiXed", false),
            b"12345/PGLAB-REST-MIXED"
        );
        assert_eq!(
            handle_key("12345/pglab-Rest-MiXed", true),
            b"12345/pglab-Rest-MiXed"
        );
    }

    #[test]
    fn na_rows_are_the_prefix_handle_upper_cased() {
        // What the reference put in nas for auto_homed_prefixes "0.NA/12345" and for a
        // GenericBatch HOME of `0.na/pglab.Sub`.
        assert_eq!(na_row("12345"), b"0.NA/12345");
        assert_eq!(na_row("0.NA/12345"), b"0.NA/12345");
        assert_eq!(na_row("0.na/pglab.Sub"), b"0.NA/PGLAB.SUB");
        assert_eq!(na_row("pglab.sub"), b"0.NA/PGLAB.SUB");
    }

    #[test]
    fn a_row_inserted_by_hand_with_unusual_columns_reads_as_the_reference_served_it() {
        // Inserted with psql as (1, 'URL', 'x', -56, -1, -1, refs '', admin_read, admin_write,
        // pub_write false, pub_read true); the reference answered this value.
        let r = HandleRow {
            handle: b"12345/PGLAB-EDGE".to_vec(),
            idx: 1,
            value_type: b"URL".to_vec(),
            data: b"x".to_vec(),
            ttl_type: -56,
            ttl: -1,
            timestamp: -1,
            refs: String::new(),
            admin_read: false,
            admin_write: false,
            pub_read: true,
            pub_write: false,
        };
        let wire = unhex("00000001FFFFFFFFC8FFFFFFFF020000000355524C000000017800000000");
        assert_eq!(r.to_value().unwrap().encode(), wire);
        assert_eq!(r.to_value().unwrap().ttl_type, TtlType::Other(200));
        assert_eq!(
            HandleRow::from_value(&r.handle, &r.to_value().unwrap()).unwrap(),
            r
        );
    }

    #[test]
    fn refs_in_lower_case_hex_are_read() {
        // The reference reads `%00e9` as `é` (it served `12345/loweré` for this text).
        let refs = decode_refs("5:12345/lower%00e9").unwrap();
        assert_eq!(
            refs,
            vec![ValueReference {
                handle: "12345/loweré".into(),
                index: 5
            }]
        );
    }

    #[test]
    fn refs_negative_and_large_indexes_round_trip_as_java_ints() {
        let refs = vec![ValueReference {
            handle: "12345/x".into(),
            index: u32::MAX,
        }];
        assert_eq!(encode_refs(&refs), "-1:12345/x");
        assert_eq!(decode_refs("-1:12345/x").unwrap(), refs);
        // DEL and other control characters are escaped like the rest.
        let refs = vec![ValueReference {
            handle: "a\u{7f}\u{1}".into(),
            index: 1,
        }];
        assert_eq!(encode_refs(&refs), "1:a%007F%0001");
        assert_eq!(decode_refs("1:a%007F%0001").unwrap(), refs);
    }

    #[test]
    fn malformed_rows_are_refused() {
        let good = row(REFERENCE_ROWS[0].0);
        for idx in [0, -1, i32::MIN] {
            let r = HandleRow {
                idx,
                ..good.clone()
            };
            assert_eq!(r.to_value(), Err(HandleSqlError::RowIndex(idx)));
        }
        for t in [128, -129, i16::MAX] {
            let r = HandleRow {
                ttl_type: t,
                ..good.clone()
            };
            assert_eq!(r.to_value(), Err(HandleSqlError::TtlType(t)));
        }
        let r = HandleRow {
            value_type: vec![0xff],
            ..good.clone()
        };
        assert_eq!(r.to_value(), Err(HandleSqlError::Type));
        for refs in [
            "nocolon",
            "abc:12345/Y",
            "1:a%0009",
            "1:a%0009%00092:b",
            "1:a%00",
            "1:a%zzzz",
            "1:a%D83D",
            "1:a\\q",
            "1:a\\",
            "4294967295:a",
        ] {
            let r = HandleRow {
                refs: refs.into(),
                ..good.clone()
            };
            assert!(
                matches!(r.to_value(), Err(HandleSqlError::Refs { .. })),
                "{refs:?}"
            );
        }
    }

    #[test]
    fn values_that_do_not_fit_are_refused() {
        for index in [0, 1 << 31, u32::MAX] {
            let v = HandleValue::new(index, "URL", "x");
            assert_eq!(
                HandleRow::from_value(b"12345/X", &v),
                Err(HandleSqlError::ValueIndex(index))
            );
            let e: RegistryError = HandleRow::from_value(b"12345/X", &v).unwrap_err().into();
            assert_eq!(e.response_code(), rc::INVALID_VALUE);
        }
    }

    fn random_string(rng: &mut impl Rng) -> String {
        const PIECES: &[&str] = &[
            "a", "Z", "/", ":", "%", "\\", "\t", "\n", "\r", "\u{1}", "\u{7f}", "é", "ß", "😀",
            "\\t", "%0009", " ",
        ];
        (0..rng.gen_range(0..8))
            .map(|_| PIECES[rng.gen_range(0..PIECES.len())])
            .collect()
    }

    #[test]
    fn values_round_trip_through_rows() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(15);
        for _ in 0..2000 {
            let references = (0..rng.gen_range(0..4))
                .map(|_| ValueReference {
                    handle: random_string(&mut rng),
                    index: rng.r#gen(),
                })
                .collect();
            let v = HandleValue {
                index: rng.gen_range(1..=i32::MAX as u32),
                timestamp: rng.r#gen(),
                ttl_type: TtlType::from_u8(rng.r#gen()),
                ttl: rng.r#gen(),
                permissions: Permissions(rng.gen_range(0..16)),
                value_type: random_string(&mut rng),
                data: (0..rng.gen_range(0..16)).map(|_| rng.r#gen()).collect(),
                references,
            };
            let r = HandleRow::from_value(b"12345/K", &v).unwrap();
            assert!(
                r.refs.chars().all(|c| (' '..'\u{7f}').contains(&c)),
                "{:?}",
                r.refs
            );
            assert_eq!(r.to_value().unwrap(), v);
        }
    }
}
