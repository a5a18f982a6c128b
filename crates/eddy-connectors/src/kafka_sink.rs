//! `connector = 'kafka'` sinks: a view's changes written to a topic.
//!
//! ```sql
//! CREATE SINK best_bids_out FROM best_bids
//!   WITH (connector = 'kafka', topic = 'best-bids',
//!         properties.bootstrap.server = 'localhost:9092', primary_key = 'auction')
//!   FORMAT UPSERT ENCODE JSON;
//! ```
//!
//! `ENCODE AVRO (schema.registry = 'http://...')` registers the sink's
//! schemas when it is created and again when it starts (identical schemas
//! keep their ids) and writes the Confluent wire format.
//!
//! A task of the sink's own takes the epochs the engine hands it, as many
//! as are waiting at once, encodes them ([`crate::sink_format`]), queues
//! every message with librdkafka and waits until the broker has
//! acknowledged all of them before it takes the next epochs, so messages
//! of a key never overtake each other even when librdkafka retries. A
//! message librdkafka gives up on (after `message.timeout.ms`, five
//! minutes by default) fails the sink; while acknowledgements take long
//! the sink shows itself as stalled.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::SchemaRef;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::ClientConfig;
use tokio::sync::mpsc;
use tracing::warn;

use crate::avro::{register_sink_schemas, SinkSchemas};
use crate::kafka::client_settings;
use crate::registry::Registry;
use crate::sink::{SinkChanges, SinkHandle, SinkInputFacts, SinkProgress};
use crate::sink_format::{key_columns, Codec, Message, MessageEncoder};
use crate::spec::{Envelope, SourceSpec};
use crate::{Error, Result};

/// Epochs encoded and written together at most.
const EPOCHS_PER_WRITE: usize = 256;
/// Acknowledgements slower than this make the sink show as stalled.
const STALL_AFTER: Duration = Duration::from_secs(5);
/// Timeout of the topic lookup when the sink is created.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait before queueing again when librdkafka's queue is full.
const QUEUE_FULL_BACKOFF: Duration = Duration::from_millis(5);
/// How long to wait before asking a schema registry that failed again.
const REGISTRY_BACKOFF: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
struct SinkOptions {
    topic: String,
    envelope: Envelope,
    key: Vec<usize>,
    force_append_only: bool,
    /// With `ENCODE AVRO`: where the sink's schemas are registered.
    registry: Option<Registry>,
    client: BTreeMap<String, String>,
}

impl SinkOptions {
    fn parse(spec: &SourceSpec, schema: &SchemaRef) -> Result<Self> {
        let options = &spec.options;
        let required = |key: &str| {
            options
                .get(key)
                .cloned()
                .ok_or_else(|| Error::InvalidConfig(format!("a kafka sink needs {key} = '...'")))
        };
        let topic = required("topic")?;
        let bootstrap = required("properties.bootstrap.server")?;
        let Some(format) = &spec.format else {
            return Err(Error::InvalidConfig(
                "a kafka sink needs FORMAT ... ENCODE ..., e.g. FORMAT UPSERT ENCODE JSON".into(),
            ));
        };
        let Some(envelope) = format.envelope() else {
            return Err(Error::UnsupportedFormat(format!(
                "FORMAT {} on a sink",
                format.format.to_uppercase()
            )));
        };
        let mut encode_options = format.options.clone();
        let registry = match format.encode.as_str() {
            "json" => None,
            "avro" => Some(Registry::for_avro(&mut encode_options)?),
            other => {
                return Err(Error::UnsupportedFormat(format!(
                    "ENCODE {} on a sink",
                    other.to_uppercase()
                )))
            }
        };
        if let Some(key) = encode_options.keys().next() {
            return Err(Error::UnknownOption { key: key.clone() });
        }
        let key = match options.get("primary_key") {
            Some(names) => key_columns(schema, names)?,
            None if envelope == Envelope::Plain => Vec::new(),
            None => {
                return Err(Error::InvalidConfig(format!(
                    "FORMAT {} needs primary_key = '...': the columns that identify a row",
                    format.format.to_uppercase()
                )))
            }
        };
        let force_append_only = match options.get("force_append_only").map(String::as_str) {
            None => false,
            Some(value) => parse_bool("force_append_only", value)?,
        };
        if envelope != Envelope::Plain && force_append_only {
            return Err(Error::InvalidConfig(
                "force_append_only applies to FORMAT PLAIN only".into(),
            ));
        }
        let client = client_settings(options, bootstrap, &["primary_key", "force_append_only"])?;
        Ok(Self {
            topic,
            envelope,
            key,
            force_append_only,
            registry,
            client,
        })
    }

    /// Register the sink's Avro schemas (the registry gives back the ids
    /// of identical schemas registered before).
    async fn avro_schemas(&self, schema: &SchemaRef) -> Result<Option<SinkSchemas>> {
        let Some(registry) = &self.registry else {
            return Ok(None);
        };
        let key = if self.envelope == Envelope::Plain {
            Vec::new()
        } else {
            self.key.clone()
        };
        let schemas = register_sink_schemas(
            registry,
            &self.topic,
            schema,
            &key,
            self.envelope == Envelope::Debezium,
        )
        .await?;
        Ok(Some(schemas))
    }

    fn producer(&self) -> Result<FutureProducer> {
        let mut config = ClientConfig::new();
        config.set("linger.ms", "5");
        for (key, value) in &self.client {
            config.set(key, value);
        }
        config.create().map_err(kafka_error)
    }
}

fn parse_bool(key: &str, value: &str) -> Result<bool> {
    match value.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(Error::invalid_option(
            key,
            value,
            "expected 'true' or 'false'",
        )),
    }
}

/// Check the options and that the topic exists (brokers need not create
/// topics on demand, and a message to a missing topic would wait for
/// minutes before it fails).
pub(crate) async fn check(
    spec: &SourceSpec,
    schema: &SchemaRef,
    facts: SinkInputFacts,
) -> Result<String> {
    let options = SinkOptions::parse(spec, schema)?;
    if options.envelope == Envelope::Plain && !facts.append_only && !options.force_append_only {
        return Err(Error::UnsupportedFormat(
            "FORMAT PLAIN on a sink whose input can update or delete rows (FORMAT PLAIN is for append-only input): use FORMAT UPSERT or DEBEZIUM with primary_key, or force_append_only = 'true' to drop deletes".into(),
        ));
    }
    let producer = options.producer()?;
    let topic = options.topic.clone();
    tokio::task::spawn_blocking(move || {
        let metadata = producer
            .client()
            .fetch_metadata(Some(&topic), REQUEST_TIMEOUT)
            .map_err(kafka_error)?;
        let found = metadata.topics().iter().find(|t| t.name() == topic);
        match found {
            Some(found) if found.error().is_none() && !found.partitions().is_empty() => Ok(()),
            _ => Err(Error::Sink(format!(
                "kafka: topic \"{topic}\" does not exist (create it first)"
            ))),
        }
    })
    .await
    .map_err(|e| Error::Sink(format!("topic lookup did not finish: {e}")))??;
    options
        .avro_schemas(schema)
        .await
        .map_err(|e| Error::Sink(e.to_string()))?;
    Ok(options.topic)
}

/// Start a Kafka sink.
pub(crate) fn open(
    spec: &SourceSpec,
    schema: &SchemaRef,
    progress: Arc<SinkProgress>,
) -> Result<SinkHandle> {
    let options = SinkOptions::parse(spec, schema)?;
    let producer = options.producer()?;
    let runtime = tokio::runtime::Handle::try_current()
        .map_err(|_| Error::Sink("sinks need a tokio runtime".into()))?;
    let (sender, receiver) = mpsc::unbounded_channel();
    let task = runtime.spawn(run(
        receiver,
        producer,
        options,
        schema.clone(),
        progress.clone(),
    ));
    Ok(SinkHandle::new(sender, progress, task))
}

/// The sink's encoder; with `ENCODE AVRO` once its schemas are registered
/// (retried while the registry does not answer).
async fn encoder(
    options: &SinkOptions,
    schema: &SchemaRef,
    progress: &SinkProgress,
) -> MessageEncoder {
    let codec = loop {
        match options.avro_schemas(schema).await {
            Ok(None) => break Codec::Json,
            Ok(Some(schemas)) => break Codec::Avro(Arc::new(schemas)),
            Err(error) => {
                warn!(sink = %progress.sink(), %error, "schema registration failed");
                progress.set_status(format!("stalled: {error}"));
                tokio::time::sleep(REGISTRY_BACKOFF).await;
            }
        }
    };
    if progress.status().starts_with("stalled") {
        progress.set_status("running");
    }
    MessageEncoder::new(
        codec,
        options.envelope,
        options.key.clone(),
        options.force_append_only,
    )
}

async fn run(
    mut receiver: mpsc::UnboundedReceiver<SinkChanges>,
    producer: FutureProducer,
    options: SinkOptions,
    schema: SchemaRef,
    progress: Arc<SinkProgress>,
) {
    let encoder = encoder(&options, &schema, &progress).await;
    let topic = options.topic;
    while let Some(first) = receiver.recv().await {
        let mut epochs = vec![first];
        while epochs.len() < EPOCHS_PER_WRITE {
            match receiver.try_recv() {
                Ok(more) => epochs.push(more),
                Err(_) => break,
            }
        }
        let written = match encoder.encode(&epochs) {
            Ok(messages) => write(&producer, &topic, &messages, &progress).await,
            Err(error) => Err(error),
        };
        match written {
            Ok(messages) => progress.add_delivered(epochs.len() as u64, messages),
            Err(error) => {
                warn!(sink = %progress.sink(), %error, "sink failed");
                progress.set_status(format!("failed: {error}"));
                return;
            }
        }
    }
}

/// Queue every message and wait for all acknowledgements.
async fn write(
    producer: &FutureProducer,
    topic: &str,
    messages: &[Message],
    progress: &SinkProgress,
) -> Result<u64> {
    let mut deliveries: Vec<DeliveryFuture> = Vec::with_capacity(messages.len());
    for message in messages {
        loop {
            let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic);
            if let Some(key) = &message.key {
                record = record.key(key.as_slice());
            }
            if let Some(value) = &message.value {
                record = record.payload(value.as_slice());
            }
            match producer.send_result(record) {
                Ok(delivery) => {
                    deliveries.push(delivery);
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    tokio::time::sleep(QUEUE_FULL_BACKOFF).await;
                }
                Err((error, _)) => return Err(kafka_error(error)),
            }
        }
    }
    let mut stalled = false;
    let mut delivered = 0u64;
    for delivery in deliveries {
        tokio::pin!(delivery);
        let outcome = loop {
            match tokio::time::timeout(STALL_AFTER, &mut delivery).await {
                Ok(outcome) => break outcome,
                Err(_) => {
                    stalled = true;
                    progress.set_status(format!(
                        "stalled: waiting for the broker to acknowledge {} messages",
                        messages.len() as u64 - delivered
                    ));
                }
            }
        };
        match outcome {
            Ok(Ok(_)) => delivered += 1,
            Ok(Err((error, _))) => return Err(kafka_error(error)),
            Err(_) => return Err(Error::Sink("kafka: the producer went away".into())),
        }
    }
    if stalled {
        progress.set_status("running");
    }
    Ok(delivered)
}

fn kafka_error(error: KafkaError) -> Error {
    Error::Sink(format!("kafka: {error}"))
}
