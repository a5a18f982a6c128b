//! Kafka under faults, with librdkafka's mock cluster (`rdkafka::mocking`):
//! a source and a sink go through failing fetch and produce requests and a
//! broker that goes down and comes back. The source shows itself as
//! stalled while the broker is away, and at the end the view and the
//! topic the sink writes are exact: nothing lost, nothing counted twice.
//!
//! The mock cluster is not `Send`, so the test drives it from the thread
//! that runs the test's future (`block_on`), while Eddy's tasks run on the
//! runtime's workers.

#![allow(clippy::expect_used, clippy::unwrap_used)]

#[allow(dead_code)]
mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use support::server::{rows, start};

/// Produce events `from..to` (`{"id": i, "v": i}`), spread over two
/// partitions, and wait until the cluster has them all.
async fn produce(producer: &FutureProducer, from: i64, to: i64) {
    let mut deliveries = Vec::new();
    for i in from..to {
        let payload = format!(r#"{{"id": {i}, "v": {i}}}"#);
        let record: FutureRecord<'_, [u8], str> = FutureRecord::to("events")
            .partition((i % 2) as i32)
            .payload(payload.as_str());
        deliveries.push(
            producer
                .send_result(record)
                .map_err(|(e, _)| e)
                .expect("queue"),
        );
    }
    for delivery in deliveries {
        delivery
            .await
            .expect("delivered")
            .expect("no delivery error");
    }
}

/// The view's rows as the batch answer over events `0..n` says they are.
fn expected(n: i64) -> Vec<String> {
    let mut groups: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
    for i in 0..n {
        let group = groups.entry(i % 5).or_default();
        group.0 += 1;
        group.1 += i;
    }
    groups
        .into_iter()
        .map(|(k, (count, sum))| format!("{k} {count} {sum}"))
        .collect()
}

/// The upsert topic's final value per key, read from the beginning.
async fn sink_contents(bootstrap: &str, expect_at_least: usize) -> BTreeMap<String, String> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "fault-test-reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset("totals", 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&assignment).unwrap();
    let mut state = BTreeMap::new();
    let mut read = 0usize;
    loop {
        let wait = if read >= expect_at_least {
            Duration::from_millis(500)
        } else {
            Duration::from_secs(30)
        };
        let Ok(message) = tokio::time::timeout(wait, consumer.recv()).await else {
            assert!(read >= expect_at_least, "read {read} sink messages");
            return state;
        };
        let message = message.expect("consume");
        read += 1;
        let key = String::from_utf8(message.key().unwrap().to_vec()).unwrap();
        match message.payload() {
            Some(value) => state.insert(key, String::from_utf8(value.to_vec()).unwrap()),
            None => state.remove(&key),
        };
    }
}

#[test]
fn source_and_sink_come_through_broker_errors_and_outages_exact() {
    let mock = MockCluster::new(1).expect("mock cluster");
    mock.create_topic("events", 2, 1).expect("topic events");
    mock.create_topic("totals", 1, 1).expect("topic totals");
    let bootstrap = mock.bootstrap_servers();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("message.timeout.ms", "120000")
            .create()
            .expect("producer");
        produce(&producer, 0, 200).await;
        let (_server, client) = start().await;
        client
            .batch_execute(&format!(
                "CREATE SOURCE events (id BIGINT, v BIGINT)
                   WITH (connector = 'kafka', topic = 'events', properties.bootstrap.server = '{bootstrap}')
                   FORMAT PLAIN ENCODE JSON;
                 CREATE MATERIALIZED VIEW totals AS
                   SELECT id % 5 AS k, count(*) AS n, sum(v) AS total FROM events GROUP BY id % 5;
                 CREATE SINK totals_out FROM totals
                   WITH (connector = 'kafka', topic = 'totals', properties.bootstrap.server = '{bootstrap}',
                         primary_key = 'k', properties.message.timeout.ms = '120000')
                   FORMAT UPSERT ENCODE JSON;"
            ))
            .await
            .expect("source, view and sink");
        client.batch_execute("FLUSH").await.expect("flush");
        assert_eq!(rows(&client, "SELECT * FROM totals ORDER BY k").await, expected(200));

        // Failing requests: fetches and produces are refused a few times
        // each and retried.
        let not_leader = RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION;
        mock.request_errors(RDKafkaApiKey::Fetch, &[not_leader; 4]);
        mock.request_errors(RDKafkaApiKey::Produce, &[not_leader; 4]);
        produce(&producer, 200, 400).await;
        client.batch_execute("FLUSH").await.expect("flush");
        assert_eq!(rows(&client, "SELECT * FROM totals ORDER BY k").await, expected(400));

        // The broker goes away: the source says it is stalled.
        mock.broker_down(1).expect("broker down");
        let stalled = Instant::now() + Duration::from_secs(60);
        loop {
            let status = rows(
                &client,
                "SELECT DISTINCT status FROM eddy_catalog.source_progress",
            )
            .await;
            if status.iter().any(|s| s.starts_with("stalled")) {
                break;
            }
            assert!(Instant::now() < stalled, "never stalled: {status:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // Events produced while it is away arrive once it is back.
        let more = produce(&producer, 400, 600);
        tokio::pin!(more);
        assert!(
            tokio::time::timeout(Duration::from_secs(1), &mut more).await.is_err(),
            "produced with the broker down"
        );
        mock.broker_up(1).expect("broker up");
        more.await;
        client.batch_execute("FLUSH").await.expect("flush");
        assert_eq!(rows(&client, "SELECT * FROM totals ORDER BY k").await, expected(600));
        let running = Instant::now() + Duration::from_secs(30);
        loop {
            let status = rows(&client, "SELECT DISTINCT status FROM eddy_catalog.source_progress").await;
            if status == ["running"] {
                break;
            }
            assert!(Instant::now() < running, "still {status:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }

        // The sink's topic holds exactly the view.
        let view: BTreeMap<String, String> = expected(600)
            .into_iter()
            .map(|row| {
                let parts: Vec<&str> = row.split(' ').collect();
                (
                    format!("{{\"k\":{}}}", parts[0]),
                    format!("{{\"k\":{},\"n\":{},\"total\":{}}}", parts[0], parts[1], parts[2]),
                )
            })
            .collect();
        assert_eq!(sink_contents(&bootstrap, 5).await, view);
    });
    drop(mock);
}

/// A `CREATE` whose reader starts at `latest` asks the broker where that
/// is. With the broker away that takes seconds (the request's timeout),
/// and meanwhile other statements go on: the question is asked before the
/// `CREATE` takes the writer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_asking_an_absent_broker_holds_up_no_other_statement() {
    let (server, client) = start().await;
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    client
        .batch_execute(&format!(
            "CREATE SOURCE s (id BIGINT)
               WITH (connector = 'kafka', topic = 'events',
                     properties.bootstrap.server = '127.0.0.1:{port}',
                     scan.startup.mode = 'latest')
               FORMAT PLAIN ENCODE JSON;
             CREATE TABLE other (a BIGINT);"
        ))
        .await
        .expect("create the source and a table");
    let (creator, connection) = tokio_postgres::connect(
        &format!(
            "host={} port={} user=eddy",
            server.addr.ip(),
            server.addr.port()
        ),
        tokio_postgres::NoTls,
    )
    .await
    .expect("connect a second client");
    tokio::spawn(connection);
    let create = tokio::spawn(async move {
        creator
            .batch_execute("CREATE MATERIALIZED VIEW v AS SELECT count(*) AS n FROM s")
            .await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !create.is_finished(),
        "the CREATE was done before 500 ms were up: the broker lookup held up the runtime (or \
         did not wait for the broker, and then this test proves nothing)"
    );
    client
        .batch_execute("INSERT INTO other VALUES (1)")
        .await
        .expect("insert while the CREATE waits");
    // Had the CREATE held the writer while it waited, the INSERT would
    // have run after it: the view would be there by now.
    let views = rows(
        &client,
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'v'",
    )
    .await;
    assert_eq!(views, ["0"], "the INSERT ran while the CREATE waited");
    assert!(!create.is_finished(), "the CREATE still waits");
    create
        .await
        .expect("the CREATE's task")
        .expect("the CREATE succeeds: its reader looks the start up when it starts");
    assert_eq!(rows(&client, "SELECT a FROM other").await, ["1"]);
    assert_eq!(rows(&client, "SELECT n FROM v").await, ["0"]);
}
