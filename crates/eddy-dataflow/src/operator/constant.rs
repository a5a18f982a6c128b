//! A relation whose contents never change (VALUES, `SELECT 1`).

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;

use crate::state::{Checkpointing, StateSink};
use crate::{ChangeBatch, Operator, Result};

/// Emits its rows once, at the first barrier, and nothing after.
pub struct ConstantOperator {
    rows: Option<RecordBatch>,
    schema: SchemaRef,
    /// Tracking state and not saved since the rows were emitted.
    unsaved: bool,
}

impl ConstantOperator {
    /// A constant relation holding `rows`.
    pub fn new(rows: RecordBatch) -> Self {
        Self {
            schema: rows.schema(),
            rows: Some(rows),
            unsaved: false,
        }
    }
}

impl Operator for ConstantOperator {
    fn name(&self) -> &'static str {
        "Constant"
    }

    fn describe(&self) -> String {
        format!("{} rows", self.rows.as_ref().map_or(0, |r| r.num_rows()))
    }

    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn on_changes(&mut self, _: usize, _: ChangeBatch, _: &mut Vec<ChangeBatch>) -> Result<()> {
        Ok(())
    }

    fn on_barrier(&mut self, out: &mut Vec<ChangeBatch>) -> Result<()> {
        if let Some(rows) = self.rows.take() {
            out.push(ChangeBatch::inserts(rows));
        }
        Ok(())
    }

    fn checkpointing(&self) -> Checkpointing {
        Checkpointing::Entries
    }

    fn track_state(&mut self) {
        self.unsaved = true;
    }

    /// One entry, once the rows are out: they are not emitted again.
    fn save_state(&mut self, out: &mut StateSink<'_>) -> Result<()> {
        if self.unsaved && self.rows.is_none() {
            self.unsaved = false;
            out(b"", Some(b""));
        }
        Ok(())
    }

    fn load_state(&mut self, _: &[u8], _: &[u8]) -> Result<()> {
        self.rows = None;
        Ok(())
    }
}
