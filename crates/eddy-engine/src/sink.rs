//! Sinks as the writer runs them: what each sink reads, and the changes
//! of the epoch being built that it sends once the epoch commits (or, for
//! an exactly-once sink, once a checkpoint holds them).

use std::collections::BTreeSet;

use datafusion::logical_expr::LogicalPlan;
use eddy_common::{ChangeBatch, Result};
use eddy_connectors::sink::{SinkChanges, SinkHandle};

/// What a sink writes out.
#[derive(Debug)]
pub enum SinkSource {
    /// The changes of a stored relation (table or materialized view).
    Relation(String),
    /// The changes of a query, maintained for the sink alone.
    Query {
        /// The query's text.
        query: String,
        /// Its optimized plan.
        plan: LogicalPlan,
        /// The objects it reads.
        depends_on: Vec<String>,
    },
}

/// A running sink.
pub(crate) struct SinkRunner {
    /// The sink's name.
    pub(crate) name: String,
    /// The name whose dataflow node the sink reads: the relation, or the
    /// sink itself for a sink `AS query`.
    pub(crate) input: String,
    pub(crate) handle: SinkHandle,
    /// Changes of the epoch being built, sent when it commits.
    pub(crate) pending: Vec<ChangeBatch>,
    /// Set for an exactly-once sink.
    pub(crate) outbox: Option<Outbox>,
}

/// What an exactly-once sink has not yet sent or not yet seen committed:
/// changes of committed epochs wait here for the next checkpoint, which
/// stores them (under the sink's creation number) and only then hands them
/// to the sink; they stay stored until the sink reports their checkpoint
/// committed, so a restart can send them again.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    /// The sink's creation number.
    pub(crate) id: u64,
    /// Changes of epochs committed since the last checkpoint.
    pub(crate) unflushed: Vec<ChangeBatch>,
    /// Checkpoints whose changes are stored.
    pub(crate) kept: BTreeSet<u64>,
}

impl SinkRunner {
    pub(crate) fn new(name: &str, input: &str, handle: SinkHandle) -> Self {
        Self {
            name: name.to_string(),
            input: input.to_string(),
            handle,
            pending: Vec::new(),
            outbox: None,
        }
    }

    /// An exactly-once sink's committed epoch: its changes wait for the
    /// next checkpoint.
    pub(crate) fn stage(&mut self) {
        if let Some(outbox) = &mut self.outbox {
            outbox.unflushed.append(&mut self.pending);
        }
    }

    /// Send the epoch's changes, consolidated (an epoch that changed
    /// nothing in the end sends nothing). Exactly-once sinks are sent
    /// their changes by the checkpoint instead.
    pub(crate) fn send_pending(&mut self) -> Result<()> {
        if self.outbox.is_some() {
            return Ok(());
        }
        if let Some(changes) = consolidated(std::mem::take(&mut self.pending), 0)? {
            self.handle.send(changes);
        }
        Ok(())
    }
}

/// `batches` as one consolidated change set of checkpoint `epoch`, or
/// `None` if they change nothing in the end.
pub(crate) fn consolidated(batches: Vec<ChangeBatch>, epoch: u64) -> Result<Option<SinkChanges>> {
    let Some(first) = batches.first() else {
        return Ok(None);
    };
    let changes = ChangeBatch::concat(&first.schema(), &batches)?.consolidate()?;
    if changes.is_empty() {
        return Ok(None);
    }
    Ok(Some(SinkChanges {
        rows: changes.data().clone(),
        weights: changes.weights().to_vec(),
        epoch,
    }))
}
