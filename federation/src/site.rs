//! Which server of a site to ask about a handle: the one its hash picks (the rule every
//! Handle client applies, so a multi-server site gets each handle at the server that holds
//! it), at that server's query interface for the transport.

use std::net::SocketAddr;

use suyuan_codec::site::{SiteInfo, interface_protocol};

use crate::client::{ClientError, Transport};

/// The HS_SITE attribute by which a site says its servers take node-to-node QUIC, and on which
/// UDP port (its value, in decimal).
pub const QUIC_ATTRIBUTE: &str = "suyuan.quic";

/// The address to send a query about `handle` to, in `site`.
pub fn server_for(
    site: &SiteInfo,
    handle: &str,
    transport: Transport,
) -> Result<SocketAddr, ClientError> {
    let no_server = |why: String| ClientError::NoServer {
        handle: handle.to_string(),
        why,
    };
    let i = site.server_index_for(handle).ok_or_else(|| {
        no_server(if site.servers.is_empty() {
            "the site lists no server".into()
        } else {
            "its hash picks no server of the site (as the reference client computes it)".into()
        })
    })?;
    let server = &site.servers[i];
    if transport == Transport::Quic {
        // One port for the whole site, named by a site attribute reference clients ignore.
        let port = site
            .attribute(QUIC_ATTRIBUTE)
            .and_then(|v| v.trim().parse::<u16>().ok())
            .ok_or_else(|| no_server(format!("the site has no {QUIC_ATTRIBUTE} attribute")))?;
        return Ok(SocketAddr::new(server.ip(), port));
    }
    let wanted: &[u8] = match transport {
        Transport::Tcp => &[interface_protocol::TCP],
        Transport::Udp => &[interface_protocol::UDP],
        Transport::Auto => &[interface_protocol::UDP, interface_protocol::TCP],
        Transport::Quic => &[],
    };
    let port = wanted
        .iter()
        .find_map(|p| {
            server
                .interfaces
                .iter()
                .find(|f| f.query() && f.protocol == *p)
        })
        .and_then(|f| u16::try_from(f.port).ok())
        .ok_or_else(|| {
            no_server(format!(
                "server {} of the site has no query interface for {transport:?}",
                server.server_id
            ))
        })?;
    Ok(SocketAddr::new(server.ip(), port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use suyuan_codec::site::{Interface, ServerInfo, interface_type};

    fn site(n: u32) -> SiteInfo {
        let mut s = SiteInfo::single_server(1, "127.0.0.1".parse().unwrap(), vec![], vec![]);
        s.servers = (1..=n)
            .map(|id| ServerInfo {
                server_id: id,
                address: ServerInfo::address_of("127.0.0.1".parse().unwrap()),
                public_key: vec![],
                interfaces: vec![
                    Interface {
                        kind: interface_type::ADMIN_AND_QUERY,
                        protocol: interface_protocol::TCP,
                        port: 3000 + id,
                    },
                    Interface {
                        kind: interface_type::QUERY,
                        protocol: interface_protocol::UDP,
                        port: 4000 + id,
                    },
                ],
            })
            .collect();
        s
    }

    #[test]
    fn the_hash_picks_the_server_and_the_transport_its_port() {
        // MD5("88.100/ABC123") selects index 1 of 2 and index 0 of 3.
        let two = site(2);
        assert_eq!(
            server_for(&two, "88.100/abc123", Transport::Tcp).unwrap(),
            "127.0.0.1:3002".parse().unwrap()
        );
        assert_eq!(
            server_for(&two, "88.100/ABC123", Transport::Auto).unwrap(),
            "127.0.0.1:4002".parse().unwrap()
        );
        assert_eq!(
            server_for(&site(3), "88.100/ABC123", Transport::Udp).unwrap(),
            "127.0.0.1:4001".parse().unwrap()
        );
        let mut tcp_only = site(3);
        tcp_only.servers[0].interfaces.truncate(1);
        assert_eq!(
            server_for(&tcp_only, "88.100/ABC123", Transport::Auto).unwrap(),
            "127.0.0.1:3001".parse().unwrap()
        );
        assert!(matches!(
            server_for(&tcp_only, "88.100/ABC123", Transport::Udp),
            Err(ClientError::NoServer { .. })
        ));
        assert!(server_for(&site(0), "88.100/ABC123", Transport::Udp).is_err());
    }
}
