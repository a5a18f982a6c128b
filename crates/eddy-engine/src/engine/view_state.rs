//! Materialized views whose operators' state is checkpointed.
//!
//! A durable engine stores, for a materialized view whose operators can all
//! save their state (see [`eddy_dataflow::state`]) and whose inputs are all
//! restored exactly at a restart (tables, Kafka sources, and views like
//! this one), what its operators hold and its contents, under the view's
//! creation number. Each checkpoint writes only the entries that changed
//! since the one before. A restart loads them into the view's new
//! operators and contents instead of feeding the view its inputs again,
//! and the view's readers go on after their stored positions: restart time
//! and storage follow the view's state, not the history of its input.
//!
//! A sink `AS` a query stores its operators' state the same way (it has no
//! contents): with an exactly-once sink's stored changes in the same
//! checkpoint, a restart neither repeats nor skips what its query read.
//!
//! Other views (over a view that does not store its state) are rebuilt
//! from their inputs at a restart; a view over sources then stores what its
//! readers took (see [`crate::ingest::Stored`]).
//!
//! Entries: operator state in the state family, behind [`OPERATOR`] and the
//! operator's position among the view's nodes; the plan the state belongs
//! to behind [`PLAN`]; the contents in the rows family behind [`CONTENTS`].

use eddy_common::{Error, Result};
use std::sync::Arc;

use eddy_dataflow::state::{Spill, StateReader};
use eddy_dataflow::NodeId;
use eddy_state::{Checkpoint, Store};

use super::{durable, Writer};
use crate::catalog::{CatalogEntry, ObjectKind};

/// Prefix of a view's operator state entries (then the operator's number
/// among the view's nodes, two bytes, then the operator's own key).
pub(crate) const OPERATOR: u8 = b's';
/// Key of the state entry holding the plan a view's operator state
/// belongs to, as EXPLAIN shows it.
pub(crate) const PLAN: u8 = b'p';
/// Prefix of a view's stored contents in the rows family. The scans of a
/// view over sources use the bytes below it.
pub(crate) const CONTENTS: u8 = u8::MAX;

/// A view whose operators' state is checkpointed.
pub(crate) struct StoredView {
    /// The view's creation number, which its entries are stored under.
    pub(crate) id: u64,
    /// The view's nodes, in the order their entries are numbered.
    nodes: Vec<NodeId>,
    /// The plan, until the first checkpoint after the view's creation
    /// stores it.
    plan: Option<String>,
    /// Changes of the view's contents since the last checkpoint, by row
    /// encoding, with the length of the key each is stored under: a row
    /// that changes in many epochs is written once.
    contents: hashbrown::HashMap<Box<[u8]>, (i64, usize)>,
    /// Whether the view's plan has a key (see [`eddy_planner::distinct_rows`]):
    /// each row is there once or not at all, so a checkpoint stores a
    /// changed row's count, which a restart reads without adding deltas up.
    distinct: bool,
}

impl StoredView {
    /// Record that the view's contents changed by `weight` copies of the
    /// row encoded as `row`, stored under its first `key` bytes.
    pub(crate) fn add_contents(&mut self, row: &[u8], key: usize, weight: i64) {
        match self.contents.get_mut(row) {
            Some((total, _)) => *total += weight,
            None => {
                self.contents.insert(row.into(), (weight, key));
            }
        }
    }
}

impl Writer {
    /// True if view `entry` (or a sink `AS` a query), whose operators are in
    /// the dataflow and which reads `inputs`, stores its operators' state.
    pub(super) fn stores_state<'a>(
        &self,
        entry: &CatalogEntry,
        mut inputs: impl Iterator<Item = &'a String>,
    ) -> bool {
        self.store.is_some()
            && (entry.kind == ObjectKind::MaterializedView
                || (entry.kind == ObjectKind::Sink && entry.plan.is_some()))
            && self.dataflow.checkpointable(&entry.name)
            && inputs.all(|input| {
                let Some(input) = self.working.objects.get(input) else {
                    return false;
                };
                let resumable = |e: &CatalogEntry| {
                    e.connector
                        .as_ref()
                        .is_some_and(|spec| eddy_connectors::source::resumable(spec))
                };
                match input.kind {
                    ObjectKind::Source => resumable(input),
                    ObjectKind::Table => input.connector.is_none() || resumable(input),
                    ObjectKind::MaterializedView => self.stored_views.contains_key(&input.name),
                    _ => false,
                }
            })
    }

    /// Start recording what the operators of view `entry` (rooted at
    /// `root`) change. While the catalog is replayed, load their state and
    /// the view's contents from the store instead: the view must then not
    /// be fed its inputs.
    pub(super) fn install_state(&mut self, entry: &CatalogEntry, root: NodeId) -> Result<()> {
        let nodes = self.dataflow.nodes_of(&entry.name);
        if nodes.len() > usize::from(u16::MAX) {
            return Err(Error::not_supported(format!(
                "a materialized view of more than {} operators in a durable database",
                u16::MAX
            )));
        }
        for (ordinal, node) in nodes.iter().enumerate() {
            let operator = self.dataflow.operator_mut(*node)?;
            operator.track_state();
            if let (Some(store), Some(budget)) = (&self.store, &self.working.state_budget) {
                operator.spill(Spill {
                    reader: Box::new(OperatorReader {
                        store: store.clone(),
                        id: entry.created,
                        prefix: operator_prefix(ordinal),
                    }),
                    budget: budget.clone(),
                    restored: self.replaying,
                });
            }
        }
        let mut plan = self.dataflow.explain(root)?;
        // The contents' encoding depends on their key: a restart that
        // derives another one must not read them.
        let key = self
            .working
            .relations
            .get(&entry.name)
            .map(|relation| relation.key_columns().to_vec())
            .unwrap_or_default();
        if !key.is_empty() {
            plan.push_str(&format!("\ncontents keyed by columns {key:?}"));
        }
        let distinct = entry.kind == ObjectKind::MaterializedView
            && entry.plan.as_deref().is_some_and(|plan| {
                eddy_planner::distinct_rows(plan, &|name| self.relation_key(name))
            });
        let mut view = StoredView {
            id: entry.created,
            nodes,
            plan: Some(plan),
            contents: hashbrown::HashMap::new(),
            distinct,
        };
        if self.replaying {
            self.load_state(entry, &mut view)?;
        }
        self.stored_views.insert(entry.name.clone(), view);
        Ok(())
    }

    /// A key of relation `name` as [`eddy_planner::distinct_rows`] takes
    /// it: a table's primary key (a keyed connector table's too), or every
    /// column of a stored view whose rows are distinct.
    pub(super) fn relation_key(&self, name: &str) -> Option<Vec<usize>> {
        let entry = self.working.objects.get(name)?;
        match entry.kind {
            ObjectKind::Table
                if !entry.primary_key.is_empty()
                    && entry
                        .connector
                        .as_deref()
                        .is_none_or(eddy_connectors::source::keyed) =>
            {
                Some(entry.primary_key.clone())
            }
            ObjectKind::MaterializedView if self.stored_views.get(name)?.distinct => {
                Some((0..entry.schema.fields().len()).collect())
            }
            _ => None,
        }
    }

    fn load_state(&mut self, entry: &CatalogEntry, view: &mut StoredView) -> Result<()> {
        let Some(store) = self.store.clone() else {
            return Ok(());
        };
        let plan = view.plan.take().unwrap_or_default();
        let mut stored_plan: Option<Vec<u8>> = None;
        store
            .state(view.id, &[PLAN], |_, value| {
                stored_plan = Some(value.to_vec())
            })
            .map_err(durable::storage_error)?;
        if stored_plan.as_deref() != Some(plan.as_bytes()) {
            return Err(Error::Storage(format!(
                "the stored state of materialized view \"{}\" belongs to another plan than this Eddy makes of it; drop the view and create it again",
                entry.name
            )));
        }
        let mut entries = 0u64;
        for (ordinal, node) in view.nodes.iter().enumerate() {
            let operator = self.dataflow.operator_mut(*node)?;
            // Each prefix the operator asks for; an operator that spills
            // reads the rest back when it needs them.
            let prefixes = operator
                .entries_to_load()
                .unwrap_or_else(|| vec![Vec::new()]);
            for prefix in prefixes {
                let within = [operator_prefix(ordinal).as_slice(), &prefix].concat();
                let mut failure: Option<Error> = None;
                let mut key = prefix.clone();
                store
                    .state(view.id, &within, |rest, value| {
                        if failure.is_none() {
                            entries += 1;
                            key.truncate(prefix.len());
                            key.extend_from_slice(rest);
                            failure = operator.load_state(&key, value).err();
                        }
                    })
                    .map_err(durable::storage_error)?;
                if let Some(error) = failure {
                    return Err(error);
                }
            }
        }
        for node in &view.nodes {
            self.dataflow.operator_mut(*node)?.state_loaded()?;
        }
        if entry.kind == ObjectKind::Sink {
            // A sink's query has no contents: what it wrote is in its topic.
            tracing::info!(sink = %entry.name, entries, "sink query state loaded");
            return Ok(());
        }
        let mut relation = self
            .working
            .relations
            .get(&entry.name)
            .cloned()
            .ok_or_else(|| Error::internal(format!("view {} has no contents", entry.name)))?;
        let room = self.room();
        let (rows, whole) =
            durable::read_rows(&store, view.id, &[CONTENTS], &mut relation, None, room)?;
        if !whole {
            let location = crate::relation::Location {
                id: view.id,
                prefix: vec![CONTENTS],
            };
            relation = self.left_on_disk(&entry.name, &relation, Some(location))?;
        }
        self.working.relations.insert(entry.name.clone(), relation);
        tracing::info!(view = %entry.name, entries, rows, "materialized view state loaded");
        Ok(())
    }

    /// True if a stored view's contents changed since the last checkpoint
    /// handed over.
    pub(super) fn view_contents_unsaved(&self) -> bool {
        self.stored_views.values().any(|v| !v.contents.is_empty())
    }

    /// Add to `checkpoint` what the contents and operators of stored views
    /// changed since the last checkpoint.
    pub(super) fn save_view_state(&mut self, checkpoint: &mut Checkpoint) -> Result<()> {
        let mut key = Vec::new();
        for view in self.stored_views.values_mut() {
            if let Some(plan) = view.plan.take() {
                checkpoint.put(view.id, &[PLAN], plan.as_bytes());
            }
            for (row, (weight, stored_key)) in view.contents.drain() {
                if weight == 0 {
                    continue;
                }
                key.clear();
                key.push(CONTENTS);
                key.extend_from_slice(&row);
                if !view.distinct {
                    if stored_key != row.len() {
                        return Err(Error::internal(format!(
                            "materialized view {} is keyed but its rows are not distinct",
                            view.id
                        )));
                    }
                    checkpoint.add_row(view.id, &key, weight);
                } else if weight.abs() == 1 {
                    // There before and after at most once: now once or not.
                    checkpoint.set_row(view.id, &key, 1 + stored_key, i64::from(weight > 0));
                } else {
                    return Err(Error::internal(format!(
                        "a row of a materialized view whose rows are distinct changed by {weight} copies"
                    )));
                }
            }
            for (ordinal, node) in view.nodes.iter().enumerate() {
                key.clear();
                key.extend_from_slice(&operator_prefix(ordinal));
                let prefix = key.len();
                let id = view.id;
                self.dataflow
                    .operator_mut(*node)?
                    .save_state(&mut |entry, value| {
                        key.truncate(prefix);
                        key.extend_from_slice(entry);
                        match value {
                            Some(value) => checkpoint.put(id, &key, value),
                            None => checkpoint.delete(id, &key),
                        }
                    })?;
            }
        }
        Ok(())
    }
}

/// The prefix of the state entries of the operator at `ordinal` among a
/// view's nodes (fewer than `u16::MAX`: checked at install).
fn operator_prefix(ordinal: usize) -> [u8; 3] {
    let [high, low] = u16::try_from(ordinal).unwrap_or(u16::MAX).to_be_bytes();
    [OPERATOR, high, low]
}

/// Reads back the state entries of one operator of a stored view that it
/// let go of.
struct OperatorReader {
    store: Arc<Store>,
    id: u64,
    prefix: [u8; 3],
}

impl StateReader for OperatorReader {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.store
            .get_state(self.id, &[self.prefix.as_slice(), key].concat())
            .map_err(durable::storage_error)
    }

    fn scan(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.store
            .state_under(self.id, &[self.prefix.as_slice(), prefix].concat())
            .map_err(durable::storage_error)
    }

    fn scan_from(
        &self,
        prefix: &[u8],
        start: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.store
            .state_from(
                self.id,
                &[self.prefix.as_slice(), prefix].concat(),
                start,
                limit,
            )
            .map_err(durable::storage_error)
    }
}
