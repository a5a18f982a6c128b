//! Arrow rows to Postgres DataRow messages.
//!
//! arrow-pg does the type mapping; this layer sends NULLs itself (arrow-pg
//! reads the value slot of a NULL interval) and prints floats and timestamps
//! in text format the way PostgreSQL does (`3`, `1e+20`,
//! `2024-01-01 10:00:00`), where arrow-pg would print `3.0`, `1e20` and six
//! fractional digits.

use std::sync::Arc;

use arrow_pg::encoder::encode_value;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{
    DataType, Float32Type, Float64Type, TimeUnit, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType,
};
use pgwire::api::results::{DataRowEncoder, FieldFormat, FieldInfo};
use pgwire::error::PgWireResult;
use pgwire::messages::data::DataRow;

/// Encode every row of `batch` for `fields`.
pub fn rows(
    fields: Arc<Vec<FieldInfo>>,
    batch: RecordBatch,
) -> impl Iterator<Item = PgWireResult<DataRow>> + Send + Sync {
    let mut encoder = DataRowEncoder::new(fields.clone());
    (0..batch.num_rows()).map(move |row| {
        let schema = batch.schema();
        for (column, (array, field)) in batch.columns().iter().zip(schema.fields()).enumerate() {
            let pg_field = &fields[column];
            if array.is_null(row) {
                encoder.encode_field_with_type_and_format(
                    &None::<i32>,
                    pg_field.datatype(),
                    pg_field.format(),
                    pg_field.format_options(),
                )?;
            } else if let Some(text) = (pg_field.format() == FieldFormat::Text)
                .then(|| postgres_text(array, row))
                .flatten()
            {
                encoder.encode_field_with_type_and_format(
                    &text,
                    pg_field.datatype(),
                    FieldFormat::Text,
                    pg_field.format_options(),
                )?;
            } else {
                encode_value(&mut encoder, array, row, field, pg_field)?;
            }
        }
        Ok(encoder.take_row())
    })
}

/// PostgreSQL's text form of a value, where it differs from arrow-pg's.
fn postgres_text(array: &ArrayRef, row: usize) -> Option<String> {
    match array.data_type() {
        DataType::Float64 => Some(float_text(
            array.as_primitive::<Float64Type>().value(row),
            15,
        )),
        DataType::Float32 => Some(float_text(
            array.as_primitive::<Float32Type>().value(row) as f64,
            6,
        )),
        DataType::Timestamp(unit, zone) => {
            let micros = match unit {
                TimeUnit::Second => {
                    array.as_primitive::<TimestampSecondType>().value(row) * 1_000_000
                }
                TimeUnit::Millisecond => {
                    array.as_primitive::<TimestampMillisecondType>().value(row) * 1_000
                }
                TimeUnit::Microsecond => {
                    array.as_primitive::<TimestampMicrosecondType>().value(row)
                }
                TimeUnit::Nanosecond => {
                    array.as_primitive::<TimestampNanosecondType>().value(row) / 1_000
                }
            };
            let time = chrono::DateTime::from_timestamp_micros(micros)?.naive_utc();
            let mut text = time.format("%Y-%m-%d %H:%M:%S").to_string();
            let fraction = micros.rem_euclid(1_000_000);
            if fraction != 0 {
                let digits = format!("{fraction:06}");
                text.push('.');
                text.push_str(digits.trim_end_matches('0'));
            }
            // Zoned timestamps are stored in UTC and shown in the session's
            // time zone, which is UTC.
            if zone.is_some() {
                text.push_str("+00");
            }
            Some(text)
        }
        _ => None,
    }
}

/// Shortest round-trip digits; scientific notation with a two-digit
/// exponent outside `1e-4 <= |v| < 10^digits`, as PostgreSQL prints floats.
fn float_text(value: f64, digits: i32) -> String {
    if value.is_nan() {
        return "NaN".into();
    }
    if value.is_infinite() {
        return if value > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    if value == 0.0 {
        return if value.is_sign_negative() { "-0" } else { "0" }.into();
    }
    let scientific = if digits == 6 {
        format!("{:e}", value as f32)
    } else {
        format!("{value:e}")
    };
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    if (-4..digits).contains(&exponent) {
        if digits == 6 {
            format!("{}", value as f32)
        } else {
            format!("{value}")
        }
    } else {
        let sign = if exponent < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exponent.abs())
    }
}

#[cfg(test)]
mod tests {
    use super::float_text;

    #[test]
    fn floats_print_like_postgres() {
        assert_eq!(float_text(3.0, 15), "3");
        assert_eq!(float_text(1e20, 15), "1e+20");
        assert_eq!(float_text(0.1 + 0.2, 15), "0.30000000000000004");
        assert_eq!(float_text(1.5e-5, 15), "1.5e-05");
        assert_eq!(float_text(-2.5, 15), "-2.5");
        assert_eq!(float_text(1e7, 6), "1e+07");
        assert_eq!(float_text(3.45, 6), "3.45");
    }
}
