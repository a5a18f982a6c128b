//! A top-N's rows under a memory budget: which rows it keeps, which it
//! lets go of, and how it reads them back in sort order.
//!
//! Entry keys sort like the `ORDER BY` in the store too, so what the
//! operator holds is the store's order with gaps. Memory always holds
//! every row whose key is below the *hole* (no hole: every row), and each
//! row in memory with its true multiplicity; a row at or past the hole that
//! is not in memory has its stored entry, unless its deletion is not
//! durable yet (then it has none).
//!
//! After a save, while over its share of the budget, the operator lets go
//! of rows from the end of the sort order, never of the first
//! `offset + limit` rows and a margin (see [`margin`]), and only of rows
//! whose entry the last durable save wrote, so reading one back gives its
//! true multiplicity (the rule of `aggregate::spill`). The hole then moves
//! down to the first row let go of. When the window needs rows past the
//! hole, one range read takes the next entries at the hole, skipping rows
//! memory holds (memory is newer) and rows whose deletion is not durable,
//! and the hole moves past the last entry read, or goes when the store has
//! no more. A change of a row at or past the hole that memory does not
//! hold reads that row's entry first, so it is neither lost nor counted
//! twice.
//!
//! Without a LIMIT the window is the whole input: every row stays.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use super::{decode_value, Counted, NOT_SAVED};
use crate::state::{Spill, Spiller};
use crate::Result;

/// Bytes a row in memory holds beyond its key (its tree slot, its count,
/// the key's allocation), as estimated for the budget.
const ROW_OVERHEAD: usize = 64;

/// Rows kept past the window's `window` rows: enough that deletions in the
/// window read back at most once per `margin` of them, one seek for many
/// rows (at least 64, so a small window does not read on every deletion),
/// and at most 4096, so a large window costs little more than itself.
pub(super) fn margin(window: u64) -> u64 {
    window.clamp(64, 4096)
}

/// What a top-N that spills keeps about its rows.
pub(super) struct Spilled {
    spiller: Spiller,
    /// The first key at or past which the store may hold rows memory does
    /// not (`None`: memory holds every row).
    hole: Option<Vec<u8>>,
    /// Rows never let go of: the window's and the margin (`None`: no
    /// LIMIT, keep every row).
    keep: Option<u64>,
}

impl Spilled {
    /// Spill under `spill`, keeping the first `keep` rows. A restored
    /// operator that keeps only some rows loads none: all may be stored.
    pub(super) fn new(spill: Spill, keep: Option<u64>) -> Self {
        let hole = (spill.restored && keep.is_some()).then(Vec::new);
        Self {
            spiller: Spiller::new(spill),
            hole,
            keep,
        }
    }

    /// True if a restart loads no entries: the window reads its rows
    /// back (false without a LIMIT: every row stays, so all load).
    pub(super) fn loads_nothing(&self) -> bool {
        self.keep.is_some()
    }

    /// The first key at or past which memory may miss rows.
    pub(super) fn hole(&self) -> Option<&[u8]> {
        self.hole.as_deref()
    }

    /// The number of the save under way.
    pub(super) fn save(&self) -> u64 {
        self.spiller.budget().saving()
    }

    /// The stored entry of row `key`, which memory does not hold, if the
    /// store may hold one that memory lacks.
    pub(super) fn read(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        match (&self.hole, self.spiller.reader(key)) {
            (Some(hole), Some(reader)) if key >= hole.as_slice() => reader.get(key),
            _ => Ok(None),
        }
    }

    /// Row `key` came into memory from its durable entry (read back or
    /// loaded).
    pub(super) fn loaded(&mut self, key: &[u8]) {
        self.spiller.account(size(key), 0);
    }

    /// Row `key` was read back.
    pub(super) fn reloaded(&mut self, key: &[u8]) {
        self.loaded(key);
        self.spiller.reloaded();
    }

    /// Save `save` wrote row `key`'s entry.
    pub(super) fn saved(&mut self, key: &[u8], counted: &mut Counted, save: u64) {
        if counted.saved_at == NOT_SAVED {
            self.spiller.account(size(key), 0);
        }
        counted.saved_at = save;
    }

    /// Row `key` has no copies left; the next save deletes its entry.
    pub(super) fn released(&mut self, key: &[u8], counted: &Counted) {
        if counted.saved_at != NOT_SAVED {
            self.spiller.account(0, size(key));
        }
        self.spiller.deleted(key.to_vec());
    }

    /// Read the next `count` (at least one) stored entries at the hole
    /// into `rows` and move the hole past them.
    pub(super) fn read_back(
        &mut self,
        rows: &mut BTreeMap<Arc<[u8]>, Counted>,
        count: usize,
    ) -> Result<()> {
        let Some(hole) = &self.hole else {
            return Ok(());
        };
        let count = count.max(1);
        let entries = self.spiller.scan_from(hole, count)?;
        let more = entries.len() == count;
        let mut last = None;
        for (key, value) in entries {
            if !rows.contains_key(key.as_slice()) && !self.spiller.deleting(&key) {
                let (count, row_at) = decode_value(&key, &value)?;
                self.reloaded(&key);
                let counted = Counted {
                    count,
                    row_at,
                    saved_at: 0,
                };
                rows.insert(key.as_slice().into(), counted);
            }
            last = Some(key);
        }
        // The first key after `last`.
        self.hole = last.filter(|_| more).map(|mut key| {
            key.push(0);
            key
        });
        Ok(())
    }

    /// After save `save`: let go of rows past the first `keep` while over
    /// this top-N's share of the budget.
    pub(super) fn let_go(&mut self, save: u64, rows: &mut BTreeMap<Arc<[u8]>, Counted>) {
        // Read before the deletions that are durable are forgotten: a row
        // saved by a save this says is durable has no older deletion left
        // to remember.
        let durable = self.spiller.budget().durable();
        self.spiller.saved(save);
        let Some(keep) = self.keep else {
            return;
        };
        let target = self.spiller.target();
        let mut resident = self.spiller.resident();
        if resident <= target {
            return;
        }
        let mut seen = 0u64;
        let boundary = rows.iter().find_map(|(key, counted)| {
            seen = seen.saturating_add(u64::try_from(counted.count).unwrap_or(0));
            (seen >= keep).then(|| key.clone())
        });
        // Fewer rows than the window and margin: all stay.
        let Some(boundary) = boundary else {
            return;
        };
        let mut victims = Vec::new();
        let past = (Bound::Excluded(&*boundary), Bound::Unbounded);
        for (key, counted) in rows.range::<[u8], _>(past).rev() {
            if resident <= target {
                break;
            }
            // Right after a save every change is saved: a row changed since
            // the last durable save is one saved since.
            if counted.saved_at > durable {
                continue;
            }
            resident = resident.saturating_sub(size(key));
            victims.push(key.clone());
        }
        // Victims come last row first: the last one is the first key.
        if let Some(first) = victims.last() {
            if self.hole.as_deref().is_none_or(|hole| **first < *hole) {
                self.hole = Some(first.to_vec());
            }
        }
        for key in &victims {
            rows.remove(key);
            self.spiller.account(0, size(key));
        }
        self.spiller.evicted(victims.len() as u64);
    }
}

/// Estimated bytes of row `key` in memory.
fn size(key: &[u8]) -> usize {
    key.len() + ROW_OVERHEAD
}
