//! Streaming input: readers that bring sources into the dataflow, and the
//! loop that turns what they read into epochs.
//!
//! Every materialized view that reads a source gets a reader of its own: a
//! task that reads the connector (from the source's startup position, or
//! with a data directory after a restart from where the last checkpoint
//! left it, see [`Stored`]) and
//! queues Arrow batches in a bounded channel, which is what pushes back on a
//! connector when the dataflow falls behind. The ingest loop wakes when any
//! reader queued something, takes the writer's turn, drains every reader's
//! queue into the view's scan nodes and commits one epoch. Under load the
//! batches of many readers share an epoch; when idle, a batch is committed
//! as soon as it arrives.
//!
//! An operator that fails on streamed input (a division by zero, say) fails
//! only the view it belongs to and the views that read it: they stop being
//! maintained and reading them reports the error. Everything else commits.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use datafusion::arrow::datatypes::SchemaRef;
use eddy_common::row::RowCodec;
use eddy_common::{ChangeBatch, Error, Result};
use eddy_connectors::source::{Resume, SourceBatch, SourceProgress, SourceReader};
use eddy_connectors::spec::SourceSpec;
use eddy_dataflow::NodeId;
use tokio::sync::mpsc::{self, error::TryRecvError};
use tokio::sync::Notify;
use tracing::{debug, warn};

use crate::catalog::Failure;
use crate::engine::{Latest, WriteGuard};
use crate::Engine;

/// Batches a reader may queue before it waits for the dataflow.
const QUEUED_BATCHES: usize = 16;

/// Rows one epoch takes from all readers at most, so that an epoch (and
/// the writer's turn it holds) stays short under a backlog.
const EPOCH_ROWS: usize = 1 << 20;

/// What a reader's task sends.
enum Event {
    Rows(SourceBatch),
    /// The connector stopped with an error; the reader is done.
    Failed(Error),
}

/// Where a durable engine keeps what a reader takes, so that after a
/// restart the reader goes on right after the last checkpointed message.
pub(crate) enum Stored {
    /// A connector table's reader, under the table's creation number: its
    /// positions (an UPSERT table's message keys are the writer's, and the
    /// rows are the table's contents,
    /// stored as a `log` of change sets for an append-only table, by row
    /// for a keyed one).
    Table { id: u64, log: bool },
    /// A reader of a source for a materialized view, under the view's
    /// creation number: its positions, and with a `codec`
    /// the rows it took, each behind the scan's number among the view's
    /// sources. A restart fills a view that does not store its operators'
    /// state from those rows, as a view over a table is filled.
    Scan {
        view: u64,
        scan: u8,
        codec: Option<RowCodec>,
    },
}

impl Stored {
    /// The creation number the reader's entries are stored under.
    pub(crate) fn id(&self) -> u64 {
        match self {
            Stored::Table { id, .. } => *id,
            Stored::Scan { view, .. } => *view,
        }
    }

    /// The key of the reader's state entry `kind` + `key`.
    pub(crate) fn state_key(&self, kind: u8, key: &[u8]) -> Vec<u8> {
        let mut full = Vec::with_capacity(3 + key.len());
        if let Stored::Scan { scan, .. } = self {
            full.extend_from_slice(&[crate::engine::SCAN, *scan]);
        }
        full.push(kind);
        full.extend_from_slice(key);
        full
    }
}

/// A reader to start: the source, the scan nodes it feeds, where it goes on
/// from after a restart and where what it takes is stored.
pub(crate) struct SourceScan {
    pub(crate) source: String,
    pub(crate) nodes: Vec<NodeId>,
    pub(crate) spec: Arc<SourceSpec>,
    pub(crate) schema: SchemaRef,
    pub(crate) stored: Option<Stored>,
    pub(crate) resume: Option<Resume>,
}

/// A running reader of one source for one materialized view.
pub(crate) struct Reader {
    /// The view the reader feeds.
    pub(crate) view: String,
    /// The view's scan nodes of the source.
    pub(crate) nodes: Vec<NodeId>,
    /// Shared with the connector, shown in `eddy_catalog.source_progress`.
    pub(crate) progress: Arc<SourceProgress>,
    /// With a durable engine, where what the reader takes is stored.
    pub(crate) stored: Option<Stored>,
    /// The last offset taken of each partition.
    pub(crate) positions: BTreeMap<String, i64>,
    events: mpsc::Receiver<Event>,
    task: tokio::task::JoinHandle<()>,
}

impl Reader {
    /// Stop the reader and drop what it queued: none of it is taken.
    fn halt(&mut self) {
        self.task.abort();
        self.events.close();
        while self.events.try_recv().is_ok() {}
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The engine's side of ingestion: a wake-up for the ingest loop, started
/// once per engine.
#[derive(Default)]
pub(crate) struct Ingest {
    wake: Arc<Notify>,
    started: Mutex<bool>,
}

impl Reader {
    /// Start `reader` on the current tokio runtime.
    pub(crate) fn spawn(
        wake: Arc<Notify>,
        view: &str,
        source: &str,
        nodes: Vec<NodeId>,
        mut reader: Box<dyn SourceReader>,
        progress: Arc<SourceProgress>,
    ) -> Result<Self> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| Error::internal("sources need a tokio runtime"))?;
        let (sender, events) = mpsc::channel(QUEUED_BATCHES);
        let name = source.to_string();
        let task = runtime.spawn(async move {
            loop {
                let event = match reader.next_batch().await {
                    Ok(Some(batch)) if batch.rows.num_rows() == 0 && batch.positions.is_empty() => {
                        continue
                    }
                    Ok(Some(batch)) => Event::Rows(batch),
                    Ok(None) => {
                        debug!(source = %name, "source ended");
                        return;
                    }
                    Err(error) => {
                        warn!(source = %name, %error, "source stopped");
                        Event::Failed(crate::connector_error(error))
                    }
                };
                let failed = matches!(event, Event::Failed(_));
                if sender.send(event).await.is_err() {
                    return;
                }
                wake.notify_one();
                if failed {
                    return;
                }
            }
        });
        Ok(Self {
            view: view.to_string(),
            nodes,
            progress,
            stored: None,
            positions: BTreeMap::new(),
            events,
            task,
        })
    }
}

impl Engine {
    /// Start the ingest loop if it is not running. Needs a tokio runtime.
    pub(crate) fn start_ingest(self: &Arc<Self>) {
        let ingest = self.ingest();
        let mut started = match ingest.started.lock() {
            Ok(started) => started,
            Err(poisoned) => poisoned.into_inner(),
        };
        if *started {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        *started = true;
        let wake = ingest.wake.clone();
        let engine = Arc::downgrade(self);
        runtime.spawn(ingest_loop(engine, wake));
    }
}

async fn ingest_loop(engine: Weak<Engine>, wake: Arc<Notify>) {
    loop {
        // Woken by a reader, or after a checkpoint interval so that what
        // was taken since the last checkpoint is made durable when idle.
        let interval = match engine.upgrade() {
            Some(engine) => engine.checkpoint_interval,
            None => return,
        };
        let _ = tokio::time::timeout(interval, wake.notified()).await;
        loop {
            let Some(engine) = engine.upgrade() else {
                return;
            };
            let mut guard = engine.write().await;
            let started = Instant::now();
            match guard.ingest() {
                Ok(0) => break,
                Ok(batches) => {
                    debug!(batches, elapsed = ?started.elapsed(), "ingested");
                }
                Err(error) => {
                    warn!(%error, "ingest failed");
                    break;
                }
            }
        }
    }
}

impl WriteGuard<'_> {
    /// Take what readers have queued into one epoch and commit it. Returns
    /// the number of batches taken (0: nothing was queued, nothing
    /// committed).
    pub(crate) fn ingest(&mut self) -> Result<usize> {
        let mut rows = 0usize;
        let mut batches = 0usize;
        if self.writer_mut().replaying {
            // Input waits until the whole catalog is back (an exactly-once
            // sink created again must not miss what comes before it).
            return Ok(0);
        }
        {
            let writer = self.writer_mut();
            let mut stopped: Vec<(usize, Error)> = Vec::new();
            for index in 0..writer.readers.len() {
                let mut latest = Latest::new();
                while rows < EPOCH_ROWS {
                    let batch = match writer.readers[index].events.try_recv() {
                        Ok(Event::Rows(batch)) => batch,
                        Ok(Event::Failed(error)) => {
                            stopped.push((index, error));
                            break;
                        }
                        Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                    };
                    let changes = match &batch.upserts {
                        Some(upserts) => {
                            let table = writer.readers[index].view.clone();
                            match writer.upserts_as_changes(
                                &table,
                                &mut latest,
                                &batch.rows,
                                upserts,
                                &batch.message_keys,
                            ) {
                                Ok(changes) => changes,
                                Err(error) => {
                                    // Not taken: after a restart the reader
                                    // reads it again.
                                    writer.readers[index].halt();
                                    stopped.push((index, error));
                                    break;
                                }
                            }
                        }
                        None => vec![ChangeBatch::inserts(batch.rows)],
                    };
                    let reader = &mut writer.readers[index];
                    batches += 1;
                    rows += changes.iter().map(ChangeBatch::num_rows).sum::<usize>();
                    // Committed with this epoch: FLUSH, which waits for
                    // positions, needs the writer's turn too.
                    reader.progress.committed(&batch.positions);
                    reader.positions.extend(batch.positions.iter().cloned());
                    if let Some(stored) = &reader.stored {
                        writer.unsynced = true;
                        let id = stored.id();
                        if let Stored::Scan {
                            scan,
                            codec: Some(codec),
                            ..
                        } = stored
                        {
                            let mut key = Vec::new();
                            for changes in &changes {
                                let rows = codec.encode(changes.data().columns())?;
                                for (row, weight) in rows.iter().zip(changes.weights()) {
                                    key.clear();
                                    key.push(*scan);
                                    key.extend_from_slice(row.data());
                                    writer.pending.add_row(id, &key, *weight);
                                }
                            }
                        }
                    }
                    for node in &reader.nodes {
                        for changes in &changes {
                            writer.dataflow.push(*node, changes.clone())?;
                        }
                    }
                }
            }
            for (index, error) in stopped.into_iter().rev() {
                let reader = &writer.readers[index];
                reader.progress.set_status(format!("failed: {error}"));
            }
        }
        if rows == 0 {
            self.checkpoint_if_due()?;
            return Ok(batches);
        }
        let report = self.writer_mut().dataflow.step_isolated();
        for (owner, error) in report.failed {
            warn!(view = %owner, %error, "materialized view failed");
            self.writer_mut().fail_view(&owner, &error);
        }
        self.writer_mut().integrate(report.output)?;
        self.commit_stream()?;
        Ok(batches)
    }
}

impl Ingest {
    /// What readers notify when they queue rows.
    pub(crate) fn wake_handle(&self) -> Arc<Notify> {
        self.wake.clone()
    }
}

/// A failure as stored in the catalog.
pub(crate) fn failure_of(error: &Error) -> Failure {
    Failure {
        code: error.sqlstate(),
        message: error.to_string(),
    }
}

/// How long `FLUSH` waits for sources to catch up with their inputs.
const FLUSH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

impl Engine {
    /// Wait until every write acknowledged before this call is visible,
    /// every source whose connector can say where its input ends (Kafka:
    /// the high watermarks) has committed everything up to there, and every
    /// sink has delivered what those epochs changed (exactly-once sinks get
    /// a checkpoint for it). Writes
    /// are committed before they are acknowledged, so taking the writer's
    /// turn covers them.
    pub async fn flush(&self) -> Result<()> {
        let mut waiting = Vec::new();
        for progress in &self.snapshot().progress {
            let Some(probe) = progress.end_probe() else {
                continue;
            };
            let ends = tokio::task::spawn_blocking(move || probe())
                .await
                .map_err(|e| Error::internal(format!("FLUSH lookup did not finish: {e}")))?
                .map_err(crate::connector_error)?;
            waiting.push((progress.clone(), ends));
        }
        let deadline = Instant::now() + FLUSH_TIMEOUT;
        loop {
            {
                let mut guard = self.write().await;
                while guard.ingest()? > 0 {}
            }
            let running = self.snapshot().progress.clone();
            waiting.retain(|(progress, ends)| {
                running.iter().any(|r| Arc::ptr_eq(r, progress))
                    && !progress.status().starts_with("failed")
                    && !progress.has_committed(ends)
            });
            let Some((progress, _)) = waiting.first() else {
                break;
            };
            if Instant::now() >= deadline {
                return Err(Error::Data {
                    code: "57014",
                    message: format!(
                        "FLUSH gave up after {}s waiting for source \"{}\" (read for \"{}\") to catch up",
                        FLUSH_TIMEOUT.as_secs(),
                        progress.source(),
                        progress.view()
                    ),
                });
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        // Everything read is made durable (exactly-once sinks are handed
        // changes by checkpoints); then wait until what sinks were handed
        // is acknowledged.
        self.write().await.checkpoint_now()?;
        let sinks: Vec<_> = self
            .snapshot()
            .sink_progress
            .iter()
            .map(|p| (p.clone(), p.queued()))
            .collect();
        for (sink, queued) in sinks {
            while sink.delivered() < queued && !sink.is_failed() {
                if Instant::now() >= deadline {
                    return Err(Error::Data {
                        code: "57014",
                        message: format!(
                            "FLUSH gave up after {}s waiting for sink \"{}\" to deliver",
                            FLUSH_TIMEOUT.as_secs(),
                            sink.sink()
                        ),
                    });
                }
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        }
        Ok(())
    }
}
