//! A small HTTP/1.1 client for the comparison: one request per connection (`Connection:
//! close`), plain or TLS, never following redirects, and only ever to a loopback address.
//!
//! It is written by hand on purpose: the comparison must see exactly what each server sent
//! (status, every header, the raw body), with nothing a client library would smooth over.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// Where a node's HTTP face is: `http://` or `https://`, a loopback address and a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrl {
    pub tls: bool,
    pub addr: SocketAddr,
}

impl BaseUrl {
    /// Reads `http://127.0.0.1:8000` or `https://localhost:18000` (a path is refused: the
    /// comparison owns the paths). `localhost` means 127.0.0.1; a name is not looked up, so
    /// nothing can resolve to an address beyond the loopback network.
    pub fn parse(s: &str) -> Result<Self> {
        let (tls, rest) = if let Some(r) = s.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = s.strip_prefix("http://") {
            (false, r)
        } else {
            bail!("{s:?}: a base URL starts with http:// or https://");
        };
        let rest = rest.trim_end_matches('/');
        if rest.contains('/') {
            bail!("{s:?}: give the base URL without a path");
        }
        let addr = crate::loopback_addr(rest, if tls { 443 } else { 80 })
            .with_context(|| format!("base URL {s:?}"))?;
        Ok(BaseUrl { tls, addr })
    }

    /// The base as the server names itself in `Location` headers.
    pub fn spellings(&self) -> Vec<String> {
        let scheme = if self.tls { "https" } else { "http" };
        let port = self.addr.port();
        vec![
            format!("{scheme}://{}:{port}", self.addr.ip()),
            format!("{scheme}://localhost:{port}"),
        ]
    }

    /// The same server with the other scheme (the HTTP port takes both).
    pub fn with_tls(&self, tls: bool) -> Self {
        BaseUrl {
            tls,
            addr: self.addr,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// Path and query, sent as given (odd URLs included).
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
}

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Names lower-cased, in the order received; a repeated header appears more than once.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

const TIMEOUT: Duration = Duration::from_secs(15);

pub fn send(base: &BaseUrl, req: &Request) -> Result<Response> {
    crate::ensure_loopback(base.addr.ip())?;
    let stream = TcpStream::connect_timeout(&base.addr, TIMEOUT)
        .with_context(|| format!("cannot connect to {}", base.addr))?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    let mut head = format!(
        "{} {} HTTP/1.1\r\nHost: {}\r\n",
        req.method, req.target, base.addr
    );
    for (n, v) in &req.headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    if let Some(b) = &req.body {
        head.push_str(&format!("Content-Length: {}\r\n", b.len()));
    }
    head.push_str("Connection: close\r\n\r\n");
    let mut out = head.into_bytes();
    if let Some(b) = &req.body {
        out.extend_from_slice(b);
    }
    let raw = if base.tls {
        let name = rustls::pki_types::ServerName::IpAddress(base.addr.ip().into());
        let conn = rustls::ClientConnection::new(tls_config(), name)?;
        let mut tls = rustls::StreamOwned::new(conn, stream);
        exchange(&mut tls, &out)?
    } else {
        let mut s = stream;
        exchange(&mut s, &out)?
    };
    parse(&raw)
}

/// Writes the request and reads until the server closes. A server that closes without
/// `close_notify` (common) or resets after a complete answer still gave its answer.
fn exchange(s: &mut (impl Read + Write), out: &[u8]) -> Result<Vec<u8>> {
    s.write_all(out).context("cannot send the request")?;
    s.flush()?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if !raw.is_empty() => {
                let _ = e;
                break;
            }
            Err(e) => return Err(e).context("no answer"),
        }
    }
    if raw.is_empty() {
        bail!("the server closed the connection without answering");
    }
    Ok(raw)
}

fn parse(raw: &[u8]) -> Result<Response> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("an answer without a complete header")?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        body = dechunk(&body);
    } else if let Some(len) = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
    {
        body.truncate(len);
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&b[..eol])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next().unwrap_or("").trim(), 16).ok());
        let Some(size) = size else { break };
        b = &b[eol + 2..];
        if size == 0 || b.len() < size {
            out.extend_from_slice(&b[..size.min(b.len())]);
            break;
        }
        out.extend_from_slice(&b[..size]);
        b = b.get(size + 2..).unwrap_or_default();
    }
    out
}

/// Both servers under comparison present self-signed certificates on loopback: the
/// comparison checks what they answer, not who they are, so any certificate is taken.
fn tls_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: std::sync::OnceLock<Arc<rustls::ClientConfig>> = std::sync::OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .expect("ring supports the default versions")
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
                .with_no_client_auth();
            Arc::new(cfg)
        })
        .clone()
}

#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
