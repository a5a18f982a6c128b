//! The datagen generator: option parsing and its errors, sequences and their end, bounds of
//! random values, determinism, and resumption from a row count.

// Helpers panic on a malformed batch: that is a test failure.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{
    Array, AsArray, BooleanArray, Date32Array, Decimal128Array, Float32Array, Float64Array,
    Int16Array, Int32Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use eddy_connectors::datagen::{DatagenConfig, DatagenGenerator, DEFAULT_ROWS_PER_SECOND};
use eddy_connectors::Error;

fn schema(fields: &[(&str, DataType)]) -> SchemaRef {
    Arc::new(Schema::new(
        fields
            .iter()
            .map(|(name, data_type)| Field::new(*name, data_type.clone(), true))
            .collect::<Vec<_>>(),
    ))
}

fn options(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn all_types() -> SchemaRef {
    schema(&[
        ("id", DataType::Int64),
        ("small", DataType::Int16),
        ("medium", DataType::Int32),
        ("big", DataType::Int64),
        ("real", DataType::Float32),
        ("double", DataType::Float64),
        ("name", DataType::Utf8),
        ("flag", DataType::Boolean),
        ("day", DataType::Date32),
        ("at", DataType::Timestamp(TimeUnit::Microsecond, None)),
        (
            "at_utc",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        ),
        ("amount", DataType::Decimal128(10, 2)),
    ])
}

fn generate(schema: &SchemaRef, pairs: &[(&str, &str)], rows: usize) -> RecordBatch {
    let config = DatagenConfig::from_options(schema, &options(pairs)).unwrap();
    DatagenGenerator::new(config)
        .next_batch(rows)
        .unwrap()
        .unwrap()
}

fn column<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> &'a T {
    batch
        .column_by_name(name)
        .unwrap()
        .as_any()
        .downcast_ref::<T>()
        .unwrap()
}

#[test]
fn every_supported_type_is_generated_with_defaults() {
    let schema = all_types();
    let batch = generate(&schema, &[], 1000);
    assert_eq!(batch.num_rows(), 1000);
    assert_eq!(batch.schema(), schema);
    for array in batch.columns() {
        assert_eq!(array.null_count(), 0);
    }
    let small = column::<Int16Array>(&batch, "small");
    assert!(small.values().iter().all(|v| (0..=32_767).contains(v)));
    let names = column::<StringArray>(&batch, "name");
    assert!(names
        .iter()
        .all(|v| v.unwrap().len() == 10 && v.unwrap().bytes().all(|b| b.is_ascii_alphanumeric())));
    let flags = column::<BooleanArray>(&batch, "flag");
    let trues = flags.true_count();
    assert!((400..600).contains(&trues), "{trues} of 1000");
    let days = column::<Date32Array>(&batch, "day");
    assert!(days.values().iter().all(|d| (19_358..=19_722).contains(d)));
    let at = column::<TimestampMicrosecondArray>(&batch, "at");
    let anchor = 1_704_067_200_000_000;
    assert!(at
        .values()
        .iter()
        .all(|t| (anchor - 86_400_000_000..=anchor).contains(t)));
    let amounts = column::<Decimal128Array>(&batch, "amount");
    assert_eq!((amounts.precision(), amounts.scale()), (10, 2));
    assert!(amounts.values().iter().all(|a| (0..=3_276_700).contains(a)));
}

#[test]
fn min_and_max_are_respected() {
    let schema = all_types();
    let batch = generate(
        &schema,
        &[
            ("fields.small.min", "-5"),
            ("fields.small.max", "5"),
            ("fields.medium.min", "-2000000000"),
            ("fields.medium.max", "2000000000"),
            ("fields.big.min", "-9223372036854775808"),
            ("fields.big.max", "9223372036854775807"),
            ("fields.real.min", "1.5"),
            ("fields.real.max", "2.5"),
            ("fields.double.min", "-1"),
            ("fields.double.max", "1"),
            ("fields.name.length", "3"),
            ("fields.day.min", "2024-02-28"),
            ("fields.day.max", "2024-03-01"),
            ("fields.at.min", "2024-01-01 00:00:00"),
            ("fields.at.max", "2024-01-01 00:00:01.5"),
            ("fields.at_utc.max", "2024-06-01T12:00:00"),
            ("fields.at_utc.max_past", "1h 30min"),
            ("fields.amount.min", "-1.25"),
            ("fields.amount.max", "1.25"),
        ],
        5000,
    );
    let small = column::<Int16Array>(&batch, "small");
    assert!(small.values().iter().all(|v| (-5..=5).contains(v)));
    // Both ends of a small range are reached.
    assert!(small.values().contains(&-5) && small.values().contains(&5));
    let medium = column::<Int32Array>(&batch, "medium");
    assert!(medium
        .values()
        .iter()
        .all(|v| (-2_000_000_000..=2_000_000_000).contains(v)));
    let big = column::<Int64Array>(&batch, "big");
    assert!(big.values().iter().any(|v| *v < 0) && big.values().iter().any(|v| *v > 0));
    let real = column::<Float32Array>(&batch, "real");
    assert!(real.values().iter().all(|v| (1.5..=2.5).contains(v)));
    let double = column::<Float64Array>(&batch, "double");
    assert!(double.values().iter().all(|v| (-1.0..1.0).contains(v)));
    let names = column::<StringArray>(&batch, "name");
    assert!(names.iter().all(|v| v.unwrap().len() == 3));
    let days = column::<Date32Array>(&batch, "day");
    assert!(days.values().iter().all(|d| (19_781..=19_783).contains(d)));
    assert!(days.values().contains(&19_782), "2024-02-29 is in range");
    let at = column::<TimestampMicrosecondArray>(&batch, "at");
    let start = 1_704_067_200_000_000;
    assert!(at
        .values()
        .iter()
        .all(|t| (start..=start + 1_500_000).contains(t)));
    let at_utc = column::<TimestampMicrosecondArray>(&batch, "at_utc");
    assert_eq!(at_utc.timezone(), Some("UTC"));
    let noon = 1_717_243_200_000_000;
    assert!(at_utc
        .values()
        .iter()
        .all(|t| (noon - 5_400_000_000..=noon).contains(t)));
    let amounts = column::<Decimal128Array>(&batch, "amount");
    assert!(amounts.values().iter().all(|a| (-125..=125).contains(a)));
    assert!(amounts.values().contains(&-125) && amounts.values().contains(&125));
}

#[test]
fn a_sequence_counts_rows_and_ends_the_stream() {
    let schema = schema(&[
        ("id", DataType::Int32),
        ("n", DataType::Int64),
        ("x", DataType::Float64),
        ("price", DataType::Decimal128(6, 2)),
    ]);
    let config = DatagenConfig::from_options(
        &schema,
        &options(&[
            ("fields.id.kind", "sequence"),
            ("fields.id.start", "-3"),
            ("fields.id.end", "6"),
            ("fields.n.kind", "sequence"),
            ("fields.n.start", "100"),
            ("fields.x.kind", "sequence"),
            ("fields.x.start", "0.5"),
            ("fields.price.kind", "sequence"),
            ("fields.price.start", "1.25"),
        ]),
    )
    .unwrap();
    // The shortest sequence, id, has ten values.
    assert_eq!(config.row_limit(), Some(10));
    let mut generator = DatagenGenerator::new(config);
    let first = generator.next_batch(4).unwrap().unwrap();
    let rest = generator.next_batch(100).unwrap().unwrap();
    assert_eq!(rest.num_rows(), 6);
    assert!(generator.is_exhausted());
    assert!(generator.next_batch(1).unwrap().is_none());
    assert_eq!(generator.rows_generated(), 10);
    let batch = arrow::compute::concat_batches(&schema, [&first, &rest]).unwrap();
    let ids = column::<Int32Array>(&batch, "id");
    assert_eq!(ids.values().to_vec(), (-3..=6).collect::<Vec<i32>>());
    let n = column::<Int64Array>(&batch, "n");
    assert_eq!(n.values().to_vec(), (100..110).collect::<Vec<i64>>());
    let x = column::<Float64Array>(&batch, "x");
    assert_eq!(x.value(9), 9.5);
    let price = column::<Decimal128Array>(&batch, "price");
    assert_eq!(price.value(0), 125);
    assert_eq!(price.value(9), 1025);

    // Default bounds: 0 ..= 32767.
    let schema = self::schema(&[("id", DataType::Int16)]);
    let config =
        DatagenConfig::from_options(&schema, &options(&[("fields.id.kind", "sequence")])).unwrap();
    assert_eq!(config.row_limit(), Some(32_768));
    // Without a sequence the stream is unbounded.
    let config = DatagenConfig::from_options(&schema, &BTreeMap::new()).unwrap();
    assert_eq!(config.row_limit(), None);
}

#[test]
fn same_seed_same_rows_and_other_seeds_differ() {
    let schema = all_types();
    let a = generate(&schema, &[("datagen.seed", "3")], 500);
    let b = generate(&schema, &[("datagen.seed", "3")], 500);
    assert_eq!(a, b);
    let c = generate(&schema, &[("datagen.seed", "4")], 500);
    for name in ["big", "name", "double", "at"] {
        assert_ne!(a.column_by_name(name), c.column_by_name(name), "{name}");
    }
    // Columns of the same type get different values by default...
    let default = generate(&schema, &[], 100);
    assert_ne!(default.column_by_name("id"), default.column_by_name("big"));
    // ...and equal ones with the same column seed.
    let seeded = generate(
        &schema,
        &[("fields.id.seed", "9"), ("fields.big.seed", "9")],
        100,
    );
    assert_eq!(seeded.column_by_name("id"), seeded.column_by_name("big"));
    // A column seed changes only its column.
    assert_eq!(
        default.column_by_name("name"),
        seeded.column_by_name("name")
    );
    assert_ne!(default.column_by_name("id"), seeded.column_by_name("id"));
}

#[test]
fn resuming_equals_continuing() {
    let schema = all_types();
    let pairs = options(&[("datagen.seed", "11"), ("fields.id.kind", "sequence")]);
    let config = DatagenConfig::from_options(&schema, &pairs).unwrap();
    let whole = DatagenGenerator::new(config.clone())
        .next_batch(3000)
        .unwrap()
        .unwrap();

    let mut generator = DatagenGenerator::new(config.clone());
    let mut pieces = vec![];
    for rows in [1, 7, 992] {
        pieces.push(generator.next_batch(rows).unwrap().unwrap());
    }
    let checkpoint = generator.rows_generated();
    assert_eq!(checkpoint, 1000);
    let mut resumed = DatagenGenerator::resume(config, checkpoint);
    pieces.push(resumed.next_batch(2000).unwrap().unwrap());
    let joined = arrow::compute::concat_batches(&schema, &pieces).unwrap();
    assert_eq!(joined, whole);
    assert_eq!(resumed.rows_generated(), 3000);
}

#[test]
fn rows_per_second_is_parsed_and_other_prefixes_ignored() {
    let schema = schema(&[("v", DataType::Int32)]);
    let config = DatagenConfig::from_options(
        &schema,
        &options(&[("connector", "datagen"), ("datagen.rows.per.second", "250")]),
    )
    .unwrap();
    assert_eq!(config.rows_per_second(), 250);
    let config = DatagenConfig::from_options(&schema, &BTreeMap::new()).unwrap();
    assert_eq!(config.rows_per_second(), DEFAULT_ROWS_PER_SECOND);
    assert_eq!(config.schema(), &schema);

    // A schema without columns still yields rows.
    let empty = Arc::new(Schema::empty());
    let config = DatagenConfig::from_options(&empty, &BTreeMap::new()).unwrap();
    let batch = DatagenGenerator::new(config)
        .next_batch(3)
        .unwrap()
        .unwrap();
    assert_eq!(batch.num_rows(), 3);
}

#[test]
fn bad_options_are_errors_naming_them() {
    let schema = all_types();
    let error =
        |pairs: &[(&str, &str)]| DatagenConfig::from_options(&schema, &options(pairs)).unwrap_err();

    let e = error(&[("fields.nope.kind", "random")]);
    assert!(
        matches!(&e, Error::UnknownColumn { column, .. } if column == "nope"),
        "{e}"
    );
    assert_eq!(
        e.to_string(),
        "column \"nope\" named by option \"fields.nope.kind\" does not exist"
    );
    assert_eq!(e.sqlstate(), "42703");

    let e = error(&[("fields.big.min", "ten")]);
    assert!(
        e.to_string()
            .starts_with("invalid value for option \"fields.big.min\": \"ten\""),
        "{e}"
    );
    let e = error(&[("fields.small.max", "40000")]);
    assert!(
        e.to_string().contains("\"fields.small.max\": \"40000\""),
        "{e}"
    );
    let e = error(&[("fields.big.kind", "shuffle")]);
    assert!(e.to_string().contains("fields.big.kind"), "{e}");
    let e = error(&[("fields.name.kind", "sequence")]);
    assert!(e.to_string().contains("cannot be a sequence"), "{e}");
    let e = error(&[("fields.big.length", "3")]);
    assert_eq!(e.to_string(), "unrecognized option \"fields.big.length\"");
    let e = error(&[("fields.big.start", "3")]);
    assert_eq!(e.to_string(), "unrecognized option \"fields.big.start\"");
    let e = error(&[("fields.big.min", "5"), ("fields.big.max", "4")]);
    assert!(
        e.to_string()
            .contains("\"fields.big.min\" must not be greater than"),
        "{e}"
    );
    let e = error(&[("fields.day.min", "yesterday")]);
    assert!(e.to_string().contains("fields.day.min"), "{e}");
    let e = error(&[
        ("fields.at.min", "2024-01-01"),
        ("fields.at.max_past", "1h"),
    ]);
    assert!(e.to_string().contains("cannot both be set"), "{e}");
    let e = error(&[("fields.at.max_past", "a while")]);
    assert!(e.to_string().contains("fields.at.max_past"), "{e}");
    let e = error(&[("fields.amount.max", "123456789.5")]);
    assert!(e.to_string().contains("DECIMAL(10, 2)"), "{e}");
    let e = error(&[("fields.amount.max", "1.005")]);
    assert!(e.to_string().contains("fields.amount.max"), "{e}");
    let e = error(&[("datagen.split.num", "2")]);
    assert_eq!(e.to_string(), "unrecognized option \"datagen.split.num\"");
    let e = error(&[("datagen.rows.per.second", "fast")]);
    assert!(e.to_string().contains("datagen.rows.per.second"), "{e}");
    let e = error(&[("fields.kind", "random")]);
    assert_eq!(e.to_string(), "unrecognized option \"fields.kind\"");

    let unsupported = self::schema(&[("ok", DataType::Int64), ("blob", DataType::Binary)]);
    let e = DatagenConfig::from_options(&unsupported, &BTreeMap::new()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "datagen cannot generate column \"blob\" of type Binary"
    );
    assert_eq!(e.sqlstate(), "0A000");
}

#[test]
fn column_names_with_dots_are_found() {
    let schema = schema(&[("a.b", DataType::Int64)]);
    let batch = generate(
        &schema,
        &[("fields.a.b.kind", "sequence"), ("fields.a.b.start", "7")],
        2,
    );
    let values = batch
        .column(0)
        .as_primitive::<arrow::datatypes::Int64Type>();
    assert_eq!(values.values().to_vec(), vec![7, 8]);
}

#[test]
fn extreme_bounds_and_long_strings() {
    let schema = schema(&[
        ("wide", DataType::Decimal128(38, 0)),
        ("text", DataType::Utf8),
        ("huge", DataType::Float64),
    ]);
    let config = DatagenConfig::from_options(
        &schema,
        &options(&[
            ("fields.wide.min", "-99999999999999999999999999999999999999"),
            ("fields.wide.max", "99999999999999999999999999999999999999"),
            ("fields.text.length", "1048576"),
            ("fields.huge.min", "-1.7e308"),
            ("fields.huge.max", "1.7e308"),
        ]),
    )
    .unwrap();
    // A batch of 1 MiB strings stays around 1 GiB.
    assert_eq!(config.max_rows_per_batch(), 1023);
    let mut generator = DatagenGenerator::new(config);
    let batch = generator.next_batch(5).unwrap().unwrap();
    let wide = column::<Decimal128Array>(&batch, "wide");
    let largest = 10_i128.pow(38) - 1;
    assert!(wide
        .values()
        .iter()
        .all(|v| (-largest..=largest).contains(v)));
    assert!(wide.values().iter().any(|v| v.abs() > 10_i128.pow(36)));
    let text = column::<StringArray>(&batch, "text");
    assert!(text.iter().all(|v| v.unwrap().len() == 1 << 20));
    let huge = column::<Float64Array>(&batch, "huge");
    assert!(huge.values().iter().all(|v| v.is_finite()));
    let error =
        DatagenConfig::from_options(&schema, &options(&[("fields.text.length", "1048577")]))
            .unwrap_err();
    assert!(error.to_string().contains("fields.text.length"), "{error}");
}
