//! A table's primary-key index, which DML checks duplicate keys against.

use datafusion::scalar::ScalarValue;
use eddy_common::row::RowCodec;
use eddy_common::{ChangeBatch, Error, Result};
use hashbrown::HashMap;

use crate::catalog::CatalogEntry;

/// Primary-key index of a table: how many rows hold each key (0 or 1).
pub(super) struct KeyIndex {
    columns: Vec<usize>,
    codec: RowCodec,
    counts: HashMap<Box<[u8]>, i64>,
}

impl KeyIndex {
    /// An empty index of `entry`'s primary key.
    pub(super) fn new(entry: &CatalogEntry) -> Result<Self> {
        let types = entry
            .primary_key
            .iter()
            .map(|i| entry.schema.field(*i).data_type().clone())
            .collect();
        Ok(Self {
            columns: entry.primary_key.clone(),
            codec: RowCodec::new(types)?,
            counts: HashMap::new(),
        })
    }

    /// The key deltas `changes` would apply; fails on a duplicate key.
    pub(super) fn check(
        &self,
        entry: &CatalogEntry,
        changes: &ChangeBatch,
    ) -> Result<HashMap<Box<[u8]>, i64>> {
        let columns: Vec<_> = self
            .columns
            .iter()
            .map(|i| changes.data().column(*i).clone())
            .collect();
        let keys = self.codec.encode(&columns)?;
        let mut deltas: HashMap<Box<[u8]>, (i64, usize)> = HashMap::new();
        for (row, (key, weight)) in keys.iter().zip(changes.weights()).enumerate() {
            let slot = deltas.entry(key.data().into()).or_insert((0, row));
            slot.0 += weight;
            if *weight > 0 {
                slot.1 = row;
            }
        }
        for (key, (delta, row)) in &deltas {
            let count = self.counts.get(key).copied().unwrap_or(0) + delta;
            if count > 1 {
                let names: Vec<&str> = self
                    .columns
                    .iter()
                    .map(|i| entry.schema.field(*i).name().as_str())
                    .collect();
                let values = columns
                    .iter()
                    .map(|c| Ok(display_value(&ScalarValue::try_from_array(c, *row)?)))
                    .collect::<Result<Vec<_>>>()?;
                return Err(Error::UniqueViolation {
                    constraint: format!("{}_pkey", entry.name),
                    detail: format!(
                        "Key ({})=({}) already exists.",
                        names.join(", "),
                        values.join(", ")
                    ),
                });
            }
        }
        Ok(deltas.into_iter().map(|(k, (d, _))| (k, d)).collect())
    }

    pub(super) fn apply(&mut self, deltas: HashMap<Box<[u8]>, i64>) {
        for (key, delta) in deltas {
            let count = self.counts.get(key.as_ref()).copied().unwrap_or(0) + delta;
            if count == 0 {
                self.counts.remove(key.as_ref());
            } else {
                self.counts.insert(key, count);
            }
        }
    }
}

fn display_value(value: &ScalarValue) -> String {
    if value.is_null() {
        "null".to_string()
    } else {
        value.to_string()
    }
}
