//! `suyuan migrate --from STORE --to STORE`: moves a node's prefixes and records between the
//! embedded store and PostgreSQL (either way, or between two of a kind), then checks both sides.
//!
//! Records go through the target's ordinary write path, so the target's indexes and change log
//! are its own: the source's change log and tombstones stay behind (their sequence numbers
//! belong to the source, and the registry has no write that replays another store's history).
//! The target's log starts with the changes the copy makes, normally one per record. Values
//! arrive byte for byte, timestamps included: a create stamps every value with the write's time,
//! so a record is created at the time most of its values carry and the values stamped at other
//! times are then modified at their own times (one more change for each other time).
//!
//! Re-running continues an interrupted migration: a record already copied is left alone, one
//! copied with its values but not yet all their timestamps is finished, and a target holding
//! other values for a handle stops the run. At the end both sides are counted and digested.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use sha2::{Digest, Sha256};
use suyuan_codec::handle::key_of;
use suyuan_codec::value::HandleValue;
use suyuan_registry::postgres::{self, InitMode};
use suyuan_registry::{
    CreateMode, Mutation, PrefixEntry, Record, Registry, RegistryError, Ticket, Write,
};

use crate::store::StoreSpec;

#[derive(Args, Debug)]
pub struct MigrateArgs {
    /// The store to read: a data dir, a store dir, or postgres://USER@HOST:PORT/DB.
    #[arg(long, value_name = "STORE")]
    from: String,
    /// The store to write (created if it does not exist yet).
    #[arg(long, value_name = "STORE")]
    to: String,
    /// Records read and written per step.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    batch: u32,
}

/// The actor the target's change log names for what a migration or a database import wrote.
pub const MIGRATE_ACTOR: &str = "0:SUYUAN/MIGRATE";

/// A record to copy: the handle as spelled and its values.
pub type Source = (String, Vec<HandleValue>);

/// What became of one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Copied {
    Written,
    /// The target held it already, byte for byte.
    Unchanged,
}

/// Why one record was not copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotCopied {
    /// The target holds other values for the handle.
    Different,
    /// The target's rules refused it.
    Refused(RegistryError),
}

impl std::fmt::Display for NotCopied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotCopied::Different => write!(f, "the target already holds other values for it"),
            NotCopied::Refused(e) => write!(f, "{e}"),
        }
    }
}

fn in_index_order(values: &[HandleValue]) -> Vec<&HandleValue> {
    let mut v: Vec<&HandleValue> = values.iter().collect();
    v.sort_by_key(|v| v.index);
    v
}

/// The same values, byte for byte (timestamps included), in whatever order.
fn identical(a: &[HandleValue], b: &[HandleValue]) -> bool {
    a.len() == b.len()
        && in_index_order(a)
            .iter()
            .zip(in_index_order(b))
            .all(|(x, y)| x.encode() == y.encode())
}

/// The writes that bring `have` (values equal to `want` but for timestamps) to `want`'s
/// timestamps: one modification per timestamp, at that time.
fn restamps(handle: &str, have: &[HandleValue], want: &[HandleValue]) -> Vec<Write> {
    let mut by_time: BTreeMap<u32, Vec<HandleValue>> = BTreeMap::new();
    for w in want {
        let stamped = have
            .iter()
            .find(|h| h.index == w.index)
            .is_some_and(|h| h.timestamp == w.timestamp);
        if !stamped {
            by_time.entry(w.timestamp).or_default().push(w.clone());
        }
    }
    by_time
        .into_iter()
        .map(|(time, values)| Write {
            mutation: Mutation::ModifyValues {
                handle: handle.to_string(),
                values,
            },
            actor: MIGRATE_ACTOR.into(),
            time: u64::from(time),
        })
        .collect()
}

/// The timestamp most of the values carry (the earliest of the most common).
fn main_time(values: &[HandleValue]) -> u32 {
    let mut n: BTreeMap<u32, usize> = BTreeMap::new();
    for v in values {
        *n.entry(v.timestamp).or_default() += 1;
    }
    n.into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))
        .map_or(0, |(t, _)| t)
}

/// Writes each `(handle, values)` into `target` with the values exactly as given (timestamps
/// included), through the target's ordinary write path. Results in order. A record refused
/// because something it needs (its template) is not there yet can be given again later.
pub fn copy_records(
    target: &Registry,
    records: &[Source],
) -> Result<Vec<Result<Copied, NotCopied>>> {
    let mut out: Vec<Option<Result<Copied, NotCopied>>> = vec![None; records.len()];
    let mut have: Vec<Option<Vec<HandleValue>>> = Vec::with_capacity(records.len());
    let mut creates: Vec<(usize, Ticket)> = Vec::new();
    for (i, (handle, values)) in records.iter().enumerate() {
        let current = target.get(handle)?.map(|r| r.values);
        match &current {
            Some(c) if identical(c, values) => out[i] = Some(Ok(Copied::Unchanged)),
            Some(c) if !Record::same_values(c, values) => out[i] = Some(Err(NotCopied::Different)),
            Some(_) => {}
            None => creates.push((
                i,
                target.submit(Write {
                    mutation: Mutation::Create {
                        handle: handle.clone(),
                        values: values.clone(),
                        mode: CreateMode::Register,
                    },
                    actor: MIGRATE_ACTOR.into(),
                    time: u64::from(main_time(values)),
                }),
            )),
        }
        have.push(current);
    }
    for (i, t) in creates {
        match t.wait() {
            Ok(_) => {
                let t = main_time(&records[i].1);
                have[i] = Some(
                    records[i]
                        .1
                        .iter()
                        .map(|v| HandleValue {
                            timestamp: t,
                            ..v.clone()
                        })
                        .collect(),
                );
            }
            Err(RegistryError::Refused { code, message }) => {
                out[i] = Some(Err(NotCopied::Refused(RegistryError::Refused {
                    code,
                    message,
                })));
            }
            Err(e) => return Err(e.into()),
        }
    }
    let mut modifies: Vec<(usize, Vec<Ticket>)> = Vec::new();
    for (i, (handle, values)) in records.iter().enumerate() {
        if out[i].is_some() {
            continue;
        }
        let current = have[i].as_deref().unwrap_or_default();
        let tickets = restamps(handle, current, values)
            .into_iter()
            .map(|w| target.submit(w))
            .collect();
        modifies.push((i, tickets));
    }
    for (i, tickets) in modifies {
        let mut result = Ok(Copied::Written);
        for t in tickets {
            match t.wait() {
                Ok(_) => {}
                Err(e @ RegistryError::Refused { .. }) => result = Err(NotCopied::Refused(e)),
                Err(e) => return Err(e.into()),
            }
        }
        out[i] = Some(result);
    }
    Ok(out
        .into_iter()
        .map(|o| o.unwrap_or(Ok(Copied::Written)))
        .collect())
}

/// How many records a [`Copier`] saw and what became of them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tally {
    pub seen: u64,
    pub written: u64,
    pub unchanged: u64,
    /// The target held other values.
    pub different: u64,
    /// The target's rules refused them (after every other record was copied).
    pub refused: u64,
}

/// Copies pages of records with [`copy_records`], reporting each record not copied on stderr
/// (named by handle, after `tool: `) and keeping the refused ones for [`Copier::finish`]: a
/// record may need one copied after it (its template).
pub struct Copier {
    tool: &'static str,
    pub tally: Tally,
    later: Vec<Source>,
}

impl Copier {
    pub fn new(tool: &'static str) -> Self {
        Copier {
            tool,
            tally: Tally::default(),
            later: Vec::new(),
        }
    }

    /// Copies one page; returns the records refused in it (kept for later).
    fn round(
        &mut self,
        target: &Registry,
        records: Vec<Source>,
    ) -> Result<Vec<(Source, NotCopied)>> {
        let results = copy_records(target, &records)?;
        let mut refused = Vec::new();
        for (rec, result) in records.into_iter().zip(results) {
            match result {
                Ok(Copied::Written) => self.tally.written += 1,
                Ok(Copied::Unchanged) => self.tally.unchanged += 1,
                Err(NotCopied::Different) => {
                    eprintln!("{}: {}: {}", self.tool, rec.0, NotCopied::Different);
                    self.tally.different += 1;
                }
                Err(e) => refused.push((rec, e)),
            }
        }
        Ok(refused)
    }

    pub fn page(&mut self, target: &Registry, records: Vec<Source>) -> Result<()> {
        self.tally.seen += records.len() as u64;
        let refused = self.round(target, records)?;
        self.later.extend(refused.into_iter().map(|(r, _)| r));
        Ok(())
    }

    /// Tries the refused records again while a round copies any of them, then reports those
    /// still refused.
    pub fn finish(&mut self, target: &Registry) -> Result<()> {
        while !self.later.is_empty() {
            let round = std::mem::take(&mut self.later);
            let before = round.len();
            let refused = self.round(target, round)?;
            if refused.len() == before {
                for (rec, e) in &refused {
                    eprintln!("{}: {}: not copied: {e}", self.tool, rec.0);
                }
                self.tally.refused = refused.len() as u64;
                break;
            }
            self.later = refused.into_iter().map(|(r, _)| r).collect();
        }
        Ok(())
    }
}

/// Homes `p` on the target with the same administrators, or checks it is homed so already.
pub fn copy_prefix(target: &Registry, p: &PrefixEntry, time: u64) -> Result<()> {
    let same_admins = |t: &PrefixEntry| {
        t.admins.len() == p.admins.len()
            && p.admins
                .iter()
                .all(|a| t.admins.iter().any(|b| b.same_as(a)))
    };
    match target.prefix(&p.prefix)? {
        Some(t) if same_admins(&t) => Ok(()),
        Some(t) => bail!(
            "the target already homes prefix {} with other administrators ({}; the source has {})",
            p.prefix,
            list(&t.admins),
            list(&p.admins)
        ),
        None => {
            target.apply(Write {
                mutation: Mutation::Home {
                    prefix: p.prefix.clone(),
                    admins: p.admins.clone(),
                },
                actor: MIGRATE_ACTOR.into(),
                time,
            })?;
            Ok(())
        }
    }
}

fn list<T: std::fmt::Display>(items: &[T]) -> String {
    if items.is_empty() {
        return "none".into();
    }
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Counts and digest of a store's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub prefixes: u64,
    pub records: u64,
    /// SHA-256, hex.
    pub digest: String,
}

/// A record as two stores holding the same data encode it alike: the stored layout with what
/// is each store's own (the sequence number of the change that wrote it, the links derived
/// from it) left out and the values in index order.
fn canonical(r: &Record) -> Vec<u8> {
    Record {
        handle: r.handle.clone(),
        values: in_index_order(&r.values).into_iter().cloned().collect(),
        seq: 0,
        links: Vec::new(),
    }
    .encode()
}

/// The homed prefixes in key order.
fn prefixes_in_order(r: &Registry) -> Result<Vec<PrefixEntry>> {
    let mut p = r.prefixes()?;
    p.sort_by_key(|p| key_of(&p.prefix));
    Ok(p)
}

/// Every record under the homed prefixes, prefix by prefix in key order and in key order
/// under each, in pages of `page`: `each` gets every page.
fn for_each_page(
    r: &Registry,
    page: usize,
    mut each: impl FnMut(&PrefixEntry, Vec<Record>) -> Result<()>,
) -> Result<()> {
    for p in prefixes_in_order(r)? {
        let mut after: Option<String> = None;
        loop {
            let handles = r.list_handles(&p.prefix, after.as_deref(), page)?;
            let Some(last) = handles.last().cloned() else {
                break;
            };
            let mut records = Vec::with_capacity(handles.len());
            for h in &handles {
                // A handle deleted between the listing and the read is simply not there.
                if let Some(rec) = r.get(h)? {
                    records.push(rec);
                }
            }
            each(&p, records)?;
            after = Some(last);
        }
    }
    Ok(())
}

/// Counts the prefixes and records of `r` and digests the records: SHA-256 over each record's
/// canonical encoding, length first, in the order [`for_each_page`] gives them.
pub fn summarise(r: &Registry) -> Result<Summary> {
    let mut h = Sha256::new();
    let mut records = 0u64;
    for_each_page(r, 1000, |_, page| {
        for rec in page {
            let c = canonical(&rec);
            h.update((c.len() as u64).to_be_bytes());
            h.update(&c);
            records += 1;
        }
        Ok(())
    })?;
    Ok(Summary {
        prefixes: r.prefixes()?.len() as u64,
        records,
        digest: h.finalize().iter().map(|b| format!("{b:02x}")).collect(),
    })
}

/// Opens the store to read: it must exist (a mistyped directory is not an empty store).
fn open_source(spec: &StoreSpec) -> Result<Registry> {
    if let StoreSpec::Embedded(p) = spec {
        if !p.exists() {
            bail!("{}: no store there", p.display());
        }
    }
    open(spec, "migrate-source")
}

/// Opens the store to write, creating it (a new directory, or the schema in an empty database)
/// when it does not exist yet.
pub fn open_target(spec: &StoreSpec) -> Result<Registry> {
    if let StoreSpec::Postgres(url) = spec {
        // Create when the database holds no store yet; otherwise join it (which brings an
        // older schema forward and refuses a newer one with its own message).
        if postgres::init_blocking(url, InitMode::Create).is_err() {
            postgres::init_blocking(url, InitMode::Join)
                .with_context(|| format!("cannot use {} as the target", spec.describe()))?;
        }
    }
    open(spec, "migrate-target")
}

fn open(spec: &StoreSpec, server_id: &str) -> Result<Registry> {
    spec.open(server_id)
        .map_err(|e| match e.downcast_ref::<RegistryError>() {
            Some(locked @ RegistryError::Locked(_)) => anyhow!(
                "{locked}: a running node holds it; stop the node before migrating its store"
            ),
            _ => e,
        })
}

/// The summary lines of both sides, and whether they agree.
pub fn verify(source: &Registry, target: &Registry) -> Result<bool> {
    let s = summarise(source)?;
    let t = summarise(target)?;
    for (side, x) in [("source", &s), ("target", &t)] {
        crate::outln!(
            "{side}: {} prefixes, {} records, sha256 {}",
            x.prefixes,
            x.records,
            x.digest
        )?;
    }
    Ok(s == t)
}

pub fn run(a: MigrateArgs) -> Result<ExitCode> {
    let from = StoreSpec::parse(&a.from)?;
    let to = StoreSpec::parse(&a.to)?;
    if from == to {
        bail!("--from and --to name the same store ({})", from.describe());
    }
    let source = open_source(&from)?;
    let target = open_target(&to)?;
    let started = Instant::now();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    for p in prefixes_in_order(&source)? {
        copy_prefix(&target, &p, now)?;
    }
    let mut copier = Copier::new("migrate");
    for_each_page(&source, a.batch as usize, |p, page| {
        let records: Vec<Source> = page.into_iter().map(|r| (r.handle, r.values)).collect();
        copier.page(&target, records)?;
        let t = &copier.tally;
        eprintln!(
            "migrate: prefix {}: {} records read, {} written, {} unchanged",
            p.prefix, t.seen, t.written, t.unchanged
        );
        Ok(())
    })?;
    copier.finish(&target)?;
    let t = &copier.tally;
    crate::outln!(
        "migrate: {} -> {}: {} records: {} written, {} unchanged, {} held other values, {} refused ({:.1} s)",
        from.describe(),
        to.describe(),
        t.seen,
        t.written,
        t.unchanged,
        t.different,
        t.refused,
        started.elapsed().as_secs_f64()
    )?;
    if t.different > 0 {
        eprintln!(
            "migrate: the target holds other values for {} handle(s), left as they are: remove \
             them from the target or migrate into an empty store",
            t.different
        );
    }
    let agree = verify(&source, &target)?;
    source.close();
    target.close();
    if !agree {
        eprintln!(
            "migrate: the target does not hold what the source holds (counts or digest differ)"
        );
    }
    Ok(if agree && t.different == 0 && t.refused == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use suyuan_registry::Identity;

    const P: &str = "88.888.1";

    fn store(dir: &std::path::Path) -> Registry {
        let r = Registry::open(dir).unwrap();
        copy_prefix(
            &r,
            &PrefixEntry {
                prefix: P.into(),
                admins: vec![Identity::new(300, "88.888.1/ADMIN")],
            },
            1,
        )
        .unwrap();
        r
    }

    fn w(mutation: Mutation, time: u64) -> Write {
        Write {
            mutation,
            actor: "300:88.888.1/ADMIN".into(),
            time,
        }
    }

    /// A record whose values carry three different timestamps.
    fn source(r: &Registry, handle: &str) -> Vec<HandleValue> {
        let v = |i, data: &str| HandleValue::new(i, "URL", data);
        r.apply(w(
            Mutation::Create {
                handle: handle.into(),
                values: vec![v(1, "a"), v(2, "b"), v(3, "c")],
                mode: CreateMode::Plain,
            },
            1_700_000_000,
        ))
        .unwrap();
        r.apply(w(
            Mutation::ModifyValues {
                handle: handle.into(),
                values: vec![v(2, "b2")],
            },
            1_700_000_100,
        ))
        .unwrap();
        r.apply(w(
            Mutation::AddValues {
                handle: handle.into(),
                values: vec![v(4, "d")],
                overwrite: false,
            },
            1_700_000_200,
        ))
        .unwrap();
        r.get(handle).unwrap().unwrap().values
    }

    #[test]
    fn copies_keep_every_timestamp_and_resume_a_half_copied_record() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (src, dst) = (store(a.path()), store(b.path()));
        let h = "88.888.1/Meter-1";
        let values = source(&src, h);
        let stamps: Vec<u32> = values.iter().map(|v| v.timestamp).collect();
        assert_eq!(
            stamps,
            [1_700_000_000, 1_700_000_100, 1_700_000_000, 1_700_000_200]
        );
        let recs = vec![(h.to_string(), values.clone())];
        assert_eq!(copy_records(&dst, &recs).unwrap(), [Ok(Copied::Written)]);
        let copied = dst.get(h).unwrap().unwrap();
        assert_eq!(copied.handle, h);
        assert!(identical(&copied.values, &values), "{:?}", copied.values);
        assert_eq!(summarise(&src).unwrap(), summarise(&dst).unwrap());
        // Again: nothing to write.
        let last = dst.last_seq();
        assert_eq!(copy_records(&dst, &recs).unwrap(), [Ok(Copied::Unchanged)]);
        assert_eq!(dst.last_seq(), last);

        // Interrupted after the create: the values are there, stamped at one time; a re-run
        // brings the others to their own times.
        let h2 = "88.888.1/Meter-2";
        let v2 = source(&src, h2);
        dst.apply(w(
            Mutation::Create {
                handle: h2.into(),
                values: v2.clone(),
                mode: CreateMode::Plain,
            },
            1_700_000_000,
        ))
        .unwrap();
        assert!(!identical(&dst.get(h2).unwrap().unwrap().values, &v2));
        let recs = vec![(h2.to_string(), v2.clone())];
        assert_eq!(copy_records(&dst, &recs).unwrap(), [Ok(Copied::Written)]);
        assert!(identical(&dst.get(h2).unwrap().unwrap().values, &v2));
        assert_eq!(summarise(&src).unwrap(), summarise(&dst).unwrap());
    }

    #[test]
    fn other_values_in_the_target_are_refused_and_left_alone() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (src, dst) = (store(a.path()), store(b.path()));
        let h = "88.888.1/Meter-1";
        let values = source(&src, h);
        dst.apply(w(
            Mutation::Create {
                handle: h.into(),
                values: vec![HandleValue::new(1, "URL", "other")],
                mode: CreateMode::Plain,
            },
            5,
        ))
        .unwrap();
        let before = dst.get(h).unwrap();
        assert_eq!(
            copy_records(&dst, &[(h.to_string(), values)]).unwrap(),
            [Err(NotCopied::Different)]
        );
        assert_eq!(dst.get(h).unwrap(), before);
        assert_ne!(summarise(&src).unwrap(), summarise(&dst).unwrap());
    }

    #[test]
    fn a_prefix_with_other_administrators_is_refused() {
        let b = tempfile::tempdir().unwrap();
        let dst = store(b.path());
        let e = copy_prefix(
            &dst,
            &PrefixEntry {
                prefix: P.into(),
                admins: vec![Identity::new(301, "88.888.1/ADMIN")],
            },
            1,
        )
        .unwrap_err();
        assert!(
            e.to_string().contains(
                "other administrators (300:88.888.1/ADMIN; the source has 301:88.888.1/ADMIN)"
            ),
            "{e}"
        );
    }

    #[test]
    fn a_record_refused_for_a_missing_template_is_copied_after_it() {
        let b = tempfile::tempdir().unwrap();
        let dst = store(b.path());
        let t = "88.888.1/template-meter";
        let template = vec![HandleValue::new(
            1,
            "mrv.template",
            r#"{"kind":"reading","attributes":[{"name":"value","index":2000,"type":"mrv.value","required":true}]}"#,
        )];
        let rec = vec![
            HandleValue::new(1001, "mrv.templateRef", t),
            HandleValue::new(2000, "mrv.value", "12.5"),
        ];
        let mut c = Copier::new("test");
        // The record first, as a copy in key order may meet it.
        c.page(
            &dst,
            vec![("88.888.1/a-meter".into(), rec), (t.into(), template)],
        )
        .unwrap();
        assert_eq!(c.tally.written, 1);
        c.finish(&dst).unwrap();
        assert_eq!((c.tally.written, c.tally.refused), (2, 0));
        assert!(dst.get("88.888.1/a-meter").unwrap().is_some());
    }
}
