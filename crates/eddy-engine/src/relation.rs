//! The contents of a table or materialized view: a multiset of rows.

use std::sync::{Arc, OnceLock};

use datafusion::arrow::array::{Int64Array, RecordBatch};
use datafusion::arrow::datatypes::SchemaRef;
use eddy_common::row::RowCodec;
use eddy_common::{ChangeBatch, Error, Result};
use imbl::{OrdMap, Vector};

/// Rows decoded per batch when a relation is read.
const BATCH_ROWS: usize = 8192;

/// Takes each row a change applies, encoded, with its weight.
pub type EachRow<'a> = dyn FnMut(&[u8], i64) + 'a;

/// A relation's rows: a map from row encodings to multiplicities, plus a
/// log of the batches inserted since the map last took them in.
///
/// Inserting only appends a batch to the log, in O(1) per batch: a view
/// over an append-only stream never pays for a row map. The first change
/// that deletes folds the log into the map, which can then say whether a
/// deleted row is there.
///
/// Both parts are persistent: cloning a relation is O(1) and later changes
/// to the clone leave the original untouched, which is how a snapshot keeps
/// the contents of an epoch while the writer moves on. Decoded batches are
/// cached per version.
#[derive(Clone)]
pub struct Relation {
    schema: SchemaRef,
    codec: Arc<RowCodec>,
    rows: OrdMap<Arc<[u8]>, i64>,
    /// Inserted rows not in `rows` yet, each row once per copy, in batches
    /// of about `BATCH_ROWS`.
    appended: Vector<RecordBatch>,
    /// The latest inserted batches, until they add up to `BATCH_ROWS` rows
    /// and are joined into one batch of `appended` (so that a stream of
    /// small epochs does not leave a relation of tiny batches).
    tail: Vector<RecordBatch>,
    tail_rows: usize,
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
            appended: Vector::new(),
            tail: Vector::new(),
            tail_rows: 0,
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
        self.apply_with(changes, None)
    }

    /// [`Relation::apply`], handing `each` the consolidated changes, each
    /// row encoded as [`Relation::encode`] does, with its weight.
    pub fn apply_with(
        &mut self,
        changes: &ChangeBatch,
        each: Option<&mut EachRow<'_>>,
    ) -> Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        if changes.weights().iter().all(|w| *w > 0) {
            if let Some(each) = each {
                let consolidated = changes.consolidate()?;
                let encoded = self.encode(&consolidated)?;
                for (row, weight) in encoded.iter().zip(consolidated.weights()) {
                    each(row.data(), *weight);
                }
            }
            let rows = changes.to_multiset_batch()?;
            let columns = self.conform(rows.columns())?;
            let rows = RecordBatch::try_new(self.schema.clone(), columns)?;
            self.cardinality += rows.num_rows() as u64;
            self.tail_rows += rows.num_rows();
            self.tail.push_back(rows);
            if self.tail_rows >= BATCH_ROWS {
                let pieces: Vec<RecordBatch> = self.tail.iter().cloned().collect();
                let joined = datafusion::arrow::compute::concat_batches(&self.schema, &pieces)?;
                self.appended.push_back(joined);
                self.tail = Vector::new();
                self.tail_rows = 0;
            }
            self.cache = Arc::default();
            return Ok(());
        }
        let changes = changes.consolidate()?;
        let columns = self.conform(changes.data().columns())?;
        let encoded = self.codec.encode(&columns)?;
        let mut rows = self.fold_appended()?;
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
        if let Some(each) = each {
            for (row, weight) in encoded.iter().zip(changes.weights()) {
                each(row.data(), *weight);
            }
        }
        self.rows = rows;
        self.appended = Vector::new();
        self.tail = Vector::new();
        self.tail_rows = 0;
        self.cardinality = cardinality as u64;
        self.cache = Arc::default();
        Ok(())
    }

    /// The row encodings of `changes`, as stored.
    pub fn encode(&self, changes: &ChangeBatch) -> Result<datafusion::arrow::row::Rows> {
        let columns = self.conform(changes.data().columns())?;
        self.codec.encode(&columns)
    }

    /// Rows given as encodings and their multiplicities, as changes of
    /// this relation.
    pub fn decode<'a>(
        &self,
        rows: impl IntoIterator<Item = &'a [u8]>,
        weights: &[i64],
    ) -> Result<ChangeBatch> {
        let columns = self.codec.decode(rows)?;
        let batch = RecordBatch::try_new(self.schema.clone(), columns)?;
        ChangeBatch::new(batch, Int64Array::from(weights.to_vec()))
    }

    /// `columns` cast to the relation's column types.
    fn conform(
        &self,
        columns: &[datafusion::arrow::array::ArrayRef],
    ) -> Result<Vec<datafusion::arrow::array::ArrayRef>> {
        Ok(columns
            .iter()
            .zip(self.codec.types())
            .map(|(c, t)| {
                if c.data_type() == t {
                    Ok(c.clone())
                } else {
                    datafusion::arrow::compute::cast(c, t)
                }
            })
            .collect::<std::result::Result<_, _>>()?)
    }

    /// The row map with the appended batches taken in.
    fn fold_appended(&self) -> Result<OrdMap<Arc<[u8]>, i64>> {
        let mut rows = self.rows.clone();
        for batch in self.appended.iter().chain(self.tail.iter()) {
            let encoded = self.codec.encode(batch.columns())?;
            for row in encoded.iter() {
                let key = row.data();
                let count = rows.get(key).copied().unwrap_or(0) + 1;
                rows.insert(Arc::from(key), count);
            }
        }
        Ok(rows)
    }

    /// The rows as batches, each row repeated by its multiplicity.
    pub fn batches(&self) -> Result<Vec<RecordBatch>> {
        if let Some(batches) = self.cache.get() {
            return Ok(batches.clone());
        }
        let mut batches = Vec::new();
        for changes in self.map_contents()? {
            batches.push(changes.to_multiset_batch()?);
        }
        batches.extend(self.appended.iter().chain(self.tail.iter()).cloned());
        Ok(self.cache.get_or_init(|| batches).clone())
    }

    /// The rows with their multiplicities, as change batches that would
    /// build the relation from nothing.
    pub fn contents(&self) -> Result<Vec<ChangeBatch>> {
        let mut out = self.map_contents()?;
        out.extend(
            self.appended
                .iter()
                .chain(self.tail.iter())
                .cloned()
                .map(ChangeBatch::inserts),
        );
        Ok(out)
    }

    /// The rows of the map part.
    fn map_contents(&self) -> Result<Vec<ChangeBatch>> {
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
