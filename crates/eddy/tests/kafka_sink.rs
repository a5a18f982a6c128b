//! Kafka sinks against a real Kafka-protocol broker (tansu, started by the
//! test harness): a round trip topic → source → view → sink → topic read
//! back and checked against the view, for `FORMAT UPSERT`, `DEBEZIUM` and
//! `PLAIN ENCODE JSON`; deletes as tombstones; `FLUSH` waiting for sinks;
//! `eddy_catalog.sink_progress`; and the errors of sinks that cannot work.

#![allow(clippy::expect_used, clippy::unwrap_used)]

#[allow(dead_code)]
mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;
use support::broker::{ConsumedMessage, TestBroker};
use support::server::start;
use tokio_postgres::{Client, SimpleQueryMessage};

const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Sink options of these tests: one record per produce batch. tansu 0.6
/// serves multi-record batches wrongly to consumers (see
/// `support/broker.rs`), and the tests read the sinks' topics back.
const ONE: &str = "properties.batch.num.messages = '1'";

/// Rows of a query as JSON objects keyed by column name (values as text,
/// parsed as JSON numbers where they are numbers).
async fn rows(client: &Client, sql: &str) -> Vec<BTreeMap<String, Value>> {
    client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .into_iter()
        .filter_map(|message| match message {
            SimpleQueryMessage::Row(row) => Some(
                row.columns()
                    .iter()
                    .enumerate()
                    .map(|(i, column)| {
                        let value = match row.get(i) {
                            None => Value::Null,
                            Some(text) => serde_json::from_str::<serde_json::Number>(text)
                                .map(Value::Number)
                                .unwrap_or_else(|_| Value::String(text.to_string())),
                        };
                        (column.name().to_string(), value)
                    })
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

fn object(bytes: &[u8]) -> BTreeMap<String, Value> {
    match serde_json::from_slice(bytes).expect("a JSON message") {
        Value::Object(map) => map.into_iter().collect(),
        other => panic!("not a JSON object: {other}"),
    }
}

/// The table an upsert topic holds: per key, the last value (a tombstone
/// deletes the key).
fn fold_upsert(messages: &[ConsumedMessage]) -> BTreeMap<String, BTreeMap<String, Value>> {
    let mut state = BTreeMap::new();
    for message in in_order(messages) {
        let key = String::from_utf8(message.key.clone().expect("a key")).unwrap();
        match &message.payload {
            Some(value) => state.insert(key, object(value)),
            None => state.remove(&key),
        };
    }
    state
}

/// The table a Debezium topic describes: each event checked against the
/// state it applies to (`before` must be the key's current row).
fn fold_debezium(messages: &[ConsumedMessage]) -> BTreeMap<String, BTreeMap<String, Value>> {
    let mut state: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
    for message in in_order(messages) {
        let key = String::from_utf8(message.key.clone().expect("a key")).unwrap();
        let Some(payload) = &message.payload else {
            assert!(!state.contains_key(&key), "tombstone of a live key {key}");
            continue;
        };
        let event = object(payload);
        let row = |field: &str| match &event[field] {
            Value::Null => None,
            Value::Object(map) => Some(map.clone().into_iter().collect::<BTreeMap<_, _>>()),
            other => panic!("{field} is {other}"),
        };
        let (before, after) = (row("before"), row("after"));
        assert_eq!(state.get(&key), before.as_ref(), "before of {key}");
        let op = event["op"].as_str().unwrap();
        match (op, after) {
            ("c" | "u", Some(after)) => {
                assert_eq!(op == "u", before.is_some(), "op of {key}");
                state.insert(key, after);
            }
            ("d", None) => {
                state.remove(&key);
            }
            other => panic!("bad event for {key}: {other:?}"),
        }
    }
    state
}

/// Messages in offset order (one partition in these tests).
fn in_order(messages: &[ConsumedMessage]) -> Vec<&ConsumedMessage> {
    let mut sorted: Vec<&ConsumedMessage> = messages.iter().collect();
    sorted.sort_by_key(|m| (m.partition, m.offset));
    sorted
}

/// A view's rows by the JSON of their key columns, as the sink keys them.
fn by_key(
    rows: Vec<BTreeMap<String, Value>>,
    key: &str,
) -> BTreeMap<String, BTreeMap<String, Value>> {
    rows.into_iter()
        .map(|row| (format!("{{\"{key}\":{}}}", row[key]), row))
        .collect()
}

async fn produce_bids(broker: &TestBroker, from: i64, to: i64) {
    for i in from..to {
        let payload = format!(
            r#"{{"auction": {}, "price": {}, "bidder": "b{}"}}"#,
            i % 7,
            (i * 37) % 1000,
            i % 13
        );
        broker
            .produce("bids", (i % 2) as i32, None, Some(payload.as_bytes()))
            .await;
    }
}

/// Messages of a topic: all of them that are there, at least `expect`.
async fn topic(broker: &TestBroker, name: &str, expect: usize) -> Vec<ConsumedMessage> {
    broker.read_all(name, expect, READ_TIMEOUT).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_through_upsert_debezium_and_plain_sinks() {
    let broker = TestBroker::start().await;
    broker.create_topic("bids", 2).await;
    for name in ["totals", "totals_cdc", "big_bids"] {
        broker.create_topic(name, 1).await;
    }
    produce_bids(&broker, 0, 100).await;
    let (_server, client) = start().await;
    let bootstrap = broker.bootstrap();
    client
        .batch_execute(&format!(
            "CREATE SOURCE bids (auction BIGINT, price BIGINT, bidder VARCHAR)
               WITH (connector = 'kafka', topic = 'bids', properties.bootstrap.server = '{bootstrap}')
               FORMAT PLAIN ENCODE JSON;
             CREATE MATERIALIZED VIEW totals AS
               SELECT auction, count(*) AS n, sum(price) AS total, max(bidder) AS top
               FROM bids GROUP BY auction;
             CREATE SINK totals_out FROM totals
               WITH (connector = 'kafka', topic = 'totals', properties.bootstrap.server = '{bootstrap}', {ONE},
                     primary_key = 'auction')
               FORMAT UPSERT ENCODE JSON;
             CREATE SINK totals_cdc FROM totals
               WITH (connector = 'kafka', topic = 'totals_cdc', properties.bootstrap.server = '{bootstrap}', {ONE},
                     primary_key = 'auction')
               FORMAT DEBEZIUM ENCODE JSON;
             CREATE SINK big_bids AS SELECT auction, price FROM bids WHERE price >= 500
               WITH (connector = 'kafka', topic = 'big_bids', properties.bootstrap.server = '{bootstrap}', {ONE})
               FORMAT PLAIN ENCODE JSON;"
        ))
        .await
        .expect("create source, view and sinks");
    client.batch_execute("FLUSH").await.expect("flush");
    let view = by_key(rows(&client, "SELECT * FROM totals").await, "auction");
    assert_eq!(view.len(), 7);
    assert_eq!(fold_upsert(&topic(&broker, "totals", 7).await), view);
    assert_eq!(fold_debezium(&topic(&broker, "totals_cdc", 7).await), view);
    let big = (0..100i64).filter(|i| (i * 37) % 1000 >= 500).count();
    let plain = topic(&broker, "big_bids", big).await;
    assert_eq!(plain.len(), big, "one message per row, none twice");
    assert!(plain.iter().all(|m| m.key.is_none()));
    assert!(plain
        .iter()
        .all(|m| object(m.payload.as_deref().unwrap())["price"].as_i64() >= Some(500)));

    // More input: the sinks follow the view as it changes.
    produce_bids(&broker, 100, 250).await;
    client.batch_execute("FLUSH").await.expect("flush");
    let view = by_key(rows(&client, "SELECT * FROM totals").await, "auction");
    assert_eq!(view["{\"auction\":3}"]["n"], serde_json::json!(36));
    assert_eq!(fold_upsert(&topic(&broker, "totals", 8).await), view);
    assert_eq!(fold_debezium(&topic(&broker, "totals_cdc", 8).await), view);
    let big = (0..250i64).filter(|i| (i * 37) % 1000 >= 500).count();
    assert_eq!(topic(&broker, "big_bids", big).await.len(), big);

    let progress = rows(
        &client,
        "SELECT sink, target, epochs = epochs_delivered AS done, status
         FROM eddy_catalog.sink_progress ORDER BY sink",
    )
    .await;
    let summary: Vec<String> = progress
        .iter()
        .map(|r| {
            format!(
                "{} {} {} {}",
                r["sink"], r["target"], r["done"], r["status"]
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            r#""big_bids" "big_bids" "t" "running""#,
            r#""totals_cdc" "totals_cdc" "t" "running""#,
            r#""totals_out" "totals" "t" "running""#,
        ]
    );
    let sinks = rows(&client, "SHOW SINKS").await;
    assert_eq!(sinks.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_deletes_become_tombstones_and_delete_events() {
    let broker = TestBroker::start().await;
    broker.create_topic("items", 1).await;
    broker.create_topic("items_cdc", 1).await;
    let (_server, client) = start().await;
    let bootstrap = broker.bootstrap();
    client
        .batch_execute(&format!(
            "CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR, qty INT);
             INSERT INTO items VALUES (1, 'apple', 3), (2, 'pear', 5), (3, 'fig', NULL);
             CREATE SINK items_out FROM items
               WITH (connector = 'kafka', topic = 'items', properties.bootstrap.server = '{bootstrap}', {ONE},
                     primary_key = 'id')
               FORMAT UPSERT ENCODE JSON;
             CREATE SINK items_cdc FROM items
               WITH (connector = 'kafka', topic = 'items_cdc', properties.bootstrap.server = '{bootstrap}', {ONE},
                     primary_key = 'id')
               FORMAT DEBEZIUM ENCODE JSON;
             FLUSH;
             UPDATE items SET qty = qty + 1 WHERE id = 1;
             FLUSH;
             DELETE FROM items WHERE id = 2;
             FLUSH;
             INSERT INTO items VALUES (4, 'kiwi', 1);
             FLUSH;"
        ))
        .await
        .expect("table, sinks and writes");
    // FLUSH waits until a sink has delivered what it was handed, so each
    // write above is its own message: a sink that is handed several epochs
    // at once writes one message per changed key (an update right after an
    // insert is one `c` event with the latest row).
    let table = by_key(rows(&client, "SELECT * FROM items").await, "id");
    // 3 rows, 1 update, 1 tombstone, 1 insert.
    let upserts = topic(&broker, "items", 6).await;
    assert_eq!(upserts.len(), 6);
    assert_eq!(
        upserts.iter().filter(|m| m.payload.is_none()).count(),
        1,
        "one tombstone"
    );
    assert_eq!(fold_upsert(&upserts), table);
    assert_eq!(table["{\"id\":3}"]["qty"], Value::Null);
    // 3 creates, 1 update, 1 delete and its tombstone, 1 create.
    let events = topic(&broker, "items_cdc", 7).await;
    assert_eq!(events.len(), 7);
    assert_eq!(fold_debezium(&events), table);

    // A failed write sends nothing.
    let error = client
        .batch_execute("INSERT INTO items VALUES (1, 'dup', 0)")
        .await
        .expect_err("duplicate key");
    assert_eq!(error.code().map(|c| c.code()), Some("23505"));
    client.batch_execute("FLUSH").await.expect("flush");
    assert_eq!(topic(&broker, "items", 6).await.len(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sinks_that_cannot_work_are_refused() {
    let broker = TestBroker::start().await;
    broker.create_topic("out", 1).await;
    let (_server, client) = start().await;
    let bootstrap = broker.bootstrap();
    client
        .batch_execute(
            "CREATE TABLE t (id INT PRIMARY KEY, v INT);
             CREATE MATERIALIZED VIEW agg AS SELECT v, count(*) AS n FROM t GROUP BY v;",
        )
        .await
        .expect("table and view");
    let sink = |from: &str, with: &str, format: &str| {
        format!(
            "CREATE SINK s FROM {from} WITH (connector = 'kafka', properties.bootstrap.server = '{bootstrap}'{with}) {format}"
        )
    };
    let cases = [
        // PLAIN on a view that updates rows would lose the updates.
        (
            sink("agg", ", topic = 'out'", "FORMAT PLAIN ENCODE JSON"),
            "0A000",
        ),
        (
            sink("agg", ", topic = 'out'", "FORMAT UPSERT ENCODE JSON"),
            "22023",
        ),
        (
            sink(
                "agg",
                ", topic = 'out', primary_key = 'nope'",
                "FORMAT UPSERT ENCODE JSON",
            ),
            "42703",
        ),
        (
            sink(
                "agg",
                ", topic = 'out', primary_key = 'v'",
                "FORMAT UPSERT ENCODE PROTOBUF",
            ),
            "0A000",
        ),
        (
            sink(
                "agg",
                ", topic = 'out', primary_key = 'v'",
                "FORMAT UPSERT ENCODE AVRO",
            ),
            "22023",
        ),
        (
            sink(
                "agg",
                ", topic = 'missing', primary_key = 'v'",
                "FORMAT UPSERT ENCODE JSON",
            ),
            "58030",
        ),
        (
            sink(
                "agg",
                ", topic = 'out', primary_key = 'v', wat = '1'",
                "FORMAT DEBEZIUM ENCODE JSON",
            ),
            "22023",
        ),
        (
            sink("nothing", ", topic = 'out'", "FORMAT PLAIN ENCODE JSON"),
            "42P01",
        ),
    ];
    for (sql, code) in cases {
        let error = client.batch_execute(&sql).await.expect_err(&sql);
        assert_eq!(error.code().map(|c| c.code()), Some(code), "{sql}: {error}");
    }
    assert!(rows(&client, "SHOW SINKS").await.is_empty());

    // A working sink holds on to its view; DROP SINK lets go.
    client
        .batch_execute(&sink(
            "agg",
            ", topic = 'out', primary_key = 'v'",
            "FORMAT UPSERT ENCODE JSON",
        ))
        .await
        .expect("create sink");
    let error = client
        .batch_execute("DROP MATERIALIZED VIEW agg")
        .await
        .expect_err("the sink reads it");
    assert_eq!(error.code().map(|c| c.code()), Some("2BP01"));
    let error = client
        .batch_execute("SELECT * FROM s")
        .await
        .expect_err("a sink is not a relation");
    assert_eq!(error.code().map(|c| c.code()), Some("42P01"));
    client
        .batch_execute("DROP SINK s; DROP SINK IF EXISTS s; DROP MATERIALIZED VIEW agg")
        .await
        .expect("drops");
    assert!(rows(&client, "SELECT * FROM eddy_catalog.sink_progress")
        .await
        .is_empty());
}
