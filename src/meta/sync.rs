//! What `meta.redb` keeps for sync (`storage-format.md` 6.1 and 12.1): the
//! per-namespace sync record, its WAL floor, the node id, and the **holds**
//! on unsynced WAL batches.
//!
//! Invariants:
//! - A hold is a reference: a WAL batch a commit drops (compaction folded
//!   it into a segment) whose `seq` is at or above its namespace's sync floor
//!   keeps the count the dropped manifest reference had, and a `sync_holds`
//!   row says so, in the same transaction that lowers the other dropped
//!   keys. So a node that compacts while offline deletes no batch the remote
//!   has not seen, and a rebase can still re-apply it.
//! - A hold is given back only by [`Meta::release_sync_holds`] (row removed and
//!   count lowered in one transaction), after the sync record that covers the
//!   batch was written. Repair counts every hold as one reference.
//! - The floor is written with the record (one transaction); a namespace
//!   without a record has no floor and nothing of it is ever held.

use redb::{ReadableDatabase, ReadableTable, TableDefinition};

use super::{composite, db_err, decr_in, scope, Meta, MetaError, META, REFCOUNTS, SYNC};

/// Namespace path → `wal_floor` of its sync record.
pub(super) const SYNC_FLOORS: TableDefinition<&str, u64> = TableDefinition::new("sync_floors");
/// (project, WAL object key) → the batch's `seq`, length and crc32c (20 bytes LE).
pub(super) const SYNC_HOLDS: TableDefinition<&str, &[u8]> = TableDefinition::new("sync_holds");

/// A WAL batch under a sync hold: enough to read it back verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldWal {
    /// Full object key.
    pub key: String,
    /// The batch's WAL sequence number.
    pub seq: u64,
    /// Object length in bytes.
    pub bytes: u64,
    /// crc32c of the object.
    pub crc32c: u32,
}

impl HeldWal {
    fn encode(&self) -> [u8; 20] {
        let mut b = [0u8; 20];
        b[..8].copy_from_slice(&self.seq.to_le_bytes());
        b[8..16].copy_from_slice(&self.bytes.to_le_bytes());
        b[16..].copy_from_slice(&self.crc32c.to_le_bytes());
        b
    }

    fn decode(key: &str, b: &[u8]) -> Option<HeldWal> {
        let b: &[u8; 20] = b.try_into().ok()?;
        let u64_at = |i: usize| b[i..i + 8].try_into().ok().map(u64::from_le_bytes);
        Some(HeldWal {
            key: key.to_owned(),
            seq: u64_at(0)?,
            bytes: u64_at(8)?,
            crc32c: u32::from_le_bytes(b[16..].try_into().ok()?),
        })
    }
}

/// What [`Meta::release_dropped`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Released {
    /// Keys whose count reached zero: the caller may delete them.
    pub zeroed: Vec<String>,
    /// WAL keys kept under a sync hold instead of being released.
    pub held: Vec<String>,
}

impl Meta {
    /// The sync record of a namespace (its bytes: `format/sync_record.rs` encodes them).
    pub fn sync_record(&self, ns: &str) -> Result<Option<Vec<u8>>, MetaError> {
        self.get_bytes(SYNC, ns)
    }

    /// Replace the sync record of a namespace and its WAL floor (kept when the
    /// namespace is forgotten: a delete still has to reach the remote).
    pub fn set_sync_record(&self, ns: &str, record: &[u8], wal_floor: u64) -> Result<(), MetaError> {
        self.with(|db| {
            let txn = db.begin_write().map_err(db_err)?;
            txn.open_table(SYNC).map_err(db_err)?.insert(ns, record).map_err(db_err)?;
            txn.open_table(SYNC_FLOORS).map_err(db_err)?.insert(ns, wal_floor).map_err(db_err)?;
            txn.commit().map_err(db_err)
        })
    }

    /// This node's id, generating and storing one on first use.
    pub fn node_id(&self, generate: impl FnOnce() -> String) -> Result<String, MetaError> {
        if let Some(b) = self.get_bytes(META, "node_id")? {
            return Ok(String::from_utf8_lossy(&b).into_owned());
        }
        let id = generate();
        self.put_bytes(META, "node_id", id.as_bytes())?;
        Ok(id)
    }

    /// Release what a commit of namespace `ns` dropped: every key's count is
    /// lowered by one, except the dropped WAL batches (`wal`: the base's
    /// batches) at or above the namespace's sync floor, which are held instead.
    pub fn release_dropped(
        &self,
        project: &str,
        ns: &str,
        dropped: &[String],
        wal: &[HeldWal],
    ) -> Result<Released, MetaError> {
        if dropped.is_empty() {
            return Ok(Released::default());
        }
        self.with(|db| {
            let txn = db.begin_write().map_err(db_err)?;
            let floor =
                txn.open_table(SYNC_FLOORS).map_err(db_err)?.get(ns).map_err(db_err)?.map(|v| v.value());
            let mut out = Released::default();
            if let Some(floor) = floor {
                let mut holds = txn.open_table(SYNC_HOLDS).map_err(db_err)?;
                for w in wal.iter().filter(|w| w.seq >= floor && dropped.contains(&w.key)) {
                    holds
                        .insert(composite(project, &w.key).as_str(), w.encode().as_slice())
                        .map_err(db_err)?;
                    out.held.push(w.key.clone());
                }
            }
            let rest: Vec<String> = dropped.iter().filter(|k| !out.held.contains(k)).cloned().collect();
            out.zeroed = decr_in(&mut txn.open_table(REFCOUNTS).map_err(db_err)?, project, &rest)?;
            txn.commit().map_err(db_err)?;
            Ok(out)
        })
    }

    /// The held WAL batches of the project whose keys start with `prefix`
    /// (a namespace's key prefix), in key order (= seq order); a row that
    /// fails to decode is skipped (the batch then counts as missing: a
    /// rebase falls back to a branch, nothing is lost).
    pub fn sync_holds(&self, project: &str, prefix: &str) -> Result<Vec<HeldWal>, MetaError> {
        self.with(|db| {
            let txn = db.begin_read().map_err(db_err)?;
            let t = txn.open_table(SYNC_HOLDS).map_err(db_err)?;
            let (lo, hi) = scope(project);
            let mut out = Vec::new();
            for row in t.range(lo.as_str()..hi.as_str()).map_err(db_err)? {
                let (k, v) = row.map_err(db_err)?;
                let key = &k.value()[lo.len()..];
                if key.starts_with(prefix) {
                    out.extend(HeldWal::decode(key, v.value()));
                }
            }
            Ok(out)
        })
    }

    /// Give holds back: rows removed and counts lowered in one transaction;
    /// returns the keys whose count reached zero (the caller may delete them).
    pub fn release_sync_holds(&self, project: &str, keys: &[String]) -> Result<Vec<String>, MetaError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        self.with(|db| {
            let txn = db.begin_write().map_err(db_err)?;
            let mut released = Vec::new();
            {
                let mut holds = txn.open_table(SYNC_HOLDS).map_err(db_err)?;
                for k in keys {
                    if holds.remove(composite(project, k).as_str()).map_err(db_err)?.is_some() {
                        released.push(k.clone());
                    }
                }
            }
            let zeroed = decr_in(&mut txn.open_table(REFCOUNTS).map_err(db_err)?, project, &released)?;
            txn.commit().map_err(db_err)?;
            Ok(zeroed)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> (tempfile::TempDir, Meta) {
        let dir = tempfile::tempdir().unwrap();
        let m = Meta::open(dir.path()).unwrap();
        (dir, m)
    }

    fn held(key: &str, seq: u64) -> HeldWal {
        HeldWal { key: key.into(), seq, bytes: 100 + seq, crc32c: 7 }
    }

    fn keys(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn without_a_floor_everything_dropped_is_released() {
        let (_d, m) = meta();
        m.incr_refs("o/p", &keys(&["a/wal/5", "a/seg"])).unwrap();
        let r =
            m.release_dropped("o/p", "o/p/a", &keys(&["a/wal/5", "a/seg"]), &[held("a/wal/5", 5)]).unwrap();
        assert_eq!(r, Released { zeroed: keys(&["a/wal/5", "a/seg"]), held: vec![] });
    }

    #[test]
    fn batches_at_or_above_the_floor_are_held_until_given_back() {
        let (_d, m) = meta();
        m.set_sync_record("o/p/a", b"rec", 5).unwrap();
        m.incr_refs("o/p", &keys(&["a/wal/4", "a/wal/5", "a/wal/6", "a/seg"])).unwrap();
        let wal = [held("a/wal/4", 4), held("a/wal/5", 5), held("a/wal/6", 6)];
        let r = m.release_dropped("o/p", "o/p/a", &keys(&["a/wal/4", "a/wal/5", "a/seg"]), &wal).unwrap();
        // a/wal/6 was not dropped: it is neither held nor released.
        assert_eq!(r, Released { zeroed: keys(&["a/wal/4", "a/seg"]), held: keys(&["a/wal/5"]) });
        assert_eq!(m.refcount("o/p", "a/wal/5").unwrap(), 1);
        assert_eq!(m.sync_holds("o/p", "a/").unwrap(), vec![held("a/wal/5", 5)]);
        assert!(m.sync_holds("o/p", "b/").unwrap().is_empty());
        assert_eq!(m.release_sync_holds("o/p", &keys(&["a/wal/5"])).unwrap(), keys(&["a/wal/5"]));
        assert!(m.sync_holds("o/p", "a/").unwrap().is_empty());
        // Giving back twice lowers nothing.
        m.incr_refs("o/p", &keys(&["a/wal/5"])).unwrap();
        assert!(m.release_sync_holds("o/p", &keys(&["a/wal/5"])).unwrap().is_empty());
        assert_eq!(m.refcount("o/p", "a/wal/5").unwrap(), 1);
    }

    #[test]
    fn a_hold_row_is_20_little_endian_bytes() {
        // Pinned: rows written by earlier builds must keep decoding (storage-format.md 6.1).
        let h = HeldWal { key: "k".into(), seq: 0x0102, bytes: 0x0304, crc32c: 0x0506_0708 };
        let mut expect = [0u8; 20];
        expect[0..2].copy_from_slice(&[0x02, 0x01]);
        expect[8..10].copy_from_slice(&[0x04, 0x03]);
        expect[16..20].copy_from_slice(&[0x08, 0x07, 0x06, 0x05]);
        assert_eq!(h.encode(), expect);
        assert_eq!(HeldWal::decode("k", &expect), Some(h));
        assert_eq!(HeldWal::decode("k", &expect[..19]), None);
    }
}
