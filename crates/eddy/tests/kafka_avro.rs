//! `ENCODE AVRO` against a real Kafka-protocol broker (tansu) and a schema
//! registry stand-in (`support/registry.rs`: no real registry can be
//! installed on the test machines). Test messages are written and the
//! sinks' messages read with apache-avro, an Avro implementation
//! independent of the arrow-avro Eddy uses, in the Confluent wire format.
//!
//! Covered: columns derived from the registered schema; writer schemas
//! that evolve; bad messages (not framed, unknown schema id, truncated);
//! a registry that is down (the source stalls, then catches up exactly);
//! a PLAIN sink; an UPSERT table with Avro keys; UPSERT and DEBEZIUM sinks read back and
//! checked against their view; and a Debezium Avro topic written by a sink
//! read back into a table equal to the view it came from; a restart with
//! the registry down (source columns, view and sink all come back).

#![allow(clippy::expect_used, clippy::unwrap_used)]

#[allow(dead_code)]
mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use apache_avro::types::Value;
use apache_avro::Schema;
use support::broker::{ConsumedMessage, TestBroker};
use support::process::{temp_dir, EddyProcess};
use support::registry::TestRegistry;
use support::server::{rows, start};

const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// One record per produce batch for sinks (see `support/broker.rs`).
const ONE: &str = "properties.batch.num.messages = '1'";

const BID_V1: &str = r#"{"type": "record", "name": "Bid", "fields": [
    {"name": "auction", "type": "long"},
    {"name": "price", "type": "long"},
    {"name": "bidder", "type": ["null", "string"], "default": null}]}"#;
/// V1 and a field: Eddy ignores it (it is not a column).
const BID_V2: &str = r#"{"type": "record", "name": "Bid", "fields": [
    {"name": "auction", "type": "long"},
    {"name": "price", "type": "long"},
    {"name": "bidder", "type": ["null", "string"], "default": null},
    {"name": "channel", "type": "string", "default": "web"}]}"#;
/// Fields in another order, `bidder` gone (NULL in Eddy).
const BID_V3: &str = r#"{"type": "record", "name": "Bid", "fields": [
    {"name": "price", "type": "long"},
    {"name": "auction", "type": "long"}]}"#;

/// A Confluent-framed Avro message: zero byte, schema id, datum.
fn framed(id: u32, schema: &str, value: Value) -> Vec<u8> {
    let schema = Schema::parse_str(schema).expect("schema");
    let mut out = vec![0u8];
    out.extend_from_slice(&id.to_be_bytes());
    out.extend(apache_avro::to_avro_datum(&schema, value).expect("datum"));
    out
}

/// Bid `i` in the field order of `version`.
fn bid(version: &str, i: i64) -> Value {
    let auction = ("auction".to_string(), Value::Long(i % 5));
    let price = ("price".to_string(), Value::Long((i * 37) % 100));
    let bidder = (
        "bidder".to_string(),
        if i % 4 == 0 {
            Value::Union(0, Box::new(Value::Null))
        } else {
            Value::Union(1, Box::new(Value::String(format!("b{}", i % 3))))
        },
    );
    match version {
        "v1" => Value::Record(vec![auction, price, bidder]),
        "v2" => Value::Record(vec![
            auction,
            price,
            bidder,
            ("channel".into(), Value::String("app".into())),
        ]),
        _ => Value::Record(vec![price, auction]),
    }
}

async fn produce(broker: &TestBroker, topic: &str, partition: i32, payload: &[u8]) {
    broker.produce(topic, partition, None, Some(payload)).await;
}

/// Bids `ids` of writer schema `version` (registered as `id`) to topic
/// `bids`, alternating between partitions 0 and 1.
async fn produce_bids(
    broker: &TestBroker,
    id: u32,
    schema: &str,
    version: &str,
    ids: std::ops::Range<i64>,
) {
    for i in ids {
        let payload = framed(id, schema, bid(version, i));
        produce(broker, "bids", (i % 2) as i32, &payload).await;
    }
}

/// `auction n total top` per auction over the bids `ids` (`top` is the
/// greatest bidder, `NULL` if none), as the view computes them.
fn expected(ids: impl Iterator<Item = (i64, bool)>) -> Vec<String> {
    let mut per: BTreeMap<i64, (i64, i64, Option<String>)> = BTreeMap::new();
    for (i, has_bidder) in ids {
        let slot = per.entry(i % 5).or_insert((0, 0, None));
        slot.0 += 1;
        slot.1 += (i * 37) % 100;
        if has_bidder && i % 4 != 0 {
            let bidder = format!("b{}", i % 3);
            if slot.2.as_ref().is_none_or(|top| &bidder > top) {
                slot.2 = Some(bidder);
            }
        }
    }
    per.into_iter()
        .map(|(a, (n, total, top))| format!("{a} {n} {total} {}", top.unwrap_or("NULL".into())))
        .collect()
}

async fn wait_for_status(client: &tokio_postgres::Client, source: &str, prefix: &str) {
    let deadline = Instant::now() + READ_TIMEOUT;
    loop {
        let statuses = rows(
            client,
            &format!("SELECT status FROM eddy_catalog.source_progress WHERE source = '{source}'"),
        )
        .await;
        if statuses.iter().any(|s| s.starts_with(prefix)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "source {source} never became {prefix}: {statuses:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The source `bids` (columns from the registry), the view `totals` over
/// it and the Avro sink `cheap` of its cheap bids (with `sink_options`).
fn bids_objects(bootstrap: &str, url: &str, sink_options: &str) -> String {
    format!(
        "CREATE SOURCE bids
           WITH (connector = 'kafka', topic = 'bids', properties.bootstrap.server = '{bootstrap}')
           FORMAT PLAIN ENCODE AVRO (schema.registry = '{url}');
         CREATE MATERIALIZED VIEW totals AS
           SELECT auction, count(*) AS n, sum(price) AS total, max(bidder) AS top
           FROM bids GROUP BY auction;
         CREATE SINK cheap AS SELECT auction, price, bidder FROM bids WHERE price < 50
           WITH (connector = 'kafka', topic = 'cheap', properties.bootstrap.server = '{bootstrap}',
                 {sink_options} {ONE})
           FORMAT PLAIN ENCODE AVRO (schema.registry = '{url}');"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_columns_come_from_the_registry_and_schemas_evolve() {
    let registry = TestRegistry::start().await;
    let broker = TestBroker::start().await;
    broker.create_topic("bids", 2).await;
    broker.create_topic("cheap", 1).await;
    let v1 = registry.register("bids-value", BID_V1);
    produce_bids(&broker, v1, BID_V1, "v1", 0..40).await;
    let (_server, client) = start().await;
    let (bootstrap, url) = (broker.bootstrap(), registry.url().to_string());
    client
        .batch_execute(&bids_objects(&bootstrap, &url, ""))
        .await
        .expect("create a source without columns, a view and a sink");
    client.batch_execute("FLUSH").await.expect("flush");
    let all = |to: i64| (0..to).map(|i| (i, true));
    assert_eq!(
        rows(&client, "SELECT * FROM totals ORDER BY auction").await,
        expected(all(40))
    );

    // A writer with a field more, then bad messages: not framed, an id
    // the registry does not have, a datum cut short.
    let v2 = registry.register("bids-value", BID_V2);
    assert_ne!(v1, v2);
    produce_bids(&broker, v2, BID_V2, "v2", 40..60).await;
    produce(&broker, "bids", 0, br#"{"auction": 1, "price": 2}"#).await;
    produce(&broker, "bids", 0, &framed(99, BID_V1, bid("v1", 1))).await;
    let whole = framed(v1, BID_V1, bid("v1", 1));
    produce(&broker, "bids", 1, &whole[..whole.len() - 2]).await;
    client.batch_execute("FLUSH").await.expect("flush");
    assert_eq!(
        rows(&client, "SELECT * FROM totals ORDER BY auction").await,
        expected(all(60))
    );
    let mut reasons = rows(
        &client,
        "SELECT reason FROM eddy_catalog.source_errors WHERE source = 'bids'",
    )
    .await;
    reasons.sort();
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert!(reasons[0].contains("Confluent wire format"), "{reasons:?}");
    assert!(reasons[1].contains("schema id 99"), "{reasons:?}");
    assert!(reasons[2].contains("truncated"), "{reasons:?}");

    // The registry goes down while a new writer schema is in use: the
    // source stalls, says so, and catches up once the registry is back.
    registry.set_available(false);
    let v3 = registry.register("bids-value", BID_V3);
    produce_bids(&broker, v3, BID_V3, "v3", 60..70).await;
    wait_for_status(&client, "bids", "stalled").await;
    assert_eq!(
        rows(&client, "SELECT * FROM totals ORDER BY auction").await,
        expected(all(60))
    );
    registry.set_available(true);
    client.batch_execute("FLUSH").await.expect("flush");
    wait_for_status(&client, "bids", "running").await;
    // Bids of V3 have no bidder: NULL, which max() skips.
    let ids = (0..70).map(|i| (i, i < 60));
    assert_eq!(
        rows(&client, "SELECT * FROM totals ORDER BY auction").await,
        expected(ids)
    );
    assert_eq!(
        rows(&client, "SELECT count(*) FROM eddy_catalog.source_errors").await,
        ["3"]
    );
    // The PLAIN sink wrote each cheap bid once, as an Avro record.
    let want = cheap_bids((0..70).map(|i| (i, i < 60)));
    let messages = broker.read_all("cheap", want.len(), READ_TIMEOUT).await;
    let mut got: Vec<String> = messages
        .iter()
        .map(|m| text(&decode(&registry, m.payload.as_deref().expect("a value"))))
        .collect();
    got.sort();
    assert_eq!(got, want);
}

/// A restart needs neither the registry nor the broker to bring objects
/// back. A source whose columns came from the registry keeps them whatever
/// the registry says then, because the catalog stores its definition with
/// them written in; a sink that registers Avro schemas is re-created
/// without asking the registry (its runner waits for it). Here the registry
/// is down when Eddy restarts after a kill, and its latest schema has lost
/// a column: the source, its view and the sink come back with the columns
/// they were created with, the view exact; once the registry answers again
/// the reader decodes new messages, the view catches up and the sink
/// writes every cheap bid (at least once: exactly_once is off, tansu has
/// no transactions).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_needs_no_registry() {
    const STARTUP: Duration = Duration::from_secs(60);
    let registry = TestRegistry::start().await;
    let broker = TestBroker::start().await;
    broker.create_topic("bids", 2).await;
    broker.create_topic("cheap", 1).await;
    let v1 = registry.register("bids-value", BID_V1);
    produce_bids(&broker, v1, BID_V1, "v1", 0..20).await;
    let dir = temp_dir("avro-restart");
    let (data, log) = (dir.join("data"), dir.join("eddy.log"));
    let (eddy, client) = EddyProcess::start(&data, &log, STARTUP).await;
    let (bootstrap, url) = (broker.bootstrap(), registry.url().to_string());
    client
        .batch_execute(&bids_objects(&bootstrap, &url, "exactly_once = 'false',"))
        .await
        .expect("create a source without columns, a view and a sink over it");
    client.batch_execute("FLUSH").await.expect("flush");
    let all = |to: i64| (0..to).map(|i| (i, true));
    assert_eq!(
        rows(&client, "SELECT * FROM totals ORDER BY auction").await,
        expected(all(20))
    );
    eddy.kill();

    registry.register("bids-value", BID_V3);
    registry.set_available(false);
    let (_eddy, client) = EddyProcess::start(&data, &log, STARTUP).await;
    assert_eq!(
        rows(&client, "SELECT * FROM totals ORDER BY auction").await,
        expected(all(20)),
        "the view is back although the registry is down; log:\n{}",
        support::process::tail(&log)
    );
    // The columns of BID_V1, not of the latest schema (BID_V3).
    assert_eq!(
        rows(
            &client,
            "SELECT column_name, data_type, is_nullable FROM information_schema.columns
             WHERE table_name = 'bids' ORDER BY ordinal_position"
        )
        .await,
        ["auction Int64 YES", "price Int64 YES", "bidder Utf8 YES"]
    );
    assert_eq!(
        rows(&client, "SELECT sink FROM eddy_catalog.sink_progress").await,
        ["cheap"],
        "the sink is back although the registry is down; log:\n{}",
        support::process::tail(&log)
    );
    registry.set_available(true);
    produce_bids(&broker, v1, BID_V1, "v1", 20..30).await;
    client.batch_execute("FLUSH").await.expect("flush");
    assert_eq!(
        rows(&client, "SELECT * FROM totals ORDER BY auction").await,
        expected(all(30))
    );
    let want = cheap_bids(all(30));
    let started = Instant::now();
    loop {
        let messages = broker.read_all("cheap", want.len(), READ_TIMEOUT).await;
        let mut got: Vec<String> = messages
            .iter()
            .map(|m| text(&decode(&registry, m.payload.as_deref().expect("a value"))))
            .collect();
        got.sort();
        got.dedup();
        if got == want {
            break;
        }
        assert!(
            started.elapsed() < READ_TIMEOUT,
            "the sink wrote {got:?}, not {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The bids of `ids` (with whether their schema has a bidder) that the
/// sink `cheap` writes, as `auction price bidder`, sorted.
fn cheap_bids(ids: impl Iterator<Item = (i64, bool)>) -> Vec<String> {
    let mut bids: Vec<String> = ids
        .filter(|(i, _)| (i * 37) % 100 < 50)
        .map(|(i, has_bidder)| {
            let bidder = if !has_bidder || i % 4 == 0 {
                "NULL".to_string()
            } else {
                format!("b{}", i % 3)
            };
            format!("{} {} {bidder}", i % 5, (i * 37) % 100)
        })
        .collect();
    bids.sort();
    bids
}

/// A record's fields as `name=value` text, in the order of the schema.
fn text(value: &Value) -> String {
    match value {
        Value::Null => "NULL".into(),
        Value::Long(n) => n.to_string(),
        Value::Int(n) => n.to_string(),
        Value::String(s) => s.clone(),
        Value::Union(_, inner) => text(inner),
        Value::Record(fields) => fields
            .iter()
            .map(|(_, v)| text(v))
            .collect::<Vec<_>>()
            .join(" "),
        other => panic!("unexpected Avro value {other:?}"),
    }
}

/// Decode a Confluent-framed message with the writer schema the registry
/// has for its id.
fn decode(registry: &TestRegistry, bytes: &[u8]) -> Value {
    assert_eq!(bytes[0], 0, "magic byte");
    let id = u32::from_be_bytes(bytes[1..5].try_into().unwrap());
    let schema = Schema::parse_str(&registry.schema(id).expect("a registered id")).unwrap();
    apache_avro::from_avro_datum(&schema, &mut &bytes[5..], None).expect("an Avro datum")
}

fn in_order(messages: &[ConsumedMessage]) -> Vec<&ConsumedMessage> {
    let mut sorted: Vec<&ConsumedMessage> = messages.iter().collect();
    sorted.sort_by_key(|m| (m.partition, m.offset));
    sorted
}

fn field<'a>(record: &'a Value, name: &str) -> &'a Value {
    let Value::Record(fields) = record else {
        panic!("not a record: {record:?}");
    };
    &fields.iter().find(|(n, _)| n == name).expect(name).1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upsert_table_and_sinks_round_trip_in_avro() {
    let registry = TestRegistry::start().await;
    let broker = TestBroker::start().await;
    for name in ["stock", "per_shelf", "per_shelf_cdc"] {
        broker.create_topic(name, 1).await;
    }
    const KEY: &str =
        r#"{"type": "record", "name": "Key", "fields": [{"name": "sku", "type": "string"}]}"#;
    const ITEM: &str = r#"{"type": "record", "name": "Item", "fields": [
        {"name": "sku", "type": "string"}, {"name": "shelf", "type": "string"},
        {"name": "qty", "type": "long"}]}"#;
    let key_id = registry.register("stock-key", KEY);
    let item_id = registry.register("stock-value", ITEM);
    let send = |sku: &str, item: Option<(&str, i64)>| {
        let key = framed(
            key_id,
            KEY,
            Value::Record(vec![("sku".into(), Value::String(sku.into()))]),
        );
        let value = item.map(|(shelf, qty)| {
            framed(
                item_id,
                ITEM,
                Value::Record(vec![
                    ("sku".into(), Value::String(sku.into())),
                    ("shelf".into(), Value::String(shelf.into())),
                    ("qty".into(), Value::Long(qty)),
                ]),
            )
        });
        (key, value)
    };
    let (_server, client) = start().await;
    let (bootstrap, url) = (broker.bootstrap(), registry.url().to_string());
    client
        .batch_execute(&format!(
            "CREATE TABLE stock (sku VARCHAR PRIMARY KEY, shelf VARCHAR, qty BIGINT)
               WITH (connector = 'kafka', topic = 'stock', properties.bootstrap.server = '{bootstrap}')
               FORMAT UPSERT ENCODE AVRO (schema.registry = '{url}');
             CREATE MATERIALIZED VIEW per_shelf AS
               SELECT shelf, count(*) AS skus, sum(qty) AS qty FROM stock GROUP BY shelf;
             CREATE SINK per_shelf_out FROM per_shelf
               WITH (connector = 'kafka', topic = 'per_shelf', properties.bootstrap.server = '{bootstrap}', {ONE},
                     primary_key = 'shelf')
               FORMAT UPSERT ENCODE AVRO (schema.registry = '{url}');
             CREATE SINK per_shelf_cdc FROM per_shelf
               WITH (connector = 'kafka', topic = 'per_shelf_cdc', properties.bootstrap.server = '{bootstrap}', {ONE},
                     primary_key = 'shelf')
               FORMAT DEBEZIUM ENCODE AVRO (schema.registry = '{url}');"
        ))
        .await
        .expect("create table, view and sinks");
    // The sinks registered their schemas under the topics' subjects.
    for subject in [
        "per_shelf-key",
        "per_shelf-value",
        "per_shelf_cdc-key",
        "per_shelf_cdc-value",
    ] {
        assert_eq!(registry.versions(subject).len(), 1, "{subject}");
    }
    let changes = [
        send("a", Some(("s1", 1))),
        send("b", Some(("s1", 2))),
        send("c", Some(("s2", 3))),
        send("a", Some(("s1", 10))),
        send("c", Some(("s3", 4))),
        send("b", None),
        send("d", Some(("s2", 5))),
        send("d", None),
    ];
    for (key, value) in &changes {
        broker
            .produce("stock", 0, Some(key), value.as_deref())
            .await;
    }
    client.batch_execute("FLUSH").await.expect("flush");
    assert_eq!(
        rows(&client, "SELECT * FROM stock ORDER BY sku").await,
        ["a s1 10", "c s3 4"]
    );
    let view = rows(&client, "SELECT * FROM per_shelf ORDER BY shelf").await;
    assert_eq!(view, ["s1 1 10", "s3 1 4"]);

    // The upsert topic, folded by key, holds the view.
    let messages = broker.read_all("per_shelf", 2, READ_TIMEOUT).await;
    let mut upserted: BTreeMap<String, String> = BTreeMap::new();
    for message in in_order(&messages) {
        let key = text(&decode(&registry, message.key.as_deref().expect("a key")));
        match &message.payload {
            Some(value) => upserted.insert(key, text(&decode(&registry, value))),
            None => upserted.remove(&key),
        };
    }
    assert_eq!(upserted.into_values().collect::<Vec<_>>(), view);

    // The Debezium topic: each event's `before` is the key's current row.
    let messages = broker.read_all("per_shelf_cdc", 2, READ_TIMEOUT).await;
    let mut state: BTreeMap<String, String> = BTreeMap::new();
    for message in in_order(&messages) {
        let key = text(&decode(&registry, message.key.as_deref().expect("a key")));
        let Some(payload) = &message.payload else {
            assert!(!state.contains_key(&key), "tombstone of live key {key}");
            continue;
        };
        let event = decode(&registry, payload);
        let row = |name: &str| match field(&event, name) {
            Value::Union(0, _) => None,
            other => Some(text(other)),
        };
        assert_eq!(state.get(&key), row("before").as_ref(), "before of {key}");
        match (text(field(&event, "op")).as_str(), row("after")) {
            ("c" | "u", Some(after)) => state.insert(key, after),
            ("d", None) => state.remove(&key),
            other => panic!("bad event {other:?}"),
        };
    }
    assert_eq!(state.into_values().collect::<Vec<_>>(), view);

    // The Debezium topic read back into a table is the view again.
    client
        .batch_execute(&format!(
            "CREATE TABLE shelves (shelf VARCHAR PRIMARY KEY, skus BIGINT, qty BIGINT)
               WITH (connector = 'kafka', topic = 'per_shelf_cdc', properties.bootstrap.server = '{bootstrap}')
               FORMAT DEBEZIUM ENCODE AVRO (schema.registry = '{url}');"
        ))
        .await
        .expect("create a table from the Debezium topic");
    client.batch_execute("FLUSH").await.expect("flush");
    assert_eq!(
        rows(&client, "SELECT * FROM shelves ORDER BY shelf").await,
        view
    );
    assert_eq!(
        rows(&client, "SELECT count(*) FROM eddy_catalog.source_errors").await,
        ["0"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn avro_sources_and_sinks_that_cannot_work_are_refused() {
    let registry = TestRegistry::start().await;
    let broker = TestBroker::start().await;
    broker.create_topic("empty", 1).await;
    let (_server, client) = start().await;
    let (bootstrap, url) = (broker.bootstrap(), registry.url().to_string());
    let refused = |sql: String, code: &'static str, words: &'static str| {
        let client = &client;
        async move {
            let error = client.batch_execute(&sql).await.expect_err("refused");
            let db = error.as_db_error().expect("a database error");
            assert_eq!(db.code().code(), code, "{sql}: {}", db.message());
            assert!(db.message().contains(words), "{sql}: {}", db.message());
        }
    };
    let with = format!(
        "WITH (connector = 'kafka', topic = 'empty', properties.bootstrap.server = '{bootstrap}')"
    );
    refused(
        format!("CREATE SOURCE s {with} FORMAT PLAIN ENCODE AVRO"),
        "22023",
        "schema.registry",
    )
    .await;
    refused(
        format!(
            "CREATE SOURCE s {with} FORMAT PLAIN ENCODE AVRO (schema.registry = 'https://r:1')"
        ),
        "0A000",
        "https",
    )
    .await;
    // No schema under "empty-value" to take the columns from.
    refused(
        format!("CREATE SOURCE s {with} FORMAT PLAIN ENCODE AVRO (schema.registry = '{url}')"),
        "58030",
        "empty-value",
    )
    .await;
    registry.register(
        "empty-value",
        r#"{"type": "record", "name": "R", "fields": [{"name": "tags", "type": {"type": "array", "items": "string"}}]}"#,
    );
    refused(
        format!("CREATE SOURCE s {with} FORMAT PLAIN ENCODE AVRO (schema.registry = '{url}')"),
        "0A000",
        "tags",
    )
    .await;
    // Declared columns need no schema at CREATE.
    client
        .batch_execute(&format!(
            "CREATE SOURCE s (id BIGINT) {with} FORMAT PLAIN ENCODE AVRO (schema.registry = '{url}')"
        ))
        .await
        .expect("a source with declared columns");
    registry.set_available(false);
    refused(
        format!(
            "CREATE SINK k AS SELECT id FROM s WITH (connector = 'kafka', topic = 'empty', properties.bootstrap.server = '{bootstrap}') FORMAT PLAIN ENCODE AVRO (schema.registry = '{url}')"
        ),
        "58030",
        "schema registry",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_error_fail_stops_at_a_message_and_resumes_once_its_schema_exists() {
    let registry = TestRegistry::start().await;
    let broker = TestBroker::start().await;
    broker.create_topic("bids", 1).await;
    let v1 = registry.register("bids-value", BID_V1);
    // Bid 3 names the schema id the registry will give the next schema.
    let next = v1 + 1;
    for i in 0..6 {
        let (id, schema, version) = if i == 3 {
            (next, BID_V2, "v2")
        } else {
            (v1, BID_V1, "v1")
        };
        produce(&broker, "bids", 0, &framed(id, schema, bid(version, i))).await;
    }
    let (_server, client) = start().await;
    client
        .batch_execute(&format!(
            "CREATE SOURCE bids (auction BIGINT, price BIGINT, bidder VARCHAR)
               WITH (connector = 'kafka', topic = 'bids', properties.bootstrap.server = '{}',
                     on_error = 'fail')
               FORMAT PLAIN ENCODE AVRO (schema.registry = '{}');
             CREATE MATERIALIZED VIEW totals AS
               SELECT auction, count(*) AS n, sum(price) AS total, max(bidder) AS top
               FROM bids GROUP BY auction;
             FLUSH;",
            broker.bootstrap(),
            registry.url()
        ))
        .await
        .expect("create source and view");
    // The source stops at offset 3 and says why.
    wait_for_status(
        &client,
        "bids",
        "failed: bad message at partition 0 offset 3",
    )
    .await;
    client.batch_execute("FLUSH").await.expect("flush");
    assert_eq!(
        rows(&client, "SELECT * FROM totals ORDER BY auction").await,
        expected((0..3).map(|i| (i, true)))
    );
    assert_eq!(
        rows(
            &client,
            "SELECT last_offset FROM eddy_catalog.source_progress WHERE source = 'bids'"
        )
        .await,
        ["2"]
    );
    // The schema gets registered: the source reads on from offset 3, and
    // nothing before or after it is lost or counted twice.
    assert_eq!(registry.register("bids-value", BID_V2), next);
    wait_for_status(&client, "bids", "running").await;
    client.batch_execute("FLUSH").await.expect("flush");
    assert_eq!(
        rows(&client, "SELECT * FROM totals ORDER BY auction").await,
        expected((0..6).map(|i| (i, true)))
    );
    // The message was bad once: recorded once.
    assert_eq!(
        rows(&client, "SELECT \"offset\" FROM eddy_catalog.source_errors").await,
        ["3"]
    );
}
