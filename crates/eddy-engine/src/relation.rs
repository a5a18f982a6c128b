//! The contents of a table or materialized view: a multiset of rows.

use std::sync::{Arc, OnceLock};

use datafusion::arrow::array::{Int64Array, RecordBatch};
use datafusion::arrow::datatypes::SchemaRef;
use eddy_common::row::RowCodec;
use eddy_common::{ChangeBatch, Error, Result};
use imbl::OrdMap;

/// Rows decoded per batch when a relation is read.
const BATCH_ROWS: usize = 8192;

/// A relation's rows, keyed by their row encoding with their multiplicity.
///
/// The map is persistent: cloning a relation is O(1) and later changes to
/// the clone leave the original untouched, which is how a snapshot keeps the
/// contents of an epoch while the writer moves on. Decoded batches are cached
/// per version.
#[derive(Clone)]
pub struct Relation {
    schema: SchemaRef,
    codec: Arc<RowCodec>,
    rows: OrdMap<Arc<[u8]>, i64>,
    cardinality: u64,
    cache: Arc<OnceLock<Vec<RecordBatch>>>,
}

impl std::fmt::Debug for Relation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relation")
            .field("columns", &self.schema.fields().len())
            .field("rows", &self.cardinality)
            .finish()
    }
}

impl Relation {
    /// An empty relation of `schema` (read back with every column nullable;
    /// NOT NULL is enforced where rows are written).
    pub fn new(schema: SchemaRef) -> Result<Self> {
        let schema = eddy_dataflow::schema::nullable(&schema);
        Ok(Self {
            codec: Arc::new(RowCodec::for_schema(&schema)?),
            schema,
            rows: OrdMap::new(),
            cardinality: 0,
            cache: Arc::default(),
        })
    }

    /// The relation's schema.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Add `changes` (any order, duplicates allowed). Fails without changing
    /// anything if a row would end up with a negative count.
    pub fn apply(&mut self, changes: &ChangeBatch) -> Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        let changes = changes.consolidate()?;
        let columns: Vec<_> = changes
            .data()
            .columns()
            .iter()
            .zip(self.codec.types())
            .map(|(c, t)| {
                if c.data_type() == t {
                    Ok(c.clone())
                } else {
                    datafusion::arrow::compute::cast(c, t)
                }
            })
            .collect::<std::result::Result<_, _>>()?;
        let encoded = self.codec.encode(&columns)?;
        let mut rows = self.rows.clone();
        let mut cardinality = self.cardinality as i64;
        for (row, weight) in encoded.iter().zip(changes.weights()) {
            let key = row.data();
            let count = rows.get(key).copied().unwrap_or(0) + weight;
            if count < 0 {
                return Err(Error::internal(
                    "a relation row would have a negative count",
                ));
            } else if count == 0 {
                rows.remove(key);
            } else {
                rows.insert(Arc::from(key), count);
            }
            cardinality += weight;
        }
        self.rows = rows;
        self.cardinality = cardinality as u64;
        self.cache = Arc::default();
        Ok(())
    }

    /// The rows as batches, each row repeated by its multiplicity.
    pub fn batches(&self) -> Result<Vec<RecordBatch>> {
        if let Some(batches) = self.cache.get() {
            return Ok(batches.clone());
        }
        let mut batches = Vec::new();
        for changes in self.contents()? {
            batches.push(changes.to_multiset_batch()?);
        }
        Ok(self.cache.get_or_init(|| batches).clone())
    }

    /// The rows with their multiplicities, as change batches that would
    /// build the relation from nothing.
    pub fn contents(&self) -> Result<Vec<ChangeBatch>> {
        let mut out = Vec::new();
        let entries: Vec<(&Arc<[u8]>, &i64)> = self.rows.iter().collect();
        for chunk in entries.chunks(BATCH_ROWS) {
            let columns = self.codec.decode(chunk.iter().map(|(k, _)| k.as_ref()))?;
            let batch = RecordBatch::try_new(self.schema.clone(), columns)?;
            let weights: Int64Array = chunk.iter().map(|(_, w)| **w).collect();
            out.push(ChangeBatch::new(batch, weights)?);
        }
        Ok(out)
    }
}
