//! Reading sources: the [`SourceReader`] every connector implements, the
//! [`SourceProgress`] it reports, and [`open`], which picks the connector a
//! source's `WITH (connector = ...)` names.
//!
//! A reader yields Arrow batches in the source's schema (its declared
//! columns, then its `INCLUDE` columns), waiting as long as it must. It owns
//! its position in the input; the engine only consumes what it yields.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;

use crate::spec::SourceSpec;
use crate::{Error, Result};

/// Rows a reader read, and how far they reach in each partition.
#[derive(Debug, Clone)]
pub struct SourceBatch {
    /// The rows, in the source's schema.
    pub rows: RecordBatch,
    /// The last offset of each partition the rows came from (including
    /// messages that were bad and skipped).
    pub positions: Vec<(String, i64)>,
    /// Connector tables with a primary key: what each row does to the row
    /// of its key ([`Upsert`]); `None`: every row is inserted. The reader
    /// does not know the rows keys have: the engine, which holds the
    /// table, retracts them.
    pub upserts: Option<Vec<Upsert>>,
    /// `FORMAT UPSERT` connector tables: the Kafka key of each row's
    /// message (a `Set` now points it at the row's primary key, a `Forget`
    /// deletes what it pointed at); empty for other readers.
    pub message_keys: Vec<Option<Vec<u8>>>,
}

/// What a row of a keyed connector table's [`SourceBatch`] does to the
/// row of its primary key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upsert {
    /// The row replaces the row of its key, if there is one.
    Set,
    /// The row of its key goes, if there is one (only the key columns of
    /// this row count; the others may be null).
    Delete,
    /// An UPSERT tombstone: the row its message key last set goes, if any
    /// (the row's columns are null).
    Forget,
}

/// Where a connector table's reader goes on from after a restart: what the
/// last checkpoint stored of it.
#[derive(Debug, Clone, Default)]
pub struct Resume {
    /// The last offset taken of each partition (as in
    /// [`SourceBatch::positions`]).
    pub positions: BTreeMap<String, i64>,
}

/// True if readers of `spec` can go on from a [`Resume`]; others start
/// from their startup position again after a restart. Generators can: a
/// row depends only on its number (and the options), so going on after
/// the last number taken gives the rows a reader that never stopped would
/// have.
pub fn resumable(spec: &SourceSpec) -> bool {
    spec.connector() == "kafka" || generated(spec)
}

/// True if `spec` is one of the built-in generators, whose readers only
/// insert rows.
pub fn generated(spec: &SourceSpec) -> bool {
    matches!(spec.connector().as_str(), "nexmark" | "datagen")
}

/// Where a reader of `spec` that starts now (not resuming) begins, as
/// [`Resume::positions`], where the connector resolves that up front
/// (Kafka's `latest` and timestamp startup modes); `None` where a reader
/// resolves its start itself. Blocking: it may ask the broker.
pub fn start_positions(spec: &SourceSpec) -> Result<Option<BTreeMap<String, i64>>> {
    match spec.connector().as_str() {
        "kafka" => crate::kafka::start_positions(spec),
        _ => Ok(None),
    }
}

/// True if readers of `spec` yield [`Upsert`]s: connector tables with a
/// primary key (any format).
pub fn keyed(spec: &SourceSpec) -> bool {
    !spec.primary_key.is_empty()
}

/// Looks up where each partition of a source ends now (the next offset to
/// be written), for `FLUSH`. Blocking.
pub type EndProbe = Arc<dyn Fn() -> Result<BTreeMap<String, i64>> + Send + Sync>;

/// A connector reading one source.
#[async_trait::async_trait]
pub trait SourceReader: Send {
    /// The next rows. Waits until rows are there; `Ok(None)` once a bounded
    /// source has ended. An error stops the reader: connectors retry what
    /// can be retried themselves.
    async fn next_batch(&mut self) -> Result<Option<SourceBatch>>;
}

/// The schema a source produces from its declared columns, checking the
/// connector's options. `declared` may be empty where the connector knows
/// its columns (the Nexmark tables, Avro topics whose schema is
/// registered).
pub async fn source_schema(spec: &SourceSpec, declared: &SchemaRef) -> Result<SchemaRef> {
    match spec.connector().as_str() {
        "nexmark" => crate::generator::nexmark_schema(spec, declared),
        "datagen" => crate::generator::datagen_schema(spec, declared),
        "kafka" => crate::kafka::kafka_schema(spec, declared).await,
        other => Err(unknown_connector(other)),
    }
}

/// Start reading a source whose schema is `schema` (as [`source_schema`]
/// returned it, `NOT NULL` flags of a connector table's columns included).
/// Readers emit batches of the schema with every column nullable, and a
/// message that would leave a `NOT NULL` column NULL is bad. Bad messages
/// go to `errors`, shared by all readers of the source.
pub fn open(
    spec: &SourceSpec,
    schema: &SchemaRef,
    progress: Arc<SourceProgress>,
    errors: Arc<ErrorLog>,
    resume: Option<Resume>,
) -> Result<Box<dyn SourceReader>> {
    let nullable = nullable(schema);
    match spec.connector().as_str() {
        "nexmark" => crate::generator::open_nexmark(spec, &nullable, progress, resume),
        "datagen" => crate::generator::open_datagen(spec, &nullable, progress, resume),
        "kafka" => crate::kafka::open_kafka(spec, schema, progress, errors, resume),
        other => Err(unknown_connector(other)),
    }
}

/// `schema` with every column nullable.
pub(crate) fn nullable(schema: &SchemaRef) -> SchemaRef {
    let fields: Vec<arrow::datatypes::Field> = schema
        .fields()
        .iter()
        .map(|f| f.as_ref().clone().with_nullable(true))
        .collect();
    Arc::new(arrow::datatypes::Schema::new(fields))
}

fn unknown_connector(name: &str) -> Error {
    if name.is_empty() {
        Error::InvalidConfig("WITH (connector = '...') is required".into())
    } else {
        Error::UnsupportedConnector(name.to_string())
    }
}

/// Progress of one partition of a source, as `eddy_catalog.source_progress`
/// shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionProgress {
    /// The partition (`"0"` for generators).
    pub partition: String,
    /// The latest offset read (for generators: the last event or row number).
    pub offset: Option<i64>,
    /// The partition's high watermark, where the connector knows it.
    pub high_watermark: Option<i64>,
    /// Messages read so far.
    pub messages: u64,
    /// Messages per second over the last few seconds.
    pub messages_per_second: f64,
}

impl PartitionProgress {
    /// Messages not read yet, where the high watermark is known.
    pub fn lag(&self) -> Option<i64> {
        let high = self.high_watermark?;
        Some((high - self.offset.map_or(0, |o| o + 1)).max(0))
    }
}

#[derive(Debug)]
struct PartitionState {
    progress: PartitionProgress,
    window_start: Instant,
    window_messages: u64,
}

impl PartitionState {
    fn new(partition: &str, now: Instant) -> Self {
        Self {
            progress: PartitionProgress {
                partition: partition.to_string(),
                offset: None,
                high_watermark: None,
                messages: 0,
                messages_per_second: 0.0,
            },
            window_start: now,
            window_messages: 0,
        }
    }
}

/// What a reader has done, shared between the reader and the engine.
pub struct SourceProgress {
    source: String,
    view: String,
    state: Mutex<(BTreeMap<String, PartitionState>, String)>,
    /// The last offset per partition whose rows are committed in an epoch.
    committed: Mutex<BTreeMap<String, i64>>,
    probe: Mutex<Option<EndProbe>>,
}

impl std::fmt::Debug for SourceProgress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceProgress")
            .field("source", &self.source)
            .field("view", &self.view)
            .finish_non_exhaustive()
    }
}

/// Rates are measured over windows of this length.
const RATE_WINDOW: Duration = Duration::from_secs(1);

impl SourceProgress {
    /// Progress of `source` as read for materialized view `view`.
    pub fn new(source: &str, view: &str) -> Self {
        Self {
            source: source.to_string(),
            view: view.to_string(),
            state: Mutex::new((BTreeMap::new(), "running".to_string())),
            committed: Mutex::new(BTreeMap::new()),
            probe: Mutex::new(None),
        }
    }

    /// The connector can say where its partitions end (for `FLUSH`).
    pub fn set_end_probe(&self, probe: EndProbe) {
        if let Ok(mut slot) = self.probe.lock() {
            *slot = Some(probe);
        }
    }

    /// Where the source's partitions end, if the connector can say.
    pub fn end_probe(&self) -> Option<EndProbe> {
        self.probe.lock().ok().and_then(|p| p.clone())
    }

    /// Rows up to these positions are committed (called by the engine).
    pub fn committed(&self, positions: &[(String, i64)]) {
        if let Ok(mut committed) = self.committed.lock() {
            for (partition, offset) in positions {
                let slot = committed.entry(partition.clone()).or_insert(-1);
                *slot = (*slot).max(*offset);
            }
        }
    }

    /// True when every partition in `ends` has its rows committed up to
    /// (not including) the offset given.
    pub fn has_committed(&self, ends: &BTreeMap<String, i64>) -> bool {
        let Ok(committed) = self.committed.lock() else {
            return false;
        };
        ends.iter().all(|(partition, end)| {
            *end <= 0 || committed.get(partition).is_some_and(|c| c + 1 >= *end)
        })
    }

    /// The source's name.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The materialized view the reader feeds.
    pub fn view(&self) -> &str {
        &self.view
    }

    fn with<T>(&self, f: impl FnOnce(&mut (BTreeMap<String, PartitionState>, String)) -> T) -> T {
        match self.state.lock() {
            Ok(mut state) => f(&mut state),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    /// A partition is being read (it shows before anything is read from it).
    pub fn ensure_partition(&self, partition: &str) {
        let now = Instant::now();
        self.with(|(partitions, _)| {
            partitions
                .entry(partition.to_string())
                .or_insert_with(|| PartitionState::new(partition, now));
        });
    }

    /// `messages` more were read from `partition`, the last at `offset`.
    pub fn record(&self, partition: &str, offset: i64, messages: u64) {
        let now = Instant::now();
        self.with(|(partitions, _)| {
            let state = partitions
                .entry(partition.to_string())
                .or_insert_with(|| PartitionState::new(partition, now));
            state.progress.offset = Some(offset);
            state.progress.messages += messages;
            let elapsed = now.duration_since(state.window_start);
            if elapsed >= RATE_WINDOW {
                let read = state.progress.messages - state.window_messages;
                state.progress.messages_per_second = read as f64 / elapsed.as_secs_f64();
                state.window_start = now;
                state.window_messages = state.progress.messages;
            }
        });
    }

    /// The connector learned `partition`'s high watermark.
    pub fn set_high_watermark(&self, partition: &str, high_watermark: i64) {
        self.with(|(partitions, _)| {
            if let Some(state) = partitions.get_mut(partition) {
                state.progress.high_watermark = Some(high_watermark);
            }
        });
    }

    /// What the reader is doing: `running`, `ended`, `stalled: ...`,
    /// `failed: ...`.
    pub fn set_status(&self, status: impl Into<String>) {
        let status = status.into();
        self.with(|(_, current)| *current = status);
    }

    /// The reader's status.
    pub fn status(&self) -> String {
        self.with(|(_, status)| status.clone())
    }

    /// Every partition's progress. A partition that has read nothing for a
    /// whole rate window shows the rate of what it read since.
    pub fn partitions(&self) -> Vec<PartitionProgress> {
        let now = Instant::now();
        self.with(|(partitions, _)| {
            partitions
                .values()
                .map(|state| {
                    let mut progress = state.progress.clone();
                    let elapsed = now.duration_since(state.window_start);
                    if elapsed >= RATE_WINDOW * 2 {
                        let read = progress.messages - state.window_messages;
                        progress.messages_per_second = read as f64 / elapsed.as_secs_f64();
                    }
                    progress
                })
                .collect()
        })
    }
}

/// Bytes of a bad message's payload kept in the error log.
const PAYLOAD_PREFIX: usize = 256;
/// Bad messages kept per source; the oldest go first.
const ERRORS_KEPT: usize = 10_000;

/// A message that could not be read, as `eddy_catalog.source_errors`
/// shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadMessage {
    /// The partition it is in.
    pub partition: String,
    /// Its offset.
    pub offset: i64,
    /// Why it could not be read.
    pub reason: String,
    /// The first bytes of its payload.
    pub payload_prefix: Vec<u8>,
    /// When it was found.
    pub at: SystemTime,
}

impl BadMessage {
    /// A bad message with the first bytes of `payload`.
    pub fn new(partition: String, offset: i64, reason: String, payload: &[u8]) -> Self {
        Self {
            partition,
            offset,
            reason,
            payload_prefix: payload[..payload.len().min(PAYLOAD_PREFIX)].to_vec(),
            at: SystemTime::now(),
        }
    }
}

/// The bad messages of one source. Every reader of the source reports what
/// it finds; a message is recorded once, however many readers find it.
#[derive(Debug, Default)]
pub struct ErrorLog {
    messages: Mutex<BTreeMap<(String, i64), BadMessage>>,
    order: Mutex<std::collections::VecDeque<(String, i64)>>,
}

impl ErrorLog {
    /// Record a bad message, unless it is recorded already. True if it was
    /// not.
    pub fn record(&self, message: BadMessage) -> bool {
        let key = (message.partition.clone(), message.offset);
        let (Ok(mut messages), Ok(mut order)) = (self.messages.lock(), self.order.lock()) else {
            return false;
        };
        if messages.contains_key(&key) {
            return false;
        }
        messages.insert(key.clone(), message);
        order.push_back(key);
        while order.len() > ERRORS_KEPT {
            if let Some(oldest) = order.pop_front() {
                messages.remove(&oldest);
            }
        }
        true
    }

    /// Every recorded message, by partition and offset.
    pub fn messages(&self) -> Vec<BadMessage> {
        match self.messages.lock() {
            Ok(messages) => messages.values().cloned().collect(),
            Err(poisoned) => poisoned.into_inner().values().cloned().collect(),
        }
    }
}
