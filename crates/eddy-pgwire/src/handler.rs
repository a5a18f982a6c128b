//! pgwire handlers for one connection.

use std::fmt::Debug;
use std::sync::Arc;

use arrow_pg::datatypes::df::deserialize_parameters;
use arrow_pg::datatypes::{arrow_schema_to_pg_fields, into_pg_type};
use async_trait::async_trait;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ParamValues;
use datafusion::scalar::ScalarValue;
use eddy_common::Error;
use eddy_engine::{Engine, Output, Prepared, Session};
use futures::{stream, Sink};
use pgwire::api::auth::noop::NoopStartupHandler;
use pgwire::api::auth::StartupHandler;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, PgWireServerHandlers, Type};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::types::format::FormatOptions;

/// Handlers of one connection, sharing its session.
pub struct ConnectionHandlers {
    query: Arc<QueryHandler>,
    startup: Arc<Startup>,
}

impl ConnectionHandlers {
    /// Open a session on `engine`.
    pub fn new(engine: Arc<Engine>) -> eddy_common::Result<Self> {
        let session = Arc::new(Session::new(engine)?);
        Ok(Self {
            query: Arc::new(QueryHandler {
                parser: Arc::new(StatementParser {
                    session: session.clone(),
                }),
                session,
            }),
            startup: Arc::new(Startup),
        })
    }
}

impl PgWireServerHandlers for ConnectionHandlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.query.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.query.clone()
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        self.startup.clone()
    }
}

/// Accepts any user and database without a password.
struct Startup;

impl NoopStartupHandler for Startup {}

struct QueryHandler {
    session: Arc<Session>,
    parser: Arc<StatementParser>,
}

struct StatementParser {
    session: Arc<Session>,
}

/// An engine error as a Postgres error response.
fn wire_error(error: &Error) -> ErrorInfo {
    let mut info = ErrorInfo::new("ERROR".into(), error.sqlstate().into(), error.to_string());
    if let Some(detail) = error.detail() {
        let (detail, hint) = match detail.split_once("\nHINT:  ") {
            Some((detail, hint)) => (detail, Some(hint.to_string())),
            None => (detail, None),
        };
        info.detail = Some(detail.to_string());
        info.hint = hint;
    }
    info
}

fn user_error(error: &Error) -> PgWireError {
    PgWireError::UserError(Box::new(wire_error(error)))
}

fn response(
    output: Output,
    format: &Format,
    options: &Arc<FormatOptions>,
) -> PgWireResult<Response> {
    Ok(match output {
        Output::Rows { schema, batches } => {
            let fields = Arc::new(arrow_schema_to_pg_fields(
                &schema,
                format,
                Some(options.clone()),
            )?);
            let rows = batches.into_iter().flat_map({
                let fields = fields.clone();
                move |batch| crate::encode::rows(fields.clone(), batch)
            });
            Response::Query(QueryResponse::new(fields, stream::iter(rows)))
        }
        Output::Command(tag) => {
            // PostgreSQL reports INSERT with the (always 0) oid: `INSERT 0 3`.
            let mut wire = match tag.command.strip_suffix(" 0") {
                Some(command) => Tag::new(command).with_oid(0),
                None => Tag::new(&tag.command),
            };
            if let Some(rows) = tag.rows {
                wire = wire.with_rows(rows as usize);
            }
            Response::Execution(wire)
        }
        Output::TransactionStart => Response::TransactionStart(Tag::new("BEGIN")),
        Output::TransactionEnd(command) => Response::TransactionEnd(Tag::new(command)),
    })
}

/// Decode `$n` values. A value is read as the type the client declared for
/// it (psycopg sends a Python float as float8 even for a numeric column),
/// then cast to the type the statement needs, as PostgreSQL would.
fn parameters(portal: &Portal<Prepared>) -> PgWireResult<Option<ParamValues>> {
    if portal.parameter_len() == 0 {
        return Ok(None);
    }
    let needed = &portal.statement.statement.parameter_types;
    let declared = &portal.statement.parameter_types;
    let read_as: Vec<Option<&DataType>> = needed
        .iter()
        .enumerate()
        .map(|(i, t)| match declared.get(i) {
            Some(Some(_)) => None,
            _ => t.as_ref(),
        })
        .collect();
    let ParamValues::List(values) = deserialize_parameters(portal, &read_as)? else {
        return Err(user_error(&Error::internal(
            "named parameters from the wire",
        )));
    };
    let values = values
        .into_iter()
        .enumerate()
        .map(|(i, mut value)| {
            let Some(Some(target)) = needed.get(i) else {
                return Ok(value);
            };
            if value.value.is_null() {
                value.value = ScalarValue::try_from(target).unwrap_or(ScalarValue::Null);
            } else if &value.value.data_type() != target {
                value.value = value.value.cast_to(target).map_err(|e| {
                    user_error(&Error::Data {
                        code: "22P02",
                        message: format!("invalid value for parameter ${}: {e}", i + 1),
                    })
                })?;
            }
            Ok(value)
        })
        .collect::<PgWireResult<Vec<_>>>()?;
    Ok(Some(ParamValues::List(values)))
}

#[async_trait]
impl SimpleQueryHandler for QueryHandler {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let options = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
        let (outputs, error) = self.session.execute_sql(query).await;
        let mut responses = Vec::with_capacity(outputs.len() + 1);
        for output in outputs {
            responses.push(response(output, &Format::UnifiedText, &options)?);
        }
        if let Some(error) = error {
            tracing::debug!(%error, "statement failed");
            responses.push(Response::Error(Box::new(wire_error(&error))));
        }
        if responses.is_empty() {
            responses.push(Response::EmptyQuery);
        }
        Ok(responses)
    }
}

#[async_trait]
impl QueryParser for StatementParser {
    type Statement = Prepared;

    async fn parse_sql<C>(
        &self,
        _client: &C,
        sql: &str,
        _types: &[Option<Type>],
    ) -> PgWireResult<Option<Prepared>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        self.session
            .prepare(sql)
            .await
            .map(Some)
            .map_err(|e| user_error(&e))
    }

    fn get_parameter_types(&self, statement: &Prepared) -> PgWireResult<Vec<Type>> {
        statement
            .parameter_types
            .iter()
            .map(|t| match t {
                Some(t) => into_pg_type(t),
                None => Ok(Type::UNKNOWN),
            })
            .collect()
    }

    fn get_result_schema(
        &self,
        statement: &Prepared,
        format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        match &statement.schema {
            Some(schema) => {
                arrow_schema_to_pg_fields(schema, format.unwrap_or(&Format::UnifiedText), None)
            }
            None => Ok(vec![]),
        }
    }
}

#[async_trait]
impl ExtendedQueryHandler for QueryHandler {
    type Statement = Prepared;
    type QueryParser = StatementParser;

    fn query_parser(&self) -> Arc<StatementParser> {
        self.parser.clone()
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Prepared>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let prepared = &portal.statement.statement;
        let parameters = parameters(portal)?;
        let options = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
        match self.session.execute_prepared(prepared, parameters).await {
            Ok(Some(output)) => response(output, &portal.result_column_format, &options),
            Ok(None) => Ok(Response::EmptyQuery),
            Err(error) => Err(user_error(&error)),
        }
    }
}
