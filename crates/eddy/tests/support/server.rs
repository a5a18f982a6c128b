//! An Eddy server for a test, and a client connected to it over pgwire.
//! Shared by several test binaries, each using a part of it.

#![allow(dead_code)]
#![allow(clippy::expect_used)]

use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

/// Start an Eddy server on a free port (state in memory, no demo) and
/// connect a client to it. The server runs until it is dropped.
pub async fn start() -> (eddy::Server, Client) {
    let config = eddy::Config::in_memory("127.0.0.1:0");
    let server = eddy::Server::start(&config).await.expect("start eddy");
    let addr = server.addr;
    let (client, connection) = tokio_postgres::connect(
        &format!("host={} port={} user=eddy", addr.ip(), addr.port()),
        NoTls,
    )
    .await
    .expect("connect to eddy");
    tokio::spawn(connection);
    (server, client)
}

/// Rows of a query in the text format, each row's values joined by spaces
/// (`NULL` for nulls).
pub async fn rows(client: &Client, sql: &str) -> Vec<String> {
    client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .into_iter()
        .filter_map(|message| match message {
            SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).unwrap_or("NULL").to_string())
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
            _ => None,
        })
        .collect()
}
