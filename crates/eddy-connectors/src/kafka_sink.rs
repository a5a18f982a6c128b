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
//!
//! An exactly-once sink (a durable engine; `exactly_once = 'false'` turns
//! it off for brokers without transactions) is a transactional producer
//! with the transactional id the engine gives it. Each checkpoint's
//! changes are one transaction: the messages, each with header
//! `eddy.epoch` (the checkpoint), and a progress record in the progress
//! topic (`progress.topic`, default `eddy-progress`, created compacted
//! with one partition if missing) keyed by the transactional id, valued
//! `{"epoch": E, "messages": N}`. At start the sink fences its earlier
//! incarnation (`init_transactions`, which aborts a transaction a crash
//! left open), reads its last committed epoch back from the progress topic
//! with `isolation.level = read_committed`, and writes again, in one
//! transaction, the checkpoints the engine kept that come after it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::SchemaRef;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message as _, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::avro::{register_sink_schemas, SinkSchemas};
use crate::kafka::client_settings;
use crate::registry::Registry;
use crate::sink::{ExactlyOnce, Reach, SinkChanges, SinkHandle, SinkInputFacts, SinkProgress};
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
/// Timeout of one transactional call (`init_transactions`, commit, abort).
const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(30);
/// How long to wait before retrying a transaction that was aborted.
const TRANSACTION_BACKOFF: Duration = Duration::from_millis(200);
/// How long reading the progress topic back may take.
const PROGRESS_TIMEOUT: Duration = Duration::from_secs(60);
/// The header each message of an exactly-once sink carries: the
/// checkpoint whose transaction wrote it.
pub const EPOCH_HEADER: &str = "eddy.epoch";
/// Where exactly-once sinks record their progress unless told otherwise.
pub const DEFAULT_PROGRESS_TOPIC: &str = "eddy-progress";

#[derive(Debug, Clone)]
struct SinkOptions {
    topic: String,
    envelope: Envelope,
    key: Vec<usize>,
    force_append_only: bool,
    /// With `ENCODE AVRO`: where the sink's schemas are registered.
    registry: Option<Registry>,
    /// Where an exactly-once sink records its progress.
    progress_topic: String,
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
        let progress_topic = options
            .get("progress.topic")
            .cloned()
            .unwrap_or_else(|| DEFAULT_PROGRESS_TOPIC.to_string());
        let client = client_settings(
            options,
            bootstrap,
            &[
                "primary_key",
                "force_append_only",
                "exactly_once",
                "progress.topic",
            ],
        )?;
        if client.contains_key("transactional.id") {
            return Err(Error::InvalidConfig(
                "properties.transactional.id is set by Eddy for exactly-once sinks".into(),
            ));
        }
        Ok(Self {
            topic,
            envelope,
            key,
            force_append_only,
            registry,
            progress_topic,
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

    fn config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        for (key, value) in &self.client {
            config.set(key, value);
        }
        config
    }

    /// The sink's producer; transactional with `transactional_id`.
    fn producer(&self, transactional_id: Option<&str>) -> Result<FutureProducer> {
        let mut config = self.config();
        if !self.client.contains_key("linger.ms") {
            config.set("linger.ms", "5");
        }
        if let Some(id) = transactional_id {
            config.set("transactional.id", id);
        }
        config.create().map_err(kafka_error)
    }
}

pub(crate) fn parse_bool(key: &str, value: &str) -> Result<bool> {
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
    reach: Reach,
) -> Result<()> {
    let options = SinkOptions::parse(spec, schema)?;
    if options.envelope == Envelope::Plain && !facts.append_only && !options.force_append_only {
        return Err(Error::UnsupportedFormat(
            "FORMAT PLAIN on a sink whose input can update or delete rows (FORMAT PLAIN is for append-only input): use FORMAT UPSERT or DEBEZIUM with primary_key, or force_append_only = 'true' to drop deletes".into(),
        ));
    }
    if reach == Reach::OptionsOnly {
        return Ok(());
    }
    let producer = options.producer(None)?;
    if !topic_exists(&producer, &options.topic).await? {
        return Err(Error::Sink(format!(
            "kafka: topic \"{}\" does not exist (create it first)",
            options.topic
        )));
    }
    if facts.exactly_once {
        if !topic_exists(&producer, &options.progress_topic).await? {
            create_progress_topic(&options).await?;
        }
        probe_transactions(&options).await?;
    }
    options
        .avro_schemas(schema)
        .await
        .map_err(|e| Error::Sink(e.to_string()))?;
    Ok(())
}

/// Commit one transaction, as an exactly-once sink will, so that a broker
/// without transactions fails `CREATE SINK` rather than the running sink.
/// The transaction writes a tombstone to the progress topic under a key of
/// its own (compaction removes it; progress records are read by their
/// sink's key). Some brokers (tansu) grant producer ids but refuse to end
/// a transaction, so nothing short of a commit tells.
async fn probe_transactions(options: &SinkOptions) -> Result<()> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let id = format!("eddy-probe-{}-{nanos}", std::process::id());
    let producer = options.producer(Some(&id))?;
    let topic = options.progress_topic.clone();
    let unsupported = |error: &KafkaError| match error {
        KafkaError::Transaction(inner) => inner.code() == RDKafkaErrorCode::UnsupportedFeature,
        _ => false,
    };
    let outcome = tokio::task::spawn_blocking(move || -> rdkafka::error::KafkaResult<()> {
        producer.init_transactions(TRANSACTION_TIMEOUT)?;
        producer.begin_transaction()?;
        let record: FutureRecord<'_, str, [u8]> = FutureRecord::to(&topic).key(id.as_str());
        producer.send_result(record).map_err(|(error, _)| error)?;
        producer.commit_transaction(TRANSACTION_TIMEOUT)
    })
    .await
    .map_err(|error| {
        Error::Sink(format!(
            "kafka: the transaction probe did not finish: {error}"
        ))
    })?;
    match outcome {
        Ok(()) => Ok(()),
        Err(error) if unsupported(&error) => Err(Error::UnsupportedFormat(format!(
            "an exactly-once sink on a broker without transactions (set exactly_once = 'false' for an at-least-once sink; the broker said: {error})"
        ))),
        Err(error) => Err(Error::Sink(format!(
            "kafka: a test transaction failed ({error}); exactly-once sinks need the broker's transactions, or set exactly_once = 'false'"
        ))),
    }
}

/// True if `topic` exists and has partitions.
async fn topic_exists(producer: &FutureProducer, topic: &str) -> Result<bool> {
    let producer = producer.clone();
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || {
        let metadata = producer
            .client()
            .fetch_metadata(Some(&topic), REQUEST_TIMEOUT)
            .map_err(kafka_error)?;
        let found = metadata.topics().iter().find(|t| t.name() == topic);
        Ok(found.is_some_and(|t| t.error().is_none() && !t.partitions().is_empty()))
    })
    .await
    .map_err(|e| Error::Sink(format!("topic lookup did not finish: {e}")))?
}

/// Create the progress topic: one partition, compacted (only each sink's
/// last record matters), the broker's default replication.
async fn create_progress_topic(options: &SinkOptions) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> =
        options.config().create().map_err(kafka_error)?;
    let topic = NewTopic::new(&options.progress_topic, 1, TopicReplication::Fixed(-1))
        .set("cleanup.policy", "compact");
    let admin_options = AdminOptions::new().operation_timeout(Some(REQUEST_TIMEOUT));
    let results = admin
        .create_topics([&topic], &admin_options)
        .await
        .map_err(kafka_error)?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(Error::Sink(format!(
                    "kafka: the progress topic \"{topic}\" of an exactly-once sink does not exist and could not be created ({code}); create it, name another with progress.topic = '...', or set exactly_once = 'false'"
                )))
            }
        }
    }
    Ok(())
}

/// Start a Kafka sink; exactly once with `exactly_once`.
pub(crate) fn open(
    spec: &SourceSpec,
    schema: &SchemaRef,
    progress: Arc<SinkProgress>,
    exactly_once: Option<ExactlyOnce>,
) -> Result<SinkHandle> {
    let options = SinkOptions::parse(spec, schema)?;
    let producer = options.producer(exactly_once.as_ref().map(|e| e.id.as_str()))?;
    if let Some(exactly_once) = &exactly_once {
        progress.set_exactly_once();
        // Kept checkpoints count as handed over (FLUSH waits for them);
        // those found committed count as delivered once that is known.
        progress.add_queued(exactly_once.unconfirmed.len() as u64);
    }
    let runtime = tokio::runtime::Handle::try_current()
        .map_err(|_| Error::Sink("sinks need a tokio runtime".into()))?;
    let (sender, receiver) = mpsc::unbounded_channel();
    let task = runtime.spawn(run(
        receiver,
        producer,
        options,
        schema.clone(),
        progress.clone(),
        exactly_once,
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
    receiver: mpsc::UnboundedReceiver<SinkChanges>,
    producer: FutureProducer,
    options: SinkOptions,
    schema: SchemaRef,
    progress: Arc<SinkProgress>,
    exactly_once: Option<ExactlyOnce>,
) {
    let encoder = encoder(&options, &schema, &progress).await;
    let sink = Sink {
        producer,
        options,
        encoder,
        progress,
    };
    let outcome = match exactly_once {
        None => sink.at_least_once(receiver).await,
        Some(exactly_once) => sink.exactly_once(receiver, exactly_once).await,
    };
    if let Err(error) = outcome {
        warn!(sink = %sink.progress.sink(), %error, "sink failed");
        sink.progress.set_status(format!("failed: {error}"));
    }
}

/// The epochs waiting, at least one; `None` once the engine dropped the
/// sink.
async fn next_epochs(
    receiver: &mut mpsc::UnboundedReceiver<SinkChanges>,
) -> Option<Vec<SinkChanges>> {
    let mut epochs = vec![receiver.recv().await?];
    while epochs.len() < EPOCHS_PER_WRITE {
        match receiver.try_recv() {
            Ok(more) => epochs.push(more),
            Err(_) => break,
        }
    }
    Some(epochs)
}

/// A running Kafka sink's task.
struct Sink {
    producer: FutureProducer,
    options: SinkOptions,
    encoder: MessageEncoder,
    progress: Arc<SinkProgress>,
}

/// Why a transaction did not commit.
enum Aborted {
    /// Abort it and try the same again.
    Retry(Error),
    /// The sink cannot go on (fenced by a newer incarnation, say).
    Fatal(Error),
}

impl Sink {
    async fn at_least_once(
        &self,
        mut receiver: mpsc::UnboundedReceiver<SinkChanges>,
    ) -> Result<()> {
        while let Some(epochs) = next_epochs(&mut receiver).await {
            let messages = self.encoder.encode(&epochs)?;
            let delivered = write(
                &self.producer,
                &self.options.topic,
                &messages,
                None,
                &self.progress,
            )
            .await?;
            self.progress.add_delivered(epochs.len() as u64, delivered);
        }
        Ok(())
    }

    async fn exactly_once(
        &self,
        mut receiver: mpsc::UnboundedReceiver<SinkChanges>,
        exactly_once: ExactlyOnce,
    ) -> Result<()> {
        // A broker that is away at start is waited for, as a source waits.
        loop {
            match self
                .transactional(|p| p.init_transactions(TRANSACTION_TIMEOUT))
                .await
            {
                Ok(()) => break,
                Err(KafkaError::Transaction(inner)) if inner.is_retriable() => {
                    warn!(sink = %self.progress.sink(), error = %inner, "transactions could not start; trying again");
                    self.progress.set_status(format!("stalled: kafka: {inner}"));
                    tokio::time::sleep(TRANSACTION_BACKOFF).await;
                }
                Err(error) => {
                    return Err(Error::Sink(format!(
                        "kafka: transactions could not start ({error}); a broker without transactions needs exactly_once = 'false'"
                    )))
                }
            }
        }
        let ExactlyOnce { id, unconfirmed } = exactly_once;
        let committed = loop {
            match read_progress(&self.options, &id).await {
                Ok(committed) => break committed,
                Err(error) => {
                    warn!(sink = %self.progress.sink(), %error, "progress not read; trying again");
                    self.progress.set_status(format!("stalled: {error}"));
                    tokio::time::sleep(TRANSACTION_BACKOFF).await;
                }
            }
        };
        if self.progress.status().starts_with("stalled") {
            self.progress.set_status("running");
        }
        self.progress.set_committed_epoch(committed);
        let kept = unconfirmed.len();
        let again: Vec<SinkChanges> = unconfirmed
            .into_iter()
            .filter(|c| c.epoch > committed)
            .collect();
        self.progress.add_delivered((kept - again.len()) as u64, 0);
        info!(
            sink = %self.progress.sink(),
            committed,
            again = again.len(),
            "exactly-once sink started"
        );
        if !again.is_empty() {
            self.commit(&id, again).await?;
        }
        while let Some(epochs) = next_epochs(&mut receiver).await {
            self.commit(&id, epochs).await?;
        }
        Ok(())
    }

    /// Write `epochs` in one transaction with their progress record,
    /// aborting and trying again until it commits.
    async fn commit(&self, id: &str, epochs: Vec<SinkChanges>) -> Result<()> {
        let epoch = epochs.iter().map(|c| c.epoch).max().unwrap_or(0);
        let messages = self.encoder.encode(&epochs)?;
        loop {
            match self.transaction(id, epoch, &messages).await {
                Ok(()) => break,
                Err(Aborted::Fatal(error)) => return Err(error),
                Err(Aborted::Retry(error)) => {
                    warn!(sink = %self.progress.sink(), %error, epoch, "transaction aborted; trying again");
                    self.progress.set_status(format!("stalled: {error}"));
                    if let Err(error) = self
                        .transactional(|p| p.abort_transaction(TRANSACTION_TIMEOUT))
                        .await
                    {
                        return Err(kafka_error(error));
                    }
                    tokio::time::sleep(TRANSACTION_BACKOFF).await;
                }
            }
        }
        if self.progress.status().starts_with("stalled") {
            self.progress.set_status("running");
        }
        self.progress.set_committed_epoch(epoch);
        self.progress
            .add_delivered(epochs.len() as u64, messages.len() as u64);
        Ok(())
    }

    async fn transaction(
        &self,
        id: &str,
        epoch: u64,
        messages: &[Message],
    ) -> std::result::Result<(), Aborted> {
        let classify = |error: KafkaError| match &error {
            KafkaError::Transaction(inner) if inner.is_fatal() => {
                Aborted::Fatal(kafka_error(error))
            }
            _ => Aborted::Retry(kafka_error(error)),
        };
        self.producer.begin_transaction().map_err(classify)?;
        write(
            &self.producer,
            &self.options.topic,
            messages,
            Some(epoch),
            &self.progress,
        )
        .await
        .map_err(Aborted::Retry)?;
        let record = format!(r#"{{"epoch": {epoch}, "messages": {}}}"#, messages.len());
        let progress = Message {
            key: Some(id.as_bytes().to_vec()),
            value: Some(record.into_bytes()),
        };
        write(
            &self.producer,
            &self.options.progress_topic,
            &[progress],
            None,
            &self.progress,
        )
        .await
        .map_err(Aborted::Retry)?;
        loop {
            match self
                .transactional(|p| p.commit_transaction(TRANSACTION_TIMEOUT))
                .await
            {
                Ok(()) => return Ok(()),
                Err(KafkaError::Transaction(inner))
                    if inner.code() == RDKafkaErrorCode::UnsupportedFeature =>
                {
                    return Err(Aborted::Fatal(Error::Sink(format!(
                        "kafka: {inner}: the broker does not support transactions; set exactly_once = 'false' for an at-least-once sink"
                    ))));
                }
                // librdkafka wants a retriable commit retried, not aborted.
                Err(KafkaError::Transaction(inner)) if inner.is_retriable() => {
                    warn!(sink = %self.progress.sink(), error = %inner, "commit failed; trying again");
                    self.progress.set_status(format!("stalled: kafka: {inner}"));
                    tokio::time::sleep(TRANSACTION_BACKOFF).await;
                }
                Err(error) => return Err(classify(error)),
            }
        }
    }

    /// Run a blocking transactional call of the producer.
    async fn transactional(
        &self,
        call: impl FnOnce(&FutureProducer) -> rdkafka::error::KafkaResult<()> + Send + 'static,
    ) -> rdkafka::error::KafkaResult<()> {
        let producer = self.producer.clone();
        match tokio::task::spawn_blocking(move || call(&producer)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(KafkaError::Canceled),
        }
    }
}

/// The last epoch the sink `id` committed, as its progress records say
/// (0: none). Reads the progress topic to its end with
/// `isolation.level = read_committed`.
async fn read_progress(options: &SinkOptions, id: &str) -> Result<u64> {
    let mut config = options.config();
    config
        .set("group.id", "eddy-progress")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed");
    let topic = options.progress_topic.clone();
    let id = id.to_string();
    tokio::task::spawn_blocking(move || -> Result<u64> {
        let consumer: BaseConsumer = config.create().map_err(kafka_error)?;
        let metadata = consumer
            .fetch_metadata(Some(&topic), REQUEST_TIMEOUT)
            .map_err(kafka_error)?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .filter(|t| t.name() == topic)
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        if partitions.is_empty() {
            return Err(Error::Sink(format!("kafka: the progress topic \"{topic}\" does not exist")));
        }
        let mut assignment = TopicPartitionList::new();
        for partition in &partitions {
            assignment
                .add_partition_offset(&topic, *partition, Offset::Beginning)
                .map_err(kafka_error)?;
        }
        consumer.assign(&assignment).map_err(kafka_error)?;
        let mut open: std::collections::BTreeSet<i32> = partitions.into_iter().collect();
        let mut committed = 0u64;
        let deadline = std::time::Instant::now() + PROGRESS_TIMEOUT;
        while !open.is_empty() {
            if std::time::Instant::now() > deadline {
                return Err(Error::Sink(format!(
                    "kafka: the progress topic \"{topic}\" was not read to its end within {PROGRESS_TIMEOUT:?}"
                )));
            }
            match consumer.poll(Duration::from_millis(100)) {
                None => {}
                Some(Err(KafkaError::PartitionEOF(partition))) => {
                    open.remove(&partition);
                }
                Some(Err(error)) => warn!(%error, "reading the progress topic"),
                Some(Ok(message)) if message.key() == Some(id.as_bytes()) => {
                    if let Some(epoch) = message.payload().and_then(progress_epoch) {
                        committed = committed.max(epoch);
                    }
                }
                Some(Ok(_)) => {}
            }
        }
        Ok(committed)
    })
    .await
    .map_err(|e| Error::Sink(format!("reading the progress topic did not finish: {e}")))?
}

/// The epoch of a progress record `{"epoch": E, ...}`.
fn progress_epoch(payload: &[u8]) -> Option<u64> {
    let value: serde_json::Value = serde_json::from_slice(payload).ok()?;
    value.get("epoch")?.as_u64()
}

/// Queue every message and wait for all acknowledgements.
async fn write(
    producer: &FutureProducer,
    topic: &str,
    messages: &[Message],
    epoch: Option<u64>,
    progress: &SinkProgress,
) -> Result<u64> {
    let mut deliveries: Vec<DeliveryFuture> = Vec::with_capacity(messages.len());
    let epoch = epoch.map(|e| e.to_string());
    for message in messages {
        loop {
            let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic);
            if let Some(epoch) = &epoch {
                record = record.headers(OwnedHeaders::new().insert(Header {
                    key: EPOCH_HEADER,
                    value: Some(epoch.as_bytes()),
                }));
            }
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
