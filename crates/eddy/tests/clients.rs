//! Real client programs against a real server: psql (the command-line
//! client analysts use) and psycopg 3 (Python applications). The tools are
//! installed by `scripts/setup.sh`; a missing tool fails the test.

#![allow(clippy::expect_used)]

use std::path::Path;
use std::process::Command;

async fn server() -> eddy::Server {
    let config = eddy::Config::in_memory("127.0.0.1:0");
    eddy::Server::start(&config).await.expect("start server")
}

fn psql(port: u16, sql: &str) -> std::process::Output {
    Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "eddy",
            "-d",
            "eddy",
        ])
        .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .output()
        .expect("psql is installed (scripts/setup.sh)")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_runs_statements_and_describes_relations() {
    let server = server().await;
    let port = server.addr.port();
    let created = tokio::task::spawn_blocking(move || {
        psql(
            port,
            "CREATE TABLE t (id INT PRIMARY KEY, v TEXT); \
             INSERT INTO t VALUES (1, 'a'), (2, 'b'); \
             CREATE MATERIALIZED VIEW c AS SELECT count(*) AS n FROM t;",
        )
    })
    .await
    .expect("psql task");
    assert!(created.status.success(), "{created:?}");

    let read = tokio::task::spawn_blocking(move || psql(port, "SELECT n FROM c"))
        .await
        .expect("psql task");
    assert_eq!(String::from_utf8_lossy(&read.stdout).trim(), "2");

    // `\d` queries pg_catalog.
    let described = tokio::task::spawn_blocking(move || psql(port, "\\d t"))
        .await
        .expect("psql task");
    let text = String::from_utf8_lossy(&described.stdout);
    assert!(described.status.success(), "{described:?}");
    assert!(
        text.contains("id|integer") && text.contains("v|text"),
        "{text}"
    );

    let failed = tokio::task::spawn_blocking(move || psql(port, "SELECT * FROM nope"))
        .await
        .expect("psql task");
    assert!(!failed.status.success());
    assert!(
        String::from_utf8_lossy(&failed.stderr).contains("relation \"nope\" does not exist"),
        "{failed:?}"
    );
    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg_application_round_trip() {
    let server = server().await;
    let port = server.addr.port();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/psycopg_client.py");
    let output = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg(script)
            .arg(port.to_string())
            .output()
            .expect("python3 is installed")
    })
    .await
    .expect("python task");
    assert!(
        output.status.success(),
        "psycopg client failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    server.shutdown().await.expect("shutdown");
}
