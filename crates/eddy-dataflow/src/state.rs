//! Operator state as checkpoint entries: how operators that support it
//! write what changed since their last save as key/value entries, and read
//! them back after a restart (see [`crate::Operator::save_state`]).
//!
//! Values are written with [`Encoder`] and read with [`Decoder`]: fixed-size
//! big-endian integers and length-prefixed byte strings, nothing else.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::{Error, Result};

/// Whether and how an operator's state survives a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checkpointing {
    /// The operator holds nothing between epochs.
    Stateless,
    /// The operator saves and loads its state as entries.
    Entries,
    /// The operator's state cannot be saved: a view using it is rebuilt
    /// from its inputs at a restart.
    Unsupported,
}

/// What [`crate::Operator::save_state`] writes to: `Some(value)` sets an
/// entry, `None` removes it.
pub type StateSink<'a> = dyn FnMut(&[u8], Option<&[u8]>) + 'a;

/// Where an operator that lets go of saved entries reads them back, as the
/// last durable checkpoint holds them.
pub trait StateReader: Send {
    /// The value of entry `key`, if there is one.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;

    /// Every entry whose key starts with `prefix`, in key order, as (the
    /// rest of its key, its value).
    fn scan(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>>;

    /// The first `limit` entries whose key starts with `prefix` and, after
    /// it, is at or after `start`, in key order, as (the rest of its key
    /// after `prefix`, its value).
    fn scan_from(
        &self,
        prefix: &[u8],
        start: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>>;
}

/// The memory the operators of a durable engine may keep of state they
/// have saved, shared by all of them, and which checkpoints are durable.
///
/// An operator that spills ([`crate::Operator::spill`]) counts what it
/// holds against [`StateBudget::limit`]; while the total is over it, each
/// lets go of entries whose saved value is durable (their checkpoint
/// written), in proportion to what it holds, and reads an entry back when
/// its key comes again. Saves are numbered: the engine calls
/// [`StateBudget::begin_save`] before the operators save into a checkpoint
/// and [`StateBudget::written`] once that checkpoint is durable.
#[derive(Debug)]
pub struct StateBudget {
    limit: usize,
    resident: AtomicUsize,
    saving: AtomicU64,
    durable: AtomicU64,
    evicted: AtomicU64,
    reloaded: AtomicU64,
}

impl StateBudget {
    /// A budget of `limit` bytes (0: keep nothing that is durable).
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            resident: AtomicUsize::new(0),
            saving: AtomicU64::new(0),
            durable: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
            reloaded: AtomicU64::new(0),
        }
    }

    /// The budget, in bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// The budget, unless it is `usize::MAX` (one never reached).
    pub fn bounded(&self) -> Option<usize> {
        (self.limit < usize::MAX).then_some(self.limit)
    }

    /// Estimated bytes of saved state the operators hold now.
    pub fn resident(&self) -> usize {
        self.resident.load(Ordering::Relaxed)
    }

    /// Entries let go of, and read back, since the engine started.
    pub fn evictions(&self) -> (u64, u64) {
        (
            self.evicted.load(Ordering::Relaxed),
            self.reloaded.load(Ordering::Relaxed),
        )
    }

    /// Number the save that starts now (operators save into the next
    /// checkpoint); returns it.
    pub fn begin_save(&self) -> u64 {
        self.saving.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// The checkpoint of save `save` is durable (checkpoints are written in
    /// order).
    pub fn written(&self, save: u64) {
        self.durable.fetch_max(save, Ordering::AcqRel);
    }

    /// The number of the current save.
    pub fn saving(&self) -> u64 {
        self.saving.load(Ordering::Acquire)
    }

    /// Saves up to this number are durable.
    pub fn durable(&self) -> u64 {
        self.durable.load(Ordering::Acquire)
    }

    /// An operator now holds `added` bytes more and `removed` fewer.
    pub fn account(&self, added: usize, removed: usize) {
        if added > removed {
            self.resident.fetch_add(added - removed, Ordering::Relaxed);
        } else if removed > added {
            // Never below zero: each operator removes only what it added.
            let _ = self
                .resident
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |r| {
                    Some(r.saturating_sub(removed - added))
                });
        }
    }

    /// How many of its `own` bytes an operator should keep: all while the
    /// total is within the limit, else its share of the limit.
    pub fn share(&self, own: usize) -> usize {
        let total = self.resident().max(own);
        if total <= self.limit {
            return own;
        }
        // total > limit >= 0, so total > 0.
        let share = (own as u128 * self.limit as u128) / total as u128;
        usize::try_from(share).unwrap_or(usize::MAX)
    }

    /// Count entries let go of and read back.
    pub fn count(&self, evicted: u64, reloaded: u64) {
        self.evicted.fetch_add(evicted, Ordering::Relaxed);
        self.reloaded.fetch_add(reloaded, Ordering::Relaxed);
    }
}

/// What an operator needs to let go of saved entries under a budget.
pub struct Spill {
    /// Reads the operator's entries back.
    pub reader: Box<dyn StateReader>,
    /// The budget shared with the engine's other operators.
    pub budget: Arc<StateBudget>,
    /// True if the operator restarts from stored entries: the store may
    /// hold entries it does not load (see
    /// [`crate::Operator::entries_to_load`]).
    pub restored: bool,
}

/// What every operator that spills keeps: where it reads entries back, the
/// shared budget and what it counts there, and which keys the store may
/// hold that it does not.
pub struct Spiller {
    reader: Box<dyn StateReader>,
    budget: Arc<StateBudget>,
    /// What the operator counts in the budget.
    resident: usize,
    /// True once the store may hold entries that are not in memory.
    on_disk: bool,
    /// Keys emptied in memory whose deletion is not durable yet, with the
    /// save that deletes them (`u64::MAX`: not saved yet): until then the
    /// store still holds their old entries, which must not be read back.
    deleting: hashbrown::HashMap<Vec<u8>, u64>,
}

impl Spiller {
    pub fn new(spill: Spill) -> Self {
        Self {
            reader: spill.reader,
            budget: spill.budget,
            resident: 0,
            on_disk: spill.restored,
            deleting: hashbrown::HashMap::new(),
        }
    }

    /// The reader of entries under `key` (a key, or a key prefix), if the
    /// store may hold any that are not in memory.
    pub fn reader(&self, key: &[u8]) -> Option<&dyn StateReader> {
        (self.on_disk && !self.deleting.contains_key(key)).then_some(self.reader.as_ref())
    }

    /// The first `limit` stored entries at or after key `start`, in key
    /// order, if the store may hold any that are not in memory. Entries
    /// whose key is [`Spiller::deleting`] are among them: the caller skips
    /// those.
    pub fn scan_from(&self, start: &[u8], limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        if self.on_disk {
            self.reader.scan_from(&[], start, limit)
        } else {
            Ok(Vec::new())
        }
    }

    /// True if key `key` was emptied in memory and its deletion is not
    /// durable yet: its stored entry, if any, is stale.
    pub fn deleting(&self, key: &[u8]) -> bool {
        self.deleting.contains_key(key)
    }

    /// True once the store may hold entries that are not in memory.
    pub fn on_disk(&self) -> bool {
        self.on_disk
    }

    pub fn budget(&self) -> &StateBudget {
        &self.budget
    }

    /// What the operator counts in the budget.
    pub fn resident(&self) -> usize {
        self.resident
    }

    /// The operator now holds `added` bytes more and `removed` fewer.
    pub fn account(&mut self, added: usize, removed: usize) {
        self.resident = self.resident + added - removed;
        self.budget.account(added, removed);
    }

    /// How much the operator should keep: all it holds while the total is
    /// within the budget, else its share.
    pub fn target(&self) -> usize {
        self.budget.share(self.resident)
    }

    /// The operator let go of `count` entries (or groups of them).
    pub fn evicted(&mut self, count: u64) {
        if count > 0 {
            self.on_disk = true;
            self.budget.count(count, 0);
        }
    }

    /// The operator read entries back.
    pub fn reloaded(&self) {
        self.budget.count(0, 1);
    }

    /// Key `key` was emptied in memory; the next save deletes it.
    pub fn deleted(&mut self, key: Vec<u8>) {
        self.deleting.insert(key, u64::MAX);
    }

    /// Save `save` wrote the deletions not saved yet; forget the deletions
    /// that are durable.
    pub fn saved(&mut self, save: u64) {
        let durable = self.budget.durable();
        self.deleting.retain(|_, at| {
            if *at == u64::MAX {
                *at = save;
            }
            *at > durable
        });
    }
}

impl Drop for Spiller {
    /// What a dropped operator held no longer counts.
    fn drop(&mut self) {
        self.budget.account(0, self.resident);
    }
}

/// Builds a state entry's value.
#[derive(Debug, Default)]
pub struct Encoder {
    bytes: Vec<u8>,
}

impl Encoder {
    /// An empty value.
    pub fn new() -> Self {
        Self::default()
    }

    /// Start over, keeping the allocation.
    pub fn clear(&mut self) {
        self.bytes.clear();
    }

    /// The value written so far.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn i64(&mut self, value: i64) -> &mut Self {
        self.bytes.extend_from_slice(&value.to_be_bytes());
        self
    }

    pub fn i128(&mut self, value: i128) -> &mut Self {
        self.bytes.extend_from_slice(&value.to_be_bytes());
        self
    }

    pub fn f64(&mut self, value: f64) -> &mut Self {
        self.bytes.extend_from_slice(&value.to_bits().to_be_bytes());
        self
    }

    /// The number of items of a list that follows.
    pub fn count(&mut self, value: usize) -> &mut Self {
        let value = u32::try_from(value).unwrap_or(u32::MAX);
        self.bytes.extend_from_slice(&value.to_be_bytes());
        self
    }

    /// A byte string, behind its length.
    pub fn slice(&mut self, value: &[u8]) -> &mut Self {
        self.count(value.len());
        self.bytes.extend_from_slice(value);
        self
    }
}

/// Reads a value [`Encoder`] built, failing on anything else.
#[derive(Debug)]
pub struct Decoder<'a> {
    bytes: &'a [u8],
}

impl<'a> Decoder<'a> {
    /// Read `bytes` from the start.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N]> {
        let (head, rest) = self.bytes.split_at_checked(N).ok_or_else(corrupt)?;
        self.bytes = rest;
        <[u8; N]>::try_from(head).map_err(|_| corrupt())
    }

    pub fn i64(&mut self) -> Result<i64> {
        self.take().map(i64::from_be_bytes)
    }

    pub fn i128(&mut self) -> Result<i128> {
        self.take().map(i128::from_be_bytes)
    }

    pub fn f64(&mut self) -> Result<f64> {
        self.take().map(u64::from_be_bytes).map(f64::from_bits)
    }

    pub fn count(&mut self) -> Result<usize> {
        let length = self.take().map(u32::from_be_bytes)?;
        usize::try_from(length).map_err(|_| corrupt())
    }

    pub fn slice(&mut self) -> Result<&'a [u8]> {
        let length = self.count()?;
        let (value, rest) = self.bytes.split_at_checked(length).ok_or_else(corrupt)?;
        self.bytes = rest;
        Ok(value)
    }

    /// What is left to read, all of it.
    pub fn rest(self) -> &'a [u8] {
        self.bytes
    }

    /// Fails unless everything was read.
    pub fn finish(self) -> Result<()> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(corrupt())
        }
    }
}

/// The error of a state entry that does not decode.
pub fn corrupt() -> Error {
    Error::Storage("a stored operator state entry does not decode".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_read_back_as_written_and_nothing_else_does() -> Result<()> {
        let mut encoder = Encoder::new();
        encoder
            .i64(-7)
            .i128(i128::MIN + 3)
            .f64(0.1)
            .slice(b"abc")
            .count(2);
        let mut decoder = Decoder::new(encoder.bytes());
        assert_eq!(decoder.i64()?, -7);
        assert_eq!(decoder.i128()?, i128::MIN + 3);
        assert_eq!(decoder.f64()?, 0.1);
        assert_eq!(decoder.slice()?, b"abc");
        assert_eq!(decoder.count()?, 2);
        decoder.finish()?;
        let short = &encoder.bytes()[..encoder.bytes().len() - 1];
        let mut decoder = Decoder::new(short);
        decoder.i64()?;
        decoder.i128()?;
        decoder.f64()?;
        decoder.slice()?;
        assert!(decoder.count().is_err());
        assert!(Decoder::new(b"x").finish().is_err());
        Ok(())
    }
}
