//! UNION ALL: the sum of its inputs.

use datafusion::arrow::datatypes::SchemaRef;

use crate::{schema, ChangeBatch, Operator, Result};

/// Emits the changes of every input under one schema.
pub struct UnionOperator {
    schema: SchemaRef,
    inputs: usize,
}

impl UnionOperator {
    /// A union of `inputs` inputs whose rows all have `schema`'s types.
    pub fn new(schema: SchemaRef, inputs: usize) -> Self {
        Self { schema, inputs }
    }
}

impl Operator for UnionOperator {
    fn name(&self) -> &'static str {
        "UnionAll"
    }

    fn describe(&self) -> String {
        format!("{} inputs", self.inputs)
    }

    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn on_changes(&mut self, _: usize, changes: ChangeBatch, out: &mut Vec<ChangeBatch>) -> Result<()> {
        let rows = changes.num_rows();
        let data = schema::batch(&self.schema, changes.data().columns().to_vec(), rows)?;
        out.push(changes.with_data(data)?);
        Ok(())
    }
}
