//! Filter: keeps the changes whose rows satisfy a predicate.

use std::sync::Arc;

use datafusion::arrow::array::{Array, BooleanArray};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::physical_expr::PhysicalExpr;

use crate::{ChangeBatch, Error, Operator, Result};

/// Keeps a change when its row satisfies `predicate` (NULL means no). A
/// deletion passes exactly when the matching insertion did, so no state is
/// needed.
pub struct FilterOperator {
    predicate: Arc<dyn PhysicalExpr>,
    schema: SchemaRef,
}

impl FilterOperator {
    /// A filter over rows of `schema`.
    pub fn new(predicate: Arc<dyn PhysicalExpr>, schema: SchemaRef) -> Self {
        Self { predicate, schema }
    }
}

impl Operator for FilterOperator {
    fn name(&self) -> &'static str {
        "Filter"
    }

    fn describe(&self) -> String {
        super::strip_indices(&self.predicate.to_string())
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
        let mask = self
            .predicate
            .evaluate(changes.data())?
            .into_array(changes.num_rows())?;
        let mask = mask
            .as_any()
            .downcast_ref::<BooleanArray>()
            .ok_or_else(|| Error::internal("filter predicate is not boolean"))?;
        if mask.true_count() == mask.len() && mask.null_count() == 0 {
            out.push(changes);
        } else {
            out.push(changes.filter(mask)?);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use datafusion::logical_expr::Operator as Op;
    use datafusion::physical_expr::expressions::{lit, BinaryExpr};

    use super::*;
    use crate::testing::{changes, col, epoch, schema, NOTHING};

    fn k_above_one() -> FilterOperator {
        let s = schema("k:int v:str");
        let predicate = Arc::new(BinaryExpr::new(col("k", &s), Op::Gt, lit(1i64)));
        FilterOperator::new(predicate, s)
    }

    #[test]
    fn deletions_pass_exactly_like_insertions() -> Result<()> {
        let mut op = k_above_one();
        let s = op.schema().clone();
        let rows = "1 a +1; 2 b +1; NULL c +1; 3 NULL +2";
        assert_eq!(
            epoch(&mut op, vec![(0, changes(&s, rows))])?,
            ["2 b +1", "3 NULL +2"]
        );
        let deletes = "1 a -1; 2 b -1; NULL c -1; 3 NULL -2";
        assert_eq!(
            epoch(&mut op, vec![(0, changes(&s, deletes))])?,
            ["2 b -1", "3 NULL -2"]
        );
        Ok(())
    }

    #[test]
    fn mixed_batch_and_nothing_passing() -> Result<()> {
        let mut op = k_above_one();
        let s = op.schema().clone();
        let mixed = changes(&s, "5 x +1; 5 x -1; 7 y -1; 0 z +1");
        assert_eq!(epoch(&mut op, vec![(0, mixed)])?, ["7 y -1"]);
        assert_eq!(
            epoch(&mut op, vec![(0, changes(&s, "0 a +1; NULL b -1"))])?,
            NOTHING
        );
        Ok(())
    }
}
