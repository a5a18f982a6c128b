//! Which primary key each Kafka message key of a `FORMAT UPSERT` connector
//! table last set: what a tombstone deletes, and what a value that moves a
//! message key to another primary key retracts.
//!
//! Each change is a state entry of the table (`MESSAGE_KEY` + message key
//! -> primary key encoding), written with the checkpoint that carries the
//! rows it goes with. The writer keeps the entries it has seen in memory;
//! once the checkpoint carrying an entry is durable, the entry may be let
//! go of when state is over the memory budget, and a message key not in
//! memory is read from the last durable checkpoint. So the map goes under
//! the budget like the table, and a restart reads none of it up front.

use std::collections::HashMap;

use eddy_common::Result;
use eddy_state::{Checkpoint, StoreSnapshot};

use super::{storage_error, MESSAGE_KEY};

/// Bytes an entry costs beyond its keys (an estimate).
const ENTRY_BYTES: usize = 64;

/// One UPSERT table's message keys.
pub(crate) struct MessageKeys {
    /// The table's creation number, which its state entries are under.
    id: u64,
    entries: HashMap<Vec<u8>, Entry>,
    /// Message keys changed since the last checkpoint was handed over.
    unsealed: Vec<Vec<u8>>,
    /// The last durable checkpoint.
    durable_number: u64,
    bytes: usize,
}

struct Entry {
    /// The primary key the message key points at (`None`: nowhere).
    key: Option<Vec<u8>>,
    /// The checkpoint that carries this value (`Some(0)`: read from the
    /// store; `None`: not handed over yet).
    carried_by: Option<u64>,
}

impl MessageKeys {
    pub(crate) fn new(id: u64) -> Self {
        Self {
            id,
            entries: HashMap::new(),
            unsealed: Vec::new(),
            durable_number: 0,
            bytes: 0,
        }
    }

    /// Bytes held in memory (an estimate).
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// The primary key `message_key` points at: in memory, or as `stored`
    /// (the last durable checkpoint) has it.
    pub(crate) fn get(
        &mut self,
        message_key: &[u8],
        stored: Option<&StoreSnapshot>,
    ) -> Result<Option<Vec<u8>>> {
        if let Some(entry) = self.entries.get(message_key) {
            return Ok(entry.key.clone());
        }
        let Some(stored) = stored else {
            return Ok(None);
        };
        let key = stored
            .state_value(self.id, &state_key(message_key))
            .map_err(storage_error)?;
        self.bytes += message_key.len() + key.as_ref().map_or(0, Vec::len) + ENTRY_BYTES;
        self.entries.insert(
            message_key.to_vec(),
            Entry {
                key: key.clone(),
                carried_by: Some(0),
            },
        );
        Ok(key)
    }

    /// Point `message_key` at `key` (`None`: nowhere), stored with the
    /// next checkpoint through `pending` (none without a data directory).
    /// A message key that already points there (the usual case: a topic
    /// keyed by the table's primary key) changes nothing and is not
    /// written again.
    pub(crate) fn set(
        &mut self,
        message_key: &[u8],
        key: Option<Vec<u8>>,
        pending: Option<&mut Checkpoint>,
    ) {
        if self
            .entries
            .get(message_key)
            .is_some_and(|entry| entry.key == key)
        {
            return;
        }
        // Without a data directory nothing is stored, and nothing let go of.
        if let Some(pending) = pending {
            match &key {
                Some(key) => pending.put(self.id, &state_key(message_key), key),
                None => pending.delete(self.id, &state_key(message_key)),
            }
            self.unsealed.push(message_key.to_vec());
        }
        let added = message_key.len() + key.as_ref().map_or(0, Vec::len) + ENTRY_BYTES;
        let entry = Entry {
            key,
            carried_by: None,
        };
        if let Some(before) = self.entries.insert(message_key.to_vec(), entry) {
            let held = message_key.len() + before.key.map_or(0, |k| k.len()) + ENTRY_BYTES;
            self.bytes = self.bytes.saturating_sub(held);
        }
        self.bytes += added;
    }

    /// The changes since the last call were handed over with checkpoint
    /// `number`.
    pub(crate) fn seal(&mut self, number: u64) {
        for message_key in std::mem::take(&mut self.unsealed) {
            if let Some(entry) = self.entries.get_mut(&message_key) {
                entry.carried_by.get_or_insert(number);
            }
        }
    }

    /// Checkpoint `durable` and all before it are durable.
    pub(crate) fn settle(&mut self, durable: u64) {
        self.durable_number = self.durable_number.max(durable);
    }

    /// Let go of every entry whose value is durable; they are read back
    /// from the store when their message key comes again.
    pub(crate) fn let_go(&mut self) {
        let durable = self.durable_number;
        self.entries
            .retain(|_, entry| entry.carried_by.is_none_or(|number| number > durable));
        self.bytes = self
            .entries
            .iter()
            .map(|(message_key, entry)| {
                message_key.len() + entry.key.as_ref().map_or(0, Vec::len) + ENTRY_BYTES
            })
            .sum();
    }
}

/// The state entry of `message_key`.
fn state_key(message_key: &[u8]) -> Vec<u8> {
    [&[MESSAGE_KEY], message_key].concat()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use eddy_state::{Store, StoreOptions};

    use super::*;

    /// Entries go once their checkpoint is durable and come back from the
    /// store; ones changed since stay.
    #[test]
    fn durable_entries_are_let_go_and_read_back() -> Result<()> {
        let dir = std::env::temp_dir().join(format!("eddy-message-keys-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Arc::new(Store::open(&dir, &StoreOptions::default()).map_err(storage_error)?);
        let mut keys = MessageKeys::new(7);
        let mut pending = Checkpoint::default();
        keys.set(b"a", Some(b"1".to_vec()), Some(&mut pending));
        keys.set(b"b", Some(b"2".to_vec()), Some(&mut pending));
        keys.set(b"gone", None, Some(&mut pending));
        keys.seal(1);
        store.commit(pending, 1).map_err(storage_error)?;
        // Pointed where it points already: nothing to write.
        let mut same = Checkpoint::default();
        keys.set(b"a", Some(b"1".to_vec()), Some(&mut same));
        keys.set(b"gone", None, Some(&mut same));
        assert!(
            same.is_empty(),
            "an unchanged message key was written again"
        );
        // Changed after checkpoint 1 was handed over: not durable yet.
        keys.set(b"b", Some(b"3".to_vec()), Some(&mut Checkpoint::default()));
        keys.settle(1);
        let before = keys.bytes();
        keys.let_go();
        assert!(
            keys.bytes() < before,
            "{} of {before} bytes held",
            keys.bytes()
        );
        assert_eq!(keys.entries.len(), 1, "only b's newer value stays");
        let snapshot = store.snapshot();
        assert_eq!(keys.get(b"a", Some(&snapshot))?, Some(b"1".to_vec()));
        assert_eq!(keys.get(b"b", Some(&snapshot))?, Some(b"3".to_vec()));
        assert_eq!(keys.get(b"gone", Some(&snapshot))?, None);
        assert_eq!(keys.get(b"never", Some(&snapshot))?, None);
        drop((snapshot, store));
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }
}
