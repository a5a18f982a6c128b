//! Connector tables and sources across SIGKILLs: Eddy runs as a child
//! process with a data directory, reading two Kafka topics (tansu) into an
//! append-only table and an UPSERT table, with views over both, and as
//! sources into views over one source, two sources, and a source joined
//! with a table. It is killed at random
//! moments (while reading, between and during checkpoints, while
//! recovering) and started again while the test keeps producing. At the
//! end every table and view must hold exactly what the topics say: no
//! message lost, none counted twice. `EDDY_CRASH_SEED` repeats a run;
//! `EDDY_CRASH_KILLS` (default 20) makes it longer.

#![allow(clippy::expect_used, clippy::unwrap_used)]

#[allow(dead_code)]
mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use support::broker::TestBroker;
use support::process::{crash_kills, crash_loop, crash_seed, tail, temp_dir, EddyProcess};
use support::server::rows;

/// A message to produce: topic, partition, key, payload.
type Message = (&'static str, i32, Option<Vec<u8>>, Option<Vec<u8>>);

const SENSORS: i64 = 5;
const SKUS: i64 = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_and_sources_are_exact_across_sigkill_loop() {
    let seed = crash_seed();
    let kills = crash_kills();
    println!("kafka crash loop: seed {seed}, {kills} kills (EDDY_CRASH_SEED={seed} repeats it)");
    let mut rng = StdRng::seed_from_u64(seed);
    let broker = TestBroker::start().await;
    broker.create_topic("readings", 2).await;
    broker.create_topic("stock", 2).await;
    let dir = temp_dir("kafka-crash");
    let data = dir.join("data");
    let log = dir.join("eddy.log");
    // A short interval, so that kills land before, during and after
    // checkpoints of streamed input. (tansu answers a fetch only after
    // fetch.wait.max.ms, 500 ms by default: the tables set 5 ms, so that
    // Eddy reads while it runs rather than only after the last start.)
    // A memory budget of 0: GROUP BY groups leave memory once their
    // checkpoint is written and are read back when their key comes again.
    let args = ["--checkpoint-interval-ms", "150", "--memory-budget-mb", "0"];

    let mut running = EddyProcess::spawn_with(&data, &log, &args);
    let client = running.ready(Duration::from_secs(60)).await;
    client
        .batch_execute(&format!(
            "CREATE TABLE readings (id BIGINT, sensor BIGINT, v BIGINT)
               WITH (connector = 'kafka', topic = 'readings',
                     properties.bootstrap.server = '{bootstrap}',
                     properties.fetch.wait.max.ms = '5')
               FORMAT PLAIN ENCODE JSON;
             CREATE TABLE stock (sku BIGINT PRIMARY KEY, qty BIGINT)
               WITH (connector = 'kafka', topic = 'stock',
                     properties.bootstrap.server = '{bootstrap}',
                     properties.fetch.wait.max.ms = '5')
               FORMAT UPSERT ENCODE JSON;
             CREATE MATERIALIZED VIEW per_sensor AS
               SELECT sensor, count(*) AS n, sum(v) AS total FROM readings GROUP BY sensor;
             CREATE MATERIALIZED VIEW stock_total AS
               SELECT count(*) AS skus, sum(qty) AS qty FROM stock;
             CREATE SOURCE readings_src (id BIGINT, sensor BIGINT, v BIGINT)
               WITH (connector = 'kafka', topic = 'readings',
                     properties.bootstrap.server = '{bootstrap}',
                     properties.fetch.wait.max.ms = '5',
                     scan.startup.mode = 'latest')
               FORMAT PLAIN ENCODE JSON;
             CREATE SOURCE readings_again (id BIGINT, sensor BIGINT, v BIGINT)
               WITH (connector = 'kafka', topic = 'readings',
                     properties.bootstrap.server = '{bootstrap}',
                     properties.fetch.wait.max.ms = '5')
               FORMAT PLAIN ENCODE JSON;
             CREATE MATERIALIZED VIEW per_sensor_src AS
               SELECT sensor, count(*) AS n, sum(v) AS total FROM readings_src GROUP BY sensor;
             CREATE MATERIALIZED VIEW per_sensor_twice AS
               SELECT a.sensor, count(*) AS n, sum(b.v) AS total
               FROM readings_src a JOIN readings_again b ON a.id = b.id GROUP BY a.sensor;
             CREATE MATERIALIZED VIEW stocked_readings AS
               SELECT count(*) AS n, sum(s.qty) AS qty
               FROM readings_src r JOIN stock s ON r.sensor = s.sku;",
            bootstrap = broker.bootstrap()
        ))
        .await
        .expect("create the tables and views");
    drop(client);

    // What the topics hold.
    let mut readings: Vec<(i64, i64, i64)> = Vec::new();
    let mut stock: BTreeMap<i64, i64> = BTreeMap::new();
    let mut next_reading = 0i64;
    let mut produce_round = |rng: &mut StdRng| {
        let mut messages: Vec<Message> = Vec::new();
        for _ in 0..rng.random_range(10..40) {
            next_reading += 1;
            let sensor = rng.random_range(0..SENSORS);
            let v = rng.random_range(-100..1000);
            readings.push((next_reading, sensor, v));
            let payload = format!(r#"{{"id": {next_reading}, "sensor": {sensor}, "v": {v}}}"#);
            let partition = (next_reading % 2) as i32;
            messages.push(("readings", partition, None, Some(payload.into_bytes())));
        }
        for _ in 0..rng.random_range(3..12) {
            let sku = rng.random_range(0..SKUS);
            let key = sku.to_string().into_bytes();
            let partition = (sku % 2) as i32;
            if rng.random_bool(0.15) {
                stock.remove(&sku);
                messages.push(("stock", partition, Some(key), None));
            } else {
                let qty = rng.random_range(0..500);
                stock.insert(sku, qty);
                let payload = format!(r#"{{"sku": {sku}, "qty": {qty}}}"#);
                messages.push(("stock", partition, Some(key), Some(payload.into_bytes())));
            }
        }
        messages
    };

    let crashes = crash_loop(
        &mut rng,
        kills,
        running,
        || EddyProcess::spawn_with(&data, &log, &args),
        &mut produce_round,
        async |messages: &[Message], _: &mut StdRng| {
            for (topic, partition, key, payload) in messages {
                broker
                    .produce(topic, *partition, key.as_deref(), payload.as_deref())
                    .await;
            }
        },
    )
    .await;
    let (killed, during_recovery) = (crashes.killed, crashes.during_recovery);

    let mut running = EddyProcess::spawn_with(&data, &log, &args);
    let client = running.ready(Duration::from_secs(60)).await;
    client.batch_execute("FLUSH").await.expect("flush");
    let context = format!("after {killed} kills (seed {seed}); log:\n{}", tail(&log));
    let counted = rows(&client, "SELECT count(*), count(DISTINCT id) FROM readings").await;
    assert_eq!(
        counted,
        [format!("{} {}", readings.len(), readings.len())],
        "readings: every message once {context}"
    );
    let mut per_sensor: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
    for (_, sensor, v) in &readings {
        let slot = per_sensor.entry(*sensor).or_default();
        slot.0 += 1;
        slot.1 += v;
    }
    let expected: Vec<String> = per_sensor
        .iter()
        .map(|(s, (n, t))| format!("{s} {n} {t}"))
        .collect();
    assert_eq!(
        rows(
            &client,
            "SELECT sensor, n, total FROM per_sensor ORDER BY sensor"
        )
        .await,
        expected,
        "per_sensor {context}"
    );
    // The same over sources that start at the latest offset: a view that
    // read its topics again after a restart would miss what came while
    // Eddy was down.
    assert_eq!(
        rows(
            &client,
            "SELECT sensor, n, total FROM per_sensor_src ORDER BY sensor"
        )
        .await,
        expected,
        "per_sensor_src {context}"
    );
    assert_eq!(
        rows(
            &client,
            "SELECT sensor, n, total FROM per_sensor_twice ORDER BY sensor"
        )
        .await,
        expected,
        "per_sensor_twice {context}"
    );
    let stocked: Vec<i64> = readings
        .iter()
        .filter_map(|(_, sensor, _)| stock.get(sensor).copied())
        .collect();
    let expected_stocked = match stocked.len() {
        0 => "0 NULL".to_string(),
        n => format!("{n} {}", stocked.iter().sum::<i64>()),
    };
    assert_eq!(
        rows(&client, "SELECT n, qty FROM stocked_readings").await,
        [expected_stocked],
        "stocked_readings {context}"
    );
    let expected: Vec<String> = stock.iter().map(|(k, q)| format!("{k} {q}")).collect();
    assert_eq!(
        rows(&client, "SELECT sku, qty FROM stock ORDER BY sku").await,
        expected,
        "stock {context}"
    );
    let total: i64 = stock.values().sum();
    let expected_total = if stock.is_empty() {
        "0 NULL".to_string()
    } else {
        format!("{} {total}", stock.len())
    };
    assert_eq!(
        rows(&client, "SELECT skus, qty FROM stock_total").await,
        [expected_total],
        "stock_total {context}"
    );
    // The restart left the views' groups on disk (a budget of 0 loads
    // none): a reading of every sensor reads each group back.
    for sensor in 0..SENSORS {
        let id = readings.len() as i64 + 1;
        readings.push((id, sensor, 1));
        let payload = format!(r#"{{"id": {id}, "sensor": {sensor}, "v": 1}}"#);
        broker
            .produce("readings", (id % 2) as i32, None, Some(payload.as_bytes()))
            .await;
    }
    let expected: Vec<String> = {
        let mut per_sensor: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
        for (_, sensor, v) in &readings {
            let slot = per_sensor.entry(*sensor).or_default();
            slot.0 += 1;
            slot.1 += v;
        }
        per_sensor
            .iter()
            .map(|(s, (n, t))| format!("{s} {n} {t}"))
            .collect()
    };
    let waited = std::time::Instant::now();
    let query = "SELECT sensor, n, total FROM per_sensor_src ORDER BY sensor";
    while rows(&client, query).await != expected && waited.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        rows(&client, query).await,
        expected,
        "per_sensor_src after the last readings {context}"
    );
    client.batch_execute("FLUSH").await.expect("flush");
    let memory = rows(&client, "SELECT * FROM eddy_catalog.state_memory").await;
    assert_eq!(
        rows(
            &client,
            "SELECT keys_read_back > 0, relations_on_disk > 0 FROM eddy_catalog.state_memory"
        )
        .await,
        ["t t"],
        "groups were read back from the data directory, and views read from it: {memory:?}"
    );
    // A keyed connector table's rows are read from the data directory too
    // (its upserts looked the rows they replace up there).
    assert_eq!(
        rows(
            &client,
            "SELECT place FROM eddy_catalog.relation_memory WHERE name = 'stock'"
        )
        .await,
        ["disk"],
        "{:?}",
        rows(
            &client,
            "SELECT * FROM eddy_catalog.relation_memory ORDER BY name"
        )
        .await
    );
    println!(
        "kafka crash loop: {killed} kills ({during_recovery} during recovery), {} readings and {} skus: exact; last run's state memory (budget, bytes, evicted, read back, relations on disk): {memory:?}",
        readings.len(),
        stock.len()
    );
    drop(running);

    // The views over sources keep their operators' state, not what their
    // readers read: the rows the store holds for each are its contents
    // only (a GROUP BY view's one row per sensor), however many readings
    // came in.
    let store = eddy_state::Store::open(&data, &Default::default()).expect("open the data dir");
    let objects = store.objects().expect("the stored catalog");
    for (view, expected) in [
        // Every sensor has readings now.
        ("per_sensor_src", SENSORS as usize),
        ("per_sensor_twice", SENSORS as usize),
        ("stocked_readings", 1),
    ] {
        let id = objects
            .iter()
            .find(|o| o.name == view)
            .unwrap_or_else(|| panic!("{view} is not stored"))
            .id;
        let (mut contents, mut other) = (0usize, 0usize);
        store
            .rows(id, &[], |row, _| {
                match row.first() {
                    Some(&u8::MAX) => contents += 1,
                    _ => other += 1,
                }
                true
            })
            .expect("read the view's rows");
        assert_eq!(
            (contents, other),
            (expected, 0),
            "{view}: stored rows (contents, anything else) with {} readings",
            readings.len()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
