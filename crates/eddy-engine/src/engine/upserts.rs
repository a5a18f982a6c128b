//! Upserts of keyed connector tables: the reader says which rows set or
//! delete the row of their primary key ([`Upsert`]); the writer, which
//! holds the table, looks up the rows those keys have and retracts them.
//!
//! The rows are looked up in the table's relation, keyed by its primary
//! key: a range of the row map in memory, a seek per key on disk. So a
//! reader holds no rows and the table counts against the memory budget
//! like any other. Rows set by earlier batches of the same epoch are not
//! in the relation yet (it takes the epoch's changes when it commits):
//! [`Latest`] holds them.

use std::collections::HashMap;

use datafusion::arrow::array::{RecordBatch, UInt32Array};
use datafusion::arrow::compute::take_record_batch;
use eddy_common::{ChangeBatch, Error, Result};
use eddy_connectors::source::Upsert;

use super::Writer;

/// The rows keys of a table have after the upserts taken this epoch: key
/// encoding -> row encoding (`None`: the key has no row).
pub(crate) type Latest = HashMap<Vec<u8>, Option<Vec<u8>>>;

impl Writer {
    /// `upserts` of connector table `table` (one per row of `rows`, in
    /// order; for UPSERT with each row's message key in `message_keys`) as
    /// changes of its contents: retractions of the rows keys had, then
    /// insertions of the rows set. `latest` carries what this epoch's
    /// earlier upserts of the table did. Which primary key each message
    /// key points at changes only if the whole batch is taken.
    pub(crate) fn upserts_as_changes(
        &mut self,
        table: &str,
        latest: &mut Latest,
        rows: &RecordBatch,
        upserts: &[Upsert],
        message_keys: &[Option<Vec<u8>>],
    ) -> Result<Vec<ChangeBatch>> {
        if upserts.len() != rows.num_rows()
            || !(message_keys.is_empty() || message_keys.len() == rows.num_rows())
        {
            return Err(Error::internal("upserts and their rows do not match"));
        }
        let stored = self.durable_snapshot().map(|(_, snapshot)| snapshot);
        let relation =
            self.working.relations.get_mut(table).ok_or_else(|| {
                Error::internal(format!("connector table {table} has no contents"))
            })?;
        if !relation.seeks() {
            // Right after a restart its rows may be appended batches.
            relation.fold()?;
        }
        let keys = relation.encode_keys(rows)?;
        let encoded = relation.encode(&ChangeBatch::inserts(rows.clone()))?;
        // What each upsert does, in order: the key it sets (to the row of
        // that index) or deletes. A message key that moves to another
        // primary key, or is deleted, deletes the one it pointed at.
        let mut ops: Vec<(Vec<u8>, Option<usize>)> = Vec::with_capacity(upserts.len());
        let mut pointed = self.message_keys.get_mut(table);
        let mut moved: HashMap<&[u8], Option<Vec<u8>>> = HashMap::new();
        for (index, upsert) in upserts.iter().enumerate() {
            let key = keys.row(index).data();
            let message_key = message_keys.get(index).and_then(Option::as_deref);
            let before = match (message_key, pointed.as_mut()) {
                (Some(message_key), Some(map)) => match moved.get(message_key) {
                    Some(now) => now.clone(),
                    None => map.get(message_key, stored.as_deref())?,
                },
                _ => None,
            };
            match upsert {
                Upsert::Set => {
                    if let Some(message_key) = message_key {
                        if let Some(before) = before.filter(|before| before.as_slice() != key) {
                            ops.push((before, None));
                        }
                        moved.insert(message_key, Some(key.to_vec()));
                    }
                    ops.push((key.to_vec(), Some(index)));
                }
                Upsert::Delete => ops.push((key.to_vec(), None)),
                Upsert::Forget => {
                    if let Some(before) = before {
                        ops.push((before, None));
                    }
                    if let Some(message_key) = message_key {
                        moved.insert(message_key, None);
                    }
                }
            }
        }
        let mut unknown: Vec<Vec<u8>> = ops
            .iter()
            .map(|(key, _)| key)
            .filter(|key| !latest.contains_key(*key))
            .cloned()
            .collect();
        unknown.sort_unstable();
        unknown.dedup();
        if !unknown.is_empty() {
            let mut failure: Option<Error> = None;
            relation.read_chunks(Some(&unknown), &mut |chunk| {
                for (row, count) in chunk.rows().zip(&chunk.weights) {
                    // The key a row starts with is the greatest key not
                    // after it (key encodings delimit themselves).
                    let at = unknown.partition_point(|key| key.as_slice() <= row);
                    let key = at.checked_sub(1).map(|at| &unknown[at]);
                    match key.filter(|key| row.starts_with(key)) {
                        Some(key) if *count == 1 && !latest.contains_key(key) => {
                            latest.insert(key.clone(), Some(row.to_vec()));
                        }
                        _ => {
                            failure.get_or_insert_with(|| {
                                Error::internal(format!(
                                    "connector table {table} holds more than one row of a key"
                                ))
                            });
                        }
                    }
                }
                Ok(())
            })?;
            if let Some(failure) = failure {
                return Err(failure);
            }
            for key in unknown {
                latest.entry(key).or_insert(None);
            }
        }
        let mut retracted: Vec<Vec<u8>> = Vec::new();
        let mut inserted: Vec<u32> = Vec::new();
        for (key, set) in ops {
            let now = match set {
                Some(index) => {
                    let row = u32::try_from(index)
                        .map_err(|_| Error::internal("an upsert batch of over 2^32 rows"))?;
                    inserted.push(row);
                    Some(encoded.row(index).data().to_vec())
                }
                None => None,
            };
            if let Some(Some(before)) = latest.insert(key, now) {
                retracted.push(before);
            }
        }
        let mut changes = Vec::with_capacity(2);
        if !retracted.is_empty() {
            let old = relation.decode(
                retracted.iter().map(Vec::as_slice),
                &vec![-1; retracted.len()],
            )?;
            // In the reader's schema (the relation reads every column back
            // nullable, as the reader yields them).
            let old = RecordBatch::try_new(rows.schema(), old.data().columns().to_vec())?;
            changes.push(ChangeBatch::new(old, vec![-1i64; retracted.len()].into())?);
        }
        if !inserted.is_empty() {
            let new = take_record_batch(rows, &UInt32Array::from(inserted))?;
            changes.push(ChangeBatch::inserts(new));
        }
        if let Some(map) = pointed {
            let durable = self.store.is_some();
            for (message_key, key) in moved {
                map.set(message_key, key, durable.then_some(&mut self.pending));
            }
        }
        Ok(changes)
    }
}
