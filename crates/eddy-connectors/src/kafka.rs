//! `connector = 'kafka'`: sources and connector tables read from a Kafka
//! topic.
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
//! ([`crate::json`] for JSON, CSV and bytes, [`crate::avro`],
//! [`crate::protobuf`]); `INCLUDE` columns are appended from the message
//! metadata. A message that does not decode is recorded once in the
//! source's [`ErrorLog`] and, with `on_error = 'skip'` (the default), the
//! rest flows on; with `on_error = 'fail'` the reader stops at it (its
//! status says why) and reads from it again every 5 seconds, so it goes on
//! once the cause is gone (an Avro schema that was missing is registered). With
//! `on_error.dead_letter.topic = 't'` each bad message is also copied to
//! topic `t` (once, whichever reader finds it first), with its key and
//! payload and the headers `eddy.source`, `eddy.partition`, `eddy.offset`
//! and `eddy.reason`.
//! `properties.*` options other than the bootstrap servers go to librdkafka
//! as they are. The options, formats and columns are checked in
//! [`options`]; this module reads.
//!
//! Sources are `FORMAT PLAIN`: every message is a row appended. A connector
//! table with a primary key (`CREATE TABLE t (..., PRIMARY KEY (id)) WITH
//! (connector = 'kafka', ...)`) may also be `FORMAT UPSERT` (the message
//! key identifies the row, a value sets it, a tombstone deletes it) or
//! `FORMAT DEBEZIUM` (change events with `before`, `after` and `op`, at the
//! top or in `payload`); with `FORMAT PLAIN` a later row replaces the row
//! of its key. The reader yields upserts ([`crate::envelope`]): the engine,
//! which holds the table, retracts the row a key had.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{
    Array, ArrayRef, BinaryBuilder, Int32Builder, Int64Builder, RecordBatch, RecordBatchOptions,
    StringArray, TimestampNanosecondBuilder,
};
use arrow::datatypes::{Schema, SchemaRef};
use futures::FutureExt;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tracing::{debug, warn};

use crate::avro::AvroDecoder;
use crate::envelope::{debezium_parts, debezium_schema, key_is_null, upserts, Action};
use crate::json::{Decoded, JsonDecoder};
use crate::protobuf::{Descriptors, ProtobufDecoder, RegistryProtobufDecoder};
use crate::source::{
    BadMessage, ErrorLog, Resume, SourceBatch, SourceProgress, SourceReader, Upsert,
};
use crate::spec::{Envelope, SourceSpec};
use crate::{Error, Result};

mod options;
mod startup;

use options::{
    check_format, key_columns, metadata_columns, KafkaOptions, MetadataColumn, OnError, Positions,
    Startup, ValueEncoding,
};
pub(crate) use options::{client_settings, kafka_schema};
pub(crate) use startup::start_positions;
use startup::{start_offsets, watermarks};

/// Messages decoded into one batch at most.
const BATCH_MESSAGES: usize = 8192;
/// How often partitions and high watermarks are looked up again.
const METADATA_INTERVAL: Duration = Duration::from_secs(2);
/// Timeout of one metadata or watermark request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a reader waits before retrying a broker that failed it.
const RETRY_BACKOFF: Duration = Duration::from_millis(500);
/// With `on_error = 'fail'`: how often the bad message is read again.
const FAIL_RETRY: Duration = Duration::from_secs(5);

/// Start reading a Kafka source.
pub(crate) fn open_kafka(
    spec: &SourceSpec,
    schema: &SchemaRef,
    progress: Arc<SourceProgress>,
    errors: Arc<ErrorLog>,
    resume: Option<Resume>,
) -> Result<Box<dyn SourceReader>> {
    let options = KafkaOptions::parse(spec)?;
    let (envelope, encoding) = check_format(spec)?;
    let not_null: Vec<usize> = (0..schema.fields().len())
        .filter(|i| !schema.field(*i).is_nullable())
        .collect();
    let schema = &crate::source::nullable(schema);
    let metadata = metadata_columns(spec);
    let value_fields = schema.fields().len() - metadata.len();
    let value_schema = Arc::new(Schema::new(schema.fields()[..value_fields].to_vec()));
    let key = key_columns(spec, schema)?;
    let resume = resume.unwrap_or_default();
    let mut resume_at = BTreeMap::new();
    for (partition, offset) in &resume.positions {
        let partition = partition.parse::<i32>().map_err(|_| {
            Error::Source(format!("stored position of unknown partition {partition}"))
        })?;
        resume_at.insert(partition, *offset);
    }
    let decoded_schema = match envelope {
        Envelope::Debezium => debezium_schema(&value_schema),
        Envelope::Plain | Envelope::Upsert => value_schema.clone(),
    };
    let decoder = match encoding {
        ValueEncoding::Text(encoding) => {
            ValueDecoder::Text(JsonDecoder::with_encoding(decoded_schema, encoding)?)
        }
        ValueEncoding::Avro(registry) => {
            ValueDecoder::Avro(Box::new(AvroDecoder::new(decoded_schema, registry)))
        }
        ValueEncoding::Protobuf(spec) => match (&spec.descriptors, spec.file_message()?) {
            (Descriptors::Registry(registry), _) => {
                ValueDecoder::ProtobufRegistry(Box::new(RegistryProtobufDecoder::new(
                    decoded_schema,
                    registry.clone(),
                    spec.message.clone(),
                )))
            }
            (Descriptors::File(_), Some(message)) => {
                ValueDecoder::Protobuf(ProtobufDecoder::new(decoded_schema, message)?)
            }
            (Descriptors::File(path), None) => {
                return Err(Error::Source(format!("no message type in {path}")))
            }
        },
    };
    let mut config = ClientConfig::new();
    config
        .set(
            "group.id",
            format!("eddy-{}-{}", progress.source(), progress.view()),
        )
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("auto.offset.reset", "earliest")
        // librdkafka pauses fetching for a second (its default) whenever
        // 100K messages wait unread, which makes a reader that is catching
        // up read in bursts; a short pause keeps it reading.
        .set("fetch.queue.backoff.ms", "10");
    for (key, value) in &options.client {
        config.set(key, value);
    }
    let consumer: Arc<StreamConsumer> = Arc::new(config.create().map_err(kafka_error)?);
    let dead_letter = match &options.dead_letter {
        Some(_) => {
            let mut config = ClientConfig::new();
            for (key, value) in &options.client {
                config.set(key, value);
            }
            Some(config.create::<FutureProducer>().map_err(kafka_error)?)
        }
        None => None,
    };
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
        decoder,
        envelope,
        key,
        value_schema,
        metadata: metadata.into_iter().map(|(_, column)| column).collect(),
        schema: schema.clone(),
        not_null,
        assigned: BTreeMap::new(),
        next_lookup: Instant::now(),
        progress,
        errors,
        dead_letter,
        stopped: None,
        retry_at: None,
        announce: false,
        started: Vec::new(),
        resume_at,
    }))
}

/// Decodes message values.
enum ValueDecoder {
    Text(JsonDecoder),
    Avro(Box<AvroDecoder>),
    Protobuf(ProtobufDecoder),
    ProtobufRegistry(Box<RegistryProtobufDecoder>),
}

impl ValueDecoder {
    fn schema(&self) -> &SchemaRef {
        match self {
            ValueDecoder::Text(decoder) => decoder.schema(),
            ValueDecoder::Avro(decoder) => decoder.schema(),
            ValueDecoder::Protobuf(decoder) => decoder.schema(),
            ValueDecoder::ProtobufRegistry(decoder) => decoder.schema(),
        }
    }

    fn uses_registry(&self) -> bool {
        matches!(
            self,
            ValueDecoder::Avro(_) | ValueDecoder::ProtobufRegistry(_)
        )
    }

    /// Fetch the writer schemas `payloads` need from the registry.
    async fn resolve(&mut self, payloads: &[Option<&[u8]>]) -> Result<()> {
        match self {
            ValueDecoder::Avro(decoder) => decoder.resolve(payloads).await,
            ValueDecoder::ProtobufRegistry(decoder) => decoder.resolve(payloads).await,
            _ => Ok(()),
        }
    }

    fn decode(&mut self, payloads: &[Option<&[u8]>]) -> Result<Decoded> {
        match self {
            ValueDecoder::Text(decoder) => decoder.decode(payloads),
            ValueDecoder::Avro(decoder) => decoder.decode(payloads),
            ValueDecoder::Protobuf(decoder) => decoder.decode(payloads),
            ValueDecoder::ProtobufRegistry(decoder) => decoder.decode(payloads),
        }
    }
}

struct KafkaReader {
    consumer: Arc<StreamConsumer>,
    options: KafkaOptions,
    decoder: ValueDecoder,
    envelope: Envelope,
    /// Primary key columns (connector tables).
    key: Vec<usize>,
    /// The declared columns, which the payload holds.
    value_schema: SchemaRef,
    metadata: Vec<MetadataColumn>,
    /// The columns, all nullable.
    schema: SchemaRef,
    /// The columns declared `NOT NULL` (primary key columns included).
    not_null: Vec<usize>,
    /// Partitions assigned, with the last offset read (-1: none yet).
    assigned: BTreeMap<i32, i64>,
    next_lookup: Instant,
    progress: Arc<SourceProgress>,
    errors: Arc<ErrorLog>,
    /// Writes bad messages to `on_error.dead_letter.topic`.
    dead_letter: Option<FutureProducer>,
    /// With `on_error = 'fail'`: the bad message the reader stopped at.
    stopped: Option<usize>,
    /// With `on_error = 'fail'`, after a bad message: when to read from it
    /// again.
    retry_at: Option<Instant>,
    /// Partitions were assigned: say where the reader stands in them.
    announce: bool,
    /// With a startup timestamp: partitions where a message at or after it
    /// has been seen.
    started: Vec<i32>,
    /// After a restart: the last offset taken of each partition, where the
    /// first partition lookup starts them (just after it). Partitions
    /// not in it were added since and are read from their beginning.
    resume_at: BTreeMap<i32, i64>,
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
    /// Make each partition of `untaken` (messages received but not taken)
    /// start again at its first message there.
    async fn rewind(&mut self, untaken: &[Received]) -> Result<()> {
        let mut starts: BTreeMap<i32, i64> = BTreeMap::new();
        for message in untaken {
            let start = starts.entry(message.partition).or_insert(message.offset);
            *start = (*start).min(message.offset);
        }
        let consumer = self.consumer.clone();
        let topic = self.options.topic.clone();
        tokio::task::spawn_blocking(move || -> Result<()> {
            for (partition, offset) in starts {
                consumer
                    .seek(&topic, partition, Offset::Offset(offset), REQUEST_TIMEOUT)
                    .map_err(kafka_error)?;
            }
            Ok(())
        })
        .await
        .map_err(|e| Error::Source(format!("seek did not finish: {e}")))?
    }

    /// Look up the topic's partitions (assigning new ones) and their high
    /// watermarks. Runs on a blocking thread: librdkafka's calls block.
    async fn refresh(&mut self) -> Result<()> {
        let consumer = self.consumer.clone();
        let topic = self.options.topic.clone();
        let known: Vec<i32> = self.assigned.keys().copied().collect();
        let resume_at = self.resume_at.clone();
        let startup = if self.assigned.is_empty() && resume_at.is_empty() {
            self.options.startup
        } else {
            // Partitions added later hold only new messages.
            Startup::Earliest
        };
        let lookup = tokio::task::spawn_blocking(move || -> Result<(Positions, Positions)> {
            let watermarks = watermarks(consumer.as_ref(), &topic)?;
            // Start offsets, resolved here so that the reader knows
            // where it stands before any message arrives.
            let mut added = Vec::new();
            let mut fresh = Vec::new();
            for watermark in &watermarks {
                let partition = watermark.0;
                if known.contains(&partition) {
                    continue;
                }
                match resume_at.get(&partition) {
                    Some(last) => added.push((partition, last + 1)),
                    None => fresh.push(*watermark),
                }
            }
            added.extend(start_offsets(consumer.as_ref(), &topic, startup, &fresh)?);
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
        self.resume_at.clear();
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

    /// The changes `received` make: rows of the good messages with their
    /// metadata columns, and, for keyed tables, the upsert each row is and
    /// (UPSERT) its message key.
    fn rows(&mut self, received: &[Received]) -> Result<Option<Taken>> {
        // UPSERT and Debezium tombstones carry no value to decode.
        let decode: Vec<usize> = (0..received.len())
            .filter(|i| self.envelope == Envelope::Plain || received[*i].payload.is_some())
            .collect();
        let payloads: Vec<Option<&[u8]>> = decode
            .iter()
            .map(|i| received[*i].payload.as_deref())
            .collect();
        let decoded = self.decoder.decode(&payloads)?;
        // Per message: the decoded row it is, or why it is bad (`None` for
        // tombstones).
        let mut outcomes: Vec<Option<std::result::Result<usize, String>>> =
            vec![None; received.len()];
        let mut good: Vec<&Received> = Vec::with_capacity(received.len());
        for (index, outcome) in decode.iter().zip(&decoded.outcomes) {
            outcomes[*index] = Some(match outcome {
                Ok(()) => {
                    good.push(&received[*index]);
                    Ok(good.len() - 1)
                }
                Err(reason) => Err(reason.clone()),
            });
        }
        let with_metadata = |values: &RecordBatch, schema: &SchemaRef| -> Result<RecordBatch> {
            let mut columns: Vec<ArrayRef> = values.columns().to_vec();
            for column in &self.metadata {
                columns.push(metadata_array(column, &good));
            }
            let options = RecordBatchOptions::new().with_row_count(Some(good.len()));
            Ok(RecordBatch::try_new_with_options(
                schema.clone(),
                columns,
                &options,
            )?)
        };
        let values = decoded
            .rows
            .unwrap_or_else(|| RecordBatch::new_empty(self.decoder.schema().clone()));
        let (new_rows, old_rows, ops) = match self.envelope {
            Envelope::Debezium => {
                let (before, after, ops) = debezium_parts(&values, &self.value_schema)?;
                (
                    with_metadata(&after, &self.schema)?,
                    Some(with_metadata(&before, &self.schema)?),
                    Some(ops),
                )
            }
            Envelope::Plain | Envelope::Upsert => {
                (with_metadata(&values, &self.schema)?, None, None)
            }
        };
        // What each message does, up to the first bad one with on_error = 'fail'.
        let mut actions: Vec<Action> = Vec::new();
        let mut rows_before_failure = good.len();
        for (index, outcome) in outcomes.iter().enumerate() {
            let message = &received[index];
            let verdict = match outcome {
                Some(Err(reason)) => Err(reason.clone()),
                None if self.envelope == Envelope::Debezium => Ok(()),
                None => match &message.key {
                    Some(key) => {
                        actions.push(Action::DeleteMessageKey {
                            message_key: key.clone(),
                        });
                        Ok(())
                    }
                    None => Err("an UPSERT message needs a key or a value".to_string()),
                },
                Some(Ok(row)) => self.action(
                    *row,
                    message,
                    &new_rows,
                    old_rows.as_ref(),
                    ops.as_ref(),
                    &mut actions,
                ),
            };
            if let Err(reason) = verdict {
                self.record_bad(message, &reason);
                if self.options.on_error == OnError::Fail {
                    self.progress.set_status(format!(
                        "failed: bad message at partition {} offset {}: {reason} (read again every {}s)",
                        message.partition,
                        message.offset,
                        FAIL_RETRY.as_secs()
                    ));
                    self.stopped = Some(index);
                    rows_before_failure = match outcome {
                        Some(Ok(row)) => *row,
                        _ => outcomes[..index]
                            .iter()
                            .filter(|o| matches!(o, Some(Ok(_))))
                            .count(),
                    };
                    break;
                }
            }
        }
        if self.key.is_empty() {
            // Appended rows; with on_error = 'fail' the rows after the bad
            // message are dropped: the reader stops at it.
            let rows = new_rows.slice(0, rows_before_failure.min(new_rows.num_rows()));
            return Ok((rows.num_rows() > 0).then_some((rows, None, Vec::new())));
        }
        let changes = upserts(&self.schema, &new_rows, old_rows.as_ref(), &actions)?;
        if changes.rows.num_rows() == 0 {
            return Ok(None);
        }
        let message_keys = match self.envelope {
            Envelope::Upsert => changes.message_keys,
            Envelope::Plain | Envelope::Debezium => Vec::new(),
        };
        Ok(Some((changes.rows, Some(changes.upserts), message_keys)))
    }

    /// Record a bad message once, and copy it to the dead-letter topic the
    /// first time.
    fn record_bad(&self, message: &Received, reason: &str) {
        let bad = BadMessage::new(
            message.partition.to_string(),
            message.offset,
            reason.to_string(),
            message.payload.as_deref().unwrap_or_default(),
        );
        if !self.errors.record(bad) {
            return;
        }
        let (Some(producer), Some(topic)) = (&self.dead_letter, &self.options.dead_letter) else {
            return;
        };
        let partition = message.partition.to_string();
        let offset = message.offset.to_string();
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "eddy.source",
                value: Some(self.progress.source()),
            })
            .insert(Header {
                key: "eddy.partition",
                value: Some(&partition),
            })
            .insert(Header {
                key: "eddy.offset",
                value: Some(&offset),
            })
            .insert(Header {
                key: "eddy.reason",
                value: Some(reason),
            });
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).headers(headers);
        if let Some(key) = &message.key {
            record = record.key(key.as_slice());
        }
        if let Some(payload) = &message.payload {
            record = record.payload(payload.as_slice());
        }
        match producer.send_result(record) {
            Ok(delivery) => {
                let source = self.progress.source().to_string();
                tokio::spawn(async move {
                    if let Ok(Err((error, _))) = delivery.await {
                        warn!(%source, %error, "a bad message could not be copied to the dead-letter topic");
                    }
                });
            }
            Err((error, _)) => {
                warn!(source = %self.progress.source(), %error, "a bad message could not be copied to the dead-letter topic");
            }
        }
    }

    /// An error naming the first `NOT NULL` column that row `row` of
    /// `rows` (in the table's schema) leaves NULL.
    fn check_not_null(&self, rows: &RecordBatch, row: usize) -> std::result::Result<(), String> {
        for index in &self.not_null {
            if rows.column(*index).is_null(row) {
                return Err(format!(
                    "null value in column \"{}\" violates NOT NULL",
                    self.schema.field(*index).name()
                ));
            }
        }
        Ok(())
    }

    /// What decoded row `row` of `message` does to a keyed table (pushed
    /// to `actions`), or why it is bad. Append-only sources take every row.
    fn action(
        &self,
        row: usize,
        message: &Received,
        new_rows: &RecordBatch,
        old_rows: Option<&RecordBatch>,
        ops: Option<&StringArray>,
        actions: &mut Vec<Action>,
    ) -> std::result::Result<(), String> {
        if self.key.is_empty() {
            return self.check_not_null(new_rows, row);
        }
        let null_key = "the primary key is null".to_string();
        match (self.envelope, ops, old_rows) {
            (Envelope::Debezium, Some(ops), Some(old_rows)) => {
                let before = !key_is_null(old_rows, &self.key, row);
                match (ops.is_valid(row).then(|| ops.value(row)), before) {
                    (Some("c" | "r" | "u"), _) => {
                        if key_is_null(new_rows, &self.key, row) {
                            return Err(format!("{null_key} in \"after\""));
                        }
                        self.check_not_null(new_rows, row)?;
                        if before {
                            actions.push(Action::DeleteRow { row });
                        }
                        actions.push(Action::Set {
                            row,
                            message_key: None,
                        });
                        Ok(())
                    }
                    (Some("d"), true) => {
                        actions.push(Action::DeleteRow { row });
                        Ok(())
                    }
                    (Some("d"), false) => {
                        Err("a delete event needs \"before\" with the primary key".into())
                    }
                    (Some(op), _) => Err(format!("unknown Debezium op \"{op}\"")),
                    (None, _) => Err("a Debezium event needs \"op\"".into()),
                }
            }
            (Envelope::Upsert, _, _) => {
                let Some(key) = &message.key else {
                    return Err("an UPSERT message needs a key".into());
                };
                if key_is_null(new_rows, &self.key, row) {
                    return Err(null_key);
                }
                self.check_not_null(new_rows, row)?;
                actions.push(Action::Set {
                    row,
                    message_key: Some(key.clone()),
                });
                Ok(())
            }
            _ => {
                if key_is_null(new_rows, &self.key, row) {
                    return Err(null_key);
                }
                self.check_not_null(new_rows, row)?;
                actions.push(Action::Set {
                    row,
                    message_key: None,
                });
                Ok(())
            }
        }
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
        if let Some(at) = self.retry_at.take() {
            // Stopped at a bad message: read from it again, in case its
            // cause went away (an Avro schema registered meanwhile).
            tokio::time::sleep_until(at.into()).await;
            match &mut self.decoder {
                ValueDecoder::Avro(decoder) => decoder.forget_missing(),
                ValueDecoder::ProtobufRegistry(decoder) => decoder.forget_missing(),
                _ => {}
            }
            self.progress.set_status("running");
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
        if self.decoder.uses_registry() {
            let payloads: Vec<Option<&[u8]>> =
                received.iter().map(|m| m.payload.as_deref()).collect();
            // The writer schemas these messages name, before they decode.
            while let Err(error) = self.decoder.resolve(&payloads).await {
                warn!(topic = %self.options.topic, %error, "schema registry lookup failed");
                self.progress.set_status(format!("stalled: {error}"));
                tokio::time::sleep(RETRY_BACKOFF).await;
            }
            if self.progress.status().starts_with("stalled") {
                self.progress.set_status("running");
            }
        }
        let schema = self.schema.clone();
        let (rows, upserts, message_keys) = match self.rows(&received)? {
            Some(changes) => changes,
            None => (RecordBatch::new_empty(schema), None, Vec::new()),
        };
        // With on_error = 'fail', what follows a bad message is not taken:
        // each partition goes back to its first message not taken.
        let taken = self.stopped.take().unwrap_or(received.len());
        if taken < received.len() {
            self.rewind(&received[taken..]).await?;
            self.retry_at = Some(Instant::now() + FAIL_RETRY);
        }
        // Progress once per partition and batch, not per message.
        let mut read: BTreeMap<i32, (i64, u64)> = BTreeMap::new();
        for message in &received[..taken] {
            let last = self.assigned.entry(message.partition).or_insert(-1);
            *last = (*last).max(message.offset);
            let slot = read.entry(message.partition).or_insert((message.offset, 0));
            slot.0 = slot.0.max(message.offset);
            slot.1 += 1;
        }
        for (partition, (offset, messages)) in read {
            self.progress
                .record(&partition.to_string(), offset, messages);
        }
        let positions = self.assigned.clone();
        Ok(Some(SourceBatch {
            rows,
            upserts,
            message_keys,
            positions: positions
                .into_iter()
                .map(|(p, o)| (p.to_string(), o))
                .collect(),
        }))
    }
}

/// What a batch of messages brings: rows, for a keyed table the upsert
/// each row is, and for UPSERT each row's message key.
type Taken = (RecordBatch, Option<Vec<Upsert>>, Vec<Option<Vec<u8>>>);

fn kafka_error(error: rdkafka::error::KafkaError) -> Error {
    Error::Source(format!("kafka: {error}"))
}
