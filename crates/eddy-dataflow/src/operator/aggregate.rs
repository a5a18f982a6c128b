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

    /// Write one entry per group changed since the last save (as save
    /// `save`), a deletion per group emptied, and the calls' shared entry.
    fn write_unsaved(&mut self, save: u64, out: &mut StateSink<'_>) {
        let Some(unsaved) = &mut self.unsaved else {
            return;
        };
        if unsaved.groups.is_empty() && unsaved.released.is_empty() {
            return;
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
    }

    /// After save `save`: let go of groups while over the budget.
    fn let_go(&mut self, save: u64) {
        let Some(spilled) = &mut self.spilled else {
            return;
        };
        spilled.save_done(save);
        for group in spilled.victims() {
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
        let save = self.spilled.as_ref().map_or(0, Spilled::save);
        self.write_unsaved(save, out);
        self.let_go(save);
        Ok(())
    }

    fn spill(&mut self, spill: Spill) {
        if !self.groups.is_global() {
            let mut spilled = Spilled::new(spill);
            spilled.resize(self.groups.slots());
            self.spilled = Some(spilled);
        }
    }

    /// Spilling, only the calls' shared entry: groups are read back when
    /// their keys come.
    fn entries_to_load(&self) -> Option<Vec<Vec<u8>>> {
        self.spilled.as_ref().map(|_| vec![SHARED_ENTRY.to_vec()])
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
        let group = self.groups.load_key(key)?;
        self.resize();
        if let Some(spilled) = &mut self.spilled {
            spilled.loaded(group, 1 + key.len() + value.len());
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
mod tests;
