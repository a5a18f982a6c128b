//! The engine: catalog, DDL and DML, epochs and consistent reads.
//!
//! One writer at a time applies a statement's changes: it pushes them into
//! the dataflow, runs the dataflow to the epoch's barrier, folds each view's
//! output into the view's contents and then publishes a new [`Snapshot`] of
//! every relation at once. Readers pin a snapshot for the length of a
//! statement, so a read never sees part of an epoch.

mod catalog;
pub mod ddl;
mod engine;
mod functions;
mod ingest;
mod provider;
mod relation;
mod session;
mod sink;
mod statement;
mod system;

pub use catalog::{ObjectKind, Snapshot};
pub use engine::{DurableOptions, Engine};
pub use relation::Relation;
pub use session::{CommandTag, Output, Prepared, Session};
pub use sink::SinkSource;
pub use statement::split_statements;

pub use eddy_common::{Error, Result};

/// A connector's error as a statement error, with the connector's SQLSTATE.
pub(crate) fn connector_error(error: eddy_connectors::Error) -> Error {
    Error::Connector {
        code: error.sqlstate(),
        message: error.to_string(),
    }
}
