//! A table's primary-key index, which DML checks duplicate keys against.
//!
//! The index is the set of key encodings the table holds. The encodings lie
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

/// Removed bytes below this are never worth writing the buffer again for.
const COMPACT_BYTES: usize = 1 << 20;

/// Primary-key index of a table: the keys its rows hold, each once.
pub(super) struct KeyIndex {
    columns: Vec<usize>,
    codec: RowCodec,
    /// The encodings of the keys, end to end (and of removed keys).
    bytes: Vec<u8>,
    /// Bytes of `bytes` that belong to removed keys.
    removed: usize,
    keys: HashTable<Slot>,
    hasher: DefaultHashBuilder,
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
            bytes: Vec::new(),
            removed: 0,
            keys: HashTable::new(),
            hasher: DefaultHashBuilder::default(),
        })
    }

    /// The key changes `changes` would make; fails on a duplicate key.
    pub(super) fn check(&self, entry: &CatalogEntry, changes: &ChangeBatch) -> Result<KeyDeltas> {
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
            let count = i64::from(self.contains(key.data())) + delta;
            if count > 1 {
                return Err(self.duplicate(entry, &columns, shown));
            }
            deltas.push((first, delta > 0));
        }
        Ok(KeyDeltas {
            keys,
            changes: deltas,
        })
    }

    /// Make the key changes [`KeyIndex::check`] found.
    pub(super) fn apply(&mut self, deltas: KeyDeltas) {
        for (row, added) in deltas.changes {
            let key = deltas.keys.row(row);
            if added {
                self.insert(key.data());
            } else {
                self.remove(key.data());
            }
        }
        if self.removed > COMPACT_BYTES && self.removed > self.bytes.len() / 2 {
            self.compact();
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
        self.keys.reserve(rows.num_rows(), |slot| spread(slot.hash));
        for (key, weight) in keys.iter().zip(rows.weights()) {
            if u32::try_from(key.data().len()).is_err() || *weight != 1 || !self.insert(key.data())
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

    fn contains(&self, key: &[u8]) -> bool {
        let hash = self.hash(key);
        let bytes = &self.bytes;
        self.keys
            .find(spread(hash), |slot| {
                slot.hash == hash && encoding(bytes, slot) == key
            })
            .is_some()
    }

    /// Add `key` (shorter than 4 GiB) unless it is there; says if it was
    /// added.
    fn insert(&mut self, key: &[u8]) -> bool {
        let hash = self.hash(key);
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

    fn remove(&mut self, key: &[u8]) {
        let hash = self.hash(key);
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
    use datafusion::arrow::array::{Int64Array, RecordBatch};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    fn table() -> CatalogEntry {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("v", DataType::Int64, true),
        ]));
        CatalogEntry {
            name: "t".into(),
            kind: crate::catalog::ObjectKind::Table,
            schema,
            primary_key: vec![0],
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

    /// Changes of `(k, weight)`, v = 0.
    fn changes(entry: &CatalogEntry, rows: &[(i64, i64)]) -> ChangeBatch {
        let keys = Int64Array::from_iter_values(rows.iter().map(|(k, _)| *k));
        let values = Int64Array::from_iter_values(rows.iter().map(|_| 0));
        let batch =
            RecordBatch::try_new(entry.schema.clone(), vec![Arc::new(keys), Arc::new(values)])
                .expect("batch");
        let weights = Int64Array::from_iter_values(rows.iter().map(|(_, w)| *w));
        ChangeBatch::new(batch, weights).expect("changes")
    }

    fn write(index: &mut KeyIndex, entry: &CatalogEntry, rows: &[(i64, i64)]) -> Result<()> {
        let deltas = index.check(entry, &changes(entry, rows))?;
        index.apply(deltas);
        Ok(())
    }

    #[test]
    fn duplicates_are_refused() {
        let entry = table();
        let mut index = KeyIndex::new(&entry).expect("index");
        write(&mut index, &entry, &[(1, 1), (2, 1)]).expect("insert");
        let error = write(&mut index, &entry, &[(3, 1), (2, 1)]).expect_err("duplicate");
        assert!(error.to_string().contains("t_pkey"), "{error}");
        let error = write(&mut index, &entry, &[(4, 1), (4, 1)]).expect_err("twice");
        assert!(format!("{error:?}").contains("(k)=(4)"), "{error:?}");
        // An update deletes and inserts the same key.
        write(&mut index, &entry, &[(2, -1), (2, 1)]).expect("update");
        write(&mut index, &entry, &[(1, -1), (3, 1)]).expect("delete, insert");
        write(&mut index, &entry, &[(1, 1)]).expect("deleted key again");
        write(&mut index, &entry, &[(3, 1)]).expect_err("3 is there");
    }

    #[test]
    fn removed_keys_give_their_bytes_back() {
        let entry = table();
        let mut index = KeyIndex::new(&entry).expect("index");
        let rows = 300_000i64;
        let inserts: Vec<(i64, i64)> = (0..rows).map(|k| (k, 1)).collect();
        write(&mut index, &entry, &inserts).expect("insert");
        let deletes: Vec<(i64, i64)> = (0..rows).filter(|k| k % 3 != 0).map(|k| (k, -1)).collect();
        write(&mut index, &entry, &deletes).expect("delete");
        assert!(index.bytes.len() < rows as usize * 9 / 2, "compacted");
        assert_eq!(index.keys.len(), (rows as usize).div_ceil(3));
        write(&mut index, &entry, &[(3, 1)]).expect_err("3 is kept");
        write(&mut index, &entry, &[(4, 1), (rows, 1)]).expect("4 is removed");
    }

    #[test]
    fn loaded_keys_are_unique() {
        let entry = table();
        let mut index = KeyIndex::new(&entry).expect("index");
        index
            .load(&entry, &changes(&entry, &[(1, 1), (2, 1)]))
            .expect("load");
        write(&mut index, &entry, &[(2, 1)]).expect_err("loaded key");
        index
            .load(&entry, &changes(&entry, &[(1, 1)]))
            .expect_err("stored twice");
    }
}
