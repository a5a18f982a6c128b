//! Grouped and global aggregation, maintained under insertions and deletions.
//!
//! Each group keeps the count of its rows and one accumulator per aggregate
//! call. Accumulators are invertible: sums and counts add weights; MIN, MAX
//! and ordered STRING_AGG keep the multiset of their values (keyed by the
//! row encoding, which sorts like the values), so deleting the current
//! extreme reveals the next one. DISTINCT calls feed their accumulator only
//! when a value's multiplicity crosses zero. At a barrier the operator emits,
//! for each group touched in the epoch, the retraction of the row it emitted
//! before and the insertion of the new one.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Decimal128Array, Float64Array, Int64Array,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::compute::SortOptions;
use datafusion::arrow::datatypes::{DataType, Decimal128Type, Float64Type, Int64Type, SchemaRef};
use datafusion::arrow::row::Rows;
use datafusion::physical_expr::{PhysicalExpr, PhysicalSortExpr};
use datafusion::scalar::ScalarValue;
use eddy_common::row::RowCodec;
use hashbrown::HashMap;

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

/// How a call's input is accumulated.
#[derive(Debug, Clone, Copy)]
enum Numeric {
    Int,
    Float,
    Decimal { scale: i8 },
}

struct Call {
    spec: AggregateCall,
    numeric: Option<Numeric>,
    /// Encodes the value (or the ORDER BY keys and the value) for multiset
    /// accumulators and DISTINCT.
    codec: Option<RowCodec>,
    separator: Option<String>,
}

enum Accumulator {
    Count(i64),
    Sum { sum: i128, count: i64 },
    FloatSum { sum: f64, count: i64 },
    Multiset(BTreeMap<Box<[u8]>, i64>),
    IntMultiset(BTreeMap<i64, i64>),
    Bools { trues: i64, falses: i64 },
}

struct Group {
    key: Box<[u8]>,
    rows: i64,
    accumulators: Vec<Accumulator>,
    distinct: Vec<Option<HashMap<Box<[u8]>, i64>>>,
    emitted: Option<Vec<ScalarValue>>,
    dirty: bool,
}

/// Incremental GROUP BY (or a global aggregate when there are no keys).
pub struct AggregateOperator {
    group_exprs: Vec<Arc<dyn PhysicalExpr>>,
    group_codec: Option<RowCodec>,
    calls: Vec<Call>,
    index: HashMap<Box<[u8]>, usize>,
    groups: Vec<Option<Group>>,
    free: Vec<usize>,
    dirty: Vec<usize>,
    schema: SchemaRef,
}

/// Per-batch inputs of one call.
struct CallInput {
    values: ArrayRef,
    mask: Option<BooleanArray>,
    numeric: Option<NumericValues>,
    rows: Option<Rows>,
}

enum NumericValues {
    Int(Int64Array),
    Float(Float64Array),
    Decimal(Decimal128Array),
}

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
        let group_codec = if group_exprs.is_empty() {
            None
        } else {
            Some(RowCodec::new(group_types)?)
        };
        let calls = calls
            .into_iter()
            .map(|spec| Call::new(spec, input_schema))
            .collect::<Result<Vec<_>>>()?;
        let mut operator = Self {
            group_exprs,
            group_codec,
            calls,
            index: HashMap::new(),
            groups: Vec::new(),
            free: Vec::new(),
            dirty: Vec::new(),
            schema,
        };
        if operator.group_codec.is_none() {
            // The global group exists, and is emitted, even with no input.
            let group = operator.group_for(&[])?;
            operator.mark_dirty(group);
        }
        Ok(operator)
    }

    fn group_for(&mut self, key: &[u8]) -> Result<usize> {
        if let Some(index) = self.index.get(key) {
            return Ok(*index);
        }
        let group = Group {
            key: key.into(),
            rows: 0,
            accumulators: self.calls.iter().map(Call::empty_accumulator).collect(),
            distinct: self
                .calls
                .iter()
                .map(|c| c.spec.distinct.then(HashMap::new))
                .collect(),
            emitted: None,
            dirty: false,
        };
        let index = match self.free.pop() {
            Some(index) => {
                self.groups[index] = Some(group);
                index
            }
            None => {
                self.groups.push(Some(group));
                self.groups.len() - 1
            }
        };
        self.index.insert(key.into(), index);
        Ok(index)
    }

    fn mark_dirty(&mut self, index: usize) {
        if let Some(group) = self.groups[index].as_mut() {
            if !group.dirty {
                group.dirty = true;
                self.dirty.push(index);
            }
        }
    }

    fn group_ids(&mut self, changes: &ChangeBatch) -> Result<Vec<usize>> {
        let Some(codec) = &self.group_codec else {
            return Ok(vec![0; changes.num_rows()]);
        };
        let columns = self
            .group_exprs
            .iter()
            .map(|e| e.evaluate(changes.data())?.into_array(changes.num_rows()))
            .collect::<datafusion::error::Result<Vec<_>>>()?;
        let columns = columns
            .iter()
            .zip(codec.types())
            .map(|(c, t)| cast_to(c, t))
            .collect::<Result<Vec<_>>>()?;
        let keys = codec.encode(&columns)?;
        keys.iter().map(|key| self.group_for(key.data())).collect()
    }
}

impl Call {
    fn new(spec: AggregateCall, input_schema: &SchemaRef) -> Result<Self> {
        let value_type = match spec.args.first() {
            Some(arg) => arg.data_type(input_schema)?,
            None => DataType::Int64,
        };
        let numeric = match spec.function {
            AggregateFunction::Sum | AggregateFunction::Avg => Some(match &value_type {
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
            // MIN/MAX of integers keep their multiset as integers: no
            // encoding, no allocation per value.
            AggregateFunction::Min | AggregateFunction::Max
                if value_type.is_integer() && value_type != DataType::UInt64 =>
            {
                Some(Numeric::Int)
            }
            _ => None,
        };
        let multiset = match spec.function {
            AggregateFunction::Min | AggregateFunction::Max => numeric.is_none(),
            AggregateFunction::StringAgg => true,
            _ => false,
        };
        let codec = if multiset || spec.distinct {
            let mut fields = Vec::new();
            if spec.function == AggregateFunction::StringAgg {
                for sort in &spec.order_by {
                    fields.push((sort.expr.data_type(input_schema)?, sort.options));
                }
            }
            fields.push((value_type, SortOptions::default()));
            Some(RowCodec::with_fields(fields)?)
        } else {
            None
        };
        Ok(Self {
            spec,
            numeric,
            codec,
            separator: None,
        })
    }

    fn empty_accumulator(&self) -> Accumulator {
        match (self.spec.function, self.numeric) {
            (AggregateFunction::Count, _) => Accumulator::Count(0),
            (AggregateFunction::Min | AggregateFunction::Max, Some(_)) => {
                Accumulator::IntMultiset(BTreeMap::new())
            }
            (_, Some(Numeric::Float)) => Accumulator::FloatSum { sum: 0.0, count: 0 },
            (_, Some(_)) => Accumulator::Sum { sum: 0, count: 0 },
            (AggregateFunction::BoolAnd | AggregateFunction::BoolOr, _) => Accumulator::Bools {
                trues: 0,
                falses: 0,
            },
            _ => Accumulator::Multiset(BTreeMap::new()),
        }
    }

    fn prepare(&mut self, changes: &ChangeBatch) -> Result<CallInput> {
        let data = changes.data();
        let rows = changes.num_rows();
        let values = match self.spec.args.first() {
            Some(arg) => arg.evaluate(data)?.into_array(rows)?,
            None => Arc::new(Int64Array::from_value(1, rows)),
        };
        let mask = match &self.spec.filter {
            Some(filter) => Some(
                filter
                    .evaluate(data)?
                    .into_array(rows)?
                    .as_boolean_opt()
                    .cloned()
                    .ok_or_else(|| Error::internal("aggregate FILTER is not boolean"))?,
            ),
            None => None,
        };
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
        let numeric = match self.numeric {
            Some(Numeric::Int) => Some(NumericValues::Int(
                cast(&values, &DataType::Int64)?
                    .as_primitive::<Int64Type>()
                    .clone(),
            )),
            Some(Numeric::Float) => Some(NumericValues::Float(
                cast(&values, &DataType::Float64)?
                    .as_primitive::<Float64Type>()
                    .clone(),
            )),
            Some(Numeric::Decimal { .. }) => Some(NumericValues::Decimal(
                values.as_primitive::<Decimal128Type>().clone(),
            )),
            None => None,
        };
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
        Ok(CallInput {
            values,
            mask,
            numeric,
            rows: encoded,
        })
    }

    /// The call's current result for a group.
    fn result(&self, accumulator: &Accumulator) -> Result<ScalarValue> {
        use AggregateFunction as F;
        let value = match (self.spec.function, accumulator) {
            (F::Count, Accumulator::Count(n)) => ScalarValue::Int64(Some(*n)),
            (_, Accumulator::Sum { count: 0, .. } | Accumulator::FloatSum { count: 0, .. }) => {
                ScalarValue::Null
            }
            (F::Sum, Accumulator::Sum { sum, .. }) => match self.numeric {
                Some(Numeric::Decimal { scale }) => ScalarValue::Decimal128(Some(*sum), 38, scale),
                _ => ScalarValue::Int64(Some(i64::try_from(*sum).map_err(|_| Error::Data {
                    code: "22003",
                    message: "bigint out of range".into(),
                })?)),
            },
            (F::Sum, Accumulator::FloatSum { sum, .. }) => ScalarValue::Float64(Some(*sum)),
            (F::Avg, Accumulator::FloatSum { sum, count }) => {
                ScalarValue::Float64(Some(sum / *count as f64))
            }
            (F::Avg, Accumulator::Sum { sum, count }) => {
                match (self.numeric, &self.spec.output_type) {
                    (
                        Some(Numeric::Decimal { scale }),
                        DataType::Decimal128(precision, out_scale),
                    ) => {
                        let shift = 10i128.pow((*out_scale - scale).max(0) as u32);
                        ScalarValue::Decimal128(
                            Some(sum * shift / *count as i128),
                            *precision,
                            *out_scale,
                        )
                    }
                    _ => ScalarValue::Float64(Some(*sum as f64 / *count as f64)),
                }
            }
            (F::BoolAnd | F::BoolOr, Accumulator::Bools { trues, falses }) => {
                if trues + falses == 0 {
                    ScalarValue::Null
                } else if self.spec.function == F::BoolAnd {
                    ScalarValue::Boolean(Some(*falses == 0))
                } else {
                    ScalarValue::Boolean(Some(*trues > 0))
                }
            }
            (F::Min | F::Max, Accumulator::Multiset(values)) => {
                let extreme = if self.spec.function == F::Min {
                    values.keys().next()
                } else {
                    values.keys().next_back()
                };
                match (extreme, &self.codec) {
                    (Some(bytes), Some(codec)) => {
                        let columns = codec.decode([bytes.as_ref()])?;
                        ScalarValue::try_from_array(&columns[0], 0)?
                    }
                    _ => ScalarValue::Null,
                }
            }
            (F::Min, Accumulator::IntMultiset(values)) => {
                ScalarValue::Int64(values.keys().next().copied())
            }
            (F::Max, Accumulator::IntMultiset(values)) => {
                ScalarValue::Int64(values.keys().next_back().copied())
            }
            (F::StringAgg, Accumulator::Multiset(values)) => match &self.codec {
                Some(codec) if !values.is_empty() => {
                    let columns = codec.decode(values.keys().map(|k| k.as_ref()))?;
                    let Some(strings) = columns.last() else {
                        return Err(Error::internal("string_agg without a value column"));
                    };
                    let strings = cast(strings, &DataType::Utf8)?;
                    let strings = strings.as_string::<i32>();
                    let separator = self.separator.as_deref().unwrap_or("");
                    let mut text = String::new();
                    let mut first = true;
                    for (index, count) in values.values().enumerate() {
                        for _ in 0..*count {
                            if !first {
                                text.push_str(separator);
                            }
                            first = false;
                            text.push_str(strings.value(index));
                        }
                    }
                    ScalarValue::Utf8(Some(text))
                }
                _ => ScalarValue::Null,
            },
            _ => return Err(Error::internal("aggregate state does not fit its function")),
        };
        Ok(value.cast_to(&self.spec.output_type)?)
    }
}

/// Apply one weighted value to an accumulator.
fn accumulate(
    accumulator: &mut Accumulator,
    input: &CallInput,
    row: usize,
    weight: i64,
) -> Result<()> {
    match accumulator {
        Accumulator::Count(n) => *n += weight,
        Accumulator::Sum { sum, count } => {
            let value = match &input.numeric {
                Some(NumericValues::Int(values)) => values.value(row) as i128,
                Some(NumericValues::Decimal(values)) => values.value(row),
                _ => return Err(Error::internal("integer sum without integer input")),
            };
            *sum += value * weight as i128;
            *count += weight;
        }
        Accumulator::FloatSum { sum, count } => {
            let Some(NumericValues::Float(values)) = &input.numeric else {
                return Err(Error::internal("float sum without float input"));
            };
            *sum += values.value(row) * weight as f64;
            *count += weight;
            if *count == 0 {
                // Forget rounding residue once the group holds no values.
                *sum = 0.0;
            }
        }
        Accumulator::Bools { trues, falses } => {
            let values = input
                .values
                .as_boolean_opt()
                .ok_or_else(|| Error::internal("bool_and/bool_or over a non-boolean"))?;
            if values.value(row) {
                *trues += weight;
            } else {
                *falses += weight;
            }
        }
        Accumulator::IntMultiset(values) => {
            let Some(NumericValues::Int(numbers)) = &input.numeric else {
                return Err(Error::internal("integer min/max without integer input"));
            };
            let value = numbers.value(row);
            let count = values.entry(value).or_insert(0);
            *count += weight;
            if *count == 0 {
                values.remove(&value);
            }
        }
        Accumulator::Multiset(values) => {
            let Some(rows) = &input.rows else {
                return Err(Error::internal("multiset aggregate without encoded values"));
            };
            let key = rows.row(row).data();
            let count = match values.get_mut(key) {
                Some(count) => {
                    *count += weight;
                    *count
                }
                None => {
                    values.insert(key.into(), weight);
                    weight
                }
            };
            if count == 0 {
                values.remove(key);
            }
        }
    }
    Ok(())
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
        let group_ids = self.group_ids(&changes)?;
        let weights = changes.weights();
        let inputs = self
            .calls
            .iter_mut()
            .map(|call| call.prepare(&changes))
            .collect::<Result<Vec<_>>>()?;
        // One pass over the rows, touching each row's group once: with many
        // groups, memory access to group state is the dominant cost.
        for (row, (group, weight)) in group_ids.iter().zip(weights).enumerate() {
            let Some(state) = self.groups[*group].as_mut() else {
                return Err(Error::internal("aggregate group vanished"));
            };
            state.rows += weight;
            if !state.dirty {
                state.dirty = true;
                self.dirty.push(*group);
            }
            for (call_index, input) in inputs.iter().enumerate() {
                if input.values.is_null(row)
                    || input
                        .mask
                        .as_ref()
                        .is_some_and(|m| !m.is_valid(row) || !m.value(row))
                {
                    continue;
                }
                let mut weight = *weight;
                if let (Some(seen), Some(rows)) = (&mut state.distinct[call_index], &input.rows) {
                    let key = rows.row(row).data();
                    let before = seen.get(key).copied().unwrap_or(0);
                    let after = before + weight;
                    if after == 0 {
                        seen.remove(key);
                    } else {
                        seen.insert(key.into(), after);
                    }
                    weight = match (before > 0, after > 0) {
                        (false, true) => 1,
                        (true, false) => -1,
                        _ => continue,
                    };
                }
                accumulate(&mut state.accumulators[call_index], input, row, weight)?;
            }
        }
        Ok(())
    }

    fn on_barrier(&mut self, out: &mut Vec<ChangeBatch>) -> Result<()> {
        if self.dirty.is_empty() {
            return Ok(());
        }
        let global = self.group_codec.is_none();
        let mut keys: Vec<Box<[u8]>> = Vec::new();
        let mut values: Vec<Vec<ScalarValue>> = vec![Vec::new(); self.calls.len()];
        let mut weights: Vec<i64> = Vec::new();
        for index in std::mem::take(&mut self.dirty) {
            let Some(group) = self.groups[index].as_mut() else {
                continue;
            };
            group.dirty = false;
            let alive = global || group.rows > 0;
            let new = if alive {
                Some(
                    self.calls
                        .iter()
                        .zip(&group.accumulators)
                        .map(|(call, acc)| call.result(acc))
                        .collect::<Result<Vec<_>>>()?,
                )
            } else {
                None
            };
            if new != group.emitted {
                if let Some(old) = group.emitted.take() {
                    keys.push(group.key.clone());
                    old.into_iter()
                        .zip(values.iter_mut())
                        .for_each(|(v, c)| c.push(v));
                    weights.push(-1);
                }
                if let Some(new) = new {
                    keys.push(group.key.clone());
                    new.iter()
                        .zip(values.iter_mut())
                        .for_each(|(v, c)| c.push(v.clone()));
                    weights.push(1);
                    group.emitted = Some(new);
                }
            }
            if !alive && group.rows == 0 {
                let key = group.key.clone();
                self.index.remove(&key);
                self.groups[index] = None;
                self.free.push(index);
            }
        }
        if weights.is_empty() {
            return Ok(());
        }
        let mut columns = match &self.group_codec {
            Some(codec) => codec.decode(keys.iter().map(|k| k.as_ref()))?,
            None => Vec::new(),
        };
        for (call, column) in self.calls.iter().zip(values) {
            let column = if column.is_empty() {
                datafusion::arrow::array::new_empty_array(&call.spec.output_type)
            } else {
                ScalarValue::iter_to_array(column)?
            };
            columns.push(cast_to(&column, &call.spec.output_type)?);
        }
        let rows = weights.len();
        let data = schema::batch(&self.schema, columns, rows)?;
        out.push(ChangeBatch::new(data, Int64Array::from(weights))?);
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
