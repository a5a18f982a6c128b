//! Committing an epoch: folding the dataflow's output into the tables' and
//! views' contents (and the rows to store), making it durable as the write
//! needs (before the acknowledgement, by a checkpoint written meanwhile, or
//! later), handing sinks their changes and publishing the snapshot.

use eddy_common::{ChangeBatch, Error, Result};
use eddy_dataflow::StepOutput;
use tracing::{debug, warn};

use super::{durable, Checkpointer, WriteGuard, Writer, LOG};
use crate::ingest::Stored;

/// When a commit's changes are made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Durable {
    /// Before the commit returns (DDL, DML, `FLUSH`).
    Now,
    /// By a checkpoint written while the writer goes on.
    Soon,
    /// By a later checkpoint.
    Later,
}

impl WriteGuard<'_> {
    /// Make the write durable (with a store), hand sinks their changes and
    /// publish the new snapshot. If the store fails, nothing of the write
    /// is published, and no later write commits (restart recovers from the
    /// last durable state).
    pub(crate) fn commit(&mut self) -> Result<()> {
        self.commit_with(Durable::Now)
    }

    /// Commit an epoch of streamed input: like [`WriteGuard::commit`], but
    /// made durable only once a checkpoint interval has passed since the
    /// last checkpoint (a restart reads what came after it again), and
    /// then without waiting for the write.
    pub(crate) fn commit_stream(&mut self) -> Result<()> {
        let due = self.writer.last_checkpoint.elapsed() >= self.engine.checkpoint_interval;
        self.commit_with(if due { Durable::Soon } else { Durable::Later })
    }

    /// Write a checkpoint of the committed epoch if streamed input was
    /// taken since the last one and an interval has passed.
    pub(crate) fn checkpoint_if_due(&mut self) -> Result<()> {
        let due = self.writer.last_checkpoint.elapsed() >= self.engine.checkpoint_interval;
        self.checkpoint(if due { Durable::Soon } else { Durable::Later })
    }

    /// Write a checkpoint of everything committed so far, if anything is
    /// not durable yet, and wait for it (`FLUSH`: what it waited for is
    /// durable when it returns, and exactly-once sinks are handed their
    /// changes).
    pub(crate) fn checkpoint_now(&mut self) -> Result<()> {
        self.checkpoint(Durable::Now)
    }

    /// Write a checkpoint of the committed epoch, as `durable` says, if
    /// anything changed since the last one.
    fn checkpoint(&mut self, durable: Durable) -> Result<()> {
        let writer = &mut *self.writer;
        if writer.store.is_none()
            || (!writer.unsynced && writer.pending.is_empty() && !writer.sinks_staged())
            || durable == Durable::Later
        {
            return Ok(());
        }
        // Between writes the working state is the committed one.
        let committed = self.engine.snapshot();
        writer.persist(&committed, committed.epoch, durable == Durable::Now)?;
        writer.place_relations();
        if writer.refresh_checkpoint() {
            self.engine.publish(writer.working.clone());
        }
        Ok(())
    }

    fn commit_with(&mut self, durable: Durable) -> Result<()> {
        let committed = self.engine.snapshot();
        let epoch = self.writer.working.epoch + 1;
        for sink in &mut self.writer.sinks {
            sink.stage();
        }
        let persisted = match durable {
            Durable::Later => Ok(None),
            Durable::Soon => self.writer.persist(&committed, epoch, false),
            Durable::Now => self.writer.persist(&committed, epoch, true),
        };
        match persisted {
            Ok(Some(checkpoint)) => self.writer.working.checkpoint = Some(checkpoint),
            Ok(None) => {
                self.writer.refresh_checkpoint();
            }
            Err(error) => {
                let writer = &mut *self.writer;
                writer.working = committed.as_ref().clone();
                writer.dataflow.clear_pending();
                for sink in &mut writer.sinks {
                    sink.pending.clear();
                }
                return Err(error);
            }
        }
        for sink in &mut self.writer.sinks {
            if let Err(error) = sink.send_pending() {
                warn!(sink = %sink.name, %error, "sink changes could not be sent");
                sink.handle
                    .progress()
                    .set_status(format!("failed: {error}"));
            }
        }
        self.writer.place_relations();
        self.writer.working.epoch = epoch;
        debug!(epoch, "epoch committed");
        self.engine.publish(self.writer.working.clone());
        Ok(())
    }
}

impl Writer {
    /// Show the last checkpoint written in the working snapshot. Returns
    /// true if that changed it.
    fn refresh_checkpoint(&mut self) -> bool {
        let Some(last) = self.checkpointer.as_ref().and_then(Checkpointer::last) else {
            return false;
        };
        if self.working.checkpoint.as_ref() == Some(&last) {
            return false;
        }
        self.working.checkpoint = Some(last);
        true
    }

    /// True if an exactly-once sink has changes waiting for a checkpoint.
    fn sinks_staged(&self) -> bool {
        self.sinks
            .iter()
            .any(|s| s.outbox.as_ref().is_some_and(|o| !o.unflushed.is_empty()))
    }
}

impl Writer {
    /// Fold the changes of each materialized view into its contents, and
    /// queue what sinks write out at the commit.
    pub(crate) fn integrate(&mut self, output: StepOutput) -> Result<()> {
        for sink in &mut self.sinks {
            let Some(changes) = self.nodes.get(&sink.input).and_then(|n| output.get(n)) else {
                continue;
            };
            sink.pending.extend(changes.iter().cloned());
        }
        for (node, changes) in output {
            let Some(view) = self.roots.get(&node) else {
                continue;
            };
            let relation = self
                .working
                .relations
                .get_mut(view)
                .ok_or_else(|| Error::internal(format!("view {view} has no contents")))?;
            let schema = relation.schema().clone();
            let changes = ChangeBatch::concat(&schema, &changes)?;
            // A connector table's rows are stored with its positions, a
            // stored view's contents with its operators' state.
            if let Some(stored) = self.stored_views.get_mut(view) {
                relation.apply_with(
                    &changes,
                    Some(&mut |row, key, weight| stored.add_contents(row, key, weight)),
                )?;
                continue;
            }
            let table = self.readers.iter().find_map(|r| match r.stored {
                Some(Stored::Table { id, log }) if r.view == *view => Some((id, log)),
                _ => None,
            });
            match table {
                Some((id, false)) => {
                    // Keyed rows are replaced and deleted: stored by key,
                    // each there once or not at all, so a change sets its
                    // count.
                    let pending = &mut self.pending;
                    let mut copies = None;
                    relation.apply_with(
                        &changes,
                        Some(&mut |row, key, weight| match weight {
                            1 | -1 => pending.set_row(id, row, key, i64::from(weight > 0)),
                            _ => copies = Some(weight),
                        }),
                    )?;
                    if let Some(weight) = copies {
                        return Err(Error::internal(format!(
                            "a row of keyed table {view} changed by {weight} copies"
                        )));
                    }
                }
                Some((id, true)) => {
                    relation.apply(&changes)?;
                    let epoch = self.working.epoch + 1;
                    let number = match self.logged {
                        (last, number) if last == epoch => number + 1,
                        _ => 0,
                    };
                    self.logged = (epoch, number);
                    let mut key = vec![LOG];
                    key.extend_from_slice(&epoch.to_be_bytes());
                    key.extend_from_slice(&number.to_be_bytes());
                    let value = durable::encode_rows(changes.data(), changes.weights())?;
                    self.pending.put(id, &key, &value);
                }
                None => relation.apply(&changes)?,
            }
        }
        Ok(())
    }
}
