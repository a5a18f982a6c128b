//! [`ChangeBatch`]: an Arrow batch plus one signed weight per row. A weight of
//! +n inserts n copies of the row, -n deletes n copies; an update is a delete
//! and an insert. A collection of such changes is a Z-set (DBSP).

use datafusion::arrow::array::{Array, BooleanArray, Int64Array, RecordBatch};
use datafusion::arrow::compute::{concat_batches, filter_record_batch, take_record_batch};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::row::{RowConverter, SortField};

use crate::{Error, Result};

/// A batch of changes: `data` holds the rows, `weights` their multiplicities.
#[derive(Debug, Clone)]
pub struct ChangeBatch {
    data: RecordBatch,
    weights: Int64Array,
}

impl ChangeBatch {
    /// Rows with their weights. The two must have the same length.
    pub fn new(data: RecordBatch, weights: Int64Array) -> Result<Self> {
        if data.num_rows() != weights.len() {
            return Err(Error::internal(format!(
                "change batch has {} rows but {} weights",
                data.num_rows(),
                weights.len()
            )));
        }
        Ok(Self { data, weights })
    }

    /// Every row inserted once.
    pub fn inserts(data: RecordBatch) -> Self {
        let weights = Int64Array::from_value(1, data.num_rows());
        Self { data, weights }
    }

    /// Every row deleted once.
    pub fn deletes(data: RecordBatch) -> Self {
        let weights = Int64Array::from_value(-1, data.num_rows());
        Self { data, weights }
    }

    /// No changes.
    pub fn empty(schema: SchemaRef) -> Self {
        Self::inserts(RecordBatch::new_empty(schema))
    }

    /// The rows.
    pub fn data(&self) -> &RecordBatch {
        &self.data
    }

    /// The weights, one per row.
    pub fn weights(&self) -> &[i64] {
        self.weights.values()
    }

    /// The schema of the rows.
    pub fn schema(&self) -> SchemaRef {
        self.data.schema()
    }

    /// Number of rows (not the sum of weights).
    pub fn num_rows(&self) -> usize {
        self.data.num_rows()
    }

    /// True when there are no rows.
    pub fn is_empty(&self) -> bool {
        self.data.num_rows() == 0
    }

    /// Same weights, other columns (a projection of the same rows).
    pub fn with_data(&self, data: RecordBatch) -> Result<Self> {
        Self::new(data, self.weights.clone())
    }

    /// Keep the rows where `mask` is true (NULL counts as false).
    pub fn filter(&self, mask: &BooleanArray) -> Result<Self> {
        let data = filter_record_batch(&self.data, mask)?;
        let weights = datafusion::arrow::compute::filter(&self.weights, mask)?;
        let weights = weights
            .as_any()
            .downcast_ref::<Int64Array>()
            .cloned()
            .ok_or_else(|| Error::internal("filtered weights are not Int64"))?;
        Ok(Self { data, weights })
    }

    /// The rows at `indices`, in that order.
    pub fn take(&self, indices: &datafusion::arrow::array::UInt32Array) -> Result<Self> {
        let data = take_record_batch(&self.data, indices)?;
        let weights = datafusion::arrow::compute::take(&self.weights, indices, None)?;
        let weights = weights
            .as_any()
            .downcast_ref::<Int64Array>()
            .cloned()
            .ok_or_else(|| Error::internal("taken weights are not Int64"))?;
        Ok(Self { data, weights })
    }

    /// All batches one after the other, as one batch of `schema`.
    pub fn concat(schema: &SchemaRef, batches: &[ChangeBatch]) -> Result<Self> {
        match batches {
            [] => return Ok(Self::empty(schema.clone())),
            [one] => return Ok(one.clone()),
            _ => {}
        }
        let data = concat_batches(schema, batches.iter().map(|b| &b.data))?;
        let weights: Int64Array = batches
            .iter()
            .flat_map(|b| b.weights.values().iter().copied())
            .collect();
        Ok(Self { data, weights })
    }

    /// Sum the weights of equal rows and drop rows whose weight is zero. The
    /// result holds each distinct row once, in an unspecified order.
    pub fn consolidate(&self) -> Result<Self> {
        if self.is_empty() {
            return Ok(self.clone());
        }
        let fields = self
            .data
            .schema()
            .fields()
            .iter()
            .map(|f| SortField::new(f.data_type().clone()))
            .collect();
        let converter = RowConverter::new(fields)?;
        let rows = converter.convert_columns(self.data.columns())?;
        let mut first_index: hashbrown::HashMap<&[u8], usize> =
            hashbrown::HashMap::with_capacity(rows.num_rows());
        let mut order: Vec<u32> = Vec::new();
        let mut sums: Vec<i64> = Vec::new();
        for (index, (row, weight)) in rows.iter().zip(self.weights()).enumerate() {
            match first_index.entry(row.data()) {
                hashbrown::hash_map::Entry::Occupied(slot) => sums[*slot.get()] += weight,
                hashbrown::hash_map::Entry::Vacant(slot) => {
                    slot.insert(order.len());
                    order.push(index as u32);
                    sums.push(*weight);
                }
            }
        }
        let keep: Vec<u32> = order
            .iter()
            .zip(&sums)
            .filter(|(_, sum)| **sum != 0)
            .map(|(index, _)| *index)
            .collect();
        let weights: Int64Array = sums.into_iter().filter(|sum| *sum != 0).collect();
        let indices = datafusion::arrow::array::UInt32Array::from(keep);
        let data = take_record_batch(&self.data, &indices)?;
        Ok(Self { data, weights })
    }

    /// Expand weights into repeated rows; fails on a negative weight. Used
    /// where a consolidated collection is turned back into a plain batch.
    pub fn to_multiset_batch(&self) -> Result<RecordBatch> {
        if self.weights().iter().all(|w| *w == 1) {
            return Ok(self.data.clone());
        }
        let mut indices: Vec<u32> = Vec::with_capacity(self.num_rows());
        for (index, weight) in self.weights().iter().enumerate() {
            if *weight < 0 {
                return Err(Error::internal("negative multiplicity in a collection"));
            }
            indices.extend(std::iter::repeat_n(index as u32, *weight as usize));
        }
        let indices = datafusion::arrow::array::UInt32Array::from(indices);
        Ok(take_record_batch(&self.data, &indices)?)
    }
}
