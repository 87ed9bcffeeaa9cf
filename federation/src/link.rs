//! The transports the walker carries a request over, behind one trait, so that the walk (which
//! site, which server, what to do when one fails) is written once and a new transport is one
//! more [`Link`]: UDP and TCP here, QUIC between nodes in [`crate::quic`]. A link says which server of a
//! site it reaches (a site lists an interface per transport) and sends one request there.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use suyuan_codec::message::Message;
use suyuan_codec::site::SiteInfo;

use crate::client::{ClientError, HandleClient, Transport};

/// A request on its way: the first answer, or why there is none.
pub type Sent<'a> = Pin<Box<dyn Future<Output = Result<Message, ClientError>> + Send + 'a>>;

/// One way to carry a Handle request to a server.
pub trait Link: Send + Sync {
    /// Which transport this is (named in [`crate::ServedBy`] and the metrics).
    fn transport(&self) -> Transport;

    /// The server of `site` that answers `handle` over this link: the one the site's hash
    /// picks, at its interface for this transport.
    fn server_for(&self, site: &SiteInfo, handle: &str) -> Result<SocketAddr, ClientError> {
        crate::site::server_for(site, handle, self.transport())
    }

    /// Whether a site this link reaches is reached by it alone: QUIC between nodes is, so a
    /// peer that takes QUIC is never asked in clear when QUIC fails.
    fn exclusive(&self) -> bool {
        false
    }

    /// Sends one request to `server` and returns its (first) answer.
    fn send<'a>(&'a self, server: SocketAddr, request: &'a Message) -> Sent<'a>;
}

/// UDP with the reference client's retry schedule.
#[derive(Debug, Clone, Copy, Default)]
pub struct Udp;

impl Link for Udp {
    fn transport(&self) -> Transport {
        Transport::Udp
    }

    fn send<'a>(&'a self, server: SocketAddr, request: &'a Message) -> Sent<'a> {
        Box::pin(async move {
            HandleClient::new(server, Transport::Udp)
                .send(request)
                .await
        })
    }
}

/// TCP, one request per connection, an exchange bounded by `timeout`.
#[derive(Debug, Clone, Copy)]
pub struct Tcp {
    pub timeout: Duration,
}

impl Link for Tcp {
    fn transport(&self) -> Transport {
        Transport::Tcp
    }

    fn send<'a>(&'a self, server: SocketAddr, request: &'a Message) -> Sent<'a> {
        Box::pin(async move {
            HandleClient::new(server, Transport::Tcp)
                .with_tcp_timeout(self.timeout)
                .send(request)
                .await
        })
    }
}

/// The reference client's order: UDP first, TCP when UDP gets no answer or the site has no
/// UDP interface.
pub fn udp_then_tcp(tcp_timeout: Duration) -> Vec<Arc<dyn Link>> {
    vec![
        Arc::new(Udp),
        Arc::new(Tcp {
            timeout: tcp_timeout,
        }),
    ]
}
