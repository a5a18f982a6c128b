//! Throughput benchmark of Eddy's incremental operators.
//!
//! Pushes a synthetic, pre-generated stream of bids through dataflows built
//! exactly as the engine builds a materialized view (DataFusion plans and
//! optimizes the SQL, `eddy_planner::plan_view` turns the plan into
//! operators of an `eddy_dataflow::Dataflow`), one `step()` per epoch, and
//! prints rows per second for each workload and mix.
//!
//! Run: `cargo run --release -p eddy-benches -- [--rows N] [--groups G]`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch, TimestampNanosecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::datasource::MemTable;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::{SessionConfig, SessionContext};
use eddy_dataflow::operator::SourceOperator;
use eddy_dataflow::schema::nullable;
use eddy_dataflow::{ChangeBatch, Dataflow, NodeId};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Result<T> = std::result::Result<T, BoxError>;

/// Bid prices are uniform in 1..=MAX_PRICE, so `price > 500` keeps half.
const MAX_PRICE: i64 = 1000;
/// Workload (a)'s predicate threshold.
const FILTER_THRESHOLD: i64 = 500;
/// Distinct bidders.
const BIDDERS: i64 = 1_000_000;
/// Distinct auction categories.
const CATEGORIES: i64 = 100;
/// 2024-01-01T00:00:00Z in nanoseconds; bids are one microsecond apart.
const BASE_TS: i64 = 1_704_067_200_000_000_000;

#[derive(Parser, Debug)]
#[command(
    name = "eddy-benches",
    about = "Throughput of Eddy's incremental dataflows on a synthetic bids stream"
)]
struct Args {
    /// Rows pushed per workload and mix (inserts plus deletes).
    #[arg(long, default_value_t = 4_000_000)]
    rows: usize,
    /// Distinct auctions: groups of (b) and rows of the auctions table of (c).
    #[arg(long, default_value_t = 100_000)]
    groups: usize,
    /// Rows per pushed change batch.
    #[arg(long, default_value_t = 8192)]
    batch_size: usize,
    /// Batches pushed per epoch (one `Dataflow::step` per epoch).
    #[arg(long, default_value_t = 64)]
    epoch_batches: usize,
    /// Fraction of rows that are deletes in the mixed runs.
    #[arg(long, default_value_t = 0.1)]
    delete_fraction: f64,
    /// Seed of the data generator.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Run only these workloads (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Workload>,
    /// Also time a ladder of smaller views per workload (inserts only) to
    /// show which operator the time goes to.
    #[arg(long)]
    breakdown: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Workload {
    /// (a) filter + projection.
    Filter,
    /// (b) grouped count/sum/max.
    Aggregate,
    /// (c) bids joined with auctions.
    Join,
}

impl Workload {
    const ALL: [Workload; 3] = [Workload::Filter, Workload::Aggregate, Workload::Join];

    fn label(self) -> &'static str {
        match self {
            Workload::Filter => "(a) filter+project",
            Workload::Aggregate => "(b) group by auction",
            Workload::Join => "(c) join auctions",
        }
    }

    fn sql(self) -> String {
        match self {
            Workload::Filter => {
                format!("SELECT auction, price * 2 AS p2 FROM bids WHERE price > {FILTER_THRESHOLD}")
            }
            Workload::Aggregate => {
                "SELECT auction, count(*), sum(price), max(price) FROM bids GROUP BY auction".into()
            }
            Workload::Join => {
                "SELECT b.auction, b.price, a.category FROM bids b JOIN auctions a ON a.id = b.auction"
                    .into()
            }
        }
    }

    /// Target rows/s per core from the issue.
    fn target(self) -> f64 {
        match self {
            Workload::Filter => 5e6,
            Workload::Aggregate => 2e6,
            Workload::Join => 1e6,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Mix {
    InsertsOnly,
    WithDeletes(f64),
}

impl Mix {
    fn label(self) -> String {
        match self {
            Mix::InsertsOnly => "inserts".into(),
            Mix::WithDeletes(f) => format!("{:.0}% deletes", f * 100.0),
        }
    }

    fn delete_fraction(self) -> f64 {
        match self {
            Mix::InsertsOnly => 0.0,
            Mix::WithDeletes(f) => f,
        }
    }
}

fn bids_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("auction", DataType::Int64, true),
        Field::new("bidder", DataType::Int64, true),
        Field::new("price", DataType::Int64, true),
        Field::new("ts", DataType::Timestamp(TimeUnit::Nanosecond, None), true),
    ]))
}

fn auctions_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("seller", DataType::Int64, true),
        Field::new("category", DataType::Int64, true),
    ]))
}

/// Pre-generated input of one run, and what its integral must look like.
struct Input {
    batches: Vec<ChangeBatch>,
    rows: usize,
    deletes: usize,
    /// Net multiplicity of live bids with price > FILTER_THRESHOLD.
    live_expensive: i64,
    /// Net multiplicity of live bids.
    live: i64,
    /// Auctions with at least one live bid.
    live_groups: i64,
}

/// Deterministic bids: `rows` changes in batches of `batch_size`; in each
/// batch after the first, `delete_fraction` of the rows retract distinct,
/// still-live bids inserted by earlier batches.
fn generate_bids(
    rows: usize,
    groups: usize,
    batch_size: usize,
    delete_fraction: f64,
    seed: u64,
) -> Result<Input> {
    let schema = nullable(&bids_schema());
    let mut rng = StdRng::seed_from_u64(seed);
    let groups = groups.max(1) as i64;
    // Every bid ever inserted, column-wise; `live` indexes the undeleted ones.
    let mut auction: Vec<i64> = Vec::with_capacity(rows);
    let mut bidder: Vec<i64> = Vec::with_capacity(rows);
    let mut price: Vec<i64> = Vec::with_capacity(rows);
    let mut ts: Vec<i64> = Vec::with_capacity(rows);
    let mut live: Vec<u32> = Vec::new();
    let mut per_group = vec![0i64; groups as usize];
    let mut batches = Vec::with_capacity(rows.div_ceil(batch_size.max(1)));
    let mut pushed = 0usize;
    let mut deletes = 0usize;
    while pushed < rows {
        let size = batch_size.min(rows - pushed);
        let wanted = if batches.is_empty() {
            0
        } else {
            ((size as f64) * delete_fraction).round() as usize
        };
        let del = wanted.min(live.len());
        let ins = size - del;
        let mut cols: [Vec<i64>; 4] = std::array::from_fn(|_| Vec::with_capacity(size));
        let mut weights: Vec<i64> = Vec::with_capacity(size);
        let start = auction.len();
        for _ in 0..ins {
            let id = auction.len() as i64;
            let a = rng.random_range(0..groups);
            let p = rng.random_range(1..=MAX_PRICE);
            auction.push(a);
            bidder.push(rng.random_range(0..BIDDERS));
            price.push(p);
            ts.push(BASE_TS + id * 1000);
            per_group[a as usize] += 1;
        }
        for i in start..auction.len() {
            cols[0].push(auction[i]);
            cols[1].push(bidder[i]);
            cols[2].push(price[i]);
            cols[3].push(ts[i]);
            weights.push(1);
        }
        for _ in 0..del {
            let slot = rng.random_range(0..live.len());
            let i = live.swap_remove(slot) as usize;
            cols[0].push(auction[i]);
            cols[1].push(bidder[i]);
            cols[2].push(price[i]);
            cols[3].push(ts[i]);
            weights.push(-1);
            per_group[auction[i] as usize] -= 1;
        }
        // Rows of this batch become deletable from the next batch on.
        live.extend((start..auction.len()).map(|i| i as u32));
        let [a, b, p, t] = cols;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(a)),
            Arc::new(Int64Array::from(b)),
            Arc::new(Int64Array::from(p)),
            Arc::new(TimestampNanosecondArray::from(t)),
        ];
        let data = RecordBatch::try_new(schema.clone(), columns)?;
        batches.push(ChangeBatch::new(data, Int64Array::from(weights))?);
        pushed += size;
        deletes += del;
    }
    let live_expensive = live
        .iter()
        .filter(|i| price[**i as usize] > FILTER_THRESHOLD)
        .count() as i64;
    Ok(Input {
        batches,
        rows: pushed,
        deletes,
        live_expensive,
        live: live.len() as i64,
        live_groups: per_group.iter().filter(|n| **n > 0).count() as i64,
    })
}

/// The auctions table: ids 0..groups, in batches of `batch_size`.
fn generate_auctions(groups: usize, batch_size: usize, seed: u64) -> Result<Vec<ChangeBatch>> {
    let schema = nullable(&auctions_schema());
    let mut rng = StdRng::seed_from_u64(seed ^ 0xa0c7_10e5);
    let mut batches = Vec::new();
    let mut next = 0usize;
    while next < groups {
        let size = batch_size.max(1).min(groups - next);
        let ids: Vec<i64> = (next..next + size).map(|i| i as i64).collect();
        let sellers: Vec<i64> = (0..size).map(|_| rng.random_range(0..BIDDERS)).collect();
        let categories: Vec<i64> = (0..size).map(|_| rng.random_range(0..CATEGORIES)).collect();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(ids)),
            Arc::new(Int64Array::from(sellers)),
            Arc::new(Int64Array::from(categories)),
        ];
        batches.push(ChangeBatch::inserts(RecordBatch::try_new(
            schema.clone(),
            columns,
        )?));
        next += size;
    }
    Ok(batches)
}

/// A DataFusion context configured like an engine session (one partition,
/// PostgreSQL dialect), with empty `bids` and `auctions` tables to plan over.
fn planning_context() -> Result<SessionContext> {
    let mut config = SessionConfig::new().with_target_partitions(1);
    config.options_mut().sql_parser.dialect = datafusion::config::Dialect::PostgreSQL;
    let context = SessionContext::new_with_config(config);
    for (name, schema) in [("bids", bids_schema()), ("auctions", auctions_schema())] {
        let table = MemTable::try_new(schema.clone(), vec![vec![RecordBatch::new_empty(schema)]])?;
        context.register_table(name, Arc::new(table))?;
    }
    Ok(context)
}

/// The optimized logical plan of `sql`, as the engine hands it to the planner.
fn optimized_plan(
    runtime: &tokio::runtime::Runtime,
    context: &SessionContext,
    sql: &str,
) -> Result<LogicalPlan> {
    let state = context.state();
    let plan = runtime.block_on(state.create_logical_plan(sql))?;
    Ok(state.optimize(&plan)?)
}

/// A dataflow with one source node per table (as the engine installs
/// tables) and the view's operators on top, its root observed.
struct View {
    dataflow: Dataflow,
    bids: NodeId,
    auctions: NodeId,
    root: NodeId,
    explain: String,
}

fn build_view(plan: &LogicalPlan) -> Result<View> {
    let mut dataflow = Dataflow::new();
    let bids = dataflow.add(
        "bids",
        Box::new(SourceOperator::new("bids", nullable(&bids_schema()))),
        vec![],
    )?;
    let auctions = dataflow.add(
        "auctions",
        Box::new(SourceOperator::new(
            "auctions",
            nullable(&auctions_schema()),
        )),
        vec![],
    )?;
    let planned = eddy_planner::plan_view(&mut dataflow, "v", plan, &|name| match name {
        "bids" => Some(bids),
        "auctions" => Some(auctions),
        _ => None,
    })?;
    dataflow.observe(planned.root)?;
    let explain = dataflow.explain(planned.root)?;
    Ok(View {
        dataflow,
        bids,
        auctions,
        root: planned.root,
        explain,
    })
}

struct Measurement {
    workload: Workload,
    mix: Mix,
    rows: usize,
    deletes: usize,
    timing: Timing,
    check: std::result::Result<(), String>,
}

impl Measurement {
    fn rows_per_sec(&self) -> f64 {
        self.rows as f64 / self.timing.elapsed.as_secs_f64().max(1e-9)
    }
}

/// What one timed pass of a view over the bids produced.
struct Timing {
    epochs: usize,
    elapsed: Duration,
    /// Slowest single epoch.
    worst_epoch: Duration,
    /// Rows the view emitted (not counting the auctions load).
    output_rows: u64,
    /// Integral of the view's output: the sum of all weights it emitted.
    integral: i64,
}

/// Build the view of `sql`, load the auctions table if it reads it
/// (untimed), then push `batches` into the bids source with one step per
/// `epoch_batches` batches, timing only that.
fn measure(
    runtime: &tokio::runtime::Runtime,
    context: &SessionContext,
    sql: &str,
    auctions: &[ChangeBatch],
    batches: Vec<ChangeBatch>,
    epoch_batches: usize,
    show_plan: Option<&str>,
) -> Result<Timing> {
    let plan = optimized_plan(runtime, context, sql)?;
    let mut view = build_view(&plan)?;
    if let Some(label) = show_plan {
        println!("{label}  {sql}");
        for line in view.explain.lines() {
            println!("    {line}");
        }
    }
    // Untimed: fill the view from the auctions table (and, for an
    // aggregate, emit nothing for the empty input).
    for batch in auctions {
        view.dataflow.push(view.auctions, batch.clone())?;
    }
    let output = view.dataflow.step()?;
    let mut integral = weight_sum(output.get(&view.root));

    let epoch_batches = epoch_batches.max(1);
    let mut epochs = 0usize;
    let mut output_rows: u64 = 0;
    let mut worst_epoch = Duration::ZERO;
    let total = batches.len();
    let start = Instant::now();
    let mut epoch_start = start;
    for (index, batch) in batches.into_iter().enumerate() {
        view.dataflow.push(view.bids, batch)?;
        if (index + 1) % epoch_batches == 0 || index + 1 == total {
            let output = view.dataflow.step()?;
            epochs += 1;
            if let Some(changes) = output.get(&view.root) {
                output_rows += changes.iter().map(|c| c.num_rows() as u64).sum::<u64>();
                integral += weight_sum(Some(changes));
            }
            let now = Instant::now();
            worst_epoch = worst_epoch.max(now - epoch_start);
            epoch_start = now;
        }
    }
    let elapsed = start.elapsed();
    drop(view);
    Ok(Timing {
        epochs,
        elapsed,
        worst_epoch,
        output_rows,
        integral,
    })
}

#[allow(clippy::too_many_arguments)]
fn run(
    args: &Args,
    runtime: &tokio::runtime::Runtime,
    context: &SessionContext,
    workload: Workload,
    mix: Mix,
    input: &Input,
    auctions: &[ChangeBatch],
    show_plan: bool,
) -> Result<Measurement> {
    let auctions = if workload == Workload::Join {
        auctions
    } else {
        &[]
    };
    let label = show_plan.then(|| workload.label());
    let timing = measure(
        runtime,
        context,
        &workload.sql(),
        auctions,
        input.batches.clone(),
        args.epoch_batches,
        label,
    )?;
    // The view's net row count must match the input's.
    let expected = match workload {
        Workload::Filter => input.live_expensive,
        Workload::Aggregate => input.live_groups,
        Workload::Join => input.live,
    };
    let check = if timing.integral == expected {
        Ok(())
    } else {
        Err(format!(
            "view holds {} rows, expected {expected}",
            timing.integral
        ))
    };
    Ok(Measurement {
        workload,
        mix,
        rows: input.rows,
        deletes: input.deletes,
        timing,
        check,
    })
}

/// Views that add one operator (or aggregate call) at a time on the way to
/// each workload's view, with the epoch size to run them at.
fn ladder(workload: Workload, epoch_batches: usize) -> Vec<(String, String, usize)> {
    let e = epoch_batches;
    let rungs: Vec<(&str, String, usize)> = match workload {
        Workload::Filter => vec![
            ("scan only", "SELECT * FROM bids".into(), e),
            (
                "+ filter",
                format!("SELECT * FROM bids WHERE price > {FILTER_THRESHOLD}"),
                e,
            ),
            ("+ project (full view)", workload.sql(), e),
        ],
        Workload::Aggregate => vec![
            (
                "scan + project",
                "SELECT auction, price FROM bids".into(),
                e,
            ),
            (
                "+ group by, count(*)",
                "SELECT auction, count(*) FROM bids GROUP BY auction".into(),
                e,
            ),
            (
                "count(*) only, 8x the epochs",
                "SELECT auction, count(*) FROM bids GROUP BY auction".into(),
                (e / 8).max(1),
            ),
            (
                "+ sum(price)",
                "SELECT auction, count(*), sum(price) FROM bids GROUP BY auction".into(),
                e,
            ),
            ("+ max(price) (full view)", workload.sql(), e),
            ("full view, 8x the epochs", workload.sql(), (e / 8).max(1)),
        ],
        Workload::Join => vec![
            (
                "scan + project",
                "SELECT auction, price FROM bids".into(),
                e,
            ),
            (
                "+ join matching nothing",
                "SELECT b.auction, b.price FROM bids b JOIN auctions a ON a.id = b.auction + 1000000000000"
                    .into(),
                e,
            ),
            (
                "+ matches: join, bids columns only",
                "SELECT b.auction, b.price FROM bids b JOIN auctions a ON a.id = b.auction".into(),
                e,
            ),
            ("+ a.category (full view)", workload.sql(), e),
        ],
    };
    rungs
        .into_iter()
        .map(|(label, sql, epochs)| (label.to_string(), sql, epochs))
        .collect()
}

fn breakdown(
    args: &Args,
    runtime: &tokio::runtime::Runtime,
    context: &SessionContext,
    workloads: &[Workload],
    input: &Input,
    auctions: &[ChangeBatch],
) -> Result<()> {
    println!();
    println!(
        "Breakdown (inserts only, {} rows): each view adds one step to the one above it.",
        input.rows
    );
    let header = [
        "workload",
        "view",
        "sql",
        "batches/epoch",
        "seconds",
        "added s",
        "ns/row added",
    ];
    let mut rows: Vec<Vec<String>> = Vec::new();
    for workload in workloads {
        let mut previous: Option<f64> = None;
        for (label, sql, epoch_batches) in ladder(*workload, args.epoch_batches) {
            let uses_auctions = sql.contains("auctions");
            let timing = measure(
                runtime,
                context,
                &sql,
                if uses_auctions { auctions } else { &[] },
                input.batches.clone(),
                epoch_batches,
                None,
            )?;
            let seconds = timing.elapsed.as_secs_f64();
            let added = previous.map_or(seconds, |p| seconds - p);
            rows.push(vec![
                workload.label().to_string(),
                label,
                sql,
                epoch_batches.to_string(),
                format!("{seconds:.3}"),
                format!("{added:+.3}"),
                format!("{:+.1}", added * 1e9 / input.rows as f64),
            ]);
            if epoch_batches == args.epoch_batches {
                previous = Some(seconds);
            }
        }
    }
    print_aligned(&header, &rows, &[0, 1, 2]);
    Ok(())
}

fn weight_sum(changes: Option<&Vec<ChangeBatch>>) -> i64 {
    changes
        .map(|batches| {
            batches
                .iter()
                .map(|c| c.weights().iter().sum::<i64>())
                .sum()
        })
        .unwrap_or(0)
}

fn human(rate: f64) -> String {
    if rate >= 1e6 {
        format!("{:.2}M", rate / 1e6)
    } else if rate >= 1e3 {
        format!("{:.1}k", rate / 1e3)
    } else {
        format!("{rate:.0}")
    }
}

fn print_table(results: &[Measurement]) {
    let header = [
        "workload",
        "mix",
        "rows pushed",
        "deletes",
        "epochs",
        "seconds",
        "rows/s",
        "rows/s/core",
        "target/core",
        "vs target",
        "worst epoch",
        "rows out",
        "check",
    ];
    let rows: Vec<Vec<String>> = results
        .iter()
        .map(|m| {
            let rate = m.rows_per_sec();
            let target = m.workload.target();
            vec![
                m.workload.label().to_string(),
                m.mix.label(),
                m.rows.to_string(),
                m.deletes.to_string(),
                m.timing.epochs.to_string(),
                format!("{:.3}", m.timing.elapsed.as_secs_f64()),
                human(rate),
                human(rate),
                format!(">= {}", human(target)),
                format!(
                    "{:.2}x {}",
                    rate / target,
                    if rate >= target { "met" } else { "MISSED" }
                ),
                format!("{:.1} ms", m.timing.worst_epoch.as_secs_f64() * 1e3),
                m.timing.output_rows.to_string(),
                match &m.check {
                    Ok(()) => "ok".to_string(),
                    Err(e) => format!("FAILED: {e}"),
                },
            ]
        })
        .collect();
    print_aligned(&header, &rows, &[0, 1, 12]);
}

/// Print a table with columns padded to their widest cell; the columns in
/// `left` are left-aligned, the others (numbers) right-aligned.
fn print_aligned(header: &[&str], rows: &[Vec<String>], left: &[usize]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: &[&str]| {
        let parts: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if left.contains(&i) {
                    format!("{c:<w$}", w = widths[i])
                } else {
                    format!("{c:>w$}", w = widths[i])
                }
            })
            .collect();
        println!("{}", parts.join("  ").trim_end());
    };
    line(header);
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    line(&rule.iter().map(String::as_str).collect::<Vec<_>>());
    for row in rows {
        line(&row.iter().map(String::as_str).collect::<Vec<_>>());
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.batch_size == 0 || args.rows == 0 {
        return Err("--rows and --batch-size must be positive".into());
    }
    if !(0.0..1.0).contains(&args.delete_fraction) {
        return Err("--delete-fraction must be in [0, 1)".into());
    }
    // Planning is async in DataFusion; the runtime has no worker threads, and
    // the dataflow runs on this thread.
    let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    let context = planning_context()?;
    let workloads: Vec<Workload> = if args.only.is_empty() {
        Workload::ALL.to_vec()
    } else {
        Workload::ALL
            .into_iter()
            .filter(|w| args.only.contains(w))
            .collect()
    };

    println!(
        "eddy-benches: {} rows per run, {} auctions, batches of {} rows, {} batches per epoch, seed {}",
        args.rows, args.groups, args.batch_size, args.epoch_batches, args.seed
    );
    println!("Dataflows (DataFusion plan -> eddy_planner::plan_view):");
    let auctions = generate_auctions(args.groups, args.batch_size, args.seed)?;
    let mut results = Vec::new();
    let mut inserts_only = None;
    for (first, mix) in [
        (true, Mix::InsertsOnly),
        (false, Mix::WithDeletes(args.delete_fraction)),
    ] {
        let input = generate_bids(
            args.rows,
            args.groups,
            args.batch_size,
            mix.delete_fraction(),
            args.seed,
        )?;
        for workload in &workloads {
            let m = run(
                &args, &runtime, &context, *workload, mix, &input, &auctions, first,
            )?;
            eprintln!(
                "  {} / {}: {:.3} s",
                workload.label(),
                mix.label(),
                m.timing.elapsed.as_secs_f64()
            );
            results.push(m);
        }
        if first {
            inserts_only = Some(input);
        }
    }
    // Group the table by workload.
    results.sort_by_key(|m| Workload::ALL.iter().position(|w| *w == m.workload));
    println!();
    println!("Single-threaded: the dataflow runs on the calling thread only (one core), so rows/s per core = rows/s.");
    println!("Rows pushed count inserts and deletes. Input generation, planning and loading the auctions table are not timed.");
    println!();
    print_table(&results);
    if args.breakdown {
        if let Some(input) = &inserts_only {
            breakdown(&args, &runtime, &context, &workloads, input, &auctions)?;
        }
    }
    if results.iter().any(|m| m.check.is_err()) {
        return Err("a view's result did not match its input".into());
    }
    Ok(())
}
