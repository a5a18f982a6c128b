//! A table's primary-key index, which DML checks duplicate keys against.
//!
//! While the table's rows are in memory the index holds the set of key
//! encodings the table holds. Once the table's rows leave memory (see
//! [`crate::Relation::leave`]) the index lets its keys go too, and a key is
//! looked up in the table instead: a table's rows are encoded key first,
//! so the rows of a key are the stored rows whose encoding starts with it.
//!
//! The held encodings lie
//! end to end in one byte buffer and the hash table holds only where each
//! one is, so a table of millions of rows costs no allocation per key:
//! building the index when a restart loads the table, and dropping it, are
//! not millions of `malloc`s and `free`s. A removed key leaves its bytes in
//! the buffer until removed bytes outweigh the live ones; then the buffer
//! is written again.

use datafusion::arrow::row::Rows;
use datafusion::scalar::ScalarValue;
use eddy_common::row::RowCodec;
use eddy_common::{ChangeBatch, Error, Result};
use hashbrown::hash_table::{Entry, HashTable};
use hashbrown::DefaultHashBuilder;
use std::hash::BuildHasher;

use crate::catalog::CatalogEntry;
use crate::Relation;

/// Removed bytes below this are never worth writing the buffer again for.
const COMPACT_BYTES: usize = 1 << 20;

/// Primary-key index of a table: the keys its rows hold, each once.
pub(super) struct KeyIndex {
    columns: Vec<usize>,
    codec: RowCodec,
    hasher: DefaultHashBuilder,
    /// The keys, while the table's rows are in memory (`None`: keys are
    /// looked up in the table).
    held: Option<HeldKeys>,
}

/// The keys of a table in memory.
#[derive(Default)]
struct HeldKeys {
    /// The encodings of the keys, end to end (and of removed keys).
    bytes: Vec<u8>,
    /// Bytes of `bytes` that belong to removed keys.
    removed: usize,
    keys: HashTable<Slot>,
}

/// Where a key's encoding is in [`KeyIndex::bytes`], and its hash.
#[derive(Debug, Clone, Copy)]
struct Slot {
    start: usize,
    len: u32,
    hash: u32,
}

/// What a change batch does to a table's keys, as [`KeyIndex::check`]
/// found it.
pub(super) struct KeyDeltas {
    keys: Rows,
    /// A row of `keys` for each key the batch adds (true) or removes.
    changes: Vec<(usize, bool)>,
}

impl KeyIndex {
    /// An empty index of `entry`'s primary key.
    pub(super) fn new(entry: &CatalogEntry) -> Result<Self> {
        let types = entry
            .primary_key
            .iter()
            .map(|i| entry.schema.field(*i).data_type().clone())
            .collect();
        Ok(Self {
            columns: entry.primary_key.clone(),
            codec: RowCodec::new(types)?,
            hasher: DefaultHashBuilder::default(),
            held: Some(HeldKeys::default()),
        })
    }

    /// True while the index holds the table's keys.
    pub(super) fn holds_keys(&self) -> bool {
        self.held.is_some()
    }

    /// Let the keys go: the table's rows are on disk, keys are looked up
    /// there from now on.
    pub(super) fn let_go(&mut self) {
        self.held = None;
    }

    /// Bytes of memory the held keys take (an estimate).
    pub(super) fn bytes(&self) -> usize {
        self.held.as_ref().map_or(0, |held| {
            held.bytes.capacity() + held.keys.capacity() * (std::mem::size_of::<Slot>() + 1)
        })
    }

    /// The key changes `changes` would make to `table` (whose keys this
    /// indexes); fails on a duplicate key.
    pub(super) fn check(
        &self,
        entry: &CatalogEntry,
        changes: &ChangeBatch,
        table: &Relation,
    ) -> Result<KeyDeltas> {
        let columns: Vec<_> = self
            .columns
            .iter()
            .map(|i| changes.data().column(*i).clone())
            .collect();
        let keys = self.codec.encode(&columns)?;
        // Per distinct key, in the order keys first appear: its first row,
        // its total weight, and the row to name if it is a duplicate (the
        // last that inserts it).
        let mut totals: Vec<(usize, i64, usize)> = Vec::new();
        let mut distinct: HashTable<usize> = HashTable::with_capacity(changes.num_rows());
        for (row, weight) in changes.weights().iter().enumerate() {
            let key = keys.row(row);
            let key = key.data();
            let hash = self.hash(key);
            let found = distinct
                .find(spread(hash), |i| keys.row(totals[*i].0).data() == key)
                .copied();
            match found {
                Some(i) => {
                    totals[i].1 += weight;
                    if *weight > 0 {
                        totals[i].2 = row;
                    }
                }
                None => {
                    distinct.insert_unique(spread(hash), totals.len(), |i| {
                        spread(self.hash(keys.row(totals[*i].0).data()))
                    });
                    totals.push((row, *weight, row));
                }
            }
        }
        let mut deltas = Vec::new();
        for (first, delta, shown) in totals {
            if delta == 0 {
                continue;
            }
            let key = keys.row(first);
            if u32::try_from(key.data().len()).is_err() {
                return Err(Error::not_supported("primary keys of 4 GiB or more"));
            }
            // Only an insertion can make a key's second row.
            if delta > 1 || (delta == 1 && self.contains(key.data(), table)?) {
                return Err(self.duplicate(entry, &columns, shown));
            }
            deltas.push((first, delta > 0));
        }
        Ok(KeyDeltas {
            keys,
            changes: deltas,
        })
    }

    /// Make the key changes [`KeyIndex::check`] found (in the held keys;
    /// the table makes its own).
    pub(super) fn apply(&mut self, deltas: KeyDeltas) {
        let hasher = &self.hasher;
        let Some(held) = &mut self.held else {
            return;
        };
        for (row, added) in deltas.changes {
            let key = deltas.keys.row(row);
            let hash = hasher.hash_one(key.data()) as u32;
            if added {
                held.insert(key.data(), hash);
            } else {
                held.remove(key.data(), hash);
            }
        }
        if held.removed > COMPACT_BYTES && held.removed > held.bytes.len() / 2 {
            held.compact();
        }
    }

    /// Add the keys of `rows`, stored rows of table `entry` being loaded.
    /// They are not checked as DML is (they were when they were stored);
    /// a stored key that is already there fails the load.
    pub(super) fn load(&mut self, entry: &CatalogEntry, rows: &ChangeBatch) -> Result<()> {
        let columns: Vec<_> = self
            .columns
            .iter()
            .map(|i| rows.data().column(*i).clone())
            .collect();
        let keys = self.codec.encode(&columns)?;
        let hasher = &self.hasher;
        let held = self
            .held
            .as_mut()
            .ok_or_else(|| Error::internal("keys loaded into an index that let them go"))?;
        held.keys.reserve(rows.num_rows(), |slot| spread(slot.hash));
        for (key, weight) in keys.iter().zip(rows.weights()) {
            let hash = hasher.hash_one(key.data()) as u32;
            if u32::try_from(key.data().len()).is_err()
                || *weight != 1
                || !held.insert(key.data(), hash)
            {
                return Err(Error::Storage(format!(
                    "the stored rows of \"{}\" repeat a primary key",
                    entry.name
                )));
            }
        }
        Ok(())
    }

    /// The hash of `key`. Only 32 bits are kept in a [`Slot`]; [`spread`]
    /// makes the table's hash of them.
    fn hash(&self, key: &[u8]) -> u32 {
        self.hasher.hash_one(key) as u32
    }

    /// True if `table` has a row with `key`.
    fn contains(&self, key: &[u8], table: &Relation) -> Result<bool> {
        match &self.held {
            Some(held) => Ok(held.contains(key, self.hash(key))),
            None => Ok(table.key_count(key)? > 0),
        }
    }

    /// The unique violation of a duplicate key, naming the key of `row`.
    fn duplicate(
        &self,
        entry: &CatalogEntry,
        columns: &[datafusion::arrow::array::ArrayRef],
        row: usize,
    ) -> Error {
        let names: Vec<&str> = self
            .columns
            .iter()
            .map(|i| entry.schema.field(*i).name().as_str())
            .collect();
        let values = columns
            .iter()
            .map(|c| Ok(display_value(&ScalarValue::try_from_array(c, row)?)))
            .collect::<Result<Vec<_>>>();
        match values {
            Ok(values) => Error::UniqueViolation {
                constraint: format!("{}_pkey", entry.name),
                detail: format!(
                    "Key ({})=({}) already exists.",
                    names.join(", "),
                    values.join(", ")
                ),
            },
            Err(error) => error,
        }
    }
}

impl HeldKeys {
    fn contains(&self, key: &[u8], hash: u32) -> bool {
        let bytes = &self.bytes;
        self.keys
            .find(spread(hash), |slot| {
                slot.hash == hash && encoding(bytes, slot) == key
            })
            .is_some()
    }

    /// Add `key` (shorter than 4 GiB, of hash `hash`) unless it is there;
    /// says if it was added.
    fn insert(&mut self, key: &[u8], hash: u32) -> bool {
        let bytes = &self.bytes;
        let entry = self.keys.entry(
            spread(hash),
            |slot| slot.hash == hash && encoding(bytes, slot) == key,
            |slot| spread(slot.hash),
        );
        match entry {
            Entry::Occupied(_) => false,
            Entry::Vacant(vacant) => {
                vacant.insert(Slot {
                    start: self.bytes.len(),
                    len: u32::try_from(key.len()).unwrap_or(u32::MAX),
                    hash,
                });
                self.bytes.extend_from_slice(key);
                true
            }
        }
    }

    fn remove(&mut self, key: &[u8], hash: u32) {
        let bytes = &self.bytes;
        let found = self.keys.find_entry(spread(hash), |slot| {
            slot.hash == hash && encoding(bytes, slot) == key
        });
        if let Ok(found) = found {
            let (slot, _) = found.remove();
            self.removed += slot.len as usize;
        }
    }

    /// Write the buffer again with the live keys only.
    fn compact(&mut self) {
        let mut bytes = Vec::with_capacity(self.bytes.len() - self.removed);
        for slot in self.keys.iter_mut() {
            let start = bytes.len();
            bytes.extend_from_slice(encoding(&self.bytes, slot));
            slot.start = start;
        }
        self.bytes = bytes;
        self.removed = 0;
    }
}

/// The table's hash of a key's 32-bit hash: the multiplication spreads
/// those bits over all 64, the low ones choosing the bucket and the high
/// ones the tag the table compares first.
fn spread(hash: u32) -> u64 {
    u64::from(hash).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// The encoding of the key at `slot`.
fn encoding<'a>(bytes: &'a [u8], slot: &Slot) -> &'a [u8] {
    bytes
        .get(slot.start..slot.start + slot.len as usize)
        .unwrap_or_default()
}

fn display_value(value: &ScalarValue) -> String {
    if value.is_null() {
        "null".to_string()
    } else {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relation::Location;
    use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use eddy_state::{Checkpoint, Store, StoreOptions};
    use std::sync::Arc;

    /// Table `t (v bigint, k bigint primary key)`: the key is not the
    /// first column, so its rows are encoded in another column order.
    fn entry() -> CatalogEntry {
        let schema = Arc::new(Schema::new(vec![
            Field::new("v", DataType::Int64, true),
            Field::new("k", DataType::Int64, false),
        ]));
        CatalogEntry {
            name: "t".into(),
            kind: crate::catalog::ObjectKind::Table,
            schema,
            primary_key: vec![1],
            column_defaults: Vec::new(),
            query: None,
            plan: None,
            depends_on: Vec::new(),
            created: 1,
            connector: None,
            failure: None,
            definition: None,
        }
    }

    /// A table's rows and key index, written as the engine writes them.
    struct Table {
        entry: CatalogEntry,
        index: KeyIndex,
        rows: Relation,
    }

    impl Table {
        fn new() -> Self {
            let entry = entry();
            Self {
                index: KeyIndex::new(&entry).expect("index"),
                rows: Relation::keyed(entry.schema.clone(), &entry.primary_key).expect("rows"),
                entry,
            }
        }

        /// Changes of `(k, weight)`, v = k * 10.
        fn changes(&self, rows: &[(i64, i64)]) -> ChangeBatch {
            let keys = Int64Array::from_iter_values(rows.iter().map(|(k, _)| *k));
            let values = Int64Array::from_iter_values(rows.iter().map(|(k, _)| k.wrapping_mul(10)));
            let batch = RecordBatch::try_new(
                self.entry.schema.clone(),
                vec![Arc::new(values), Arc::new(keys)],
            )
            .expect("batch");
            let weights = Int64Array::from_iter_values(rows.iter().map(|(_, w)| *w));
            ChangeBatch::new(batch, weights).expect("changes")
        }

        fn write(&mut self, rows: &[(i64, i64)]) -> Result<()> {
            let changes = self.changes(rows);
            let deltas = self.index.check(&self.entry, &changes, &self.rows)?;
            self.rows.apply(&changes)?;
            self.index.apply(deltas);
            Ok(())
        }

        /// Store every row in a fresh store at `dir` and read them from
        /// there, the index letting its keys go.
        fn go_on_disk(&mut self, dir: &std::path::Path) -> Arc<Store> {
            let _ = std::fs::remove_dir_all(dir);
            let store = Arc::new(Store::open(dir, &StoreOptions::default()).expect("open"));
            let mut checkpoint = Checkpoint::default();
            for changes in self.rows.contents().expect("contents") {
                let encoded = self.rows.encode(&changes).expect("encode");
                let keys = self.rows.stored_keys(&changes, &encoded).expect("keys");
                for ((row, count), key) in encoded.iter().zip(changes.weights()).zip(keys) {
                    checkpoint.set_row(self.entry.created, row.data(), key, *count);
                }
            }
            store.commit(checkpoint, 1).expect("commit");
            let location = Location {
                id: self.entry.created,
                prefix: Vec::new(),
            };
            let snapshot = Arc::new(store.snapshot());
            let total = self.rows.total();
            self.rows = Relation::on_disk(&self.rows, 1, snapshot, location, total);
            self.index.let_go();
            assert!(!self.index.holds_keys());
            assert_eq!(self.index.bytes(), 0);
            store
        }
    }

    /// Duplicates are refused alike by keys held and by keys looked up in
    /// the table's rows on disk (the stored ones and those changed since).
    #[test]
    fn duplicates_are_refused() {
        for on_disk in [false, true] {
            let dir = std::env::temp_dir().join(format!("eddy-keys-{}", std::process::id()));
            let mut table = Table::new();
            table.write(&[(1, 1), (2, 1), (5, 1)]).expect("insert");
            let store = on_disk.then(|| table.go_on_disk(&dir));
            assert_eq!(table.rows.on_disk_now(), on_disk);
            let error = table.write(&[(3, 1), (2, 1)]).expect_err("duplicate");
            assert!(error.to_string().contains("t_pkey"), "{error}");
            let error = table.write(&[(4, 1), (4, 1)]).expect_err("twice");
            assert!(format!("{error:?}").contains("(k)=(4)"), "{error:?}");
            // An update deletes and inserts the same key.
            table.write(&[(2, -1), (2, 1)]).expect("update");
            table.write(&[(1, -1), (3, 1)]).expect("delete, insert");
            table.write(&[(1, 1)]).expect("deleted key again");
            table.write(&[(3, 1)]).expect_err("3 is there");
            table.write(&[(5, -1)]).expect("delete a stored key");
            table.write(&[(5, 1), (6, 1)]).expect("5 is gone");
            table.write(&[(6, 1)]).expect_err("6 is there");
            // Keys next to each other in the encoding stay apart.
            table.write(&[(i64::MAX, 1), (-1, 1)]).expect("new keys");
            table.write(&[(7, 1)]).expect("7 is new");
            let keys: i64 = (0..=7)
                .map(|k| {
                    let columns = [Arc::new(Int64Array::from(vec![k])) as ArrayRef];
                    let key = table.index.codec.encode(&columns).expect("key");
                    table.rows.key_count(key.row(0).data()).expect("count")
                })
                .sum();
            assert_eq!(
                keys, 6,
                "keys 1, 2, 3, 5, 6, 7, not 0 or 4 (on disk: {on_disk})"
            );
            drop((table, store));
            let _ = std::fs::remove_dir_all(&dir);
        }
    }

    #[test]
    fn removed_keys_give_their_bytes_back() {
        let mut table = Table::new();
        let rows = 300_000i64;
        let inserts: Vec<(i64, i64)> = (0..rows).map(|k| (k, 1)).collect();
        table.write(&inserts).expect("insert");
        let deletes: Vec<(i64, i64)> = (0..rows).filter(|k| k % 3 != 0).map(|k| (k, -1)).collect();
        table.write(&deletes).expect("delete");
        let held = table.index.held.as_ref().expect("held");
        assert!(held.bytes.len() < rows as usize * 9 / 2, "compacted");
        assert_eq!(held.keys.len(), (rows as usize).div_ceil(3));
        table.write(&[(3, 1)]).expect_err("3 is kept");
        table.write(&[(4, 1), (rows, 1)]).expect("4 is removed");
    }

    #[test]
    fn loaded_keys_are_unique() {
        let mut table = Table::new();
        let entry = table.entry.clone();
        let rows = table.changes(&[(1, 1), (2, 1)]);
        table.index.load(&entry, &rows).expect("load");
        table.rows.apply(&rows).expect("rows");
        table.write(&[(2, 1)]).expect_err("loaded key");
        let again = table.changes(&[(1, 1)]);
        table.index.load(&entry, &again).expect_err("stored twice");
    }
}
