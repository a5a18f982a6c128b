//! Eddy's durable store: one RocksDB database in the data directory.
//!
//! What is kept, by column family:
//!
//! * `catalog`: every object's definition (the statement that created it),
//!   keyed by the object's creation number, so replaying them in key order
//!   rebuilds the catalog in dependency order.
//! * `rows`: the rows of stored relations, keyed by the relation's creation
//!   number and the row's encoding, valued by the row's multiplicity. Writes
//!   are deltas merged by addition, so a commit writes only what changed,
//!   or, where the writer knows a row's multiplicity (a table with a
//!   primary key, or a view whose plan has a key, holds a row at most
//!   once), the multiplicity itself: a read of such a row has no deltas to
//!   add up. A row that is the only one of its relation to start with its
//!   key is stored under that key, the rest of its encoding after the
//!   multiplicity in the value: replacing the row of a key is then one put
//!   (not a delete and a put), and readers see the whole encoding as ever.
//! * `state`: other keyed state of an object, keyed by the object's
//!   creation number and a key of its own (a connector table's source
//!   offsets and the primary key each Kafka message key last set).
//! * `meta`: the format version and the record of the last checkpoint.
//!
//! Everything a commit changes goes into one [`Checkpoint`], written as one
//! synced RocksDB write batch: after [`Store::commit`] returns, all of it
//! survives a crash or power cut, and a crash before leaves none of it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rocksdb::{
    ColumnFamilyDescriptor, IteratorMode, MergeOperands, Options, ReadOptions,
    SnapshotWithThreadMode, WriteBatch, WriteOptions, DB,
};

const CATALOG: &str = "catalog";
const ROWS: &str = "rows";
const STATE: &str = "state";
const META: &str = "meta";

const FORMAT_KEY: &[u8] = b"format";
const CHECKPOINT_KEY: &[u8] = b"checkpoint";
const INSTANCE_KEY: &[u8] = b"instance";
/// Bytes read ahead of a scan of an object's rows or state.
const SCAN_READAHEAD: usize = 4 << 20;
/// Bumped whenever what is stored changes meaning; a data directory of
/// another version is refused rather than misread.
const FORMAT_VERSION: u64 = 5;

/// Why the store could not be opened, read or written.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// RocksDB failed.
    #[error("{0}")]
    Rocks(#[from] rocksdb::Error),
    /// The data directory holds something this version cannot read.
    #[error("data directory {path}: {reason}")]
    Incompatible {
        /// The data directory.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A stored record does not decode.
    #[error("corrupt {what} record in the data directory")]
    Corrupt {
        /// Which kind of record.
        what: &'static str,
    },
}

/// Result of store operations.
pub type Result<T> = std::result::Result<T, Error>;

/// A key and its value.
pub type Entry = (Vec<u8>, Vec<u8>);

/// One object's stored definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRecord {
    /// The object's creation number (unique, increasing).
    pub id: u64,
    /// The object's name.
    pub name: String,
    /// The statement that created it.
    pub definition: String,
}

/// What the last checkpoint wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointInfo {
    /// The epoch it made durable.
    pub epoch: u64,
    /// When it was written.
    pub at: SystemTime,
    /// Bytes of the write batch.
    pub bytes: u64,
    /// How long the synced write took (not known for a checkpoint written
    /// before this process started).
    pub duration: Option<Duration>,
}

/// Bytes committed since the last flush past which a commit has the
/// memtables flushed to files (in the background), so that the log a
/// restart after a crash replays holds about this much plus one checkpoint.
/// Before, the log held up to the memtables' size per column family: 151 MB
/// after loading 10M keys, 3.4 s of a restart (measured).
const FLUSH_AFTER_BYTES: u64 = 32 << 20;

/// The durable store of one Eddy instance.
pub struct Store {
    db: DB,
    path: PathBuf,
    instance: u64,
    /// Whether background compactions run yet (see [`Store::start_compactions`]).
    compacting: AtomicBool,
    /// Bytes committed since the last flush was asked for.
    unflushed: AtomicU64,
}

impl Drop for Store {
    /// Write the memtables to files, so that the next start has no log to
    /// replay (a crash leaves at most what `FLUSH_AFTER_BYTES` allows).
    fn drop(&mut self) {
        if let Err(error) = self.flush(true) {
            tracing::warn!(%error, "the store could not be flushed when closed; the next start replays its log");
        }
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

/// Settings of the store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Bytes of RocksDB's block cache, the memory reads are served from
    /// beyond what is being written.
    pub cache_bytes: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            cache_bytes: 256 << 20,
        }
    }
}

impl Store {
    /// Open (or create) the store in `dir`.
    ///
    /// Background compactions wait until [`Store::start_compactions`] (or
    /// the first [`Store::commit`]): a restart reads its state back first
    /// with the machine to itself. A load that left compactions to do
    /// would otherwise have them take a core from every restart (43% of a
    /// 10M-row restart's CPU, measured), and a restart that ends before
    /// they do leaves them all to the next one.
    pub fn open(dir: &Path, options: &StoreOptions) -> Result<Self> {
        // A restart after a crash replays the write-ahead log into the
        // memtables and leaves writing them to files to a background flush
        // (see `start_compactions`) instead of holding the open until they
        // are written. Commits keep the log short (see `commit`), so the
        // replay is short too.
        let mut db_options =
            Options::default().get_options_from_string("avoid_flush_during_recovery=true")?;
        db_options.create_if_missing(true);
        db_options.create_missing_column_families(true);
        db_options.set_disable_auto_compactions(true);
        // Atomic flushes keep column families consistent with each other
        // even if the write-ahead log is lost past the last sync.
        db_options.set_atomic_flush(true);
        let cache = rocksdb::Cache::new_lru_cache(options.cache_bytes);
        let mut table = rocksdb::BlockBasedOptions::default();
        table.set_block_cache(&cache);
        // Operators read back state they let go of by key, and most keys
        // they look up for a new group are in no file.
        table.set_bloom_filter(10.0, false);
        db_options.set_block_based_table_factory(&table);
        let mut rows = db_options.clone();
        rows.set_merge_operator_associative("eddy_add_i64", add_counts);
        let families = vec![
            ColumnFamilyDescriptor::new(CATALOG, db_options.clone()),
            ColumnFamilyDescriptor::new(ROWS, rows),
            ColumnFamilyDescriptor::new(STATE, db_options.clone()),
            ColumnFamilyDescriptor::new(META, db_options.clone()),
        ];
        let db = DB::open_cf_descriptors(&db_options, dir, families)?;
        let mut store = Self {
            db,
            path: dir.to_path_buf(),
            instance: 0,
            compacting: AtomicBool::new(false),
            unflushed: AtomicU64::new(0),
        };
        store.check_format()?;
        store.instance = store.instance_id()?;
        Ok(store)
    }

    /// Let background compactions run (once the state a restart reads is
    /// read), and flush what the open replayed from the log. Calling it
    /// again does nothing.
    pub fn start_compactions(&self) -> Result<()> {
        if self.compacting.swap(true, Ordering::Relaxed) {
            return Ok(());
        }
        for name in [CATALOG, ROWS, STATE, META] {
            self.db
                .set_options_cf(self.family(name)?, &[("disable_auto_compactions", "false")])?;
        }
        self.flush(false)
    }

    /// Have every memtable written to files (atomically), waiting for it
    /// or not.
    fn flush(&self, wait: bool) -> Result<()> {
        self.unflushed.store(0, Ordering::Relaxed);
        let mut options = rocksdb::FlushOptions::default();
        options.set_wait(wait);
        let families = [CATALOG, ROWS, STATE, META]
            .into_iter()
            .map(|name| self.family(name))
            .collect::<Result<Vec<_>>>()?;
        self.db.flush_cfs_opt(&families, &options)?;
        Ok(())
    }

    /// The directory the store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A random number chosen when the store was created: names this
    /// instance in systems shared with others (Kafka transactional ids).
    pub fn instance(&self) -> u64 {
        self.instance
    }

    fn instance_id(&self) -> Result<u64> {
        use std::hash::{BuildHasher, Hasher};
        let meta = self.family(META)?;
        if let Some(value) = self.db.get_cf(meta, INSTANCE_KEY)? {
            return <[u8; 8]>::try_from(value.as_slice())
                .map(u64::from_be_bytes)
                .map_err(|_| Error::Corrupt { what: "instance" });
        }
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u128(
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        hasher.write_u32(std::process::id());
        let instance = hasher.finish();
        let mut options = WriteOptions::default();
        options.set_sync(true);
        let mut batch = WriteBatch::default();
        batch.put_cf(meta, INSTANCE_KEY, instance.to_be_bytes());
        self.db.write_opt(batch, &options)?;
        Ok(instance)
    }

    fn check_format(&self) -> Result<()> {
        let meta = self.family(META)?;
        match self.db.get_cf(meta, FORMAT_KEY)? {
            None => {
                let mut options = WriteOptions::default();
                options.set_sync(true);
                let mut batch = WriteBatch::default();
                batch.put_cf(meta, FORMAT_KEY, FORMAT_VERSION.to_be_bytes());
                self.db.write_opt(batch, &options)?;
                Ok(())
            }
            Some(value) => {
                let version = <[u8; 8]>::try_from(value.as_slice())
                    .map(u64::from_be_bytes)
                    .map_err(|_| Error::Corrupt { what: "format" })?;
                if version == FORMAT_VERSION {
                    Ok(())
                } else {
                    Err(Error::Incompatible {
                        path: self.path.clone(),
                        reason: format!(
                            "stored in format {version}, this Eddy reads format {FORMAT_VERSION}"
                        ),
                    })
                }
            }
        }
    }

    fn family(&self, name: &'static str) -> Result<&rocksdb::ColumnFamily> {
        self.db.cf_handle(name).ok_or_else(|| Error::Incompatible {
            path: self.path.clone(),
            reason: format!("column family {name} is missing"),
        })
    }

    /// Every stored object, in creation order.
    pub fn objects(&self) -> Result<Vec<ObjectRecord>> {
        let mut records = Vec::new();
        for item in self
            .db
            .iterator_cf(self.family(CATALOG)?, IteratorMode::Start)
        {
            let (key, value) = item?;
            records.push(decode_object(&key, &value)?);
        }
        Ok(records)
    }

    /// Every row of relation `id` whose key starts with `prefix` and has a
    /// non-zero multiplicity, in key order, handed to `each` as (key
    /// without `prefix`, multiplicity) until it returns false.
    pub fn rows(
        &self,
        id: u64,
        prefix: &[u8],
        mut each: impl FnMut(&[u8], i64) -> bool,
    ) -> Result<()> {
        let mut whole = Rejoin::default();
        self.scan(ROWS, id, prefix, |key, value| {
            whole.visit(key, value, &mut each)
        })
    }

    /// Every state entry of object `id` whose key starts with `prefix`, in
    /// key order, handed to `each` as (key without `prefix`, value).
    pub fn state(&self, id: u64, prefix: &[u8], mut each: impl FnMut(&[u8], &[u8])) -> Result<()> {
        self.scan(STATE, id, prefix, |key, value| {
            each(key, value);
            Ok(true)
        })
    }

    /// State entry `key` of object `id`, as the last checkpoint left it.
    pub fn get_state(&self, id: u64, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.db.get_cf(self.family(STATE)?, object_key(id, key))?)
    }

    /// The few state entries of object `id` whose keys start with `prefix`,
    /// as the last checkpoint left them, in key order, as (key without `id`
    /// and `prefix`, value). Unlike [`Store::state`], made for reading some
    /// entries back while running: what it reads stays cached.
    pub fn state_under(&self, id: u64, prefix: &[u8]) -> Result<Vec<Entry>> {
        let start = object_key(id, prefix);
        let options = bounded_to(&start);
        let mut found = Vec::new();
        self.iterate(STATE, &start, options, |key, value| {
            found.push((key.to_vec(), value.to_vec()));
            Ok(true)
        })?;
        Ok(found)
    }

    /// The first `limit` state entries of object `id` whose keys start with
    /// `prefix` and, after it, are at or after `start`, as the last
    /// checkpoint left them, in key order, as (key without `id` and
    /// `prefix`, value). Like [`Store::state_under`], made for reading some
    /// entries back while running.
    pub fn state_from(
        &self,
        id: u64,
        prefix: &[u8],
        start: &[u8],
        limit: usize,
    ) -> Result<Vec<Entry>> {
        let within = object_key(id, prefix);
        let options = bounded_to(&within);
        let mut found = Vec::new();
        if limit == 0 {
            return Ok(found);
        }
        self.iterate_from(STATE, &within, start, options, |key, value| {
            found.push((key.to_vec(), value.to_vec()));
            Ok(found.len() < limit)
        })?;
        Ok(found)
    }

    /// Every entry of `family` under object `id` whose key starts with
    /// `within`, in key order, as (key without the object's number and
    /// `within`, value).
    fn scan(
        &self,
        family: &'static str,
        id: u64,
        within: &[u8],
        each: impl FnMut(&[u8], &[u8]) -> Result<bool>,
    ) -> Result<()> {
        let mut options = ReadOptions::default();
        // A scan reads a whole object once, at start-up: its blocks would
        // only push out of the cache what is read again.
        options.fill_cache(false);
        options.set_readahead_size(SCAN_READAHEAD);
        if let Some(next) = id.checked_add(1) {
            options.set_iterate_upper_bound(next.to_be_bytes());
        }
        self.iterate(family, &object_key(id, within), options, each)
    }

    /// Every entry of `family` whose key starts with `prefix`, read with
    /// `options`, in key order, as (key without `prefix`, value), until
    /// `each` returns false.
    fn iterate(
        &self,
        family: &'static str,
        prefix: &[u8],
        options: ReadOptions,
        each: impl FnMut(&[u8], &[u8]) -> Result<bool>,
    ) -> Result<()> {
        self.iterate_from(family, prefix, &[], options, each)
    }

    /// [`Store::iterate`], from the first key at or after `prefix` then
    /// `start`.
    fn iterate_from(
        &self,
        family: &'static str,
        prefix: &[u8],
        start: &[u8],
        options: ReadOptions,
        mut each: impl FnMut(&[u8], &[u8]) -> Result<bool>,
    ) -> Result<()> {
        // A raw iterator lends each entry instead of copying it into two
        // new boxes.
        let mut entries = self.db.raw_iterator_cf_opt(self.family(family)?, options);
        entries.seek([prefix, start].concat());
        while let (Some(key), Some(value)) = (entries.key(), entries.value()) {
            let Some(key) = key.strip_prefix(prefix) else {
                break;
            };
            if !each(key, value)? {
                break;
            }
            entries.next();
        }
        entries.status()?;
        Ok(())
    }

    /// The store as it is now, readable as such while later commits land
    /// (until the snapshot is dropped, RocksDB keeps what it reads).
    pub fn snapshot(self: &Arc<Self>) -> StoreSnapshot {
        StoreSnapshot(PinnedSnapshot::new(self.clone(), |store| {
            store.db.snapshot()
        }))
    }

    /// The last checkpoint written, if any.
    pub fn last_checkpoint(&self) -> Result<Option<CheckpointInfo>> {
        let Some(value) = self.db.get_cf(self.family(META)?, CHECKPOINT_KEY)? else {
            return Ok(None);
        };
        let field = |i: usize| {
            value
                .get(i * 8..(i + 1) * 8)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_be_bytes)
                .ok_or(Error::Corrupt { what: "checkpoint" })
        };
        Ok(Some(CheckpointInfo {
            epoch: field(0)?,
            at: SystemTime::UNIX_EPOCH + Duration::from_micros(field(1)?),
            bytes: field(2)?,
            duration: None,
        }))
    }

    /// Write `checkpoint` as the durable state of `epoch`: one synced,
    /// atomic write.
    pub fn commit(&self, checkpoint: Checkpoint, epoch: u64) -> Result<CheckpointInfo> {
        // Whoever writes needs compactions to keep reads and space in check.
        self.start_compactions()?;
        let started = Instant::now();
        let at = SystemTime::now();
        let mut batch = WriteBatch::default();
        let catalog = self.family(CATALOG)?;
        let rows = self.family(ROWS)?;
        let state = self.family(STATE)?;
        for change in &checkpoint.changes {
            match change {
                Change::Object(record) => {
                    batch.put_cf(catalog, record.id.to_be_bytes(), encode_object(record));
                }
                Change::Drop(id) => {
                    batch.delete_cf(catalog, id.to_be_bytes());
                }
                Change::Clear(id) => {
                    let next = id
                        .checked_add(1)
                        .map_or([0xff; 9].to_vec(), |n| n.to_be_bytes().to_vec());
                    let first = id.to_be_bytes().to_vec();
                    batch.delete_range_cf(rows, &first, &next);
                    batch.delete_range_cf(state, &first, &next);
                }
            }
        }
        // Entries and row changes last (each was added after any clear of
        // its object), one per key (the last value of an entry, the sum of
        // a row's changes) and in key order: rows set and unset between two
        // checkpoints are not written, and the memtable takes sorted keys.
        let mut entries: Vec<(&Vec<u8>, &Option<Vec<u8>>)> = checkpoint.state.iter().collect();
        entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
        for (key, value) in entries {
            match value {
                Some(value) => batch.put_cf(state, key, value),
                None => batch.delete_cf(state, key),
            }
        }
        let mut changed: Vec<(&Vec<u8>, &RowChange)> = checkpoint.rows.iter().collect();
        changed.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let mut value = Vec::new();
        for (key, change) in changed {
            match change {
                RowChange::Add(0) => {}
                RowChange::Add(delta) => batch.merge_cf(rows, key, delta.to_le_bytes()),
                RowChange::Set { count: 0, .. } => batch.delete_cf(rows, key),
                RowChange::Set { count, tail } => {
                    value.clear();
                    value.extend_from_slice(&count.to_le_bytes());
                    value.extend_from_slice(tail);
                    batch.put_cf(rows, key, &value);
                }
            }
        }
        let bytes = u64::try_from(batch.size_in_bytes()).unwrap_or(u64::MAX);
        let micros = at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        let mut record = Vec::with_capacity(24);
        record.extend_from_slice(&epoch.to_be_bytes());
        record.extend_from_slice(&micros.to_be_bytes());
        record.extend_from_slice(&bytes.to_be_bytes());
        batch.put_cf(self.family(META)?, CHECKPOINT_KEY, record);
        let mut options = WriteOptions::default();
        options.set_sync(true);
        self.db.write_opt(batch, &options)?;
        if self.unflushed.fetch_add(bytes, Ordering::Relaxed) + bytes > FLUSH_AFTER_BYTES {
            self.flush(false)?;
        }
        Ok(CheckpointInfo {
            epoch,
            at,
            bytes,
            duration: Some(started.elapsed()),
        })
    }
}

type DbSnapshot<'a> = SnapshotWithThreadMode<'a, DB>;

self_cell::self_cell!(
    /// A RocksDB snapshot with the store it borrows from (a snapshot that
    /// outlives the call that took it, without `unsafe` of our own).
    struct PinnedSnapshot {
        owner: Arc<Store>,
        #[covariant]
        dependent: DbSnapshot,
    }
);

/// The store as one moment left it: what [`Store::snapshot`] returns.
pub struct StoreSnapshot(PinnedSnapshot);

impl std::fmt::Debug for StoreSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreSnapshot")
            .field("path", &self.0.borrow_owner().path)
            .field("sequence", &self.0.borrow_dependent().sequence_number())
            .finish()
    }
}

impl StoreSnapshot {
    /// The rows of relation `id` whose keys start with `prefix`, as
    /// [`Store::rows`] reads them but as of the snapshot, handed to `each`
    /// until it returns false. What it reads stays cached: a snapshot is
    /// read by queries, again and again.
    pub fn rows(&self, id: u64, prefix: &[u8], each: impl FnMut(&[u8], i64) -> bool) -> Result<()> {
        self.read_rows(id, prefix, Some(SCAN_READAHEAD), each)
    }

    /// The rows of relation `id` whose keys start with `prefix`, as
    /// [`StoreSnapshot::rows`] reads them, but made for the few rows of one
    /// key: nothing is read ahead.
    pub fn point_rows(
        &self,
        id: u64,
        prefix: &[u8],
        each: impl FnMut(&[u8], i64) -> bool,
    ) -> Result<()> {
        self.read_rows(id, prefix, None, each)
    }

    fn read_rows(
        &self,
        id: u64,
        prefix: &[u8],
        read_ahead: Option<usize>,
        mut each: impl FnMut(&[u8], i64) -> bool,
    ) -> Result<()> {
        let start = object_key(id, prefix);
        let mut options = bounded_to(&start);
        options.set_snapshot(self.0.borrow_dependent());
        if let Some(bytes) = read_ahead {
            options.set_readahead_size(bytes);
        }
        let mut whole = Rejoin::default();
        self.0
            .borrow_owner()
            .iterate(ROWS, &start, options, |key, value| {
                whole.visit(key, value, &mut each)
            })
    }

    /// The multiplicities of the rows [`StoreSnapshot::point_rows`] reads,
    /// added up.
    pub fn count_under(&self, id: u64, prefix: &[u8]) -> Result<i64> {
        let mut total = 0i64;
        self.point_rows(id, prefix, |_, count| {
            total += count;
            true
        })?;
        Ok(total)
    }

    /// Read the rows of many keys of relation `id` under `prefix` with one
    /// iterator: `read` gets a [`PointReader`] that seeks it to each.
    /// Cheaper than [`StoreSnapshot::point_rows`] per key, which opens an
    /// iterator each time.
    pub fn with_points<T>(
        &self,
        id: u64,
        prefix: &[u8],
        read: impl FnOnce(&mut PointReader<'_>) -> T,
    ) -> Result<T> {
        let base = object_key(id, prefix);
        let mut options = bounded_to(&base);
        options.set_snapshot(self.0.borrow_dependent());
        let store = self.0.borrow_owner();
        let entries = store.db.raw_iterator_cf_opt(store.family(ROWS)?, options);
        Ok(read(&mut PointReader {
            entries,
            base,
            key: Vec::new(),
            whole: Rejoin::default(),
        }))
    }

    /// State entry `key` of object `id` as of the snapshot.
    pub fn state_value(&self, id: u64, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let store = self.0.borrow_owner();
        Ok(self
            .0
            .borrow_dependent()
            .get_cf(store.family(STATE)?, object_key(id, key))?)
    }

    /// The multiplicity of row `row` of relation `id` (its key's `prefix`
    /// first) as of the snapshot, the row stored under its first `key`
    /// bytes (see [`Checkpoint::set_row`]; its length: stored whole).
    pub fn row(&self, id: u64, prefix: &[u8], row: &[u8], key: usize) -> Result<i64> {
        let (key, rest) = row.split_at(key.min(row.len()));
        let stored = object_key(id, &[prefix, key].concat());
        let store = self.0.borrow_owner();
        let value = self
            .0
            .borrow_dependent()
            .get_cf(store.family(ROWS)?, stored)?;
        match value {
            None => Ok(0),
            Some(value) => match decode_row(&value) {
                Some((count, tail)) if tail == rest => Ok(count),
                Some(_) => Ok(0),
                None => Err(Error::Corrupt { what: "row" }),
            },
        }
    }
}

/// Reads the rows of one relation key after key with one iterator: what
/// [`StoreSnapshot::with_points`] lends.
pub struct PointReader<'a> {
    entries: rocksdb::DBRawIteratorWithThreadMode<'a, DB>,
    /// The relation's keys' start.
    base: Vec<u8>,
    /// The key being read.
    key: Vec<u8>,
    whole: Rejoin,
}

impl PointReader<'_> {
    /// The rows whose keys start with `prefix` (after the relation's), as
    /// [`StoreSnapshot::point_rows`] hands them.
    pub fn rows(&mut self, prefix: &[u8], mut each: impl FnMut(&[u8], i64) -> bool) -> Result<()> {
        self.key.clear();
        self.key.extend_from_slice(&self.base);
        self.key.extend_from_slice(prefix);
        self.entries.seek(&self.key);
        while let (Some(key), Some(value)) = (self.entries.key(), self.entries.value()) {
            let Some(row) = key.strip_prefix(self.key.as_slice()) else {
                break;
            };
            if !self.whole.visit(row, value, &mut each)? {
                break;
            }
            self.entries.next();
        }
        Ok(self.entries.status()?)
    }
}

/// Changes to make durable together.
#[derive(Debug, Default)]
pub struct Checkpoint {
    changes: Vec<Change>,
    /// Row changes by key, summed (hashbrown's default hasher: randomly
    /// seeded like std's, cheaper on the many short keys a streamed
    /// checkpoint takes).
    rows: hashbrown::HashMap<Vec<u8>, RowChange>,
    /// State entries by key: the last value set (`None`: removed).
    state: hashbrown::HashMap<Vec<u8>, Option<Vec<u8>>>,
}

/// What a checkpoint does to one stored row.
#[derive(Debug, Clone)]
enum RowChange {
    /// Add this many copies (negative: remove).
    Add(i64),
    /// Make the count this, whatever it was, and the rest of the row's
    /// encoding after its stored key `tail`.
    Set { count: i64, tail: Box<[u8]> },
}

#[derive(Debug)]
enum Change {
    Object(ObjectRecord),
    Drop(u64),
    Clear(u64),
}

impl Checkpoint {
    /// True if nothing was added.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty() && self.rows.is_empty() && self.state.is_empty()
    }

    /// Store an object's definition.
    pub fn add_object(&mut self, record: ObjectRecord) {
        self.changes.push(Change::Object(record));
    }

    /// Forget object `id`: its definition and its rows.
    pub fn drop_object(&mut self, id: u64) {
        self.changes.push(Change::Drop(id));
        self.clear_object(id);
    }

    /// Forget the rows and state entries of object `id` (not its
    /// definition); what is added after this call is kept.
    pub fn clear_object(&mut self, id: u64) {
        self.changes.push(Change::Clear(id));
        let object = id.to_be_bytes();
        self.rows.retain(|key, _| !key.starts_with(&object));
        self.state.retain(|key, _| !key.starts_with(&object));
    }

    /// Add `delta` copies of `row` to relation `id` (negative: remove).
    pub fn add_row(&mut self, id: u64, row: &[u8], delta: i64) {
        let change = self
            .rows
            .entry(object_key(id, row))
            .or_insert(RowChange::Add(0));
        match change {
            RowChange::Add(before) => *before += delta,
            RowChange::Set { count, .. } => *count += delta,
        }
    }

    /// Make `count` the multiplicity of `row` in relation `id` (0: remove
    /// it), whatever it was. The row is stored under its first `key` bytes
    /// (at most its length): no other row of the relation may start with
    /// them, so that setting a row replaces whichever row of its key was
    /// stored. Removing a row whose key another row was set under since the
    /// last checkpoint leaves that row (the set replaced it already).
    pub fn set_row(&mut self, id: u64, row: &[u8], key: usize, count: i64) {
        let (key, tail) = row.split_at(key.min(row.len()));
        let stored = object_key(id, key);
        if count == 0 {
            if let Some(RowChange::Set { count, tail: other }) = self.rows.get(&stored) {
                if *count != 0 && other.as_ref() != tail {
                    return;
                }
            }
        }
        self.rows.insert(
            stored,
            RowChange::Set {
                count,
                tail: tail.into(),
            },
        );
    }

    /// Set state entry `key` of object `id`.
    pub fn put(&mut self, id: u64, key: &[u8], value: &[u8]) {
        self.state.insert(object_key(id, key), Some(value.to_vec()));
    }

    /// Remove state entry `key` of object `id`.
    pub fn delete(&mut self, id: u64, key: &[u8]) {
        self.state.insert(object_key(id, key), None);
    }
}

fn object_key(id: u64, key: &[u8]) -> Vec<u8> {
    let mut full = Vec::with_capacity(8 + key.len());
    full.extend_from_slice(&id.to_be_bytes());
    full.extend_from_slice(key);
    full
}

/// Read options that end a scan after the keys that start with `prefix`.
fn bounded_to(prefix: &[u8]) -> ReadOptions {
    let mut options = ReadOptions::default();
    if let Some(end) = successor(prefix) {
        options.set_iterate_upper_bound(end);
    }
    options
}

/// The first key after every key that starts with `prefix`, unless no key
/// is (a prefix of only 0xFF bytes).
fn successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let last = prefix.iter().rposition(|b| *b != 0xFF)?;
    let mut end = prefix[..=last].to_vec();
    end[last] += 1;
    Some(end)
}

fn encode_object(record: &ObjectRecord) -> Vec<u8> {
    let name = record.name.as_bytes();
    let mut value = Vec::with_capacity(4 + name.len() + record.definition.len());
    value.extend_from_slice(&u32::try_from(name.len()).unwrap_or(u32::MAX).to_be_bytes());
    value.extend_from_slice(name);
    value.extend_from_slice(record.definition.as_bytes());
    value
}

fn decode_object(key: &[u8], value: &[u8]) -> Result<ObjectRecord> {
    let corrupt = || Error::Corrupt { what: "catalog" };
    let id = <[u8; 8]>::try_from(key)
        .map(u64::from_be_bytes)
        .map_err(|_| corrupt())?;
    let length = value
        .get(..4)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(u32::from_be_bytes)
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(corrupt)?;
    let name = value.get(4..4 + length).ok_or_else(corrupt)?;
    let definition = value.get(4 + length..).ok_or_else(corrupt)?;
    Ok(ObjectRecord {
        id,
        name: String::from_utf8(name.to_vec()).map_err(|_| corrupt())?,
        definition: String::from_utf8(definition.to_vec()).map_err(|_| corrupt())?,
    })
}

/// A stored row's value: its multiplicity, then the rest of its encoding
/// after the stored key (empty: stored whole).
fn decode_row(value: &[u8]) -> Option<(i64, &[u8])> {
    let (count, tail) = value.split_first_chunk::<8>()?;
    Some((i64::from_le_bytes(*count), tail))
}

/// Hands stored rows to readers whole: the stored key, then the rest of
/// the encoding if the value holds one (joined in a buffer of its own).
#[derive(Default)]
struct Rejoin {
    row: Vec<u8>,
}

impl Rejoin {
    /// Hand the row stored under `key` (after what the reader asked for)
    /// with `value` to `each`, unless its multiplicity is 0; returns what
    /// `each` did (true: go on).
    fn visit(
        &mut self,
        key: &[u8],
        value: &[u8],
        each: &mut impl FnMut(&[u8], i64) -> bool,
    ) -> Result<bool> {
        let (count, tail) = decode_row(value).ok_or(Error::Corrupt { what: "row" })?;
        if count == 0 {
            return Ok(true);
        }
        if tail.is_empty() {
            return Ok(each(key, count));
        }
        self.row.clear();
        self.row.extend_from_slice(key);
        self.row.extend_from_slice(tail);
        Ok(each(&self.row, count))
    }
}

/// Merge operator of `rows`: multiplicities add up (a row stored under its
/// key is only ever put, never merged; its tail would be kept).
fn add_counts(_key: &[u8], existing: Option<&[u8]>, operands: &MergeOperands) -> Option<Vec<u8>> {
    let (mut total, tail) = existing.and_then(decode_row).unwrap_or((0, &[]));
    for operand in operands {
        total = total.wrapping_add(decode_row(operand)?.0);
    }
    let mut value = total.to_le_bytes().to_vec();
    value.extend_from_slice(tail);
    Some(value)
}

#[cfg(test)]
mod tests;
