//! The test broker, tansu driven through librdkafka, does what Eddy's Kafka
//! tests rely on: topics with several partitions, keyed records read back
//! exactly and in offset order per partition, high watermarks one past the
//! last offset, a consumer that starts in the middle of a partition getting
//! exactly the rest, headers and timestamps kept, and no broker left running
//! after the harness is dropped.

#![allow(clippy::expect_used)]

#[allow(dead_code)]
mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use support::broker::{ConsumedMessage, Record, TestBroker};

const READ_TIMEOUT: Duration = Duration::from_secs(30);

fn payload(i: usize) -> Vec<u8> {
    format!(r#"{{"id":{i},"name":"item {i}"}}"#).into_bytes()
}

fn key(i: usize) -> Vec<u8> {
    format!("key-{i}").into_bytes()
}

fn by_partition(messages: &[ConsumedMessage]) -> BTreeMap<i32, Vec<&ConsumedMessage>> {
    let mut partitions: BTreeMap<i32, Vec<&ConsumedMessage>> = BTreeMap::new();
    for message in messages {
        partitions
            .entry(message.partition)
            .or_default()
            .push(message);
    }
    partitions
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_records_come_back_exactly_on_every_partition() {
    let broker = TestBroker::start().await;
    broker.create_topic("orders", 3).await;

    // Record i goes to partition i % 3, so it gets offset i / 3 there.
    for i in 0..300 {
        let partition = i32::try_from(i % 3).expect("partition");
        let offset = broker
            .produce(
                "orders",
                partition,
                Some(key(i).as_slice()),
                Some(payload(i).as_slice()),
            )
            .await;
        assert_eq!(offset, i64::try_from(i / 3).expect("offset"), "record {i}");
    }

    let messages = broker.read_all("orders", 300, READ_TIMEOUT).await;
    assert_eq!(messages.len(), 300, "no record lost or repeated");
    let partitions = by_partition(&messages);
    assert_eq!(partitions.keys().copied().collect::<Vec<_>>(), [0, 1, 2]);
    for (partition, messages) in &partitions {
        let offsets: Vec<i64> = messages.iter().map(|m| m.offset).collect();
        assert_eq!(
            offsets,
            (0..100).collect::<Vec<i64>>(),
            "partition {partition} in offset order"
        );
        for message in messages {
            let i = usize::try_from(message.offset * 3 + i64::from(*partition)).expect("index");
            assert_eq!(message.key.as_deref(), Some(key(i).as_slice()));
            assert_eq!(message.payload.as_deref(), Some(payload(i).as_slice()));
            assert!(message.headers.is_empty());
        }
    }

    assert_eq!(
        broker.high_watermarks("orders").await,
        [100, 100, 100],
        "high watermark is last offset + 1"
    );
}

/// Guards against tansu's fault with consumers that start inside a
/// multi-record batch: the harness's one-record batches must avoid it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_starting_mid_partition_gets_exactly_the_rest() {
    let broker = TestBroker::start().await;
    broker.create_topic("events", 2).await;
    for i in 0..50 {
        broker
            .produce(
                "events",
                1,
                Some(key(i).as_slice()),
                Some(payload(i).as_slice()),
            )
            .await;
    }
    broker
        .produce("events", 0, None, Some(b"other partition".as_slice()))
        .await;

    for start in [0, 1, 17, 48, 49] {
        let rest = broker
            .read_partition_from(
                "events",
                1,
                start,
                50 - usize::try_from(start).expect("start"),
                READ_TIMEOUT,
            )
            .await;
        let offsets: Vec<i64> = rest.iter().map(|m| m.offset).collect();
        assert_eq!(
            offsets,
            (start..50).collect::<Vec<i64>>(),
            "from offset {start}"
        );
        for message in &rest {
            assert_eq!(message.partition, 1);
            let i = usize::try_from(message.offset).expect("index");
            assert_eq!(message.payload.as_deref(), Some(payload(i).as_slice()));
        }
    }

    let at_end = broker
        .read_partition_from("events", 1, 50, 0, READ_TIMEOUT)
        .await;
    assert!(at_end.is_empty(), "nothing past the end: {at_end:?}");
    assert_eq!(broker.high_watermarks("events").await, [1, 50]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_timestamps_and_nulls_are_kept() {
    let broker = TestBroker::start().await;
    broker.create_topic("audit", 1).await;
    let timestamp_ms = 1_700_000_000_123;
    let offset = broker
        .produce_record(
            "audit",
            0,
            Record {
                key: Some(b"k".as_slice()),
                payload: Some(b"v".as_slice()),
                headers: &[
                    ("trace", Some(b"abc".as_slice())),
                    ("empty", Some(b"".as_slice())),
                    ("null", None),
                    ("trace", Some(b"again".as_slice())),
                ],
                timestamp_ms: Some(timestamp_ms),
            },
        )
        .await;
    assert_eq!(offset, 0);
    assert_eq!(broker.produce("audit", 0, None, None).await, 1);
    assert_eq!(
        broker
            .produce("audit", 0, Some(b"".as_slice()), Some(b"".as_slice()))
            .await,
        2
    );

    let messages = broker.read_all("audit", 3, READ_TIMEOUT).await;
    assert_eq!(messages.len(), 3);
    let first = &messages[0];
    assert_eq!(first.key.as_deref(), Some(b"k".as_slice()));
    assert_eq!(first.payload.as_deref(), Some(b"v".as_slice()));
    assert_eq!(first.timestamp_ms, Some(timestamp_ms));
    let headers: Vec<(&str, Option<&[u8]>)> = first
        .headers
        .iter()
        .map(|(key, value)| (key.as_str(), value.as_deref()))
        .collect();
    assert_eq!(
        headers,
        [
            ("trace", Some(b"abc".as_slice())),
            ("empty", Some(b"".as_slice())),
            ("null", None),
            ("trace", Some(b"again".as_slice())),
        ]
    );

    let tombstone = &messages[1];
    assert_eq!(
        (tombstone.key.as_deref(), tombstone.payload.as_deref()),
        (None, None)
    );
    assert!(tombstone.headers.is_empty());
    assert!(
        tombstone.timestamp_ms.is_some_and(|t| t > timestamp_ms),
        "a record without a timestamp gets the current time: {:?}",
        tombstone.timestamp_ms
    );

    let empty = &messages[2];
    assert_eq!(
        (empty.key.as_deref(), empty.payload.as_deref()),
        (Some(b"".as_slice()), Some(b"".as_slice())),
        "empty is not null"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_harness_stops_the_broker() {
    let broker = TestBroker::start().await;
    let bootstrap = broker.bootstrap();
    let log = broker.log_path().to_path_buf();
    std::net::TcpStream::connect(&bootstrap).expect("broker listens");
    drop(broker);
    assert!(
        std::net::TcpStream::connect(&bootstrap).is_err(),
        "nothing listens on {bootstrap} after drop"
    );
    assert!(!log.exists(), "log {} removed", log.display());
}
