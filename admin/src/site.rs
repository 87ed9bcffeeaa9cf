//! Multi-server sites: a server's place in its site, and `suyuan site merge`, which assembles
//! the one `siteinfo.json` listing every server of a site from each server's own file.
//!
//! A server knows only its own address, ports and key, so its own `siteinfo.json` lists itself
//! alone, under its server id, with the site's size in the attribute [`SITE_SERVERS`]. The
//! merged file lists the servers in the order of their ids (1 first): a client picks the
//! server of a handle by its position, so the order is the site's partition.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use suyuan_codec::json::{JsonLimits, site_from_json, site_to_json};
use suyuan_codec::site::{ServerInfo, SiteAttribute, SiteInfo, interface_protocol};

/// The attribute of a member's own site file that says how many servers its site has.
pub const SITE_SERVERS: &str = "suyuan.site_servers";

/// Where a server stands in its site: its id (1 to `servers`) and the site's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Membership {
    pub server_id: u32,
    pub servers: u32,
}

impl Membership {
    /// A server that is its site's only one.
    pub const ALONE: Membership = Membership {
        server_id: 1,
        servers: 1,
    };

    pub fn new(server_id: u32, servers: u32) -> Result<Membership> {
        if servers == 0 {
            bail!("--site-servers must be at least 1");
        }
        if server_id == 0 || server_id > servers {
            bail!(
                "--server-num {server_id} is not a server of a {servers}-server site: servers are numbered 1 to {servers}"
            );
        }
        Ok(Membership { server_id, servers })
    }

    /// What a server's own site file says about it.
    pub fn of(own: &SiteInfo) -> Result<Membership> {
        let [server] = own.servers.as_slice() else {
            bail!(
                "a server's own site file lists the server alone; this one lists {}",
                own.servers.len()
            );
        };
        let servers = match own.attribute(SITE_SERVERS) {
            Some(n) => n
                .parse()
                .with_context(|| format!("attribute {SITE_SERVERS} is {n:?}, not a number"))?,
            None => 1,
        };
        Membership::new(server.server_id, servers)
    }

    /// Marks `site` (one server, just built) as this member's own file.
    pub fn mark(self, site: &mut SiteInfo) {
        for s in &mut site.servers {
            s.server_id = self.server_id;
        }
        site.attributes.retain(|a| a.name != SITE_SERVERS);
        if self.servers > 1 {
            site.attributes.push(SiteAttribute {
                name: SITE_SERVERS.into(),
                value: self.servers.to_string(),
            });
        }
    }
}

pub fn read_site(path: &Path) -> Result<SiteInfo> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    site_from_json(&json, &JsonLimits::DEFAULT)
        .with_context(|| format!("{} is not a site file", path.display()))
}

/// The values among `values` of the types `site_types` that name this server (by its key)
/// but not `site` as it is now, rewritten to `site`: what a node brings up to date where its
/// own site is published (a top's root record, a delegate's prefix record at its top).
pub fn restamped(
    values: &[suyuan_codec::value::HandleValue],
    site_types: &[&str],
    site: &SiteInfo,
    own_key: &[u8],
) -> Vec<suyuan_codec::value::HandleValue> {
    let data = site.encode();
    values
        .iter()
        .filter(|v| {
            site_types.contains(&v.value_type.as_str())
                && v.data != data
                && SiteInfo::decode(&v.data)
                    .is_ok_and(|s| s.servers.iter().any(|srv| srv.public_key == own_key))
        })
        .map(|v| suyuan_codec::value::HandleValue {
            data: data.clone(),
            ..v.clone()
        })
        .collect()
}

/// A top-level node as given on the command line: its Handle address (IP:PORT, taken as a
/// primary site of one server answering TCP and UDP there) or its site file.
pub fn upstream_site(given: &str) -> Result<SiteInfo> {
    if let Ok(addr) = given.parse::<std::net::SocketAddr>() {
        let port = u32::from(addr.port());
        return Ok(SiteInfo::single_server(
            1,
            addr.ip(),
            Vec::new(),
            suyuan_codec::site::Interface::handle_pair(port).to_vec(),
        ));
    }
    let path = Path::new(given);
    if !path.exists() {
        bail!("{given:?} is neither an address of the form IP:PORT nor a site file");
    }
    read_site(path)
}

pub fn site_text(site: &SiteInfo) -> Result<String> {
    Ok(serde_json::to_string_pretty(&site_to_json(site))? + "\n")
}

/// Assembles the site of the servers whose own files are `own` (each with the name to give
/// in errors): every file one server of the same N-server site, every id 1 to N once, each
/// server with its own key, everything but the server the same in all. The serial is the
/// highest of theirs, so a merge after any server's change is newer than every file before.
pub fn merge(own: &[(String, SiteInfo)]) -> Result<SiteInfo> {
    let Some((first_name, first)) = own.first() else {
        bail!("give the siteinfo.json of each server of the site");
    };
    let mut members = Vec::with_capacity(own.len());
    for (name, site) in own {
        let m = Membership::of(site).with_context(|| name.clone())?;
        members.push(m);
        let differs = |what: &str| -> Result<()> {
            bail!("{name} and {first_name} disagree on {what}: they are not servers of one site")
        };
        if m.servers != members[0].servers {
            differs(&format!(
                "the number of servers ({} and {})",
                m.servers, members[0].servers
            ))?;
        }
        if site.hash_option != first.hash_option {
            differs("the hash option")?;
        }
        if site.hash_filter != first.hash_filter {
            differs("the hash filter")?;
        }
        if site.flags != first.flags {
            differs("whether the site is primary")?;
        }
        if (
            site.protocol_major,
            site.protocol_minor,
            site.data_format_version,
        ) != (
            first.protocol_major,
            first.protocol_minor,
            first.data_format_version,
        ) {
            differs("the protocol version")?;
        }
        if site.attributes != first.attributes {
            differs("the site's attributes")?;
        }
    }
    let n = members[0].servers;
    let mut slots: Vec<Option<usize>> = vec![None; n as usize];
    for (i, m) in members.iter().enumerate() {
        let slot = &mut slots[(m.server_id - 1) as usize];
        if let Some(j) = *slot {
            bail!(
                "{} and {} are both server {}: give each server its own --server-num",
                own[j].0,
                own[i].0,
                m.server_id
            );
        }
        *slot = Some(i);
    }
    let missing: Vec<String> = (1..=n)
        .filter(|id| slots[(*id - 1) as usize].is_none())
        .map(|id| id.to_string())
        .collect();
    if !missing.is_empty() {
        bail!(
            "the site has {n} servers but no file for server {}: give the siteinfo.json of every server",
            missing.join(", ")
        );
    }
    let mut site = first.clone();
    site.servers = slots
        .iter()
        .flatten()
        .map(|&i| own[i].1.servers[0].clone())
        .collect();
    for (a, sa) in site.servers.iter().enumerate() {
        if let Some(sb) = site.servers[a + 1..]
            .iter()
            .find(|sb| sb.public_key == sa.public_key)
        {
            bail!(
                "servers {} and {} have the same key: each server needs its own data dir from its own `suyuan init`",
                sa.server_id,
                sb.server_id
            );
        }
    }
    site.serial_number = own.iter().map(|(_, s)| s.serial_number).max().unwrap_or(1);
    Ok(site)
}

/// Checks that `site` (from `serve --site`) is the site of the server whose own file is
/// `own`: it lists the server under its id, at its address and ports, with its key.
pub fn check_member(site: &SiteInfo, own: &SiteInfo, path: &Path) -> Result<()> {
    let me = Membership::of(own)?;
    let mine = &own.servers[0];
    let listed = site
        .servers
        .iter()
        .find(|s| s.server_id == me.server_id)
        .with_context(|| {
            format!(
                "{} does not list server {} (this server): merge it from every server's siteinfo.json",
                path.display(),
                me.server_id
            )
        })?;
    if listed.public_key != mine.public_key {
        bail!(
            "{} lists server {} with another key than this server's: it is another site's file, or this data dir was made again after the merge",
            path.display(),
            me.server_id
        );
    }
    if listed.address != mine.address || listed.interfaces != mine.interfaces {
        bail!(
            "{} lists server {} at {}, but this server serves at {}: merge again from the current siteinfo.json files (or serve on the address and ports it lists, with public_address in the config if it binds another address)",
            path.display(),
            me.server_id,
            describe(listed),
            describe(mine)
        );
    }
    if site.servers.len() != me.servers as usize {
        bail!(
            "{} lists {} servers, but this server was made for a site of {} (init --site-servers)",
            path.display(),
            site.servers.len(),
            me.servers
        );
    }
    Ok(())
}

/// A server's address and ports, as an operator compares them.
fn describe(s: &ServerInfo) -> String {
    let ports: Vec<String> = s
        .interfaces
        .iter()
        .map(|i| {
            let p = match i.protocol {
                interface_protocol::UDP => "udp",
                interface_protocol::TCP => "tcp",
                interface_protocol::HTTP => "http",
                interface_protocol::HTTPS => "https",
                _ => "?",
            };
            format!("{p} {}", i.port)
        })
        .collect();
    format!("{} ({})", s.ip(), ports.join(", "))
}

#[derive(Args, Debug)]
pub struct SiteArgs {
    #[command(subcommand)]
    command: SiteCommand,
}

#[derive(Subcommand, Debug)]
enum SiteCommand {
    /// Assemble the site's siteinfo.json from each server's own (every server of the site
    /// once); serve each server with `serve --site` on the result.
    Merge {
        /// Each server's siteinfo.json (from its data dir).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Where to write the site's file (default: stdout).
        #[arg(long, short)]
        out: Option<PathBuf>,
    },
}

pub fn run(a: SiteArgs) -> Result<ExitCode> {
    match a.command {
        SiteCommand::Merge { files, out } => {
            let own = files
                .iter()
                .map(|f| Ok((f.display().to_string(), read_site(f)?)))
                .collect::<Result<Vec<_>>>()?;
            let site = merge(&own)?;
            let text = site_text(&site)?;
            match out {
                Some(path) => {
                    std::fs::write(&path, text)
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    eprintln!(
                        "wrote the {}-server site to {} (serial {})",
                        site.servers.len(),
                        path.display(),
                        site.serial_number
                    );
                }
                None => crate::outln!("{}", text.trim_end())?,
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use suyuan_codec::site::{HashOption, Interface};

    fn own(id: u32, n: u32, key: u8) -> SiteInfo {
        let mut s = SiteInfo::single_server(
            1,
            "127.0.0.1".parse().unwrap(),
            vec![key; 4],
            vec![Interface {
                kind: 3,
                protocol: 1,
                port: 2640 + id,
            }],
        );
        Membership::new(id, n).unwrap().mark(&mut s);
        s
    }

    fn named(sites: Vec<SiteInfo>) -> Vec<(String, SiteInfo)> {
        sites
            .into_iter()
            .enumerate()
            .map(|(i, s)| (format!("s{i}.json"), s))
            .collect()
    }

    #[test]
    fn merge_orders_by_server_id() {
        let mut a = own(3, 3, 3);
        a.serial_number = 4;
        let site = merge(&named(vec![a, own(1, 3, 1), own(2, 3, 2)])).unwrap();
        let ids: Vec<u32> = site.servers.iter().map(|s| s.server_id).collect();
        assert_eq!(ids, [1, 2, 3]);
        assert_eq!(site.servers[2].interfaces[0].port, 2643);
        assert_eq!(site.serial_number, 4);
        for (i, _) in site.servers.iter().enumerate() {
            let mut me = own(i as u32 + 1, 3, i as u8 + 1);
            check_member(&site, &me, Path::new("site.json")).unwrap();
            me.servers[0].interfaces[0].port = 1;
            assert!(check_member(&site, &me, Path::new("site.json")).is_err());
        }
    }

    fn refusal(sites: Vec<SiteInfo>) -> String {
        format!("{:#}", merge(&named(sites)).unwrap_err())
    }

    #[test]
    fn merge_refuses_files_of_different_sites() {
        assert!(refusal(vec![own(1, 3, 1), own(2, 2, 2)]).contains("number of servers"));
        let mut b = own(2, 3, 2);
        b.hash_option = HashOption::ByPrefix;
        assert!(refusal(vec![own(1, 3, 1), b, own(3, 3, 3)]).contains("hash option"));
        let mut b = own(2, 3, 2);
        b.attributes.push(SiteAttribute {
            name: "desc".into(),
            value: "other".into(),
        });
        assert!(refusal(vec![own(1, 3, 1), b, own(3, 3, 3)]).contains("attributes"));
        assert!(refusal(vec![own(1, 3, 1), own(1, 3, 2), own(3, 3, 3)]).contains("both server 1"));
        assert!(refusal(vec![own(1, 3, 1), own(3, 3, 3)]).contains("no file for server 2"));
        assert!(refusal(vec![own(1, 2, 1), own(2, 2, 1)]).contains("same key"));
        let mut two = own(1, 3, 1);
        two.servers.push(two.servers[0].clone());
        assert!(refusal(vec![two]).contains("lists the server alone"));
        assert!(Membership::new(4, 3).is_err());
        assert!(Membership::new(0, 3).is_err());
    }
}
