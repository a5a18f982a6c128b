//! Vocabulary shared by every Eddy crate: the [`ChangeBatch`] that flows
//! between operators, the [`Epoch`] that orders committed states, and the
//! [`Error`] type whose variants map onto PostgreSQL SQLSTATEs.

mod change_batch;
mod error;
pub mod row;

pub use change_batch::ChangeBatch;
pub use error::{Error, Result};

/// A committed point in time. Every read sees all relations as of one epoch.
pub type Epoch = u64;
