//! Concurrent sessions over the wire: while one session keeps moving money
//! between accounts (each move is one UPDATE, so one epoch), other sessions
//! read a materialized view of the total and the table itself in one
//! statement. Every read must see both at the same epoch: the view's total
//! always equals the table's sum, and the sum never changes.

#![allow(clippy::expect_used)]

use std::time::Duration;

use tokio_postgres::NoTls;

async fn connect(addr: std::net::SocketAddr) -> tokio_postgres::Client {
    let config = format!("host={} port={} user=eddy", addr.ip(), addr.port());
    let (client, connection) = tokio_postgres::connect(&config, NoTls)
        .await
        .expect("connect to eddy");
    tokio::spawn(connection);
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_never_see_a_partial_epoch() {
    let config = eddy::Config::in_memory("127.0.0.1:0");
    let server = eddy::Server::start(&config).await.expect("start server");
    let writer = connect(server.addr).await;
    writer
        .batch_execute(
            "CREATE TABLE accounts (id INT PRIMARY KEY, balance BIGINT NOT NULL);
             INSERT INTO accounts VALUES (1, 1000), (2, 1000), (3, 1000), (4, 1000);
             CREATE MATERIALIZED VIEW total AS SELECT sum(balance) AS total, count(*) AS n FROM accounts;
             CREATE MATERIALIZED VIEW per_account AS
               SELECT a.id, a.balance, t.total FROM accounts a CROSS JOIN total t;",
        )
        .await
        .expect("set up");

    let mut readers = Vec::new();
    for _ in 0..3 {
        let client = connect(server.addr).await;
        readers.push(tokio::spawn(async move {
            let mut reads = 0u32;
            for _ in 0..150 {
                let row = client
                    .query_one(
                        "SELECT (SELECT total FROM total) AS view_total,
                                (SELECT sum(balance) FROM accounts) AS table_total,
                                (SELECT min(total) FROM per_account) AS joined_min,
                                (SELECT max(total) FROM per_account) AS joined_max,
                                (SELECT sum(balance) FROM per_account) AS joined_sum",
                        &[],
                    )
                    .await
                    .expect("read");
                let view_total: i64 = row.get(0);
                let table_total: i64 = row.get(1);
                let joined_min: i64 = row.get(2);
                let joined_max: i64 = row.get(3);
                let joined_sum: i64 = row.get(4);
                assert_eq!(
                    view_total, table_total,
                    "view and table at different epochs"
                );
                assert_eq!(view_total, 4000, "money created or destroyed");
                assert_eq!((joined_min, joined_max, joined_sum), (4000, 4000, 4000));
                reads += 1;
            }
            reads
        }));
    }

    let mut moves = 0;
    for step in 0..200i64 {
        let from = step % 4 + 1;
        let to = (step + 1) % 4 + 1;
        let amount = step % 7 + 1;
        let updated = writer
            .execute(
                "UPDATE accounts SET balance = CASE WHEN id = $1 THEN balance - $3 ELSE balance + $3 END
                 WHERE id = $1 OR id = $2",
                &[&(from as i32), &(to as i32), &amount],
            )
            .await
            .expect("move");
        assert_eq!(updated, 2);
        moves += 1;
        if step % 50 == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    for reader in readers {
        assert_eq!(reader.await.expect("reader task"), 150);
    }
    assert_eq!(moves, 200);
    let row = writer
        .query_one("SELECT total, n FROM total", &[])
        .await
        .expect("final read");
    assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1)), (4000, 4));
    server.shutdown().await.expect("shutdown");
}
