//! Keyed envelopes of a connector table: how `FORMAT UPSERT`, `FORMAT
//! DEBEZIUM` and `FORMAT PLAIN` with a primary key turn messages into
//! [`Upsert`]s: rows that set or delete the row of their primary key.
//!
//! The reader does not hold the table: the engine does (in memory or on
//! disk, under the memory budget) and retracts the row a key had when an
//! upsert sets or deletes it. So the table never holds two rows with one
//! key, and a view over it sees an update as a retraction and an
//! insertion, whatever the topic says about the old row: Debezium's
//! `before` only locates the key.
//!
//! `FORMAT UPSERT` keys messages by their Kafka key, as log compaction
//! does: a tombstone (a message without a value) deletes the row its key
//! last set, and a value that moves a key to another primary key deletes
//! the old one. For that the reader remembers the primary key each message
//! key last set (keys only, no rows).
//!
//! Debezium events are decoded as a whole (`before`, `after`, `op`, bare or
//! in `payload`) and split here into rows of old and new values.

use std::collections::HashMap;

use std::sync::Arc;

use arrow::array::{
    new_null_array, Array, ArrayRef, AsArray, BooleanArray, RecordBatch, RecordBatchOptions,
    StringArray,
};
use arrow::compute::interleave;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::row::{OwnedRow, RowConverter, SortField};

use crate::source::Upsert;
use crate::Result;

/// What one message does to the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// Set the row of the key row `row` of the decoded batch has (and, for
    /// UPSERT, remember that Kafka key `message_key` points at it).
    Set {
        row: usize,
        message_key: Option<Vec<u8>>,
    },
    /// Delete the row with the primary key of row `row` of the batch of
    /// old rows (Debezium's `before`).
    DeleteRow { row: usize },
    /// Delete the row Kafka key `message_key` last set (an UPSERT
    /// tombstone).
    DeleteMessageKey { message_key: Vec<u8> },
}

/// Upserts for a connector table: rows in its schema and what each does.
#[derive(Debug)]
pub(crate) struct Upserts {
    pub(crate) rows: RecordBatch,
    pub(crate) upserts: Vec<Upsert>,
}

/// What a keyed reader remembers: for UPSERT, the primary key each Kafka
/// message key last set.
pub(crate) struct KeyedState {
    schema: SchemaRef,
    key: Vec<usize>,
    keys_converter: RowConverter,
    by_message_key: HashMap<Vec<u8>, OwnedRow>,
    /// Changes to `by_message_key` not taken yet, in order.
    message_key_changes: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl KeyedState {
    /// State of a table with `schema` whose primary key is `key`.
    pub(crate) fn new(schema: SchemaRef, key: Vec<usize>) -> Result<Self> {
        let fields: Vec<SortField> = key
            .iter()
            .map(|i| SortField::new(schema.field(*i).data_type().clone()))
            .collect();
        Ok(Self {
            keys_converter: RowConverter::new(fields)?,
            schema,
            key,
            by_message_key: HashMap::new(),
            message_key_changes: Vec::new(),
        })
    }

    /// Take up what a checkpoint stored: for UPSERT, the primary key
    /// (encoded as [`KeyedState::take_message_keys`] gives it) each
    /// message key last set.
    pub(crate) fn restore(&mut self, message_keys: Vec<(Vec<u8>, Vec<u8>)>) {
        let parser = self.keys_converter.parser();
        for (message_key, key) in message_keys {
            self.by_message_key
                .insert(message_key, parser.parse(&key).owned());
        }
    }

    /// The changes to which primary key each message key points at since
    /// the last call, in order (`None`: the message key points nowhere).
    pub(crate) fn take_message_keys(&mut self) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        std::mem::take(&mut self.message_key_changes)
    }

    /// The upserts `actions` make, in order. `new_rows` are the rows `Set`
    /// refers to, `old_rows` those `DeleteRow` refers to, both in the
    /// table's schema.
    pub(crate) fn apply(
        &mut self,
        new_rows: &RecordBatch,
        old_rows: Option<&RecordBatch>,
        actions: &[Action],
    ) -> Result<Upserts> {
        let new_keys = self.keys_of(new_rows)?;
        // Each upsert's row as (0: new rows, 1: old rows, 2: keys whose
        // row goes, index there).
        let mut picks: Vec<(usize, usize)> = Vec::with_capacity(actions.len());
        let mut upserts: Vec<Upsert> = Vec::with_capacity(actions.len());
        let mut deleted: Vec<OwnedRow> = Vec::new();
        for action in actions {
            match action {
                Action::Set { row, message_key } => {
                    if let Some(message_key) = message_key {
                        let key = new_keys.row(*row).owned();
                        self.message_key_changes
                            .push((message_key.clone(), Some(key.row().as_ref().to_vec())));
                        let previous = self.by_message_key.insert(message_key.clone(), key.clone());
                        if let Some(previous) = previous.filter(|p| *p != key) {
                            picks.push((2, deleted.len()));
                            upserts.push(Upsert::Delete);
                            deleted.push(previous);
                        }
                    }
                    picks.push((0, *row));
                    upserts.push(Upsert::Set);
                }
                Action::DeleteRow { row } => {
                    if old_rows.is_some() {
                        picks.push((1, *row));
                        upserts.push(Upsert::Delete);
                    }
                }
                Action::DeleteMessageKey { message_key } => {
                    self.message_key_changes.push((message_key.clone(), None));
                    if let Some(key) = self.by_message_key.remove(message_key) {
                        picks.push((2, deleted.len()));
                        upserts.push(Upsert::Delete);
                        deleted.push(key);
                    }
                }
            }
        }
        let deleted = self.rows_of_keys(&deleted)?;
        let old_rows = old_rows.unwrap_or(new_rows);
        let columns = (0..self.schema.fields().len())
            .map(|i| {
                let parts = [
                    new_rows.column(i).as_ref(),
                    old_rows.column(i).as_ref(),
                    deleted.column(i).as_ref(),
                ];
                interleave(&parts, &picks)
            })
            .collect::<std::result::Result<Vec<ArrayRef>, _>>()?;
        let options = RecordBatchOptions::new().with_row_count(Some(picks.len()));
        Ok(Upserts {
            rows: RecordBatch::try_new_with_options(self.schema.clone(), columns, &options)?,
            upserts,
        })
    }

    /// Rows in the table's schema with primary keys `keys` and every other
    /// column null.
    fn rows_of_keys(&self, keys: &[OwnedRow]) -> Result<RecordBatch> {
        // Keys restored from a checkpoint are not checked by Arrow's row
        // parser, which panics on bytes it cannot read.
        let key_columns = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.keys_converter
                .convert_rows(keys.iter().map(|k| k.row()))
        }))
        .map_err(|_| {
            crate::Error::Source(
                "a stored message key's primary key does not decode (written by another \
                 version of Eddy, or damaged)"
                    .into(),
            )
        })??;
        let mut columns: Vec<ArrayRef> = self
            .schema
            .fields()
            .iter()
            .map(|f| new_null_array(f.data_type(), keys.len()))
            .collect();
        for (column, index) in key_columns.into_iter().zip(&self.key) {
            columns[*index] = column;
        }
        let options = RecordBatchOptions::new().with_row_count(Some(keys.len()));
        Ok(RecordBatch::try_new_with_options(
            self.schema.clone(),
            columns,
            &options,
        )?)
    }

    fn keys_of(&self, rows: &RecordBatch) -> Result<arrow::row::Rows> {
        let columns: Vec<ArrayRef> = self.key.iter().map(|i| rows.column(*i).clone()).collect();
        Ok(self.keys_converter.convert_columns(&columns)?)
    }
}

/// True if any primary key column of `rows` is null at `row`: such a row
/// has no key and cannot be set.
pub(crate) fn key_is_null(rows: &RecordBatch, key: &[usize], row: usize) -> bool {
    key.iter().any(|i| rows.column(*i).is_null(row))
}

/// The schema Debezium events are decoded with: `before`, `after` and `op`
/// at the top, or inside `payload` (Debezium's JSON converter with
/// schemas enabled). Other fields are ignored.
pub(crate) fn debezium_schema(values: &SchemaRef) -> SchemaRef {
    let row = DataType::Struct(values.fields().clone());
    let parts = vec![
        Field::new("before", row.clone(), true),
        Field::new("after", row, true),
        Field::new("op", DataType::Utf8, true),
    ];
    let mut fields = parts.clone();
    fields.push(Field::new("payload", DataType::Struct(parts.into()), true));
    Arc::new(Schema::new(fields))
}

/// `before` and `after` as batches of the declared columns (a missing
/// one all null), and `op`, from decoded Debezium events.
pub(crate) fn debezium_parts(
    events: &RecordBatch,
    values: &SchemaRef,
) -> Result<(RecordBatch, RecordBatch, StringArray)> {
    let payload = events.column(3).as_struct();
    let wrapped = arrow::compute::is_not_null(payload)?;
    let part = |index: usize| -> Result<ArrayRef> {
        Ok(arrow::compute::kernels::zip::zip(
            &wrapped,
            payload.column(index),
            events.column(index),
        )?)
    };
    let rows = |array: ArrayRef| -> Result<RecordBatch> {
        let array = array.as_struct();
        // A missing `before` (or `after`) is a row of nulls.
        let columns: Vec<ArrayRef> = array
            .columns()
            .iter()
            .map(|column| match array.nulls() {
                Some(nulls) if nulls.null_count() > 0 => {
                    let mask = BooleanArray::new(nulls.inner().clone(), None);
                    Ok(arrow::compute::nullif(
                        column,
                        &arrow::compute::not(&mask)?,
                    )?)
                }
                _ => Ok(column.clone()),
            })
            .collect::<Result<_>>()?;
        let options = RecordBatchOptions::new().with_row_count(Some(array.len()));
        Ok(RecordBatch::try_new_with_options(
            values.clone(),
            columns,
            &options,
        )?)
    };
    let before = rows(part(0)?)?;
    let after = rows(part(1)?)?;
    let ops = part(2)?.as_string::<i32>().clone();
    Ok((before, after, ops))
}

#[cfg(test)]
mod tests {

    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("v", DataType::Utf8, true),
        ]))
    }

    fn batch(rows: &[(i64, &str)]) -> RecordBatch {
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
            ],
        )
        .expect("batch")
    }

    /// Each upsert as "set <id> <v>" or "delete <id>".
    fn upserts(upserts: &Upserts) -> Vec<String> {
        let ids = upserts.rows.column(0).as_any().downcast_ref::<Int64Array>();
        let values = upserts
            .rows
            .column(1)
            .as_any()
            .downcast_ref::<StringArray>();
        let (Some(ids), Some(values)) = (ids, values) else {
            panic!("columns");
        };
        (0..upserts.rows.num_rows())
            .map(|i| match upserts.upserts[i] {
                Upsert::Set => format!("set {} {}", ids.value(i), values.value(i)),
                Upsert::Delete => format!("delete {}", ids.value(i)),
            })
            .collect()
    }

    #[test]
    fn sets_and_deletes_keep_their_order() -> Result<()> {
        let mut state = KeyedState::new(schema(), vec![0])?;
        let set = |row| Action::Set {
            row,
            message_key: None,
        };
        let first = state.apply(
            &batch(&[(1, "a"), (2, "b"), (1, "c")]),
            Some(&batch(&[(7, "x"), (2, "ignored"), (7, "x")])),
            &[set(0), set(1), Action::DeleteRow { row: 1 }, set(2)],
        )?;
        assert_eq!(
            upserts(&first),
            ["set 1 a", "set 2 b", "delete 2", "set 1 c"]
        );
        // Without old rows a DeleteRow has nothing to delete.
        let none = state.apply(&batch(&[]), None, &[Action::DeleteRow { row: 0 }])?;
        assert!(upserts(&none).is_empty());
        Ok(())
    }

    #[test]
    fn upsert_tombstones_delete_what_their_key_set() -> Result<()> {
        let mut state = KeyedState::new(schema(), vec![0])?;
        let key = |k: &str| Some(k.as_bytes().to_vec());
        state.apply(
            &batch(&[(1, "a"), (2, "b")]),
            None,
            &[
                Action::Set {
                    row: 0,
                    message_key: key("k1"),
                },
                Action::Set {
                    row: 1,
                    message_key: key("k2"),
                },
            ],
        )?;
        // k1 now sets primary key 3: the row of key 1 goes.
        let moved = state.apply(
            &batch(&[(3, "c")]),
            None,
            &[Action::Set {
                row: 0,
                message_key: key("k1"),
            }],
        )?;
        assert_eq!(upserts(&moved), ["delete 1", "set 3 c"]);
        // What a checkpoint stores is enough to go on: a restored state
        // deletes what k2 set.
        let mut restored = KeyedState::new(schema(), vec![0])?;
        let stored: Vec<(Vec<u8>, Vec<u8>)> = state
            .take_message_keys()
            .into_iter()
            .filter_map(|(message_key, key)| Some((message_key, key?)))
            .collect();
        restored.restore(stored);
        let tombstone = restored.apply(
            &batch(&[]),
            None,
            &[
                Action::DeleteMessageKey {
                    message_key: b"k2".to_vec(),
                },
                Action::DeleteMessageKey {
                    message_key: b"unknown".to_vec(),
                },
            ],
        )?;
        assert_eq!(upserts(&tombstone), ["delete 2"]);
        Ok(())
    }

    #[test]
    fn a_damaged_stored_message_key_fails_the_tombstone_without_a_panic() -> Result<()> {
        let mut state = KeyedState::new(schema(), vec![0])?;
        state.restore(vec![(b"k1".to_vec(), vec![1, 2])]);
        let tombstone = state.apply(
            &batch(&[]),
            None,
            &[Action::DeleteMessageKey {
                message_key: b"k1".to_vec(),
            }],
        );
        assert!(tombstone.is_err());
        Ok(())
    }
}
