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
            schema,
        })
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
        }
        self.dirty = true;
        Ok(())
    }

    fn on_barrier(&mut self, out: &mut Vec<ChangeBatch>) -> Result<()> {
        if !self.dirty {
            return Ok(());
        }
        self.dirty = false;
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
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::compute::SortOptions;

    use super::*;
    use crate::testing::{changes, col, epoch, schema, NOTHING};

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
}
