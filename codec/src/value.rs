//! Handle values (RFC 3651 section 3.1) and typed views of the standard types whose data has a
//! binary layout: HS_ADMIN, HS_VLIST, HS_PUBKEY, HS_SECKEY, HS_ALIAS (HS_SITE is in
//! [`crate::site`]). Unknown types are kept as opaque bytes.

use crate::error::DecodeError;
use crate::site::SiteInfo;
use crate::wire::{Reader, Writer, len_u32};

/// Standard type names.
pub mod types {
    pub const HS_ADMIN: &str = "HS_ADMIN";
    pub const HS_SITE: &str = "HS_SITE";
    pub const HS_SITE_6: &str = "HS_SITE.6";
    pub const HS_SITE_PREFIX: &str = "HS_SITE.PREFIX";
    pub const HS_VLIST: &str = "HS_VLIST";
    pub const HS_PUBKEY: &str = "HS_PUBKEY";
    pub const HS_SECKEY: &str = "HS_SECKEY";
    pub const HS_ALIAS: &str = "HS_ALIAS";
    pub const HS_SERV: &str = "HS_SERV";
    /// A service handle for the prefixes derived from this one (`P.x`): the server side of a
    /// prefix referral (RC 303), beside HS_SITE.PREFIX and HS_NA_DELEGATE.
    pub const HS_SERV_PREFIX: &str = "HS_SERV.PREFIX";
    pub const HS_NA_DELEGATE: &str = "HS_NA_DELEGATE";
    pub const HS_CERT: &str = "HS_CERT";
    pub const HS_SIGNATURE: &str = "HS_SIGNATURE";
    pub const URL: &str = "URL";
    pub const EMAIL: &str = "EMAIL";
    pub const DESC: &str = "DESC";
}

/// Value permission bits (the `u8 permissions` of a value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Permissions(pub u8);

impl Permissions {
    pub const ADMIN_READ: u8 = 0x08;
    pub const ADMIN_WRITE: u8 = 0x04;
    pub const PUBLIC_READ: u8 = 0x02;
    pub const PUBLIC_WRITE: u8 = 0x01;
    /// The default of every Handle tool: admin read/write, public read (`1110`).
    pub const DEFAULT: Permissions = Permissions(0x0E);

    pub fn admin_read(self) -> bool {
        self.0 & Self::ADMIN_READ != 0
    }
    pub fn admin_write(self) -> bool {
        self.0 & Self::ADMIN_WRITE != 0
    }
    pub fn public_read(self) -> bool {
        self.0 & Self::PUBLIC_READ != 0
    }
    pub fn public_write(self) -> bool {
        self.0 & Self::PUBLIC_WRITE != 0
    }
}

/// How `ttl` is to be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TtlType {
    /// Seconds a client may cache the value.
    Relative,
    /// Epoch seconds until which a client may cache the value.
    Absolute,
    /// Any other byte, kept so that re-encoding reproduces it.
    Other(u8),
}

impl TtlType {
    pub fn from_u8(b: u8) -> Self {
        match b {
            0 => TtlType::Relative,
            1 => TtlType::Absolute,
            o => TtlType::Other(o),
        }
    }
    pub fn to_u8(self) -> u8 {
        match self {
            TtlType::Relative => 0,
            TtlType::Absolute => 1,
            TtlType::Other(o) => o,
        }
    }
}

/// A reference from one value to a value of another handle (`index:handle`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ValueReference {
    pub handle: String,
    pub index: u32,
}

/// One handle value, every field of RFC 3651.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HandleValue {
    pub index: u32,
    /// Seconds since the epoch; set by the server on writes.
    pub timestamp: u32,
    pub ttl_type: TtlType,
    pub ttl: i32,
    pub permissions: Permissions,
    pub value_type: String,
    pub data: Vec<u8>,
    pub references: Vec<ValueReference>,
}

/// Smallest encoded value: index, timestamp, ttl type, ttl, permissions, two empty strings and
/// an empty reference list.
pub const MIN_VALUE_SIZE: usize = 4 + 4 + 1 + 4 + 1 + 4 + 4 + 4;
/// Smallest encoded reference: an empty handle and an index.
const MIN_REFERENCE_SIZE: usize = 8;

impl HandleValue {
    /// A value with the defaults every Handle tool uses: relative TTL 86400, permissions 1110.
    pub fn new(index: u32, value_type: impl Into<String>, data: impl Into<Vec<u8>>) -> Self {
        HandleValue {
            index,
            timestamp: 0,
            ttl_type: TtlType::Relative,
            ttl: 86400,
            permissions: Permissions::DEFAULT,
            value_type: value_type.into(),
            data: data.into(),
            references: Vec::new(),
        }
    }

    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.put_u32(self.index);
        out.put_u32(self.timestamp);
        out.put_u8(self.ttl_type.to_u8());
        out.put_u32(self.ttl as u32);
        out.put_u8(self.permissions.0);
        out.put_str(&self.value_type);
        out.put_bytes(&self.data);
        out.put_u32(len_u32(self.references.len()));
        for r in &self.references {
            out.put_str(&r.handle);
            out.put_u32(r.index);
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode_into(&mut out);
        out
    }

    pub fn encoded_len(&self) -> usize {
        MIN_VALUE_SIZE
            + self.value_type.len()
            + self.data.len()
            + self
                .references
                .iter()
                .map(|r| MIN_REFERENCE_SIZE + r.handle.len())
                .sum::<usize>()
    }

    pub fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let index = r.u32("value index")?;
        let timestamp = r.u32("value timestamp")?;
        let ttl_type = TtlType::from_u8(r.u8("value ttl type")?);
        let ttl = r.i32("value ttl")?;
        let permissions = Permissions(r.u8("value permissions")?);
        let value_type = r.str("value type")?.to_string();
        let data = r.bytes("value data")?.to_vec();
        let n = r.count(MIN_REFERENCE_SIZE, "value references")?;
        let mut references = Vec::with_capacity(n);
        for _ in 0..n {
            let handle = r.str("reference handle")?.to_string();
            let index = r.u32("reference index")?;
            references.push(ValueReference { handle, index });
        }
        Ok(HandleValue {
            index,
            timestamp,
            ttl_type,
            ttl,
            permissions,
            value_type,
            data,
            references,
        })
    }

    /// Decodes exactly one value; trailing bytes are an error.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let v = Self::decode_from(&mut r)?;
        r.finish("handle value")?;
        Ok(v)
    }

    /// Type match as `Util.isParentTypeInArray`: ASCII-case-insensitive equality, and a
    /// requested type ending in `.` also matches its subtypes (`URL.` matches `URL.foo`).
    pub fn type_matches(&self, requested: &str) -> bool {
        type_matches(&self.value_type, requested)
    }

    /// Decodes `data` according to `value_type`.
    pub fn typed(&self) -> Result<TypedData, DecodeError> {
        TypedData::decode(&self.value_type, &self.data)
    }

    /// Equality of values as records compare them (docs/data-model.md): every field but the
    /// timestamp, so rewriting an unchanged record is not a change.
    pub fn same_content(&self, other: &HandleValue) -> bool {
        self.index == other.index
            && self.value_type == other.value_type
            && self.data == other.data
            && self.ttl_type == other.ttl_type
            && self.ttl == other.ttl
            && self.permissions == other.permissions
            && self.references == other.references
    }
}

/// See [`HandleValue::type_matches`].
pub fn type_matches(value_type: &str, requested: &str) -> bool {
    if value_type.eq_ignore_ascii_case(requested) {
        return true;
    }
    requested.ends_with('.')
        && value_type.len() > requested.len()
        && value_type.as_bytes()[..requested.len()].eq_ignore_ascii_case(requested.as_bytes())
}

/// Encodes a list of values back to back, without an outer length, as responses carry them.
pub fn encode_values(values: &[HandleValue], out: &mut Vec<u8>) {
    out.put_u32(len_u32(values.len()));
    for v in values {
        v.encode_into(out);
    }
}

pub(crate) fn decode_values(r: &mut Reader<'_>) -> Result<Vec<HandleValue>, DecodeError> {
    let n = r.count(MIN_VALUE_SIZE, "value count")?;
    let mut values = Vec::with_capacity(n);
    for _ in 0..n {
        values.push(HandleValue::decode_from(r)?);
    }
    Ok(values)
}

/// The typed content of a value's data.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TypedData {
    Admin(AdminRecord),
    ValueList(Vec<ValueReference>),
    Site(SiteInfo),
    PublicKey(PublicKey),
    /// HS_SECKEY: the raw secret (or what a deployment stored in its place).
    SecretKey(Vec<u8>),
    /// HS_ALIAS / HS_SERV: another handle.
    Alias(String),
    /// Any other type whose data is UTF-8.
    Text(String),
    Opaque(Vec<u8>),
}

impl TypedData {
    pub fn decode(value_type: &str, data: &[u8]) -> Result<Self, DecodeError> {
        let t = value_type.to_ascii_uppercase();
        Ok(match t.as_str() {
            types::HS_ADMIN => TypedData::Admin(AdminRecord::decode(data)?),
            types::HS_VLIST => TypedData::ValueList(decode_value_list(data)?),
            types::HS_SITE | types::HS_SITE_6 | types::HS_SITE_PREFIX => {
                TypedData::Site(SiteInfo::decode(data)?)
            }
            types::HS_PUBKEY => TypedData::PublicKey(PublicKey::decode(data)?),
            types::HS_SECKEY => TypedData::SecretKey(data.to_vec()),
            types::HS_ALIAS | types::HS_SERV => TypedData::Alias(
                std::str::from_utf8(data)
                    .map_err(|_| DecodeError::InvalidUtf8 { what: "alias" })?
                    .to_string(),
            ),
            _ => match std::str::from_utf8(data) {
                Ok(s) => TypedData::Text(s.to_string()),
                Err(_) => TypedData::Opaque(data.to_vec()),
            },
        })
    }
}

/// HS_ADMIN permission bits (u16).
pub mod admin_perm {
    pub const ADD_HANDLE: u16 = 0x0001;
    pub const DELETE_HANDLE: u16 = 0x0002;
    pub const ADD_NA: u16 = 0x0004;
    pub const DELETE_NA: u16 = 0x0008;
    pub const MODIFY_VALUE: u16 = 0x0010;
    pub const REMOVE_VALUE: u16 = 0x0020;
    pub const ADD_VALUE: u16 = 0x0040;
    pub const MODIFY_ADMIN: u16 = 0x0080;
    pub const REMOVE_ADMIN: u16 = 0x0100;
    pub const ADD_ADMIN: u16 = 0x0200;
    pub const READ_VALUE: u16 = 0x0400;
    pub const LIST_HANDLES: u16 = 0x0800;
    /// All twelve bits the reference server knows.
    pub const ALL: u16 = 0x0FFF;
    /// Names in the order of the REST API's permission string, most significant first
    /// (character 0 is LIST_HANDLES, character 11 is ADD_HANDLE).
    pub const NAMES: [(&str, u16); 12] = [
        ("LIST_HANDLES", LIST_HANDLES),
        ("READ_VALUE", READ_VALUE),
        ("ADD_ADMIN", ADD_ADMIN),
        ("REMOVE_ADMIN", REMOVE_ADMIN),
        ("MODIFY_ADMIN", MODIFY_ADMIN),
        ("ADD_VALUE", ADD_VALUE),
        ("REMOVE_VALUE", REMOVE_VALUE),
        ("MODIFY_VALUE", MODIFY_VALUE),
        ("DELETE_NA", DELETE_NA),
        ("ADD_NA", ADD_NA),
        ("DELETE_HANDLE", DELETE_HANDLE),
        ("ADD_HANDLE", ADD_HANDLE),
    ];
}

/// HS_ADMIN data: who administers the handle, with which permissions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminRecord {
    pub permissions: u16,
    pub admin_handle: String,
    /// 0 means any index of `admin_handle`.
    pub admin_index: u32,
    /// Old encoders wrote two extra bytes; kept so re-encoding is byte-exact.
    pub legacy_trailer: Option<[u8; 2]>,
}

impl AdminRecord {
    pub fn new(permissions: u16, admin_handle: impl Into<String>, admin_index: u32) -> Self {
        AdminRecord {
            permissions,
            admin_handle: admin_handle.into(),
            admin_index,
            legacy_trailer: None,
        }
    }

    pub fn has(&self, perm: u16) -> bool {
        self.permissions & perm == perm
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(10 + self.admin_handle.len());
        out.put_u16(self.permissions);
        out.put_str(&self.admin_handle);
        out.put_u32(self.admin_index);
        if let Some(t) = self.legacy_trailer {
            out.extend_from_slice(&t);
        }
        out
    }

    pub fn decode(data: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(data);
        let permissions = r.u16("HS_ADMIN permissions")?;
        let admin_handle = r.str("HS_ADMIN handle")?.to_string();
        let admin_index = r.u32("HS_ADMIN index")?;
        let legacy_trailer = match r.remaining() {
            0 => None,
            2 => {
                let t = r.take(2, "HS_ADMIN legacy bytes")?;
                Some([t[0], t[1]])
            }
            _ => {
                r.finish("HS_ADMIN")?;
                None
            }
        };
        Ok(AdminRecord {
            permissions,
            admin_handle,
            admin_index,
            legacy_trailer,
        })
    }
}

/// HS_VLIST data: a list of `index:handle` references naming a group of identities.
pub fn encode_value_list(refs: &[ValueReference]) -> Vec<u8> {
    let mut out = Vec::new();
    out.put_u32(len_u32(refs.len()));
    for r in refs {
        out.put_str(&r.handle);
        out.put_u32(r.index);
    }
    out
}

pub fn decode_value_list(data: &[u8]) -> Result<Vec<ValueReference>, DecodeError> {
    let mut r = Reader::new(data);
    let n = r.count(MIN_REFERENCE_SIZE, "HS_VLIST count")?;
    let mut refs = Vec::with_capacity(n);
    for _ in 0..n {
        let handle = r.str("HS_VLIST handle")?.to_string();
        let index = r.u32("HS_VLIST index")?;
        refs.push(ValueReference { handle, index });
    }
    r.finish("HS_VLIST")?;
    Ok(refs)
}

/// The first index that appears twice among `values`, if any.
pub fn duplicate_index(values: &[HandleValue]) -> Option<u32> {
    let mut seen = std::collections::HashSet::new();
    values.iter().map(|v| v.index).find(|&i| !seen.insert(i))
}

/// Key type names inside HS_PUBKEY data.
pub mod key_types {
    pub const RSA: &str = "RSA_PUB_KEY";
    pub const DSA: &str = "DSA_PUB_KEY";
    pub const DH: &str = "DH_PUB_KEY";
    /// IDIS's SM2 keys; we keep their body whole and do not interpret it.
    pub const SM2: &str = "SM2_PUB_KEY";
}

/// HS_PUBKEY data. Integers are kept as the big-endian two's-complement bytes the wire carried
/// (Java's `BigInteger.toByteArray`, often with a leading zero) so re-encoding is exact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicKey {
    /// `str "RSA_PUB_KEY", u16 flags, bytes e, bytes n` and, from 9.x encoders, `u32 0`.
    Rsa {
        flags: u16,
        exponent: Vec<u8>,
        modulus: Vec<u8>,
        trailer: Vec<u8>,
    },
    Dsa {
        flags: u16,
        q: Vec<u8>,
        p: Vec<u8>,
        g: Vec<u8>,
        y: Vec<u8>,
    },
    Dh {
        flags: u16,
        y: Vec<u8>,
        p: Vec<u8>,
        g: Vec<u8>,
    },
    /// Data that is PEM text, as IDIS stores keys (`-----BEGIN PUBLIC KEY-----`).
    Pem(String),
    /// A key type we do not interpret (SM2 among others): kept whole.
    Other {
        key_type: String,
        flags: u16,
        rest: Vec<u8>,
    },
}

impl PublicKey {
    pub fn decode(data: &[u8]) -> Result<Self, DecodeError> {
        if data.starts_with(b"-----BEGIN") {
            let s = std::str::from_utf8(data).map_err(|_| DecodeError::InvalidUtf8 {
                what: "PEM public key",
            })?;
            return Ok(PublicKey::Pem(s.to_string()));
        }
        let mut r = Reader::new(data);
        let key_type = r.str("public key type")?.to_string();
        let flags = r.u16("public key flags")?;
        let key = match key_type.as_str() {
            key_types::RSA => {
                let exponent = r.bytes("RSA exponent")?.to_vec();
                let modulus = r.bytes("RSA modulus")?.to_vec();
                let trailer = r.rest().to_vec();
                if trailer.len() > 4 || trailer.iter().any(|&b| b != 0) {
                    return Err(DecodeError::TrailingBytes {
                        what: "RSA public key",
                        trailing: trailer.len(),
                    });
                }
                PublicKey::Rsa {
                    flags,
                    exponent,
                    modulus,
                    trailer,
                }
            }
            key_types::DSA => {
                let q = r.bytes("DSA q")?.to_vec();
                let p = r.bytes("DSA p")?.to_vec();
                let g = r.bytes("DSA g")?.to_vec();
                let y = r.bytes("DSA y")?.to_vec();
                r.finish("DSA public key")?;
                PublicKey::Dsa { flags, q, p, g, y }
            }
            key_types::DH => {
                let y = r.bytes("DH y")?.to_vec();
                let p = r.bytes("DH p")?.to_vec();
                let g = r.bytes("DH g")?.to_vec();
                r.finish("DH public key")?;
                PublicKey::Dh { flags, y, p, g }
            }
            _ => PublicKey::Other {
                key_type,
                flags,
                rest: r.rest().to_vec(),
            },
        };
        Ok(key)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            PublicKey::Rsa {
                flags,
                exponent,
                modulus,
                trailer,
            } => {
                out.put_str(key_types::RSA);
                out.put_u16(*flags);
                out.put_bytes(exponent);
                out.put_bytes(modulus);
                out.extend_from_slice(trailer);
            }
            PublicKey::Dsa { flags, q, p, g, y } => {
                out.put_str(key_types::DSA);
                out.put_u16(*flags);
                for f in [q, p, g, y] {
                    out.put_bytes(f);
                }
            }
            PublicKey::Dh { flags, y, p, g } => {
                out.put_str(key_types::DH);
                out.put_u16(*flags);
                for f in [y, p, g] {
                    out.put_bytes(f);
                }
            }
            PublicKey::Pem(s) => out.extend_from_slice(s.as_bytes()),
            PublicKey::Other {
                key_type,
                flags,
                rest,
            } => {
                out.put_str(key_type);
                out.put_u16(*flags);
                out.extend_from_slice(rest);
            }
        }
        out
    }

    /// Decodes HS_PUBKEY data that must hold a key a verifier could use: RSA, DSA or DH in
    /// the reference's binary form with positive integers (RSA's modulus and exponent odd),
    /// IDIS's `SM2_PUB_KEY` with a body, or a PEM public key or certificate whose Base64
    /// decodes. The reference stores any bytes under HS_PUBKEY; a key nobody can use only
    /// fails later, at an authentication, far from the write that stored it.
    pub fn decode_usable(data: &[u8]) -> Result<Self, DecodeError> {
        let key = Self::decode(data)?;
        let positive = |what: &'static str, n: &[u8]| {
            if n.iter().all(|&b| b == 0) || n[0] & 0x80 != 0 {
                Err(DecodeError::invalid(what, "zero or negative"))
            } else {
                Ok(())
            }
        };
        let odd = |what: &'static str, n: &[u8]| match n.last() {
            Some(b) if b & 1 == 1 => Ok(()),
            _ => Err(DecodeError::invalid(what, "even")),
        };
        match &key {
            PublicKey::Rsa {
                exponent, modulus, ..
            } => {
                positive("RSA exponent", exponent)?;
                positive("RSA modulus", modulus)?;
                odd("RSA exponent", exponent)?;
                odd("RSA modulus", modulus)?;
            }
            PublicKey::Dsa { q, p, g, y, .. } => {
                for (what, n) in [("DSA q", q), ("DSA p", p), ("DSA g", g), ("DSA y", y)] {
                    positive(what, n)?;
                }
            }
            PublicKey::Dh { y, p, g, .. } => {
                for (what, n) in [("DH y", y), ("DH p", p), ("DH g", g)] {
                    positive(what, n)?;
                }
            }
            PublicKey::Pem(text) => {
                let (label, der) = crate::auth::pem_decode(text)
                    .map_err(|e| DecodeError::invalid("PEM public key", e.to_string()))?;
                if !(label.ends_with("PUBLIC KEY") || label == "CERTIFICATE") {
                    return Err(DecodeError::invalid(
                        "PEM public key",
                        format!("a {label:?} block is not a public key"),
                    ));
                }
                if der.is_empty() {
                    return Err(DecodeError::invalid(
                        "PEM public key",
                        "no key in the block",
                    ));
                }
            }
            PublicKey::Other { key_type, rest, .. } if key_type == key_types::SM2 => {
                if rest.is_empty() {
                    return Err(DecodeError::invalid("SM2 public key", "no key material"));
                }
            }
            PublicKey::Other { key_type, .. } => {
                return Err(DecodeError::invalid(
                    "public key",
                    format!(
                        "key type {key_type:?} is none of {}, {}, {}, {} or PEM",
                        key_types::RSA,
                        key_types::DSA,
                        key_types::DH,
                        key_types::SM2
                    ),
                ));
            }
        }
        Ok(key)
    }

    /// An RSA key as the 9.x reference encodes it (with the four trailing zero bytes), from
    /// unsigned big-endian integers.
    pub fn rsa(exponent: &[u8], modulus: &[u8]) -> Self {
        PublicKey::Rsa {
            flags: 0,
            exponent: java_bigint_bytes(exponent),
            modulus: java_bigint_bytes(modulus),
            trailer: vec![0; 4],
        }
    }
}

/// Java's `BigInteger.toByteArray` for a non-negative integer given as unsigned big-endian
/// bytes: minimal length, with a leading zero when the top bit is set.
pub fn java_bigint_bytes(unsigned: &[u8]) -> Vec<u8> {
    let start = unsigned
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(unsigned.len());
    let digits = &unsigned[start..];
    if digits.is_empty() {
        return vec![0];
    }
    let mut out = Vec::with_capacity(digits.len() + 1);
    if digits[0] & 0x80 != 0 {
        out.push(0);
    }
    out.extend_from_slice(digits);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_record_matches_spec_example() {
        let a = AdminRecord::new(0x07ff, "0.NA/88.100", 300);
        assert_eq!(
            hex::encode(a.encode()),
            "07ff0000000b302e4e412f38382e3130300000012c"
        );
        assert_eq!(AdminRecord::decode(&a.encode()).unwrap(), a);
    }

    #[test]
    fn admin_record_accepts_legacy_trailer_and_refuses_other_trailing() {
        let mut b = AdminRecord::new(0x0fff, "12345/ADMIN", 300).encode();
        b.extend_from_slice(&[0, 0]);
        let a = AdminRecord::decode(&b).unwrap();
        assert_eq!(a.legacy_trailer, Some([0, 0]));
        assert_eq!(a.encode(), b);
        b.push(0);
        assert!(AdminRecord::decode(&b).is_err());
    }

    #[test]
    fn value_matches_spec_example() {
        let mut v = HandleValue::new(
            100,
            "HS_ADMIN",
            AdminRecord::new(0x07ff, "0.NA/88.100", 300).encode(),
        );
        v.timestamp = 0x6500_0000;
        assert_eq!(
            hex::encode(v.encode()),
            concat!(
                "00000064",
                "65000000",
                "00",
                "00015180",
                "0e",
                "00000008",
                "48535f41444d494e",
                "00000015",
                "07ff0000000b302e4e412f38382e3130300000012c",
                "00000000"
            )
        );
        assert_eq!(HandleValue::decode(&v.encode()).unwrap(), v);
        assert_eq!(v.encoded_len(), v.encode().len());
    }

    #[test]
    fn type_filter_rules() {
        let v = HandleValue::new(1, "URL.mirror", "x");
        assert!(v.type_matches("url."));
        assert!(!v.type_matches("URL"));
        assert!(HandleValue::new(1, "url", "x").type_matches("URL"));
        assert!(!HandleValue::new(1, "URL", "x").type_matches("URL."));
    }

    #[test]
    fn value_list_round_trip_and_caps() {
        let refs = vec![
            ValueReference {
                handle: "12345/ADMIN".into(),
                index: 300,
            },
            ValueReference {
                handle: "88.1/ops".into(),
                index: 200,
            },
        ];
        let b = encode_value_list(&refs);
        assert_eq!(decode_value_list(&b).unwrap(), refs);
        assert!(decode_value_list(&[0xff, 0xff, 0xff, 0xff]).is_err());
    }

    #[test]
    fn java_bigint_encoding() {
        assert_eq!(java_bigint_bytes(&[0, 0, 0x01, 0x00, 0x01]), vec![1, 0, 1]);
        assert_eq!(java_bigint_bytes(&[0xb3, 0x7f]), vec![0, 0xb3, 0x7f]);
        assert_eq!(java_bigint_bytes(&[]), vec![0]);
    }

    #[test]
    fn pem_public_key_is_kept_as_text() {
        let pem = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n";
        let k = PublicKey::decode(pem.as_bytes()).unwrap();
        assert_eq!(k, PublicKey::Pem(pem.to_string()));
        assert_eq!(k.encode(), pem.as_bytes());
    }

    /// A DSA public key as the reference's `hdl-keygen -alg DSA -keysize 1024` wrote it.
    const REFERENCE_DSA_PUB: &str = "AAAAC0RTQV9QVUJfS0VZAAAAAAAVAJdgUI8VIwvMspK5gqLrhAvwWBz1AAAAgQD9f1OBHXUSKVLfSpwu7OTn9hG3UjzvRADDHj+AtlEmaUVdQCJR+1k9jVj6v8X1ujD2y5tVbNeBO4AdNG/yZmC3a5lQpaSfn+gEexAiwk+7qdf+t8Yb+DtX58aophUPBPuD9tPFHsMCNVQTWhaRMvZ1864rYdcq7/IiAxmd0UgBxwAAAIEA9+GghdabPd7LvKtcNrhXuXmUr7v6OuqC+VdMCz0HgmdRWVeOutRZT+ZxBxCBgLRJFnEj6EwoFhO3zwkyjMim4TwWeotUfI0o4KOuHiuzpnWRbqN/C/ohNWLx+2J6ASQ7zKTxvqhRkImog9/hWuWfBpKLZl6Ae1UlZAFMO/7PSSoAAACAbVVReaDi/bNfZ38O3mWY1oWEqr+1leJrqM6Dishb1NcGG1I1WYacfNAgat0xLJlW5Wjeg3vJQemEjKZLv3c1eTQUAlTknjOX2wIDIrmBS+akuIOSh57bFxpPbRQ1YAw99i1rALt3Si2uSgH3f7Tc1t5nDbj3e9VYwS1aukgjemI=";

    #[test]
    fn usable_public_keys_are_every_form_stored_in_practice_and_nothing_else() {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD;
        let rsa = std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../tests/fixtures/reference/keys/admin-300.hs_pubkey.bin"),
        )
        .unwrap();
        let dsa = b64.decode(REFERENCE_DSA_PUB).unwrap();
        let mut sm2 = Vec::new();
        sm2.put_str(key_types::SM2);
        sm2.put_u16(0);
        sm2.put_bytes(&[4; 65]);
        let pem = format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            b64.encode([0x30, 0x59, 0x30, 0x13])
        );
        for good in [&rsa, &dsa, &sm2, pem.as_bytes()] {
            let k = PublicKey::decode_usable(good)
                .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(good)));
            assert_eq!(k.encode(), *good);
        }
        let mut even = rsa.clone();
        // The modulus is the last integer before the four-byte trailer.
        let last = even.len() - 5;
        even[last] &= 0xFE;
        let mut empty_sm2 = Vec::new();
        empty_sm2.put_str(key_types::SM2);
        empty_sm2.put_u16(0);
        let mut unknown = Vec::new();
        unknown.put_str("XYZ_PUB_KEY");
        unknown.put_u16(0);
        unknown.put_bytes(b"k");
        let zero_dsa = PublicKey::Dsa {
            flags: 0,
            q: vec![0],
            p: vec![1],
            g: vec![1],
            y: vec![1],
        }
        .encode();
        let private = "-----BEGIN PRIVATE KEY-----\nMAA=\n-----END PRIVATE KEY-----\n";
        let bad_b64 = "-----BEGIN PUBLIC KEY-----\n!!!!\n-----END PUBLIC KEY-----\n";
        for bad in [
            &b"notakey"[..],
            b"",
            &even,
            &empty_sm2,
            &unknown,
            &zero_dsa,
            private.as_bytes(),
            bad_b64.as_bytes(),
        ] {
            assert!(
                PublicKey::decode_usable(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn the_first_repeated_index_is_named() {
        let v = |i| HandleValue::new(i, "URL", "x");
        assert_eq!(duplicate_index(&[v(1), v(2), v(3)]), None);
        assert_eq!(duplicate_index(&[v(1), v(2), v(2), v(1)]), Some(2));
    }
}
