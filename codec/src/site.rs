//! HS_SITE data (a site's servers, interfaces and attributes) and the MD5 rule by which every
//! Handle client picks the server of a multi-server site that holds a handle.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use md5::{Digest, Md5};

use crate::error::DecodeError;
use crate::wire::{Reader, Writer, len_u32};

/// Site flags.
pub const SITE_PRIMARY: u8 = 0x80;
pub const SITE_MULTI_PRIMARY: u8 = 0x40;

/// Which part of a handle selects the server of a multi-server site.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashOption {
    ByPrefix,
    BySuffix,
    ByAll,
    Other(u8),
}

impl HashOption {
    pub fn from_u8(b: u8) -> Self {
        match b {
            0 => HashOption::ByPrefix,
            1 => HashOption::BySuffix,
            2 => HashOption::ByAll,
            o => HashOption::Other(o),
        }
    }
    pub fn to_u8(self) -> u8 {
        match self {
            HashOption::ByPrefix => 0,
            HashOption::BySuffix => 1,
            HashOption::ByAll => 2,
            HashOption::Other(o) => o,
        }
    }
}

/// Interface type byte.
pub mod interface_type {
    pub const OUT_OF_SERVICE: u8 = 0;
    pub const ADMIN: u8 = 1;
    pub const QUERY: u8 = 2;
    pub const ADMIN_AND_QUERY: u8 = 3;
}

/// Interface protocol byte.
pub mod interface_protocol {
    pub const UDP: u8 = 0;
    pub const TCP: u8 = 1;
    pub const HTTP: u8 = 2;
    pub const HTTPS: u8 = 3;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interface {
    pub kind: u8,
    pub protocol: u8,
    pub port: u32,
}

impl Interface {
    /// A Handle server's two interfaces on one port: TCP for administration and queries, UDP
    /// for queries (UDP carries no administration), as Suyuan and the reference listen.
    pub fn handle_pair(port: u32) -> [Interface; 2] {
        [
            Interface {
                kind: interface_type::ADMIN_AND_QUERY,
                protocol: interface_protocol::TCP,
                port,
            },
            Interface {
                kind: interface_type::QUERY,
                protocol: interface_protocol::UDP,
                port,
            },
        ]
    }

    pub fn admin(&self) -> bool {
        self.kind & interface_type::ADMIN != 0
    }
    pub fn query(&self) -> bool {
        self.kind & interface_type::QUERY != 0
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    pub server_id: u32,
    /// 16 bytes on the wire; IPv4 is 12 zero bytes then the address.
    pub address: [u8; 16],
    /// HS_PUBKEY encoding of the server's key (see [`crate::value::PublicKey`]).
    pub public_key: Vec<u8>,
    pub interfaces: Vec<Interface>,
}

impl ServerInfo {
    pub fn ip(&self) -> IpAddr {
        if self.address[..12].iter().all(|&b| b == 0) {
            IpAddr::V4(Ipv4Addr::new(
                self.address[12],
                self.address[13],
                self.address[14],
                self.address[15],
            ))
        } else {
            IpAddr::V6(Ipv6Addr::from(self.address))
        }
    }

    pub fn address_of(ip: IpAddr) -> [u8; 16] {
        match ip {
            IpAddr::V4(v4) => {
                let mut a = [0u8; 16];
                a[12..].copy_from_slice(&v4.octets());
                a
            }
            IpAddr::V6(v6) => v6.octets(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteAttribute {
    pub name: String,
    pub value: String,
}

/// HS_SITE data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteInfo {
    pub data_format_version: u16,
    pub protocol_major: u8,
    pub protocol_minor: u8,
    pub serial_number: u16,
    pub flags: u8,
    pub hash_option: HashOption,
    pub hash_filter: String,
    pub attributes: Vec<SiteAttribute>,
    pub servers: Vec<ServerInfo>,
}

const MIN_ATTRIBUTE_SIZE: usize = 8;
const MIN_SERVER_SIZE: usize = 4 + 16 + 4 + 4;
const INTERFACE_SIZE: usize = 6;

impl SiteInfo {
    /// A primary site of one server (id 1) at `address`, hashing by the whole handle, at the
    /// protocol version this crate speaks (2.11, as the reference's own site info says: a
    /// client takes the lower of the site's version and its own).
    pub fn single_server(
        serial_number: u16,
        address: IpAddr,
        public_key: Vec<u8>,
        interfaces: Vec<Interface>,
    ) -> SiteInfo {
        SiteInfo {
            data_format_version: 1,
            protocol_major: 2,
            protocol_minor: 11,
            serial_number,
            flags: SITE_PRIMARY,
            hash_option: HashOption::ByAll,
            hash_filter: String::new(),
            attributes: Vec::new(),
            servers: vec![ServerInfo {
                server_id: 1,
                address: ServerInfo::address_of(address),
                public_key,
                interfaces,
            }],
        }
    }

    pub fn is_primary(&self) -> bool {
        self.flags & SITE_PRIMARY != 0
    }

    pub fn is_multi_primary(&self) -> bool {
        self.flags & SITE_MULTI_PRIMARY != 0
    }

    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|a| a.name == name)
            .map(|a| a.value.as_str())
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.put_u16(self.data_format_version);
        out.put_u8(self.protocol_major);
        out.put_u8(self.protocol_minor);
        out.put_u16(self.serial_number);
        out.put_u8(self.flags);
        out.put_u8(self.hash_option.to_u8());
        out.put_str(&self.hash_filter);
        out.put_u32(len_u32(self.attributes.len()));
        for a in &self.attributes {
            out.put_str(&a.name);
            out.put_str(&a.value);
        }
        out.put_u32(len_u32(self.servers.len()));
        for s in &self.servers {
            out.put_u32(s.server_id);
            out.extend_from_slice(&s.address);
            out.put_bytes(&s.public_key);
            out.put_u32(len_u32(s.interfaces.len()));
            for i in &s.interfaces {
                out.put_u8(i.kind);
                out.put_u8(i.protocol);
                out.put_u32(i.port);
            }
        }
        out
    }

    /// Decodes HS_SITE data; trailing bytes are an error, as in `Encoder.decodeSiteInfoRecord`.
    pub fn decode(data: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(data);
        let site = Self::decode_from(&mut r)?;
        r.finish("HS_SITE")?;
        Ok(site)
    }

    pub(crate) fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let data_format_version = r.u16("site data format version")?;
        let protocol_major = r.u8("site protocol major")?;
        let protocol_minor = r.u8("site protocol minor")?;
        let serial_number = r.u16("site serial")?;
        let flags = r.u8("site flags")?;
        let hash_option = HashOption::from_u8(r.u8("site hash option")?);
        let hash_filter = r.str("site hash filter")?.to_string();
        let n = r.count(MIN_ATTRIBUTE_SIZE, "site attributes")?;
        let mut attributes = Vec::with_capacity(n);
        for _ in 0..n {
            let name = r.str("site attribute name")?.to_string();
            let value = r.str("site attribute value")?.to_string();
            attributes.push(SiteAttribute { name, value });
        }
        let n = r.count(MIN_SERVER_SIZE, "site servers")?;
        let mut servers = Vec::with_capacity(n);
        for _ in 0..n {
            let server_id = r.u32("server id")?;
            let mut address = [0u8; 16];
            address.copy_from_slice(r.take(16, "server address")?);
            let public_key = r.bytes("server public key")?.to_vec();
            let ni = r.count(INTERFACE_SIZE, "server interfaces")?;
            let mut interfaces = Vec::with_capacity(ni);
            for _ in 0..ni {
                interfaces.push(Interface {
                    kind: r.u8("interface type")?,
                    protocol: r.u8("interface protocol")?,
                    port: r.u32("interface port")?,
                });
            }
            servers.push(ServerInfo {
                server_id,
                address,
                public_key,
                interfaces,
            });
        }
        Ok(SiteInfo {
            data_format_version,
            protocol_major,
            protocol_minor,
            serial_number,
            flags,
            hash_option,
            hash_filter,
            attributes,
            servers,
        })
    }

    /// The index into `servers` of the server that holds `handle`, by the site's hash option,
    /// as `SiteInfo.determineServer` picks it. `None` for a site without servers, for a hash
    /// option the reference does not know (it refuses those with "Unknown hash method"), and
    /// for the one hash whose Java index is negative (see [`select_server`]).
    pub fn server_index_for(&self, handle: &str) -> Option<usize> {
        if self.servers.is_empty() || matches!(self.hash_option, HashOption::Other(_)) {
            return None;
        }
        select_server(server_hash(handle, self.hash_option), self.servers.len())
    }

    /// The index into `servers` of the server whose id is `server_id` (the reference's
    /// `this_server_id`: a server finds itself in its site by id, not by position).
    pub fn position_of(&self, server_id: u32) -> Option<usize> {
        self.servers.iter().position(|s| s.server_id == server_id)
    }

    /// Whether the server at `position` answers `handle`: always in a one-server site (the
    /// reference checks the hash only when a site has more than one server), otherwise when
    /// the handle hashes to it.
    pub fn answers(&self, position: usize, handle: &str) -> bool {
        self.servers.len() <= 1 || self.server_index_for(handle) == Some(position)
    }
}

/// The part of `handle` a hash option selects, as `SiteInfo.determineServerNum` takes it: the
/// prefix (for `0.NA/P` that is `0.NA`; a slash-less handle counts as prefix `0.NA`), the
/// suffix, or the whole handle.
pub fn hash_part(handle: &str, option: HashOption) -> &str {
    let (prefix, suffix) = match handle.find('/') {
        Some(i) => (&handle[..i], &handle[i + 1..]),
        None => (crate::handle::NA_PREFIX, handle),
    };
    match option {
        HashOption::ByPrefix => prefix,
        HashOption::BySuffix => suffix,
        HashOption::ByAll | HashOption::Other(_) => handle,
    }
}

/// The signed 32-bit hash every Handle client computes: MD5 of the ASCII-upper-cased part,
/// bytes 12..16 read as a big-endian `i32`.
pub fn server_hash(handle: &str, option: HashOption) -> i32 {
    let part = hash_part(handle, option).to_ascii_uppercase();
    let d = Md5::digest(part.as_bytes());
    i32::from_be_bytes([d[12], d[13], d[14], d[15]])
}

/// `Math.abs(hash) % n` as Java computes it, `None` where Java's index is negative.
/// `Math.abs(Integer.MIN_VALUE)` is `Integer.MIN_VALUE`, and Java's `%` keeps the dividend's
/// sign, so for that one hash the reference's index is `-(2^31 mod n)`: 0 when `n` is a power
/// of two, negative otherwise. A negative index matches no server: each of the site's servers
/// answers RC 301 and the reference client fails on the array index, so such a handle has no
/// server, and we say so rather than invent one.
pub fn select_server(hash: i32, n: usize) -> Option<usize> {
    let n = i64::try_from(n).ok().filter(|&n| n > 0)?;
    let java_abs = if hash == i32::MIN {
        i64::from(hash)
    } else {
        i64::from(hash).abs()
    };
    usize::try_from(java_abs % n).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_vectors_from_the_spec_note() {
        assert_eq!(server_hash("88.100/ABC123", HashOption::ByAll), 1435954137);
        assert_eq!(
            server_hash("88.100/ABC123", HashOption::ByPrefix),
            1248849512
        );
        // Negative as Java reads it: the selection takes the absolute value, 852241299.
        assert_eq!(server_hash("10.1000/182", HashOption::ByAll), -852241299);
        assert_eq!(select_server(-852241299, 1000), Some(299));
        assert_eq!(select_server(1435954137, 2), Some(1));
        assert_eq!(select_server(1435954137, 3), Some(0));
    }

    #[test]
    fn hash_parts_as_the_reference_takes_them() {
        assert_eq!(hash_part("88.100/ABC123", HashOption::ByPrefix), "88.100");
        assert_eq!(hash_part("88.100/ABC123", HashOption::BySuffix), "ABC123");
        assert_eq!(hash_part("0.NA/88.100", HashOption::ByPrefix), "0.NA");
        assert_eq!(hash_part("88.100", HashOption::ByPrefix), "0.NA");
        assert_eq!(hash_part("88.100", HashOption::BySuffix), "88.100");
        assert_eq!(
            server_hash("88.100/abc123", HashOption::ByPrefix),
            server_hash("88.100/OTHER", HashOption::ByPrefix)
        );
    }

    #[test]
    fn hash_is_case_insensitive() {
        assert_eq!(
            server_hash("88.100/abc123", HashOption::ByAll),
            server_hash("88.100/ABC123", HashOption::ByAll)
        );
    }

    #[test]
    fn java_abs_quirk_matches_no_server_unless_n_is_a_power_of_two() {
        // -(2^31 mod n): 0 for 1, 2, 4, 8; negative (no server) for 3, 5, 6, 7, 9.
        for n in [1, 2, 4, 8] {
            assert_eq!(select_server(i32::MIN, n), Some(0), "n={n}");
        }
        for n in [3, 5, 6, 7, 9] {
            assert_eq!(select_server(i32::MIN, n), None, "n={n}");
        }
        assert_eq!(
            select_server(i32::MIN + 1, 3),
            Some((i32::MAX % 3) as usize)
        );
        assert_eq!(select_server(5, 0), None);
    }

    fn site_of(n: u32) -> SiteInfo {
        let mut s = SiteInfo::single_server(1, "127.0.0.1".parse().unwrap(), vec![], vec![]);
        s.servers = (1..=n)
            .map(|id| ServerInfo {
                server_id: id,
                ..s.servers[0].clone()
            })
            .collect();
        s
    }

    #[test]
    fn a_site_picks_by_its_hash_option() {
        let mut s = site_of(3);
        assert_eq!(s.server_index_for("88.100/ABC123"), Some(0));
        s.hash_option = HashOption::ByPrefix;
        // 1248849512 % 3
        assert_eq!(s.server_index_for("88.100/ABC123"), Some(2));
        s.hash_option = HashOption::Other(7);
        assert_eq!(s.server_index_for("88.100/ABC123"), None);
        assert_eq!(s.position_of(3), Some(2));
        assert_eq!(s.position_of(4), None);
    }

    #[test]
    fn only_a_multi_server_site_partitions() {
        let one = site_of(1);
        assert!(one.answers(0, "88.100/ABC123"));
        let three = site_of(3);
        assert!(three.answers(0, "88.100/ABC123"));
        assert!(!three.answers(1, "88.100/ABC123"));
        assert!(!three.answers(2, "88.100/ABC123"));
    }

    #[test]
    fn ipv4_and_ipv6_addresses() {
        let v4: IpAddr = "127.0.0.1".parse().unwrap();
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        for ip in [v4, v6] {
            let s = ServerInfo {
                server_id: 1,
                address: ServerInfo::address_of(ip),
                public_key: vec![],
                interfaces: vec![],
            };
            assert_eq!(s.ip(), ip);
        }
    }
}
