//! Turns an optimized DataFusion [`LogicalPlan`] into a dataflow of
//! incremental operators.
//!
//! The walk is bottom-up: each plan node becomes one operator (or none, for
//! aliases) fed by the operators of its inputs. A node or expression with no
//! incremental operator is rejected with SQLSTATE 0A000 naming the construct,
//! so a view is either maintained exactly or not created at all.

mod check;
mod keys;

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::SortOptions;
use datafusion::arrow::datatypes::{DataType, Schema, SchemaRef};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, JoinType, NullEquality, ScalarValue};
use datafusion::execution::context::ExecutionProps;
use datafusion::logical_expr::expr::{AggregateFunction as AggregateExpr, Sort as SortExpr};
use datafusion::logical_expr::logical_plan::{FetchType, SkipType};
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{Distinct, Expr, ExprSchemable, LogicalPlan, LogicalPlanBuilder};
use datafusion::physical_expr::{create_physical_expr, PhysicalExpr, PhysicalSortExpr};
use eddy_common::{Error, Result};
use eddy_dataflow::operator::{
    AggregateCall, AggregateFunction, AggregateOperator, ConstantOperator, FilterOperator,
    JoinKind, JoinOperator, ProjectOperator, SourceOperator, TopNOperator, UnionOperator,
};
use eddy_dataflow::schema::nullable;
use eddy_dataflow::{Dataflow, NodeId, Operator};

pub use check::reject_time_dependent;
pub use keys::{distinct_rows, storage_key, RelationKey};

use keys::at_most_one_row;

/// The operators built for one view.
#[derive(Debug, Clone)]
pub struct PlannedView {
    /// The node whose output is the view's changes.
    pub root: NodeId,
    /// Source nodes, by the relation they read.
    pub scans: Vec<(String, NodeId)>,
}

/// Builds the operators of `plan` into `dataflow`, owned by `owner`.
/// `relation_node` gives the node that emits a relation's changes (None for
/// a scratch dataflow built only to EXPLAIN).
pub fn plan_view(
    dataflow: &mut Dataflow,
    owner: &str,
    plan: &LogicalPlan,
    relation_node: &dyn Fn(&str) -> Option<NodeId>,
) -> Result<PlannedView> {
    let mut builder = Builder {
        dataflow,
        owner,
        relation_node,
        scans: Vec::new(),
        props: ExecutionProps::new(),
    };
    let root = builder.build(plan)?;
    Ok(PlannedView {
        root,
        scans: builder.scans,
    })
}

struct Builder<'a> {
    dataflow: &'a mut Dataflow,
    owner: &'a str,
    relation_node: &'a dyn Fn(&str) -> Option<NodeId>,
    scans: Vec<(String, NodeId)>,
    props: ExecutionProps,
}

impl Builder<'_> {
    fn add(&mut self, operator: impl Operator + 'static, inputs: Vec<NodeId>) -> Result<NodeId> {
        self.dataflow.add(self.owner, Box::new(operator), inputs)
    }

    fn physical(&self, expr: &Expr, schema: &DFSchema) -> Result<Arc<dyn PhysicalExpr>> {
        Ok(create_physical_expr(
            expr,
            schema,
            &self.props,
            &PhysicalPlanningContext::default(),
        )?)
    }

    fn physical_sort(&self, sort: &SortExpr, schema: &DFSchema) -> Result<PhysicalSortExpr> {
        Ok(PhysicalSortExpr {
            expr: self.physical(&sort.expr, schema)?,
            options: SortOptions {
                descending: !sort.asc,
                nulls_first: sort.nulls_first,
            },
        })
    }

    fn build(&mut self, plan: &LogicalPlan) -> Result<NodeId> {
        let schema = nullable(plan.schema().as_arrow());
        match plan {
            LogicalPlan::TableScan(scan) => {
                let relation = scan.table_name.table().to_string();
                let source = scan.source.schema();
                let inputs = (self.relation_node)(&relation).into_iter().collect();
                let full = nullable(&source);
                let node = self.add(SourceOperator::new(relation.clone(), full.clone()), inputs)?;
                self.scans.push((relation, node));
                // Filters and limits DataFusion pushed into the scan still apply.
                let mut node = node;
                if let Some(predicate) =
                    datafusion::logical_expr::utils::conjunction(scan.filters.clone())
                {
                    let source_schema =
                        DFSchema::try_from_qualified_schema(scan.table_name.clone(), &source)?;
                    let predicate = self.physical(&predicate, &source_schema)?;
                    node = self.add(FilterOperator::new(predicate, full.clone()), vec![node])?;
                }
                if scan.fetch.is_some() {
                    node = self.add(
                        TopNOperator::new(vec![], 0, scan.fetch, full.clone())?,
                        vec![node],
                    )?;
                }
                match &scan.projection {
                    Some(columns) if *columns != (0..source.fields().len()).collect::<Vec<_>>() => {
                        let exprs = columns
                            .iter()
                            .map(|i| {
                                Ok(
                                    Arc::new(datafusion::physical_expr::expressions::Column::new(
                                        source.field(*i).name(),
                                        *i,
                                    )) as Arc<dyn PhysicalExpr>,
                                )
                            })
                            .collect::<Result<Vec<_>>>()?;
                        self.add(ProjectOperator::new(exprs, schema), vec![node])
                    }
                    _ => Ok(node),
                }
            }
            LogicalPlan::Projection(projection)
                if projection.expr.iter().any(Expr::contains_scalar_subquery) =>
            {
                let (input, exprs) = lift_scalar_subqueries(&projection.input, &projection.expr)?;
                let exprs = exprs
                    .into_iter()
                    .zip(&projection.expr)
                    .map(|(new, old)| {
                        if &new == old {
                            new
                        } else {
                            new.alias(old.schema_name().to_string())
                        }
                    })
                    .collect::<Vec<_>>();
                let rewritten = LogicalPlanBuilder::from(input).project(exprs)?.build()?;
                self.build(&rewritten)
            }
            LogicalPlan::Filter(filter) if filter.predicate.contains_scalar_subquery() => {
                let (input, predicates) =
                    lift_scalar_subqueries(&filter.input, std::slice::from_ref(&filter.predicate))?;
                let columns: Vec<Expr> = filter
                    .input
                    .schema()
                    .columns()
                    .into_iter()
                    .map(Expr::Column)
                    .collect();
                let predicate = predicates
                    .into_iter()
                    .next()
                    .ok_or_else(|| Error::internal("filter lost its predicate"))?;
                let rewritten = LogicalPlanBuilder::from(input)
                    .filter(predicate)?
                    .project(columns)?
                    .build()?;
                self.build(&rewritten)
            }
            LogicalPlan::Projection(projection) => {
                let input = self.build(&projection.input)?;
                let exprs = projection
                    .expr
                    .iter()
                    .map(|e| self.physical(e, projection.input.schema()))
                    .collect::<Result<Vec<_>>>()?;
                self.add(ProjectOperator::new(exprs, schema), vec![input])
            }
            LogicalPlan::Filter(filter) => {
                let input = self.build(&filter.input)?;
                let predicate = self.physical(&filter.predicate, filter.input.schema())?;
                self.add(FilterOperator::new(predicate, schema), vec![input])
            }
            LogicalPlan::SubqueryAlias(alias) => self.build(&alias.input),
            LogicalPlan::Union(union) => {
                let inputs = union
                    .inputs
                    .iter()
                    .map(|i| self.build(i))
                    .collect::<Result<Vec<_>>>()?;
                let count = inputs.len();
                self.add(UnionOperator::new(schema, count), inputs)
            }
            LogicalPlan::Distinct(Distinct::All(input)) => {
                let node = self.build(input)?;
                let input_schema = input.schema();
                let exprs = (0..input_schema.fields().len())
                    .map(|i| {
                        let field = input_schema.field(i);
                        Arc::new(datafusion::physical_expr::expressions::Column::new(
                            field.name(),
                            i,
                        )) as Arc<dyn PhysicalExpr>
                    })
                    .collect();
                let types = input_schema
                    .fields()
                    .iter()
                    .map(|f| f.data_type().clone())
                    .collect();
                let input_arrow = nullable(input_schema.as_arrow());
                let operator = AggregateOperator::new(exprs, types, vec![], &input_arrow, schema)?;
                self.add(operator, vec![node])
            }
            LogicalPlan::Distinct(Distinct::On(_)) => Err(Error::not_supported(
                "DISTINCT ON is not supported in materialized views",
            )),
            LogicalPlan::Aggregate(aggregate) => {
                let input = self.build(&aggregate.input)?;
                let input_schema = aggregate.input.schema();
                let mut group_exprs = Vec::new();
                let mut group_types = Vec::new();
                for expr in &aggregate.group_expr {
                    if matches!(expr, Expr::GroupingSet(_)) {
                        return Err(Error::not_supported(
                            "GROUPING SETS, ROLLUP and CUBE are not supported in materialized views",
                        ));
                    }
                    group_exprs.push(self.physical(expr, input_schema)?);
                    group_types.push(expr.get_type(input_schema)?);
                }
                let offset = aggregate.group_expr.len();
                let calls = aggregate
                    .aggr_expr
                    .iter()
                    .enumerate()
                    .map(|(i, expr)| {
                        let output_type = schema.field(offset + i).data_type().clone();
                        self.aggregate_call(expr, input_schema, output_type)
                    })
                    .collect::<Result<Vec<_>>>()?;
                let input_arrow = nullable(input_schema.as_arrow());
                let operator =
                    AggregateOperator::new(group_exprs, group_types, calls, &input_arrow, schema)?;
                self.add(operator, vec![input])
            }
            LogicalPlan::Join(join) => self.join(join, schema),
            LogicalPlan::Sort(sort) => match sort.fetch {
                // An ORDER BY without LIMIT does not change a set.
                None => self.build(&sort.input),
                Some(fetch) => self.top_n(&sort.input, &sort.expr, 0, Some(fetch), schema),
            },
            LogicalPlan::Limit(limit) => {
                let offset = match limit.get_skip_type()? {
                    SkipType::Literal(n) => n,
                    SkipType::UnsupportedExpr => {
                        return Err(Error::not_supported("OFFSET must be a constant"))
                    }
                };
                let fetch = match limit.get_fetch_type()? {
                    FetchType::Literal(n) => n,
                    FetchType::UnsupportedExpr => {
                        return Err(Error::not_supported("LIMIT must be a constant"))
                    }
                };
                match limit.input.as_ref() {
                    LogicalPlan::Sort(sort) => {
                        self.top_n(&sort.input, &sort.expr, offset, fetch, schema)
                    }
                    LogicalPlan::Projection(projection) => {
                        if let LogicalPlan::Sort(sort) = projection.input.as_ref() {
                            let sorted_schema = nullable(projection.input.schema().as_arrow());
                            let top =
                                self.top_n(&sort.input, &sort.expr, offset, fetch, sorted_schema)?;
                            let exprs = projection
                                .expr
                                .iter()
                                .map(|e| self.physical(e, projection.input.schema()))
                                .collect::<Result<Vec<_>>>()?;
                            return self.add(ProjectOperator::new(exprs, schema), vec![top]);
                        }
                        self.top_n(&limit.input, &[], offset, fetch, schema)
                    }
                    input => self.top_n(input, &[], offset, fetch, schema),
                }
            }
            LogicalPlan::Values(values) => {
                let empty = DFSchema::empty();
                let one_row = RecordBatch::try_new_with_options(
                    Arc::new(Schema::empty()),
                    vec![],
                    &datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(1)),
                )?;
                let mut columns: Vec<Vec<ScalarValue>> = vec![Vec::new(); schema.fields().len()];
                for row in &values.values {
                    for ((expr, column), field) in row.iter().zip(&mut columns).zip(schema.fields())
                    {
                        let value = self.physical(expr, &empty)?.evaluate(&one_row)?;
                        let value = match value {
                            datafusion::logical_expr::ColumnarValue::Scalar(s) => s,
                            datafusion::logical_expr::ColumnarValue::Array(a) => {
                                ScalarValue::try_from_array(&a, 0)?
                            }
                        };
                        column.push(value.cast_to(field.data_type())?);
                    }
                }
                let arrays = columns
                    .into_iter()
                    .zip(schema.fields())
                    .map(|(values, field)| {
                        if values.is_empty() {
                            Ok(datafusion::arrow::array::new_empty_array(field.data_type()))
                        } else {
                            Ok(ScalarValue::iter_to_array(values)?)
                        }
                    })
                    .collect::<Result<Vec<_>>>()?;
                let rows = values.values.len();
                let batch = eddy_dataflow::schema::batch(&schema, arrays, rows)?;
                self.add(ConstantOperator::new(batch), vec![])
            }
            LogicalPlan::EmptyRelation(empty) => {
                let rows = usize::from(empty.produce_one_row);
                let columns = schema
                    .fields()
                    .iter()
                    .map(|f| datafusion::arrow::array::new_null_array(f.data_type(), rows))
                    .collect();
                let batch = eddy_dataflow::schema::batch(&schema, columns, rows)?;
                self.add(ConstantOperator::new(batch), vec![])
            }
            LogicalPlan::Window(_) => Err(Error::not_supported(
                "window functions (OVER) are not supported in materialized views",
            )),
            LogicalPlan::RecursiveQuery(_) => Err(Error::not_supported(
                "recursive queries (WITH RECURSIVE) are not supported in materialized views",
            )),
            LogicalPlan::Unnest(_) => Err(Error::not_supported(
                "UNNEST is not supported in materialized views",
            )),
            other => Err(Error::not_supported(format!(
                "{} is not supported in materialized views",
                plan_name(other)
            ))),
        }
    }

    fn top_n(
        &mut self,
        input: &LogicalPlan,
        order_by: &[SortExpr],
        offset: usize,
        limit: Option<usize>,
        schema: SchemaRef,
    ) -> Result<NodeId> {
        let node = self.build(input)?;
        let order_by = order_by
            .iter()
            .map(|s| self.physical_sort(s, input.schema()))
            .collect::<Result<Vec<_>>>()?;
        let operator = TopNOperator::new(order_by, offset, limit, schema)?;
        self.add(operator, vec![node])
    }

    fn join(&mut self, join: &datafusion::logical_expr::Join, schema: SchemaRef) -> Result<NodeId> {
        let kind = match join.join_type {
            JoinType::Inner => JoinKind::Inner,
            JoinType::Left => JoinKind::Left,
            JoinType::Right => JoinKind::Right,
            JoinType::Full => JoinKind::Full,
            JoinType::LeftSemi => JoinKind::LeftSemi,
            JoinType::LeftAnti => JoinKind::LeftAnti,
            JoinType::RightSemi => JoinKind::RightSemi,
            JoinType::RightAnti => JoinKind::RightAnti,
            JoinType::LeftMark | JoinType::RightMark => return Err(Error::not_supported(
                "EXISTS or IN subqueries combined with OR are not supported in materialized views",
            )),
        };
        if join.null_aware {
            return self.build(&rewrite_not_in(join)?);
        }
        let left = self.build(&join.left)?;
        let right = self.build(&join.right)?;
        let left_schema = join.left.schema();
        let right_schema = join.right.schema();
        let mut left_keys = Vec::new();
        let mut right_keys = Vec::new();
        let mut key_types: Vec<DataType> = Vec::new();
        for (l, r) in &join.on {
            left_keys.push(self.physical(l, left_schema)?);
            right_keys.push(self.physical(r, right_schema)?);
            key_types.push(l.get_type(left_schema)?);
        }
        let combined = left_schema.join(right_schema)?;
        let filter = match &join.filter {
            Some(filter) => Some(self.physical(filter, &combined)?),
            None => None,
        };
        let mut display = format!("{:?}", join.join_type);
        if !join.on.is_empty() {
            let on: Vec<String> = join.on.iter().map(|(l, r)| format!("{l} = {r}")).collect();
            display.push_str(&format!(" on {}", on.join(" AND ")));
        }
        if let Some(filter) = &join.filter {
            display.push_str(&format!(" filter {filter}"));
        }
        let operator = JoinOperator::new(
            kind,
            left_keys,
            right_keys,
            key_types,
            join.null_equality == NullEquality::NullEqualsNull,
            filter,
            nullable(left_schema.as_arrow()),
            nullable(right_schema.as_arrow()),
            schema,
            display,
        )?;
        self.add(operator, vec![left, right])
    }

    fn aggregate_call(
        &self,
        expr: &Expr,
        input_schema: &DFSchema,
        output_type: DataType,
    ) -> Result<AggregateCall> {
        let inner = match expr {
            Expr::Alias(alias) => alias.expr.as_ref(),
            other => other,
        };
        let Expr::AggregateFunction(AggregateExpr { func, params }) = inner else {
            return Err(Error::not_supported(format!(
                "aggregate expression {expr} is not supported in materialized views"
            )));
        };
        let function = AggregateFunction::from_name(func.name()).ok_or_else(|| {
            Error::not_supported(format!(
                "aggregate function {}() is not supported in materialized views",
                func.name()
            ))
        })?;
        let args = params
            .args
            .iter()
            .map(|a| self.physical(a, input_schema))
            .collect::<Result<Vec<_>>>()?;
        let filter = match &params.filter {
            Some(filter) => Some(self.physical(filter, input_schema)?),
            None => None,
        };
        let order_by = params
            .order_by
            .iter()
            .map(|s| self.physical_sort(s, input_schema))
            .collect::<Result<Vec<_>>>()?;
        Ok(AggregateCall {
            function,
            args,
            distinct: params.distinct,
            filter,
            order_by,
            output_type,
            display: inner.schema_name().to_string(),
        })
    }
}

/// Replace uncorrelated scalar subqueries in `exprs` by columns of a LEFT
/// JOIN (on true) of `input` with each subquery, which is how an incremental
/// plan can follow a subquery's changing value. Only subqueries that return
/// at most one row by construction are accepted; a subquery with more rows
/// would be an error in PostgreSQL, and a join would duplicate rows instead.
fn lift_scalar_subqueries(input: &LogicalPlan, exprs: &[Expr]) -> Result<(LogicalPlan, Vec<Expr>)> {
    let mut plan = input.clone();
    let mut lifted = Vec::with_capacity(exprs.len());
    let mut count = 0;
    for expr in exprs {
        let rewritten = expr.clone().transform_up(|e| {
            let Expr::ScalarSubquery(subquery) = e else {
                return Ok(Transformed::no(e));
            };
            if !subquery.outer_ref_columns.is_empty() {
                return Err(datafusion::error::DataFusionError::NotImplemented(
                    "correlated scalar subqueries in this position are not supported in materialized views".into(),
                ));
            }
            if !at_most_one_row(&subquery.subquery) {
                return Err(datafusion::error::DataFusionError::NotImplemented(
                    "scalar subqueries that may return more than one row are not supported in materialized views; aggregate or LIMIT 1 them".into(),
                ));
            }
            let alias = format!("__eddy_scalar_{count}");
            count += 1;
            let right = LogicalPlanBuilder::from(subquery.subquery.as_ref().clone())
                .alias(alias)?
                .build()?;
            let (qualifier, field) = right.schema().qualified_field(0);
            let column = Expr::Column(datafusion::common::Column::new(
                qualifier.cloned(),
                field.name(),
            ));
            plan = LogicalPlanBuilder::from(plan.clone())
                .join_on(right, JoinType::Left, [datafusion::logical_expr::lit(true)])?
                .build()?;
            Ok(Transformed::yes(column))
        })?;
        lifted.push(rewritten.data);
    }
    Ok((plan, lifted))
}

/// `x NOT IN (SELECT y ...)` is a null-aware anti join: no row passes once
/// the subquery holds a NULL, a NULL `x` passes only when the subquery is
/// empty. Express it with maintained pieces: a plain anti join, crossed with
/// a global aggregate counting the subquery's rows and NULLs, filtered by
/// `rows = 0 OR (nulls = 0 AND x IS NOT NULL)`.
fn rewrite_not_in(join: &datafusion::logical_expr::Join) -> Result<LogicalPlan> {
    use datafusion::functions_aggregate::expr_fn::count;
    use datafusion::logical_expr::{lit, when};
    let [(outer, inner)] = join.on.as_slice() else {
        return Err(Error::not_supported(
            "NOT IN with several columns is not supported in materialized views",
        ));
    };
    if join.filter.is_some() || join.join_type != JoinType::LeftAnti {
        return Err(Error::not_supported(
            "correlated NOT IN (subquery) is not supported in materialized views; use NOT EXISTS",
        ));
    }
    let left = join.left.as_ref().clone();
    let right = join.right.as_ref().clone();
    let columns: Vec<Expr> = left
        .schema()
        .columns()
        .into_iter()
        .map(Expr::Column)
        .collect();
    let stats = LogicalPlanBuilder::from(right.clone())
        .aggregate(
            Vec::<Expr>::new(),
            vec![
                count(lit(1)).alias("__eddy_rows"),
                count(when(inner.clone().is_null(), lit(1)).end()?).alias("__eddy_nulls"),
            ],
        )?
        .alias("__eddy_not_in")?
        .build()?;
    let stat =
        |name: &str| Expr::Column(datafusion::common::Column::new(Some("__eddy_not_in"), name));
    let keep = stat("__eddy_rows").eq(lit(0i64)).or(stat("__eddy_nulls")
        .eq(lit(0i64))
        .and(outer.clone().is_not_null()));
    Ok(LogicalPlanBuilder::from(left)
        .join_with_expr_keys(
            right,
            JoinType::LeftAnti,
            (vec![outer.clone()], vec![inner.clone()]),
            None,
        )?
        .join_on(stats, JoinType::Inner, [lit(true)])?
        .filter(keep)?
        .project(columns)?
        .build()?)
}

fn plan_name(plan: &LogicalPlan) -> String {
    let display = plan.display().to_string();
    let name = display.split(':').next().unwrap_or(&display).trim();
    name.to_string()
}
