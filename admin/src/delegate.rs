//! `suyuan delegate`: create or bring up to date a prefix's record `0.NA/PREFIX` at a top-level
//! node over the wire, so that clients walking the hierarchy are sent to the delegate's site.
//! Only the values that differ are written; a re-run with the same inputs writes nothing.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;
use suyuan_codec::handle::NA_PREFIX;
use suyuan_codec::message::{Body, Message, flags, opcode, rc};
use suyuan_codec::value::{AdminRecord, HandleValue, admin_perm, types};
use suyuan_federation::{Credentials, HandleClient, Transport};

use crate::auth::AuthArgs;

#[derive(Args, Debug)]
pub struct DelegateArgs {
    /// The prefix to delegate, e.g. 88.888.
    prefix: String,
    /// The top-level node: its Handle address (IP:PORT) or its site file (siteinfo.json).
    #[arg(long, value_name = "ADDR|SITEINFO")]
    top: String,
    #[command(flatten)]
    auth: AuthArgs,
    /// The delegate's site file, in the reference format (Suyuan's siteinfo.json, or a
    /// reference server's).
    #[arg(long, value_name = "SITEINFO")]
    site: PathBuf,
    /// The delegate's public key: stored at 300 and named by the HS_ADMIN, so the delegate
    /// administers its own prefix record. Without it the HS_ADMIN names `--auth`.
    #[arg(long, value_name = "FILE")]
    admin_pubkey: Option<PathBuf>,
    /// Also refer derived prefixes (PREFIX.x) to the site, with an HS_SITE.PREFIX value.
    #[arg(long)]
    prefix_service: bool,
}

/// The values `0.NA/PREFIX` should hold, by index.
fn wanted(a: &DelegateArgs, creds: &Credentials) -> Result<Vec<HandleValue>> {
    let handle = format!("{NA_PREFIX}/{}", a.prefix);
    let site = crate::site::read_site(&a.site)?.encode();
    let mut values = vec![HandleValue::new(1, types::HS_SITE, site.clone())];
    if a.prefix_service {
        values.push(HandleValue::new(2, types::HS_SITE_PREFIX, site));
    }
    let admin = match &a.admin_pubkey {
        Some(path) => {
            let key = crate::init::read_pubkey(path)?;
            values.push(HandleValue::new(300, types::HS_PUBKEY, key.encode()));
            AdminRecord::new(admin_perm::ALL, handle, 300)
        }
        None => {
            let (index, who) = creds.identity();
            AdminRecord::new(admin_perm::ALL, who.to_string(), index)
        }
    };
    values.push(HandleValue::new(100, types::HS_ADMIN, admin.encode()));
    values.sort_by_key(|v| v.index);
    Ok(values)
}

/// The top's address for an administrative request about `handle`: the address given, or
/// the primary server of the site file that the handle's hash picks.
fn top_addr(top: &str, handle: &str) -> Result<SocketAddr> {
    let site = crate::site::upstream_site(top).with_context(|| format!("--top {top:?}"))?;
    Ok(suyuan_federation::server_for(
        &site,
        handle,
        Transport::Tcp,
    )?)
}

/// How a node reaches its top for its delegation: over node-to-node QUIC when the top's site
/// advertises it and the node has the federation's certificates (never in clear then), else
/// over TCP.
enum Channel<'a> {
    Tcp(HandleClient),
    Quic(
        &'a suyuan_federation::quic::QuicLink,
        SocketAddr,
        HandleClient,
    ),
}

impl Channel<'_> {
    fn addr(&self) -> SocketAddr {
        match self {
            Channel::Tcp(c) => c.server(),
            Channel::Quic(_, a, _) => *a,
        }
    }

    async fn resolve(&self, handle: &str) -> Result<Message, suyuan_federation::ClientError> {
        match self {
            Channel::Tcp(c) => c.resolve(handle, &[], &[]).await,
            Channel::Quic(q, a, ids) => {
                use suyuan_federation::Link;
                q.send(*a, &ids.resolution(handle, &[], &[])).await
            }
        }
    }

    async fn send_authenticated(
        &self,
        m: &Message,
        creds: &Credentials,
    ) -> Result<Option<Message>, suyuan_federation::ClientError> {
        match self {
            Channel::Tcp(c) => Ok(c.send_authenticated(m, creds).await?.into_iter().next()),
            Channel::Quic(q, a, _) => q.send_authenticated(*a, m, creds).await.map(Some),
        }
    }

    fn request(&self, op: u32, op_flags: u32, body: Body) -> Message {
        match self {
            Channel::Tcp(c) | Channel::Quic(_, _, c) => c.request(op, op_flags, body),
        }
    }
}

/// Keeps the HS_SITE values of `0.NA/PREFIX` at the top that name this server (by its key)
/// the site it serves now, authenticated as `creds` (the delegate's `300:0.NA/PREFIX`). Says
/// what it did.
pub async fn keep_current(
    top: &str,
    prefix: &str,
    creds: &Credentials,
    site: &suyuan_codec::site::SiteInfo,
    own_key: &[u8],
    quic: Option<&suyuan_federation::quic::QuicLink>,
) -> Result<String> {
    let handle = format!("{NA_PREFIX}/{prefix}");
    let addr = top_addr(top, &handle)?;
    let top_site = crate::site::upstream_site(top)?;
    let client = HandleClient::new(addr, Transport::Tcp);
    let channel = match quic.map(|q| {
        (
            q,
            suyuan_federation::server_for(&top_site, &handle, Transport::Quic),
        )
    }) {
        Some((q, Ok(a))) => Channel::Quic(q, a, client),
        _ => Channel::Tcp(client),
    };
    let addr = channel.addr();
    let have = channel
        .resolve(&handle)
        .await
        .with_context(|| format!("cannot ask the top at {addr} for {handle}"))?;
    let Body::ResolutionResponse { values, .. } = have.body else {
        bail!(
            "the top at {addr} does not hold {handle} ({}): delegate the prefix first",
            why(have.header.response_code, &have.body)
        );
    };
    let stale = crate::site::restamped(
        &values,
        &[types::HS_SITE, types::HS_SITE_PREFIX],
        site,
        own_key,
    );
    if stale.is_empty() {
        return Ok(format!("{handle} at {addr} names this site already"));
    }
    let n = stale.len();
    let m = channel.request(
        opcode::MODIFY_VALUE,
        flags::REC | flags::CA,
        Body::HandleValues {
            handle: handle.clone(),
            values: stale,
        },
    );
    let answer = channel
        .send_authenticated(&m, creds)
        .await
        .with_context(|| format!("the top at {addr}"))?;
    check_written(addr, &handle, answer)?;
    Ok(format!(
        "{handle} at {addr}: {n} site value(s) now name serial {}",
        site.serial_number
    ))
}

fn why(code: u32, body: &Body) -> String {
    let name = rc::name(code).unwrap_or("unknown response code");
    let hint = match code {
        rc::AUTHENTICATION_FAILED | rc::INVALID_CREDENTIAL => {
            ": the top could not verify --auth with that key (is it the top's administrator, and the key its own?)"
        }
        _ => "",
    };
    match body {
        Body::Error { message: Some(m) } if !m.is_empty() => format!("{name} ({code}): {m}"),
        _ => format!("{name} ({code}){hint}"),
    }
}

/// One authenticated write of `values` to `handle` at the top.
async fn send(
    client: &HandleClient,
    creds: &Credentials,
    handle: &str,
    op: u32,
    values: Vec<HandleValue>,
) -> Result<()> {
    let addr = client.server();
    let m: Message = client.request(
        op,
        flags::REC | flags::CA,
        Body::HandleValues {
            handle: handle.to_string(),
            values,
        },
    );
    let answer = client
        .send_authenticated(&m, creds)
        .await
        .with_context(|| format!("the top at {addr}"))?
        .into_iter()
        .next();
    check_written(addr, handle, answer)
}

/// The top's answer to a write of `handle`: success, or why not.
fn check_written(addr: SocketAddr, handle: &str, answer: Option<Message>) -> Result<()> {
    let answer = answer.with_context(|| format!("no answer from the top at {addr}"))?;
    match answer.header.response_code {
        rc::SUCCESS => Ok(()),
        code => bail!(
            "the top at {addr} refused to write {handle}: {}",
            why(code, &answer.body)
        ),
    }
}

pub async fn run(a: DelegateArgs) -> Result<ExitCode> {
    if a.prefix.is_empty() || a.prefix.contains('/') {
        bail!(
            "{:?} is not a prefix (write it without 0.NA/, e.g. 88.888)",
            a.prefix
        );
    }
    let creds = a
        .auth
        .credentials("(an administrator of the top, e.g. 300:0.NA/0.NA)")
        .map_err(anyhow::Error::msg)?;
    let handle = format!("{NA_PREFIX}/{}", a.prefix);
    let want = wanted(&a, &creds)?;
    let addr = top_addr(&a.top, &handle)?;
    let client = HandleClient::new(addr, Transport::Tcp);
    // A node that is no top answers 0.NA/PREFIX for a prefix it homes, but holds no 0.NA/0.NA.
    let root = format!("{NA_PREFIX}/{NA_PREFIX}");
    let is_top = client
        .resolve(&root, &[], &[])
        .await
        .with_context(|| format!("cannot reach the top at {addr}"))?;
    if is_top.header.response_code != rc::SUCCESS {
        bail!(
            "{addr} is not a top-level node: it holds no {root} ({})",
            why(is_top.header.response_code, &is_top.body)
        );
    }
    let have = client
        .resolve(&handle, &[], &[])
        .await
        .with_context(|| format!("cannot ask the top at {addr} for {handle}"))?;
    match (have.header.response_code, have.body) {
        (rc::HANDLE_NOT_FOUND, _) => {
            let n = want.len();
            send(&client, &creds, &handle, opcode::CREATE_HANDLE, want).await?;
            crate::outln!("created {handle} at {addr} ({n} values)")?;
        }
        (rc::SUCCESS, Body::ResolutionResponse { values, .. }) => {
            let (mut add, mut modify) = (Vec::new(), Vec::new());
            for w in want {
                match values.iter().find(|v| v.index == w.index) {
                    None => add.push(w),
                    Some(v) if v.value_type != w.value_type || v.data != w.data => modify.push(w),
                    Some(_) => {}
                }
            }
            if add.is_empty() && modify.is_empty() {
                crate::outln!("{handle} at {addr} is unchanged")?;
                return Ok(ExitCode::SUCCESS);
            }
            let names = |vs: &[HandleValue]| {
                vs.iter()
                    .map(|v| format!("{}:{}", v.index, v.value_type))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let said = format!("added [{}], modified [{}]", names(&add), names(&modify));
            if !add.is_empty() {
                send(&client, &creds, &handle, opcode::ADD_VALUE, add).await?;
            }
            if !modify.is_empty() {
                send(&client, &creds, &handle, opcode::MODIFY_VALUE, modify).await?;
            }
            crate::outln!("updated {handle} at {addr}: {said}")?;
        }
        (rc::SERVER_NOT_RESP, body) => bail!(
            "{addr} is not a top-level node: it does not answer for {handle} ({})",
            why(rc::SERVER_NOT_RESP, &body)
        ),
        (code, body) => bail!(
            "the top at {addr} could not look up {handle}: {}",
            why(code, &body)
        ),
    }
    Ok(ExitCode::SUCCESS)
}
