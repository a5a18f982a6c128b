//! GROUP BY, join or top-N state larger than its memory budget: how much of it
//! stays in memory, what reading state back from the data directory costs,
//! and whether the view stays exact.
//!
//! For each budget, a durable engine on a fresh data directory gets
//! `CREATE TABLE ev (k BIGINT NOT NULL, v BIGINT NOT NULL)` and
//! `CREATE MATERIALIZED VIEW agg AS SELECT k, count(*), sum(v), min(v),
//! max(v) FROM ev GROUP BY k`; with `--query join` instead a table
//! `dim (k, grp)` with one row per key (`grp = k % 100`) and `CREATE
//! MATERIALIZED VIEW agg AS SELECT d.grp, count(*), sum(e.v) FROM ev e JOIN
//! dim d ON e.k = d.k GROUP BY d.grp`, whose join holds every row of both
//! tables by key while its GROUP BY holds 100 groups; with `--query topn`
//! `CREATE MATERIALIZED VIEW agg AS SELECT k, v FROM ev ORDER BY k, v
//! LIMIT 100`, whose top-N holds every row of `ev`, and each update
//! statement is followed by `DELETE FROM ev WHERE k < c`, with `c` rising
//! to 90% of the keys by the end, so the window moves through rows let go
//! of and reads them back (the view is checked against the same query run
//! as a batch query). A fill phase inserts
//! one row for each of `--groups` keys (into `dim` first for the join;
//! statements of `--chunk` rows, each a synced checkpoint),
//! then an update phase inserts `--updates` rows with keys spread over all
//! groups (row i of the phase gets key `(i * 7919 + seed) % groups`, so
//! each statement touches `--chunk` keys scattered over the whole range;
//! statements of `--chunk` rows), so most keys an update touches were let
//! go of under a small budget and are read back. Printed:
//! rows/s of each phase, the estimated state bytes held after the fill
//! and at the end, keys (groups and
//! join keys of one side) evicted and read back, the process's resident memory (one process runs the budgets
//! in turn, smallest first, and memory freed by one run is not given back
//! to the system: run one budget per invocation for its own figure), and a
//! check of the view against the inserted rows. Figures are printed, never
//! asserted.
//!
//! Run: `cargo run --release -p eddy-benches --bin spill -- --groups 1000000 --budgets-mb 0,64,unlimited`.

use std::time::Instant;

use clap::Parser;
use datafusion::arrow::array::{Array, Int64Array};
use eddy_engine::{Engine, Output, Session};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Result<T, E = BoxError> = std::result::Result<T, E>;

#[derive(Parser, Debug)]
#[command(name = "spill", about = "GROUP BY or join state under a memory budget")]
struct Args {
    /// The view: `group-by` (GROUP BY k), `join` (ev JOIN dim on k, then
    /// GROUP BY a column of dim with 100 values) or `topn` (ORDER BY k, v
    /// LIMIT 100, with deletes of the first keys).
    #[arg(long, default_value = "group-by")]
    query: Query,
    /// Distinct group keys.
    #[arg(long, default_value_t = 1_000_000)]
    groups: i64,
    /// Rows inserted with scattered keys after the fill.
    #[arg(long, default_value_t = 1_000_000)]
    updates: i64,
    /// Rows per INSERT statement.
    #[arg(long, default_value_t = 50_000)]
    chunk: i64,
    /// Budgets to run with, in MiB (`unlimited`: a budget never reached, so
    /// the state is measured but nothing leaves memory).
    #[arg(long, value_delimiter = ',', default_value = "0,64,unlimited")]
    budgets_mb: Vec<String>,
    /// Offset of the update keys.
    #[arg(long, default_value_t = 7)]
    seed: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Query {
    GroupBy,
    Join,
    Topn,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let view = match args.query {
        Query::GroupBy => "GROUP BY k",
        Query::Join => "ev JOIN dim ON k, GROUP BY grp,",
        Query::Topn => "ORDER BY k, v LIMIT 100 (first keys deleted as it goes)",
    };
    println!(
        "spill: {view} over {} keys, then {} rows with keys scattered over them, {} rows per synced INSERT",
        args.groups, args.updates, args.chunk
    );
    for budget in &args.budgets_mb {
        let limit = match budget.as_str() {
            "unlimited" => usize::MAX,
            mb => mb.parse::<usize>()? << 20,
        };
        runtime.block_on(run(&args, budget, limit))?;
    }
    Ok(())
}

async fn run(args: &Args, label: &str, limit: usize) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("eddy-spill-{label}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let rss_before = resident_mib();
    let store = eddy_state::Store::open(&dir, &eddy_state::StoreOptions::default())?;
    let options = eddy_engine::DurableOptions {
        memory_budget: Some(limit),
        ..eddy_engine::DurableOptions::default()
    };
    let engine = Engine::open(store, options).await?;
    let session = Session::new(engine.clone())?;
    let (ddl, fill_tables) = match args.query {
        Query::GroupBy => (
            "CREATE TABLE ev (k BIGINT NOT NULL, v BIGINT NOT NULL);
             CREATE MATERIALIZED VIEW agg AS
               SELECT k, count(*) AS n, sum(v) AS total, min(v) AS lo, max(v) AS hi
               FROM ev GROUP BY k",
            &["ev SELECT value, value % 1000"][..],
        ),
        Query::Join => (
            "CREATE TABLE ev (k BIGINT NOT NULL, v BIGINT NOT NULL);
             CREATE TABLE dim (k BIGINT NOT NULL, grp BIGINT NOT NULL);
             CREATE MATERIALIZED VIEW agg AS
               SELECT d.grp, count(*) AS n, sum(e.v) AS total
               FROM ev e JOIN dim d ON e.k = d.k GROUP BY d.grp",
            &[
                "dim SELECT value, value % 100",
                "ev SELECT value, value % 1000",
            ][..],
        ),
        Query::Topn => (
            "CREATE TABLE ev (k BIGINT NOT NULL, v BIGINT NOT NULL);
             CREATE MATERIALIZED VIEW agg AS SELECT k, v FROM ev ORDER BY k, v LIMIT 100",
            &["ev SELECT value, value % 1000"][..],
        ),
    };
    execute(&session, ddl).await?;
    let started = Instant::now();
    for insert in fill_tables {
        let mut next = 0;
        while next < args.groups {
            let end = (next + args.chunk).min(args.groups);
            execute(
                &session,
                &format!(
                    "INSERT INTO {insert} FROM generate_series({next}, {})",
                    end - 1
                ),
            )
            .await?;
            next = end;
        }
    }
    let fill = started.elapsed().as_secs_f64();
    let memory_query = "SELECT coalesce(budget_bytes, -1), state_bytes, keys_evicted, keys_read_back FROM eddy_catalog.state_memory";
    let filled = first_row(&execute(&session, memory_query).await?);
    let started = Instant::now();
    let mut done = 0;
    while done < args.updates {
        let end = (done + args.chunk).min(args.updates);
        execute(
            &session,
            &format!(
                "INSERT INTO ev SELECT (value * 7919 + {seed}) % {groups}, value % 997
                 FROM generate_series({done}, {})",
                end - 1,
                seed = args.seed,
                groups = args.groups,
            ),
        )
        .await?;
        if args.query == Query::Topn {
            let cut = args.groups * 9 / 10 * end / args.updates;
            execute(&session, &format!("DELETE FROM ev WHERE k < {cut}")).await?;
        }
        done = end;
    }
    let values_sum: i64 = (0..args.updates).map(|i| i % 997).sum();
    let update = started.elapsed().as_secs_f64();
    let memory = first_row(&execute(&session, memory_query).await?);
    let (check, expected) = if args.query == Query::Topn {
        let totals = "SELECT count(*), sum(k), sum(v) FROM";
        let check = execute(&session, &format!("{totals} agg")).await?;
        let query = "(SELECT k, v FROM ev ORDER BY k, v LIMIT 100) q";
        let expected = execute(&session, &format!("{totals} {query}")).await?;
        (first_row(&check), first_row(&expected))
    } else {
        let check = execute(&session, "SELECT sum(n), sum(total), count(*) FROM agg").await?;
        let fill_sum: i64 = (0..args.groups).map(|k| k % 1000).sum();
        let groups = match args.query {
            Query::GroupBy => args.groups,
            _ => args.groups.min(100),
        };
        let expected = vec![args.groups + args.updates, fill_sum + values_sum, groups];
        (first_row(&check), expected)
    };
    let exact = check == expected;
    println!(
        "budget {label:>9} MiB: fill {:.0} rows/s, updates {:.0} rows/s; state held {:.1} MiB after the fill, {:.1} MiB at the end, {} keys evicted, {} read back; resident memory {} -> {} MiB; view {}",
        (args.groups * fill_tables.len() as i64) as f64 / fill,
        args.updates as f64 / update,
        filled.get(1).copied().unwrap_or(0) as f64 / (1 << 20) as f64,
        memory.get(1).copied().unwrap_or(0) as f64 / (1 << 20) as f64,
        memory.get(2).copied().unwrap_or(0),
        memory.get(3).copied().unwrap_or(0),
        rss_before,
        resident_mib(),
        if exact {
            "exact".to_string()
        } else {
            format!("WRONG: {check:?}, expected {expected:?}")
        }
    );
    drop(session);
    drop(engine);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

async fn execute(session: &Session, sql: &str) -> Result<Vec<Output>> {
    let (outputs, error) = session.execute_sql(sql).await;
    match error {
        Some(error) => Err(format!("{}: {error}", &sql[..sql.len().min(120)]).into()),
        None => Ok(outputs),
    }
}

/// The integer columns of the first row of the last output.
fn first_row(outputs: &[Output]) -> Vec<i64> {
    let Some(Output::Rows { batches, .. }) = outputs.last() else {
        return Vec::new();
    };
    let Some(batch) = batches.iter().find(|b| b.num_rows() > 0) else {
        return Vec::new();
    };
    batch
        .columns()
        .iter()
        .map(|column| {
            let column = datafusion::arrow::compute::cast(
                column,
                &datafusion::arrow::datatypes::DataType::Int64,
            );
            column
                .ok()
                .and_then(|c| c.as_any().downcast_ref::<Int64Array>().map(|a| a.value(0)))
                .unwrap_or(-1)
        })
        .collect()
}

/// This process's resident memory, in MiB (0 where it cannot be read).
fn resident_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|rest| {
                    rest.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
        })
        .map_or(0, |kib| kib / 1024)
}
