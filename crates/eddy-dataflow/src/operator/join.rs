//! Equi-joins of every kind, with an optional extra (non-equi) condition.
//!
//! Each side keeps its rows indexed by join key. A change on one side is
//! joined with the current state of the other side, then added to its own
//! side: Δ(L ⋈ R) = ΔL ⋈ R + L' ⋈ ΔR with L' = L + ΔL. For outer, semi and
//! anti joins every stored row also counts its matches (the summed weights
//! of the rows it joins with); a row's NULL-extended, semi or anti output
//! appears or disappears exactly when that count crosses zero.
//!
//! Under a memory budget (see [`Operator::spill`]) the join lets go of the
//! rows of keys it saved and reads them back when a change with their key
//! comes (see `spill`).

mod spill;

use std::hash::BuildHasher;
use std::sync::Arc;

use datafusion::arrow::array::{
    new_null_array, Array, ArrayRef, AsArray, Int64Array, RecordBatch, UInt32Array,
};
use datafusion::arrow::compute::{cast, filter_record_batch, take};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::physical_expr::PhysicalExpr;
use eddy_common::row::RowCodec;
use hashbrown::{DefaultHashBuilder, HashMap, HashTable};
use smallvec::SmallVec;

use self::spill::{Residence, Spilled};
use crate::state::{Checkpointing, Decoder, Encoder, Spill, StateSink};
use crate::{schema, ChangeBatch, Error, Operator, Result};

/// Which rows a join emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinKind {
    /// Matching pairs.
    Inner,
    /// Pairs, and left rows without a match padded with NULLs.
    Left,
    /// Pairs, and right rows without a match padded with NULLs.
    Right,
    /// Pairs, and unmatched rows of both sides padded with NULLs.
    Full,
    /// Left rows that have a match (once each).
    LeftSemi,
    /// Left rows that have no match.
    LeftAnti,
    /// Right rows that have a match.
    RightSemi,
    /// Right rows that have no match.
    RightAnti,
}

/// What a join emits for a row of one side, beyond matching pairs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Only pairs.
    Plain,
    /// The row padded with NULLs while it has no match.
    Preserved,
    /// The row alone while it has a match.
    Semi,
    /// The row alone while it has no match.
    Anti,
}

impl JoinKind {
    fn role(self, side: usize) -> Role {
        use JoinKind::*;
        match (self, side) {
            (Left | Full, 0) | (Right | Full, 1) => Role::Preserved,
            (LeftSemi, 0) | (RightSemi, 1) => Role::Semi,
            (LeftAnti, 0) | (RightAnti, 1) => Role::Anti,
            _ => Role::Plain,
        }
    }

    fn emits_pairs(self) -> bool {
        matches!(self, Self::Inner | Self::Left | Self::Right | Self::Full)
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Entry {
    weight: i64,
    matches: i64,
}

struct Side {
    keys: Vec<Arc<dyn PhysicalExpr>>,
    codec: RowCodec,
    schema: SchemaRef,
    index: HashMap<Key, RowsOfKey>,
    /// Hashes stored rows.
    hasher: DefaultHashBuilder,
}

/// An incremental equi-join.
pub struct JoinOperator {
    kind: JoinKind,
    key_codec: RowCodec,
    nulls_equal: bool,
    filter: Option<Arc<dyn PhysicalExpr>>,
    filter_schema: SchemaRef,
    sides: [Side; 2],
    schema: SchemaRef,
    display: String,
    /// Once state is tracked, the stored rows of each side changed since
    /// the last save, by key.
    unsaved: Option<[hashbrown::HashSet<KeyedRow>; 2]>,
    /// Under a memory budget, what the join knows of the keys it let go of.
    spilled: Option<Spilled>,
}

/// Bytes a stored row holds beyond its encoding (its hash, pointer, weight
/// and match count, its allocation's header), as estimated for a budget.
const ROW_OVERHEAD: usize = 64;

/// The stored rows of one join key, each with its weight and match count.
///
/// Each row keeps its hash, so that growing the table, and rejecting a
/// probe that only shares a bucket, never reads the row's bytes behind
/// their pointer (with many rows per key, those reads were cache misses).
#[derive(Default)]
struct RowsOfKey {
    rows: HashTable<(u64, Arc<[u8]>, Entry)>,
    /// Estimated bytes of the rows.
    bytes: usize,
    /// How the key counts in a memory budget.
    residence: Residence,
}

impl RowsOfKey {
    fn iter(&self) -> impl Iterator<Item = (&Arc<[u8]>, &Entry)> {
        self.rows.iter().map(|(_, row, entry)| (row, entry))
    }

    fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    fn get(&self, hasher: &DefaultHashBuilder, row: &[u8]) -> Option<&Entry> {
        let hash = hasher.hash_one(row);
        self.rows
            .find(hash, |(h, r, _)| *h == hash && r.as_ref() == row)
            .map(|(_, _, entry)| entry)
    }

    fn get_mut(&mut self, hasher: &DefaultHashBuilder, row: &[u8]) -> Option<&mut Entry> {
        let hash = hasher.hash_one(row);
        self.rows
            .find_mut(hash, |(h, r, _)| *h == hash && r.as_ref() == row)
            .map(|(_, _, entry)| entry)
    }

    /// Add `weight` copies of `row`, whose current match count is `matches`.
    fn update(&mut self, hasher: &DefaultHashBuilder, row: &[u8], weight: i64, matches: i64) {
        let hash = hasher.hash_one(row);
        match self.rows.entry(
            hash,
            |(h, r, _)| *h == hash && r.as_ref() == row,
            |(h, _, _)| *h,
        ) {
            hashbrown::hash_table::Entry::Occupied(mut slot) => {
                let entry = &mut slot.get_mut().2;
                entry.weight += weight;
                entry.matches = matches;
                if entry.weight == 0 {
                    slot.remove();
                    self.bytes -= row.len() + ROW_OVERHEAD;
                }
            }
            hashbrown::hash_table::Entry::Vacant(slot) => {
                if weight != 0 {
                    slot.insert((hash, Arc::from(row), Entry { weight, matches }));
                    self.bytes += row.len() + ROW_OVERHEAD;
                }
            }
        }
    }
}

/// A row-encoded join key, inline when short (a key of one or two
/// integers), so that probing the index compares bytes in the bucket itself
/// rather than behind a pointer.
type Key = SmallVec<[u8; 24]>;

/// A stored row with its join key.
type KeyedRow = (Box<[u8]>, Arc<[u8]>);

/// Candidate pairs of one delta: delta row, other row, other weight.
type Pairs = Vec<(u32, Arc<[u8]>, i64)>;

/// The start of the entry keys of the rows of join key `key` on side
/// `side`: the row follows.
fn entry_prefix(side: usize, key: &[u8]) -> Vec<u8> {
    let mut prefix = Encoder::new();
    prefix.count(side).slice(key);
    prefix.bytes().to_vec()
}

/// A stored row's weight and match count.
fn decode_entry(value: &[u8]) -> Result<(i64, i64)> {
    let mut value = Decoder::new(value);
    let entry = (value.i64()?, value.i64()?);
    value.finish()?;
    Ok(entry)
}

impl JoinOperator {
    /// Join rows of `left_schema` and `right_schema` on
    /// `left_keys[i] = right_keys[i]` (both cast to `key_types[i]`), then
    /// `filter` over the concatenated row. `nulls_equal` makes NULL keys match
    /// (as set operations need). `schema` is the output schema.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        kind: JoinKind,
        left_keys: Vec<Arc<dyn PhysicalExpr>>,
        right_keys: Vec<Arc<dyn PhysicalExpr>>,
        key_types: Vec<DataType>,
        nulls_equal: bool,
        filter: Option<Arc<dyn PhysicalExpr>>,
        left_schema: SchemaRef,
        right_schema: SchemaRef,
        schema: SchemaRef,
        display: String,
    ) -> Result<Self> {
        let mut fields: Vec<_> = left_schema.fields().iter().cloned().collect();
        fields.extend(right_schema.fields().iter().cloned());
        let filter_schema = schema::nullable(&datafusion::arrow::datatypes::Schema::new(fields));
        let side = |keys, schema: SchemaRef| -> Result<Side> {
            Ok(Side {
                keys,
                codec: RowCodec::for_schema(&schema)?,
                schema,
                index: HashMap::new(),
                hasher: DefaultHashBuilder::default(),
            })
        };
        Ok(Self {
            kind,
            key_codec: RowCodec::new(key_types)?,
            nulls_equal,
            filter,
            filter_schema,
            sides: [
                side(left_keys, left_schema)?,
                side(right_keys, right_schema)?,
            ],
            schema,
            display,
            unsaved: None,
            spilled: None,
        })
    }

    /// Before a change of side `side` with join key `key` is joined: read
    /// back the rows of that key that either side let go of.
    fn read_back(&mut self, side: usize, key: &[u8]) -> Result<()> {
        let Some(spilled) = &mut self.spilled else {
            return Ok(());
        };
        for s in [side, 1 - side] {
            let own = &mut self.sides[s];
            if own.index.contains_key(key) {
                continue;
            }
            let entries = spilled.read(s, key)?;
            if entries.is_empty() {
                continue;
            }
            let rows = own.index.entry_ref(key).or_default();
            for (row, value) in entries {
                let (weight, matches) = decode_entry(&value)?;
                rows.update(&own.hasher, &row, weight, matches);
            }
            rows.residence.referenced = true;
            // Its entries are durable: it may go again.
            spilled.count(s, key, rows, 0);
            spilled.reloaded();
        }
        Ok(())
    }

    /// Columns of a batch laid out as the join's output (or filter input)
    /// from optional left and right columns; a missing side becomes NULLs.
    fn assemble(
        &self,
        target: &SchemaRef,
        left: Option<Vec<ArrayRef>>,
        right: Option<Vec<ArrayRef>>,
        rows: usize,
    ) -> Result<RecordBatch> {
        let nulls = |side: &Side| -> Vec<ArrayRef> {
            side.schema
                .fields()
                .iter()
                .map(|f| new_null_array(f.data_type(), rows))
                .collect()
        };
        let pairs = self.kind.emits_pairs() || Arc::ptr_eq(target, &self.filter_schema);
        let columns = if pairs {
            let mut columns = left.unwrap_or_else(|| nulls(&self.sides[0]));
            columns.extend(right.unwrap_or_else(|| nulls(&self.sides[1])));
            columns
        } else {
            left.or(right)
                .ok_or_else(|| Error::internal("join output without columns"))?
        };
        schema::batch(target, columns, rows)
    }

    fn side_columns(data: &RecordBatch, rows: &[u32]) -> Result<Vec<ArrayRef>> {
        let indices = UInt32Array::from(rows.to_vec());
        data.columns()
            .iter()
            .map(|c| Ok(take(c, &indices, None)?))
            .collect()
    }

    fn stored_columns(&self, side: usize, rows: &[Arc<[u8]>]) -> Result<Vec<ArrayRef>> {
        if self.sides[side].schema.fields().is_empty() {
            return Ok(Vec::new());
        }
        self.sides[side]
            .codec
            .decode(rows.iter().map(|r| r.as_ref()))
    }

    /// Left columns then right columns of the candidate pairs.
    fn pair_columns(
        &self,
        side: usize,
        data: &RecordBatch,
        pairs: &Pairs,
    ) -> Result<Vec<ArrayRef>> {
        let delta_rows: Vec<u32> = pairs.iter().map(|p| p.0).collect();
        let other_rows: Vec<Arc<[u8]>> = pairs.iter().map(|p| p.1.clone()).collect();
        let delta = Self::side_columns(data, &delta_rows)?;
        let stored = self.stored_columns(1 - side, &other_rows)?;
        let (mut left, right) = if side == 0 {
            (delta, stored)
        } else {
            (stored, delta)
        };
        left.extend(right);
        Ok(left)
    }

    /// Keep only the pairs that satisfy the extra join condition, with their
    /// columns when they had to be built to evaluate it.
    fn apply_filter(
        &self,
        side: usize,
        data: &RecordBatch,
        pairs: Pairs,
    ) -> Result<(Pairs, Option<Vec<ArrayRef>>)> {
        let Some(filter) = &self.filter else {
            return Ok((pairs, None));
        };
        if pairs.is_empty() {
            return Ok((pairs, None));
        }
        let columns = self.pair_columns(side, data, &pairs)?;
        let batch = schema::batch(&self.filter_schema, columns, pairs.len())?;
        let mask = filter.evaluate(&batch)?.into_array(pairs.len())?;
        let mask = mask
            .as_boolean_opt()
            .ok_or_else(|| Error::internal("join condition is not boolean"))?;
        let kept = filter_record_batch(&batch, mask)?.columns().to_vec();
        let pairs = pairs
            .into_iter()
            .enumerate()
            .filter(|(i, _)| mask.is_valid(*i) && mask.value(*i))
            .map(|(_, p)| p)
            .collect();
        Ok((pairs, Some(kept)))
    }
}

impl Operator for JoinOperator {
    fn name(&self) -> &'static str {
        "Join"
    }

    fn describe(&self) -> String {
        self.display.clone()
    }

    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn on_changes(
        &mut self,
        side: usize,
        changes: ChangeBatch,
        out: &mut Vec<ChangeBatch>,
    ) -> Result<()> {
        if side > 1 {
            return Err(Error::internal("join has two inputs"));
        }
        let other = 1 - side;
        let data = changes.data();
        let weights = changes.weights();
        let count = changes.num_rows();

        let key_columns = self.sides[side]
            .keys
            .iter()
            .zip(self.key_codec.types())
            .map(|(expr, data_type)| {
                let column = expr.evaluate(data)?.into_array(count)?;
                Ok(if column.data_type() == data_type {
                    column
                } else {
                    cast(&column, data_type)?
                })
            })
            .collect::<Result<Vec<ArrayRef>>>()?;
        // A join without equality keys (a cross join, or only a non-equi
        // condition) puts every row under the one empty key.
        let keys = if key_columns.is_empty() {
            None
        } else {
            Some(self.key_codec.encode(&key_columns)?)
        };
        let key_of = |i: usize| -> &[u8] { keys.as_ref().map_or(&[], |k| k.row(i).data()) };
        let matchable: Vec<bool> = (0..count)
            .map(|i| self.nulls_equal || key_columns.iter().all(|c| c.is_valid(i)))
            .collect();
        // A side without columns (say an EXISTS subquery projected to
        // nothing) has one row value: the empty one.
        let encoded = if data.num_columns() == 0 {
            None
        } else {
            Some(self.sides[side].codec.encode(data.columns())?)
        };
        let row_of = |i: usize| -> &[u8] { encoded.as_ref().map_or(&[], |e| e.row(i).data()) };
        // Only once the store may hold keys that are not in memory.
        if self.spilled.as_ref().is_some_and(Spilled::may_read) {
            let mut seen = hashbrown::HashSet::new();
            for i in (0..count).filter(|i| matchable[*i]) {
                if seen.insert(key_of(i)) {
                    self.read_back(side, key_of(i))?;
                }
            }
        }

        // Pairs of a delta row with the current rows of the other side.
        let mut pairs: Pairs = Vec::new();
        for (i, _) in matchable.iter().enumerate().filter(|(_, m)| **m) {
            if let Some(rows) = self.sides[other].index.get_mut(key_of(i)) {
                rows.residence.referenced = true;
                for (row, entry) in rows.iter() {
                    pairs.push((i as u32, row.clone(), entry.weight));
                }
            }
        }
        let (pairs, filtered) = self.apply_filter(side, data, pairs)?;

        let mut emitted: Vec<ChangeBatch> = Vec::new();
        if self.kind.emits_pairs() && !pairs.is_empty() {
            let columns = match filtered {
                Some(columns) => columns,
                None => self.pair_columns(side, data, &pairs)?,
            };
            let batch = schema::batch(&self.schema, columns, pairs.len())?;
            let pair_weights: Int64Array = pairs
                .iter()
                .map(|(i, _, w)| weights[*i as usize] * w)
                .collect();
            emitted.push(ChangeBatch::new(batch, pair_weights)?);
        }

        // Match counts of the delta rows against the other side.
        let mut matches = vec![0i64; count];
        for (i, _, w) in &pairs {
            matches[*i as usize] += w;
        }
        let role = self.kind.role(side);
        if role != Role::Plain {
            let (rows, row_weights): (Vec<u32>, Vec<i64>) = (0..count)
                .filter(|i| match role {
                    Role::Preserved | Role::Anti => matches[*i] == 0,
                    Role::Semi => matches[*i] > 0,
                    Role::Plain => false,
                })
                .map(|i| (i as u32, weights[i]))
                .unzip();
            if !rows.is_empty() {
                let columns = Self::side_columns(data, &rows)?;
                let (left, right) = if side == 0 {
                    (Some(columns), None)
                } else {
                    (None, Some(columns))
                };
                let batch = self.assemble(&self.schema, left, right, rows.len())?;
                emitted.push(ChangeBatch::new(batch, Int64Array::from(row_weights))?);
            }
        }

        // Stored rows of the other side whose match count crosses zero.
        let other_role = self.kind.role(other);
        if other_role != Role::Plain && !pairs.is_empty() {
            let mut deltas: HashMap<(u32, Arc<[u8]>), i64> = HashMap::new();
            for (i, row, _) in &pairs {
                *deltas.entry((*i, row.clone())).or_default() += weights[*i as usize];
            }
            // Several delta rows can share a key: merge by (key, row).
            let mut by_row: HashMap<KeyedRow, i64> = HashMap::new();
            for ((i, row), delta) in deltas {
                *by_row.entry((key_of(i as usize).into(), row)).or_default() += delta;
            }
            let mut rows: Vec<Arc<[u8]>> = Vec::new();
            let mut row_weights: Vec<i64> = Vec::new();
            for ((key, row), delta) in by_row {
                let other_side = &mut self.sides[other];
                let hasher = &other_side.hasher;
                let Some(entry) = other_side
                    .index
                    .get_mut(key.as_ref())
                    .and_then(|rows| rows.get_mut(hasher, row.as_ref()))
                else {
                    return Err(Error::internal("joined row missing from its index"));
                };
                if let Some(unsaved) = &mut self.unsaved {
                    unsaved[other].insert((key.clone(), row.clone()));
                }
                let before = entry.matches;
                entry.matches += delta;
                let after = entry.matches;
                let sign = match (before > 0, after > 0) {
                    (false, true) => 1,
                    (true, false) => -1,
                    _ => continue,
                };
                let sign = if other_role == Role::Semi {
                    sign
                } else {
                    -sign
                };
                rows.push(row);
                row_weights.push(sign * entry.weight);
            }
            if !rows.is_empty() {
                let columns = self.stored_columns(other, &rows)?;
                let (left, right) = if other == 0 {
                    (Some(columns), None)
                } else {
                    (None, Some(columns))
                };
                let batch = self.assemble(&self.schema, left, right, rows.len())?;
                emitted.push(ChangeBatch::new(batch, Int64Array::from(row_weights))?);
            }
        }

        // Finally the delta joins its own side's state.
        let own = &mut self.sides[side];
        for i in 0..count {
            if !matchable[i] {
                continue;
            }
            let key = key_of(i);
            let row = row_of(i);
            let rows = own.index.entry_ref(key).or_default();
            rows.update(&own.hasher, row, weights[i], matches[i]);
            rows.residence.referenced = true;
            if rows.is_empty() {
                if let Some(spilled) = &mut self.spilled {
                    spilled.released(side, key, rows);
                }
                own.index.remove(key);
            }
            if let Some(unsaved) = &mut self.unsaved {
                unsaved[side].insert((key.into(), row.into()));
            }
        }
        out.extend(emitted);
        Ok(())
    }

    fn checkpointing(&self) -> Checkpointing {
        Checkpointing::Entries
    }

    fn track_state(&mut self) {
        let mut unsaved: [hashbrown::HashSet<KeyedRow>; 2] = Default::default();
        for (side, changed) in unsaved.iter_mut().enumerate() {
            for (key, rows) in &self.sides[side].index {
                for (row, _) in rows.iter() {
                    changed.insert((key.as_slice().into(), row.clone()));
                }
            }
        }
        self.unsaved = Some(unsaved);
    }

    /// One entry per stored row: the side, the join key and the row; its
    /// weight and match count.
    fn save_state(&mut self, out: &mut StateSink<'_>) -> Result<()> {
        let Some(unsaved) = &mut self.unsaved else {
            return Ok(());
        };
        let save = self.spilled.as_ref().map_or(0, Spilled::save);
        let mut value = Encoder::new();
        for (side, changed) in unsaved.iter_mut().enumerate() {
            let Side { index, hasher, .. } = &mut self.sides[side];
            for (key, row) in changed.drain() {
                let mut full = entry_prefix(side, &key);
                full.extend_from_slice(&row);
                let Some(rows) = index.get_mut(key.as_ref()) else {
                    out(&full, None);
                    continue;
                };
                match rows.get(hasher, &row) {
                    Some(entry) => {
                        value.clear();
                        value.i64(entry.weight).i64(entry.matches);
                        out(&full, Some(value.bytes()));
                    }
                    None => out(&full, None),
                }
                if let Some(spilled) = &mut self.spilled {
                    spilled.count(side, &key, rows, save);
                }
            }
        }
        if let Some(spilled) = &mut self.spilled {
            spilled.let_go(save, &mut self.sides);
        }
        Ok(())
    }

    fn spill(&mut self, spill: Spill) {
        self.spilled = Some(Spilled::new(spill));
    }

    /// Spilling, nothing: keys are read back when they come.
    fn entries_to_load(&self) -> Option<Vec<Vec<u8>>> {
        self.spilled.as_ref().map(|_| Vec::new())
    }

    fn load_state(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        let mut entry_key = Decoder::new(key);
        let side = entry_key.count()?;
        let join_key = entry_key.slice()?;
        let row = entry_key.rest();
        let (weight, matches) = decode_entry(value)?;
        let own = self.sides.get_mut(side).ok_or_else(crate::state::corrupt)?;
        let rows = own.index.entry_ref(join_key).or_default();
        rows.update(&own.hasher, row, weight, matches);
        if let Some(spilled) = &mut self.spilled {
            spilled.count(side, join_key, rows, 0);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
