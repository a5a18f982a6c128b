//! Exactly-once Kafka sinks across SIGKILLs. Eddy runs as a child process
//! with a data directory, reading a topic into a connector table with a
//! view over it, and writing both out through exactly-once sinks: the
//! table as `FORMAT PLAIN` (every reading once), the view as `FORMAT
//! DEBEZIUM` (every change of every group once, each `before` the `after`
//! of the change before), and an UPSERT connector table with inserts,
//! updates and tombstones as `FORMAT DEBEZIUM` too, and the same view over
//! a source instead of the table, and a datagen table as `FORMAT PLAIN`
//! (generators resume, so their sinks are exactly once). It is killed at
//! random moments, during
//! checkpoints and sink transactions too, and started again while the test
//! keeps producing.
//!
//! The broker is librdkafka's mock cluster, hosted on a thread of the test
//! process so that it outlives every kill (tansu has no transactions at
//! all: it refuses `EndTxn`). The mock cluster checks producer ids and
//! epochs, so a fenced incarnation cannot write, but it writes no
//! transaction markers: a `read_committed` consumer of it sees aborted
//! transactions too. The test therefore reads the topics as
//! `read_committed` would from what the sink writes alongside its data:
//! every message carries header `eddy.epoch` (the checkpoint whose
//! transaction wrote it) and every transaction ends with a progress record
//! `{"epoch": E, "messages": N}`. A transaction of checkpoint E committed
//! iff its progress record is visible, and it is then the last N messages
//! with header E; any other message with header E belongs to an attempt
//! cut short by a kill, which a real broker aborts (at the latest when the
//! next incarnation calls `init_transactions`). Proven here: the sink
//! writes each checkpoint's changes whole, once, in order, and writes
//! again after a crash exactly the checkpoints that did not commit. Not
//! proven here: that a broker hides aborted transactions.

#![allow(clippy::expect_used, clippy::unwrap_used)]

#[allow(dead_code)]
mod support;

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::Value;
use support::broker::TestBroker;
use support::process::{crash_kills, crash_loop, crash_seed, tail, temp_dir, EddyProcess};
use support::server::rows;
use tokio_postgres::NoTls;

const SENSORS: i64 = 5;
const SKUS: i64 = 30;
const PROGRESS: &str = "eddy-progress";
/// Rows of the datagen table (400 a second).
const GENERATED: i64 = 2000;

/// A mock cluster living on a thread of its own until dropped.
struct MockBroker {
    bootstrap: String,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MockBroker {
    fn start(topics: &[(&str, i32)]) -> Self {
        let topics: Vec<(String, i32)> = topics.iter().map(|(t, p)| (t.to_string(), *p)).collect();
        let (ready, bootstrap) = mpsc::channel();
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let mock = MockCluster::new(1).expect("mock cluster");
            for (topic, partitions) in &topics {
                mock.create_topic(topic, *partitions, 1).expect("topic");
            }
            ready.send(mock.bootstrap_servers()).expect("send");
            let _ = stopped.recv();
        });
        Self {
            bootstrap: bootstrap.recv().expect("bootstrap"),
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for MockBroker {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One message as read back: key, payload, `eddy.epoch` header.
#[derive(Debug, Clone)]
struct Read {
    key: Option<Vec<u8>>,
    payload: Option<Vec<u8>>,
    epoch: Option<u64>,
}

/// Every message of `topic` (one partition), in offset order.
fn read_topic(bootstrap: &str, topic: &str) -> Vec<Read> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "exactly-once-check")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed")
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, Offset::Beginning)
        .expect("partition");
    consumer.assign(&assignment).expect("assign");
    let mut read = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(_))) => return read,
            Some(Err(error)) => panic!("reading {topic}: {error}"),
            Some(Ok(message)) => {
                let epoch = message.headers().and_then(|headers| {
                    headers
                        .iter()
                        .find(|h| h.key == "eddy.epoch")
                        .and_then(|h| h.value)
                        .and_then(|v| std::str::from_utf8(v).ok()?.parse().ok())
                });
                read.push(Read {
                    key: message.key().map(<[u8]>::to_vec),
                    payload: message.payload().map(<[u8]>::to_vec),
                    epoch,
                });
            }
        }
    }
    panic!("{topic} was not read to its end within a minute");
}

/// What a `read_committed` consumer sees of one exactly-once sink's
/// topic, reconstructed as the module comment says, and how many messages
/// belonged to attempts cut short.
struct Committed {
    messages: Vec<Read>,
    aborted: usize,
    transactions: usize,
}

fn committed(bootstrap: &str, topic: &str, sink_suffix: &str) -> Committed {
    // Progress records of this sink, in order: epoch → messages.
    let mut progress: Vec<(u64, usize)> = Vec::new();
    for record in read_topic(bootstrap, PROGRESS) {
        let key = String::from_utf8(record.key.unwrap_or_default()).expect("utf-8 key");
        if !key.ends_with(sink_suffix) {
            continue;
        }
        let value: Value = serde_json::from_slice(&record.payload.expect("progress value"))
            .expect("progress record is JSON");
        let epoch = value["epoch"].as_u64().expect("epoch");
        let messages = value["messages"].as_u64().expect("messages") as usize;
        if let Some((last, _)) = progress.last() {
            assert!(
                epoch > *last,
                "{topic}: progress epochs must increase (a committed checkpoint written again?): {last} then {epoch}"
            );
        }
        progress.push((epoch, messages));
    }
    let data = read_topic(bootstrap, topic);
    let mut by_epoch: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    for (index, message) in data.iter().enumerate() {
        let epoch = message
            .epoch
            .unwrap_or_else(|| panic!("{topic}: message {index} has no eddy.epoch header"));
        by_epoch.entry(epoch).or_default().push(index);
    }
    let mut keep: Vec<usize> = Vec::new();
    for (epoch, messages) in &progress {
        let indexes = by_epoch.get(epoch).map(Vec::as_slice).unwrap_or_default();
        assert!(
            indexes.len() >= *messages,
            "{topic}: checkpoint {epoch} committed {messages} messages but the topic has {}",
            indexes.len()
        );
        let run = &indexes[indexes.len() - messages..];
        assert!(
            run.windows(2).all(|w| w[1] == w[0] + 1),
            "{topic}: the committed messages of checkpoint {epoch} are not contiguous"
        );
        keep.extend_from_slice(run);
    }
    keep.sort_unstable();
    Committed {
        aborted: data.len() - keep.len(),
        transactions: progress.len(),
        messages: keep.into_iter().map(|i| data[i].clone()).collect(),
    }
}

/// A message to produce: topic, partition, key, payload (`None`: a
/// tombstone).
type Outgoing = (&'static str, i32, Option<Vec<u8>>, Option<Vec<u8>>);

async fn produce(producer: &FutureProducer, messages: &[Outgoing]) {
    let mut deliveries = Vec::new();
    for (topic, partition, key, payload) in messages {
        let mut record: FutureRecord<'_, [u8], [u8]> =
            FutureRecord::to(topic).partition(*partition);
        if let Some(key) = key {
            record = record.key(key.as_slice());
        }
        if let Some(payload) = payload {
            record = record.payload(payload.as_slice());
        }
        deliveries.push(
            producer
                .send_result(record)
                .map_err(|(e, _)| e)
                .expect("queue"),
        );
    }
    for delivery in deliveries {
        delivery
            .await
            .expect("delivered")
            .expect("no delivery error");
    }
}

/// Replay a DEBEZIUM sink's committed change events key by key: each must
/// start (`before`) where the one before it ended (`after`), or a change
/// was lost or written twice. Returns the rows they end at, by key.
fn replay_changes(
    sink: &str,
    changes: &Committed,
    key: &str,
    context: &str,
) -> BTreeMap<i64, Value> {
    let mut state: BTreeMap<i64, Value> = BTreeMap::new();
    for (index, message) in changes.messages.iter().enumerate() {
        let Some(payload) = &message.payload else {
            continue; // the tombstone after a delete
        };
        let event: Value = serde_json::from_slice(payload).expect("JSON change event");
        let message_key: Value =
            serde_json::from_slice(message.key.as_deref().expect("key")).expect("JSON key");
        let id = message_key[key].as_i64().expect("key column");
        let before = state.get(&id).cloned().unwrap_or(Value::Null);
        assert_eq!(
            event["before"], before,
            "{sink}: change {index} of {key} {id} does not start where the one before ended (lost or repeated change) {context}"
        );
        match &event["after"] {
            Value::Null => state.remove(&id),
            after => state.insert(id, after.clone()),
        };
    }
    state
}

/// Read the committed messages of the exactly-once sink whose
/// transactional id ends in `suffix`.
async fn committed_of(bootstrap: &str, topic: &'static str, suffix: &'static str) -> Committed {
    let bootstrap = bootstrap.to_string();
    tokio::task::spawn_blocking(move || committed(&bootstrap, topic, suffix))
        .await
        .expect("read")
}

/// Check that a PLAIN sink's committed rows hold each of `ids` exactly
/// once (by their `id` column), and nothing else.
fn assert_each_once(sink: &str, read: &Committed, ids: &[i64], context: &str) {
    let mut seen: BTreeMap<i64, usize> = BTreeMap::new();
    for message in &read.messages {
        let row: Value =
            serde_json::from_slice(message.payload.as_deref().expect("a row")).expect("JSON row");
        *seen.entry(row["id"].as_i64().expect("id")).or_default() += 1;
    }
    let missing: Vec<i64> = ids
        .iter()
        .copied()
        .filter(|id| !seen.contains_key(id))
        .take(10)
        .collect();
    let twice: Vec<(i64, usize)> = seen
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(k, n)| (*k, *n))
        .take(10)
        .collect();
    assert!(
        missing.is_empty() && twice.is_empty() && seen.len() == ids.len(),
        "{sink}: {} rows expected, {} distinct in the sink; missing (first 10) {missing:?}, more than once {twice:?} {context}",
        ids.len(),
        seen.len()
    );
}

/// The `(n, total)` per sensor a DEBEZIUM sink of a per-sensor count and
/// sum ends at, its changes replayed by [`replay_changes`].
fn sensor_totals(sink: &str, read: &Committed, context: &str) -> BTreeMap<i64, (i64, i64)> {
    replay_changes(sink, read, "sensor", context)
        .iter()
        .map(|(s, row)| {
            (
                *s,
                (row["n"].as_i64().unwrap(), row["total"].as_i64().unwrap()),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sinks_write_every_change_once_across_sigkill_loop() {
    let seed = crash_seed();
    let kills = crash_kills();
    println!(
        "exactly-once crash loop: seed {seed}, {kills} kills (EDDY_CRASH_SEED={seed} repeats it)"
    );
    let mut rng = StdRng::seed_from_u64(seed);
    let broker = MockBroker::start(&[
        ("readings", 2),
        ("readings_out", 1),
        ("per_sensor_out", 1),
        ("per_sensor_src_out", 1),
        ("sensor_query_out", 1),
        ("positive_out", 1),
        ("stock", 2),
        ("stock_out", 1),
        ("generated_out", 1),
        (PROGRESS, 1),
    ]);
    let bootstrap = broker.bootstrap.clone();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .expect("producer");
    let dir = temp_dir("exactly-once");
    let data = dir.join("data");
    let log = dir.join("eddy.log");
    // A short interval: kills land before, during and after checkpoints
    // and the sink transactions that follow them.
    let args = ["--checkpoint-interval-ms", "100"];

    let mut running = EddyProcess::spawn_with(&data, &log, &args);
    let client = running.ready(Duration::from_secs(60)).await;
    client
        .batch_execute(&format!(
            "CREATE TABLE readings (id BIGINT, sensor BIGINT, v BIGINT)
               WITH (connector = 'kafka', topic = 'readings', properties.bootstrap.server = '{bootstrap}')
               FORMAT PLAIN ENCODE JSON;
             CREATE MATERIALIZED VIEW per_sensor AS
               SELECT sensor, count(*) AS n, sum(v) AS total FROM readings GROUP BY sensor;
             CREATE SINK readings_out FROM readings
               WITH (connector = 'kafka', topic = 'readings_out', properties.bootstrap.server = '{bootstrap}')
               FORMAT PLAIN ENCODE JSON;
             CREATE SINK per_sensor_out FROM per_sensor
               WITH (connector = 'kafka', topic = 'per_sensor_out', properties.bootstrap.server = '{bootstrap}',
                     primary_key = 'sensor')
               FORMAT DEBEZIUM ENCODE JSON;
             CREATE TABLE stock (sku BIGINT PRIMARY KEY, qty BIGINT)
               WITH (connector = 'kafka', topic = 'stock', properties.bootstrap.server = '{bootstrap}')
               FORMAT UPSERT ENCODE JSON;
             CREATE SINK stock_out FROM stock
               WITH (connector = 'kafka', topic = 'stock_out', properties.bootstrap.server = '{bootstrap}',
                     primary_key = 'sku')
               FORMAT DEBEZIUM ENCODE JSON;
             CREATE SOURCE readings_src (id BIGINT, sensor BIGINT, v BIGINT)
               WITH (connector = 'kafka', topic = 'readings', properties.bootstrap.server = '{bootstrap}')
               FORMAT PLAIN ENCODE JSON;
             CREATE MATERIALIZED VIEW per_sensor_src AS
               SELECT sensor, count(*) AS n, sum(v) AS total FROM readings_src GROUP BY sensor;
             CREATE SINK per_sensor_src_out FROM per_sensor_src
               WITH (connector = 'kafka', topic = 'per_sensor_src_out', properties.bootstrap.server = '{bootstrap}',
                     primary_key = 'sensor')
               FORMAT DEBEZIUM ENCODE JSON;
             CREATE SINK sensor_query_out AS
               SELECT sensor, count(*) AS n, sum(v) AS total FROM readings_src GROUP BY sensor
               WITH (connector = 'kafka', topic = 'sensor_query_out', properties.bootstrap.server = '{bootstrap}',
                     primary_key = 'sensor')
               FORMAT DEBEZIUM ENCODE JSON;
             CREATE VIEW positive AS SELECT id, v FROM readings_src WHERE v >= 0;
             CREATE SINK positive_out FROM positive
               WITH (connector = 'kafka', topic = 'positive_out', properties.bootstrap.server = '{bootstrap}')
               FORMAT PLAIN ENCODE JSON;
             CREATE TABLE generated (id BIGINT, v BIGINT)
               WITH (connector = 'datagen', fields.id.kind = 'sequence', fields.id.start = '1',
                     fields.id.end = '{GENERATED}', datagen.rows.per.second = '400');
             CREATE SINK generated_out FROM generated
               WITH (connector = 'kafka', topic = 'generated_out', properties.bootstrap.server = '{bootstrap}')
               FORMAT PLAIN ENCODE JSON;"
        ))
        .await
        .expect("create the tables, view and sinks");
    drop(client);

    let mut readings: Vec<(i64, i64, i64)> = Vec::new();
    let mut stock: BTreeMap<i64, i64> = BTreeMap::new();
    let next = |rng: &mut StdRng| {
        let round: Vec<(i64, i64, i64)> = (0..rng.random_range(10..60))
            .map(|i| {
                let id = readings.len() as i64 + i + 1;
                (
                    id,
                    rng.random_range(0..SENSORS),
                    rng.random_range(-100..1000),
                )
            })
            .collect();
        readings.extend_from_slice(&round);
        // Readings, and between them stock levels by key: inserts, updates
        // and deletes (tombstones), produced in the order generated.
        let mut messages: Vec<Outgoing> = Vec::new();
        for (id, sensor, v) in &round {
            let payload = format!(r#"{{"id": {id}, "sensor": {sensor}, "v": {v}}}"#);
            messages.push((
                "readings",
                (id % 2) as i32,
                None,
                Some(payload.into_bytes()),
            ));
            if !rng.random_bool(0.25) {
                continue;
            }
            let sku = rng.random_range(0..SKUS);
            let key = Some(sku.to_string().into_bytes());
            if rng.random_bool(0.2) {
                stock.remove(&sku);
                messages.push(("stock", (sku % 2) as i32, key, None));
            } else {
                let qty = rng.random_range(0..500);
                stock.insert(sku, qty);
                let payload = format!(r#"{{"sku": {sku}, "qty": {qty}}}"#).into_bytes();
                messages.push(("stock", (sku % 2) as i32, key, Some(payload)));
            }
        }
        messages
    };
    // Produce in small bursts while it runs, so that checkpoints and sink
    // transactions go on all the time and kills land inside them.
    let crashes = crash_loop(
        &mut rng,
        kills,
        running,
        || EddyProcess::spawn_with(&data, &log, &args),
        next,
        async |messages: &[Outgoing], rng: &mut StdRng| {
            for burst in messages.chunks(6) {
                produce(&producer, burst).await;
                tokio::time::sleep(Duration::from_millis(rng.random_range(5..40))).await;
            }
        },
    )
    .await;
    let (killed, during_recovery) = (crashes.killed, crashes.during_recovery);

    let mut running = EddyProcess::spawn_with(&data, &log, &args);
    let client = running.ready(Duration::from_secs(60)).await;
    let started = Instant::now();
    while rows(
        &client,
        "SELECT status FROM eddy_catalog.source_progress WHERE source = 'generated'",
    )
    .await
        != ["ended"]
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the datagen table did not end; log:\n{}",
            tail(&log)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    client.batch_execute("FLUSH").await.expect("flush");
    let context = format!("after {killed} kills (seed {seed}); log:\n{}", tail(&log));
    assert_eq!(
        rows(&client, "SELECT count(*), count(DISTINCT id) FROM readings").await,
        [format!("{} {}", readings.len(), readings.len())],
        "readings {context}"
    );
    let expected_stock: Vec<String> = stock.iter().map(|(k, q)| format!("{k} {q}")).collect();
    assert_eq!(
        rows(&client, "SELECT sku, qty FROM stock ORDER BY sku").await,
        expected_stock,
        "stock {context}"
    );
    // FLUSH checkpoints what exactly-once sinks wait for and waits until
    // they committed it, so the sink topics are complete now.
    let plain = committed_of(&bootstrap, "readings_out", "-sink-2").await;
    let ids: Vec<i64> = readings.iter().map(|r| r.0).collect();
    assert_each_once("readings_out", &plain, &ids, &context);
    // A PLAIN sink of a plain view over the source: its query's reader
    // stores its positions with the sink's checkpoints.
    let positive = committed_of(&bootstrap, "positive_out", "-sink-11").await;
    let ids: Vec<i64> = readings.iter().filter(|r| r.2 >= 0).map(|r| r.0).collect();
    assert_each_once("positive_out", &positive, &ids, &context);
    // The datagen table, generated across the kills: each row once.
    let generated = committed_of(&bootstrap, "generated_out", "-sink-13").await;
    let ids: Vec<i64> = (1..=GENERATED).collect();
    assert_each_once("generated_out", &generated, &ids, &context);

    // The view's sink: per key, each change starts where the one before
    // ended, and the last one ends at the view's rows.
    let mut expected: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
    for (_, sensor, v) in &readings {
        let slot = expected.entry(*sensor).or_default();
        slot.0 += 1;
        slot.1 += v;
    }
    let view = committed_of(&bootstrap, "per_sensor_out", "-sink-3").await;
    let (changes, aborted, transactions) = (view.messages.len(), view.aborted, view.transactions);
    assert_eq!(
        sensor_totals("per_sensor_out", &view, &context),
        expected,
        "per_sensor_out ends at the view {context}"
    );
    // The same view over a source: its reader's input is checkpointed, so
    // its sink is exactly once too; and so is a sink whose own query
    // aggregates the source (its operators' state is checkpointed).
    for (sink, suffix) in [
        ("per_sensor_src_out", "-sink-8"),
        ("sensor_query_out", "-sink-9"),
    ] {
        let read = committed_of(&bootstrap, sink, suffix).await;
        assert_eq!(
            sensor_totals(sink, &read, &context),
            expected,
            "{sink} ends at the per-sensor totals {context}"
        );
    }
    let stock_changes = committed_of(&bootstrap, "stock_out", "-sink-5").await;
    let got: BTreeMap<i64, i64> = replay_changes("stock_out", &stock_changes, "sku", &context)
        .iter()
        .map(|(sku, row)| (*sku, row["qty"].as_i64().unwrap()))
        .collect();
    assert_eq!(
        got, stock,
        "stock_out ends at the topic's last value per key {context}"
    );
    let statuses = rows(
        &client,
        "SELECT sink, status FROM eddy_catalog.sink_progress
           WHERE exactly_once AND committed_epoch > 0 ORDER BY sink",
    )
    .await;
    assert_eq!(
        statuses,
        [
            "generated_out running",
            "per_sensor_out running",
            "per_sensor_src_out running",
            "positive_out running",
            "readings_out running",
            "sensor_query_out running",
            "stock_out running"
        ],
        "sink status {context}"
    );
    println!(
        "exactly-once crash loop: {killed} kills ({during_recovery} during recovery), {} readings, {} skus; readings_out {} transactions ({} messages of attempts cut short), per_sensor_out {transactions} transactions, {changes} changes ({aborted} cut short), stock_out {} transactions, {} changes ({} cut short): exact",
        readings.len(),
        stock.len(),
        plain.transactions,
        plain.aborted,
        stock_changes.transactions,
        stock_changes.messages.len(),
        stock_changes.aborted,
    );
    drop(running);
    let _ = std::fs::remove_dir_all(&dir);
}

/// tansu grants producer ids but refuses `EndTxn`: `CREATE SINK` of an
/// exactly-once sink on it commits a test transaction, and fails with
/// 0A000 saying what to do; `exactly_once = 'false'` gives an
/// at-least-once sink that delivers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_without_transactions_fails_the_sink_with_a_hint() {
    let broker = TestBroker::start().await;
    broker.create_topic("out", 1).await;
    let dir = temp_dir("no-transactions");
    let (running, client) = EddyProcess::start(
        &dir.join("data"),
        &dir.join("eddy.log"),
        Duration::from_secs(60),
    )
    .await;
    let bootstrap = broker.bootstrap();
    client
        .batch_execute(
            "CREATE TABLE t (a BIGINT PRIMARY KEY, b BIGINT);
             INSERT INTO t VALUES (1, 10), (2, 20);",
        )
        .await
        .expect("table");
    let error = client
        .batch_execute(&format!(
            "CREATE SINK exact FROM t WITH (connector = 'kafka', topic = 'out',
               properties.bootstrap.server = '{bootstrap}', primary_key = 'a')
               FORMAT UPSERT ENCODE JSON;"
        ))
        .await
        .expect_err("an exactly-once sink on a broker without transactions");
    let db = error.as_db_error().expect("a database error");
    assert_eq!(db.code().code(), "0A000", "{db:?}");
    assert!(
        db.message().contains("broker without transactions")
            && db.message().contains("exactly_once = 'false'"),
        "{db:?}"
    );
    client
        .batch_execute(&format!(
            "CREATE SINK loose FROM t WITH (connector = 'kafka', topic = 'out',
               properties.bootstrap.server = '{bootstrap}', primary_key = 'a', exactly_once = 'false')
               FORMAT UPSERT ENCODE JSON;"
        ))
        .await
        .expect("an at-least-once sink");
    let deadline = Instant::now() + Duration::from_secs(60);
    let statuses = loop {
        let statuses = rows(
            &client,
            "SELECT sink, messages, status, exactly_once FROM eddy_catalog.sink_progress",
        )
        .await;
        if statuses == ["loose 2 running f"] || Instant::now() > deadline {
            break statuses;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(statuses, ["loose 2 running f"]);
    let read = broker.read_all("out", 2, Duration::from_secs(30)).await;
    assert_eq!(read.len(), 2, "only the at-least-once sink wrote: {read:?}");
    drop(running);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Transactions refused on the way (messages the broker rejects, which
/// leave the transaction abortable; a coordinator that is briefly away at
/// commit) are aborted and written again: the sink's topic still holds
/// every change once. In process, on the mock cluster, which is not `Send`
/// and stays on the test's thread.
#[test]
fn refused_transactions_are_aborted_and_written_again() {
    let mock = MockCluster::new(1).expect("mock cluster");
    mock.create_topic("changes", 1, 1).expect("topic");
    mock.create_topic(PROGRESS, 1, 1).expect("topic");
    let bootstrap = mock.bootstrap_servers();
    let dir = temp_dir("refused-transactions");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mut config = eddy::Config::in_memory("127.0.0.1:0");
        config.data_dir = Some(dir.join("data"));
        config.checkpoint_interval_ms = 100;
        let server = eddy::Server::start(&config).await.expect("start eddy");
        let (client, connection) = tokio_postgres::connect(
            &format!("host=127.0.0.1 port={} user=eddy", server.addr.port()),
            NoTls,
        )
        .await
        .expect("connect");
        tokio::spawn(connection);
        client
            .batch_execute(&format!(
                "CREATE TABLE t (id BIGINT PRIMARY KEY, v BIGINT);
                 INSERT INTO t SELECT i, i * 10 FROM generate_series(1, 50) AS s(i);
                 CREATE SINK changes FROM t
                   WITH (connector = 'kafka', topic = 'changes', properties.bootstrap.server = '{bootstrap}',
                         primary_key = 'id')
                   FORMAT DEBEZIUM ENCODE JSON;
                 FLUSH;"
            ))
            .await
            .expect("table and sink");
        // The next transaction's messages are written, its progress record
        // is refused for good (so the transaction must be aborted, its
        // messages stay in the mock's log as an aborted attempt), and the
        // next commits find no coordinator.
        let ok = RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR;
        let too_large = RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE;
        let no_coordinator = RDKafkaRespErr::RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE;
        mock.request_errors(RDKafkaApiKey::Produce, &[ok, too_large]);
        mock.request_errors(RDKafkaApiKey::EndTxn, &[no_coordinator; 2]);
        client
            .batch_execute(
                "UPDATE t SET v = v + 1 WHERE id % 3 = 0;
                 DELETE FROM t WHERE id % 5 = 0;
                 INSERT INTO t SELECT i, i + 0 FROM generate_series(51, 60) AS s(i);
                 FLUSH;",
            )
            .await
            .expect("changes");
        let expected: BTreeMap<i64, i64> = rows(&client, "SELECT id, v FROM t")
            .await
            .iter()
            .map(|row| {
                let (id, v) = row.split_once(' ').expect("two columns");
                (id.parse().expect("id"), v.parse().expect("v"))
            })
            .collect();
        assert_eq!(expected.len(), 50, "50 - 10 deleted + 10 inserted");
        let written = committed_of(&bootstrap, "changes", "-sink-1").await;
        let got: BTreeMap<i64, i64> = replay_changes("changes", &written, "id", "")
            .iter()
            .map(|(id, row)| (*id, row["v"].as_i64().expect("v")))
            .collect();
        assert_eq!(got, expected, "the sink's changes end at the table");
        assert!(
            written.aborted > 0,
            "the refused produce requests must have aborted a transaction"
        );
        assert_eq!(
            rows(&client, "SELECT status FROM eddy_catalog.sink_progress").await,
            ["running"]
        );
        println!(
            "refused transactions: {} committed, {} messages of aborted attempts, {} changes",
            written.transactions,
            written.aborted,
            written.messages.len()
        );
        drop(server);
    });
    drop(mock);
    let _ = std::fs::remove_dir_all(&dir);
}
