//! Keyed envelopes of a connector table: how `FORMAT UPSERT`, `FORMAT
//! DEBEZIUM` and `FORMAT PLAIN` with a primary key turn messages into
//! [`Upsert`]s: rows that set or delete the row of their primary key.
//!
//! The reader holds nothing: the engine holds the table (in memory or on
//! disk, under the memory budget) and retracts the row a key had when an
//! upsert sets or deletes it. So the table never holds two rows with one
//! key, and a view over it sees an update as a retraction and an
//! insertion, whatever the topic says about the old row: Debezium's
//! `before` only locates the key.
//!
//! `FORMAT UPSERT` keys messages by their Kafka key, as log compaction
//! does: a tombstone (a message without a value) deletes the row its key
//! last set, and a value that moves a key to another primary key deletes
//! the old one. The upserts carry the message keys; the engine keeps which
//! primary key each last set (under the memory budget too).
//!
//! Debezium events are decoded as a whole (`before`, `after`, `op`, bare or
//! in `payload`) and split here into rows of old and new values.

use std::sync::Arc;

use arrow::array::{
    new_null_array, Array, ArrayRef, AsArray, BooleanArray, RecordBatch, RecordBatchOptions,
    StringArray,
};
use arrow::compute::interleave;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

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

/// Upserts for a connector table: rows in its schema, what each does, and
/// for UPSERT each row's Kafka message key.
#[derive(Debug)]
pub(crate) struct Upserts {
    pub(crate) rows: RecordBatch,
    pub(crate) upserts: Vec<Upsert>,
    pub(crate) message_keys: Vec<Option<Vec<u8>>>,
}

/// The upserts `actions` make, in order, for a table of `schema`.
/// `new_rows` are the rows `Set` refers to, `old_rows` those `DeleteRow`
/// refers to, both in the table's schema.
pub(crate) fn upserts(
    schema: &SchemaRef,
    new_rows: &RecordBatch,
    old_rows: Option<&RecordBatch>,
    actions: &[Action],
) -> Result<Upserts> {
    // Each upsert's row as (0: new rows, 1: old rows, 2: a row of nulls,
    // index there).
    let mut picks: Vec<(usize, usize)> = Vec::with_capacity(actions.len());
    let mut upserts: Vec<Upsert> = Vec::with_capacity(actions.len());
    let mut message_keys: Vec<Option<Vec<u8>>> = Vec::with_capacity(actions.len());
    for action in actions {
        match action {
            Action::Set { row, message_key } => {
                picks.push((0, *row));
                upserts.push(Upsert::Set);
                message_keys.push(message_key.clone());
            }
            Action::DeleteRow { row } => {
                if old_rows.is_some() {
                    picks.push((1, *row));
                    upserts.push(Upsert::Delete);
                    message_keys.push(None);
                }
            }
            Action::DeleteMessageKey { message_key } => {
                picks.push((2, 0));
                upserts.push(Upsert::Forget);
                message_keys.push(Some(message_key.clone()));
            }
        }
    }
    let old_rows = old_rows.unwrap_or(new_rows);
    let columns = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, field)| {
            let nulls = new_null_array(field.data_type(), 1);
            let parts = [
                new_rows.column(i).as_ref(),
                old_rows.column(i).as_ref(),
                nulls.as_ref(),
            ];
            interleave(&parts, &picks)
        })
        .collect::<std::result::Result<Vec<ArrayRef>, _>>()?;
    let options = RecordBatchOptions::new().with_row_count(Some(picks.len()));
    Ok(Upserts {
        rows: RecordBatch::try_new_with_options(schema.clone(), columns, &options)?,
        upserts,
        message_keys,
    })
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

    /// Each upsert as "set <id> <v>", "delete <id>" or "forget", with its
    /// message key if it has one.
    fn described(upserts: &Upserts) -> Vec<String> {
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
            .map(|i| {
                let what = match upserts.upserts[i] {
                    Upsert::Set => format!("set {} {}", ids.value(i), values.value(i)),
                    Upsert::Delete => format!("delete {}", ids.value(i)),
                    Upsert::Forget => {
                        assert!(ids.is_null(i) && values.is_null(i));
                        "forget".to_string()
                    }
                };
                match &upserts.message_keys[i] {
                    Some(key) => format!("{what} ({})", String::from_utf8_lossy(key)),
                    None => what,
                }
            })
            .collect()
    }

    #[test]
    fn actions_become_upserts_in_order() -> Result<()> {
        let set = |row, key: Option<&str>| Action::Set {
            row,
            message_key: key.map(|k| k.as_bytes().to_vec()),
        };
        let made = upserts(
            &schema(),
            &batch(&[(1, "a"), (2, "b"), (1, "c")]),
            Some(&batch(&[(7, "x"), (2, "ignored"), (7, "x")])),
            &[
                set(0, None),
                set(1, Some("k2")),
                Action::DeleteRow { row: 1 },
                Action::DeleteMessageKey {
                    message_key: b"k9".to_vec(),
                },
                set(2, None),
            ],
        )?;
        assert_eq!(
            described(&made),
            [
                "set 1 a",
                "set 2 b (k2)",
                "delete 2",
                "forget (k9)",
                "set 1 c"
            ]
        );
        // Without old rows a DeleteRow has nothing to delete.
        let none = upserts(
            &schema(),
            &batch(&[]),
            None,
            &[Action::DeleteRow { row: 0 }],
        )?;
        assert!(described(&none).is_empty());
        Ok(())
    }
}
