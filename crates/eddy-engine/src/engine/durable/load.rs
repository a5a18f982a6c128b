//! Reading a table's or view's stored rows back into a relation at a
//! restart, on one thread or two.

use std::sync::mpsc::SyncSender;

use eddy_common::{ChangeBatch, Error, Result};
use eddy_state::Store;

use super::storage_error;
use crate::relation::RowChunk;
use crate::Relation;

/// Rows decoded per batch when a table or view's contents are loaded.
const LOAD_ROWS: usize = 8192;
/// Chunks of rows a load's reading may be ahead of its decoding, and
/// decoded batches its decoding ahead of a table's key index.
pub(super) const LOAD_QUEUE: usize = 16;

/// Read the rows stored under `id` whose keys start with `prefix` (the
/// prefix dropped) into `relation`, handing them to `keys` as well if
/// given, while `relation` holds at most `room` bytes. Returns the number
/// of rows read and whether `relation` took them all; if it did not, the
/// rest was not read, and what it and `keys` took is meaningless (the
/// caller leaves the relation on disk).
///
/// With a key index (building on a thread of its own) this thread reads
/// RocksDB and decodes; without one, RocksDB is read on a second thread
/// that hands over chunks of row encodings while this one decodes and
/// applies the ones before (10M rows of a view's contents: a restart
/// 4.7 -> 4.1 s, medians of five).
pub(in crate::engine) fn read_rows(
    store: &Store,
    id: u64,
    prefix: &[u8],
    relation: &mut Relation,
    keys: Option<&SyncSender<ChangeBatch>>,
    room: Option<usize>,
) -> Result<(u64, bool)> {
    let mut load = Load {
        relation,
        keys,
        room: room.unwrap_or(usize::MAX),
        whole: true,
    };
    let rows = match keys {
        Some(_) => read_rows_here(store, id, prefix, &mut load)?,
        None => read_rows_alongside(store, id, prefix, &mut load)?,
    };
    Ok((rows, load.whole))
}

/// Where a load's rows go.
struct Load<'a> {
    relation: &'a mut Relation,
    keys: Option<&'a SyncSender<ChangeBatch>>,
    room: usize,
    /// False once the relation outgrew `room` and stopped taking rows.
    whole: bool,
}

impl Load<'_> {
    /// Decode `chunk` into the relation and the keys, then empty it.
    /// Returns false once the relation is over its room: the rest is not
    /// read.
    fn take(&mut self, chunk: &mut RowChunk) -> Result<bool> {
        let changes = self.relation.decode(chunk.rows(), &chunk.weights)?;
        chunk.clear();
        self.relation.apply(&changes)?;
        if self.relation.bytes() > self.room {
            self.whole = false;
            *self.relation = self.relation.emptied();
            return Ok(false);
        }
        if let Some(keys) = self.keys {
            keys.send(changes)
                .map_err(|_| Error::internal("the key index stopped taking rows"))?;
        }
        Ok(true)
    }
}

fn read_rows_here(store: &Store, id: u64, prefix: &[u8], load: &mut Load<'_>) -> Result<u64> {
    let mut loaded = 0u64;
    let mut chunk = RowChunk::default();
    let mut failure: Option<Error> = None;
    let mut done = false;
    store
        .rows(id, prefix, |row, count| {
            loaded += count.unsigned_abs();
            chunk.push(row, count);
            if chunk.weights.len() == LOAD_ROWS {
                match load.take(&mut chunk) {
                    Ok(more) => done = !more,
                    Err(error) => failure = Some(error),
                }
            }
            failure.is_none() && !done
        })
        .map_err(storage_error)?;
    if let Some(error) = failure {
        return Err(error);
    }
    if !chunk.weights.is_empty() && !done {
        load.take(&mut chunk)?;
    }
    Ok(loaded)
}

fn read_rows_alongside(store: &Store, id: u64, prefix: &[u8], load: &mut Load<'_>) -> Result<u64> {
    let (full, filled) = std::sync::mpsc::sync_channel::<RowChunk>(LOAD_QUEUE);
    let (empty, recycled) = std::sync::mpsc::channel::<RowChunk>();
    std::thread::scope(|scope| {
        let reader = std::thread::Builder::new()
            .name("eddy-load-rows".into())
            .spawn_scoped(scope, move || -> Result<u64> {
                let mut loaded = 0u64;
                let mut chunk = RowChunk::default();
                // Set once the decoding side stopped taking chunks.
                let mut stopped = false;
                store
                    .rows(id, prefix, |row, count| {
                        loaded += count.unsigned_abs();
                        chunk.push(row, count);
                        if chunk.weights.len() == LOAD_ROWS {
                            let next = recycled.try_recv().unwrap_or_default();
                            stopped = full.send(std::mem::replace(&mut chunk, next)).is_err();
                        }
                        !stopped
                    })
                    .map_err(storage_error)?;
                if !chunk.weights.is_empty() && !stopped {
                    // A decoding side that stopped has its own error.
                    let _ = full.send(chunk);
                }
                Ok(loaded)
            })
            .map_err(|error| Error::internal(format!("no thread to read rows on: {error}")))?;
        let mut failure: Option<Error> = None;
        for mut chunk in filled.iter() {
            match load.take(&mut chunk) {
                Ok(true) => {}
                Ok(false) => break,
                Err(error) => {
                    failure = Some(error);
                    break;
                }
            }
            let _ = empty.send(chunk);
        }
        // The reader stops handing over chunks once no one takes them.
        drop(filled);
        let loaded = reader
            .join()
            .map_err(|_| Error::internal("the thread reading rows panicked"))?;
        match failure {
            Some(error) => Err(error),
            None => loaded,
        }
    })
}
