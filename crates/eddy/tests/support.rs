//! Test support: a sqllogictest database backed by tokio-postgres, in
//! either protocol; a tansu broker ([`broker`]); an Eddy server with a
//! client ([`server`]); a stand-in for a Confluent schema registry
//! ([`registry`]).

pub mod broker;
pub mod process;
pub mod registry;
pub mod server;
pub mod value;

use std::net::SocketAddr;

use sqllogictest::{AsyncDB, DBOutput, DefaultColumnType};
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

/// Which Postgres query protocol a connection uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// One Query message per statement; results in text.
    Simple,
    /// Parse/Bind/Describe/Execute; results in binary.
    Extended,
}

/// A client connection.
pub struct Postgres {
    client: Client,
    protocol: Protocol,
    connection: tokio::task::JoinHandle<()>,
}

impl Postgres {
    /// Connect to an Eddy server.
    pub async fn connect(
        addr: SocketAddr,
        protocol: Protocol,
    ) -> Result<Self, tokio_postgres::Error> {
        let config = format!(
            "host={} port={} user=eddy dbname=eddy",
            addr.ip(),
            addr.port()
        );
        let (client, connection) = tokio_postgres::connect(&config, NoTls).await?;
        let connection = tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Self {
            client,
            protocol,
            connection,
        })
    }

    async fn run_simple(
        &mut self,
        sql: &str,
    ) -> Result<DBOutput<DefaultColumnType>, tokio_postgres::Error> {
        let messages = self.client.simple_query(sql).await?;
        let mut rows = Vec::new();
        let mut columns = None;
        let mut count = 0;
        for message in messages {
            match message {
                SimpleQueryMessage::RowDescription(description) => {
                    columns = Some(description.len())
                }
                SimpleQueryMessage::Row(row) => {
                    columns = Some(row.len());
                    rows.push(
                        (0..row.len())
                            .map(|i| match row.get(i) {
                                None => "NULL".to_string(),
                                Some("") => "(empty)".to_string(),
                                Some(text) => text.to_string(),
                            })
                            .collect::<Vec<_>>(),
                    );
                }
                SimpleQueryMessage::CommandComplete(n) => count = n,
                _ => {}
            }
        }
        Ok(match columns {
            Some(width) => DBOutput::Rows {
                types: vec![DefaultColumnType::Any; width],
                rows,
            },
            None => DBOutput::StatementComplete(count),
        })
    }

    async fn run_extended(
        &mut self,
        sql: &str,
    ) -> Result<DBOutput<DefaultColumnType>, tokio_postgres::Error> {
        let statement = self.client.prepare(sql).await?;
        if statement.columns().is_empty() {
            let count = self.client.execute(&statement, &[]).await?;
            return Ok(DBOutput::StatementComplete(count));
        }
        let rows = self.client.query(&statement, &[]).await?;
        let width = statement.columns().len();
        let rows = rows
            .iter()
            .map(|row| {
                (0..width)
                    .map(|i| {
                        let value: value::Value = row.get(i);
                        value.0.unwrap_or_else(|| "NULL".to_string())
                    })
                    .map(|text| {
                        if text.is_empty() {
                            "(empty)".to_string()
                        } else {
                            text
                        }
                    })
                    .collect()
            })
            .collect();
        Ok(DBOutput::Rows {
            types: vec![DefaultColumnType::Any; width],
            rows,
        })
    }
}

#[async_trait::async_trait]
impl AsyncDB for Postgres {
    type Error = tokio_postgres::Error;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, Self::Error> {
        match self.protocol {
            Protocol::Simple => self.run_simple(sql).await,
            Protocol::Extended => self.run_extended(sql).await,
        }
    }

    async fn shutdown(&mut self) {
        self.connection.abort();
    }

    fn engine_name(&self) -> &str {
        "eddy"
    }

    async fn sleep(duration: std::time::Duration) {
        tokio::time::sleep(duration).await;
    }

    fn error_sql_state(error: &Self::Error) -> Option<String> {
        error.code().map(|c| c.code().to_string())
    }
}
