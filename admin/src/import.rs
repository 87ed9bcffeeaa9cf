//! `suyuan import FILE`: bulk registration in *register* mode (a record already there with the
//! same values counts as done, one with other values is refused), so running it again writes
//! nothing and an interrupted run is completed by running it again.
//!
//! Online it speaks the Handle protocol to a running node: one session authenticated as
//! `--auth`, several kept TCP connections with one request in flight each. The wire has no
//! "register" opcode, so a plain CREATE that gets RC 101 is followed by an authenticated
//! resolution and a comparison (an ADD that gets RC 201 likewise). `--offline` writes into a
//! stopped node's store through the registry's group commit instead.

use std::collections::HashSet;
use std::io::{BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use suyuan_codec::handle::{Handle, key_of};
use suyuan_codec::message::{Body, flags, opcode, rc};
use suyuan_codec::value::HandleValue;
use suyuan_federation::{
    ClientError, ClientSession, Credentials, Exchange, HandleClient, KeptConnection, Transport,
};
use suyuan_registry::{CreateMode, Mutation, Record, Registry, RegistryError, Write};
use tokio::sync::{Mutex, mpsc};

use crate::auth::AuthArgs;
use crate::batchfile::{Entry, Format, Item, Items, Op, survey};
use crate::datadir::DataDir;

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// JSON Lines (named `.jsonl`, or starting with `{`) or a Handle.Net batch file.
    #[arg(required_unless_present = "from_handle_sql")]
    file: Option<PathBuf>,
    /// Read a Handle.Net server's SQL database (its `nas` and `handles` tables) instead of a
    /// file, and write its prefixes and records into the stopped node in `--data-dir`.
    #[arg(long, value_name = "URL", conflicts_with = "file")]
    from_handle_sql: Option<String>,
    /// The running node's Handle address.
    #[arg(long, default_value = crate::DEFAULT_HANDLE_ADDR, value_parser = crate::parse_addr)]
    server: SocketAddr,
    #[command(flatten)]
    auth: AuthArgs,
    /// Write into the store of a stopped node in `--data-dir` instead of talking to a node.
    #[arg(long)]
    offline: bool,
    #[arg(long, default_value = "./suyuan-data")]
    data_dir: PathBuf,
    /// Requests in flight at once (online).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=1024))]
    in_flight: u16,
}

/// What became of one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Written,
    Unchanged,
    Failed { code: u32, message: String },
}

/// The actor recorded in the change log for offline imports (no session names one).
pub const OFFLINE_ACTOR: &str = "0:SUYUAN/IMPORT";

/// Entries written per group commit offline.
const OFFLINE_BATCH: usize = 1024;

#[derive(Debug, Default)]
struct Tally {
    written: u64,
    unchanged: u64,
    failed: u64,
    skipped: u64,
    unreadable: u64,
}

/// Where reports go: above the progress bar, on stderr.
struct Report {
    bar: ProgressBar,
    tally: Tally,
}

impl Report {
    fn new(total: u64) -> Self {
        // Drawn only when stderr is a terminal; logs and pipes get the summary alone.
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} {per_sec} ETA {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        Report {
            bar,
            tally: Tally::default(),
        }
    }

    fn item(&mut self, item: &Item) {
        match item {
            Item::Entry(_) => {}
            Item::Skipped { line, command } => {
                self.tally.skipped += 1;
                self.bar.suspend(|| {
                    eprintln!(
                        "line {line}: {command} skipped (import only registers: CREATE and ADD)"
                    )
                });
            }
            Item::Bad { line, why } => {
                self.tally.unreadable += 1;
                self.bar.suspend(|| eprintln!("line {line}: {why}"));
            }
        }
    }

    fn outcome(&mut self, line: usize, handle: &str, o: Outcome) {
        self.bar.inc(1);
        match o {
            Outcome::Written => self.tally.written += 1,
            Outcome::Unchanged => self.tally.unchanged += 1,
            Outcome::Failed { code, message } => {
                self.tally.failed += 1;
                let name = rc::name(code).unwrap_or("ERROR");
                self.bar
                    .suspend(|| eprintln!("line {line}: {handle}: {name} ({code}): {message}"));
            }
        }
    }
}

pub async fn run(a: ImportArgs) -> Result<ExitCode> {
    let path = match (&a.file, &a.from_handle_sql) {
        (_, Some(url)) => {
            let dir = DataDir::new(&a.data_dir);
            return tokio::task::block_in_place(|| crate::from_sql::run(url, &dir));
        }
        (Some(path), None) => path,
        (None, None) => bail!("name a FILE to import, or --from-handle-sql URL"),
    };
    let mut file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut head = [0u8; 512];
    let n = file.read(&mut head)?;
    let format = Format::detect(path, &head[..n]);
    let (total, added) = survey(BufReader::new(std::fs::File::open(path)?), format);
    let rule = Rule { added };
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let open = || -> Result<Items<BufReader<std::fs::File>>> {
        let f = std::fs::File::open(path)?;
        Ok(Items::new(BufReader::new(f), format, &base))
    };
    let started = Instant::now();
    let mut report = Report::new(total);
    if a.offline {
        let items = open()?;
        let dir = DataDir::new(&a.data_dir);
        tokio::task::block_in_place(|| offline(&dir, items, &rule, &mut report))?;
    } else {
        let creds = match a
            .auth
            .credentials("(or --offline into a stopped node's store)")
        {
            Ok(c) => c,
            Err(why) => {
                eprintln!("suyuan import: {why}");
                return Ok(ExitCode::from(2));
            }
        };
        online(&a, creds, open()?, rule, &mut report).await?;
    }
    report.bar.finish_and_clear();
    let t = &report.tally;
    let secs = started.elapsed().as_secs_f64();
    let done = t.written + t.unchanged + t.failed;
    crate::outln!(
        "import: {} ({}): {} records: {} written, {} unchanged, {} failed; {} commands skipped, {} lines unreadable ({:.1} s, {:.0} records/s)",
        path.display(),
        format.name(),
        done,
        t.written,
        t.unchanged,
        t.failed,
        t.skipped,
        t.unreadable,
        secs,
        done as f64 / secs.max(1e-9),
    )?;
    if t.written == 0 && t.unchanged > 0 && t.failed == 0 {
        crate::outln!("nothing written: every record was already registered as it is in the file")?;
    }
    Ok(if t.failed + t.unreadable > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// For an ADD: the values still missing from `have`, or the refusal when an index already
/// holds something else.
pub fn values_to_add(
    have: &[HandleValue],
    wanted: &[HandleValue],
) -> Result<Vec<HandleValue>, Outcome> {
    let mut missing = Vec::new();
    for w in wanted {
        match have.iter().find(|h| h.index == w.index) {
            Some(h) if h.same_content(w) => {}
            Some(_) => {
                return Err(Outcome::Failed {
                    code: rc::VALUE_ALREADY_EXISTS,
                    message: format!("index {} already holds a different value", w.index),
                });
            }
            None => missing.push(w.clone()),
        }
    }
    Ok(missing)
}

/// When an existing record counts as the one a CREATE registers.
struct Rule {
    /// Keys of the handles the file also ADDs to: their stored record may hold more values
    /// than the CREATE (from an earlier run of the same file), and is still unchanged when it
    /// holds every value of the CREATE.
    added: HashSet<String>,
}

impl Rule {
    fn create_outcome(
        &self,
        handle: &str,
        have: &[HandleValue],
        wanted: &[HandleValue],
    ) -> Outcome {
        let same = if self.added.contains(&key_of(handle)) {
            values_to_add(have, wanted).is_ok_and(|missing| missing.is_empty())
        } else {
            Record::same_values(have, wanted)
        };
        if same {
            Outcome::Unchanged
        } else {
            Outcome::Failed {
                code: rc::HANDLE_ALREADY_EXISTS,
                message: "already registered with different values".into(),
            }
        }
    }
}

fn refused(e: &RegistryError) -> Outcome {
    let message = match e {
        RegistryError::Refused { message, .. } => message.clone(),
        e => e.to_string(),
    };
    Outcome::Failed {
        code: e.response_code(),
        message,
    }
}

// ---------------------------------------------------------------------------------------------
// Offline
// ---------------------------------------------------------------------------------------------

/// The store of a stopped node, to write into directly.
pub fn open_offline(dir: &DataDir) -> Result<Registry> {
    if !dir.initialised() {
        bail!(
            "{} holds no node: run `suyuan init` first",
            dir.root.display()
        );
    }
    dir.store_spec(None)?.open(&dir.server_id()).map_err(|e| {
        match e.downcast_ref::<RegistryError>() {
            Some(locked @ RegistryError::Locked(_)) => {
                anyhow!("{locked}: stop the node first, or import through it (without --offline)")
            }
            _ => e,
        }
    })
}

fn offline(
    dir: &DataDir,
    items: impl Iterator<Item = Item>,
    rule: &Rule,
    report: &mut Report,
) -> Result<()> {
    let registry = open_offline(dir)?;
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    };
    let write = |mutation| Write {
        mutation,
        actor: OFFLINE_ACTOR.into(),
        time: now(),
    };
    let mut pending: Vec<(usize, String, Vec<HandleValue>)> = Vec::new();
    let mut writes = Vec::new();
    type Pending = Vec<(usize, String, Vec<HandleValue>)>;
    let flush = |pending: &mut Pending, writes: &mut Vec<Write>, r: &mut Report| {
        let results = registry.apply_batch(std::mem::take(writes));
        for ((line, handle, values), res) in pending.drain(..).zip(results) {
            let o = match res {
                Ok(applied) if applied.seq.is_some() => Outcome::Written,
                Ok(_) => Outcome::Unchanged,
                // Only handles the file ADDs to keep their values here (see `Rule`); the
                // registry's own comparison decided the others.
                Err(e) if e.response_code() == rc::HANDLE_ALREADY_EXISTS && !values.is_empty() => {
                    match registry.get(&handle) {
                        Ok(Some(rec)) => rule.create_outcome(&handle, &rec.values, &values),
                        _ => refused(&e),
                    }
                }
                Err(e) => refused(&e),
            };
            r.outcome(line, &handle, o);
        }
    };
    for item in items {
        let Item::Entry(e) = item else {
            report.item(&item);
            continue;
        };
        if let Err(o) = homed_here(&registry, &e.handle) {
            report.outcome(e.line, &e.handle, o);
            continue;
        }
        match e.op {
            Op::Create => {
                let values = if rule.added.contains(&key_of(&e.handle)) {
                    e.values.clone()
                } else {
                    Vec::new()
                };
                pending.push((e.line, e.handle.clone(), values));
                writes.push(write(Mutation::Create {
                    handle: e.handle,
                    values: e.values,
                    mode: CreateMode::Register,
                }));
                if writes.len() >= OFFLINE_BATCH {
                    flush(&mut pending, &mut writes, report);
                }
            }
            Op::Add => {
                // It reads what the creates before it wrote.
                flush(&mut pending, &mut writes, report);
                let o = match registry.get(&e.handle) {
                    Ok(None) => Outcome::Failed {
                        code: rc::HANDLE_NOT_FOUND,
                        message: "handle not found".into(),
                    },
                    Ok(Some(rec)) => match values_to_add(&rec.values, &e.values) {
                        Ok(missing) if missing.is_empty() => Outcome::Unchanged,
                        Ok(missing) => match registry.apply(write(Mutation::AddValues {
                            handle: e.handle.clone(),
                            values: missing,
                            overwrite: false,
                        })) {
                            Ok(_) => Outcome::Written,
                            Err(err) => refused(&err),
                        },
                        Err(o) => o,
                    },
                    Err(err) => refused(&err),
                };
                report.outcome(e.line, &e.handle, o);
            }
        }
    }
    flush(&mut pending, &mut writes, report);
    registry.close();
    Ok(())
}

/// Offline there is no node to answer RC 301: the same rule, checked here.
fn homed_here(registry: &Registry, handle: &str) -> Result<(), Outcome> {
    let h = Handle::parse(handle).map_err(|e| Outcome::Failed {
        code: rc::INVALID_HANDLE,
        message: e.to_string(),
    })?;
    match registry.is_homed(h.prefix()) {
        Ok(true) => Ok(()),
        Ok(false) => Err(Outcome::Failed {
            code: rc::SERVER_NOT_RESP,
            message: format!("prefix {} is not homed in this store", h.prefix()),
        }),
        Err(e) => Err(refused(&e)),
    }
}

// ---------------------------------------------------------------------------------------------
// Online
// ---------------------------------------------------------------------------------------------

/// How often one entry is tried when the connection fails under it. A retry is safe: a create
/// whose answer was lost comes back as RC 101 and compares equal.
const ATTEMPTS: usize = 3;

struct Wire {
    client: HandleClient,
    session: ClientSession,
    creds: Credentials,
    rule: Rule,
}

async fn online(
    a: &ImportArgs,
    creds: Credentials,
    items: Items<BufReader<std::fs::File>>,
    rule: Rule,
    report: &mut Report,
) -> Result<()> {
    let client =
        HandleClient::new(a.server, Transport::Tcp).with_tcp_timeout(Duration::from_secs(30));
    let (index, handle) = creds.identity();
    let session = client
        .open_session(index, handle, Exchange::DiffieHellman, 3600)
        .await
        .with_context(|| {
            format!(
                "cannot open a session with {} as {index}:{handle}",
                a.server
            )
        })?;
    let wire = Arc::new(Wire {
        client,
        session,
        creds,
        rule,
    });
    // The file is read on a thread of its own, a bounded queue ahead of the requests.
    let (item_tx, item_rx) = mpsc::channel::<Item>(4096);
    let reader = tokio::task::spawn_blocking(move || {
        for item in items {
            if item_tx.blocking_send(item).is_err() {
                break;
            }
        }
    });
    let item_rx = Arc::new(Mutex::new(item_rx));
    let (done_tx, mut done_rx) = mpsc::channel::<(Item, Option<Outcome>)>(4096);
    // The first entry goes alone, so the session is authenticated once (by its challenge)
    // before the others arrive together.
    let first = item_rx.lock().await.recv().await;
    if let Some(item) = first {
        let mut conn = None;
        let o = handle_item(&wire, &mut conn, &item).await;
        // When the identity does not authenticate, every other request would fail the same
        // way (each after a challenge): stop here and say so once.
        if let Some(Outcome::Failed { code, message }) = &o {
            if matches!(
                *code,
                rc::AUTHENTICATION_FAILED | rc::INVALID_CREDENTIAL | rc::AUTHEN_ERROR
            ) {
                let (index, handle) = wire.creds.identity();
                bail!(
                    "{index}:{handle}: {} ({code}) {message}: nothing imported",
                    rc::name(*code).unwrap_or("ERROR")
                );
            }
        }
        report_one(report, &item, o);
    }
    let mut workers = Vec::new();
    for _ in 0..a.in_flight {
        let (wire, rx, tx) = (wire.clone(), item_rx.clone(), done_tx.clone());
        workers.push(tokio::spawn(async move {
            let mut conn = None;
            loop {
                let next = rx.lock().await.recv().await;
                let Some(item) = next else { break };
                let o = handle_item(&wire, &mut conn, &item).await;
                if tx.send((item, o)).await.is_err() {
                    break;
                }
            }
        }));
    }
    drop(done_tx);
    while let Some((item, o)) = done_rx.recv().await {
        report_one(report, &item, o);
    }
    for w in workers {
        w.await?;
    }
    reader.await?;
    // Ending the session is a courtesy: it expires on its own.
    let mut end = wire.client.request(
        opcode::SESSION_TERMINATE,
        flags::REC,
        Body::Handle {
            handle: String::new(),
        },
    );
    end.envelope.session_id = wire.session.id;
    let _ = wire.client.send_tcp(&end).await;
    Ok(())
}

fn report_one(report: &mut Report, item: &Item, o: Option<Outcome>) {
    match (item, o) {
        (Item::Entry(e), Some(o)) => report.outcome(e.line, &e.handle, o),
        (item, _) => report.item(item),
    }
}

async fn handle_item(
    wire: &Wire,
    conn: &mut Option<KeptConnection>,
    item: &Item,
) -> Option<Outcome> {
    let Item::Entry(e) = item else { return None };
    let mut last = None;
    for _ in 0..ATTEMPTS {
        match register(wire, conn, e).await {
            Ok(o) => return Some(o),
            Err(err) => {
                // The connection's state is unknown after an error: start a new one.
                *conn = None;
                last = Some(err);
            }
        }
    }
    Some(Outcome::Failed {
        code: rc::ERROR,
        message: last.map(|e| e.to_string()).unwrap_or_default(),
    })
}

async fn exchange(
    wire: &Wire,
    conn: &mut Option<KeptConnection>,
    op: u32,
    op_flags: u32,
    body: Body,
) -> Result<(u32, Body), ClientError> {
    let c = match conn {
        Some(c) => c,
        None => conn.insert(wire.client.connect_kept().await?),
    };
    let request = wire.client.request(op, op_flags, body);
    let answers = wire
        .client
        .send_in_session_kept(c, &wire.session, &request, &wire.creds)
        .await?;
    let m = answers
        .into_iter()
        .next()
        .ok_or(ClientError::NoAnswer(wire.client.server()))?;
    Ok((m.header.response_code, m.body))
}

fn failed(code: u32, body: Body) -> Outcome {
    let message = match body {
        Body::Error { message: Some(m) } => m,
        _ => String::new(),
    };
    Outcome::Failed { code, message }
}

async fn register(
    wire: &Wire,
    conn: &mut Option<KeptConnection>,
    e: &Entry,
) -> Result<Outcome, ClientError> {
    let write_flags = flags::REC | flags::CA;
    let values_body = |values: Vec<HandleValue>| Body::HandleValues {
        handle: e.handle.clone(),
        values,
    };
    let op = match e.op {
        Op::Create => opcode::CREATE_HANDLE,
        Op::Add => opcode::ADD_VALUE,
    };
    let (code, body) = exchange(wire, conn, op, write_flags, values_body(e.values.clone())).await?;
    let taken = match (e.op, code) {
        (_, rc::SUCCESS) => return Ok(Outcome::Written),
        (Op::Create, rc::HANDLE_ALREADY_EXISTS) | (Op::Add, rc::VALUE_ALREADY_EXISTS) => true,
        _ => false,
    };
    if !taken {
        return Ok(failed(code, body));
    }
    // Without PO, in the authenticated session: every value, admin-read ones included.
    let (code, body) = exchange(
        wire,
        conn,
        opcode::RESOLUTION,
        flags::REC | flags::CA,
        Body::Resolution {
            handle: e.handle.clone(),
            indexes: Vec::new(),
            types: Vec::new(),
        },
    )
    .await?;
    let Body::ResolutionResponse { values: have, .. } = body else {
        return Ok(failed(code, body));
    };
    match e.op {
        Op::Create => Ok(wire.rule.create_outcome(&e.handle, &have, &e.values)),
        Op::Add => match values_to_add(&have, &e.values) {
            Ok(missing) if missing.is_empty() => Ok(Outcome::Unchanged),
            Ok(missing) => {
                let (code, body) = exchange(
                    wire,
                    conn,
                    opcode::ADD_VALUE,
                    write_flags,
                    values_body(missing),
                )
                .await?;
                Ok(if code == rc::SUCCESS {
                    Outcome::Written
                } else {
                    failed(code, body)
                })
            }
            Err(o) => Ok(o),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_compares_by_index() {
        let have = vec![HandleValue::new(1, "URL", b"a".to_vec())];
        let same = vec![HandleValue::new(1, "URL", b"a".to_vec())];
        assert_eq!(values_to_add(&have, &same), Ok(vec![]));
        let more = vec![
            HandleValue::new(1, "URL", b"a".to_vec()),
            HandleValue::new(2, "EMAIL", b"e".to_vec()),
        ];
        assert_eq!(values_to_add(&have, &more).unwrap().len(), 1);
        let clash = vec![HandleValue::new(1, "URL", b"b".to_vec())];
        assert!(matches!(
            values_to_add(&have, &clash),
            Err(Outcome::Failed {
                code: rc::VALUE_ALREADY_EXISTS,
                ..
            })
        ));
    }
}
