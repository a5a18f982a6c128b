//! Writing a view's changes out: the [`SinkHandle`] the engine hands each
//! committed epoch's changes to, the [`SinkProgress`] it reports, and
//! [`open`], which picks the connector a sink's `WITH (connector = ...)`
//! names.
//!
//! The engine sends a sink the changes of every epoch it commits, in epoch
//! order, without waiting: a task of the sink's own encodes them
//! ([`crate::sink_format`]) and writes them out. Without [`ExactlyOnce`]
//! delivery is at least once: nothing the engine sent is dropped while the
//! sink runs (a delivery that fails for good fails the sink, visibly);
//! after a restart of the sink, what was written before may be written
//! again.
//!
//! With [`ExactlyOnce`] (a durable engine) the engine sends only
//! checkpointed changes, one [`SinkChanges`] per checkpoint, which it keeps
//! in the checkpoint until the sink reports them committed
//! ([`SinkProgress::committed_epoch`]). The sink writes each in one
//! transaction together with a progress record naming the checkpoint, and
//! after a restart first reads its progress back and writes again exactly
//! the kept checkpoints after it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use tokio::sync::mpsc;

use crate::spec::SourceSpec;
use crate::{Error, Result};

/// The changes of one committed epoch: each row with its weight (positive:
/// inserted that many times; negative: deleted), consolidated.
#[derive(Debug, Clone)]
pub struct SinkChanges {
    /// The rows, in the sink's input schema.
    pub rows: RecordBatch,
    /// One weight per row.
    pub weights: Vec<i64>,
    /// The checkpoint that made these changes durable (0 for a sink that
    /// is not exactly once).
    pub epoch: u64,
}

/// What makes a sink exactly once.
#[derive(Debug, Clone, Default)]
pub struct ExactlyOnce {
    /// Names the sink in the external system for good, across restarts
    /// (a Kafka sink's transactional id and progress key).
    pub id: String,
    /// Checkpointed changes the sink may not have committed before a
    /// restart, oldest first: those after its progress are written again.
    pub unconfirmed: Vec<SinkChanges>,
}

/// True unless the sink's options say `exactly_once = 'false'` (for a
/// broker without transactions).
pub fn wants_exactly_once(spec: &SourceSpec) -> Result<bool> {
    match spec.options.get("exactly_once").map(String::as_str) {
        None => Ok(true),
        Some(value) => crate::kafka_sink::parse_bool("exactly_once", value),
    }
}

/// What a sink has done, as `eddy_catalog.sink_progress` shows it.
#[derive(Debug)]
pub struct SinkProgress {
    sink: String,
    target: String,
    queued: AtomicU64,
    delivered: AtomicU64,
    messages: AtomicU64,
    committed_epoch: AtomicU64,
    exactly_once: AtomicBool,
    status: Mutex<String>,
}

impl SinkProgress {
    /// Progress of sink `sink`, writing to `target` (a topic, say).
    pub fn new(sink: &str, target: &str) -> Self {
        Self {
            sink: sink.to_string(),
            target: target.to_string(),
            queued: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            messages: AtomicU64::new(0),
            committed_epoch: AtomicU64::new(0),
            exactly_once: AtomicBool::new(false),
            status: Mutex::new("running".to_string()),
        }
    }

    /// The sink's name.
    pub fn sink(&self) -> &str {
        &self.sink
    }

    /// Where it writes.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Epochs handed to the sink so far.
    pub fn queued(&self) -> u64 {
        self.queued.load(Ordering::Acquire)
    }

    /// Epochs whose messages are all acknowledged by the external system.
    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Acquire)
    }

    /// Messages acknowledged so far.
    pub fn messages(&self) -> u64 {
        self.messages.load(Ordering::Acquire)
    }

    pub(crate) fn add_queued(&self, epochs: u64) {
        self.queued.fetch_add(epochs, Ordering::AcqRel);
    }

    pub(crate) fn add_delivered(&self, epochs: u64, messages: u64) {
        self.messages.fetch_add(messages, Ordering::AcqRel);
        self.delivered.fetch_add(epochs, Ordering::AcqRel);
    }

    /// The last checkpoint an exactly-once sink knows committed in the
    /// external system (0 until it knows).
    pub fn committed_epoch(&self) -> u64 {
        self.committed_epoch.load(Ordering::Acquire)
    }

    /// True if the sink writes in transactions ([`ExactlyOnce`]).
    pub fn is_exactly_once(&self) -> bool {
        self.exactly_once.load(Ordering::Acquire)
    }

    pub(crate) fn set_exactly_once(&self) {
        self.exactly_once.store(true, Ordering::Release);
    }

    pub(crate) fn set_committed_epoch(&self, epoch: u64) {
        self.committed_epoch.fetch_max(epoch, Ordering::AcqRel);
    }

    /// `running`, `stalled: ...` or `failed: ...`.
    pub fn status(&self) -> String {
        match self.status.lock() {
            Ok(status) => status.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Say what the sink is doing.
    pub fn set_status(&self, status: impl Into<String>) {
        let status = status.into();
        match self.status.lock() {
            Ok(mut current) => *current = status,
            Err(poisoned) => *poisoned.into_inner() = status,
        }
    }

    /// True once the sink has stopped for good.
    pub fn is_failed(&self) -> bool {
        self.status().starts_with("failed")
    }
}

/// A running sink. Dropping it stops the sink (messages not yet
/// acknowledged may be lost: dropping is for `DROP SINK`).
#[derive(Debug)]
pub struct SinkHandle {
    sender: mpsc::UnboundedSender<SinkChanges>,
    progress: Arc<SinkProgress>,
    task: tokio::task::JoinHandle<()>,
}

impl SinkHandle {
    pub(crate) fn new(
        sender: mpsc::UnboundedSender<SinkChanges>,
        progress: Arc<SinkProgress>,
        task: tokio::task::JoinHandle<()>,
    ) -> Self {
        Self {
            sender,
            progress,
            task,
        }
    }

    /// Hand the sink one committed epoch's changes. Never waits.
    pub fn send(&self, changes: SinkChanges) {
        self.reserve().send(changes);
    }

    /// Count one epoch as handed over now (`FLUSH` waits for it) and
    /// return what sends it later, from any thread.
    pub fn reserve(&self) -> SinkSender {
        self.progress.queued.fetch_add(1, Ordering::AcqRel);
        SinkSender {
            sender: self.sender.clone(),
            progress: self.progress.clone(),
        }
    }

    /// The sink's progress.
    pub fn progress(&self) -> &Arc<SinkProgress> {
        &self.progress
    }
}

/// Sends one epoch's changes that [`SinkHandle::reserve`] counted.
#[derive(Debug)]
pub struct SinkSender {
    sender: mpsc::UnboundedSender<SinkChanges>,
    progress: Arc<SinkProgress>,
}

impl SinkSender {
    /// Hand the sink the changes. Never waits.
    pub fn send(self, changes: SinkChanges) {
        if self.sender.send(changes).is_err() && !self.progress.is_failed() {
            self.progress.set_status("failed: the sink stopped");
        }
    }
}

impl Drop for SinkHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What the engine must know about a sink's input before it creates it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SinkInputFacts {
    /// The input never deletes rows (it reads only append-only sources
    /// through filters and projections).
    pub append_only: bool,
    /// The sink will be exactly once (it needs its progress topic).
    pub exactly_once: bool,
}

/// How much [`check`] checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// The options, and the external system: a Kafka sink's topic exists,
    /// its progress topic is there (created if missing), its Avro schemas
    /// are registered. What `CREATE SINK` does.
    External,
    /// The options only: a restart re-creating a sink that was checked
    /// when it was created does not depend on the broker or registry being
    /// up; the running sink waits for them (and shows `stalled`).
    OptionsOnly,
}

/// Check a sink's options against its input and, as `reach` says, reach
/// the external system.
pub async fn check(
    spec: &SourceSpec,
    schema: &SchemaRef,
    facts: SinkInputFacts,
    reach: Reach,
) -> Result<()> {
    match spec.connector().as_str() {
        "kafka" => crate::kafka_sink::check(spec, schema, facts, reach).await,
        other => Err(unknown_connector(other)),
    }
}

/// Start a sink (on the current tokio runtime) whose input has `schema`;
/// exactly once with `exactly_once`.
pub fn open(
    spec: &SourceSpec,
    schema: &SchemaRef,
    progress: Arc<SinkProgress>,
    exactly_once: Option<ExactlyOnce>,
) -> Result<SinkHandle> {
    match spec.connector().as_str() {
        "kafka" => crate::kafka_sink::open(spec, schema, progress, exactly_once),
        other => Err(unknown_connector(other)),
    }
}

fn unknown_connector(name: &str) -> Error {
    if name.is_empty() {
        Error::InvalidConfig("WITH (connector = '...') is required".into())
    } else {
        Error::UnsupportedConnector(format!("{name} (as a sink)"))
    }
}
