//! DataFusion catalog over a pinned [`Snapshot`]: every statement of a
//! session reads tables and views as of one epoch.

use std::sync::{Arc, RwLock, Weak};

use async_trait::async_trait;
use datafusion::arrow::array::{RecordBatch, RecordBatchOptions};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::view::ViewTable;
use datafusion::catalog::{SchemaProvider, Session as DataFusionSession, TableProvider};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::SessionState;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use datafusion::physical_plan::{ExecutionPlan, SendableRecordBatchStream};
use datafusion::scalar::ScalarValue;

use crate::catalog::{ObjectKind, Snapshot};
use crate::Relation;

/// The `public` schema of a session, showing one pinned snapshot.
#[derive(Debug)]
pub struct SnapshotSchema {
    pinned: RwLock<Arc<Snapshot>>,
    state: RwLock<Weak<parking_lot::RwLock<SessionState>>>,
}

impl SnapshotSchema {
    pub fn new(snapshot: Arc<Snapshot>) -> Self {
        Self {
            pinned: RwLock::new(snapshot),
            state: RwLock::new(Weak::new()),
        }
    }

    /// Read `snapshot` from now on.
    pub fn pin(&self, snapshot: Arc<Snapshot>) {
        match self.pinned.write() {
            Ok(mut pinned) => *pinned = snapshot,
            Err(poisoned) => *poisoned.into_inner() = snapshot,
        }
    }

    /// The snapshot being read.
    pub fn pinned(&self) -> Arc<Snapshot> {
        match self.pinned.read() {
            Ok(pinned) => pinned.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Plan views with this session state.
    pub fn set_state(&self, state: Weak<parking_lot::RwLock<SessionState>>) {
        match self.state.write() {
            Ok(mut slot) => *slot = state,
            Err(poisoned) => *poisoned.into_inner() = state,
        }
    }

    fn session_state(&self) -> Option<SessionState> {
        let weak = match self.state.read() {
            Ok(weak) => weak.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        weak.upgrade().map(|state| state.read().clone())
    }
}

#[async_trait]
impl SchemaProvider for SnapshotSchema {
    /// Relations that can be read: not sinks, and not objects that failed
    /// (reading one by name fails with the cause; listing them would fail
    /// `information_schema` and clients' catalog queries).
    fn table_names(&self) -> Vec<String> {
        self.pinned()
            .objects
            .values()
            .filter(|e| e.kind != ObjectKind::Sink && e.failure.is_none())
            .map(|e| e.name.clone())
            .collect()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let snapshot = self.pinned();
        let Some(entry) = snapshot.objects.get(name) else {
            return Ok(None);
        };
        if let Some(error) = entry.failed() {
            return Err(DataFusionError::External(Box::new(error)));
        }
        match entry.kind {
            ObjectKind::Sink => Ok(None),
            ObjectKind::View => {
                let query = entry.query.clone().unwrap_or_default();
                let state = self.session_state().ok_or_else(|| {
                    DataFusionError::Internal("session closed while planning a view".into())
                })?;
                let plan = state.create_logical_plan(&query).await?;
                Ok(Some(Arc::new(ViewTable::new(plan, Some(query)))))
            }
            ObjectKind::Source => Ok(Some(Arc::new(SourceTable {
                name: name.to_string(),
                schema: entry.schema.clone(),
            }))),
            ObjectKind::Table | ObjectKind::MaterializedView => {
                let relation = snapshot.relations.get(name).cloned().ok_or_else(|| {
                    DataFusionError::Internal(format!("relation {name} has no contents"))
                })?;
                Ok(Some(Arc::new(SnapshotTable {
                    relation,
                    defaults: entry.column_defaults.clone(),
                })))
            }
        }
    }

    fn table_exist(&self, name: &str) -> bool {
        self.pinned()
            .objects
            .get(name)
            .is_some_and(|e| e.kind != ObjectKind::Sink)
    }
}

/// A table or materialized view as of a snapshot.
#[derive(Debug)]
pub struct SnapshotTable {
    relation: Relation,
    defaults: Vec<(String, Expr)>,
}

#[async_trait]
impl TableProvider for SnapshotTable {
    fn schema(&self) -> SchemaRef {
        self.relation.schema().clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn get_column_default(&self, column: &str) -> Option<&Expr> {
        self.defaults
            .iter()
            .find(|(name, _)| name == column)
            .map(|(_, expr)| expr)
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        // A filter that names key values lets a read of a relation on disk
        // seek to those keys; the filter is applied all the same.
        let names = self.key_names();
        Ok(filters
            .iter()
            .map(|filter| match key_literals(filter, &names) {
                Some(_) => TableProviderFilterPushDown::Inexact,
                None => TableProviderFilterPushDown::Unsupported,
            })
            .collect())
    }

    async fn scan(
        &self,
        _state: &dyn DataFusionSession,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        // A read of no columns and no filter (`count(*)`) needs only the
        // number of rows, which the relation keeps.
        if let (Some([]), [], Some(total)) = (
            projection.map(Vec::as_slice),
            filters,
            self.relation.total(),
        ) {
            let schema = Arc::new(self.schema().project(&[])?);
            let options =
                RecordBatchOptions::new().with_row_count(Some(usize::try_from(total).unwrap_or(0)));
            let rows = RecordBatch::try_new_with_options(schema.clone(), Vec::new(), &options)?;
            return Ok(MemorySourceConfig::try_new_exec(
                &[vec![rows]],
                schema,
                None,
            )?);
        }
        // A relation on disk is streamed from the store; one in memory
        // too where the filters name its keys and it can seek to them (a
        // range of its row map each), and otherwise scanned from its
        // cached batches.
        let keys = self.keys_of(filters)?;
        if self.relation.on_disk_now() || (keys.is_some() && self.relation.seeks()) {
            let schema = match projection {
                Some(columns) => Arc::new(self.schema().project(columns)?),
                None => self.schema(),
            };
            let partition = Arc::new(StoredPartition {
                relation: self.relation.clone(),
                schema: schema.clone(),
                projection: projection.cloned(),
                keys,
            });
            return Ok(Arc::new(StreamingTableExec::try_new(
                schema,
                vec![partition],
                None,
                Vec::new(),
                false,
                None,
            )?));
        }
        let batches = self
            .relation
            .batches()
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        Ok(MemorySourceConfig::try_new_exec(
            &[batches],
            self.schema(),
            projection.cloned(),
        )?)
    }
}

/// Keys a read looks up at most; a filter naming more reads every row.
const MAX_KEYS: usize = 1024;

impl SnapshotTable {
    /// The names of the relation's key columns, in key order.
    fn key_names(&self) -> Vec<String> {
        let schema = self.relation.schema();
        self.relation
            .key_columns()
            .iter()
            .map(|i| schema.field(*i).name().clone())
            .collect()
    }

    /// The encoded keys that `filters` (all of which hold for every row
    /// read) allow, if they pin every key column to a few values; `None`:
    /// every row must be read.
    fn keys_of(&self, filters: &[Expr]) -> Result<Option<Vec<Vec<u8>>>> {
        let names = self.key_names();
        if names.is_empty() {
            return Ok(None);
        }
        // Per key column, the fewest values a filter allows it.
        let mut allowed: Vec<Option<Vec<ScalarValue>>> = vec![None; names.len()];
        for filter in filters {
            if let Some((column, values)) = key_literals(filter, &names) {
                if allowed[column]
                    .as_ref()
                    .is_none_or(|v| values.len() < v.len())
                {
                    allowed[column] = Some(values);
                }
            }
        }
        let Some(allowed) = allowed.into_iter().collect::<Option<Vec<_>>>() else {
            return Ok(None);
        };
        let mut combinations: Vec<Vec<ScalarValue>> = vec![Vec::new()];
        for values in &allowed {
            if combinations.len().saturating_mul(values.len()) > MAX_KEYS {
                return Ok(None);
            }
            combinations = combinations
                .iter()
                .flat_map(|prefix| {
                    values.iter().map(move |v| {
                        let mut key = prefix.clone();
                        key.push(v.clone());
                        key
                    })
                })
                .collect();
        }
        let mut keys = Vec::with_capacity(combinations.len());
        for values in combinations {
            // A null key value equals nothing.
            if values.iter().any(ScalarValue::is_null) {
                continue;
            }
            match self
                .relation
                .encode_key(&values)
                .map_err(|e| DataFusionError::External(Box::new(e)))?
            {
                Some(key) => keys.push(key),
                // A value of another type than its column: no seek.
                None => return Ok(None),
            }
        }
        keys.sort();
        keys.dedup();
        Ok(Some(keys))
    }
}

/// The key column (by position in `names`) and the values `filter` allows
/// it, if it is `column = literal`, `literal = column` or `column IN
/// (literals)`.
fn key_literals(filter: &Expr, names: &[String]) -> Option<(usize, Vec<ScalarValue>)> {
    let column = |expr: &Expr| match expr {
        Expr::Column(column) => names.iter().position(|n| *n == column.name),
        _ => None,
    };
    let literal = |expr: &Expr| match expr {
        Expr::Literal(value, _) => Some(value.clone()),
        _ => None,
    };
    match filter {
        Expr::BinaryExpr(binary) if binary.op == Operator::Eq => {
            match (column(&binary.left), literal(&binary.right)) {
                (Some(at), Some(value)) => Some((at, vec![value])),
                _ => Some((column(&binary.right)?, vec![literal(&binary.left)?])),
            }
        }
        Expr::InList(list) if !list.negated => {
            let values = list.list.iter().map(literal).collect::<Option<Vec<_>>>()?;
            Some((column(&list.expr)?, values))
        }
        _ => None,
    }
}

/// Batches of a relation on disk read ahead of the query at most.
const READ_AHEAD: usize = 2;

/// A relation on disk, read as a query takes its rows: RocksDB is read on
/// a blocking thread a few batches ahead, so a query over a relation larger
/// than memory holds only what its own operators need. A read of a few
/// keys seeks to them; a read of no columns (`count(*)`) counts rows
/// without decoding them.
#[derive(Debug)]
struct StoredPartition {
    relation: Relation,
    /// The schema of the columns read.
    schema: SchemaRef,
    projection: Option<Vec<usize>>,
    keys: Option<Vec<Vec<u8>>>,
}

impl PartitionStream for StoredPartition {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let (sender, receiver) = tokio::sync::mpsc::channel(READ_AHEAD);
        let relation = self.relation.clone();
        let schema = self.schema.clone();
        let projection = self.projection.clone();
        let keys = self.keys.clone();
        tokio::task::spawn_blocking(move || {
            let read = relation.read_chunks(keys.as_deref(), &mut |chunk| {
                let batch = match projection.as_deref() {
                    Some([]) => {
                        let rows: i64 = chunk.weights.iter().sum();
                        let options = RecordBatchOptions::new()
                            .with_row_count(Some(usize::try_from(rows).unwrap_or(0)));
                        RecordBatch::try_new_with_options(schema.clone(), Vec::new(), &options)?
                    }
                    columns => {
                        let changes = relation.decode(chunk.rows(), &chunk.weights)?;
                        let batch = changes.to_multiset_batch()?;
                        match columns {
                            Some(columns) => batch.project(columns)?,
                            None => batch,
                        }
                    }
                };
                sender
                    .blocking_send(Ok(batch))
                    .map_err(|_| eddy_common::Error::internal("the query stopped reading"))
            });
            if let Err(error) = read {
                // Nothing to tell a query that stopped reading.
                let _ = sender.blocking_send(Err(DataFusionError::External(Box::new(error))));
            }
        });
        let batches = futures::stream::unfold(receiver, |mut receiver| async move {
            receiver.recv().await.map(|batch| (batch, receiver))
        });
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), batches))
    }
}

/// A source: it has columns to plan views with, but no stored rows.
#[derive(Debug)]
pub struct SourceTable {
    name: String,
    schema: SchemaRef,
}

#[async_trait]
impl TableProvider for SourceTable {
    fn schema(&self) -> SchemaRef {
        eddy_dataflow::schema::nullable(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn DataFusionSession,
        _projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Err(DataFusionError::External(Box::new(
            eddy_common::Error::not_supported(format!(
                "source \"{}\" cannot be queried directly: a source is not stored; create a materialized view over it",
                self.name
            )),
        )))
    }
}
