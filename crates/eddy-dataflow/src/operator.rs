//! The [`Operator`] trait and the operators that implement it.

mod aggregate;
mod constant;
mod filter;
mod join;
mod project;
mod source;
mod top_n;
mod union;

pub use aggregate::{AggregateCall, AggregateFunction, AggregateOperator};
pub use constant::ConstantOperator;
pub use filter::FilterOperator;
pub use join::{JoinKind, JoinOperator};
pub use project::ProjectOperator;
pub use source::SourceOperator;
pub use top_n::TopNOperator;
pub use union::UnionOperator;

use datafusion::arrow::datatypes::SchemaRef;

use crate::state::{Checkpointing, Spill, StateSink};
use crate::{ChangeBatch, Error, Result};

/// An incremental relational operator.
///
/// The graph calls [`Operator::on_changes`] for each batch that reaches one
/// of the operator's inputs during an epoch, then [`Operator::on_barrier`]
/// once when the epoch's input is complete. By the end of `on_barrier` the
/// operator must have emitted every change its output undergoes in the epoch.
pub trait Operator: Send {
    /// Short name for EXPLAIN, e.g. `Filter`.
    fn name(&self) -> &'static str;

    /// Operator details for EXPLAIN, e.g. the predicate.
    fn describe(&self) -> String;

    /// Schema of the emitted rows.
    fn schema(&self) -> &SchemaRef;

    /// Changes arrived on input `input`; push resulting changes to `out`.
    fn on_changes(
        &mut self,
        input: usize,
        changes: ChangeBatch,
        out: &mut Vec<ChangeBatch>,
    ) -> Result<()>;

    /// The epoch's input is complete; push all pending changes to `out`.
    fn on_barrier(&mut self, _out: &mut Vec<ChangeBatch>) -> Result<()> {
        Ok(())
    }

    /// Whether the operator's state can be saved for a restart.
    fn checkpointing(&self) -> Checkpointing {
        Checkpointing::Unsupported
    }

    /// From now on remember which state entries change, for
    /// [`Operator::save_state`]; everything the operator holds now counts
    /// as changed.
    fn track_state(&mut self) {}

    /// Write the state entries that changed since the last save (or since
    /// [`Operator::track_state`]). Called between epochs only.
    fn save_state(&mut self, _out: &mut StateSink<'_>) -> Result<()> {
        Ok(())
    }

    /// Take back one entry a save wrote (the last value of its key), before
    /// any change reaches the operator.
    fn load_state(&mut self, _key: &[u8], _value: &[u8]) -> Result<()> {
        Err(Error::internal(format!(
            "{} keeps no state to load",
            self.name()
        )))
    }

    /// Keep saved state within `spill`'s budget: let go of entries whose
    /// checkpoint is durable and read them back through `spill` when they
    /// are needed again. Called after [`Operator::track_state`] and before
    /// any entry loads. Operators that keep all their state in memory
    /// ignore it.
    fn spill(&mut self, _spill: Spill) {}

    /// The key prefixes of the saved entries a restart must hand to
    /// [`Operator::load_state`] (`None`: every entry). An operator that
    /// spills reads the others back when it needs them, so a restart need
    /// not read them at all. Called after [`Operator::spill`].
    fn entries_to_load(&self) -> Option<Vec<Vec<u8>>> {
        None
    }

    /// Every saved entry is loaded: the operator is where it was when it
    /// saved them, its output included, and emits nothing for them.
    fn state_loaded(&mut self) -> Result<()> {
        Ok(())
    }
}

/// Drop the `@index` suffixes DataFusion prints after column names.
pub(crate) fn strip_indices(text: &str) -> String {
    let mut result = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '@' && chars.peek().is_some_and(|n| n.is_ascii_digit()) {
            while chars.peek().is_some_and(|n| n.is_ascii_digit()) {
                chars.next();
            }
        } else {
            result.push(c);
        }
    }
    result
}
