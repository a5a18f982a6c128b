//! Entry point of a relation into a dataflow: passes changes through.

use datafusion::arrow::datatypes::SchemaRef;

use crate::{ChangeBatch, Operator, Result};

/// Forwards the changes of a table or view unchanged. Each view reads its
/// inputs through its own source nodes, so that a new view can be filled with
/// the current contents of its inputs without disturbing older views.
pub struct SourceOperator {
    relation: String,
    schema: SchemaRef,
}

impl SourceOperator {
    /// A source for `relation`, whose rows have `schema`.
    pub fn new(relation: impl Into<String>, schema: SchemaRef) -> Self {
        Self {
            relation: relation.into(),
            schema,
        }
    }
}

impl Operator for SourceOperator {
    fn name(&self) -> &'static str {
        "Scan"
    }

    fn describe(&self) -> String {
        self.relation.clone()
    }

    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn checkpointing(&self) -> crate::state::Checkpointing {
        crate::state::Checkpointing::Stateless
    }

    fn on_changes(
        &mut self,
        _: usize,
        changes: ChangeBatch,
        out: &mut Vec<ChangeBatch>,
    ) -> Result<()> {
        out.push(changes);
        Ok(())
    }
}
