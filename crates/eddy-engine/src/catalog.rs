//! The catalog as of one epoch.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::logical_expr::{Expr, LogicalPlan};
use eddy_common::Epoch;
use eddy_connectors::sink::SinkProgress;
use eddy_connectors::source::{ErrorLog, SourceProgress};
use eddy_connectors::spec::SourceSpec;

use crate::Relation;

/// What kind of object a catalog name refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    /// A table written with DML.
    Table,
    /// A view whose contents Eddy maintains.
    MaterializedView,
    /// A named query, expanded where it is used.
    View,
    /// An append-only stream read through a connector; each materialized
    /// view over it reads it with a reader of its own. Not stored.
    Source,
    /// Writes the changes of a relation or query out through a connector.
    /// Not a relation: nothing reads it.
    Sink,
}

impl ObjectKind {
    /// How the kind reads in messages and in DROP.
    pub fn as_sql(self) -> &'static str {
        match self {
            ObjectKind::Table => "table",
            ObjectKind::MaterializedView => "materialized view",
            ObjectKind::View => "view",
            ObjectKind::Source => "source",
            ObjectKind::Sink => "sink",
        }
    }
}

/// A catalog object.
#[derive(Debug, Clone)]
pub struct CatalogEntry {
    /// The object's name.
    pub name: String,
    /// What it is.
    pub kind: ObjectKind,
    /// Declared schema (with NOT NULL where declared).
    pub schema: SchemaRef,
    /// Columns of the primary key (tables), in key order.
    pub primary_key: Vec<usize>,
    /// `DEFAULT` expressions of table columns, by column name.
    pub column_defaults: Vec<(String, Expr)>,
    /// The defining query (views, sinks `AS query`).
    pub query: Option<String>,
    /// The optimized plan a materialized view (or a sink `AS query`) is
    /// maintained from.
    pub plan: Option<Arc<LogicalPlan>>,
    /// Objects this one reads.
    pub depends_on: Vec<String>,
    /// Order of creation, used to rebuild dataflows in dependency order.
    pub created: u64,
    /// How a source or connector table reads its connector, or how a sink
    /// writes.
    pub connector: Option<Arc<SourceSpec>>,
    /// Why a materialized view stopped being maintained, if it did; reads
    /// of it fail with this error.
    pub failure: Option<Failure>,
    /// The statement that created the object, as a durable engine stores
    /// it (objects created through the engine's API directly have none).
    pub definition: Option<String>,
}

impl CatalogEntry {
    /// The error reading this object fails with, if it failed: a
    /// materialized view whose maintenance hit an error, or an object a
    /// restart could not create again.
    pub fn failed(&self) -> Option<eddy_common::Error> {
        let failure = self.failure.as_ref()?;
        let message = match self.kind {
            ObjectKind::MaterializedView => format!(
                "materialized view \"{}\" failed and is no longer maintained: {}",
                self.name, failure.message
            ),
            kind => format!(
                "{} \"{}\" failed: {}",
                kind.as_sql(),
                self.name,
                failure.message
            ),
        };
        Some(eddy_common::Error::plan(failure.code, message))
    }
}

/// Why an object failed: the SQLSTATE and message of the error its
/// maintenance (or its creation at a restart) hit.
#[derive(Debug, Clone)]
pub struct Failure {
    /// SQLSTATE of the cause.
    pub code: &'static str,
    /// The cause's message.
    pub message: String,
}

/// Every object and the contents of every table and materialized view at
/// one committed epoch.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The epoch this snapshot shows.
    pub epoch: Epoch,
    /// Catalog objects by name.
    pub objects: BTreeMap<String, Arc<CatalogEntry>>,
    /// Contents of tables and materialized views by name.
    pub relations: BTreeMap<String, Relation>,
    /// Progress of every running source reader.
    pub progress: Vec<Arc<SourceProgress>>,
    /// Bad messages of every source, by source.
    pub source_errors: BTreeMap<String, Arc<ErrorLog>>,
    /// Progress of every sink.
    pub sink_progress: Vec<Arc<SinkProgress>>,
    /// The last checkpoint of a durable engine.
    pub checkpoint: Option<eddy_state::CheckpointInfo>,
    /// What a durable engine with a memory budget keeps of operator state.
    pub state_budget: Option<Arc<eddy_dataflow::state::StateBudget>>,
}

impl Snapshot {
    /// Materialized views and sinks that read `name`, directly or through
    /// other objects, in creation order.
    pub fn downstream(&self, name: &str) -> Vec<Arc<CatalogEntry>> {
        let mut found: Vec<Arc<CatalogEntry>> = Vec::new();
        let mut frontier = vec![name.to_string()];
        while let Some(next) = frontier.pop() {
            for entry in self.objects.values() {
                if entry.depends_on.contains(&next) && !found.iter().any(|f| f.name == entry.name) {
                    frontier.push(entry.name.clone());
                    found.push(entry.clone());
                }
            }
        }
        found.retain(|e| matches!(e.kind, ObjectKind::MaterializedView | ObjectKind::Sink));
        found.sort_by_key(|e| e.created);
        found
    }

    /// True if everything `names` are and read, directly or through other
    /// objects, comes back exactly as checkpointed after a restart: plain
    /// tables, connector tables of resumable connectors (Kafka and the
    /// generators), and materialized views over them and over such sources.
    /// A source counts only where a query reads it with a reader of its
    /// own, which stores its positions with the query's state: in a
    /// materialized view's query, or (`query`) in the query `names` are
    /// read by, plain views in either expanded.
    pub fn restorable(&self, names: &[String], query: bool) -> bool {
        let mut seen: Vec<(&str, bool)> = Vec::new();
        let mut frontier: Vec<(&str, bool)> = names.iter().map(|n| (n.as_str(), query)).collect();
        while let Some((next, query)) = frontier.pop() {
            if seen.contains(&(next, query)) {
                continue;
            }
            seen.push((next, query));
            let Some(entry) = self.objects.get(next) else {
                return false;
            };
            let resumable = entry
                .connector
                .as_ref()
                .is_none_or(|spec| eddy_connectors::source::resumable(spec));
            let inputs_query = match entry.kind {
                ObjectKind::Source if query && resumable => continue,
                ObjectKind::Table if resumable => continue,
                ObjectKind::MaterializedView => true,
                ObjectKind::View => query,
                _ => return false,
            };
            frontier.extend(entry.depends_on.iter().map(|i| (i.as_str(), inputs_query)));
        }
        true
    }

    /// True if `name` reads a source, directly or through other objects.
    pub fn reads_source(&self, name: &str) -> bool {
        let mut seen: Vec<&str> = Vec::new();
        let mut frontier = vec![name];
        while let Some(next) = frontier.pop() {
            let Some(entry) = self.objects.get(next) else {
                continue;
            };
            for input in &entry.depends_on {
                if seen.contains(&input.as_str()) {
                    continue;
                }
                seen.push(input);
                if self
                    .objects
                    .get(input)
                    .is_some_and(|e| e.kind == ObjectKind::Source)
                {
                    return true;
                }
                frontier.push(input);
            }
        }
        false
    }

    /// Objects that read `name`.
    pub fn dependents(&self, name: &str) -> Vec<&CatalogEntry> {
        self.objects
            .values()
            .filter(|e| e.depends_on.iter().any(|d| d == name))
            .map(|e| e.as_ref())
            .collect()
    }
}
