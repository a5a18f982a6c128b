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

    fn checkpointing(&self) -> crate::state::Checkpointing {
        crate::state::Checkpointing::Stateless
    }

    fn on_changes(
        &mut self,
        _: usize,
        changes: ChangeBatch,
        out: &mut Vec<ChangeBatch>,
    ) -> Result<()> {
        let rows = changes.num_rows();
        let data = schema::batch(&self.schema, changes.data().columns().to_vec(), rows)?;
        out.push(changes.with_data(data)?);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{changes, epoch, schema, NOTHING};

    #[test]
    fn sums_inputs_under_its_own_schema() -> Result<()> {
        let left = schema("a:int b:str");
        let right = schema("x:int y:str");
        let mut op = UnionOperator::new(schema("k:int v:str"), 2);
        let steps = vec![
            (0, changes(&left, "1 a +1; 2 b +1")),
            (1, changes(&right, "1 a +1; 3 c -1")),
        ];
        assert_eq!(epoch(&mut op, steps)?, ["1 a +2", "2 b +1", "3 c -1"]);
        assert_eq!(op.schema().field(0).name(), "k");
        // A deletion on one input cancels an insertion on the other.
        let steps = vec![
            (0, changes(&left, "4 d +1")),
            (1, changes(&right, "4 d -1")),
        ];
        assert_eq!(epoch(&mut op, steps)?, NOTHING);
        Ok(())
    }
}
