//! A join's stored rows under a memory budget: which join keys it may let
//! go of, and how it reads them back.
//!
//! The unit is one join key of one side: all its rows leave memory
//! together, and come back together through one prefix read of their
//! entries (side, key, then row), before a change with that key is joined.
//! As for the aggregate's groups (see `aggregate::spill`), a key leaves only
//! once the checkpoint that saved its rows last is durable; a key emptied
//! in memory is remembered until its deletion is durable. Victims are chosen by a clock: a ring of resident keys, where a
//! key used since the hand last passed gets another round.

use std::collections::VecDeque;

use super::{entry_prefix, Key, RowsOfKey, Side};
use crate::state::{Spill, Spiller};
use crate::Result;

/// Bytes a resident key holds beyond its rows (its index slot, its ring
/// place, its key), as estimated for the budget.
const KEY_OVERHEAD: usize = 96;

/// How a key in memory counts in the budget.
#[derive(Debug, Default)]
pub(super) struct Residence {
    /// Bytes counted in the budget for the key (0 until its rows are saved).
    counted: usize,
    /// The save that last wrote one of its rows.
    saved_at: u64,
    /// Its place in the ring (0: none yet).
    ticket: u64,
    /// Used since the clock hand last passed it.
    pub(super) referenced: bool,
}

/// What a join that spills keeps about its keys.
pub(super) struct Spilled {
    spiller: Spiller,
    /// Resident keys in clock order, each with the ticket it had when it
    /// joined the ring (an entry whose key has another ticket, or is gone,
    /// is stale).
    ring: VecDeque<(u8, Key, u64)>,
    tickets: u64,
    /// Keys in memory with a ticket.
    live: usize,
}

impl Spilled {
    pub(super) fn new(spill: Spill) -> Self {
        Self {
            spiller: Spiller::new(spill),
            ring: VecDeque::new(),
            tickets: 0,
            live: 0,
        }
    }

    /// Count `rows` of key `key` of side `side` at their current size, as
    /// saved by save `saved_at`.
    pub(super) fn count(&mut self, side: usize, key: &[u8], rows: &mut RowsOfKey, saved_at: u64) {
        let bytes = rows.bytes + key.len() + KEY_OVERHEAD;
        let residence = &mut rows.residence;
        self.spiller.account(bytes, residence.counted);
        residence.counted = bytes;
        residence.saved_at = saved_at;
        if residence.ticket == 0 {
            self.tickets += 1;
            residence.ticket = self.tickets;
            self.live += 1;
            // `side` is 0 or 1.
            self.ring.push_back((side as u8, key.into(), self.tickets));
        }
    }

    /// The rows of key `key` of side `side` have all gone.
    pub(super) fn released(&mut self, side: usize, key: &[u8], rows: &RowsOfKey) {
        self.forget(&rows.residence);
        self.spiller.deleted(entry_prefix(side, key));
    }

    fn forget(&mut self, residence: &Residence) {
        self.spiller.account(0, residence.counted);
        if residence.ticket != 0 {
            self.live -= 1;
        }
    }

    /// The stored entries (row, value) of key `key` of side `side`, if the
    /// store may hold any that are not in memory.
    pub(super) fn read(&self, side: usize, key: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let prefix = entry_prefix(side, key);
        match self.spiller.reader(&prefix) {
            Some(reader) => reader.scan(&prefix),
            None => Ok(Vec::new()),
        }
    }

    /// True if the store may hold keys that are not in memory.
    pub(super) fn may_read(&self) -> bool {
        self.spiller.on_disk()
    }

    /// A key was read back.
    pub(super) fn reloaded(&self) {
        self.spiller.reloaded();
    }

    /// The number of the save under way.
    pub(super) fn save(&self) -> u64 {
        self.spiller.budget().saving()
    }

    /// After save `save`: let go of keys while over this join's share of
    /// the budget.
    pub(super) fn let_go(&mut self, save: u64, sides: &mut [Side; 2]) {
        self.spiller.saved(save);
        let target = self.spiller.target();
        let durable = self.spiller.budget().durable();
        let mut evicted = 0;
        // Two rounds at most: the first may only take away second chances.
        let mut steps = 2 * self.ring.len();
        while self.spiller.resident() > target && steps > 0 {
            steps -= 1;
            let Some((side, key, ticket)) = self.ring.pop_front() else {
                break;
            };
            let index = &mut sides[usize::from(side)].index;
            let Some(rows) = index.get_mut(key.as_slice()) else {
                continue;
            };
            let residence = &mut rows.residence;
            if residence.ticket != ticket {
                continue;
            }
            // Right after a save every change is saved: a key changed since
            // the last durable one is one saved since.
            if residence.saved_at > durable || std::mem::take(&mut residence.referenced) {
                self.ring.push_back((side, key, ticket));
                continue;
            }
            if let Some(rows) = index.remove(key.as_slice()) {
                self.forget(&rows.residence);
                evicted += 1;
            }
        }
        self.spiller.evicted(evicted);
        // Drop stale entries once they outnumber the live ones.
        if self.ring.len() > 2 * self.live + 1024 {
            self.ring.retain(|(side, key, ticket)| {
                sides[usize::from(*side)]
                    .index
                    .get(key.as_slice())
                    .is_some_and(|rows| rows.residence.ticket == *ticket)
            });
        }
    }
}
