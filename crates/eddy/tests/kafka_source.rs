//! Kafka sources against a real Kafka-protocol broker (tansu, started by
//! the test harness): `FORMAT PLAIN ENCODE JSON` over every partition of a
//! topic, `INCLUDE` metadata columns, startup modes, `FLUSH` waiting for the
//! topic's high watermarks, and bad messages under `on_error = 'skip'` and
//! `'fail'`, recorded once in `eddy_catalog.source_errors`; `ENCODE CSV`,
//! `BYTES` and `PROTOBUF`.

#![allow(clippy::expect_used, clippy::unwrap_used)]

#[allow(dead_code)]
mod support;

use std::time::Duration;

use support::broker::{Record, TestBroker};
use support::registry::TestRegistry;
use support::server::{rows, start};

fn source_sql(name: &str, topic: &str, broker: &TestBroker, extra: &str) -> String {
    format!(
        "CREATE SOURCE {name} (auction BIGINT, price BIGINT, bidder VARCHAR)
         INCLUDE partition, offset AS off, key, timestamp AS ts, header 'trace' AS trace
         WITH (connector = 'kafka', topic = '{topic}',
               properties.bootstrap.server = '{}'{extra})
         FORMAT PLAIN ENCODE JSON",
        broker.bootstrap()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_source_reads_every_partition_with_metadata() {
    let broker = TestBroker::start().await;
    broker.create_topic("bids", 3).await;
    let mut expected_total = 0i64;
    for i in 0..90i64 {
        let partition = (i % 3) as i32;
        let payload = format!(
            r#"{{"auction": {}, "price": {}, "bidder": "b{i}"}}"#,
            i % 10,
            i * 10
        );
        let key = format!("k{i}");
        let trace = format!("t{i}");
        broker
            .produce_record(
                "bids",
                partition,
                Record {
                    key: Some(key.as_bytes()),
                    payload: Some(payload.as_bytes()),
                    headers: &[("trace", Some(trace.as_bytes()))],
                    timestamp_ms: Some(1_700_000_000_000 + i),
                },
            )
            .await;
        expected_total += i * 10;
    }
    let (server, client) = start().await;
    client
        .batch_execute(&source_sql("bids", "bids", &broker, ""))
        .await
        .expect("create source");
    client
        .batch_execute(
            "CREATE MATERIALIZED VIEW totals AS
               SELECT count(*) AS n, sum(price) AS total, count(DISTINCT bidder) AS bidders FROM bids;
             CREATE MATERIALIZED VIEW per_partition AS
               SELECT kafka_partition, count(*) AS n, min(off) AS first, max(off) AS last FROM bids
               GROUP BY kafka_partition;
             CREATE MATERIALIZED VIEW traced AS
               SELECT bidder, CAST(kafka_key AS VARCHAR) AS k, CAST(trace AS VARCHAR) AS t, ts FROM bids
               WHERE auction = 7;",
        )
        .await
        .expect("create views");
    client.batch_execute("FLUSH").await.expect("flush");
    assert_eq!(
        rows(&client, "SELECT * FROM totals").await,
        [format!("90 {expected_total} 90")]
    );
    assert_eq!(
        rows(
            &client,
            "SELECT * FROM per_partition ORDER BY kafka_partition"
        )
        .await,
        ["0 30 0 29", "1 30 0 29", "2 30 0 29"]
    );
    let traced = rows(
        &client,
        "SELECT bidder, k, t, ts FROM traced ORDER BY bidder",
    )
    .await;
    assert_eq!(traced.len(), 9);
    assert_eq!(traced[0], "b17 k17 t17 2023-11-14 22:13:20.017+00");

    // More messages: FLUSH waits until they are in the views.
    for i in 90..120i64 {
        let payload = format!(r#"{{"auction": 1, "price": 1, "bidder": "b{i}"}}"#);
        broker
            .produce("bids", (i % 3) as i32, None, Some(payload.as_bytes()))
            .await;
    }
    client.batch_execute("FLUSH").await.expect("flush");
    assert_eq!(
        rows(&client, "SELECT n, total FROM totals").await,
        [format!("120 {}", expected_total + 30)]
    );
    let progress = rows(
        &client,
        "SELECT partition, last_offset, high_watermark, lag FROM eddy_catalog.source_progress
         WHERE materialized_view = 'totals' ORDER BY partition",
    )
    .await;
    assert_eq!(progress, ["0 39 40 0", "1 39 40 0", "2 39 40 0"]);
    server.shutdown().await.expect("shut down");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_messages_are_recorded_once_and_skipped_or_stop_the_source() {
    let broker = TestBroker::start().await;
    broker.create_topic("mixed", 1).await;
    let payloads: [Option<&[u8]>; 7] = [
        Some(br#"{"auction": 1, "price": 10}"#),
        Some(b"{not json"),
        Some(br#"{"auction": 2, "price": 20}"#),
        Some(br#"{"auction": "three", "price": 30}"#),
        None,
        Some(br#"{"auction": 4, "price": 40}"#),
        Some(br#"[1, 2, 3]"#),
    ];
    for payload in payloads {
        broker.produce("mixed", 0, None, payload).await;
    }
    let (server, client) = start().await;
    client
        .batch_execute(&source_sql("mixed", "mixed", &broker, ""))
        .await
        .expect("create source");
    // Two views: two readers find the same bad messages.
    client
        .batch_execute(
            "CREATE MATERIALIZED VIEW good AS SELECT count(*) AS n, sum(price) AS total FROM mixed;
             CREATE MATERIALIZED VIEW good_too AS SELECT auction FROM mixed;
             FLUSH;",
        )
        .await
        .expect("create views");
    assert_eq!(rows(&client, "SELECT * FROM good").await, ["3 70"]);
    assert_eq!(
        rows(&client, "SELECT auction FROM good_too ORDER BY auction").await,
        ["1", "2", "4"]
    );
    let errors = rows(
        &client,
        "SELECT source, partition, \"offset\", payload_prefix FROM eddy_catalog.source_errors ORDER BY \"offset\"",
    )
    .await;
    assert_eq!(
        errors,
        [
            "mixed 0 1 {not json",
            r#"mixed 0 3 {"auction": "three", "price": 30}"#,
            "mixed 0 4 ",
            "mixed 0 6 [1, 2, 3]",
        ]
    );
    let reasons = rows(&client, "SELECT reason FROM eddy_catalog.source_errors").await;
    assert!(reasons.iter().all(|r| !r.is_empty()));

    // on_error = 'fail': the reader stops at the first bad message.
    client
        .batch_execute(&source_sql(
            "strict",
            "mixed",
            &broker,
            ", on_error = 'fail'",
        ))
        .await
        .expect("create strict source");
    client
        .batch_execute("CREATE MATERIALIZED VIEW strict_rows AS SELECT auction FROM strict; FLUSH;")
        .await
        .expect("create strict view");
    assert_eq!(
        rows(&client, "SELECT auction FROM strict_rows").await,
        ["1"]
    );
    let status = rows(
        &client,
        "SELECT status FROM eddy_catalog.source_progress WHERE source = 'strict'",
    )
    .await;
    assert_eq!(status.len(), 1);
    assert!(
        status[0].starts_with("failed: bad message at partition 0 offset 1"),
        "{status:?}"
    );
    server.shutdown().await.expect("shut down");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_modes_latest_and_timestamp() {
    let broker = TestBroker::start().await;
    broker.create_topic("events", 2).await;
    for i in 0..10i64 {
        let payload = format!(r#"{{"auction": {i}, "price": {i}}}"#);
        broker
            .produce_record(
                "events",
                (i % 2) as i32,
                Record {
                    payload: Some(payload.as_bytes()),
                    timestamp_ms: Some(1_000_000 + i * 1000),
                    ..Record::default()
                },
            )
            .await;
    }
    let (server, client) = start().await;
    client
        .batch_execute(&format!(
            "{}; {};",
            source_sql(
                "latest",
                "events",
                &broker,
                ", scan.startup.mode = 'latest'"
            ),
            source_sql(
                "since",
                "events",
                &broker,
                ", scan.startup.mode = 'timestamp', scan.startup.timestamp.millis = '1006000'"
            ),
        ))
        .await
        .expect("create sources");
    client
        .batch_execute(
            "CREATE MATERIALIZED VIEW from_latest AS SELECT auction FROM latest;
             CREATE MATERIALIZED VIEW from_time AS SELECT auction FROM since;
             FLUSH;",
        )
        .await
        .expect("create views");
    assert_eq!(
        rows(&client, "SELECT auction FROM from_time ORDER BY auction").await,
        ["6", "7", "8", "9"]
    );
    assert!(rows(&client, "SELECT auction FROM from_latest")
        .await
        .is_empty());
    // `latest` is where the topic ended when the view was created, not
    // when its reader got round to looking: what is produced right after
    // CREATE is read.
    broker
        .produce("events", 0, None, Some(br#"{"auction": 100, "price": 1}"#))
        .await;
    broker
        .produce("events", 1, None, Some(br#"{"auction": 101, "price": 1}"#))
        .await;
    client.batch_execute("FLUSH").await.expect("flush");
    assert_eq!(
        rows(&client, "SELECT auction FROM from_latest ORDER BY auction").await,
        ["100", "101"]
    );
    server.shutdown().await.expect("shut down");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_and_bytes_sources() {
    let broker = TestBroker::start().await;
    broker.create_topic("lines", 1).await;
    for payload in [
        "1;apple;2.5",
        "2;pear;",
        "three;fig;1",
        "4;\"kiwi; gold\";3\n",
        "5;x;1\n6;y;2",
    ] {
        broker
            .produce("lines", 0, None, Some(payload.as_bytes()))
            .await;
    }
    broker.produce("lines", 0, None, None).await;
    let (_server, client) = start().await;
    let bootstrap = broker.bootstrap();
    client
        .batch_execute(&format!(
            "CREATE SOURCE fruit (id INT, name VARCHAR, weight DOUBLE)
               WITH (connector = 'kafka', topic = 'lines', properties.bootstrap.server = '{bootstrap}')
               FORMAT PLAIN ENCODE CSV (delimiter = ';', without_header = 'true');
             CREATE SOURCE raw (payload BYTEA) INCLUDE offset
               WITH (connector = 'kafka', topic = 'lines', properties.bootstrap.server = '{bootstrap}')
               FORMAT PLAIN ENCODE BYTES;
             CREATE MATERIALIZED VIEW fruits AS SELECT * FROM fruit;
             CREATE MATERIALIZED VIEW raws AS
               SELECT kafka_offset, octet_length(CAST(payload AS VARCHAR)) AS len FROM raw;
             FLUSH;"
        ))
        .await
        .expect("csv and bytes sources");
    assert_eq!(
        rows(&client, "SELECT * FROM fruits ORDER BY id").await,
        ["1 apple 2.5", "2 pear NULL", "4 kiwi; gold 3"]
    );
    let bad = rows(
        &client,
        "SELECT \"offset\" FROM eddy_catalog.source_errors WHERE source = 'fruit' ORDER BY 1",
    )
    .await;
    assert_eq!(bad, ["2", "4", "5"]);
    assert_eq!(
        rows(&client, "SELECT * FROM raws ORDER BY kafka_offset").await,
        ["0 11", "1 7", "2 11", "3 17", "4 11", "5 NULL"]
    );
    for (sql, code) in [
        (
            format!("CREATE SOURCE b (a INT) WITH (connector = 'kafka', topic = 'lines', properties.bootstrap.server = '{bootstrap}') FORMAT PLAIN ENCODE BYTES"),
            "22023",
        ),
        (
            format!("CREATE SOURCE c (a INT) WITH (connector = 'kafka', topic = 'lines', properties.bootstrap.server = '{bootstrap}') FORMAT PLAIN ENCODE CSV (without_header = 'false')"),
            "0A000",
        ),
        (
            format!("CREATE SOURCE d (a INT) WITH (connector = 'kafka', topic = 'lines', properties.bootstrap.server = '{bootstrap}') FORMAT PLAIN ENCODE PARQUET"),
            "0A000",
        ),
    ] {
        let error = client.batch_execute(&sql).await.expect_err(&sql);
        assert_eq!(error.code().map(|c| c.code()), Some(code), "{sql}: {error}");
    }
}

/// A descriptor set file for `shop.Order { int64 id = 1; string item = 2;
/// Status status = 3; optional double amount = 4; repeated string tags = 5; }`
/// (proto3), as `protoc --descriptor_set_out` writes it.
fn order_descriptor_set(path: &std::path::Path) {
    use prost_reflect::prost::Message as _;
    use prost_reflect::prost_types::field_descriptor_proto::{Label, Type};
    use prost_reflect::prost_types::{
        DescriptorProto, EnumDescriptorProto, EnumValueDescriptorProto, FieldDescriptorProto,
        FileDescriptorProto, FileDescriptorSet, OneofDescriptorProto,
    };
    let field = |name: &str, number: i32, kind: Type, label: Label| FieldDescriptorProto {
        name: Some(name.into()),
        number: Some(number),
        label: Some(label as i32),
        r#type: Some(kind as i32),
        type_name: (kind == Type::Enum).then(|| ".shop.Status".to_string()),
        ..Default::default()
    };
    let mut amount = field("amount", 4, Type::Double, Label::Optional);
    amount.oneof_index = Some(0);
    amount.proto3_optional = Some(true);
    let status = |name: &str, number: i32| EnumValueDescriptorProto {
        name: Some(name.into()),
        number: Some(number),
        ..Default::default()
    };
    let file = FileDescriptorProto {
        name: Some("order.proto".into()),
        package: Some("shop".into()),
        syntax: Some("proto3".into()),
        message_type: vec![DescriptorProto {
            name: Some("Order".into()),
            field: vec![
                field("id", 1, Type::Int64, Label::Optional),
                field("item", 2, Type::String, Label::Optional),
                field("status", 3, Type::Enum, Label::Optional),
                amount,
                field("tags", 5, Type::String, Label::Repeated),
            ],
            oneof_decl: vec![OneofDescriptorProto {
                name: Some("_amount".into()),
                ..Default::default()
            }],
            ..Default::default()
        }],
        enum_type: vec![EnumDescriptorProto {
            name: Some("Status".into()),
            value: vec![status("NEW", 0), status("PAID", 1), status("SHIPPED", 2)],
            ..Default::default()
        }],
        ..Default::default()
    };
    let set = FileDescriptorSet { file: vec![file] };
    std::fs::write(path, set.encode_to_vec()).expect("write the descriptor set");
}

/// A `shop.Order` in the protobuf wire format, written field by field.
fn order(id: u64, item: &str, status: u64, amount: Option<f64>, tags: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    let varint = |out: &mut Vec<u8>, mut v: u64| {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    };
    let text = |out: &mut Vec<u8>, tag: u8, s: &str| {
        out.push(tag);
        out.push(s.len() as u8);
        out.extend_from_slice(s.as_bytes());
    };
    out.push(0x08);
    varint(&mut out, id);
    text(&mut out, 0x12, item);
    if status != 0 {
        out.push(0x18);
        varint(&mut out, status);
    }
    if let Some(amount) = amount {
        out.push(0x21);
        out.extend_from_slice(&amount.to_le_bytes());
    }
    for tag in tags {
        text(&mut out, 0x2a, tag);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protobuf_source_from_a_descriptor_set() {
    let broker = TestBroker::start().await;
    broker.create_topic("orders", 1).await;
    let descriptors = std::env::temp_dir().join(format!("eddy-orders-{}.pb", std::process::id()));
    order_descriptor_set(&descriptors);
    for payload in [
        order(1, "apple", 1, Some(2.5), &["red"]),
        order(2, "pear", 0, None, &[]),
        b"\x08".to_vec(),
        order(3, "fig", 2, Some(0.0), &["a", "b"]),
    ] {
        broker.produce("orders", 0, None, Some(&payload)).await;
    }
    let (_server, client) = start().await;
    let bootstrap = broker.bootstrap();
    let encode = format!(
        "ENCODE PROTOBUF (message = 'shop.Order', schema.location = 'file://{}')",
        descriptors.display()
    );
    client
        .batch_execute(&format!(
            "CREATE SOURCE orders (id BIGINT, item VARCHAR, status VARCHAR, amount DOUBLE, note VARCHAR)
               INCLUDE offset
               WITH (connector = 'kafka', topic = 'orders', properties.bootstrap.server = '{bootstrap}')
               FORMAT PLAIN {encode};
             CREATE MATERIALIZED VIEW all_orders AS SELECT * FROM orders;
             FLUSH;"
        ))
        .await
        .expect("a protobuf source");
    // Unset proto3 scalars read as their defaults, an unset optional field
    // and a column the message lacks as NULL.
    assert_eq!(
        rows(&client, "SELECT * FROM all_orders ORDER BY id").await,
        [
            "1 apple PAID 2.5 NULL 0",
            "2 pear NEW NULL NULL 1",
            "3 fig SHIPPED 0 NULL 3"
        ]
    );
    assert_eq!(
        rows(
            &client,
            "SELECT \"offset\" FROM eddy_catalog.source_errors WHERE source = 'orders'"
        )
        .await,
        ["2"]
    );
    // Without a column list, the columns come from the message type; a
    // repeated field has no column type, so it must be left out.
    let refused = client
        .batch_execute(&format!(
            "CREATE SOURCE derived WITH (connector = 'kafka', topic = 'orders', properties.bootstrap.server = '{bootstrap}') FORMAT PLAIN {encode}"
        ))
        .await
        .expect_err("a repeated field cannot be a column");
    assert_eq!(refused.code().map(|c| c.code()), Some("0A000"));
    let message = refused.as_db_error().map(|e| e.message().to_string());
    assert!(
        message.as_deref().is_some_and(|m| m.contains("tags")),
        "{message:?}"
    );
    for (sql, code) in [
        (
            format!("CREATE SOURCE p (id BIGINT) WITH (connector = 'kafka', topic = 'orders', properties.bootstrap.server = '{bootstrap}') FORMAT PLAIN ENCODE PROTOBUF (message = 'shop.Nope', schema.location = 'file://{}')", descriptors.display()),
            "22023",
        ),
        (
            format!("CREATE SOURCE p (id BIGINT) WITH (connector = 'kafka', topic = 'orders', properties.bootstrap.server = '{bootstrap}') FORMAT PLAIN ENCODE PROTOBUF (message = 'shop.Order', schema.location = 'file:///nonexistent.pb')"),
            "22023",
        ),
        (
            format!("CREATE SOURCE p (tags VARCHAR) WITH (connector = 'kafka', topic = 'orders', properties.bootstrap.server = '{bootstrap}') FORMAT PLAIN {encode}"),
            "0A000",
        ),
        (
            format!("CREATE SOURCE p (id BIGINT) WITH (connector = 'kafka', topic = 'orders', properties.bootstrap.server = '{bootstrap}') FORMAT PLAIN ENCODE PROTOBUF (message = 'shop.Order', schema.location = 'https://example.com/shop.pb')"),
            "0A000",
        ),
    ] {
        let error = client.batch_execute(&sql).await.expect_err(&sql);
        assert_eq!(error.code().map(|c| c.code()), Some(code), "{sql}: {error}");
    }
    let _ = std::fs::remove_file(descriptors);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_added_later_are_read_from_their_start() {
    let broker = TestBroker::start_on_sqlite().await;
    broker.create_topic("grow", 1).await;
    let bid = |i: i64| format!(r#"{{"auction": {}, "price": {i}, "bidder": "b"}}"#, i % 3);
    for i in 0..10 {
        broker
            .produce("grow", 0, None, Some(bid(i).as_bytes()))
            .await;
    }
    let (_server, client) = start().await;
    client
        .batch_execute(&format!(
            "{};
             CREATE MATERIALIZED VIEW per_partition AS
               SELECT kafka_partition, count(*) AS n, sum(price) AS total FROM grow
               GROUP BY kafka_partition;
             FLUSH;",
            source_sql("grow", "grow", &broker, "")
        ))
        .await
        .expect("source and view");
    assert_eq!(
        rows(&client, "SELECT * FROM per_partition ORDER BY 1").await,
        ["0 10 45"]
    );
    // A partition more, while Eddy reads the topic; messages to both.
    assert_eq!(broker.add_partition("grow"), 1);
    let producer: rdkafka::producer::FutureProducer = broker
        .client_config()
        .set("batch.num.messages", "1")
        .set("linger.ms", "0")
        .create()
        .expect("a producer that knows the new partition");
    for i in 10..20 {
        let payload = bid(i);
        let record = rdkafka::producer::FutureRecord::<(), str>::to("grow")
            .partition((i % 2) as i32)
            .payload(&payload);
        producer
            .send(record, Duration::from_secs(30))
            .await
            .expect("delivered");
    }
    client.batch_execute("FLUSH").await.expect("flush");
    // The new partition is read from its start, the old one goes on.
    assert_eq!(
        rows(&client, "SELECT * FROM per_partition ORDER BY 1").await,
        ["0 15 115", "1 5 75"]
    );
    assert_eq!(
        rows(
            &client,
            "SELECT partition, last_offset, high_watermark, lag FROM eddy_catalog.source_progress
             WHERE source = 'grow' ORDER BY partition"
        )
        .await,
        ["0 14 15 0", "1 4 5 0"]
    );
}

const SHOP_PROTO: &str = r#"
syntax = "proto3";
package shop;
import "google/protobuf/timestamp.proto";
message Order {
  int64 id = 1;
  string item = 2;
  google.protobuf.Timestamp at = 3;
  message Line { string sku = 1; }
}
message Refund { int64 id = 1; }
"#;

/// A `shop.Order` (`id`, `item`, `at` seconds) in the Confluent protobuf
/// wire format: zero byte, schema id, message indexes, message.
fn framed_order(schema_id: u32, indexes: &[u8], id: u8, item: &str, at: u8) -> Vec<u8> {
    let mut out = vec![0u8];
    out.extend_from_slice(&schema_id.to_be_bytes());
    out.extend_from_slice(indexes);
    out.extend_from_slice(&[0x08, id, 0x12, item.len() as u8]);
    out.extend_from_slice(item.as_bytes());
    // Field 3, a google.protobuf.Timestamp { seconds = at }.
    out.extend_from_slice(&[0x1a, 2, 0x08, at]);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protobuf_source_from_the_schema_registry() {
    let registry = TestRegistry::start().await;
    let broker = TestBroker::start().await;
    broker.create_topic("orders", 1).await;
    let id = registry.register_typed("orders-value", SHOP_PROTO, "PROTOBUF");
    for payload in [
        // Message indexes [0] (shop.Order), in the short form and in full.
        framed_order(id, &[0], 1, "apple", 10),
        framed_order(id, &[2, 0], 2, "pear", 20),
        // shop.Refund ([1]) and shop.Order.Line ([0, 0]): other types.
        framed_order(id, &[2, 2], 3, "x", 30),
        framed_order(id, &[4, 0, 0], 4, "y", 40),
        // An id the registry does not have, and no framing.
        framed_order(id + 7, &[0], 5, "z", 50),
        b"\x08\x06".to_vec(),
        framed_order(id, &[0], 7, "fig", 70),
    ] {
        broker.produce("orders", 0, None, Some(&payload)).await;
    }
    let (_server, client) = start().await;
    client
        .batch_execute(&format!(
            "CREATE SOURCE orders
               WITH (connector = 'kafka', topic = 'orders', properties.bootstrap.server = '{}')
               FORMAT PLAIN ENCODE PROTOBUF (message = 'shop.Order', schema.registry = '{}');
             CREATE MATERIALIZED VIEW all_orders AS
               SELECT id, item, to_unixtime(at) AS at FROM orders;
             FLUSH;",
            broker.bootstrap(),
            registry.url()
        ))
        .await
        .expect("a protobuf source with columns from the registry");
    assert_eq!(
        rows(&client, "SELECT * FROM all_orders ORDER BY id").await,
        ["1 apple 10", "2 pear 20", "7 fig 70"]
    );
    let mut reasons = rows(
        &client,
        "SELECT \"offset\" || ' ' || reason FROM eddy_catalog.source_errors ORDER BY \"offset\"",
    )
    .await;
    assert_eq!(reasons.len(), 4, "{reasons:?}");
    assert!(
        reasons[0].starts_with("2 a shop.Refund message"),
        "{reasons:?}"
    );
    assert!(
        reasons[1].starts_with("3 a shop.Order.Line message"),
        "{reasons:?}"
    );
    assert!(
        reasons[2].contains("not in the schema registry"),
        "{reasons:?}"
    );
    assert!(reasons.remove(3).contains("Confluent wire format"));
}

/// The first column of `sql`'s error: its SQLSTATE and message.
async fn error_of(client: &tokio_postgres::Client, sql: &str) -> (String, String) {
    let error = client.simple_query(sql).await.expect_err(sql);
    let code = error
        .code()
        .map(|c| c.code().to_string())
        .unwrap_or_default();
    let message = error
        .as_db_error()
        .map(|e| e.message().to_string())
        .unwrap_or_default();
    (code, message)
}

/// A stored object a restart cannot create again (here: a Protobuf
/// source whose descriptor file is gone) stays in the catalog as failed:
/// its name is taken, reading it and the views over it fails with the
/// cause, everything else works, and once the cause is gone the next
/// restart brings it back; `DROP` removes it for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_a_restart_cannot_create_again_fails_under_its_name() {
    use support::process::{temp_dir, EddyProcess};
    let broker = TestBroker::start().await;
    broker.create_topic("orders", 1).await;
    broker
        .produce(
            "orders",
            0,
            None,
            Some(&order(1, "apple", 1, Some(2.5), &[])),
        )
        .await;
    let dir = temp_dir("failed-restart");
    let (data, log) = (dir.join("data"), dir.join("eddy.log"));
    let descriptors = dir.join("orders.pb");
    order_descriptor_set(&descriptors);
    let timeout = Duration::from_secs(60);
    let (process, client) = EddyProcess::start(&data, &log, timeout).await;
    client
        .batch_execute(&format!(
            "CREATE SOURCE orders (id BIGINT, item VARCHAR)
               WITH (connector = 'kafka', topic = 'orders',
                     properties.bootstrap.server = '{}')
               FORMAT PLAIN ENCODE PROTOBUF (message = 'shop.Order',
                                             schema.location = 'file://{}');
             CREATE MATERIALIZED VIEW n_orders AS SELECT count(*) AS n FROM orders;
             CREATE TABLE t (a INT);
             INSERT INTO t VALUES (1);
             FLUSH;",
            broker.bootstrap(),
            descriptors.display()
        ))
        .await
        .expect("a source, a view over it and a table");
    assert_eq!(rows(&client, "SELECT n FROM n_orders").await, ["1"]);
    process.kill();

    std::fs::remove_file(&descriptors).expect("remove the descriptor file");
    let (process, client) = EddyProcess::start(&data, &log, timeout).await;
    assert_eq!(
        rows(&client, "SELECT a FROM t").await,
        ["1"],
        "the rest is back"
    );
    for (sql, name) in [
        ("SELECT * FROM orders", "source \"orders\" failed"),
        (
            "SELECT n FROM n_orders",
            "materialized view \"n_orders\" failed",
        ),
    ] {
        let (code, message) = error_of(&client, sql).await;
        assert!(
            message.starts_with(name) && message.contains("could not be created again"),
            "{sql}: {code} {message}"
        );
        assert_ne!(code, "XX000", "{sql}: {message}");
    }
    let (code, message) = error_of(&client, "CREATE TABLE orders (x INT)").await;
    assert_eq!(code, "42P07", "the failed source keeps its name: {message}");
    // It is listed as what it was; the catalog's other reads go on.
    assert_eq!(rows(&client, "SHOW SOURCES").await, ["orders"]);
    assert_eq!(rows(&client, "SHOW MATERIALIZED VIEWS").await, ["n_orders"]);
    rows(&client, "SELECT * FROM information_schema.columns").await;
    rows(&client, "SELECT * FROM eddy_catalog.relation_memory").await;
    process.kill();

    order_descriptor_set(&descriptors);
    let (process, client) = EddyProcess::start(&data, &log, timeout).await;
    client.batch_execute("FLUSH").await.expect("flush");
    assert_eq!(
        rows(&client, "SELECT n FROM n_orders").await,
        ["1"],
        "back once the descriptor is"
    );
    process.kill();

    std::fs::remove_file(&descriptors).expect("remove the descriptor file again");
    let (process, client) = EddyProcess::start(&data, &log, timeout).await;
    client
        .batch_execute("DROP MATERIALIZED VIEW n_orders; DROP SOURCE orders;")
        .await
        .expect("failed objects can be dropped");
    process.kill();
    order_descriptor_set(&descriptors);
    let (process, client) = EddyProcess::start(&data, &log, timeout).await;
    let (code, _) = error_of(&client, "SELECT * FROM orders").await;
    assert_eq!(code, "42P01", "dropped for good");
    assert_eq!(rows(&client, "SELECT a FROM t").await, ["1"]);
    drop(process);
    let _ = std::fs::remove_dir_all(&dir);
}
