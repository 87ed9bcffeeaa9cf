//! The small ordered key-value layer under the store: point reads, ordered range scans and
//! atomic, durable batches over one keyspace. Tables are a one-byte key prefix, so a batch that
//! touches a record, its links, its change and the sequence counter is one atomic write in any
//! backend. redb is the default backend; sled sits behind the `sled` feature.

use std::path::Path;

use crate::error::RegistryError;

/// Tables of the keyspace (the first byte of every key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Table {
    Meta = b'M',
    Prefixes = b'P',
    Records = b'R',
    /// Reverse link index: target key, relation, source key.
    Backlinks = b'B',
    /// Alias index: normalised identifier to handle key.
    Aliases = b'A',
    Tombstones = b'T',
    Changes = b'C',
    /// The transparency log's leaves before they were kept in chunks: one key a leaf (its
    /// change's seq and the stored hashes its append wrote). Moved into [`Table::LogChunks`]
    /// when such a store is opened.
    LogLeaves = b'L',
    /// The transparency log's leaves in chunks of consecutive leaves, keyed by chunk number:
    /// each leaf's change seq and the stored hashes its append wrote, so a group commit of
    /// thousands of changes adds a few dozen keys to its batch, not one a change.
    LogChunks = b'G',
}

pub fn table_key(t: Table, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + key.len());
    k.push(t as u8);
    k.extend_from_slice(key);
    k
}

/// One write in a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
}

/// Key-value pairs in key order, as a scan returns them.
pub type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// The ordered key-value store a backend provides. Every batch is atomic and durable when
/// `write` returns.
pub trait Kv: Send + Sync + 'static {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, RegistryError>;
    /// Pairs with `start <= key < end`, in key order, at most `limit` of them.
    fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Pairs, RegistryError>;
    fn write(&self, ops: &[Op]) -> Result<(), RegistryError>;
    fn backend(&self) -> &'static str;
}

/// The first key after every key that starts with `prefix`. Every key here starts with a table
/// byte below 0xFF, so such a key always exists.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return end;
        }
    }
    vec![0xFF; prefix.len() + 1]
}

fn storage(e: impl std::fmt::Display) -> RegistryError {
    RegistryError::Storage(e.to_string())
}

pub mod redb_backend {
    //! redb: ACID, durable when `commit` returns, stable file format (major version pinned in
    //! Cargo.toml).

    use super::*;
    use redb::{Database, TableDefinition};

    const KV: TableDefinition<&[u8], &[u8]> = TableDefinition::new("suyuan");

    #[derive(Debug)]
    pub struct RedbKv {
        db: Database,
    }

    impl RedbKv {
        pub fn open(path: &Path) -> Result<Self, RegistryError> {
            let db = Database::create(path).map_err(|e| match e {
                redb::DatabaseError::DatabaseAlreadyOpen => {
                    RegistryError::Locked(path.display().to_string())
                }
                other => storage(format!("{}: {other}", path.display())),
            })?;
            // Make sure the table exists, so reads never fail on a fresh store.
            let w = db.begin_write().map_err(storage)?;
            w.open_table(KV).map_err(storage)?;
            w.commit().map_err(storage)?;
            Ok(RedbKv { db })
        }
    }

    impl Kv for RedbKv {
        fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, RegistryError> {
            let r = self.db.begin_read().map_err(storage)?;
            let t = r.open_table(KV).map_err(storage)?;
            Ok(t.get(key).map_err(storage)?.map(|v| v.value().to_vec()))
        }

        fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Pairs, RegistryError> {
            let r = self.db.begin_read().map_err(storage)?;
            let t = r.open_table(KV).map_err(storage)?;
            let mut out = Vec::new();
            for item in t.range(start..end).map_err(storage)?.take(limit) {
                let (k, v) = item.map_err(storage)?;
                out.push((k.value().to_vec(), v.value().to_vec()));
            }
            Ok(out)
        }

        fn write(&self, ops: &[Op]) -> Result<(), RegistryError> {
            let w = self.db.begin_write().map_err(storage)?;
            {
                let mut t = w.open_table(KV).map_err(storage)?;
                for op in ops {
                    match op {
                        Op::Put(k, v) => {
                            t.insert(k.as_slice(), v.as_slice()).map_err(storage)?;
                        }
                        Op::Delete(k) => {
                            t.remove(k.as_slice()).map_err(storage)?;
                        }
                    }
                }
            }
            w.commit().map_err(storage)
        }

        fn backend(&self) -> &'static str {
            "redb"
        }
    }
}

#[cfg(feature = "sled")]
pub mod sled_backend {
    //! sled, the alternative backend: one tree, an atomic `Batch` per write, flushed before the
    //! write returns so an acknowledged write is on disk.

    use super::*;

    #[derive(Debug)]
    pub struct SledKv {
        db: sled::Db,
    }

    impl SledKv {
        pub fn open(path: &Path) -> Result<Self, RegistryError> {
            // sled's flusher thread can hold the file lock for a moment after the last handle
            // in this process is dropped: a reopen waits for it (up to two seconds) rather than
            // fail. Another process holding the store is reported as such.
            let mut tries = 0;
            loop {
                match sled::open(path) {
                    Ok(db) => return Ok(SledKv { db }),
                    Err(e) if e.to_string().contains("could not acquire lock") => {
                        tries += 1;
                        if tries >= 40 {
                            return Err(RegistryError::Locked(path.display().to_string()));
                        }
                        std::thread::sleep(std::time::Duration::from_millis(50));
                    }
                    Err(e) => return Err(storage(format!("{}: {e}", path.display()))),
                }
            }
        }
    }

    impl Kv for SledKv {
        fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, RegistryError> {
            Ok(self.db.get(key).map_err(storage)?.map(|v| v.to_vec()))
        }

        fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Pairs, RegistryError> {
            self.db
                .range(start..end)
                .take(limit)
                .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(storage))
                .collect()
        }

        fn write(&self, ops: &[Op]) -> Result<(), RegistryError> {
            let mut b = sled::Batch::default();
            for op in ops {
                match op {
                    Op::Put(k, v) => b.insert(k.as_slice(), v.as_slice()),
                    Op::Delete(k) => b.remove(k.as_slice()),
                }
            }
            self.db.apply_batch(b).map_err(storage)?;
            self.db.flush().map_err(storage)?;
            Ok(())
        }

        fn backend(&self) -> &'static str {
            "sled"
        }
    }
}

/// Opens the embedded backend this build was made with, in `dir`.
pub fn open_embedded(dir: &Path) -> Result<Box<dyn Kv>, RegistryError> {
    std::fs::create_dir_all(dir).map_err(|e| storage(format!("{}: {e}", dir.display())))?;
    #[cfg(feature = "sled")]
    {
        Ok(Box::new(sled_backend::SledKv::open(
            &dir.join("store.sled"),
        )?))
    }
    #[cfg(not(feature = "sled"))]
    {
        Ok(Box::new(redb_backend::RedbKv::open(
            &dir.join("store.redb"),
        )?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_bounds_the_prefix() {
        assert_eq!(prefix_end(b"ab"), b"ac".to_vec());
        assert_eq!(prefix_end(&[b'a', 0xFF]), b"b".to_vec());
        assert_eq!(prefix_end(&[b'a', 0xFF, 0xFF]), b"b".to_vec());
    }

    #[test]
    fn embedded_backend_writes_scans_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        {
            let kv = open_embedded(dir.path()).unwrap();
            kv.write(&[
                Op::Put(table_key(Table::Records, b"A"), b"1".to_vec()),
                Op::Put(table_key(Table::Records, b"B"), b"2".to_vec()),
                Op::Put(table_key(Table::Prefixes, b"A"), b"3".to_vec()),
            ])
            .unwrap();
            kv.write(&[Op::Delete(table_key(Table::Records, b"A"))])
                .unwrap();
        }
        let kv = open_embedded(dir.path()).unwrap();
        let start = table_key(Table::Records, b"");
        let got = kv.scan(&start, &prefix_end(&start), 10).unwrap();
        assert_eq!(got, vec![(table_key(Table::Records, b"B"), b"2".to_vec())]);
        assert_eq!(
            kv.get(&table_key(Table::Prefixes, b"A")).unwrap(),
            Some(b"3".to_vec())
        );
    }
}
