//! The built-in generators as sources: `connector = 'nexmark'` and
//! `connector = 'datagen'`, paced to a rate of events per second (or as
//! fast as the dataflow takes them).
//!
//! ```sql
//! CREATE SOURCE bid WITH (connector = 'nexmark', nexmark.table.type = 'Bid',
//!                         nexmark.events.per.second = '1000');
//! CREATE SOURCE readings (id BIGINT, temperature DOUBLE)
//!   WITH (connector = 'datagen', fields.id.kind = 'sequence', datagen.rows.per.second = '100');
//! ```
//!
//! A generator source's declared columns are a subset of the generated ones
//! (Nexmark), or the columns to generate (datagen); values are cast to the
//! declared types.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::datagen::{DatagenConfig, DatagenGenerator};
use crate::nexmark::{self, NexmarkConfig, NexmarkGenerator, NexmarkTable};
use crate::source::{Resume, SourceBatch, SourceProgress, SourceReader};
use crate::spec::SourceSpec;
use crate::{Error, Result};

/// The pacing option of the Nexmark source: events (of all three kinds)
/// per second; `0` or absent: as fast as they are taken.
const NEXMARK_RATE: &str = "nexmark.events.per.second";

/// Events (or rows) generated per batch at most.
const MAX_BATCH: usize = 8192;

/// The Nexmark table a source reads, its configuration and its pace.
fn nexmark_config(spec: &SourceSpec) -> Result<(NexmarkConfig, NexmarkTable, u64)> {
    check_no_format(spec, "nexmark")?;
    let mut options: BTreeMap<String, String> = BTreeMap::new();
    let mut rate = 0;
    for (key, value) in &spec.options {
        if key == NEXMARK_RATE {
            rate = value.trim().parse::<u64>().map_err(|error| {
                Error::invalid_option(key.as_str(), value.as_str(), error.to_string())
            })?;
        } else if key != "connector" {
            options.insert(key.clone(), value.clone());
        }
    }
    let config = NexmarkConfig::from_options(&options)?;
    let table = config.table.ok_or_else(|| {
        Error::InvalidConfig(
            "a nexmark source needs nexmark.table.type = 'Person', 'Auction' or 'Bid'".into(),
        )
    })?;
    Ok((config, table, rate))
}

/// The declared columns of a Nexmark source (all of the table's when none
/// are declared), each of which must be a column of the table.
pub(crate) fn nexmark_schema(spec: &SourceSpec, declared: &SchemaRef) -> Result<SchemaRef> {
    let (_, table, _) = nexmark_config(spec)?;
    let generated = nexmark::schema(table);
    if declared.fields().is_empty() {
        return Ok(sql_types(&generated));
    }
    for field in declared.fields() {
        let (_, source) = generated.column_with_name(field.name()).ok_or_else(|| {
            Error::InvalidConfig(format!(
                "the nexmark {} table has no column \"{}\"",
                table.name(),
                field.name()
            ))
        })?;
        if !arrow::compute::can_cast_types(source.data_type(), field.data_type()) {
            return Err(Error::InvalidConfig(format!(
                "nexmark column \"{}\" is {}, which cannot be read as {}",
                field.name(),
                source.data_type(),
                field.data_type()
            )));
        }
    }
    Ok(declared.clone())
}

/// The columns of a datagen source: exactly the declared ones.
pub(crate) fn datagen_schema(spec: &SourceSpec, declared: &SchemaRef) -> Result<SchemaRef> {
    check_no_format(spec, "datagen")?;
    if declared.fields().is_empty() {
        return Err(Error::InvalidConfig(
            "a datagen source needs a column list".into(),
        ));
    }
    DatagenConfig::from_options(&generated_types(declared), &generator_options(spec))?;
    Ok(declared.clone())
}

pub(crate) fn open_nexmark(
    spec: &SourceSpec,
    schema: &SchemaRef,
    progress: Arc<SourceProgress>,
    resume: Option<Resume>,
) -> Result<Box<dyn SourceReader>> {
    let (config, table, rate) = nexmark_config(spec)?;
    let generated = nexmark::schema(table);
    let columns = schema
        .fields()
        .iter()
        .map(|field| {
            generated.index_of(field.name()).map_err(|_| {
                Error::InvalidConfig(format!("nexmark has no column \"{}\"", field.name()))
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let generator = match resumed_after(resume.as_ref()) {
        Some(last) => NexmarkGenerator::resume(config, last + 1)?,
        None => NexmarkGenerator::new(config)?,
    };
    Ok(Box::new(NexmarkReader {
        generator,
        table,
        columns,
        schema: schema.clone(),
        pace: Pace::new(rate),
        progress,
    }))
}

pub(crate) fn open_datagen(
    spec: &SourceSpec,
    schema: &SchemaRef,
    progress: Arc<SourceProgress>,
    resume: Option<Resume>,
) -> Result<Box<dyn SourceReader>> {
    let config = DatagenConfig::from_options(&generated_types(schema), &generator_options(spec))?;
    let rate = config.rows_per_second();
    let generator = match resumed_after(resume.as_ref()) {
        Some(last) => DatagenGenerator::resume(config, last + 1),
        None => DatagenGenerator::new(config),
    };
    Ok(Box::new(DatagenReader {
        generator,
        schema: schema.clone(),
        pace: Pace::new(rate),
        progress,
    }))
}

/// A generator's one partition, in positions and progress.
const PARTITION: &str = "0";

/// The number of the last event or row a resumed generator's reader took
/// (its one partition, `"0"`), if it took any.
fn resumed_after(resume: Option<&Resume>) -> Option<u64> {
    let last = *resume?.positions.get(PARTITION)?;
    u64::try_from(last).ok()
}

fn check_no_format(spec: &SourceSpec, connector: &str) -> Result<()> {
    if spec.format.is_some() {
        return Err(Error::InvalidConfig(format!(
            "the {connector} connector generates rows itself: FORMAT ... ENCODE ... does not apply"
        )));
    }
    if !spec.includes.is_empty() {
        return Err(Error::InvalidConfig(format!(
            "the {connector} connector has no metadata columns to INCLUDE"
        )));
    }
    Ok(())
}

fn generator_options(spec: &SourceSpec) -> BTreeMap<String, String> {
    spec.options
        .iter()
        .filter(|(key, _)| key.as_str() != "connector")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The declared schema with the types the generators produce: timestamps
/// in microseconds (SQL's precision).
fn generated_types(schema: &SchemaRef) -> SchemaRef {
    with_timestamp_unit(schema, TimeUnit::Microsecond)
}

/// A generated schema with the types SQL gives its columns (timestamps in
/// nanoseconds, as DataFusion types `TIMESTAMP`).
fn sql_types(schema: &SchemaRef) -> SchemaRef {
    with_timestamp_unit(schema, TimeUnit::Nanosecond)
}

fn with_timestamp_unit(schema: &SchemaRef, unit: TimeUnit) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|field| match field.data_type() {
            DataType::Timestamp(_, zone) => field
                .as_ref()
                .clone()
                .with_data_type(DataType::Timestamp(unit, zone.clone())),
            _ => field.as_ref().clone(),
        })
        .collect();
    Arc::new(Schema::new(fields))
}

/// `columns` of a generated batch, cast to `schema`.
fn conform(
    batch: &RecordBatch,
    columns: Option<&[usize]>,
    schema: &SchemaRef,
) -> Result<RecordBatch> {
    let arrays = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(index, field)| {
            let column = batch.column(columns.map_or(index, |c| c[index]));
            Ok(if column.data_type() == field.data_type() {
                column.clone()
            } else {
                cast(column, field.data_type())?
            })
        })
        .collect::<Result<Vec<ArrayRef>>>()?;
    let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    Ok(RecordBatch::try_new_with_options(
        schema.clone(),
        arrays,
        &options,
    )?)
}

/// Paces a generator to a rate per second, in batches of at least a
/// hundredth of a second's worth (so that a slow rate does not mean a
/// wake-up per event).
#[derive(Debug)]
struct Pace {
    rate: u64,
    started: Option<Instant>,
    generated: u64,
}

impl Pace {
    fn new(rate: u64) -> Self {
        Self {
            rate,
            started: None,
            generated: 0,
        }
    }

    /// Wait until a batch is due and say how many to generate.
    async fn next(&mut self) -> usize {
        if self.rate == 0 {
            return MAX_BATCH;
        }
        let started = *self.started.get_or_insert_with(Instant::now);
        let step = (self.rate / 100).clamp(1, MAX_BATCH as u64);
        loop {
            let elapsed = started.elapsed().as_secs_f64();
            let due = (elapsed * self.rate as f64) as u64;
            let ready = due.saturating_sub(self.generated);
            if ready >= step {
                return ready.min(MAX_BATCH as u64) as usize;
            }
            let wait = (self.generated + step) as f64 / self.rate as f64 - elapsed;
            tokio::time::sleep(Duration::from_secs_f64(wait.max(0.001))).await;
        }
    }

    fn generated(&mut self, count: u64) {
        self.generated += count;
    }
}

struct NexmarkReader {
    generator: NexmarkGenerator,
    table: NexmarkTable,
    columns: Vec<usize>,
    schema: SchemaRef,
    pace: Pace,
    progress: Arc<SourceProgress>,
}

#[async_trait::async_trait]
impl SourceReader for NexmarkReader {
    async fn next_batch(&mut self) -> Result<Option<SourceBatch>> {
        loop {
            let events = self.pace.next().await;
            let Some(batches) = self.generator.next_events(events)? else {
                self.progress.set_status("ended");
                return Ok(None);
            };
            self.pace.generated(events as u64);
            let rows = batches.table(self.table);
            if rows.num_rows() == 0 {
                continue;
            }
            let last = self.generator.next_event_id().saturating_sub(1);
            self.progress
                .record(PARTITION, last as i64, rows.num_rows() as u64);
            return Ok(Some(SourceBatch {
                upserts: None,
                message_keys: Vec::new(),
                rows: conform(rows, Some(&self.columns), &self.schema)?,
                positions: vec![(PARTITION.to_string(), last as i64)],
            }));
        }
    }
}

struct DatagenReader {
    generator: DatagenGenerator,
    schema: SchemaRef,
    pace: Pace,
    progress: Arc<SourceProgress>,
}

#[async_trait::async_trait]
impl SourceReader for DatagenReader {
    async fn next_batch(&mut self) -> Result<Option<SourceBatch>> {
        let rows = self.pace.next().await;
        let Some(batch) = self.generator.next_batch(rows)? else {
            self.progress.set_status("ended");
            return Ok(None);
        };
        self.pace.generated(batch.num_rows() as u64);
        let last = self.generator.rows_generated().saturating_sub(1);
        self.progress
            .record(PARTITION, last as i64, batch.num_rows() as u64);
        Ok(Some(SourceBatch {
            upserts: None,
            message_keys: Vec::new(),
            rows: conform(&batch, None, &self.schema)?,
            positions: vec![(PARTITION.to_string(), last as i64)],
        }))
    }
}
