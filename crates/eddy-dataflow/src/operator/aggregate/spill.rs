//! An aggregate's groups under a memory budget: which groups it may let go
//! of, and what it must know to read them back exactly.
//!
//! A group may leave memory only once the checkpoint that saved its current
//! state is durable, so reading its entry back gives exactly that state. A
//! group emptied in memory is deleted from the store by a later checkpoint;
//! until that deletion is durable its key is remembered, so that a miss on
//! it does not read the old entry back. Victims are chosen by a clock over
//! the group slots: a group used since the hand last passed gets another
//! round.

use super::groups::GroupId;
use crate::state::{Spill, Spiller};
use crate::Result;

/// Bytes a group holds beyond its stored entry (id maps, per-group vectors,
/// the row it emitted), as estimated for the budget.
const GROUP_OVERHEAD: usize = 64;

/// What an aggregate that spills keeps about its groups.
pub(super) struct Spilled {
    spiller: Spiller,
    /// Estimated bytes of each group in memory whose state is saved (0:
    /// no group, or one not saved yet).
    sizes: Vec<u32>,
    /// The save that last wrote each group's entry.
    saved_at: Vec<u64>,
    /// Whether each group was used since the clock hand last passed it.
    referenced: Vec<bool>,
    hand: usize,
}

impl Spilled {
    pub(super) fn new(spill: Spill) -> Self {
        Self {
            spiller: Spiller::new(spill),
            sizes: Vec::new(),
            saved_at: Vec::new(),
            referenced: Vec::new(),
            hand: 0,
        }
    }

    pub(super) fn resize(&mut self, slots: usize) {
        self.sizes.resize(slots, 0);
        self.saved_at.resize(slots, 0);
        self.referenced.resize(slots, false);
    }

    /// Group `group` was used.
    pub(super) fn touch(&mut self, group: GroupId) {
        self.referenced[group as usize] = true;
    }

    /// Group `group` was loaded from its durable entry of `bytes`.
    pub(super) fn loaded(&mut self, group: GroupId, bytes: usize) {
        self.set_size(group, bytes);
        self.saved_at[group as usize] = 0;
    }

    /// The stored entry `key` of a group not in memory, if the store may
    /// hold one.
    pub(super) fn read(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        match self.spiller.reader(key) {
            Some(reader) => reader.get(key),
            None => Ok(None),
        }
    }

    /// Group `group` was read back: its `bytes`-long entry is durable.
    pub(super) fn reloaded(&mut self, group: GroupId, bytes: usize) {
        self.loaded(group, bytes);
        self.spiller.reloaded();
    }

    /// The number of the save under way.
    pub(super) fn save(&self) -> u64 {
        self.spiller.budget().saving()
    }

    /// Group `group`'s entry of `bytes` is written by save `save`.
    pub(super) fn saved(&mut self, group: GroupId, bytes: usize, save: u64) {
        self.set_size(group, bytes);
        self.saved_at[group as usize] = save;
    }

    /// Group `group`, whose entry key is `key`, has no rows left.
    pub(super) fn released(&mut self, group: GroupId, key: Vec<u8>) {
        self.set_size(group, 0);
        self.spiller.deleted(key);
    }

    fn set_size(&mut self, group: GroupId, bytes: usize) {
        let size = if bytes == 0 {
            0
        } else {
            u32::try_from(bytes + GROUP_OVERHEAD).unwrap_or(u32::MAX)
        };
        let old = std::mem::replace(&mut self.sizes[group as usize], size);
        self.spiller.account(size as usize, old as usize);
    }

    /// The deletions not saved yet are written by save `save`; forget the
    /// deletions that are durable.
    pub(super) fn save_done(&mut self, save: u64) {
        self.spiller.saved(save);
    }

    /// Groups to let go of to bring what this aggregate holds within its
    /// share of the budget: saved by a durable save, and not used since the
    /// clock hand last passed them. They count as gone
    /// from memory: the caller must release them.
    pub(super) fn victims(&mut self) -> Vec<GroupId> {
        let target = self.spiller.target();
        let durable = self.spiller.budget().durable();
        let slots = self.sizes.len();
        let mut victims = Vec::new();
        let mut steps = 0;
        // Two rounds at most: the first may only take away second chances.
        while self.spiller.resident() > target && steps < 2 * slots {
            let g = self.hand;
            self.hand = (self.hand + 1) % slots;
            steps += 1;
            // Right after a save every change is saved: a group changed
            // since the last durable save is one saved since.
            if self.sizes[g] == 0 || self.saved_at[g] > durable {
                continue;
            }
            if std::mem::take(&mut self.referenced[g]) {
                continue;
            }
            // Its size goes to 0, so a later round does not take it again.
            self.set_size(g as GroupId, 0);
            victims.push(g as GroupId);
        }
        self.spiller.evicted(victims.len() as u64);
        victims
    }
}
