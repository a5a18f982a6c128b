//! `ORDER BY ... LIMIT n OFFSET m`, kept incrementally.
//!
//! All input rows are kept in a B-tree keyed by the row encoding of the sort
//! keys (which sorts exactly like the `ORDER BY`, directions and NULLS
//! FIRST/LAST included) followed by the whole row, so ties are broken by
//! the row itself and the result is deterministic. At a barrier the window
//! `[offset, offset + limit)` is read off the tree and diffed against what
//! was emitted before.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::Int64Array;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::physical_expr::PhysicalSortExpr;
use eddy_common::row::RowCodec;

use crate::state::{Checkpointing, Decoder, Encoder, StateSink};
use crate::{schema, ChangeBatch, Operator, Result};

/// A row under its sort key: the encoded sort key, then the encoded row.
type SortedRow = (Box<[u8]>, Arc<[u8]>);

/// Keeps the rows `offset .. offset + limit` of its input in sort order.
pub struct TopNOperator {
    order_by: Vec<PhysicalSortExpr>,
    offset: usize,
    limit: Option<usize>,
    sort_codec: Option<RowCodec>,
    row_codec: RowCodec,
    rows: BTreeMap<SortedRow, i64>,
    emitted: BTreeMap<Arc<[u8]>, i64>,
    dirty: bool,
    /// Once state is tracked, the rows changed since the last save.
    unsaved: Option<hashbrown::HashSet<SortedRow>>,
    schema: SchemaRef,
}

impl TopNOperator {
    /// Top-N of rows of `schema`. With no `order_by` rows are ordered by all
    /// their columns.
    pub fn new(
        order_by: Vec<PhysicalSortExpr>,
        offset: usize,
        limit: Option<usize>,
        schema: SchemaRef,
    ) -> Result<Self> {
        let sort_codec = if order_by.is_empty() {
            None
        } else {
            let fields = order_by
                .iter()
                .map(|s| Ok((s.expr.data_type(&schema)?, s.options)))
                .collect::<Result<Vec<_>>>()?;
            Some(RowCodec::with_fields(fields)?)
        };
        Ok(Self {
            order_by,
            offset,
            limit,
            sort_codec,
            row_codec: RowCodec::for_schema(&schema)?,
            rows: BTreeMap::new(),
            emitted: BTreeMap::new(),
            dirty: false,
            unsaved: None,
            schema,
        })
    }

    /// The rows `offset .. offset + limit` with their multiplicities.
    fn window(&self) -> BTreeMap<Arc<[u8]>, i64> {
        let mut window: BTreeMap<Arc<[u8]>, i64> = BTreeMap::new();
        let mut skip = self.offset as i64;
        let mut room = self.limit.map_or(i64::MAX, |l| l as i64);
        for ((_, row), count) in &self.rows {
            if room == 0 {
                break;
            }
            let mut count = (*count).max(0);
            let skipped = count.min(skip);
            skip -= skipped;
            count -= skipped;
            let taken = count.min(room);
            if taken > 0 {
                room -= taken;
                *window.entry(row.clone()).or_default() += taken;
            }
        }
        window
    }
}

impl Operator for TopNOperator {
    fn name(&self) -> &'static str {
        "TopN"
    }

    fn describe(&self) -> String {
        let keys: Vec<String> = self
            .order_by
            .iter()
            .map(|s| super::strip_indices(&s.to_string()))
            .collect();
        let limit = self.limit.map_or("ALL".to_string(), |l| l.to_string());
        format!(
            "order by [{}], limit {limit}, offset {}",
            keys.join(", "),
            self.offset
        )
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
        let data = changes.data();
        let rows = self.row_codec.encode(data.columns())?;
        let sort_keys = match &self.sort_codec {
            Some(codec) => {
                let columns = self
                    .order_by
                    .iter()
                    .map(|s| s.expr.evaluate(data)?.into_array(data.num_rows()))
                    .collect::<datafusion::error::Result<Vec<_>>>()?;
                Some(codec.encode(&columns)?)
            }
            None => None,
        };
        for (i, weight) in changes.weights().iter().enumerate() {
            let sort_key: Box<[u8]> = match &sort_keys {
                Some(keys) => keys.row(i).data().into(),
                None => Box::default(),
            };
            let key = (sort_key, Arc::from(rows.row(i).data()));
            let total = self.rows.entry(key.clone()).or_default();
            *total += weight;
            if *total == 0 {
                self.rows.remove(&key);
            }
            if let Some(unsaved) = &mut self.unsaved {
                unsaved.insert(key);
            }
        }
        self.dirty = true;
        Ok(())
    }

    fn on_barrier(&mut self, out: &mut Vec<ChangeBatch>) -> Result<()> {
        if !self.dirty {
            return Ok(());
        }
        self.dirty = false;
        let window = self.window();
        let mut changed: Vec<(Arc<[u8]>, i64)> = Vec::new();
        for (row, count) in &window {
            let before = self.emitted.get(row).copied().unwrap_or(0);
            if before != *count {
                changed.push((row.clone(), count - before));
            }
        }
        for (row, count) in &self.emitted {
            if !window.contains_key(row) {
                changed.push((row.clone(), -count));
            }
        }
        self.emitted = window;
        if changed.is_empty() {
            return Ok(());
        }
        let columns = self
            .row_codec
            .decode(changed.iter().map(|(r, _)| r.as_ref()))?;
        let data = schema::batch(&self.schema, columns, changed.len())?;
        let weights: Int64Array = changed.iter().map(|(_, w)| *w).collect();
        out.push(ChangeBatch::new(data, weights)?);
        Ok(())
    }

    fn checkpointing(&self) -> Checkpointing {
        Checkpointing::Entries
    }

    fn track_state(&mut self) {
        self.unsaved = Some(self.rows.keys().cloned().collect());
    }

    /// One entry per distinct input row: its sort key and the row; its
    /// multiplicity.
    fn save_state(&mut self, out: &mut StateSink<'_>) -> Result<()> {
        let Some(unsaved) = &mut self.unsaved else {
            return Ok(());
        };
        let mut key = Encoder::new();
        let mut value = Encoder::new();
        for sorted in unsaved.drain() {
            key.clear();
            key.slice(&sorted.0);
            let mut full = key.bytes().to_vec();
            full.extend_from_slice(&sorted.1);
            match self.rows.get(&sorted) {
                Some(count) => {
                    value.clear();
                    value.i64(*count);
                    out(&full, Some(value.bytes()));
                }
                None => out(&full, None),
            }
        }
        Ok(())
    }

    fn load_state(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        let mut key = Decoder::new(key);
        let sort_key = key.slice()?;
        let row = key.rest();
        let mut value = Decoder::new(value);
        let count = value.i64()?;
        value.finish()?;
        self.rows.insert((sort_key.into(), row.into()), count);
        Ok(())
    }

    fn state_loaded(&mut self) -> Result<()> {
        self.emitted = self.window();
        self.dirty = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::compute::SortOptions;

    use super::*;
    use crate::testing::{changes, check_restart, col, epoch, schema, NOTHING};

    /// `SELECT * FROM t(k, v) ORDER BY k [DESC] LIMIT limit OFFSET offset`.
    fn top_n(descending: bool, offset: usize, limit: Option<usize>) -> TopNOperator {
        let s = schema("k:int v:str");
        let options = SortOptions {
            descending,
            nulls_first: false,
        };
        let order_by = vec![PhysicalSortExpr::new(col("k", &s), options)];
        TopNOperator::new(order_by, offset, limit, s).expect("a valid top-n")
    }

    #[test]
    fn deleting_the_top_row_shifts_the_window() -> Result<()> {
        let mut op = top_n(false, 1, Some(2));
        let s = op.schema().clone();
        let rows = changes(&s, "3 c +1; 1 a +1; 5 e +1; 2 b +1; 4 d +1; NULL n +1");
        assert_eq!(epoch(&mut op, vec![(0, rows)])?, ["2 b +1", "3 c +1"]);
        assert_eq!(
            epoch(&mut op, vec![(0, changes(&s, "1 a -1"))])?,
            ["2 b -1", "4 d +1"]
        );
        // A change beyond the window emits nothing.
        assert_eq!(
            epoch(&mut op, vec![(0, changes(&s, "9 z +1; 5 e -1"))])?,
            NOTHING
        );
        assert_eq!(epoch(&mut op, vec![])?, NOTHING);
        // Deleting everything before the window pulls in the NULL (sorted last).
        let rows = changes(&s, "2 b -1; 3 c -1; 4 d -1");
        assert_eq!(
            epoch(&mut op, vec![(0, rows)])?,
            ["3 c -1", "4 d -1", "NULL n +1"]
        );
        Ok(())
    }

    #[test]
    fn duplicates_count_as_separate_rows() -> Result<()> {
        let mut op = top_n(true, 1, Some(2));
        let s = op.schema().clone();
        // Descending: 9 ×3, then 5. Skip one 9, keep two.
        let rows = changes(&s, "9 a +3; 5 b +1");
        assert_eq!(epoch(&mut op, vec![(0, rows)])?, ["9 a +2"]);
        // One copy of the top row goes.
        assert_eq!(
            epoch(&mut op, vec![(0, changes(&s, "9 a -1"))])?,
            ["5 b +1", "9 a -1"]
        );
        // Two copies of a new top row push everything down.
        let rows = changes(&s, "10 t +2");
        assert_eq!(epoch(&mut op, vec![(0, rows)])?, ["10 t +1", "5 b -1"]);
        // Ties on the sort key are broken by the whole row.
        let rows = changes(&s, "10 t -2; 9 a -2; 7 y +1; 7 x +1");
        assert_eq!(
            epoch(&mut op, vec![(0, rows)])?,
            ["10 t -1", "5 b +1", "7 y +1", "9 a -1"]
        );
        Ok(())
    }

    #[test]
    fn offset_without_limit() -> Result<()> {
        let mut op = top_n(false, 2, None);
        let s = op.schema().clone();
        let rows = changes(&s, "1 a +1; 2 b +2; 3 c +1");
        assert_eq!(epoch(&mut op, vec![(0, rows)])?, ["2 b +1", "3 c +1"]);
        assert_eq!(
            epoch(&mut op, vec![(0, changes(&s, "2 b -1"))])?,
            ["2 b -1"]
        );
        Ok(())
    }

    #[test]
    fn a_restored_top_n_goes_on_like_the_original() -> Result<()> {
        use rand::{Rng, SeedableRng};
        let s = schema("k:int v:str");
        for seed in 0..30u64 {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let mut present: Vec<String> = Vec::new();
            let epochs: Vec<Vec<(usize, ChangeBatch)>> = (0..10)
                .map(|_| {
                    let mut rows = Vec::new();
                    for _ in 0..rng.random_range(0..5) {
                        if !present.is_empty() && rng.random_bool(0.4) {
                            let row = present.swap_remove(rng.random_range(0..present.len()));
                            rows.push(format!("{row} -1"));
                        } else {
                            let row =
                                format!("{} r{}", rng.random_range(0..6), rng.random_range(0..2));
                            present.push(row.clone());
                            rows.push(format!("{row} +1"));
                        }
                    }
                    vec![(0, changes(&s, &rows.join("; ")))]
                })
                .collect();
            let cut = 1 + seed as usize % 9;
            for (descending, offset, limit) in
                [(false, 0, Some(3)), (true, 1, Some(2)), (false, 2, None)]
            {
                let make = || -> Box<dyn Operator> { Box::new(top_n(descending, offset, limit)) };
                check_restart(&make, epochs[..cut].to_vec(), epochs[cut..].to_vec())?;
            }
        }
        Ok(())
    }
}
