//! Kafka JSON sources through a local tansu broker.
//!
//! Throughput: the whole input is produced first (librdkafka batching,
//! before Eddy reads anything), so that the producer's work is not in the
//! measured stretch; then each run gets an engine of its own and is timed
//! from `CREATE MATERIALIZED VIEW` (the source reads from the earliest
//! offset) until the epoch that holds the last offset is committed. The end
//! is found from the reader's committed offsets, not with `FLUSH`: with
//! multi-record batches tansu reports a high watermark short of the end.
//!
//! Freshness: a child process produces at a steady rate and records when it
//! hands each message to librdkafka; this process polls the committed
//! snapshot's `max(seq)` and records when each sequence number first shows.
//! Both sides stamp with the system clock of the same machine.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use eddy_engine::Engine;
use futures::FutureExt;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::broker::Broker;
use crate::{expect_equal, BoxError, Eddy, Figure, Meter, Result, Usage, View};

/// The issue's target for Kafka JSON, events/s per core.
const JSON_TARGET: f64 = 5e5;
/// The issue's target for freshness: p99 at most this.
const FRESHNESS_TARGET: Duration = Duration::from_millis(100);
/// How long a run may take before the bench gives up.
const RUN_TIMEOUT: Duration = Duration::from_secs(600);
/// How long the freshness run waits, after the producer ends, for the
/// last message to show.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);
const THROUGHPUT_TOPIC: &str = "bids";
const CHECKPOINT_TOPIC: &str = "durable_bids";
const FRESHNESS_TOPIC: &str = "fresh_bids";

const CHANNELS: [&str; 4] = ["Google", "Facebook", "Baidu", "Apple"];

/// Message `seq` of the input: a bid-like JSON object of about 130 bytes.
fn write_event(out: &mut String, seq: u64) {
    let auction = 1000 + seq.wrapping_mul(7919) % 10_000;
    let bidder = bidder_of(seq);
    let price = 1 + seq.wrapping_mul(31) % 10_000;
    let channel = CHANNELS[(seq % 4) as usize];
    let millis = seq % 86_400_000;
    let _ = write!(
        out,
        r#"{{"seq":{seq},"auction":{auction},"bidder":{bidder},"price":{price},"channel":"{channel}","date_time":"2024-01-01T{:02}:{:02}:{:02}.{:03}Z"}}"#,
        millis / 3_600_000,
        millis / 60_000 % 60,
        millis / 1000 % 60,
        millis % 1000,
    );
}

fn source_sql(topic: &str, bootstrap: &str, extra: &[(String, String)]) -> String {
    let mut options = format!(
        "connector = 'kafka', topic = '{topic}', properties.bootstrap.server = '{bootstrap}', \
         scan.startup.mode = 'earliest'"
    );
    for (key, value) in extra {
        let _ = write!(options, ", {key} = '{value}'");
    }
    format!(
        "CREATE SOURCE s (seq BIGINT, auction BIGINT, bidder BIGINT, price BIGINT, \
         channel VARCHAR, date_time TIMESTAMP) WITH ({options}) FORMAT PLAIN ENCODE JSON"
    )
}

fn view_sql(view: View) -> &'static str {
    match view {
        View::Passthrough => {
            "CREATE MATERIALIZED VIEW v AS \
             SELECT seq, auction, bidder, price, channel, date_time FROM s"
        }
        View::Groupby => {
            "CREATE MATERIALIZED VIEW v AS \
             SELECT auction, count(*) AS events, max(price) AS top_price FROM s GROUP BY auction"
        }
        View::Count => {
            "CREATE MATERIALIZED VIEW v AS SELECT count(*) AS events, max(seq) AS last_seq FROM s"
        }
    }
}

/// Counts failed deliveries of a producer and, where asked, records when
/// each message's delivery was reported (by sequence number, the message's
/// delivery opaque).
#[derive(Default)]
struct Deliveries {
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
    acked: Mutex<Vec<u64>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, seq: usize) {
        match result {
            Ok(_) => {
                if let Ok(mut acked) = self.acked.lock() {
                    if let Some(slot) = acked.get_mut(seq) {
                        *slot = unix_nanos();
                    }
                }
            }
            Err((error, _)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut first) = self.first_error.lock() {
                    first.get_or_insert_with(|| error.to_string());
                }
            }
        }
    }
}

impl Deliveries {
    /// Record delivery times of sequence numbers below `messages`.
    fn recording(messages: u64) -> Self {
        Self {
            acked: Mutex::new(vec![0; messages as usize]),
            ..Self::default()
        }
    }

    fn check(&self) -> Result<()> {
        let failed = self.failed.load(Ordering::Relaxed);
        if failed == 0 {
            return Ok(());
        }
        let first = self.first_error.lock().ok().and_then(|e| e.clone());
        Err(format!("{failed} messages were not delivered (first: {first:?})").into())
    }
}

fn producer(
    config: &mut ClientConfig,
    linger_ms: u64,
    deliveries: Deliveries,
) -> Result<BaseProducer<Deliveries>> {
    Ok(config
        .set("linger.ms", linger_ms.to_string())
        .set("batch.num.messages", "10000")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .set("message.timeout.ms", "60000")
        .create_with_context(deliveries)?)
}

/// Hand message `seq` to librdkafka, waiting while its queue is full.
/// The bidder of event `seq` (see `write_event`).
fn bidder_of(seq: u64) -> u64 {
    1000 + seq.wrapping_mul(104_729) % 100_000
}

fn send(
    producer: &BaseProducer<Deliveries>,
    topic: &str,
    payload: &str,
    key: Option<&str>,
    seq: u64,
) -> Result<()> {
    loop {
        let mut record = BaseRecord::<str, str, usize>::with_opaque_to(topic, seq as usize)
            .partition(0)
            .payload(payload);
        if let Some(key) = key {
            record = record.key(key);
        }
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                producer.poll(Duration::from_millis(1));
            }
            Err((error, _)) => return Err(error.into()),
        }
    }
}

pub fn throughput(
    runtime: &tokio::runtime::Runtime,
    broker: &Broker,
    messages: u64,
    views: &[View],
    source_options: &[(String, String)],
) -> Result<Vec<Figure>> {
    broker.create_topic(runtime, THROUGHPUT_TOPIC)?;
    produce_backlog(broker, THROUGHPUT_TOPIC, messages, false)?;
    let with_broker = |run: &dyn Fn() -> Result<Figure>| -> Result<Figure> {
        let before = broker.cpu_time();
        let mut figure = run()?;
        figure.broker_cpu = Some(broker.cpu_time().saturating_sub(before));
        Ok(figure)
    };
    let mut figures = vec![with_broker(&|| {
        consumer_alone(broker, messages, source_options)
    })?];
    figures.push(with_broker(&|| {
        runtime.block_on(stream_consumer_alone(broker, messages, source_options))
    })?);
    for view in views {
        println!("kafka: {} ...", view.label());
        figures.push(with_broker(&|| {
            runtime.block_on(through_view(broker, *view, messages, source_options))
        })?);
    }
    Ok(figures)
}

/// Produce `messages` events to `topic`, `keyed` by their bidder.
fn produce_backlog(broker: &Broker, topic: &str, messages: u64, keyed: bool) -> Result<()> {
    let producer = producer(&mut broker.client_config(), 20, Deliveries::default())?;
    let started = Instant::now();
    let mut payload = String::with_capacity(192);
    let mut bytes = 0u64;
    for seq in 0..messages {
        payload.clear();
        write_event(&mut payload, seq);
        bytes += payload.len() as u64;
        let key = keyed.then(|| bidder_of(seq).to_string());
        send(&producer, topic, &payload, key.as_deref(), seq)?;
        if seq % 1024 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    producer.flush(Duration::from_secs(300))?;
    producer.context().check()?;
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "kafka: produced {messages} messages ({:.0} bytes each on average) in {elapsed:.1}s ({:.0}/s), before any reader",
        bytes as f64 / messages.max(1) as f64,
        messages as f64 / elapsed
    );
    Ok(())
}

/// A bare librdkafka consumer reading the backlog and copying payloads out
/// (as Eddy's reader does), with the sources' `properties.*` options: the
/// floor under Eddy's Kafka figures.
fn consumer_alone(
    broker: &Broker,
    messages: u64,
    source_options: &[(String, String)],
) -> Result<Figure> {
    let mut config = broker.client_config();
    config
        .set("group.id", "eddy-bench-consumer")
        .set("enable.auto.commit", "false");
    for (key, value) in source_options {
        if let Some(property) = key.strip_prefix("properties.") {
            config.set(property, value);
        }
    }
    let consumer: BaseConsumer = config.create()?;
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(THROUGHPUT_TOPIC, 0, Offset::Beginning)?;
    let meter = Meter::start();
    consumer.assign(&assignment)?;
    let deadline = Instant::now() + RUN_TIMEOUT;
    let mut read = 0u64;
    let mut last = -1i64;
    let mut bytes = 0usize;
    while read < messages && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                read += 1;
                last = last.max(message.offset());
                bytes += message.payload().map(<[u8]>::to_vec).map_or(0, |p| p.len());
            }
            Some(Err(error)) => return Err(error.into()),
            None => {}
        }
    }
    let usage = meter.stop();
    let check = expect_equal("messages read", Some(read as i64), messages).and_then(|()| {
        expect_equal("last offset + 1", Some(last + 1), messages)?;
        (bytes > 0)
            .then_some(())
            .ok_or_else(|| "no payload bytes".to_string())
    });
    Ok(Figure {
        name: "librdkafka consumer alone (copy, no decode)".into(),
        events: read,
        usage,
        target: None,
        check,
        broker_cpu: None,
        epochs: None,
    })
}

/// The stream consumer Eddy's reader uses, read the way the reader reads
/// it (await one message, then take what is queued, up to 8192), copying
/// payloads out: what the reader's librdkafka side costs without decoding.
async fn stream_consumer_alone(
    broker: &Broker,
    messages: u64,
    source_options: &[(String, String)],
) -> Result<Figure> {
    let mut config = broker.client_config();
    config
        .set("group.id", "eddy-bench-stream-consumer")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false");
    for (key, value) in source_options {
        if let Some(property) = key.strip_prefix("properties.") {
            config.set(property, value);
        }
    }
    let consumer: StreamConsumer = config.create()?;
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(THROUGHPUT_TOPIC, 0, Offset::Offset(0))?;
    let meter = Meter::start();
    consumer.incremental_assign(&assignment)?;
    let mut read = 0u64;
    let mut last = -1i64;
    let deadline = Instant::now() + RUN_TIMEOUT;
    while read < messages && Instant::now() < deadline {
        let mut batch: Vec<Option<Vec<u8>>> = Vec::with_capacity(8192);
        let first = consumer.recv().await?;
        last = last.max(first.offset());
        batch.push(first.payload().map(<[u8]>::to_vec));
        drop(first);
        while batch.len() < 8192 {
            match consumer.recv().now_or_never() {
                Some(Ok(message)) => {
                    last = last.max(message.offset());
                    batch.push(message.payload().map(<[u8]>::to_vec));
                }
                _ => break,
            }
        }
        read += batch.len() as u64;
    }
    let usage = meter.stop();
    let check = expect_equal("messages read", Some(read as i64), messages)
        .and_then(|()| expect_equal("last offset + 1", Some(last + 1), messages));
    Ok(Figure {
        name: "rdkafka StreamConsumer alone (as the reader)".into(),
        events: read,
        usage,
        target: None,
        check,
        broker_cpu: None,
        epochs: None,
    })
}

async fn through_view(
    broker: &Broker,
    view: View,
    messages: u64,
    source_options: &[(String, String)],
) -> Result<Figure> {
    let eddy = Eddy::new()?;
    eddy.execute(&source_sql(
        THROUGHPUT_TOPIC,
        &broker.bootstrap(),
        source_options,
    ))
    .await?;
    let epoch_before = eddy.engine.snapshot().epoch;
    let meter = Meter::start();
    eddy.execute(view_sql(view)).await?;
    let progress = eddy.progress("v")?;
    let end = BTreeMap::from([("0".to_string(), messages as i64)]);
    let deadline = Instant::now() + RUN_TIMEOUT;
    while !progress.has_committed(&end) {
        let status = progress.status();
        if status.starts_with("failed") || Instant::now() >= deadline {
            return Err(format!("kafka source: {status}").into());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // Offsets are marked committed inside the epoch that commits them; the
    // writer's turn is free again once that epoch is published.
    drop(eddy.engine.write().await);
    let usage = meter.stop();
    let epochs = eddy.engine.snapshot().epoch - epoch_before;
    let check = match view {
        View::Passthrough => expect_equal(
            "count(*) of the view",
            eddy.query_i64("SELECT count(*) FROM v").await?,
            messages,
        ),
        View::Groupby => expect_equal(
            "sum(events) of the view",
            eddy.query_i64("SELECT sum(events) FROM v").await?,
            messages,
        ),
        View::Count => expect_equal("events", eddy.read_i64("v", "events")?, messages),
    };
    let check = match check {
        Ok(()) => Ok(()),
        Err(problem) => {
            let bad = eddy
                .query_i64("SELECT count(*) FROM eddy_catalog.source_errors")
                .await?;
            Err(format!("{problem}; bad messages: {bad:?}"))
        }
    };
    Ok(Figure {
        name: format!("kafka json -> {}", view.label()),
        events: messages,
        usage,
        target: Some(JSON_TARGET),
        check,
        broker_cpu: None,
        epochs: Some(epochs),
    })
}

/// What the checkpoint runs read the topic as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Durable {
    /// A Kafka source: a checkpoint stores the view's changed groups and
    /// the reader's offsets.
    Source,
    /// An append-only Kafka connector table: a checkpoint stores every row
    /// it took, its offsets, and the view's changed groups.
    Table,
    /// A Kafka connector table with `PRIMARY KEY (bidder)` (100,000
    /// bidders): each message replaces its bidder's row, which the writer
    /// looks up in the table (on disk under `--checkpoint-budget-mb`) and
    /// retracts; a checkpoint stores the changed rows.
    Keyed,
    /// The same as `FORMAT UPSERT` (messages keyed by their bidder): each
    /// message also looks up which primary key its Kafka key last set, and
    /// a checkpoint stores the Kafka keys that changed.
    Upsert,
}

impl Durable {
    pub const ALL: [Durable; 4] = [
        Durable::Source,
        Durable::Table,
        Durable::Keyed,
        Durable::Upsert,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Durable::Source => "Kafka source -> group by",
            Durable::Table => "Kafka connector table -> group by",
            Durable::Keyed => "Kafka connector table, PRIMARY KEY (bidder) -> group by",
            Durable::Upsert => {
                "Kafka connector table, PRIMARY KEY (bidder), FORMAT UPSERT -> group by"
            }
        }
    }
}

/// Distinct bidders in the first `messages` events (see `write_event`).
fn bidders(messages: u64) -> u64 {
    messages.min(100_000)
}

/// Produce the checkpoint runs' backlog of `messages`.
pub fn checkpoint_backlog(
    runtime: &tokio::runtime::Runtime,
    broker: &Broker,
    messages: u64,
) -> Result<()> {
    broker.create_topic(runtime, CHECKPOINT_TOPIC)?;
    produce_backlog(broker, CHECKPOINT_TOPIC, messages, true)
}

/// How the checkpoint runs go: the backlog's `messages`, the durable
/// runs' checkpoint `interval` and memory `budget` in bytes, and how many
/// pairs of runs.
pub struct CheckpointRuns {
    pub messages: u64,
    pub interval: Duration,
    pub budget: Option<usize>,
    pub runs: usize,
}

/// The cost of durability: a GROUP BY view over the topic read as `input`
/// (JSON), read from the backlog in memory and with a data directory, in
/// alternating pairs. Returns the figures, in memory first in each pair.
pub fn checkpoint_overhead(
    runtime: &tokio::runtime::Runtime,
    broker: &Broker,
    input: Durable,
    settings: &CheckpointRuns,
    source_options: &[(String, String)],
) -> Result<Vec<Figure>> {
    let CheckpointRuns {
        messages,
        interval,
        budget,
        runs,
    } = *settings;
    let mut figures = Vec::new();
    for run in 0..runs.max(1) {
        for durable in [None, Some(interval)] {
            let label = durable.map_or("in memory".to_string(), |i| {
                format!("--data-dir, checkpoints every {} ms", i.as_millis())
            });
            println!("checkpoint: run {} {label} ...", run + 1);
            figures.push(runtime.block_on(through_table(
                broker,
                input,
                messages,
                durable.map(|interval| (interval, budget)),
                source_options,
            ))?);
        }
    }
    Ok(figures)
}

async fn through_table(
    broker: &Broker,
    input: Durable,
    messages: u64,
    durable: Option<(Duration, Option<usize>)>,
    source_options: &[(String, String)],
) -> Result<Figure> {
    let dir = std::env::temp_dir().join(format!("eddy-bench-checkpoint-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let eddy = match durable {
        None => Eddy::new()?,
        Some((interval, budget)) => Eddy::durable(&dir, interval, budget).await?,
    };
    let (ddl, reader) = match input {
        Durable::Table | Durable::Keyed | Durable::Upsert => ("CREATE TABLE t", "t"),
        Durable::Source => ("CREATE SOURCE t", "v"),
    };
    let mut relation = source_sql(CHECKPOINT_TOPIC, &broker.bootstrap(), source_options)
        .replace("CREATE SOURCE s", ddl);
    if matches!(input, Durable::Keyed | Durable::Upsert) {
        relation = relation.replace(
            "date_time TIMESTAMP)",
            "date_time TIMESTAMP, PRIMARY KEY (bidder))",
        );
    }
    if input == Durable::Upsert {
        relation = relation.replace("FORMAT PLAIN", "FORMAT UPSERT");
    }
    // The rows the table ends with, and the view's sum(events).
    let rows = match input {
        Durable::Keyed | Durable::Upsert => bidders(messages),
        Durable::Source | Durable::Table => messages,
    };
    let meter = Meter::start();
    eddy.execute(&relation).await?;
    eddy.execute(
        "CREATE MATERIALIZED VIEW v AS \
         SELECT auction, count(*) AS events, max(price) AS top_price FROM t GROUP BY auction",
    )
    .await?;
    let progress = eddy.progress(reader)?;
    let end = BTreeMap::from([("0".to_string(), messages as i64)]);
    let deadline = Instant::now() + RUN_TIMEOUT;
    while !progress.has_committed(&end) {
        let status = progress.status();
        if status.starts_with("failed") || Instant::now() >= deadline {
            return Err(format!("kafka connector table: {status}").into());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    drop(eddy.engine.write().await);
    let usage = meter.stop();
    let epochs = eddy.engine.snapshot().epoch;
    let mut check = expect_equal(
        "sum(events) of the view",
        eddy.query_i64("SELECT sum(events) FROM v").await?,
        rows,
    );
    if input != Durable::Source {
        check = check.and(expect_equal(
            "count(*) of the table",
            eddy.query_i64("SELECT count(*) FROM t").await?,
            rows,
        ));
    }
    let place = match input {
        Durable::Keyed | Durable::Upsert => eddy
            .query_string("SELECT place FROM eddy_catalog.relation_memory WHERE name = 't'")
            .await?
            .unwrap_or_default(),
        Durable::Source | Durable::Table => String::new(),
    };
    let checkpoints = eddy.engine.snapshot().checkpoint.clone();
    // With a data directory: make everything durable, then time a restart
    // from opening the directory to the view answering with every message.
    let mut restart = None;
    if let Some((interval, budget)) = durable {
        eddy.execute("FLUSH").await?;
        drop(eddy);
        let started = Instant::now();
        let again = Eddy::durable(&dir, interval, budget).await?;
        let restored = again.query_i64("SELECT sum(events) FROM v").await?;
        restart = Some(started.elapsed());
        check = check.and(expect_equal(
            "sum(events) after the restart",
            restored,
            rows,
        ));
        drop(again);
    } else {
        drop(eddy);
    }
    let stored: u64 = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0);
    let _ = std::fs::remove_dir_all(&dir);
    let name = match (durable, checkpoints) {
        (None, _) => match input {
            Durable::Table => "connector table + group by, in memory".to_string(),
            Durable::Keyed => "keyed connector table + group by, in memory".to_string(),
            Durable::Upsert => "UPSERT connector table + group by, in memory".to_string(),
            Durable::Source => "source + group by, in memory".to_string(),
        },
        (Some((interval, budget)), last) => format!(
            "same, --data-dir, {} ms checkpoints{}{} (data dir {} MB, restart serves in {} ms; last: {} MB in {} ms)",
            interval.as_millis(),
            budget.map_or(String::new(), |b| format!(", budget {} MiB", b >> 20)),
            if place.is_empty() { String::new() } else { format!(", table: {place}") },
            stored >> 20,
            restart.map_or(0, |d| d.as_millis()),
            last.as_ref().map_or(0, |c| c.bytes >> 20),
            last.and_then(|c| c.duration).map_or(0, |d| d.as_millis())
        ),
    };
    Ok(Figure {
        name,
        events: messages,
        usage,
        target: None,
        check,
        broker_cpu: None,
        epochs: Some(epochs),
    })
}

/// How the freshness run goes.
#[derive(Debug, Clone)]
pub struct FreshnessSettings {
    pub rate: u64,
    pub warmup: Duration,
    pub measured: Duration,
    pub linger_ms: u64,
    pub poll: Duration,
    pub source_options: Vec<(String, String)>,
    /// Also run a bare consumer in the producing process, to split the
    /// latency into broker and Eddy.
    pub reference_consumer: bool,
}

fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

pub fn freshness(
    runtime: &tokio::runtime::Runtime,
    broker: &Broker,
    settings: &FreshnessSettings,
) -> Result<()> {
    broker.create_topic(runtime, FRESHNESS_TOPIC)?;
    let total = settings.rate * (settings.warmup + settings.measured).as_secs();
    let eddy = runtime.block_on(async {
        let eddy = Eddy::new()?;
        eddy.execute(&source_sql(
            FRESHNESS_TOPIC,
            &broker.bootstrap(),
            &settings.source_options,
        ))
        .await?;
        eddy.execute(
            "CREATE MATERIALIZED VIEW fresh AS \
             SELECT count(*) AS events, max(seq) AS last_seq FROM s",
        )
        .await?;
        // Start producing only once the reader sits on the partition.
        let progress = eddy.progress("fresh")?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while progress.partitions().is_empty() {
            if Instant::now() >= deadline {
                return Err(BoxError::from("the kafka reader got no partition"));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(eddy)
    })?;
    let times = std::env::temp_dir().join(format!("eddy-bench-times-{}", std::process::id()));
    println!(
        "freshness: {} messages at {}/s ({}s warm-up, {}s measured), producer linger.ms={}, poll every {:?}, source options: {}{}",
        total,
        settings.rate,
        settings.warmup.as_secs(),
        settings.measured.as_secs(),
        settings.linger_ms,
        settings.poll,
        crate::options_line(&settings.source_options),
        if settings.reference_consumer { ", with a reference consumer" } else { "" },
    );
    let engine = eddy.engine.clone();
    let poll = settings.poll;
    let observer = std::thread::Builder::new()
        .name("observer".into())
        .spawn(move || observe(&engine, total, poll))?;
    let mut producer = std::process::Command::new(std::env::current_exe()?);
    producer
        .arg("produce")
        .args(["--bootstrap", &broker.bootstrap()])
        .args(["--topic", FRESHNESS_TOPIC])
        .args(["--rate", &settings.rate.to_string()])
        .args(["--messages", &total.to_string()])
        .args(["--linger-ms", &settings.linger_ms.to_string()])
        .arg("--times")
        .arg(&times);
    if settings.reference_consumer {
        producer.arg("--reference-consumer");
        for (key, value) in &settings.source_options {
            producer.args(["--consumer-option", &format!("{key}={value}")]);
        }
    }
    let mut producer = producer.spawn()?;
    std::thread::sleep(settings.warmup);
    let epoch_before = eddy.engine.snapshot().epoch;
    let broker_before = broker.cpu_time();
    let meter = Meter::start();
    std::thread::sleep(settings.measured);
    let usage = meter.stop();
    let broker_cpu = broker.cpu_time().saturating_sub(broker_before);
    let epochs = eddy.engine.snapshot().epoch - epoch_before;
    let status = producer.wait()?;
    if !status.success() {
        return Err(format!("the producer failed: {status}").into());
    }
    let seen = observer
        .join()
        .map_err(|_| "the observer thread panicked")??;
    let stamps = read_times(&times, total as usize)?;
    let _ = std::fs::remove_file(&times);
    let events = eddy.read_i64("fresh", "events")?;
    let last = eddy.read_i64("fresh", "last_seq")?;
    let check = expect_equal("count(*)", events, total)
        .and_then(|()| expect_equal("max(seq) + 1", last.map(|l| l + 1), total));
    let report = Freshness {
        settings,
        stamps: &stamps,
        seen: &seen,
        usage: &usage,
        broker_cpu,
        epochs,
    };
    report.print(check);
    Ok(())
}

/// Poll `fresh.last_seq` until every one of `total` messages has shown (or
/// nothing new has shown for a minute); returns when each first showed
/// (0: never), in Unix nanoseconds.
fn observe(engine: &Engine, total: u64, poll: Duration) -> Result<Vec<u64>> {
    let mut seen = vec![0u64; total as usize];
    let mut next = 0u64;
    let mut last_change = Instant::now();
    while next < total && last_change.elapsed() < DRAIN_TIMEOUT {
        let snapshot = engine.snapshot();
        let now = unix_nanos();
        if let Some(last) = crate::read_i64(&snapshot, "fresh", "last_seq")? {
            let upto = ((last.max(-1) + 1) as u64).min(total);
            if upto > next {
                seen[next as usize..upto as usize].fill(now);
                next = upto;
                last_change = Instant::now();
            }
        }
        std::thread::sleep(poll);
    }
    Ok(seen)
}

/// What the producing process recorded per sequence number, Unix
/// nanoseconds (0: never).
struct Stamps {
    /// Handed to librdkafka.
    sent: Vec<u64>,
    /// Delivery reported (the broker acknowledged it).
    acked: Vec<u64>,
    /// Read by the reference consumer (all 0 without one).
    received: Vec<u64>,
}

/// The file holds `sent`, `acked` and `received`, `messages` little-endian
/// u64s each.
fn read_times(path: &PathBuf, messages: usize) -> Result<Stamps> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)?.read_to_end(&mut bytes)?;
    let words: Vec<u64> = bytes
        .chunks_exact(8)
        .map(|c| {
            let mut word = [0u8; 8];
            word.copy_from_slice(c);
            u64::from_le_bytes(word)
        })
        .collect();
    if words.len() != messages * 3 {
        return Err(format!(
            "the producer wrote {} stamps, expected {}",
            words.len(),
            messages * 3
        )
        .into());
    }
    Ok(Stamps {
        sent: words[..messages].to_vec(),
        acked: words[messages..2 * messages].to_vec(),
        received: words[2 * messages..].to_vec(),
    })
}

fn write_times(path: &PathBuf, columns: [&[u64]; 3]) -> Result<()> {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
    for column in columns {
        for time in column {
            file.write_all(&time.to_le_bytes())?;
        }
    }
    file.flush()?;
    Ok(())
}

/// Latency percentiles of one stage.
struct Latencies {
    sorted: Vec<u64>,
    missing: usize,
}

impl Latencies {
    /// From `sent` to `reached` for messages sent in `from..until`.
    fn of(sent: &[u64], reached: &[u64], from: u64, until: u64) -> Self {
        let mut sorted = Vec::new();
        let mut missing = 0;
        for (sent, reached) in sent.iter().zip(reached) {
            if *sent < from || *sent >= until {
                continue;
            }
            if *reached == 0 {
                missing += 1;
            } else {
                sorted.push(reached.saturating_sub(*sent));
            }
        }
        sorted.sort_unstable();
        Self { sorted, missing }
    }

    fn quantile(&self, q: f64) -> Duration {
        if self.sorted.is_empty() {
            return Duration::ZERO;
        }
        let index = ((self.sorted.len() - 1) as f64 * q).round() as usize;
        Duration::from_nanos(self.sorted[index])
    }

    fn line(&self, stage: &str) -> String {
        format!(
            "  {stage:<40} p50 {:>6.1}  p90 {:>6.1}  p99 {:>6.1}  p99.9 {:>6.1}  max {:>6.1} ms{}",
            ms(self.quantile(0.5)),
            ms(self.quantile(0.9)),
            ms(self.quantile(0.99)),
            ms(self.quantile(0.999)),
            ms(self.quantile(1.0)),
            if self.missing > 0 {
                format!("  ({} never)", self.missing)
            } else {
                String::new()
            }
        )
    }
}

/// What a freshness run measured.
struct Freshness<'a> {
    settings: &'a FreshnessSettings,
    stamps: &'a Stamps,
    seen: &'a [u64],
    usage: &'a Usage,
    broker_cpu: Duration,
    epochs: u64,
}

impl Freshness<'_> {
    fn print(&self, check: Result<(), String>) {
        let settings = self.settings;
        let Some(&first) = self.stamps.sent.first() else {
            println!("freshness: nothing was sent");
            return;
        };
        let from = first + settings.warmup.as_nanos() as u64;
        let until = from + settings.measured.as_nanos() as u64;
        let sent = &self.stamps.sent;
        let visible = Latencies::of(sent, self.seen, from, until);
        let measured = visible.sorted.len() + visible.missing;
        let rate = measured as f64 / settings.measured.as_secs_f64();
        let p99 = visible.quantile(0.99);
        println!();
        println!("Kafka (local tansu) freshness, from handing a message to librdkafka:");
        println!(
            "  sent in the measured {}s: {measured} ({rate:.0}/s achieved, asked {}/s)",
            settings.measured.as_secs(),
            settings.rate
        );
        println!(
            "{}",
            Latencies::of(sent, &self.stamps.acked, from, until)
                .line("to its delivery report (broker ack)")
        );
        if settings.reference_consumer {
            println!(
                "{}",
                Latencies::of(sent, &self.stamps.received, from, until)
                    .line("to a bare consumer reading it")
            );
        }
        println!("{}", visible.line("to visible in the view (Eddy)"));
        println!(
            "  target p99 <= {} ms: {} ({:.1} ms)",
            FRESHNESS_TARGET.as_millis(),
            if p99 <= FRESHNESS_TARGET {
                "met"
            } else {
                "not met"
            },
            ms(p99)
        );
        let wall = self.usage.wall.as_secs_f64().max(1e-9);
        println!(
            "  Eddy's process over the measured stretch: {:.2} cores ({:.2}s CPU in {:.2}s), {} epochs committed ({:.0}/s)",
            self.usage.cores(),
            self.usage.cpu.as_secs_f64(),
            wall,
            self.epochs,
            self.epochs as f64 / wall
        );
        println!("  CPU by thread: {}", self.usage.threads_line());
        println!(
            "  broker (tansu, another process): {:.2} cores",
            self.broker_cpu.as_secs_f64() / wall
        );
        match check {
            Ok(()) => println!("  check: ok (every message in the view once)"),
            Err(problem) => println!("  check: FAILED: {problem}"),
        }
    }
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

/// The freshness run's producer, run as a child process so that its CPU
/// time is not Eddy's: sends `messages` JSON messages at `rate` per second
/// (in bursts of about half a millisecond's worth) and writes to `times`
/// when it handed each message to librdkafka, when the delivery report
/// came, and (with `--reference-consumer`) when a bare consumer of the
/// topic read it.
#[derive(clap::Args, Debug)]
pub struct PacedProducer {
    #[arg(long)]
    bootstrap: String,
    #[arg(long)]
    topic: String,
    #[arg(long)]
    rate: u64,
    #[arg(long)]
    messages: u64,
    #[arg(long)]
    linger_ms: u64,
    #[arg(long)]
    times: PathBuf,
    #[arg(long)]
    reference_consumer: bool,
    /// `properties.*` options of the sources, for the reference consumer.
    #[arg(long = "consumer-option", value_parser = crate::key_value)]
    consumer_options: Vec<(String, String)>,
}

impl PacedProducer {
    pub fn run(&self) -> Result<()> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.bootstrap)
            .set("allow.auto.create.topics", "false");
        let stop = Arc::new(AtomicBool::new(false));
        let reader = if self.reference_consumer {
            let mut config = config.clone();
            config
                .set("group.id", "eddy-bench-reference")
                .set("enable.auto.commit", "false");
            for (key, value) in &self.consumer_options {
                if let Some(property) = key.strip_prefix("properties.") {
                    config.set(property, value);
                }
            }
            let consumer: BaseConsumer = config.create()?;
            let mut assignment = TopicPartitionList::new();
            assignment.add_partition_offset(&self.topic, 0, Offset::Beginning)?;
            consumer.assign(&assignment)?;
            let (messages, stop) = (self.messages, stop.clone());
            Some(
                std::thread::Builder::new()
                    .name("reference".into())
                    .spawn(move || read_stamps(&consumer, messages, &stop))?,
            )
        } else {
            None
        };
        let producer = producer(
            &mut config,
            self.linger_ms,
            Deliveries::recording(self.messages),
        )?;
        let mut sent = Vec::with_capacity(self.messages as usize);
        let mut payload = String::with_capacity(192);
        let started = Instant::now();
        let mut seq = 0u64;
        while seq < self.messages {
            let due = (started.elapsed().as_secs_f64() * self.rate as f64) as u64;
            while seq < due.min(self.messages) {
                payload.clear();
                write_event(&mut payload, seq);
                sent.push(unix_nanos());
                send(&producer, &self.topic, &payload, None, seq)?;
                seq += 1;
            }
            producer.poll(Duration::ZERO);
            std::thread::sleep(Duration::from_micros(500));
        }
        let elapsed = started.elapsed();
        producer.flush(Duration::from_secs(60))?;
        producer.context().check()?;
        let received = match reader {
            Some(reader) => {
                let deadline = Instant::now() + DRAIN_TIMEOUT;
                while !reader.is_finished() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(10));
                }
                stop.store(true, Ordering::Relaxed);
                reader
                    .join()
                    .map_err(|_| "the reference consumer panicked")??
            }
            None => vec![0; self.messages as usize],
        };
        let acked = producer
            .context()
            .acked
            .lock()
            .map_err(|_| "delivery times poisoned")?
            .clone();
        write_times(&self.times, [&sent, &acked, &received])?;
        eprintln!(
            "producer: sent {} messages in {:.1}s ({:.0}/s)",
            self.messages,
            elapsed.as_secs_f64(),
            self.messages as f64 / elapsed.as_secs_f64()
        );
        Ok(())
    }
}

/// Read the topic until `messages` have come (or `stop`), recording when
/// each sequence number was read.
fn read_stamps(consumer: &BaseConsumer, messages: u64, stop: &AtomicBool) -> Result<Vec<u64>> {
    let mut received = vec![0u64; messages as usize];
    let mut count = 0u64;
    while count < messages && !stop.load(Ordering::Relaxed) {
        let Some(message) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let now = unix_nanos();
        let seq = message?.payload().and_then(parse_seq);
        if let Some(slot) = seq.and_then(|seq| received.get_mut(seq as usize)) {
            *slot = now;
            count += 1;
        }
    }
    Ok(received)
}

/// The `seq` of a payload `write_event` wrote.
fn parse_seq(payload: &[u8]) -> Option<u64> {
    let digits = payload.strip_prefix(br#"{"seq":"#)?;
    let end = digits.iter().position(|b| !b.is_ascii_digit())?;
    std::str::from_utf8(&digits[..end]).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_json_objects_with_a_timestamp() {
        let mut out = String::new();
        write_event(&mut out, 3_723_004);
        assert!(out.starts_with(r#"{"seq":3723004,"#), "{out}");
        assert!(
            out.ends_with(r#""date_time":"2024-01-01T01:02:03.004Z"}"#),
            "{out}"
        );
        assert_eq!(parse_seq(out.as_bytes()), Some(3_723_004));
    }
}
