//! Projection: evaluates scalar expressions over whole batches.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::physical_expr::PhysicalExpr;

use crate::{schema, ChangeBatch, Operator, Result};

/// Maps each row to the values of `exprs`; weights pass through unchanged,
/// which is why projection needs no state.
pub struct ProjectOperator {
    exprs: Vec<Arc<dyn PhysicalExpr>>,
    schema: SchemaRef,
}

impl ProjectOperator {
    /// Emits rows of `schema` computed by `exprs` (one per field).
    pub fn new(exprs: Vec<Arc<dyn PhysicalExpr>>, schema: SchemaRef) -> Self {
        Self { exprs, schema }
    }
}

impl Operator for ProjectOperator {
    fn name(&self) -> &'static str {
        "Project"
    }

    fn describe(&self) -> String {
        self.exprs
            .iter()
            .zip(self.schema.fields())
            .map(|(expr, field)| {
                let text = expr.to_string();
                let text = super::strip_indices(&text);
                if &text == field.name() {
                    text
                } else {
                    format!("{text} AS {}", field.name())
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
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
        let columns = self
            .exprs
            .iter()
            .map(|expr| expr.evaluate(changes.data())?.into_array(rows))
            .collect::<datafusion::error::Result<Vec<_>>>()?;
        let data = schema::batch(&self.schema, columns, rows)?;
        out.push(changes.with_data(data)?);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use datafusion::logical_expr::Operator as Op;
    use datafusion::physical_expr::expressions::{lit, BinaryExpr};

    use super::*;
    use crate::testing::{changes, col, epoch, schema};

    #[test]
    fn maps_rows_and_keeps_weights() -> Result<()> {
        let input = schema("k:int v:str");
        let output = schema("v:str k1:int");
        let exprs = vec![
            col("v", &input),
            Arc::new(BinaryExpr::new(col("k", &input), Op::Plus, lit(1i64))) as _,
        ];
        let mut op = ProjectOperator::new(exprs, output);
        let batch = changes(&input, "1 a +1; 2 b -2; NULL c +3");
        assert_eq!(
            epoch(&mut op, vec![(0, batch)])?,
            ["a 2 +1", "b 3 -2", "c NULL +3"]
        );
        Ok(())
    }

    #[test]
    fn rows_that_project_alike_consolidate() -> Result<()> {
        let input = schema("k:int v:str");
        let output = schema("v:str");
        let mut op = ProjectOperator::new(vec![col("v", &input)], output);
        let batch = changes(&input, "1 a +1; 2 a +1; 3 a -1; 4 b +1; 5 b -1");
        assert_eq!(epoch(&mut op, vec![(0, batch)])?, ["a +1"]);
        Ok(())
    }
}
