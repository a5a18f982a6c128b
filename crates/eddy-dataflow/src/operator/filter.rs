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

    fn on_changes(&mut self, _: usize, changes: ChangeBatch, out: &mut Vec<ChangeBatch>) -> Result<()> {
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
