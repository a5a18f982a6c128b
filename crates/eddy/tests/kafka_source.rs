//! Kafka sources against a real Kafka-protocol broker (tansu, started by
//! the test harness): `FORMAT PLAIN ENCODE JSON` over every partition of a
//! topic, `INCLUDE` metadata columns, startup modes, `FLUSH` waiting for the
//! topic's high watermarks, and bad messages under `on_error = 'skip'` and
//! `'fail'`, recorded once in `eddy_catalog.source_errors`.

#![allow(clippy::expect_used, clippy::unwrap_used)]

#[allow(dead_code)]
mod support;

use std::time::Duration;

use support::broker::{Record, TestBroker};
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
    // The latest reader may need a moment to take its first position.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        rows(&client, "SELECT auction FROM from_time ORDER BY auction").await,
        ["6", "7", "8", "9"]
    );
    assert!(rows(&client, "SELECT auction FROM from_latest")
        .await
        .is_empty());
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
            format!("CREATE SOURCE d (a INT) WITH (connector = 'kafka', topic = 'lines', properties.bootstrap.server = '{bootstrap}') FORMAT PLAIN ENCODE AVRO"),
            "0A000",
        ),
    ] {
        let error = client.batch_execute(&sql).await.expect_err(&sql);
        assert_eq!(error.code().map(|c| c.code()), Some(code), "{sql}: {error}");
    }
}
