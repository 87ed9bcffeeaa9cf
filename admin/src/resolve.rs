//! `suyuan resolve`: one resolution over the wire protocol, printed one value a line.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Args;
use suyuan_codec::message::{Body, rc};
use suyuan_codec::value::{HandleValue, TypedData};
use suyuan_federation::{HandleClient, Transport};

#[derive(Args, Debug)]
pub struct ResolveArgs {
    /// The handle, e.g. 88.888.1/report-2025 (a bare prefix P means 0.NA/P).
    handle: String,
    /// The node's Handle address.
    #[arg(long, default_value = crate::DEFAULT_HANDLE_ADDR, value_parser = crate::parse_addr)]
    server: SocketAddr,
    /// A site's siteinfo.json instead of --server: the handle is asked of the server of the
    /// site its hash picks, as every Handle client does.
    #[arg(long, conflicts_with = "server", value_name = "FILE")]
    site: Option<std::path::PathBuf>,
    /// Only values of this type (repeatable; `URL.` matches its subtypes).
    #[arg(long = "type", value_name = "T")]
    types: Vec<String>,
    /// Only the value at this index (repeatable).
    #[arg(long = "index", value_name = "I")]
    indexes: Vec<u32>,
    /// Ask the server to walk the hierarchy for a handle it does not serve (sets REC; the
    /// server must allow recursion).
    #[arg(long)]
    recursive: bool,
    /// Walk the hierarchy from this top-level node (its site file or IP:PORT) as the
    /// reference client does: the prefix handle at the top, then the site it names.
    #[arg(long, conflicts_with_all = ["server", "site"], value_name = "SITEINFO_OR_ADDR")]
    root: Option<String>,
    /// Transport: auto (UDP, then TCP), udp or tcp.
    #[arg(long, default_value = "auto", value_parser = parse_transport)]
    transport: Transport,
}

fn parse_transport(s: &str) -> Result<Transport, String> {
    match s {
        "auto" => Ok(Transport::Auto),
        "udp" => Ok(Transport::Udp),
        "tcp" => Ok(Transport::Tcp),
        _ => Err(format!("{s:?}: expected auto, udp or tcp")),
    }
}

pub async fn run(a: ResolveArgs) -> anyhow::Result<ExitCode> {
    let handle = if a.handle.contains('/') {
        a.handle.clone()
    } else {
        format!("0.NA/{}", a.handle)
    };
    let (answer, server) = match &a.root {
        Some(root) => {
            let top = crate::site::upstream_site(root)?;
            let walker =
                suyuan_federation::Walker::new(suyuan_federation::WalkerConfig::new(vec![top]));
            let hops = suyuan_federation::Hops(0);
            let walked = walker.resolve(&handle, &a.types, &a.indexes, hops).await?;
            eprintln!("served by {}", walked.served_by);
            (walked.message, walked.served_by.server)
        }
        None => {
            let server = match &a.site {
                Some(path) => suyuan_federation::server_for(
                    &crate::site::read_site(path)?,
                    &handle,
                    a.transport,
                )?,
                None => a.server,
            };
            let client = HandleClient::new(server, a.transport);
            let mut req = client.resolution(&handle, &a.types, &a.indexes);
            if !a.recursive {
                req.header.op_flags &= !suyuan_codec::message::flags::REC;
            }
            (client.send(&req).await?, server)
        }
    };
    let code = answer.header.response_code;
    match answer.body {
        Body::ResolutionResponse { values, .. } if code == rc::SUCCESS => {
            for v in &values {
                crate::outln!("{}", format_value(v))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Body::Referral { handle: to, values }
            if code == rc::PREFIX_REFERRAL || code == rc::SERVICE_REFERRAL =>
        {
            let to = if to.is_empty() {
                String::new()
            } else {
                format!(" to {to}")
            };
            eprintln!(
                "suyuan: {handle}: {} ({code}){to}: ask the service these values name (or use --root)",
                rc::name(code).unwrap_or("UNKNOWN")
            );
            for v in values.unwrap_or_default() {
                crate::outln!("{}", format_value(&v))?;
            }
            Ok(ExitCode::FAILURE)
        }
        body => {
            let detail = match body {
                Body::Error { message: Some(m) } if !m.is_empty() => format!(": {m}"),
                _ => String::new(),
            };
            eprintln!(
                "suyuan: {handle}: {} ({code}){detail}",
                rc::name(code).unwrap_or("UNKNOWN")
            );
            if handle != a.handle {
                eprintln!(
                    "note: {} has no slash, so it was read as the prefix handle {handle}",
                    a.handle
                );
            }
            if code == rc::SERVER_NOT_RESP {
                eprintln!("{}", not_served_hint(server, &handle));
            }
            Ok(ExitCode::FAILURE)
        }
    }
}

/// What to do about an RC 301: which prefix the node does not serve, and where the Handle
/// system says who does (the prefix handle `0.NA/P`, answered by the top-level service).
pub fn not_served_hint(server: SocketAddr, handle: &str) -> String {
    let prefix = handle.split_once('/').map_or(handle, |(p, _)| p);
    if prefix.eq_ignore_ascii_case("0.NA") {
        format!(
            "hint: the node at {server} does not hold the prefix handle {handle}; prefix handles \
             (0.NA/...) are answered by a top-level (global) node"
        )
    } else {
        format!(
            "hint: the node at {server} does not serve prefix {prefix}; resolve 0.NA/{prefix} \
             at a top-level node to find who does (--root TOP walks there; --recursive asks \
             a node that recurses)"
        )
    }
}

/// `index type ttl perms data`, data decoded where the type has a layout.
pub fn format_value(v: &HandleValue) -> String {
    let data = match v.typed() {
        Ok(TypedData::Admin(a)) => format!(
            "admin={}:{} perms={:012b}",
            a.admin_index, a.admin_handle, a.permissions
        ),
        Ok(TypedData::ValueList(refs)) => refs
            .iter()
            .map(|r| format!("{}:{}", r.index, r.handle))
            .collect::<Vec<_>>()
            .join(","),
        Ok(TypedData::Text(s)) | Ok(TypedData::Alias(s)) => s,
        Ok(TypedData::PublicKey(_)) => format!("<public key, {} bytes>", v.data.len()),
        Ok(TypedData::SecretKey(_)) => "<secret key>".into(),
        Ok(TypedData::Site(s)) => format!("<site, {} servers>", s.servers.len()),
        _ => format!("hex:{}", hex_of(&v.data)),
    };
    format!(
        "{:>5} {} ttl={} perms={:04b} {}",
        v.index, v.value_type, v.ttl, v.permissions.0, data
    )
}

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
