//! One aggregate call and its state for every group, as columns.
//!
//! The state of a call is a vector (or a few) indexed by group id: counts,
//! sums, or for MIN/MAX and ordered STRING_AGG the multiset of values of each
//! group. A batch is applied one call at a time, in a tight loop over the
//! rows' group ids and effective weights. A row's effective weight is its
//! weight, or 0 where the value is NULL or the FILTER rejects it; for
//! DISTINCT calls it is ±1 exactly when a value's multiplicity in the group
//! crosses zero. Every accumulator is invertible, so deletions are exact.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, BooleanBuilder, Decimal128Array, Float64Array,
    Int64Array, Int64Builder, StringBuilder, UInt32Array,
};
use datafusion::arrow::compute::{cast, take, SortOptions};
use datafusion::arrow::datatypes::{DataType, Decimal128Type, Float64Type, Int64Type, SchemaRef};
use datafusion::arrow::row::Rows;
use eddy_common::row::RowCodec;
use hashbrown::HashMap;

use super::extreme::IntExtreme;
use super::groups::GroupId;
use super::{AggregateCall, AggregateFunction};
use crate::state::{Decoder, Encoder};
use crate::{ChangeBatch, Error, Result};

/// How a numeric call accumulates its input.
#[derive(Debug, Clone, Copy)]
enum Numeric {
    Int,
    Float,
    Decimal { scale: i8 },
}

/// Per-group state of one call, indexed by group id.
enum State {
    Count(Vec<i64>),
    /// Integer or decimal SUM/AVG: exact sums and the count of summed values.
    Sum {
        sums: Vec<i128>,
        counts: Vec<i64>,
    },
    FloatSum {
        sums: Vec<f64>,
        counts: Vec<i64>,
    },
    Bools {
        trues: Vec<i64>,
        falses: Vec<i64>,
    },
    /// MIN/MAX of integers (and of dates and times, as integers).
    IntExtreme(Vec<IntExtreme>),
    /// MIN/MAX of other types and STRING_AGG: the multiset of row-encoded
    /// values (ordered like the values, or like the call's ORDER BY).
    Multiset(Vec<BTreeMap<Box<[u8]>, i64>>),
}

/// One aggregate call with its state for every group.
pub(super) struct Call {
    pub(super) spec: AggregateCall,
    numeric: Option<Numeric>,
    /// Encodes the value (or the ORDER BY keys and the value) for multiset
    /// state and DISTINCT.
    codec: Option<RowCodec>,
    separator: Option<String>,
    state: State,
    /// For DISTINCT calls, each group's multiplicity of every value.
    distinct: Option<Vec<HashMap<Box<[u8]>, i64>>>,
}

/// The values of one batch as a call's accumulator reads them.
enum Values {
    Int(Int64Array),
    Float(Float64Array),
    Decimal(Decimal128Array),
    Bool(BooleanArray),
    /// `count`, and multiset state (which reads [`Input::encoded`]).
    None,
}

/// One batch as a call reads it.
struct Input {
    values: Values,
    /// The row-encoded values, for multiset state and DISTINCT.
    encoded: Option<Rows>,
    /// Each row's effective weight.
    weights: Vec<i64>,
}

impl Call {
    pub(super) fn new(spec: AggregateCall, input_schema: &SchemaRef) -> Result<Self> {
        use AggregateFunction as F;
        let value_type = match spec.args.first() {
            Some(arg) => arg.data_type(input_schema)?,
            None => DataType::Int64,
        };
        let numeric = match spec.function {
            F::Sum | F::Avg => Some(match &value_type {
                t if t.is_integer() => Numeric::Int,
                t if t.is_floating() => Numeric::Float,
                DataType::Decimal128(_, scale) => Numeric::Decimal { scale: *scale },
                DataType::Null => Numeric::Int,
                other => {
                    return Err(Error::not_supported(format!(
                        "{} over {other} in a materialized view",
                        spec.display
                    )))
                }
            }),
            // MIN/MAX of integers, dates and times keep their values as
            // integers: no encoding, no allocation per value.
            F::Min | F::Max if as_integer(&value_type) => Some(Numeric::Int),
            _ => None,
        };
        let state = match (spec.function, numeric) {
            (F::Count, _) => State::Count(Vec::new()),
            (F::Min | F::Max, Some(_)) => State::IntExtreme(Vec::new()),
            (_, Some(Numeric::Float)) => State::FloatSum {
                sums: Vec::new(),
                counts: Vec::new(),
            },
            (_, Some(_)) => State::Sum {
                sums: Vec::new(),
                counts: Vec::new(),
            },
            (F::BoolAnd | F::BoolOr, _) => State::Bools {
                trues: Vec::new(),
                falses: Vec::new(),
            },
            _ => State::Multiset(Vec::new()),
        };
        let codec = if matches!(state, State::Multiset(_)) || spec.distinct {
            let mut fields = Vec::new();
            if spec.function == F::StringAgg {
                for sort in &spec.order_by {
                    fields.push((sort.expr.data_type(input_schema)?, sort.options));
                }
            }
            fields.push((value_type, SortOptions::default()));
            Some(RowCodec::with_fields(fields)?)
        } else {
            None
        };
        let distinct = spec.distinct.then(Vec::new);
        Ok(Self {
            spec,
            numeric,
            codec,
            separator: None,
            state,
            distinct,
        })
    }

    /// Make room for `slots` groups; new slots hold empty state.
    pub(super) fn resize(&mut self, slots: usize) {
        match &mut self.state {
            State::Count(counts) => counts.resize(slots, 0),
            State::Sum { sums, counts } => {
                sums.resize(slots, 0);
                counts.resize(slots, 0);
            }
            State::FloatSum { sums, counts } => {
                sums.resize(slots, 0.0);
                counts.resize(slots, 0);
            }
            State::Bools { trues, falses } => {
                trues.resize(slots, 0);
                falses.resize(slots, 0);
            }
            State::IntExtreme(sets) => sets.resize_with(slots, IntExtreme::default),
            State::Multiset(sets) => sets.resize_with(slots, BTreeMap::new),
        }
        if let Some(distinct) = &mut self.distinct {
            distinct.resize_with(slots, HashMap::new);
        }
    }

    /// Empty the state of a group whose id is released. A group without
    /// rows holds nothing but floating-point rounding residue; clearing
    /// makes a reused id start from exactly nothing.
    pub(super) fn reset(&mut self, group: GroupId) {
        let g = group as usize;
        match &mut self.state {
            State::Count(counts) => counts[g] = 0,
            State::Sum { sums, counts } => {
                sums[g] = 0;
                counts[g] = 0;
            }
            State::FloatSum { sums, counts } => {
                sums[g] = 0.0;
                counts[g] = 0;
            }
            State::Bools { trues, falses } => {
                trues[g] = 0;
                falses[g] = 0;
            }
            State::IntExtreme(sets) => sets[g].clear(),
            State::Multiset(sets) => sets[g].clear(),
        }
        if let Some(distinct) = &mut self.distinct {
            distinct[g].clear();
        }
    }

    /// Append group `group`'s state to `out`.
    pub(super) fn save(&mut self, group: GroupId, out: &mut Encoder) {
        let g = group as usize;
        let maximum = self.spec.function == AggregateFunction::Max;
        match &mut self.state {
            State::Count(counts) => {
                out.i64(counts[g]);
            }
            State::Sum { sums, counts } => {
                out.i128(sums[g]).i64(counts[g]);
            }
            State::FloatSum { sums, counts } => {
                out.f64(sums[g]).i64(counts[g]);
            }
            State::Bools { trues, falses } => {
                out.i64(trues[g]).i64(falses[g]);
            }
            State::IntExtreme(sets) => {
                let entries = sets[g].entries(maximum);
                out.count(entries.len());
                for (value, weight) in entries {
                    out.i64(*value).i64(*weight);
                }
            }
            State::Multiset(sets) => save_counts(sets[g].iter(), sets[g].len(), out),
        }
        if let Some(distinct) = &self.distinct {
            save_counts(distinct[g].iter(), distinct[g].len(), out);
        }
    }

    /// Read group `group`'s state as [`Call::save`] wrote it.
    pub(super) fn load(&mut self, group: GroupId, input: &mut Decoder<'_>) -> Result<()> {
        let g = group as usize;
        let maximum = self.spec.function == AggregateFunction::Max;
        match &mut self.state {
            State::Count(counts) => counts[g] = input.i64()?,
            State::Sum { sums, counts } => {
                sums[g] = input.i128()?;
                counts[g] = input.i64()?;
            }
            State::FloatSum { sums, counts } => {
                sums[g] = input.f64()?;
                counts[g] = input.i64()?;
            }
            State::Bools { trues, falses } => {
                trues[g] = input.i64()?;
                falses[g] = input.i64()?;
            }
            State::IntExtreme(sets) => {
                let count = input.count()?;
                let mut entries = Vec::with_capacity(count.min(1 << 16));
                for _ in 0..count {
                    entries.push((input.i64()?, input.i64()?));
                }
                sets[g] = IntExtreme::from_entries(entries, maximum);
            }
            State::Multiset(sets) => {
                let count = input.count()?;
                for _ in 0..count {
                    let value = input.slice()?;
                    sets[g].insert(value.into(), input.i64()?);
                }
            }
        }
        if let Some(distinct) = &mut self.distinct {
            let count = input.count()?;
            for _ in 0..count {
                let value = input.slice()?;
                distinct[g].insert(value.into(), input.i64()?);
            }
        }
        Ok(())
    }

    /// Append what the call holds for all groups (STRING_AGG's separator)
    /// to `out`.
    pub(super) fn save_shared(&self, out: &mut Encoder) {
        match &self.separator {
            Some(separator) => out.i64(1).slice(separator.as_bytes()),
            None => out.i64(0),
        };
    }

    /// Read what [`Call::save_shared`] wrote.
    pub(super) fn load_shared(&mut self, input: &mut Decoder<'_>) -> Result<()> {
        self.separator = match input.i64()? {
            0 => None,
            _ => Some(
                String::from_utf8(input.slice()?.to_vec()).map_err(|_| crate::state::corrupt())?,
            ),
        };
        Ok(())
    }

    /// Apply a batch whose rows belong to `groups`.
    pub(super) fn update(&mut self, groups: &[GroupId], changes: &ChangeBatch) -> Result<()> {
        let Input {
            values,
            encoded,
            mut weights,
        } = self.prepare(changes)?;
        if let Some(distinct) = &mut self.distinct {
            let rows = encoded
                .as_ref()
                .ok_or_else(|| Error::internal("DISTINCT aggregate without encoded values"))?;
            for (row, weight) in weights.iter_mut().enumerate() {
                if *weight == 0 {
                    continue;
                }
                let seen = &mut distinct[groups[row] as usize];
                let key = rows.row(row).data();
                let before = seen.get(key).copied().unwrap_or(0);
                let after = before + *weight;
                if after == 0 {
                    seen.remove(key);
                } else if let Some(count) = seen.get_mut(key) {
                    *count = after;
                } else {
                    seen.insert(key.into(), after);
                }
                *weight = match (before > 0, after > 0) {
                    (false, true) => 1,
                    (true, false) => -1,
                    _ => 0,
                };
            }
        }
        let weights = weights.as_slice();
        match (&mut self.state, &values) {
            (State::Count(counts), _) => {
                for (g, w) in groups.iter().zip(weights) {
                    counts[*g as usize] += w;
                }
            }
            (State::Sum { sums, counts }, Values::Int(values)) => {
                for ((g, w), v) in groups.iter().zip(weights).zip(values.values()) {
                    sums[*g as usize] += *v as i128 * *w as i128;
                    counts[*g as usize] += w;
                }
            }
            (State::Sum { sums, counts }, Values::Decimal(values)) => {
                for ((g, w), v) in groups.iter().zip(weights).zip(values.values()) {
                    sums[*g as usize] += v * *w as i128;
                    counts[*g as usize] += w;
                }
            }
            (State::FloatSum { sums, counts }, Values::Float(values)) => {
                for ((g, w), v) in groups.iter().zip(weights).zip(values.values()) {
                    // Skipped rows may hold NaN or infinity: never multiply.
                    if *w != 0 {
                        let g = *g as usize;
                        sums[g] += v * *w as f64;
                        counts[g] += w;
                        if counts[g] == 0 {
                            // Forget rounding residue once the group holds
                            // no values.
                            sums[g] = 0.0;
                        }
                    }
                }
            }
            (State::Bools { trues, falses }, Values::Bool(values)) => {
                for (row, (g, w)) in groups.iter().zip(weights).enumerate() {
                    if values.value(row) {
                        trues[*g as usize] += w;
                    } else {
                        falses[*g as usize] += w;
                    }
                }
            }
            (State::IntExtreme(sets), Values::Int(values)) => {
                let maximum = self.spec.function == AggregateFunction::Max;
                for ((g, w), v) in groups.iter().zip(weights).zip(values.values()) {
                    if *w != 0 {
                        sets[*g as usize].add(*v, *w, maximum);
                    }
                }
            }
            (State::Multiset(sets), _) => {
                let rows = encoded
                    .as_ref()
                    .ok_or_else(|| Error::internal("multiset aggregate without encoded values"))?;
                for (row, (g, w)) in groups.iter().zip(weights).enumerate() {
                    if *w == 0 {
                        continue;
                    }
                    let set = &mut sets[*g as usize];
                    let key = rows.row(row).data();
                    let count = match set.get_mut(key) {
                        Some(count) => {
                            *count += w;
                            *count
                        }
                        None => {
                            set.insert(key.into(), *w);
                            *w
                        }
                    };
                    if count == 0 {
                        set.remove(key);
                    }
                }
            }
            _ => return Err(Error::internal("aggregate state does not fit its input")),
        }
        Ok(())
    }

    /// The values of a batch and each row's effective weight (0 where the
    /// value is NULL or the FILTER rejects the row).
    fn prepare(&mut self, changes: &ChangeBatch) -> Result<Input> {
        let data = changes.data();
        let rows = changes.num_rows();
        let mut weights = changes.weights().to_vec();
        let Some(arg) = self.spec.args.first() else {
            // count(*): every row counts, unless filtered.
            self.apply_filter(changes, &mut weights)?;
            return Ok(Input {
                values: Values::None,
                encoded: None,
                weights,
            });
        };
        let values = arg.evaluate(data)?.into_array(rows)?;
        if let Some(nulls) = values.logical_nulls() {
            for (weight, valid) in weights.iter_mut().zip(nulls.iter()) {
                if !valid {
                    *weight = 0;
                }
            }
        }
        self.apply_filter(changes, &mut weights)?;
        if self.spec.function == AggregateFunction::StringAgg && self.separator.is_none() {
            if let Some(separator) = self.spec.args.get(1) {
                let separator = separator.evaluate(data)?.into_array(rows)?;
                let separator = cast(&separator, &DataType::Utf8)?;
                let separator = separator.as_string::<i32>();
                if let Some(index) = (0..separator.len()).find(|i| separator.is_valid(*i)) {
                    self.separator = Some(separator.value(index).to_string());
                }
            }
        }
        let encoded = match &self.codec {
            Some(codec) => {
                let mut columns = Vec::new();
                if self.spec.function == AggregateFunction::StringAgg {
                    for sort in &self.spec.order_by {
                        columns.push(sort.expr.evaluate(data)?.into_array(rows)?);
                    }
                }
                columns.push(values.clone());
                Some(codec.encode(&columns)?)
            }
            None => None,
        };
        let values = match (&self.state, self.numeric) {
            (State::Bools { .. }, _) => Values::Bool(
                values
                    .as_boolean_opt()
                    .cloned()
                    .ok_or_else(|| Error::internal("bool_and/bool_or over a non-boolean"))?,
            ),
            (_, Some(Numeric::Int)) => Values::Int(
                cast(&values, &DataType::Int64)?
                    .as_primitive::<Int64Type>()
                    .clone(),
            ),
            (_, Some(Numeric::Float)) => Values::Float(
                cast(&values, &DataType::Float64)?
                    .as_primitive::<Float64Type>()
                    .clone(),
            ),
            (_, Some(Numeric::Decimal { .. })) => {
                Values::Decimal(values.as_primitive::<Decimal128Type>().clone())
            }
            _ => Values::None,
        };
        Ok(Input {
            values,
            encoded,
            weights,
        })
    }

    /// Zero the weight of rows the call's FILTER rejects.
    fn apply_filter(&self, changes: &ChangeBatch, weights: &mut [i64]) -> Result<()> {
        let Some(filter) = &self.spec.filter else {
            return Ok(());
        };
        let mask = filter
            .evaluate(changes.data())?
            .into_array(changes.num_rows())?;
        let mask = mask
            .as_boolean_opt()
            .ok_or_else(|| Error::internal("aggregate FILTER is not boolean"))?;
        for (row, weight) in weights.iter_mut().enumerate() {
            if !mask.is_valid(row) || !mask.value(row) {
                *weight = 0;
            }
        }
        Ok(())
    }

    /// The call's current result for each of `groups`, as one array of the
    /// call's output type.
    pub(super) fn results(&mut self, groups: &[GroupId]) -> Result<ArrayRef> {
        use AggregateFunction as F;
        let ids = groups.iter().map(|g| *g as usize);
        if let State::IntExtreme(sets) = &mut self.state {
            let maximum = self.spec.function == F::Max;
            let extremes: Int64Array = ids.map(|g| sets[g].extreme(maximum)).collect();
            let extremes: ArrayRef = Arc::new(extremes);
            return Ok(cast(&extremes, &self.spec.output_type)?);
        }
        let array: ArrayRef = match (&self.state, self.spec.function) {
            (State::Count(counts), _) => Arc::new(ids.map(|g| counts[g]).collect::<Int64Array>()),
            (State::Sum { sums, counts }, F::Sum) => match self.numeric {
                Some(Numeric::Decimal { scale }) => Arc::new(
                    ids.map(|g| (counts[g] != 0).then_some(sums[g]))
                        .collect::<Decimal128Array>()
                        .with_precision_and_scale(38, scale)?,
                ),
                _ => {
                    let mut out = Int64Builder::with_capacity(groups.len());
                    for g in ids {
                        if counts[g] == 0 {
                            out.append_null();
                        } else {
                            out.append_value(i64::try_from(sums[g]).map_err(|_| Error::Data {
                                code: "22003",
                                message: "bigint out of range".into(),
                            })?);
                        }
                    }
                    Arc::new(out.finish())
                }
            },
            (State::Sum { sums, counts }, _) => match (self.numeric, &self.spec.output_type) {
                (Some(Numeric::Decimal { scale }), DataType::Decimal128(precision, out_scale)) => {
                    let shift = 10i128.pow((*out_scale - scale).max(0) as u32);
                    Arc::new(
                        ids.map(|g| (counts[g] != 0).then(|| sums[g] * shift / counts[g] as i128))
                            .collect::<Decimal128Array>()
                            .with_precision_and_scale(*precision, *out_scale)?,
                    )
                }
                _ => Arc::new(
                    ids.map(|g| (counts[g] != 0).then(|| sums[g] as f64 / counts[g] as f64))
                        .collect::<Float64Array>(),
                ),
            },
            (State::FloatSum { sums, counts }, function) => Arc::new(
                ids.map(|g| {
                    (counts[g] != 0).then(|| {
                        if function == F::Avg {
                            sums[g] / counts[g] as f64
                        } else {
                            sums[g]
                        }
                    })
                })
                .collect::<Float64Array>(),
            ),
            (State::Bools { trues, falses }, function) => {
                let mut out = BooleanBuilder::with_capacity(groups.len());
                for g in ids {
                    if trues[g] + falses[g] == 0 {
                        out.append_null();
                    } else if function == F::BoolAnd {
                        out.append_value(falses[g] == 0);
                    } else {
                        out.append_value(trues[g] > 0);
                    }
                }
                Arc::new(out.finish())
            }
            (State::IntExtreme(_), _) => {
                return Err(Error::internal("integer extremes are computed above"))
            }
            (State::Multiset(sets), F::StringAgg) => self.string_agg(sets, groups)?,
            (State::Multiset(sets), function) => {
                let codec = self.codec()?;
                let extremes: Vec<Option<&[u8]>> = ids
                    .map(|g| {
                        let set = &sets[g];
                        let key = if function == F::Min {
                            set.keys().next()
                        } else {
                            set.keys().next_back()
                        };
                        key.map(|k| k.as_ref())
                    })
                    .collect();
                let present = codec.decode(extremes.iter().flatten().copied())?;
                let mut next = 0u32;
                let indices: UInt32Array = extremes
                    .iter()
                    .map(|e| {
                        e.map(|_| {
                            next += 1;
                            next - 1
                        })
                    })
                    .collect();
                let value = present
                    .last()
                    .ok_or_else(|| Error::internal("min/max without a value column"))?;
                take(value, &indices, None)?
            }
        };
        if array.data_type() == &self.spec.output_type {
            Ok(array)
        } else {
            Ok(cast(&array, &self.spec.output_type)?)
        }
    }

    fn string_agg(
        &self,
        sets: &[BTreeMap<Box<[u8]>, i64>],
        groups: &[GroupId],
    ) -> Result<ArrayRef> {
        let codec = self.codec()?;
        let separator = self.separator.as_deref().unwrap_or("");
        let mut out = StringBuilder::new();
        for g in groups {
            let set = &sets[*g as usize];
            if set.is_empty() {
                out.append_null();
                continue;
            }
            let columns = codec.decode(set.keys().map(|k| k.as_ref()))?;
            let strings = columns
                .last()
                .ok_or_else(|| Error::internal("string_agg without a value column"))?;
            let strings = cast(strings, &DataType::Utf8)?;
            let strings = strings.as_string::<i32>();
            let mut text = String::new();
            let mut first = true;
            for (index, count) in set.values().enumerate() {
                for _ in 0..*count {
                    if !first {
                        text.push_str(separator);
                    }
                    first = false;
                    text.push_str(strings.value(index));
                }
            }
            out.append_value(text);
        }
        Ok(Arc::new(out.finish()))
    }

    fn codec(&self) -> Result<&RowCodec> {
        self.codec
            .as_ref()
            .ok_or_else(|| Error::internal("multiset aggregate without a codec"))
    }
}

/// Append a multiset of encoded values to `out`.
fn save_counts<'a, K: AsRef<[u8]> + 'a>(
    entries: impl Iterator<Item = (&'a K, &'a i64)>,
    count: usize,
    out: &mut Encoder,
) {
    out.count(count);
    for (value, weight) in entries {
        out.slice(value.as_ref()).i64(*weight);
    }
}

/// Types whose MIN/MAX is kept as `i64`: integers (but `UInt64`, which may
/// not fit), dates, times, timestamps and durations, which cast to and from
/// `i64` exactly.
fn as_integer(data_type: &DataType) -> bool {
    match data_type {
        DataType::UInt64 => false,
        t if t.is_integer() => true,
        DataType::Date32
        | DataType::Date64
        | DataType::Time32(_)
        | DataType::Time64(_)
        | DataType::Timestamp(_, _)
        | DataType::Duration(_) => true,
        _ => false,
    }
}
