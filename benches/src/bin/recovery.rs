//! Recovery benchmark: time from process start to serving queries, with
//! N keys of durable state, and the cost of making DML durable.
//!
//! For each size the benchmark runs itself as child processes on a fresh
//! data directory: a `load` child creates `kv (k BIGINT PRIMARY KEY, v
//! BIGINT)` and a materialized view `by_bucket` (a `GROUP BY k % 1000`
//! over it), inserts N rows in statements of `--chunk` rows (each one
//! synced checkpoint) and exits; then `recover` children open the data
//! directory, rebuild the catalog, reload the rows and the view's state, and
//! answer `SELECT count(*) FROM kv` and a read of the view. A recovery's
//! time runs from the parent's spawn of the child to the child printing
//! the answers, so process start-up counts. Figures are printed, never
//! asserted.
//!
//! With `--per-key-view`, a second view `per_key` (`GROUP BY k`) holds N
//! groups of operator state and N rows of contents; the recovery loads and
//! counts its contents, while its groups, as every aggregate's under a
//! memory budget, are read back when their keys next change.
//! `--memory-budget-mb M` runs every child with that memory budget
//! (default: one never reached). `--lookups N` then times N point queries
//! (`WHERE k = ...`) on `kv` and `per_key` in each recovery, after it
//! served (their time is taken off the recovery's).
//!
//! Run: `cargo run --release -p eddy-benches --bin recovery -- --keys 1000000,10000000`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use datafusion::arrow::array::{Array, Int64Array};
use eddy_engine::{Engine, Output, Session};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Result<T, E = BoxError> = std::result::Result<T, E>;

#[derive(Parser, Debug)]
#[command(
    name = "recovery",
    about = "Recovery time of a durable Eddy with N keys of state"
)]
struct Args {
    #[command(subcommand)]
    phase: Option<Phase>,
    /// State sizes to measure (keys in the table).
    #[arg(long, value_delimiter = ',', default_value = "1000000")]
    keys: Vec<u64>,
    /// Rows per INSERT while loading.
    #[arg(long, default_value_t = 500_000)]
    chunk: u64,
    /// Recoveries per size.
    #[arg(long, default_value_t = 3)]
    runs: u32,
    /// Where data directories go (default: the system's temporary directory).
    #[arg(long)]
    dir: Option<PathBuf>,
    #[command(flatten)]
    state: StateArgs,
}

/// What the children's state holds and may keep in memory.
#[derive(clap::Args, Debug, Clone, Copy)]
struct StateArgs {
    /// Also a `GROUP BY k` view: N groups of operator state.
    #[arg(long, global = true)]
    per_key_view: bool,
    /// Memory budget for GROUP BY state, in MiB (default: none).
    #[arg(long, global = true)]
    memory_budget_mb: Option<usize>,
    /// After serving, time this many point queries (`WHERE k = ...` of
    /// random keys) on `kv` and, with `--per-key-view`, on `per_key`.
    #[arg(long, global = true, default_value_t = 0)]
    lookups: u32,
}

impl StateArgs {
    fn to_args(self) -> Vec<String> {
        let mut args = Vec::new();
        if self.per_key_view {
            args.push("--per-key-view".to_string());
        }
        if let Some(mb) = self.memory_budget_mb {
            args.extend(["--memory-budget-mb".to_string(), mb.to_string()]);
        }
        args.extend(["--lookups".to_string(), self.lookups.to_string()]);
        args
    }
}

#[derive(Subcommand, Debug)]
enum Phase {
    /// Load `keys` rows into a fresh data directory, then exit.
    Load {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        keys: u64,
        #[arg(long)]
        chunk: u64,
    },
    /// Open the data directory and answer the queries.
    Recover {
        #[arg(long)]
        data_dir: PathBuf,
    },
}

fn main() -> Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    match args.phase {
        Some(Phase::Load {
            data_dir,
            keys,
            chunk,
        }) => runtime.block_on(load(&data_dir, keys, chunk, args.state)),
        Some(Phase::Recover { data_dir }) => runtime.block_on(recover(&data_dir, args.state)),
        None => parent(&args),
    }
}

async fn open(dir: &Path, state: StateArgs) -> Result<std::sync::Arc<Engine>> {
    let store = eddy_state::Store::open(dir, &eddy_state::StoreOptions::default())?;
    Ok(Engine::open(store, options(state)).await?)
}

fn options(state: StateArgs) -> eddy_engine::DurableOptions {
    eddy_engine::DurableOptions {
        checkpoint_interval: Duration::from_secs(1),
        memory_budget: Some(state.memory_budget_mb.map_or(usize::MAX, |mb| mb << 20)),
    }
}

async fn run(session: &Session, sql: &str) -> Result<Vec<Output>> {
    let (outputs, error) = session.execute_sql(sql).await;
    match error {
        Some(error) => Err(format!("{sql}: {error}").into()),
        None => Ok(outputs),
    }
}

fn single_i64(outputs: &[Output]) -> Option<i64> {
    match outputs.last()? {
        Output::Rows { batches, .. } => {
            let column = batches.first()?.column(0);
            let values = column.as_any().downcast_ref::<Int64Array>()?;
            (!values.is_empty()).then(|| values.value(0))
        }
        _ => None,
    }
}

async fn load(dir: &Path, keys: u64, chunk: u64, state: StateArgs) -> Result<()> {
    let engine = open(dir, state).await?;
    let session = Session::new(engine)?;
    run(
        &session,
        "CREATE TABLE kv (k BIGINT PRIMARY KEY, v BIGINT);
         CREATE MATERIALIZED VIEW by_bucket AS
           SELECT k % 1000 AS bucket, count(*) AS n, sum(v) AS total FROM kv GROUP BY k % 1000",
    )
    .await?;
    if state.per_key_view {
        run(
            &session,
            "CREATE MATERIALIZED VIEW per_key AS
               SELECT k, count(*) AS n, sum(v) AS total FROM kv GROUP BY k",
        )
        .await?;
    }
    let started = Instant::now();
    let mut next = 0u64;
    while next < keys {
        let end = (next + chunk).min(keys);
        let statement = Instant::now();
        run(
            &session,
            &format!(
                "INSERT INTO kv SELECT value, value * 7 FROM generate_series({}, {})",
                next,
                end - 1
            ),
        )
        .await?;
        eprintln!(
            "  loaded {end} keys (last INSERT of {} rows: {:.2} s, synced)",
            end - next,
            statement.elapsed().as_secs_f64()
        );
        next = end;
    }
    let checkpoint = run(&session, "SELECT bytes FROM eddy_catalog.checkpoints").await?;
    println!(
        "load {keys} {:.3} {}",
        started.elapsed().as_secs_f64(),
        single_i64(&checkpoint).unwrap_or(0)
    );
    Ok(())
}

async fn recover(dir: &Path, state: StateArgs) -> Result<()> {
    let started = Instant::now();
    let store = eddy_state::Store::open(dir, &eddy_state::StoreOptions::default())?;
    let store_opened = started.elapsed();
    let engine = Engine::open(store, options(state)).await?;
    let engine_opened = started.elapsed();
    let session = Session::new(engine)?;
    let count = single_i64(&run(&session, "SELECT count(*) FROM kv").await?).unwrap_or(-1);
    let buckets = single_i64(&run(&session, "SELECT count(*) FROM by_bucket WHERE n > 0").await?)
        .unwrap_or(-1);
    if state.per_key_view {
        let groups =
            single_i64(&run(&session, "SELECT count(*) FROM per_key").await?).unwrap_or(-1);
        println!("recovered {count} {buckets} {groups}");
    } else {
        println!("recovered {count} {buckets}");
    }
    // For the parent: where the time went (seconds since this process's
    // main began).
    eprintln!(
        "phases {:.3} {:.3} {:.3}",
        store_opened.as_secs_f64(),
        engine_opened.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    if state.lookups > 0 && count > 0 {
        let looking = Instant::now();
        let keys = count as u64;
        lookups(&session, "kv", "v", keys, state.lookups, |k| k * 7).await?;
        if state.per_key_view {
            lookups(&session, "per_key", "n", keys, state.lookups, |_| 1).await?;
        }
        // Not part of the recovery: the parent takes it off.
        eprintln!("looked up {:.3}", looking.elapsed().as_secs_f64());
    }
    Ok(())
}

/// Time `count` queries `SELECT column FROM relation WHERE k = key` of
/// keys spread over `0..keys`, checking each answer against `expected`;
/// prints the latencies for the parent.
async fn lookups(
    session: &Session,
    relation: &str,
    column: &str,
    keys: u64,
    count: u32,
    expected: impl Fn(i64) -> i64,
) -> Result<()> {
    let mut times = Vec::with_capacity(count as usize);
    // A multiplicative hash of the query number: keys spread over the
    // whole range, the same in every run.
    let mut key = 0u64;
    for i in 0..u64::from(count) {
        key = (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) % keys;
        let sql = format!("SELECT {column} FROM {relation} WHERE k = {key}");
        let started = Instant::now();
        let answer = single_i64(&run(session, &sql).await?);
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        let want = expected(key as i64);
        if answer != Some(want) {
            return Err(format!("{sql} answered {answer:?}, not {want}").into());
        }
    }
    times.sort_by(f64::total_cmp);
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    eprintln!(
        "lookups {relation}: {count} point queries (last key {key}): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        at(0.5),
        at(0.99),
        at(1.0)
    );
    Ok(())
}

fn parent(args: &Args) -> Result<()> {
    let exe = std::env::current_exe()?;
    let base = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    println!(
        "recovery: time from spawning a process to it answering a query over the recovered state ({}, memory budget: {})",
        if args.state.per_key_view {
            "table kv, views by_bucket and per_key"
        } else {
            "table kv, view by_bucket"
        },
        args.state
            .memory_budget_mb
            .map_or("unlimited".to_string(), |mb| format!("{mb} MiB"))
    );
    for &keys in &args.keys {
        let dir = base.join(format!("eddy-recovery-{keys}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let loaded = Command::new(&exe)
            .args(args.state.to_args())
            .args(["load", "--data-dir"])
            .arg(&dir)
            .args([
                "--keys",
                &keys.to_string(),
                "--chunk",
                &args.chunk.to_string(),
            ])
            .output()?;
        if !loaded.status.success() {
            return Err(format!(
                "loading failed: {}",
                String::from_utf8_lossy(&loaded.stderr)
            )
            .into());
        }
        let line = String::from_utf8_lossy(&loaded.stdout).to_string();
        let fields: Vec<&str> = line.split_whitespace().collect();
        let load_seconds: f64 = fields.get(2).and_then(|s| s.parse().ok()).unwrap_or(0.0);
        let bytes = directory_bytes(&dir);
        println!(
            "{keys} keys: loaded in {load_seconds:.1} s ({:.0} keys/s through INSERT, each statement synced); data directory {:.1} MiB",
            keys as f64 / load_seconds.max(1e-9),
            bytes as f64 / (1 << 20) as f64
        );
        let mut times = Vec::new();
        for run in 0..args.runs {
            let started = Instant::now();
            let out = Command::new(&exe)
                .args(args.state.to_args())
                .args(["recover", "--data-dir"])
                .arg(&dir)
                .output()?;
            let looked_up = String::from_utf8_lossy(&out.stderr)
                .lines()
                .find_map(|l| l.strip_prefix("looked up "))
                .and_then(|s| s.parse::<f64>().ok())
                .unwrap_or(0.0);
            let elapsed = started
                .elapsed()
                .saturating_sub(Duration::from_secs_f64(looked_up));
            let answer = String::from_utf8_lossy(&out.stdout).trim().to_string();
            let expected = if args.state.per_key_view {
                format!("recovered {keys} 1000 {keys}")
            } else {
                format!("recovered {keys} 1000")
            };
            if !out.status.success() || answer != expected {
                return Err(format!(
                    "recovery answered {answer:?}: {}",
                    String::from_utf8_lossy(&out.stderr)
                )
                .into());
            }
            let stderr = String::from_utf8_lossy(&out.stderr);
            let phases: Vec<f64> = stderr
                .lines()
                .find_map(|l| l.strip_prefix("phases "))
                .map(|l| {
                    l.split_whitespace()
                        .filter_map(|v| v.parse().ok())
                        .collect()
                })
                .unwrap_or_default();
            let breakdown = match phases.as_slice() {
                [store, engine, served] => format!(
                    "; RocksDB open {store:.2} s, catalog and state {:.2} s, queries {:.2} s, the rest process start and exit",
                    engine - store,
                    served - engine
                ),
                _ => String::new(),
            };
            println!(
                "  recovery {}: {:.2} s to serve (count(*) = {keys}, view restored{breakdown})",
                run + 1,
                elapsed.as_secs_f64()
            );
            for line in stderr.lines().filter(|l| l.starts_with("lookups ")) {
                println!("    {line}");
            }
            times.push(elapsed.as_secs_f64());
        }
        times.sort_by(f64::total_cmp);
        println!(
            "{keys} keys: recovery median {:.2} s, min {:.2} s, max {:.2} s (target for 10M keys: <= 5 s)",
            times[times.len() / 2],
            times[0],
            times[times.len() - 1]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}

fn directory_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}
