//! Keyed envelopes of a connector table: how `FORMAT UPSERT`, `FORMAT
//! DEBEZIUM` and `FORMAT PLAIN` with a primary key turn messages into
//! inserts and retractions.
//!
//! A reader keeps the current row of every primary key it has seen. A
//! message that sets a key's row retracts the row the key had and inserts
//! the new one; a message that deletes a key retracts its row. So the
//! table never holds two rows with one key, and a view over it sees an
//! update as a retraction and an insertion, whatever the topic says about
//! the old row: Debezium's `before` only locates the key.
//!
//! `FORMAT UPSERT` keys messages by their Kafka key, as log compaction
//! does: a tombstone (a message without a value) deletes the row its key
//! last set, and a value that moves a key to another primary key retracts
//! the old one.
//!
//! Debezium events are decoded as a whole (`before`, `after`, `op`, bare or
//! in `payload`) and split here into rows of old and new values.

use std::collections::HashMap;

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, RecordBatch, RecordBatchOptions, StringArray,
    UInt32Array,
};
use arrow::compute::{concat_batches, take};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::row::{OwnedRow, RowConverter, SortField};

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

/// Changes for a connector table: rows and their weights.
#[derive(Debug)]
pub(crate) struct KeyedChanges {
    pub(crate) rows: RecordBatch,
    pub(crate) weights: Vec<i64>,
}

/// The current row of every primary key a reader has seen.
pub(crate) struct KeyedState {
    schema: SchemaRef,
    key: Vec<usize>,
    rows_converter: RowConverter,
    keys_converter: RowConverter,
    rows: HashMap<OwnedRow, OwnedRow>,
    by_message_key: HashMap<Vec<u8>, OwnedRow>,
    /// Changes to `by_message_key` not taken yet, in order.
    message_key_changes: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl KeyedState {
    /// State of a table with `schema` whose primary key is `key`.
    pub(crate) fn new(schema: SchemaRef, key: Vec<usize>) -> Result<Self> {
        let fields = |columns: &mut dyn Iterator<Item = usize>| -> Vec<SortField> {
            columns
                .map(|i| SortField::new(schema.field(i).data_type().clone()))
                .collect()
        };
        let rows_converter = RowConverter::new(fields(&mut (0..schema.fields().len())))?;
        let keys_converter = RowConverter::new(fields(&mut key.iter().copied()))?;
        Ok(Self {
            schema,
            key,
            rows_converter,
            keys_converter,
            rows: HashMap::new(),
            by_message_key: HashMap::new(),
            message_key_changes: Vec::new(),
        })
    }

    /// Take up the state a checkpoint stored: the table's rows and, for
    /// UPSERT, the primary key (encoded as [`KeyedState::take_message_keys`]
    /// gives it) each message key last set.
    pub(crate) fn restore(
        &mut self,
        rows: &[RecordBatch],
        message_keys: Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<()> {
        for batch in rows {
            let keys = self.keys_of(batch)?;
            let encoded = self.rows_converter.convert_columns(batch.columns())?;
            for row in 0..batch.num_rows() {
                self.rows
                    .insert(keys.row(row).owned(), encoded.row(row).owned());
            }
        }
        let parser = self.keys_converter.parser();
        for (message_key, key) in message_keys {
            self.by_message_key
                .insert(message_key, parser.parse(&key).owned());
        }
        Ok(())
    }

    /// The changes to which primary key each message key points at since
    /// the last call, in order (`None`: the message key points nowhere).
    pub(crate) fn take_message_keys(&mut self) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        std::mem::take(&mut self.message_key_changes)
    }

    /// Apply `actions` in order. `new_rows` are the rows `Set` refers to,
    /// `old_rows` those `DeleteRow` refers to, both in the table's schema.
    pub(crate) fn apply(
        &mut self,
        new_rows: &RecordBatch,
        old_rows: Option<&RecordBatch>,
        actions: &[Action],
    ) -> Result<KeyedChanges> {
        let new_keys = self.keys_of(new_rows)?;
        let new_encoded = self.rows_converter.convert_columns(new_rows.columns())?;
        let old_keys = match old_rows {
            Some(old) => Some(self.keys_of(old)?),
            None => None,
        };
        let mut retracted: Vec<OwnedRow> = Vec::new();
        let mut inserted: Vec<u32> = Vec::new();
        for action in actions {
            match action {
                Action::Set { row, message_key } => {
                    let key = new_keys.row(*row).owned();
                    if let Some(message_key) = message_key {
                        self.message_key_changes
                            .push((message_key.clone(), Some(key.row().as_ref().to_vec())));
                        let previous = self.by_message_key.insert(message_key.clone(), key.clone());
                        if let Some(previous) = previous.filter(|p| *p != key) {
                            retracted.extend(self.rows.remove(&previous));
                        }
                    }
                    let value = new_encoded.row(*row).owned();
                    retracted.extend(self.rows.insert(key, value));
                    inserted.push(u32::try_from(*row).unwrap_or(u32::MAX));
                }
                Action::DeleteRow { row } => {
                    if let Some(old_keys) = &old_keys {
                        let key = old_keys.row(*row).owned();
                        retracted.extend(self.rows.remove(&key));
                    }
                }
                Action::DeleteMessageKey { message_key } => {
                    self.message_key_changes.push((message_key.clone(), None));
                    if let Some(key) = self.by_message_key.remove(message_key) {
                        retracted.extend(self.rows.remove(&key));
                    }
                }
            }
        }
        let old: Vec<ArrayRef> = self
            .rows_converter
            .convert_rows(retracted.iter().map(|r| r.row()))?;
        let options = RecordBatchOptions::new().with_row_count(Some(retracted.len()));
        let old = RecordBatch::try_new_with_options(self.schema.clone(), old, &options)?;
        let indices = UInt32Array::from(inserted);
        let new: Vec<ArrayRef> = new_rows
            .columns()
            .iter()
            .map(|c| take(c.as_ref(), &indices, None))
            .collect::<std::result::Result<_, _>>()?;
        let options = RecordBatchOptions::new().with_row_count(Some(indices.len()));
        let new = RecordBatch::try_new_with_options(self.schema.clone(), new, &options)?;
        let mut weights = vec![-1i64; old.num_rows()];
        weights.resize(old.num_rows() + new.num_rows(), 1);
        Ok(KeyedChanges {
            rows: concat_batches(&self.schema, [&old, &new])?,
            weights,
        })
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

    fn changes(changes: &KeyedChanges) -> Vec<String> {
        let ids = changes.rows.column(0).as_any().downcast_ref::<Int64Array>();
        let values = changes
            .rows
            .column(1)
            .as_any()
            .downcast_ref::<StringArray>();
        let (Some(ids), Some(values)) = (ids, values) else {
            panic!("columns");
        };
        (0..changes.rows.num_rows())
            .map(|i| {
                format!(
                    "{:+} {} {}",
                    changes.weights[i],
                    ids.value(i),
                    values.value(i)
                )
            })
            .collect()
    }

    #[test]
    fn sets_retract_the_previous_row_of_their_key() -> Result<()> {
        let mut state = KeyedState::new(schema(), vec![0])?;
        let set = |row| Action::Set {
            row,
            message_key: None,
        };
        let first = state.apply(
            &batch(&[(1, "a"), (2, "b"), (1, "c")]),
            None,
            &[set(0), set(1), set(2)],
        )?;
        assert_eq!(changes(&first), ["-1 1 a", "+1 1 a", "+1 2 b", "+1 1 c"]);
        let deleted = state.apply(
            &batch(&[]),
            Some(&batch(&[(2, "ignored")])),
            &[Action::DeleteRow { row: 0 }],
        )?;
        assert_eq!(changes(&deleted), ["-1 2 b"]);
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
        assert_eq!(changes(&moved), ["-1 1 a", "+1 3 c"]);
        let tombstone = state.apply(
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
        assert_eq!(changes(&tombstone), ["-1 2 b"]);
        Ok(())
    }
}
