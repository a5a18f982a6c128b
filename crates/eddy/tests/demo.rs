//! The demo `eddy --demo` starts: Nexmark sources generated in-process and
//! materialized views over them. A client connects over the wire and watches
//! the views fill and move: every view gets rows, the bid counts grow
//! between two reads, and the numbers agree with each other.

#![allow(clippy::expect_used)]

use std::time::{Duration, Instant};

use tokio_postgres::NoTls;

async fn connect(addr: std::net::SocketAddr) -> tokio_postgres::Client {
    let config = format!("host={} port={} user=eddy", addr.ip(), addr.port());
    let (client, connection) = tokio_postgres::connect(&config, NoTls)
        .await
        .expect("connect to eddy");
    tokio::spawn(connection);
    client
}

/// Total bids counted by `bids_by_channel`.
async fn total_bids(client: &tokio_postgres::Client) -> i64 {
    client
        .query_one(
            "SELECT coalesce(sum(bids), 0)::BIGINT FROM bids_by_channel",
            &[],
        )
        .await
        .expect("read bids_by_channel")
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_views_fill_and_move() {
    let config = eddy::Config {
        demo: true,
        ..eddy::Config::in_memory("127.0.0.1:0")
    };
    let server = eddy::Server::start(&config).await.expect("start the demo");
    let client = connect(server.addr).await;

    let sources: Vec<String> = client
        .simple_query("SHOW SOURCES")
        .await
        .expect("show sources")
        .into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
            _ => None,
        })
        .collect();
    assert_eq!(sources, ["auction", "bid", "person"]);

    // Generated at 1000 events/s: within a generous deadline every view has
    // rows (auctions in category 10 with a seller in OR/ID/CA come slowest).
    let deadline = Instant::now() + Duration::from_secs(60);
    let views = [
        "hot_auctions",
        "avg_price_by_category",
        "bids_by_channel",
        "local_sellers",
    ];
    for view in views {
        loop {
            let rows: i64 = client
                .query_one(&format!("SELECT count(*) FROM {view}"), &[])
                .await
                .expect("count a view")
                .get(0);
            if rows > 0 {
                break;
            }
            assert!(Instant::now() < deadline, "{view} stayed empty");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    let first = total_bids(&client).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if total_bids(&client).await > first {
            break;
        }
        assert!(Instant::now() < deadline, "bid counts did not move");
    }

    // The views agree: every bid joins its auction, and the top auction's
    // bids are at most all bids. One statement reads one epoch.
    let row = client
        .query_one(
            "SELECT (SELECT max(bids) FROM hot_auctions),
                    (SELECT sum(bids) FROM bids_by_channel),
                    (SELECT count(*) FROM hot_auctions)",
            &[],
        )
        .await
        .expect("read the views");
    let top: i64 = row.get(0);
    let all: i64 = row.get(1);
    let ranked: i64 = row.get(2);
    assert!(top >= 1 && top <= all, "top {top}, all {all}");
    assert!(ranked <= 10);

    let progress: i64 = client
        .query_one(
            "SELECT count(*) FROM eddy_catalog.source_progress WHERE status = 'running' AND messages > 0",
            &[],
        )
        .await
        .expect("read source progress")
        .get(0);
    assert!(progress >= 3, "{progress} readers running");
    server.shutdown().await.expect("shut down");
}
