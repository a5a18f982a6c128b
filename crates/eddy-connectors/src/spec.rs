//! What a `CREATE SOURCE`, connector `CREATE TABLE` or `CREATE SINK` says
//! about its connector, as parsed from SQL: the `WITH (...)` options, the
//! `FORMAT ... ENCODE ...` clause and the `INCLUDE` metadata columns.

use std::collections::BTreeMap;

/// A metadata column requested with `INCLUDE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IncludeKind {
    /// The message key.
    Key,
    /// The partition number.
    Partition,
    /// The message offset.
    Offset,
    /// The message timestamp.
    Timestamp,
    /// One message header, by name.
    Header(String),
}

/// `INCLUDE kind [AS name]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Include {
    /// What to include.
    pub kind: IncludeKind,
    /// The column's name, if given.
    pub alias: Option<String>,
}

/// The envelope `FORMAT` names: how messages relate to rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Envelope {
    /// Each message is a row (appended; in a keyed table, the row of its
    /// key).
    Plain,
    /// Key → latest row; a message without a value deletes the key.
    Upsert,
    /// Debezium change events (`before`, `after`, `op`).
    Debezium,
}

/// `FORMAT f ENCODE e [(options)]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FormatSpec {
    /// The envelope, lower case: `plain`, `upsert`, `debezium`.
    pub format: String,
    /// The encoding, lower case: `json`, `avro`, `csv`, `protobuf`, `bytes`.
    pub encode: String,
    /// Options of the encoding.
    pub options: BTreeMap<String, String>,
}

/// How to read a source: everything but its columns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceSpec {
    /// `WITH (...)` options, keys lower case; `connector` names the
    /// connector.
    pub options: BTreeMap<String, String>,
    /// `FORMAT ... ENCODE ...`, if given.
    pub format: Option<FormatSpec>,
    /// `INCLUDE` clauses, in order.
    pub includes: Vec<Include>,
    /// The primary key's columns, by name, for a connector table that has
    /// one (empty for sources).
    pub primary_key: Vec<String>,
}

impl FormatSpec {
    /// The envelope `FORMAT` names, if Eddy knows it.
    pub fn envelope(&self) -> Option<Envelope> {
        match self.format.as_str() {
            "plain" => Some(Envelope::Plain),
            "upsert" => Some(Envelope::Upsert),
            "debezium" => Some(Envelope::Debezium),
            _ => None,
        }
    }
}

impl SourceSpec {
    /// The connector's name, lower case (empty if none was given).
    pub fn connector(&self) -> String {
        self.options
            .get("connector")
            .map(|c| c.to_ascii_lowercase())
            .unwrap_or_default()
    }
}
