//! Sinks as the writer runs them: what each sink reads, and the changes
//! of the epoch being built that it sends once the epoch commits.

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
}

impl SinkRunner {
    pub(crate) fn new(name: &str, input: &str, handle: SinkHandle) -> Self {
        Self {
            name: name.to_string(),
            input: input.to_string(),
            handle,
            pending: Vec::new(),
        }
    }

    /// Send the epoch's changes, consolidated (an epoch that changed
    /// nothing in the end sends nothing).
    pub(crate) fn send_pending(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        let schema = pending[0].schema();
        let changes = ChangeBatch::concat(&schema, &pending)?.consolidate()?;
        if changes.is_empty() {
            return Ok(());
        }
        self.handle.send(SinkChanges {
            rows: changes.data().clone(),
            weights: changes.weights().to_vec(),
        });
        Ok(())
    }
}
