//! `ORDER BY ... LIMIT n OFFSET m`, kept incrementally.
//!
//! Input rows are kept in a B-tree keyed by the row encoding of the sort
//! keys (which sorts exactly like the `ORDER BY`, directions and NULLS
//! FIRST/LAST included) followed by the row's encoding, so ties are broken
//! by the row itself and the result is deterministic. Both are Arrow row
//! encodings, none of which is a prefix of another of the same converter,
//! so the concatenation compares like the pair, in the tree and as a
//! stored entry key alike. At a barrier the window `[offset, offset +
//! limit)` is read off the tree and diffed against what was emitted before.
//!
//! Under a memory budget (see [`Operator::spill`]) the operator keeps the
//! first rows, those of the window and a margin, lets go of the rest once
//! their entries are durable, and reads the next ones in sort order back
//! when the window needs them (see `spill`).

mod spill;

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use datafusion::arrow::array::Int64Array;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::physical_expr::PhysicalSortExpr;
use eddy_common::row::RowCodec;

use self::spill::{margin, Spilled};
use crate::state::{Checkpointing, Decoder, Encoder, Spill, StateSink};
use crate::{schema, ChangeBatch, Error, Operator, Result};

/// The `saved_at` of a row never saved.
const NOT_SAVED: u64 = u64::MAX;

/// A distinct input row in memory, under its key (sort key, then row).
#[derive(Debug, Clone, Copy)]
struct Counted {
    /// Its multiplicity.
    count: i64,
    /// Where the row starts in its key: the sort key's length.
    row_at: u32,
    /// The save that last wrote its entry (0: an entry read from the
    /// store; [`NOT_SAVED`]: none yet).
    saved_at: u64,
}

/// The window's rows by key, each with its multiplicity and where the row
/// starts in its key.
type Window = BTreeMap<Arc<[u8]>, (i64, u32)>;

/// Keeps the rows `offset .. offset + limit` of its input in sort order.
pub struct TopNOperator {
    order_by: Vec<PhysicalSortExpr>,
    offset: usize,
    limit: Option<usize>,
    sort_codec: Option<RowCodec>,
    row_codec: RowCodec,
    rows: BTreeMap<Arc<[u8]>, Counted>,
    emitted: Window,
    dirty: bool,
    /// Once state is tracked, the keys of the rows changed since the last
    /// save.
    unsaved: Option<hashbrown::HashSet<Arc<[u8]>>>,
    /// Under a memory budget, what decides which rows stay.
    spilled: Option<Spilled>,
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
            spilled: None,
            schema,
        })
    }

    /// The rows `offset .. offset + limit` with their multiplicities; under
    /// a budget, rows the window needs past the hole are read back first.
    fn window(&mut self) -> Result<Window> {
        loop {
            let hole = self.spilled.as_ref().and_then(Spilled::hole);
            let missing = match self.window_in_memory(hole) {
                Ok(window) => return Ok(window),
                Err(missing) => missing,
            };
            let wanted = missing.saturating_add(margin(self.window_rows()));
            let Some(spilled) = &mut self.spilled else {
                return Err(Error::internal("a top-n misses rows it never let go of"));
            };
            spilled.read_back(
                &mut self.rows,
                usize::try_from(wanted).unwrap_or(usize::MAX),
            )?;
        }
    }

    /// Rows the window holds at most: `offset + limit`.
    fn window_rows(&self) -> u64 {
        let limit = self.limit.map_or(u64::MAX, |l| l as u64);
        (self.offset as u64).saturating_add(limit)
    }

    /// The window from the rows below `hole` (all rows: none); `Err` with
    /// the number of rows still missing if those are too few.
    fn window_in_memory(&self, hole: Option<&[u8]>) -> Result<Window, u64> {
        let mut window = Window::new();
        let mut skip = self.offset as u64;
        let mut room = self.limit.map_or(u64::MAX, |l| l as u64);
        let below = hole.map_or(Bound::Unbounded, Bound::Excluded);
        for (key, counted) in self.rows.range::<[u8], _>((Bound::Unbounded, below)) {
            if room == 0 {
                return Ok(window);
            }
            let mut count = u64::try_from(counted.count).unwrap_or(0);
            let skipped = count.min(skip);
            skip -= skipped;
            count -= skipped;
            let taken = count.min(room);
            if taken > 0 {
                room -= taken;
                // `taken` is at most the row's i64 count.
                let taken = i64::try_from(taken).unwrap_or(i64::MAX);
                window.insert(key.clone(), (taken, counted.row_at));
            }
        }
        if room == 0 || hole.is_none() {
            Ok(window)
        } else {
            Err(skip.saturating_add(room))
        }
    }

    /// Add `weight` copies of the row under `key`, whose row starts at
    /// `row_at`.
    fn add(&mut self, key: &[u8], row_at: u32, weight: i64) -> Result<()> {
        let key: Arc<[u8]> = match self.rows.get_key_value(key) {
            Some((key, _)) => key.clone(),
            None => {
                let key: Arc<[u8]> = key.into();
                // A row the store may hold: its stored copies count too.
                if let Some(spilled) = &mut self.spilled {
                    if let Some(value) = spilled.read(&key)? {
                        let (count, row_at) = decode_value(&key, &value)?;
                        spilled.reloaded(&key);
                        let counted = Counted {
                            count,
                            row_at,
                            saved_at: 0,
                        };
                        self.rows.insert(key.clone(), counted);
                    }
                }
                key
            }
        };
        match self.rows.entry(key.clone()) {
            Entry::Occupied(mut entry) => {
                entry.get_mut().count += weight;
                if entry.get().count == 0 {
                    let counted = entry.remove();
                    if let Some(spilled) = &mut self.spilled {
                        spilled.released(&key, &counted);
                    }
                }
            }
            Entry::Vacant(entry) => {
                entry.insert(Counted {
                    count: weight,
                    row_at,
                    saved_at: NOT_SAVED,
                });
            }
        }
        if let Some(unsaved) = &mut self.unsaved {
            unsaved.insert(key);
        }
        Ok(())
    }
}

/// A row's multiplicity and where it starts in its key `key`, from its
/// stored value.
fn decode_value(key: &[u8], value: &[u8]) -> Result<(i64, u32)> {
    let mut value = Decoder::new(value);
    let count = value.i64()?;
    let row_length = value.count()?;
    value.finish()?;
    let row_at = key
        .len()
        .checked_sub(row_length)
        .ok_or_else(crate::state::corrupt)?;
    let row_at = u32::try_from(row_at).map_err(|_| crate::state::corrupt())?;
    Ok((count, row_at))
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
        let mut key = Vec::new();
        for (i, weight) in changes.weights().iter().enumerate() {
            if *weight == 0 {
                continue;
            }
            key.clear();
            if let Some(keys) = &sort_keys {
                key.extend_from_slice(keys.row(i).data());
            }
            let row_at = u32::try_from(key.len())
                .map_err(|_| Error::internal("a top-n sort key of 4 GiB or more"))?;
            key.extend_from_slice(rows.row(i).data());
            self.add(&key, row_at, *weight)?;
        }
        self.dirty = true;
        Ok(())
    }

    fn on_barrier(&mut self, out: &mut Vec<ChangeBatch>) -> Result<()> {
        if !self.dirty {
            return Ok(());
        }
        self.dirty = false;
        let window = self.window()?;
        let mut changed: Vec<(Arc<[u8]>, u32, i64)> = Vec::new();
        for (key, (count, row_at)) in &window {
            let before = self.emitted.get(key).map_or(0, |(count, _)| *count);
            if before != *count {
                changed.push((key.clone(), *row_at, count - before));
            }
        }
        for (key, (count, row_at)) in &self.emitted {
            if !window.contains_key(key) {
                changed.push((key.clone(), *row_at, -count));
            }
        }
        self.emitted = window;
        if changed.is_empty() {
            return Ok(());
        }
        let columns = self.row_codec.decode(
            changed
                .iter()
                .map(|(key, row_at, _)| &key[*row_at as usize..]),
        )?;
        let data = schema::batch(&self.schema, columns, changed.len())?;
        let weights: Int64Array = changed.iter().map(|(_, _, w)| *w).collect();
        out.push(ChangeBatch::new(data, weights)?);
        Ok(())
    }

    fn checkpointing(&self) -> Checkpointing {
        Checkpointing::Entries
    }

    fn track_state(&mut self) {
        self.unsaved = Some(self.rows.keys().cloned().collect());
    }

    /// One entry per distinct input row, under its key (the sort key, then
    /// the row), so that entries sort in `ORDER BY` order; its multiplicity
    /// and the row's length.
    fn save_state(&mut self, out: &mut StateSink<'_>) -> Result<()> {
        let Self {
            unsaved,
            rows,
            spilled,
            ..
        } = self;
        let Some(unsaved) = unsaved else {
            return Ok(());
        };
        let save = spilled.as_ref().map_or(0, Spilled::save);
        let mut value = Encoder::new();
        for key in unsaved.drain() {
            match rows.get_mut(&key) {
                Some(counted) => {
                    value.clear();
                    value
                        .i64(counted.count)
                        .count(key.len() - counted.row_at as usize);
                    out(&key, Some(value.bytes()));
                    if let Some(spilled) = spilled.as_mut() {
                        spilled.saved(&key, counted, save);
                    }
                }
                None => out(&key, None),
            }
        }
        if let Some(spilled) = spilled {
            spilled.let_go(save, rows);
        }
        Ok(())
    }

    fn spill(&mut self, spill: Spill) {
        let keep = self.limit.map(|_| {
            self.window_rows()
                .saturating_add(margin(self.window_rows()))
        });
        self.spilled = Some(Spilled::new(spill, keep));
    }

    /// Spilling with a LIMIT, nothing: `state_loaded` reads the window's
    /// rows (and a margin) back with one range read of the first entries,
    /// and the rest when needed, so a restart costs the window, not the
    /// input. Without a LIMIT every row is in the window: all load.
    fn entries_to_load(&self) -> Option<Vec<Vec<u8>>> {
        self.spilled
            .as_ref()
            .filter(|spilled| spilled.loads_nothing())
            .map(|_| Vec::new())
    }

    fn load_state(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        let (count, row_at) = decode_value(key, value)?;
        if let Some(spilled) = &mut self.spilled {
            spilled.loaded(key);
        }
        let counted = Counted {
            count,
            row_at,
            saved_at: 0,
        };
        self.rows.insert(key.into(), counted);
        Ok(())
    }

    fn state_loaded(&mut self) -> Result<()> {
        self.emitted = self.window()?;
        self.dirty = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::compute::SortOptions;

    use super::*;
    use crate::testing::{
        changes, check_restart, check_spill, col, epoch, schema, LaggingStore, NOTHING,
    };

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

    /// Epochs of inserts (some of two copies, some with ties on the sort
    /// key, a few NULL keys) whose keys drift away from the front of the
    /// sort order (ascending unless `descending`), and deletes, most of
    /// them among the first rows in sort order: the window moves through
    /// rows that were let go of, and rows just past it come and go.
    fn moving_window(seed: u64, descending: bool) -> Vec<Vec<(usize, ChangeBatch)>> {
        use rand::{Rng, SeedableRng};
        let s = schema("k:int v:str");
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut present: Vec<(Option<i64>, u8)> = Vec::new();
        let render = |(k, v): (Option<i64>, u8), weight: i64| {
            let k = k.map_or("NULL".to_string(), |k| k.to_string());
            format!("{k} r{v} {weight:+}")
        };
        // Where a row is in sort order (NULLs last either way).
        let rank = |r: &(Option<i64>, u8)| match r.0 {
            None => (i64::MAX, r.1),
            Some(k) if descending => (-k, r.1),
            Some(k) => (k, r.1),
        };
        (0..60)
            .map(|e| {
                let mut rows = Vec::new();
                let inserts = if e == 0 {
                    300
                } else {
                    rng.random_range(10..40)
                };
                for _ in 0..inserts {
                    let k = 8 * e + rng.random_range(0..400);
                    let k = (!rng.random_bool(0.02)).then_some(if descending { -k } else { k });
                    let row = (k, rng.random_range(0..3));
                    let copies = if rng.random_bool(0.2) { 2 } else { 1 };
                    for _ in 0..copies {
                        present.push(row);
                    }
                    rows.push(render(row, copies));
                }
                for _ in 0..rng.random_range(10..40) {
                    if present.is_empty() {
                        break;
                    }
                    let mut order: Vec<usize> = (0..present.len()).collect();
                    order.sort_by_key(|i| rank(&present[*i]));
                    let i = match rng.random_range(0..20) {
                        0..10 => order[0],
                        10..17 => order[rng.random_range(0..order.len().min(250))],
                        _ => order[rng.random_range(0..order.len())],
                    };
                    rows.push(render(present.swap_remove(i), -1));
                }
                vec![(0, changes(&s, &rows.join("; ")))]
            })
            .collect()
    }

    #[test]
    fn a_spilling_top_n_emits_what_one_in_memory_does() -> Result<()> {
        let (mut evicted, mut reloaded) = (0, 0);
        for seed in 0..8u64 {
            for (descending, offset, limit) in [
                (false, 0, Some(3)),
                (true, 2, Some(5)),
                (false, 7, Some(1)),
                (true, 0, Some(90)),
                (false, 3, None),
            ] {
                let epochs = moving_window(seed, descending);
                let make = || -> Box<dyn Operator> { Box::new(top_n(descending, offset, limit)) };
                let cut = 1 + seed as usize * 7 % 59;
                for budget in [0, 4_000, 30_000] {
                    let lag = (seed as usize + budget) % 3;
                    let case = format!(
                        "seed {seed}, descending {descending}, offset {offset}, limit {limit:?}, budget {budget}, lag {lag}, cut {cut}"
                    );
                    let (out, back) = check_spill(&case, &make, &epochs, cut, budget, lag)?;
                    if limit.is_none() {
                        assert_eq!(out, 0, "{case}: without a LIMIT every row stays");
                    }
                    evicted += out;
                    reloaded += back;
                }
            }
        }
        // The budgets made rows leave memory and the window read them back.
        assert!(
            evicted > 10_000 && reloaded > 1_000,
            "{evicted} evicted, {reloaded} read back"
        );
        Ok(())
    }

    /// `"{from} r0 {weight}; ..."` up to `to` (exclusive).
    fn numbered(from: i64, to: i64, weight: &str) -> String {
        let rows: Vec<String> = (from..to).map(|k| format!("{k} r0 {weight}")).collect();
        rows.join("; ")
    }

    #[test]
    fn a_spilling_top_n_keeps_the_window_and_a_margin() -> Result<()> {
        let s = schema("k:int v:str");
        let mut store = LaggingStore::new(0, 0);
        let mut op = top_n(false, 2, Some(3));
        op.track_state();
        op.spill(store.spill(false));
        let keep = 5 + margin(5) as usize;
        let rows = changes(&s, &numbered(0, 1000, "+1"));
        assert_eq!(
            epoch(&mut op, vec![(0, rows)])?,
            ["2 r0 +1", "3 r0 +1", "4 r0 +1"]
        );
        // The first save's entries are durable by the second save.
        store.save(&mut op)?;
        assert_eq!(op.rows.len(), 1000);
        store.save(&mut op)?;
        assert_eq!(op.rows.len(), keep);
        assert_eq!(store.budget.evictions(), (1000 - keep as u64, 0));
        // Deletions within the margin read nothing back.
        let rows = changes(&s, &numbered(0, keep as i64 - 5, "-1"));
        epoch(&mut op, vec![(0, rows)])?;
        assert_eq!(store.budget.evictions().1, 0);
        store.save(&mut op)?;
        // Past it: row `keep`, changed, is read; then one range read of
        // the window and a margin, which skips that row (being deleted).
        let rows = changes(&s, &numbered(keep as i64 - 5, keep as i64 + 1, "-1"));
        let next = keep as i64 + 3;
        let came = (next..next + 3).map(|k| format!("{k} r0 +1"));
        let mut gone: Vec<String> = (keep as i64 - 3..keep as i64)
            .map(|k| format!("{k} r0 -1"))
            .collect();
        gone.extend(came);
        gone.sort();
        assert_eq!(epoch(&mut op, vec![(0, rows)])?, gone);
        assert_eq!(store.budget.evictions().1, 1 + keep as u64 - 1);
        assert_eq!(op.rows.len(), keep - 1);
        store.save(&mut op)?;
        drop(op);
        // A restart loads nothing and reads the window and a margin back.
        let mut restored = top_n(false, 2, Some(3));
        restored.track_state();
        restored.spill(store.spill(true));
        assert_eq!(restored.entries_to_load(), Some(Vec::new()));
        restored.state_loaded()?;
        assert_eq!(restored.rows.len(), keep);
        let rows = changes(&s, &numbered(next, next + 1, "-1"));
        assert_eq!(
            epoch(&mut restored, vec![(0, rows)])?,
            [format!("{next} r0 -1"), format!("{} r0 +1", next + 3)]
        );
        Ok(())
    }

    #[test]
    fn without_a_limit_a_spilling_top_n_keeps_and_loads_every_row() -> Result<()> {
        let s = schema("k:int v:str");
        let mut store = LaggingStore::new(0, 0);
        let mut op = top_n(true, 1, None);
        op.track_state();
        op.spill(store.spill(false));
        epoch(&mut op, vec![(0, changes(&s, &numbered(0, 300, "+1")))])?;
        store.save(&mut op)?;
        store.save(&mut op)?;
        assert_eq!(op.rows.len(), 300);
        assert_eq!(store.budget.evictions(), (0, 0));
        let mut restored = top_n(true, 1, None);
        restored.spill(store.spill(true));
        assert_eq!(restored.entries_to_load(), None);
        Ok(())
    }
}
