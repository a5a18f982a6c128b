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
mod spill;

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, UInt32Array};
use datafusion::arrow::compute::{cast, take};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::physical_expr::{PhysicalExpr, PhysicalSortExpr};
use eddy_common::row::RowCodec;

use self::call::Call;
use self::groups::{GroupId, Groups};
use self::spill::Spilled;
use crate::state::{Checkpointing, Decoder, Encoder, Spill, StateSink};
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
    /// Groups the current batch created.
    batch_created: Vec<GroupId>,
    /// Once state is tracked, what changed since the last save.
    unsaved: Option<Unsaved>,
    /// Under a memory budget, what lets groups leave memory.
    spilled: Option<Spilled>,
    schema: SchemaRef,
}

/// The groups an aggregate has not saved since they changed.
#[derive(Default)]
struct Unsaved {
    /// Whether each group changed; set for each id in `groups`.
    changed: Vec<bool>,
    /// The changed groups (possibly some twice, or released since).
    groups: Vec<GroupId>,
    /// Stored keys of the groups released since.
    released: Vec<Vec<u8>>,
}

/// First byte of a group's state entry (then the group's stored key).
const GROUP_ENTRY: u8 = 0;
/// Key of the entry of what calls hold for all groups.
const SHARED_ENTRY: &[u8] = &[1];

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
            batch_created: Vec::new(),
            unsaved: None,
            spilled: None,
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
        if let Some(unsaved) = &mut self.unsaved {
            unsaved.changed.resize(slots, false);
        }
        if let Some(spilled) = &mut self.spilled {
            spilled.resize(slots);
        }
        for call in &mut self.calls {
            call.resize(slots);
        }
    }

    fn touch(&mut self, group: GroupId) {
        if let Some(spilled) = &mut self.spilled {
            spilled.touch(group);
        }
        let flag = &mut self.touched[group as usize];
        if !*flag {
            *flag = true;
            self.dirty.push(group);
            if let Some(unsaved) = &mut self.unsaved {
                let changed = &mut unsaved.changed[group as usize];
                if !*changed {
                    *changed = true;
                    unsaved.groups.push(group);
                }
            }
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

    /// Set group `group`'s row count and calls' state from a stored entry.
    fn decode_group(&mut self, group: GroupId, value: &[u8]) -> Result<()> {
        let mut input = Decoder::new(value);
        self.rows[group as usize] = input.i64()?;
        for call in &mut self.calls {
            call.load(group, &mut input)?;
        }
        input.finish()
    }

    /// Read back from the store the groups among `created` that were let
    /// go of, with the rows they emitted, before a batch changes them.
    fn reload(&mut self, created: &[GroupId]) -> Result<()> {
        let mut reloaded = Vec::new();
        let mut key = vec![GROUP_ENTRY];
        for group in created {
            key.truncate(1);
            self.groups.stored_key(*group, &mut key);
            let Some(spilled) = &mut self.spilled else {
                return Ok(());
            };
            let Some(value) = spilled.read(&key)? else {
                continue;
            };
            spilled.reloaded(*group, key.len() + value.len());
            self.decode_group(*group, &value)?;
            reloaded.push(*group);
        }
        let (encoded, _) = self.results(&reloaded)?;
        for (group, row) in reloaded.iter().zip(encoded) {
            self.emitted[*group as usize] = Some(row);
        }
        Ok(())
    }

    /// Let go of groups while over the budget (between epochs, after a
    /// save).
    fn evict(&mut self) {
        let (Some(spilled), Some(unsaved)) = (&mut self.spilled, &self.unsaved) else {
            return;
        };
        for group in spilled.victims(&unsaved.changed) {
            self.groups.release(group);
            self.rows[group as usize] = 0;
            self.emitted[group as usize] = None;
            for call in &mut self.calls {
                call.reset(group);
            }
        }
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
        let mut created = std::mem::take(&mut self.batch_created);
        self.groups
            .intern(&columns, rows, &mut groups, &mut created)?;
        self.resize();
        if self.spilled.is_some() && !created.is_empty() {
            self.reload(&created)?;
        }
        self.batch_created = created;
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
            if let Some(unsaved) = &mut self.unsaved {
                let mut key = Vec::new();
                self.groups.stored_key(group, &mut key);
                if let Some(spilled) = &mut self.spilled {
                    spilled.released(group, [&[GROUP_ENTRY], key.as_slice()].concat());
                }
                unsaved.released.push(key);
                unsaved.changed[group as usize] = false;
            }
            self.groups.release(group);
            for call in &mut self.calls {
                call.reset(group);
            }
        }
        Ok(())
    }

    fn checkpointing(&self) -> Checkpointing {
        Checkpointing::Entries
    }

    fn track_state(&mut self) {
        let global = self.groups.is_global();
        let mut unsaved = Unsaved {
            changed: vec![false; self.groups.slots()],
            ..Unsaved::default()
        };
        for (group, rows) in self.rows.iter().enumerate() {
            if global || *rows > 0 {
                unsaved.changed[group] = true;
                unsaved.groups.push(group as GroupId);
            }
        }
        self.unsaved = Some(unsaved);
    }

    /// One entry per changed group: its key, then its row count and each
    /// call's state; and one of what the calls hold for all groups.
    fn save_state(&mut self, out: &mut StateSink<'_>) -> Result<()> {
        let Some(unsaved) = &mut self.unsaved else {
            return Ok(());
        };
        let save = self.spilled.as_ref().map_or(0, Spilled::save);
        if unsaved.groups.is_empty() && unsaved.released.is_empty() {
            if let Some(spilled) = &mut self.spilled {
                spilled.save_done(save);
            }
            self.evict();
            return Ok(());
        }
        let mut key = vec![GROUP_ENTRY];
        for released in unsaved.released.drain(..) {
            key.truncate(1);
            key.extend_from_slice(&released);
            out(&key, None);
        }
        let mut value = Encoder::new();
        for group in unsaved.groups.drain(..) {
            let g = group as usize;
            if !std::mem::take(&mut unsaved.changed[g]) {
                continue;
            }
            key.truncate(1);
            self.groups.stored_key(group, &mut key);
            value.clear();
            value.i64(self.rows[g]);
            for call in &mut self.calls {
                call.save(group, &mut value);
            }
            out(&key, Some(value.bytes()));
            if let Some(spilled) = &mut self.spilled {
                spilled.saved(group, key.len() + value.bytes().len(), save);
            }
        }
        value.clear();
        for call in &self.calls {
            call.save_shared(&mut value);
        }
        out(SHARED_ENTRY, Some(value.bytes()));
        if let Some(spilled) = &mut self.spilled {
            spilled.save_done(save);
        }
        self.evict();
        Ok(())
    }

    fn spill(&mut self, spill: Spill) {
        if !self.groups.is_global() {
            let mut spilled = Spilled::new(spill);
            spilled.resize(self.groups.slots());
            self.spilled = Some(spilled);
        }
    }

    fn load_state(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        if key == SHARED_ENTRY {
            let mut input = Decoder::new(value);
            for call in &mut self.calls {
                call.load_shared(&mut input)?;
            }
            return input.finish();
        }
        let Some((&GROUP_ENTRY, key)) = key.split_first() else {
            return Err(crate::state::corrupt());
        };
        let bytes = 1 + key.len() + value.len();
        if let Some(spilled) = &mut self.spilled {
            if !spilled.room(bytes) {
                // Read back when its key comes again.
                return Ok(());
            }
        }
        let group = self.groups.load_key(key)?;
        self.resize();
        if let Some(spilled) = &mut self.spilled {
            spilled.loaded(group, bytes);
        }
        self.decode_group(group, value)
    }

    fn state_loaded(&mut self) -> Result<()> {
        let global = self.groups.is_global();
        let alive: Vec<GroupId> = (0..self.groups.slots() as GroupId)
            .filter(|g| global || self.rows[*g as usize] > 0)
            .collect();
        let (encoded, _) = self.results(&alive)?;
        for (group, row) in alive.iter().zip(encoded) {
            self.emitted[*group as usize] = Some(row);
        }
        for group in self.dirty.drain(..) {
            self.touched[group as usize] = false;
        }
        if let Some(unsaved) = &mut self.unsaved {
            // What was loaded is stored already.
            unsaved.groups.clear();
            unsaved.changed.fill(false);
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
    use crate::state::StateBudget;
    use crate::testing::{changes, check_restart, col, epoch, schema, NOTHING};

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

    /// `SELECT k, v, <calls> FROM t(k, v) GROUP BY k, v`: two key columns,
    /// so groups are keyed by their row encoding.
    fn by_pairs(calls: Vec<AggregateCall>, output: &str) -> AggregateOperator {
        let input = schema("k:int v:int");
        let keys = vec![col("k", &input), col("v", &input)];
        let types = vec![DataType::Int64, DataType::Int64];
        AggregateOperator::new(keys, types, calls, &input, schema(output))
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

    /// Random inserts and deletes of present rows `k v`, `epochs` epochs.
    fn random_epochs(seed: u64, epochs: usize) -> Vec<Vec<(usize, ChangeBatch)>> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let s = schema("k:int v:int");
        let mut present: Vec<(Option<i64>, Option<i64>)> = Vec::new();
        (0..epochs)
            .map(|_| {
                let mut rows = Vec::new();
                for _ in 0..rng.random_range(0..6) {
                    if !present.is_empty() && rng.random_bool(0.4) {
                        let (k, v) = present.swap_remove(rng.random_range(0..present.len()));
                        rows.push((k, v, -1));
                    } else {
                        let v = rng.random_bool(0.9).then(|| rng.random_range(0..8));
                        let k = rng.random_bool(0.9).then(|| rng.random_range(0..4));
                        present.push((k, v));
                        rows.push((k, v, 1));
                    }
                }
                let text: Vec<String> = rows
                    .iter()
                    .map(|(k, v, w)| {
                        let text =
                            |x: &Option<i64>| x.map_or("NULL".to_string(), |x| x.to_string());
                        format!("{} {} {w:+}", text(k), text(v))
                    })
                    .collect();
                vec![(0, changes(&s, &text.join("; ")))]
            })
            .collect()
    }

    #[test]
    fn a_restored_aggregate_goes_on_like_the_original() -> Result<()> {
        use AggregateFunction::*;
        let string_agg = || {
            let mut call = call(StringAgg, "v", false);
            call.args
                .push(datafusion::physical_expr::expressions::lit("|"));
            call.output_type = DataType::Utf8;
            call
        };
        let make_grouped = || -> Box<dyn Operator> {
            let calls = vec![
                call(Count, "*", false),
                call(Sum, "v", false),
                call(Min, "v", false),
                call(Max, "v", false),
                call(Count, "v", true),
                string_agg(),
            ];
            Box::new(aggregate(
                true,
                calls,
                "k:int n:int s:int lo:int hi:int nd:int sa:str",
            ))
        };
        let make_global = || -> Box<dyn Operator> { Box::new(count_sum_min_max(false)) };
        let make_pairs = || -> Box<dyn Operator> {
            let calls = vec![call(Count, "*", false), call(Min, "v", false)];
            Box::new(by_pairs(calls, "k:int v:int n:int lo:int"))
        };
        for seed in 0..40 {
            let epochs = random_epochs(seed, 12);
            let cut = 1 + (seed as usize) % 11;
            let (before, after) = (epochs[..cut].to_vec(), epochs[cut..].to_vec());
            check_restart(&make_grouped, before.clone(), after.clone())?;
            check_restart(&make_global, before.clone(), after.clone())?;
            check_restart(&make_pairs, before, after)?;
        }
        Ok(())
    }

    /// The entries one save wrote (`None`: deleted).
    type Writes = Vec<(Vec<u8>, Option<Vec<u8>>)>;

    /// Saves reach the store `lag` saves late, as checkpoints written on
    /// their own thread do.
    struct LaggingStore {
        durable: Arc<std::sync::Mutex<crate::testing::Saved>>,
        in_flight: std::collections::VecDeque<(u64, Writes)>,
        budget: Arc<StateBudget>,
        lag: usize,
    }

    impl LaggingStore {
        fn new(lag: usize, limit: usize) -> Self {
            Self {
                durable: Arc::default(),
                in_flight: Default::default(),
                budget: Arc::new(StateBudget::new(limit)),
                lag,
            }
        }

        fn spill(&self) -> Spill {
            let durable = self.durable.clone();
            Spill {
                reader: Box::new(move |key| {
                    Ok(durable.lock().expect("not poisoned").get(key).cloned())
                }),
                budget: self.budget.clone(),
            }
        }

        fn save(&mut self, operator: &mut dyn Operator) -> Result<()> {
            let save = self.budget.begin_save();
            let mut writes = Vec::new();
            operator.save_state(&mut |key, value| {
                writes.push((key.to_vec(), value.map(<[u8]>::to_vec)));
            })?;
            self.in_flight.push_back((save, writes));
            while self.in_flight.len() > self.lag {
                self.write_one();
            }
            Ok(())
        }

        fn write_one(&mut self) {
            let Some((save, writes)) = self.in_flight.pop_front() else {
                return;
            };
            let mut durable = self.durable.lock().expect("not poisoned");
            for (key, value) in writes {
                match value {
                    Some(value) => durable.insert(key, value),
                    None => durable.remove(&key),
                };
            }
            self.budget.written(save);
        }
    }

    #[test]
    fn an_aggregate_that_lets_go_of_its_groups_goes_on_like_one_that_keeps_them() -> Result<()> {
        use AggregateFunction::*;
        let make_grouped = || -> Box<dyn Operator> {
            let calls = vec![
                call(Count, "*", false),
                call(Sum, "v", false),
                call(Min, "v", false),
                call(Count, "v", true),
            ];
            Box::new(aggregate(true, calls, "k:int n:int s:int lo:int nd:int"))
        };
        let make_pairs = || -> Box<dyn Operator> {
            let calls = vec![call(Count, "*", false), call(Max, "v", false)];
            Box::new(by_pairs(calls, "k:int v:int n:int hi:int"))
        };
        let (mut evicted, mut reloaded) = (0, 0);
        for seed in 0..60 {
            for make in [&make_grouped as &dyn Fn() -> Box<dyn Operator>, &make_pairs] {
                let epochs = random_epochs(seed, 40);
                let (before, after) = epochs.split_at(30);
                // No memory, or room for a few groups.
                let limit = if seed % 2 == 0 { 0 } else { 300 };
                let mut store = LaggingStore::new(seed as usize % 3, limit);
                let mut kept = make();
                kept.track_state();
                let mut spilling = make();
                spilling.track_state();
                spilling.spill(store.spill());
                for steps in before {
                    let expected = epoch(kept.as_mut(), steps.clone())?;
                    assert_eq!(
                        epoch(spilling.as_mut(), steps.clone())?,
                        expected,
                        "seed {seed}"
                    );
                    store.save(spilling.as_mut())?;
                }
                let (out, back) = store.budget.evictions();
                evicted += out;
                reloaded += back;
                // A restart loads the store with everything written: what
                // does not fit stays on disk until its key comes.
                while !store.in_flight.is_empty() {
                    store.write_one();
                }
                drop(spilling);
                let mut restored = make();
                restored.track_state();
                restored.spill(store.spill());
                let saved = store.durable.lock().expect("not poisoned").clone();
                for (key, value) in &saved {
                    restored.load_state(key, value)?;
                }
                restored.state_loaded()?;
                assert_eq!(epoch(restored.as_mut(), vec![])?, NOTHING);
                for steps in after {
                    let expected = epoch(kept.as_mut(), steps.clone())?;
                    assert_eq!(
                        epoch(restored.as_mut(), steps.clone())?,
                        expected,
                        "seed {seed}"
                    );
                    store.save(restored.as_mut())?;
                }
            }
        }
        // The budgets made groups leave memory and come back.
        assert!(
            evicted > 100 && reloaded > 100,
            "{evicted} evicted, {reloaded} read back"
        );
        Ok(())
    }
}
