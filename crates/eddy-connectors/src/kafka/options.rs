//! What a Kafka source's or connector table's statement says, checked:
//! its options, its `FORMAT ... ENCODE ...`, its columns (declared, derived
//! from a registered schema, and `INCLUDE`d metadata).

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::avro::derived_schema;
use crate::json::Encoding;
use crate::protobuf::{ProtobufDecoder, ProtobufSpec};
use crate::registry::Registry;
use crate::spec::{Envelope, IncludeKind, SourceSpec};
use crate::{Error, Result};

/// Where a reader starts in each partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Startup {
    Earliest,
    Latest,
    /// The first message at or after this time (ms since the epoch).
    Timestamp(i64),
}

/// What a reader does with a message that does not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OnError {
    Skip,
    Fail,
}

#[derive(Debug, Clone)]
pub(super) struct KafkaOptions {
    pub(super) topic: String,
    pub(super) startup: Startup,
    pub(super) on_error: OnError,
    /// Where bad messages are copied, if anywhere.
    pub(super) dead_letter: Option<String>,
    /// librdkafka settings.
    pub(super) client: BTreeMap<String, String>,
}

impl KafkaOptions {
    pub(super) fn parse(spec: &SourceSpec) -> Result<Self> {
        let options = &spec.options;
        let required = |key: &str| {
            options.get(key).cloned().ok_or_else(|| {
                Error::InvalidConfig(format!("the kafka connector needs {key} = '...'"))
            })
        };
        let topic = required("topic")?;
        let bootstrap = required("properties.bootstrap.server")?;
        let startup = match options
            .get("scan.startup.mode")
            .map(|m| m.to_ascii_lowercase())
            .as_deref()
        {
            None | Some("earliest") => Startup::Earliest,
            Some("latest") => Startup::Latest,
            Some("timestamp") => {
                let key = "scan.startup.timestamp.millis";
                let value = required(key)?;
                Startup::Timestamp(value.trim().parse().map_err(|e: std::num::ParseIntError| {
                    Error::invalid_option(key, value.as_str(), e.to_string())
                })?)
            }
            Some(other) => {
                return Err(Error::invalid_option(
                    "scan.startup.mode",
                    other,
                    "expected 'earliest', 'latest' or 'timestamp'",
                ))
            }
        };
        let on_error = match options
            .get("on_error")
            .map(|m| m.to_ascii_lowercase())
            .as_deref()
        {
            None | Some("skip") => OnError::Skip,
            Some("fail") => OnError::Fail,
            Some(other) => {
                return Err(Error::invalid_option(
                    "on_error",
                    other,
                    "expected 'skip' or 'fail'",
                ))
            }
        };
        let client = client_settings(
            options,
            bootstrap,
            &[
                "scan.startup.mode",
                "scan.startup.timestamp.millis",
                "on_error",
                "on_error.dead_letter.topic",
            ],
        )?;
        Ok(Self {
            topic,
            startup,
            on_error,
            dead_letter: options.get("on_error.dead_letter.topic").cloned(),
            client,
        })
    }
}

/// The librdkafka settings of a source's or sink's options: the bootstrap
/// servers and every `properties.*` option. Any other option must be
/// `connector`, `topic` or one of `own` (the connector's own keys).
pub(crate) fn client_settings(
    options: &BTreeMap<String, String>,
    bootstrap: String,
    own: &[&str],
) -> Result<BTreeMap<String, String>> {
    let mut client = BTreeMap::new();
    client.insert("bootstrap.servers".to_string(), bootstrap);
    for (key, value) in options {
        if let Some(setting) = key.strip_prefix("properties.") {
            if setting != "bootstrap.server" {
                client.insert(setting.to_string(), value.clone());
            }
        } else if !matches!(key.as_str(), "connector" | "topic") && !own.contains(&key.as_str()) {
            return Err(Error::UnknownOption { key: key.clone() });
        }
    }
    Ok(client)
}

/// `(partition, offset)` pairs.
pub(super) type Positions = Vec<(i32, i64)>;

/// One `INCLUDE` column: where its values come from.
#[derive(Debug, Clone)]
pub(super) enum MetadataColumn {
    Key,
    Partition,
    Offset,
    Timestamp,
    Header(String),
}

/// The source's columns: the declared ones (with `ENCODE AVRO`, if none
/// are declared, those of the registry's latest schema for the topic's
/// values), then one per `INCLUDE`.
pub(crate) async fn kafka_schema(spec: &SourceSpec, declared: &SchemaRef) -> Result<SchemaRef> {
    let options = KafkaOptions::parse(spec)?;
    let (envelope, encoding) = check_format(spec)?;
    let declared = match &encoding {
        ValueEncoding::Avro(registry) if declared.fields().is_empty() => {
            if envelope == Envelope::Debezium {
                return Err(Error::InvalidConfig(
                    "FORMAT DEBEZIUM ENCODE AVRO needs a column list".into(),
                ));
            }
            derived_schema(registry, &format!("{}-value", options.topic)).await?
        }
        ValueEncoding::Protobuf(spec) => {
            if declared.fields().is_empty() {
                crate::protobuf::derived_schema(&spec.descriptor(&options.topic).await?)?
            } else {
                // Check that the declared columns can be read (from the
                // file; registry schemas are checked as messages arrive).
                if let Some(message) = spec.file_message()? {
                    ProtobufDecoder::new(declared.clone(), message)?;
                }
                declared.clone()
            }
        }
        _ => declared.clone(),
    };
    if declared.fields().is_empty() {
        return Err(Error::InvalidConfig(
            "a kafka source needs a column list".into(),
        ));
    }
    if encoding == ValueEncoding::Text(Encoding::Bytes)
        && (declared.fields().len() != 1 || declared.field(0).data_type() != &DataType::Binary)
    {
        return Err(Error::InvalidConfig(
            "ENCODE BYTES needs exactly one column, of type BYTEA".into(),
        ));
    }
    let mut fields: Vec<Field> = declared
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    for (include, _) in metadata_columns(spec) {
        if fields.iter().any(|f| f.name() == include.name()) {
            return Err(Error::InvalidConfig(format!(
                "INCLUDE column \"{}\" has the name of another column",
                include.name()
            )));
        }
        fields.push(include);
    }
    let schema = Arc::new(Schema::new(fields));
    key_columns(spec, &schema)?;
    Ok(schema)
}

/// How a source's message values are encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ValueEncoding {
    /// JSON, CSV or bytes ([`crate::json`]).
    Text(Encoding),
    /// Avro in the Confluent wire format, schemas from this registry.
    Avro(Registry),
    /// Protobuf messages of one type.
    Protobuf(ProtobufSpec),
}

pub(super) fn check_format(spec: &SourceSpec) -> Result<(Envelope, ValueEncoding)> {
    let Some(format) = &spec.format else {
        return Err(Error::InvalidConfig(
            "a kafka source needs FORMAT ... ENCODE ..., e.g. FORMAT PLAIN ENCODE JSON".into(),
        ));
    };
    let Some(envelope) = format.envelope() else {
        return Err(Error::UnsupportedFormat(format!(
            "FORMAT {}",
            format.format.to_uppercase()
        )));
    };
    if envelope != Envelope::Plain && spec.primary_key.is_empty() {
        return Err(Error::UnsupportedFormat(format!(
            "FORMAT {} without a primary key (it updates and deletes rows by key: use CREATE TABLE name (..., PRIMARY KEY (...)) WITH (...) instead of CREATE SOURCE)",
            format.format.to_uppercase()
        )));
    }
    let mut options = format.options.clone();
    let encoding =
        match format.encode.as_str() {
            "json" => ValueEncoding::Text(Encoding::Json),
            "avro" => ValueEncoding::Avro(Registry::for_avro(&mut options)?),
            "protobuf" => ValueEncoding::Protobuf(ProtobufSpec::parse(&mut options)?),
            "csv" => {
                let delimiter = match options.remove("delimiter") {
                    None => b',',
                    Some(d) if d.len() == 1 && d.is_ascii() => d.as_bytes()[0],
                    Some(d) => {
                        return Err(Error::invalid_option(
                            "delimiter",
                            d,
                            "expected one ASCII character",
                        ))
                    }
                };
                match options.remove("without_header").as_deref() {
                    None | Some("true") => {}
                    Some(_) => return Err(Error::UnsupportedOption(
                        "without_header = 'false' (each message is one record, without a header)"
                            .into(),
                    )),
                }
                ValueEncoding::Text(Encoding::Csv { delimiter })
            }
            "bytes" => ValueEncoding::Text(Encoding::Bytes),
            other => {
                return Err(Error::UnsupportedFormat(format!(
                    "ENCODE {}",
                    other.to_uppercase()
                )))
            }
        };
    if let Some(key) = options.keys().next() {
        return Err(Error::UnknownOption { key: key.clone() });
    }
    if envelope == Envelope::Debezium
        && !matches!(
            encoding,
            ValueEncoding::Text(Encoding::Json) | ValueEncoding::Avro(_)
        )
    {
        return Err(Error::UnsupportedFormat(format!(
            "FORMAT DEBEZIUM ENCODE {}",
            format.encode.to_uppercase()
        )));
    }
    Ok((envelope, encoding))
}

/// The primary key's column indices in `schema`.
pub(super) fn key_columns(spec: &SourceSpec, schema: &SchemaRef) -> Result<Vec<usize>> {
    spec.primary_key
        .iter()
        .map(|name| {
            schema.index_of(name).map_err(|_| Error::UnknownColumn {
                column: name.clone(),
                key: "PRIMARY KEY".into(),
            })
        })
        .collect()
}

pub(super) fn metadata_columns(spec: &SourceSpec) -> Vec<(Field, MetadataColumn)> {
    spec.includes
        .iter()
        .map(|include| {
            let (name, data_type, column) = match &include.kind {
                IncludeKind::Key => (
                    "kafka_key".to_string(),
                    DataType::Binary,
                    MetadataColumn::Key,
                ),
                IncludeKind::Partition => (
                    "kafka_partition".to_string(),
                    DataType::Int32,
                    MetadataColumn::Partition,
                ),
                IncludeKind::Offset => (
                    "kafka_offset".to_string(),
                    DataType::Int64,
                    MetadataColumn::Offset,
                ),
                IncludeKind::Timestamp => (
                    "kafka_timestamp".to_string(),
                    DataType::Timestamp(TimeUnit::Nanosecond, Some("+00:00".into())),
                    MetadataColumn::Timestamp,
                ),
                IncludeKind::Header(header) => (
                    format!("kafka_header_{header}"),
                    DataType::Binary,
                    MetadataColumn::Header(header.clone()),
                ),
            };
            let name = include.alias.clone().unwrap_or(name);
            (Field::new(name, data_type, true), column)
        })
        .collect()
}
