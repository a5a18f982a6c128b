//! The `eddy_catalog` schema: system tables users query like any table.
//!
//! * `source_progress`: one row per source reader and partition: the latest
//!   offset read, the partition's high watermark and lag where the connector
//!   knows them, messages read and messages per second, and the reader's
//!   status (`running`, `ended`, `failed: ...`).
//!
//! * `source_errors`: every message a source could not read, once: the
//!   source, partition, offset, the reason, the first bytes of the payload
//!   (as text, invalid UTF-8 replaced) and when it was found.
//!
//! * `sink_progress`: one row per sink: where it writes, the epochs handed
//!   to it and those whose messages the external system has acknowledged,
//!   the messages acknowledged, and its status (`running`, `stalled: ...`,
//!   `failed: ...`).
//!
//! * `checkpoints`: the last checkpoint of a durable engine (none without
//!   `--data-dir`): the epoch it made durable, when, the bytes written and
//!   how long the synced write took (NULL for a checkpoint an earlier
//!   process wrote).
//!
//! * `state_memory`: for a durable engine, what GROUP BY operators keep in
//!   memory of their checkpointed state: the budget (NULL: unlimited), the
//!   estimated bytes held now (operators' state, tables and views'
//!   contents), how many groups and join keys left memory and were read
//!   back from the store since the engine started, and how many tables and
//!   materialized views are read from the store instead of memory.
//!
//! * `relation_memory`: one row per table and materialized view: where
//!   its contents are read from (`memory`, `leaving memory`: in memory
//!   until a checkpoint holding all of it is durable, `disk`: the store
//!   plus the changes since) and the estimated bytes they hold in memory.
//!
//! The tables are built when a statement reads them, from the snapshot the
//! statement pinned (which readers exist) and the readers' live counters.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, RecordBatch, StringBuilder,
    TimestampMicrosecondBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::datasource::MemTable;
use datafusion::error::Result;

use crate::provider::SnapshotSchema;

/// Name of the system schema.
pub const SYSTEM_SCHEMA: &str = "eddy_catalog";

const SOURCE_PROGRESS: &str = "source_progress";
const SOURCE_ERRORS: &str = "source_errors";
const SINK_PROGRESS: &str = "sink_progress";
const CHECKPOINTS: &str = "checkpoints";
const STATE_MEMORY: &str = "state_memory";
const RELATION_MEMORY: &str = "relation_memory";
const TABLES: [&str; 6] = [
    SOURCE_PROGRESS,
    SOURCE_ERRORS,
    SINK_PROGRESS,
    CHECKPOINTS,
    STATE_MEMORY,
    RELATION_MEMORY,
];

/// The `eddy_catalog` schema of a session.
#[derive(Debug)]
pub struct SystemSchema {
    public: Arc<SnapshotSchema>,
}

impl SystemSchema {
    /// System tables as of the snapshot `public` has pinned.
    pub fn new(public: Arc<SnapshotSchema>) -> Self {
        Self { public }
    }

    fn source_progress(&self) -> Result<MemTable> {
        let schema: SchemaRef = Arc::new(Schema::new(vec![
            Field::new("source", DataType::Utf8, false),
            Field::new("materialized_view", DataType::Utf8, false),
            Field::new("partition", DataType::Utf8, false),
            Field::new("last_offset", DataType::Int64, true),
            Field::new("high_watermark", DataType::Int64, true),
            Field::new("lag", DataType::Int64, true),
            Field::new("messages", DataType::Int64, false),
            Field::new("messages_per_second", DataType::Float64, false),
            Field::new("status", DataType::Utf8, false),
        ]));
        let mut source = StringBuilder::new();
        let mut view = StringBuilder::new();
        let mut partition = StringBuilder::new();
        let mut offset = Int64Builder::new();
        let mut high = Int64Builder::new();
        let mut lag = Int64Builder::new();
        let mut messages = Int64Builder::new();
        let mut rate = Float64Builder::new();
        let mut status = StringBuilder::new();
        for reader in &self.public.pinned().progress {
            let state = reader.status();
            let partitions = reader.partitions();
            if partitions.is_empty() {
                // A reader that has read nothing yet still shows its status.
                source.append_value(reader.source());
                view.append_value(reader.view());
                partition.append_value("");
                offset.append_null();
                high.append_null();
                lag.append_null();
                messages.append_value(0);
                rate.append_value(0.0);
                status.append_value(&state);
            }
            for p in partitions {
                source.append_value(reader.source());
                view.append_value(reader.view());
                partition.append_value(&p.partition);
                offset.append_option(p.offset);
                high.append_option(p.high_watermark);
                lag.append_option(p.lag());
                messages.append_value(i64::try_from(p.messages).unwrap_or(i64::MAX));
                rate.append_value(p.messages_per_second);
                status.append_value(&state);
            }
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(source.finish()),
            Arc::new(view.finish()),
            Arc::new(partition.finish()),
            Arc::new(offset.finish()),
            Arc::new(high.finish()),
            Arc::new(lag.finish()),
            Arc::new(messages.finish()),
            Arc::new(rate.finish()),
            Arc::new(status.finish()),
        ];
        let batch = RecordBatch::try_new(schema.clone(), columns)?;
        MemTable::try_new(schema, vec![vec![batch]])
    }
}

impl SystemSchema {
    fn source_errors(&self) -> Result<MemTable> {
        let schema: SchemaRef = Arc::new(Schema::new(vec![
            Field::new("source", DataType::Utf8, false),
            Field::new("partition", DataType::Utf8, false),
            Field::new("offset", DataType::Int64, false),
            Field::new("reason", DataType::Utf8, false),
            Field::new("payload_prefix", DataType::Utf8, false),
            Field::new(
                "found_at",
                DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
                false,
            ),
        ]));
        let mut source = StringBuilder::new();
        let mut partition = StringBuilder::new();
        let mut offset = Int64Builder::new();
        let mut reason = StringBuilder::new();
        let mut payload = StringBuilder::new();
        let mut found = TimestampMicrosecondBuilder::new().with_timezone("+00:00");
        for (name, log) in &self.public.pinned().source_errors {
            for message in log.messages() {
                source.append_value(name);
                partition.append_value(&message.partition);
                offset.append_value(message.offset);
                reason.append_value(&message.reason);
                payload.append_value(String::from_utf8_lossy(&message.payload_prefix));
                found.append_value(micros_since_epoch(message.at));
            }
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(source.finish()),
            Arc::new(partition.finish()),
            Arc::new(offset.finish()),
            Arc::new(reason.finish()),
            Arc::new(payload.finish()),
            Arc::new(found.finish()),
        ];
        let batch = RecordBatch::try_new(schema.clone(), columns)?;
        MemTable::try_new(schema, vec![vec![batch]])
    }
}

impl SystemSchema {
    fn sink_progress(&self) -> Result<MemTable> {
        let schema: SchemaRef = Arc::new(Schema::new(vec![
            Field::new("sink", DataType::Utf8, false),
            Field::new("target", DataType::Utf8, false),
            Field::new("epochs", DataType::Int64, false),
            Field::new("epochs_delivered", DataType::Int64, false),
            Field::new("messages", DataType::Int64, false),
            Field::new("status", DataType::Utf8, false),
            Field::new("exactly_once", DataType::Boolean, false),
            Field::new("committed_epoch", DataType::Int64, true),
        ]));
        let mut sink = StringBuilder::new();
        let mut target = StringBuilder::new();
        let mut epochs = Int64Builder::new();
        let mut delivered = Int64Builder::new();
        let mut messages = Int64Builder::new();
        let mut status = StringBuilder::new();
        let mut exactly_once = BooleanBuilder::new();
        let mut committed = Int64Builder::new();
        let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        for progress in &self.public.pinned().sink_progress {
            exactly_once.append_value(progress.is_exactly_once());
            match (progress.is_exactly_once(), progress.committed_epoch()) {
                (true, epoch) if epoch > 0 => committed.append_value(count(epoch)),
                _ => committed.append_null(),
            }
            sink.append_value(progress.sink());
            target.append_value(progress.target());
            epochs.append_value(count(progress.queued()));
            delivered.append_value(count(progress.delivered()));
            messages.append_value(count(progress.messages()));
            status.append_value(progress.status());
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(sink.finish()),
            Arc::new(target.finish()),
            Arc::new(epochs.finish()),
            Arc::new(delivered.finish()),
            Arc::new(messages.finish()),
            Arc::new(status.finish()),
            Arc::new(exactly_once.finish()),
            Arc::new(committed.finish()),
        ];
        let batch = RecordBatch::try_new(schema.clone(), columns)?;
        MemTable::try_new(schema, vec![vec![batch]])
    }
}

impl SystemSchema {
    fn checkpoints(&self) -> Result<MemTable> {
        let schema: SchemaRef = Arc::new(Schema::new(vec![
            Field::new("epoch", DataType::Int64, false),
            Field::new(
                "written_at",
                DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
                false,
            ),
            Field::new("bytes", DataType::Int64, false),
            Field::new("duration_ms", DataType::Float64, true),
        ]));
        let mut epoch = Int64Builder::new();
        let mut at = TimestampMicrosecondBuilder::new().with_timezone("+00:00");
        let mut bytes = Int64Builder::new();
        let mut duration = Float64Builder::new();
        if let Some(checkpoint) = &self.public.pinned().checkpoint {
            let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
            epoch.append_value(count(checkpoint.epoch));
            at.append_value(micros_since_epoch(checkpoint.at));
            bytes.append_value(count(checkpoint.bytes));
            duration.append_option(checkpoint.duration.map(|d| d.as_secs_f64() * 1000.0));
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(epoch.finish()),
            Arc::new(at.finish()),
            Arc::new(bytes.finish()),
            Arc::new(duration.finish()),
        ];
        let batch = RecordBatch::try_new(schema.clone(), columns)?;
        MemTable::try_new(schema, vec![vec![batch]])
    }
}

impl SystemSchema {
    fn state_memory(&self) -> Result<MemTable> {
        let schema: SchemaRef = Arc::new(Schema::new(vec![
            Field::new("budget_bytes", DataType::Int64, true),
            Field::new("state_bytes", DataType::Int64, false),
            Field::new("keys_evicted", DataType::Int64, false),
            Field::new("keys_read_back", DataType::Int64, false),
            Field::new("relations_on_disk", DataType::Int64, false),
        ]));
        let mut limit = Int64Builder::new();
        let mut held = Int64Builder::new();
        let mut evicted = Int64Builder::new();
        let mut read_back = Int64Builder::new();
        let mut on_disk = Int64Builder::new();
        let pinned = self.public.pinned();
        if let Some(budget) = &pinned.state_budget {
            let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
            limit.append_option(budget.bounded().and_then(|l| i64::try_from(l).ok()));
            held.append_value(i64::try_from(budget.resident()).unwrap_or(i64::MAX));
            let (out, back) = budget.evictions();
            evicted.append_value(count(out));
            read_back.append_value(count(back));
            let relations = pinned.relations.values().filter(|r| r.on_disk_now());
            on_disk.append_value(count(relations.count() as u64));
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(limit.finish()),
            Arc::new(held.finish()),
            Arc::new(evicted.finish()),
            Arc::new(read_back.finish()),
            Arc::new(on_disk.finish()),
        ];
        let batch = RecordBatch::try_new(schema.clone(), columns)?;
        MemTable::try_new(schema, vec![vec![batch]])
    }
}

impl SystemSchema {
    fn relation_memory(&self) -> Result<MemTable> {
        let schema: SchemaRef = Arc::new(Schema::new(vec![
            Field::new("name", DataType::Utf8, false),
            Field::new("place", DataType::Utf8, false),
            Field::new("bytes", DataType::Int64, false),
        ]));
        let mut name = StringBuilder::new();
        let mut place = StringBuilder::new();
        let mut bytes = Int64Builder::new();
        for (relation, contents) in &self.public.pinned().relations {
            name.append_value(relation);
            place.append_value(contents.place());
            bytes.append_value(i64::try_from(contents.bytes()).unwrap_or(i64::MAX));
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(name.finish()),
            Arc::new(place.finish()),
            Arc::new(bytes.finish()),
        ];
        let batch = RecordBatch::try_new(schema.clone(), columns)?;
        MemTable::try_new(schema, vec![vec![batch]])
    }
}

fn micros_since_epoch(at: std::time::SystemTime) -> i64 {
    at.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

#[async_trait]
impl SchemaProvider for SystemSchema {
    fn table_names(&self) -> Vec<String> {
        TABLES.iter().map(|t| t.to_string()).collect()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        match name {
            SOURCE_PROGRESS => Ok(Some(Arc::new(self.source_progress()?))),
            SOURCE_ERRORS => Ok(Some(Arc::new(self.source_errors()?))),
            SINK_PROGRESS => Ok(Some(Arc::new(self.sink_progress()?))),
            CHECKPOINTS => Ok(Some(Arc::new(self.checkpoints()?))),
            STATE_MEMORY => Ok(Some(Arc::new(self.state_memory()?))),
            RELATION_MEMORY => Ok(Some(Arc::new(self.relation_memory()?))),
            _ => Ok(None),
        }
    }

    fn table_exist(&self, name: &str) -> bool {
        TABLES.contains(&name)
    }
}
