//! Incremental operators over [`ChangeBatch`]es and the graph that runs them.
//!
//! Every operator maps input changes to output changes; none recomputes its
//! result from scratch. Linear operators (project, filter, union) emit as
//! batches arrive. Stateful ones (aggregate, join, top-N) keep indexed state
//! and emit the difference between their old and new output at each barrier,
//! so that after a barrier the integral of an operator's output equals the
//! batch result of its relational counterpart over the integral of its inputs.

mod dataflow;
pub mod operator;
pub mod schema;
pub mod state;
#[cfg(test)]
mod testing;

pub use dataflow::{Dataflow, NodeId, StepOutput, StepReport};
pub use operator::Operator;

pub use eddy_common::{ChangeBatch, Error, Result};
