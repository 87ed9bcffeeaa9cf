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
    /// Check the record's signed values (HS_SIGNATURE) as a reference client trusts them: each
    /// signature's certificate chain (HS_CERT values, resolved the same way) must end at a
    /// trusted root key, and every public value must be signed, unchanged since. One line a
    /// value (`ok` or `FAIL` with the reason); exit 1 when any fails.
    #[arg(long)]
    verify: bool,
    /// A root key chains may end at (a PEM public key, RSA or SM2; repeatable).
    #[arg(long, value_name = "FILE", requires = "verify")]
    trust_root: Vec<std::path::PathBuf>,
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
    let (answer, server, walked) = ask(&a, &handle, &a.types, &a.indexes).await?;
    if let Some(by) = walked {
        eprintln!("served by {by}");
    }
    let code = answer.header.response_code;
    match answer.body {
        Body::ResolutionResponse { values, .. } if code == rc::SUCCESS => {
            for v in &values {
                crate::outln!("{}", format_value(v))?;
            }
            if a.verify {
                return verify(&a, &handle).await;
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

/// One resolution of `handle` the way `a` says (the walker from `--root`, the server a site's
/// hash picks, or `--server`): the answer, the server asked, and who served a walk.
async fn ask(
    a: &ResolveArgs,
    handle: &str,
    types: &[String],
    indexes: &[u32],
) -> anyhow::Result<(suyuan_codec::Message, SocketAddr, Option<String>)> {
    Ok(match &a.root {
        Some(root) => {
            let top = crate::site::upstream_site(root)?;
            let walker =
                suyuan_federation::Walker::new(suyuan_federation::WalkerConfig::new(vec![top]));
            let walked = walker
                .resolve(handle, types, indexes, suyuan_federation::Hops(0))
                .await?;
            let by = walked.served_by.to_string();
            (walked.message, walked.served_by.server, Some(by))
        }
        None => {
            let server = match &a.site {
                Some(path) => suyuan_federation::server_for(
                    &crate::site::read_site(path)?,
                    handle,
                    a.transport,
                )?,
                None => a.server,
            };
            let client = HandleClient::new(server, a.transport);
            let mut req = client.resolution(handle, types, indexes);
            if !a.recursive {
                req.header.op_flags &= !suyuan_codec::message::flags::REC;
            }
            (client.send(&req).await?, server, None)
        }
    })
}

/// All the values of `handle`, resolved the way `a` says, or none when it does not resolve.
async fn fetch(a: &ResolveArgs, handle: &str) -> anyhow::Result<Option<Vec<HandleValue>>> {
    let (answer, _, _) = ask(a, handle, &[], &[]).await?;
    Ok(match answer.body {
        Body::ResolutionResponse { values, .. } if answer.header.response_code == rc::SUCCESS => {
            Some(values)
        }
        _ => None,
    })
}

struct Fetched(std::collections::HashMap<String, Vec<HandleValue>>);

impl suyuan_codec::trust::Lookup for Fetched {
    fn values(&self, handle: &str) -> Option<Vec<HandleValue>> {
        self.0.get(handle).cloned()
    }
}

/// `--verify`: the whole record's signatures checked, the certificates of their chains
/// fetched as the chain builder asks for them.
async fn verify(a: &ResolveArgs, handle: &str) -> anyhow::Result<ExitCode> {
    use anyhow::Context;
    use suyuan_codec::trust::{TrustError, verify_record};
    let mut roots = Vec::new();
    for f in &a.trust_root {
        let pem =
            std::fs::read_to_string(f).with_context(|| format!("--trust-root {}", f.display()))?;
        let key = suyuan_codec::trust::public_key_from_pem(&pem)
            .map_err(|e| anyhow::anyhow!("--trust-root {}: {e}", f.display()))?;
        roots.push(key);
    }
    let record = fetch(a, handle)
        .await?
        .with_context(|| format!("{handle}: cannot resolve the whole record to verify it"))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let mut certs = Fetched(Default::default());
    let findings = loop {
        match verify_record(handle, &record, now, &roots, &certs) {
            Ok(f) => break f,
            Err(TrustError::Need(h)) if certs.0.len() < suyuan_codec::trust::MAX_CHAIN * 2 => {
                // A handle that does not resolve holds no certificate.
                let values = fetch(a, &h).await.ok().flatten().unwrap_or_default();
                certs.0.insert(h, values);
            }
            Err(e) => anyhow::bail!("{handle}: {e}"),
        }
    };
    if roots.is_empty() {
        eprintln!("note: no --trust-root given: no chain can end at a trusted key");
    }
    let mut ok = true;
    for f in &findings {
        ok &= f.ok;
        crate::outln!("{} {}", if f.ok { "ok  " } else { "FAIL" }, f.text)?;
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
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
