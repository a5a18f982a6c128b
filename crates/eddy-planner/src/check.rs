//! Checks that run on the analyzed plan before optimization, while the
//! query still reads as the user wrote it.

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::{Expr, LogicalPlan, Volatility};
use eddy_common::{Error, Result};

/// Rejects functions whose result depends on when or how often they run
/// (`now()`, `random()`, ...): a view using them cannot equal its query.
pub fn reject_time_dependent(plan: &LogicalPlan) -> Result<()> {
    let mut found: Option<String> = None;
    plan.apply_with_subqueries(|node| {
        for expr in node.expressions() {
            expr.apply(|e| {
                if let Expr::ScalarFunction(function) = e {
                    if function.func.signature().volatility != Volatility::Immutable {
                        found = Some(function.func.name().to_string());
                        return Ok(TreeNodeRecursion::Stop);
                    }
                }
                Ok(TreeNodeRecursion::Continue)
            })?;
            if found.is_some() {
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    match found {
        Some(name) => Err(Error::not_supported(format!(
            "function {name}() is not supported in materialized views: its result is not a function of the inputs"
        ))),
        None => Ok(()),
    }
}
