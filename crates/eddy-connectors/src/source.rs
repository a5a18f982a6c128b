//! Reading sources: the [`SourceReader`] every connector implements, the
//! [`SourceProgress`] it reports, and [`open`], which picks the connector a
//! source's `WITH (connector = ...)` names.
//!
//! A reader yields Arrow batches in the source's schema (its declared
//! columns, then its `INCLUDE` columns), waiting as long as it must. It owns
//! its position in the input; the engine only consumes what it yields.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;

use crate::spec::SourceSpec;
use crate::{Error, Result};

/// A connector reading one source.
#[async_trait::async_trait]
pub trait SourceReader: Send {
    /// The next rows, in the source's schema. Waits until rows are there;
    /// `Ok(None)` once a bounded source has ended. An error stops the
    /// reader: connectors retry what can be retried themselves.
    async fn next_batch(&mut self) -> Result<Option<RecordBatch>>;
}

/// The schema a source produces from its declared columns, checking the
/// connector's options. `declared` may be empty where the connector knows
/// its columns (the Nexmark tables).
pub fn source_schema(spec: &SourceSpec, declared: &SchemaRef) -> Result<SchemaRef> {
    match spec.connector().as_str() {
        "nexmark" => crate::generator::nexmark_schema(spec, declared),
        "datagen" => crate::generator::datagen_schema(spec, declared),
        other => Err(unknown_connector(other)),
    }
}

/// Start reading a source whose schema is `schema` (as [`source_schema`]
/// returned it).
pub fn open(
    spec: &SourceSpec,
    schema: &SchemaRef,
    progress: std::sync::Arc<SourceProgress>,
) -> Result<Box<dyn SourceReader>> {
    match spec.connector().as_str() {
        "nexmark" => crate::generator::open_nexmark(spec, schema, progress),
        "datagen" => crate::generator::open_datagen(spec, schema, progress),
        other => Err(unknown_connector(other)),
    }
}

fn unknown_connector(name: &str) -> Error {
    if name.is_empty() {
        Error::InvalidConfig("WITH (connector = '...') is required".into())
    } else {
        Error::UnsupportedConnector(name.to_string())
    }
}

/// Progress of one partition of a source, as `eddy_catalog.source_progress`
/// shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionProgress {
    /// The partition (`"0"` for generators).
    pub partition: String,
    /// The latest offset read (for generators: the last event or row number).
    pub offset: Option<i64>,
    /// The partition's high watermark, where the connector knows it.
    pub high_watermark: Option<i64>,
    /// Messages read so far.
    pub messages: u64,
    /// Messages per second over the last few seconds.
    pub messages_per_second: f64,
}

impl PartitionProgress {
    /// Messages not read yet, where the high watermark is known.
    pub fn lag(&self) -> Option<i64> {
        let high = self.high_watermark?;
        Some((high - self.offset.map_or(0, |o| o + 1)).max(0))
    }
}

#[derive(Debug)]
struct PartitionState {
    progress: PartitionProgress,
    window_start: Instant,
    window_messages: u64,
}

/// What a reader has done, shared between the reader and the engine.
#[derive(Debug)]
pub struct SourceProgress {
    source: String,
    view: String,
    state: Mutex<(BTreeMap<String, PartitionState>, String)>,
}

/// Rates are measured over windows of this length.
const RATE_WINDOW: Duration = Duration::from_secs(1);

impl SourceProgress {
    /// Progress of `source` as read for materialized view `view`.
    pub fn new(source: &str, view: &str) -> Self {
        Self {
            source: source.to_string(),
            view: view.to_string(),
            state: Mutex::new((BTreeMap::new(), "running".to_string())),
        }
    }

    /// The source's name.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The materialized view the reader feeds.
    pub fn view(&self) -> &str {
        &self.view
    }

    fn with<T>(&self, f: impl FnOnce(&mut (BTreeMap<String, PartitionState>, String)) -> T) -> T {
        match self.state.lock() {
            Ok(mut state) => f(&mut state),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    /// `messages` more were read from `partition`, the last at `offset`.
    pub fn record(&self, partition: &str, offset: i64, messages: u64) {
        let now = Instant::now();
        self.with(|(partitions, _)| {
            let state = partitions
                .entry(partition.to_string())
                .or_insert_with(|| PartitionState {
                    progress: PartitionProgress {
                        partition: partition.to_string(),
                        offset: None,
                        high_watermark: None,
                        messages: 0,
                        messages_per_second: 0.0,
                    },
                    window_start: now,
                    window_messages: 0,
                });
            state.progress.offset = Some(offset);
            state.progress.messages += messages;
            let elapsed = now.duration_since(state.window_start);
            if elapsed >= RATE_WINDOW {
                let read = state.progress.messages - state.window_messages;
                state.progress.messages_per_second = read as f64 / elapsed.as_secs_f64();
                state.window_start = now;
                state.window_messages = state.progress.messages;
            }
        });
    }

    /// The connector learned `partition`'s high watermark.
    pub fn set_high_watermark(&self, partition: &str, high_watermark: i64) {
        self.with(|(partitions, _)| {
            if let Some(state) = partitions.get_mut(partition) {
                state.progress.high_watermark = Some(high_watermark);
            }
        });
    }

    /// What the reader is doing: `running`, `ended`, `stalled: ...`,
    /// `failed: ...`.
    pub fn set_status(&self, status: impl Into<String>) {
        let status = status.into();
        self.with(|(_, current)| *current = status);
    }

    /// The reader's status.
    pub fn status(&self) -> String {
        self.with(|(_, status)| status.clone())
    }

    /// Every partition's progress. A partition that has read nothing for a
    /// whole rate window shows the rate of what it read since.
    pub fn partitions(&self) -> Vec<PartitionProgress> {
        let now = Instant::now();
        self.with(|(partitions, _)| {
            partitions
                .values()
                .map(|state| {
                    let mut progress = state.progress.clone();
                    let elapsed = now.duration_since(state.window_start);
                    if elapsed >= RATE_WINDOW * 2 {
                        let read = progress.messages - state.window_messages;
                        progress.messages_per_second = read as f64 / elapsed.as_secs_f64();
                    }
                    progress
                })
                .collect()
        })
    }
}
