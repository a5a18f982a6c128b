//! A durable engine: what a checkpoint writes to the store, and how a
//! restart rebuilds the engine from it.
//!
//! The catalog is stored as the statements that created its objects, keyed
//! by creation number; a restart executes them again in that order, so
//! every object is planned and started as it was. A table's rows are loaded
//! right after its `CREATE TABLE` is replayed, before anything that reads
//! it is created again, so a materialized view is filled from the table's
//! last checkpointed rows just as at its original `CREATE`. A Kafka
//! connector table also gets its reader's positions back, so its reader
//! goes on right after the last message the checkpoint holds (an UPSERT
//! table's message keys are read back one by one as they come again, see
//! `message_keys`). A materialized view
//! that reads a Kafka source stores what each of its readers took the same
//! way, under the view's number; a restart fills the view's scan nodes
//! with those rows and its readers go on after their positions.
//!
//! An exactly-once sink's changes are stored by the checkpoint that makes
//! them durable, as an Arrow IPC stream (the rows plus a weight column),
//! and handed to the sink only after it; they stay stored until the sink
//! reports that checkpoint committed. A restart gives the sink the ones
//! still stored, and the sink writes again those after its own progress.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{Array, Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;
use eddy_common::row::RowCodec;
use eddy_common::{ChangeBatch, Error, Result};
use eddy_connectors::sink::{SinkChanges, SinkSender};
use eddy_connectors::source::Resume;
use eddy_dataflow::state::StateBudget;
use eddy_dataflow::NodeId;
use eddy_state::{Checkpoint, CheckpointInfo, ObjectRecord, Store, StoreSnapshot};
use tracing::{info, warn};

use super::keys::KeyIndex;
use super::view_state::CONTENTS;
use super::{consolidated, Engine, Writer, LOG, OUTBOX, POSITION, ROW_COUNT, SCAN};
use crate::catalog::{CatalogEntry, Failure, ObjectKind, Snapshot};
use crate::ingest::{SourceScan, Stored};
use crate::relation::Location;
use crate::Relation;
use crate::Session;

mod load;

pub(super) use load::read_rows;
use load::LOAD_QUEUE;

/// How a durable engine runs.
#[derive(Debug, Clone)]
pub struct DurableOptions {
    /// How often streamed input is checkpointed.
    pub checkpoint_interval: Duration,
    /// Bytes of saved operator state kept in memory (`None`: all of it);
    /// the rest is read back from the store when needed.
    pub memory_budget: Option<usize>,
}

impl Default for DurableOptions {
    fn default() -> Self {
        Self {
            checkpoint_interval: super::DEFAULT_CHECKPOINT_INTERVAL,
            memory_budget: None,
        }
    }
}

impl Engine {
    /// An engine over `store`: every object stored there is created again
    /// and every table gets its stored rows back. An object whose
    /// definition fails now (a descriptor file that is gone, say) is kept
    /// in the catalog as failed, under its name: reading it fails with the
    /// cause, objects over it fail too, `DROP` removes it, and it stays
    /// stored, so a later restart tries it again.
    /// Streamed input is checkpointed and state kept in memory as
    /// `options` say.
    pub async fn open(store: Store, options: DurableOptions) -> Result<Arc<Engine>> {
        let started = Instant::now();
        let store = Arc::new(store);
        let records = store.objects().map_err(storage_error)?;
        let last = store.last_checkpoint().map_err(storage_error)?;
        let budget = options
            .memory_budget
            .map(|limit| Arc::new(StateBudget::new(limit)));
        let checkpointer = super::Checkpointer::start(store.clone(), budget.clone())?;
        let engine = Arc::new(Engine::with_store(
            Some((store, checkpointer)),
            options.checkpoint_interval,
        ));
        {
            let mut guard = engine.write().await;
            guard.writer.replaying = true;
            guard.writer.working.state_budget = budget;
            guard.writer.opened = guard.writer.store.as_ref().map(|s| Arc::new(s.snapshot()));
            if let Some(checkpoint) = &last {
                // Epochs go on from the last durable one.
                guard.writer.working.epoch = checkpoint.epoch;
                guard.writer.working.checkpoint = Some(checkpoint.clone());
            }
        }
        let session = Session::restoring(engine.clone())?;
        let mut rows = 0u64;
        let mut skipped = 0usize;
        for record in &records {
            engine.write().await.writer.next_created = record.id;
            let (_, error) = session.execute_sql(&record.definition).await;
            let mut guard = engine.write().await;
            match error {
                Some(error) => {
                    skipped += 1;
                    warn!(object = %record.name, %error, "a stored object could not be created again; it is kept as failed (reads of it fail, DROP removes it) and tried again at the next start");
                    guard.writer.hold_failed(record, &error);
                }
                None => {
                    let entry = guard.writer.working.objects.get(&record.name).cloned();
                    if let Some(entry) = entry.filter(|e| e.kind == ObjectKind::Table) {
                        if entry.connector.is_none() {
                            rows += guard.writer.load_rows(&entry)?;
                        }
                    }
                }
            }
        }
        let mut guard = engine.write().await;
        if let Some(store) = &guard.writer.store {
            // The state is back: the store may compact again.
            store.start_compactions().map_err(storage_error)?;
        }
        let next = records.last().map_or(0, |r| r.id + 1);
        guard.writer.replaying = false;
        guard.writer.next_created = guard.writer.next_created.max(next);
        let epoch = guard.writer.working.epoch;
        guard.engine.publish(guard.writer.working.clone());
        // What readers queued while the catalog came back waited for this.
        guard.writer.wake.notify_one();
        drop(guard);
        info!(
            objects = records.len() - skipped,
            skipped,
            rows,
            epoch,
            elapsed = ?started.elapsed(),
            "recovered from the data directory"
        );
        Ok(engine)
    }
}

impl Writer {
    /// Keep stored object `record`, which could not be created again, in
    /// the catalog as failed with `error`, so that its name stays taken and
    /// what it is shows.
    fn hold_failed(&mut self, record: &ObjectRecord, error: &Error) {
        let Some(kind) = defined_kind(&record.definition) else {
            return;
        };
        if self.working.objects.contains_key(&record.name) {
            return;
        }
        let entry = CatalogEntry {
            name: record.name.clone(),
            kind,
            schema: Arc::new(Schema::empty()),
            primary_key: Vec::new(),
            column_defaults: Vec::new(),
            query: None,
            plan: None,
            depends_on: Vec::new(),
            created: record.id,
            connector: None,
            failure: Some(Failure {
                code: error.sqlstate(),
                message: format!("it could not be created again when Eddy started: {error}"),
            }),
            definition: Some(record.definition.clone()),
        };
        self.working
            .objects
            .insert(record.name.clone(), Arc::new(entry));
    }

    /// Load the stored rows of table `entry` (nothing reads it yet) into
    /// its contents and key index. Returns the number of rows loaded.
    ///
    /// The key index is built on a thread of its own from the decoded
    /// rows, while this one reads on.
    fn load_rows(&mut self, entry: &CatalogEntry) -> Result<u64> {
        let Some(store) = self.store.clone() else {
            return Ok(0);
        };
        let mut relation = self
            .working
            .relations
            .get(&entry.name)
            .cloned()
            .ok_or_else(|| Error::internal(format!("table {} has no contents", entry.name)))?;
        let index = match entry.connector {
            None => self.keys.remove(&entry.name),
            Some(_) => None,
        };
        // What is not stored by row (an append-only connector table's log)
        // cannot be read from disk.
        let room = self
            .relation_location(&entry.name)
            .and_then(|_| self.room());
        let ((loaded, whole), index) = std::thread::scope(|scope| -> Result<_> {
            let Some(mut index) = index else {
                return Ok((
                    read_rows(&store, entry.created, &[], &mut relation, None, room)?,
                    None,
                ));
            };
            let (keys, received) = std::sync::mpsc::sync_channel::<ChangeBatch>(LOAD_QUEUE);
            let indexer = std::thread::Builder::new()
                .name("eddy-load-keys".into())
                .spawn_scoped(scope, move || -> Result<KeyIndex> {
                    for changes in received {
                        index.load(entry, &changes)?;
                    }
                    Ok(index)
                })
                .map_err(|error| {
                    Error::internal(format!("no thread to build a key index on: {error}"))
                })?;
            let read = read_rows(&store, entry.created, &[], &mut relation, Some(&keys), room);
            // Once the sender is gone the index has every row.
            drop(keys);
            let index = indexer
                .join()
                .map_err(|_| Error::internal("the key index thread panicked"))?;
            // A failed index explains a failed read: its rows went nowhere.
            let index = index?;
            Ok((read?, Some(index)))
        })?;
        let mut whole = whole;
        if let Some(mut index) = index {
            whole &= room.is_none_or(|room| relation.bytes() + index.bytes() <= room);
            if !whole {
                // Keys are looked up among the rows on disk.
                index.let_go();
            }
            self.keys.insert(entry.name.clone(), index);
        }
        if !whole {
            let location = self.relation_location(&entry.name);
            relation = self.left_on_disk(&entry.name, &relation, location)?;
        }
        self.working.relations.insert(entry.name.clone(), relation);
        Ok(loaded)
    }

    /// Store how many rows each stored relation has where that changed
    /// (see [`ROW_COUNT`]), with the rows that changed it.
    fn save_totals(&mut self, checkpoint: &mut Checkpoint) {
        for (name, relation) in &self.working.relations {
            let (Some(location), Some(total)) = (self.relation_location(name), relation.total())
            else {
                continue;
            };
            let slot = (location.id, location.prefix);
            if self.totals.get(&slot) != Some(&total) {
                let key = [&[ROW_COUNT], slot.1.as_slice()].concat();
                checkpoint.put(slot.0, &key, &total.to_be_bytes());
                self.totals.insert(slot, total);
            }
        }
    }

    /// The number of rows stored at `location` as of `snapshot`, if the
    /// store recorded it.
    fn stored_total(snapshot: &StoreSnapshot, location: &Location) -> Result<Option<i64>> {
        let key = [&[ROW_COUNT], location.prefix.as_slice()].concat();
        let value = snapshot
            .state_value(location.id, &key)
            .map_err(storage_error)?;
        value
            .map(|value| {
                <[u8; 8]>::try_from(value.as_slice())
                    .map(i64::from_be_bytes)
                    .map_err(|_| Error::Storage("a stored row count does not decode".into()))
            })
            .transpose()
    }

    /// Relation `name` (loaded as `loaded` until it outgrew its room at a
    /// restart) read from `location` in the store as opened.
    pub(super) fn left_on_disk(
        &self,
        name: &str,
        loaded: &Relation,
        location: Option<Location>,
    ) -> Result<Relation> {
        let (Some(location), Some((durable, snapshot))) = (location, self.durable_snapshot())
        else {
            return Err(Error::internal(format!(
                "{name} outgrew the memory budget but is not stored"
            )));
        };
        info!(relation = %name, "over the memory budget: left on disk");
        let total = Self::stored_total(&snapshot, &location)?;
        Ok(Relation::on_disk(
            loaded, durable, snapshot, location, total,
        ))
    }

    /// What the last checkpoint holds of connector table `entry`: its rows
    /// (loaded into its contents) and positions.
    pub(super) fn resume_connector_table(&mut self, entry: &CatalogEntry) -> Result<Resume> {
        let Some(store) = self.store.clone() else {
            return Ok(Resume::default());
        };
        self.load_rows(entry)?;
        self.load_log(&store, entry)?;
        let mut resume = Resume::default();
        read_positions(&store, entry, &[], &mut resume)?;
        info!(table = %entry.name, positions = ?resume.positions, "connector table resumes");
        Ok(resume)
    }

    /// Apply the change sets stored in the log of connector table `entry`
    /// (see [`super::LOG`]) to its contents.
    fn load_log(&mut self, store: &Store, entry: &CatalogEntry) -> Result<()> {
        let Some(relation) = self.working.relations.get_mut(&entry.name) else {
            return Ok(());
        };
        let mut failure: Option<Error> = None;
        store
            .state(entry.created, &[LOG], |_, value| {
                if failure.is_some() {
                    return;
                }
                let applied = decode_rows(value).and_then(|(rows, weights)| {
                    relation.apply(&ChangeBatch::new(rows, Int64Array::from(weights))?)
                });
                if let Err(error) = applied {
                    failure = Some(error);
                }
            })
            .map_err(storage_error)?;
        failure.map_or(Ok(()), Err)
    }

    /// The readers view `entry` needs, one per source it scans. With a
    /// durable engine, a materialized view's readers of Kafka sources keep
    /// their positions, and the rows they take unless the view
    /// `stores_state`. While the catalog is replayed the readers get
    /// their positions back here, and a view that does not store its state
    /// gets its readers' rows in its scan nodes (to be stepped with the
    /// rest of its input).
    pub(super) fn restore_scans(
        &mut self,
        entry: &CatalogEntry,
        scans: BTreeMap<String, Vec<NodeId>>,
        stores_state: bool,
    ) -> Result<Vec<SourceScan>> {
        let mut restored = Vec::with_capacity(scans.len());
        for (ordinal, (source, nodes)) in scans.into_iter().enumerate() {
            let input =
                self.working.objects.get(&source).cloned().ok_or_else(|| {
                    Error::internal(format!("source {source} is not in the catalog"))
                })?;
            let spec = input
                .connector
                .clone()
                .ok_or_else(|| Error::internal(format!("source {source} has no connector")))?;
            let stored = if self.store.is_some()
                && (entry.kind == ObjectKind::MaterializedView || stores_state)
                && eddy_connectors::source::resumable(&spec)
            {
                let scan = u8::try_from(ordinal)
                    .ok()
                    .filter(|scan| *scan < CONTENTS)
                    .ok_or_else(|| {
                        Error::not_supported(format!(
                            "a materialized view over more than {CONTENTS} sources in a durable database"
                        ))
                    })?;
                let types = input.schema.fields().iter().map(|f| f.data_type().clone());
                Some(Stored::Scan {
                    view: entry.created,
                    scan,
                    codec: (!stores_state)
                        .then(|| RowCodec::new(types.collect()))
                        .transpose()?,
                })
            } else {
                None
            };
            let resume = match stored.as_ref() {
                Some(&Stored::Scan { scan, .. }) if self.replaying => {
                    let (resume, taken) = self.resume_scan(entry, scan, &input)?;
                    if !stores_state {
                        for changes in taken.contents()? {
                            for node in &nodes {
                                self.dataflow.push(*node, changes.clone())?;
                            }
                        }
                    }
                    Some(resume)
                }
                _ => None,
            };
            restored.push(SourceScan {
                source,
                nodes,
                spec,
                schema: input.schema.clone(),
                stored,
                resume,
            });
        }
        Ok(restored)
    }

    /// What the last checkpoint holds of scan `scan` of view `view`: its
    /// positions, and the rows its reader took (for the
    /// reader, and to fill the view with).
    fn resume_scan(
        &self,
        view: &CatalogEntry,
        scan: u8,
        source: &CatalogEntry,
    ) -> Result<(Resume, Relation)> {
        let mut resume = Resume::default();
        let mut relation = Relation::new(source.schema.clone())?;
        let Some(store) = self.store.clone() else {
            return Ok((resume, relation));
        };
        read_rows(&store, view.created, &[scan], &mut relation, None, None)?;
        read_positions(&store, view, &[SCAN, scan], &mut resume)?;
        info!(view = %view.name, source = %source.name, positions = ?resume.positions, "source scan resumes");
        Ok((resume, relation))
    }

    /// The changes exactly-once sink `id` was handed by checkpoints but may
    /// not have committed: the checkpoints' epochs, and the changes, oldest
    /// first. Nothing unless the catalog is being replayed.
    pub(super) fn stored_outbox(&self, id: u64) -> Result<(BTreeSet<u64>, Vec<SinkChanges>)> {
        let mut kept = BTreeSet::new();
        let mut changes = Vec::new();
        let Some(store) = self.store.clone().filter(|_| self.replaying) else {
            return Ok((kept, changes));
        };
        let mut failure: Option<Error> = None;
        store
            .state(id, &[OUTBOX], |epoch, value| {
                let decoded = <[u8; 8]>::try_from(epoch)
                    .map_err(|_| Error::Storage("a stored sink epoch does not decode".into()))
                    .and_then(|epoch| decode_changes(value, u64::from_be_bytes(epoch)));
                match decoded {
                    Ok(decoded) => {
                        kept.insert(decoded.epoch);
                        changes.push(decoded);
                    }
                    Err(error) => failure = Some(error),
                }
            })
            .map_err(storage_error)?;
        match failure {
            Some(error) => Err(error),
            None => Ok((kept, changes)),
        }
    }

    /// Write a checkpoint of what changed since the last one: objects
    /// created and dropped (found by comparing the catalog with the last
    /// committed one), tables' row changes, and connector tables' reader
    /// positions, in one synced write by the checkpoint thread. With
    /// `wait`, returns the checkpoint once it is durable (if one was
    /// written); otherwise once it is handed over. While the catalog is
    /// replayed nothing is written (what streams in meanwhile waits for the
    /// first checkpoint after).
    pub(super) fn persist(
        &mut self,
        committed: &Snapshot,
        epoch: u64,
        wait: bool,
    ) -> Result<Option<CheckpointInfo>> {
        let Some(checkpointer) = &self.checkpointer else {
            return Ok(None);
        };
        if let Some(cause) = self
            .storage_failed
            .clone()
            .or_else(|| checkpointer.failed())
        {
            self.storage_failed = Some(cause.clone());
            return Err(Error::Storage(format!(
                "{cause} (no write commits until Eddy is restarted)"
            )));
        }
        if self.replaying {
            return Ok(None);
        }
        let mut checkpoint = std::mem::take(&mut self.pending);
        let created =
            |snapshot: &Snapshot, name: &str| snapshot.objects.get(name).map(|e| e.created);
        for (name, entry) in &self.working.objects {
            if created(committed, name) == Some(entry.created) {
                continue;
            }
            if let Some(definition) = &entry.definition {
                checkpoint.add_object(ObjectRecord {
                    id: entry.created,
                    name: name.clone(),
                    definition: definition.clone(),
                });
            }
        }
        for (name, entry) in &committed.objects {
            if created(&self.working, name) != Some(entry.created) {
                checkpoint.drop_object(entry.created);
            }
        }
        if self.unsynced {
            for reader in &self.readers {
                if let Some(stored) = &reader.stored {
                    for (partition, offset) in &reader.positions {
                        let key = stored.state_key(POSITION, partition.as_bytes());
                        checkpoint.put(stored.id(), &key, &offset.to_be_bytes());
                    }
                }
            }
        }
        // Exactly-once sinks: this checkpoint's changes are stored with it
        // and sent after it.
        let mut outgoing: Vec<(SinkSender, SinkChanges)> = Vec::new();
        for sink in &mut self.sinks {
            let Some(outbox) = &mut sink.outbox else {
                continue;
            };
            let after = outbox.kept.last().map_or(0, |e| e + 1);
            let Some(changes) =
                consolidated(std::mem::take(&mut outbox.unflushed), epoch.max(after))?
            else {
                continue;
            };
            checkpoint.put(
                outbox.id,
                &outbox_key(changes.epoch),
                &encode_changes(&changes)?,
            );
            outbox.kept.insert(changes.epoch);
            outgoing.push((sink.handle.reserve(), changes));
        }
        let save = self
            .working
            .state_budget
            .as_ref()
            .map_or(0, |b| b.begin_save());
        self.save_view_state(&mut checkpoint)?;
        self.save_totals(&mut checkpoint);
        if checkpoint.is_empty() {
            return Ok(None);
        }
        // Changes the sinks have committed need not be kept any longer.
        for sink in &mut self.sinks {
            let committed = sink.handle.progress().committed_epoch();
            let Some(outbox) = &mut sink.outbox else {
                continue;
            };
            while let Some(first) = outbox.kept.first().copied().filter(|e| *e <= committed) {
                checkpoint.delete(outbox.id, &outbox_key(first));
                outbox.kept.remove(&first);
            }
        }
        let Some(checkpointer) = &self.checkpointer else {
            return Ok(None);
        };
        let number = self.handed + 1;
        let written = match checkpointer.write(checkpoint, number, epoch, save, outgoing, wait) {
            Ok(written) => {
                // What relations leaving memory changed went with it.
                self.handed = number;
                for relation in self.working.relations.values_mut() {
                    relation.seal(number);
                }
                for message_keys in self.message_keys.values_mut() {
                    message_keys.seal(number);
                }
                written
            }
            Err(error) => {
                if let Error::Storage(cause) = &error {
                    self.storage_failed = Some(cause.clone());
                }
                return Err(error);
            }
        };
        self.unsynced = false;
        self.last_checkpoint = Instant::now();
        Ok(written)
    }
}

/// The positions stored under `entry` behind `prefix`,
/// into `resume`.
fn read_positions(
    store: &Store,
    entry: &CatalogEntry,
    prefix: &[u8],
    resume: &mut Resume,
) -> Result<()> {
    let within = |kind: u8| [prefix, &[kind]].concat();
    let mut corrupt = false;
    store
        .state(entry.created, &within(POSITION), |partition, value| match (
            std::str::from_utf8(partition),
            <[u8; 8]>::try_from(value),
        ) {
            (Ok(partition), Ok(offset)) => {
                resume
                    .positions
                    .insert(partition.to_string(), i64::from_be_bytes(offset));
            }
            _ => corrupt = true,
        })
        .map_err(storage_error)?;
    if corrupt {
        return Err(Error::Storage(format!(
            "the stored state of \"{}\" does not decode",
            entry.name
        )));
    }
    Ok(())
}

/// The kind of object a stored `CREATE` statement makes.
fn defined_kind(definition: &str) -> Option<ObjectKind> {
    let words: Vec<String> = definition
        .split_whitespace()
        .take(3)
        .map(str::to_ascii_uppercase)
        .collect();
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["CREATE", "TABLE", ..] => Some(ObjectKind::Table),
        ["CREATE", "SOURCE", ..] => Some(ObjectKind::Source),
        ["CREATE", "SINK", ..] => Some(ObjectKind::Sink),
        ["CREATE", "VIEW", ..] => Some(ObjectKind::View),
        ["CREATE", "MATERIALIZED", "VIEW"] => Some(ObjectKind::MaterializedView),
        _ => None,
    }
}

fn outbox_key(epoch: u64) -> Vec<u8> {
    let mut key = vec![OUTBOX];
    key.extend_from_slice(&epoch.to_be_bytes());
    key
}

/// Name of the weight column in a stored change set.
const WEIGHT: &str = "__eddy_weight";

/// `changes` as an Arrow IPC stream of their rows plus a weight column.
fn encode_changes(changes: &SinkChanges) -> Result<Vec<u8>> {
    encode_rows(&changes.rows, &changes.weights)
}

/// The change set [`encode_changes`] wrote, as checkpoint `epoch`'s.
fn decode_changes(bytes: &[u8], epoch: u64) -> Result<SinkChanges> {
    let (rows, weights) = decode_rows(bytes)?;
    Ok(SinkChanges {
        rows,
        weights,
        epoch,
    })
}

/// `rows` with their `weights` as an Arrow IPC stream of the rows plus a
/// weight column.
pub(super) fn encode_rows(rows: &RecordBatch, weights: &[i64]) -> Result<Vec<u8>> {
    let mut fields: Vec<Field> = rows
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new(WEIGHT, DataType::Int64, false));
    let schema = Arc::new(Schema::new(fields));
    let mut columns = rows.columns().to_vec();
    columns.push(Arc::new(Int64Array::from(weights.to_vec())));
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    let mut bytes = Vec::new();
    let mut writer = StreamWriter::try_new(&mut bytes, &schema)?;
    writer.write(&batch)?;
    writer.finish()?;
    drop(writer);
    Ok(bytes)
}

/// The rows and weights [`encode_rows`] wrote.
fn decode_rows(bytes: &[u8]) -> Result<(RecordBatch, Vec<i64>)> {
    let corrupt = || Error::Storage("a stored change set does not decode".into());
    let reader = StreamReader::try_new(bytes, None).map_err(|_| corrupt())?;
    let mut batches = Vec::new();
    for batch in reader {
        batches.push(batch.map_err(|_| corrupt())?);
    }
    let batch = match batches.len() {
        1 => batches.remove(0),
        _ => return Err(corrupt()),
    };
    let last = batch.num_columns().checked_sub(1).ok_or_else(corrupt)?;
    let weights = batch
        .column(last)
        .as_any()
        .downcast_ref::<Int64Array>()
        .ok_or_else(corrupt)?
        .values()
        .to_vec();
    let mut rows = batch;
    rows.remove_column(last);
    Ok((rows, weights))
}

pub(crate) fn storage_error(error: eddy_state::Error) -> Error {
    Error::Storage(error.to_string())
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::StringArray;

    use super::*;

    #[test]
    fn a_stored_change_set_reads_back_as_written() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
        ]));
        let rows = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![Some(1), None, Some(3)])),
                Arc::new(StringArray::from(vec![Some("a"), Some("b"), None])),
            ],
        )
        .expect("batch");
        let changes = SinkChanges {
            rows,
            weights: vec![1, -2, 3],
            epoch: 7,
        };
        let bytes = encode_changes(&changes).expect("encode");
        let back = decode_changes(&bytes, 9).expect("decode");
        assert_eq!(back.rows, changes.rows);
        assert_eq!(back.weights, changes.weights);
        assert_eq!(back.epoch, 9);
        assert!(decode_changes(&bytes[..bytes.len() / 2], 9).is_err());
        assert!(decode_changes(b"not arrow", 9).is_err());
    }
}
