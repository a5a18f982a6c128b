//! The engine: owns the dataflow and the catalog, applies writes one epoch
//! at a time and publishes snapshots for readers.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use datafusion::arrow::array::{Array, RecordBatch};
use datafusion::arrow::datatypes::SchemaRef;
use eddy_common::{ChangeBatch, Error, Result};
use eddy_dataflow::{Dataflow, NodeId};
use tokio::sync::{Mutex, MutexGuard};
use tracing::warn;

use crate::catalog::{CatalogEntry, ObjectKind, Snapshot};
use crate::ingest::{failure_of, Ingest, Reader};
use crate::sink::{consolidated, Outbox, SinkRunner, SinkSource};
use crate::Relation;
use eddy_connectors::sink::{ExactlyOnce, SinkProgress};
use eddy_connectors::spec::SourceSpec;
use eddy_state::{Checkpoint, Store};

mod checkpointer;
mod commit;
mod durable;
mod install;
mod keys;
mod message_keys;
mod placement;
mod upserts;
mod view_state;

use checkpointer::Checkpointer;
pub(crate) use durable::storage_error;
pub use durable::DurableOptions;
pub(crate) use upserts::Latest;

use keys::KeyIndex;
use view_state::StoredView;

/// A streaming database engine: tables, views and their maintained contents.
pub struct Engine {
    writer: Mutex<Writer>,
    committed: RwLock<Arc<Snapshot>>,
    ingest: Ingest,
    /// True with a data directory.
    durable: bool,
    /// How often streamed input is checkpointed (DDL and DML are made
    /// durable before they are acknowledged).
    pub(crate) checkpoint_interval: std::time::Duration,
}

/// Default of [`Engine::checkpoint_interval`].
pub const DEFAULT_CHECKPOINT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Prefix of the state entries that hold which primary key each Kafka
/// message key of an UPSERT connector table last set.
pub(crate) const MESSAGE_KEY: u8 = b'k';
/// Prefix of the state entries that hold a connector table's positions.
pub(crate) const POSITION: u8 = b'o';
/// Prefix of the state entries of a materialized view's scan of a source
/// (then the scan's number, then a position's or message key's entry).
pub(crate) const SCAN: u8 = b'i';
/// Prefix of the state entries that hold an append-only connector table's
/// rows: one Arrow IPC change set per epoch (then the epoch and a number
/// within it), so that a checkpoint writes a few large values rather than
/// a key per row.
pub(crate) const LOG: u8 = b'l';
/// Prefix of the state entries that hold an exactly-once sink's changes
/// of one checkpoint, until the sink has committed them.
pub(crate) const OUTBOX: u8 = b'x';
/// Prefix of the state entry that holds how many rows a stored relation
/// has (then the relation's prefix in the row family), written with the
/// rows, so that a relation a restart leaves on disk knows its size
/// without reading it.
pub(crate) const ROW_COUNT: u8 = b'n';

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").finish_non_exhaustive()
    }
}

/// State only the writer touches.
pub(crate) struct Writer {
    /// The state being built; equal to the committed snapshot between writes.
    working: Snapshot,
    pub(crate) dataflow: Dataflow,
    /// Readers of sources, one per materialized view and source it reads.
    pub(crate) readers: Vec<Reader>,
    /// Wakes the ingest loop; readers notify it when they queue rows.
    wake: Arc<tokio::sync::Notify>,
    /// The node that emits each table's or materialized view's changes.
    nodes: BTreeMap<String, NodeId>,
    /// Materialized view by the node whose output it integrates.
    roots: BTreeMap<NodeId, String>,
    keys: BTreeMap<String, KeyIndex>,
    /// Materialized views whose operators' state is checkpointed, by name.
    stored_views: BTreeMap<String, StoredView>,
    /// Running sinks.
    pub(crate) sinks: Vec<SinkRunner>,
    next_created: u64,
    /// The durable store, if the engine has a data directory.
    store: Option<Arc<Store>>,
    /// Writes the store's checkpoints.
    checkpointer: Option<Checkpointer>,
    /// The number of the last checkpoint handed to the checkpointer.
    handed: u64,
    /// The store as it was opened: what relations left on disk at a
    /// restart read until a checkpoint is written.
    opened: Option<Arc<eddy_state::StoreSnapshot>>,
    /// Bytes of relations last accounted against the memory budget.
    relation_bytes: usize,
    /// Changes to make durable at the next checkpoint.
    pub(crate) pending: Checkpoint,
    /// The epoch and number of the last change set logged for a connector
    /// table (see [`LOG`]).
    logged: (u64, u32),
    /// Readers took input since the last checkpoint.
    pub(crate) unsynced: bool,
    /// When the last checkpoint was written.
    last_checkpoint: std::time::Instant,
    /// True while the catalog is being rebuilt from the store (what is
    /// replayed is stored already).
    pub(crate) replaying: bool,
    /// Why the store failed, if it did; from then on no write commits.
    storage_failed: Option<String>,
    /// The definition of the object the current statement creates.
    definition: Option<String>,
    /// Which primary key each message key of an UPSERT connector table
    /// last set, by table.
    message_keys: BTreeMap<String, message_keys::MessageKeys>,
    /// The row counts last stored, by relation location (id, prefix).
    totals: BTreeMap<(u64, Vec<u8>), i64>,
    /// Where the readers the current statement starts begin, resolved
    /// before it took the writer (see [`WriteGuard::start_readers_at`]).
    start_at: Vec<StartAt>,
}

/// Where readers of a source that start now begin, as
/// [`eddy_connectors::source::start_positions`] resolved it (or why it
/// could not).
pub(crate) type StartAt = (
    SourceSpec,
    std::result::Result<Option<BTreeMap<String, i64>>, String>,
);

/// Exclusive access to the engine for one write (DDL or DML). Reads made
/// through [`WriteGuard::snapshot`] see the state the write applies to.
pub struct WriteGuard<'a> {
    engine: &'a Engine,
    writer: MutexGuard<'a, Writer>,
}

impl Default for Engine {
    fn default() -> Self {
        Self::new()
    }
}

impl Engine {
    /// An engine with an empty catalog, in memory only.
    pub fn new() -> Self {
        Self::with_store(None, DEFAULT_CHECKPOINT_INTERVAL)
    }

    fn with_store(
        store: Option<(Arc<Store>, Checkpointer)>,
        checkpoint_interval: std::time::Duration,
    ) -> Self {
        let (store, checkpointer) = match store {
            Some((store, checkpointer)) => (Some(store), Some(checkpointer)),
            None => (None, None),
        };
        let ingest = Ingest::default();
        Self {
            durable: store.is_some(),
            writer: Mutex::new(Writer {
                working: Snapshot::default(),
                dataflow: Dataflow::new(),
                readers: Vec::new(),
                wake: ingest.wake_handle(),
                nodes: BTreeMap::new(),
                roots: BTreeMap::new(),
                keys: BTreeMap::new(),
                stored_views: BTreeMap::new(),
                sinks: Vec::new(),
                next_created: 0,
                store,
                checkpointer,
                handed: 0,
                opened: None,
                relation_bytes: 0,
                pending: Checkpoint::default(),
                logged: (0, 0),
                unsynced: false,
                last_checkpoint: std::time::Instant::now(),
                replaying: false,
                start_at: Vec::new(),
                totals: BTreeMap::new(),
                message_keys: BTreeMap::new(),
                storage_failed: None,
                definition: None,
            }),
            committed: RwLock::new(Arc::new(Snapshot::default())),
            ingest,
            checkpoint_interval,
        }
    }

    pub(crate) fn ingest(&self) -> &Ingest {
        &self.ingest
    }

    /// True if the engine stores what it commits (it has a data directory).
    pub(crate) fn is_durable(&self) -> bool {
        self.durable
    }

    /// True if a sink that writes `spec` from `depends_on` (through a
    /// `query` of its own, or a relation's rows) is exactly once: the engine
    /// is durable, everything the sink reads comes back as checkpointed
    /// after a restart, and the options do not turn it off.
    pub(crate) fn sink_exactly_once(
        &self,
        snapshot: &Snapshot,
        spec: &SourceSpec,
        depends_on: &[String],
        query: bool,
    ) -> Result<bool> {
        Ok(self.durable
            && snapshot.restorable(depends_on, query)
            && eddy_connectors::sink::wants_exactly_once(spec).map_err(crate::connector_error)?)
    }

    /// The last committed snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        match self.committed.read() {
            Ok(snapshot) => snapshot.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Wait for exclusive write access.
    pub async fn write(&self) -> WriteGuard<'_> {
        let mut writer = self.writer.lock().await;
        writer.definition = None;
        WriteGuard {
            engine: self,
            writer,
        }
    }

    fn publish(&self, snapshot: Snapshot) {
        let snapshot = Arc::new(snapshot);
        match self.committed.write() {
            Ok(mut committed) => *committed = snapshot,
            Err(poisoned) => *poisoned.into_inner() = snapshot,
        }
    }
}

impl WriteGuard<'_> {
    /// The state this write applies to (the last committed one).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        Arc::new(self.writer.working.clone())
    }

    /// Say which statement this write executes: an object it creates is
    /// stored with `definition`, from which a restart creates it again.
    pub fn define(&mut self, definition: String) {
        self.writer.definition = Some(definition);
        self.writer.start_at.clear();
    }

    /// Where readers of the sources in `starts` that this statement starts
    /// begin: resolved before the statement took the writer, as it may ask
    /// a broker, which can take seconds while nothing else could write.
    /// Readers of other sources resolve their start here.
    pub(crate) fn start_readers_at(&mut self, starts: Vec<StartAt>) {
        self.writer.start_at = starts;
    }

    /// True if the engine stores what it commits (it has a data directory).
    pub fn is_durable(&self) -> bool {
        self.writer.store.is_some()
    }

    /// Create a table holding `rows` (`CREATE TABLE AS`), committed as one
    /// epoch. Returns the number of rows.
    pub fn create_table_as(
        &mut self,
        name: &str,
        schema: SchemaRef,
        primary_key: Vec<usize>,
        rows: RecordBatch,
    ) -> Result<u64> {
        self.add_table(name, schema, primary_key, vec![])?;
        if rows.num_rows() == 0 {
            self.commit()?;
            return Ok(0);
        }
        let written = self.write_table(name, ChangeBatch::inserts(rows));
        if written.is_err() {
            self.writer.uninstall(name);
            self.writer.working.objects.remove(name);
        }
        written
    }

    /// Create a table (empty) and commit.
    pub fn create_table(
        &mut self,
        name: &str,
        schema: SchemaRef,
        primary_key: Vec<usize>,
        column_defaults: Vec<(String, datafusion::logical_expr::Expr)>,
    ) -> Result<()> {
        self.add_table(name, schema, primary_key, column_defaults)?;
        self.commit()
    }

    /// Add an empty table to the working catalog, not committed yet.
    fn add_table(
        &mut self,
        name: &str,
        schema: SchemaRef,
        primary_key: Vec<usize>,
        column_defaults: Vec<(String, datafusion::logical_expr::Expr)>,
    ) -> Result<()> {
        self.check_free(name)?;
        let writer = &mut *self.writer;
        let entry = CatalogEntry {
            primary_key,
            column_defaults,
            ..writer.new_entry(name, ObjectKind::Table, schema.clone())
        };
        writer.install_table(&entry)?;
        writer.working.relations.insert(
            name.to_string(),
            Relation::keyed(schema, &entry.primary_key)?,
        );
        writer
            .working
            .objects
            .insert(name.to_string(), Arc::new(entry));
        Ok(())
    }

    /// Create a table fed by a connector (`CREATE TABLE ... WITH
    /// (connector = ...)`): its reader starts now, and the table holds
    /// what the reader's changes add up to. Commits.
    pub fn create_connector_table(
        &mut self,
        name: &str,
        schema: SchemaRef,
        primary_key: Vec<usize>,
        spec: SourceSpec,
    ) -> Result<()> {
        self.check_free(name)?;
        let writer = &mut *self.writer;
        let spec = Arc::new(spec);
        let entry = CatalogEntry {
            primary_key,
            connector: Some(spec.clone()),
            ..writer.new_entry(name, ObjectKind::Table, schema.clone())
        };
        let started = writer.start_connector_table(&entry, &spec);
        self.register(entry, started)
    }

    /// Create a named query (not maintained) and commit.
    pub fn create_view(
        &mut self,
        name: &str,
        query: String,
        schema: SchemaRef,
        depends_on: Vec<String>,
    ) -> Result<()> {
        self.check_free(name)?;
        let writer = &mut *self.writer;
        let entry = CatalogEntry {
            query: Some(query),
            depends_on,
            ..writer.new_entry(name, ObjectKind::View, schema)
        };
        writer
            .working
            .objects
            .insert(name.to_string(), Arc::new(entry));
        self.commit()
    }

    /// Create a source read through a connector (nothing is read until a
    /// materialized view reads it) and commit.
    pub fn create_source(&mut self, name: &str, schema: SchemaRef, spec: SourceSpec) -> Result<()> {
        self.check_free(name)?;
        let writer = &mut *self.writer;
        let entry = CatalogEntry {
            connector: Some(Arc::new(spec)),
            ..writer.new_entry(name, ObjectKind::Source, schema)
        };
        writer
            .working
            .objects
            .insert(name.to_string(), Arc::new(entry));
        self.commit()
    }

    /// Create a materialized view maintained from the optimized `plan`, fill
    /// it from the current contents of its inputs, and commit.
    pub fn create_materialized_view(
        &mut self,
        name: &str,
        query: String,
        plan: datafusion::logical_expr::LogicalPlan,
        depends_on: Vec<String>,
    ) -> Result<()> {
        self.check_free(name)?;
        let writer = &mut *self.writer;
        let schema = eddy_dataflow::schema::nullable(plan.schema().as_arrow());
        let entry = CatalogEntry {
            query: Some(query),
            plan: Some(Arc::new(plan)),
            depends_on,
            ..writer.new_entry(name, ObjectKind::MaterializedView, schema)
        };
        let installed = writer.install_plan(&entry);
        self.register(entry, installed)
    }

    /// Create a sink writing out `input` (a table or materialized view, by
    /// name) or, with a `plan`, the rows of a query; start it with the
    /// input's current rows and commit.
    pub fn create_sink(
        &mut self,
        name: &str,
        spec: SourceSpec,
        schema: SchemaRef,
        input: SinkSource,
    ) -> Result<()> {
        self.check_free(name)?;
        let writer = &mut *self.writer;
        let spec = Arc::new(spec);
        let (plan, query, depends_on) = match input {
            SinkSource::Relation(relation) => (None, None, vec![relation]),
            SinkSource::Query {
                query,
                plan,
                depends_on,
            } => (Some(Arc::new(plan)), Some(query), depends_on),
        };
        let entry = CatalogEntry {
            connector: Some(spec.clone()),
            query,
            plan,
            depends_on,
            ..writer.new_entry(name, ObjectKind::Sink, schema.clone())
        };
        let target = spec.options.get("topic").cloned().unwrap_or_default();
        let progress = Arc::new(SinkProgress::new(name, &target));
        let exactly_once = self.engine.sink_exactly_once(
            &writer.working,
            &spec,
            &entry.depends_on,
            entry.plan.is_some(),
        )?;
        let (outbox, exactly_once) = match (&writer.store, exactly_once) {
            (Some(store), true) => {
                let (kept, unconfirmed) = writer.stored_outbox(entry.created)?;
                let id = format!("eddy-{:016x}-sink-{}", store.instance(), entry.created);
                let outbox = Outbox {
                    id: entry.created,
                    unflushed: Vec::new(),
                    kept,
                };
                (Some(outbox), Some(ExactlyOnce { id, unconfirmed }))
            }
            _ => (None, None),
        };
        let handle = eddy_connectors::sink::open(&spec, &schema, progress.clone(), exactly_once)
            .map_err(crate::connector_error)?;
        let input = match entry.plan {
            Some(_) => name.to_string(),
            None => entry.depends_on.first().cloned().unwrap_or_default(),
        };
        let mut runner = SinkRunner::new(name, &input, handle);
        runner.outbox = outbox;
        writer.sinks.push(runner);
        writer.working.sink_progress.push(progress);
        let installed = match &entry.plan {
            Some(_) => writer.install_plan(&entry),
            None => writer.start_from_relation(name, &input),
        };
        if writer.replaying {
            // An exactly-once sink sent (or keeps) everything up to the
            // checkpoint its inputs are back at: the refill is not news.
            if let Some(runner) = writer
                .sinks
                .iter_mut()
                .find(|s| s.name == name && s.outbox.is_some())
            {
                runner.pending.clear();
            }
        }
        self.register(entry, installed)
    }

    /// Finish creating `entry` whose operators, readers or sink were
    /// `installed`: add it to the catalog and commit, or, if installing
    /// failed, remove what was installed of it (nothing else was touched).
    fn register(&mut self, entry: CatalogEntry, installed: Result<()>) -> Result<()> {
        if let Err(error) = installed {
            self.writer.uninstall(&entry.name);
            // Nothing of an object that was not created is stored.
            self.writer.pending.clear_object(entry.created);
            return Err(error);
        }
        self.writer
            .working
            .objects
            .insert(entry.name.clone(), Arc::new(entry));
        self.commit()
    }

    /// Drop every object in `names` (and, with `cascade`, everything that
    /// reads them) and commit, or drop nothing if any of them cannot be
    /// dropped. Returns the names dropped.
    pub fn drop_objects(
        &mut self,
        names: &[String],
        kind: ObjectKind,
        cascade: bool,
    ) -> Result<Vec<String>> {
        let working = &self.writer.working;
        let mut order: Vec<String> = Vec::new();
        for name in names {
            let Some(entry) = working.objects.get(name) else {
                return Err(match kind {
                    ObjectKind::View => {
                        Error::plan("42P01", format!("view \"{name}\" does not exist"))
                    }
                    ObjectKind::MaterializedView => Error::plan(
                        "42P01",
                        format!("materialized view \"{name}\" does not exist"),
                    ),
                    ObjectKind::Table => Error::UndefinedTable(name.to_string()),
                    ObjectKind::Source => {
                        Error::plan("42P01", format!("source \"{name}\" does not exist"))
                    }
                    ObjectKind::Sink => {
                        Error::plan("42704", format!("sink \"{name}\" does not exist"))
                    }
                });
            };
            if entry.kind != kind {
                return Err(Error::WrongObjectType {
                    name: name.to_string(),
                    expected: kind.as_sql(),
                });
            }
            if !order.contains(name) {
                order.push(name.clone());
            }
        }
        let mut index = 0;
        while index < order.len() {
            let dependents: Vec<&CatalogEntry> = working
                .dependents(&order[index])
                .into_iter()
                .filter(|e| !order.contains(&e.name))
                .collect();
            if !cascade && !dependents.is_empty() {
                let object = working
                    .objects
                    .get(&order[index])
                    .map_or("relation", |e| e.kind.as_sql());
                let detail = dependents
                    .iter()
                    .map(|d| {
                        format!(
                            "{} {} depends on {object} {}",
                            d.kind.as_sql(),
                            d.name,
                            order[index]
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n");
                return Err(Error::DependentObjects {
                    object: format!("{object} {}", order[index]),
                    detail: format!(
                        "{detail}\nHINT:  Use DROP ... CASCADE to drop the dependent objects too."
                    ),
                });
            }
            order.extend(dependents.into_iter().map(|d| d.name.clone()));
            index += 1;
        }
        for dropped in order.iter().rev() {
            self.writer.uninstall(dropped);
            self.writer.working.objects.remove(dropped);
        }
        self.commit()?;
        Ok(order)
    }

    /// Apply changes to a table, maintain every view, and commit them as one
    /// epoch. Returns the number of rows changed.
    pub fn write_table(&mut self, table: &str, changes: ChangeBatch) -> Result<u64> {
        let writer = &mut *self.writer;
        let entry = writer
            .working
            .objects
            .get(table)
            .cloned()
            .ok_or_else(|| Error::UndefinedTable(table.to_string()))?;
        if entry.kind != ObjectKind::Table {
            return Err(Error::plan(
                "42809",
                format!("cannot change {} \"{table}\"", entry.kind.as_sql()),
            ));
        }
        if let Some(spec) = &entry.connector {
            return Err(Error::plan(
                "42809",
                format!(
                    "cannot change table \"{table}\": it is fed by connector '{}'",
                    spec.connector()
                ),
            ));
        }
        let changes = conform(&changes, &entry.schema)?.consolidate()?;
        if changes.is_empty() {
            return Ok(0);
        }
        check_not_null(&entry, &changes)?;
        let mut relation = writer
            .working
            .relations
            .get(table)
            .cloned()
            .ok_or_else(|| Error::internal(format!("table {table} has no contents")))?;
        let key_deltas = match writer.keys.get(table) {
            Some(index) => Some(index.check(&entry, &changes, &relation)?),
            None => None,
        };
        relation.apply(&changes)?;
        let node = *writer
            .nodes
            .get(table)
            .ok_or_else(|| Error::internal(format!("table {table} has no dataflow node")))?;
        let changed: u64 = changes.weights().iter().map(|w| w.unsigned_abs()).sum();
        writer.dataflow.push(node, changes.clone())?;
        let result = writer
            .dataflow
            .step()
            .and_then(|output| writer.integrate(output));
        if let Err(error) = result {
            self.rollback(table, &error);
            return Err(error);
        }
        let writer = &mut *self.writer;
        if writer.store.is_some() {
            // Under a primary key a row is there at most once, so a change
            // sets its count (1 or 0), which a read need not add up.
            let keyed = key_deltas.is_some();
            let rows = relation.encode(&changes)?;
            let keys = relation.stored_keys(&changes, &rows)?;
            for ((row, weight), key) in rows.iter().zip(changes.weights()).zip(keys) {
                if keyed {
                    let count = i64::from(*weight > 0);
                    writer
                        .pending
                        .set_row(entry.created, row.data(), key, count);
                } else {
                    writer.pending.add_row(entry.created, row.data(), *weight);
                }
            }
        }
        writer.working.relations.insert(table.to_string(), relation);
        if let (Some(deltas), Some(index)) = (key_deltas, writer.keys.get_mut(table)) {
            index.apply(deltas);
        }
        self.commit()?;
        Ok(changed)
    }

    fn check_free(&self, name: &str) -> Result<()> {
        if self.writer.working.objects.contains_key(name) {
            return Err(Error::DuplicateTable(name.to_string()));
        }
        Ok(())
    }

    pub(crate) fn writer_mut(&mut self) -> &mut Writer {
        &mut self.writer
    }

    /// Forget a failed write to `table`: go back to the committed snapshot
    /// and rebuild the views downstream of the table from their inputs
    /// (their operators may hold half an epoch). A view that reads a source
    /// cannot be refilled (sources are not stored): it fails with `cause`.
    fn rollback(&mut self, table: &str, cause: &Error) {
        let committed = self.engine.snapshot();
        let writer = &mut *self.writer;
        writer.working = committed.as_ref().clone();
        writer.dataflow.clear_pending();
        for sink in &mut writer.sinks {
            sink.pending.clear();
        }
        let affected = committed.downstream(table);
        for entry in &affected {
            if writer.stored_views.contains_key(&entry.name) {
                // Rebuilt below, and stored again in full.
                writer.pending.clear_object(entry.created);
            }
            writer.stop(&entry.name);
        }
        for entry in affected {
            if entry.failure.is_some() {
                continue;
            }
            if committed.reads_source(&entry.name) {
                writer.fail_view(&entry.name, cause);
                continue;
            }
            if entry.kind == ObjectKind::Sink && entry.plan.is_none() {
                // Reads a relation's node; nothing of its own to rebuild.
                continue;
            }
            writer.working.relations.remove(&entry.name);
            if let Err(error) = writer.install_plan(&entry) {
                warn!(view = %entry.name, %error, "rebuilding a view after a failed write failed");
                writer.fail_view(&entry.name, &error);
            }
        }
        // Rebuilt views refill themselves; sinks have sent those rows.
        for sink in &mut writer.sinks {
            sink.pending.clear();
        }
    }
}

impl Writer {
    /// A catalog entry of `kind` created now, with nothing else set.
    fn new_entry(&mut self, name: &str, kind: ObjectKind, schema: SchemaRef) -> CatalogEntry {
        let created = self.next_created;
        self.next_created += 1;
        CatalogEntry {
            name: name.to_string(),
            kind,
            schema,
            primary_key: vec![],
            column_defaults: vec![],
            query: None,
            plan: None,
            depends_on: vec![],
            created,
            connector: None,
            failure: None,
            definition: self.definition.take(),
        }
    }

    /// Forget an object's operators, readers, contents, key index and sink.
    pub(crate) fn uninstall(&mut self, name: &str) {
        self.stop(name);
        self.sinks.retain(|sink| sink.name != name);
        self.working.sink_progress.retain(|p| p.sink() != name);
        self.keys.remove(name);
        self.message_keys.remove(name);
        self.working.relations.remove(name);
        self.working.source_errors.remove(name);
    }

    /// Remove an object's operators and readers (not its contents, not a
    /// sink's connection).
    fn stop(&mut self, name: &str) {
        self.dataflow.remove_owner(name);
        self.stored_views.remove(name);
        self.readers.retain(|reader| reader.view != name);
        self.working.progress.retain(|p| p.view() != name);
        if let Some(node) = self.nodes.remove(name) {
            self.roots.remove(&node);
        }
    }

    /// Stop maintaining a materialized view (or sink): reads of it fail
    /// with `error` from now on. Its operators and readers go, and so do
    /// the sinks that write it out.
    pub(crate) fn fail_view(&mut self, name: &str, error: &Error) {
        self.stop(name);
        if let Some(entry) = self.working.objects.get(name) {
            let mut entry = entry.as_ref().clone();
            entry.failure = Some(failure_of(error));
            self.working
                .objects
                .insert(name.to_string(), Arc::new(entry));
        }
        let reading: Vec<String> = self
            .working
            .downstream(name)
            .into_iter()
            .filter(|e| e.kind == ObjectKind::Sink)
            .map(|e| e.name.clone())
            .collect();
        self.sinks.retain(|sink| {
            let failed = sink.name == name || reading.contains(&sink.name);
            if failed {
                let cause = if sink.name == name {
                    error.to_string()
                } else {
                    format!("\"{name}\" failed: {error}")
                };
                sink.handle
                    .progress()
                    .set_status(format!("failed: {cause}"));
            }
            !failed
        });
    }
}

/// Cast `changes` to the table's column types and field names.
fn conform(changes: &ChangeBatch, schema: &SchemaRef) -> Result<ChangeBatch> {
    let data = changes.data();
    if data.num_columns() != schema.fields().len() {
        return Err(Error::internal(
            "written rows do not have the table's columns",
        ));
    }
    let columns = data
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| {
            if c.data_type() == f.data_type() {
                Ok(c.clone())
            } else {
                Ok(datafusion::arrow::compute::cast(c, f.data_type())?)
            }
        })
        .collect::<Result<Vec<_>>>()?;
    let target = eddy_dataflow::schema::nullable(schema);
    changes.with_data(RecordBatch::try_new(target, columns)?)
}

fn check_not_null(entry: &CatalogEntry, changes: &ChangeBatch) -> Result<()> {
    for (index, field) in entry.schema.fields().iter().enumerate() {
        if field.is_nullable() {
            continue;
        }
        let column = changes.data().column(index);
        if column.null_count() == 0 {
            continue;
        }
        let inserted_null = changes
            .weights()
            .iter()
            .enumerate()
            .any(|(row, weight)| *weight > 0 && column.is_null(row));
        if inserted_null {
            return Err(Error::NotNullViolation {
                table: entry.name.clone(),
                column: field.name().clone(),
            });
        }
    }
    Ok(())
}
