//! The datagen generator: rows of random or sequential values for any declared schema, as Arrow
//! batches, configured with RisingWave-style options.
//!
//! Each column is either a **sequence** (`start`, `start + 1`, ... up to `end`) or **random**.
//! A random value depends only on the generator's seed, the column and the row number, never on
//! earlier rows: it is drawn from a splitmix64 stream positioned at the row. So the stream is the
//! same however it is cut into batches, and [`DatagenGenerator::resume`] from a checkpointed row
//! count reproduces the rest of it exactly.
//!
//! A stream with a sequence column is bounded: it ends when its shortest sequence does.
//! Without one it is unbounded.
//!
//! # Options
//!
//! Keys outside `fields.*` and `datagen.*` are ignored (they belong to the caller, e.g.
//! `connector`). Any other unknown key, an option naming a column the schema lacks, an option
//! that does not apply to its column, a value that does not parse and a column type datagen
//! cannot generate are errors naming what is wrong.
//!
//! | key | applies to | meaning | default |
//! |---|---|---|---|
//! | `datagen.rows.per.second` | | rate the caller should pace to (parsed and exposed only) | 10 |
//! | `datagen.seed` | | mixed into every random column's seed | 0 |
//! | `fields.<col>.kind` | all | `random` or `sequence` (numbers only) | `random` |
//! | `fields.<col>.start`, `.end` | sequence | first and last value, inclusive | 0, 32767 |
//! | `fields.<col>.min`, `.max` | random numbers, dates, timestamps | bounds, inclusive (floats: `max` exclusive) | 0, 32767 |
//! | `fields.<col>.max_past` | random timestamps | instead of `min`: a duration before `max`, e.g. `1h 30min` | 1 day |
//! | `fields.<col>.length` | random strings | characters (ASCII letters and digits) | 10 |
//! | `fields.<col>.seed` | random | the column's seed | its position |
//!
//! Columns may be `SMALLINT`, `INT`, `BIGINT` (Int16/32/64), `REAL`, `DOUBLE` (Float32/64),
//! `DECIMAL(p, s)` (Decimal128), `VARCHAR` (Utf8), `BOOLEAN`, `DATE` (Date32) and `TIMESTAMP`
//! (Timestamp(Microsecond), with or without a time zone). Dates take `YYYY-MM-DD` or a number of
//! days since the epoch; timestamps take `YYYY-MM-DD[ HH:MM:SS[.ffffff]]` or a number of
//! microseconds. Random dates default to the year 2023, random timestamps to the day before
//! 2024-01-01 00:00:00: fixed times rather than "now", so that a stream is reproducible. Decimal
//! sequences step by one whole unit.

mod column;
mod literal;

use std::collections::BTreeMap;

use arrow::array::{RecordBatch, RecordBatchOptions};
use arrow::datatypes::SchemaRef;

use crate::error::{Error, Result};
use column::{Column, ColumnOptions};

/// Default `datagen.rows.per.second`, as in RisingWave.
pub const DEFAULT_ROWS_PER_SECOND: u64 = 10;

/// A checked datagen configuration for one schema.
#[derive(Debug, Clone, PartialEq)]
pub struct DatagenConfig {
    schema: SchemaRef,
    columns: Vec<Column>,
    seed: u64,
    rows_per_second: u64,
    row_limit: Option<u64>,
}

impl DatagenConfig {
    /// Checks `options` against `schema` and builds each column's generator; see the
    /// [module docs](self) for the options.
    pub fn from_options(schema: &SchemaRef, options: &BTreeMap<String, String>) -> Result<Self> {
        let mut seed = 0;
        let mut rows_per_second = DEFAULT_ROWS_PER_SECOND;
        let mut by_column: Vec<ColumnOptions<'_>> = vec![BTreeMap::new(); schema.fields().len()];
        for (key, value) in options {
            if let Some(option) = key.strip_prefix("datagen.") {
                let parsed = value.trim().parse::<u64>().map_err(|error| {
                    Error::invalid_option(key.as_str(), value.as_str(), error.to_string())
                });
                match option {
                    "seed" => seed = parsed?,
                    "rows.per.second" => rows_per_second = parsed?,
                    _ => return Err(Error::UnknownOption { key: key.clone() }),
                }
            } else if let Some(rest) = key.strip_prefix("fields.") {
                let (column, option) = rest
                    .rsplit_once('.')
                    .filter(|(column, _)| !column.is_empty())
                    .ok_or_else(|| Error::UnknownOption { key: key.clone() })?;
                let index = schema.index_of(column).map_err(|_| Error::UnknownColumn {
                    column: column.to_string(),
                    key: key.clone(),
                })?;
                by_column[index].insert(option, (key.as_str(), value.as_str()));
            }
        }
        let columns = schema
            .fields()
            .iter()
            .zip(&by_column)
            .enumerate()
            .map(|(index, (field, options))| Column::new(field, index, options, seed))
            .collect::<Result<Vec<_>>>()?;
        let row_limit = columns.iter().filter_map(Column::row_limit).min();
        Ok(Self {
            schema: SchemaRef::clone(schema),
            columns,
            seed,
            rows_per_second,
            row_limit,
        })
    }

    /// The schema of the generated batches.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// `datagen.seed`.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// `datagen.rows.per.second`: the rate a caller should pace the stream to.
    pub fn rows_per_second(&self) -> u64 {
        self.rows_per_second
    }

    /// The number of rows of a bounded stream (its shortest sequence), or `None` if unbounded.
    pub fn row_limit(&self) -> Option<u64> {
        self.row_limit
    }

    /// The most rows one batch holds: 1,048,576, or fewer where long strings would make a batch
    /// exceed about 1 GiB.
    pub fn max_rows_per_batch(&self) -> u64 {
        const MAX_ROWS: u64 = 1 << 20;
        const MAX_BYTES: u64 = 1 << 30;
        let row_bytes: u64 = self.columns.iter().map(Column::estimated_bytes).sum();
        (MAX_BYTES / row_bytes.max(1)).clamp(1, MAX_ROWS)
    }
}

/// Generates rows for a [`DatagenConfig`]; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct DatagenGenerator {
    config: DatagenConfig,
    rows_generated: u64,
}

impl DatagenGenerator {
    /// A generator at the first row.
    pub fn new(config: DatagenConfig) -> Self {
        Self::resume(config, 0)
    }

    /// A generator that continues a stream of which `rows_generated` rows were produced (as
    /// returned by [`rows_generated`](Self::rows_generated) when it was checkpointed).
    pub fn resume(config: DatagenConfig, rows_generated: u64) -> Self {
        Self {
            config,
            rows_generated,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &DatagenConfig {
        &self.config
    }

    /// The number of rows produced so far; checkpoint it to [`resume`](Self::resume).
    pub fn rows_generated(&self) -> u64 {
        self.rows_generated
    }

    /// Whether a bounded stream has produced all its rows.
    pub fn is_exhausted(&self) -> bool {
        self.remaining() == 0
    }

    /// The next `rows` rows (fewer at the end of a bounded stream, and at most
    /// [`DatagenConfig::max_rows_per_batch`]), or `None` once a sequence is exhausted.
    pub fn next_batch(&mut self, rows: usize) -> Result<Option<RecordBatch>> {
        if self.is_exhausted() {
            return Ok(None);
        }
        let rows = (rows as u64)
            .min(self.remaining())
            .min(self.config.max_rows_per_batch()) as usize;
        let columns = self
            .config
            .columns
            .iter()
            .map(|column| column.generate(self.rows_generated, rows))
            .collect::<Result<Vec<_>>>()?;
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        let batch = RecordBatch::try_new_with_options(
            SchemaRef::clone(&self.config.schema),
            columns,
            &options,
        )?;
        self.rows_generated += rows as u64;
        Ok(Some(batch))
    }

    fn remaining(&self) -> u64 {
        let left = u64::MAX - self.rows_generated;
        match self.config.row_limit {
            Some(limit) => limit.saturating_sub(self.rows_generated).min(left),
            None => left,
        }
    }
}
