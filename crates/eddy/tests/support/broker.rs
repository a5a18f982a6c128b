//! A real Kafka-protocol broker for integration tests.
//!
//! [`TestBroker::start`] runs a private [tansu](https://crates.io/crates/tansu)
//! broker with in-memory storage on a free port of 127.0.0.1, so a test can
//! drive Eddy's Kafka source and sink through librdkafka exactly as against
//! Apache Kafka, without Docker or a JVM. `scripts/setup.sh` builds the binary
//! once per machine into `~/.cache/eddy/tools/bin/tansu`; the environment
//! variable `EDDY_TANSU` points at another one.
//!
//! Invariants a test can rely on:
//! - every record this harness produces is its own batch (`batch.num.messages=1`,
//!   `linger.ms=0`). With multi-record batches tansu 0.6 is wrong twice: a
//!   consumer that starts inside a batch gets nothing of the rest of it (and
//!   may then get the following records more than once), and the high
//!   watermark is the last batch's base offset + 1. With one record per batch
//!   both are right.
//! - topics exist only once a test creates them with
//!   [`TestBroker::create_topic`]: tansu does not create topics on demand (a
//!   record sent to a missing topic waits until `message.timeout.ms`), and the
//!   harness's clients do not ask (`allow.auto.create.topics=false`).
//! - dropping the [`TestBroker`] kills the broker, and so does the end of the
//!   test process however it ends: the broker runs under a small shell that
//!   kills it when the pipe on the shell's stdin closes.
//!
//! The methods are async and need a tokio runtime: librdkafka's blocking
//! calls (metadata, watermarks) run on its blocking pool, so a broker can
//! share a runtime with the Eddy server under test. Shared by several test
//! binaries, each using a part of it.

#![allow(dead_code)]
#![allow(clippy::expect_used)]

use std::fs::File;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

/// How long a broker may take to answer its first metadata request.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a created topic may take to show up, with leaders, in metadata.
const TOPIC_TIMEOUT: Duration = Duration::from_secs(15);
/// The timeout of one request of the harness's own clients.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a read keeps draining after it has the expected number of
/// messages, so that unexpected extra messages show up in its result.
const DRAIN: Duration = Duration::from_millis(300);

/// Runs the broker given as `$0 $@` and kills it once stdin reaches EOF, which
/// happens when the test process drops its end of the pipe or dies, even by
/// SIGKILL. Exits with the broker's status when the broker exits by itself.
const SUPERVISOR: &str = r#"exec 3<&0
"$0" "$@" </dev/null &
broker=$!
{ read -r _ <&3; kill -KILL "$broker" 2>/dev/null; } &
wait "$broker""#;

/// A tansu broker process owned by one test; killed on drop.
pub struct TestBroker {
    supervisor: Child,
    /// Dropping it makes the supervisor kill the broker.
    lifeline: Option<ChildStdin>,
    port: u16,
    log: PathBuf,
    admin: Arc<AdminClient<DefaultClientContext>>,
    producer: FutureProducer,
    /// With SQLite storage: the directory holding the broker's database.
    sqlite: Option<PathBuf>,
}

/// A record to produce: everything but its topic and partition.
#[derive(Debug, Clone, Copy, Default)]
pub struct Record<'a> {
    /// The key; `None` is a null key.
    pub key: Option<&'a [u8]>,
    /// The value; `None` is a null value (a tombstone).
    pub payload: Option<&'a [u8]>,
    /// Headers in order; a `None` value is a null header value.
    pub headers: &'a [(&'a str, Option<&'a [u8]>)],
    /// The message timestamp (create time) in milliseconds since the Unix
    /// epoch; `None` lets the client stamp the current time.
    pub timestamp_ms: Option<i64>,
}

/// A message read back from the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumedMessage {
    /// The partition it was read from.
    pub partition: i32,
    /// Its offset in that partition.
    pub offset: i64,
    /// Its key; `None` for a null key.
    pub key: Option<Vec<u8>>,
    /// Its value; `None` for a null value.
    pub payload: Option<Vec<u8>>,
    /// Its headers in order.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    /// Its timestamp in milliseconds since the Unix epoch, if it has one.
    pub timestamp_ms: Option<i64>,
}

enum StartFailure {
    /// The broker exited, for instance because another process took the port
    /// between choosing it and binding it.
    Exited(ExitStatus),
    TimedOut(String),
}

impl TestBroker {
    /// Starts a broker on a free port and waits until it answers a metadata
    /// request. Panics, with the broker's log, if it does not start.
    pub async fn start() -> TestBroker {
        Self::start_with(false).await
    }

    /// Like [`TestBroker::start`], with the broker's state in a SQLite
    /// database of its own (tansu's `sqlite://` storage) instead of memory,
    /// so that a test can change the topics behind the broker's back
    /// ([`TestBroker::add_partition`]).
    pub async fn start_on_sqlite() -> TestBroker {
        Self::start_with(true).await
    }

    async fn start_with(sqlite: bool) -> TestBroker {
        let binary = tansu_binary();
        let mut exits = Vec::new();
        for _ in 0..3 {
            let port = free_port();
            let mut broker = Self::spawn(&binary, port, sqlite);
            match broker.wait_until_ready().await {
                Ok(()) => return broker,
                Err(StartFailure::Exited(status)) => {
                    exits.push(format!(
                        "port {port}: {status}; log:\n{}",
                        broker.log_tail()
                    ));
                }
                Err(StartFailure::TimedOut(error)) => panic!(
                    "tansu on port {port} did not answer metadata within {START_TIMEOUT:?} \
                     (last error: {error}); log {}:\n{}",
                    broker.log.display(),
                    broker.log_tail()
                ),
            }
        }
        panic!("tansu exited on start, three times:\n{}", exits.join("\n"))
    }

    fn spawn(binary: &Path, port: u16, sqlite: bool) -> TestBroker {
        static STARTED: AtomicU64 = AtomicU64::new(0);
        let started = STARTED.fetch_add(1, Ordering::Relaxed);
        let log = std::env::temp_dir().join(format!(
            "eddy-tansu-{}-{started}-{port}.log",
            std::process::id(),
        ));
        // tansu opens `sqlite://name` as `name` in its working directory.
        let (storage, workdir) = if sqlite {
            let dir = std::env::temp_dir().join(format!(
                "eddy-tansu-{}-{started}-{port}",
                std::process::id()
            ));
            std::fs::create_dir_all(&dir).expect("create the broker's directory");
            ("sqlite://tansu.db".to_string(), Some(dir))
        } else {
            ("memory://tansu/".to_string(), None)
        };
        let output = File::create(&log).expect("create the broker's log file");
        let errors = output.try_clone().expect("clone the broker's log file");
        let url = format!("tcp://127.0.0.1:{port}");
        let mut supervisor = Command::new("/bin/sh")
            .arg("-c")
            .arg(SUPERVISOR)
            .arg(binary)
            .arg("broker")
            .args(["--listener-url", &url])
            .args(["--advertised-listener-url", &url])
            .args(["--storage-engine", &storage])
            .current_dir(workdir.as_deref().unwrap_or(Path::new("/")))
            // tansu reads these from the environment too; keep the test's own
            // settings from leaking into the broker.
            .env_remove("SCHEMA_REGISTRY")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env_remove("CLUSTER_ID")
            .env("NO_COLOR", "1")
            .stdin(Stdio::piped())
            .stdout(output)
            .stderr(errors)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|error| panic!("spawn {}: {error}", binary.display()));
        let lifeline = supervisor.stdin.take();
        let bootstrap = format!("127.0.0.1:{port}");
        let admin = client_config(&bootstrap)
            .create()
            .expect("create an admin client");
        let producer = client_config(&bootstrap)
            .set("batch.num.messages", "1")
            .set("linger.ms", "0")
            .set("acks", "all")
            .set("message.timeout.ms", "30000")
            .create()
            .expect("create a producer");
        TestBroker {
            supervisor,
            lifeline,
            port,
            log,
            admin: Arc::new(admin),
            producer,
            sqlite: workdir,
        }
    }

    /// Add a partition to `topic`, as `kafka-topics --alter --partitions`
    /// would (tansu 0.6 does not implement CreatePartitions): the rows
    /// tansu's own topic creation writes, written into its SQLite database
    /// (needs [`TestBroker::start_on_sqlite`]). tansu reads partitions from
    /// the database on every metadata request, so the broker serves the
    /// new partition from then on. Returns the new partition's number.
    pub fn add_partition(&self, topic: &str) -> i32 {
        let dir = self
            .sqlite
            .as_ref()
            .expect("add_partition needs start_on_sqlite");
        const SCRIPT: &str = r#"
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], timeout=30)
topic_id, partitions = db.execute(
    "select id, partitions from topic where name = ?", (sys.argv[2],)).fetchone()
db.execute("update topic set partitions = ? where id = ?", (partitions + 1, topic_id))
topition = db.execute(
    "insert into topition (topic, partition) values (?, ?)", (topic_id, partitions)).lastrowid
db.execute("insert into watermark (topition) values (?)", (topition,))
db.commit()
print(partitions)
"#;
        let output = Command::new("python3")
            .args(["-c", SCRIPT])
            .arg(dir.join("tansu.db"))
            .arg(topic)
            .output()
            .expect("run python3");
        assert!(
            output.status.success(),
            "adding a partition failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .expect("the new partition's number")
    }

    async fn wait_until_ready(&mut self) -> Result<(), StartFailure> {
        let deadline = Instant::now() + START_TIMEOUT;
        let mut last_error = String::from("none yet");
        loop {
            if let Some(status) = self.supervisor.try_wait().expect("poll the broker process") {
                return Err(StartFailure::Exited(status));
            }
            if Instant::now() >= deadline {
                return Err(StartFailure::TimedOut(last_error));
            }
            let admin = Arc::clone(&self.admin);
            let metadata = tokio::task::spawn_blocking(move || {
                admin
                    .inner()
                    .fetch_metadata(None, Duration::from_millis(500))
            })
            .await
            .expect("metadata task");
            match metadata {
                Ok(metadata)
                    if metadata
                        .brokers()
                        .iter()
                        .any(|b| b.port() == i32::from(self.port)) =>
                {
                    return Ok(())
                }
                Ok(metadata) => {
                    let brokers: Vec<String> = metadata
                        .brokers()
                        .iter()
                        .map(|b| format!("{}:{}", b.host(), b.port()))
                        .collect();
                    last_error = format!("metadata lists other brokers: {brokers:?}");
                }
                Err(error) => last_error = error.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The `bootstrap.servers` value of this broker.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The file the broker's stdout and stderr go to; removed on drop unless
    /// the test is panicking.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// A client configuration for this broker that never creates topics
    /// implicitly; a base for tests that need their own clients.
    pub fn client_config(&self) -> ClientConfig {
        client_config(&self.bootstrap())
    }

    /// Creates a topic with `partitions` partitions (replication factor 1) and
    /// waits until metadata shows every partition with a leader.
    pub async fn create_topic(&self, name: &str, partitions: i32) {
        let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
        let options = AdminOptions::new().operation_timeout(Some(REQUEST_TIMEOUT));
        let results = self
            .admin
            .create_topics([&topic], &options)
            .await
            .unwrap_or_else(|error| panic!("create topic {name}: {error}"));
        for result in results {
            if let Err((topic, code)) = result {
                panic!("create topic {topic}: {code}");
            }
        }
        let deadline = Instant::now() + TOPIC_TIMEOUT;
        loop {
            match self.partition_count(name).await {
                Ok(count) if count == partitions => return,
                Ok(count) if count > partitions => {
                    panic!("topic {name} has {count} partitions, not {partitions}")
                }
                state => {
                    if Instant::now() >= deadline {
                        panic!(
                            "topic {name} not ready in metadata after {TOPIC_TIMEOUT:?}: {state:?}"
                        );
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The number of partitions of `topic` that have a leader, or why there
    /// is none.
    async fn partition_count(&self, topic: &str) -> Result<i32, String> {
        let admin = Arc::clone(&self.admin);
        let name = topic.to_string();
        let metadata = tokio::task::spawn_blocking(move || {
            admin
                .inner()
                .fetch_metadata(Some(name.as_str()), REQUEST_TIMEOUT)
        })
        .await
        .expect("metadata task")
        .map_err(|error| error.to_string())?;
        let topic = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .ok_or_else(|| "topic missing from metadata".to_string())?;
        if let Some(error) = topic.error() {
            return Err(format!("topic error {error:?}"));
        }
        let partitions = topic.partitions();
        if let Some(p) = partitions
            .iter()
            .find(|p| p.error().is_some() || p.leader() < 0)
        {
            return Err(format!("partition {} not ready: {:?}", p.id(), p.error()));
        }
        i32::try_from(partitions.len()).map_err(|error| error.to_string())
    }

    /// A producer that writes one record per batch (see the module docs). A
    /// clone of the harness's own; cheap.
    pub fn producer(&self) -> FutureProducer {
        self.producer.clone()
    }

    /// Produces one record with `key` and `payload` to `partition` of `topic`,
    /// waits for its delivery and returns its offset.
    pub async fn produce(
        &self,
        topic: &str,
        partition: i32,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
    ) -> i64 {
        self.produce_record(
            topic,
            partition,
            Record {
                key,
                payload,
                ..Record::default()
            },
        )
        .await
    }

    /// Produces `record` (with headers and a timestamp if it has them) to
    /// `partition` of `topic`, waits for its delivery and returns its offset.
    pub async fn produce_record(&self, topic: &str, partition: i32, record: Record<'_>) -> i64 {
        let mut message = FutureRecord::<[u8], [u8]>::to(topic).partition(partition);
        if let Some(key) = record.key {
            message = message.key(key);
        }
        if let Some(payload) = record.payload {
            message = message.payload(payload);
        }
        if let Some(timestamp) = record.timestamp_ms {
            message = message.timestamp(timestamp);
        }
        if !record.headers.is_empty() {
            let headers = record
                .headers
                .iter()
                .fold(OwnedHeaders::new(), |headers, &(key, value)| {
                    headers.insert(Header { key, value })
                });
            message = message.headers(headers);
        }
        let delivery = self
            .producer
            .send(message, REQUEST_TIMEOUT)
            .await
            .unwrap_or_else(|(error, _)| panic!("produce to {topic}/{partition}: {error}"));
        assert_eq!(
            delivery.partition, partition,
            "delivered to another partition"
        );
        delivery.offset
    }

    /// Reads `topic` from the beginning of every partition until `expect`
    /// messages have arrived, then drains briefly so that extra messages show
    /// up too. Messages are in the order consumed, which is offset order
    /// within each partition. Panics if fewer than `expect` arrive within
    /// `timeout`.
    pub async fn read_all(
        &self,
        topic: &str,
        expect: usize,
        timeout: Duration,
    ) -> Vec<ConsumedMessage> {
        let partitions = self
            .partition_count(topic)
            .await
            .unwrap_or_else(|error| panic!("metadata of {topic}: {error}"));
        let mut assignment = TopicPartitionList::new();
        for partition in 0..partitions {
            assignment
                .add_partition_offset(topic, partition, Offset::Beginning)
                .expect("add a partition to the assignment");
        }
        self.read(assignment, expect, timeout).await
    }

    /// Reads one partition of `topic` from `offset` until `expect` messages
    /// have arrived, then drains briefly like [`TestBroker::read_all`].
    pub async fn read_partition_from(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        expect: usize,
        timeout: Duration,
    ) -> Vec<ConsumedMessage> {
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset(topic, partition, Offset::Offset(offset))
            .expect("add a partition to the assignment");
        self.read(assignment, expect, timeout).await
    }

    async fn read(
        &self,
        assignment: TopicPartitionList,
        expect: usize,
        timeout: Duration,
    ) -> Vec<ConsumedMessage> {
        static READERS: AtomicU64 = AtomicU64::new(0);
        // librdkafka refuses assign() without a group.id; a fresh group that
        // never commits keeps reads independent of each other.
        let group = format!(
            "eddy-test-reader-{}-{}",
            std::process::id(),
            READERS.fetch_add(1, Ordering::Relaxed)
        );
        let consumer: StreamConsumer = self
            .client_config()
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .create()
            .expect("create a consumer");
        consumer.assign(&assignment).expect("assign partitions");
        let mut messages = Vec::new();
        let deadline = tokio::time::Instant::now() + timeout;
        let mut drain_until = None;
        loop {
            if drain_until.is_none() && messages.len() >= expect {
                drain_until = Some(tokio::time::Instant::now() + DRAIN);
            }
            let until = drain_until.unwrap_or(deadline);
            let message = match tokio::time::timeout_at(until, consumer.recv()).await {
                Ok(message) => message,
                Err(_) if drain_until.is_some() => return messages,
                Err(_) => panic!(
                    "read {} of {expect} messages from {:?} within {timeout:?}: {:?}",
                    messages.len(),
                    assignment,
                    per_partition(&messages)
                ),
            };
            let message = message.unwrap_or_else(|error| panic!("consume: {error}"));
            messages.push(ConsumedMessage {
                partition: message.partition(),
                offset: message.offset(),
                key: message.key().map(<[u8]>::to_vec),
                payload: message.payload().map(<[u8]>::to_vec),
                headers: message
                    .headers()
                    .map(|headers| {
                        headers
                            .iter()
                            .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
                            .collect()
                    })
                    .unwrap_or_default(),
                timestamp_ms: message.timestamp().to_millis(),
            });
        }
    }

    /// The high watermark of every partition of `topic`, by partition id: the
    /// offset the next record will get (with one record per batch; see the
    /// module docs).
    pub async fn high_watermarks(&self, topic: &str) -> Vec<i64> {
        let partitions = self
            .partition_count(topic)
            .await
            .unwrap_or_else(|error| panic!("metadata of {topic}: {error}"));
        let admin = Arc::clone(&self.admin);
        let topic = topic.to_string();
        tokio::task::spawn_blocking(move || {
            (0..partitions)
                .map(|partition| {
                    let (_low, high) = admin
                        .inner()
                        .fetch_watermarks(&topic, partition, REQUEST_TIMEOUT)
                        .unwrap_or_else(|error| {
                            panic!("watermarks of {topic}/{partition}: {error}")
                        });
                    high
                })
                .collect()
        })
        .await
        .expect("watermarks task")
    }

    /// The last lines of the broker's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        // Closing the pipe makes the supervisor kill the broker; killing the
        // whole process group as well does not wait for the supervisor.
        drop(self.lifeline.take());
        let _ = Command::new("kill")
            .args(["-s", "KILL", "--", &format!("-{}", self.supervisor.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.supervisor.kill();
        let _ = self.supervisor.wait();
        if std::thread::panicking() {
            eprintln!("tansu log kept at {}", self.log.display());
        } else {
            let _ = std::fs::remove_file(&self.log);
            if let Some(dir) = &self.sqlite {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }
}

/// The tansu binary: `$EDDY_TANSU`, else the one `scripts/setup.sh` builds.
fn tansu_binary() -> PathBuf {
    let binary = match std::env::var_os("EDDY_TANSU") {
        Some(path) => PathBuf::from(path),
        None => {
            let home = std::env::var_os("HOME").expect("HOME is not set");
            PathBuf::from(home).join(".cache/eddy/tools/bin/tansu")
        }
    };
    assert!(
        binary.is_file(),
        "no tansu broker at {}: run scripts/setup.sh (it builds one into \
         ~/.cache/eddy/tools), or point EDDY_TANSU at a tansu 0.6 binary",
        binary.display()
    );
    binary
}

/// A port nothing listens on right now. Another process may take it before
/// the broker binds it; [`TestBroker::start`] then retries.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("bind a free port")
        .port()
}

fn client_config(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("allow.auto.create.topics", "false")
        .set("socket.timeout.ms", "10000");
    config
}

fn per_partition(messages: &[ConsumedMessage]) -> std::collections::BTreeMap<i32, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for message in messages {
        *counts.entry(message.partition).or_insert(0) += 1;
    }
    counts
}
