//! `ENCODE AVRO`: payloads in the Confluent wire format (a zero byte, the
//! writer schema's registry id as four big-endian bytes, then the Avro
//! binary datum), decoded by arrow-avro straight into Arrow columns.
//!
//! Writer schemas are fetched from the registry by the id each message
//! carries, once per id, before the batch holding it is decoded (a
//! registry that does not answer holds the reader back, shown as stalled;
//! an id the registry does not know makes the message bad). Decoded
//! columns are matched to the declared columns by name, so writers may
//! add fields (ignored) or drop nullable ones (NULL); values are cast to
//! the declared types, and a value that does not cast makes its message
//! bad.
//!
//! A source that declares no columns takes them from the latest schema of
//! subject `{topic}-value` when it is created ([`derived_schema`]).
//!
//! Sinks ([`SinkSchemas`]) derive an Avro record from their input's columns
//! (a nullable column is a union with `null`), register it under
//! `{topic}-value` (the key columns' record under `{topic}-key`; with
//! `FORMAT DEBEZIUM` the value is a change event record `Envelope` with
//! `before`, `after`, `op` and `ts_ms`) and write every message in the
//! Confluent wire format.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{new_null_array, Array, ArrayRef, RecordBatch, StructArray};
use arrow::compute::{cast_with_options, concat_batches, CastOptions};
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow_avro::reader::{Decoder, ReaderBuilder};
use arrow_avro::schema::{
    AvroSchema, Fingerprint, FingerprintAlgorithm, SchemaStore, SCHEMA_METADATA_KEY,
};
use arrow_avro::writer::format::AvroBinaryFormat;
use arrow_avro::writer::WriterBuilder;

use crate::json::{Decoded, MAX_ROWS};
use crate::registry::Registry;
use crate::{Error, Result};

/// The Confluent wire format's header: magic byte and schema id.
const HEADER: usize = 5;

/// The writer schema id a Confluent-framed payload names.
pub(crate) fn schema_id(payload: &[u8]) -> std::result::Result<u32, String> {
    match payload {
        [0, a, b, c, d, ..] => Ok(u32::from_be_bytes([*a, *b, *c, *d])),
        _ => Err("not in the Confluent wire format (a zero byte and a schema id first)".into()),
    }
}

/// Whether arrow-avro can decode data written with `schema`.
fn readable(id: u32, schema: &AvroSchema) -> std::result::Result<(), ArrowError> {
    let mut store = SchemaStore::new_with_type(FingerprintAlgorithm::Id);
    store.set(Fingerprint::Id(id), schema.clone())?;
    ReaderBuilder::new()
        .with_writer_schema_store(store)
        .build_decoder()
        .map(|_| ())
}

/// Decodes Confluent-framed Avro payloads into batches of one schema.
pub(crate) struct AvroDecoder {
    schema: SchemaRef,
    registry: Registry,
    /// Writer schemas by id.
    writers: HashMap<u32, AvroSchema>,
    /// Ids the registry does not know.
    missing: HashSet<u32>,
    /// Built for the writer schemas known; rebuilt when one is added or
    /// after a bad payload.
    decoder: Option<Decoder>,
}

impl AvroDecoder {
    pub(crate) fn new(schema: SchemaRef, registry: Registry) -> Self {
        Self {
            schema,
            registry,
            writers: HashMap::new(),
            missing: HashSet::new(),
            decoder: None,
        }
    }

    /// The schema payloads are decoded into.
    pub(crate) fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Ask the registry again for the ids it did not know.
    pub(crate) fn forget_missing(&mut self) {
        self.missing.clear();
    }

    /// Fetch the writer schemas `payloads` need that are not known yet.
    /// An error means the registry did not answer: try again later.
    pub(crate) async fn resolve(&mut self, payloads: &[Option<&[u8]>]) -> Result<()> {
        let mut wanted: Vec<u32> = payloads
            .iter()
            .flatten()
            .filter_map(|p| schema_id(p).ok())
            .filter(|id| !self.writers.contains_key(id) && !self.missing.contains(id))
            .collect();
        wanted.sort_unstable();
        wanted.dedup();
        for id in wanted {
            match self.registry.schema_by_id(id).await? {
                Some(found) if found.kind == "AVRO" => {
                    let schema = AvroSchema::new(found.schema);
                    match readable(id, &schema) {
                        Ok(()) => {
                            self.writers.insert(id, schema);
                            self.decoder = None;
                        }
                        // A schema arrow-avro cannot read: the messages
                        // that use it are bad.
                        Err(_) => {
                            self.missing.insert(id);
                        }
                    }
                }
                // Not there, or not an Avro schema.
                _ => {
                    self.missing.insert(id);
                }
            }
        }
        Ok(())
    }

    /// Decode `payloads` (at most 65536), after [`Self::resolve`].
    pub(crate) fn decode(&mut self, payloads: &[Option<&[u8]>]) -> Result<Decoded> {
        if payloads
            .iter()
            .all(|p| p.is_some_and(|p| self.check(p).is_ok()))
        {
            if let Ok(rows) = self.decode_all(payloads) {
                if rows.num_rows() == payloads.len() {
                    return Ok(Decoded {
                        rows: Some(rows),
                        outcomes: vec![Ok(()); payloads.len()],
                    });
                }
            }
            self.decoder = None;
        }
        let mut batches = Vec::new();
        let mut outcomes = Vec::with_capacity(payloads.len());
        for payload in payloads {
            let outcome = match payload.map(|p| (p, self.check(p))) {
                None => Err("message has no payload".to_string()),
                Some((_, Err(reason))) => Err(reason),
                Some((payload, Ok(()))) => match self.decode_all(&[Some(payload)]) {
                    Ok(rows) if rows.num_rows() == 1 => {
                        batches.push(rows);
                        Ok(())
                    }
                    Ok(_) => {
                        self.decoder = None;
                        Err("the Avro datum is truncated".to_string())
                    }
                    Err(error) => {
                        self.decoder = None;
                        Err(error)
                    }
                },
            };
            outcomes.push(outcome);
        }
        Decoded::new(&self.schema, &batches, outcomes)
    }

    /// Why `payload` cannot be decoded before trying, if it cannot.
    fn check(&self, payload: &[u8]) -> std::result::Result<(), String> {
        let id = schema_id(payload)?;
        if self.writers.contains_key(&id) {
            Ok(())
        } else {
            Err(format!(
                "schema id {id} is not in the schema registry (or is not an Avro schema Eddy reads)"
            ))
        }
    }

    fn decoder(&mut self) -> std::result::Result<&mut Decoder, String> {
        if self.decoder.is_none() {
            let mut store = SchemaStore::new_with_type(FingerprintAlgorithm::Id);
            for (id, schema) in &self.writers {
                store
                    .set(Fingerprint::Id(*id), schema.clone())
                    .map_err(|e| e.to_string())?;
            }
            let decoder = ReaderBuilder::new()
                .with_batch_size(MAX_ROWS)
                .with_writer_schema_store(store)
                .build_decoder()
                .map_err(|e| e.to_string())?;
            self.decoder = Some(decoder);
        }
        self.decoder
            .as_mut()
            .ok_or_else(|| "no Avro decoder".to_string())
    }

    /// Decode every payload into rows of the declared schema; an error if
    /// any is bad (the decoder is then unusable).
    fn decode_all(
        &mut self,
        payloads: &[Option<&[u8]>],
    ) -> std::result::Result<RecordBatch, String> {
        let target = self.schema.clone();
        let decoder = self.decoder()?;
        let mut batches = Vec::new();
        // Rows flushed into `batches` so far.
        let mut flushed = 0usize;
        for payload in payloads.iter().flatten() {
            let before = flushed + decoder.batch_size() - decoder.capacity();
            let mut rest: &[u8] = payload;
            while !rest.is_empty() {
                let read = decoder.decode(rest).map_err(|e| e.to_string())?;
                rest = &rest[read..];
                if rest.is_empty() {
                    break;
                }
                if decoder.batch_is_full() {
                    // A batch ends where the writer schema changes.
                    if let Some(batch) = decoder.flush().map_err(|e| e.to_string())? {
                        flushed += batch.num_rows();
                        batches.push(conform(&batch, &target)?);
                    }
                } else if read == 0 {
                    return Err("the Avro datum is truncated".into());
                }
            }
            let after = flushed + decoder.batch_size() - decoder.capacity();
            if after != before + 1 {
                return Err(if after <= before {
                    "the Avro datum is truncated".into()
                } else {
                    "more than one Avro datum in one message".into()
                });
            }
        }
        if let Some(batch) = decoder.flush().map_err(|e| e.to_string())? {
            batches.push(conform(&batch, &target)?);
        }
        concat_batches(&target, &batches).map_err(|e| e.to_string())
    }
}

/// `batch` with the columns of `target`: matched by name (exactly, else
/// ignoring case), missing ones NULL, values cast to the target types.
pub(crate) fn conform(
    batch: &RecordBatch,
    target: &SchemaRef,
) -> std::result::Result<RecordBatch, String> {
    let columns = conform_columns(
        batch.schema().fields(),
        batch.columns(),
        target.fields(),
        batch.num_rows(),
    )?;
    RecordBatch::try_new(target.clone(), columns).map_err(|e| e.to_string())
}

fn conform_columns(
    fields: &Fields,
    columns: &[ArrayRef],
    target: &Fields,
    rows: usize,
) -> std::result::Result<Vec<ArrayRef>, String> {
    target
        .iter()
        .map(|wanted| {
            let found = fields
                .iter()
                .position(|f| f.name() == wanted.name())
                .or_else(|| {
                    fields
                        .iter()
                        .position(|f| f.name().eq_ignore_ascii_case(wanted.name()))
                });
            let Some(index) = found else {
                if !wanted.is_nullable() {
                    return Err(format!("the record has no field \"{}\"", wanted.name()));
                }
                return Ok(new_null_array(wanted.data_type(), rows));
            };
            conform_array(&columns[index], wanted)
        })
        .collect()
}

fn conform_array(array: &ArrayRef, wanted: &Field) -> std::result::Result<ArrayRef, String> {
    if array.data_type() == wanted.data_type() {
        return Ok(array.clone());
    }
    if let (DataType::Struct(_), DataType::Struct(target)) = (array.data_type(), wanted.data_type())
    {
        let Some(structs) = array.as_any().downcast_ref::<StructArray>() else {
            return Err("a struct column is not a StructArray".into());
        };
        let children = conform_columns(structs.fields(), structs.columns(), target, array.len())?;
        let conformed = StructArray::try_new(target.clone(), children, structs.nulls().cloned())
            .map_err(|e| e.to_string())?;
        return Ok(Arc::new(conformed));
    }
    let options = CastOptions {
        safe: false,
        ..Default::default()
    };
    cast_with_options(array, wanted.data_type(), &options).map_err(|e| {
        format!(
            "field \"{}\" ({}) does not fit column type {}: {e}",
            wanted.name(),
            array.data_type(),
            wanted.data_type()
        )
    })
}

/// The columns of the latest schema of `subject`, for a source that
/// declares none: one nullable column per top-level field of the record.
pub(crate) async fn derived_schema(registry: &Registry, subject: &str) -> Result<SchemaRef> {
    let latest = registry.latest(subject).await?;
    let mut store = SchemaStore::new_with_type(FingerprintAlgorithm::Id);
    store.set(Fingerprint::Id(latest.id), AvroSchema::new(latest.schema))?;
    let decoder = ReaderBuilder::new()
        .with_writer_schema_store(store)
        .build_decoder()?;
    let fields: Vec<Field> = decoder
        .schema()
        .fields()
        .iter()
        .map(|field| {
            let data_type = match field.data_type() {
                // Avro enums: their symbols as text.
                DataType::Dictionary(_, value) if value.as_ref() == &DataType::Utf8 => {
                    DataType::Utf8
                }
                DataType::Struct(_) | DataType::List(_) | DataType::Map(_, _) | DataType::Union(_, _) | DataType::FixedSizeBinary(_) | DataType::Dictionary(_, _) => {
                    return Err(Error::UnsupportedFormat(format!(
                        "Avro field \"{}\" of type {} as a column (declare the columns, leaving it out)",
                        field.name(),
                        field.data_type()
                    )))
                }
                other => other.clone(),
            };
            Ok(Field::new(field.name(), data_type, true))
        })
        .collect::<Result<_>>()?;
    if fields.is_empty() {
        return Err(Error::UnsupportedFormat(format!(
            "the schema of subject \"{subject}\" (it is not a record with fields)"
        )));
    }
    Ok(Arc::new(Schema::new(fields)))
}

/// The Confluent header for schema `id`.
pub(crate) fn header(id: u32) -> [u8; HEADER] {
    let id = id.to_be_bytes();
    [0, id[0], id[1], id[2], id[3]]
}

/// What an `ENCODE AVRO` sink writes with: its schemas, registered.
#[derive(Debug, Clone)]
pub(crate) struct SinkSchemas {
    /// The row schema (Arrow, with its Avro JSON in the metadata).
    value: SchemaRef,
    /// The id of the message values' schema: the row's, or with `FORMAT
    /// DEBEZIUM` the change event's.
    value_id: u32,
    /// The key columns' schema and id, for keyed formats.
    key: Option<(SchemaRef, u32)>,
}

/// Derive the Avro schemas of a sink with input `schema` and register
/// them under `{topic}-value` (and `{topic}-key` for `key` columns).
pub(crate) async fn register_sink_schemas(
    registry: &Registry,
    topic: &str,
    schema: &SchemaRef,
    key: &[usize],
    debezium: bool,
) -> Result<SinkSchemas> {
    let (value, value_json) = named_schema(schema, "Value")?;
    let event_json;
    let registered = if debezium {
        let row: serde_json::Value = serde_json::from_str(&value_json)
            .map_err(|e| Error::Sink(format!("avro schema: {e}")))?;
        event_json = serde_json::json!({
            "type": "record",
            "name": "Envelope",
            "fields": [
                {"name": "before", "type": ["null", row], "default": null},
                {"name": "after", "type": ["null", "Value"], "default": null},
                {"name": "op", "type": "string"},
                {"name": "ts_ms", "type": "long"},
            ],
        })
        .to_string();
        &event_json
    } else {
        &value_json
    };
    let value_id = registry
        .register(&format!("{topic}-value"), registered)
        .await?;
    let key = if key.is_empty() {
        None
    } else {
        let key_schema = Arc::new(schema.project(key)?);
        let (key_schema, key_json) = named_schema(&key_schema, "Key")?;
        let key_id = registry
            .register(&format!("{topic}-key"), &key_json)
            .await?;
        Some((key_schema, key_id))
    };
    Ok(SinkSchemas {
        value,
        value_id,
        key,
    })
}

/// `schema` with its Avro schema (a record named `name`) in its metadata,
/// and that schema's JSON.
fn named_schema(schema: &SchemaRef, name: &str) -> Result<(SchemaRef, String)> {
    let plain = Schema::new(schema.fields().clone());
    let avro = AvroSchema::try_from(&plain)
        .map_err(|e| Error::UnsupportedFormat(format!("ENCODE AVRO for these columns ({e})")))?;
    let mut json: serde_json::Value = serde_json::from_str(&avro.json_string)
        .map_err(|e| Error::Sink(format!("avro schema: {e}")))?;
    if let Some(record) = json.as_object_mut() {
        record.insert("name".into(), serde_json::Value::String(name.into()));
        record.remove("namespace");
    }
    let json = json.to_string();
    let mut metadata = std::collections::HashMap::new();
    metadata.insert(SCHEMA_METADATA_KEY.to_string(), json.clone());
    Ok((
        Arc::new(Schema::new_with_metadata(plain.fields().clone(), metadata)),
        json,
    ))
}

impl SinkSchemas {
    /// The Avro binary datum of each row of `rows` (or of its `columns`),
    /// without the Confluent header.
    pub(crate) fn rows(
        &self,
        rows: &RecordBatch,
        columns: Option<&[usize]>,
    ) -> Result<Vec<Vec<u8>>> {
        let (schema, rows) = match columns {
            Some(columns) => {
                let Some((schema, _)) = &self.key else {
                    return Err(Error::Sink("an Avro sink without key columns".into()));
                };
                (schema, rows.project(columns)?)
            }
            None => (&self.value, rows.clone()),
        };
        let rows = RecordBatch::try_new(schema.clone(), rows.columns().to_vec())?;
        let mut encoder = WriterBuilder::new(schema.as_ref().clone())
            .build_encoder::<AvroBinaryFormat>()
            .map_err(|e| Error::Sink(format!("avro: {e}")))?;
        encoder
            .encode(&rows)
            .map_err(|e| Error::Sink(format!("avro: {e}")))?;
        Ok(encoder.flush().iter().map(|row| row.to_vec()).collect())
    }

    /// A message value: the header of the value schema, then `datum`.
    pub(crate) fn value(&self, datum: &[u8]) -> Vec<u8> {
        framed(self.value_id, datum)
    }

    /// A message key: the header of the key schema, then `datum`.
    pub(crate) fn key(&self, datum: &[u8]) -> Vec<u8> {
        framed(self.key.as_ref().map_or(0, |(_, id)| *id), datum)
    }

    /// A Debezium change event of the rows `before` and `after` (Avro
    /// data of the row schema).
    pub(crate) fn debezium(
        &self,
        before: Option<&[u8]>,
        after: Option<&[u8]>,
        op: &str,
        ts_ms: i64,
    ) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            HEADER + 16 + before.map_or(0, <[u8]>::len) + after.map_or(0, <[u8]>::len),
        );
        out.extend_from_slice(&header(self.value_id));
        for row in [before, after] {
            match row {
                None => write_long(&mut out, 0),
                Some(datum) => {
                    write_long(&mut out, 1);
                    out.extend_from_slice(datum);
                }
            }
        }
        write_long(&mut out, op.len() as i64);
        out.extend_from_slice(op.as_bytes());
        write_long(&mut out, ts_ms);
        out
    }
}

fn framed(id: u32, datum: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + datum.len());
    out.extend_from_slice(&header(id));
    out.extend_from_slice(datum);
    out
}

/// An Avro `long`: zig-zag, then base-128 varint.
fn write_long(out: &mut Vec<u8>, value: i64) {
    let mut n = ((value << 1) ^ (value >> 63)) as u64;
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap as Map;

    use arrow::array::{AsArray, Int64Array, StringArray};
    use arrow::datatypes::Int64Type;
    use arrow_avro::schema::FingerprintStrategy;
    use arrow_avro::writer::format::AvroSoeFormat;

    use super::*;

    const V1: &str = r#"{"type":"record","name":"Bid","fields":[{"name":"id","type":"long"},{"name":"name","type":["null","string"]}]}"#;
    const V2: &str = r#"{"type":"record","name":"Bid","fields":[{"name":"id","type":"long"},{"name":"extra","type":"int"}]}"#;

    fn encode(schema_json: &str, id: u32, batch: &RecordBatch) -> Vec<Vec<u8>> {
        let mut metadata = Map::new();
        metadata.insert(SCHEMA_METADATA_KEY.to_string(), schema_json.to_string());
        let schema = Schema::new_with_metadata(batch.schema().fields().clone(), metadata);
        let batch = RecordBatch::try_new(Arc::new(schema.clone()), batch.columns().to_vec())
            .expect("batch");
        let mut encoder = WriterBuilder::new(schema)
            .with_fingerprint_strategy(FingerprintStrategy::Id(id))
            .build_encoder::<AvroSoeFormat>()
            .expect("encoder");
        encoder.encode(&batch).expect("encode");
        encoder.flush().iter().map(|row| row.to_vec()).collect()
    }

    fn decoder() -> AvroDecoder {
        let target = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
        ]));
        let registry = Registry::new("http://127.0.0.1:1").expect("registry");
        let mut decoder = AvroDecoder::new(target, registry);
        decoder.writers.insert(1, AvroSchema::new(V1.into()));
        decoder.writers.insert(2, AvroSchema::new(V2.into()));
        decoder
    }

    #[test]
    fn messages_of_several_writer_schemas_decode_by_name() -> Result<()> {
        let v1 = RecordBatch::try_from_iter(vec![
            ("id", Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef),
            (
                "name",
                Arc::new(StringArray::from(vec![Some("a"), None])) as ArrayRef,
            ),
        ])?;
        let v2 = RecordBatch::try_from_iter(vec![
            ("id", Arc::new(Int64Array::from(vec![3])) as ArrayRef),
            (
                "extra",
                Arc::new(arrow::array::Int32Array::from(vec![7])) as ArrayRef,
            ),
        ])?;
        let mut payloads = encode(V1, 1, &v1);
        payloads.insert(1, encode(V2, 2, &v2).remove(0));
        let refs: Vec<Option<&[u8]>> = payloads.iter().map(|p| Some(p.as_slice())).collect();
        let mut decoder = decoder();
        let decoded = decoder.decode(&refs)?;
        assert!(decoded.outcomes.iter().all(|o| o.is_ok()));
        let rows = decoded.rows.expect("rows");
        assert_eq!(
            rows.column(0).as_primitive::<Int64Type>(),
            &Int64Array::from(vec![1, 3, 2])
        );
        assert_eq!(rows.column(1).as_string::<i32>().value(0), "a");
        assert!(rows.column(1).is_null(1) && rows.column(1).is_null(2));
        Ok(())
    }

    #[test]
    fn bad_messages_are_reported_one_by_one() -> Result<()> {
        let v1 = RecordBatch::try_from_iter(vec![
            ("id", Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef),
            (
                "name",
                Arc::new(StringArray::from(vec![Some("abc"), Some("d")])) as ArrayRef,
            ),
        ])?;
        let good = encode(V1, 1, &v1);
        let truncated = good[0][..good[0].len() - 2].to_vec();
        let mut doubled = good[1].clone();
        doubled.extend_from_slice(&good[1]);
        let unknown = {
            let mut p = good[0].clone();
            p[4] = 9;
            p
        };
        let payloads: Vec<Option<&[u8]>> = vec![
            Some(&good[0]),
            Some(b"{\"id\": 1}"),
            Some(&truncated),
            None,
            Some(&unknown),
            Some(&doubled),
            Some(&good[1]),
        ];
        let mut decoder = decoder();
        let decoded = decoder.decode(&payloads)?;
        let ok: Vec<bool> = decoded.outcomes.iter().map(|o| o.is_ok()).collect();
        assert_eq!(ok, [true, false, false, false, false, false, true]);
        let rows = decoded.rows.expect("rows");
        assert_eq!(
            rows.column(0).as_primitive::<Int64Type>(),
            &Int64Array::from(vec![1, 2])
        );
        // Usable afterwards.
        let decoded = decoder.decode(&[Some(&good[1])])?;
        assert_eq!(decoded.rows.map(|r| r.num_rows()), Some(1));
        Ok(())
    }
}
