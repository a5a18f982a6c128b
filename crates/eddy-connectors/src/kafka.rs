//! `connector = 'kafka'`: append-only sources read from a Kafka topic.
//!
//! ```sql
//! CREATE SOURCE bids (auction BIGINT, price BIGINT)
//!   INCLUDE partition, offset, timestamp AS kafka_ts
//!   WITH (connector = 'kafka', topic = 'bids',
//!         properties.bootstrap.server = 'localhost:9092',
//!         scan.startup.mode = 'earliest')
//!   FORMAT PLAIN ENCODE JSON;
//! ```
//!
//! Each reader assigns itself every partition of the topic (no consumer
//! group rebalancing: Eddy keeps positions itself) starting where
//! `scan.startup.mode` says, and looks for new partitions every few seconds.
//! Messages are decoded a batch at a time straight into Arrow
//! ([`crate::json`]); `INCLUDE` columns are appended from the message
//! metadata. A message that does not decode is recorded once in the
//! source's [`ErrorLog`] and, with `on_error = 'skip'` (the default), the
//! rest flows on; with `on_error = 'fail'` the reader stops at it.
//! `properties.*` options other than the bootstrap servers go to librdkafka
//! as they are.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{
    ArrayRef, BinaryBuilder, Int32Builder, Int64Builder, RecordBatch, RecordBatchOptions,
    TimestampNanosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use futures::FutureExt;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tracing::{debug, warn};

use crate::json::JsonDecoder;
use crate::source::{BadMessage, ErrorLog, SourceBatch, SourceProgress, SourceReader};
use crate::spec::{IncludeKind, SourceSpec};
use crate::{Error, Result};

/// Messages decoded into one batch at most.
const BATCH_MESSAGES: usize = 8192;
/// How often partitions and high watermarks are looked up again.
const METADATA_INTERVAL: Duration = Duration::from_secs(2);
/// Timeout of one metadata or watermark request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a reader waits before retrying a broker that failed it.
const RETRY_BACKOFF: Duration = Duration::from_millis(500);

/// Where a reader starts in each partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Startup {
    Earliest,
    Latest,
    /// The first message at or after this time (ms since the epoch).
    Timestamp(i64),
}

/// What a reader does with a message that does not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnError {
    Skip,
    Fail,
}

#[derive(Debug, Clone)]
struct KafkaOptions {
    topic: String,
    startup: Startup,
    on_error: OnError,
    /// librdkafka settings.
    client: BTreeMap<String, String>,
}

impl KafkaOptions {
    fn parse(spec: &SourceSpec) -> Result<Self> {
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
        let mut client = BTreeMap::new();
        client.insert("bootstrap.servers".to_string(), bootstrap);
        for (key, value) in options {
            match key.as_str() {
                "connector"
                | "topic"
                | "properties.bootstrap.server"
                | "scan.startup.mode"
                | "scan.startup.timestamp.millis"
                | "on_error" => {}
                key if key.starts_with("properties.") => {
                    client.insert(key["properties.".len()..].to_string(), value.clone());
                }
                key if key.starts_with("on_error.") => {
                    return Err(Error::UnsupportedOption(key.to_string()));
                }
                other => {
                    return Err(Error::UnknownOption {
                        key: other.to_string(),
                    })
                }
            }
        }
        Ok(Self {
            topic,
            startup,
            on_error,
            client,
        })
    }
}

/// `(partition, offset)` pairs.
type Positions = Vec<(i32, i64)>;

/// One `INCLUDE` column: where its values come from.
#[derive(Debug, Clone)]
enum MetadataColumn {
    Key,
    Partition,
    Offset,
    Timestamp,
    Header(String),
}

/// The source's columns: the declared ones, then one per `INCLUDE`.
pub(crate) fn kafka_schema(spec: &SourceSpec, declared: &SchemaRef) -> Result<SchemaRef> {
    KafkaOptions::parse(spec)?;
    check_format(spec)?;
    if declared.fields().is_empty() {
        return Err(Error::InvalidConfig(
            "a kafka source with ENCODE JSON needs a column list".into(),
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
    Ok(Arc::new(Schema::new(fields)))
}

fn check_format(spec: &SourceSpec) -> Result<()> {
    let Some(format) = &spec.format else {
        return Err(Error::InvalidConfig(
            "a kafka source needs FORMAT ... ENCODE ..., e.g. FORMAT PLAIN ENCODE JSON".into(),
        ));
    };
    if format.format != "plain" {
        return Err(Error::UnsupportedFormat(format!(
            "FORMAT {} on a source (sources are append-only: FORMAT PLAIN)",
            format.format.to_uppercase()
        )));
    }
    if format.encode != "json" {
        return Err(Error::UnsupportedFormat(format!(
            "ENCODE {}",
            format.encode.to_uppercase()
        )));
    }
    if let Some(key) = format.options.keys().next() {
        return Err(Error::UnknownOption { key: key.clone() });
    }
    Ok(())
}

fn metadata_columns(spec: &SourceSpec) -> Vec<(Field, MetadataColumn)> {
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

/// Start reading a Kafka source.
pub(crate) fn open_kafka(
    spec: &SourceSpec,
    schema: &SchemaRef,
    progress: Arc<SourceProgress>,
    errors: Arc<ErrorLog>,
) -> Result<Box<dyn SourceReader>> {
    let options = KafkaOptions::parse(spec)?;
    check_format(spec)?;
    let metadata = metadata_columns(spec);
    let value_fields = schema.fields().len() - metadata.len();
    let value_schema = Arc::new(Schema::new(schema.fields()[..value_fields].to_vec()));
    let mut config = ClientConfig::new();
    config
        .set(
            "group.id",
            format!("eddy-{}-{}", progress.source(), progress.view()),
        )
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("auto.offset.reset", "earliest");
    for (key, value) in &options.client {
        config.set(key, value);
    }
    let consumer: Arc<StreamConsumer> = Arc::new(config.create().map_err(kafka_error)?);
    let probe_consumer = consumer.clone();
    let topic = options.topic.clone();
    progress.set_end_probe(Arc::new(move || {
        let metadata = probe_consumer
            .fetch_metadata(Some(&topic), REQUEST_TIMEOUT)
            .map_err(kafka_error)?;
        let mut ends = BTreeMap::new();
        for found in metadata.topics().iter().filter(|t| t.name() == topic) {
            for partition in found.partitions() {
                let (_, high) = probe_consumer
                    .fetch_watermarks(&topic, partition.id(), REQUEST_TIMEOUT)
                    .map_err(kafka_error)?;
                ends.insert(partition.id().to_string(), high);
            }
        }
        Ok(ends)
    }));
    Ok(Box::new(KafkaReader {
        consumer,
        options,
        decoder: JsonDecoder::new(value_schema)?,
        metadata: metadata.into_iter().map(|(_, column)| column).collect(),
        schema: schema.clone(),
        assigned: BTreeMap::new(),
        next_lookup: Instant::now(),
        progress,
        errors,
        failure: None,
        announce: false,
        started: Vec::new(),
    }))
}

struct KafkaReader {
    consumer: Arc<StreamConsumer>,
    options: KafkaOptions,
    decoder: JsonDecoder,
    metadata: Vec<MetadataColumn>,
    schema: SchemaRef,
    /// Partitions assigned, with the last offset read (-1: none yet).
    assigned: BTreeMap<i32, i64>,
    next_lookup: Instant,
    progress: Arc<SourceProgress>,
    errors: Arc<ErrorLog>,
    /// With `on_error = 'fail'`: the bad message the reader stopped at.
    failure: Option<Error>,
    /// Partitions were assigned: say where the reader stands in them.
    announce: bool,
    /// With a startup timestamp: partitions where a message at or after it
    /// has been seen.
    started: Vec<i32>,
}

/// A message's fields, copied out of librdkafka's buffer.
struct Received {
    partition: i32,
    offset: i64,
    timestamp_ms: Option<i64>,
    key: Option<Vec<u8>>,
    payload: Option<Vec<u8>>,
    headers: Vec<(String, Option<Vec<u8>>)>,
}

impl KafkaReader {
    /// Look up the topic's partitions (assigning new ones) and their high
    /// watermarks. Runs on a blocking thread: librdkafka's calls block.
    async fn refresh(&mut self) -> Result<()> {
        let consumer = self.consumer.clone();
        let topic = self.options.topic.clone();
        let known: Vec<i32> = self.assigned.keys().copied().collect();
        let startup = if self.assigned.is_empty() {
            self.options.startup
        } else {
            // Partitions added later hold only new messages.
            Startup::Earliest
        };
        let lookup = tokio::task::spawn_blocking(move || -> Result<(Positions, Positions)> {
            let metadata = consumer
                .fetch_metadata(Some(&topic), REQUEST_TIMEOUT)
                .map_err(kafka_error)?;
            let Some(found) = metadata.topics().iter().find(|t| t.name() == topic) else {
                return Err(Error::Source(format!("topic \"{topic}\" does not exist")));
            };
            if let Some(error) = found.error() {
                return Err(Error::Source(format!("topic \"{topic}\": {:?}", error)));
            }
            let mut watermarks = Vec::new();
            for partition in found.partitions() {
                let (low, high) = consumer
                    .fetch_watermarks(&topic, partition.id(), REQUEST_TIMEOUT)
                    .map_err(kafka_error)?;
                watermarks.push((partition.id(), low, high));
            }
            // Start offsets, resolved here so that the reader knows
            // where it stands before any message arrives.
            let mut added = Vec::new();
            let mut by_time = TopicPartitionList::new();
            for (partition, low, high) in &watermarks {
                if known.contains(partition) {
                    continue;
                }
                match startup {
                    Startup::Earliest => added.push((*partition, *low)),
                    Startup::Latest => added.push((*partition, *high)),
                    Startup::Timestamp(ms) => by_time
                        .add_partition_offset(&topic, *partition, Offset::Offset(ms))
                        .map_err(kafka_error)?,
                }
            }
            if by_time.count() > 0 {
                let found = consumer
                    .offsets_for_times(by_time, REQUEST_TIMEOUT)
                    .map_err(kafka_error)?;
                for element in found.elements() {
                    let high = watermarks
                        .iter()
                        .find(|(p, _, _)| *p == element.partition())
                        .map_or(0, |(_, _, h)| *h);
                    let start = match element.offset() {
                        Offset::Offset(offset) => offset,
                        _ => high,
                    };
                    added.push((element.partition(), start));
                }
            }
            if !added.is_empty() {
                let mut list = TopicPartitionList::new();
                for (partition, start) in &added {
                    list.add_partition_offset(&topic, *partition, Offset::Offset(*start))
                        .map_err(kafka_error)?;
                }
                consumer.incremental_assign(&list).map_err(kafka_error)?;
            }
            let highs = watermarks.iter().map(|(p, _, h)| (*p, *h)).collect();
            Ok((added, highs))
        });
        let (added, watermarks) = lookup
            .await
            .map_err(|e| Error::Source(format!("partition lookup did not finish: {e}")))??;
        for (partition, start) in added {
            debug!(topic = %self.options.topic, partition, start, "partition assigned");
            self.assigned.insert(partition, start - 1);
            self.announce = true;
            self.progress.ensure_partition(&partition.to_string());
        }
        for (partition, high) in watermarks {
            self.progress
                .set_high_watermark(&partition.to_string(), high);
        }
        Ok(())
    }

    /// Wait for messages and take what is there, up to a batch.
    async fn receive(&mut self) -> Result<Vec<Received>> {
        let mut received = Vec::new();
        loop {
            if Instant::now() >= self.next_lookup {
                match self.refresh().await {
                    Ok(()) => {
                        if self.progress.status().starts_with("stalled") {
                            self.progress.set_status("running");
                        }
                    }
                    Err(error) => {
                        warn!(topic = %self.options.topic, %error, "kafka lookup failed");
                        self.progress.set_status(format!("stalled: {error}"));
                    }
                }
                self.next_lookup = Instant::now() + METADATA_INTERVAL;
            }
            if self.assigned.is_empty() {
                tokio::time::sleep(RETRY_BACKOFF).await;
                continue;
            }
            if self.announce {
                return Ok(received);
            }
            let wait = self.next_lookup.saturating_duration_since(Instant::now());
            let first = match tokio::time::timeout(wait, self.consumer.recv()).await {
                Err(_) => continue,
                Ok(Err(error)) => {
                    warn!(topic = %self.options.topic, %error, "kafka receive failed");
                    self.progress.set_status(format!("stalled: {error}"));
                    tokio::time::sleep(RETRY_BACKOFF).await;
                    continue;
                }
                Ok(Ok(message)) => copy(&message),
            };
            received.push(first);
            while received.len() < BATCH_MESSAGES {
                match self.consumer.recv().now_or_never() {
                    Some(Ok(message)) => received.push(copy(&message)),
                    _ => break,
                }
            }
            return Ok(received);
        }
    }

    /// Rows of `received` (the good messages) with their metadata columns.
    fn rows(&mut self, received: &[Received]) -> Result<Option<RecordBatch>> {
        let payloads: Vec<Option<&[u8]>> = received.iter().map(|r| r.payload.as_deref()).collect();
        let decoded = self.decoder.decode(&payloads)?;
        let mut good: Vec<usize> = Vec::with_capacity(received.len());
        for (index, outcome) in decoded.outcomes.iter().enumerate() {
            let message = &received[index];
            match outcome {
                Ok(()) => good.push(index),
                Err(reason) => {
                    let bad = BadMessage::new(
                        message.partition.to_string(),
                        message.offset,
                        reason.clone(),
                        message.payload.as_deref().unwrap_or_default(),
                    );
                    self.errors.record(bad);
                    if self.options.on_error == OnError::Fail {
                        self.failure = Some(Error::Source(format!(
                            "bad message at partition {} offset {}: {reason}",
                            message.partition, message.offset
                        )));
                        break;
                    }
                }
            }
        }
        let good_rows = good.len();
        let Some(values) = decoded.rows else {
            return Ok(None);
        };
        // With on_error = 'fail' the rows after the bad message are dropped:
        // the reader stops at it.
        let values = values.slice(0, good_rows.min(values.num_rows()));
        let kept: Vec<&Received> = good.iter().map(|i| &received[*i]).collect();
        let mut columns: Vec<ArrayRef> = values.columns().to_vec();
        for column in &self.metadata {
            columns.push(metadata_array(column, &kept));
        }
        let options = RecordBatchOptions::new().with_row_count(Some(kept.len()));
        let batch = RecordBatch::try_new_with_options(self.schema.clone(), columns, &options)?;
        Ok((batch.num_rows() > 0).then_some(batch))
    }
}

fn copy(message: &rdkafka::message::BorrowedMessage<'_>) -> Received {
    let headers = message
        .headers()
        .map(|headers| {
            headers
                .iter()
                .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
                .collect()
        })
        .unwrap_or_default();
    Received {
        partition: message.partition(),
        offset: message.offset(),
        timestamp_ms: message.timestamp().to_millis(),
        key: message.key().map(<[u8]>::to_vec),
        payload: message.payload().map(<[u8]>::to_vec),
        headers,
    }
}

fn metadata_array(column: &MetadataColumn, messages: &[&Received]) -> ArrayRef {
    match column {
        MetadataColumn::Key => {
            let mut out = BinaryBuilder::new();
            for m in messages {
                out.append_option(m.key.as_deref());
            }
            Arc::new(out.finish())
        }
        MetadataColumn::Partition => {
            let mut out = Int32Builder::new();
            for m in messages {
                out.append_value(m.partition);
            }
            Arc::new(out.finish())
        }
        MetadataColumn::Offset => {
            let mut out = Int64Builder::new();
            for m in messages {
                out.append_value(m.offset);
            }
            Arc::new(out.finish())
        }
        MetadataColumn::Timestamp => {
            let mut out = TimestampNanosecondBuilder::new().with_timezone("+00:00");
            for m in messages {
                out.append_option(m.timestamp_ms.map(|ms| ms.saturating_mul(1_000_000)));
            }
            Arc::new(out.finish())
        }
        MetadataColumn::Header(name) => {
            let mut out = BinaryBuilder::new();
            for m in messages {
                let value = m
                    .headers
                    .iter()
                    .find(|(key, _)| key == name)
                    .and_then(|(_, value)| value.as_deref());
                out.append_option(value);
            }
            Arc::new(out.finish())
        }
    }
}

#[async_trait::async_trait]
impl SourceReader for KafkaReader {
    async fn next_batch(&mut self) -> Result<Option<SourceBatch>> {
        if let Some(failure) = self.failure.take() {
            self.progress.set_status(format!("failed: {failure}"));
            return Err(failure);
        }
        let mut received = self.receive().await?;
        self.announce = false;
        if let Startup::Timestamp(start) = self.options.startup {
            // Brokers differ in how they look offsets up by time: also skip
            // what comes before the first message at or after the start
            // time, per partition (later messages all count, as in Kafka).
            received.retain(|message| {
                if self.started.contains(&message.partition) {
                    return true;
                }
                let started = message.timestamp_ms.is_some_and(|ms| ms >= start);
                if started {
                    self.started.push(message.partition);
                }
                started
            });
        }
        for message in &received {
            let last = self.assigned.entry(message.partition).or_insert(-1);
            *last = (*last).max(message.offset);
            self.progress
                .record(&message.partition.to_string(), message.offset, 1);
        }
        let positions = self.assigned.clone();
        let schema = self.schema.clone();
        let rows = match self.rows(&received)? {
            Some(rows) => rows,
            None => RecordBatch::new_empty(schema),
        };
        Ok(Some(SourceBatch {
            rows,
            positions: positions
                .into_iter()
                .map(|(p, o)| (p.to_string(), o))
                .collect(),
        }))
    }
}

fn kafka_error(error: rdkafka::error::KafkaError) -> Error {
    Error::Source(format!("kafka: {error}"))
}
