//! One generated column: its options, checked against its type, and the values of any rows.
//!
//! A value depends only on the column's seed and the row number: random values come from a
//! splitmix64 stream positioned at the row, so any range of rows can be generated on its own.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Date32Array, Decimal128Array, Float32Array, Float64Array, Int16Array,
    Int32Array, Int64Array, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, TimeUnit};

use super::literal::{
    parse_date_days, parse_decimal, parse_duration_micros, parse_timestamp_micros,
};
use crate::error::{Error, Result};
use crate::nexmark::splitmix64;
use crate::string_column::StringColumn;

/// splitmix64's increment: consecutive rows are consecutive positions of one stream.
const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// RisingWave's default bounds for numbers, random or sequence.
const DEFAULT_MIN: i64 = 0;
const DEFAULT_MAX: i64 = 32_767;
/// Default length of random strings.
const DEFAULT_STRING_LENGTH: usize = 10;
/// Longest random strings, so that a batch of them stays well within Arrow's 2 GiB.
pub(crate) const MAX_STRING_LENGTH: usize = 1 << 20;
/// Random timestamps default to the day before this instant, 2024-01-01 00:00:00 (RisingWave's
/// default `max_past` of one day, anchored at a fixed time rather than now, for determinism).
const DEFAULT_MAX_TIMESTAMP_MICROS: i64 = 1_704_067_200_000_000;
const ONE_DAY_MICROS: i64 = 86_400_000_000;
/// Random dates default to the year 2023 (days since the epoch).
const DEFAULT_MIN_DATE_DAYS: i64 = 19_358;
const DEFAULT_MAX_DATE_DAYS: i64 = 19_722;

const ALPHANUMERIC: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// How a column's values are made.
#[derive(Debug, Clone, PartialEq)]
enum Generator {
    /// `start + row` for integers (Int16/32/64), up to `end` inclusive.
    IntegerSequence { start: i64, end: i64 },
    /// `start + row` for floats, `count` values (up to `end`).
    FloatSequence { start: f64, count: u64 },
    /// `start + row` whole units for decimals (scaled integers), up to `end` inclusive.
    DecimalSequence { start: i128, end: i128, step: i128 },
    /// Uniform in `min..=max`: integers, dates (days) and timestamps (microseconds).
    RandomInteger { min: i64, max: i64 },
    /// Uniform in `min..max`.
    RandomFloat { min: f64, max: f64 },
    /// Uniform in `min..=max`, scaled.
    RandomDecimal { min: i128, max: i128 },
    /// `length` random ASCII letters and digits.
    RandomString { length: usize },
    /// A fair coin.
    RandomBoolean,
}

/// A column of a datagen schema and how to generate it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Column {
    data_type: DataType,
    generator: Generator,
    seed: u64,
}

/// The `fields.<column>.<option>` values given for one column, by option name.
pub(crate) type ColumnOptions<'a> = BTreeMap<&'a str, (&'a str, &'a str)>;

impl Column {
    /// Checks the options of `field`, the column at `index`, and builds its generator.
    /// `options` maps an option name to its full key and its value. The column's random values
    /// are seeded from `global_seed` and its `seed` option (by default its index).
    pub(crate) fn new(
        field: &Field,
        index: usize,
        options: &ColumnOptions<'_>,
        global_seed: u64,
    ) -> Result<Self> {
        let name = field.name();
        let data_type = field.data_type().clone();
        let option = |option: &str| options.get(option).copied();
        let supported = matches!(
            data_type,
            DataType::Int16
                | DataType::Int32
                | DataType::Int64
                | DataType::Float32
                | DataType::Float64
                | DataType::Decimal128(..)
                | DataType::Utf8
                | DataType::Boolean
                | DataType::Date32
                | DataType::Timestamp(TimeUnit::Microsecond, _)
        );
        if !supported {
            return Err(Error::UnsupportedType {
                column: name.clone(),
                data_type,
            });
        }
        let kind = match option("kind") {
            None => Kind::Random,
            Some((_, "random")) => Kind::Random,
            Some((_, "sequence")) => Kind::Sequence,
            Some((key, value)) => {
                return Err(Error::invalid_option(
                    key,
                    value,
                    "expected random or sequence",
                ))
            }
        };
        let allowed: &[&str] = match (kind, &data_type) {
            (Kind::Sequence, DataType::Utf8 | DataType::Boolean | DataType::Date32)
            | (Kind::Sequence, DataType::Timestamp(..)) => {
                let (key, value) = option("kind").unwrap_or(("kind", "sequence"));
                return Err(Error::invalid_option(
                    key,
                    value,
                    format!("column \"{name}\" of type {data_type} cannot be a sequence"),
                ));
            }
            (Kind::Sequence, _) => &["kind", "start", "end"],
            (Kind::Random, DataType::Utf8) => &["kind", "length", "seed"],
            (Kind::Random, DataType::Boolean) => &["kind", "seed"],
            (Kind::Random, DataType::Timestamp(..)) => &["kind", "min", "max", "max_past", "seed"],
            (Kind::Random, _) => &["kind", "min", "max", "seed"],
        };
        for (option, (key, _)) in options {
            if !allowed.contains(option) {
                return Err(Error::UnknownOption {
                    key: (*key).to_string(),
                });
            }
        }
        let column_seed = match option("seed") {
            Some((key, value)) => parse_number::<u64>(key, value)?,
            None => index as u64,
        };
        let seed = splitmix64(splitmix64(global_seed) ^ column_seed);

        let generator = match &data_type {
            DataType::Int16 => integer(kind, options, i64::from(i16::MIN), i64::from(i16::MAX))?,
            DataType::Int32 => integer(kind, options, i64::from(i32::MIN), i64::from(i32::MAX))?,
            DataType::Int64 => integer(kind, options, i64::MIN, i64::MAX)?,
            DataType::Float32 => float(kind, options, f64::from(f32::MAX))?,
            DataType::Float64 => float(kind, options, f64::MAX)?,
            DataType::Decimal128(precision, scale) => decimal(kind, options, *precision, *scale)?,
            DataType::Utf8 => string(options)?,
            DataType::Boolean => Generator::RandomBoolean,
            DataType::Date32 => date(options)?,
            // Microseconds, as checked above.
            _ => timestamp(name, options)?,
        };
        Ok(Self {
            data_type,
            generator,
            seed,
        })
    }

    /// How many rows this column can produce: a sequence's length, or `None` for random
    /// columns.
    pub(crate) fn row_limit(&self) -> Option<u64> {
        match self.generator {
            Generator::IntegerSequence { start, end } => {
                Some(u64::try_from(i128::from(end) - i128::from(start) + 1).unwrap_or(u64::MAX))
            }
            Generator::FloatSequence { count, .. } => Some(count),
            Generator::DecimalSequence { start, end, step } => {
                // As for random decimals, the difference may exceed i128 but not u128.
                let steps = end.wrapping_sub(start) as u128 / step.unsigned_abs();
                Some(u64::try_from(steps).map_or(u64::MAX, |s| s.saturating_add(1)))
            }
            _ => None,
        }
    }

    /// About how many bytes a value takes in a batch.
    pub(crate) fn estimated_bytes(&self) -> u64 {
        match self.generator {
            Generator::RandomString { length } => length as u64 + 4,
            _ => 16,
        }
    }

    /// The values of rows `first_row..first_row + rows`.
    pub(crate) fn generate(&self, first_row: u64, rows: usize) -> Result<ArrayRef> {
        let row_ids = first_row..first_row + rows as u64;
        let array: ArrayRef = match (&self.generator, &self.data_type) {
            (Generator::IntegerSequence { start, .. }, data_type) => {
                let values = row_ids.map(|row| start.wrapping_add(row as i64));
                integers(data_type, values)
            }
            (Generator::FloatSequence { start, .. }, data_type) => {
                let values = row_ids.map(|row| start + row as f64);
                floats(data_type, values)
            }
            (Generator::DecimalSequence { start, step, .. }, data_type) => {
                let values = row_ids.map(|row| start + i128::from(row) * step);
                decimals(data_type, values)?
            }
            (Generator::RandomInteger { min, max }, data_type) => {
                let span = (i128::from(*max) - i128::from(*min) + 1) as u128;
                let values = row_ids.map(|row| {
                    let offset = (u128::from(self.random(row)) * span) >> 64;
                    (i128::from(*min) + offset as i128) as i64
                });
                integers(data_type, values)
            }
            (Generator::RandomFloat { min, max }, data_type) => {
                let width = max - min;
                let values = row_ids.map(|row| {
                    let unit = (self.random(row) >> 11) as f64 * (1.0 / (1_u64 << 53) as f64);
                    if width.is_finite() {
                        min + width * unit
                    } else {
                        // Bounds near the type's limits: interpolate without overflowing.
                        min * (1.0 - unit) + max * unit
                    }
                });
                floats(data_type, values)
            }
            (Generator::RandomDecimal { min, max }, data_type) => {
                // The span of DECIMAL(38) bounds exceeds i128 but not u128; wrapping arithmetic
                // gives the exact unsigned difference and an exact in-range sum.
                let span = max.wrapping_sub(*min) as u128 + 1;
                let values =
                    row_ids.map(|row| min.wrapping_add(self.random_below(row, span) as i128));
                decimals(data_type, values)?
            }
            (Generator::RandomString { length }, _) => {
                let mut column = StringColumn::with_capacity(rows, *length);
                for row in row_ids {
                    let mut stream = self.stream(row);
                    let buffer = column.buffer();
                    let mut left = *length;
                    while left > 0 {
                        let mut bits = stream.next();
                        for _ in 0..left.min(8) {
                            buffer.push(ALPHANUMERIC[(bits % 62) as usize]);
                            bits /= 62;
                        }
                        left = left.saturating_sub(8);
                    }
                    column.end_row();
                }
                column.finish()?
            }
            (Generator::RandomBoolean, _) => {
                let values: BooleanArray = row_ids
                    .map(|row| Some(self.random(row) >> 63 == 1))
                    .collect();
                Arc::new(values)
            }
        };
        Ok(array)
    }

    /// The first random word of a row.
    fn random(&self, row: u64) -> u64 {
        splitmix64(self.seed.wrapping_add(row.wrapping_mul(GOLDEN_GAMMA)))
    }

    /// A stream of random words for a row that needs several.
    fn stream(&self, row: u64) -> SplitMix {
        SplitMix {
            state: self.random(row),
        }
    }

    /// Uniform in `0..span` (`span` at least 1), by rejection beyond 64 bits so that wide
    /// decimals are not biased.
    fn random_below(&self, row: u64, span: u128) -> u128 {
        if span <= 1 << 64 {
            return (u128::from(self.random(row)) * span) >> 64;
        }
        let zone = u128::MAX - (u128::MAX - span + 1) % span;
        let mut stream = self.stream(row);
        loop {
            let word = (u128::from(stream.next()) << 64) | u128::from(stream.next());
            if word <= zone {
                return word % span;
            }
        }
    }
}

/// splitmix64 as a sequential stream.
struct SplitMix {
    state: u64,
}

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN_GAMMA);
        splitmix64(self.state)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Random,
    Sequence,
}

fn integer(kind: Kind, options: &ColumnOptions<'_>, low: i64, high: i64) -> Result<Generator> {
    let (first, second) = match kind {
        Kind::Sequence => ("start", "end"),
        Kind::Random => ("min", "max"),
    };
    let lower = integer_option(options, first, DEFAULT_MIN)?;
    let upper = integer_option(options, second, DEFAULT_MAX.min(high))?;
    in_range(options, first, lower, low, high)?;
    in_range(options, second, upper, low, high)?;
    ordered(options, first, second, lower <= upper)?;
    Ok(match kind {
        Kind::Sequence => Generator::IntegerSequence {
            start: lower,
            end: upper,
        },
        Kind::Random => Generator::RandomInteger {
            min: lower,
            max: upper,
        },
    })
}

fn float(kind: Kind, options: &ColumnOptions<'_>, largest: f64) -> Result<Generator> {
    let (first, second) = match kind {
        Kind::Sequence => ("start", "end"),
        Kind::Random => ("min", "max"),
    };
    let lower = float_option(options, first, DEFAULT_MIN as f64, largest)?;
    let upper = float_option(options, second, DEFAULT_MAX as f64, largest)?;
    ordered(options, first, second, lower <= upper)?;
    Ok(match kind {
        Kind::Sequence => Generator::FloatSequence {
            start: lower,
            count: ((upper - lower).floor() as u64).saturating_add(1),
        },
        Kind::Random => Generator::RandomFloat {
            min: lower,
            max: upper,
        },
    })
}

fn string(options: &ColumnOptions<'_>) -> Result<Generator> {
    let length = match options.get("length") {
        Some((key, value)) => {
            let length: usize = parse_number(key, value)?;
            if length > MAX_STRING_LENGTH {
                return Err(Error::invalid_option(
                    *key,
                    *value,
                    format!("must be at most {MAX_STRING_LENGTH}"),
                ));
            }
            length
        }
        None => DEFAULT_STRING_LENGTH,
    };
    Ok(Generator::RandomString { length })
}

fn date(options: &ColumnOptions<'_>) -> Result<Generator> {
    let min = literal_option(options, "min", DEFAULT_MIN_DATE_DAYS, parse_date_days)?;
    let max = literal_option(options, "max", DEFAULT_MAX_DATE_DAYS, parse_date_days)?;
    let (low, high) = (i64::from(i32::MIN), i64::from(i32::MAX));
    in_range(options, "min", min, low, high)?;
    in_range(options, "max", max, low, high)?;
    ordered(options, "min", "max", min <= max)?;
    Ok(Generator::RandomInteger { min, max })
}

fn timestamp(column: &str, options: &ColumnOptions<'_>) -> Result<Generator> {
    let max = literal_option(
        options,
        "max",
        DEFAULT_MAX_TIMESTAMP_MICROS,
        parse_timestamp_micros,
    )?;
    let min = match (options.get("min"), options.get("max_past")) {
        (Some((key, _)), Some(_)) => {
            return Err(Error::InvalidConfig(format!(
                "options \"{key}\" and \"fields.{column}.max_past\" cannot both be set"
            )))
        }
        (Some((key, value)), None) => parse_literal(key, value, parse_timestamp_micros)?,
        (None, Some((key, value))) => {
            let past = parse_literal(key, value, parse_duration_micros)?;
            max.checked_sub(past).ok_or_else(|| {
                Error::invalid_option(*key, *value, "reaches before the earliest timestamp")
            })?
        }
        (None, None) => max.saturating_sub(ONE_DAY_MICROS),
    };
    ordered(options, "min", "max", min <= max)?;
    Ok(Generator::RandomInteger { min, max })
}

fn decimal(kind: Kind, options: &ColumnOptions<'_>, precision: u8, scale: i8) -> Result<Generator> {
    let (first, second) = match kind {
        Kind::Sequence => ("start", "end"),
        Kind::Random => ("min", "max"),
    };
    let unit = 10_i128.pow(u32::try_from(scale.max(0)).unwrap_or(0));
    let largest = 10_i128.pow(u32::from(precision.min(38))) - 1;
    let parse = |option: &str, default: i64| -> Result<i128> {
        let value = match options.get(option) {
            Some((key, value)) => parse_decimal(value, scale)
                .map_err(|reason| Error::invalid_option(*key, *value, reason))?,
            None => (i128::from(default) * unit).clamp(-largest, largest),
        };
        if value.abs() > largest {
            let (key, text) = options.get(option).copied().unwrap_or((option, ""));
            return Err(Error::invalid_option(
                key,
                text,
                format!("does not fit DECIMAL({precision}, {scale})"),
            ));
        }
        Ok(value)
    };
    let lower = parse(first, DEFAULT_MIN)?;
    let upper = parse(second, DEFAULT_MAX)?;
    ordered(options, first, second, lower <= upper)?;
    Ok(match kind {
        Kind::Sequence => Generator::DecimalSequence {
            start: lower,
            end: upper,
            step: unit,
        },
        Kind::Random => Generator::RandomDecimal {
            min: lower,
            max: upper,
        },
    })
}

fn parse_number<T: std::str::FromStr>(key: &str, value: &str) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    value
        .trim()
        .parse()
        .map_err(|error: T::Err| Error::invalid_option(key, value, error.to_string()))
}

fn parse_literal(key: &str, value: &str, parse: fn(&str) -> Result<i64, String>) -> Result<i64> {
    parse(value.trim()).map_err(|reason| Error::invalid_option(key, value, reason))
}

fn integer_option(options: &ColumnOptions<'_>, option: &str, default: i64) -> Result<i64> {
    match options.get(option) {
        Some((key, value)) => parse_number(key, value),
        None => Ok(default),
    }
}

fn float_option(
    options: &ColumnOptions<'_>,
    option: &str,
    default: f64,
    largest: f64,
) -> Result<f64> {
    match options.get(option) {
        Some((key, value)) => {
            let parsed: f64 = parse_number(key, value)?;
            if parsed.is_finite() && parsed.abs() <= largest {
                Ok(parsed)
            } else {
                Err(Error::invalid_option(
                    *key,
                    *value,
                    "must be a finite number within the column's type",
                ))
            }
        }
        None => Ok(default),
    }
}

fn literal_option(
    options: &ColumnOptions<'_>,
    option: &str,
    default: i64,
    parse: fn(&str) -> Result<i64, String>,
) -> Result<i64> {
    match options.get(option) {
        Some((key, value)) => parse_literal(key, value, parse),
        None => Ok(default),
    }
}

fn in_range(
    options: &ColumnOptions<'_>,
    option: &str,
    value: i64,
    low: i64,
    high: i64,
) -> Result<()> {
    if (low..=high).contains(&value) {
        return Ok(());
    }
    let (key, text) = options.get(option).copied().unwrap_or((option, ""));
    Err(Error::invalid_option(
        key,
        text,
        format!("must be between {low} and {high}"),
    ))
}

fn ordered(options: &ColumnOptions<'_>, low: &str, high: &str, ok: bool) -> Result<()> {
    if ok {
        return Ok(());
    }
    let key = |option: &str| {
        options
            .get(option)
            .map_or(option, |(key, _)| *key)
            .to_string()
    };
    Err(Error::InvalidConfig(format!(
        "option \"{}\" must not be greater than option \"{}\"",
        key(low),
        key(high)
    )))
}

fn integers(data_type: &DataType, values: impl Iterator<Item = i64>) -> ArrayRef {
    // Values are within the column's range: bounds were checked against the type.
    match data_type {
        DataType::Int16 => Arc::new(Int16Array::from_iter_values(values.map(|v| v as i16))),
        DataType::Int32 => Arc::new(Int32Array::from_iter_values(values.map(|v| v as i32))),
        DataType::Date32 => Arc::new(Date32Array::from_iter_values(values.map(|v| v as i32))),
        DataType::Timestamp(_, timezone) => Arc::new(
            TimestampMicrosecondArray::from_iter_values(values).with_timezone_opt(timezone.clone()),
        ),
        _ => Arc::new(Int64Array::from_iter_values(values)),
    }
}

fn floats(data_type: &DataType, values: impl Iterator<Item = f64>) -> ArrayRef {
    match data_type {
        DataType::Float32 => Arc::new(Float32Array::from_iter_values(values.map(|v| v as f32))),
        _ => Arc::new(Float64Array::from_iter_values(values)),
    }
}

fn decimals(data_type: &DataType, values: impl Iterator<Item = i128>) -> Result<ArrayRef> {
    let (precision, scale) = match data_type {
        DataType::Decimal128(precision, scale) => (*precision, *scale),
        _ => (38, 0),
    };
    Ok(Arc::new(
        Decimal128Array::from_iter_values(values).with_precision_and_scale(precision, scale)?,
    ))
}
