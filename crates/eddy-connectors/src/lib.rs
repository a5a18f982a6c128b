//! Connectors: how sources are read into Arrow batches, and how sinks
//! write changes out.
//!
//! * [`spec`]: what a `CREATE SOURCE` says about its connector (options,
//!   `FORMAT ... ENCODE ...`, `INCLUDE` columns).
//! * [`source`]: the [`source::SourceReader`] every connector implements,
//!   the progress it reports, and [`source::open`], which picks the
//!   connector.
//! * `connector = 'kafka'`: topics read with librdkafka, `ENCODE JSON |
//!   CSV | BYTES | AVRO | PROTOBUF` decoded straight into Arrow; Avro
//!   schemas come from a Confluent-compatible schema registry, protobuf
//!   ones from a descriptor set file.
//! * [`sink`]: what a `CREATE SINK` writes its view's changes through (a
//!   Kafka topic, `FORMAT PLAIN | UPSERT | DEBEZIUM ENCODE JSON`).
//! * Built-in generators that need no external system: the Nexmark
//!   benchmark generator ([`nexmark`]) and random rows for any schema
//!   ([`datagen`]), paced as sources by `generator`.
//!
//! The generators are deterministic: the rows at a position of the stream
//! depend only on the configuration (seed included) and that position, never
//! on the wall clock or on how the stream was cut into batches. A caller
//! checkpoints a position (the next event id, the number of rows generated)
//! and resumes from it to reproduce the rest of the stream exactly.

mod avro;
pub mod datagen;
mod envelope;
pub mod error;
mod generator;
mod json;
mod kafka;
mod kafka_sink;
pub mod nexmark;
mod protobuf;
mod registry;
pub mod sink;
mod sink_format;
pub mod source;
pub mod spec;
mod string_column;

pub use datagen::{DatagenConfig, DatagenGenerator};
pub use error::{Error, Result};
pub use nexmark::{NexmarkBatches, NexmarkConfig, NexmarkGenerator, NexmarkTable};
