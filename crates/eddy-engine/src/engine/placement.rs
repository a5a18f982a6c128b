//! Which relations stay in memory under the memory budget.
//!
//! Tables and materialized views count against the same budget as
//! operator state. When what all of them hold is over it, the largest
//! stored relations (plain tables, keyed Kafka connector tables, and
//! materialized views whose contents are checkpointed) leave memory, largest first, until the rest fits: a
//! relation leaving memory records its changes by the checkpoint that
//! carries them, and once a checkpoint that holds everything it had before
//! is durable, it is read from a snapshot of the store taken right after
//! that checkpoint, plus the changes recorded since (see
//! [`crate::Relation`]). A table's key index goes with its rows: once
//! they are on disk, DML looks keys up there. A relation on disk stays
//! there; a restart under the budget leaves on disk what does not fit as
//! it loads.

use std::sync::Arc;

use eddy_state::StoreSnapshot;

use super::view_state::CONTENTS;
use super::Writer;
use crate::catalog::ObjectKind;
use crate::relation::Location;

impl Writer {
    /// Where relation `name`'s rows are stored, if all of them are, by
    /// row, as they change: a plain table's, a keyed Kafka connector
    /// table's (an append-only one stores a log of change sets instead) or
    /// a stored view's.
    pub(super) fn relation_location(&self, name: &str) -> Option<Location> {
        self.store.as_ref()?;
        if let Some(view) = self.stored_views.get(name) {
            return Some(Location {
                id: view.id,
                prefix: vec![CONTENTS],
            });
        }
        let entry = self.working.objects.get(name)?;
        let by_row = entry.connector.as_deref().is_none_or(|spec| {
            eddy_connectors::source::resumable(spec) && eddy_connectors::source::keyed(spec)
        });
        (entry.kind == ObjectKind::Table && by_row).then(|| Location {
            id: entry.created,
            prefix: Vec::new(),
        })
    }

    /// The last durable checkpoint's number and the store as it left it
    /// (before any checkpoint of this process: the store as opened).
    pub(super) fn durable_snapshot(&self) -> Option<(u64, Arc<StoreSnapshot>)> {
        self.checkpointer
            .as_ref()
            .and_then(|c| c.durable())
            .or_else(|| self.opened.clone().map(|s| (0, s)))
    }

    /// Bytes a relation being loaded at a restart may take before it is
    /// left on disk instead (`None`: no bound).
    pub(super) fn room(&self) -> Option<usize> {
        let limit = self.working.state_budget.as_ref()?.bounded()?;
        let held: usize = self.working.relations.keys().map(|n| self.held_by(n)).sum();
        Some(limit.saturating_sub(held))
    }

    /// Bytes relation `name` holds in memory: its rows and, for a table
    /// with a primary key, the keys its index holds.
    fn held_by(&self, name: &str) -> usize {
        let rows = self.working.relations.get(name).map_or(0, |r| r.bytes());
        rows + self.keys.get(name).map_or(0, |k| k.bytes())
            + self.message_keys.get(name).map_or(0, |m| m.bytes())
    }

    /// Account what relations hold against the budget, start the largest
    /// stored ones leaving memory while it is exceeded, and move those
    /// whose checkpoint is durable onto disk.
    pub(super) fn place_relations(&mut self) {
        let Some(budget) = self.working.state_budget.clone() else {
            return;
        };
        let held: usize = self.working.relations.keys().map(|n| self.held_by(n)).sum();
        budget.account(held, self.relation_bytes);
        self.relation_bytes = held;
        let leaving = self
            .working
            .relations
            .values()
            .any(|r| !r.in_memory() && !r.on_disk_now());
        let over = budget
            .bounded()
            .filter(|_| !leaving && !self.replaying)
            .map_or(0, |limit| budget.resident().saturating_sub(limit));
        if over > 0 {
            self.leave_memory(over);
        }
        if self
            .checkpointer
            .as_ref()
            .and_then(|c| c.durable())
            .is_some()
        {
            // Nothing reads the store as opened any more: let RocksDB drop
            // what only it kept.
            self.opened = None;
        }
        if let Some((durable, snapshot)) = self.durable_snapshot() {
            for relation in self.working.relations.values_mut() {
                relation.settle(durable, &snapshot);
            }
            for message_keys in self.message_keys.values_mut() {
                message_keys.settle(durable);
                if over > 0 {
                    // Read back from the store when their key comes again.
                    message_keys.let_go();
                }
            }
        }
        for (name, index) in &mut self.keys {
            if index.holds_keys()
                && self
                    .working
                    .relations
                    .get(name)
                    .is_some_and(|r| r.on_disk_now())
            {
                // The keys are looked up among the rows on disk now.
                index.let_go();
            }
        }
    }

    /// Start the largest stored relations in memory leaving it, until they
    /// add up to `over` bytes.
    fn leave_memory(&mut self, mut over: usize) {
        let mut candidates: Vec<(usize, String)> = self
            .working
            .relations
            .iter()
            .filter(|(_, r)| r.in_memory() && r.bytes() > 0)
            .map(|(name, _)| (self.held_by(name), name.clone()))
            .collect();
        candidates.sort_unstable_by(|a, b| b.cmp(a));
        // Changes not handed over yet go with the next checkpoint.
        let after = if self.pending.is_empty() && !self.view_contents_unsaved() {
            self.handed
        } else {
            self.handed + 1
        };
        for (bytes, name) in candidates {
            if over == 0 {
                break;
            }
            let Some(location) = self.relation_location(&name) else {
                continue;
            };
            if let Some(relation) = self.working.relations.get_mut(&name) {
                tracing::info!(relation = %name, bytes, "over the memory budget: leaves memory");
                relation.leave(after, location);
                over = over.saturating_sub(bytes);
            }
        }
    }
}
