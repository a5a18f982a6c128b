//! A client session: parses statements and runs them against the engine.
//!
//! Queries run as ordinary DataFusion batch queries over a snapshot pinned
//! for the statement. DDL and DML take the engine's writer turn, compute
//! their changes against the state they apply to, and return once those
//! changes are committed in every view.

mod connectors;
mod settings;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::{RecordBatch, StringArray};
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::{Constraint, ParamValues};
use datafusion::config::Dialect;
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::{col, DdlStatement, Expr, LogicalPlan, LogicalPlanBuilder, WriteOp};
use datafusion::prelude::SessionConfig;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{self, ObjectType, Statement};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use datafusion_pg_catalog::sql::PostgresCompatibilityParser;
use eddy_common::{ChangeBatch, Error, Result};

use crate::catalog::ObjectKind;
use crate::provider::SnapshotSchema;
use crate::{split_statements, Engine};
use settings::variable_name;

/// Name of the database (DataFusion catalog) every session sees.
pub const DATABASE: &str = "eddy";

/// What a statement returns.
#[derive(Debug)]
pub enum Output {
    /// Rows of a query.
    Rows {
        /// Column names and types.
        schema: SchemaRef,
        /// The rows.
        batches: Vec<RecordBatch>,
    },
    /// A command's completion tag.
    Command(CommandTag),
    /// BEGIN / START TRANSACTION.
    TransactionStart,
    /// COMMIT / ROLLBACK.
    TransactionEnd(&'static str),
}

/// A command completion tag as PostgreSQL sends it (`INSERT 0 3`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandTag {
    /// The command word(s), e.g. `CREATE TABLE`.
    pub command: String,
    /// Rows affected, for DML.
    pub rows: Option<u64>,
}

impl CommandTag {
    fn new(command: impl Into<String>) -> Self {
        Self {
            command: command.into(),
            rows: None,
        }
    }

    fn with_rows(command: impl Into<String>, rows: u64) -> Self {
        Self {
            command: command.into(),
            rows: Some(rows),
        }
    }
}

/// A parsed statement, for the extended protocol.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The statement's text.
    pub sql: String,
    statement: Option<Parsed>,
    /// Types of `$n` parameters, where they could be inferred.
    pub parameter_types: Vec<Option<DataType>>,
    /// Result columns, for statements that return rows.
    pub schema: Option<SchemaRef>,
}

#[derive(Debug, Clone)]
enum Parsed {
    Flush,
    Connector(Box<crate::ddl::ConnectorStatement>),
    Sql(Box<Statement>),
}

/// One client's session.
pub struct Session {
    engine: Arc<Engine>,
    context: SessionContext,
    schema: Arc<SnapshotSchema>,
    parser: PostgresCompatibilityParser,
    variables: Mutex<BTreeMap<String, String>>,
    /// The text of the statement being executed: what a durable engine
    /// stores as the definition of an object the statement creates.
    text: Mutex<String>,
    /// True for the session a restart re-creates stored objects with:
    /// what was checked against external systems at `CREATE` is not
    /// checked again (a broker or registry that is down then must not keep
    /// an object from coming back).
    restoring: bool,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").finish_non_exhaustive()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // datafusion-pg-catalog's schema holds the catalog list it sits in;
        // removing it breaks that reference cycle so the session is freed.
        if let Some(catalog) = self.context.catalog(DATABASE) {
            let _ = catalog.deregister_schema("pg_catalog", true);
        }
    }
}

impl Session {
    /// A session on `engine` with PostgreSQL's catalog tables and functions.
    pub fn new(engine: Arc<Engine>) -> Result<Self> {
        let mut config = SessionConfig::new()
            .with_default_catalog_and_schema(DATABASE, "public")
            .with_create_default_catalog_and_schema(true)
            .with_information_schema(true)
            .with_target_partitions(1);
        let options = config.options_mut();
        options.sql_parser.dialect = Dialect::PostgreSQL;
        options.sql_parser.map_string_types_to_utf8view = false;
        // `0.1` is an exact numeric in PostgreSQL, not a float.
        options.sql_parser.parse_float_as_decimal = true;
        options.execution.time_zone = Some("+00:00".to_string());
        let context = SessionContext::new_with_config(config);
        let schema = Arc::new(SnapshotSchema::new(engine.snapshot()));
        context
            .catalog(DATABASE)
            .ok_or_else(|| Error::internal("default catalog missing"))?
            .register_schema("public", schema.clone())?;
        context
            .catalog(DATABASE)
            .ok_or_else(|| Error::internal("default catalog missing"))?
            .register_schema(
                crate::system::SYSTEM_SCHEMA,
                Arc::new(crate::system::SystemSchema::new(schema.clone())),
            )?;
        datafusion_pg_catalog::setup_pg_catalog(&context, DATABASE, EmptyContextProvider)
            .map_err(|e| Error::from(*e))?;
        context.register_udf(crate::functions::version());
        schema.set_state(context.state_weak_ref());
        engine.start_ingest();
        let variables = settings::initial(&engine);
        Ok(Self {
            engine,
            context,
            schema,
            parser: PostgresCompatibilityParser::new(),
            variables: Mutex::new(variables),
            text: Mutex::new(String::new()),
            restoring: false,
        })
    }

    /// The session a restart re-creates stored objects with (see
    /// `restoring`).
    pub(crate) fn restoring(engine: Arc<Engine>) -> Result<Self> {
        let mut session = Self::new(engine)?;
        session.restoring = true;
        Ok(session)
    }

    /// Run every statement of `sql` in order (the simple query protocol).
    /// Stops at the first error, which is returned after the outputs of the
    /// statements before it.
    pub async fn execute_sql(&self, sql: &str) -> (Vec<Output>, Option<Error>) {
        let mut outputs = Vec::new();
        for text in split_statements(sql) {
            let result = match self.parse(text) {
                Ok(Some(parsed)) => self.execute(parsed, None, text).await,
                Ok(None) => continue,
                Err(error) => Err(error),
            };
            match result {
                Ok(output) => outputs.push(output),
                Err(error) => return (outputs, Some(error)),
            }
        }
        (outputs, None)
    }

    /// Parse one statement and describe its parameters and result columns.
    pub async fn prepare(&self, sql: &str) -> Result<Prepared> {
        let pieces = split_statements(sql);
        if pieces.len() > 1 {
            return Err(Error::Syntax(
                "cannot insert multiple commands into a prepared statement".into(),
            ));
        }
        let Some(text) = pieces.first() else {
            return Ok(Prepared {
                sql: sql.to_string(),
                statement: None,
                parameter_types: vec![],
                schema: None,
            });
        };
        let statement = self.parse(text)?;
        let mut prepared = Prepared {
            sql: text.to_string(),
            statement: statement.clone(),
            parameter_types: vec![],
            schema: None,
        };
        if let Some(Parsed::Sql(statement)) = &statement {
            self.schema.pin(self.engine.snapshot());
            match statement.as_ref() {
                Statement::Query(_)
                | Statement::Insert(_)
                | Statement::Update(_)
                | Statement::Delete(_) => {
                    let plan = self.plan(statement).await?;
                    let types = plan.get_parameter_types()?;
                    let mut ordered: Vec<(usize, Option<DataType>)> = types
                        .into_iter()
                        .filter_map(|(name, t)| {
                            name.trim_start_matches('$')
                                .parse::<usize>()
                                .ok()
                                .map(|n| (n, t))
                        })
                        .collect();
                    ordered.sort_by_key(|(n, _)| *n);
                    let count = ordered.last().map_or(0, |(n, _)| *n);
                    let mut parameter_types = vec![None; count];
                    for (n, t) in ordered {
                        if n > 0 {
                            parameter_types[n - 1] = t;
                        }
                    }
                    prepared.parameter_types = parameter_types;
                    if matches!(statement.as_ref(), Statement::Query(_)) {
                        prepared.schema = Some(Arc::new(plan.schema().as_arrow().clone()));
                    }
                }
                Statement::Explain {
                    statement: inner, ..
                } if !matches!(inner.as_ref(), Statement::CreateView(v) if v.materialized) => {
                    // DataFusion's EXPLAIN has its own columns.
                    let plan = self.plan(statement).await?;
                    prepared.schema = Some(Arc::new(plan.schema().as_arrow().clone()));
                }
                _ => {
                    prepared.schema = self.result_schema(statement);
                }
            }
        }
        Ok(prepared)
    }

    /// Run a prepared statement with `$n` parameter values.
    pub async fn execute_prepared(
        &self,
        prepared: &Prepared,
        parameters: Option<ParamValues>,
    ) -> Result<Option<Output>> {
        match &prepared.statement {
            Some(parsed) => Ok(Some(
                self.execute(parsed.clone(), parameters, &prepared.sql)
                    .await?,
            )),
            None => Ok(None),
        }
    }

    /// Exclusive write access for the statement being executed; an object
    /// it creates is defined by the statement's text.
    pub(crate) async fn writer(&self) -> crate::engine::WriteGuard<'_> {
        let mut guard = self.engine.write().await;
        guard.define(lock(&self.text).clone());
        guard
    }

    fn parse(&self, text: &str) -> Result<Option<Parsed>> {
        let words: Vec<String> = text
            .split_whitespace()
            .map(|w| w.trim_end_matches(';').to_ascii_uppercase())
            .collect();
        if words == ["FLUSH"] {
            return Ok(Some(Parsed::Flush));
        }
        if let Some(statement) = crate::ddl::parse(text)? {
            return Ok(Some(Parsed::Connector(Box::new(statement))));
        }
        // The compatibility parser rewrites what clients send to inspect
        // pg_catalog, and some of its rewrites change results (it replaces
        // correlated subqueries in a select list with NULL); apply it only
        // to catalog queries.
        let lower = text.to_ascii_lowercase();
        let parsed = if lower.contains("pg_") || lower.contains("information_schema") {
            self.parser.parse(text)
        } else {
            datafusion::sql::sqlparser::parser::Parser::parse_sql(
                &datafusion::sql::sqlparser::dialect::PostgreSqlDialect {},
                text,
            )
        };
        let mut statements = parsed.map_err(|e| {
            Error::Syntax(
                e.to_string()
                    .trim_start_matches("sql parser error: ")
                    .to_string(),
            )
        })?;
        match statements.len() {
            0 => Ok(None),
            1 => Ok(statements.pop().map(|s| Parsed::Sql(Box::new(s)))),
            _ => Err(Error::Syntax("expected one statement".into())),
        }
    }

    async fn plan(&self, statement: &Statement) -> Result<LogicalPlan> {
        let state = self.context.state();
        Ok(state
            .statement_to_plan(DFStatement::Statement(Box::new(statement.clone())))
            .await?)
    }

    async fn execute(
        &self,
        parsed: Parsed,
        parameters: Option<ParamValues>,
        text: &str,
    ) -> Result<Output> {
        text.trim().clone_into(&mut lock(&self.text));
        let statement = match parsed {
            Parsed::Flush => {
                self.engine.flush().await?;
                return Ok(Output::Command(CommandTag::new("FLUSH")));
            }
            Parsed::Connector(statement) => return self.execute_connector(*statement).await,
            Parsed::Sql(statement) => *statement,
        };
        match &statement {
            Statement::Query(query) => {
                reject_multiset_set_operations(query)?;
                self.schema.pin(self.engine.snapshot());
                let plan = self.plan(&statement).await?;
                let plan = bind(plan, parameters)?;
                self.run_query(plan).await
            }
            Statement::Insert(_) | Statement::Update(_) | Statement::Delete(_) => {
                self.write(&statement, parameters).await
            }
            Statement::CreateTable(_) => self.create_table(&statement).await,
            Statement::CreateView(view) => self.create_view(view).await,
            Statement::Drop {
                object_type,
                if_exists,
                names,
                cascade,
                ..
            } => self.drop(*object_type, *if_exists, names, *cascade).await,
            Statement::Explain {
                statement: inner, ..
            } => match inner.as_ref() {
                Statement::CreateView(view) if view.materialized => self.explain_view(view).await,
                _ => {
                    self.schema.pin(self.engine.snapshot());
                    let plan = self.plan(&statement).await?;
                    self.run_query(plan).await
                }
            },
            Statement::ShowTables { .. } => Ok(self.list(ObjectKind::Table, "name")),
            Statement::ShowViews { materialized, .. } => Ok(self.list(
                if *materialized {
                    ObjectKind::MaterializedView
                } else {
                    ObjectKind::View
                },
                "name",
            )),
            Statement::ShowVariable { variable } => self.show(variable),
            Statement::Set(set) => self.set(set),
            Statement::StartTransaction { .. } => Ok(Output::TransactionStart),
            Statement::Commit { .. } => Ok(Output::TransactionEnd("COMMIT")),
            Statement::Rollback { .. } => Ok(Output::TransactionEnd("ROLLBACK")),
            Statement::Discard { .. } => Ok(Output::Command(CommandTag::new("DISCARD ALL"))),
            Statement::Deallocate { .. } => Ok(Output::Command(CommandTag::new("DEALLOCATE"))),
            other => Err(Error::not_supported(format!(
                "statement not supported: {}",
                other
                    .to_string()
                    .split_whitespace()
                    .take(3)
                    .collect::<Vec<_>>()
                    .join(" ")
            ))),
        }
    }

    fn result_schema(&self, statement: &Statement) -> Option<SchemaRef> {
        match statement {
            Statement::ShowTables { .. } | Statement::ShowViews { .. } => {
                Some(text_schema(&["name"]))
            }
            Statement::ShowVariable { variable } => {
                let name = variable_name(variable);
                if name == "materialized views" || name == "sources" {
                    Some(text_schema(&["name"]))
                } else {
                    Some(text_schema(&[name.as_str()]))
                }
            }
            Statement::Explain { .. } => Some(text_schema(&["QUERY PLAN"])),
            _ => None,
        }
    }

    async fn run_query(&self, plan: LogicalPlan) -> Result<Output> {
        let frame = self.context.execute_logical_plan(plan).await?;
        let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
        let batches = frame.collect().await?;
        Ok(Output::Rows { schema, batches })
    }

    /// Rows a plan produces, as one batch of the plan's schema.
    async fn collect(&self, plan: LogicalPlan) -> Result<RecordBatch> {
        let schema: SchemaRef = Arc::new(plan.schema().as_arrow().clone());
        let batches = self
            .context
            .execute_logical_plan(plan)
            .await?
            .collect()
            .await?;
        Ok(concat_batches(&schema, &batches)?)
    }

    async fn write(
        &self,
        statement: &Statement,
        parameters: Option<ParamValues>,
    ) -> Result<Output> {
        let mut guard = self.writer().await;
        self.schema.pin(guard.snapshot());
        let plan = bind(self.plan(statement).await?, parameters)?;
        let LogicalPlan::Dml(dml) = plan else {
            return Err(Error::internal("DML did not plan to a write"));
        };
        let table = dml.table_name.table().to_string();
        let (changes, rows, command) = match dml.op {
            WriteOp::Insert(_) => {
                let rows = self.collect(dml.input.as_ref().clone()).await?;
                let count = rows.num_rows() as u64;
                (ChangeBatch::inserts(rows), count, "INSERT 0")
            }
            WriteOp::Delete => {
                let rows = self.collect(dml.input.as_ref().clone()).await?;
                let count = rows.num_rows() as u64;
                (ChangeBatch::deletes(rows), count, "DELETE")
            }
            WriteOp::Update => {
                let LogicalPlan::Projection(projection) = dml.input.as_ref() else {
                    return Err(Error::not_supported("this form of UPDATE"));
                };
                let width = projection.expr.len();
                let source = projection.input.as_ref().clone();
                let mut exprs: Vec<Expr> = source
                    .schema()
                    .columns()
                    .into_iter()
                    .take(width)
                    .map(Expr::Column)
                    .collect();
                for (i, expr) in projection.expr.iter().enumerate() {
                    exprs.push(expr.clone().unalias().alias(format!("__eddy_new_{i}")));
                }
                let plan = LogicalPlanBuilder::from(source).project(exprs)?.build()?;
                let both = self.collect(plan).await?;
                let count = both.num_rows() as u64;
                let schema = Arc::new(Schema::new(both.schema().fields()[..width].to_vec()));
                let old = RecordBatch::try_new(schema.clone(), both.columns()[..width].to_vec())?;
                let new = RecordBatch::try_new(schema.clone(), both.columns()[width..].to_vec())?;
                let changes = ChangeBatch::concat(
                    &schema,
                    &[ChangeBatch::deletes(old), ChangeBatch::inserts(new)],
                )?;
                (changes, count, "UPDATE")
            }
            _ => return Err(Error::not_supported(format!("{} statements", dml.op))),
        };
        guard.write_table(&table, changes)?;
        Ok(Output::Command(CommandTag::with_rows(command, rows)))
    }

    async fn create_table(&self, statement: &Statement) -> Result<Output> {
        let mut guard = self.writer().await;
        self.schema.pin(guard.snapshot());
        if let Statement::CreateTable(create) = statement {
            // Before planning, which would look the name up (and fail on
            // an object that failed).
            let name = object_name(&create.name);
            if guard.snapshot().objects.contains_key(&name) {
                return match create.if_not_exists {
                    true => Ok(Output::Command(CommandTag::new("CREATE TABLE"))),
                    false => Err(Error::DuplicateTable(name)),
                };
            }
        }
        let plan = self.plan(statement).await?;
        let LogicalPlan::Ddl(DdlStatement::CreateMemoryTable(create)) = plan else {
            return Err(Error::not_supported("this form of CREATE TABLE"));
        };
        let name = create.name.table().to_string();
        let mut primary_key = Vec::new();
        for constraint in create.constraints.iter() {
            match constraint {
                Constraint::PrimaryKey(columns) => primary_key = columns.clone(),
                Constraint::Unique(_) => {
                    return Err(Error::not_supported(
                        "UNIQUE constraints other than PRIMARY KEY",
                    ))
                }
            }
        }
        let input_schema = create.input.schema().as_arrow().clone();
        let fields: Vec<Field> = input_schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let field = f.as_ref().clone();
                if primary_key.contains(&i) {
                    field.with_nullable(false)
                } else {
                    field
                }
            })
            .collect();
        let schema = Arc::new(Schema::new(fields));
        let is_query = !matches!(create.input.as_ref(), LogicalPlan::EmptyRelation(_));
        let rows = if is_query {
            Some(self.collect(create.input.as_ref().clone()).await?)
        } else {
            None
        };
        if let Some(rows) = rows {
            // Stored as a plain CREATE TABLE: replaying the query after a
            // restart would read tables as they are then (or fail once they
            // are dropped); the rows are stored with the table.
            if guard.is_durable() {
                guard.define(self.plain_definition(&name, &schema).await?);
            }
            let count = rows.num_rows() as u64;
            guard.create_table_as(&name, schema, primary_key, rows)?;
            return Ok(Output::Command(CommandTag::with_rows("SELECT", count)));
        }
        guard.create_table(&name, schema, primary_key, create.column_defaults.clone())?;
        Ok(Output::Command(CommandTag::new("CREATE TABLE")))
    }

    /// `CREATE TABLE name (columns)` with `schema`'s columns, checked to
    /// plan back to exactly those column types.
    async fn plain_definition(&self, name: &str, schema: &SchemaRef) -> Result<String> {
        let columns = sql_columns(schema.fields()).map_err(|data_type| {
            Error::not_supported(format!(
                "CREATE TABLE AS with a column of type {data_type} in a durable database"
            ))
        })?;
        let definition = format!(
            "CREATE TABLE {} ({columns})",
            ast::Ident::with_quote('"', name)
        );
        let statement = Parser::parse_sql(&PostgreSqlDialect {}, &definition)
            .map_err(|e| Error::internal(e.to_string()))?
            .pop()
            .ok_or_else(|| Error::internal("no statement"))?;
        let planned = match self.plan(&statement).await? {
            LogicalPlan::Ddl(DdlStatement::CreateMemoryTable(create)) => {
                create.input.schema().as_arrow().clone()
            }
            _ => return Err(Error::internal("a CREATE TABLE did not plan to one")),
        };
        let same = planned.fields().len() == schema.fields().len()
            && planned
                .fields()
                .iter()
                .zip(schema.fields())
                .all(|(a, b)| a.data_type() == b.data_type());
        if !same {
            return Err(Error::not_supported(
                "CREATE TABLE AS with these column types in a durable database",
            ));
        }
        Ok(definition)
    }

    async fn create_view(&self, view: &ast::CreateView) -> Result<Output> {
        let name = object_name(&view.name);
        let query = view.query.to_string();
        let starts = match view.materialized {
            true => {
                let statement = Statement::Query(view.query.clone());
                let published = self.engine.snapshot();
                let read = relations_read(&statement, &published);
                self.start_positions(connectors::source_specs(&published, &read))
                    .await
            }
            false => Vec::new(),
        };
        let mut guard = self.writer().await;
        guard.start_readers_at(starts);
        let snapshot = guard.snapshot();
        self.schema.pin(snapshot.clone());
        let tag = if view.materialized {
            "CREATE MATERIALIZED VIEW"
        } else {
            "CREATE VIEW"
        };
        if snapshot.objects.contains_key(&name) && view.if_not_exists {
            return Ok(Output::Command(CommandTag::new(tag)));
        }
        if view.or_replace {
            return Err(Error::not_supported("CREATE OR REPLACE VIEW"));
        }
        reject_multiset_set_operations(&view.query)?;
        let plan = self.plan(&Statement::Query(view.query.clone())).await?;
        let plan = rename_columns(plan, &view.columns)?;
        let depends_on = relations_read(&Statement::Query(view.query.clone()), &snapshot);
        // A plain view is stored as text; keep a column list by aliasing.
        let query = if view.columns.is_empty() || view.materialized {
            query
        } else {
            let columns: Vec<String> = view
                .columns
                .iter()
                .map(|c| format!("\"{}\"", c.name.value.replace('"', "\"\"")))
                .collect();
            format!(
                "SELECT * FROM ({query}) AS \"{name}\" ({})",
                columns.join(", ")
            )
        };
        if view.materialized {
            eddy_planner::reject_time_dependent(&plan)?;
            let optimized = self.context.state().optimize(&plan)?;
            guard.create_materialized_view(&name, query, optimized, depends_on)?;
        } else {
            let schema = Arc::new(plan.schema().as_arrow().clone());
            guard.create_view(&name, query, schema, depends_on)?;
        }
        Ok(Output::Command(CommandTag::new(tag)))
    }

    async fn explain_view(&self, view: &ast::CreateView) -> Result<Output> {
        self.schema.pin(self.engine.snapshot());
        let plan = self.plan(&Statement::Query(view.query.clone())).await?;
        eddy_planner::reject_time_dependent(&plan)?;
        let optimized = self.context.state().optimize(&plan)?;
        let mut scratch = eddy_dataflow::Dataflow::new();
        let name = object_name(&view.name);
        let planned = eddy_planner::plan_view(&mut scratch, &name, &optimized, &|_| None)?;
        let text = scratch.explain(planned.root)?;
        let lines: Vec<&str> = text.lines().collect();
        let schema = text_schema(&["QUERY PLAN"]);
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(StringArray::from(lines))])?;
        Ok(Output::Rows {
            schema,
            batches: vec![batch],
        })
    }

    async fn drop(
        &self,
        object_type: ObjectType,
        if_exists: bool,
        names: &[ast::ObjectName],
        cascade: bool,
    ) -> Result<Output> {
        let (kind, tag) = match object_type {
            ObjectType::Table => (ObjectKind::Table, "DROP TABLE"),
            ObjectType::View => (ObjectKind::View, "DROP VIEW"),
            ObjectType::MaterializedView => {
                (ObjectKind::MaterializedView, "DROP MATERIALIZED VIEW")
            }
            other => return Err(Error::not_supported(format!("DROP {other}"))),
        };
        let mut guard = self.writer().await;
        let snapshot = guard.snapshot();
        let names: Vec<String> = names
            .iter()
            .map(object_name)
            .filter(|name| !if_exists || snapshot.objects.contains_key(name))
            .collect();
        if !names.is_empty() {
            guard.drop_objects(&names, kind, cascade)?;
        }
        Ok(Output::Command(CommandTag::new(tag)))
    }

    fn list(&self, kind: ObjectKind, column: &str) -> Output {
        let snapshot = self.engine.snapshot();
        let names: Vec<&str> = snapshot
            .objects
            .values()
            .filter(|e| e.kind == kind)
            .map(|e| e.name.as_str())
            .collect();
        let schema = text_schema(&[column]);
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(StringArray::from(names))]);
        Output::Rows {
            schema,
            batches: batch.into_iter().collect(),
        }
    }
}

/// Substitute `$n` parameters.
fn bind(plan: LogicalPlan, parameters: Option<ParamValues>) -> Result<LogicalPlan> {
    match parameters {
        Some(parameters) => Ok(plan.with_param_values(parameters)?),
        None => Ok(plan),
    }
}

/// Apply `CREATE VIEW v (a, b)` column names.
fn rename_columns(plan: LogicalPlan, columns: &[ast::ViewColumnDef]) -> Result<LogicalPlan> {
    if columns.is_empty() {
        return Ok(plan);
    }
    let fields = plan.schema().columns();
    if columns.len() > fields.len() {
        return Err(Error::plan(
            "42601",
            "CREATE VIEW specifies more column names than columns",
        ));
    }
    let exprs: Vec<Expr> = fields
        .into_iter()
        .enumerate()
        .map(|(i, column)| {
            let expr = col(column.clone());
            match columns.get(i) {
                Some(def) => expr.alias(def.name.value.to_ascii_lowercase()),
                None => expr,
            }
        })
        .collect();
    Ok(LogicalPlanBuilder::from(plan).project(exprs)?.build()?)
}

/// Names of the catalog objects a statement reads, subqueries and CTE
/// bodies included (taken from the SQL, before views are expanded).
fn relations_read(statement: &Statement, snapshot: &crate::Snapshot) -> Vec<String> {
    let statement = DFStatement::Statement(Box::new(statement.clone()));
    let Ok((references, _)) = datafusion::sql::resolve::resolve_table_references(&statement, true)
    else {
        return Vec::new();
    };
    let mut names: Vec<String> = Vec::new();
    for reference in references {
        let system = matches!(
            reference.schema(),
            Some("pg_catalog" | "information_schema")
        );
        let name = reference.table().to_string();
        if !system && snapshot.objects.contains_key(&name) && !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

/// INTERSECT ALL and EXCEPT ALL are planned with set semantics by
/// DataFusion; refuse them rather than return a wrong multiset.
fn reject_multiset_set_operations(query: &ast::Query) -> Result<()> {
    use std::ops::ControlFlow;
    struct Finder;
    impl ast::Visitor for Finder {
        type Break = ();
        fn pre_visit_query(&mut self, query: &ast::Query) -> ControlFlow<()> {
            fn walk(body: &ast::SetExpr) -> ControlFlow<()> {
                if let ast::SetExpr::SetOperation {
                    op,
                    set_quantifier,
                    left,
                    right,
                } = body
                {
                    let all = matches!(set_quantifier, ast::SetQuantifier::All);
                    let multiset =
                        matches!(op, ast::SetOperator::Intersect | ast::SetOperator::Except);
                    if all && multiset {
                        return ControlFlow::Break(());
                    }
                    walk(left)?;
                    walk(right)?;
                }
                ControlFlow::Continue(())
            }
            walk(&query.body)
        }
    }
    match ast::Visit::visit(query, &mut Finder) {
        ControlFlow::Break(()) => Err(Error::not_supported(
            "INTERSECT ALL and EXCEPT ALL are not supported",
        )),
        ControlFlow::Continue(()) => Ok(()),
    }
}

fn object_name(name: &ast::ObjectName) -> String {
    name.0
        .last()
        .map(|part| match part.as_ident() {
            Some(ident) if ident.quote_style.is_some() => ident.value.clone(),
            Some(ident) => ident.value.to_ascii_lowercase(),
            None => part.to_string(),
        })
        .unwrap_or_default()
}

fn text_schema(columns: &[&str]) -> SchemaRef {
    Arc::new(Schema::new(
        columns
            .iter()
            .map(|c| Field::new(*c, DataType::Utf8, true))
            .collect::<Vec<_>>(),
    ))
}

/// `fields` as the column list of a `CREATE TABLE` (`"name" TYPE [NOT
/// NULL], ...`); the type of the first column that has no SQL name if one
/// has none.
fn sql_columns(
    fields: &[datafusion::arrow::datatypes::FieldRef],
) -> std::result::Result<String, &DataType> {
    let columns = fields
        .iter()
        .map(|field| {
            let sql = sql_type(field.data_type()).ok_or(field.data_type())?;
            let not_null = if field.is_nullable() { "" } else { " NOT NULL" };
            Ok(format!(
                "{} {sql}{not_null}",
                ast::Ident::with_quote('"', field.name())
            ))
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(columns.join(", "))
}

/// The SQL type that plans to `data_type`, where there is one.
fn sql_type(data_type: &DataType) -> Option<String> {
    Some(match data_type {
        DataType::Boolean => "BOOLEAN".into(),
        DataType::Int16 => "SMALLINT".into(),
        DataType::Int32 => "INT".into(),
        DataType::Int64 => "BIGINT".into(),
        DataType::UInt32 => "INT UNSIGNED".into(),
        DataType::UInt64 => "BIGINT UNSIGNED".into(),
        DataType::Float32 => "REAL".into(),
        DataType::Float64 => "DOUBLE PRECISION".into(),
        DataType::Utf8 => "TEXT".into(),
        DataType::Binary => "BYTEA".into(),
        DataType::Date32 => "DATE".into(),
        DataType::Decimal128(p, s) => format!("NUMERIC({p}, {s})"),
        DataType::Timestamp(_, None) => "TIMESTAMP".into(),
        DataType::Timestamp(_, Some(_)) => "TIMESTAMPTZ".into(),
        DataType::Time64(_) => "TIME".into(),
        DataType::Interval(_) => "INTERVAL".into(),
        _ => return None,
    })
}

/// A mutex's contents, also after a panic while it was held (what it
/// guards here stays valid whatever the panicking code did).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
