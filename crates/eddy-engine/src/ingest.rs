//! Streaming input: readers that bring sources into the dataflow, and the
//! loop that turns what they read into epochs.
//!
//! Every materialized view that reads a source gets a reader of its own: a
//! task that reads the connector (from the source's startup position) and
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

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use datafusion::arrow::array::RecordBatch;
use eddy_common::{ChangeBatch, Error, Result};
use eddy_connectors::source::{SourceProgress, SourceReader};
use eddy_dataflow::NodeId;
use tokio::sync::mpsc::{self, error::TryRecvError};
use tokio::sync::Notify;
use tracing::{debug, warn};

use crate::catalog::Failure;
use crate::engine::WriteGuard;
use crate::Engine;

/// Batches a reader may queue before it waits for the dataflow.
const QUEUED_BATCHES: usize = 16;

/// Rows one epoch takes from all readers at most, so that an epoch (and
/// the writer's turn it holds) stays short under a backlog.
const EPOCH_ROWS: usize = 1 << 20;

/// What a reader's task sends.
enum Event {
    Rows(RecordBatch),
    /// The connector stopped with an error; the reader is done.
    Failed(Error),
}

/// A running reader of one source for one materialized view.
pub(crate) struct Reader {
    /// The view the reader feeds.
    pub(crate) view: String,
    /// The view's scan nodes of the source.
    pub(crate) nodes: Vec<NodeId>,
    /// Shared with the connector, shown in `eddy_catalog.source_progress`.
    pub(crate) progress: Arc<SourceProgress>,
    /// Batches taken into epochs, and their rows (for `FLUSH` and progress).
    pub(crate) batches_ingested: Arc<AtomicU64>,
    events: mpsc::Receiver<Event>,
    task: tokio::task::JoinHandle<()>,
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
                    Ok(Some(rows)) if rows.num_rows() == 0 => continue,
                    Ok(Some(rows)) => Event::Rows(rows),
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
            batches_ingested: Arc::new(AtomicU64::new(0)),
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
        wake.notified().await;
        loop {
            let Some(engine) = engine.upgrade() else {
                return;
            };
            let mut guard = engine.write().await;
            let started = Instant::now();
            match guard.ingest() {
                Ok(0) => break,
                Ok(rows) => {
                    debug!(rows, elapsed = ?started.elapsed(), "ingested");
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
    /// the number of rows taken (0: nothing was queued, nothing committed).
    pub(crate) fn ingest(&mut self) -> Result<usize> {
        let mut rows = 0usize;
        {
            let writer = self.writer_mut();
            let mut stopped: Vec<(usize, Error)> = Vec::new();
            for (index, reader) in writer.readers.iter_mut().enumerate() {
                while rows < EPOCH_ROWS {
                    match reader.events.try_recv() {
                        Ok(Event::Rows(batch)) => {
                            rows += batch.num_rows();
                            reader.batches_ingested.fetch_add(1, Ordering::Relaxed);
                            let changes = ChangeBatch::inserts(batch);
                            for node in &reader.nodes {
                                writer.dataflow.push(*node, changes.clone())?;
                            }
                        }
                        Ok(Event::Failed(error)) => {
                            stopped.push((index, error));
                            break;
                        }
                        Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                    }
                }
            }
            for (index, error) in stopped.into_iter().rev() {
                let reader = &writer.readers[index];
                reader.progress.set_status(format!("failed: {error}"));
            }
        }
        if rows == 0 {
            return Ok(0);
        }
        let report = self.writer_mut().dataflow.step_isolated();
        for (owner, error) in report.failed {
            warn!(view = %owner, %error, "materialized view failed");
            self.writer_mut().fail_view(&owner, &error);
        }
        self.writer_mut().integrate(report.output)?;
        self.commit();
        Ok(rows)
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
