//! How a sink turns changes into messages: `FORMAT PLAIN | UPSERT |
//! DEBEZIUM ENCODE JSON | AVRO`.
//!
//! * `PLAIN`: one message per inserted row, the row as a JSON object. The
//!   input must be append-only (deletes are refused when the sink is
//!   created), unless `force_append_only = 'true'` says to drop them.
//! * `UPSERT`: keyed by `primary_key`; a row that is new or changed is a
//!   message with the key and the row, a deleted row a tombstone (the key
//!   and no value), so a compacted topic holds the view.
//! * `DEBEZIUM`: keyed the same way; each change is a Debezium change
//!   event `{"before": ..., "after": ..., "op": "c" | "u" | "d", "ts_ms": ...}`
//!   (the payload of Debezium's JSON converter with schemas disabled), and
//!   a delete is followed by a tombstone, as Debezium does.
//!
//! The key is a JSON object of the key columns. With `ENCODE AVRO` rows,
//! keys and change events are Avro records in the Confluent wire format
//! instead ([`crate::avro::SinkSchemas`]). Keyed formats consolidate
//! what they are given per key: a row updated twice in the epochs encoded
//! together is one message with its latest value, and a row inserted and
//! deleted again is none. A key must identify one row of the input; two
//! rows with one key fail the sink with an error saying so.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, RecordBatch, StructArray};
use arrow::datatypes::{Field, FieldRef, SchemaRef};
use arrow_json::writer::{make_encoder, EncoderOptions};

use crate::avro::SinkSchemas;
use crate::sink::SinkChanges;
use crate::spec::Envelope;
use crate::{Error, Result};

/// One message to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Message {
    pub(crate) key: Option<Vec<u8>>,
    /// `None`: a tombstone.
    pub(crate) value: Option<Vec<u8>>,
}

/// How rows, keys and change events become bytes.
#[derive(Debug, Clone)]
pub(crate) enum Codec {
    Json,
    Avro(Arc<SinkSchemas>),
}

impl Codec {
    /// Each row of `rows` (or of its `columns`), encoded.
    fn rows(&self, rows: &RecordBatch, columns: Option<&[usize]>) -> Result<Vec<Vec<u8>>> {
        match self {
            Codec::Json => json_rows(rows, columns),
            Codec::Avro(schemas) => schemas.rows(rows, columns),
        }
    }

    fn value(&self, row: &[u8]) -> Vec<u8> {
        match self {
            Codec::Json => row.to_vec(),
            Codec::Avro(schemas) => schemas.value(row),
        }
    }

    fn key(&self, key: &[u8]) -> Vec<u8> {
        match self {
            Codec::Json => key.to_vec(),
            Codec::Avro(schemas) => schemas.key(key),
        }
    }

    fn debezium(&self, before: &Option<Vec<u8>>, after: &Option<Vec<u8>>, op: &str) -> Vec<u8> {
        let ts_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        match self {
            Codec::Json => debezium_event(before, after, op, ts_ms),
            Codec::Avro(schemas) => {
                schemas.debezium(before.as_deref(), after.as_deref(), op, ts_ms)
            }
        }
    }
}

/// Encodes changes into messages of one envelope.
#[derive(Debug, Clone)]
pub(crate) struct MessageEncoder {
    codec: Codec,
    envelope: Envelope,
    /// Columns of the key, in key order (may be empty for `PLAIN`).
    key: Vec<usize>,
    force_append_only: bool,
}

/// A key's rows before and after the epochs being encoded.
struct KeyState {
    /// The row before (`None`: the key had no row).
    before: Option<Vec<u8>>,
    /// The row after.
    after: Option<Vec<u8>>,
}

impl MessageEncoder {
    pub(crate) fn new(
        codec: Codec,
        envelope: Envelope,
        key: Vec<usize>,
        force_append_only: bool,
    ) -> Self {
        Self {
            codec,
            envelope,
            key,
            force_append_only,
        }
    }

    /// Messages for `epochs` (in commit order).
    pub(crate) fn encode(&self, epochs: &[SinkChanges]) -> Result<Vec<Message>> {
        match self.envelope {
            Envelope::Plain => self.plain(epochs),
            Envelope::Upsert | Envelope::Debezium => self.keyed(epochs),
        }
    }

    fn plain(&self, epochs: &[SinkChanges]) -> Result<Vec<Message>> {
        let mut messages = Vec::new();
        for epoch in epochs {
            let values = self.codec.rows(&epoch.rows, None)?;
            let keys = if self.key.is_empty() {
                None
            } else {
                Some(self.codec.rows(&epoch.rows, Some(&self.key))?)
            };
            for (row, weight) in epoch.weights.iter().enumerate() {
                if *weight < 0 {
                    if self.force_append_only {
                        continue;
                    }
                    return Err(Error::Sink(
                        "a FORMAT PLAIN sink received a delete; use FORMAT UPSERT or DEBEZIUM, or force_append_only = 'true' to drop deletes".into(),
                    ));
                }
                let key = keys.as_ref().map(|k| self.codec.key(&k[row]));
                let value = self.codec.value(&values[row]);
                for _ in 0..*weight {
                    messages.push(Message {
                        key: key.clone(),
                        value: Some(value.clone()),
                    });
                }
            }
        }
        Ok(messages)
    }

    fn keyed(&self, epochs: &[SinkChanges]) -> Result<Vec<Message>> {
        let mut states: HashMap<Vec<u8>, KeyState> = HashMap::new();
        let mut order: Vec<Vec<u8>> = Vec::new();
        for epoch in epochs {
            let values = self.codec.rows(&epoch.rows, None)?;
            let keys = self.codec.rows(&epoch.rows, Some(&self.key))?;
            // Per key: the row deleted and the row inserted in this epoch.
            let mut changed: HashMap<&[u8], (Option<usize>, Option<usize>)> = HashMap::new();
            let mut epoch_order: Vec<&[u8]> = Vec::new();
            for (row, weight) in epoch.weights.iter().enumerate() {
                let key = keys[row].as_slice();
                let slot = changed.entry(key).or_insert_with(|| {
                    epoch_order.push(key);
                    (None, None)
                });
                let taken = if *weight < 0 {
                    &mut slot.0
                } else {
                    &mut slot.1
                };
                if taken.is_some() || weight.abs() > 1 {
                    return Err(not_unique(key));
                }
                *taken = Some(row);
            }
            for key in epoch_order {
                let (deleted, inserted) = changed[key];
                let deleted = deleted.map(|row| values[row].clone());
                let inserted = inserted.map(|row| values[row].clone());
                match states.get_mut(key) {
                    Some(state) => {
                        if deleted.is_none() && state.after.is_some() {
                            return Err(not_unique(key));
                        }
                        state.after = inserted;
                    }
                    None => {
                        order.push(key.to_vec());
                        states.insert(
                            key.to_vec(),
                            KeyState {
                                before: deleted,
                                after: inserted,
                            },
                        );
                    }
                }
            }
        }
        let mut messages = Vec::new();
        for key in order {
            let Some(state) = states.remove(&key) else {
                continue;
            };
            if state.before == state.after {
                continue;
            }
            let key = self.codec.key(&key);
            match self.envelope {
                Envelope::Upsert => messages.push(Message {
                    key: Some(key),
                    value: state.after.map(|row| self.codec.value(&row)),
                }),
                _ => {
                    let op = match (&state.before, &state.after) {
                        (None, _) => "c",
                        (Some(_), Some(_)) => "u",
                        (Some(_), None) => "d",
                    };
                    let value = self.codec.debezium(&state.before, &state.after, op);
                    let deleted = state.after.is_none();
                    messages.push(Message {
                        key: Some(key.clone()),
                        value: Some(value),
                    });
                    if deleted {
                        messages.push(Message {
                            key: Some(key),
                            value: None,
                        });
                    }
                }
            }
        }
        Ok(messages)
    }
}

fn not_unique(key: &[u8]) -> Error {
    Error::Sink(format!(
        "the sink's primary_key does not identify one row: key {} has more than one",
        String::from_utf8_lossy(key)
    ))
}

fn debezium_event(
    before: &Option<Vec<u8>>,
    after: &Option<Vec<u8>>,
    op: &str,
    ts_ms: i64,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + before.as_ref().map_or(4, Vec::len) * 2);
    out.extend_from_slice(b"{\"before\":");
    out.extend_from_slice(before.as_deref().unwrap_or(b"null"));
    out.extend_from_slice(b",\"after\":");
    out.extend_from_slice(after.as_deref().unwrap_or(b"null"));
    out.extend_from_slice(format!(",\"op\":\"{op}\",\"ts_ms\":{ts_ms}}}").as_bytes());
    out
}

/// Each row of `rows` (or of its `columns`) as a JSON object, nulls
/// written out.
pub(crate) fn json_rows(rows: &RecordBatch, columns: Option<&[usize]>) -> Result<Vec<Vec<u8>>> {
    let rows = match columns {
        Some(columns) => rows.project(columns)?,
        None => rows.clone(),
    };
    let array = StructArray::from(rows.clone());
    let field: FieldRef = Arc::new(Field::new_struct("", rows.schema().fields().clone(), false));
    let options = EncoderOptions::default().with_explicit_nulls(true);
    let mut encoder = make_encoder(&field, &array, &options)?;
    let mut out = Vec::with_capacity(array.len());
    for row in 0..array.len() {
        let mut buffer = Vec::with_capacity(64);
        encoder.encode(row, &mut buffer);
        out.push(buffer);
    }
    Ok(out)
}

/// The key columns named by `primary_key = 'a, b'`, checked against the
/// input's schema.
pub(crate) fn key_columns(schema: &SchemaRef, primary_key: &str) -> Result<Vec<usize>> {
    primary_key
        .split(',')
        .map(|name| {
            let name = name.trim();
            schema
                .fields()
                .iter()
                .position(|f| f.name() == name)
                .ok_or_else(|| Error::UnknownColumn {
                    column: name.to_string(),
                    key: "primary_key".to_string(),
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Schema};

    use super::*;

    fn changes(rows: &[(i64, Option<&str>, i64)]) -> SinkChanges {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
        ]));
        let ids = Int64Array::from_iter_values(rows.iter().map(|r| r.0));
        let names = StringArray::from_iter(rows.iter().map(|r| r.1));
        SinkChanges {
            rows: RecordBatch::try_new(schema, vec![Arc::new(ids), Arc::new(names)])
                .expect("batch"),
            weights: rows.iter().map(|r| r.2).collect(),
            epoch: 0,
        }
    }

    fn text(messages: &[Message]) -> Vec<(String, String)> {
        let show = |b: &Option<Vec<u8>>| {
            b.as_ref()
                .map_or("<none>".to_string(), |b| String::from_utf8_lossy(b).into())
        };
        messages
            .iter()
            .map(|m| (show(&m.key), show(&m.value)))
            .collect()
    }

    #[test]
    fn plain_writes_inserts_and_refuses_deletes() -> Result<()> {
        let encoder = MessageEncoder::new(Codec::Json, Envelope::Plain, vec![], false);
        let messages = encoder.encode(&[changes(&[(1, Some("a"), 2), (2, None, 1)])])?;
        assert_eq!(
            text(&messages),
            [
                ("<none>".into(), r#"{"id":1,"name":"a"}"#.into()),
                ("<none>".into(), r#"{"id":1,"name":"a"}"#.into()),
                ("<none>".into(), r#"{"id":2,"name":null}"#.into()),
            ]
        );
        assert!(encoder.encode(&[changes(&[(1, None, -1)])]).is_err());
        let forced = MessageEncoder::new(Codec::Json, Envelope::Plain, vec![0], true);
        let messages = forced.encode(&[changes(&[(1, None, -1), (3, Some("c"), 1)])])?;
        assert_eq!(
            text(&messages),
            [(r#"{"id":3}"#.into(), r#"{"id":3,"name":"c"}"#.into())]
        );
        Ok(())
    }

    #[test]
    fn upsert_consolidates_per_key() -> Result<()> {
        let encoder = MessageEncoder::new(Codec::Json, Envelope::Upsert, vec![0], false);
        let messages = encoder.encode(&[
            changes(&[(1, Some("a"), 1), (2, Some("b"), 1), (9, Some("z"), -1)]),
            changes(&[(1, Some("a"), -1), (1, Some("a2"), 1)]),
            changes(&[(2, Some("b"), -1)]),
        ])?;
        assert_eq!(
            text(&messages),
            [
                (r#"{"id":1}"#.into(), r#"{"id":1,"name":"a2"}"#.into()),
                (r#"{"id":9}"#.into(), "<none>".into()),
            ]
        );
        Ok(())
    }

    #[test]
    fn debezium_events_pair_updates() -> Result<()> {
        let encoder = MessageEncoder::new(Codec::Json, Envelope::Debezium, vec![0], false);
        let messages = encoder.encode(&[changes(&[
            (1, Some("a"), -1),
            (1, Some("b"), 1),
            (2, Some("c"), 1),
            (3, Some("d"), -1),
        ])])?;
        let text = text(&messages);
        assert_eq!(text.len(), 4);
        assert!(text[0].1.starts_with(
            r#"{"before":{"id":1,"name":"a"},"after":{"id":1,"name":"b"},"op":"u","ts_ms":"#
        ));
        assert!(text[1]
            .1
            .starts_with(r#"{"before":null,"after":{"id":2,"name":"c"},"op":"c""#));
        assert!(text[2]
            .1
            .starts_with(r#"{"before":{"id":3,"name":"d"},"after":null,"op":"d""#));
        assert_eq!(text[3], (r#"{"id":3}"#.into(), "<none>".into()));
        Ok(())
    }

    #[test]
    fn duplicate_keys_fail() {
        let encoder = MessageEncoder::new(Codec::Json, Envelope::Upsert, vec![0], false);
        assert!(encoder
            .encode(&[changes(&[(1, Some("a"), 1), (1, Some("b"), 1)])])
            .is_err());
        assert!(encoder
            .encode(&[changes(&[(1, Some("a"), 1)]), changes(&[(1, Some("b"), 1)])])
            .is_err());
    }
}
