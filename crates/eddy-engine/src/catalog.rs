//! The catalog as of one epoch.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::logical_expr::{Expr, LogicalPlan};
use eddy_common::Epoch;

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
}

impl ObjectKind {
    /// How the kind reads in messages and in DROP.
    pub fn as_sql(self) -> &'static str {
        match self {
            ObjectKind::Table => "table",
            ObjectKind::MaterializedView => "materialized view",
            ObjectKind::View => "view",
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
    /// The defining query (views).
    pub query: Option<String>,
    /// The optimized plan a materialized view is maintained from.
    pub plan: Option<Arc<LogicalPlan>>,
    /// Objects this one reads.
    pub depends_on: Vec<String>,
    /// Order of creation, used to rebuild dataflows in dependency order.
    pub created: u64,
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
}

impl Snapshot {
    /// Objects that read `name`.
    pub fn dependents(&self, name: &str) -> Vec<&CatalogEntry> {
        self.objects
            .values()
            .filter(|e| e.depends_on.iter().any(|d| d == name))
            .map(|e| e.as_ref())
            .collect()
    }
}
