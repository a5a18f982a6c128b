//! Connector statements of a session: `CREATE SOURCE`, `DROP SOURCE`, and
//! the connector forms of `CREATE TABLE` and `CREATE SINK` (refused until
//! they are built).

use std::sync::Arc;

use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::logical_expr::{DdlStatement, LogicalPlan};
use datafusion::sql::sqlparser::ast::{ColumnDef, TableConstraint};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use eddy_common::{Error, Result};
use eddy_connectors::spec::SourceSpec;

use super::{CommandTag, Output, Session};
use crate::catalog::ObjectKind;
use crate::connector_error;
use crate::ddl::{ConnectorDefinition, ConnectorStatement};

impl Session {
    pub(super) async fn execute_connector(&self, statement: ConnectorStatement) -> Result<Output> {
        match statement {
            ConnectorStatement::CreateSource(definition) => self.create_source(definition).await,
            ConnectorStatement::CreateTable(definition) => Err(Error::not_supported(format!(
                "CREATE TABLE with connector '{}' is not supported yet: use CREATE SOURCE for an append-only stream",
                definition.options.get("connector").map_or("", |c| c.as_str())
            ))),
            ConnectorStatement::CreateSink(_) => {
                Err(Error::not_supported("CREATE SINK is not supported yet"))
            }
            ConnectorStatement::Drop {
                kind,
                if_exists,
                names,
                cascade,
            } => {
                if kind != "source" {
                    return Err(Error::not_supported(format!("DROP {}", kind.to_uppercase())));
                }
                let mut guard = self.engine.write().await;
                let snapshot = guard.snapshot();
                let names: Vec<String> = names
                    .into_iter()
                    .filter(|name| !if_exists || snapshot.objects.contains_key(name))
                    .collect();
                if !names.is_empty() {
                    guard.drop_objects(&names, ObjectKind::Source, cascade)?;
                }
                Ok(Output::Command(CommandTag::new("DROP SOURCE")))
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
            options: definition.options,
            format: definition.format,
            includes: definition.includes,
        };
        let schema =
            eddy_connectors::source::source_schema(&spec, &declared).map_err(connector_error)?;
        let mut guard = self.engine.write().await;
        if definition.if_not_exists && guard.snapshot().objects.contains_key(&definition.name) {
            return Ok(tag);
        }
        guard.create_source(&definition.name, schema, spec)?;
        Ok(tag)
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
