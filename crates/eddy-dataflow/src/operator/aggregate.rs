//! Grouped and global aggregation, maintained under insertions and deletions.
//!
//! Groups are interned to dense ids ([`groups`]) and every aggregate call
//! keeps its state as columns indexed by group id ([`call`]): counts, exact
//! sums, and for MIN, MAX and ordered STRING_AGG the multiset of values, so
//! deleting the current extreme reveals the next one. A batch is applied
//! one call at a time over flat vectors. At a barrier the operator computes,
//! for each group touched in the epoch, its new row, compares it with the
//! row it emitted before (kept row-encoded), and emits the retraction of the
//! old row and the insertion of the new one where they differ.

mod call;
mod extreme;
mod groups;

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, UInt32Array};
use datafusion::arrow::compute::{cast, take};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::physical_expr::{PhysicalExpr, PhysicalSortExpr};
use eddy_common::row::RowCodec;

use self::call::Call;
use self::groups::{GroupId, Groups};
use crate::{schema, ChangeBatch, Error, Operator, Result};

/// The aggregate functions Eddy maintains incrementally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggregateFunction {
    /// `count(x)`; `count(*)` is `count(1)`.
    Count,
    /// `sum(x)`.
    Sum,
    /// `avg(x)`.
    Avg,
    /// `min(x)`.
    Min,
    /// `max(x)`.
    Max,
    /// `bool_and(x)`.
    BoolAnd,
    /// `bool_or(x)`.
    BoolOr,
    /// `string_agg(x, separator [ORDER BY ...])`.
    StringAgg,
}

impl AggregateFunction {
    /// The function for a DataFusion aggregate name, if Eddy maintains it.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "count" => Self::Count,
            "sum" => Self::Sum,
            "avg" | "mean" => Self::Avg,
            "min" => Self::Min,
            "max" => Self::Max,
            "bool_and" => Self::BoolAnd,
            "bool_or" => Self::BoolOr,
            "string_agg" => Self::StringAgg,
            _ => return None,
        })
    }
}

/// One aggregate call of a GROUP BY, with physical expressions over the input.
pub struct AggregateCall {
    /// Which function.
    pub function: AggregateFunction,
    /// Arguments; the first is the aggregated value.
    pub args: Vec<Arc<dyn PhysicalExpr>>,
    /// `DISTINCT`: aggregate each distinct value once.
    pub distinct: bool,
    /// `FILTER (WHERE ...)`.
    pub filter: Option<Arc<dyn PhysicalExpr>>,
    /// `ORDER BY` inside the call (used by STRING_AGG).
    pub order_by: Vec<PhysicalSortExpr>,
    /// The result type the plan expects.
    pub output_type: DataType,
    /// How the call reads in SQL, for EXPLAIN.
    pub display: String,
}

/// Incremental GROUP BY (or a global aggregate when there are no keys).
pub struct AggregateOperator {
    group_exprs: Vec<Arc<dyn PhysicalExpr>>,
    group_types: Vec<DataType>,
    groups: Groups,
    calls: Vec<Call>,
    /// Net number of input rows of each group.
    rows: Vec<i64>,
    /// Whether each group was touched in the current epoch.
    touched: Vec<bool>,
    /// The groups touched in the current epoch.
    dirty: Vec<GroupId>,
    /// The value columns each group emitted last, row-encoded (`None`: the
    /// group has no row in the output).
    emitted: Vec<Option<Box<[u8]>>>,
    /// Encodes the calls' results, to compare new rows with emitted ones.
    results_codec: Option<RowCodec>,
    /// Group ids of the current batch (kept to reuse the allocation).
    batch_groups: Vec<GroupId>,
    schema: SchemaRef,
}

/// Row-encoded results per group, and the result columns they encode.
type Results = (Vec<Box<[u8]>>, Vec<ArrayRef>);

impl AggregateOperator {
    /// Group by `group_exprs` (none: one global group that always has a row)
    /// and compute `calls`. `schema` is the group columns then the calls.
    pub fn new(
        group_exprs: Vec<Arc<dyn PhysicalExpr>>,
        group_types: Vec<DataType>,
        calls: Vec<AggregateCall>,
        input_schema: &SchemaRef,
        schema: SchemaRef,
    ) -> Result<Self> {
        let groups = Groups::new(group_types.clone())?;
        let results_codec = if calls.is_empty() {
            None
        } else {
            Some(RowCodec::new(
                calls.iter().map(|c| c.output_type.clone()).collect(),
            )?)
        };
        let calls = calls
            .into_iter()
            .map(|spec| Call::new(spec, input_schema))
            .collect::<Result<Vec<_>>>()?;
        let mut operator = Self {
            group_exprs,
            group_types,
            groups,
            calls,
            rows: Vec::new(),
            touched: Vec::new(),
            dirty: Vec::new(),
            emitted: Vec::new(),
            results_codec,
            batch_groups: Vec::new(),
            schema,
        };
        operator.resize();
        if operator.groups.is_global() {
            // The global group exists, and is emitted, even with no input.
            operator.touch(0);
        }
        Ok(operator)
    }

    /// Grow every per-group vector to the number of group slots.
    fn resize(&mut self) {
        let slots = self.groups.slots();
        if self.rows.len() == slots {
            return;
        }
        self.rows.resize(slots, 0);
        self.touched.resize(slots, false);
        self.emitted.resize(slots, None);
        for call in &mut self.calls {
            call.resize(slots);
        }
    }

    fn touch(&mut self, group: GroupId) {
        let flag = &mut self.touched[group as usize];
        if !*flag {
            *flag = true;
            self.dirty.push(group);
        }
    }

    /// The encoded results of the calls for `groups`, one per group, and the
    /// result columns they encode.
    fn results(&mut self, groups: &[GroupId]) -> Result<Results> {
        let Some(codec) = &self.results_codec else {
            return Ok((vec![Box::default(); groups.len()], Vec::new()));
        };
        let columns = self
            .calls
            .iter_mut()
            .map(|call| call.results(groups))
            .collect::<Result<Vec<_>>>()?;
        let encoded = codec.encode(&columns)?;
        let encoded = encoded.iter().map(|row| row.data().into()).collect();
        Ok((encoded, columns))
    }
}

impl Operator for AggregateOperator {
    fn name(&self) -> &'static str {
        "Aggregate"
    }

    fn describe(&self) -> String {
        let groups: Vec<String> = self
            .group_exprs
            .iter()
            .map(|e| super::strip_indices(&e.to_string()))
            .collect();
        let calls: Vec<&str> = self.calls.iter().map(|c| c.spec.display.as_str()).collect();
        format!("group by [{}], [{}]", groups.join(", "), calls.join(", "))
    }

    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn on_changes(
        &mut self,
        _: usize,
        changes: ChangeBatch,
        _: &mut Vec<ChangeBatch>,
    ) -> Result<()> {
        let rows = changes.num_rows();
        let columns = self
            .group_exprs
            .iter()
            .zip(&self.group_types)
            .map(|(expr, data_type)| {
                let column = expr.evaluate(changes.data())?.into_array(rows)?;
                cast_to(&column, data_type)
            })
            .collect::<Result<Vec<_>>>()?;
        let mut groups = std::mem::take(&mut self.batch_groups);
        self.groups.intern(&columns, rows, &mut groups)?;
        self.resize();
        for (group, weight) in groups.iter().zip(changes.weights()) {
            self.rows[*group as usize] += weight;
            self.touch(*group);
        }
        for call in &mut self.calls {
            call.update(&groups, &changes)?;
        }
        self.batch_groups = groups;
        Ok(())
    }

    fn on_barrier(&mut self, out: &mut Vec<ChangeBatch>) -> Result<()> {
        if self.dirty.is_empty() {
            return Ok(());
        }
        let dirty = std::mem::take(&mut self.dirty);
        let global = self.groups.is_global();
        let alive: Vec<GroupId> = dirty
            .iter()
            .copied()
            .filter(|g| global || self.rows[*g as usize] > 0)
            .collect();
        let (encoded, columns) = self.results(&alive)?;
        // Retractions of rows that change or vanish, from their encoding.
        let mut retracted: Vec<GroupId> = Vec::new();
        let mut retracted_rows: Vec<Box<[u8]>> = Vec::new();
        // Insertions of rows that change or appear, by index into `alive`.
        let mut inserted: Vec<u32> = Vec::new();
        // Groups left without rows; released once their keys are emitted.
        let mut released: Vec<GroupId> = Vec::new();
        let mut new_rows = encoded.into_iter();
        let mut next_alive = 0u32;
        for group in dirty {
            let g = group as usize;
            self.touched[g] = false;
            let new = if global || self.rows[g] > 0 {
                next_alive += 1;
                Some((
                    next_alive - 1,
                    new_rows
                        .next()
                        .ok_or_else(|| Error::internal("aggregate result missing"))?,
                ))
            } else {
                None
            };
            let Some((index, row)) = new else {
                // The group has no rows left (or never had any this epoch).
                if let Some(old) = self.emitted[g].take() {
                    retracted.push(group);
                    retracted_rows.push(old);
                }
                released.push(group);
                continue;
            };
            if self.emitted[g].as_ref() == Some(&row) {
                continue;
            }
            if let Some(old) = self.emitted[g].replace(row) {
                retracted.push(group);
                retracted_rows.push(old);
            }
            inserted.push(index);
        }
        if !retracted.is_empty() {
            let mut batch = self.groups.key_columns(&retracted)?;
            if let Some(codec) = &self.results_codec {
                batch.extend(codec.decode(retracted_rows.iter().map(|r| r.as_ref()))?);
            }
            let data = schema::batch(&self.schema, batch, retracted.len())?;
            out.push(ChangeBatch::deletes(data));
        }
        if !inserted.is_empty() {
            let groups: Vec<GroupId> = inserted.iter().map(|i| alive[*i as usize]).collect();
            let mut batch = self.groups.key_columns(&groups)?;
            let indices = UInt32Array::from(inserted);
            for column in &columns {
                batch.push(take(column, &indices, None)?);
            }
            let data = schema::batch(&self.schema, batch, groups.len())?;
            out.push(ChangeBatch::inserts(data));
        }
        for group in released {
            self.groups.release(group);
            for call in &mut self.calls {
                call.reset(group);
            }
        }
        Ok(())
    }
}

fn cast_to(array: &ArrayRef, data_type: &DataType) -> Result<ArrayRef> {
    if array.data_type() == data_type {
        Ok(array.clone())
    } else {
        Ok(cast(array, data_type)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{changes, col, epoch, schema, NOTHING};

    fn call(function: AggregateFunction, arg: &str, distinct: bool) -> AggregateCall {
        let input = schema("k:int v:int");
        AggregateCall {
            function,
            args: if arg == "*" {
                vec![]
            } else {
                vec![col(arg, &input)]
            },
            distinct,
            filter: None,
            order_by: vec![],
            output_type: DataType::Int64,
            display: format!("{function:?}({arg})"),
        }
    }

    /// `SELECT [k,] <calls> FROM t(k, v) [GROUP BY k]`; `output` names the
    /// result columns.
    fn aggregate(grouped: bool, calls: Vec<AggregateCall>, output: &str) -> AggregateOperator {
        let input = schema("k:int v:int");
        let (exprs, types) = if grouped {
            (vec![col("k", &input)], vec![DataType::Int64])
        } else {
            (vec![], vec![])
        };
        AggregateOperator::new(exprs, types, calls, &input, schema(output))
            .expect("a valid aggregate")
    }

    fn count_sum_min_max(grouped: bool) -> AggregateOperator {
        use AggregateFunction::*;
        let calls = vec![
            call(Count, "*", false),
            call(Sum, "v", false),
            call(Min, "v", false),
            call(Max, "v", false),
        ];
        let output = if grouped {
            "k:int n:int s:int lo:int hi:int"
        } else {
            "n:int s:int lo:int hi:int"
        };
        aggregate(grouped, calls, output)
    }

    #[test]
    fn deleting_the_max_reveals_the_next() -> Result<()> {
        let mut op = count_sum_min_max(true);
        let s = schema("k:int v:int");
        let rows = changes(&s, "1 10 +1; 1 30 +1; 1 20 +1; 2 5 +1; 2 NULL +1");
        assert_eq!(
            epoch(&mut op, vec![(0, rows)])?,
            ["1 3 60 10 30 +1", "2 2 5 5 5 +1"]
        );
        let delete_max = changes(&s, "1 30 -1");
        assert_eq!(
            epoch(&mut op, vec![(0, delete_max)])?,
            ["1 2 30 10 20 +1", "1 3 60 10 30 -1"]
        );
        // A duplicate of the min keeps it until both copies are gone.
        let rows = changes(&s, "1 10 +1");
        assert_eq!(
            epoch(&mut op, vec![(0, rows)])?,
            ["1 2 30 10 20 -1", "1 3 40 10 20 +1"]
        );
        let rows = changes(&s, "1 10 -1");
        assert_eq!(
            epoch(&mut op, vec![(0, rows)])?,
            ["1 2 30 10 20 +1", "1 3 40 10 20 -1"]
        );
        let rows = changes(&s, "1 10 -1");
        assert_eq!(
            epoch(&mut op, vec![(0, rows)])?,
            ["1 1 20 20 20 +1", "1 2 30 10 20 -1"]
        );
        Ok(())
    }

    #[test]
    fn group_disappears_when_its_count_reaches_zero() -> Result<()> {
        let mut op = count_sum_min_max(true);
        let s = schema("k:int v:int");
        let rows = changes(&s, "1 10 +1; 1 20 +1; 2 7 +1");
        assert_eq!(
            epoch(&mut op, vec![(0, rows)])?,
            ["1 2 30 10 20 +1", "2 1 7 7 7 +1"]
        );
        // Deleted over two batches of one epoch: one retraction, no new row.
        let steps = vec![(0, changes(&s, "1 10 -1")), (0, changes(&s, "1 20 -1"))];
        assert_eq!(epoch(&mut op, steps)?, ["1 2 30 10 20 -1"]);
        // The group comes back from scratch, with no stale state.
        assert_eq!(
            epoch(&mut op, vec![(0, changes(&s, "1 4 +1"))])?,
            ["1 1 4 4 4 +1"]
        );
        // A group born and gone within one epoch emits nothing.
        assert_eq!(
            epoch(&mut op, vec![(0, changes(&s, "3 1 +1; 3 1 -1"))])?,
            NOTHING
        );
        Ok(())
    }

    #[test]
    fn global_aggregate_has_a_row_without_input() -> Result<()> {
        let mut op = count_sum_min_max(false);
        let s = schema("k:int v:int");
        assert_eq!(epoch(&mut op, vec![])?, ["0 NULL NULL NULL +1"]);
        assert_eq!(epoch(&mut op, vec![])?, NOTHING);
        let rows = changes(&s, "1 10 +1; 2 20 +1");
        assert_eq!(
            epoch(&mut op, vec![(0, rows)])?,
            ["0 NULL NULL NULL -1", "2 30 10 20 +1"]
        );
        // Emptied again: back to the row of no input, not to no row.
        let rows = changes(&s, "1 10 -1; 2 20 -1");
        assert_eq!(
            epoch(&mut op, vec![(0, rows)])?,
            ["0 NULL NULL NULL +1", "2 30 10 20 -1"]
        );
        Ok(())
    }

    #[test]
    fn count_distinct_under_duplicates() -> Result<()> {
        use AggregateFunction::*;
        let calls = vec![
            call(Count, "*", false),
            call(Count, "v", true),
            call(Sum, "v", true),
        ];
        let mut op = aggregate(true, calls, "k:int n:int nd:int sd:int");
        let s = schema("k:int v:int");
        let rows = changes(&s, "1 10 +1; 1 10 +1; 1 20 +2; 1 NULL +1");
        assert_eq!(epoch(&mut op, vec![(0, rows)])?, ["1 5 2 30 +1"]);
        // One of two copies of 10 goes: still two distinct values.
        let rows = changes(&s, "1 10 -1");
        assert_eq!(
            epoch(&mut op, vec![(0, rows)])?,
            ["1 4 2 30 +1", "1 5 2 30 -1"]
        );
        // The last copy goes: 10 leaves the distinct set.
        let rows = changes(&s, "1 10 -1");
        assert_eq!(
            epoch(&mut op, vec![(0, rows)])?,
            ["1 3 1 20 +1", "1 4 2 30 -1"]
        );
        // Both copies of 20 go in one row, and a new value arrives twice.
        let rows = changes(&s, "1 20 -2; 1 30 +1; 1 30 +1");
        assert_eq!(
            epoch(&mut op, vec![(0, rows)])?,
            ["1 3 1 20 -1", "1 3 1 30 +1"]
        );
        Ok(())
    }

    #[test]
    fn unchanged_results_emit_nothing() -> Result<()> {
        use AggregateFunction::*;
        let calls = vec![call(Max, "v", false), call(Count, "v", true)];
        let mut op = aggregate(true, calls, "k:int hi:int nd:int");
        let s = schema("k:int v:int");
        let rows = changes(&s, "1 10 +1; 1 5 +1");
        assert_eq!(epoch(&mut op, vec![(0, rows)])?, ["1 10 2 +1"]);
        // Below the max, and a duplicate: neither result moves.
        let rows = changes(&s, "1 7 +1; 1 7 -1; 1 5 +1");
        assert_eq!(epoch(&mut op, vec![(0, rows)])?, NOTHING);
        let rows = changes(&s, "1 5 -1");
        assert_eq!(epoch(&mut op, vec![(0, rows)])?, NOTHING);
        // No input at all.
        assert_eq!(epoch(&mut op, vec![])?, NOTHING);
        Ok(())
    }
}
