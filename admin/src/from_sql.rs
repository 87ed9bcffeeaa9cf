//! `suyuan import --from-handle-sql postgres://…`: brings a Handle.Net reference server's SQL
//! database (its `nas` and `handles` tables, in the layout `suyuan_registry::handlesql`
//! describes) into a stopped node's store, for a site leaving the reference server.
//!
//! Each `nas` row homes its prefix (administered by the HS_ADMIN values of its `0.NA/` handle
//! when the database holds that handle) unless the node homes it already; each handle's rows
//! become one record, written as [`crate::migrate`] writes: values byte for byte, timestamps
//! kept, running again writes nothing, other values already in the node are refused. Rows that
//! do not decode are reported by handle with the reason and their handle is left out; the
//! prefix handles (`0.NA/…`) are left out too, since they belong to the prefix's record in the
//! global registry rather than to this node. Handles keep the spelling the database stores
//! (upper case, unless the reference ran with `case_sensitive`).

use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use suyuan_codec::value::{AdminRecord, types};
use suyuan_registry::handlesql::HandleRow;
use suyuan_registry::postgres::redact;
use suyuan_registry::{Identity, Mutation, Write};
use tokio_postgres::{NoTls, Row};

use crate::datadir::DataDir;
use crate::migrate::{Copier, MIGRATE_ACTOR, Source};

/// Handles read and written per step.
const BATCH: usize = 500;

const COLUMNS: &str = "handle, idx, type, data, ttl_type, ttl, timestamp, refs, admin_read, \
                       admin_write, pub_read, pub_write";

/// A row as the reference reads it: a NULL type, data or refs as empty, a NULL number as 0, a
/// NULL permission as false.
fn row_of(r: &Row) -> HandleRow {
    HandleRow {
        handle: r.get::<_, Option<Vec<u8>>>(0).unwrap_or_default(),
        idx: r.get(1),
        value_type: r.get::<_, Option<Vec<u8>>>(2).unwrap_or_default(),
        data: r.get::<_, Option<Vec<u8>>>(3).unwrap_or_default(),
        ttl_type: r.get::<_, Option<i16>>(4).unwrap_or(0),
        ttl: r.get::<_, Option<i32>>(5).unwrap_or(0),
        timestamp: r.get::<_, Option<i32>>(6).unwrap_or(0),
        refs: r.get::<_, Option<String>>(7).unwrap_or_default(),
        admin_read: r.get::<_, Option<bool>>(8).unwrap_or(false),
        admin_write: r.get::<_, Option<bool>>(9).unwrap_or(false),
        pub_read: r.get::<_, Option<bool>>(10).unwrap_or(false),
        pub_write: r.get::<_, Option<bool>>(11).unwrap_or(false),
    }
}

/// Bytes for a message: the text when it is UTF-8, else hex.
fn shown(b: &[u8]) -> String {
    match std::str::from_utf8(b) {
        Ok(s) => s.to_string(),
        Err(_) => format!(
            "0x{}",
            b.iter().map(|x| format!("{x:02x}")).collect::<String>()
        ),
    }
}

/// One handle's rows as a record: `(handle, values)`, or why not.
fn record_of(handle: &[u8], rows: &[HandleRow]) -> Result<Source, String> {
    let h = std::str::from_utf8(handle).map_err(|_| "the handle is not UTF-8".to_string())?;
    let values = rows
        .iter()
        .map(|r| {
            r.to_value()
                .map_err(|e| format!("row with idx {}: {e}", r.idx))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((h.to_string(), values))
}

/// The prefix a `nas` row homes.
fn prefix_of(na: &[u8]) -> Result<String, String> {
    let s = std::str::from_utf8(na).map_err(|_| "not UTF-8".to_string())?;
    let p = match s.get(..5) {
        Some(head) if head.eq_ignore_ascii_case("0.NA/") => &s[5..],
        _ => s,
    };
    if p.is_empty() || p.contains('/') || p.chars().any(char::is_control) {
        return Err(format!("{s:?} does not name a prefix"));
    }
    Ok(p.to_string())
}

#[derive(Debug, Default)]
struct Counts {
    homed: u64,
    prefixes_unreadable: u64,
    prefix_handles: u64,
    unreadable: u64,
}

pub fn run(url: &str, dir: &DataDir) -> Result<ExitCode> {
    let registry = crate::import::open_offline(dir)?;
    let rt = tokio::runtime::Handle::current();
    let started = Instant::now();
    let (mut client, conn) = rt
        .block_on(tokio_postgres::connect(url, NoTls))
        .with_context(|| format!("cannot connect to {}", redact(url)))?;
    rt.spawn(conn);
    let mut counts = Counts::default();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let nas = rt
        .block_on(client.query("SELECT na FROM nas ORDER BY na", &[]))
        .context("cannot read the table nas")?;
    for row in nas {
        let na: Vec<u8> = row.get::<_, Option<Vec<u8>>>(0).unwrap_or_default();
        let prefix = match prefix_of(&na) {
            Ok(p) => p,
            Err(why) => {
                eprintln!("import: nas row {}: {why}", shown(&na));
                counts.prefixes_unreadable += 1;
                continue;
            }
        };
        if registry.is_homed(&prefix)? {
            continue;
        }
        let admins = rt.block_on(admins_of(&client, &na))?;
        registry.apply(Write {
            mutation: Mutation::Home { prefix, admins },
            actor: MIGRATE_ACTOR.into(),
            time: now,
        })?;
        counts.homed += 1;
    }
    let mut copier = Copier::new("import");
    rt.block_on(async {
        // A cursor, so a database of millions of rows is read a page at a time.
        let tx = client.transaction().await?;
        let stmt = tx
            .prepare(&format!(
                "SELECT {COLUMNS} FROM handles ORDER BY handle, idx"
            ))
            .await?;
        let portal = tx.bind(&stmt, &[]).await?;
        let mut current: Option<(Vec<u8>, Vec<HandleRow>)> = None;
        let mut page: Vec<Source> = Vec::new();
        loop {
            let rows = tx.query_portal(&portal, 1000).await?;
            let end = rows.is_empty();
            let mut done: Vec<(Vec<u8>, Vec<HandleRow>)> = Vec::new();
            for r in rows.iter().map(row_of) {
                match &mut current {
                    Some((h, rs)) if *h == r.handle => rs.push(r),
                    _ => {
                        done.extend(current.take());
                        current = Some((r.handle.clone(), vec![r]));
                    }
                }
            }
            if end {
                done.extend(current.take());
            }
            for (handle, rows) in done {
                if handle.len() >= 5 && handle[..5].eq_ignore_ascii_case(b"0.NA/") {
                    eprintln!(
                        "import: {}: skipped (a prefix handle, which the global registry keeps)",
                        shown(&handle)
                    );
                    counts.prefix_handles += 1;
                    continue;
                }
                match record_of(&handle, &rows) {
                    Ok(rec) => page.push(rec),
                    Err(why) => {
                        eprintln!("import: {}: not imported: {why}", shown(&handle));
                        counts.unreadable += 1;
                    }
                }
            }
            if page.len() >= BATCH || end {
                let records = std::mem::take(&mut page);
                // This thread is not one of the runtime's workers (the caller left them), so
                // the store's blocking calls hold up no task.
                copier.page(&registry, records)?;
                eprintln!(
                    "import: {} records read, {} written, {} unchanged",
                    copier.tally.seen, copier.tally.written, copier.tally.unchanged
                );
            }
            if end {
                break;
            }
        }
        tx.commit().await?;
        anyhow::Ok(())
    })
    .with_context(|| format!("cannot read the table handles of {}", redact(url)))?;
    copier.finish(&registry)?;
    registry.close();
    let t = &copier.tally;
    let failed = t.different + t.refused;
    let secs = started.elapsed().as_secs_f64();
    crate::outln!(
        "import: {} (Handle.Net SQL): {} records: {} written, {} unchanged, {} failed; {} prefixes homed, {} prefix handles skipped, {} handles and {} nas rows unreadable ({:.1} s, {:.0} records/s)",
        redact(url),
        t.seen,
        t.written,
        t.unchanged,
        failed,
        counts.homed,
        counts.prefix_handles,
        counts.unreadable,
        counts.prefixes_unreadable,
        secs,
        t.seen as f64 / secs.max(1e-9),
    )?;
    Ok(
        if failed + counts.unreadable + counts.prefixes_unreadable > 0 {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        },
    )
}

/// The administrators the database's prefix handle (`0.NA/P`, the `nas` row's own bytes) names
/// in its HS_ADMIN values; none when it holds no such handle.
async fn admins_of(client: &tokio_postgres::Client, na: &[u8]) -> Result<Vec<Identity>> {
    let rows = client
        .query(
            &format!("SELECT {COLUMNS} FROM handles WHERE handle = $1 ORDER BY idx"),
            &[&na],
        )
        .await
        .context("cannot read the table handles")?;
    let mut admins = Vec::new();
    for r in rows.iter().map(row_of) {
        let Ok(v) = r.to_value() else { continue };
        if !v.value_type.eq_ignore_ascii_case(types::HS_ADMIN) {
            continue;
        }
        if let Ok(a) = AdminRecord::decode(&v.data) {
            let id = Identity::new(a.admin_index, a.admin_handle);
            if !admins.contains(&id) {
                admins.push(id);
            }
        }
    }
    Ok(admins)
}
