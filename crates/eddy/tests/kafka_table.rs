//! Connector tables against a real Kafka-protocol broker (tansu, started by
//! the test harness): `CREATE TABLE ... (PRIMARY KEY ...) WITH (connector =
//! 'kafka') FORMAT UPSERT | DEBEZIUM | PLAIN ENCODE JSON`, keyed by their
//! primary key, with the views over them maintained through updates and
//! deletes; bad messages; and a Debezium topic written by an Eddy sink read
//! back into a table equal to the view it came from.

#![allow(clippy::expect_used, clippy::unwrap_used)]

#[allow(dead_code)]
mod support;

use support::broker::TestBroker;
use support::server::{rows, start};

async fn send(broker: &TestBroker, topic: &str, key: Option<&str>, value: Option<&str>) {
    broker
        .produce(topic, 0, key.map(str::as_bytes), value.map(str::as_bytes))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upsert_table_follows_keys_and_tombstones() {
    let broker = TestBroker::start().await;
    broker.create_topic("stock", 1).await;
    broker.create_topic("stock_dlq", 1).await;
    let (_server, client) = start().await;
    client
        .batch_execute(&format!(
            "CREATE TABLE stock (sku VARCHAR PRIMARY KEY, shelf VARCHAR, qty INT)
               WITH (connector = 'kafka', topic = 'stock', properties.bootstrap.server = '{}',
                     on_error.dead_letter.topic = 'stock_dlq',
                     -- one record per batch to the dead-letter topic: see support/broker.rs
                     properties.batch.num.messages = '1')
               FORMAT UPSERT ENCODE JSON;
             CREATE MATERIALIZED VIEW per_shelf AS
               SELECT shelf, count(*) AS skus, sum(qty) AS qty FROM stock GROUP BY shelf;",
            broker.bootstrap()
        ))
        .await
        .expect("create table and view");
    let sku = |sku: &str, shelf: &str, qty: i32| {
        format!(r#"{{"sku": "{sku}", "shelf": "{shelf}", "qty": {qty}}}"#)
    };
    send(&broker, "stock", Some("a"), Some(&sku("a", "s1", 1))).await;
    send(&broker, "stock", Some("b"), Some(&sku("b", "s1", 2))).await;
    send(&broker, "stock", Some("c"), Some(&sku("c", "s2", 3))).await;
    // An update, a move to another shelf, and a delete.
    send(&broker, "stock", Some("a"), Some(&sku("a", "s1", 10))).await;
    send(&broker, "stock", Some("c"), Some(&sku("c", "s1", 4))).await;
    send(&broker, "stock", Some("b"), None).await;
    // Bad: no key, and a value that is not JSON.
    send(&broker, "stock", None, Some(&sku("z", "s9", 9))).await;
    send(&broker, "stock", Some("d"), Some("{oops")).await;
    client.batch_execute("FLUSH").await.expect("flush");
    assert_eq!(
        rows(&client, "SELECT * FROM stock ORDER BY sku").await,
        ["a s1 10", "c s1 4"]
    );
    assert_eq!(
        rows(&client, "SELECT * FROM per_shelf ORDER BY shelf").await,
        ["s1 2 14"]
    );
    let errors = rows(
        &client,
        "SELECT source, \"offset\" FROM eddy_catalog.source_errors ORDER BY \"offset\"",
    )
    .await;
    assert_eq!(errors, ["stock 6", "stock 7"]);
    // Both bad messages are copied to the dead-letter topic, with why.
    let dead = broker
        .read_all("stock_dlq", 2, std::time::Duration::from_secs(30))
        .await;
    assert_eq!(dead.len(), 2);
    assert_eq!(dead[1].key.as_deref(), Some(&b"d"[..]));
    assert_eq!(dead[1].payload.as_deref(), Some(&b"{oops"[..]));
    let header = |name: &str| {
        dead[1]
            .headers
            .iter()
            .find(|(key, _)| key == name)
            .and_then(|(_, value)| value.clone())
            .map(|v| String::from_utf8(v).unwrap())
    };
    assert_eq!(header("eddy.source").as_deref(), Some("stock"));
    assert_eq!(header("eddy.offset").as_deref(), Some("7"));
    assert!(header("eddy.reason").is_some());

    // A tombstone for a key never seen, then the key comes back.
    send(&broker, "stock", Some("q"), None).await;
    send(&broker, "stock", Some("b"), Some(&sku("b", "s2", 5))).await;
    client.batch_execute("FLUSH").await.expect("flush");
    assert_eq!(
        rows(&client, "SELECT * FROM per_shelf ORDER BY shelf").await,
        ["s1 2 14", "s2 1 5"]
    );

    let error = client
        .batch_execute("INSERT INTO stock VALUES ('x', 's1', 1)")
        .await
        .expect_err("connector tables take no DML");
    assert_eq!(error.code().map(|c| c.code()), Some("42809"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debezium_table_applies_change_events() {
    let broker = TestBroker::start().await;
    broker.create_topic("users", 1).await;
    let (_server, client) = start().await;
    client
        .batch_execute(&format!(
            "CREATE TABLE users (id BIGINT, name VARCHAR, city VARCHAR, PRIMARY KEY (id))
               WITH (connector = 'kafka', topic = 'users', properties.bootstrap.server = '{}')
               FORMAT DEBEZIUM ENCODE JSON;
             CREATE MATERIALIZED VIEW per_city AS
               SELECT city, count(*) AS n FROM users GROUP BY city;",
            broker.bootstrap()
        ))
        .await
        .expect("create table and view");
    let events = [
        // A snapshot read, creates (one wrapped in schema + payload).
        r#"{"before": null, "after": {"id": 1, "name": "ann", "city": "oslo"}, "op": "r"}"#,
        r#"{"schema": {"type": "struct"}, "payload": {"before": null, "after": {"id": 2, "name": "bob", "city": "rome"}, "op": "c", "ts_ms": 1}}"#,
        r#"{"before": null, "after": {"id": 3, "name": "cy", "city": "rome"}, "op": "c"}"#,
        // An update whose before holds only the key, as with default replica identity.
        r#"{"before": {"id": 2}, "after": {"id": 2, "name": "bob", "city": "oslo"}, "op": "u"}"#,
        // A delete and its tombstone.
        r#"{"before": {"id": 3, "name": "cy", "city": "rome"}, "after": null, "op": "d"}"#,
    ];
    for event in events {
        send(&broker, "users", Some("k"), Some(event)).await;
    }
    send(&broker, "users", Some("k"), None).await;
    // Bad: an unknown op and a delete without before.
    send(
        &broker,
        "users",
        Some("k"),
        Some(r#"{"after": {"id": 9}, "op": "x"}"#),
    )
    .await;
    send(
        &broker,
        "users",
        Some("k"),
        Some(r#"{"before": null, "op": "d"}"#),
    )
    .await;
    client.batch_execute("FLUSH").await.expect("flush");
    assert_eq!(
        rows(&client, "SELECT * FROM users ORDER BY id").await,
        ["1 ann oslo", "2 bob oslo"]
    );
    assert_eq!(rows(&client, "SELECT * FROM per_city").await, ["oslo 2"]);
    let reasons = rows(
        &client,
        "SELECT \"offset\", reason FROM eddy_catalog.source_errors ORDER BY \"offset\"",
    )
    .await;
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(
        reasons[0].starts_with("6 unknown Debezium op"),
        "{reasons:?}"
    );
    assert!(
        reasons[1].starts_with("7 a delete event needs"),
        "{reasons:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debezium_sink_round_trips_into_a_debezium_table() {
    let broker = TestBroker::start().await;
    broker.create_topic("cdc", 1).await;
    let (_server, client) = start().await;
    let bootstrap = broker.bootstrap();
    client
        .batch_execute(&format!(
            "CREATE TABLE orders (id INT PRIMARY KEY, customer VARCHAR, amount BIGINT);
             INSERT INTO orders VALUES (1, 'ann', 10), (2, 'bob', 20), (3, 'ann', 5);
             CREATE MATERIALIZED VIEW spend AS
               SELECT customer, sum(amount) AS total, count(*) AS n FROM orders GROUP BY customer;
             CREATE SINK spend_cdc FROM spend
               WITH (connector = 'kafka', topic = 'cdc', properties.bootstrap.server = '{bootstrap}',
                     primary_key = 'customer',
                     -- tansu reports high watermarks right for one record per batch only
                     properties.batch.num.messages = '1')
               FORMAT DEBEZIUM ENCODE JSON;
             CREATE TABLE spend_copy (customer VARCHAR PRIMARY KEY, total BIGINT, n BIGINT)
               WITH (connector = 'kafka', topic = 'cdc', properties.bootstrap.server = '{bootstrap}')
               FORMAT DEBEZIUM ENCODE JSON;
             UPDATE orders SET amount = amount * 2 WHERE customer = 'ann';
             DELETE FROM orders WHERE customer = 'bob';
             INSERT INTO orders VALUES (4, 'cy', 7);"
        ))
        .await
        .expect("pipeline");
    // FLUSH waits for the sink, then for the table's reader.
    client.batch_execute("FLUSH").await.expect("flush");
    client.batch_execute("FLUSH").await.expect("flush");
    let spend = rows(&client, "SELECT * FROM spend ORDER BY customer").await;
    assert_eq!(spend, ["ann 30 2", "cy 7 1"]);
    assert_eq!(
        rows(&client, "SELECT * FROM spend_copy ORDER BY customer").await,
        spend
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_table_with_key_keeps_the_latest_row_and_sources_stay_append_only() {
    let broker = TestBroker::start().await;
    broker.create_topic("readings", 1).await;
    let (_server, client) = start().await;
    let bootstrap = broker.bootstrap();
    client
        .batch_execute(&format!(
            "CREATE TABLE latest (sensor INT PRIMARY KEY, temp DOUBLE)
               WITH (connector = 'kafka', topic = 'readings', properties.bootstrap.server = '{bootstrap}')
               FORMAT PLAIN ENCODE JSON;
             CREATE TABLE every (sensor INT, temp DOUBLE)
               WITH (connector = 'kafka', topic = 'readings', properties.bootstrap.server = '{bootstrap}')
               FORMAT PLAIN ENCODE JSON;"
        ))
        .await
        .expect("tables");
    for (sensor, temp) in [(1, 20.5), (2, 18.0), (1, 21.0), (1, 22.5)] {
        let value = format!(r#"{{"sensor": {sensor}, "temp": {temp}}}"#);
        send(&broker, "readings", None, Some(&value)).await;
    }
    send(&broker, "readings", None, Some(r#"{"temp": 1.0}"#)).await;
    client.batch_execute("FLUSH").await.expect("flush");
    assert_eq!(
        rows(&client, "SELECT * FROM latest ORDER BY sensor").await,
        ["1 22.5", "2 18"]
    );
    assert_eq!(rows(&client, "SELECT count(*) FROM every").await, ["5"]);
    let errors = rows(
        &client,
        "SELECT source, reason FROM eddy_catalog.source_errors",
    )
    .await;
    assert_eq!(errors, ["latest the primary key is null"]);

    for (sql, code) in [
        (
            format!(
                "CREATE SOURCE s (a INT) WITH (connector = 'kafka', topic = 'readings', properties.bootstrap.server = '{bootstrap}') FORMAT UPSERT ENCODE JSON"
            ),
            "0A000",
        ),
        (
            format!(
                "CREATE TABLE t (a INT) WITH (connector = 'kafka', topic = 'readings', properties.bootstrap.server = '{bootstrap}') FORMAT DEBEZIUM ENCODE JSON"
            ),
            "0A000",
        ),
        (
            format!(
                "CREATE TABLE t (a INT, PRIMARY KEY (b)) WITH (connector = 'kafka', topic = 'readings', properties.bootstrap.server = '{bootstrap}') FORMAT UPSERT ENCODE JSON"
            ),
            "42703",
        ),
    ] {
        let error = client.batch_execute(&sql).await.expect_err(&sql);
        assert_eq!(error.code().map(|c| c.code()), Some(code), "{sql}: {error}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_null_columns_of_connector_tables_refuse_null_values() {
    let broker = TestBroker::start().await;
    broker.create_topic("people", 1).await;
    let (_server, client) = start().await;
    client
        .batch_execute(&format!(
            "CREATE TABLE people (id BIGINT PRIMARY KEY, name VARCHAR NOT NULL, note VARCHAR)
               WITH (connector = 'kafka', topic = 'people', properties.bootstrap.server = '{}')
               FORMAT UPSERT ENCODE JSON;",
            broker.bootstrap()
        ))
        .await
        .expect("create table");
    send(
        &broker,
        "people",
        Some("1"),
        Some(r#"{"id": 1, "name": "ann"}"#),
    )
    .await;
    send(
        &broker,
        "people",
        Some("2"),
        Some(r#"{"id": 2, "note": "no name"}"#),
    )
    .await;
    send(
        &broker,
        "people",
        Some("3"),
        Some(r#"{"id": 3, "name": null}"#),
    )
    .await;
    send(
        &broker,
        "people",
        Some("4"),
        Some(r#"{"id": 4, "name": "bo"}"#),
    )
    .await;
    client.batch_execute("FLUSH").await.expect("flush");
    assert_eq!(
        rows(&client, "SELECT id, name, note FROM people ORDER BY id").await,
        ["1 ann NULL", "4 bo NULL"]
    );
    assert_eq!(
        rows(
            &client,
            "SELECT \"offset\" FROM eddy_catalog.source_errors ORDER BY 1"
        )
        .await,
        ["1", "2"]
    );
}
