//! Connector statements of a session: `CREATE SOURCE`, `CREATE SINK`,
//! `DROP SOURCE | SINK`, and the connector form of `CREATE TABLE`.

use std::sync::Arc;

use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::logical_expr::{DdlStatement, LogicalPlan};
use datafusion::sql::sqlparser::ast::{ColumnDef, Statement, TableConstraint};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use eddy_common::{Error, Result};
use eddy_connectors::sink::{Reach, SinkInputFacts};
use eddy_connectors::spec::{Envelope, SourceSpec};
use tracing::warn;

use super::{CommandTag, Output, Session};
use crate::catalog::ObjectKind;
use crate::connector_error;
use crate::ddl::{ConnectorDefinition, ConnectorStatement, SinkDefinition, SinkInput};
use crate::engine::StartAt;
use crate::{SinkSource, Snapshot};

impl Session {
    pub(super) async fn execute_connector(&self, statement: ConnectorStatement) -> Result<Output> {
        match statement {
            ConnectorStatement::CreateSource(definition) => self.create_source(definition).await,
            ConnectorStatement::CreateTable(definition) => {
                self.create_connector_table(definition).await
            }
            ConnectorStatement::CreateSink(definition) => self.create_sink(definition).await,
            ConnectorStatement::Drop {
                kind,
                if_exists,
                names,
                cascade,
            } => {
                let (kind, tag) = match kind {
                    "source" => (ObjectKind::Source, "DROP SOURCE"),
                    "sink" => (ObjectKind::Sink, "DROP SINK"),
                    other => {
                        return Err(Error::not_supported(format!(
                            "DROP {}",
                            other.to_uppercase()
                        )))
                    }
                };
                let mut guard = self.writer().await;
                let snapshot = guard.snapshot();
                let names: Vec<String> = names
                    .into_iter()
                    .filter(|name| !if_exists || snapshot.objects.contains_key(name))
                    .collect();
                if !names.is_empty() {
                    guard.drop_objects(&names, kind, cascade)?;
                }
                Ok(Output::Command(CommandTag::new(tag)))
            }
        }
    }

    async fn create_source(&self, definition: ConnectorDefinition) -> Result<Output> {
        let tag = Output::Command(CommandTag::new("CREATE SOURCE"));
        if !definition.constraints.is_empty() {
            return Err(Error::not_supported(
                "constraints on a source: a source is an append-only stream",
            ));
        }
        let declared = self
            .declared_schema(
                &definition.name,
                &definition.columns,
                &definition.constraints,
            )
            .await?;
        let spec = SourceSpec {
            options: definition.options.clone(),
            format: definition.format.clone(),
            includes: definition.includes.clone(),
            primary_key: Vec::new(),
        };
        let schema = eddy_connectors::source::source_schema(&spec, &declared)
            .await
            .map_err(connector_error)?;
        let stored = self.stored_definition(&definition, &schema).await?;
        let mut guard = self.writer().await;
        if definition.if_not_exists && guard.snapshot().objects.contains_key(&definition.name) {
            return Ok(tag);
        }
        if let Some(stored) = stored {
            guard.define(stored);
        }
        guard.create_source(&definition.name, schema, spec)?;
        Ok(tag)
    }

    async fn create_connector_table(&self, definition: ConnectorDefinition) -> Result<Output> {
        let tag = Output::Command(CommandTag::new("CREATE TABLE"));
        let mut primary_key: Vec<String> = Vec::new();
        for constraint in &definition.constraints {
            let TableConstraint::PrimaryKey(key) = constraint else {
                return Err(Error::not_supported(format!(
                    "constraint {constraint} on a connector table (only PRIMARY KEY)"
                )));
            };
            for column in &key.columns {
                match &column.column.expr {
                    datafusion::sql::sqlparser::ast::Expr::Identifier(ident) => {
                        primary_key.push(ident.value.clone())
                    }
                    other => {
                        return Err(Error::not_supported(format!(
                            "PRIMARY KEY on expression {other}"
                        )))
                    }
                }
            }
        }
        for column in &definition.columns {
            let is_key = column.options.iter().any(|o| {
                matches!(
                    o.option,
                    datafusion::sql::sqlparser::ast::ColumnOption::PrimaryKey(_)
                )
            });
            if is_key {
                primary_key.push(column.name.value.clone());
            }
        }
        let declared = self
            .declared_schema(&definition.name, &definition.columns, &[])
            .await?;
        let spec = SourceSpec {
            options: definition.options.clone(),
            format: definition.format.clone(),
            includes: definition.includes.clone(),
            primary_key: primary_key.clone(),
        };
        if !primary_key.is_empty() && spec.connector() != "kafka" {
            return Err(Error::not_supported(format!(
                "PRIMARY KEY on a table fed by connector '{}' (its rows are appended)",
                spec.connector()
            )));
        }
        let schema = eddy_connectors::source::source_schema(&spec, &declared)
            .await
            .map_err(connector_error)?;
        let stored = self.stored_definition(&definition, &schema).await?;
        let key: Vec<usize> = primary_key
            .iter()
            .map(|name| {
                schema
                    .index_of(name)
                    .map_err(|_| Error::UndefinedColumn(name.clone()))
            })
            .collect::<Result<_>>()?;
        let fields: Vec<datafusion::arrow::datatypes::Field> = schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| {
                f.as_ref()
                    .clone()
                    .with_nullable(f.is_nullable() && !key.contains(&i))
            })
            .collect();
        let schema = Arc::new(Schema::new(fields));
        let starts = self.start_positions(vec![spec.clone()]).await;
        let mut guard = self.writer().await;
        if definition.if_not_exists && guard.snapshot().objects.contains_key(&definition.name) {
            return Ok(tag);
        }
        if let Some(stored) = stored {
            guard.define(stored);
        }
        guard.start_readers_at(starts);
        guard.create_connector_table(&definition.name, schema, key, spec)?;
        Ok(tag)
    }

    async fn create_sink(&self, definition: SinkDefinition) -> Result<Output> {
        let tag = Output::Command(CommandTag::new("CREATE SINK"));
        let snapshot = self.engine.snapshot();
        if definition.if_not_exists && snapshot.objects.contains_key(&definition.name) {
            return Ok(tag);
        }
        self.schema.pin(snapshot.clone());
        // A source or plain view has no stored rows of its own: write out
        // the query over it instead.
        let query = match definition.input {
            SinkInput::Relation(name) => match snapshot.objects.get(&name).map(|e| e.kind) {
                Some(ObjectKind::Table | ObjectKind::MaterializedView) => {
                    let entry = &snapshot.objects[&name];
                    if let Some(error) = entry.failed() {
                        return Err(error);
                    }
                    let spec = sink_spec(definition.options, definition.format);
                    let schema = entry.schema.clone();
                    let facts = SinkInputFacts {
                        append_only: append_only_relation(&snapshot, &name),
                        exactly_once: self.engine.sink_exactly_once(
                            &snapshot,
                            &spec,
                            std::slice::from_ref(&name),
                            false,
                        )?,
                    };
                    eddy_connectors::sink::check(&spec, &schema, facts, self.sink_checks())
                        .await
                        .map_err(connector_error)?;
                    let mut guard = self.writer().await;
                    guard.create_sink(
                        &definition.name,
                        spec,
                        schema,
                        SinkSource::Relation(name),
                    )?;
                    return Ok(tag);
                }
                Some(ObjectKind::Source | ObjectKind::View) => {
                    let sql = format!("SELECT * FROM \"{}\"", name.replace('"', "\"\""));
                    let mut statements = Parser::parse_sql(&PostgreSqlDialect {}, &sql)
                        .map_err(|e| Error::Syntax(e.to_string()))?;
                    match statements.pop() {
                        Some(Statement::Query(query)) => query,
                        _ => return Err(Error::internal("sink query did not parse")),
                    }
                }
                Some(ObjectKind::Sink) => {
                    return Err(Error::WrongObjectType {
                        name,
                        expected: "relation",
                    })
                }
                None => return Err(Error::UndefinedTable(name)),
            },
            SinkInput::Query(query) => query,
        };
        super::reject_multiset_set_operations(&query)?;
        let statement = Statement::Query(query.clone());
        let plan = self.plan(&statement).await?;
        eddy_planner::reject_time_dependent(&plan)?;
        let optimized = self.context.state().optimize(&plan)?;
        let schema = eddy_dataflow::schema::nullable(optimized.schema().as_arrow());
        let depends_on = super::relations_read(&statement, &snapshot);
        let spec = sink_spec(definition.options, definition.format);
        let facts = SinkInputFacts {
            append_only: append_only_plan(&snapshot, &optimized),
            exactly_once: self
                .engine
                .sink_exactly_once(&snapshot, &spec, &depends_on, true)?,
        };
        eddy_connectors::sink::check(&spec, &schema, facts, self.sink_checks())
            .await
            .map_err(connector_error)?;
        let starts = self
            .start_positions(source_specs(&snapshot, &depends_on))
            .await;
        let mut guard = self.writer().await;
        guard.start_readers_at(starts);
        for input in &depends_on {
            if !guard.snapshot().objects.contains_key(input) {
                return Err(Error::UndefinedTable(input.clone()));
            }
        }
        guard.create_sink(
            &definition.name,
            spec,
            schema,
            SinkSource::Query {
                query: query.to_string(),
                plan: optimized,
                depends_on,
            },
        )?;
        Ok(tag)
    }

    /// Where readers of `specs` that start now begin
    /// ([`eddy_connectors::source::start_positions`]), asked before the
    /// statement takes the writer: a broker may take seconds to answer (5
    /// when it is away), and ingest and other statements go on meanwhile.
    /// Nothing while a restart re-creates objects: their readers resume.
    pub(super) async fn start_positions(&self, specs: Vec<SourceSpec>) -> Vec<StartAt> {
        if self.restoring {
            return Vec::new();
        }
        let mut starts = Vec::with_capacity(specs.len());
        for spec in specs {
            let asked = spec.clone();
            let resolved = tokio::task::spawn_blocking(move || {
                eddy_connectors::source::start_positions(&asked).map_err(|e| e.to_string())
            })
            .await
            .unwrap_or_else(|error| Err(error.to_string()));
            starts.push((spec, resolved));
        }
        starts
    }

    /// What a `CREATE SINK` checks: everything, unless a restart
    /// re-creates it.
    fn sink_checks(&self) -> Reach {
        if self.restoring {
            Reach::OptionsOnly
        } else {
            Reach::External
        }
    }

    /// The text a durable catalog stores for `definition`, a source or
    /// connector table whose columns came from a schema (a registry's or a
    /// descriptor's): the statement with those columns written in, so that
    /// a restart neither needs the registry nor takes a later schema than
    /// the one the objects reading it were planned with. `None` to store
    /// the statement as it was written: its columns were declared, or a
    /// derived column's type has no SQL name that plans back to it (then
    /// a restart derives the columns again, and a warning says so).
    async fn stored_definition(
        &self,
        definition: &ConnectorDefinition,
        schema: &SchemaRef,
    ) -> Result<Option<String>> {
        // Only a statement without a column list has a place for one.
        let Some(at) = definition.columns_at else {
            return Ok(None);
        };
        if !self.engine.is_durable() {
            return Ok(None);
        }
        // The derived columns come first, the INCLUDE columns after them.
        let derived = schema
            .fields()
            .len()
            .saturating_sub(definition.includes.len());
        let derived = &schema.fields()[..derived];
        let text = &definition.text;
        let written = match (super::sql_columns(derived), text.get(..at), text.get(at..)) {
            (Ok(columns), Some(head), Some(tail)) => {
                Some(format!("{} ({columns}) {tail}", head.trim_end()))
            }
            _ => None,
        };
        let planned = match written.as_deref().map(crate::ddl::parse) {
            Some(Ok(Some(
                ConnectorStatement::CreateSource(parsed) | ConnectorStatement::CreateTable(parsed),
            ))) => Some(
                self.declared_schema(&parsed.name, &parsed.columns, &[])
                    .await?,
            ),
            _ => None,
        };
        let same = planned.is_some_and(|planned| {
            planned.fields().len() == derived.len()
                && planned.fields().iter().zip(derived).all(|(a, b)| {
                    a.data_type() == b.data_type() && a.is_nullable() == b.is_nullable()
                })
        });
        if !same {
            warn!(
                object = %definition.name,
                "the derived columns could not be written into the stored definition (a type without a SQL name that plans back to it); a restart derives them again"
            );
            return Ok(None);
        }
        Ok(written)
    }

    /// The schema of a column list, typed exactly as `CREATE TABLE` types it.
    async fn declared_schema(
        &self,
        name: &str,
        columns: &[ColumnDef],
        constraints: &[TableConstraint],
    ) -> Result<SchemaRef> {
        if columns.is_empty() {
            return Ok(Arc::new(Schema::empty()));
        }
        let definitions: Vec<String> = columns
            .iter()
            .map(ToString::to_string)
            .chain(constraints.iter().map(ToString::to_string))
            .collect();
        let sql = format!(
            "CREATE TABLE \"{}\" ({})",
            name.replace('"', "\"\""),
            definitions.join(", ")
        );
        let mut statements = Parser::parse_sql(&PostgreSqlDialect {}, &sql)
            .map_err(|e| Error::Syntax(e.to_string()))?;
        let statement = statements
            .pop()
            .ok_or_else(|| Error::internal("column list did not parse"))?;
        let plan = self.plan(&statement).await?;
        let LogicalPlan::Ddl(DdlStatement::CreateMemoryTable(create)) = plan else {
            return Err(Error::internal("column list did not plan to a table"));
        };
        Ok(Arc::new(create.input.schema().as_arrow().clone()))
    }
}

fn sink_spec(
    options: std::collections::BTreeMap<String, String>,
    format: Option<eddy_connectors::spec::FormatSpec>,
) -> SourceSpec {
    SourceSpec {
        options,
        format,
        includes: Vec::new(),
        primary_key: Vec::new(),
    }
}

/// True if the rows of `name` are never deleted: a materialized view that
/// only filters and projects append-only sources.
fn append_only_relation(snapshot: &Snapshot, name: &str) -> bool {
    let Some(entry) = snapshot.objects.get(name) else {
        return false;
    };
    match entry.kind {
        ObjectKind::Source => true,
        // Fed by FORMAT PLAIN without a key, or by a generator, and closed
        // to DML.
        ObjectKind::Table => {
            entry.primary_key.is_empty()
                && entry.connector.as_ref().is_some_and(|spec| {
                    match spec.format.as_ref().and_then(|f| f.envelope()) {
                        Some(envelope) => envelope == Envelope::Plain,
                        None => eddy_connectors::source::generated(spec),
                    }
                })
        }
        ObjectKind::MaterializedView => entry
            .plan
            .as_ref()
            .is_some_and(|plan| append_only_plan(snapshot, plan)),
        _ => false,
    }
}

/// True if `plan` never deletes a row: it filters, projects and unions
/// scans of append-only relations.
fn append_only_plan(snapshot: &Snapshot, plan: &LogicalPlan) -> bool {
    match plan {
        LogicalPlan::TableScan(scan) => append_only_relation(snapshot, scan.table_name.table()),
        LogicalPlan::Projection(_)
        | LogicalPlan::Filter(_)
        | LogicalPlan::SubqueryAlias(_)
        | LogicalPlan::Union(_) => plan
            .inputs()
            .into_iter()
            .all(|input| append_only_plan(snapshot, input)),
        _ => false,
    }
}

/// The connectors of the sources among `relations`.
pub(super) fn source_specs(snapshot: &Snapshot, relations: &[String]) -> Vec<SourceSpec> {
    relations
        .iter()
        .filter_map(|name| snapshot.objects.get(name))
        .filter(|entry| entry.kind == ObjectKind::Source)
        .filter_map(|entry| entry.connector.as_deref().cloned())
        .collect()
}
