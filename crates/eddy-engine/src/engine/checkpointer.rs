//! Checkpoints written on a thread of their own, so that the writer goes
//! on taking input while RocksDB syncs (a checkpoint of streamed input can
//! take hundreds of milliseconds).
//!
//! Checkpoints are written one at a time in the order handed over, so a
//! later one never lands before an earlier one. The writer waits for a
//! checkpoint only where an acknowledgement depends on it (DDL, DML,
//! `FLUSH`); streamed epochs are published before they are durable anyway.
//! At most one checkpoint waits behind the one being written: handing over
//! another waits, which slows the writer down to what the disk takes. An
//! exactly-once sink is handed its changes by this thread, once their
//! checkpoint is written. After a failed write nothing more is written, and
//! the writer's next checkpoint fails with the cause.

use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};

use eddy_common::{Error, Result};
use eddy_connectors::sink::{SinkChanges, SinkSender};
use eddy_dataflow::state::StateBudget;
use eddy_state::{Checkpoint, CheckpointInfo, Store, StoreSnapshot};
use tracing::warn;

/// One checkpoint to write, and what to do once it is written.
struct Job {
    checkpoint: Checkpoint,
    /// Checkpoints are numbered from 1 as they are handed over.
    number: u64,
    epoch: u64,
    /// The number of the operators' save it holds.
    save: u64,
    /// Exactly-once sinks' changes, sent once the checkpoint is durable.
    sinks: Vec<(SinkSender, SinkChanges)>,
    /// Where to say that it was written, if the writer waits.
    done: Option<mpsc::Sender<Result<CheckpointInfo, String>>>,
}

#[derive(Default)]
struct Outcome {
    last: Option<CheckpointInfo>,
    /// The number of the last checkpoint written, and the store right
    /// after it (before the next one).
    durable: Option<(u64, Arc<StoreSnapshot>)>,
    failed: Option<String>,
}

/// The checkpoint thread of a durable engine.
pub(crate) struct Checkpointer {
    jobs: Option<SyncSender<Job>>,
    outcome: Arc<Mutex<Outcome>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    /// Start the thread writing to `store`, telling `budget` which saves
    /// are durable.
    pub(crate) fn start(store: Arc<Store>, budget: Option<Arc<StateBudget>>) -> Result<Self> {
        let (jobs, queue) = mpsc::sync_channel(1);
        let outcome = Arc::new(Mutex::new(Outcome::default()));
        let shared = outcome.clone();
        let thread = std::thread::Builder::new()
            .name("eddy-checkpoint".into())
            .spawn(move || write_all(&store, budget.as_deref(), queue, &shared))
            .map_err(|e| Error::internal(format!("the checkpoint thread did not start: {e}")))?;
        Ok(Self {
            jobs: Some(jobs),
            outcome,
            thread: Some(thread),
        })
    }

    /// Write `checkpoint` (number `number`) as epoch `epoch`'s, holding the operators' save
    /// `save`, after every checkpoint handed over before, then hand `sinks`
    /// their changes. With `wait`, returns
    /// once it is durable; otherwise as soon as it is queued (`None`).
    /// After a failed write nothing more is written (see [`Self::failed`]).
    pub(crate) fn write(
        &self,
        checkpoint: Checkpoint,
        number: u64,
        epoch: u64,
        save: u64,
        sinks: Vec<(SinkSender, SinkChanges)>,
        wait: bool,
    ) -> Result<Option<CheckpointInfo>> {
        let (done, written) = if wait {
            let (done, written) = mpsc::channel();
            (Some(done), Some(written))
        } else {
            (None, None)
        };
        let job = Job {
            checkpoint,
            number,
            epoch,
            save,
            sinks,
            done,
        };
        let stopped = || Error::Storage("the checkpoint thread stopped".into());
        self.jobs
            .as_ref()
            .ok_or_else(stopped)?
            .send(job)
            .map_err(|_| stopped())?;
        match written {
            None => Ok(None),
            Some(written) => match written.recv() {
                Ok(Ok(info)) => Ok(Some(info)),
                Ok(Err(cause)) => Err(Error::Storage(cause)),
                Err(_) => Err(stopped()),
            },
        }
    }

    /// The last checkpoint written.
    pub(crate) fn last(&self) -> Option<CheckpointInfo> {
        self.lock().last.clone()
    }

    /// The number of the last checkpoint written, and a snapshot of the
    /// store as that checkpoint left it.
    pub(crate) fn durable(&self) -> Option<(u64, Arc<StoreSnapshot>)> {
        self.lock().durable.clone()
    }

    /// Why a checkpoint could not be written, if one could not.
    pub(crate) fn failed(&self) -> Option<String> {
        self.lock().failed.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Outcome> {
        match self.outcome.lock() {
            Ok(outcome) => outcome,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

impl Drop for Checkpointer {
    /// Write what was handed over, then stop (the store closes only after).
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn write_all(
    store: &Arc<Store>,
    budget: Option<&StateBudget>,
    queue: Receiver<Job>,
    outcome: &Mutex<Outcome>,
) {
    let lock = || match outcome.lock() {
        Ok(outcome) => outcome,
        Err(poisoned) => poisoned.into_inner(),
    };
    for job in queue {
        let failed = lock().failed.clone();
        let written = match failed {
            Some(cause) => Err(cause),
            None => store.commit(job.checkpoint, job.epoch).map_err(|error| {
                warn!(%error, "the durable store failed; no write commits until Eddy is restarted");
                let cause = error.to_string();
                lock().failed = Some(cause.clone());
                cause
            }),
        };
        if let Ok(info) = &written {
            // Taken before the next checkpoint is written: it shows exactly
            // the checkpoints up to this one.
            let snapshot = Arc::new(store.snapshot());
            let mut outcome = lock();
            outcome.last = Some(info.clone());
            outcome.durable = Some((job.number, snapshot));
            drop(outcome);
            if let Some(budget) = budget {
                budget.written(job.save);
            }
            for (sink, changes) in job.sinks {
                sink.send(changes);
            }
        }
        if let Some(done) = job.done {
            let _ = done.send(written);
        }
    }
}
